"""LedgerCallbackHandler: each generation with usage is a call; model from message or start."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, Generation, LLMResult
from sqlalchemy import select

from llmledger.integrations.langchain import LedgerCallbackHandler
from llmledger.ledger import Ledger
from llmledger.store.schema import calls


def rows(ledger: Ledger) -> list[dict[str, Any]]:
    with ledger.repository.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(calls).order_by(calls.c.id)).mappings()]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path}/l.db") as ledger:
        yield ledger


@pytest.fixture
def usages(fixtures_dir: Path) -> dict[str, UsageMetadata]:
    data = json.loads((fixtures_dir / "langchain" / "langchain-usage-metadata.json").read_text())
    return {model: UsageMetadata(**u) for model, u in data.items()}


def generation(usage: UsageMetadata, *, model: str | None, msg_id: str | None) -> ChatGeneration:
    meta = {"model_name": model} if model else {}
    message = AIMessage(content="ok", id=msg_id, usage_metadata=usage, response_metadata=meta)
    return ChatGeneration(message=message)


def test_every_generation_of_every_prompt_is_recorded(
    ledger: Ledger, usages: dict[str, UsageMetadata], fixtures_dir: Path
) -> None:
    claude, gpt = "claude-sonnet-4-5-20250929", "gpt-5-2025-08-07"
    handler = LedgerCallbackHandler(ledger, agent="planner")
    run_id = uuid.uuid4()
    handler.on_chat_model_start({"kwargs": {"model": "fallback-model"}}, [[], []], run_id=run_id)
    result = LLMResult(
        generations=[
            [
                generation(usages[claude], model=claude, msg_id="a1"),
                generation(usages[gpt], model=gpt, msg_id="a2"),
            ],
            [
                generation(usages[claude], model=claude, msg_id="b1"),
                generation(usages[gpt], model=None, msg_id=None),  # no model_name (trap 21)
            ],
        ]
    )
    handler.on_llm_end(result, run_id=run_id)
    got = rows(ledger)
    assert len(got) == 4
    assert [row["model"] for row in got] == [claude, gpt, claude, "fallback-model"]
    assert {row["agent_id"] for row in got} == {"planner"}
    per_model = json.loads((fixtures_dir / "expected.json").read_text())[
        "langchain-usage-metadata.json"
    ]["per_model"]
    for row in got[:3]:
        want = per_model[row["model"]]
        assert row["input_tokens"] == want["input_tokens"]  # cache-inclusive input, subtracted
        assert row["cache_read_tokens"] == want["cache_read_tokens"]
        assert row["cache_write_tokens"] == want["cache_write_tokens"]
        assert row["reasoning_tokens"] == want["reasoning_tokens"]
    assert got[0]["provider"] == "anthropic"


def test_n_generations_sharing_one_response_are_counted_once(
    ledger: Ledger, usages: dict[str, UsageMetadata]
) -> None:
    # langchain-openai puts the response's usage on each of its n choices, with one id.
    gpt = "gpt-5-2025-08-07"
    handler = LedgerCallbackHandler(ledger)
    same = [generation(usages[gpt], model=gpt, msg_id="chatcmpl-1") for _ in range(3)]
    handler.on_llm_end(LLMResult(generations=[same]), run_id=uuid.uuid4())
    assert len(rows(ledger)) == 1


def test_llm_output_token_usage_is_the_fallback(ledger: Ledger) -> None:
    handler = LedgerCallbackHandler(ledger)
    run_id = uuid.uuid4()
    handler.on_llm_start({}, ["p"], run_id=run_id, invocation_params={"model_name": "gpt-4o"})
    token_usage = {
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 60},
    }
    result = LLMResult(
        generations=[[Generation(text="x")]], llm_output={"token_usage": token_usage}
    )
    handler.on_llm_end(result, run_id=run_id)
    [row] = rows(ledger)
    assert (row["model"], row["input_tokens"], row["cache_read_tokens"]) == ("gpt-4o", 40, 60)
    assert row["metadata"]["usage_from"] == "llm_output"


def test_errors_are_counted_not_recorded(ledger: Ledger) -> None:
    handler = LedgerCallbackHandler(ledger)
    run_id = uuid.uuid4()
    handler.on_chat_model_start({}, [[]], run_id=run_id)
    handler.on_llm_error(RuntimeError("boom"), run_id=run_id)
    assert handler.errors == 1
    assert rows(ledger) == []


def test_a_real_chat_model_run_records_through_the_callback(
    ledger: Ledger, usages: dict[str, UsageMetadata]
) -> None:
    claude = "claude-sonnet-4-5-20250929"
    reply = AIMessage(
        content="clause 14.2",
        usage_metadata=usages[claude],
        response_metadata={"model_name": claude},
    )
    model = GenericFakeChatModel(messages=iter([reply]))
    handler = LedgerCallbackHandler(ledger)
    with ledger.run("task") as run:
        model.invoke("which clause?", config={"callbacks": [handler]})
    [row] = rows(ledger)
    assert row["model"] == claude
    assert row["run_id"] == run.id
    assert row["output_tokens"] == 845
    assert row["duration_ms"] is not None
