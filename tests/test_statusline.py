"""``llmledger statusline``: each segment on a generated Claude Code tree, a session with no
calls yet, an unknown model, the new lines of a transcript imported, and bad input (no stdin,
invalid JSON, no transcript): the fallback line, a log entry, exit 0."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmledger.cli import _app, status_hook
from llmledger.cli.status_hook import fast_main
from llmledger.imports import import_logs
from llmledger.reports.statusline import (
    HookInput,
    context_window_of,
    last_turn_context,
    parse_segments,
    render,
    status_figures,
)
from llmledger.store import open_repository
from llmledger.store.sqlite_reader import open_reader

_SONNET = "claude-sonnet-4-20250514"  # $3 / $15 per million in and out, $0.30 cache read
_SESSION = "5e550000-0000-4000-8000-000000000001"
_OTHER = "5e550000-0000-4000-8000-000000000002"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _line(session: str, n: int, at: datetime, usage: dict[str, int] | None, **extra: Any) -> str:
    doc: dict[str, Any] = {
        "parentUuid": None,
        "isSidechain": False,
        "userType": "external",
        "cwd": "/home/dev/status",
        "sessionId": session,
        "version": "2.0.14",
        "type": "user" if usage is None else "assistant",
        "uuid": f"{session[-8:]}-{n}",
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
    }
    if usage is None:
        doc["message"] = {"role": "user", "content": "go on"}
    else:
        doc["requestId"] = f"req_{session[-8:]}_{n}"
        doc["message"] = {
            "id": f"msg_{session[-8:]}_{n}",
            "type": "message",
            "role": "assistant",
            "model": extra.pop("model", _SONNET),
            "content": [{"type": "text", "text": "done"}],
            "usage": {"service_tier": "standard", **usage},
        }
    doc.update(extra)
    return json.dumps(doc) + "\n"


def _usage(inp: int, out: int, read: int = 0, write: int = 0) -> dict[str, int]:
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
    }


class Tree:
    """A Claude Code config dir with a transcript for the session under test and another
    session of today, and the ledger they are imported into."""

    def __init__(self, root: Path, url: str, now: datetime) -> None:
        self.root, self.url, self.now = root, url, now
        project = root / "projects" / "-home-dev-status"
        project.mkdir(parents=True)
        self.transcript = project / f"{_SESSION}.jsonl"
        # $0.018, $0.036 + cache reads of 48,000 ($0.0144), a sub-agent's $0.00009: $0.06849.
        self.transcript.write_text(
            _line(_SESSION, 0, now - timedelta(seconds=60), None)
            + _line(_SESSION, 1, now - timedelta(seconds=50), _usage(1000, 1000))
            + _line(_SESSION, 2, now - timedelta(seconds=20), _usage(2000, 2000, read=48000))
            # A sub-agent's turn is the last line, but not the main thread's context.
            + _line(_SESSION, 3, now - timedelta(seconds=10), _usage(5, 5), isSidechain=True)
        )
        other = project / f"{_OTHER}.jsonl"
        other.write_text(
            _line(_OTHER, 0, now - timedelta(days=3), _usage(1000, 1000))  # not today
            + _line(_OTHER, 1, now - timedelta(seconds=30), _usage(0, 1000))  # $0.015 today
        )

    def hook(self, **fields: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "session_id": _SESSION,
            "transcript_path": str(self.transcript),
            "cwd": "/home/dev/status",
            "model": {"id": _SONNET, "display_name": "Sonnet 4"},
            "workspace": {"current_dir": "/home/dev/status", "project_dir": "/home/dev/status"},
            "version": "2.0.14",
            "cost": {"total_cost_usd": 0.07, "total_duration_ms": 60000},
            "context_window": {"context_window_size": 200000},
        }
        doc.update(fields)
        return doc


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's directories in tmp_path: the log, the cache; no NO_COLOR."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude"))
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("LLMLEDGER_DB", raising=False)
    _app._register_commands(["statusline"])
    return tmp_path / "state" / "llmledger" / "log" / "statusline.log"


@pytest.fixture
def tree(tmp_path: Path, sqlite_url: str, env: Path) -> Tree:
    return Tree(tmp_path / "claude", sqlite_url, datetime.now(UTC))


def _run(url: str | None, hook: Any, *args: str, wait: bool = True) -> tuple[str, int]:
    """The command's output and exit code; with ``wait`` (the default here) it imports the
    transcript's new lines before it prints."""
    data = hook if isinstance(hook, str | bytes) else json.dumps(hook)
    db = ["--db", url] if url else []
    now = ["--wait"] if wait else []
    result = CliRunner().invoke(_app.app, ["statusline", *db, *now, *args], input=data)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.stdout, result.exit_code


