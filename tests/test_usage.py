"""Usage: the canonical buckets, None kept distinct from 0, validation that names the field."""

from __future__ import annotations

import pytest

from llmledger import Usage, UsageError
from llmledger.totals import Totals


def test_none_plus_none_is_none_and_none_plus_number_is_the_number() -> None:
    a = Usage(input_tokens=None, output_tokens=3)
    b = Usage(input_tokens=None, output_tokens=None, cache_read_tokens=0)
    total = a + b
    assert total.input_tokens is None
    assert total.output_tokens == 3
    assert total.cache_read_tokens == 0
    assert total.reasoning_tokens is None


def test_sum_starts_from_zero_and_total_of_nothing_is_empty() -> None:
    usages = [Usage(input_tokens=1), Usage(input_tokens=2, output_tokens=5)]
    assert sum(usages) == Usage(input_tokens=3, output_tokens=5)
    assert Usage.total([]).is_empty
    assert Usage.total([]).total_tokens is None


def test_sums_over_calls_reporting_different_buckets_do_not_raise() -> None:
    # One call reports reasoning but not output, another output alone; each is valid.
    thinking = Usage(input_tokens=1, reasoning_tokens=900)
    plain = Usage(input_tokens=1, output_tokens=10)
    total = thinking + plain
    assert (total.output_tokens, total.reasoning_tokens) == (10, 900)
    assert Usage.total([plain, thinking]) == total
    split = Usage(cache_write_5m_tokens=500) + Usage(cache_write_tokens=20)
    assert (split.cache_write_tokens, split.cache_write_5m_tokens) == (20, 500)


def test_of_sums_still_checks_each_count() -> None:
    assert Usage.of_sums(output_tokens=1, reasoning_tokens=2).reasoning_tokens == 2
    with pytest.raises(UsageError) as info:
        Usage.of_sums(output_tokens=-1)
    assert info.value.field == "output_tokens"
    with pytest.raises(TypeError, match="outptu_tokens"):
        Usage.of_sums(outptu_tokens=1)


def test_derived_fields() -> None:
    usage = Usage(
        input_tokens=100,
        cache_read_tokens=300,
        cache_write_tokens=100,
        cache_write_5m_tokens=60,
        cache_write_1h_tokens=40,
        output_tokens=50,
        reasoning_tokens=20,
    )
    assert usage.prompt_tokens == 500
    assert usage.total_tokens == 550
    assert usage.cache_hit_rate == pytest.approx(300 / 500)


def test_cache_hit_rate_unknown_when_reads_not_reported() -> None:
    assert Usage(input_tokens=10).cache_hit_rate is None
    assert Usage(cache_read_tokens=0, input_tokens=0).cache_hit_rate is None
    assert Usage(cache_read_tokens=0, input_tokens=10).cache_hit_rate == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"input_tokens": -1}, "input_tokens"),
        ({"output_tokens": 1.5}, "output_tokens"),
        ({"cache_read_tokens": True}, "cache_read_tokens"),
        ({"output_tokens": 10, "reasoning_tokens": 11}, "reasoning_tokens"),
        (
            {"cache_write_tokens": 10, "cache_write_5m_tokens": 6, "cache_write_1h_tokens": 5},
            "cache_write_tokens",
        ),
    ],
)
def test_invalid_usage_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(UsageError) as info:
        Usage(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_to_dict_and_back() -> None:
    usage = Usage(input_tokens=1, cache_read_tokens=0, output_tokens=2)
    data = usage.to_dict()
    assert data["total_tokens"] == 3
    assert data["cache_write_tokens"] is None
    assert Usage.from_dict(data) == usage


def test_totals_keep_unknown_cost_distinct_from_zero() -> None:
    from decimal import Decimal

    priced = Totals(Usage(input_tokens=1), Decimal("0.5"), 0, 1)
    unpriced = Totals(Usage(input_tokens=2), None, 1, 1)
    total = priced + unpriced
    assert total.cost_usd == Decimal("0.5")
    assert total.unpriced_calls == 1
    assert Totals.total([unpriced]).cost_usd is None
    assert total.to_dict()["calls"] == 2


def test_totals_json_takes_the_fields_each_surface_names_in_order() -> None:
    from decimal import Decimal

    from llmledger.totals import JSON_FIELDS, PLAN_FIELDS, RUN_FIELDS

    totals = Totals(Usage(input_tokens=5, cache_read_tokens=15), Decimal("0.25"), 1, 3)
    assert list(totals.to_dict(JSON_FIELDS)) == list(JSON_FIELDS)
    assert totals.to_dict() == totals.to_dict(RUN_FIELDS)
    assert list(totals.to_dict()) == [*Usage().to_dict(), "cost_usd", "unpriced_calls", "calls"]
    plan = totals.to_dict(PLAN_FIELDS)
    assert plan["cache_hit_rate"] == 0.75
    assert plan["cost_usd"] == 0.25
    assert "calls" not in plan
    assert Totals().to_dict(JSON_FIELDS)["cost_usd"] is None
    with pytest.raises(AttributeError, match="cost"):
        totals.to_dict(["cost"])
