"""``llmledger task status|show``, ``velocity`` and ``eta`` as a user types them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dashboard_plan_seed import NOW, WORKED  # docs/forecast.md's worked example
from llmledger.cli import app
from llmledger.cli._app import _register_commands

_register_commands(["task"])


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def worked(sqlite_url: str) -> str:
    for key, status, moment in WORKED:
        code, _, err = run("task", "status", key, status, "--at", moment, "--db", sqlite_url)
        assert code == 0, err
    return sqlite_url


def test_task_status_prints_the_transition(sqlite_url: str) -> None:
    code, out, _ = run("task", "status", "1.2", "in_progress", "--db", sqlite_url)
    assert code == 0
    assert out.startswith("task 1.2: (new task) -> in_progress at ")
    code, out, _ = run("task", "status", "1.2", "ready_to_review", "--db", sqlite_url, "--json")
    assert code == 0
    document = json.loads(out)
    assert (document["from"], document["to"], document["stored"]) == (
        "in_progress",
        "ready_to_review",
        True,
    )


def test_task_status_warns_on_a_transition_from_elsewhere(sqlite_url: str) -> None:
    run("task", "status", "T", "in_progress", "--at", "2026-12-01T00:00Z", "--db", sqlite_url)
    code, out, err = run(
        "task", "status", "T", "completed", "--from", "ready_to_qa", "--db", sqlite_url
    )
    assert code == 0
    assert "warning: task 'T' was in 'in_progress'" in err
    assert "ready_to_qa -> completed" in out


def test_eta_of_the_worked_example(worked: str) -> None:
    code, out, _ = run("eta", "--at", NOW, "--db", worked, "--json")
    assert code == 0
    document = json.loads(out)
    assert document["finish_at"] == "2026-12-01T18:30:00+00:00"
    assert [lane["finish_at"] for lane in document["lanes"]] == [
        "2026-12-01T17:00:00+00:00",
        "2026-12-01T18:00:00+00:00",
        "2026-12-01T18:30:00+00:00",
    ]
    assert set(document["lanes"][0]) == {
        "lane",
        "from",
        "to",
        "velocity_hours",
        "source",
        "workers",
        "tasks_in_lane",
        "tasks_to_come",
        "remaining_hours",
        "finish_at",
    }
    assert set(document["cost"]) >= {"expected_usd", "p90_usd", "basis", "tasks_priced"}
    code, out, _ = run("eta", "--at", NOW, "--db", worked)
    assert code == 0
    assert "ETA 2026-12-01 18:30 UTC (in 8.5 h) for 3 open task(s)" in out
    assert "no backtest yet" in out


def test_eta_workers_and_backlog(worked: str) -> None:
    code, out, _ = run(
        "eta", "--at", NOW, "--workers", "work=2", "--backlog", "1", "--db", worked, "--json"
    )
    assert code == 0
    # work 11 h over 2 = +5.5; review max(+3, +6.5); qa max(+2, +7)
    assert json.loads(out)["finish_at"] == "2026-12-01T17:00:00+00:00"


def test_eta_shows_its_backtest_record(sqlite_url: str) -> None:
    lanes = Path(sqlite_url.removeprefix("sqlite:///")).with_name("lanes.toml")
    lanes.write_text(
        '[[lanes]]\nname = "work"\nfrom = "in_progress"\nto = "completed"\n', encoding="utf-8"
    )
    for key, status, hour in [
        ("T1", "in_progress", 0),
        ("T2", "in_progress", 0),
        ("T1", "completed", 2),
        ("T3", "in_progress", 2),
        ("T2", "completed", 4),
        ("T3", "completed", 8),
        ("T4", "in_progress", 9),
    ]:
        moment = f"2026-12-01T{hour:02d}:00Z"
        assert run("task", "status", key, status, "--at", moment, "--db", sqlite_url)[0] == 0
    common = ("--at", NOW, "--lanes", str(lanes), "--db", sqlite_url)
    code, out, _ = run("eta", *common)
    assert code == 0
    assert "typically within ±71 % (backtest of 2 past point(s); median bias 71 % early)" in out
    code, out, _ = run("eta", "--backtest", *common, "--json")
    assert code == 0
    document = json.loads(out)
    assert [p["error_pct"] for p in document["points"]] == pytest.approx([-200 / 3, -75.0])
    assert document["bias_pct"] == pytest.approx(-(75 + 200 / 3) / 2)
    code, out, _ = run("eta", "--backtest", "--points", "1", *common)
    assert code == 0
    assert "-75 %" in out
    # at +8.5 every task then known is done (T4 starts at +9)
    code, out, _ = run("eta", "--at", "2026-12-01T08:30Z", *common[2:])
    assert code == 0
    assert "no open tasks at 2026-12-01 08:30 UTC: nothing to wait for" in out


def test_velocity_json_shape(worked: str) -> None:
    code, out, _ = run("velocity", "--at", NOW, "--db", worked, "--json", "--window", "1")
    assert code == 0
    lanes = json.loads(out)["lanes"]
    assert lanes[0] == {
        "lane": "work",
        "from": "in_progress",
        "to": "ready_to_review",
        "samples": 1,
        "mean_hours": 4.0,
        "median_hours": 4.0,
        "velocity_hours": 4.0,
        "source": "events",
    }


def test_task_show_lists_time_in_each_status(worked: str) -> None:
    code, out, _ = run("task", "show", "B", "--at", NOW, "--db", worked, "--json")
    assert code == 0
    document = json.loads(out)
    assert [(t["to"], t["hours"], t["current"]) for t in document["transitions"]] == [
        ("in_progress", 4.0, False),
        ("ready_to_review", 2.0, True),
    ]
    assert document["status"] == "ready_to_review"
    code, out, _ = run("task", "show", "H", "--at", NOW, "--db", worked)
    assert code == 0
    assert "in_progress 4.00 h, ready_to_review 1.00 h, ready_to_qa 0.50 h" in out


def test_no_events_says_how_to_write_one(sqlite_url: str) -> None:
    for command in (["eta"], ["velocity"], ["eta", "--backtest"], ["task", "show", "X"]):
        code, out, err = run(*command, "--db", sqlite_url)
        assert code == 1, command
        assert "no status history yet" in err
        assert "llmledger task status KEY in_progress" in err
        assert out == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eta", "--at", "yesterday-ish"], "--at: cannot read 'yesterday-ish' as a time"),
        (["task", "status", "T", "x", "--at", "2026-13-01"], "--at: cannot read"),
        (["eta", "--workers", "work"], "--workers 'work': write LANE=N"),
        (["eta", "--workers", "work=0"], "--workers 'work=0'"),
        (["eta", "--workers", "nope=2"], "workers: no lane named 'nope'"),
        (["velocity", "--mode", "guess"], "--mode 'guess': one of empirical, config, mixed"),
        (["task", "status", "T", "x" * 33], "to_status: a status name has at most 32"),
    ],
)
def test_bad_input_is_a_clear_error(sqlite_url: str, args: list[str], message: str) -> None:
    run("task", "status", "seed", "in_progress", "--db", sqlite_url)
    code, _, err = run(*args, "--db", sqlite_url)
    assert code == 2
    assert message in err


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("lanes = [", "not valid TOML"),
        ("[[lanes]]\nname = 'work'\nfrom = 'a'\n", "lanes[0].to: missing"),
        ("[[lanes]]\nname = 'w'\nfrom = 'a'\nto = 'b'\nhours = 'four'\n", "lanes[0].hours"),
        ("[[lanes]]\nname = 'w'\nfrom = 'a'\nto = 'b'\nspeed = 1\n", "lanes[0].speed"),
        ("terminal = ['x']\n[[lanes]]\nname = 'w'\nfrom = 'a'\nto = 'b'\n", "terminal"),
        ("colour = 1\n", "colour: unknown field"),
    ],
)
def test_a_malformed_lanes_file_names_the_field(
    sqlite_url: str, tmp_path: Path, text: str, field: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    code, _, err = run("velocity", "--lanes", str(path), "--db", sqlite_url)
    assert code == 2
    assert f"--lanes: {path}" in err
    assert field in err


def test_the_commands_run_as_a_program(sqlite_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llmledger", "eta", "--db", sqlite_url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "no status history yet" in result.stderr


def test_task_status_to_a_service(sqlite_url: str, tmp_path: Path) -> None:
    from server import ServerProcess

    with ServerProcess(sqlite_url, log=tmp_path / "server.log") as server:
        env = {"LLMLEDGER_SPOOL": str(tmp_path / "spool.db")}
        first = CliRunner().invoke(
            app,
            ["task", "status", "R", "in_progress", "--at", "2026-12-01T00:00Z"],
            env={**env, "LLMLEDGER_DB": server.url},
        )
        assert first.exit_code == 0, first.stderr
        assert f"sent to {server.url}" in first.stdout
        second = CliRunner().invoke(
            app,
            ["task", "status", "R", "ready_to_review", "--at", "2026-12-01T03:00Z"],
            env={**env, "LLMLEDGER_DB": server.url},
        )
        assert second.exit_code == 0, second.stderr
    code, out, _ = run("task", "show", "R", "--at", NOW, "--db", sqlite_url, "--json")
    assert code == 0
    transitions = json.loads(out)["transitions"]
    assert [(t["from"], t["to"], t["hours"]) for t in transitions] == [
        (None, "in_progress", 3.0),
        ("in_progress", "ready_to_review", 7.0),
    ]
