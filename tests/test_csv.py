"""``--csv`` on every report and on ``runs``: read back with ``csv.DictReader``, every cell
equals the value at its column's key in the ``--json`` document's rows (numbers equal once
parsed, None an empty cell, lists JSON text); ``--breakdown`` gives a row per model that
carries its period's columns."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmledger import Usage
from llmledger.cli import _app
from llmledger.ledger import Ledger
from llmledger.reports.blocks import Block
from llmledger.reports.csv_rows import write_csv
from llmledger.reports.documents import blocks_json
from llmledger.totals import Totals

_app._register_commands()


def _lookup(column: str, row: dict[str, Any], item: dict[str, Any] | None) -> Any:
    if item is not None and column in item:
        return item[column]
    value: Any = row
    for part in column.split("."):
        if value is None:
            return None
        value = value[part]
    return value


def _assert_cell(cell: str, value: Any, column: str) -> None:
    if value is None:
        assert cell == "", column
    elif isinstance(value, bool):
        assert cell == ("true" if value else "false"), column
    elif isinstance(value, int | float):
        assert float(cell) == value, column
        if isinstance(value, int):
            assert int(cell) == value, column
    elif isinstance(value, str):
        assert cell == value, column
    else:
        assert json.loads(cell) == value, column


def assert_round_trip(rows: list[dict[str, Any]], text: str, expand: str | None = None) -> None:
    """``text`` (CSV) read back equals ``rows`` (a --json document's row list)."""
    expected: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for row in rows:
        items = row.get(expand) if expand else None
        expected.extend((row, i) for i in items) if items else expected.append((row, None))
    read = list(csv.DictReader(io.StringIO(text)))
    assert len(read) == len(expected)
    for cells, (row, item) in zip(read, expected, strict=True):
        for column, cell in cells.items():
            _assert_cell(cell, _lookup(column, row, item), column)
        # Every key of the JSON row has its column(s); the expanded list gives its items'.
        for key, value in row.items():
            if item is not None and isinstance(value, list):
                continue  # a row per model: the model's own columns say what the lists said
            assert key in cells or any(c.startswith(f"{key}.") for c in cells), key
        for key in item or {}:
            assert key in cells, key


@pytest.fixture
def cli(fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(fixtures_dir / "claude-home"))
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "no-codex"))
    monkeypatch.setenv("GEMINI_DATA_DIR", str(tmp_path / "no-gemini"))
    monkeypatch.setenv("LLMLEDGER_DB", f"sqlite:///{tmp_path / 'cli.db'}")
    runner = CliRunner()
    assert runner.invoke(_app.app, ["import", "claude"]).exit_code == 0
    return runner


