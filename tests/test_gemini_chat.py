"""Gemini CLI chat recordings (~/.gemini/tmp/<project>/chats/): parsed, detected, imported."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from llmledger import ParseError
from llmledger.imports import import_logs
from llmledger.sources import detect, parse
from llmledger.store import open_repository

TOKENS = {
    "input": 12000,
    "output": 300,
    "cached": 8000,
    "thoughts": 200,
    "tool": 50,
    "total": 12550,
}
REPLY = {
    "id": "m2",
    "timestamp": "2026-11-20T10:00:05.000Z",
    "type": "gemini",
    "content": "hello",
    "model": "gemini-2.5-pro",
    "tokens": TOKENS,
}
DOCUMENT = {
    "sessionId": "aaaa-1111",
    "projectHash": "abc123",
    "startTime": "2026-11-20T10:00:00.000Z",
    "lastUpdated": "2026-11-20T10:05:00.000Z",
    "messages": [
        {"id": "m1", "timestamp": "2026-11-20T10:00:01.000Z", "type": "user", "content": "hi"},
        REPLY,
        {**REPLY, "id": "m3", "tokens": None},  # tokens not recorded (yet): no call
    ],
}


def test_document_form_normalizes_like_gemini_usage_metadata() -> None:
    data = json.dumps(DOCUMENT, indent=2)
    assert detect(data) == "gemini_cli_chat"
    parsed = parse(data)
    [call] = parsed.calls
    # input 12000 includes the 8000 cached; tool-use prompt tokens (50) are input too;
    # output 300 excludes the 200 thoughts.
    assert call.usage.input_tokens == 12000 - 8000 + 50
    assert call.usage.cache_read_tokens == 8000
    assert call.usage.output_tokens == 300 + 200
    assert call.usage.reasoning_tokens == 200
    assert call.usage.cache_write_tokens is None
    assert call.usage.total_tokens == TOKENS["total"]
    assert call.model == "gemini-2.5-pro"
    assert call.session_id == "aaaa-1111"
    assert call.dedupe_key == "aaaa-1111:m2"
    assert call.started_at is not None


def test_jsonl_form_counts_a_rewritten_message_once() -> None:
    lines = [
        {"sessionId": "bbbb", "projectHash": "p", "startTime": "2026-11-20T10:00:00Z"},
        {**REPLY, "tokens": {**TOKENS, "output": 100, "total": 12350}},
        {"$set": {"messages": [REPLY]}},  # resume/compression rewrites the live messages
        {"$rewindTo": "m1"},
    ]
    data = b"\n".join(orjson.dumps(line) for line in lines)
    assert detect(data) == "gemini_cli_chat"
    [call] = parse(data).calls
    assert call.usage.output_tokens == 500  # the larger copy
    assert call.dedupe_key == "bbbb:m2"


def test_cached_above_input_is_a_clear_error() -> None:
    bad = {**DOCUMENT, "messages": [{**REPLY, "tokens": {**TOKENS, "cached": 20000}}]}
    with pytest.raises(ParseError, match="cached"):
        parse(json.dumps(bad))


def test_import_reads_only_chat_recordings(tmp_path: Path) -> None:
    project = tmp_path / "tmp" / "abc123"
    (project / "chats").mkdir(parents=True)
    (project / "chats" / "session-1.json").write_text(json.dumps(DOCUMENT))
    (project / "logs.json").write_text(json.dumps([{"sessionId": "x", "type": "user"}]))
    repo = open_repository(f"sqlite:///{tmp_path / 'l.db'}")
    summary = import_logs(repo, ["gemini"], [tmp_path / "tmp"])
    again = import_logs(repo, ["gemini"], [tmp_path / "tmp"])
    assert summary.calls_added == 1
    assert summary.files == 1
    assert not summary.errors
    assert again.calls_added == 0
    repo.engine.dispose()


def test_source_gemini_selects_the_chat_recordings(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from llmledger.cli import app
    from llmledger.cli._app import _register_commands

    chats = tmp_path / "tmp" / "abc123" / "chats"
    chats.mkdir(parents=True)
    (chats / "session-1.json").write_text(json.dumps(DOCUMENT))
    url = f"sqlite:///{tmp_path / 'l.db'}"
    repo = open_repository(url)
    import_logs(repo, ["gemini"], [tmp_path / "tmp"])
    repo.engine.dispose()
    _register_commands()
    args = ["daily", "--db", url, "--no-import", "--json", "--tz", "UTC"]
    gemini = CliRunner().invoke(app, [*args, "--source", "gemini"])
    claude = CliRunner().invoke(app, [*args, "--source", "claude"])
    assert gemini.exit_code == 0, gemini.output
    assert json.loads(gemini.output)["totals"]["total_tokens"] == TOKENS["total"]
    assert json.loads(claude.output)["totals"]["calls"] == 0
