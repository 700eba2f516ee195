"""LedgerLiteLLMCallback, fed what LiteLLM passes its CustomLogger (litellm itself not needed)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from llmledger.integrations.litellm import LedgerLiteLLMCallback
from llmledger.ledger import Ledger
from llmledger.store.schema import calls


class ModelResponse(BaseModel):
    """The fields of litellm's ModelResponse that matter here (OpenAI-shaped)."""

    id: str
    object: str = "chat.completion"
    created: int = 1762473318
    model: str
    choices: list[dict[str, Any]] = []
    usage: dict[str, Any] | None = None


def rows(ledger: Ledger) -> list[dict[str, Any]]:
    with ledger.repository.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(calls).order_by(calls.c.id)).mappings()]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path}/l.db") as ledger:
        yield ledger


# What LiteLLM reports for an Anthropic call with a cache read and a cache write: prompt_tokens
# includes both (cached_tokens, cache_write_tokens), as OpenAI's do.
CLAUDE_USAGE = {
    "prompt_tokens": 1204 + 18432 + 3072,
    "completion_tokens": 845,
    "total_tokens": 1204 + 18432 + 3072 + 845,
    "prompt_tokens_details": {"cached_tokens": 18432, "cache_write_tokens": 3072},
    "completion_tokens_details": {"reasoning_tokens": 402},
}


def kwargs(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "litellm_call_id": "call-1",
        "litellm_params": {"custom_llm_provider": "anthropic"},
        "response_cost": 0.0413,
        **extra,
    }


START = datetime(2026, 1, 5, 10, 0, 0)  # naive local time, as LiteLLM passes it
END = START + timedelta(milliseconds=1500)


def test_success_is_recorded_normalized_and_priced_by_us(ledger: Ledger) -> None:
    callback = LedgerLiteLLMCallback(ledger, agent="router")
    response = ModelResponse(
        id="chatcmpl-1", model="claude-sonnet-4-5-20250929", usage=CLAUDE_USAGE
    )
    callback.log_success_event(kwargs(), response, START, END)
    [row] = rows(ledger)
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (
        1204,
        18432,
        3072,
    )
    assert row["output_tokens"] == 845
    assert row["model"] == "claude-sonnet-4-5-20250929"
    assert row["provider"] == "anthropic"
    assert row["dedupe_key"] == "chatcmpl-1"
    assert row["duration_ms"] == 1500
    assert row["agent_id"] == "router"
    # LiteLLM's cost is its own estimate: kept, not used as a reported cost.
    assert row["metadata"]["litellm_response_cost"] == 0.0413
    assert row["cost_status"] != "reported"


def test_async_success_and_missing_id(ledger: Ledger) -> None:
    callback = LedgerLiteLLMCallback(ledger)
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    response = {"model": "gpt-4o-mini", "usage": usage}  # a dict is accepted too
    asyncio.run(callback.async_log_success_event(kwargs(), response, START, END))
    [row] = rows(ledger)
    assert row["dedupe_key"] == "call-1"  # LiteLLM's call id when the response has none
    assert (row["input_tokens"], row["output_tokens"]) == (10, 2)


def test_cache_hits_and_failures_are_counted_not_recorded(ledger: Ledger) -> None:
    callback = LedgerLiteLLMCallback(ledger)
    response = ModelResponse(id="chatcmpl-2", model="gpt-4o", usage=CLAUDE_USAGE)
    callback.log_success_event(kwargs(cache_hit=True), response, START, END)
    callback.log_failure_event(kwargs(exception=RuntimeError("429")), None, START, END)
    asyncio.run(callback.async_log_failure_event(kwargs(), None, START, END))
    assert (callback.cache_hits, callback.failures) == (1, 2)
    assert rows(ledger) == []


def test_a_malformed_event_never_raises(ledger: Ledger) -> None:
    callback = LedgerLiteLLMCallback(ledger)
    bad = ModelResponse(id="x", model="m", usage={"prompt_tokens": -5})
    callback.log_success_event(kwargs(), bad, "not a time", None)
    assert ledger.failures == 1