def _out(cli: CliRunner, *args: str) -> str:
    result = cli.invoke(_app.app, [*args, "--no-import", "--tz", "UTC"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("report", ["daily", "weekly", "monthly", "sessions"])
@pytest.mark.parametrize("breakdown", [False, True])
def test_period_and_sessions_csv_equals_json(cli: CliRunner, report: str, breakdown: bool) -> None:
    flags = ["--breakdown"] if breakdown else []
    rows = json.loads(_out(cli, report, "--json", *flags))["rows"]
    assert rows
    text = _out(cli, report, "--csv", *flags)
    assert_round_trip(rows, text, "breakdown" if breakdown else None)
    header = next(csv.reader(io.StringIO(text)))
    if breakdown:
        # A row per model, with the period's columns first and the model's numbers after.
        assert header[:1] == ["period"]
        assert "model" in header
        assert "breakdown" not in header
        read = list(csv.DictReader(io.StringIO(text)))
        assert len(read) == sum(len(r["breakdown"]) for r in rows) > len(rows)
        for row in rows:
            mine = [r for r in read if r["period"] == row["period"]]
            assert sum(int(r["total_tokens"]) for r in mine) == row["total_tokens"]
    else:
        assert header[: len(["period", "input_tokens"])] == ["period", "input_tokens"]


def test_unreported_buckets_are_empty_cells_not_zero(cli: CliRunner) -> None:
    rows = json.loads(_out(cli, "daily", "--json"))["rows"]
    read = list(csv.DictReader(io.StringIO(_out(cli, "daily", "--csv"))))
    for row, cells in zip(rows, read, strict=True):
        for key in ("input_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd"):
            assert (cells[key] == "") == (row[key] is None), key


@pytest.mark.parametrize("group_by", ["model", "day,model,provider", "project"])
def test_tokens_csv_equals_json(cli: CliRunner, group_by: str) -> None:
    rows = json.loads(_out(cli, "tokens", "--group-by", group_by, "--json"))["rows"]
    text = _out(cli, "tokens", "--group-by", group_by, "--csv")
    assert_round_trip(rows, text)
    assert next(csv.reader(io.StringIO(text)))[0] == group_by.split(",")[0]


def test_blocks_csv_equals_json(cli: CliRunner) -> None:
    rows = json.loads(_out(cli, "blocks", "--json"))["blocks"]
    assert any(r["is_gap"] for r in rows)
    assert_round_trip(rows, _out(cli, "blocks", "--csv"))


def test_an_active_blocks_burn_rate_is_a_column_per_key() -> None:
    # The burn rate and projection are objects only on the active block: their keys become
    # columns (burn_rate.cost_per_hour), empty on the blocks that have none.
    now = datetime(2026, 11, 2, 12, 30, tzinfo=UTC)
    start = datetime(2026, 11, 2, 10, tzinfo=UTC)
    done = Block(start=start - timedelta(days=1), end=start - timedelta(hours=19), is_gap=False)
    done.totals = Totals(usage=Usage(input_tokens=10, output_tokens=1), calls=1)
    active = Block(start=start, end=start + timedelta(hours=5), is_gap=False, is_active=True)
    active.first_at, active.last_at = start, start + timedelta(hours=2)
    active.totals = Totals(usage=Usage(input_tokens=1200, output_tokens=60), calls=3)
    rows = blocks_json([done, active], now, UTC)["blocks"]
    assert rows[0]["burn_rate"] is None
    assert rows[1]["burn_rate"] is not None
    out = io.StringIO()
    write_csv(rows, out)
    assert_round_trip(rows, out.getvalue())
    header = next(csv.reader(io.StringIO(out.getvalue())))
    assert "burn_rate.tokens_per_minute" in header
    assert "projection.cost_usd" in header


def test_runs_csv_equals_json(sqlite_url: str) -> None:
    with Ledger(sqlite_url) as ledger, ledger.run("plan", "Refactor, part 1", key="plan-1"):
        with ledger.run("task", 'Fix "quotes"', key="1.1"):
            ledger.record(Usage(input_tokens=100, output_tokens=10), model="gpt-4o")
        with ledger.run("task", "Docs\nsecond line", key="1.2"):
            ledger.record(Usage(input_tokens=5, cache_read_tokens=0), model="m-unknown")
    runner = CliRunner()
    result = runner.invoke(_app.app, ["runs", "--db", sqlite_url, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["runs"]
    text = runner.invoke(_app.app, ["runs", "--db", sqlite_url, "--csv"]).output
    assert_round_trip(rows, text)
    header = next(csv.reader(io.StringIO(text)))
    assert "inclusive.cost_usd" in header
    assert "inclusive" not in header
    # Commas, quotes and newlines in names survive the round trip (csv quoting).
    assert {r["name"] for r in csv.DictReader(io.StringIO(text))} == {r["name"] for r in rows}


@pytest.mark.parametrize("command", [["daily"], ["sessions"], ["blocks"], ["tokens"], ["runs"]])
def test_csv_and_json_together_is_an_error_naming_both(
    cli: CliRunner, command: list[str], sqlite_url: str
) -> None:
    result = cli.invoke(_app.app, [*command, "--csv", "--json", "--db", sqlite_url])
    assert result.exit_code == 2
    assert "--json" in result.output
    assert "--csv" in result.output


def test_an_empty_report_prints_no_csv(cli: CliRunner) -> None:
    assert _out(cli, "daily", "--csv", "--since", "2099-01-01") == ""


def test_lists_left_in_a_row_are_json_text() -> None:
    out = io.StringIO()
    write_csv([{"period": "p", "models": ["a", "b,c"], "flag": True, "n": None}], out)
    cells = next(csv.DictReader(io.StringIO(out.getvalue())))
    assert json.loads(cells["models"]) == ["a", "b,c"]
    assert cells["flag"] == "true"
    assert cells["n"] == ""
