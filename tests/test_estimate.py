"""Pre-run estimates: the chars-per-token heuristic, cost ranges, and the warning rule.

Costs are worked by hand: tokens × USD per million tokens = micro-dollars (µ$); / 10**6 = USD.
gpt-4o is 2.5 in / 10 out; claude-sonnet-4-5 is 3 in / 15 out (genai-prices 0.2.3).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from llmledger.estimate import Estimate, count_tokens, estimate_cost, should_warn_cost
from llmledger.pricing import Pricer
from llmledger.usage import Usage

AT = datetime(2026, 1, 15, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_user_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LLMLEDGER_PRICES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def pricer() -> Pricer:
    return Pricer()


def usd(micro_dollars: str) -> Decimal:
    return Decimal(micro_dollars) / 1_000_000


@pytest.mark.parametrize(
    ("text", "model", "tokens"),
    [
        ("", "gpt-4o", 0),
        ("a" * 400, "gpt-4o", 100),  # 400 / 4
        ("a" * 400, "gemini-2.5-pro", 100),  # 400 / 4
        ("a" * 350, "claude-sonnet-4-5", 100),  # 350 / 3.5
        ("a" * 351, "claude-sonnet-4-5", 101),  # 100.29, rounded up
        ("a" * 400, "my-local-model", 100),  # other: 400 / 4
        ("日本語" * 10, "gpt-4o", 30),  # 30 non-ASCII characters, one token each
        ("abcdé", "gpt-4o", 2),  # 4 / 4 + 1
    ],
)
def test_count_tokens(text: str, model: str, tokens: int) -> None:
    assert count_tokens(text, model) == tokens


def test_estimate_with_expected_output(pricer: Pricer) -> None:
    est = estimate_cost("a" * 40_000, "gpt-4o", expected_output_tokens=1_000, pricer=pricer, at=AT)
    # input: 40_000 / 4 = 10_000 tokens, ±25% -> 7_500 .. 12_500; output 1_000 throughout
    assert (est.input_tokens_low, est.input_tokens, est.input_tokens_high) == (
        7_500,
        10_000,
        12_500,
    )
    assert (est.output_tokens_low, est.output_tokens, est.output_tokens_high) == (1_000,) * 3
    #  low:  7_500 × 2.5 + 1_000 × 10 = 18_750 + 10_000 = 28_750 µ$
    #  exp: 10_000 × 2.5 + 1_000 × 10 = 25_000 + 10_000 = 35_000 µ$
    # high: 12_500 × 2.5 + 1_000 × 10 = 31_250 + 10_000 = 41_250 µ$
    assert est.cost_low_usd == usd("28750")
    assert est.cost_usd == usd("35000")
    assert est.cost_high_usd == usd("41250")
    assert est.cost_status == "computed"
    assert est.token_provenance == "estimated"
    assert est.usage == Usage(input_tokens=10_000, output_tokens=1_000)
    assert "4 ASCII chars/token" in est.method
    assert "±25%" in est.method


def test_estimate_default_output(pricer: Pricer) -> None:
    est = estimate_cost("a" * 35_000, "claude-sonnet-4-5", pricer=pricer, at=AT)
    # input: 35_000 / 3.5 = 10_000, ±30% -> 7_000 .. 13_000
    # output: low 0, expected min(10_000, 4_096) = 4_096, high min(13_000, 16_384) = 13_000
    assert (est.input_tokens_low, est.input_tokens, est.input_tokens_high) == (
        7_000,
        10_000,
        13_000,
    )
    assert (est.output_tokens_low, est.output_tokens, est.output_tokens_high) == (0, 4_096, 13_000)
    #  low:  7_000 × 3 +      0 × 15 =  21_000 µ$
    #  exp: 10_000 × 3 +  4_096 × 15 =  30_000 +  61_440 =  91_440 µ$
    # high: 13_000 × 3 + 13_000 × 15 =  39_000 + 195_000 = 234_000 µ$
    assert est.cost_low_usd == usd("21000")
    assert est.cost_usd == usd("91440")
    assert est.cost_high_usd == usd("234000")


def test_max_output_tokens_sets_the_high_end(pricer: Pricer) -> None:
    est = estimate_cost(
        "a" * 400,
        "gpt-4o",
        expected_output_tokens=50,
        max_output_tokens=1_000,
        pricer=pricer,
        at=AT,
    )
    assert (est.output_tokens_low, est.output_tokens, est.output_tokens_high) == (50, 50, 1_000)
    # high: 125 × 2.5 + 1_000 × 10 = 312.5 + 10_000 = 10_312.5 µ$
    assert est.cost_high_usd == usd("10312.5")


def test_unknown_model_estimate_is_unpriced_and_warns(pricer: Pricer) -> None:
    est = estimate_cost("hello", "my-private-model-x", pricer=pricer, at=AT)
    assert est.input_tokens == 2  # 5 / 4 = 1.25 -> 2
    assert (est.cost_low_usd, est.cost_usd, est.cost_high_usd) == (None, None, None)
    assert est.cost_status == "unpriced"
    # an unknown price cannot be bounded, so a money threshold always warns
    assert should_warn_cost(est, Decimal("100"))


def _estimate(cost_high: Decimal | None, input_high: int) -> Estimate:
    return Estimate(
        model="m",
        input_tokens_low=0,
        input_tokens=input_high,
        input_tokens_high=input_high,
        output_tokens_low=0,
        output_tokens=0,
        output_tokens_high=0,
        cost_low_usd=cost_high,
        cost_usd=cost_high,
        cost_high_usd=cost_high,
        cost_status="computed" if cost_high is not None else "unpriced",
        price_version=None,
        method="test",
    )


def test_should_warn_cost_thresholds() -> None:
    est = _estimate(Decimal("0.50"), 12_000)
    assert should_warn_cost(est, Decimal("0.49"))
    assert not should_warn_cost(est, Decimal("0.50"))  # not above
    assert not should_warn_cost(est, 1)
    assert should_warn_cost(est, "0.1")
    assert should_warn_cost(est, threshold_tokens=10_000)
    assert not should_warn_cost(est, threshold_tokens=12_000)
    assert should_warn_cost(est, Decimal(1), threshold_tokens=10_000)  # either one
    with pytest.raises(ValueError, match="threshold"):
        should_warn_cost(est)


def test_seed_examples(pricer: Pricer) -> None:
    # The seed warned on prompts above 10k tokens at ~4 chars/token.
    long = estimate_cost("x" * 50_000, "gpt-4o-mini", pricer=pricer, at=AT)
    short = estimate_cost("Hello world", "gpt-4o-mini", pricer=pricer, at=AT)
    assert should_warn_cost(long, threshold_tokens=10_000)  # 12_500 tokens
    assert not should_warn_cost(short, threshold_tokens=10_000)
    assert short.cost_usd is not None
    assert short.cost_usd > 0


def test_negative_output_is_rejected() -> None:
    with pytest.raises(ValueError, match="expected_output_tokens"):
        estimate_cost("x", "gpt-4o", expected_output_tokens=-1)