def test_the_line_has_every_segment(tree: Tree) -> None:
    out, code = _run(tree.url, tree.hook(), "--no-color")
    assert code == 0
    assert out.count("\n") == 1
    model, session, today, block, burn, context = out.strip().split(" · ")
    assert model == "Sonnet 4"
    assert session == "session $0.07"  # 0.0684: imported from the transcript just now
    assert re.fullmatch(r"block \$0\.07 \([345]h \d\dm left\)", block)
    assert re.fullmatch(r"\$\d+\.\d\d/h", burn)
    assert context == "ctx 25%"  # 2,000 + 48,000 of 200,000: the sidechain turn is not it
    assert today.startswith("today $")
    assert "\x1b[" not in out


def test_segments_pick_and_order(tree: Tree) -> None:
    out, _ = _run(tree.url, tree.hook(), "--segments", "context,model", "--no-color")
    assert out == "ctx 25% · Sonnet 4\n"
    colored, _ = _run(tree.url, tree.hook(), "--segments", "model,context")
    assert "\x1b[36mSonnet 4\x1b[0m" in colored
    assert _ANSI.sub("", colored) == "Sonnet 4 · ctx 25%\n"
    assert parse_segments(" Burn , model,burn") == ("burn", "model")
    for bad in ("cost", ""):
        with pytest.raises(ValueError, match="segment"):
            parse_segments(bad)
    refused, code = _run(tree.url, tree.hook(), "--segments", "model,price")
    assert code == 0
    assert "unknown segment 'price'" in refused


