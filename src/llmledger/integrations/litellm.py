"""A LiteLLM callback that records every successful completion into a ledger.

>>> import litellm
>>> litellm.callbacks = [LedgerLiteLLMCallback(ledger)]

LiteLLM dispatches to callback objects that are instances of its ``CustomLogger``, so the
class derives from it when litellm is installed (and from ``object`` when it is not, which
keeps it usable by duck typing and testable without litellm). This module imports litellm
only if it is installed; importing :mod:`llmledger` never does.

LiteLLM's ``ModelResponse`` is OpenAI-shaped for every provider: ``prompt_tokens`` includes
cache reads (``prompt_tokens_details.cached_tokens``) and cache writes
(``prompt_tokens_details.cache_write_tokens``, split by TTL in
``cache_creation_token_details`` for Anthropic), so it is parsed as an OpenAI chat completion;
a ``litellm.responses()`` result (``ResponsesAPIResponse``) as the OpenAI Responses API.
LiteLLM's own ``response_cost`` is kept in the call's metadata only: it is LiteLLM's estimate
from its price map, not a cost the provider reported, and the ledger prices the call itself.
"""

from __future__ import annotations

import importlib.util
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from llmledger.integrations._common import dump
from llmledger.ledger import Ledger, Run, current_run
from llmledger.sources import openai as openai_source
from llmledger.sources import parse

__all__ = ["LedgerLiteLLMCallback"]

if TYPE_CHECKING:
    _Base = object
elif importlib.util.find_spec("litellm") is not None:
    from litellm.integrations.custom_logger import CustomLogger as _Base
else:
    _Base = object

#: Runs remembered from pre-call hooks whose success or failure never came (a stream never
#: read to its end): the oldest are forgotten beyond this many.
MAX_PENDING_RUNS = 10_000


