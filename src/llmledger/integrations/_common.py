"""Shared machinery of the client integrations: timing, payload dumps, stream wrapping.

The SDK stream objects (``openai.Stream``, ``anthropic.Stream`` and their async twins) are
instrumented in place: their ``_iterator`` is replaced by a generator that watches every item,
and their ``close`` by one that also ends the watch. The caller keeps the very object the SDK
returned (same type, ``response``, context manager), and sees the items it would have seen.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from llmledger.budgets.current import Reservation
    from llmledger.call import CallStatus
    from llmledger.ledger import Ledger

__all__ = [
    "Recorder",
    "StreamWatch",
    "Timer",
    "araw_body",
    "dump",
    "install",
    "instrument_async_stream",
    "instrument_resource",
    "instrument_stream",
    "is_raw_response",
    "prompt_text",
    "raw_body",
    "wrap_copies",
]

_log = logging.getLogger("llmledger")

#: How a stream ended: read to its end, closed by the caller before its end, failed, or
#: cancelled (task cancellation, KeyboardInterrupt).
COMPLETE, CLOSED, ERROR, CANCELLED = "complete", "closed_early", "error", "cancelled"


@dataclass(slots=True)
class Timer:
    """When a call started (UTC wall clock) and how long it has taken (monotonic clock)."""

    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    _t0: float = field(default_factory=time.perf_counter)
    #: The budget reservation the call's record settles (:meth:`Recorder.hold`), if any.
    reservation: Reservation | None = None

    def elapsed_ms(self) -> int:
        """Milliseconds since the start, rounded."""
        return round((time.perf_counter() - self._t0) * 1000)


class Recorder:
    """Files what an instrumented client saw into the ledger, under the current run."""

    provider = ""

    def __init__(self, ledger: Ledger, agent: str | None, *, budgets: bool = True) -> None:
        self.ledger = ledger
        self.agent = agent
        self.budgets = budgets

    def hold(self, timer: Timer, kwargs: Mapping[str, Any]) -> None:
        """Before the request: reserve its worst case against the ledger's ``block`` budgets
        (when it has any, and ``budgets`` is on); raises ``BudgetExceeded``, so the request is
        never sent. The call's record settles it (see docs/budgets.md)."""
        if not self.budgets:
            return
        from llmledger.budgets.guard import hold

        model = kwargs.get("model")
        limit = next((kwargs[k] for k in _MAX_TOKENS if isinstance(kwargs.get(k), int)), None)
        timer.reservation = hold(
            self.ledger,
            model=model if isinstance(model, str) else None,
            prompt=prompt_text(kwargs),
            max_output_tokens=limit,
            provider=self.provider or None,
        )

    def give_back(self, timer: Timer) -> None:
        """Release the call's reservation if its record did not settle it (the call failed,
        or produced nothing to record)."""
        if timer.reservation is not None:
            from llmledger.budgets.guard import give_back

            give_back(self.ledger, timer.reservation)

    def record(
        self,
        payload: Any,
        fmt: str,
        timer: Timer,
        model: Any,
        *,
        status: CallStatus | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Record ``payload`` (parsed as ``fmt``) with the measured start and duration; the
        record settles the call's budget reservation."""
        from llmledger.budgets.guard import settling

        with settling(self.ledger, timer.reservation):
            self.ledger.record(
                payload,
                format=fmt,
                model=model if isinstance(model, str) else None,
                provider=self.provider,
                agent=self.agent,
                status=status,
                started_at=timer.started_at,
                duration_ms=timer.elapsed_ms(),
                metadata=metadata,
            )

    def finish(
        self,
        result: Any,
        timer: Timer,
        model: Any,
        watch: Callable[[], StreamWatch],
        *,
        is_async: bool,
        what: str,
        fields: set[str],
        fmt: str,
        body: Any = None,
    ) -> Any:
        """Instrument a stream result (watched by ``watch()``), or record a complete one;
        returns ``result`` itself, for the caller.

        A raw-response wrapper (``with_raw_response``) is read through its body: ``body``
        when the caller parsed it already (async clients), else :func:`raw_body`.
        """
        target = result
        if is_raw_response(result):
            target = body if body is not None else raw_body(result)
            if target is None:
                return result  # another wrapper records it, or the body could not be read
        if is_sdk_stream(target):
            # Instrumented in place: the raw wrapper hands the caller this very stream.
            if is_async:
                instrument_async_stream(target, watch(), self.ledger)
            else:
                instrument_stream(target, watch(), self.ledger)
            return result
        if hasattr(target, "usage") and hasattr(target, "id"):
            self.ledger._guard(
                f"record {what}", lambda: self.record(dump(target, fields), fmt, timer, model)
            )
        self.give_back(timer)
        return result


#: Request arguments that bound the reply's length (OpenAI chat, OpenAI responses, Anthropic).
_MAX_TOKENS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
#: Request arguments that hold the prompt.
_PROMPT = ("messages", "input", "system", "prompt", "instructions")


def prompt_text(kwargs: Mapping[str, Any]) -> str:
    """Every string in a request's prompt arguments, joined: what a reservation estimates
    the input from (roles and part types count too: an over- rather than an underestimate)."""
    parts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    for name in _PROMPT:
        walk(kwargs.get(name))
    return "\n".join(parts)


def is_raw_response(result: Any) -> bool:
    """A ``with_raw_response`` wrapper (the SDKs' ``LegacyAPIResponse`` / ``APIResponse``)."""
    return hasattr(result, "http_response") and callable(getattr(result, "parse", None))


def _claim(result: Any) -> bool:
    """True for the first wrapper that sees this raw response: only it records the body.

    ``with_raw_response.create`` may call the instrumented ``create`` (when the raw resource
    was made after instrumenting), so two wrappers can see one response.
    """
    if getattr(result, "_llmledger_claimed", False):
        return False
    try:
        result._llmledger_claimed = True
    except (AttributeError, TypeError):
        return False
    return True


def raw_body(result: Any) -> Any:
    """The body of a raw response, parsed once — the SDK caches it, so the caller's own
    ``parse()`` returns the very object recorded (or stream instrumented). None when another
    wrapper has it, when ``parse`` is async (see :func:`araw_body`), or when it fails."""
    if inspect.iscoroutinefunction(result.parse) or not _claim(result):
        return None
    try:
        return result.parse()
    except Exception as exc:  # the caller's own parse() meets the same error
        _log.warning("llmledger could not read a raw response: %s: %s", type(exc).__name__, exc)
        return None


async def araw_body(result: Any) -> Any:
    """:func:`raw_body` for a raw response whose ``parse`` is a coroutine (async clients)."""
    if not is_raw_response(result) or not inspect.iscoroutinefunction(result.parse):
        return None
    if not _claim(result):
        return None
    try:
        return await result.parse()
    except Exception as exc:
        _log.warning("llmledger could not read a raw response: %s: %s", type(exc).__name__, exc)
        return None


def is_sdk_stream(result: Any) -> bool:
    """The SDK's Stream / AsyncStream; a raw-response wrapper (with_raw_response) is neither."""
    return hasattr(result, "_iterator") and hasattr(result, "response")


def dump(obj: Any, include: set[str] | None = None) -> Any:
    """A JSON-shaped copy of an SDK model (pydantic) or mapping, limited to ``include``.

    Only the fields the parsers read are dumped: dumping a whole response (its content) would
    cost more than recording it.
    """
    if isinstance(obj, Mapping):
        return {k: v for k, v in obj.items() if include is None or k in include}
    model_dump = getattr(obj, "model_dump", None)
    if model_dump is not None:
        # warnings=False: SDK objects are built without validation, and a field of an
        # unexpected type must not turn into a warning (an error under -W error) here.
        return model_dump(mode="json", include=include, warnings=False)
    return obj


class StreamWatch(Protocol):
    """What an integration keeps while a stream is read."""

    def see(self, item: Any) -> bool:
        """Take note of an item; False hides it from the caller."""
        ...

    def finish(self, error: BaseException | None, ended: str) -> None:
        """The stream ended (``ended`` is one of complete, closed_early, error, cancelled).

        Called once per stream; must not raise.
        """
        ...


class _Once:
    """Calls ``watch.finish`` once, whichever of the generator or ``close()`` gets there;
    what goes wrong is the ledger's to log and count (:meth:`Ledger._guard`), never raised
    into the caller's loop."""

    __slots__ = ("done", "ledger", "watch")

    def __init__(self, watch: StreamWatch, ledger: Ledger) -> None:
        self.watch = watch
        self.ledger = ledger
        self.done = False

    def finish(self, error: BaseException | None, ended: str) -> None:
        if self.done:
            return
        self.done = True
        self.ledger._guard("record a stream", self.watch.finish, error, ended)
        # A stream that ended with nothing to record gives its budget reservation back.
        timer = getattr(self.watch, "timer", None)
        if isinstance(timer, Timer) and timer.reservation is not None:
            from llmledger.budgets.guard import give_back

            give_back(self.ledger, timer.reservation)


def _ended_by(exc: BaseException) -> str:
    return ERROR if isinstance(exc, Exception) else CANCELLED


def _watched(inner: Iterator[Any], once: _Once) -> Generator[Any, None, None]:
    ended, error = COMPLETE, None
    try:
        for item in inner:
            if once.watch.see(item):
                yield item
    except GeneratorExit:
        ended = CLOSED
        raise
    except BaseException as exc:
        ended, error = _ended_by(exc), exc
        raise
    finally:
        if ended != COMPLETE:
            close = getattr(inner, "close", None)
            if close is not None:
                once.ledger._guard("close the stream", close)
        once.finish(error if isinstance(error, Exception) else None, ended)


async def _awatched(inner: AsyncIterator[Any], once: _Once) -> AsyncGenerator[Any, None]:
    ended, error = COMPLETE, None
    try:
        async for item in inner:
            if once.watch.see(item):
                yield item
    except GeneratorExit:
        ended = CLOSED
        raise
    except BaseException as exc:
        ended, error = _ended_by(exc), exc
        raise
    finally:
        if ended != COMPLETE:
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception as exc:
                    once.ledger._failed("close the stream", exc)
        once.finish(error if isinstance(error, Exception) else None, ended)


def instrument_stream(stream: Any, watch: StreamWatch, ledger: Ledger) -> Any:
    """Watch a sync SDK stream in place (failures go to ``ledger``); returns the same object."""
    once = _Once(watch, ledger)
    gen = _watched(stream._iterator, once)
    stream._iterator = gen
    # A weak reference: the stream holding a closure that holds the stream would be a cycle,
    # and a dropped stream would then wait for the cyclic GC to be closed (and recorded).
    ref = weakref.ref(stream)
    original_close = type(stream).close

    def close() -> None:
        target = ref()
        try:
            if target is not None:
                original_close(target)
        finally:
            try:
                gen.close()
            except ValueError:  # closed from another thread while it runs: it ends there
                return
            once.finish(None, CLOSED)

    stream.close = close
    return stream


def instrument_async_stream(stream: Any, watch: StreamWatch, ledger: Ledger) -> Any:
    """Watch an async SDK stream in place (failures go to ``ledger``); returns the same
    object."""
    once = _Once(watch, ledger)
    gen = _awatched(stream._iterator, once)
    stream._iterator = gen
    ref = weakref.ref(stream)
    original_close = type(stream).close

    async def close() -> None:
        target = ref()
        try:
            if target is not None:
                await original_close(target)
        finally:
            try:
                await gen.aclose()
            except RuntimeError:  # already running elsewhere: it ends there
                return
            once.finish(None, CLOSED)

    stream.close = close
    return stream


def wrap_copies(client: Any, reinstrument: Callable[[Any], Any]) -> None:
    """Make the client's ``copy()`` and ``with_options()`` return instrumented copies."""
    for name in ("copy", "with_options"):
        original = wrap_marker(getattr(client, name, None))
        if original is None:
            continue

        def copy(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            return reinstrument(_original(*args, **kwargs))

        functools.update_wrapper(copy, original)
        copy.__llmledger_original__ = original  # type: ignore[attr-defined]
        setattr(client, name, copy)


def wrap_marker(func: Any) -> Any:
    """The original of an instrumented method (or the method itself)."""
    return getattr(func, "__llmledger_original__", func)


#: A method handler: called with the SDK's original method and the caller's arguments.
Handler = Callable[..., Any]


class _Slot:
    __slots__ = ("handler", "wrapper")

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.wrapper: Any = None


def install(resource: Any, name: str, handler: Handler) -> None:
    """Replace ``resource.<name>`` by a wrapper that calls ``handler(original, *args, **kw)``.

    If it is our wrapper already, it is pointed at ``handler`` instead: instrumenting again
    moves a client to the new ledger, also through SDK wrappers (``with_raw_response``) that
    captured our wrapper, and never stacks wrappers.
    """
    original = getattr(resource, name, None)
    if original is None:
        return
    slots = vars(resource).setdefault("_llmledger_slots", {})
    slot = slots.get(name)
    if slot is not None and slot.wrapper is original:
        slot.handler = handler
        return
    slot = _Slot(handler)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return slot.handler(original, *args, **kwargs)

    functools.update_wrapper(wrapper, original)
    wrapper.__llmledger_original__ = original  # type: ignore[attr-defined]
    slot.wrapper = wrapper
    slots[name] = slot
    setattr(resource, name, wrapper)


def instrument_resource(
    resource: Any, path: str, handler: Handler, methods: tuple[str, ...]
) -> None:
    """Record ``methods`` of ``resource`` and of its ``with_raw_response``; make its
    ``with_streaming_response`` methods (unrecorded) warn once."""
    # The raw resource is made (and cached by the SDK) before the methods are wrapped, so it
    # wraps the SDK's own methods; made earlier or later, _claim keeps it to one record.
    raw = getattr(resource, "with_raw_response", None)
    streaming = getattr(resource, "with_streaming_response", None)
    for name in methods:
        if callable(getattr(resource, name, None)):
            install(resource, name, handler)
        if raw is not None and callable(getattr(raw, name, None)):
            install(raw, name, handler)
        if streaming is not None and callable(getattr(streaming, name, None)):
            install(streaming, name, _warn_once(f"{path}.with_streaming_response.{name}"))


def _warn_once(method: str) -> Handler:
    """A handler that passes the call through, saying once that it is not recorded."""
    warned = threading.Event()

    def handler(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not warned.is_set():
            warned.set()
            _log.warning(
                "llmledger does not record %s() (its body is streamed to you unread): "
                "calls made with it are missing from the ledger; see docs/integrations.md",
                method,
            )
        return original(*args, **kwargs)

    return handler
