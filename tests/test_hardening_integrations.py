"""Issue 13, integrations: each defect found with the real SDKs' shapes, with its regression test.

OpenAI: a real client over ``httpx.MockTransport``. LangChain: a chat model whose ``_generate``
builds its result as langchain-openai's ``ChatOpenAI`` does (``_create_chat_result``), run by
langchain-core itself. LiteLLM: what litellm passes its ``CustomLogger`` (litellm not needed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.messages.ai import InputTokenDetails, OutputTokenDetails, UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import BaseModel, PrivateAttr
from sqlalchemy import select

from llmledger.integrations.langchain import LedgerCallbackHandler
from llmledger.integrations.litellm import LedgerLiteLLMCallback
from llmledger.integrations.openai import instrument_openai
from llmledger.ledger import Ledger
from llmledger.store.schema import calls


def rows(ledger: Ledger) -> list[dict[str, Any]]:
    with ledger.repository.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(calls).order_by(calls.c.id)).mappings()]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path}/l.db") as ledger:
        yield ledger


# -- OpenAI: a chat completion with n=2 (one usage for the whole response) ------------------

N2_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-N2x8Qw3Er5Ty7Ui9Op1As3Df",
    "object": "chat.completion",
    "created": 1762473318,
    "model": "gpt-4.1-mini-2025-04-14",
    "choices": [
        {
            "index": i,
            "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }
        for i, text in enumerate(["Add an index.", "Rewrite the join."])
    ],
    "usage": {
        "prompt_tokens": 2483,
        "completion_tokens": 310,
        "total_tokens": 2793,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_a1b2c3d4e5",
}
N2_ID = N2_COMPLETION["id"]
MESSAGES: list[Any] = [{"role": "user", "content": "why is this query slow?"}]


def _server(bodies: list[dict[str, Any]]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        return httpx.Response(200, json=N2_COMPLETION)

    return httpx.MockTransport(handle)


def openai_client(bodies: list[dict[str, Any]] | None = None) -> openai.OpenAI:
    transport = _server([] if bodies is None else bodies)
    return openai.OpenAI(api_key="test", http_client=httpx.Client(transport=transport))


def async_openai_client() -> openai.AsyncOpenAI:
    transport = _server([])
    return openai.AsyncOpenAI(api_key="test", http_client=httpx.AsyncClient(transport=transport))


# -- LangChain: ChatOpenAI's result, built the way langchain-openai builds it ----------------


def _usage_metadata(token_usage: dict[str, Any]) -> UsageMetadata:
    """langchain-openai's ``_create_usage_metadata`` (service tier ``default``)."""
    prompt = token_usage.get("prompt_tokens_details") or {}
    completion = token_usage.get("completion_tokens_details") or {}
    inp = {"audio": prompt.get("audio_tokens"), "cache_read": prompt.get("cached_tokens")}
    out = {"audio": completion.get("audio_tokens"), "reasoning": completion.get("reasoning_tokens")}
    return UsageMetadata(
        input_tokens=token_usage["prompt_tokens"],
        output_tokens=token_usage["completion_tokens"],
        total_tokens=token_usage["total_tokens"],
        input_token_details=InputTokenDetails(**{k: v for k, v in inp.items() if v is not None}),
        output_token_details=OutputTokenDetails(**{k: v for k, v in out.items() if v is not None}),
    )


def chat_result(response: dict[str, Any]) -> ChatResult:
    """langchain-openai's ``_create_chat_result``: each choice's message (which has no id)
    carries the whole response's usage; the response id is only in ``llm_output``."""
    token_usage = response.get("usage")
    generations = []
    generation_info: dict[str, Any] = {}
    for choice in response["choices"]:
        message = AIMessage(
            content=choice["message"]["content"], response_metadata={"model_provider": "openai"}
        )
        if token_usage:
            message.usage_metadata = _usage_metadata(token_usage)
        generation_info["finish_reason"] = choice.get("finish_reason")
        generations.append(ChatGeneration(message=message, generation_info=generation_info))
    llm_output = {
        "token_usage": token_usage,
        "model_provider": "openai",
        "model_name": response.get("model"),
        "system_fingerprint": response.get("system_fingerprint", ""),
        "id": response["id"],
    }
    return ChatResult(generations=generations, llm_output=llm_output)


