"""Estimate a prompt's tokens and cost before running it, offline.

Tokens are counted with a characters-per-token heuristic per model family, not a tokenizer:
real tokenizers need their vocabulary files (tiktoken downloads them on first use), and
Anthropic's counter is a network API. The heuristic is documented with its error, and the
estimate is a low / expected / high range rather than one number. Everything it produces
carries token provenance ``estimated``.

Families (ASCII characters per token; every non-ASCII character counts as one token):

============  ======  =========  ================================================================
family        chars   error      basis
============  ======  =========  ================================================================
anthropic     3.5     ±30%       Anthropic's rule of thumb; newer Claude tokenizers produce up to
                                 ~35% more tokens for the same text
openai        4.0     ±25%       OpenAI: "1 token ≈ 4 characters of English text"
google        4.0     ±25%       Google: "a token is about 4 characters" for Gemini
other         4.0     ±40%       unknown tokenizer
============  ======  =========  ================================================================

The error is for English prose; code, JSON and numbers tokenize denser (fewer characters per
token), so expect the high end there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from functools import cache
from typing import Literal

from llmledger.pricing import CostStatus, Pricer
from llmledger.usage import Usage

__all__ = ["Estimate", "count_tokens", "estimate_cost", "should_warn_cost"]

#: Default expected reply length when the caller gives none: the seed this comes from assumed
#: output ≈ input, capped here because replies rarely run past a few thousand tokens.
DEFAULT_OUTPUT_CAP = 4_096
#: Default upper bound of the reply when no max_output_tokens is given.
DEFAULT_OUTPUT_HIGH_CAP = 16_384


@dataclass(frozen=True, slots=True)
class _Family:
    name: str
    chars_per_token: Fraction
    error: Fraction


_ANTHROPIC = _Family("anthropic", Fraction(7, 2), Fraction(3, 10))
_OPENAI = _Family("openai", Fraction(4), Fraction(1, 4))
_GOOGLE = _Family("google", Fraction(4), Fraction(1, 4))
_OTHER = _Family("other", Fraction(4), Fraction(2, 5))


def _family(model: str) -> _Family:
    name = model.lower()
    if "claude" in name or "anthropic" in name:
        return _ANTHROPIC
    if "gemini" in name or "gemma" in name:
        return _GOOGLE
    base = name.rsplit("/", 1)[-1]
    if base.startswith(("gpt-", "o1", "o3", "o4", "chatgpt", "codex")) or "openai" in name:
        return _OPENAI
    return _OTHER


def _exact_tokens(text: str, family: _Family) -> Fraction:
    if text.isascii():
        ascii_chars, other = len(text), 0
    else:
        other = sum(1 for ch in text if ord(ch) > 0x7F)
        ascii_chars = len(text) - other
    return ascii_chars / family.chars_per_token + other


def count_tokens(text: str, model: str) -> int:
    """Estimated token count of ``text`` for ``model``'s family (see the module docstring).

    ASCII characters / chars-per-token of the family, plus one token per non-ASCII character,
    rounded up. Offline and deterministic; typically within the family's stated error.
    """
    return math.ceil(_exact_tokens(text, _family(model)))


@dataclass(frozen=True, slots=True)
class Estimate:
    """A pre-run estimate: token and cost ranges for one prompt on one model.

    The ``cost_*`` fields are None when the model has no known price (``cost_status``
    ``unpriced``); they are never a made-up zero. The prompt is priced as uncached input.
    """

    model: str
    input_tokens_low: int
    input_tokens: int
    input_tokens_high: int
    output_tokens_low: int
    output_tokens: int
    output_tokens_high: int
    cost_low_usd: Decimal | None
    cost_usd: Decimal | None
    cost_high_usd: Decimal | None
    cost_status: CostStatus
    price_version: str | None
    method: str
    token_provenance: Literal["estimated"] = "estimated"

    @property
    def usage(self) -> Usage:
        """The expected token usage (provenance: estimated)."""
        return Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens)


@cache
def _default_pricer() -> Pricer:
    return Pricer()


def estimate_cost(
    prompt: str,
    model: str,
    *,
    expected_output_tokens: int | None = None,
    max_output_tokens: int | None = None,
    provider: str | None = None,
    pricer: Pricer | None = None,
    at: datetime | None = None,
) -> Estimate:
    """Estimate what sending ``prompt`` to ``model`` will cost, as a low/expected/high range.

    Input tokens: :func:`count_tokens`, ± the family's error. Output tokens:
    ``expected_output_tokens`` if given (then low = expected); otherwise expected =
    min(input, 4,096) and low = 0. High output = ``max_output_tokens`` if given, else the
    expected output if given, else min(high input, 16,384). Prices come from ``pricer``
    (default: a shared :class:`~llmledger.pricing.Pricer`) as of ``at`` (default: now).
    """
    if expected_output_tokens is not None and expected_output_tokens < 0:
        raise ValueError(f"expected_output_tokens must be >= 0, got {expected_output_tokens}")
    if max_output_tokens is not None and max_output_tokens < 0:
        raise ValueError(f"max_output_tokens must be >= 0, got {max_output_tokens}")
    family = _family(model)
    exact = _exact_tokens(prompt, family)
    tokens = math.ceil(exact)
    low = math.ceil(exact * (1 - family.error))
    high = math.ceil(exact * (1 + family.error))
    if expected_output_tokens is not None:
        out = out_low = expected_output_tokens
        out_high = expected_output_tokens if max_output_tokens is None else max_output_tokens
    else:
        out = min(tokens, DEFAULT_OUTPUT_CAP)
        out_low = 0
        out_high = (
            min(high, DEFAULT_OUTPUT_HIGH_CAP) if max_output_tokens is None else max_output_tokens
        )
    out_high = max(out_high, out)

    pricer = pricer or _default_pricer()
    prices = [
        pricer.price_usage(Usage(input_tokens=i, output_tokens=o), model, provider, at)
        for i, o in ((low, out_low), (tokens, out), (high, out_high))
    ]
    chars = float(family.chars_per_token)
    method = (
        f"{family.name} heuristic: {chars:g} ASCII chars/token, 1 token per non-ASCII char, "
        f"±{float(family.error):.0%}"
    )
    return Estimate(
        model=model,
        input_tokens_low=low,
        input_tokens=tokens,
        input_tokens_high=high,
        output_tokens_low=out_low,
        output_tokens=out,
        output_tokens_high=out_high,
        cost_low_usd=prices[0].cost_usd,
        cost_usd=prices[1].cost_usd,
        cost_high_usd=prices[2].cost_usd,
        cost_status=prices[1].cost_status,
        price_version=prices[1].price_version,
        method=method,
    )


def should_warn_cost(
    estimate: Estimate,
    threshold_usd: Decimal | float | str | None = None,
    *,
    threshold_tokens: int | None = None,
) -> bool:
    """True when the estimate's upper bound exceeds a threshold, or its price is unknown.

    ``threshold_usd`` is compared with ``cost_high_usd`` (an unpriced estimate always warns:
    its spend cannot be bounded); ``threshold_tokens`` with ``input_tokens_high``. Give at
    least one; with both, either one exceeded warns.
    """
    if threshold_usd is None and threshold_tokens is None:
        raise ValueError("give threshold_usd, threshold_tokens, or both")
    if threshold_tokens is not None and estimate.input_tokens_high > threshold_tokens:
        return True
    if threshold_usd is not None:
        limit = threshold_usd if isinstance(threshold_usd, Decimal) else Decimal(str(threshold_usd))
        if estimate.cost_high_usd is None or estimate.cost_high_usd > limit:
            return True
    return False
