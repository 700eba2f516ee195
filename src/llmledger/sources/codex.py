"""OpenAI Codex CLI: rollout files (``~/.codex/sessions/**.jsonl``) and ``codex exec --json``.

Codex ``TokenUsage`` is Responses usage: ``input_tokens`` includes ``cached_input_tokens`` and
``output_tokens`` includes ``reasoning_output_tokens``. Rollouts log a cumulative
``total_token_usage``: events with ``info: null`` and re-emitted unchanged totals are skipped,
and each call is the difference between two distinct totals, so the calls sum to the final
total. A forked or spawned child rollout starts by replaying its parent's token counts; those
only move the baseline (traps 15, 16). docs/sources.md says where this differs from ccusage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from llmledger.call import Call
from llmledger.errors import ParseError
from llmledger.sources._common import (
    Ctx,
    JsonObj,
    Record,
    Summary,
    as_obj,
    count,
    get_obj,
    get_str,
    join_key,
    make_usage,
    sub,
    timestamp,
    unix_seconds,
)
from llmledger.usage import Usage

ROLLOUT = "codex_rollout"
EXEC = "codex_exec_json"
PROVIDER = "openai"

ROLLOUT_TYPES = frozenset(
    {"session_meta", "turn_context", "event_msg", "response_item", "compacted"}
)
EXEC_TYPES = frozenset(
    {
        "thread.started",
        "turn.started",
        "turn.completed",
        "turn.failed",
        "item.started",
        "item.updated",
        "item.completed",
    }
)

_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "cache_write_input_tokens",
)


def token_usage(u: Mapping[str, Any], ctx: Ctx, where: str) -> Usage:
    """Normalize a Codex ``TokenUsage`` (or ``turn.completed`` usage)."""
    cached = count(u, "cached_input_tokens", ctx, f"{where}.cached_input_tokens")
    written = count(u, "cache_write_input_tokens", ctx, f"{where}.cache_write_input_tokens")
    return make_usage(
        ctx,
        input_tokens=sub(
            count(u, "input_tokens", ctx, f"{where}.input_tokens"),
            (cached or 0) + (written or 0),
            ctx,
            f"{where}.input_tokens",
            "cached_input_tokens",
        ),
        cache_read_tokens=cached,
        cache_write_tokens=written,
        output_tokens=count(u, "output_tokens", ctx, f"{where}.output_tokens"),
        reasoning_tokens=count(u, "reasoning_output_tokens", ctx, f"{where}.reasoning"),
    )


def event_time(value: object, ctx: Ctx, name: str = "timestamp") -> datetime | None:
    """A Codex timestamp: ISO-8601 text, or Unix seconds or milliseconds (a number above
    10^10 is milliseconds, as ccusage reads it: 10^10 seconds is the year 2286)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return unix_seconds(value / 1000 if abs(value) > _MS_ABOVE else value, ctx, name)
    return timestamp(value, ctx, name)


_MS_ABOVE = 10_000_000_000


def _counts(info: JsonObj, key: str, ctx: Ctx) -> dict[str, int] | None:
    obj = get_obj(info, key, ctx, f"info.{key}")
    if obj is None:
        return None
    out: dict[str, int] = {}
    for k in _FIELDS:
        value = count(obj, k, ctx, f"{key}.{k}")
        if value is not None:
            out[k] = value
    # Cached within input (counts are never negative), or the line is skipped. A total is
    # cumulative, past the bound of one call's count in a long session: each call's own
    # usage is checked whole when it is made.
    cached = out.get("cached_input_tokens", 0) + out.get("cache_write_input_tokens", 0)
    sub(out.get("input_tokens"), cached, ctx, f"{key}.input_tokens", "cached_input_tokens")
    return out


def _model_of(obj: Mapping[str, Any]) -> str | None:
    """The model an object names: ``model``, else ``model_name``, else ``metadata.model``
    (ccusage 20's order), trimmed; None when none is a non-empty string."""
    metadata = obj.get("metadata")
    candidates = (
        obj.get("model"),
        obj.get("model_name"),
        metadata.get("model") if isinstance(metadata, dict) else None,
    )
    for value in candidates:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _event_model(payload: JsonObj, info: JsonObj) -> str | None:
    return _model_of(payload) or _model_of(info)


