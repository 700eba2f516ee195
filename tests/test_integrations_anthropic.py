"""instrument_anthropic: real Anthropic clients over a mocked transport serving the fixtures.

The Anthropic SDK of this venv is built on ``httpx2`` and rejects ``httpx`` clients, so the
mocked transport is httpx2's (older SDKs take ``httpx2.MockTransport`` the same way).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from sqlalchemy import select

from llmledger.integrations.anthropic import instrument_anthropic
from llmledger.ledger import Ledger
from llmledger.store.schema import calls
from llmledger.usage import BUCKETS


def rows(ledger: Ledger) -> list[dict[str, Any]]:
    with ledger.repository.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(calls).order_by(calls.c.id)).mappings()]


def tokens(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in BUCKETS}


def expected(fixtures_dir: Path, name: str) -> dict[str, Any]:
    return dict(json.loads((fixtures_dir / "expected.json").read_text())[name])


class Server:
    """The mocked Messages API: the fixture message, or the fixture events as SSE."""

    def __init__(self, fixtures_dir: Path) -> None:
        base = fixtures_dir / "anthropic"
        self.message = json.loads((base / "anthropic-message.json").read_text())
        self.events = (base / "anthropic-stream.jsonl").read_text().splitlines()
        self.cut_after: int | None = None

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        if body["model"] == "no-such-model":
            error = {"type": "error", "error": {"type": "not_found_error", "message": "model"}}
            return httpx2.Response(404, json=error)
        if not body.get("stream"):
            return httpx2.Response(200, json=self.message)
        events = self.events
        text = ""
        for line in events[: self.cut_after]:
            text += f"event: {json.loads(line)['type']}\ndata: {line}\n\n"
        if self.cut_after is not None:
            error = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
            text += f"event: error\ndata: {json.dumps(error)}\n\n"
        headers = {"content-type": "text/event-stream"}
        return httpx2.Response(200, content=text.encode(), headers=headers)


@pytest.fixture
def server(fixtures_dir: Path) -> Server:
    return Server(fixtures_dir)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path}/l.db") as ledger:
        yield ledger


def client(server: Server) -> anthropic.Anthropic:
    http = httpx2.Client(transport=httpx2.MockTransport(server))
    return anthropic.Anthropic(api_key="test", http_client=http)


def async_client(server: Server) -> anthropic.AsyncAnthropic:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(server))
    return anthropic.AsyncAnthropic(api_key="test", http_client=http)


ARGS: dict[str, Any] = {
    "model": "claude-test",  # not in the SDK's deprecated-model list (it warns)
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "which clause?"}],
}


def test_message_is_recorded_with_exclusive_input(
    server: Server, ledger: Ledger, fixtures_dir: Path
) -> None:
    claude = instrument_anthropic(client(server), ledger, agent="legal")
    message = claude.messages.create(**ARGS)
    assert isinstance(message, anthropic.types.Message)
    [row] = rows(ledger)
    want = expected(fixtures_dir, "anthropic-message.json")
    assert tokens(row) == {name: want[name] for name in BUCKETS}
    assert row["model"] == "claude-sonnet-4-5-20250929"
    assert row["provider"] == "anthropic"
    assert row["dedupe_key"] == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert row["agent_id"] == "legal"
    assert row["duration_ms"] is not None


def test_raw_stream_passes_events_through_and_overwrites_start_usage(
    server: Server, ledger: Ledger, fixtures_dir: Path
) -> None:
    plain = [e.model_dump() for e in client(server).messages.create(**ARGS, stream=True)]
    claude = instrument_anthropic(client(server), ledger)
    stream = claude.messages.create(**ARGS, stream=True)
    assert isinstance(stream, anthropic.Stream)
    assert [e.model_dump() for e in stream] == plain
    [row] = rows(ledger)
    want = expected(fixtures_dir, "anthropic-stream.jsonl")
    assert tokens(row) == {name: want[name] for name in BUCKETS}
    assert row["output_tokens"] != want["naive"]["output_tokens"]  # start + delta, added
    assert row["input_tokens"] != want["naive"]["input_tokens"]
    assert row["dedupe_key"] == "msg_01HCDu5LRGeP2o7s2xGmxyx8"


def test_stream_helper_is_recorded(server: Server, ledger: Ledger, fixtures_dir: Path) -> None:
    claude = instrument_anthropic(client(server), ledger)
    with claude.messages.stream(**ARGS) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens == 127
    [row] = rows(ledger)
    assert row["output_tokens"] == 127
    assert row["cache_read_tokens"] == 9216
    assert row["source"] == "anthropic_messages_stream"


def test_stream_cut_by_an_error_event_raises_and_records_an_error(
    server: Server, ledger: Ledger
) -> None:
    server.cut_after = 4  # message_start, a block start, a ping, one delta
    claude = instrument_anthropic(client(server), ledger)
    stream = claude.messages.create(**ARGS, stream=True)
    got: list[Any] = []
    with pytest.raises(anthropic.APIStatusError, match="overloaded"):
        got.extend(stream)
    assert [e.type for e in got] == ["message_start", "content_block_start", "content_block_delta"]
    [row] = rows(ledger)
    assert row["status"] == "error"
    assert row["input_tokens"] == 1810  # known from message_start
    assert row["metadata"]["stream_end"] == "error"


def test_api_error_propagates_and_records_nothing(server: Server, ledger: Ledger) -> None:
    claude = instrument_anthropic(client(server), ledger)
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.create(**{**ARGS, "model": "no-such-model"})
    assert caught.value.status_code == 404
    assert rows(ledger) == []


def test_async_create_stream_and_helper(server: Server, ledger: Ledger, fixtures_dir: Path) -> None:
    async def main() -> None:
        claude = instrument_anthropic(async_client(server), ledger)
        await claude.messages.create(**ARGS)
        stream = await claude.messages.create(**ARGS, stream=True)
        async for _ in stream:
            pass
        async with claude.messages.stream(**ARGS) as helper:
            await helper.get_final_message()

    asyncio.run(main())
    got = rows(ledger)
    # The stream and the helper returned the same message id: one call (idempotent).
    assert [row["source"] for row in got] == ["anthropic_messages", "anthropic_messages_stream"]
    want = expected(fixtures_dir, "anthropic-stream.jsonl")
    assert tokens(got[1]) == {name: want[name] for name in BUCKETS}


def test_stream_closed_early_is_recorded(server: Server, ledger: Ledger) -> None:
    claude = instrument_anthropic(client(server), ledger)
    with claude.messages.create(**ARGS, stream=True) as stream:
        for _ in stream:
            break
    [row] = rows(ledger)
    assert row["metadata"]["stream_end"] == "closed_early"
    assert row["input_tokens"] == 1810
