"""A LangChain callback handler that records every model call into a ledger.

>>> handler = LedgerCallbackHandler(ledger, agent="planner")
>>> chat.invoke("...", config={"callbacks": [handler]})

Unlike LangChain's ``UsageMetadataCallbackHandler`` it records every generation of every
prompt (not only ``generations[0][0]``) and does not drop messages whose
``response_metadata`` lacks ``model_name`` (usage-formats.md trap 21). Importing this module
imports ``langchain_core``; importing :mod:`llmledger` does not.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from llmledger.integrations._common import Timer
from llmledger.ledger import Ledger
from llmledger.sources import anthropic as anthropic_source
from llmledger.sources import langchain as langchain_source
from llmledger.sources import openai as openai_source

__all__ = ["LedgerCallbackHandler"]


@dataclass(slots=True)
class _Start:
    timer: Timer
    model: str | None
    provider: str | None


class LedgerCallbackHandler(BaseCallbackHandler):
    """Records each LLM / chat model call of a LangChain run into ``ledger``.

    On ``on_llm_end`` every generation whose message carries ``usage_metadata`` is one call;
    its model is the message's ``response_metadata["model_name"]`` (or ``["model"]``), else
    the model named when the call started (invocation params, ``ls_model_name``, or the
    serialized model). When no generation has usage metadata, ``llm_output["token_usage"]``
    (OpenAI shape) or ``llm_output["usage"]`` (Anthropic shape) is recorded as one call.
    The message id is the dedupe key, so the ``n`` generations of one response that all carry
    that response's usage are counted once, and a call also recorded by the client
    instrumentation is not counted twice.

    A failed call (``on_llm_error``) records nothing — a failed request is not billed and
    reports no usage — but is counted in :attr:`errors`.
    """

    raise_error = False  # a recording problem must never break the chain
    run_inline = True  # cheap and thread-safe: no need for a thread pool hop in async runs

    def __init__(self, ledger: Ledger, *, agent: str | None = None) -> None:
        super().__init__()
        self.ledger = ledger
        self.agent = agent
        #: Calls that ended in ``on_llm_error`` (nothing is recorded for them).
        self.errors = 0
        self._starts: dict[UUID, _Start] = {}
        self._lock = threading.Lock()

    # -- start ----------------------------------------------------------------------------

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Remember when the call started and which model it asked for."""
        self._start(run_id, serialized, metadata, kwargs.get("invocation_params"))

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Remember when the call started and which model it asked for."""
        self._start(run_id, serialized, metadata, kwargs.get("invocation_params"))

    def _start(
        self,
        run_id: UUID,
        serialized: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        invocation: Any,
    ) -> None:
        model = _first_str(
            invocation if isinstance(invocation, Mapping) else None,
            metadata,
            (serialized or {}).get("kwargs"),
            keys=("model_name", "model", "ls_model_name", "model_id"),
        )
        provider = _first_str(metadata, keys=("ls_provider",))
        with self._lock:
            self._starts[run_id] = _Start(Timer(), model, provider)

    # -- end ------------------------------------------------------------------------------

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Record every generation that carries usage (see the class docstring)."""
        with self._lock:
            start = self._starts.pop(run_id, None) or _Start(Timer(), None, None)
        duration = start.timer.elapsed_ms()
        recorded = 0
        for i, generations in enumerate(response.generations):
            for j, generation in enumerate(generations):
                message = getattr(generation, "message", None)
                usage = getattr(message, "usage_metadata", None)
                if not isinstance(usage, Mapping):
                    continue
                meta = getattr(message, "response_metadata", None) or {}
                model = _first_str(meta, keys=("model_name", "model")) or start.model
                message_id = getattr(message, "id", None)
                self.ledger.record(
                    {"usage_metadata": dict(usage), "response_metadata": {"model_name": model}},
                    format=langchain_source.FORMAT,
                    model=model,
                    provider=start.provider,
                    dedupe_key=message_id or f"langchain:{run_id}:{i}:{j}",
                    agent=self.agent,
                    started_at=start.timer.started_at,
                    duration_ms=duration,
                )
                recorded += 1
        if not recorded:
            self._record_llm_output(response, run_id, start, duration)

    def _record_llm_output(
        self, response: LLMResult, run_id: UUID, start: _Start, duration: int
    ) -> None:
        output = response.llm_output or {}
        model = _first_str(output, keys=("model_name", "model")) or start.model
        token_usage = output.get("token_usage")
        raw_usage = output.get("usage")
        if isinstance(token_usage, Mapping) and "prompt_tokens" in token_usage:
            payload: dict[str, Any] = {"model": model, "usage": dict(token_usage)}
            fmt = openai_source.CHAT
        elif isinstance(raw_usage, Mapping) and "input_tokens" in raw_usage:
            payload = {"type": "message", "model": model, "usage": dict(raw_usage)}
            fmt = anthropic_source.MESSAGES
        else:
            return  # no usage anywhere: nothing to record
        self.ledger.record(
            payload,
            format=fmt,
            model=model,
            provider=start.provider,
            dedupe_key=f"langchain:{run_id}",
            agent=self.agent,
            started_at=start.timer.started_at,
            duration_ms=duration,
            metadata={"usage_from": "llm_output"},
        )

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Count the failure; record nothing (see the class docstring)."""
        with self._lock:
            self._starts.pop(run_id, None)
            self.errors += 1


def _first_str(*sources: Mapping[str, Any] | None, keys: tuple[str, ...]) -> str | None:
    """The first non-empty string under one of ``keys`` in the first source that has one."""
    for source in sources:
        if not isinstance(source, Mapping):
            continue
        for key in keys:
            value = source.get(key)
            if isinstance(value, str) and value:
                return value
    return None