class _Rollout:
    """State while reading one rollout file."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.session_id: str | None = None
        self.project: str | None = None
        # The working directory (the latest turn_context's) and git branch (session_meta's).
        self.cwd: str | None = None
        self.branch: str | None = None
        self.provider = PROVIDER
        self.model: str | None = None
        self.child = False
        self.created: datetime | None = None
        self.previous: dict[str, int] = {}
        self.calls: list[Call] = []
        self.keys: set[str] = set()
        self.events = 0
        self.replayed = 0
        #: The second a child's replayed token counts were re-timestamped to (see
        #: :func:`_replay_second`); None once a count outside it is read.
        self.replay_second: datetime | None = None

    def session_meta(self, payload: JsonObj, line_ts: datetime | None) -> None:
        ctx = self.ctx
        if self.session_id is not None:
            return  # a second session_meta is the replayed parent's
        session_id = get_str(payload, "id", ctx, "session_meta.id")
        project = get_str(payload, "cwd", ctx, "session_meta.cwd")
        created = event_time(payload.get("timestamp"), ctx, "session_meta.timestamp")
        self.session_id, self.project = session_id, project
        self.cwd = self.cwd or project or None
        git = payload.get("git")
        branch = git.get("branch") if isinstance(git, dict) else None
        self.branch = branch[:255] if isinstance(branch, str) and branch else None  # the column
        provider = payload.get("model_provider")
        if isinstance(provider, str) and provider:
            self.provider = provider
        model = payload.get("model")
        if isinstance(model, str):
            self.model = model
        self.child = bool(payload.get("forked_from_id")) or _spawned(payload)
        self.created = created or line_ts

    def token_count(self, payload: JsonObj, info: JsonObj, line_ts: datetime | None) -> None:
        """One call per token count that moves the cumulative total (or, in rollouts that
        log none, per ``last_token_usage``). Everything is checked before the state moves, so
        that a line that raises is skipped as if it were not there."""
        ctx = self.ctx
        total = _counts(info, "total_token_usage", ctx)
        last = _counts(info, "last_token_usage", ctx) if total is None else None
        if total is not None:
            if total == self.previous:
                return  # re-emitted unchanged totals (trap 15)
            delta = {k: v - self.previous.get(k, 0) for k, v in total.items()}
            if any(v < 0 for v in delta.values()):
                ctx.warn("total_token_usage went down; counting from the new total")
                delta = total
            usage = token_usage(delta, ctx, "total_token_usage (delta)")
            basis, now = ("total", total), total
        elif last is not None:
            delta = last
            usage = token_usage(last, ctx, "last_token_usage")
            basis = ("last", last)
            now = {k: self.previous.get(k, 0) + last.get(k, 0) for k in {*self.previous, *last}}
        else:
            return
        model = _event_model(payload, info)
        self.events += 1
        self.previous = now
        if model is not None:
            self.model = model
        if self._replayed(line_ts):
            self.replayed += 1
            return
        key = _key(line_ts, *basis) or join_key(self.session_id, f"event{self.events}")
        if key is not None:
            if key in self.keys:
                return  # the same event logged twice
            self.keys.add(key)
        self.calls.append(
            Call(
                usage=usage,
                source=ROLLOUT,
                model=self.model,
                provider=self.provider,
                dedupe_key=key,
                started_at=line_ts,
                session_id=self.session_id,
                project=self.project,
                branch=self.branch,
                cwd=self.cwd,
            )
        )

    def _replayed(self, line_ts: datetime | None) -> bool:
        """Whether a token count of a child rollout is its replay of the parent's: timestamped
        at or before the child's creation, or in the one second the leading counts were
        re-timestamped to (ccusage 20.0.24 skips these too)."""
        if not self.child:
            return False
        if line_ts is None or self.created is None or line_ts <= self.created:
            return True
        if self.replay_second is not None and line_ts.replace(microsecond=0) == self.replay_second:
            return True
        self.replay_second = None  # the replayed prefix is over
        return False


def _replay_second(records: Sequence[Record], ctx: Ctx) -> datetime | None:
    """The second shared by the first two token counts of a rollout, if they share one. A
    forked or spawned child replays its parent's counts re-timestamped to the moment it was
    created, often a few milliseconds after its ``session_meta``, whereas a child's own calls
    take seconds each (ccusage's rule, its PR #1369)."""
    seconds: list[datetime] = []
    for rec in records:
        line = rec.value
        if not isinstance(line, dict) or line.get("type") != "event_msg":
            continue
        payload = line.get("payload")
        if not isinstance(payload, dict) or payload.get("type") != "token_count":
            continue
        info = payload.get("info")
        if not isinstance(info, dict) or not (
            info.get("total_token_usage") or info.get("last_token_usage")
        ):
            continue
        try:
            at = event_time(line.get("timestamp"), ctx)
        except ParseError:
            continue
        if at is not None:
            seconds.append(at.replace(microsecond=0))
            if len(seconds) == 2:
                break
    return seconds[0] if len(seconds) == 2 and seconds[0] == seconds[1] else None


def _key(at: datetime | None, kind: str, counts: Mapping[str, int]) -> str | None:
    """The dedupe key of a token count: its time and the counts it logs (the cumulative
    total, else the last call's), with no session in it, so that a session file replaying
    another's history (a copied branch) yields the same keys for the copied turns."""
    if at is None:
        return None
    values = ":".join(str(counts.get(k, "")) for k in _FIELDS)
    return f"codex:{at.isoformat()}:{kind}:{values}"


def _spawned(payload: Mapping[str, Any]) -> bool:
    source = payload.get("source")
    if not isinstance(source, dict):
        return False
    sub_agent = source.get("subagent")
    if not isinstance(sub_agent, dict):
        return False
    spawn = sub_agent.get("thread_spawn")
    return isinstance(spawn, dict) and bool(spawn.get("parent_thread_id"))


def parse_rollout(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per distinct cumulative total; they sum to the final ``total_token_usage``.

    A line that cannot be read (bad counts, a bad timestamp) is skipped and noted in
    ``ctx.skipped``; the next good total then covers its call.
    """
    state = _Rollout(ctx)
    state.replay_second = _replay_second(records, ctx)
    for rec in records:
        ctx.line = rec.line
        try:
            _rollout_line(state, rec.value, ctx)
        except ParseError as exc:
            ctx.skip_error(exc)
    if state.replayed:
        ctx.line = None
        ctx.warn(f"skipped {state.replayed} token counts replayed from the parent session")
    return state.calls, None


def _rollout_line(state: _Rollout, value: object, ctx: Ctx) -> None:
    line = as_obj(value, ctx, "line")
    kind = line.get("type")
    if kind not in ("session_meta", "turn_context", "event_msg"):
        return
    payload = as_obj(line.get("payload"), ctx, "payload")
    if kind == "event_msg" and payload.get("type") != "token_count":
        return
    line_ts = event_time(line.get("timestamp"), ctx)
    if kind == "session_meta":
        state.session_meta(payload, line_ts)
    elif kind == "turn_context":
        state.model = _model_of(payload) or state.model
        cwd = get_str(payload, "cwd", ctx, "turn_context.cwd")
        if state.project is None:
            state.project = cwd
        state.cwd = cwd or state.cwd
    else:
        info = get_obj(payload, "info", ctx, "token_count.info")
        if info is not None:  # info: null is a rate-limit-only update
            state.token_count(payload, info, line_ts)


def parse_exec(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per ``turn.completed`` event of ``codex exec --json``."""
    thread_id: str | None = None
    calls: list[Call] = []
    for rec in records:
        ctx.line = rec.line
        event = as_obj(rec.value, ctx, "event")
        kind = event.get("type")
        if kind == "thread.started":
            thread_id = get_str(event, "thread_id", ctx)
        elif kind == "turn.completed":
            u = get_obj(event, "usage", ctx, "turn.completed.usage")
            calls.append(
                Call(
                    usage=token_usage(u, ctx, "usage") if u is not None else Usage(),
                    source=EXEC,
                    provider=PROVIDER,
                    dedupe_key=join_key(thread_id, f"turn{len(calls) + 1}"),
                    session_id=thread_id,
                )
            )
        elif kind == "turn.failed":
            ctx.warn("a turn failed; codex exec reports no usage for it")
    return calls, None
