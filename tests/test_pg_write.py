"""Batches of calls written in one statement (PostgreSQL: COPY, or a multi-row VALUES) keep the
upsert's rule and the roll-up exact, like the per-row writes they replaced."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from llmledger.call import Call
from llmledger.imports import import_logs
from llmledger.store import Repository, open_repository, rollup
from llmledger.store.engine import downgrade, upgrade
from llmledger.store.pg_write import COPY_MIN_ROWS, upsert_calls
from llmledger.store.repository import _stored_value
from llmledger.usage import Usage

_ROLLUP = "SELECT * FROM call_rollup WHERE calls <> 0 ORDER BY bucket, source, model"
_MEASURES = " OR ".join(f"{c} <> 0" for c in rollup.MEASURE_COLUMNS)
_START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def repo(db_url: str) -> Iterator[Repository]:
    repo = open_repository(db_url)
    yield repo
    repo.engine.dispose()


@pytest.fixture
def pg_repo(pg_url: str) -> Iterator[Repository]:
    repo = open_repository(pg_url)
    yield repo
    repo.engine.dispose()


def _assert_rollup_is_a_rebuild(repo: Repository) -> None:
    with repo.engine.connect() as conn:
        kept = conn.exec_driver_sql(_ROLLUP).all()
        # A key whose calls all went keeps a row of zeros, nothing else.
        emptied = f"SELECT COUNT(*) FROM call_rollup WHERE calls = 0 AND ({_MEASURES})"
        assert conn.exec_driver_sql(emptied).scalar_one() == 0
        conn.rollback()
        with conn.begin() as transaction:  # rebuilt, compared and rolled back
            rollup.rebuild(conn)
            assert conn.exec_driver_sql(_ROLLUP).all() == kept
            transaction.rollback()


def _call(rng: random.Random, key: str) -> Call:
    def tokens() -> int | None:
        return None if rng.random() < 0.15 else rng.randrange(0, 5_000)

    output = tokens()
    meta: dict[str, Any] = {}
    if rng.random() < 0.3:
        meta["computed_cost_pico"] = rng.randrange(0, 10**9)
    return Call(
        usage=Usage(
            input_tokens=tokens(),
            cache_read_tokens=tokens(),
            cache_write_tokens=tokens(),
            output_tokens=output,
            reasoning_tokens=None if output is None else rng.randrange(0, output + 1),
        ),
        source=rng.choice(["api", "claude-code"]),
        model=rng.choice(["m-a", "m-b", None]),
        dedupe_key=key,
        started_at=None if rng.random() < 0.1 else _START + timedelta(minutes=rng.randrange(90)),
        reported_cost_usd=None if rng.random() < 0.5 else Decimal(rng.randrange(1, 10**6)) / 10**6,
        project="50% o'clock",
        metadata=meta,
    )


def _total(call: Call) -> int:
    u = call.usage
    parts = (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens)
    return sum(p or 0 for p in parts)


@pytest.mark.parametrize("seed", range(4))
def test_mixed_batches_keep_the_upsert_rule_and_the_rollup_exact(
    repo: Repository, seed: int
) -> None:
    # Batches large (COPY) and small (VALUES), with copies of a call inside a batch and across
    # batches, larger and not; deletes and updates between them. After each step the stored
    # calls are what the rule says, each batch counts what it inserted or replaced, and the
    # roll-up equals one rebuilt from the calls.
    rng = random.Random(seed)
    stored: dict[str, int] = {}  # key -> the stored copy's total
    for step in range(8):
        size = rng.choice([1, 5, COPY_MIN_ROWS - 1, COPY_MIN_ROWS, 300])
        batch = [_call(rng, f"k{rng.randrange(120)}") for _ in range(size)]
        expected = 0
        best: dict[str, int] = {}
        for call in batch:  # within a batch the first copy wins unless a later one is larger
            assert call.dedupe_key is not None
            if call.dedupe_key not in best or _total(call) > best[call.dedupe_key]:
                best[call.dedupe_key] = _total(call)
        for key, total in best.items():
            if key not in stored or total > stored[key]:
                stored[key] = total
                expected += 1
        assert repo.add_calls(batch) == expected
        with repo.engine.begin() as conn:
            if step % 3 == 2:
                gone = sorted(rng.sample(sorted(stored), k=min(10, len(stored))))
                conn.execute(
                    sa.text("DELETE FROM calls WHERE dedupe_key IN :k").bindparams(
                        sa.bindparam("k", expanding=True)
                    ),
                    {"k": gone},
                )
                for key in gone:
                    del stored[key]
            if step % 4 == 3:  # one update that moves contributions, one that moves none
                conn.exec_driver_sql(
                    "UPDATE calls SET model = 'm-c', output_tokens = 7 WHERE dedupe_key < 'k3'"
                )
                conn.exec_driver_sql("UPDATE calls SET project = 'p2' WHERE dedupe_key > 'k5'")
                changed = (
                    "SELECT dedupe_key, "
                    + " + ".join(
                        f"COALESCE({c}, 0)"
                        for c in (
                            "input_tokens",
                            "cache_read_tokens",
                            "cache_write_tokens",
                            "output_tokens",
                        )
                    )
                    + " FROM calls WHERE dedupe_key < 'k3'"
                )
                stored.update({k: int(t) for k, t in conn.exec_driver_sql(changed)})
        with repo.engine.connect() as conn:
            totals = (
                "SELECT dedupe_key, "
                + " + ".join(
                    f"COALESCE({c}, 0)"
                    for c in (
                        "input_tokens",
                        "cache_read_tokens",
                        "cache_write_tokens",
                        "output_tokens",
                    )
                )
                + " FROM calls"
            )
            assert {k: int(t) for k, t in conn.exec_driver_sql(totals)} == stored
        _assert_rollup_is_a_rebuild(repo)


@pytest.mark.postgres
@pytest.mark.parametrize("rows", [3, COPY_MIN_ROWS + 1])
def test_shared_values_are_written_as_given(pg_repo: Repository, rows: int) -> None:
    # The import's shared columns go into the statement as literals: quotes and % stay as
    # they are, in both forms of the statement.
    repo = pg_repo
    columns = ["dedupe_key", "recorded_at", "metadata", "status", "cost_status", "token_provenance"]
    values = [
        (f"k{i}", 1, orjson.dumps({"i": i}).decode(), "ok", "unpriced", "reported")
        for i in range(rows)
    ]
    with repo.engine.begin() as conn:
        written = upsert_calls(
            conn, columns, values, (("source", "api"), ("project", "50% o'clock"))
        )
        again = upsert_calls(conn, columns, values, (("source", "api"), ("project", "x")))
    assert (written, again) == (rows, 0)
    with repo.engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT DISTINCT source, project, metadata ->> 'i' IS NOT NULL FROM calls"
        ).all()
    assert stored == [("api", "50% o'clock", True)]


def _line(msg_id: str, out: int) -> dict[str, Any]:
    return {
        "type": "assistant",
        "sessionId": "s1",
        "cwd": "/home/dev/p",
        "timestamp": "2025-06-10T09:00:00.000Z",
        "requestId": f"req_{msg_id}",
        "message": {
            "id": msg_id,
            "model": "claude-sonnet-4-20250514",
            "content": [{"type": "text", "text": "ok"}],
            "usage": {"input_tokens": 1, "output_tokens": out},
        },
    }


@pytest.mark.postgres
def test_a_refused_value_in_a_copied_batch_skips_only_its_call(
    pg_repo: Repository, tmp_path: Path
) -> None:
    # A batch large enough to be copied, with one value PostgreSQL refuses: the batch is
    # written again row by row, and only that call is left out (and named).
    repo = pg_repo
    lines = [_line(f"m{i}", i) for i in range(3 * COPY_MIN_ROWS)]
    lines[70] = _line("nul\x00id", 5)
    lines[71] = _line("m" * 300, 5)
    path = tmp_path / "claude" / "projects" / "p" / "s1.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    summary = import_logs(repo, ["claude"], [tmp_path / "claude"], workers=1)
    assert summary.calls_added == len(lines) - 2
    assert summary.skipped == {"not stored": 2}
    _assert_rollup_is_a_rebuild(repo)
    with repo.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT SUM(calls) FROM call_rollup").scalar_one() == (
            len(lines) - 2
        )


_TRIGGERS = (
    "SELECT tgname, (tgtype & 1) = 1 FROM pg_trigger JOIN pg_class ON pg_class.oid = tgrelid "
    "WHERE relname = 'calls' AND relnamespace = current_schema()::regnamespace "
    "AND NOT tgisinternal ORDER BY tgname"
)


@pytest.mark.postgres
def test_0006_makes_the_postgresql_rollup_triggers_statement_level_and_back(
    pg_url: str,
) -> None:
    engine = sa.create_engine(pg_url)
    try:
        _migrate_0005_0006_and_back(engine)
    finally:
        engine.dispose()


def _add_below_head(repo: Repository, items: list[Call]) -> None:
    """Store calls in a ledger below the head revision: the repository writes every column
    of head's ``calls``, a later migration's too, so only those this revision has go in."""
    present = {column["name"] for column in sa.inspect(repo.engine).get_columns("calls")}
    rows = repo.call_rows(items)
    columns = [name for name in rows[0] if name in present]
    values = [tuple(_stored_value(name, row[name]) for name in columns) for row in rows]
    with repo.engine.begin() as conn:
        upsert_calls(conn, columns, values)


def _migrate_0005_0006_and_back(engine: sa.Engine) -> None:
    upgrade(engine, "0005")
    repo = Repository(engine)
    names = ["calls_rollup_delete", "calls_rollup_insert", "calls_rollup_update"]
    with engine.connect() as conn:  # per row before (two triggers: one per event pair)
        assert conn.exec_driver_sql(_TRIGGERS).all() == [
            ("calls_rollup_insert", True),
            ("calls_rollup_update", True),
        ]
    rng = random.Random(1)
    _add_below_head(repo, [_call(rng, f"a{i}") for i in range(100)])
    upgrade(engine, "0006")  # 0007 adds the call_metrics triggers beside these
    with engine.connect() as conn:
        assert conn.exec_driver_sql(_TRIGGERS).all() == [(n, False) for n in names]
    _add_below_head(repo, [_call(rng, f"a{i}") for i in range(50, 150)])
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM calls WHERE dedupe_key < 'a3'")
    _assert_rollup_is_a_rebuild(repo)
    downgrade(engine, "0005")
    with engine.connect() as conn:
        assert [row[1] for row in conn.exec_driver_sql(_TRIGGERS)] == [True, True]
    _add_below_head(repo, [_call(rng, f"a{i}") for i in range(100, 200)])
    _assert_rollup_is_a_rebuild(repo)
