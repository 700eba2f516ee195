"""Record every call an ``anthropic.Anthropic`` / ``anthropic.AsyncAnthropic`` client makes.

>>> client = instrument_anthropic(Anthropic(), ledger)
>>> client.messages.create(model="claude-sonnet-4-5", max_tokens=512, messages=[...])

``messages.create`` (sync and async, ``stream=True`` or not), ``messages.parse``,
``messages.with_raw_response.create`` and the ``messages.stream(...)`` helper are wrapped;
``messages.with_streaming_response.create`` is not recorded and warns once. Stream usage is
the ``message_start`` usage overwritten field by field by the cumulative ``message_delta``
usage (never added; :mod:`llmledger.sources.anthropic`).
The SDK is not imported by this module.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from llmledger.integrations._common import (
    COMPLETE,
    ERROR,
    Recorder,
    Timer,
    araw_body,
    dump,
    instrument_async_stream,
    instrument_resource,
    instrument_stream,
    wrap_copies,
    wrap_marker,
)
from llmledger.ledger import Ledger
from llmledger.sources import anthropic as anthropic_source

__all__ = ["instrument_anthropic"]

_C = TypeVar("_C")

PROVIDER = "anthropic"
_MESSAGE_FIELDS = {"id", "type", "model", "usage"}


def instrument_anthropic(
    client: _C, ledger: Ledger, *, agent: str | None = None, budgets: bool = True
) -> _C:
    """Record every message ``client`` creates into ``ledger``; returns the same client.

    Each completed call is recorded under the current run with the model of the response,
    provider ``"anthropic"``, the message id as dedupe key and its duration (streams: until
    the stream ends). API errors propagate unchanged and record nothing; a stream that fails
    after ``message_start`` is recorded with status ``error`` and the usage known so far.
    Copies made with ``client.with_options(...)`` are instrumented too; instrumenting again
    moves the client to the new ledger.

    When the ledger has ``block`` budgets, each request first reserves its worst case
    (prompt estimate + ``max_tokens``) and raises :class:`~llmledger.errors.BudgetExceeded`
    instead of sending it when a budget would go over; the record settles the reservation.
    ``budgets=False`` turns this off.
    """
    recorder = _Recorder(ledger, agent, budgets=budgets)
    messages = getattr(client, "messages", None)
    if messages is not None:
        instrument_resource(messages, "messages", _method(recorder), ("create", "parse"))
        if hasattr(messages, "stream"):
            _wrap_stream_helper(messages, recorder)
    wrap_copies(
        client, lambda copy: instrument_anthropic(copy, ledger, agent=agent, budgets=budgets)
    )
    return client


class _Recorder(Recorder):
    provider = PROVIDER

    def result(
        self, result: Any, timer: Timer, model: Any, *, is_async: bool, body: Any = None
    ) -> Any:
        """Record a ``Message``, or instrument a raw event stream; returns ``result``."""
        return self.finish(
            result,
            timer,
            model,
            lambda: _StreamWatch(self, timer, model),
            is_async=is_async,
            what="a message",
            fields=_MESSAGE_FIELDS,
            fmt=anthropic_source.MESSAGES,
            body=body,
        )


def _method(recorder: _Recorder) -> Callable[..., Any]:
    # One handler for both clients: whether the call is async shows in its result.
    def call(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        timer = Timer()
        recorder.hold(timer, kwargs)  # BudgetExceeded: the request is not sent
        try:
            result = original(*args, **kwargs)
        except BaseException:
            recorder.give_back(timer)
            raise
        if inspect.isawaitable(result):
            return _finish_async(result, recorder, timer, kwargs.get("model"))
        return recorder.result(result, timer, kwargs.get("model"), is_async=False)

    return call


async def _finish_async(
    pending: Awaitable[Any], recorder: _Recorder, timer: Timer, model: Any
) -> Any:
    try:
        result = await pending
    except BaseException:
        recorder.give_back(timer)
        raise
    body = await araw_body(result)  # an async raw response parses asynchronously
    return recorder.result(result, timer, model, is_async=True, body=body)


def _wrap_stream_helper(messages: Any, recorder: _Recorder) -> None:
    original = wrap_marker(messages.stream)

    def stream(*args: Any, **kwargs: Any) -> _StreamManager:
        manager = original(*args, **kwargs)
        return _StreamManager(manager, recorder, kwargs)

    functools.update_wrapper(stream, original)
    stream.__llmledger_original__ = original  # type: ignore[attr-defined]
    messages.stream = stream


class _StreamManager:
    """Wraps the SDK's ``MessageStreamManager`` (sync or async): the request is made on
    entering the block; the raw event stream under the ``MessageStream`` is then watched."""

    def __init__(self, manager: Any, recorder: _Recorder, kwargs: dict[str, Any]) -> None:
        self._manager = manager
        self._recorder = recorder
        self._kwargs = kwargs
        self._model = kwargs.get("model")

    def _held(self) -> Timer:
        timer = Timer()
        self._recorder.hold(timer, self._kwargs)  # BudgetExceeded: the request is not sent
        return timer

    def __enter__(self) -> Any:
        timer = self._held()
        try:
            message_stream = self._manager.__enter__()
        except BaseException:
            self._recorder.give_back(timer)
            raise
        raw = getattr(message_stream, "_raw_stream", None)
        if raw is not None and hasattr(raw, "_iterator"):
            instrument_stream(
                raw, _StreamWatch(self._recorder, timer, self._model), self._recorder.ledger
            )
        else:
            self._recorder.give_back(timer)  # nothing will record it
        return message_stream

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        return self._manager.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> Any:
        timer = self._held()
        try:
            message_stream = await self._manager.__aenter__()
        except BaseException:
            self._recorder.give_back(timer)
            raise
        raw = getattr(message_stream, "_raw_stream", None)
        if raw is not None and hasattr(raw, "_iterator"):
            instrument_async_stream(
                raw, _StreamWatch(self._recorder, timer, self._model), self._recorder.ledger
            )
        else:
            self._recorder.give_back(timer)  # nothing will record it
        return message_stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        return await self._manager.__aexit__(exc_type, exc, tb)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)


class _StreamWatch:
    """Keeps ``message_start`` and every ``message_delta`` (their usage is cumulative)."""

    def __init__(self, recorder: _Recorder, timer: Timer, model: Any) -> None:
        self.recorder = recorder
        self.timer = timer
        self.model = model
        self.events: list[Any] = []

    def see(self, event: Any) -> bool:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            self.events.append({"type": kind, "message": dump(event.message, _MESSAGE_FIELDS)})
        elif kind == "message_delta":
            self.events.append({"type": kind, "usage": dump(event.usage)})
        return True

    def finish(self, error: BaseException | None, ended: str) -> None:
        if not self.events:
            return  # nothing arrived: no id, no usage
        self.recorder.record(
            self.events,
            anthropic_source.STREAM,
            self.timer,
            self.model,
            status="error" if ended == ERROR else None,
            metadata=None if ended == COMPLETE else {"stream_end": ended},
        )
