"""A LiteLLM callback that records every successful completion into a ledger.

>>> import litellm
>>> litellm.callbacks = [LedgerLiteLLMCallback(ledger)]

LiteLLM dispatches to callback objects that are instances of its ``CustomLogger``, so the
class derives from it when litellm is installed (and from ``object`` when it is not, which
keeps it usable by duck typing and testable without litellm). This module imports litellm
only if it is installed; importing :mod:`llmledger` never does.

LiteLLM's ``ModelResponse`` is OpenAI-shaped for every provider: ``prompt_tokens`` includes
cache reads (``prompt_tokens_details.cached_tokens``) and cache writes
(``prompt_tokens_details.cache_write_tokens``), so it is parsed as an OpenAI chat completion.
LiteLLM's own ``response_cost`` is kept in the call's metadata only: it is LiteLLM's estimate
from its price map, not a cost the provider reported, and the ledger prices the call itself.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from llmledger.integrations._common import dump
from llmledger.ledger import Ledger
from llmledger.sources import openai as openai_source
from llmledger.sources import parse

__all__ = ["LedgerLiteLLMCallback"]

if TYPE_CHECKING:
    _Base = object
elif importlib.util.find_spec("litellm") is not None:
    from litellm.integrations.custom_logger import CustomLogger as _Base
else:
    _Base = object

_log = logging.getLogger("llmledger")
_RESPONSE_FIELDS = {"id", "object", "model", "created", "usage", "service_tier"}


class LedgerLiteLLMCallback(_Base):
    """LiteLLM ``CustomLogger`` that records each successful call into ``ledger``.

    Recorded: the usage of ``response_obj`` (normalized as an OpenAI chat completion), its
    model (else ``kwargs["model"]``), the provider LiteLLM routed to
    (``litellm_params.custom_llm_provider``), the response id as dedupe key (else LiteLLM's
    ``litellm_call_id``), start time and duration from LiteLLM's timestamps, and in metadata
    ``litellm_call_id`` and LiteLLM's ``response_cost`` (not used as the cost).

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

    # -- LiteLLM's CustomLogger interface ---------------------------------------------------

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
        try:
            self._record_unguarded(kwargs, response_obj, start_time, end_time, failed=failed)
        except Exception as exc:  # LiteLLM swallows callback errors too; count ours
            self.ledger.failures += 1
            _log.warning(
                "llmledger could not record a LiteLLM call: %s: %s", type(exc).__name__, exc
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
        if failed:
            with self._lock:
                self.failures += 1
        if kwargs.get("cache_hit"):
            with self._lock:
                self.cache_hits += 1
            return
        response = dump(response_obj, _RESPONSE_FIELDS) if response_obj is not None else None
        if not isinstance(response, Mapping) or not isinstance(response.get("usage"), Mapping):
            if failed:
                return  # a failure without usage: nothing was reported to record
            response = dict(response) if isinstance(response, Mapping) else {}
        params = kwargs.get("litellm_params")
        params = params if isinstance(params, Mapping) else {}
        provider = kwargs.get("custom_llm_provider") or params.get("custom_llm_provider")
        call_id = kwargs.get("litellm_call_id")
        metadata: dict[str, Any] = {}
        if isinstance(call_id, str):
            metadata["litellm_call_id"] = call_id
        cost = kwargs.get("response_cost")
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            metadata["litellm_response_cost"] = cost
        started, duration = _times(start_time, end_time)
        model = response.get("model") or kwargs.get("model")
        # The OpenAI parser names the provider "openai"; LiteLLM knows where it routed the call.
        parsed = parse(dict(response), format=openai_source.CHAT)
        for call in parsed.calls:
            if isinstance(provider, str) and provider:
                call.provider = provider
            self.ledger.record(
                call,
                model=model if isinstance(model, str) else None,
                dedupe_key=(response.get("id") or call_id) or None,
                agent=self.agent,
                status="error" if failed else None,
                started_at=started,
                duration_ms=duration,
                metadata=metadata,
            )


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
