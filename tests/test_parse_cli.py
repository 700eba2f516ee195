"""``llmledger parse``: JSON output shape and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import llmledger.cli.parse  # noqa: F401  (registers the command)
from llmledger.cli._app import app

runner = CliRunner()


def test_parse_json_for_a_fixture(fixtures_dir: Path) -> None:
    path = fixtures_dir / "claude-code" / "claude-json-success.json"
    result = runner.invoke(app, ["parse", str(path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"format", "calls", "totals", "skipped"}
    assert doc["skipped"] == []
    assert doc["format"] == "claude_code_result"
    assert doc["totals"]["total_tokens"] == 47324
    assert doc["totals"]["reasoning_tokens"] == 120
    assert doc["totals"]["cost_usd"] == 0.0782813
    assert doc["totals"]["unpriced_calls"] == 0
    assert {c["cost_status"] for c in doc["calls"]} == {"reported"}
    assert set(doc["calls"][0]) == {
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
        "output_tokens",
        "reasoning_tokens",
        "total_tokens",
        "model",
        "provider",
        "cost_usd",
        "cost_status",
    }


def test_parse_json_keeps_unreported_fields_null(fixtures_dir: Path) -> None:
    result = runner.invoke(app, ["parse", str(fixtures_dir / "openai/openai-chat.json"), "--json"])
    assert result.exit_code == 0, result.output
    totals = json.loads(result.stdout)["totals"]
    assert totals["cache_write_tokens"] is None
    assert totals["input_tokens"] == 563


def test_parse_table(fixtures_dir: Path) -> None:
    path = fixtures_dir / "codex" / "codex-rollout.jsonl"
    result = runner.invoke(app, ["parse", str(path), "--format", "codex_rollout"])
    assert result.exit_code == 0, result.output
    assert "codex_rollout" in result.stdout


def test_parse_error_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"object": "chat.completion", "usage": {"prompt_tokens": 1, '
        '"completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 5}}}'
    )
    result = runner.invoke(app, ["parse", str(bad)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "prompt_tokens" in result.output
    assert str(bad) in result.output
    assert len(result.output.strip().splitlines()) == 1
