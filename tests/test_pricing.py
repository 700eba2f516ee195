"""Pricing: precedence, provenance, normalization, tiers, history, and the fast path.

Every expected cost is worked out by hand in the test: rates are USD per million tokens, so
``tokens × rate`` is in micro-dollars (µ$) and the cost in USD is the sum divided by 10**6.
Prices are genai-prices 0.2.3's bundled data.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache
from pathlib import Path

import genai_prices
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from llmledger.call import Call
from llmledger.cli._app import app
from llmledger.pricing import (
    OverridesError,
    Price,
    Pricer,
    apportion_reported,
)
from llmledger.usage import Usage

UTC = UTC
AT = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
Q = Decimal("1e-12")
GP = f"genai-prices {genai_prices.__version__}"


def usd(micro_dollars: str) -> Decimal:
    """µ$ (tokens × USD/MTok) to USD."""
    return Decimal(micro_dollars) / 1_000_000


@pytest.fixture(autouse=True)
def _no_user_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The developer's own ~/.config/llmledger/prices.toml must not leak into the tests.
    monkeypatch.delenv("LLMLEDGER_PRICES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def pricer() -> Pricer:
    return Pricer()


def write_overrides(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- computed from genai-prices ----------------------------------------------------------------

SONNET_USAGE = Usage(
    input_tokens=1_000,
    cache_read_tokens=20_000,
    cache_write_tokens=3_000,
    cache_write_5m_tokens=2_000,
    cache_write_1h_tokens=1_000,
    output_tokens=512,
)


def test_claude_sonnet_45_with_5m_and_1h_cache_writes(pricer: Pricer) -> None:
    # sonnet 4.5: input 3, cache read 0.3, 5m write 3.75, 1h write 6, output 15 (USD/MTok)
    #   1_000 × 3     = 3_000 µ$
    #  20_000 × 0.3   = 6_000
    #   2_000 × 3.75  = 7_500
    #   1_000 × 6     = 6_000
    #     512 × 15    = 7_680
    #                  ------
    #                  30_180 µ$ = $0.03018
    call = Call(
        usage=SONNET_USAGE, source="anthropic", model="claude-sonnet-4-5-20250929", started_at=AT
    )
    price = pricer.price(call)
    assert price.cost_usd == usd("30180")
    assert price.cost_status == "computed"
    assert price.price_version == GP
    assert "anthropic/claude-sonnet-4-5" in price.rates_source
    # The 1h writes are not priced at the 5m rate (that would be 3_000 × 3.75 = 11_250 µ$).
    assert price.cost_usd != usd("3000") + usd("6000") + usd("11250") + usd("7680")


def test_openai_gpt5_cached_input_and_reasoning(pricer: Pricer) -> None:
    # OpenAI reported prompt_tokens=10_000 (cached_tokens=8_000), completion_tokens=3_000
    # (reasoning_tokens=2_000). Canonical buckets: input 2_000, cache read 8_000, output 3_000
    # of which 2_000 reasoning. gpt-5: input 1.25, cached 0.125, output 10 (reasoning = output).
    #   2_000 × 1.25  =  2_500 µ$
    #   8_000 × 0.125 =  1_000
    #   3_000 × 10    = 30_000
    #                   ------
    #                   33_500 µ$ = $0.0335
    usage = Usage(
        input_tokens=2_000, cache_read_tokens=8_000, output_tokens=3_000, reasoning_tokens=2_000
    )
    price = pricer.price_usage(usage, "gpt-5", "openai", AT)
    assert price.cost_usd == usd("33500")
    assert price.cost_status == "computed"


def test_gpt4o_matches_the_peers_table(pricer: Pricer) -> None:
    # 10k prompt with 8k cached, 500 out: 2_000 × 2.5 + 8_000 × 1.25 + 500 × 10
    #   = 5_000 + 10_000 + 5_000 = 20_000 µ$ = $0.02
    usage = Usage(input_tokens=2_000, cache_read_tokens=8_000, output_tokens=500)
    assert pricer.price_usage(usage, "gpt-4o", "openai", AT).cost_usd == usd("20000")


def test_gemini_25_pro_above_the_200k_tier(pricer: Pricer) -> None:
    # gemini-2.5-pro: base input 1.25 / cache read 0.125 / output 10; once the prompt exceeds
    # 200_000 tokens every token is billed at 2.5 / 0.25 / 15 (cliff, not split).
    # prompt = 240_000 + 10_000 = 250_000 > 200_000:
    #   240_000 × 2.5  = 600_000 µ$
    #    10_000 × 0.25 =   2_500
    #     2_000 × 15   =  30_000
    #                    -------
    #                    632_500 µ$ = $0.6325
    above = Usage(input_tokens=240_000, cache_read_tokens=10_000, output_tokens=2_000)
    assert pricer.price_usage(above, "gemini-2.5-pro", None, AT).cost_usd == usd("632500")
    # exactly 200_000 is not above: 200_000 × 1.25 + 2_000 × 10 = 250_000 + 20_000 = 270_000 µ$
    at_edge = Usage(input_tokens=200_000, output_tokens=2_000)
    assert pricer.price_usage(at_edge, "gemini-2.5-pro", None, AT).cost_usd == usd("270000")
    # one more token crosses it: 200_001 × 2.5 + 2_000 × 15 = 500_002.5 + 30_000 µ$
    over = Usage(input_tokens=200_001, output_tokens=2_000)
    assert pricer.price_usage(over, "gemini-2.5-pro", None, AT).cost_usd == usd("530002.5")


def test_price_history_uses_the_call_timestamp(pricer: Pricer) -> None:
    # o3 was 10 in / 40 out until 2025-06-10, then 2 / 8: 1M in + 1M out = $50, then $10.
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    before = Call(usage=usage, source="t", model="o3", started_at=datetime(2025, 5, 1, tzinfo=UTC))
    after = Call(usage=usage, source="t", model="o3", started_at=datetime(2025, 7, 1, tzinfo=UTC))
    assert pricer.price(before).cost_usd == Decimal(50)
    assert pricer.price(after).cost_usd == Decimal(10)


def test_time_of_day_prices_go_through_calc_price(pricer: Pricer) -> None:
    # deepseek-chat: 0.27 in / 1.1 out from 00:30 to 16:30 UTC, 0.135 / 0.55 otherwise.
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    day = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)
    night = datetime(2026, 1, 15, 20, 0, tzinfo=UTC)
    assert pricer.price_usage(usage, "deepseek-chat", None, day).cost_usd == Decimal("1.37")
    assert pricer.price_usage(usage, "deepseek-chat", None, night).cost_usd == Decimal("0.685")


def test_naive_timestamps_are_utc(pricer: Pricer) -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    naive = datetime(2025, 6, 10, 0, 0)
    assert pricer.price_usage(usage, "o3", None, naive).cost_usd == Decimal(10)


def test_money_is_quantized_to_pico_dollars(pricer: Pricer) -> None:
    price = pricer.price_usage(Usage(input_tokens=1), "gpt-4o", "openai", AT)
    # 1 × 2.5 µ$ = $0.0000025, carried with 12 decimal places
    assert price.cost_usd is not None
    assert str(price.cost_usd) == "0.000002500000"


# -- unpriced ---------------------------------------------------------------------------------


def test_unknown_model_is_unpriced_and_warned_once(
    pricer: Pricer, caplog: pytest.LogCaptureFixture
) -> None:
    usage = Usage(input_tokens=100, output_tokens=10)
    call = Call(usage=usage, source="openai", model="my-private-model-x", started_at=AT)
    with caplog.at_level(logging.WARNING, logger="llmledger.pricing"):
        first = pricer.price(call)
        second = pricer.price_usage(usage, "my-private-model-x")
        pricer.price_usage(Usage(input_tokens=5), "another-unknown")
    for price in (first, second):
        assert price.cost_usd is None  # never Decimal(0)
        assert price.cost_status == "unpriced"
    records = [r for r in caplog.records if "my-private-model-x" in r.getMessage()]
    assert len(records) == 1
    assert "prices.toml" in records[0].getMessage()
    assert len([r for r in caplog.records if "another-unknown" in r.getMessage()]) == 1
    assert pricer.unpriced_models == {"my-private-model-x": 2, "another-unknown": 1}


def test_a_new_pricer_warns_again(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llmledger.pricing"):
        Pricer().price_usage(Usage(input_tokens=1), "my-private-model-x")
        Pricer().price_usage(Usage(input_tokens=1), "my-private-model-x")
    assert len(caplog.records) == 2


def test_empty_usage_is_unpriced_not_zero(pricer: Pricer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llmledger.pricing"):
        price = pricer.price_usage(Usage(), "claude-sonnet-4-5", None, AT)
    assert price == Price(None, "unpriced", None, "no usage reported for 'claude-sonnet-4-5'")
    assert caplog.records == []  # the model is known; nothing to add to the overrides file
    # zeros that were reported are a real $0
    assert pricer.price_usage(Usage(input_tokens=0), "gpt-4o", None, AT).cost_usd == 0


def test_call_without_model_is_unpriced(pricer: Pricer) -> None:
    price = pricer.price(Call(usage=Usage(input_tokens=5), source="otel"))
    assert price.cost_usd is None
    assert price.cost_status == "unpriced"


# -- reported and overrides --------------------------------------------------------------------


def test_reported_cost_wins_over_computing(tmp_path: Path) -> None:
    path = write_overrides(tmp_path, '[models."claude-sonnet-4-5"]\ninput = 1\noutput = 1\n')
    call = Call(
        usage=SONNET_USAGE,
        source="claude-code",
        model="claude-sonnet-4-5",
        started_at=AT,
        reported_cost_usd=Decimal("0.07920015"),
    )
    price = Pricer(path).price(call)
    assert price == Price(Decimal("0.079200150000"), "reported", None, "reported by claude-code")


def test_override_changes_a_known_models_price(tmp_path: Path) -> None:
    text = (
        '[models."claude-sonnet-4-5"]\n'
        "input = 2\noutput = 10\ncache_read = 0.2\ncache_write = 2.5\ncache_write_1h = 4\n"
    )
    path = write_overrides(tmp_path, text)
    pricer = Pricer(path)
    # The call's dated name normalizes to the override key, which wins over genai-prices.
    #   1_000 × 2    = 2_000 µ$
    #  20_000 × 0.2  = 4_000
    #   2_000 × 2.5  = 5_000
    #   1_000 × 4    = 4_000
    #     512 × 10   = 5_120
    #                 ------
    #                 20_120 µ$ = $0.02012
    call = Call(usage=SONNET_USAGE, source="t", model="claude-sonnet-4-5-20250929", started_at=AT)
    price = pricer.price(call)
    assert price.cost_usd == usd("20120")
    assert price.cost_status == "computed"
    sha8 = hashlib.sha256(text.encode()).hexdigest()[:8]
    assert price.price_version == f"overrides:{sha8}"
    assert str(path) in price.rates_source
    # other models still come from genai-prices
    assert pricer.price_usage(Usage(input_tokens=1), "gpt-4o", None, AT).price_version == GP


def test_override_defaults_and_reasoning_rate(tmp_path: Path) -> None:
    path = write_overrides(
        tmp_path,
        '[models."my-local"]\ninput = 1\noutput = 2\n\n'
        '[models."my-thinker"]\ninput = 1\noutput = 2\nreasoning = 3\n',
    )
    pricer = Pricer(path)
    usage = Usage(
        input_tokens=100_000, cache_read_tokens=50_000, output_tokens=10_000, reasoning_tokens=4_000
    )
    # Unlisted cache_read costs the input rate; reasoning the output rate:
    #   100_000 × 1 + 50_000 × 1 + 10_000 × 2 = 170_000 µ$
    assert pricer.price_usage(usage, "my-local").cost_usd == usd("170000")
    # With reasoning = 3: 100_000 × 1 + 50_000 × 1 + 6_000 × 2 + 4_000 × 3 = 174_000 µ$
    assert pricer.price_usage(usage, "my-thinker").cost_usd == usd("174000")


def test_override_tiers(tmp_path: Path) -> None:
    path = write_overrides(
        tmp_path,
        '[models."x"]\ninput = 1\noutput = 2\n[[models."x".tiers]]\nabove = 1000\ninput = 3\n',
    )
    pricer = Pricer(path)
    # 1_000 prompt tokens: 1_000 × 1 + 10 × 2 = 1_020 µ$
    assert pricer.price_usage(Usage(input_tokens=1_000, output_tokens=10), "x").cost_usd == usd(
        "1020"
    )
    # 1_001 > 1_000: 1_001 × 3 + 10 × 2 (output rate inherited) = 3_023 µ$
    assert pricer.price_usage(Usage(input_tokens=1_001, output_tokens=10), "x").cost_usd == usd(
        "3023"
    )


def test_included_model_costs_zero(tmp_path: Path) -> None:
    path = write_overrides(tmp_path, '[models."llama3:8b"]\nincluded = true\n')
    pricer = Pricer(path)
    for usage in (Usage(input_tokens=10_000, output_tokens=500), Usage()):
        price = pricer.price_usage(usage, "llama3:8b")
        assert price.cost_usd == Decimal(0)
        assert price.cost_status == "included"


def test_overrides_file_from_env_and_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config" / "llmledger"
    config.mkdir(parents=True)
    (config / "prices.toml").write_text('[models."a"]\ninput = 1\noutput = 1\n')
    assert Pricer().overrides_path == config / "prices.toml"
    env_file = write_overrides(tmp_path, '[models."b"]\nincluded = true\n')
    monkeypatch.setenv("LLMLEDGER_PRICES", str(env_file))
    pricer = Pricer()
    assert pricer.overrides_path == env_file
    assert pricer.price_usage(Usage(input_tokens=1), "b").cost_status == "included"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[models."m"]\ninput = 1\n', "needs both 'input' and 'output'"),
        ('[models."m"]\ninput = 1\noutput = 1\ncached_input = 1\n', "unknown keys"),
        ('[models."m"]\ninput = -1\noutput = 1\n', "must be >= 0"),
        ('[models."m"\n', "not valid TOML"),
        ("[other]\nx = 1\n", "expected only"),
    ],
)
def test_bad_overrides_file_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = write_overrides(tmp_path, text)
    with pytest.raises(OverridesError, match=message) as info:
        Pricer(path)
    assert str(path) in str(info.value)


def test_missing_explicit_overrides_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OverridesError, match="cannot read"):
        Pricer(tmp_path / "nope.toml")


# -- model names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "provider", "want_provider", "want_model"),
    [
        ("claude-sonnet-4-5-20250929", None, "anthropic", "claude-sonnet-4-5"),
        ("anthropic/claude-sonnet-4-5", None, "anthropic", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5-20250929[1m]", None, "anthropic", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5@20250929", "vertex_ai", "google", "claude-sonnet-4-5"),
        ("vertex_ai/gemini-2.5-pro", None, "google", "gemini-2.5-pro"),
        ("gpt-5-2025-08-07", None, "openai", "gpt-5"),
        ("openai/gpt-4o", None, "openai", "gpt-4o"),
        ("gpt-4o-2024-05-13", None, "openai", "gpt-4o-2024-05-13"),  # exact wins: its own price
        ("claude-sonnet-4-5", "claude-code", "anthropic", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5", "some-proxy", "anthropic", "claude-sonnet-4-5"),
        (
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "bedrock",
            "aws",
            "regional.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        (
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            None,
            "aws",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        (
            "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            None,
            "aws",
            "regional.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
    ],
)
def test_model_name_normalization(
    pricer: Pricer, model: str, provider: str | None, want_provider: str, want_model: str
) -> None:
    card = pricer.rate_card(model, provider, AT)
    assert card is not None
    assert (card.provider, card.matched_model) == (want_provider, want_model)
    assert pricer.price_usage(Usage(input_tokens=1), model, provider, AT).cost_status == "computed"


def test_fast_suffix_selects_fast_mode_prices(pricer: Pricer) -> None:
    # claude-opus-4-8: 5 in / 25 out; fast mode 10 / 50.
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert pricer.price_usage(usage, "claude-opus-4-8", None, AT).cost_usd == Decimal(30)
    assert pricer.price_usage(usage, "claude-opus-4-8-fast", None, AT).cost_usd == Decimal(60)


def test_override_keys_match_normalized_names(tmp_path: Path) -> None:
    pricer = Pricer(write_overrides(tmp_path, '[models."Corp-Model"]\ninput = 1\noutput = 1\n'))
    price = pricer.price_usage(Usage(input_tokens=1_000_000), "openrouter/corp-model-20250101")
    assert price.cost_usd == Decimal(1)


# -- the fast path equals calc_price -----------------------------------------------------------

FAST_PATH_MODELS = [
    ("claude-sonnet-4-5", "anthropic"),
    ("claude-opus-4-6", "anthropic"),
    ("claude-3-5-haiku-latest", "anthropic"),
    ("gpt-5", "openai"),
    ("gpt-4o", "openai"),
    ("o3", "openai"),
    ("gpt-5.6-sol", "openai"),
    ("gemini-2.5-pro", "google"),
    ("gemini-2.5-flash", "google"),
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "aws"),
    ("deepseek-chat", "deepseek"),
]


def genai_usage(usage: Usage) -> genai_prices.Usage:
    """Our exclusive buckets as genai-prices' inclusive usage."""
    cache_write = usage.cache_write_tokens or 0
    return genai_prices.Usage(
        input_tokens=(usage.input_tokens or 0) + (usage.cache_read_tokens or 0) + cache_write,
        cache_read_tokens=usage.cache_read_tokens or 0,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=usage.cache_write_1h_tokens or 0,
        output_tokens=usage.output_tokens or 0,
        output_reasoning_tokens=usage.reasoning_tokens or 0,
    )


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    count = st.integers(0, 400_000)
    cache_write = draw(st.none() | count)
    one_hour = None if cache_write is None else draw(st.integers(0, cache_write))
    output = draw(count)
    return Usage(
        input_tokens=draw(st.none() | count),
        cache_read_tokens=draw(st.none() | count),
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=one_hour,
        output_tokens=output,
        reasoning_tokens=draw(st.none() | st.integers(0, output)),
    )


