"""The importer's fast path for Claude Code transcript lines agrees with the general one.

``fastpath.fast_row`` builds a ``calls`` row straight from a decoded line, and
``Pricer.price_pico`` prices plain counts without a Usage; both fall back to the general
path (``transcript_call`` + ``Pricer.price``) for anything unusual. These tests read the same
files both ways and require identical results, down to the types of the values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmledger.imports import fastpath
from llmledger.imports import read as read_module
from llmledger.imports.read import FileResult, ReadTask, read_file
from llmledger.imports.rows import ROW_COLUMNS
from llmledger.pricing import Pricer
from llmledger.store.types import datetime_to_micros, money_to_pico
from llmledger.usage import MAX_TOKENS, Usage

MODELS = (
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-1-20250805",
    "claude-haiku-4-5-20251001",
    "claude-3-5-sonnet-20241022",
    "claude-3-opus-20240229",
    "<synthetic>",
    "no-such-model-xyz",
)

_odd = st.one_of(
    st.integers(-5, -1), st.booleans(), st.floats(allow_nan=False), st.text(max_size=3)
)
_count = st.one_of(st.none(), st.just(0), st.integers(0, 200_000), st.integers(0, 10**9), _odd)
_plain_count = st.one_of(st.none(), st.just(0), st.integers(0, 200_000))


def _usage(count: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    split = st.fixed_dictionaries(
        {},
        optional={"ephemeral_5m_input_tokens": count, "ephemeral_1h_input_tokens": count},
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "input_tokens": count,
            "output_tokens": count,
            "cache_read_input_tokens": count,
            "cache_creation_input_tokens": count,
            "cache_creation": st.one_of(split, st.none(), st.just([1]), st.just(3)),
            "output_tokens_details": st.one_of(
                st.fixed_dictionaries({}, optional={"thinking_tokens": count}), st.none()
            ),
            "speed": st.one_of(st.none(), st.sampled_from(["fast", "standard"]), st.just(2)),
            "service_tier": st.just("standard"),
        },
    )


_timestamp = st.one_of(
    st.datetimes(
        min_value=datetime(2023, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ).map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.datetimes(min_value=datetime(2023, 1, 1), max_value=datetime(2027, 1, 1)).map(
        datetime.isoformat
    ),
    st.just("2025-06-01T23:30:00-05:00"),
    st.none(),
    st.just("yesterday"),
    st.just(12),
)
_cost = st.one_of(
    st.none(),
    st.floats(0, 5, allow_nan=False),
    st.integers(0, 3),
    st.just("0.25"),
    st.just(True),
    st.just(1e300),
)
_text = st.one_of(st.none(), st.sampled_from(["a", "b", ""]), st.just(7))


@st.composite
def _line(draw: st.DrawFn, *, plain: bool) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "id": draw(st.sampled_from(["msg_1", "msg_2", "msg_3"]) if plain else _text),
        "type": "message",
        "role": "assistant",
        "model": draw(st.sampled_from(MODELS) if plain else st.sampled_from(MODELS) | _text),
        "content": [{"type": "text", "text": "the usage"}],
        "usage": draw(_usage(_plain_count if plain else _count)),
    }
    obj: dict[str, Any] = {"type": "assistant", "message": msg}
    optional = {
        "requestId": st.sampled_from(["req_1", "req_2"]) if plain else _text,
        "isSidechain": st.booleans(),
        "timestamp": _timestamp,
        "costUSD": _cost,
        "sessionId": st.just("sess") if plain else _text,
        "cwd": st.sampled_from(["/home/dev/x", ""]) if plain else _text,
        "agentId": st.just("agent-1") if plain else _text,
        "isApiErrorMessage": st.booleans(),
    }
    for key, value in optional.items():
        if draw(st.booleans()):
            obj[key] = draw(value)
    return obj


@st.composite
def _transcript(draw: st.DrawFn) -> bytes:
    plain = draw(st.booleans())
    lines = draw(st.lists(_line(plain=plain), min_size=1, max_size=10))
    out = []
    for obj in lines:
        # Copies of a line (one per content block) with a growing output, as Claude Code
        # writes them, and the occasional pretty-printed record.
        for _ in range(draw(st.integers(1, 3))):
            indent = 2 if draw(st.integers(0, 9)) == 0 else None
            out.append(json.dumps(obj, indent=indent, separators=None if indent else (",", ":")))
            usage = obj["message"]["usage"]
            if isinstance(usage.get("output_tokens"), int):
                obj = json.loads(json.dumps(obj))
                obj["message"]["usage"]["output_tokens"] += draw(st.integers(0, 50))
    return ("\n".join(out) + "\n").encode()


def _read(task: ReadTask, *, fast: bool, typed: bool = True) -> str:
    """The results of reading ``task``: through the typed decoding, then the dict fast path,
    then the general path (``fast``); through the dict paths only (not ``typed``); or
    through the general path only."""
    with pytest.MonkeyPatch.context() as mp:
        if not fast:
            mp.setattr(read_module, "fast_row", lambda *args: None)
        try:
            r = read_file(task, _typed=fast and typed)
        except Exception as exc:
            # Should a line still escape read_file, the fast path must fail on it exactly as
            # the general one does.
            return repr(exc)
    # repr: 0 and 0.0, True and 1 must not pass for each other.
    return repr(
        (
            _whole_rows(r),
            r.info,
            r.offset,
            r.lines,
            r.calls_seen,
            r.duplicates,
            sorted(r.skipped.items()),
            r.errors,
            r.head_sha256,
            r.cwd,
            r.failed,
        )
    )


def _whole_rows(r: FileResult) -> list[tuple[Any, ...]]:
    """The rows with the columns they leave out (``shared``) put back."""
    width = len(ROW_COLUMNS) - len(r.shared)
    assert all(len(row) == width for row in r.rows)
    return [(*row, *(value for _, value in r.shared)) for row in r.rows]


def _task(path: Path, **kw: Any) -> ReadTask:
    return ReadTask(path=str(path), agent="claude", size=os.path.getsize(path), **kw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_transcript(), from_path=st.booleans())
def test_fast_path_agrees_with_general_path(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, from_path: bool
) -> None:
    path = tmp_path_factory.mktemp("t") / "s.jsonl"
    path.write_bytes(data)
    names = {"session_id": "S", "project": "P"} if from_path else {}
    task = _task(path, recorded_at=7, **names)
    general = _read(task, fast=False)
    assert _read(task, fast=True) == general
    assert _read(task, fast=True, typed=False) == general
    # A file still being written: its last line is cut off.
    cut = ReadTask(**{**read_module._task_dict(task), "size": max(0, task.size - 5)})
    assert _read(cut, fast=True) == _read(cut, fast=False)
    assert _read(cut, fast=True, typed=False) == _read(cut, fast=False)


def test_row_columns_are_the_calls_columns_and_workers_need_no_sqlalchemy() -> None:
    from llmledger.store.schema import calls

    names = [c.name for c in calls.columns if c.name != "id"]
    assert sorted(names) == sorted(ROW_COLUMNS)
    assert len(set(ROW_COLUMNS)) == len(ROW_COLUMNS)
    probe = "import sys, llmledger.imports.workers; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("typed", [True, False])
def test_fast_path_takes_the_usual_lines(tmp_path: Path, typed: bool) -> None:
    usage = {
        "input_tokens": 3,
        "cache_creation_input_tokens": 1500,
        "cache_read_input_tokens": 20_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1000},
        "output_tokens": 40,
        "service_tier": "standard",
    }
    lines = []
    for n, model in enumerate((*MODELS[:3], "<synthetic>")):
        for output in (10, 40):
            lines.append(
                {
                    "type": "assistant",
                    "isSidechain": n == 1,
                    "sessionId": "sess",
                    "cwd": "/home/dev/x",
                    "timestamp": f"2025-0{n + 1}-02T10:00:00.000Z",
                    "requestId": f"req_{n}",
                    "message": {
                        "id": f"msg_{n}",
                        "model": model,
                        "usage": {**usage, "output_tokens": output, "speed": "fast"},
                    },
                    **({"costUSD": 0.0123} if n == 2 else {}),
                }
            )
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"\n".join(json.dumps(line).encode() for line in lines) + b"\n")
    task = _task(path, session_id="S", project="P")
    taken: list[bool] = []
    real = fastpath._build_row
    real_fast = read_module.fast_row

    def spy(*args: Any) -> Any:
        row = real(*args)
        taken.append(row is not None)
        return row

    def no_fast(*args: Any) -> Any:
        taken.append(False)  # the typed path left a line to the dict path
        return real_fast(*args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fastpath, "_build_row", spy)
        if typed:
            mp.setattr(read_module, "fast_row", no_fast)
        fast = _read(task, fast=True, typed=typed)
    assert taken == [True] * 4
    assert fast == _read(task, fast=False)
    rows = read_file(task).rows
    assert [row[ROW_COLUMNS.index("output_tokens")] for row in rows] == [40] * 4


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from(MODELS[:5]),
    counts=st.tuples(*[_plain_count] * 6),
    at=st.one_of(
        st.none(),
        st.datetimes(
            min_value=datetime(2022, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
        ),
    ),
)
def test_price_pico_agrees_with_price_usage(
    model: str, counts: tuple[int | None, ...], at: datetime | None
) -> None:
    inp, read, written, five, one, out = counts
    if five is not None or one is not None:
        written = max(written or 0, (five or 0) + (one or 0))
    usage = Usage(inp, read, written, five, one, out)
    pricer = _PRICER
    price = pricer.price_usage(usage, model, "anthropic", at)
    buckets = (inp or 0, read or 0, written or 0, one or 0, out or 0)
    micros = None if at is None else datetime_to_micros(at)
    fast = pricer.price_pico(model, "anthropic", micros, *buckets)
    if usage.is_empty or fast is None:
        return  # the importer takes the general path then
    assert price.cost_usd is not None
    assert fast == (money_to_pico(price.cost_usd), price.cost_status, price.price_version)


_PRICER = Pricer()


def test_absurd_values_are_skipped_with_their_line_not_raised(tmp_path: Path) -> None:
    def line(n: int, **extra: Any) -> str:
        usage = {"input_tokens": 10, "output_tokens": 5, **extra.pop("usage", {})}
        message = {"id": f"msg_{n}", "model": "claude-sonnet-4-5", "usage": usage}
        message.update(extra.pop("message", {}))
        return json.dumps(
            {
                "type": "assistant",
                "requestId": f"req_{n}",
                "sessionId": "s",
                "timestamp": "2026-11-01T10:00:00Z",
                "message": message,
                **extra,
            }
        )

    path = tmp_path / "s.jsonl"
    path.write_text(
        "\n".join(
            [
                line(1),
                line(2, costUSD=1e300),  # a cost no exact sum can hold
                line(5, costUSD=1e7),  # a cost beyond any call, beyond a pico-dollar column
                line(3, usage={"input_tokens": 10**20}),  # beyond a 64-bit column
                line(4, message={"model": ""}),  # no model name: unpriced, not an error
            ]
        )
        + "\n"
    )
    result = read_file(ReadTask(str(path), "claude", path.stat().st_size, session_id="s"))
    assert [row[0] for row in result.rows] == ["msg_1:req_1", "msg_4:req_4"]
    assert result.skipped == {"invalid usage": 3}
    assert [e.split(": ", 1)[0] for e in result.errors] == [f"{path}:2", f"{path}:3", f"{path}:4"]
    unpriced = result.rows[1]
    assert unpriced[ROW_COLUMNS.index("cost_usd")] is None


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": -3, "output_tokens": 5},
        {"input_tokens": 3, "output_tokens": MAX_TOKENS + 1},
        {"input_tokens": 3.0, "output_tokens": 5},
        {"input_tokens": True, "output_tokens": 5},
        {"input_tokens": 3, "output_tokens": 5, "output_tokens_details": {"thinking_tokens": 2}},
        {"input_tokens": 3, "cache_creation": {"ephemeral_5m_input_tokens": -1}},
        {"input_tokens": 3, "cache_creation": [1]},
        {},
    ],
)
def test_unusual_counts_read_alike_on_every_path(tmp_path: Path, usage: dict[str, Any]) -> None:
    line = {
        "type": "assistant",
        "sessionId": "s",
        "requestId": "r",
        "timestamp": "2025-06-01T00:00:00Z",
        "message": {"id": "m", "model": MODELS[0], "usage": usage},
    }
    path = tmp_path / "s.jsonl"
    path.write_bytes(json.dumps(line).encode() + b"\n")
    task = _task(path)
    general = _read(task, fast=False)
    assert _read(task, fast=True) == general
    assert _read(task, fast=True, typed=False) == general


def test_a_line_only_msgspec_decodes_is_skipped_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Should orjson refuse a line msgspec decoded and the typed path left to the dict path,
    # the line is skipped as malformed JSON, naming it, like any line orjson refuses.
    import orjson

    def refuse(raw: bytes) -> Any:
        raise orjson.JSONDecodeError("refused", raw.decode(), 0)

    monkeypatch.setattr(read_module.orjson, "loads", refuse)
    monkeypatch.setattr(fastpath, "_build_row", lambda *args: None)
    line = {
        "sessionId": "s",
        "message": {"id": "m", "model": MODELS[0], "usage": {"input_tokens": 3}},
    }
    path = tmp_path / "s.jsonl"
    path.write_bytes(json.dumps(line).encode() + b"\n")
    result = read_file(_task(path))
    assert result.rows == []
    assert dict(result.skipped) == {"malformed JSON": 1}
    assert result.errors[0].startswith(f"{path}:1: malformed JSON")