class FakeChatOpenAI(BaseChatModel):
    """Calls the API the way ``ChatOpenAI._generate`` does: ``with_raw_response.create``, then
    ``.parse()``; or, without a client, answers N2_COMPLETION directly."""

    client: Any = None
    n: int = 2

    @property
    def _llm_type(self) -> str:
        return "fake-openai-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": "gpt-4.1-mini", "n": self.n}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.client is None:
            return chat_result(N2_COMPLETION)
        raw = self.client.with_raw_response.create(
            model="gpt-4.1-mini", messages=MESSAGES, n=self.n, stream=False
        )
        return chat_result(raw.parse().model_dump())


def test_langchain_n_choices_of_one_response_are_recorded_once(ledger: Ledger) -> None:
    # Item 6. langchain-core gives each choice's message its own id (lc_run-<run>-0, -1), so
    # keying by message id recorded the response's usage n times.
    handler = LedgerCallbackHandler(ledger)
    result = FakeChatOpenAI().generate([[HumanMessage("why?")]], callbacks=[handler])
    ids = [g.message.id for g in result.generations[0]]  # type: ignore[attr-defined]
    assert len(set(ids)) == 2
    [row] = rows(ledger)
    assert row["dedupe_key"] == N2_ID
    assert row["model"] == "gpt-4.1-mini-2025-04-14"  # llm_output's, not the request's
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (563, 1920, 310)


def test_raw_response_create_is_recorded_and_parsed_once(ledger: Ledger) -> None:
    # Also-item: langchain-openai always calls with_raw_response.create; it recorded nothing.
    oai = instrument_openai(openai_client(), ledger)
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4.1-mini", messages=MESSAGES)
    assert raw.headers.get("content-type") == "application/json"  # still the raw response
    completion = raw.parse()
    assert completion is raw.parse()  # parsed once: the caller gets the object we read
    assert completion.id == N2_ID
    [row] = rows(ledger)
    assert row["dedupe_key"] == N2_ID
    assert (row["input_tokens"], row["cache_read_tokens"]) == (563, 1920)


def test_raw_response_accessed_before_instrumenting_is_recorded(ledger: Ledger) -> None:
    client = openai_client()
    raw_resource = client.chat.completions.with_raw_response  # created before instrumenting
    instrument_openai(client, ledger)
    raw_resource.create(model="gpt-4.1-mini", messages=MESSAGES).parse()
    assert len(rows(ledger)) == 1


def test_raw_response_async_is_recorded(ledger: Ledger) -> None:
    async def main() -> None:
        oai = instrument_openai(async_openai_client(), ledger)
        raw = await oai.chat.completions.with_raw_response.create(
            model="gpt-4.1-mini", messages=MESSAGES
        )
        assert raw.parse().id == N2_ID

    asyncio.run(main())
    assert [row["dedupe_key"] for row in rows(ledger)] == [N2_ID]


def test_reinstrumented_raw_response_records_into_the_new_ledger_only(
    ledger: Ledger, tmp_path: Path
) -> None:
    oai = instrument_openai(openai_client(), ledger)
    oai.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    with Ledger(f"sqlite:///{tmp_path}/other.db") as other:
        instrument_openai(oai, other)
        oai.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
        oai.chat.completions.create(model="m", messages=MESSAGES)
        assert len(rows(other)) == 1
    assert len(rows(ledger)) == 1


@pytest.mark.parametrize("which", ["callback", "instrument", "both"])
def test_langchain_openai_with_callback_instrumentation_or_both_records_once(
    ledger: Ledger, which: str
) -> None:
    client = openai_client()
    if which != "callback":
        instrument_openai(client, ledger)
    callbacks = [LedgerCallbackHandler(ledger)] if which != "instrument" else []
    model = FakeChatOpenAI(client=client.chat.completions)
    with ledger.run("task") as run:
        model.generate([[HumanMessage("why?")]], callbacks=callbacks)
    [row] = rows(ledger)
    assert row["dedupe_key"] == N2_ID
    assert row["run_id"] == run.id
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (563, 1920, 310)