@settings(max_examples=300, deadline=None)
@given(
    usage=usages(),
    model=st.sampled_from(FAST_PATH_MODELS),
    at=st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
)
def test_fast_path_equals_calc_price(usage: Usage, model: tuple[str, str], at: datetime) -> None:
    name, provider = model
    expected = genai_prices.calc_price(
        genai_usage(usage), name, provider_id=provider, genai_request_timestamp=at
    ).total_price.quantize(Q, rounding=ROUND_HALF_EVEN)
    assert _shared_pricer().price_usage(usage, name, provider, at).cost_usd == expected


@cache
def _shared_pricer() -> Pricer:
    # One Pricer across examples, so its cache is warm as in production; built inside a test,
    # after the autouse fixture has hidden the user's overrides file.
    return Pricer()


def test_fast_path_equals_calc_price_for_every_bundled_model() -> None:
    from genai_prices.data import providers

    pricer = Pricer()
    usage = Usage(
        input_tokens=123_457,
        cache_read_tokens=98_765,
        cache_write_tokens=4_321,
        cache_write_1h_tokens=1_234,
        output_tokens=5_678,
        reasoning_tokens=910,
    )
    compared = 0
    for provider in providers:
        for model in provider.models:
            card = pricer.rate_card(model.id, provider.id, AT)
            if card is None or card.matched_model != model.id or card.provider != provider.id:
                continue  # the bare id resolves to another entry; covered there
            for at in (AT, AT - timedelta(days=500), AT + timedelta(days=300)):
                expected = model.calc_price(
                    genai_usage(usage), provider, genai_request_timestamp=at
                ).total_price.quantize(Q, rounding=ROUND_HALF_EVEN)
                got = pricer.price_usage(usage, model.id, provider.id, at).cost_usd
                assert got == expected, (provider.id, model.id, at)
                compared += 1
    assert compared > 5_000


