"""Issue 13, items 15, 19 and 20: what the command line prints of names it did not choose, the
options it refuses with a one-line message, and a broken prices overrides file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from llmledger import Usage
from llmledger.cli import _app
from llmledger.ledger import Ledger

_app._register_commands()
runner = CliRunner()

MARKUP_RUN = "[/x]"
MARKUP_KEY = "[bold]"
ESCAPES_MODEL = "\x1b[31mred\x1b]0;title\x07"
#: What must never reach a terminal from a name: C0 and C1 controls, DEL.
_CONTROLS = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if chr(c) != "\n"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No agent logs, no developer's prices file: each test says what it wants.
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "no-claude"))
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "no-codex"))
    monkeypatch.setenv("GEMINI_DATA_DIR", str(tmp_path / "no-gemini"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("LLMLEDGER_PRICES", raising=False)
    monkeypatch.delenv("LLMLEDGER_DB", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def _invoke(*args: str) -> Result:
    return runner.invoke(_app.app, list(args))


def _no_control_characters(text: str) -> None:
    found = sorted({repr(c) for c in text if c in _CONTROLS})
    assert not found, f"control characters printed raw: {found}"


# -- 15: markup and control characters in names ---------------------------------------------------


@pytest.fixture
def odd_names(sqlite_url: str) -> str:
    now = datetime.now(UTC)
    with Ledger(sqlite_url) as ledger:
        with ledger.run("task", MARKUP_RUN, key=MARKUP_KEY):
            ledger.record(
                Usage(input_tokens=100, output_tokens=10),
                model=ESCAPES_MODEL,
                started_at=now - timedelta(hours=1),
            )
        with ledger.run("[/kind]", "[red]plain\\", key="k2"):
            ledger.record(
                Usage(input_tokens=5, output_tokens=1),
                model="[bold]m",
                started_at=now - timedelta(hours=2),
            )
    return sqlite_url


def test_safe_text_escapes_markup_and_shows_control_characters_as_escapes() -> None:
    from rich.console import Console
    from rich.text import Text

    from llmledger.display import safe_text

    shown = safe_text(ESCAPES_MODEL + MARKUP_RUN + "\\")
    _no_control_characters(shown)
    assert shown.startswith("\\x1b[31mred\\x1b]0;title\\x07")
    plain = Text.from_markup(shown).plain  # parses: no MarkupError, nothing styled away
    assert plain == "\\x1b[31mred\\x1b]0;title\\x07[/x]\\"
    assert safe_text(None) == "-"
    assert safe_text("a\u202eb\nc") == "a\\u202eb\\nc"
    console = Console(record=True, width=80)
    console.print(safe_text("[bold]x"))
    assert console.export_text().strip() == "[bold]x"


@pytest.mark.parametrize(
    "command",
    [
        ["runs"],
        ["runs", "--top"],
        ["show", MARKUP_KEY],
        ["show", "k2"],
        ["daily", "--breakdown"],
        ["weekly", "--breakdown"],
        ["monthly"],
        ["sessions", "--breakdown"],
        ["blocks"],
        ["tokens", "--group-by", "model,job,command,agent"],
    ],
)
def test_names_with_markup_and_escapes_print_as_text(odd_names: str, command: list[str]) -> None:
    extra = [] if command[0] in ("runs", "show") else ["--no-import"]
    result = _invoke(*command, *extra, "--db", odd_names)
    assert result.exit_code == 0, (result.output, result.exception)
    _no_control_characters(result.output)
    if command[0] in ("runs", "show"):
        assert MARKUP_RUN in result.output or "[red]plain\\" in result.output
    if command[0] in ("daily", "weekly", "monthly", "blocks", "tokens"):
        assert "\\x1b[31mred" in result.output


def test_json_keeps_the_names_as_stored(odd_names: str) -> None:
    result = _invoke(
        "tokens", "--group-by", "model,job", "--json", "--no-import", "--db", odd_names
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert {r["model"] for r in rows} == {ESCAPES_MODEL, "[bold]m"}
    runs = json.loads(_invoke("runs", "--json", "--db", odd_names).stdout)["runs"]
    assert MARKUP_RUN in {r["name"] for r in runs}


def test_parse_shows_a_model_and_file_named_with_markup(tmp_path: Path) -> None:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": MARKUP_RUN + ESCAPES_MODEL,
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }
    path = tmp_path / "[bold]payload[x].json"
    path.write_text(json.dumps(body))
    result = _invoke("parse", str(path))
    assert result.exit_code == 0, (result.output, result.exception)
    _no_control_characters(result.output)
    assert "[/x]" in result.output
    assert "[bold]payload" in result.output
    as_json = json.loads(_invoke("parse", str(path), "--json").stdout)
    assert as_json["calls"][0]["model"] == MARKUP_RUN + ESCAPES_MODEL


def test_prices_shows_an_override_named_with_markup(tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."[/x]\\u001b[2J"]\ninput = 1\noutput = 2\n')
    result = _invoke("prices", "[/x]\x1b[2J", "--prices", str(prices))
    assert result.exit_code == 0, (result.output, result.exception)
    _no_control_characters(result.output)
    assert "[/x]\\x1b[2J" in result.output


def test_the_hint_for_an_unknown_model_is_valid_toml(tmp_path: Path) -> None:
    import tomllib

    name = 'no"such\x1b[2Jmodel'
    result = _invoke("prices", name)
    assert result.exit_code == 1
    _no_control_characters(result.output)
    header = next(line for line in result.output.splitlines() if line.startswith("[models."))
    assert list(tomllib.loads(header + "\ninput = 1\n")["models"]) == [name]


def test_plan_estimate_shows_task_names_with_markup(tmp_path: Path, sqlite_url: str) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "name: '[/x] plan'\n"
        "defaults: {agent: claude, model: claude-sonnet-4-5}\n"
        "sections:\n"
        "  - id: s1\n"
        "    name: '[/s]'\n"
        "    tasks:\n"
        "      - id: '1.1'\n"
        '        name: "[/x]\\e[31m"\n'
        "        prompt: hello\n"
    )
    result = _invoke("plan", "estimate", str(plan), "--db", sqlite_url)
    assert result.exit_code == 0, (result.output, result.exception)
    _no_control_characters(result.output)
    assert "[/x] plan" in result.output


# -- 19: options refused with a one-line message --------------------------------------------------

_PLAN = """name: p
defaults: {agent: claude, model: claude-sonnet-4-5}
sections:
  - id: s1
    name: S
    tasks:
      - {id: "1", name: t, prompt: hi}
