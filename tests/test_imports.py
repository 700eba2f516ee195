"""Importing agent logs: ccusage v20 dedupe (ccusage.md §2), incremental reads, bad lines."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmledger.imports import ImportSummary, discover, import_logs
from llmledger.imports.dedupe import Dedupe
from llmledger.store import Repository, open_repository, rollup

SESSION_A = "aaaaaaaa-0000-4000-8000-000000000001"
SESSION_B = "bbbbbbbb-0000-4000-8000-000000000002"


def line(
    msg_id: str | None,
    request_id: str | None = "req_1",
    *,
    output: int = 100,
    cache_read: int = 1000,
    session: str = SESSION_A,
    sidechain: bool = False,
    at: str = "2025-06-10T09:00:00.000Z",
    model: str = "claude-sonnet-4-20250514",
    cost: float | None = None,
) -> dict[str, Any]:
    """A Claude Code assistant transcript line."""
    message: dict[str, Any] = {
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "ok"}],
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cache_read,
            "output_tokens": output,
        },
    }
    if msg_id is not None:
        message["id"] = msg_id
    obj: dict[str, Any] = {
        "parentUuid": None,
        "isSidechain": sidechain,
        "cwd": "/home/dev/p",
        "sessionId": session,
        "version": "1.0.51",
        "type": "assistant",
        "message": message,
        "timestamp": at,
    }
    if request_id is not None:
        obj["requestId"] = request_id
    if cost is not None:
        obj["costUSD"] = cost
    return obj


def write(path: Path, lines: list[dict[str, Any]], *, mode: str = "wb") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode) as fh:
        fh.write(b"".join(orjson.dumps(obj) + b"\n" for obj in lines))
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "claude"


@pytest.fixture
def repo(sqlite_url: str) -> Repository:
    return open_repository(sqlite_url)


def session_file(home: Path, session: str = SESSION_A, project: str = "-home-dev-p") -> Path:
    return home / "projects" / project / f"{session}.jsonl"


def run(repo: Repository, home: Path) -> ImportSummary:
    return import_logs(repo, ["claude"], [home], workers=1)


def stored(repo: Repository) -> list[dict[str, Any]]:
    with repo.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT dedupe_key, session_id, project, output_tokens, cache_read_tokens, metadata"
            " FROM calls ORDER BY dedupe_key"
        ).mappings()
        return [dict(r) for r in rows]


# -- dedupe: the cases of ccusage.md §2 ----------------------------------------------------------


def test_per_block_copies_count_once(repo: Repository, home: Path) -> None:
    write(session_file(home), [line("m1"), line("m1"), line("m1"), line("m2", "req_2")])
    summary = run(repo, home)
    assert summary.calls_added == 2
    assert summary.duplicates == 2
    assert [r["dedupe_key"] for r in stored(repo)] == ["m1:req_1", "m2:req_2"]


def test_streaming_snapshots_keep_the_largest_output(repo: Repository, home: Path) -> None:
    write(session_file(home), [line("m1", output=3), line("m1", output=159), line("m1", output=40)])
    summary = run(repo, home)
    assert summary.calls_added == 1
    assert [r["output_tokens"] for r in stored(repo)] == [159]


def test_copies_as_large_keep_the_higher_logged_cost(repo: Repository, home: Path) -> None:
    # ccusage v20: the larger token total wins, then the higher cost.
    write(session_file(home), [line("m1", cost=0.01), line("m1", cost=0.03), line("m1", cost=0.02)])
    run(repo, home)
    with repo.engine.connect() as conn:
        costs = conn.exec_driver_sql("SELECT cost_usd FROM calls").scalars().all()
    assert costs == [30_000_000_000]


def test_growing_snapshot_in_a_later_import_replaces_the_stored_copy(
    repo: Repository, home: Path
) -> None:
    path = write(session_file(home), [line("m1", output=3)])
    run(repo, home)
    write(path, [line("m1", output=200)], mode="ab")
    summary = run(repo, home)
    assert summary.calls_added == 0
    assert summary.calls_updated == 1
    assert [r["output_tokens"] for r in stored(repo)] == [200]


def test_copies_in_resumed_sessions_stay_with_the_first_session(
    repo: Repository, home: Path
) -> None:
    first = write(session_file(home, SESSION_A), [line("m1"), line("m2", "req_2")])
    os.utime(first, ns=(1_000_000_000, 1_000_000_000))  # the older file is read first
    write(
        session_file(home, SESSION_B),
        [line("m1", session=SESSION_B), line("m2", "req_2", session=SESSION_B), line("m3", "r3")],
    )
    summary = run(repo, home)
    assert summary.calls_added == 3
    assert summary.duplicates == 2
    sessions = {r["dedupe_key"]: r["session_id"] for r in stored(repo)}
    assert sessions == {"m1:req_1": SESSION_A, "m2:req_2": SESSION_A, "m3:r3": SESSION_B}


def test_resumed_copy_imported_later_changes_nothing(repo: Repository, home: Path) -> None:
    write(session_file(home, SESSION_A), [line("m1")])
    run(repo, home)
    write(session_file(home, SESSION_B), [line("m1", session=SESSION_B)])
    summary = run(repo, home)
    assert (summary.calls_added, summary.duplicates) == (0, 1)
    assert [r["session_id"] for r in stored(repo)] == [SESSION_A]


def test_sidechain_replay_yields_to_the_parent(repo: Repository, home: Path) -> None:
    sub = home / "projects" / "-home-dev-p" / SESSION_A / "subagents" / "agent-1.jsonl"
    write(session_file(home), [line("m1", "req_parent", cache_read=5000)])
    write(
        sub,
        [line("m1", "req_side", cache_read=9000, sidechain=True), line("m9", "r9", sidechain=True)],
    )
    summary = run(repo, home)
    keys = [r["dedupe_key"] for r in stored(repo)]
    # The replay is dropped; the sidechain's own message is real usage and counts.
    assert keys == ["m1:req_parent", "m9:r9"]
    assert summary.duplicates == 1
    assert {r["session_id"] for r in stored(repo)} == {SESSION_A}


def test_sidechain_seen_first_is_replaced_by_the_parent(repo: Repository, home: Path) -> None:
    sub = home / "projects" / "-home-dev-p" / SESSION_A / "subagents" / "agent-1.jsonl"
    write(sub, [line("m1", "req_side", cache_read=9000, sidechain=True)])
    run(repo, home)  # only the sidechain copy exists yet
    write(session_file(home), [line("m1", "req_parent", cache_read=5000)])
    run(repo, home)
    rows = stored(repo)
    assert [r["dedupe_key"] for r in rows] == ["m1:req_parent"]
    assert rows[0]["cache_read_tokens"] == 5000


def test_same_id_other_request_without_sidechain_counts_twice(repo: Repository, home: Path) -> None:
    write(session_file(home), [line("m1", "req_1"), line("m1", "req_2")])
    assert run(repo, home).calls_added == 2


def test_missing_request_id_dedupes_on_message_id(repo: Repository, home: Path) -> None:
    write(session_file(home), [line("m1", None, output=5), line("m1", None, output=50)])
    summary = run(repo, home)
    assert summary.calls_added == 1
    assert [(r["dedupe_key"], r["output_tokens"]) for r in stored(repo)] == [("m1", 50)]


_FILE = st.lists(
    st.tuples(
        st.sampled_from(["m1", "m2", "m3", "m4", ""]),  # message id ("" for none)
        st.sampled_from(["r1", "r2"]),  # request id
        st.integers(0, 3),  # token total
        st.booleans(),  # sidechain
    ),
    max_size=4,
)


# The ledger is only read (empty): sharing it between examples is harmless.
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(files=st.lists(_FILE, max_size=4))
def test_files_of_new_calls_settle_at_once_as_row_by_row(
    repo: Repository, files: list[list[tuple[str, str, int, bool]]]
) -> None:
    # _Dedupe.filter takes a file of calls all met for the first time in one step: it must
    # settle every sequence of files exactly as the row-by-row rules do.
    from llmledger.imports.rows import ROW_COLUMNS

    def row(mid: str, req: str) -> tuple[Any, ...]:
        values = {"dedupe_key": f"{mid}:{req}" if mid else req, "message_id": mid or None}
        return tuple(values.get(name) for name in ROW_COLUMNS)

    def settle(bulk: bool) -> list[Any]:
        with repo.engine.connect() as conn:
            dedupe = Dedupe(conn, ["claude_code_transcript"], _bulk_filter=bulk)
            out: list[Any] = []
            for file in files:
                # Keys are unique within a file: the worker keeps one copy of each.
                unique = {(mid, req): (total, 0, False, side) for mid, req, total, side in file}
                rows = [row(mid, req) for mid, req in unique]
                out.append(dedupe.filter(rows, list(unique.values())))
            by_message = {
                mid: [(v, False, False)] if isinstance(v, str) else v
                for mid, v in dedupe.by_message.items()
            }
            return [out, dedupe.best, by_message, dedupe.delete]

    assert settle(True) == settle(False)


def test_dedupe_holds_across_a_process_pool(
    repo: Repository, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("llmledger.imports.workers.POOL_THRESHOLD_BYTES", 0)
    for i in range(6):
        sid = f"{i:08d}-0000-4000-8000-000000000000"
        write(session_file(home, sid), [line("shared", session=sid), line(f"own{i}", "r")])
    summary = import_logs(repo, ["claude"], [home], workers=2)
    assert summary.calls_added == 7
    assert summary.duplicates == 5


def test_each_import_reads_the_price_overrides_as_they_are(
    repo: Repository, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a long-lived process, an import's workers must not price with what an earlier import
    # (read in this process) found in the overrides file.
    monkeypatch.setattr("llmledger.imports.workers.POOL_THRESHOLD_BYTES", 0)
    prices = tmp_path / "prices.toml"
    third = "cccccccc-0000-4000-8000-000000000003"
    for rate, sessions, workers in ((1, [SESSION_A], 1), (2, [SESSION_B, third], 2)):
        prices.write_text(f'[models."my-model"]\ninput = {rate}\noutput = {rate}\n')
        for sid in sessions:
            write(session_file(home, sid), [line(f"m-{sid}", "r", session=sid, model="my-model")])
        import_logs(repo, ["claude"], [home], workers=workers, overrides_path=str(prices))
    with repo.engine.connect() as conn:
        costs = conn.exec_driver_sql("SELECT cost_usd FROM calls ORDER BY session_id").all()
    # 10 input + 100 output tokens, and the 1,000 cache reads at the input rate too
    assert [c[0] for c in costs] == [1_110_000_000, 2_220_000_000, 2_220_000_000]


def test_a_bulk_load_puts_back_every_index_and_trigger(repo: Repository, home: Path) -> None:
    # The first import drops the calls indexes (the unique key's too) and the roll-up
    # triggers, and builds them again before commit.
    def schema() -> list[tuple[str, str]]:
        with repo.engine.connect() as conn:
            return sorted(
                (kind, name)
                for kind, name in conn.exec_driver_sql(
                    "SELECT type, name FROM sqlite_master WHERE tbl_name = 'calls'"
                )
            )

    before = schema()
    assert ("index", "uq_calls_dedupe_key") in before
    write(session_file(home), [line("m1"), line("m2", "r2")])
    write(session_file(home, SESSION_B), [line("m2", "r2", session=SESSION_B, output=500)])
    assert run(repo, home).calls_added == 2
    assert schema() == before
    assert [r["output_tokens"] for r in stored(repo)] == [100, 500]


def test_a_first_import_leaves_the_ledger_in_wal_mode(
    repo: Repository, home: Path, sqlite_url: str
) -> None:
    # The first import into an empty ledger runs in the rollback journal (pages written once)
    # and switches the file back to WAL, so that readers and writers go on side by side.
    write(session_file(home), [line("m1"), line("m2", "r2")])
    assert run(repo, home).calls_added == 2
    path = sqlite_url.removeprefix("sqlite:///")
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert other.execute("SELECT COUNT(*) FROM calls").fetchone() == (2,)
    finally:
        other.close()
    assert not os.path.exists(path + "-journal")


def test_a_first_import_while_another_connection_is_open_stays_in_wal(
    repo: Repository, home: Path, sqlite_url: str
) -> None:
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    try:
        assert other.execute("SELECT COUNT(*) FROM calls").fetchone() == (0,)
        write(session_file(home), [line("m1"), line("m2", "r2")])
        assert run(repo, home).calls_added == 2
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert other.execute("SELECT COUNT(*) FROM calls").fetchone() == (2,)
    finally:
        other.close()


def test_the_rollup_mirror_takes_the_columns_rows_leave_out_from_fixed() -> None:
    # Rows of a file read by the fast paths leave out their last columns (FileResult.shared);
    # the roll-up they sum to must be that of the whole rows.
    from llmledger.imports.rows import ROW_AT, ROW_COLUMNS, SHARED_COLUMNS

    def row(i: int) -> tuple[Any, ...]:
        values = {
            "started_at": 1_750_000_000_000_000 + i * 10**9,
            "model": "m",
            "cost_usd": i,
            "cost_status": "computed",
            "input_tokens": i,
            "source": "src",
            "reasoning_tokens": 7,
        }
        return tuple(values.get(name) for name in ROW_COLUMNS)

    rows = [row(i) for i in range(5)]
    left_out = ROW_COLUMNS[-len(SHARED_COLUMNS) :]
    assert {"source", "reasoning_tokens"} <= set(left_out)
    fixed = {name: rows[0][ROW_AT[name]] for name in left_out}
    whole = rollup.partial(rows, ROW_AT)
    assert whole is not None
    assert len(whole) == 5
    narrow = [r[: -len(left_out)] for r in rows]
    assert rollup.partial(narrow, ROW_AT, fixed) == whole
    assert rollup.partial(narrow, ROW_AT, {**fixed, "reasoning_tokens": 7.0}) is None


@pytest.mark.parametrize(
    "case", ["plain", "copy left out", "copy replaces", "copy ties", "sidechain first"]
)
def test_a_bulk_load_keeps_the_rollup_exact(
    repo: Repository, home: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    # The first import drops the roll-up triggers and writes the roll-up the readers summed
    # (less the copies left out); when a later copy replaced a written call, or a copy was
    # deleted, it rebuilds the roll-up from the calls instead. Either way the roll-up equals
    # one computed from the stored calls.
    monkeypatch.setattr("llmledger.imports.writer._BATCH_ROWS", 2)
    rebuilds: list[int] = []
    rebuild = rollup.rebuild
    monkeypatch.setattr(rollup, "rebuild", lambda conn: rebuilds.append(1) or rebuild(conn))
    # The third day is the first bucket of the accepted range (earlier times are skipped).
    days = ["2025-06-10T09:00:00.000Z", "2025-06-10T09:20:00.000Z", "2000-01-01T00:10:00.000Z"]
    models = ["claude-sonnet-4-20250514", "claude-opus-4-20250514", "no-such-model"]
    first = [
        line(
            f"m{i}",
            f"r{i}",
            at=days[i % 3],
            model=models[i % 3],
            output=10 * i,
            cost=0.25 if i % 4 == 1 else None,
        )
        for i in range(7)
    ]
    del first[3]["timestamp"]
    later = [line("n1", "r", session=SESSION_B, at=days[1])]
    if case == "copy left out":  # a resumed session's copy of m1, no larger
        later.append(line("m1", "r1", session=SESSION_B, at=days[1], output=10))
    if case == "copy replaces":  # ... with more output
        later.append(line("m1", "r1", session=SESSION_B, at=days[1], output=999))
    if case == "copy ties":  # ... as large, with a higher logged cost: the stored copy stays
        later.append(line("m1", "r1", session=SESSION_B, at=days[1], output=10, cost=9.0))
    if case == "sidechain first":  # a sidechain replay read before its parent copy
        first.insert(0, line("n1", "r-side", session=SESSION_A, at=days[1], sidechain=True))
    write(session_file(home, SESSION_A), first)
    write(session_file(home, SESSION_B), later)
    if case == "plain":  # summed as the rows come, not all at the end
        monkeypatch.setattr("llmledger.imports.writer._HELD_ROWS", 1)
    assert run(repo, home).calls_added == 8
    query = "SELECT * FROM call_rollup WHERE calls > 0 ORDER BY bucket, source, model"
    with repo.engine.connect() as conn:
        kept = conn.exec_driver_sql(query).all()
    assert len(rebuilds) == (case in ("copy replaces", "copy ties", "sidechain first"))
    with repo.engine.begin() as conn:
        rebuild(conn)
        assert conn.exec_driver_sql(query).all() == kept
    outputs = sum(10 * i for i in range(7)) + 100 + (989 if case == "copy replaces" else 0)
    assert sum(r.output_tokens for r in kept) == outputs
    # m1 and m5 logged their cost; the copy that replaces m1 did not
    assert sum(r.priced_reported for r in kept) == 2 - (case == "copy replaces")


def test_a_bulk_load_whose_sums_decline_or_fail_stays_exact_or_unwritten(
    repo: Repository, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The roll-up of a bulk load is summed on a thread; when the mirror declines, the roll-up
    # is rebuilt from the calls, and when it fails, the import fails as a whole.
    write(session_file(home), [line("m1"), line("m2", "r2", output=7)])
    monkeypatch.setattr(rollup, "partial", lambda rows, at, fixed=None: None)
    assert run(repo, home).calls_added == 2
    with repo.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT SUM(output_tokens) FROM call_rollup").scalar() == 107
        conn.exec_driver_sql("DELETE FROM calls")
        conn.exec_driver_sql("DELETE FROM import_state")
        conn.commit()

    def fail(*args: Any) -> None:
        raise RuntimeError("sums failed")

    monkeypatch.setattr(rollup, "partial", fail)
    with pytest.raises(RuntimeError, match="sums failed"):
        run(repo, home)
    with repo.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM calls").scalar() == 0


# -- incremental import ---------------------------------------------------------------------------


def test_the_same_import_twice_reads_nothing_again(repo: Repository, home: Path) -> None:
    write(session_file(home), [line("m1"), line("m2", "r2")])
    first = run(repo, home)
    second = run(repo, home)
    assert first.calls_added == 2
    assert (second.files_read, second.files_skipped_unchanged, second.calls_added) == (0, 1, 0)


def test_appended_lines_are_read_from_the_saved_offset(repo: Repository, home: Path) -> None:
    path = write(session_file(home), [line("m1"), line("m2", "r2")])
    run(repo, home)
    size = path.stat().st_size
    write(path, [line("m3", "r3")], mode="ab")
    summary = run(repo, home)
    assert summary.calls_added == 1
    assert summary.bytes_read == path.stat().st_size - size
    assert summary.lines == 1


def test_import_state_holds_the_lines_so_far_and_the_calls_last_read(
    repo: Repository, home: Path
) -> None:
    path = write(session_file(home), [line("m1"), line("m1"), line("m2", "r2")])
    write(session_file(home, SESSION_B), [line("m9", "r9", session=SESSION_B)])
    run(repo, home)
    write(path, [line("m3", "r3")], mode="ab")
    run(repo, home)
    with repo.engine.connect() as conn:
        state = conn.exec_driver_sql("SELECT path, lines, calls FROM import_state").all()
    assert sorted((Path(p).stem, lines, n) for p, lines, n in state) == [
        (SESSION_A, 4, 1),
        (SESSION_B, 1, 1),
    ]


def test_a_partial_last_line_waits_for_its_newline(repo: Repository, home: Path) -> None:
    path = write(session_file(home), [line("m1")])
    whole = orjson.dumps(line("m2", "r2"))
    with open(path, "ab") as fh:
        fh.write(whole[:40])
    first = run(repo, home)
    assert (first.calls_added, first.lines_skipped) == (1, 0)
    with open(path, "ab") as fh:
        fh.write(whole[40:] + b"\n")
    assert run(repo, home).calls_added == 1


def test_a_truncated_file_is_read_again_harmlessly(repo: Repository, home: Path) -> None:
    path = write(session_file(home), [line("m1"), line("m2", "r2"), line("m3", "r3")])
    run(repo, home)
    write(path, [line("m1")])  # shorter than the saved offset
    summary = run(repo, home)
    assert summary.files_reread == 1
    assert summary.calls_added == 0
    assert len(stored(repo)) == 3


def test_a_replaced_file_is_read_from_the_start(repo: Repository, home: Path) -> None:
    path = write(session_file(home), [line("m1"), line("m2", "r2")])
    run(repo, home)
    replacement = path.with_suffix(".tmp")
    write(replacement, [line("x1", "r"), line("x2", "r"), line("x3", "r"), line("x4", "r")])
    os.replace(replacement, path)  # a new inode, other first bytes, a larger size
    summary = run(repo, home)
    assert summary.files_reread == 1
    assert summary.calls_added == 4


def test_a_new_file_is_picked_up(repo: Repository, home: Path) -> None:
    write(session_file(home, SESSION_A), [line("m1")])
    run(repo, home)
    write(session_file(home, SESSION_B), [line("m2", "r2", session=SESSION_B)])
    summary = run(repo, home)
    assert (summary.files_read, summary.files_skipped_unchanged, summary.calls_added) == (1, 1, 1)
    assert summary.sessions_added == 1


def test_one_session_run_per_session(repo: Repository, home: Path) -> None:
    write(session_file(home, SESSION_A), [line("m1")])
    write(session_file(home, SESSION_B), [line("m2", "r2", session=SESSION_B)])
    run(repo, home)
    write(session_file(home, SESSION_A), [line("m3", "r3")], mode="ab")
    run(repo, home)
    with repo.engine.connect() as conn:
        sessions = conn.exec_driver_sql(
            "SELECT key, name, agent_id, id FROM runs WHERE kind = 'session' ORDER BY key"
        ).all()
        owners = conn.exec_driver_sql("SELECT COUNT(DISTINCT run_id) FROM calls").scalar_one()
    assert [(s[0], s[1], s[2]) for s in sessions] == [
        (SESSION_A, "-home-dev-p", "claude-code"),
        (SESSION_B, "-home-dev-p", "claude-code"),
    ]
    assert owners == 2


# -- bad and unusual lines ------------------------------------------------------------------------


def test_calls_join_a_session_run_created_under_another_id(db_url: str, home: Path) -> None:
    # Earlier versions gave session runs random ids; later imports must file the session's
    # new calls under that run, not start a second one.
    repo = open_repository(db_url)
    try:
        write(session_file(home, SESSION_A), [line("m1")])
        run(repo, home)
        with repo.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO runs (id, root_id, kind, key, status, started_at, name, agent_id) "
                "SELECT 'old', 'old', kind, key, status, started_at, name, agent_id FROM runs "
                "WHERE kind = 'session'"
            )
            conn.exec_driver_sql("UPDATE calls SET run_id = 'old'")
            conn.exec_driver_sql("DELETE FROM runs WHERE id <> 'old'")
        write(session_file(home, SESSION_A), [line("m2", "r2")], mode="ab")
        write(session_file(home, SESSION_B), [line("m3", "r3", session=SESSION_B)])
        summary = run(repo, home)
        with repo.engine.connect() as conn:
            owners = conn.exec_driver_sql(
                "SELECT session_id, run_id FROM calls ORDER BY dedupe_key"
            ).all()
            sessions = conn.exec_driver_sql("SELECT COUNT(*) FROM runs").scalar_one()
    finally:
        repo.engine.dispose()
    assert (summary.calls_added, summary.sessions_added) == (2, 1)
    assert [tuple(o) for o in owners[:2]] == [(SESSION_A, "old"), (SESSION_A, "old")]
    assert owners[2][0] == SESSION_B
    assert owners[2][1] != "old"
    assert sessions == 2


def test_values_every_row_shares_are_written_as_if_bound(db_url: str, home: Path) -> None:
    # Rows read by the fast paths hold constants in some columns, which the writer puts in
    # its SQL: the calls stored must be those it writes binding every value. A bulk load, a
    # file with a line only the general path reads (then nothing is shared), and a later
    # import whose better copy replaces a stored call (the upsert).
    from llmledger.imports.plan import plan_import
    from llmledger.imports.workers import start_reading

    def run_bound(repo: Repository, home: Path) -> ImportSummary:
        # Every row holds every column.
        found = discover(["claude"], [home])
        plans, unchanged = plan_import(repo, found)
        reading = start_reading(
            plans, files=len(found), unchanged=unchanged, workers=1, _share=False
        )
        return import_logs(repo, reading=reading)

    def import_twice(share: bool) -> tuple[list[dict[str, Any]], set[int]]:
        run_import = run if share else run_bound
        write(session_file(home, SESSION_A), [line("m1", output=5), line("m2", "r2", cost=0.5)])
        write(
            session_file(home, SESSION_B),
            [line("m3", "r3", session=SESSION_B), line("m4", "r4", model="no-such-model")],
        )
        before = int(datetime.now(UTC).timestamp() * 1e6)
        run_import(repo, home)
        with repo.engine.connect() as conn:
            # Every call of an import is recorded when the import started, as its files are.
            assert {*conn.exec_driver_sql("SELECT DISTINCT recorded_at FROM calls")} == {
                *conn.exec_driver_sql("SELECT DISTINCT updated_at FROM import_state")
            }
        write(session_file(home, SESSION_A), [line("m1", output=50)], mode="ab")
        run_import(repo, home)
        after = int(datetime.now(UTC).timestamp() * 1e6)
        with repo.engine.begin() as conn:
            rows = conn.exec_driver_sql("SELECT * FROM calls ORDER BY dedupe_key").mappings().all()
            for table in ("calls", "runs", "import_state", "call_rollup"):
                conn.exec_driver_sql(f"DELETE FROM {table}")
        recorded = {row["recorded_at"] for row in rows}
        assert all(before <= at <= after for at in recorded)
        return [
            {k: v for k, v in row.items() if k not in ("id", "recorded_at")} for row in rows
        ], recorded

    repo = open_repository(db_url)
    try:
        shared, shared_at = import_twice(True)
        bound, bound_at = import_twice(False)
    finally:
        repo.engine.dispose()
    facts = ("dedupe_key", "source", "provider", "currency", "token_provenance", "output_tokens")
    assert [tuple(row[k] for k in facts) for row in shared] == [
        ("m1:req_1", "claude_code_transcript", "anthropic", "USD", "reported", 50),
        ("m2:r2", "claude_code_transcript", "anthropic", "USD", "reported", 100),
        ("m3:r3", "claude_code_transcript", "anthropic", "USD", "reported", 100),
        ("m4:r4", "claude_code_transcript", "anthropic", "USD", "reported", 100),
    ]
    assert all(row[k] is None for row in shared for k in ("finished_at", "reasoning_tokens"))
    assert shared == bound
    assert len(shared_at) == len(bound_at) == 1  # the first import's; a replacement keeps it


def test_malformed_lines_are_counted_and_reported(repo: Repository, home: Path) -> None:
    path = session_file(home)
    path.parent.mkdir(parents=True)
    good = orjson.dumps(line("m1"))
    path.write_bytes(
        good + b'\n{"message": {"id": "x", "usage": {"input_tokens": 9\n' + good + b"\n"
    )
    summary = run(repo, home)
    assert summary.calls_added == 1
    assert summary.skipped == {"malformed JSON": 1}
    assert summary.errors[0].startswith(f"{path}:2: malformed JSON")


def test_invalid_usage_is_skipped_with_a_reason(repo: Repository, home: Path) -> None:
    bad = line("m2", "r2")
    bad["message"]["usage"]["output_tokens"] = -5
    write(session_file(home), [line("m1"), bad])
    summary = run(repo, home)
    assert summary.calls_added == 1
    assert summary.skipped == {"invalid usage": 1}
    assert ":2: " in summary.errors[0]


def test_pretty_printed_lines_parse(repo: Repository, home: Path) -> None:
    path = session_file(home)
    path.parent.mkdir(parents=True)
    pretty = orjson.dumps(line("m1"), option=orjson.OPT_INDENT_2)
    path.write_bytes(pretty + b"\n" + orjson.dumps(line("m2", "r2")) + b"\n")
    assert run(repo, home).calls_added == 2


def test_reported_cost_is_kept_with_the_computed_one(repo: Repository, home: Path) -> None:
    write(session_file(home), [line("m1", cost=0.0123)])
    run(repo, home)
    with repo.engine.connect() as conn:
        cost, status = conn.exec_driver_sql("SELECT cost_usd, cost_status FROM calls").one()
    assert (cost, status) == (12_300_000_000, "reported")
    assert "computed_cost_pico" in stored(repo)[0]["metadata"]


# -- discovery -------------------------------------------------------------------------------------


def test_discovery_follows_claude_config_dir(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    write(session_file(one, SESSION_A, "-p1"), [line("m1")])
    nested = two / "projects" / "-p2" / SESSION_B / "subagents" / "agent-x.jsonl"
    write(nested, [line("m2")])
    env = {"CLAUDE_CONFIG_DIR": f"{one},{two / 'projects'}"}
    files = sorted(discover(["claude"], env=env, home=tmp_path), key=lambda f: f.path)
    assert [(f.session_id, f.project) for f in files] == [(SESSION_A, "-p1"), (SESSION_B, "-p2")]


def test_discovery_defaults_and_other_agents(tmp_path: Path) -> None:
    write(session_file(tmp_path / ".claude"), [line("m1")])
    write(tmp_path / ".codex" / "sessions" / "2025" / "rollout-1.jsonl", [{"type": "x"}])
    (tmp_path / ".gemini" / "tmp" / "h" / "chats").mkdir(parents=True)
    (tmp_path / ".gemini" / "tmp" / "h" / "chats" / "session-1.json").write_text("{}")
    found = discover(["claude", "codex", "gemini"], env={}, home=tmp_path)
    assert sorted(f.agent for f in found) == ["claude", "codex", "gemini"]


def test_codex_rollout_imports(repo: Repository, fixtures_dir: Path, tmp_path: Path) -> None:
    summary = import_logs(repo, ["codex"], [fixtures_dir / "codex"], workers=1)
    assert summary.calls_added > 0
    again = import_logs(repo, ["codex"], [fixtures_dir / "codex"], workers=1)
    assert again.files_skipped_unchanged == 1


def _transcript_of_stream(stream: Path, session: str, at: str) -> bytes:
    """The transcript lines Claude Code writes (at time ``at``) for a stream-json run's calls."""
    lines = []
    for raw in stream.read_bytes().splitlines():
        event = orjson.loads(raw)
        if event.get("type") != "assistant":
            continue
        lines.append(
            orjson.dumps(
                {
                    "type": "assistant",
                    "sessionId": session,
                    "requestId": "req_" + event["message"]["id"][-8:],
                    "timestamp": at,
                    "cwd": "/home/dev/pager",
                    "message": event["message"],
                }
            )
        )
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("output", ["claude-stream-json.jsonl", "claude-json-success.json"])
def test_calls_recorded_by_llmledger_run_are_not_imported_again(
    tmp_path: Path, fixtures_dir: Path, output: str
) -> None:
    from llmledger.ledger import Ledger
    from llmledger.sources import parse_file

    parsed = parse_file(fixtures_dir / "claude-code" / output)
    assert parsed.summary is not None
    session = parsed.summary.session_id
    assert session is not None
    url = f"sqlite:///{tmp_path / 'l.db'}"
    with Ledger(url) as ledger, ledger.run("task", "via llmledger run"):
        ledger.record(parsed)
        during = datetime.now(UTC).isoformat()
    stream = fixtures_dir / "claude-code" / "claude-stream-json.jsonl"
    project = tmp_path / "projects" / "-home-dev-pager"
    project.mkdir(parents=True)
    # The same session's earlier turns (it was resumed by the run) are real, separate usage.
    earlier = _transcript_of_stream(stream, session, "2026-03-01T22:38:51.902Z")
    earlier = earlier.replace(b'"msg_01', b'"msg_00')
    transcript = earlier + _transcript_of_stream(stream, session, during)
    (project / f"{session}.jsonl").write_bytes(transcript)

    repo = open_repository(url)
    before = repo.counts()["calls"]
    summary = import_logs(repo, ["claude"], [tmp_path / "projects"])
    assert summary.calls_added == 3  # the three earlier messages; the run's own are copies
    assert repo.counts()["calls"] == before + 3
    repo.engine.dispose()
