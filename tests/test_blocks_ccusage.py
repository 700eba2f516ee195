"""Blocks against ccusage 20.0.24's saved ``blocks --json`` on a generated tree
(tests/fixtures/ccusage: the tree, the script that writes it, the command that made the output),
and the blocks options: --active, --recent, --token-limit, --session-length."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmledger.cli import _app
from llmledger.imports import import_logs
from llmledger.reports import Filters
from llmledger.reports.blocks import (
    active_block,
    blocks,
    max_block_tokens,
    recent_blocks,
    set_token_limit,
    token_limit_of,
)
from llmledger.store import Repository, open_repository

_CCUSAGE = Path(__file__).parent / "fixtures" / "ccusage"
_TOKENS = {
    "inputTokens": "input_tokens",
    "outputTokens": "output_tokens",
    "cacheCreationInputTokens": "cache_write_tokens",
    "cacheReadInputTokens": "cache_read_tokens",
}
# After every call of the tree: no block is active, as in ccusage's saved output.
_LATER = datetime(2026, 1, 1, tzinfo=UTC)


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def repo(sqlite_url: str) -> Repository:
    repo = open_repository(sqlite_url)
    import_logs(repo, ["claude"], [_CCUSAGE / "blocks-tree"], workers=1)
    return repo


@pytest.mark.parametrize(
    ("saved", "hours"),
    [("blocks-20.0.24.json", 5), ("blocks-session-length-3-20.0.24.json", 3)],
)
def test_blocks_equal_ccusage(repo: Repository, saved: str, hours: float) -> None:
    theirs: list[dict[str, Any]] = json.loads((_CCUSAGE / saved).read_text())["blocks"]
    ours = blocks(repo, hours=hours, now=_LATER)
    assert [(b.start, b.end, b.is_gap) for b in ours] == [
        (_iso(t["startTime"]), _iso(t["endTime"]), t["isGap"]) for t in theirs
    ]
    for mine, their in zip(ours, theirs, strict=True):
        usage = mine.totals.usage
        assert (usage.total_tokens or 0) == their["totalTokens"], their["id"]
        for their_name, our_name in _TOKENS.items():
            assert (getattr(usage, our_name) or 0) == their["tokenCounts"][their_name]
        assert mine.entries == their["entries"]
        assert mine.models == their["models"]
        last = their["actualEndTime"]
        assert mine.last_at == (None if last is None else _iso(last))
        assert mine.is_active is their["isActive"] is False
        # Both price these models at the same rates: equal to the cent.
        assert round(float(mine.totals.cost_usd or 0), 2) == round(their["costUSD"], 2)


def test_the_active_block_follows_now(repo: Repository) -> None:
    # 2025-07-06 08:00 holds one call at 08:00:00 (the tree's last): active until 13:00.
    inside = datetime(2025, 7, 6, 9, 30, tzinfo=UTC)
    found = blocks(repo, now=inside)
    assert [b.is_active for b in found].count(True) == 1
    assert found[-1].is_active
    assert not blocks(repo, now=datetime(2025, 7, 6, 13, 0, tzinfo=UTC))[-1].is_active
    # The same block found walking back from the latest call, without the whole history.
    fast = active_block(repo, now=inside)
    assert fast is not None
    assert (fast.start, fast.entries, fast.totals) == (
        found[-1].start,
        found[-1].entries,
        found[-1].totals,
    )
    assert active_block(repo, now=_LATER) is None


def test_active_block_walks_back_through_a_chain(repo: Repository) -> None:
    # 2025-07-02: calls 50 minutes apart from 10:00 to 21:40 make blocks at 13:00 (the day's
    # first call at 08:44 is after a gap) and 18:00; at 21:45 the 18:00 block is active, and
    # its start depends on the calls since 08:44. (The calls of later days are left out: the
    # active block is the last one.)
    at = datetime(2025, 7, 2, 21, 45, tzinfo=UTC)
    upto = Filters(until=at)
    whole = blocks(repo, now=at, filters=upto)
    fast = active_block(repo, now=at, filters=upto)
    assert fast is not None
    assert fast.start == whole[-1].start == datetime(2025, 7, 2, 18, 0, tzinfo=UTC)
    assert fast.totals == whole[-1].totals
    assert active_block(repo, now=at, hours=3, filters=upto) is not None


def test_burn_rate_and_projection_of_the_active_block(repo: Repository) -> None:
    at = datetime(2025, 7, 2, 21, 45, tzinfo=UTC)
    block = active_block(repo, now=at, filters=Filters(until=at))
    assert block is not None
    assert block.first_at is not None
    assert block.last_at is not None
    rate = block.burn_rate()
    projection = block.projection(at)
    assert rate is not None
    assert projection is not None
    minutes = (block.last_at - block.first_at).total_seconds() / 60
    total = block.totals.usage.total_tokens or 0
    assert rate["tokens_per_minute"] == pytest.approx(total / minutes)
    assert projection["remaining_minutes"] == pytest.approx(75)  # 21:45 to 23:00
    assert projection["total_tokens"] == pytest.approx(total + total / minutes * 75)


def test_token_limit_max_is_the_largest_finished_block(repo: Repository) -> None:
    at = datetime(2025, 7, 2, 21, 45, tzinfo=UTC)
    found = blocks(repo, now=at, filters=Filters(until=at))
    largest = max_block_tokens(found)
    assert largest == 70913  # ccusage's 2025-07-01T09:00 block
    assert token_limit_of("max", found) == largest
    assert token_limit_of("50_000", found) == 50000
    for bad in ("0", "-5", "lots", "1.5"):
        with pytest.raises(ValueError, match="token limit"):
            token_limit_of(bad, found)
    set_token_limit(found, 1000)
    active = found[-1]
    status = active.limit_status(at)
    assert status is not None
    assert status["status"] == "exceeds"
    assert status["projected_tokens"] > (active.totals.usage.total_tokens or 0)
    set_token_limit(found, 10**9)
    ok = active.limit_status(at)
    assert ok is not None
    assert ok["status"] == "ok"
    assert ok["percent_used"] == pytest.approx((active.totals.usage.total_tokens or 0) / 1e7)
    assert all(b.limit_status(at) is None for b in found if b.is_gap)


def test_recent_keeps_three_days_and_the_active_block(repo: Repository) -> None:
    found = blocks(repo, now=datetime(2025, 7, 6, 9, 30, tzinfo=UTC))
    kept = recent_blocks(found, datetime(2025, 7, 6, 9, 30, tzinfo=UTC))
    assert min(b.start for b in kept) >= datetime(2025, 7, 3, 9, 30, tzinfo=UTC)
    assert kept[-1].is_active
    assert recent_blocks(blocks(repo, now=_LATER), _LATER) == []


def _cli(url: str, *args: str) -> Any:
    args = ("blocks", "--no-import", "--db", url, *args)
    result = CliRunner().invoke(_app.app, list(args), env={"COLUMNS": "220"})
    return result


def test_cli_options(repo: Repository, sqlite_url: str) -> None:
    _app._register_commands(["blocks"])
    doc = json.loads(_cli(sqlite_url, "--json", "--token-limit", "max").stdout)
    real = [b for b in doc["blocks"] if not b["is_gap"]]
    assert all(b["token_limit"]["limit"] == 70913 for b in real)
    assert real[0]["token_limit"]["percent_used"] == pytest.approx(100)
    assert all(b["token_limit"] is None for b in doc["blocks"] if b["is_gap"])
    three = json.loads(_cli(sqlite_url, "--json", "-n", "3").stdout)["blocks"]
    assert len(three) == 13
    assert json.loads(_cli(sqlite_url, "--json", "--session-length", "3").stdout)["blocks"] == three
    # Every call is in 2025: nothing recent, nothing active (the real clock).
    assert json.loads(_cli(sqlite_url, "--json", "--recent").stdout) == {"blocks": []}
    assert json.loads(_cli(sqlite_url, "--json", "--active").stdout) == {"blocks": []}
    table = _cli(sqlite_url, "--token-limit", "100000")
    assert table.exit_code == 0
    assert "% of limit" in table.stdout
    assert "70.9%" in table.stdout
    refused = _cli(sqlite_url, "--token-limit", "lots")
    assert refused.exit_code == 2
    assert "--token-limit" in refused.stderr


def test_cli_warns_when_the_projection_passes_the_limit(
    repo: Repository, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmledger.cli.reports as reports_cli

    _app._register_commands(["blocks"])
    at = datetime(2025, 7, 2, 21, 45, tzinfo=UTC)

    class _Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return at

    monkeypatch.setattr(reports_cli, "datetime", _Clock)
    until = ("--until", "2025-07-02T21:45:00+00:00", "--tz", "UTC")
    result = _cli(sqlite_url, "--active", "--token-limit", "1000", *until)
    assert result.exit_code == 0
    assert "ACTIVE" in result.stdout
    assert "tokens/min" in result.stdout
    assert "1h 15m left" in result.stdout
    assert "warning: the active block's projected" in result.stderr
    assert "exceeds the limit of 1,000" in result.stderr
    quiet = _cli(sqlite_url, "--active", "--token-limit", "1000000000", *until)
    assert "warning" not in quiet.stderr
    assert timedelta(hours=1, minutes=15) == datetime(2025, 7, 2, 23, 0, tzinfo=UTC) - at
