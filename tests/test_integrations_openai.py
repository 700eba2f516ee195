"""instrument_openai: real OpenAI clients over a mocked httpx transport serving the fixtures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from llmledger.integrations.openai import instrument_openai
from llmledger.ledger import Ledger
from llmledger.store.schema import calls
from llmledger.usage import BUCKETS

Handler = Callable[[httpx.Request], httpx.Response]


def rows(ledger: Ledger) -> list[dict[str, Any]]:
    with ledger.repository.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(calls).order_by(calls.c.id)).mappings()]


def tokens(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in BUCKETS}


def expected_tokens(fixtures_dir: Path, name: str) -> dict[str, Any]:
    expected = json.loads((fixtures_dir / "expected.json").read_text())[name]
    return {name: expected[name] for name in BUCKETS}


def sse(events: list[str], *, done: bool = True) -> httpx.Response:
    body = "".join(f"data: {event}\n\n" for event in events)
    if done:
        body += "data: [DONE]\n\n"
    return httpx.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})


class Server:
    """The mocked OpenAI API: answers from the fixtures and remembers each request body."""

    def __init__(self, fixtures_dir: Path) -> None:
        base = fixtures_dir / "openai"
        self.chat = json.loads((base / "openai-chat.json").read_text())
        self.chunks = (base / "openai-chat-stream.jsonl").read_text().splitlines()
        self.response = json.loads((base / "openai-responses.json").read_text())
        self.bodies: list[dict[str, Any]] = []
        self.fail_stream_after: int | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        if body.get("model") == "no-such-model":
            error = {"error": {"message": "model not found", "type": "invalid_request_error"}}
            return httpx.Response(404, json=error)
        if request.url.path.endswith("/chat/completions"):
            if not body.get("stream"):
                return httpx.Response(200, json=self.chat)
            return self.chat_stream(body)
        if not body.get("stream"):
            return httpx.Response(200, json=self.response)
        return self.responses_stream()

    def chat_stream(self, body: dict[str, Any]) -> httpx.Response:
        include = (body.get("stream_options") or {}).get("include_usage")
        chunks = []
        for line in self.chunks:
            chunk = json.loads(line)
            if chunk["choices"] == [] and not include:
                continue  # the API sends the usage chunk only when asked for it
            if not include:
                del chunk["usage"]  # ... and the usage field too
            chunks.append(json.dumps(chunk))
        if self.fail_stream_after is not None:
            chunks = chunks[: self.fail_stream_after]
            chunks.append(json.dumps({"error": {"message": "overloaded", "type": "server"}}))
        return sse(chunks)

    def responses_stream(self) -> httpx.Response:
        final = self.response
        created = {**final, "status": "in_progress", "usage": None, "output": []}
        events = [
            {"type": "response.created", "sequence_number": 0, "response": created},
            {
                "type": "response.output_text.delta",
                "sequence_number": 1,
                "item_id": "msg_1",
                "output_index": 1,
                "content_index": 0,
                "delta": "The retry loop",
                "logprobs": [],
            },
            {"type": "response.completed", "sequence_number": 2, "response": final},
        ]
        return sse([json.dumps(e) for e in events], done=False)


@pytest.fixture
def server(fixtures_dir: Path) -> Server:
    return Server(fixtures_dir)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path}/l.db") as ledger:
        yield ledger


def client(server: Server) -> openai.OpenAI:
    transport = httpx.MockTransport(server)
    return openai.OpenAI(api_key="test", http_client=httpx.Client(transport=transport))


def async_client(server: Server) -> openai.AsyncOpenAI:
    transport = httpx.MockTransport(server)
    return openai.AsyncOpenAI(api_key="test", http_client=httpx.AsyncClient(transport=transport))


MESSAGES: list[Any] = [{"role": "user", "content": "why does the build fail?"}]


def test_chat_completion_is_recorded_normalized(
    server: Server, ledger: Ledger, fixtures_dir: Path
) -> None:
    oai = instrument_openai(client(server), ledger, agent="reviewer")
    with ledger.run("task", key="t1") as run:
        result = oai.chat.completions.create(model="o4-mini", messages=MESSAGES)
    assert isinstance(result, openai.types.chat.ChatCompletion)
    assert result.usage is not None
    assert result.usage.prompt_tokens == 2483
    [row] = rows(ledger)
    assert tokens(row) == expected_tokens(fixtures_dir, "openai-chat.json")
    assert row["input_tokens"] == 2483 - 1920  # prompt_tokens include the cached tokens
    assert row["model"] == "o4-mini-2025-04-16"  # from the response, not the request
    assert row["provider"] == "openai"
    assert row["dedupe_key"] == "chatcmpl-CAbX4n7Rk2pQ9sVw1YtZ3uHg6LmE"
    assert row["agent_id"] == "reviewer"
    assert row["run_id"] == run.id
    assert row["status"] == "ok"
    assert row["duration_ms"] is not None
    assert row["duration_ms"] >= 0
    assert ledger.failures == 0


def dumps(chunks: list[Any]) -> list[dict[str, Any]]:
    return [chunk.model_dump() for chunk in chunks]


def test_chat_stream_passes_chunks_through_and_hides_the_usage_chunk(
    server: Server, ledger: Ledger, fixtures_dir: Path
) -> None:
    plain = list(client(server).chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert "stream_options" not in server.bodies[-1]
    oai = instrument_openai(client(server), ledger)
    stream = oai.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert isinstance(stream, openai.Stream)
    seen = list(stream)
    assert server.bodies[-1]["stream_options"] == {"include_usage": True}
    assert dumps(seen) == dumps(plain)
    assert all(chunk.choices for chunk in seen)
    [row] = rows(ledger)
    assert tokens(row) == expected_tokens(fixtures_dir, "openai-chat-stream.jsonl")
    assert row["model"] == "gpt-4.1-mini-2025-04-14"
    assert row["dedupe_key"] == "chatcmpl-CAbY8q2Wm5Nr1Ts4Vx7Za0Bc3De"
    assert row["metadata"].get("stream_end") is None


def test_chat_stream_keeps_the_usage_chunk_the_caller_asked_for(
    server: Server, ledger: Ledger, fixtures_dir: Path
) -> None:
    options: Any = {"include_usage": True}
    kwargs: dict[str, Any] = {"model": "m", "messages": MESSAGES, "stream": True}
    plain = list(client(server).chat.completions.create(**kwargs, stream_options=options))
    oai = instrument_openai(client(server), ledger)
    with oai.chat.completions.create(**kwargs, stream_options=options) as stream:
        seen = list(stream)
    assert dumps(seen) == dumps(plain)
    assert seen[-1].choices == []
    assert seen[-1].usage is not None
    assert tokens(rows(ledger)[0]) == expected_tokens(fixtures_dir, "openai-chat-stream.jsonl")


def test_chat_stream_stopped_early_is_recorded_when_closed(server: Server, ledger: Ledger) -> None:
    oai = instrument_openai(client(server), ledger)
    with oai.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
        for _ in stream:
            break
        assert rows(ledger) == []
    [row] = rows(ledger)
    assert row["status"] == "ok"
    assert row["metadata"]["stream_end"] == "closed_early"
    assert "no_usage" in row["metadata"]["flags"]  # the usage chunk never arrived
    assert row["model"] == "gpt-4.1-mini-2025-04-14"


def test_chat_stream_failing_midway_raises_unchanged_and_records_an_error(
    server: Server, ledger: Ledger
) -> None:
    server.fail_stream_after = 3
    with pytest.raises(openai.APIError, match="overloaded") as plain:
        list(client(server).chat.completions.create(model="m", messages=MESSAGES, stream=True))
    oai = instrument_openai(client(server), ledger)
    got: list[Any] = []
    stream = oai.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="overloaded") as caught:
        got.extend(stream)
    assert type(caught.value) is type(plain.value)
    assert len(got) == 3
    [row] = rows(ledger)
    assert row["status"] == "error"
    assert row["metadata"]["stream_end"] == "error"


def test_api_error_propagates_unchanged_and_records_nothing(server: Server, ledger: Ledger) -> None:
    with pytest.raises(openai.NotFoundError) as plain:
        client(server).chat.completions.create(model="no-such-model", messages=MESSAGES)
    oai = instrument_openai(client(server), ledger)
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert caught.value.status_code == plain.value.status_code == 404
    assert caught.value.body == plain.value.body
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="no-such-model", input="hi", stream=True)
    assert rows(ledger) == []
    assert ledger.failures == 0


def test_responses_create_and_stream(server: Server, ledger: Ledger, fixtures_dir: Path) -> None:
    oai = instrument_openai(client(server), ledger)
    response = oai.responses.create(model="gpt-5", input="review this")
    assert response.id.startswith("resp_")
    events = list(oai.responses.create(model="gpt-5", input="review this", stream=True))
    assert [e.type for e in events][-1] == "response.completed"
    assert "stream_options" not in server.bodies[-1]
    expected = expected_tokens(fixtures_dir, "openai-responses.json")
    # The same response id twice: the ledger keeps one call (idempotent by dedupe key).
    [row] = rows(ledger)
    assert tokens(row) == expected
    assert row["model"] == "gpt-5-2025-08-07"
    assert row["source"] == "openai_responses"


def test_async_client_records_calls_and_streams(
    server: Server, ledger: Ledger, fixtures_dir: Path
) -> None:
    async def main() -> list[Any]:
        oai = instrument_openai(async_client(server), ledger, agent="async")
        await oai.chat.completions.create(model="o4-mini", messages=MESSAGES)
        stream = await oai.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        assert isinstance(stream, openai.AsyncStream)
        chunks = [chunk async for chunk in stream]
        events = await oai.responses.create(model="gpt-5", input="x", stream=True)
        async with events:
            async for _ in events:
                pass
        return chunks

    chunks = asyncio.run(main())
    assert server.bodies[1]["stream_options"] == {"include_usage": True}
    assert all(chunk.choices for chunk in chunks)
    by_source = {row["source"]: row for row in rows(ledger)}
    assert tokens(by_source["openai_chat_completions"]) == expected_tokens(
        fixtures_dir, "openai-chat.json"
    )
    assert tokens(by_source["openai_chat_completions_stream"]) == expected_tokens(
        fixtures_dir, "openai-chat-stream.jsonl"
    )
    assert tokens(by_source["openai_responses"]) == expected_tokens(
        fixtures_dir, "openai-responses.json"
    )
    assert {row["agent_id"] for row in by_source.values()} == {"async"}


def test_async_stream_closed_early_is_recorded(server: Server, ledger: Ledger) -> None:
    async def main() -> None:
        oai = instrument_openai(async_client(server), ledger)
        stream = await oai.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        async with stream:
            async for _ in stream:
                break

    asyncio.run(main())
    [row] = rows(ledger)
    assert row["metadata"]["stream_end"] == "closed_early"


def test_copies_are_instrumented_and_reinstrumenting_does_not_double_record(
    server: Server, ledger: Ledger, tmp_path: Path
) -> None:
    oai = instrument_openai(client(server), ledger)
    oai.with_options(timeout=5).chat.completions.create(model="o4-mini", messages=MESSAGES)
    assert len(rows(ledger)) == 1
    with Ledger(f"sqlite:///{tmp_path}/other.db") as other:
        instrument_openai(oai, other)
        oai.responses.create(model="gpt-5", input="x")
        assert len(rows(other)) == 1
    assert len(rows(ledger)) == 1


def test_a_stream_whose_recording_fails_is_read_whole_and_the_failure_counted(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    from llmledger.integrations._common import instrument_stream

    class Watch:
        def see(self, item: Any) -> bool:
            return True

        def finish(self, error: BaseException | None, ended: str) -> None:
            raise RuntimeError("watch broke")

    class Stream:
        def __init__(self) -> None:
            self._iterator = iter([1, 2, 3])

        def __iter__(self) -> Iterator[Any]:
            return self._iterator

        def close(self) -> None:
            pass

    stream = instrument_stream(Stream(), Watch(), ledger)
    with caplog.at_level("WARNING", logger="llmledger"):
        assert list(stream) == [1, 2, 3]  # the caller's loop is untouched
    assert ledger.failures == 1
    assert "could not record a stream: RuntimeError: watch broke" in caplog.text
