"""Record every call an ``openai.OpenAI`` / ``openai.AsyncOpenAI`` client makes.

>>> client = instrument_openai(OpenAI(), ledger, agent="reviewer")
>>> client.chat.completions.create(model="gpt-4.1-mini", messages=[...])   # recorded

``create`` and ``parse`` of ``chat.completions`` and ``responses`` are wrapped, sync and async,
streaming or not, and so are their ``with_raw_response`` twins (the ``.stream()`` helpers call
``create``); ``with_streaming_response`` is not recorded and warns once. Usage is normalized by
:mod:`llmledger.sources` (OpenAI's prompt tokens include cached tokens; they are subtracted).
The SDK is not imported by this module.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from llmledger.integrations._common import (
    COMPLETE,
    ERROR,
    Recorder,
    StreamWatch,
    Timer,
    araw_body,
    dump,
    instrument_resource,
    wrap_copies,
)
from llmledger.ledger import Ledger
from llmledger.sources import openai as openai_source

__all__ = ["instrument_openai"]

_C = TypeVar("_C")

PROVIDER = "openai"


def instrument_openai(
    client: _C, ledger: Ledger, *, agent: str | None = None, budgets: bool = True
) -> _C:
    """Record every chat completion and response ``client`` makes into ``ledger``.

    Instruments the client in place and returns it. Works for ``OpenAI``, ``AsyncOpenAI``
    and their Azure subclasses; copies made with ``client.with_options(...)`` are instrumented
    too. Instrumenting a client again moves it to the new ledger (calls are not recorded
    twice).

    Each completed call is recorded under the current run with the model of the response,
    provider ``"openai"``, the response id as dedupe key, and its wall-clock duration
    (streams: until the stream ends). A chat stream asks for ``include_usage`` if the caller
    did not, and the extra usage chunk is hidden from the caller. API errors propagate
    unchanged and record nothing; a stream that fails after its first chunk is recorded with
    status ``error`` and whatever usage it had reported.

    When the ledger has ``block`` budgets, each request first reserves its worst case
    (prompt estimate + ``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens``)
    and raises :class:`~llmledger.errors.BudgetExceeded` instead of sending it when a budget
    would go over; the record settles the reservation. ``budgets=False`` turns this off.
    """
    recorder = _Recorder(ledger, agent, budgets=budgets)
    chat = getattr(client, "chat", None)
    completions = getattr(chat, "completions", None)
    if completions is not None:
        instrument_resource(completions, "chat.completions", _method(recorder.chat), _METHODS)
    responses = getattr(client, "responses", None)
    if responses is not None:
        instrument_resource(responses, "responses", _method(recorder.responses), _METHODS)
    wrap_copies(client, lambda copy: instrument_openai(copy, ledger, agent=agent, budgets=budgets))
    return client


#: Recorded on each resource and on its ``with_raw_response`` (the ``.stream()`` helpers call
#: ``create``, so they are recorded too).
_METHODS = ("create", "parse")


def _method(handle: _Handler) -> Callable[..., Any]:
    # One handler for both clients: the async SDK methods are not always coroutine
    # functions (decorators hide it), so the result tells which kind of call this was.
    def call(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs, hide = _prepare(handle, kwargs)
        timer = Timer()
        handle.recorder.hold(timer, kwargs)  # BudgetExceeded: the request is not sent
        try:
            result = original(*args, **kwargs)
        except BaseException:
            handle.recorder.give_back(timer)
            raise
        if inspect.isawaitable(result):
            return _finish_async(result, handle, timer, hide, kwargs)
        return handle(result, timer, hide, kwargs, is_async=False)

    return call


async def _finish_async(
    pending: Awaitable[Any], handle: _Handler, timer: Timer, hide: bool, kwargs: dict[str, Any]
) -> Any:
    try:
        result = await pending
    except BaseException:
        handle.recorder.give_back(timer)
        raise
    return handle(result, timer, hide, kwargs, is_async=True, body=await araw_body(result))


def _prepare(handle: _Handler, kwargs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Ask a chat stream for its usage chunk; True when the caller did not (so hide it)."""
    if not handle.chat_stream or kwargs.get("stream") is not True:
        return kwargs, False
    options = kwargs.get("stream_options")
    options = dict(options) if isinstance(options, Mapping) else {}
    if options.get("include_usage") is True:
        return kwargs, False
    options["include_usage"] = True
    return {**kwargs, "stream_options": options}, True


