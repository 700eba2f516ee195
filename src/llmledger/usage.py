"""The canonical usage record: non-overlapping token buckets (DESIGN.md §2).

``None`` means "the source did not report it" and ``0`` means "reported as zero". The two stay
distinct through arithmetic: ``None + None`` is ``None`` and ``None + 3`` is ``3``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from llmledger.errors import UsageError

__all__ = ["BUCKETS", "MAX_TOKENS", "Usage", "add_counts"]

#: The stored buckets, in display order. ``total_tokens`` is derived from them.
BUCKETS: tuple[str, ...] = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
)

#: The largest count a bucket of one call may hold. The largest context windows are a few
#: million tokens (about 2M in 2026); a billion is far beyond any real call, and keeps what
#: counts become beyond overflow: a call's cost stays under a million dollars at any listed
#: price, and the 64-bit sums of the ledger's columns hold billions of such calls. A larger
#: count is rejected as a bad value.
MAX_TOKENS = 10**9
#: The largest sum a bucket may hold: what a 64-bit signed database column stores.
_MAX_SUM = 2**63 - 1


def add_counts(a: int | None, b: int | None) -> int | None:
    """Add two counts where ``None`` is "not reported": None + None = None, None + 3 = 3."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _sum_known(*counts: int | None) -> int | None:
    known = [c for c in counts if c is not None]
    return sum(known) if known else None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one or more model calls, in non-overlapping buckets.

    ``input_tokens`` is uncached input (it excludes cache reads and writes);
    ``output_tokens`` includes reasoning, and ``reasoning_tokens`` is the part of it spent
    thinking. ``cache_write_5m_tokens`` and ``cache_write_1h_tokens`` split
    ``cache_write_tokens`` by cache lifetime where the source says.

    Raises :class:`~llmledger.errors.UsageError` naming the field when a count is negative,
    not an integer or above :data:`MAX_TOKENS`, when reasoning exceeds output, or when the
    5m + 1h split exceeds the cache-write total. Sums (``+``, :meth:`total`, :meth:`of_sums`)
    check only that each count is a non-negative integer below 2**63: over calls that report
    different buckets the relations need not hold.
    """

    input_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_5m_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None

    def __post_init__(self) -> None:
        self._check_counts(MAX_TOKENS)
        self._check_parts()

    @classmethod
    def of_sums(cls, **counts: int | None) -> Usage:
        """The usage of several calls from per-bucket sums (``None``: no call reported it).

        Each count is checked as in the constructor, but not the relations between buckets:
        reasoning <= output and the 5m + 1h split <= cache writes hold for each call, not for
        sums over calls that report different buckets (reasoning from one call, output from
        another)."""
        unknown = set(counts) - set(BUCKETS)
        if unknown:
            raise TypeError(f"unknown token buckets: {', '.join(sorted(unknown))}")
        return cls._of_sums(counts.get(name) for name in BUCKETS)

    @classmethod
    def _of_sums(cls, counts: Iterable[int | None]) -> Usage:
        usage = cls.__new__(cls)
        for name, value in zip(BUCKETS, counts, strict=True):
            object.__setattr__(usage, name, value)
        usage._check_counts(_MAX_SUM)
        return usage

    def _check_counts(self, limit: int) -> None:
        for name in BUCKETS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise UsageError(name, f"must be an integer or None, got {value!r}")
            if value < 0:
                raise UsageError(name, f"must not be negative, got {value}")
            if value > limit:
                raise UsageError(
                    name,
                    f"{value:,} is beyond any real count (at most {limit:,}"
                    + (" per call)" if limit == MAX_TOKENS else ")"),
                )

    def _check_parts(self) -> None:
        if (
            self.reasoning_tokens is not None
            and self.output_tokens is not None
            and self.reasoning_tokens > self.output_tokens
        ):
            raise UsageError(
                "reasoning_tokens",
                f"{self.reasoning_tokens} exceeds output_tokens {self.output_tokens}; "
                "reasoning is a part of output",
            )
        split = _sum_known(self.cache_write_5m_tokens, self.cache_write_1h_tokens)
        if (
            split is not None
            and self.cache_write_tokens is not None
            and split > self.cache_write_tokens
        ):
            raise UsageError(
                "cache_write_tokens",
                f"5m + 1h split ({split}) exceeds the cache-write total {self.cache_write_tokens}",
            )

    # -- derived -------------------------------------------------------------------------

    @property
    def prompt_tokens(self) -> int | None:
        """All input: uncached + cache read + cache write (what OpenAI calls prompt tokens)."""
        return _sum_known(self.input_tokens, self.cache_read_tokens, self.cache_write_tokens)

    @property
    def total_tokens(self) -> int | None:
        """input + cache read + cache write + output; None when none of them was reported."""
        return _sum_known(
            self.input_tokens, self.cache_read_tokens, self.cache_write_tokens, self.output_tokens
        )

    @property
    def cache_hit_rate(self) -> float | None:
        """Cache reads over all prompt tokens (writes included in the denominator).

        None when cache reads were not reported or there were no prompt tokens.
        """
        prompt = self.prompt_tokens
        if self.cache_read_tokens is None or not prompt:
            return None
        return self.cache_read_tokens / prompt

    @property
    def is_empty(self) -> bool:
        """True when no bucket was reported at all."""
        return all(getattr(self, name) is None for name in BUCKETS)

    # -- arithmetic ----------------------------------------------------------------------

    def __add__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage._of_sums(add_counts(getattr(self, n), getattr(other, n)) for n in BUCKETS)

    def __radd__(self, other: object) -> Usage:
        # Lets sum(usages) start from the integer 0.
        if other == 0:
            return self
        return NotImplemented

    @classmethod
    def total(cls, usages: Iterable[Usage]) -> Usage:
        """Sum usages bucket by bucket; the sum of nothing is an empty (all-None) Usage."""
        result = cls()
        for usage in usages:
            result = result + usage
        return result

    # -- conversion ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, int | None]:
        """The buckets and ``total_tokens``, by their canonical names."""
        out: dict[str, int | None] = {name: getattr(self, name) for name in BUCKETS}
        out["total_tokens"] = self.total_tokens
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """Build from canonical names; ``total_tokens`` and unknown keys are ignored."""
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})
