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

from llmledger.budgets.guard import give_back, hold, settling
from llmledger.errors import BudgetExceeded
from llmledger.integrations._common import Timer, prompt_text
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

    On ``on_llm_end`` a result that names its provider response (``llm_output["id"]``, as
    langchain-openai and langchain-anthropic set it) and whose generations all carry the same
    ``usage_metadata`` is one call, keyed by that response id: the ``n`` choices of one OpenAI
    response count once, and a call the client instrumentation also recorded (same id) is not
    counted twice. Otherwise every generation whose message carries ``usage_metadata`` is one
    call, keyed by the message id. The model is the message's
    ``response_metadata["model_name"]`` (or ``["model"]``), else ``llm_output``'s, else the
    model named when the call started (invocation params, ``ls_model_name``, or the serialized
    model). When no generation has usage metadata, ``llm_output["token_usage"]`` (OpenAI shape)
    or ``llm_output["usage"]`` (Anthropic shape) is recorded as one call.

    A failed call (``on_llm_error``) records nothing — a failed request is not billed and
    reports no usage — but is counted in :attr:`errors`.

    When the ledger has ``block`` budgets, the start of each call reserves its worst case
    (the prompt's estimate + ``max_tokens`` of the invocation) and raises
    :class:`~llmledger.errors.BudgetExceeded` out of the chain before the model is called
    when a budget would go over; the record settles it. ``budgets=False`` turns it off.
    """

    run_inline = True  # cheap and thread-safe: no need for a thread pool hop in async runs

    def __init__(self, ledger: Ledger, *, agent: str | None = None, budgets: bool = True) -> None:
        super().__init__()
        self.ledger = ledger
        self.agent = agent
        self.budgets = budgets
        self._refusing = False
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
        """Remember when the call started and which model it asked for (and reserve it
        against the block budgets)."""
        self._start(run_id, serialized, metadata, kwargs.get("invocation_params"), prompts)

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
        """Remember when the call started and which model it asked for (and reserve it
        against the block budgets)."""
        contents = [getattr(m, "content", m) for batch in messages for m in batch]
        self._start(run_id, serialized, metadata, kwargs.get("invocation_params"), contents)

    def _start(
        self,
        run_id: UUID,
        serialized: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        invocation: Any,
        prompt: Any,
    ) -> None:
        model = _first_str(
            invocation if isinstance(invocation, Mapping) else None,
            metadata,
            (serialized or {}).get("kwargs"),
            keys=("model_name", "model", "ls_model_name", "model_id"),
        )
        provider = _first_str(metadata, keys=("ls_provider",))
        timer = Timer()
        self._refusing = False
        if self.budgets:
            params = invocation if isinstance(invocation, Mapping) else {}
            limit = params.get("max_tokens") or params.get("max_output_tokens")
            try:
                timer.reservation = hold(
                    self.ledger,
                    model=model,
                    prompt=prompt_text({"messages": prompt}),
                    max_output_tokens=limit if isinstance(limit, int) else None,
                    provider=provider,
                )
            except BudgetExceeded:
                self._refusing = True  # LangChain re-raises it (raise_error) out of the chain
                raise
        with self._lock:
            self._starts[run_id] = _Start(timer, model, provider)

    @property
    def raise_error(self) -> bool:  # type: ignore[override]
        """True only while a budget refuses a call: then LangChain lets BudgetExceeded out
        of the chain; a recording problem never breaks it."""
        return self._refusing

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
        self._refusing = False  # a recording problem here must never break the chain
        with self._lock:
            start = self._starts.pop(run_id, None) or _Start(Timer(), None, None)
        with settling(self.ledger, start.timer.reservation):  # the record settles it
            self._end(response, run_id, start)

    def _end(self, response: LLMResult, run_id: UUID, start: _Start) -> None:
        duration = start.timer.elapsed_ms()
        output = response.llm_output or {}
        response_model = _first_str(output, keys=("model_name", "model"))
        if self._record_response_once(response, output, start, duration, response_model):
            return
        recorded = 0
        for i, generations in enumerate(response.generations):
            for j, generation in enumerate(generations):
                message = getattr(generation, "message", None)
                usage = getattr(message, "usage_metadata", None)
                if not isinstance(usage, Mapping):
                    continue
                message_id = getattr(message, "id", None)
                self._record_usage(
                    usage,
                    message,
                    start,
                    duration,
                    response_model,
                    message_id or f"langchain:{run_id}:{i}:{j}",
                )
                recorded += 1
        if not recorded:
            self._record_llm_output(response, run_id, start, duration)

    def _record_response_once(
        self,
        response: LLMResult,
        output: Mapping[str, Any],
        start: _Start,
        duration: int,
        response_model: str | None,
    ) -> bool:
        """Record the one provider response behind this result under its own id, if it is one.

        langchain-openai puts the whole response's usage on each of its ``n`` choices, whose
        messages langchain-core then gives different ids (``lc_run-<run>-0``, ``-1`` ...); the
        response id is only in ``llm_output["id"]``. Keyed by that id the response counts once,
        and once only also when the client instrumentation recorded it too.
        """
        response_id = output.get("id")
        if not isinstance(response_id, str) or not response_id or len(response.generations) != 1:
            return False
        with_usage = []
        for generation in response.generations[0]:
            message = getattr(generation, "message", None)
            usage = getattr(message, "usage_metadata", None)
            if isinstance(usage, Mapping):
                with_usage.append((message, usage))
        if not with_usage or any(dict(u) != dict(with_usage[0][1]) for _, u in with_usage):
            return False  # usage per generation: each is its own call
        message, usage = with_usage[0]
        self._record_usage(usage, message, start, duration, response_model, response_id)
        return True

    def _record_usage(
        self,
        usage: Mapping[str, Any],
        message: Any,
        start: _Start,
        duration: int,
        response_model: str | None,
        dedupe_key: str,
    ) -> None:
        meta = getattr(message, "response_metadata", None) or {}
        model = _first_str(meta, keys=("model_name", "model")) or response_model or start.model
        self.ledger.record(
            {"usage_metadata": dict(usage), "response_metadata": {"model_name": model}},
            format=langchain_source.FORMAT,
            model=model,
            provider=start.provider,
            dedupe_key=dedupe_key,
            agent=self.agent,
            started_at=start.timer.started_at,
            duration_ms=duration,
        )

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
            start = self._starts.pop(run_id, None)
            self.errors += 1
        if start is not None:
            give_back(self.ledger, start.timer.reservation)


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