class _Recorder(Recorder):
    provider = PROVIDER

    def __init__(self, ledger: Ledger, agent: str | None, *, budgets: bool = True) -> None:
        super().__init__(ledger, agent, budgets=budgets)
        self.chat = _Handler(
            self,
            chat_stream=True,
            what="a chat completion",
            fields=openai_source.CHAT_FIELDS,
            fmt=openai_source.CHAT,
            watch=_ChatStreamWatch,
        )
        self.responses = _Handler(
            self,
            chat_stream=False,
            what="a response",
            fields=openai_source.RESPONSES_FIELDS,
            fmt=openai_source.RESPONSES,
            watch=lambda recorder, timer, _hide, model: _ResponsesStreamWatch(
                recorder, timer, model
            ),
        )


def _stream_metadata(ended: str) -> dict[str, Any] | None:
    return None if ended == COMPLETE else {"stream_end": ended}


class _Handler:
    """How one endpoint's result is recorded (chat completions or responses): what it is
    called in messages, the fields and format its result is parsed with, and its stream watch."""

    def __init__(
        self,
        recorder: _Recorder,
        *,
        chat_stream: bool,
        what: str,
        fields: set[str],
        fmt: str,
        watch: Callable[[_Recorder, Timer, bool, Any], StreamWatch],
    ) -> None:
        self.recorder = recorder
        self.chat_stream = chat_stream
        self.what = what
        self.fields = fields
        self.fmt = fmt
        self.watch = watch

    def __call__(
        self,
        result: Any,
        timer: Timer,
        hide: bool,
        kwargs: Mapping[str, Any],
        *,
        is_async: bool,
        body: Any = None,
    ) -> Any:
        model = kwargs.get("model")
        return self.recorder.finish(
            result,
            timer,
            model,
            lambda: self.watch(self.recorder, timer, hide, model),
            is_async=is_async,
            what=self.what,
            fields=self.fields,
            fmt=self.fmt,
            body=body,
        )


class _ChatStreamWatch:
    """Keeps the first chunk (id, model, created) and the usage chunk of a chat stream."""

    def __init__(self, recorder: _Recorder, timer: Timer, hide: bool, model: Any) -> None:
        self.recorder = recorder
        self.timer = timer
        self.hide = hide
        self.model = model
        self.first: Any = None
        self.usage: Any = None

    def see(self, chunk: Any) -> bool:
        if self.first is None:
            self.first = dump(chunk, openai_source.CHAT_FIELDS - {"usage"})
        if getattr(chunk, "usage", None) is not None:
            self.usage = dump(chunk, openai_source.CHAT_FIELDS)
            # Only the extra usage chunk has no choices; an Azure content-filter chunk with
            # no choices (and no usage) is the caller's and passes through.
            if self.hide and not getattr(chunk, "choices", None):
                return False
        return True

    def finish(self, error: BaseException | None, ended: str) -> None:
        if self.first is None:
            return  # nothing arrived: no id, no usage, nothing to record
        chunks = [self.first] if self.usage is None else [self.first, self.usage]
        self.recorder.record(
            chunks,
            openai_source.CHAT_STREAM,
            self.timer,
            self.model,
            status="error" if ended == ERROR else None,
            metadata=_stream_metadata(ended),
        )


class _ResponsesStreamWatch:
    """Keeps the latest ``response`` snapshot of a Responses stream.

    The terminal event (``response.completed`` / ``failed`` / ``incomplete``) carries the final
    one with usage; if the stream stops before it, the ``response.created`` snapshot still
    names the response and model (usage unknown).
    """

    def __init__(self, recorder: _Recorder, timer: Timer, model: Any) -> None:
        self.recorder = recorder
        self.timer = timer
        self.model = model
        self.response: Any = None
        self.failed = False

    def see(self, event: Any) -> bool:
        response = getattr(event, "response", None)
        if response is not None:
            self.response = response
        if getattr(event, "type", None) in ("error", "response.failed"):
            self.failed = True
        return True

    def finish(self, error: BaseException | None, ended: str) -> None:
        if self.response is None:
            return
        self.recorder.record(
            dump(self.response, openai_source.RESPONSES_FIELDS),
            openai_source.RESPONSES,
            self.timer,
            self.model,
            status="error" if ended == ERROR or self.failed else None,
            metadata=_stream_metadata(ended),
        )
