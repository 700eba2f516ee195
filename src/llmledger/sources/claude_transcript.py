"""Claude Code session transcripts: ``~/.claude/projects/<project>/<session>.jsonl``.

Each assistant line carries its API message's whole usage; a message split into several
content blocks is written as several lines sharing ``message.id`` and ``requestId``. Resumed
sessions and sidechains copy lines across files. :func:`dedupe_calls` collapses the copies as
ccusage v20 does: the largest token total wins, and a sidechain replay of a parent message
(same id, other request id) yields to the parent copy.

A line's ``agentId`` names the subagent that made the call (a sidechain: a Task subagent's
transcript, or its progress lines in the parent's); ``gitBranch`` and ``cwd`` the branch and
directory it ran in. The agent itself (``Call.agent_id``) is left to the caller (the importer
files every call as claude-code).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from llmledger.call import Call
from llmledger.errors import ParseError
from llmledger.sources._common import (
    Ctx,
    Record,
    Summary,
    as_obj,
    get_str,
    iter_raw_records,
    money,
    timestamp,
)
from llmledger.sources.anthropic import PROVIDER, anthropic_usage, fast_anthropic_usage

FORMAT = "claude_code_transcript"


def transcript_call(
    obj: Mapping[str, Any], *, path: str | Path | None = None, line: int | None = None
) -> Call | None:
    """The call an assistant transcript line records; None for lines without usage."""
    msg = obj.get("message")
    if type(msg) is not dict:
        if msg is not None:
            as_obj(msg, Ctx(FORMAT, path, line=line), "message")  # raises, naming the field
        return _progress_call(obj, path, line)
    u = msg.get("usage")
    if type(u) is not dict:
        if u is not None:
            as_obj(u, Ctx(FORMAT, path, line=line), "message.usage")  # raises
        return None
    ctx = Ctx(FORMAT, path, line=line)
    msg_id = _str(msg, "id", ctx, "message.id")
    request_id = _str(obj, "requestId", ctx)
    meta: dict[str, Any] = {}
    if obj.get("isSidechain") is True:
        meta["is_sidechain"] = True
    speed = u.get("speed")
    if speed is not None:
        meta["speed"] = speed
    subagent = _str(obj, "agentId", ctx) if "agentId" in obj else None
    cwd = _str(obj, "cwd", ctx)
    return Call(
        usage=fast_anthropic_usage(u) or anthropic_usage(u, ctx, "message.usage"),
        source=FORMAT,
        model=_str(msg, "model", ctx, "message.model"),
        provider=PROVIDER,
        dedupe_key=f"{msg_id}:{request_id}" if msg_id and request_id else msg_id or None,
        message_id=msg_id,
        request_id=request_id,
        started_at=timestamp(obj.get("timestamp"), ctx),
        reported_cost_usd=money(obj, "costUSD", ctx) if "costUSD" in obj else None,
        status="error" if obj.get("isApiErrorMessage") is True else "ok",
        session_id=_str(obj, "sessionId", ctx),
        project=cwd,
        metadata=meta,
        subagent=subagent[:NAME_MAX] if subagent else None,
        branch=branch_of(obj),
        cwd=cwd or None,
    )


#: The longest subagent id kept (the calls column's length; longer ids are cut).
NAME_MAX = 128
#: The longest branch name kept (the calls column's length).
BRANCH_MAX = 255


def branch_of(obj: Mapping[str, Any]) -> str | None:
    """The git branch a line records (``gitBranch``); None when it records none, an empty one
    (outside a repository) or not a string: a branch is an attribute, never a reason to skip
    a line's usage."""
    branch = obj.get("gitBranch")
    return branch[:BRANCH_MAX] if type(branch) is str and branch else None


def _str(obj: Mapping[str, Any], key: str, ctx: Ctx, name: str | None = None) -> str | None:
    value = obj.get(key)
    if value is None or type(value) is str:
        return value
    return get_str(obj, key, ctx, name)  # raises, naming the field


def _progress_call(
    obj: Mapping[str, Any], path: str | Path | None, line: int | None
) -> Call | None:
    # Subagent progress lines wrap a whole assistant entry: data.message.{message, requestId, ...}
    data = obj.get("data")
    inner = data.get("message") if type(data) is dict else None
    if type(inner) is not dict or type(inner.get("message")) is not dict:
        return None
    keys = ("sessionId", "cwd", "agentId", "gitBranch", "timestamp")
    merged = {k: obj[k] for k in keys if k in obj}
    if (
        "agentId" not in merged and type(data) is dict and "agentId" in data
    ):  # data.agentId: the subagent's id
        merged["agentId"] = data["agentId"]
    merged.update(inner)
    return transcript_call(merged, path=path, line=line)