# -- apportioning a reported total -------------------------------------------------------------


def test_apportion_by_computed_cost_sums_exactly() -> None:
    model = "claude-sonnet-4-5-20250929"
    calls = [
        (Call(usage=Usage(output_tokens=1), source="s", model=model), Price(cost, "computed", GP))
        for cost in (Decimal("0.01"), Decimal("0.02"), Decimal("0.03"))
    ]
    other = (
        Call(usage=Usage(output_tokens=1), source="s", model="gpt-4o"),
        Price(None, "unpriced"),
    )
    prices = apportion_reported([*calls, other], {model: Decimal("0.1")})
    # $0.1 = 100_000_000_000 p$ split 1:2:3 ->
    #   16_666_666_666.67, 33_333_333_333.33, 50_000_000_000 ; floors sum to 99_999_999_999,
    #   the one p$ left goes to the largest remainder (.67).
    assert [p.cost_usd for p in prices[:3]] == [
        Decimal("0.016666666667"),
        Decimal("0.033333333333"),
        Decimal("0.050000000000"),
    ]
    assert sum(p.cost_usd for p in prices[:3] if p.cost_usd is not None) == Decimal("0.1")
    assert all(p.cost_status == "reported" for p in prices[:3])
    assert prices[3] == other[1]


def test_apportion_unpriced_model_by_tokens() -> None:
    calls = [
        (Call(usage=Usage(input_tokens=n), source="s", model="m"), Price(None, "unpriced"))
        for n in (100, 300)
    ]
    # 100 : 300 of $0.004 -> $0.001 and $0.003
    prices = apportion_reported(calls, {"m": Decimal("0.004")})
    assert [p.cost_usd for p in prices] == [Decimal("0.001"), Decimal("0.003")]


