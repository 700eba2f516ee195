"""Codex parity: ``llmledger daily --source codex --json`` against ``ccusage codex daily --json``
of ccusage 20.0.24, saved once per tree (tests/fixtures/codex-parity/README.md says how).

On every shape that release reads, tokens are equal, cost within one cent and each day's
models the same. Where we differ on purpose (docs/sources.md, "Codex: differences from
ccusage"), the test pins both sides of the difference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmledger.cli import _app

_app._register_commands()

PARITY = Path(__file__).parent / "fixtures" / "codex-parity"
#: Trees where llmledger must give ccusage 20.0.24's numbers (build_trees.py says what each holds).
SAME = [
    "last-only",
    "turn-model",
    "spaced",
    "days",
    "reemitted",
    "numeric-time",
    "forked",
    "model-fields",
]
_TOKENS = (
    ("input_tokens", "inputTokens"),
    ("cache_read_tokens", "cacheReadTokens"),
    ("output_tokens", "outputTokens"),
    ("reasoning_tokens", "reasoningOutputTokens"),
    ("total_tokens", "totalTokens"),
)


def ours(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tz: str = "UTC") -> Any:
    """Our ``daily --source codex --json`` on the tree ``case`` (a folder of PARITY, or of the
    repository: ``examples/codex-home``)."""
    home = PARITY / case if (PARITY / case).is_dir() else PARITY.parents[2] / case
    monkeypatch.setenv("CODEX_HOME", str(home))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "no-claude"))
    monkeypatch.setenv("GEMINI_DATA_DIR", str(tmp_path / "no-gemini"))
    monkeypatch.setenv("LLMLEDGER_DB", f"sqlite:///{tmp_path / 'ledger.db'}")
    args = ["daily", "--source", "codex", "--json", "--tz", tz, "--ignore-overrides"]
    result = CliRunner().invoke(_app.app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def theirs(name: str) -> Any:
    return json.loads((PARITY / "expected" / f"{name}.json").read_text())


def _assert_same_day(row: dict[str, Any], day: dict[str, Any]) -> None:
    assert row["period"] == day["date"]
    for mine, its in _TOKENS:
        assert row[mine] == day[its], (day["date"], mine)
    # Codex logs no cache writes: we say "not reported" (null) where ccusage prints 0.
    assert row["cache_write_tokens"] is None
    assert day["cacheCreationTokens"] == 0
    assert row["unpriced_calls"] == 0
    assert abs(row["cost_usd"] - day["costUSD"]) < 0.01
    assert sorted(row["models"]) == sorted(day["models"])
    # Each model's tokens that day, too.
    for item in row["breakdown"]:
        per_model = day["models"][item["model"]]
        assert per_model["isFallback"] is False
        for mine, its in _TOKENS:
            assert item[mine] == per_model[its], (day["date"], item["model"], mine)


@pytest.mark.parametrize(
    ("case", "tz", "expected"),
    [
        *((c, "UTC", c) for c in SAME),
        ("days", "America/Los_Angeles", "days.America-Los_Angeles"),
        ("examples/codex-home", "UTC", "examples-codex-home"),  # the README's main job
    ],
)
def test_daily_equals_ccusage_20_0_24(
    case: str, tz: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, its = ours(case, tmp_path, monkeypatch, tz), theirs(expected)
    assert its["daily"], "ccusage read this tree"
    assert len(mine["rows"]) == len(its["daily"])
    for row, day in zip(mine["rows"], its["daily"], strict=True):
        _assert_same_day(row, day)
    for mine_key, its_key in _TOKENS:
        assert mine["totals"][mine_key] == its["totals"][its_key]
    assert abs(mine["totals"]["cost_usd"] - its["totals"]["costUSD"]) < 0.01


def test_the_forked_tree_counts_each_parent_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two parents of 22,200 tokens each, and a turn of 12,900 in each child: the children's
    # replays of their parents' counts (re-timestamped to the fork's creation second, or
    # timestamped before the sub-agent's creation) only move their baselines.
    assert ours("forked", tmp_path, monkeypatch)["totals"]["total_tokens"] == 2 * (22200 + 12900)


# -- where we differ on purpose ----------------------------------------------------------------


def test_pretty_printed_lines_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ccusage 20.0.24 reads a line only when its top-level "type" is written compactly:
    # indented objects and Python's default separators give it nothing. We parse them.
    assert theirs("pretty")["daily"] == []
    [row] = ours("pretty", tmp_path, monkeypatch)["rows"]
    # The two sessions' final cumulative totals: 4,000 + 250 + 4,800 + 600 and 3,000 + 150 +
    # 3,500 + 410 tokens.
    assert row["total_tokens"] == 9650 + 7060
    assert row["models"] == ["gpt-5", "gpt-5-codex"]


def test_a_count_before_any_model_is_unpriced_not_gpt_5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ccusage prices a count logged before any turn_context as gpt-5 ("isFallback"); we keep
    # its model unknown: its tokens count, its cost is unknown and said to be.
    [day] = theirs("no-model")["daily"]
    assert day["models"]["gpt-5"]["isFallback"] is True
    [row] = ours("no-model", tmp_path, monkeypatch)["rows"]
    for mine, its in _TOKENS:
        assert row[mine] == day[its]
    assert row["models"] == ["gpt-5-codex"]
    assert row["unpriced_calls"] == 1
    unknown = next(b for b in row["breakdown"] if b["model"] is None)
    assert unknown["cost_usd"] is None
    assert unknown["total_tokens"] == day["models"]["gpt-5"]["totalTokens"]
    assert row["cost_usd"] < day["costUSD"]


def test_a_fork_replay_spread_over_seconds_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fork whose leading counts come after its creation, each in its own second, is read as
    # its own usage; ccusage 20.0.24 leaves them out when the parent's file is there.
    [day] = theirs("fork-spread")["daily"]
    [row] = ours("fork-spread", tmp_path, monkeypatch)["rows"]
    assert day["totalTokens"] == 22200 + 12900
    assert row["total_tokens"] == day["totalTokens"] + 22200


def test_a_missing_count_is_covered_by_the_next_total(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cumulative total grew by 7,100 tokens more than the logged last_token_usage: we sum
    # the totals' differences (the calls add up to the session's final total), ccusage sums
    # last_token_usage.
    [day] = theirs("lost-count")["daily"]
    [row] = ours("lost-count", tmp_path, monkeypatch)["rows"]
    assert day["totalTokens"] == 5200 + 6300
    assert row["total_tokens"] == 15000 + 600
    assert row["cache_read_tokens"] == 7992


def test_cached_above_input_is_skipped_not_clamped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A count with more cached than input tokens cannot be split into buckets: we skip the
    # line and say so; ccusage clamps the cached count to the input.
    [day] = theirs("cached-above-input")["daily"]
    assert day["cacheReadTokens"] == 1000
    [row] = ours("cached-above-input", tmp_path, monkeypatch)["rows"]
    assert row["total_tokens"] == 5200
    assert row["calls"] == 1


# -- the replay rule, on one file ---------------------------------------------------------------


def _line(at: str, kind: str, payload: dict[str, Any]) -> str:
    return json.dumps({"timestamp": at, "type": kind, "payload": payload})


def _count(at: str, total: int) -> str:
    usage = {"input_tokens": total, "cached_input_tokens": 0, "output_tokens": 10}
    info = {"total_token_usage": usage, "last_token_usage": usage}
    return _line(at, "event_msg", {"type": "token_count", "info": info})


@pytest.mark.parametrize("child", [False, True])
def test_two_counts_in_one_second_are_a_replay_only_in_a_child(tmp_path: Path, child: bool) -> None:
    from llmledger.sources import parse_file

    meta: dict[str, Any] = {"id": "s1", "timestamp": "2025-10-20T10:00:00.000Z"}
    if child:
        meta["forked_from_id"] = "s0"
    path = tmp_path / "rollout-2025-10-20T10-00-00-s1.jsonl"
    lines = [
        _line("2025-10-20T10:00:00.000Z", "session_meta", meta),
        _line("2025-10-20T10:00:00.010Z", "turn_context", {"model": "gpt-5"}),
        _count("2025-10-20T10:00:00.300Z", 1000),
        _count("2025-10-20T10:00:00.310Z", 3000),
        _count("2025-10-20T10:00:09.000Z", 3500),
        _count("2025-10-20T10:00:00.900Z", 4000),  # out of order, in that second: own usage
    ]
    path.write_text("\n".join(lines) + "\n")
    parsed = parse_file(path)
    inputs = [c.usage.input_tokens for c in parsed.calls]
    # A child's leading counts in its creation second only move the baseline.
    assert inputs == ([500, 500] if child else [1000, 2000, 500, 500])