def test_no_color_from_the_environment(tree: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out, _ = _run(tree.url, tree.hook())
    assert "\x1b[" not in out


def test_figures_as_of_an_injected_now(tree: Tree) -> None:
    repo = open_repository(tree.url)
    import_logs(repo, ["claude"], [tree.root], workers=1)
    hook = HookInput.parse(json.dumps(tree.hook()).encode())
    # A zone where it is about noon: the calls of the last minute are all today's.
    noon = timezone(timedelta(hours=12 - tree.now.hour))
    figures = status_figures(repo, hook, session_id=_SESSION, now=tree.now, tz=noon)
    assert figures.session.calls == 3  # the sub-agent's turn is the session's too
    assert figures.session.cost_usd == Decimal("0.06849")
    # Today: the session's calls and the other session's call of today, not the one 3 days ago.
    assert figures.today.calls == 4
    assert figures.block is not None
    assert figures.block.is_active
    assert figures.context_tokens == 50000
    assert figures.context_window == 200000
    # Five hours on, nothing is active; the day may have changed too.
    later = status_figures(repo, hook, session_id=_SESSION, now=tree.now + timedelta(hours=6))
    assert later.block is None
    line = render(later, ("block", "burn", "session"), color=False)
    assert line == "no active block · session $0.07"


def test_model_falls_back_to_the_id_then_the_transcript(tree: Tree) -> None:
    out, _ = _run(tree.url, tree.hook(model={"id": _SONNET}), "--segments", "model", "--no-color")
    assert out == f"{_SONNET}\n"
    hook = tree.hook()
    del hook["model"]
    out, _ = _run(tree.url, hook, "--segments", "model,context", "--no-color")
    assert out == f"{_SONNET} · ctx 25%\n"


def test_context_from_current_usage_and_the_window_from_genai_prices(tree: Tree) -> None:
    usage = {"input_tokens": 10, "cache_read_input_tokens": 99990, "output_tokens": 7}
    hook = tree.hook(context_window={"context_window_size": 400000, "current_usage": usage})
    out, _ = _run(tree.url, hook, "--segments", "context", "--no-color")
    assert out == "ctx 25%\n"  # 100,000 of 400,000, as Claude Code reported them
    # Without the window in the input: genai-prices' window for the model (200k), cached.
    out, _ = _run(tree.url, tree.hook(context_window=None), "--segments", "context", "--no-color")
    assert out == "ctx 25%\n"
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "llmledger" / "context-windows.json"
    assert json.loads(cache.read_text())["models"] == {_SONNET: 200000}
    assert context_window_of(_SONNET, str(cache)) == 200000
    assert context_window_of("no-such-model-anywhere", str(cache)) is None
    assert json.loads(cache.read_text())["models"]["no-such-model-anywhere"] is None


def test_a_session_with_no_calls_yet(tree: Tree) -> None:
    fresh = tree.transcript.with_name("5e550000-0000-4000-8000-00000000000f.jsonl")
    fresh.write_text(_line("5e550000-0000-4000-8000-00000000000f", 0, tree.now, None))
    hook = tree.hook(session_id=fresh.stem, transcript_path=str(fresh))
    out, code = _run(tree.url, hook, "--segments", "model,session,context", "--no-color")
    assert code == 0
    assert out == "Sonnet 4 · session $0.00 · ctx -\n"
    assert last_turn_context(str(fresh)) == (None, None)


def test_an_unknown_model(tree: Tree) -> None:
    odd = tree.transcript.with_name("5e550000-0000-4000-8000-0000000000aa.jsonl")
    sid = odd.stem
    odd.write_text(_line(sid, 1, tree.now, _usage(100, 100, read=900), model="claude-mystery-9"))
    hook = tree.hook(session_id=sid, transcript_path=str(odd), model={"id": "claude-mystery-9"})
    del hook["context_window"]
    out, code = _run(tree.url, hook, "--segments", "model,session,context", "--no-color")
    assert code == 0
    # Never $0 for an unknown price; the window is unknown too.
    assert out == "claude-mystery-9 · session unpriced (1) · ctx 1,000 tok (window unknown)\n"


def test_only_the_new_lines_are_imported(tree: Tree) -> None:
    out, _ = _run(tree.url, tree.hook(), "--segments", "session", "--no-color")
    assert out == "session $0.07\n"
    with tree.transcript.open("a") as fh:  # the next turn: $0.15 more
        fh.write(_line(_SESSION, 4, tree.now, _usage(0, 10000)))
    out, _ = _run(tree.url, tree.hook(), "--segments", "session", "--no-color")
    assert out == "session $0.22\n"
    reader = open_reader(tree.url)
    assert reader is not None
    [(calls,)] = reader.fetch("SELECT COUNT(*) FROM calls WHERE session_id = ?", [_SESSION])
    assert calls == 4
    [(offset, size)] = reader.fetch('SELECT "offset", size FROM import_state', [])
    assert offset == size == tree.transcript.stat().st_size
    # Only that transcript: the other session's file was not imported.
    [(others,)] = reader.fetch("SELECT COUNT(*) FROM calls WHERE session_id = ?", [_OTHER])
    assert others == 0


@pytest.mark.parametrize(
    ("stdin", "reason"),
    [
        ("", "no input on stdin"),
        ("{not json", "invalid input"),
        ("[1, 2]", "invalid input"),
        (json.dumps({"session_id": "x"}), "no transcript_path in the input"),
        (
            json.dumps({"transcript_path": "/nonexistent/x.jsonl", "model": {"id": "m"}}),
            "transcript not found",
        ),
    ],
)
def test_bad_input_prints_the_fallback_and_exits_0(
    env: Path, sqlite_url: str, stdin: str, reason: str
) -> None:
    out, code = _run(sqlite_url, stdin)
    assert code == 0
    assert reason in out
    assert out.count("\n") == 1
    assert "Traceback" not in out
    assert reason in env.read_text()
    if "nonexistent" in stdin:
        assert out.startswith("m · llmledger: ")


def test_a_broken_ledger_url_prints_the_fallback(tree: Tree, env: Path) -> None:
    out, code = _run("mysql://nope", tree.hook())
    assert code == 0
    assert out == "Sonnet 4 · llmledger: status unavailable (see statusline.log)\n"
    assert "Traceback" in env.read_text()


def test_a_locked_ledger_prints_the_fallback(tree: Tree, env: Path, tmp_path: Path) -> None:
    not_a_db = tmp_path / "ledger.txt"
    not_a_db.write_text("this is not a database\n" * 100)
    out, code = _run(f"sqlite:///{not_a_db}", tree.hook())
    assert code == 0
    assert "llmledger: status unavailable" in out
    assert env.exists()


def test_fast_path_parses_only_its_options(
    tree: Tree, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for bad in (["--help"], ["--segments"], ["--db", "x", "--db", "y"], ["--colour"]):
        assert fast_main(bad) is False
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(sys, "stdin", _Stdin(json.dumps(tree.hook()).encode()))
    argv = ["--segments=model,context", "--no-color", "--wait", f"--db={tree.url}"]
    assert fast_main(argv) is True
    assert capsys.readouterr().out == "Sonnet 4 · ctx 25%\n"


class _Stdin:
    def __init__(self, data: bytes) -> None:
        import io

        self.buffer = io.BytesIO(data)
        self.closed = False

    def isatty(self) -> bool:
        return False


def test_the_console_script_runs_without_typer(tree: Tree) -> None:
    code = (
        "import sys; from llmledger.cli import main; main(); "
        "print('typer' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "statusline", "--no-color", "--wait", "--db", tree.url],
        input=json.dumps(tree.hook()).encode(),
        capture_output=True,
        env={**os.environ},
        check=True,
    )
    assert done.stdout.decode().startswith("Sonnet 4 · session $0.07 · today $")
    assert done.stderr.decode().strip() == "False"


def test_by_default_the_new_lines_are_imported_in_the_background(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[str | None, str]] = []
    monkeypatch.setattr(
        status_hook, "_start_background_import", lambda db, path: started.append((db, path))
    )
    monkeypatch.setenv("LLMLEDGER_DB", tree.url)
    # No ledger yet: nothing to read, the import is on its way.
    out, code = _run(None, tree.hook(), "--no-color", wait=False)
    assert code == 0
    assert out == "Sonnet 4 · llmledger: importing the session ↻\n"
    assert started == [(tree.url, str(tree.transcript))]
    status_hook.background_import(str(tree.transcript))  # what the started process runs
    out, _ = _run(None, tree.hook(), "--segments", "session", "--no-color", wait=False)
    assert out == "session $0.07\n"  # nothing new: no import started, no mark
    assert len(started) == 1
    with tree.transcript.open("a") as fh:  # the next turn: $0.15 more
        fh.write(_line(_SESSION, 4, tree.now, _usage(0, 10000)))
    out, _ = _run(None, tree.hook(), "--segments", "session", "--no-color", wait=False)
    assert out == "session $0.07 ↻\n"  # the ledger as it is, while the import runs
    assert len(started) == 2
    status_hook.background_import(str(tree.transcript))
    out, _ = _run(None, tree.hook(), "--segments", "session", "--no-color", wait=False)
    assert out == "session $0.22\n"


def test_the_background_import_process(tree: Tree) -> None:
    # The command the status line starts, run to its end here.
    env = {**os.environ, "LLMLEDGER_DB": tree.url}
    module = "llmledger.cli.status_hook"
    subprocess.run([sys.executable, "-m", module, str(tree.transcript)], env=env, check=True)
    reader = open_reader(tree.url)
    assert reader is not None
    [(calls,)] = reader.fetch("SELECT COUNT(*) FROM calls WHERE session_id = ?", [_SESSION])
    assert calls == 3
    lock = Path(os.environ["XDG_CACHE_HOME"]) / "llmledger" / "statusline-import.lock"
    assert lock.exists()


def _claude_turns(tree: Tree, times: list[datetime]) -> None:
    """A session whose assistant turns were at ``times`` (priced: $0.003 + $0.015 each)."""
    sid = "5e550000-0000-4000-8000-0000000000b1"
    path = tree.root / "projects" / "-home-dev-status" / f"{sid}.jsonl"
    path.write_text("".join(_line(sid, n, at, _usage(1000, 1000)) for n, at in enumerate(times)))


def test_the_figures_are_the_reports_figures(tree: Tree) -> None:
    """The line reads its own few queries; they give what the reports give (the session's
    and today's totals, ``blocks --active``), around block edges and idle stretches."""
    from llmledger.agents import SOURCE_OF
    from llmledger.reports.blocks import active_block
    from llmledger.reports.filters import Filters
    from llmledger.reports.statusline import _CLAUDE_SOURCE
    from llmledger.reports.sums import calls_sums, sums_to_totals

    assert SOURCE_OF["claude"] == _CLAUDE_SOURCE
    start = tree.now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=30)
    # Blocks that end at 5 h from their hour, chains broken by idle stretches of > 5 h, and
    # more calls than one page of the walk back.
    times = [start + timedelta(minutes=m) for m in (0, 50, 290, 301, 599, 600, 960, 1320)]
    times += [start + timedelta(hours=24, seconds=15 * n) for n in range(1500)]
    _claude_turns(tree, times)
    repo = open_repository(tree.url)
    import_logs(repo, ["claude"], [tree.root], workers=1)
    hook = HookInput.parse(json.dumps(tree.hook()).encode())
    claude = Filters(sources=(SOURCE_OF["claude"],))
    moments = [tree.now + timedelta(hours=h) for h in (-29.5, -25, -20, -10, -5.9, -1, 0, 4.9, 6)]
    for now in [*moments, *times[:8]]:
        figures = status_figures(repo, hook, session_id=_SESSION, now=now, tz=UTC)
        expected = active_block(repo, filters=claude, now=now)
        if expected is None:
            assert figures.block is None, now
            continue
        block = figures.block
        assert block is not None, now
        assert (block.start, block.end) == (expected.start, expected.end)
        assert (block.first_at, block.last_at) == (expected.first_at, expected.last_at)
        totals = expected.totals
        assert block.totals == (totals.cost_usd, totals.unpriced_calls, totals.calls)
        rate = expected.burn_rate()
        assert block.cost_per_hour() == (None if rate is None else rate["cost_per_hour"])
    figures = status_figures(repo, hook, session_id=_SESSION, now=tree.now, tz=UTC)
    sums = ", ".join(calls_sums(repo, "auto"))
    [row] = repo.fetch(f"SELECT {sums} FROM calls WHERE session_id = ?", [_SESSION])
    session = sums_to_totals(row)
    assert figures.session == (session.cost_usd, session.unpriced_calls, session.calls)


def test_the_quick_look_is_the_importers_plan(tree: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the importer's modules the line finds the session and whether the transcript
    changed as the importer would; the line is the same either way."""
    from llmledger.imports.logfiles import discover

    root = tree.root / "projects"
    for path in [root / "-p" / "5e55.jsonl", tree.root.parent / "elsewhere" / "5e56.jsonl"]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        [file] = discover(["claude"], [str(path)])
        assert (file.path, file.session_id) == (str(path), status_hook._plain_session(str(path)))
    # Left to the importer: a sub-agent's file, a path to normalize.
    for odd in ["-p/5e55/subagents/agent-a1.jsonl", "-p/agent-a1.jsonl", "-p/../-p/5e55.jsonl"]:
        assert status_hook._plain_session(f"{root}/{odd}") is None
    assert status_hook._plain_session("relative/5e55.jsonl") is None

    started: list[str] = []
    monkeypatch.setattr(status_hook, "_start_background_import", lambda db, p: started.append(p))
    _run(tree.url, tree.hook(), "--no-color")  # imports the transcript

    def both_ways() -> tuple[str, str]:
        quick, _ = _run(tree.url, tree.hook(), wait=False)
        with monkeypatch.context() as patch:  # the importer's way: discover, plan_import
            patch.setattr(status_hook, "_quick_look", lambda db, path: None)
            full, _ = _run(tree.url, tree.hook(), wait=False)
        return quick, full

    quick, full = both_ways()
    assert quick == full
    assert not quick.endswith(" ↻\n")
    assert started == []
    with tree.transcript.open("a") as fh:
        fh.write(_line(_SESSION, 10, tree.now, _usage(0, 1000)))
    quick, full = both_ways()
    assert quick == full
    assert quick.endswith(" ↻\n")
    assert started == [str(tree.transcript)] * 2


def test_the_cache_directory_is_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    from llmledger.reports.statusline import user_cache_dir

    for value in (None, "/tmp/caches", "  "):
        if value is None:
            monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_CACHE_HOME", value)
        assert user_cache_dir() == platformdirs.user_cache_dir("llmledger", appauthor=False)


def test_a_warm_line_loads_no_heavy_module(tree: Tree) -> None:
    """The line runs after every message: once the transcript is imported, drawing it again
    loads neither Typer nor SQLAlchemy nor the reports' or the importer's modules."""
    _run(tree.url, tree.hook(context_window=None), "--no-color")  # imports; caches the window
    heavy = ["typer", "sqlalchemy", "genai_prices", "llmledger.reports.blocks"]
    heavy += ["llmledger.imports.plan", "llmledger.totals", "platformdirs", "subprocess"]
    code = (
        "import sys; from llmledger.cli import main; main(); "
        f"print([m for m in {heavy!r} if m in sys.modules], file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "statusline", "--no-color", "--db", tree.url],
        input=json.dumps(tree.hook(context_window=None)).encode(),
        capture_output=True,
        env={**os.environ},
        check=True,
    )
    assert done.stdout.decode().startswith("Sonnet 4 · session $0.07 · today $")
    assert done.stderr.decode().strip() == "[]"
