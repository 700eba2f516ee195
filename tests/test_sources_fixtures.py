"""Every fixture of tests/fixtures/expected.json: parsed, detected, compared field by field."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES
from llmledger.sources import FORMATS, Parsed, detect, parse, parse_file
from llmledger.usage import BUCKETS


def _expected() -> dict[str, dict[str, Any]]:
    data = json.loads((FIXTURES / "expected.json").read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


EXPECTED = _expected()
CANONICAL = (*BUCKETS, "total_tokens")


@pytest.fixture(params=sorted(EXPECTED), ids=str)
def case(request: pytest.FixtureRequest, fixtures_dir: Path) -> tuple[dict[str, Any], Parsed]:
    exp = EXPECTED[request.param]
    return exp, parse_file(fixtures_dir / exp["path"])


def test_canonical_fields_match(case: tuple[dict[str, Any], Parsed]) -> None:
    exp, parsed = case
    got = parsed.usage.to_dict()
    assert {k: got[k] for k in CANONICAL} == {k: exp[k] for k in CANONICAL}
    assert parsed.format == exp["source"]
    assert parsed.warnings == []


@pytest.mark.parametrize("name", sorted(k for k, v in EXPECTED.items() if "naive" in v))
def test_naive_totals_are_not_produced(name: str, fixtures_dir: Path) -> None:
    exp = EXPECTED[name]
    naive = exp["naive"]
    got = parse_file(fixtures_dir / exp["path"]).usage.to_dict()
    shared = [k for k in naive if k in got]
    assert shared
    assert [got[k] for k in shared] != [naive[k] for k in shared]
    assert got["output_tokens"] != naive["output_tokens"]


def test_cost_durations_and_turns(case: tuple[dict[str, Any], Parsed]) -> None:
    exp, parsed = case
    summary = parsed.summary
    if exp["cost_usd"] is None:
        assert all(c.reported_cost_usd is None for c in parsed.calls)
        assert summary is None or summary.total_cost_usd is None
    else:
        assert summary is not None
        assert summary.total_cost_usd == Decimal(str(exp["cost_usd"]))
        assert sum(summary.reported_cost_by_model.values()) == summary.total_cost_usd
    for key in ("duration_api_ms", "num_turns", "is_error", "subtype"):
        if key in exp:
            assert summary is not None
            assert getattr(summary, key) == exp[key], key
    if "duration_ms" in exp:
        if summary is not None:
            assert summary.duration_ms == exp["duration_ms"]
        else:
            assert [c.duration_ms for c in parsed.calls] == [exp["duration_ms"]]
    if "api_latency_ms_total" in exp:
        assert summary is not None
        assert summary.duration_api_ms == exp["api_latency_ms_total"]
    if "api_calls" in exp:
        assert len(parsed.calls) == exp["api_calls"]


def test_detect_identifies_every_fixture(fixtures_dir: Path) -> None:
    for exp in EXPECTED.values():
        data = (fixtures_dir / exp["path"]).read_bytes()
        assert detect(data) == exp["source"], exp["path"]
        assert exp["source"] in FORMATS


def test_decoded_objects_parse_like_bytes(fixtures_dir: Path) -> None:
    for exp in EXPECTED.values():
        if exp["path"].endswith(".json"):
            raw = (fixtures_dir / exp["path"]).read_bytes()
            assert parse(json.loads(raw)).usage == parse(raw).usage


def test_claude_result_calls_carry_per_model_cost(fixtures_dir: Path) -> None:
    parsed = parse_file(fixtures_dir / "claude-code/claude-json-success.json")
    by_model = {c.model: c for c in parsed.calls}
    sonnet = by_model["claude-sonnet-4-5-20250929"]
    assert sonnet.reported_cost_usd == Decimal("0.0768813")
    assert by_model["claude-haiku-4-5-20251001"].reported_cost_usd == Decimal("0.0014")
    assert sonnet.dedupe_key == (
        "3f6c2a9e-8d41-4b7a-9c0e-5a1d7e2b4f60:claude-sonnet-4-5-20250929:"
        "b7e2d0c4-1f3a-4e8b-a6d9-0c5f2e7a9b13"
    )
    assert sonnet.usage.reasoning_tokens == 120
    main = EXPECTED["claude-json-success.json"]["main_loop_usage_only"]
    assert parsed.summary is not None
    assert parsed.summary.usage is not None
    assert {k: getattr(parsed.summary.usage, k) for k in main} == main


def test_claude_error_result_marks_calls_as_errors(fixtures_dir: Path) -> None:
    parsed = parse_file(fixtures_dir / "claude-code/claude-json-error-max-turns.json")
    assert [c.status for c in parsed.calls] == ["error"]


def test_stream_json_keys_and_models(fixtures_dir: Path) -> None:
    parsed = parse_file(fixtures_dir / "claude-code/claude-stream-json.jsonl")
    assert [c.dedupe_key for c in parsed.calls] == [
        "msg_01QzR8vK3mWx7NpT2yHc5LdF:req_011CTa8kX2yZ9wVb3nQ4mR7s",
        "msg_01Vn4Hs9Tq2Lw6Xe8Rb3Kp7J:req_011CTa8m4Pq7Rs1Tu5Vw8Xy2",
        "msg_01Kc7Yp2Dm5Fg8Jh1Nt4Wr6Q:req_011CTa8pW3xY6zA9bC2dE5fG",
    ]
    assert {c.model for c in parsed.calls} == {"claude-sonnet-4-5-20250929"}
    assert parsed.summary is not None
    assert parsed.summary.reported_cost_by_model == {
        "claude-sonnet-4-5-20250929": Decimal("0.07920015")
    }


def test_transcript_call_fields(fixtures_dir: Path) -> None:
    parsed = parse_file(fixtures_dir / "claude-code/claude-transcript.jsonl")
    first = parsed.calls[0]
    assert first.dedupe_key == "msg_015oRrxAaM8CuSF2MFET9J3i:req_011CYe1Lm5Np8Qr2St4Uv6Wx"
    assert first.session_id == "2ff1a7c3-9d4e-4b8a-b6c2-7e1f0a3d5c98"
    assert first.project == "/home/dev/pager"
    assert first.started_at is not None
    assert first.started_at.utcoffset() is not None
    assert first.started_at.isoformat() == "2026-03-01T22:38:51.902000+00:00"


def test_codex_rollout_calls_are_turn_deltas(fixtures_dir: Path) -> None:
    parsed = parse_file(fixtures_dir / "codex/codex-rollout.jsonl")
    assert [c.usage.input_tokens for c in parsed.calls] == [8421, 9004 - 8320, 9618 - 8960]
    assert {c.model for c in parsed.calls} == {"gpt-5-codex"}
    assert len({c.dedupe_key for c in parsed.calls}) == 3


def test_langchain_per_model(fixtures_dir: Path) -> None:
    parsed = parse_file(fixtures_dir / "langchain/langchain-usage-metadata.json")
    per_model = EXPECTED["langchain-usage-metadata.json"]["per_model"]
    assert {c.model: c.usage.to_dict() for c in parsed.calls} == per_model