@given(
    costs=st.lists(st.integers(0, 10**9), min_size=1, max_size=30),
    reported=st.decimals(min_value=0, max_value=1000, places=8),
)
def test_apportion_always_sums_exactly(costs: list[int], reported: Decimal) -> None:
    calls = [
        (
            Call(usage=Usage(output_tokens=1), source="s", model="m"),
            Price(Decimal(c).scaleb(-12), "computed"),
        )
        for c in costs
    ]
    prices = apportion_reported(calls, {"m": reported})
    assert sum(p.cost_usd for p in prices if p.cost_usd is not None) == reported


# -- the prices command ------------------------------------------------------------------------


def test_prices_cli_known_model_json() -> None:
    from llmledger.cli import prices  # noqa: F401  (registers the command)

    result = CliRunner().invoke(
        app, ["prices", "claude-sonnet-4-5-20250929", "--json", "--at", "2026-01-15"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["matched_model"] == "claude-sonnet-4-5"
    assert data["provider"] == "anthropic"
    assert data["price_version"] == GP
    assert data["rates"]["input"] == "3"
    assert data["rates"]["output"] == "15"
    assert data["rates"]["cache_read"] == "0.3"
    assert data["rates"]["cache_write"] == "3.75"
    assert data["rates"]["cache_write_1h"] == "6"
    assert data["tiers"][0]["above_prompt_tokens"] == 200_000


def test_prices_cli_table() -> None:
    from llmledger.cli import prices  # noqa: F401

    result = CliRunner().invoke(app, ["prices", "gpt-4o", "--provider", "openai"])
    assert result.exit_code == 0, result.output
    assert "cache read" in result.stdout
    assert "1.25" in result.stdout


def test_prices_cli_unknown_model_exits_1_with_hint(tmp_path: Path) -> None:
    from llmledger.cli import prices  # noqa: F401

    result = CliRunner().invoke(app, ["prices", "my-private-model-x"])
    assert result.exit_code == 1
    assert '[models."my-private-model-x"]' in result.stderr
    assert str(tmp_path / "config" / "llmledger" / "prices.toml") in result.stderr
    assert "included = true" in result.stderr


def test_prices_cli_shows_override(tmp_path: Path) -> None:
    from llmledger.cli import prices  # noqa: F401

    path = write_overrides(tmp_path, '[models."my-model"]\ninput = 0.5\noutput = 1.5\n')
    result = CliRunner().invoke(app, ["prices", "my-model", "--prices", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["source"] == "overrides"
    assert data["overrides_path"] == str(path)
    assert data["rates"]["input"] == "0.5"
    assert data["rates"]["cache_read"] == "0.5"
