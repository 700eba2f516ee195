"""Budgets: windows computed by hand (DST, rolling, month), scopes (workflow subtree, agent,
model), unpriced calls, bad input, reserve/settle/release/expiry, pace and forecast."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from llmledger import BudgetExceeded, Ledger, Usage, UsageError
from llmledger.budgets import (
    Window,
    budget_status,
    get_budget,
    list_budgets,
    make_budget,
    remove_budget,
    set_budget,
)
from llmledger.budgets.current import current_reservation
from llmledger.budgets.guard import call_context
from llmledger.budgets.reserve import reserve

PARIS = ZoneInfo("Europe/Paris")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    with Ledger(db_url) as ledger:
        yield ledger


# -- windows -----------------------------------------------------------------------------


def test_a_paris_day_across_spring_forward_is_23_hours() -> None:
    # 2026-03-29: clocks go from 02:00 CET (+1) to 03:00 CEST (+2).
    start, end = Window.parse("day").bounds(_utc("2026-03-29T12:00:00"), PARIS)
    assert start == _utc("2026-03-28T23:00:00")
    assert end == _utc("2026-03-29T22:00:00")
    assert end - start == timedelta(hours=23)


def test_a_paris_day_across_fall_back_is_25_hours() -> None:
    # 2026-10-25: clocks go from 03:00 CEST (+2) back to 02:00 CET (+1).
    start, end = Window.parse("day").bounds(_utc("2026-10-25T01:30:00"), PARIS)
    assert start == _utc("2026-10-24T22:00:00")
    assert end == _utc("2026-10-25T23:00:00")
    assert end - start == timedelta(hours=25)


def test_the_local_day_not_the_utc_day() -> None:
    # 23:30 UTC on the 3rd is 00:30 on the 4th in Paris (CET).
    start, end = Window.parse("day").bounds(_utc("2026-12-03T23:30:00"), PARIS)
    assert start == _utc("2026-12-03T23:00:00")
    assert end == _utc("2026-12-04T23:00:00")


def test_rolling_24h_ends_now() -> None:
    now = _utc("2026-12-03T16:00:00")
    assert Window.parse("rolling:24h").bounds(now, PARIS) == (_utc("2026-12-02T16:00:00"), now)


def test_month_and_week_in_new_york() -> None:
    zone = ZoneInfo("America/New_York")  # DST from 2026-03-08
    now = _utc("2026-03-15T12:00:00")
    assert Window.parse("month").bounds(now, zone) == (
        _utc("2026-03-01T05:00:00"),  # EST, -5
        _utc("2026-04-01T04:00:00"),  # EDT, -4
    )
    # 2026-03-15 is a Sunday: the week began on Monday the 9th (EDT).
    assert Window.parse("week").bounds(now, zone) == (
        _utc("2026-03-09T04:00:00"),
        _utc("2026-03-16T04:00:00"),
    )
    december = Window.parse("month").bounds(_utc("2026-12-31T23:00:00"), ZoneInfo("UTC"))
    assert december == (_utc("2026-12-01T00:00:00"), _utc("2027-01-01T00:00:00"))


def test_total_has_no_bounds() -> None:
    assert Window.parse("total").bounds(_utc("2026-12-03T00:00:00"), PARIS) == (None, None)


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit_usd": "0"}, "limit"),
        ({"limit_usd": "-5"}, "limit"),
        ({"limit_usd": "lots"}, "limit"),
        ({"window": "fortnight"}, "window"),
        ({"window": "rolling:0h"}, "window"),
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"scope": ["team=x"]}, "scope"),
        ({"scope": ["agent"]}, "scope"),
        ({"action": "stop"}, "action"),
        ({"thresholds": "50,lots"}, "warn"),
        ({"notify": "ftp://x"}, "notify"),
    ],
)
def test_bad_input_names_the_option(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"limit_usd": "1", **kwargs}
    limit = args.pop("limit_usd")
    with pytest.raises(UsageError) as caught:
        make_budget("b", limit, **args)  # type: ignore[arg-type]
    assert caught.value.field == field


# -- spend and scopes --------------------------------------------------------------------


def _call(ledger: Ledger, cost: str | None, at: str, *, model: str = "m", **kw: object) -> None:
    recorded = ledger.record(
        Usage(input_tokens=10, output_tokens=5),
        model=model,
        cost_usd=cost,
        started_at=_utc(at),
        **kw,  # type: ignore[arg-type]
    )
    assert recorded


def test_rolling_window_counts_only_the_last_24_hours(ledger: Ledger) -> None:
    now = _utc("2026-12-03T16:00:00")
    _call(ledger, "1.00", "2026-12-02T15:59:59")  # just outside
    _call(ledger, "2.00", "2026-12-02T16:00:00")  # the first instant inside
    _call(ledger, "3.00", "2026-12-03T15:00:00")
    budget = make_budget("r", "10", window="rolling:24h")
    status = budget_status(ledger.repository, budget, now=now)
    assert status.spent_usd == Decimal("5.00")
    assert status.calls == 2
    assert status.resets_at is None


def test_a_paris_day_budget_counts_the_paris_day(ledger: Ledger) -> None:
    now = _utc("2026-03-29T20:00:00")
    _call(ledger, "1", "2026-03-28T22:59:59")  # 23:59:59 CET on the 28th
    _call(ledger, "2", "2026-03-28T23:00:00")  # local midnight
    _call(ledger, "4", "2026-03-29T21:59:59")  # 23:59:59 CEST on the 29th (after now: counted)
    _call(ledger, "8", "2026-03-29T22:00:00")  # the next day
    budget = make_budget("d", "100", window="day", tz="Europe/Paris")
    status = budget_status(ledger.repository, budget, now=now)
    assert status.spent_usd == Decimal(6)
    assert status.window_start == _utc("2026-03-28T23:00:00")
    assert status.resets_at == _utc("2026-03-29T22:00:00")


def test_workflow_scope_covers_the_run_key_and_its_subtree(ledger: Ledger) -> None:
    at = "2026-12-03T10:00:00"
    with ledger.run("workflow", key="wf-1"):
        _call(ledger, "1", at)
        with ledger.run("task", key="t1"), ledger.run("attempt"):
            _call(ledger, "2", at)  # two levels down
    with ledger.run("workflow", key="wf-2"):
        _call(ledger, "4", at)
    _call(ledger, "8", at)  # no run
    status = budget_status(
        ledger.repository,
        make_budget("w", "100", scope={"workflow": "wf-1"}),
        now=_utc("2026-12-03T12:00:00"),
    )
    assert status.spent_usd == Decimal(3)
    assert status.calls == 2


def test_agent_and_model_scopes(ledger: Ledger) -> None:
    at = "2026-12-03T10:00:00"
    now = _utc("2026-12-03T12:00:00")
    with ledger.run("task", agent="claude"):
        _call(ledger, "1", at, model="claude-sonnet-4-5")
        _call(ledger, "2", at, model="gpt-4o")
    with ledger.run("task", agent="codex"):
        _call(ledger, "4", at, model="gpt-4o")
    repo = ledger.repository
    agent = budget_status(repo, make_budget("a", "100", scope=["agent=claude"]), now=now)
    model = budget_status(repo, make_budget("m", "100", scope=["model=gpt-4o"]), now=now)
    both = budget_status(
        repo, make_budget("b", "100", scope=["agent=claude", "model=gpt-4o"]), now=now
    )
    assert (agent.spent_usd, model.spent_usd, both.spent_usd) == (3, 6, 2)


def test_unpriced_calls_are_counted_never_zero(ledger: Ledger) -> None:
    at = "2026-12-03T10:00:00"
    _call(ledger, "1", at, model="m")
    _call(ledger, None, at, model="no-such-model-anywhere")
    status = budget_status(ledger.repository, make_budget("u", "10"), now=_utc(at))
    assert status.spent_usd == Decimal(1)
    assert status.unpriced_calls == 1
    assert status.calls == 2
    assert status.to_dict()["unpriced_calls"] == 1


# -- pace and forecast -------------------------------------------------------------------


def test_forecast_and_overrun_by_hand(ledger: Ledger) -> None:
    # A UTC day, 6 hours in, $3 spent: $0.50/h; at that pace the day ends at 3 + 0.5 × 18 =
    # $12, and the $10 limit is crossed after (10 - 3) / 0.5 = 14 more hours.
    now = _utc("2026-12-03T06:00:00")
    _call(ledger, "1", "2026-12-03T01:00:00")
    _call(ledger, "2", "2026-12-03T05:30:00")  # in the last hour
    status = budget_status(ledger.repository, make_budget("f", "10", window="day"), now=now)
    assert status.burn_usd_per_hour == Decimal("0.5")
    assert status.burn_last_hour_usd_per_hour == Decimal(2)
    assert status.forecast_usd == Decimal(12)
    assert status.overrun_at == _utc("2026-12-03T20:00:00")
    assert status.remaining_usd == Decimal(7)
    slow = budget_status(ledger.repository, make_budget("s", "20", window="day"), now=now)
    assert slow.forecast_usd == Decimal(12)
    assert slow.overrun_at is None  # the pace does not reach $20 before midnight


# -- the book ----------------------------------------------------------------------------


def test_set_list_replace_remove(ledger: Ledger) -> None:
    repo = ledger.repository
    budget = make_budget("team", "25", window="month", tz="Europe/Paris", scope=["agent=claude"])
    assert set_budget(repo, budget) is False
    assert get_budget(repo, "team") == budget
    assert set_budget(repo, make_budget("team", "30")) is True
    assert [b.limit_usd for b in list_budgets(repo)] == [Decimal(30)]
    assert remove_budget(repo, "team") is True
    assert remove_budget(repo, "team") is False
    assert list_budgets(repo) == []


# -- reserve and settle ------------------------------------------------------------------


def test_reserve_settles_on_record_and_refuses_past_the_limit(ledger: Ledger) -> None:
    set_budget(ledger.repository, make_budget("b", "0.10"))
    for _ in range(2):
        with ledger.reserve("0.05") as held:
            assert current_reservation() is held
            ledger.record(Usage(input_tokens=1), model="m", cost_usd="0.05")
            assert held.settled
            assert current_reservation() is None
    with pytest.raises(BudgetExceeded) as refused, ledger.reserve("0.01"):
        pytest.fail("the block must not run")
    error = refused.value
    assert (error.budget, error.spent_usd, error.limit_usd) == ("b", Decimal("0.1"), Decimal("0.1"))
    assert "budget 'b' would be exceeded" in str(error)


def test_an_unused_reservation_is_given_back(ledger: Ledger) -> None:
    budget = make_budget("b", "0.10")
    set_budget(ledger.repository, budget)
    held: list[Decimal] = []

    def failing_call() -> None:
        with ledger.reserve("0.08"):
            held.append(budget_status(ledger.repository, budget).reserved_usd)
            raise RuntimeError("the provider failed")

    with pytest.raises(RuntimeError):
        failing_call()
    assert held == [Decimal("0.08")]
    assert budget_status(ledger.repository, budget).reserved_usd == 0
    with ledger.reserve("0.08"):
        pass


def test_reservations_count_until_they_expire(ledger: Ledger) -> None:
    repo = ledger.repository
    set_budget(repo, make_budget("b", "1"))
    now = _utc("2026-12-03T10:00:00")
    context = call_context(None, model=None, provider=None)
    reserve(repo, Decimal("0.9"), context, now=now, expires_in=timedelta(minutes=10))
    with pytest.raises(BudgetExceeded):
        reserve(repo, Decimal("0.2"), context, now=now + timedelta(minutes=9))
    later = now + timedelta(minutes=10)  # the first reservation has expired
    assert reserve(repo, Decimal("0.2"), context, now=later).budgets == ("b",)


def test_only_matching_block_budgets_hold(ledger: Ledger) -> None:
    repo = ledger.repository
    set_budget(repo, make_budget("claude", "0.01", scope=["agent=claude"]))
    set_budget(repo, make_budget("warned", "0.01", action="warn"))
    with ledger.run("task", agent="codex"), ledger.reserve("0.5") as held:
        assert held.budgets == ()
    with ledger.run("task", agent="claude"), pytest.raises(BudgetExceeded), ledger.reserve("1"):
        pass


def test_workflow_budget_holds_for_runs_under_the_key(ledger: Ledger) -> None:
    set_budget(ledger.repository, make_budget("wf", "0.05", scope=["workflow=wf-1"]))
    with ledger.run("workflow", key="wf-1"), ledger.run("task", key="t"):
        with ledger.reserve("0.05") as held:
            assert held.budgets == ("wf",)
            ledger.record(Usage(input_tokens=1), model="m", cost_usd="0.05")
        with pytest.raises(BudgetExceeded), ledger.reserve("0.01"):
            pass
    with ledger.run("workflow", key="wf-2"), ledger.reserve("0.05") as other:
        assert other.budgets == ()


def test_the_worst_case_comes_from_the_estimate(ledger: Ledger) -> None:
    from llmledger.estimate import estimate_cost

    set_budget(ledger.repository, make_budget("b", "100"))
    prompt = "Summarize the ledger. " * 20
    expected = estimate_cost(prompt, "gpt-4o", max_output_tokens=1000).cost_high_usd
    assert expected is not None
    assert expected > 0
    with ledger.reserve(model="gpt-4o", prompt=prompt, max_output_tokens=1000) as held:
        assert held.amount_usd == expected


def test_a_pace_that_never_reaches_a_huge_limit_has_no_overrun(ledger: Ledger) -> None:
    now = _utc("2026-12-03T12:00:00")
    _call(ledger, "0.000001", "2026-12-03T11:30:00")
    for window in ("total", "day", "rolling:24h"):
        budget = make_budget("big", "900000", window=window)
        status = budget_status(ledger.repository, budget, now=now)
        assert status.overrun_at is None
