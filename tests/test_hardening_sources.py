"""Issue 13 (hardening), the Codex source and ``llmledger parse``: items 3, 10-14.

Every rollout and transcript here is written from the shapes in usage-formats.md §2 and §8.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

import llmledger.cli.parse  # noqa: F401  (registers the command)
from llmledger.cli._app import app
from llmledger.imports import import_logs
from llmledger.sources import parse_file
from llmledger.store import Repository, open_repository
from llmledger.store.schema import calls

runner = CliRunner()

SESSION = "019b0000-0000-7000-8000-00000000000a"
BRANCH = "019b0000-0000-7000-8000-00000000000b"


@pytest.fixture
def repo(db_url: str) -> Iterator[Repository]:
    repo = open_repository(db_url)
    yield repo
    repo.engine.dispose()


def write(path: Path, lines: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(obj) + b"\n" for obj in lines))
    return path


def meta(session: str = SESSION, at: str = "2026-01-02T00:00:00.000Z") -> dict[str, Any]:
    payload = {"id": session, "timestamp": at, "cwd": "/home/dev/api", "model_provider": "openai"}
    return {"timestamp": at, "type": "session_meta", "payload": payload}


def context(model: str = "gpt-5", at: str = "2026-01-02T00:00:00.100Z") -> dict[str, Any]:
    return {"timestamp": at, "type": "turn_context", "payload": {"cwd": "/x", "model": model}}


def usage(inp: int, cached: int, out: int, reasoning: int = 0) -> dict[str, int]:
    return {
        "input_tokens": inp,
        "cached_input_tokens": cached,
        "output_tokens": out,
        "reasoning_output_tokens": reasoning,
        "total_tokens": inp + out,
    }


def tokens(
    at: Any,
    total: dict[str, int] | None = None,
    last: dict[str, int] | None = None,
    **info: Any,
) -> dict[str, Any]:
    if total is not None:
        info["total_token_usage"] = total
    if last is not None:
        info["last_token_usage"] = last
    payload = {"type": "token_count", "info": info, "rate_limits": None}
    return {"timestamp": at, "type": "event_msg", "payload": payload}


def rollout(
    path: Path, session: str = SESSION, *events: dict[str, Any], model: str = "gpt-5"
) -> Path:
    return write(path, [meta(session), context(model), *events])


def totals(parsed_calls: list[Any]) -> tuple[int, int, int, int]:
    u = [c.usage for c in parsed_calls]
    return (
        sum(x.input_tokens or 0 for x in u),
        sum(x.cache_read_tokens or 0 for x in u),
        sum(x.output_tokens or 0 for x in u),
        sum(x.reasoning_tokens or 0 for x in u),
    )


def stored(repo: Repository) -> list[dict[str, Any]]:
    with repo.engine.connect() as conn:
        rows = conn.execute(select(calls).order_by(calls.c.started_at)).mappings().all()
    return [dict(r) for r in rows]


def stored_totals(repo: Repository) -> tuple[int, int, int, int]:
    rows = stored(repo)
    return (
        sum(r["input_tokens"] or 0 for r in rows),
        sum(r["cache_read_tokens"] or 0 for r in rows),
        sum(r["output_tokens"] or 0 for r in rows),
        sum(r["reasoning_tokens"] or 0 for r in rows),
    )


# -- item 3: one bad token_count line ------------------------------------------------------------


def _bad_rollout(tmp_path: Path) -> Path:
    return rollout(
        tmp_path / "rollout-2026-01-02T00-00-00-a.jsonl",
        SESSION,
        tokens("2026-01-02T00:00:01.000Z", usage(1000, 100, 50)),  # line 3
        tokens("2026-01-02T00:00:02.000Z", usage(1500, 9999, 80)),  # line 4: cached > input
        tokens("2026-01-02T00:00:03.000Z", usage(-5, 0, 90)),  # line 5: negative
        tokens(1767312004000, usage(2000, 300, 100, 10)),  # line 6: epoch milliseconds
        tokens(1767312005, usage(2600, 400, 130, 10)),  # line 7: epoch seconds
    )


def test_codex_bad_token_count_lines_are_skipped_and_named(tmp_path: Path) -> None:
    path = _bad_rollout(tmp_path)
    parsed = parse_file(path)
    assert parsed.format == "codex_rollout"
    # The good lines' calls still sum to the final cumulative total.
    assert totals(parsed.calls) == (2600 - 400, 400, 130, 10)
    assert len(parsed.calls) == 3
    assert [s.line for s in parsed.skipped] == [4, 5]
    assert "cached_input_tokens" in parsed.skipped[0].message
    assert "negative" in parsed.skipped[1].message
    at = [c.started_at.isoformat() for c in parsed.calls if c.started_at]
    assert at[1:] == ["2026-01-02T00:00:04+00:00", "2026-01-02T00:00:05+00:00"]


def test_codex_bad_line_in_import_is_named_once(repo: Repository, tmp_path: Path) -> None:
    path = _bad_rollout(tmp_path / "sessions")
    summary = import_logs(repo, ["codex"], [tmp_path / "sessions"], workers=1)
    assert summary.calls_added == 3
    assert summary.lines_skipped == 2
    assert "unreadable file" not in summary.skipped
    assert summary.errors[0].startswith(f"{path}:4: ")
    assert summary.errors[1].startswith(f"{path}:5: ")
    assert all(e.count(str(path)) == 1 for e in summary.errors)
    assert stored_totals(repo) == (2200, 400, 130, 10)


# -- item 10: last_token_usage only ----------------------------------------------------------------


def test_codex_last_token_usage_only(tmp_path: Path, repo: Repository) -> None:
    path = rollout(
        tmp_path / "sessions" / "rollout-last.jsonl",
        SESSION,
        tokens("2026-01-02T00:00:01.000Z", last=usage(1000, 100, 50, 5)),
        tokens("2026-01-02T00:00:02.000Z", last=usage(700, 600, 40)),
    )
    parsed = parse_file(path)
    assert len(parsed.calls) == 2
    assert totals(parsed.calls) == (900 + 100, 700, 90, 5)
    summary = import_logs(repo, ["codex"], [tmp_path / "sessions"], workers=1)
    assert summary.calls_added == 2
    assert stored_totals(repo) == (1000, 700, 90, 5)


def test_codex_last_usage_between_totals_is_not_counted_twice(tmp_path: Path) -> None:
    path = rollout(
        tmp_path / "rollout-mixed.jsonl",
        SESSION,
        tokens("2026-01-02T00:00:01.000Z", usage(1000, 0, 50)),
        tokens("2026-01-02T00:00:02.000Z", last=usage(500, 0, 20)),
        tokens("2026-01-02T00:00:03.000Z", usage(1800, 0, 100), usage(300, 0, 30)),
    )
    parsed = parse_file(path)
    assert [c.usage.input_tokens for c in parsed.calls] == [1000, 500, 300]
    assert totals(parsed.calls) == (1800, 0, 100, 0)


# -- item 11: the event's own model ---------------------------------------------------------------


def test_codex_event_model_wins_over_turn_context(tmp_path: Path) -> None:
    path = rollout(
        tmp_path / "rollout-model.jsonl",
        SESSION,
        tokens("2026-01-02T00:00:01.000Z", usage(1000, 0, 50)),
        tokens("2026-01-02T00:00:02.000Z", usage(2000, 0, 90), model="gpt-5-mini"),
        model="gpt-5",
    )
    parsed = parse_file(path)
    assert [c.model for c in parsed.calls] == ["gpt-5", "gpt-5-mini"]


# -- item 12: a copied branch replaying another session's history ------------------------------


def _parent_and_branch(root: Path) -> tuple[Path, Path]:
    # The shapes of ccusage's `dedupes_copied_branch_history_across_session_files`.
    first = tokens("2026-05-12T08:01:00.000Z", usage(1000, 100, 200, 20))
    parent = write(
        root / "2026" / "05" / "12" / "rollout-2026-05-12T08-00-00-parent.jsonl",
        [meta(SESSION, "2026-05-12T08:00:00.000Z"), context("gpt-5.2"), first],
    )
    branch = write(
        root / "2026" / "05" / "12" / "rollout-2026-05-12T08-02-00-branch.jsonl",
        [
            meta(BRANCH, "2026-05-12T08:02:00.000Z"),
            context("gpt-5.2"),
            first,
            tokens("2026-05-12T08:02:00.000Z", usage(1600, 300, 450, 40)),
        ],
    )
    os.utime(parent, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    os.utime(branch, ns=(1_000_000_001_000_000_000, 1_000_000_001_000_000_000))
    return parent, branch


def test_codex_copied_branch_is_counted_once(repo: Repository, tmp_path: Path) -> None:
    _parent_and_branch(tmp_path / "sessions")
    summary = import_logs(repo, ["codex"], [tmp_path / "sessions"], workers=1)
    assert summary.calls_added == 2
    rows = stored(repo)
    # ccusage's totals: the parent's turn, then the branch's own turn (600/200/250/20).
    assert [(r["session_id"], r["input_tokens"] + r["cache_read_tokens"]) for r in rows] == [
        (SESSION, 1000),
        (BRANCH, 600),
    ]
    assert stored_totals(repo) == (900 + 400, 300, 450, 40)
    again = import_logs(repo, ["codex"], [tmp_path / "sessions"], workers=1)
    assert again.calls_added == 0
    assert stored_totals(repo) == (1300, 300, 450, 40)


def test_codex_branch_imported_after_its_parent(repo: Repository, tmp_path: Path) -> None:
    _, branch = _parent_and_branch(tmp_path / "sessions")
    moved = branch.rename(tmp_path / branch.name)
    assert import_logs(repo, ["codex"], [tmp_path / "sessions"], workers=1).calls_added == 1
    moved.rename(branch)
    second = import_logs(repo, ["codex"], [tmp_path / "sessions"], workers=1)
    assert second.calls_added == 1
    assert stored_totals(repo) == (1300, 300, 450, 40)
    os.utime(branch)  # changed again: read whole again, nothing new
    third = import_logs(repo, ["codex"], [tmp_path / "sessions"], workers=1)
    assert (third.files_read, third.calls_added, third.calls_updated) == (1, 0, 0)
    assert stored_totals(repo) == (1300, 300, 450, 40)


def test_codex_rows_stored_under_old_keys_are_replaced(repo: Repository, tmp_path: Path) -> None:
    path = rollout(
        tmp_path / "sessions" / "rollout-old.jsonl",
        SESSION,
        tokens("2026-01-02T00:00:01.000Z", usage(1000, 100, 50)),
        tokens("2026-01-02T00:00:02.000Z", usage(1500, 200, 80)),
    )
    import_logs(repo, ["codex"], [tmp_path / "sessions"], workers=1)
    rows = stored(repo)
    with repo.engine.begin() as conn:  # as earlier versions keyed them
        for n, row in enumerate(rows, 1):
            conn.execute(
                update(calls).where(calls.c.id == row["id"]).values(dedupe_key=f"{SESSION}:turn{n}")
            )
    os.utime(path, ns=(2_000_000_000_000_000_000, 2_000_000_000_000_000_000))
    import_logs(repo, ["codex"], [tmp_path / "sessions"], workers=1)
    assert len(stored(repo)) == 2
    assert stored_totals(repo) == (1300, 200, 80, 0)


# -- item 13: transcript lines without a type ---------------------------------------------------


def transcript_line(msg_id: str, request_id: str, **extra: Any) -> dict[str, Any]:
    message = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    line = {
        "sessionId": SESSION,
        "requestId": request_id,
        "timestamp": "2026-01-02T00:00:00.000Z",
        "cwd": "/home/dev/p",
        "message": message,
    }
    line.update(extra)
    return line


def test_parse_detects_transcript_lines_without_type(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", [transcript_line("m1", "r1"), transcript_line("m2", "r2")])
    parsed = parse_file(path)
    assert parsed.format == "claude_code_transcript"
    assert len(parsed.calls) == 2


# -- item 14: parse skips and names bad lines -----------------------------------------------------


def _transcript(tmp_path: Path, name: str, bad: bytes) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    good = [orjson.dumps(transcript_line(f"m{i}", f"r{i}", type="assistant")) for i in (1, 2)]
    path = tmp_path / name
    path.write_bytes(good[0] + b"\n" + bad + b"\n" + good[1] + b"\n")
    return path


_DEEP = b'{"x":' * 1100 + b"1" + b"}" * 1100


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (orjson.dumps(transcript_line("m3", "r3")).replace(b"10", b"NaN"), "NaN"),
        (orjson.dumps(transcript_line("m3", "r3")).replace(b"/home", b"/\xffhome"), "UTF-8"),
        (_DEEP, "nested"),
        (orjson.dumps(transcript_line("m3", "r3")).replace(b":10,", b":-1,"), "negative"),
        (orjson.dumps(transcript_line("m3", "r3", message=[1])), "message"),
    ],
    ids=["nan", "bad-utf8", "deep", "negative", "message-list"],
)
def test_parse_skips_one_bad_line(tmp_path: Path, bad: bytes, reason: str) -> None:
    path = _transcript(tmp_path, "bad.jsonl", bad)
    parsed = parse_file(path)
    assert parsed.format == "claude_code_transcript"
    assert len(parsed.calls) == 2
    assert [s.line for s in parsed.skipped] == [2]
    assert reason in parsed.skipped[0].message
    result = runner.invoke(app, ["parse", str(path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["totals"]["total_tokens"] == 30
    assert [s["line"] for s in doc["skipped"]] == [2]
    table = runner.invoke(app, ["parse", str(path)])
    assert table.exit_code == 0, table.output
    assert f"{path}:2" in table.output.replace("\n", "")


@pytest.mark.parametrize("value", [[1, 2], "lots"], ids=["array", "string"])
def test_parse_counts_usage_of_the_wrong_type_as_skipped(tmp_path: Path, value: Any) -> None:
    line = transcript_line("m3", "r3")
    line["message"]["usage"] = value
    path = _transcript(tmp_path, "usage.jsonl", orjson.dumps(line))
    parsed = parse_file(path)
    assert len(parsed.calls) == 2
    assert [s.line for s in parsed.skipped] == [2]
    assert "message.usage" in parsed.skipped[0].message


def test_parse_single_bad_line_says_why(tmp_path: Path) -> None:
    for bad, reason in [
        (orjson.dumps(transcript_line("m3", "r3")).replace(b"10", b"NaN"), "NaN"),
        (orjson.dumps(transcript_line("m3", "r3")).replace(b"/home", b"/\xffhome"), "UTF-8"),
        (_DEEP, "nested"),
    ]:
        path = tmp_path / "one.jsonl"
        path.write_bytes(bad + b"\n")
        result = runner.invoke(app, ["parse", str(path), "--json"])
        assert "no complete JSON value" not in result.output
        assert reason in result.output, result.output


def test_parse_reads_a_line_nested_1000_levels_deep(tmp_path: Path) -> None:
    line = orjson.dumps(transcript_line("m3", "r3", type="assistant"))
    deep = line[:-1] + b',"content":' + b"[" * 1000 + b"]" * 1000 + b"}"
    path = _transcript(tmp_path, "deep.jsonl", deep)
    parsed = parse_file(path)
    assert (len(parsed.calls), parsed.skipped) == (3, [])


def test_parse_tolerates_a_byte_order_mark(tmp_path: Path) -> None:
    lines = [orjson.dumps(transcript_line(f"m{i}", f"r{i}")) for i in (1, 2)]
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")
    parsed = parse_file(path)
    assert (len(parsed.calls), parsed.skipped) == (2, [])
    single = tmp_path / "bom.json"
    single.write_bytes(b"\xef\xbb\xbf" + lines[0])
    assert len(parse_file(single).calls) == 1


def test_parse_counts_utf16_input_as_skipped(tmp_path: Path) -> None:
    lines = [json.dumps(transcript_line(f"m{i}", f"r{i}")) for i in (1, 2)]
    path = tmp_path / "utf16.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-16"))
    parsed = parse_file(path)
    assert parsed.calls == []
    assert len(parsed.skipped) == 1
    assert "UTF-16" in parsed.skipped[0].message
    result = runner.invoke(app, ["parse", str(path), "--json"])
    doc = json.loads(result.stdout)
    assert doc["calls"] == []
    assert "UTF-16" in doc["skipped"][0]["reason"]


def test_import_names_a_bad_transcript_line_once(repo: Repository, tmp_path: Path) -> None:
    line = transcript_line("m3", "r3", type="assistant")
    line["message"]["usage"] = [1, 2]
    path = _transcript(tmp_path / "projects" / "-p", f"{SESSION}.jsonl", orjson.dumps(line))
    summary = import_logs(repo, ["claude"], [tmp_path], workers=1)
    assert summary.calls_added == 2
    assert summary.skipped == {"invalid usage": 1}
    assert summary.errors[0].startswith(f"{path}:2: ")
    assert summary.errors[0].count(str(path)) == 1
    assert "message.usage" in summary.errors[0]
