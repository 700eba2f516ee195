"""Property tests: valid payloads never give negative buckets; damaged ones raise ParseError."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmledger.errors import ParseError
from llmledger.sources import FORMATS, detect, parse
from llmledger.usage import Usage

# Each bucket of a call is at most usage.MAX_TOKENS (10**9): the few counts a source adds into
# one bucket stay below it.
N = st.integers(min_value=0, max_value=10**8)
Payload = Callable[[st.DrawFn], Any]


@st.composite
def anthropic_message(draw: st.DrawFn) -> Any:
    five, one = draw(N), draw(N)
    usage = {
        "input_tokens": draw(N),
        "cache_read_input_tokens": draw(N),
        "cache_creation_input_tokens": draw(st.sampled_from([0, five + one, draw(N)])),
        "cache_creation": {"ephemeral_5m_input_tokens": five, "ephemeral_1h_input_tokens": one},
        "output_tokens": draw(N),
    }
    return {"type": "message", "role": "assistant", "id": "m", "model": "c", "usage": usage}


@st.composite
def openai_chat(draw: st.DrawFn) -> Any:
    cached, written, uncached = draw(N), draw(N), draw(N)
    reasoning, visible = draw(N), draw(N)
    return {
        "object": "chat.completion",
        "model": "gpt",
        "usage": {
            "prompt_tokens": cached + written + uncached,
            "completion_tokens": reasoning + visible,
            "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        },
    }


@st.composite
def openai_responses(draw: st.DrawFn) -> Any:
    cached, uncached, reasoning, visible = draw(N), draw(N), draw(N), draw(N)
    return {
        "object": "response",
        "id": "r",
        "usage": {
            "input_tokens": cached + uncached,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": reasoning + visible,
            "output_tokens_details": {"reasoning_tokens": reasoning},
        },
    }


@st.composite
def gemini(draw: st.DrawFn) -> Any:
    cached, uncached = draw(N), draw(N)
    return {
        "responseId": "r",
        "usageMetadata": {
            "promptTokenCount": cached + uncached,
            "cachedContentTokenCount": cached,
            "candidatesTokenCount": draw(N),
            "thoughtsTokenCount": draw(N),
            "toolUsePromptTokenCount": draw(N),
        },
    }


@st.composite
def bedrock(draw: st.DrawFn) -> Any:
    five, one = draw(N), draw(N)
    return {
        "usage": {
            "inputTokens": draw(N),
            "outputTokens": draw(N),
            "cacheReadInputTokens": draw(N),
            "cacheWriteInputTokens": five + one,
            "cacheDetails": [{"ttl": "1h", "inputTokens": one}, {"ttl": "5m", "inputTokens": five}],
        },
        "metrics": {"latencyMs": draw(N)},
    }


@st.composite
def langchain(draw: st.DrawFn) -> Any:
    read, create, uncached, reasoning, visible = (draw(N) for _ in range(5))
    tier = draw(st.sampled_from(["", "priority_", "flex_"]))
    return {
        "some-model": {
            "input_tokens": read + create + uncached,
            "output_tokens": reasoning + visible,
            "input_token_details": {f"{tier}cache_read": read, f"{tier}cache_creation": create},
            "output_token_details": {f"{tier}reasoning": reasoning},
        }
    }


@st.composite
def otel(draw: st.DrawFn) -> Any:
    read, create, uncached = draw(N), draw(N), draw(N)
    return {
        "attributes": {
            "gen_ai.usage.input_tokens": read + create + uncached,
            "gen_ai.usage.cache_read.input_tokens": read,
            "gen_ai.usage.cache_creation.input_tokens": create,
            "gen_ai.usage.output_tokens": draw(N),
        }
    }


@st.composite
def claude_result(draw: st.DrawFn) -> Any:
    models = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, unique=True))
    return {
        "type": "result",
        "session_id": "s",
        "is_error": draw(st.booleans()),
        "modelUsage": {
            m: {
                "inputTokens": draw(N),
                "outputTokens": draw(N),
                "cacheReadInputTokens": draw(N),
                "cacheCreationInputTokens": draw(N),
                "costUSD": draw(st.floats(min_value=0, max_value=100)),
            }
            for m in models
        },
    }


@st.composite
def claude_stream(draw: st.DrawFn) -> Any:
    lines: list[Any] = [{"type": "system", "subtype": "init"}]
    for i in range(draw(st.integers(1, 4))):
        usage = {
            "input_tokens": draw(N),
            "output_tokens": draw(N),
            "cache_read_input_tokens": draw(N),
            "cache_creation_input_tokens": draw(N),
        }
        msg = {"id": f"m{i}", "model": "c", "usage": usage}
        lines += [{"type": "assistant", "session_id": "s", "message": msg}] * draw(
            st.integers(1, 3)
        )
    return lines


@st.composite
def codex_rollout(draw: st.DrawFn) -> Any:
    lines: list[Any] = [
        {"timestamp": "2025-01-01T00:00:00Z", "type": "session_meta", "payload": {"id": "s"}}
    ]
    inp = cached = out = 0
    for _ in range(draw(st.integers(1, 5))):
        step_cached, step_uncached = draw(N), draw(N)
        inp, cached, out = inp + step_cached + step_uncached, cached + step_cached, out + draw(N)
        total = {"input_tokens": inp, "cached_input_tokens": cached, "output_tokens": out}
        lines.append(
            {
                "timestamp": "2025-01-01T00:00:01Z",
                "type": "event_msg",
                "payload": {"type": "token_count", "info": {"total_token_usage": total}},
            }
        )
    return lines


@st.composite
def gemini_cli(draw: st.DrawFn) -> Any:
    cached, uncached = draw(N), draw(N)
    tokens = {
        "prompt": cached + uncached,
        "cached": cached,
        "candidates": draw(N),
        "thoughts": draw(N),
        "tool": draw(N),
    }
    return {"session_id": "s", "stats": {"models": {"gemini": {"tokens": tokens}}}}


GENERATORS: dict[str, Any] = {
    "anthropic_messages": anthropic_message(),
    "openai_chat_completions": openai_chat(),
    "openai_responses": openai_responses(),
    "gemini_generate_content": gemini(),
    "bedrock_converse": bedrock(),
    "langchain_usage_metadata_callback": langchain(),
    "otel_genai_span": otel(),
    "claude_code_result": claude_result(),
    "claude_code_stream_json": claude_stream(),
    "codex_rollout": codex_rollout(),
    "gemini_cli_json": gemini_cli(),
}


def _check(usage: Usage) -> None:
    for name, value in usage.to_dict().items():
        assert value is None or value >= 0, name
    parts = [
        usage.input_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.output_tokens,
    ]
    assert usage.total_tokens == sum(p or 0 for p in parts)


@pytest.mark.parametrize("fmt", sorted(GENERATORS))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_valid_payloads_give_sound_usage(fmt: str, data: st.DataObject) -> None:
    payload = data.draw(GENERATORS[fmt])
    encoded = (
        b"\n".join(orjson.dumps(x) for x in payload)
        if fmt in ("claude_code_stream_json", "codex_rollout")
        else orjson.dumps(payload)
    )
    assert detect(encoded) == fmt
    parsed = parse(encoded)
    assert parsed.format == fmt
    assert parsed.calls
    for call in parsed.calls:
        _check(call.usage)
    _check(parsed.usage)


def test_every_format_has_a_generator_or_a_fixture() -> None:
    assert set(GENERATORS) <= set(FORMATS)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300), fmt=st.sampled_from([None, *FORMATS]))
def test_random_bytes_raise_parse_error_only(raw: bytes, fmt: str | None) -> None:
    with contextlib.suppress(ParseError):
        parse(raw, format=fmt)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES, fmt=st.sampled_from(FORMATS))
def test_arbitrary_json_with_any_format_raises_parse_error_only(value: Any, fmt: str) -> None:
    with contextlib.suppress(ParseError):
        parse(value, format=fmt)


@pytest.mark.parametrize("fmt", sorted(GENERATORS))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_truncated_json_raises_parse_error(fmt: str, data: st.DataObject) -> None:
    payload = data.draw(GENERATORS[fmt])
    if isinstance(payload, list):
        payload = payload[-1]
    encoded = orjson.dumps(payload, option=orjson.OPT_INDENT_2)
    cut = data.draw(st.integers(1, len(encoded) - 1))
    with pytest.raises(ParseError):
        parse(encoded[:cut], format=data.draw(st.sampled_from([None, fmt])))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), fmt=st.sampled_from(sorted(GENERATORS)))
def test_mutated_counts_raise_parse_error_only(data: st.DataObject, fmt: str) -> None:
    text = orjson.dumps(data.draw(GENERATORS[fmt])).decode()
    bad = data.draw(st.sampled_from(["-1", '"12"', "true", "1.5", "null", "[]", "{}"]))
    mutated = re.sub(
        r'(":)\d+', lambda m: m.group(1) + bad, text, count=data.draw(st.integers(1, 3))
    )
    with contextlib.suppress(ParseError):
        parse(mutated, format=fmt)