"""
_REPORTS = ["daily", "weekly", "monthly", "sessions", "blocks", "tokens"]


def _refused(result: Result, *words: str) -> None:
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize("command", [*_REPORTS, "runs"])
@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--since", "99999999999d"], ["99999999999d"]),
        (["--since", "1e400d"], ["1e400d"]),
        (["--since", "2026-02-01", "--until", "2026-01-01"], ["--since", "--until"]),
        (["--since", "0000-01-01"], ["0000-01-01"]),
    ],
)
def test_bad_times_are_refused_in_one_line(
    sqlite_url: str, command: str, options: list[str], words: list[str]
) -> None:
    if command == "runs" and "--until" in options:
        options = ["--since", "2999-01-01"]  # runs has no --until: a start in the future
        words = []
        result = _invoke(command, *options, "--db", sqlite_url)
        assert result.exit_code == 0  # an empty list, not an error: nothing started yet
        return
    extra = [] if command == "runs" else ["--no-import"]
    _refused(_invoke(command, *options, *extra, "--db", sqlite_url), *words)


@pytest.mark.parametrize("hours", ["-5", "0", "1e9", "nan", "inf", "8761", "0.01"])
def test_block_length_out_of_range_is_refused(sqlite_url: str, hours: str) -> None:
    Ledger(sqlite_url).close()
    _refused(_invoke("blocks", "--hours", hours, "--no-import", "--db", sqlite_url), "--hours")


@pytest.mark.parametrize("hours", ["0.1", "1", "5", "8760"])
def test_block_lengths_in_range_work(odd_names: str, hours: str) -> None:
    result = _invoke("blocks", "--hours", hours, "--no-import", "--json", "--db", odd_names)
    assert result.exit_code == 0, (result.output, result.exception)
    blocks = [b for b in json.loads(result.stdout)["blocks"] if not b["is_gap"]]
    assert all(b["start"] < b["end"] for b in blocks)
    assert sum(b["entries"] for b in blocks) == 2


@pytest.mark.parametrize(
    "command",
    [
        ["daily"],
        ["blocks"],
        ["tokens"],
        ["runs"],
        ["show", "x"],
        ["db", "info"],
        ["db", "upgrade"],
        ["import"],
        ["plan", "estimate", "PLAN"],
    ],
)
@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://u@h:abc/db", "postgresql://u@h:99999999/db"],
)
def test_a_malformed_database_url_is_refused(command: list[str], url: str, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(_PLAN)
    args = [str(plan) if a == "PLAN" else a for a in command]
    result = _invoke(*args, "--db", url)
    _refused(result, "--db")


def test_a_good_url_with_a_port_is_still_accepted() -> None:
    from llmledger.store.urls import check_url

    check_url("postgresql+psycopg://u:p%40ss@127.0.0.1:5432/test")
    check_url("postgresql+psycopg://u@[::1]:5432/test")
    check_url("sqlite:////tmp/x.db")
    check_url("sqlite://")


# -- 20: a broken prices overrides file ----------------------------------------------------------


@pytest.fixture
def claude_home(fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "claude-home"
    shutil.copytree(fixtures_dir / "claude-home" / "projects", home / "projects")
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(home))
    return home


_BROKEN = [
    # (file text, line named, words of the reason)
    ('# prices\n[models."m"]\ninput = 1\noutput = \n', 4, "not valid TOML"),
    (
        '[models."a"]\ninput = 1\noutput = 1\n\n[models."m"]\ninput = -1\noutput = 1\n',
        6,
        "must be >= 0",
    ),
    ('[models."m"]\ninput = 1\n', 1, "needs both 'input' and 'output'"),
    ("[models.m]\ninput = 1\noutput = 1\ncached_input = 1\n", 4, "unknown keys"),
]


def _broken_prices(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config" / "llmledger" / "prices.toml"  # the default place
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "line", "reason"), _BROKEN)
def test_a_report_stops_on_a_broken_prices_file(
    claude_home: Path,
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    line: int,
    reason: str,
) -> None:
    path = _broken_prices(tmp_path, text, monkeypatch)
    result = _invoke("daily", "--json", "--db", sqlite_url)
    _refused(result, f"{path}:{line}:", reason, "--ignore-overrides")
    ignored = _invoke("daily", "--json", "--db", sqlite_url, "--ignore-overrides")
    assert ignored.exit_code == 0, ignored.output
    doc = json.loads(ignored.stdout)
    assert doc["totals"]["calls"] == 7
    assert doc["totals"]["cost_usd"] > 0  # priced from the bundled data
    # The calls are in; the file is read again (and refused) by the next report that imports.
    again = _invoke("weekly", "--json", "--db", sqlite_url)
    _refused(again, f"{path}:{line}:")
    assert _invoke("weekly", "--json", "--no-import", "--db", sqlite_url).exit_code == 0


def test_a_named_prices_file_that_is_missing_stops_a_report(
    claude_home: Path, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMLEDGER_PRICES", str(tmp_path / "missing.toml"))
    _refused(_invoke("sessions", "--db", sqlite_url), "missing.toml")
    assert _invoke("sessions", "--db", sqlite_url, "--ignore-overrides").exit_code == 0


@pytest.mark.parametrize(
    "command",
    [
        ["import", "claude"],
        ["parse", "PAYLOAD"],
        ["prices", "claude-sonnet-4-5"],
        ["run", "--", "true"],
        ["plan", "estimate", "PLAN"],
        ["tokens"],
        ["blocks"],
    ],
)
def test_every_command_that_prices_stops_on_a_broken_file_unless_told(
    claude_home: Path,
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    fixtures_dir: Path,
    command: list[str],
) -> None:
    path = _broken_prices(tmp_path, _BROKEN[0][0], monkeypatch)
    plan = tmp_path / "plan.yaml"
    plan.write_text(_PLAN)
    payload = fixtures_dir / "openai" / "openai-chat.json"
    args = [str(plan) if a == "PLAN" else str(payload) if a == "PAYLOAD" else a for a in command]
    db = [] if command[0] in ("parse", "prices") else ["--db", sqlite_url]
    if "--" in args:
        at = args.index("--")
        head, tail = args[:at], args[at:]
    else:
        head, tail = args, []
    result = _invoke(*head, *db, *tail)
    _refused(result, f"{path}:4:")
    ok = _invoke(*head, *db, "--ignore-overrides", *tail)
    assert ok.exit_code == 0, (ok.output, ok.exception)


@pytest.mark.parametrize("command", [*_REPORTS, "runs"])
def test_the_widest_times_accepted_still_report(db_url: str, command: str) -> None:
    now = datetime.now(UTC)
    with Ledger(db_url) as ledger, ledger.run("task", "t"):
        ledger.record(Usage(input_tokens=3, output_tokens=1), model="m", started_at=now)
    since = ["--since", "0001-01-01T00:00+05:00"]  # before the year 1 in UTC
    until = [] if command == "runs" else ["--until", "9999-12-31T23:59-05:00", "--no-import"]
    # In a child process: the command leaves its PostgreSQL connections to the exit.
    args = [sys.executable, "-m", "llmledger", command, *since, *until, "--json", "--db", db_url]
    done = subprocess.run(args, capture_output=True, text=True, check=False, env=os.environ)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)


def test_runs_limit_below_one_is_refused(sqlite_url: str) -> None:
    _refused(_invoke("runs", "--limit", "-1", "--db", sqlite_url), "--limit")


def test_import_names_a_bad_line_of_a_file_with_escapes_in_its_path(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "claude-home"
    project = home / "projects" / "-home-\x1b]0;pwned\x07"
    project.mkdir(parents=True)
    truncated = '{"type": "assistant", "message": {"usage": {"input_tokens": 1,\n'
    (project / "s.jsonl").write_text(truncated)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(home))
    result = _invoke("import", "claude", "--db", sqlite_url)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "\\x1b]0;pwned\\x07" in result.output
    _no_control_characters(result.output)


@pytest.mark.parametrize("timeout", ["-5", "0", "nan", "inf", "1e300"])
def test_run_refuses_a_timeout_out_of_range(sqlite_url: str, timeout: str) -> None:
    result = _invoke("run", "--timeout", timeout, "--db", sqlite_url, "--", "true")
    _refused(result, "--timeout")