def iter_transcript(
    data: bytes,
    *,
    path: str | Path | None = None,
    strict: bool = True,
    warnings: list[str] | None = None,
) -> Iterator[Call]:
    """The calls of a transcript file's bytes, in file order and not deduplicated.

    Lines that cannot hold usage are skipped by a byte test before decoding. A truncated last
    line is skipped (noted in ``warnings``); a malformed line elsewhere raises unless
    ``strict`` is false, in which case it is skipped and noted.
    """
    ctx = Ctx(FORMAT, path, warnings if warnings is not None else [])
    pending: tuple[int, bytes] | None = None
    for start, raw in iter_raw_records(data):
        if b'"usage"' not in raw:
            continue
        if pending is not None:
            call = _decode(*pending, ctx, strict=strict)
            if call is not None:
                yield call
        pending = (start, raw)
    if pending is not None:
        call = _decode(*pending, ctx, strict=False)
        if call is not None:
            yield call


def _decode(line: int, raw: bytes, ctx: Ctx, *, strict: bool) -> Call | None:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if strict:
            raise ctx.error(f"malformed JSON: {exc}", line=line) from None
        ctx.warn("skipped a malformed or truncated line", line=line)
        return None
    if type(obj) is not dict:
        if strict:
            raise ctx.error("expected a JSON object", line=line)
        return None
    try:
        return transcript_call(obj, path=ctx.path, line=line)
    except ParseError:
        if strict:
            raise
        ctx.warn("skipped a line with invalid usage", line=line)
        return None


def parse_transcript(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """Every assistant line's call, deduplicated (see :func:`dedupe_calls`)."""
    calls = []
    for rec in records:
        ctx.line = rec.line
        try:
            call = transcript_call(as_obj(rec.value, ctx, "line"), path=ctx.path, line=rec.line)
        except ParseError as exc:  # one bad line: skipped and named, as the importer does
            ctx.skip_error(exc)
            continue
        if call is not None:
            calls.append(call)
    return dedupe_calls(calls), None


def dedupe_calls(calls: Iterable[Call]) -> list[Call]:
    """Collapse copies of the same API message, keeping first-seen order (ccusage v20 rules).

    Same dedupe key: the larger token total wins, then the higher reported cost, then the copy
    with a ``speed`` field. Same message id with another request id: a duplicate when either
    copy is a sidechain; the non-sidechain copy is kept. Calls without a key are all kept.
    """
    out: list[Call] = []
    by_key: dict[str, int] = {}
    by_message: dict[str, list[int]] = {}
    for call in calls:
        key = call.dedupe_key
        if key is None:
            out.append(call)
            continue
        slot = by_key.get(key)
        if slot is not None:
            if _better(call, out[slot]):
                out[slot] = call
            continue
        slots = by_message.get(call.message_id or "", [])
        slot = _sidechain_copy(call, out, slots)
        if slot is not None:
            kept = out[slot]
            if _is_sidechain(kept) and not _is_sidechain(call):
                out[slot] = call
                by_key[key] = slot
            elif _is_sidechain(kept) == _is_sidechain(call) and _better(call, kept):
                out[slot] = call
            continue
        by_key[key] = len(out)
        if call.message_id:
            by_message.setdefault(call.message_id, []).append(len(out))
        out.append(call)
    return out


def _is_sidechain(call: Call) -> bool:
    return call.metadata.get("is_sidechain") is True


def _sidechain_copy(call: Call, out: list[Call], slots: list[int]) -> int | None:
    for slot in slots:
        if _is_sidechain(call) or _is_sidechain(out[slot]):
            return slot
    return None


def _better(new: Call, old: Call) -> bool:
    new_total, old_total = new.usage.total_tokens or 0, old.usage.total_tokens or 0
    if new_total != old_total:
        return new_total > old_total
    new_cost, old_cost = new.reported_cost_usd or 0, old.reported_cost_usd or 0
    if new_cost != old_cost:
        return new_cost > old_cost
    return "speed" in new.metadata and "speed" not in old.metadata


__all__ = [
    "BRANCH_MAX",
    "FORMAT",
    "NAME_MAX",
    "branch_of",
    "dedupe_calls",
    "iter_transcript",
    "parse_transcript",
    "transcript_call",
]
