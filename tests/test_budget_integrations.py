"""The integrations reserve before the request when the ledger has block budgets: a budget
that would be exceeded stops the call before the transport sees it; an allowed call is
settled by its record; ``budgets=False`` turns it off."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from llmledger import BudgetExceeded, Ledger, Usage
from llmledger.budgets import budget_status, get_budget, make_budget, set_budget
from llmledger.integrations.anthropic import instrument_anthropic
from llmledger.integrations.openai import instrument_openai


class _Transport:
    """Answers every request with a fixture; remembers each request."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=self.answer)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path}/l.db") as ledger:
        yield ledger


@pytest.fixture
def chat(fixtures_dir: Path) -> _Transport:
    return _Transport(json.loads((fixtures_dir / "openai" / "openai-chat.json").read_text()))


def _openai(transport: _Transport, ledger: Ledger, **kw: Any) -> openai.OpenAI:
    http = httpx.Client(transport=httpx.MockTransport(transport))
    return instrument_openai(openai.OpenAI(api_key="test", http_client=http), ledger, **kw)


def _ask(client: openai.OpenAI) -> Any:
    return client.chat.completions.create(
        model="o4-mini", messages=[{"role": "user", "content": "Review this diff."}], max_tokens=500
    )


def test_a_blocked_budget_stops_the_call_before_the_transport(
    ledger: Ledger, chat: _Transport
) -> None:
    set_budget(ledger.repository, make_budget("cap", "1"))
    ledger.record(Usage(input_tokens=1), model="m", cost_usd="1")  # the budget is spent
    client = _openai(chat, ledger)
    with pytest.raises(BudgetExceeded) as refused:
        _ask(client)
    assert refused.value.budget == "cap"
    assert chat.requests == []  # never sent
    client.close()


def test_an_allowed_call_is_reserved_then_settled_by_its_record(
    ledger: Ledger, chat: _Transport
) -> None:
    set_budget(ledger.repository, make_budget("cap", "10"))
    client = _openai(chat, ledger)
    _ask(client)
    assert len(chat.requests) == 1
    budget = get_budget(ledger.repository, "cap")
    assert budget is not None
    status = budget_status(ledger.repository, budget)
    assert status.calls == 1
    assert status.spent_usd > 0
    assert status.reserved_usd == 0  # settled, not left to expire
    client.close()


def test_a_worst_case_over_the_room_left_is_refused(ledger: Ledger, chat: _Transport) -> None:
    # o4-mini output is $4.40 per million tokens: 500,000 tokens of reply is $2.20 > $1.
    set_budget(ledger.repository, make_budget("cap", "1"))
    client = _openai(chat, ledger)
    with pytest.raises(BudgetExceeded):
        client.chat.completions.create(
            model="o4-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=500_000
        )
    assert chat.requests == []
    client.close()


def test_budgets_off_lets_the_call_through(ledger: Ledger, chat: _Transport) -> None:
    set_budget(ledger.repository, make_budget("cap", "1"))
    ledger.record(Usage(input_tokens=1), model="m", cost_usd="1")
    client = _openai(chat, ledger, budgets=False)
    _ask(client)
    assert len(chat.requests) == 1
    client.close()


def test_a_failed_call_gives_its_reservation_back(ledger: Ledger) -> None:
    set_budget(ledger.repository, make_budget("cap", "10"))

    def fail(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "bad", "type": "invalid"}})

    http = httpx.Client(transport=httpx.MockTransport(fail))
    client = instrument_openai(openai.OpenAI(api_key="t", http_client=http), ledger)
    with pytest.raises(openai.BadRequestError):
        _ask(client)
    budget = get_budget(ledger.repository, "cap")
    assert budget is not None
    assert budget_status(ledger.repository, budget).reserved_usd == 0
    client.close()


def test_async_openai_and_anthropic_are_stopped_too(ledger: Ledger, fixtures_dir: Path) -> None:
    set_budget(ledger.repository, make_budget("cap", "1"))
    ledger.record(Usage(input_tokens=1), model="m", cost_usd="1")
    answer = json.loads((fixtures_dir / "anthropic" / "anthropic-message.json").read_text())
    seen = _Transport(answer)
    claude_seen: list[httpx2.Request] = []

    def claude_transport(request: httpx2.Request) -> httpx2.Response:
        claude_seen.append(request)
        return httpx2.Response(200, json=answer)

    # This venv's Anthropic SDK runs on httpx2 (see tests/test_integrations_anthropic.py).
    http = httpx2.Client(transport=httpx2.MockTransport(claude_transport))
    claude = instrument_anthropic(anthropic.Anthropic(api_key="t", http_client=http), ledger)
    with pytest.raises(BudgetExceeded):
        claude.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=100,
            messages=[{"role": "user", "content": "hi"}],
        )

    async def ask_async() -> None:
        async_http = httpx.AsyncClient(transport=httpx.MockTransport(seen))
        client = instrument_openai(openai.AsyncOpenAI(api_key="t", http_client=async_http), ledger)
        try:
            with pytest.raises(BudgetExceeded):
                await client.chat.completions.create(
                    model="o4-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=10
                )
        finally:
            await client.close()

    asyncio.run(ask_async())
    assert seen.requests == []
    assert claude_seen == []
    claude.close()


def test_langchain_handler_stops_the_chain_and_settles(ledger: Ledger) -> None:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from llmledger.integrations.langchain import LedgerCallbackHandler

    set_budget(ledger.repository, make_budget("cap", "1"))
    usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    reply = AIMessage(
        content="ok", usage_metadata=usage, response_metadata={"model_name": "gpt-4o"}
    )
    model = GenericFakeChatModel(messages=iter([reply, reply]))
    handler = LedgerCallbackHandler(ledger)
    model.invoke("which clause?", config={"callbacks": [handler]})
    budget = get_budget(ledger.repository, "cap")
    assert budget is not None
    status = budget_status(ledger.repository, budget)
    assert (status.calls, status.reserved_usd) == (1, 0)  # recorded and settled
    ledger.record(Usage(input_tokens=1), model="m", cost_usd="1")  # now the budget is spent
    with pytest.raises(BudgetExceeded):
        model.invoke("which clause?", config={"callbacks": [handler]})
    assert budget_status(ledger.repository, budget).calls == 2  # the refused call made none
