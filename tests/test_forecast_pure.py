"""Velocity, ETA and backtest on hand-computed histories (the pure functions, no store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from llmledger.forecast.backtest import run_backtest
from llmledger.forecast.eta import Eta, compute_eta
from llmledger.forecast.lanes import (
    DEFAULT_LANES,
    PLAN_LANES,
    Lane,
    LaneSet,
    parse_lanes,
    resolve_lanes,
)
from llmledger.forecast.timeline import History, StatusEvent, by_task, position
from llmledger.forecast.velocity import TaskRun, lane_velocities, samples_of

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def history(*rows: tuple[str, str, float]) -> list[StatusEvent]:
    """Events (task, status, hours after T0), stored in the order given."""
    return [StatusEvent(key, status, at(h), seq=i) for i, (key, status, h) in enumerate(rows)]


def velocities(
    events: list[StatusEvent], moment: datetime, lanes: LaneSet = DEFAULT_LANES, **kw: object
) -> dict[str, tuple[int, float | None, str | None]]:
    found = lane_velocities(events, lanes, moment, **kw)  # type: ignore[arg-type]
    return {v.lane: (v.samples, v.velocity_hours, v.source) for v in found}


# The worked example: velocities work 4 h, review 1 h, qa 0.5 h; at = +10 h, A in
# in_progress for 1 h, B in ready_to_review for 2 h, C not started.
WORKED = history(
    ("H", "in_progress", 0),
    ("H", "ready_to_review", 4),
    ("H", "ready_to_qa", 5),
    ("H", "completed", 5.5),
    ("B", "todo", 0),
    ("B", "in_progress", 4),
    ("B", "ready_to_review", 8),  # a 4 h work sample too: the work mean stays 4
    ("C", "todo", 1),
    ("A", "todo", 1),
    ("A", "in_progress", 9),
)
NOW = at(10)


def test_worked_example_is_at_plus_eight_and_a_half_hours() -> None:
    lanes = lane_velocities(WORKED, DEFAULT_LANES, NOW)
    assert [(v.lane, v.samples, v.velocity_hours, v.source) for v in lanes] == [
        ("work", 2, 4.0, "events"),
        ("review", 1, 1.0, "events"),
        ("qa", 1, 0.5, "events"),
    ]
    eta = compute_eta(WORKED, DEFAULT_LANES, lanes, NOW)
    assert eta.open_tasks == 3
    rows = [(r.tasks_in_lane, r.tasks_to_come, r.remaining_hours, r.finish_at) for r in eta.lanes]
    assert rows == [
        (1, 1, 7.0, NOW + timedelta(hours=7)),
        (1, 2, 2.0, NOW + timedelta(hours=8)),
        (0, 3, 1.5, NOW + timedelta(hours=8.5)),
    ]
    assert eta.finish_at == NOW + timedelta(hours=8.5)


def test_the_same_example_from_lane_hours_in_config_mode() -> None:
    lanes = parse_lanes(
        {
            "lanes": [
                {"name": "work", "from": "in_progress", "to": "ready_to_review", "hours": 4},
                {"name": "review", "from": "ready_to_review", "to": "ready_to_qa", "hours": 1},
                {"name": "qa", "from": "ready_to_qa", "to": "completed", "hours": 0.5},
            ],
            "terminal": ["completed", "cancelled"],
        }
    )
    only_open = [e for e in WORKED if e.key != "H"]  # no completed history at all
    found = lane_velocities(only_open, lanes, NOW, mode="config")
    assert [(v.velocity_hours, v.source) for v in found] == [
        (4.0, "config"),
        (1.0, "config"),
        (0.5, "config"),
    ]
    assert compute_eta(only_open, lanes, found, NOW).finish_at == NOW + timedelta(hours=8.5)


def test_several_workers_share_a_lane() -> None:
    lanes = lane_velocities(WORKED, DEFAULT_LANES, NOW)
    eta = compute_eta(WORKED, DEFAULT_LANES, lanes, NOW, workers={"work": 2})
    # work: 7 h over 2 workers = +3.5; review: max(+2, +3.5 + 1); qa: max(+1.5, +4.5 + 0.5)
    assert [r.finish_at for r in eta.lanes] == [
        NOW + timedelta(hours=3.5),
        NOW + timedelta(hours=4.5),
        NOW + timedelta(hours=5),
    ]
    assert eta.lanes[0].workers == 2


def test_backlog_tasks_pass_every_lane() -> None:
    lanes = lane_velocities(WORKED, DEFAULT_LANES, NOW)
    eta = compute_eta(WORKED, DEFAULT_LANES, lanes, NOW, backlog=1)
    # work 11 h; review max(+3, +12); qa max(+2, +12.5)
    assert eta.open_tasks == 4
    assert eta.finish_at == NOW + timedelta(hours=12.5)


def test_blocked_time_is_left_out_of_samples_and_elapsed() -> None:
    events = history(
        ("T", "in_progress", 0),
        ("T", "blocked", 1),
        ("T", "in_progress", 3),
        ("T", "ready_to_review", 5),  # 1 h + 2 h of work; 2 h blocked
        ("U", "in_progress", 5),
        ("U", "blocked", 6),  # blocked since +6: still in work, 1 h elapsed
    )
    assert velocities(events, at(9))["work"] == (1, 3.0, "events")
    where = position(by_task(events, at(9))[(None, "U")], DEFAULT_LANES, at(9))
    assert where is not None
    assert (where.status, where.lane, where.elapsed_hours) == ("blocked", 0, 1.0)


def test_rework_is_not_a_sample_of_the_lane_it_left() -> None:
    events = history(
        ("T", "in_progress", 0),
        ("T", "ready_to_review", 2),
        ("T", "in_progress", 3),  # review sent it back: no review sample
        ("T", "ready_to_review", 4),
        ("T", "ready_to_qa", 4.5),
        ("T", "completed", 5),
    )
    found = velocities(events, at(6))
    assert found["work"] == (2, 1.5, "events")  # 2 h and 1 h
    assert found["review"] == (1, 0.5, "events")
    assert found["qa"] == (1, 0.5, "events")


def test_a_cancelled_visit_is_not_a_sample() -> None:
    events = history(("T", "in_progress", 0), ("T", "cancelled", 2))
    assert velocities(events, at(3))["work"] == (0, None, None)


def test_events_written_out_of_order_are_read_in_time_order() -> None:
    ordered = history(("T", "in_progress", 0), ("T", "ready_to_review", 3), ("T", "ready_to_qa", 4))
    shuffled = [ordered[2], ordered[0], ordered[1]]
    shuffled = [
        StatusEvent(e.key, e.to_status, e.at, seq=i) for i, e in enumerate(shuffled)
    ]  # stored last-first
    assert velocities(shuffled, at(5)) == velocities(ordered, at(5))
    assert velocities(shuffled, at(5))["work"] == (1, 3.0, "events")


def test_nothing_after_the_moment_is_used() -> None:
    # At +2 the work visit is still open: no sample yet, and T is 2 h into work.
    events = history(("T", "in_progress", 0), ("T", "ready_to_review", 3))
    assert velocities(events, at(2))["work"] == (0, None, None)
    where = position(by_task(events, at(2))[(None, "T")], DEFAULT_LANES, at(2))
    assert where is not None
    assert where.elapsed_hours == 2.0


def test_a_window_larger_than_the_history_uses_what_there_is() -> None:
    events = history(
        ("A", "in_progress", 0),
        ("A", "ready_to_review", 1),
        ("B", "in_progress", 1),
        ("B", "ready_to_review", 4),
        ("C", "in_progress", 4),
        ("C", "ready_to_review", 9),
    )
    assert velocities(events, at(10), window=10)["work"] == (3, 3.0, "events")
    # window 2: the last two by end time (3 h and 5 h)
    assert velocities(events, at(10), window=2)["work"] == (2, 4.0, "events")


def test_finished_task_runs_stand_in_for_work_without_samples() -> None:
    events = history(("A", "ready_to_review", 0), ("A", "ready_to_qa", 1))
    runs = [
        TaskRun("x", at(1), 2.0, "succeeded"),
        TaskRun("y", at(2), 4.0, "succeeded"),
        TaskRun("z", at(2), 9.0, "failed"),  # not a finished piece of work
        TaskRun("w", at(20), 1.0, "succeeded"),  # after the moment
    ]
    found = velocities(events, at(3), runs=runs)
    assert found["work"] == (2, 3.0, "runs")
    assert found["review"] == (1, 1.0, "events")
    assert found["qa"] == (0, None, None)


def test_mixed_mode_weighs_empirical_against_config() -> None:
    lanes = parse_lanes(
        {"lanes": [{"name": "work", "from": "in_progress", "to": "done", "hours": 2}]}
    )
    events = history(("A", "in_progress", 0), ("A", "done", 4))
    assert velocities(events, at(5), lanes, mode="mixed") == {"work": (1, 3.0, "mixed")}
    assert velocities(events, at(5), lanes, mode="mixed", alpha=0.25) == {"work": (1, 2.5, "mixed")}
    assert velocities(events, at(5), lanes, mode="config") == {"work": (1, 2.0, "config")}
    assert velocities(events, at(5), lanes) == {"work": (1, 4.0, "events")}
    # no samples yet: mixed falls back to the config hours and says so
    assert velocities(events, at(1), lanes, mode="mixed") == {"work": (0, 2.0, "config")}


def test_an_unknown_velocity_gives_no_eta_and_says_why() -> None:
    events = history(("A", "in_progress", 0))
    found = lane_velocities(events, DEFAULT_LANES, at(1))
    eta = compute_eta(events, DEFAULT_LANES, found, at(1))
    assert eta.finish_at is None
    assert eta.reason is not None
    assert "work, review, qa" in eta.reason


def test_a_todo_task_has_every_lane_to_pass() -> None:
    events = history(("A", "todo", 0))
    where = position(by_task(events)[(None, "A")], DEFAULT_LANES, at(1))
    assert where is not None
    assert (where.lane, where.next_lane) == (None, 0)


def test_backtest_on_a_hand_computed_history() -> None:
    lanes = parse_lanes({"lanes": [{"name": "work", "from": "in_progress", "to": "completed"}]})
    events = history(
        ("T1", "in_progress", 0),
        ("T2", "in_progress", 0),
        ("T1", "completed", 2),
        ("T3", "in_progress", 2),
        ("T2", "completed", 4),
        ("T3", "completed", 8),
    )

    def predict(moment: datetime) -> Eta:
        return compute_eta(events, lanes, lane_velocities(events, lanes, moment), moment)

    result = run_backtest(events, lanes, predict)
    # +8: nothing open after the last completion, no point.
    # +4: T3 open 2 h, velocity mean(2, 4) = 3 -> 1 h left, predicted +5; done at +8 (4 h).
    # +2: T2 open 2 h, T3 0 h, velocity 2 -> 0 + 2 = 2 h, predicted +4; done at +8 (6 h).
    assert [(p.at, p.predicted_at, p.actual_at) for p in result.points] == [
        (at(2), at(4), at(8)),
        (at(4), at(5), at(8)),
    ]
    assert [round(p.error_pct, 4) for p in result.points] == [-66.6667, -75.0]
    assert result.mape_pct == pytest.approx((75 + 200 / 3) / 2)
    assert result.bias_pct == pytest.approx(-(75 + 200 / 3) / 2)
    assert len(run_backtest(events, lanes, predict, points=1).points) == 1


def test_samples_worked_out_later_give_the_velocities_of_an_earlier_moment() -> None:
    # eta_report works the samples out once, at the report's moment, for every backtest point.
    history = History(WORKED)
    later = samples_of(history, DEFAULT_LANES, NOW)
    for hours in (3, 4, 5, 5.5, 8, 10):
        moment = at(hours)
        direct = lane_velocities(WORKED, DEFAULT_LANES, moment)
        assert lane_velocities(history, DEFAULT_LANES, moment, samples=later) == direct
        assert compute_eta(history, DEFAULT_LANES, direct, moment) == compute_eta(
            WORKED, DEFAULT_LANES, direct, moment
        )


def test_which_lanes_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no lanes.toml there
    monkeypatch.delenv("LLMLEDGER_LANES", raising=False)
    assert resolve_lanes(None) is DEFAULT_LANES
    assert resolve_lanes("plan") is PLAN_LANES
    path = tmp_path / "lanes.toml"
    path.write_text('[[lanes]]\nname = "build"\nfrom = "doing"\nto = "done"\nhours = 2\n')
    monkeypatch.setenv("LLMLEDGER_LANES", str(path))
    found = resolve_lanes(None)
    assert found.lanes == (Lane("build", "doing", "done", 2.0),)
    assert (found.terminal, found.blocked, found.done) == ({"done"}, {"blocked"}, "done")


def test_the_plan_lanes_read_what_plan_run_writes() -> None:
    events = history(
        ("t1", "running", 0),
        ("t1", "retrying", 1),  # between attempts: the clock stops
        ("t1", "running", 1.5),
        ("t1", "succeeded", 3),
        ("t2", "running", 3),
        ("t3", "failed", 3),  # terminal: not open
    )
    assert velocities(events, at(4), PLAN_LANES) == {"work": (1, 2.5, "events")}
    eta = compute_eta(events, PLAN_LANES, lane_velocities(events, PLAN_LANES, at(4)), at(4))
    assert (eta.open_tasks, eta.finish_at) == (1, at(4) + timedelta(hours=1.5))