def test_parse_helpers_are_recorded(ledger: Ledger) -> None:
    bodies: list[dict[str, Any]] = []
    oai = instrument_openai(openai_client(bodies), ledger)
    parsed = oai.chat.completions.parse(model="gpt-4.1-mini", messages=MESSAGES)
    assert parsed.id == N2_ID
    [row] = rows(ledger)
    assert row["dedupe_key"] == N2_ID
    raw = oai.chat.completions.with_raw_response.parse(model="gpt-4.1-mini", messages=MESSAGES)
    assert raw.parse().id == N2_ID
    assert len(rows(ledger)) == 1  # the same response id: one call


def test_streaming_response_wrapper_warns_once_naming_the_method(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    oai = instrument_openai(openai_client(), ledger)
    with caplog.at_level(logging.WARNING, logger="llmledger"):
        for _ in range(2):
            with oai.chat.completions.with_streaming_response.create(
                model="m", messages=MESSAGES
            ) as response:
                response.parse()
    warnings = [r.getMessage() for r in caplog.records if "not record" in r.getMessage()]
    assert len(warnings) == 1
    assert "chat.completions.with_streaming_response.create" in warnings[0]
    assert rows(ledger) == []


# -- LiteLLM ------------------------------------------------------------------------------------


class ModelResponse(BaseModel):
    """litellm's ModelResponse (OpenAI-shaped), with its private ``_hidden_params``."""

    id: str
    object: str = "chat.completion"
    created: int = 1762473318
    model: str
    choices: list[dict[str, Any]] = []
    usage: dict[str, Any] | None = None
    _hidden_params: dict[str, Any] = PrivateAttr(default_factory=dict)


class ResponsesAPIResponse(BaseModel):
    """litellm's ResponsesAPIResponse (``litellm.responses()``): Responses-API usage."""

    id: str
    object: str = "response"
    created_at: int = 1762473318
    model: str | None = None
    status: str | None = "completed"
    error: dict[str, Any] | None = None
    output: list[dict[str, Any]] = []
    usage: dict[str, Any] | None = None


START = datetime(2026, 1, 5, 10, 0, 0)  # naive local time, as LiteLLM passes it
END = START + timedelta(milliseconds=1500)


def litellm_kwargs(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "litellm_call_id": "call-7",
        "litellm_params": {"custom_llm_provider": "anthropic"},
        **extra,
    }


# What LiteLLM's AnthropicConfig.calculate_usage makes of an Anthropic usage with 1,000 uncached
# input, 2,000 cache reads and 3,000 cache writes (1,000 with 5m TTL, 2,000 with 1h TTL):
# prompt_tokens includes reads and writes; the TTL split is in cache_creation_token_details.
CLAUDE_SPLIT_USAGE: dict[str, Any] = {
    "prompt_tokens": 6000,
    "completion_tokens": 500,
    "total_tokens": 6500,
    "prompt_tokens_details": {
        "cached_tokens": 2000,
        "text_tokens": 1000,
        "cache_write_tokens": 3000,
        "cache_creation_tokens": 3000,
        "cache_creation_token_details": {
            "ephemeral_5m_input_tokens": 1000,
            "ephemeral_30m_input_tokens": None,
            "ephemeral_1h_input_tokens": 2000,
            "ephemeral_12h_input_tokens": None,
        },
    },
    "completion_tokens_details": {"reasoning_tokens": 0, "text_tokens": 500},
    "cache_creation_input_tokens": 3000,
    "cache_read_input_tokens": 2000,
}


def test_litellm_anthropic_keeps_the_5m_1h_cache_write_split(ledger: Ledger) -> None:
    # Item 7: the split was dropped, so 1h writes were priced at the 5m rate.
    callback = LedgerLiteLLMCallback(ledger)
    response = ModelResponse(
        id="chatcmpl-split", model="claude-sonnet-4-5-20250929", usage=CLAUDE_SPLIT_USAGE
    )
    callback.log_success_event(litellm_kwargs(), response, START, END)
    [row] = rows(ledger)
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (
        1000,
        2000,
        3000,
    )
    assert (row["cache_write_5m_tokens"], row["cache_write_1h_tokens"]) == (1000, 2000)
    # Sonnet 4.5: $3 input, $0.30 read, $3.75 5m write, $6 1h write, $15 output per MTok:
    # 0.003 + 0.0006 + 0.00375 + 0.012 + 0.0075 (all writes at 5m would be 0.02235, 17 % low).
    assert row["cost_usd"] == Decimal("0.02685")


def test_litellm_sync_stream_callback_on_its_own_thread_lands_in_the_callers_run(
    ledger: Ledger,
) -> None:
    # Item 8: LiteLLM runs a sync stream's success callback on its own thread pool, where the
    # caller's run is not current; the assembled response names the request alias as model.
    callback = LedgerLiteLLMCallback(ledger)
    kwargs = litellm_kwargs(stream=True)
    response = ModelResponse(
        id="chatcmpl-stream", model="claude-sonnet-4-5", usage=CLAUDE_SPLIT_USAGE
    )
    response._hidden_params["provider_response_model"] = "claude-sonnet-4-5-20250929"
    with ledger.run("task") as run:
        # LiteLLM calls it in the caller's thread (its CustomLogger defines it as a no-op).
        pre_call = getattr(callback, "log_pre_api_call", lambda *args: None)
        pre_call("claude-sonnet-4-5", MESSAGES, kwargs)
        worker = threading.Thread(
            target=callback.log_success_event, args=(kwargs, response, START, END)
        )
        worker.start()
        worker.join()
    [row] = rows(ledger)
    assert row["run_id"] == run.id
    assert row["model"] == "claude-sonnet-4-5-20250929"
    assert "no_run" not in (row["metadata"].get("flags") or [])
    assert not getattr(callback, "_runs", None)  # forgotten once recorded


def test_litellm_responses_api_usage_is_parsed_as_responses(ledger: Ledger) -> None:
    # Item 9: litellm.responses() passes a ResponsesAPIResponse; parsed as chat, no usage.
    callback = LedgerLiteLLMCallback(ledger)
    usage = {
        "input_tokens": 5000,
        "input_tokens_details": {"cached_tokens": 4000, "audio_tokens": None},
        "output_tokens": 600,
        "output_tokens_details": {"reasoning_tokens": 400, "text_tokens": 200},
        "total_tokens": 5600,
    }
    response = ResponsesAPIResponse(id="resp_0a1b2c", model="gpt-5-2025-08-07", usage=usage)
    kwargs = litellm_kwargs(
        model="gpt-5", call_type="responses", litellm_params={"custom_llm_provider": "openai"}
    )
    asyncio.run(callback.async_log_success_event(kwargs, response, START, END))
    [row] = rows(ledger)
    assert (row["input_tokens"], row["cache_read_tokens"]) == (1000, 4000)
    assert (row["output_tokens"], row["reasoning_tokens"]) == (600, 400)
    assert row["model"] == "gpt-5-2025-08-07"
    assert row["dedupe_key"] == "resp_0a1b2c"
    assert "no_usage" not in (row["metadata"].get("flags") or [])


def _sse(events: list[dict[str, Any]], *, done: bool) -> bytes:
    body = "".join(f"data: {json.dumps(event)}\n\n" for event in events)
    return (body + ("data: [DONE]\n\n" if done else "")).encode()


def test_raw_response_stream_is_recorded_and_hides_the_added_usage_chunk(
    ledger: Ledger, fixtures_dir: Path
) -> None:
    lines = (fixtures_dir / "openai" / "openai-chat-stream.jsonl").read_text().splitlines()

    def handle(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content)["stream_options"] == {"include_usage": True}
        content = _sse([json.loads(line) for line in lines], done=True)
        return httpx.Response(200, content=content, headers={"content-type": "text/event-stream"})

    http = httpx.Client(transport=httpx.MockTransport(handle))
    oai = instrument_openai(openai.OpenAI(api_key="test", http_client=http), ledger)
    raw = oai.chat.completions.with_raw_response.create(model="m", messages=MESSAGES, stream=True)
    chunks = list(raw.parse())
    assert chunks
    assert all(chunk.choices for chunk in chunks)  # the usage chunk we asked for is hidden
    [row] = rows(ledger)
    assert row["source"] == "openai_chat_completions_stream"
    assert row["output_tokens"] is not None
    assert "stream_end" not in row["metadata"]


def test_stream_helper_is_recorded_once(ledger: Ledger, fixtures_dir: Path) -> None:
    # The docs said the .stream() helpers were not recorded: they call create(stream=True).
    lines = (fixtures_dir / "openai" / "openai-chat-stream.jsonl").read_text().splitlines()

    def handle(request: httpx.Request) -> httpx.Response:
        content = _sse([json.loads(line) for line in lines], done=True)
        return httpx.Response(200, content=content, headers={"content-type": "text/event-stream"})

    http = httpx.Client(transport=httpx.MockTransport(handle))
    oai = instrument_openai(openai.OpenAI(api_key="test", http_client=http), ledger)
    with oai.chat.completions.stream(model="m", messages=MESSAGES) as stream:
        for _ in stream:
            pass
    [row] = rows(ledger)
    assert row["source"] == "openai_chat_completions_stream"
    assert row["output_tokens"] is not None


# -- Anthropic: messages.parse and with_raw_response ------------------------------------------


class AnthropicServer:
    """The Messages API answering the fixture message, under a new id per request."""

    def __init__(self, fixtures_dir: Path) -> None:
        base = fixtures_dir / "anthropic"
        self.message = json.loads((base / "anthropic-message.json").read_text())
        self.events = (base / "anthropic-stream.jsonl").read_text().splitlines()
        self.requests = 0

    def __call__(self, request: Any) -> Any:
        import httpx2

        self.requests += 1
        if not json.loads(request.content).get("stream"):
            return httpx2.Response(200, json={**self.message, "id": f"msg_{self.requests}"})
        text = "".join(f"event: {json.loads(e)['type']}\ndata: {e}\n\n" for e in self.events)
        headers = {"content-type": "text/event-stream"}
        return httpx2.Response(200, content=text.encode(), headers=headers)


def _anthropic(server: AnthropicServer, *, is_async: bool = False) -> Any:
    import anthropic
    import httpx2

    transport = httpx2.MockTransport(server)
    if is_async:
        return anthropic.AsyncAnthropic(
            api_key="test", http_client=httpx2.AsyncClient(transport=transport)
        )
    return anthropic.Anthropic(api_key="test", http_client=httpx2.Client(transport=transport))


CLAUDE: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "which clause?"}],
}


