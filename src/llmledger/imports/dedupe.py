"""Settling copies of a call across the files an import reads and against the store.

The rules are ccusage v20's (DESIGN §4 rule 5; ccusage.md §2): the same dedupe key keeps the
copy with the larger token total (then the higher cost, then the one that reports speed); a
sidechain copy of a message id seen under another request id yields to the parent copy; a log
call that ``llmledger run`` recorded live from the agent's own output is not imported again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, select

from llmledger.agents import CLAUDE, CODEX, LIVE_SOURCES, log_source_of
from llmledger.imports.fastpath import better_copy
from llmledger.imports.rows import DEDUPE_KEY, MESSAGE_ID, ROW_AT, SESSION_ID, STARTED_AT
from llmledger.sources.claude_code_otel import SOURCE as CLAUDE_TELEMETRY
from llmledger.store.repository import Repository
from llmledger.store.schema import calls, runs
from llmledger.store.types import datetime_to_micros

__all__ = ["Dedupe", "drop_imported_copies", "legacy_codex_keys", "telemetry_requests"]

_IN_CHUNK = 500


def drop_imported_copies(
    repo: Repository,
    live_source: str,
    *,
    message_ids: Iterable[str],
    session_id: str | None,
    since: datetime,
    until: datetime,
) -> int:
    """Delete imported log calls that a live record of the same calls (``llmledger run``
    parsing the agent's own output as ``live_source``) supersedes — the mirror of the
    import's rule, for logs imported while the run went on: calls with one of
    ``message_ids``, or calls of ``session_id`` between ``since`` and ``until``. Returns how
    many were deleted (0 for a source no agent log also holds). See
    :meth:`Repository.delete_imported_copies`."""
    log_source = log_source_of(live_source)
    if log_source is None:
        return 0
    return repo.delete_imported_copies(
        log_source, message_ids=message_ids, session_id=session_id, since=since, until=until
    )


class Dedupe:
    """Global copy settlement (ccusage v20 rules) over the rows of every file read, and against
    what the store already holds — including the same calls recorded live by ``llmledger run``,
    so that running Claude Code through llmledger and importing its transcripts never counts a
    call twice."""

    def __init__(
        self, conn: Connection, sources: Sequence[str], *, _bulk_filter: bool = True
    ) -> None:
        self.conn = conn
        #: Whether :meth:`filter` settles a file of calls all met for the first time at once
        #: (the tests turn it off to compare).
        self.bulk_filter = _bulk_filter
        watched = [*sources, *LIVE_SOURCES]
        self.check_store = (
            conn.execute(select(calls.c.id).where(calls.c.source.in_(watched)).limit(1)).first()
            is not None
        )
        # Sessions recorded live (by ``llmledger run``), with the time window of each run that
        # recorded them: log lines of that session inside a window are copies (lines outside
        # it, e.g. earlier turns of a session the run resumed, are not).
        self.live_sessions: dict[str, list[tuple[int, int | None]]] = {}
        if self.check_store:
            query = (
                select(calls.c.session_id, runs.c.started_at, runs.c.finished_at)
                .join(runs, runs.c.id == calls.c.run_id)
                .where(calls.c.source.in_(LIVE_SOURCES), calls.c.session_id.is_not(None))
                .distinct()
            )
            for sid, start, end in conn.execute(query).all():
                window = (datetime_to_micros(start), end and datetime_to_micros(end))
                self.live_sessions.setdefault(sid, []).append(window)
        # Claude Code calls its telemetry sent (session id, request id), loaded per session.
        self.telemetry = (
            CLAUDE.log_source in sources
            and conn.execute(
                select(calls.c.id).where(calls.c.source == CLAUDE_TELEMETRY).limit(1)
            ).first()
            is not None
        )
        self.telemetry_sessions: set[str] = set()
        self.telemetry_requests: set[tuple[str, str]] = set()
        self.best: dict[str, tuple[int, int, bool, bool]] = {}
        # message id -> [(dedupe key, is sidechain, recorded live)] for keys seen or stored;
        # a bare key stands for [(key, False, False)] (see filter()).
        self.by_message: dict[str, str | list[tuple[str, bool, bool]]] = {}
        self.delete: set[str] = set()

    def load_stored(self, message_ids: Iterable[str]) -> None:
        """Remember stored copies of these message ids (only when the store may have some)."""
        if not self.check_store:
            return
        # An id with a NUL cannot be stored (nor asked for) on PostgreSQL: none is stored.
        wanted = [
            m for m in dict.fromkeys(message_ids) if m not in self.by_message and "\x00" not in m
        ]
        stored: dict[str, list[tuple[str, bool, bool]]] = {}
        for i in range(0, len(wanted), _IN_CHUNK):
            query = select(
                calls.c.message_id, calls.c.dedupe_key, calls.c.metadata, calls.c.source
            ).where(calls.c.message_id.in_(wanted[i : i + _IN_CHUNK]))
            for mid, key, meta, source in self.conn.execute(query).all():
                side = bool(meta and meta.get("is_sidechain") is True)
                stored.setdefault(mid, []).append((key, side, source in LIVE_SOURCES))
                # A stored copy of the same key is settled by the upsert itself.
        self.by_message.update(stored)

    def load_telemetry(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Remember the API requests of these rows' sessions that Claude Code's telemetry
        stored (only when the store holds telemetry calls)."""
        if not self.telemetry:
            return
        wanted = {row[SESSION_ID] for row in rows if row[SESSION_ID]} - self.telemetry_sessions
        self.telemetry_sessions.update(wanted)
        self.telemetry_requests.update(telemetry_requests(self.conn, wanted))

    def filter(
        self, rows: list[tuple[Any, ...]], infos: list[tuple[int, int, bool, bool]]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The rows to write, in order (see :meth:`keep`): those of calls met for the first
        time, and those that are better copies of calls kept before. A row of an API request
        that Claude Code's telemetry stored is a copy (see :meth:`load_telemetry`)."""
        if self.telemetry_requests:
            sent = self.telemetry_requests
            pairs = [
                (row, info)
                for row, info in zip(rows, infos, strict=True)
                if (row[SESSION_ID], row[_REQUEST_ID]) not in sent
            ]
            rows, infos = [row for row, _ in pairs], [info for _, info in pairs]
        best, by_message = self.best, self.by_message
        kept: list[tuple[Any, ...]] = []
        replacing: list[tuple[Any, ...]] = []
        live = bool(self.live_sessions)
        if self.bulk_filter and not live and rows:
            # The common case, at C speed: every row a call met for the first time (new keys
            # and message ids, none twice, no sidechain copy). Each message id then maps to
            # its bare key.
            keys = list(map(_KEY_OF, rows))
            mids = list(map(_MESSAGE_OF, rows))
            if (
                all(mids)
                and best.keys().isdisjoint(keys)
                and by_message.keys().isdisjoint(mids)
                and len(set(keys)) == len(keys)
                and len(set(mids)) == len(mids)
                and not any(map(_SIDECHAIN_OF, infos))
            ):
                best.update(zip(keys, infos, strict=True))
                by_message.update(zip(mids, keys, strict=True))
                return rows, replacing
        for row, info in zip(rows, infos, strict=True):
            key, mid = row[DEDUPE_KEY], row[MESSAGE_ID]
            if key in best:
                if self.keep(key, mid, row[SESSION_ID], row[STARTED_AT], info):
                    replacing.append(row)
            elif not live and mid and mid not in by_message:
                # The common case, inline: a call met for the first time.
                by_message[mid] = [(key, info[3], False)]
                best[key] = info
                kept.append(row)
            elif self.keep(key, mid, row[SESSION_ID], row[STARTED_AT], info):
                kept.append(row)
        return kept, replacing

    def keep(
        self,
        key: str,
        mid: str | None,
        session: str | None,
        at: int | None,
        info: tuple[int, int, bool, bool],
    ) -> bool:
        """Whether a row is written (True) or is a copy that changes nothing (False)."""
        if self.live_sessions and session is not None:
            windows = self.live_sessions.get(session, ())
            if at is not None and any(s <= at and (e is None or at <= e) for s, e in windows):
                return False
        old = self.best.get(key)
        if old is not None:
            if better_copy(info, old):
                self.best[key] = info
                return True
            return False
        side = info[3]
        if mid:
            seen = self.by_message.get(mid)
            if seen is None:  # the common case: a message id met for the first time
                self.by_message[mid] = [(key, side, False)]
                self.best[key] = info
                return True
            if isinstance(seen, str):
                seen = [(seen, False, False)]
            others = [entry for entry in seen if entry[0] != key]
            if others:
                if side or any(live for _, _, live in others):
                    return False  # a sidechain replay, or a call `llmledger run` recorded
                replaced = [k for k, s, _ in others if s]
                if replaced:  # the parent copy wins over sidechain replays seen first
                    self.delete.update(replaced)
                    seen = [e for e in others if not e[1]]
            self.by_message[mid] = [*seen, (key, side, False)]
        self.best[key] = info
        return True


_REQUEST_ID = ROW_AT["request_id"]
_KEY_OF = itemgetter(DEDUPE_KEY)
_MESSAGE_OF = itemgetter(MESSAGE_ID)
_SIDECHAIN_OF = itemgetter(3)


def telemetry_requests(conn: Connection, sessions: Iterable[str]) -> set[tuple[str, str]]:
    """The (session id, request id) of every API request of these Claude Code sessions that
    its telemetry stored (source ``claude_code_otel``): a transcript line of one of them is a
    copy. Also what the service's ``POST /v1/calls`` checks the calls of ``import --to``
    against."""
    wanted = sorted(sid for sid in set(sessions) if "\x00" not in sid)  # none such is stored
    found: set[tuple[str, str]] = set()
    for i in range(0, len(wanted), _IN_CHUNK):
        query = select(calls.c.session_id, calls.c.request_id).where(
            calls.c.source == CLAUDE_TELEMETRY,
            calls.c.session_id.in_(wanted[i : i + _IN_CHUNK]),
            calls.c.request_id.is_not(None),
        )
        found.update((sid, rid) for sid, rid in conn.execute(query).all())
    return found


def legacy_codex_keys(conn: Connection, sessions: set[str]) -> list[str]:
    """The keys under which earlier versions stored the calls of these Codex sessions
    (``session:turnN``, numbered within each file). A rollout read again now keys its calls by
    their own time and counts (so that a copied branch's replayed turns are the same calls),
    and writes them all: the old rows of its sessions go."""
    found: list[str] = []
    wanted = sorted(s for s in sessions if "\x00" not in s)  # none such is stored
    for i in range(0, len(wanted), _IN_CHUNK):
        query = select(calls.c.dedupe_key, calls.c.session_id).where(
            calls.c.source == CODEX.log_source, calls.c.session_id.in_(wanted[i : i + _IN_CHUNK])
        )
        for key, sid in conn.execute(query).all():
            if key.startswith(f"{sid}:turn") and key[len(sid) + 5 :].isdigit():
                found.append(key)
    return found