class LedgerLiteLLMCallback(_Base):
    """LiteLLM ``CustomLogger`` that records each successful call into ``ledger``.

    Recorded: the usage of ``response_obj`` (normalized as an OpenAI chat completion, or as
    the Responses API for ``litellm.responses()``), the model the provider answered with
    (``_hidden_params["provider_response_model"]``, else the response's, else
    ``kwargs["model"]``), the provider LiteLLM routed to
    (``litellm_params.custom_llm_provider``), the response id as dedupe key (else LiteLLM's
    ``litellm_call_id``), start time and duration from LiteLLM's timestamps, and in metadata
    ``litellm_call_id`` and LiteLLM's ``response_cost`` (not used as the cost). The run is the
    one current when the request started (remembered by :meth:`log_pre_api_call`), since
    LiteLLM reports a sync stream from its own thread pool.

    Not recorded: responses served from LiteLLM's cache (``cache_hit``; no provider tokens
    were spent; counted in :attr:`cache_hits`) and failures (counted in :attr:`failures`),
    unless a failure carries a response with usage.
    """

    def __init__(self, ledger: Ledger, *, agent: str | None = None) -> None:
        super().__init__()
        self.ledger = ledger
        self.agent = agent
        #: Failure events seen (recorded only when they carried usage).
        self.failures = 0
        #: Successes served from LiteLLM's cache (not recorded).
        self.cache_hits = 0
        self._lock = threading.Lock()
        # The run current when each request started, by litellm_call_id: LiteLLM runs a sync
        # stream's success callback on its own thread pool, where that run is not current.
        self._runs: OrderedDict[str, Run] = OrderedDict()

    # -- LiteLLM's CustomLogger interface ---------------------------------------------------

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Mapping[str, Any]) -> None:
        """Remember the current run of a starting request.

        LiteLLM calls this in the caller's thread, sync and async requests alike.
        """
        run = current_run()
        call_id = kwargs.get("litellm_call_id") if isinstance(kwargs, Mapping) else None
        if run is None or not isinstance(call_id, str):
            return
        with self._lock:
            self._runs[call_id] = run
            while len(self._runs) > MAX_PENDING_RUNS:
                self._runs.popitem(last=False)

    def log_success_event(
        self, kwargs: Mapping[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Record a successful call (sync path)."""
        self._record(kwargs, response_obj, start_time, end_time, failed=False)

    async def async_log_success_event(
        self, kwargs: Mapping[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Record a successful call (async path)."""
        self._record(kwargs, response_obj, start_time, end_time, failed=False)

    def log_failure_event(
        self, kwargs: Mapping[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Count a failed call; record it (status error) only if it reported usage."""
        self._record(kwargs, response_obj, start_time, end_time, failed=True)

    async def async_log_failure_event(
        self, kwargs: Mapping[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Count a failed call; record it (status error) only if it reported usage."""
        self._record(kwargs, response_obj, start_time, end_time, failed=True)

    # -- recording --------------------------------------------------------------------------

    def _record(
        self,
        kwargs: Mapping[str, Any],
        response_obj: Any,
        start_time: Any,
        end_time: Any,
        *,
        failed: bool,
    ) -> None:
        # LiteLLM swallows callback errors too; the ledger logs and counts ours.
        self.ledger._guard(
            "record a LiteLLM call",
            self._record_unguarded,
            kwargs,
            response_obj,
            start_time,
            end_time,
            failed=failed,
        )

    def _record_unguarded(
        self,
        kwargs: Mapping[str, Any],
        response_obj: Any,
        start_time: Any,
        end_time: Any,
        *,
        failed: bool,
    ) -> None:
        kwargs = kwargs if isinstance(kwargs, Mapping) else {}
        call_id = kwargs.get("litellm_call_id")
        run = self._run_of(call_id, done=not failed)
        if failed:
            with self._lock:
                self.failures += 1
        if kwargs.get("cache_hit"):
            with self._lock:
                self.cache_hits += 1
            return
        responses_api = _is_responses_api(response_obj, kwargs)
        fields = openai_source.RESPONSES_FIELDS if responses_api else openai_source.CHAT_FIELDS
        response = dump(response_obj, fields) if response_obj is not None else None
        if not isinstance(response, Mapping) or not isinstance(response.get("usage"), Mapping):
            if failed:
                return  # a failure without usage: nothing was reported to record
            response = dict(response) if isinstance(response, Mapping) else {}
        params = kwargs.get("litellm_params")
        params = params if isinstance(params, Mapping) else {}
        provider = kwargs.get("custom_llm_provider") or params.get("custom_llm_provider")
        metadata: dict[str, Any] = {}
        if isinstance(call_id, str):
            metadata["litellm_call_id"] = call_id
        cost = kwargs.get("response_cost")
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            metadata["litellm_response_cost"] = cost
        started, duration = _times(start_time, end_time)
        # A stream's assembled response names the model asked for (an alias); the model the
        # provider answered with is in its hidden params.
        model = _provider_model(response_obj) or response.get("model") or kwargs.get("model")
        fmt = openai_source.RESPONSES if responses_api else openai_source.CHAT
        # The OpenAI parser names the provider "openai"; LiteLLM knows where it routed the call.
        parsed = parse(dict(response), format=fmt)
        for call in parsed.calls:
            if isinstance(provider, str) and provider:
                call.provider = provider
            if isinstance(model, str) and model:
                call.model = model
            self.ledger.record(
                call,
                run=run,
                dedupe_key=(response.get("id") or call_id) or None,
                agent=self.agent,
                status="error" if failed else None,
                started_at=started,
                duration_ms=duration,
                metadata=metadata,
            )

    def _run_of(self, call_id: Any, *, done: bool) -> Run | None:
        """The run current when the request started (else the current one). A success ends
        the request; a failure may be retried under the same call id, so it is kept."""
        if isinstance(call_id, str):
            with self._lock:
                run = self._runs.pop(call_id, None) if done else self._runs.get(call_id)
            if run is not None:
                return run
        return current_run()


def _is_responses_api(response_obj: Any, kwargs: Mapping[str, Any]) -> bool:
    """A ``litellm.responses()`` result: Responses-API usage (input/output tokens)."""
    if kwargs.get("call_type") in ("responses", "aresponses"):
        return True
    obj = response_obj if isinstance(response_obj, Mapping) else None
    kind = obj.get("object") if obj is not None else getattr(response_obj, "object", None)
    return kind == "response"


def _provider_model(response_obj: Any) -> str | None:
    hidden = getattr(response_obj, "_hidden_params", None)
    if isinstance(hidden, Mapping):
        model = hidden.get("provider_response_model")
    else:  # LiteLLM's HiddenParams object
        model = getattr(hidden, "provider_response_model", None)
    return model if isinstance(model, str) and model else None


def _times(start: Any, end: Any) -> tuple[datetime | None, int | None]:
    """LiteLLM passes datetimes (naive local time) or floats (epoch seconds)."""
    start_dt, end_dt = _as_datetime(start), _as_datetime(end)
    duration = None
    if start_dt is not None and end_dt is not None:
        duration = max(0, round((end_dt - start_dt).total_seconds() * 1000))
    return start_dt, duration


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        # A naive datetime is LiteLLM's datetime.now(): local time.
        return value.astimezone(UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None