def test_anthropic_parse_and_raw_response_are_recorded(
    ledger: Ledger, fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from llmledger.integrations.anthropic import instrument_anthropic

    server = AnthropicServer(fixtures_dir)
    client = instrument_anthropic(_anthropic(server), ledger)
    assert client.messages.parse(**CLAUDE).id == "msg_1"
    raw = client.messages.with_raw_response.create(**CLAUDE)
    assert raw.parse().id == "msg_2"
    stream = client.messages.with_raw_response.create(**CLAUDE, stream=True).parse()
    assert [event.type for event in stream][-1] == "message_stop"
    with (
        caplog.at_level(logging.WARNING, logger="llmledger"),
        client.messages.with_streaming_response.create(**CLAUDE) as response,
    ):
        response.parse()
    got = rows(ledger)
    assert [row["dedupe_key"] for row in got] == ["msg_1", "msg_2", "msg_01HCDu5LRGeP2o7s2xGmxyx8"]
    assert (got[0]["cache_write_1h_tokens"], got[0]["output_tokens"]) == (3072, 845)
    assert any("messages.with_streaming_response.create" in r.getMessage() for r in caplog.records)


def test_anthropic_async_raw_response_is_recorded(ledger: Ledger, fixtures_dir: Path) -> None:
    from llmledger.integrations.anthropic import instrument_anthropic

    server = AnthropicServer(fixtures_dir)

    async def main() -> None:
        client = instrument_anthropic(_anthropic(server, is_async=True), ledger)
        raw = await client.messages.with_raw_response.create(**CLAUDE)
        message = await raw.parse()
        assert message.id == "msg_1"
        assert message is await raw.parse()  # parsed once

    asyncio.run(main())
    assert [row["dedupe_key"] for row in rows(ledger)] == ["msg_1"]


def test_litellm_pending_runs_are_bounded(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    import llmledger.integrations.litellm as litellm_integration

    monkeypatch.setattr(litellm_integration, "MAX_PENDING_RUNS", 2)
    callback = LedgerLiteLLMCallback(ledger)
    with ledger.run("task"):
        for call_id in ("a", "b", "c"):  # streams never read to their end: no success comes
            callback.log_pre_api_call("m", MESSAGES, {"litellm_call_id": call_id})
        # A failure may be retried under the same id: the run is kept for the retry's success.
        callback.log_failure_event({"litellm_call_id": "c"}, None, START, END)
    assert list(callback._runs) == ["b", "c"]
