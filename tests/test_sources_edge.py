"""Edge cases of the parsers: the traps of usage-formats.md §11 and damaged input."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from llmledger.errors import ParseError
from llmledger.sources import (
    dedupe_calls,
    detect,
    iter_transcript,
    parse,
    parse_file,
    transcript_call,
)


def _lines(*objs: Any) -> bytes:
    return b"\n".join(orjson.dumps(o) for o in objs) + b"\n"


def test_anthropic_cache_creation_zero_with_split_takes_max() -> None:
    msg = {
        "type": "message",
        "role": "assistant",
        "id": "msg_1",
        "model": "claude-sonnet-4-5",
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 5,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 20},
            "output_tokens": 7,
        },
    }
    usage = parse(msg).usage
    assert (usage.cache_write_tokens, usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (
        120,
        100,
        20,
    )
    assert usage.total_tokens == 10 + 5 + 120 + 7


def test_anthropic_without_cache_fields_leaves_them_none() -> None:
    msg = {"type": "message", "role": "assistant", "usage": {"input_tokens": 3, "output_tokens": 4}}
    usage = parse(msg, format="anthropic_messages").usage
    assert usage.cache_read_tokens is None
    assert usage.cache_write_tokens is None
    assert usage.reasoning_tokens is None


def test_anthropic_stream_overwrites_instead_of_adding() -> None:
    events = [
        {
            "type": "message_start",
            "message": {
                "id": "m",
                "model": "c",
                "usage": {"input_tokens": 50, "cache_read_input_tokens": 10, "output_tokens": 1},
            },
        },
        {"type": "message_delta", "usage": {"output_tokens": 30}},
        {"type": "message_delta", "usage": {"output_tokens": 40, "input_tokens": 50}},
        {"type": "message_stop"},
    ]
    usage = parse(_lines(*events)).usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (50, 10, 40)


def test_gemini_tool_use_prompt_tokens_are_input_and_thoughts_are_output() -> None:
    payload = {
        "candidates": [],
        "usageMetadata": {
            "promptTokenCount": 100,
            "cachedContentTokenCount": 40,
            "toolUsePromptTokenCount": 25,
            "candidatesTokenCount": 10,
            "thoughtsTokenCount": 5,
            "totalTokenCount": 140,
        },
    }
    parsed = parse(payload)
    assert parsed.format == "gemini_generate_content"
    usage = parsed.usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (85, 40, 15)
    assert usage.reasoning_tokens == 5
    assert usage.total_tokens == 140
    assert usage.cache_write_tokens is None


def test_gemini_stream_takes_the_last_chunk() -> None:
    chunks = [
        {"responseId": "r", "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 2}},
        {"responseId": "r", "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 9}},
    ]
    parsed = parse(_lines(*chunks))
    assert parsed.format == "gemini_generate_content_stream"
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens) == (10, 9)


def test_openai_prompt_tokens_below_cached_names_the_field() -> None:
    payload = {
        "object": "chat.completion",
        "model": "gpt-4o",
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 200},
        },
    }
    with pytest.raises(ParseError) as info:
        parse(payload)
    assert info.value.field == "prompt_tokens"
    assert "prompt_tokens" in str(info.value)


def test_openai_chat_stream_without_usage_chunk_is_unknown_not_zero() -> None:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [{}]}
    parsed = parse(_lines(chunk, chunk, chunk))
    assert len(parsed.calls) == 1
    assert parsed.usage.is_empty
    assert parsed.warnings


def test_openai_responses_stream_completed_event() -> None:
    events = [
        {"type": "response.created", "response": {"id": "r1"}},
        {"type": "response.output_text.delta", "delta": "hi"},
        {
            "type": "response.completed",
            "response": {
                "id": "r1",
                "model": "gpt-5",
                "usage": {
                    "input_tokens": 100,
                    "input_tokens_details": {"cached_tokens": 60},
                    "output_tokens": 20,
                    "output_tokens_details": {"reasoning_tokens": 5},
                    "total_tokens": 120,
                },
            },
        },
    ]
    parsed = parse(_lines(*events))
    assert parsed.format == "openai_responses_stream"
    assert parsed.usage.to_dict()["input_tokens"] == 40
    assert parsed.usage.cache_write_tokens is None


def test_langchain_tier_prefixed_keys_and_bare_tier_keys() -> None:
    payload = {
        "gpt-5": {
            "input_tokens": 1000,
            "output_tokens": 300,
            "total_tokens": 1300,
            "input_token_details": {"flex_cache_read": 400, "flex": 600},
            "output_token_details": {"flex_reasoning": 100, "flex": 200},
        }
    }
    usage = parse(payload, format="langchain").usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.reasoning_tokens) == (600, 400, 100)
    assert usage.output_tokens == 300


def test_bedrock_stream_metadata_event() -> None:
    events = [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "hi"}, "contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "end_turn"}},
        {
            "metadata": {
                "usage": {"inputTokens": 5, "outputTokens": 6, "totalTokens": 11},
                "metrics": {"latencyMs": 321},
            }
        },
    ]
    parsed = parse(_lines(*events))
    assert parsed.format == "bedrock_converse_stream"
    assert parsed.calls[0].duration_ms == 321
    assert parsed.calls[0].provider == "aws-bedrock"


def test_otel_exclusive_producer_heuristic() -> None:
    span = {
        "attributes": {
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.cache_read.input_tokens": 500,
            "gen_ai.usage.output_tokens": 7,
        }
    }
    usage = parse(span).usage
    assert (usage.input_tokens, usage.cache_read_tokens) == (10, 500)


def test_otel_otlp_json_export() -> None:
    export = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "t",
                                "spanId": "s",
                                "startTimeUnixNano": "1762474801000000000",
                                "endTimeUnixNano": "1762474803500000000",
                                "attributes": [
                                    {
                                        "key": "gen_ai.response.model",
                                        "value": {"stringValue": "gpt-5"},
                                    },
                                    {
                                        "key": "gen_ai.usage.input_tokens",
                                        "value": {"intValue": "100"},
                                    },
                                    {
                                        "key": "gen_ai.usage.output_tokens",
                                        "value": {"intValue": "20"},
                                    },
                                ],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    parsed = parse(export)
    assert parsed.format == "otel_genai_span"
    call = parsed.calls[0]
    assert (call.model, call.provider, call.duration_ms) == ("gpt-5", "openai", 2500)
    assert call.usage.input_tokens == 100
    assert call.usage.cache_read_tokens is None


def test_codex_skips_null_info_and_unchanged_totals() -> None:
    def tc(inp: int, cached: int, out: int) -> dict[str, Any]:
        total = {
            "input_tokens": inp,
            "cached_input_tokens": cached,
            "output_tokens": out,
            "reasoning_output_tokens": 0,
            "total_tokens": inp + out,
        }
        return {
            "timestamp": "2025-11-06T18:02:17Z",
            "type": "event_msg",
            "payload": {"type": "token_count", "info": {"total_token_usage": total}},
        }

    lines = [
        {"timestamp": "2025-11-06T18:02:11Z", "type": "session_meta", "payload": {"id": "s"}},
        {
            "timestamp": "2025-11-06T18:02:12Z",
            "type": "event_msg",
            "payload": {"type": "token_count", "info": None},
        },
        tc(100, 0, 10),
        tc(100, 0, 10),
        tc(250, 90, 30),
    ]
    parsed = parse(_lines(*lines))
    assert len(parsed.calls) == 2
    assert parsed.usage.input_tokens == 250 - 90
    assert parsed.usage.output_tokens == 30


def test_codex_child_rollout_drops_replayed_parent_counts() -> None:
    def tc(ts: str, inp: int) -> dict[str, Any]:
        total = {"input_tokens": inp, "cached_input_tokens": 0, "output_tokens": 1}
        return {
            "timestamp": ts,
            "type": "event_msg",
            "payload": {"type": "token_count", "info": {"total_token_usage": total}},
        }

    meta = {"id": "child", "timestamp": "2025-11-06T18:00:00Z", "forked_from_id": "parent"}
    lines = [
        {"timestamp": "2025-11-06T18:00:00Z", "type": "session_meta", "payload": meta},
        tc("2025-11-06T17:00:00Z", 1000),
        tc("2025-11-06T17:30:00Z", 3000),
        tc("2025-11-06T18:01:00Z", 3500),
    ]
    parsed = parse(_lines(*lines))
    assert len(parsed.calls) == 1
    assert parsed.usage.input_tokens == 500
    assert any("replayed" in w for w in parsed.warnings)


def test_codex_exec_turn_completed() -> None:
    events = [
        {"type": "thread.started", "thread_id": "th"},
        {"type": "turn.started"},
        {
            "type": "turn.completed",
            "usage": {"input_tokens": 50, "cached_input_tokens": 20, "output_tokens": 5},
        },
    ]
    parsed = parse(_lines(*events))
    assert parsed.format == "codex_exec_json"
    assert parsed.calls[0].dedupe_key == "th:turn1"
    assert (parsed.usage.input_tokens, parsed.usage.cache_read_tokens) == (30, 20)


def test_gemini_cli_stream_result() -> None:
    events = [
        {"type": "init", "session_id": "s", "model": "gemini-2.5-pro"},
        {"type": "message", "role": "assistant", "content": "ok", "delta": True},
        {
            "type": "result",
            "status": "success",
            "stats": {
                "total_tokens": 200,
                "input_tokens": 150,
                "output_tokens": 30,
                "cached": 50,
                "input": 100,
                "duration_ms": 900,
                "tool_calls": 0,
            },
        },
    ]
    parsed = parse(_lines(*events))
    assert parsed.format == "gemini_cli_stream_json"
    usage = parsed.usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (100, 50, 50)
    assert parsed.summary is not None
    assert parsed.summary.duration_ms == 900


def test_pretty_printed_jsonl_parses(fixtures_dir: Path) -> None:
    raw = (fixtures_dir / "claude-code/claude-stream-json.jsonl").read_bytes()
    pretty = b"\n".join(
        json.dumps(json.loads(line), indent=2).encode() for line in raw.splitlines()
    )
    assert detect(pretty) == "claude_code_stream_json"
    assert parse(pretty).usage == parse(raw).usage
    calls = list(iter_transcript(pretty))
    assert len(calls) == 7  # every per-block line, before dedupe


def test_stream_truncated_mid_line_at_end_keeps_calls(fixtures_dir: Path) -> None:
    raw = (fixtures_dir / "claude-code/claude-stream-json.jsonl").read_bytes()
    lines = raw.splitlines()
    cut = b"\n".join(lines[:-1]) + b"\n" + lines[-1][: len(lines[-1]) // 2]
    parsed = parse(cut, format="claude_code_stream_json")
    assert parsed.summary is None  # the result line was cut off: no summary
    assert len(parsed.calls) == 3
    assert parsed.usage.output_tokens == 683
    assert len(parsed.warnings) == 1
    assert "truncated" in parsed.warnings[0]


def test_stream_killed_before_result_keeps_its_calls(fixtures_dir: Path) -> None:
    raw = (fixtures_dir / "claude-code/claude-stream-json.jsonl").read_bytes()
    head = b"\n".join(raw.splitlines()[:6])
    parsed = parse(head)
    assert parsed.format == "claude_code_stream_json"
    assert len(parsed.calls) == 2
    assert parsed.summary is None


def test_malformed_line_in_the_middle_names_the_line(fixtures_dir: Path) -> None:
    path = (
        fixtures_dir
        / "claude-home/projects/-home-dev-alpha/11111111-aaaa-4aaa-8aaa-111111111111.jsonl"
    )
    # The bad line is skipped and named; the rest is read (issue 13, item 14).
    parsed = parse_file(path, format="claude_code_transcript")
    assert [s.line for s in parsed.skipped] == [5]
    assert len(parsed.calls) == 3
    warnings: list[str] = []
    calls = list(iter_transcript(path.read_bytes(), strict=False, warnings=warnings))
    assert len(dedupe_calls(calls)) == 3
    assert len(warnings) == 1


def test_stream_json_remainder_for_subagent_usage() -> None:
    usage = {
        "input_tokens": 10,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "output_tokens": 5,
    }
    assistant = {
        "type": "assistant",
        "session_id": "s",
        "message": {"id": "m1", "model": "claude-sonnet-4-5", "usage": usage},
    }
    result = {
        "type": "result",
        "session_id": "s",
        "uuid": "u",
        "total_cost_usd": 0.5,
        "modelUsage": {
            "claude-sonnet-4-5": {
                "inputTokens": 10,
                "outputTokens": 5,
                "cacheReadInputTokens": 0,
                "cacheCreationInputTokens": 0,
                "costUSD": 0.4,
            },
            "claude-haiku-4-5": {
                "inputTokens": 100,
                "outputTokens": 8,
                "cacheReadInputTokens": 0,
                "cacheCreationInputTokens": 0,
                "costUSD": 0.1,
            },
        },
    }
    parsed = parse(_lines({"type": "system", "subtype": "init"}, assistant, assistant, result))
    assert len(parsed.calls) == 2
    extra = parsed.calls[1]
    assert extra.model == "claude-haiku-4-5"
    assert extra.metadata == {"remainder": True}
    assert parsed.usage.input_tokens == 110
    assert parsed.usage.output_tokens == 13
    assert parsed.summary is not None
    assert parsed.summary.total_cost_usd == Decimal("0.5")


def test_verbose_json_array_takes_the_result(fixtures_dir: Path) -> None:
    raw = (fixtures_dir / "claude-code/claude-stream-json.jsonl").read_bytes()
    array = [json.loads(line) for line in raw.splitlines()]
    assert detect(json.dumps(array)) == "claude_code_result"
    parsed = parse(array)
    assert parsed.format == "claude_code_result"
    assert parsed.usage.output_tokens == 683
    assert len(parsed.calls) == 1


def _transcript_line(**over: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "type": "assistant",
        "sessionId": "s",
        "timestamp": "2025-06-10T09:00:05.000Z",
        "requestId": "req_1",
        "message": {
            "id": "msg_1",
            "model": "claude-sonnet-4",
            "usage": {
                "input_tokens": 10,
                "output_tokens": 1,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0,
            },
        },
    }
    line.update(over)
    return line


def test_transcript_dedupe_keeps_largest_copy() -> None:
    small = transcript_call(_transcript_line())
    big_line = _transcript_line()
    big_line["message"] = {
        **big_line["message"],
        "usage": {"input_tokens": 10, "output_tokens": 90},
    }
    big = transcript_call(big_line)
    assert small is not None
    assert big is not None
    assert dedupe_calls([small, big]) == [big]
    assert dedupe_calls([big, small]) == [big]


def test_transcript_sidechain_replay_yields_to_parent() -> None:
    parent = transcript_call(_transcript_line())
    replay = transcript_call(_transcript_line(requestId="req_2", isSidechain=True))
    other = transcript_call(_transcript_line(requestId="req_3"))
    assert parent is not None
    assert replay is not None
    assert other is not None
    assert replay.metadata == {"is_sidechain": True}
    assert dedupe_calls([replay, parent]) == [parent]
    assert dedupe_calls([parent, replay]) == [parent]
    assert dedupe_calls([parent, other]) == [parent, other]  # no sidechain: both count


def test_transcript_line_without_usage_or_ids() -> None:
    assert transcript_call({"type": "user", "message": {"role": "user", "content": "hi"}}) is None
    line = _transcript_line(requestId=None, costUSD=0.0123)
    line["message"] = {"usage": {"input_tokens": 1, "output_tokens": 1}}
    call = transcript_call(line)
    assert call is not None
    assert call.dedupe_key is None
    assert call.reported_cost_usd == Decimal("0.0123")
    only_id = transcript_call(_transcript_line(requestId=None))
    assert only_id is not None
    assert only_id.dedupe_key == "msg_1"


def test_unknown_payload_and_unknown_format() -> None:
    with pytest.raises(ParseError):
        detect({"hello": "world"})
    with pytest.raises(ParseError, match="unknown format"):
        parse({}, format="nope")
