"""Cost for a call, with provenance (DESIGN.md §3).

Order of precedence, first match wins:

1. a cost the source reported on the call (``Call.reported_cost_usd``) -> ``reported``;
2. the user's overrides file (TOML) -> ``computed``, or ``included`` (cost 0) for models the
   user declared free at the margin;
3. genai-prices, bundled data only (it never fetches), priced as of the call's timestamp ->
   ``computed``;
4. otherwise ``unpriced``: the cost is None, never 0, and one warning names the model.

genai-prices' ``calc_price`` costs 110-165 µs a call. The hot path here resolves
(provider, model) once to a rate card, turns its rates into integers, and prices each call
with integer arithmetic; ``tests/test_pricing.py`` checks it equals ``calc_price`` exactly.
Money is ``Decimal``, quantized to 12 places (pico-dollars), ROUND_HALF_EVEN.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import re
import threading
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any, Literal

from llmledger.call import Call
from llmledger.errors import LedgerError
from llmledger.usage import Usage

__all__ = [
    "NO_OVERRIDES",
    "PRICES_ENV",
    "CostStatus",
    "OverridesError",
    "Price",
    "Pricer",
    "RateCard",
    "Rates",
    "apportion_reported",
    "default_overrides_path",
]

logger = logging.getLogger(__name__)

CostStatus = Literal["reported", "computed", "included", "unpriced"]

#: Environment variable naming the overrides file.
PRICES_ENV = "LLMLEDGER_PRICES"

#: The overrides path that means "no overrides file" (``--ignore-overrides``): an empty file,
#: so that it passes as a path to worker processes like any other.
NO_OVERRIDES = os.devnull

_QUANTUM = Decimal("1e-12")
_PICO_DIGITS = 12
_UTC = UTC
_MAX_CACHED = 4096


class OverridesError(LedgerError, ValueError):
    """The overrides file is unreadable, not TOML, or has an invalid entry: the message names
    the file, the line where it is known (``prices.toml:12: ...``) and the model."""


class _EntryError(OverridesError):
    """An invalid entry: ``model`` (None for the file's top level) and ``field``, the key at
    fault, where known; :func:`_load_overrides` adds the line they are on."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.model: str | None = None


def toml_key(name: str) -> str:
    """``name`` as a TOML basic string (for ``[models."NAME"]`` in a hint): quotes, backslashes
    and control characters escaped, so that the hint is valid TOML and safe to print."""
    out = []
    for char in name:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif not char.isprintable():  # controls, bidi overrides, line separators
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


@dataclass(frozen=True, slots=True)
class Price:
    """The cost of one call and where it came from.

    ``cost_usd`` is None exactly when ``cost_status`` is ``unpriced``. ``price_version`` names
    the price data used (``genai-prices 0.2.3``, ``overrides:<sha8>``) so history is never
    silently re-priced; ``rates_source`` says which entry priced it, in words.
    """

    cost_usd: Decimal | None
    cost_status: CostStatus
    price_version: str | None = None
    rates_source: str = ""


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per million tokens for each bucket, and USD per request.

    ``cache_write`` prices 5-minute (and TTL-unsplit) cache writes; ``cache_write_1h`` the
    1-hour ones. ``reasoning`` prices the reasoning part of output.
    """

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal
    reasoning: Decimal
    per_request: Decimal = Decimal(0)

    def as_dict(self) -> dict[str, str]:
        """The rates as exact decimal strings, keyed by field name."""
        return {name: str(getattr(self, name)) for name in _RATE_FIELDS}


_RATE_FIELDS = (
    "input",
    "output",
    "cache_read",
    "cache_write",
    "cache_write_1h",
    "reasoning",
    "per_request",
)


@dataclass(frozen=True, slots=True)
class RateCard:
    """The rates that would price a model, and where they come from.

    ``tiers`` are (threshold, rates): when a call's prompt tokens (uncached + cache read +
    cache write) exceed the threshold, every token of the call is billed at that tier's rates
    (cliff semantics, as Anthropic, Google and genai-prices define them). ``rates`` is None
    for an ``included`` model.
    """

    model: str
    matched_model: str
    provider: str | None
    source: Literal["overrides", "genai-prices"]
    price_version: str
    rates: Rates | None
    tiers: tuple[tuple[int, Rates], ...] = ()
    included: bool = False
    overrides_path: Path | None = None
    note: str | None = None


def default_overrides_path() -> Path:
    """``$LLMLEDGER_PRICES`` if set, else ``prices.toml`` in the user's config directory."""
    env = os.environ.get(PRICES_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("llmledger")) / "prices.toml"


# -- the compiled form of a rate card ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Card:
    """A rate card in integer form: each rate times 10**scale, per token in 1e-6 USD."""

    source: str
    version: str
    status: CostStatus
    base: tuple[int, ...]
    tiers: tuple[tuple[int, tuple[int, ...]], ...]  # descending thresholds
    to_pico: int  # multiplier when exponent <= 12
    from_pico: int  # divisor when exponent > 12
    card: RateCard


def _scale_of(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _vector(rates: Rates, scale: int) -> tuple[int, ...]:
    factor = Decimal(10) ** scale
    # per_request is USD per request; the vector is in units of 1e-6 USD per token.
    return (
        int(rates.input * factor),
        int(rates.cache_read * factor),
        int(rates.cache_write * factor),
        int(rates.cache_write_1h * factor),
        int(rates.output * factor),
        int(rates.reasoning * factor),
        int(rates.per_request * factor * 1_000_000),
    )


def _compile(card: RateCard, source: str, status: CostStatus) -> _Card:
    if card.rates is None:
        zero = (0,) * 7
        return _Card(source, card.price_version, status, zero, (), 10**6, 1, card)
    all_rates = [card.rates, *(r for _, r in card.tiers)]
    scale = max(_scale_of(getattr(r, f)) for r in all_rates for f in _RATE_FIELDS)
    exponent = 6 + scale
    tiers = tuple(
        (start, _vector(rates, scale))
        for start, rates in sorted(card.tiers, key=lambda t: t[0], reverse=True)
    )
    if exponent <= _PICO_DIGITS:
        to_pico, from_pico = 10 ** (_PICO_DIGITS - exponent), 1
    else:
        to_pico, from_pico = 1, 10 ** (exponent - _PICO_DIGITS)
    return _Card(
        source,
        card.price_version,
        status,
        _vector(card.rates, scale),
        tiers,
        to_pico,
        from_pico,
        card,
    )


def _round_half_even_div(value: int, divisor: int) -> int:
    quotient, remainder = divmod(value, divisor)
    twice = 2 * remainder
    if twice > divisor or (twice == divisor and quotient % 2 == 1):
        quotient += 1
    return quotient


def _pico(value: Decimal) -> int:
    return int(value.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN).scaleb(_PICO_DIGITS))


def _from_pico(pico: int) -> Decimal:
    return Decimal(pico).scaleb(-_PICO_DIGITS)


# -- model-name normalization -------------------------------------------------------------------

_SUFFIX_BRACKET = re.compile(r"\[[^\]]*\]$")
_BEDROCK = re.compile(
    r"^(?:(?:us|eu|apac|ap|global|jp|au|ca|us-gov)\.)?"
    r"(?:anthropic|meta|amazon|mistral|cohere|ai21|deepseek|openai|qwen|writer)\.(?P<rest>.+)$"
)
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$|:\d+$")
_DATE_SUFFIX = re.compile(r"-(?:20\d{6}|20\d{2}-\d{2}-\d{2})$")
_FAST_SUFFIX = "-fast"

#: Provider names sources use that genai-prices' own provider matching does not know.
_PROVIDER_ALIASES = {
    "claude-code": "anthropic",
    "claude": "anthropic",
    "codex": "openai",
    "openai-responses": "openai",
    "gemini-cli": "google",
    "vertex_ai": "google",
    "vertex": "google",
    "bedrock": "aws",
    "bedrock_converse": "aws",
    "xai": "x-ai",
}


@dataclass(frozen=True, slots=True)
class _Candidate:
    name: str
    provider_hint: str | None = None
    fast: bool = False


def _candidates(model: str) -> list[_Candidate]:
    """The exact name, then ever more normalized forms of it (deduplicated, in order)."""
    out: list[_Candidate] = []
    seen: set[str] = set()

    def add(name: str, hint: str | None, fast: bool) -> None:
        if name and name not in seen:
            seen.add(name)
            out.append(_Candidate(name, hint, fast))

    name = model.strip().lower()
    hint: str | None = None
    fast = False
    add(name, hint, fast)
    name = _SUFFIX_BRACKET.sub("", name)  # Claude Code's "[1m]" context marker
    add(name, hint, fast)
    if "@" in name:  # Vertex AI: claude-sonnet-4-5@20250929
        name = name.split("@", 1)[0]
        hint = hint or "google"
        add(name, hint, fast)
    while "/" in name:  # anthropic/..., openrouter/anthropic/..., bedrock/...
        prefix, name = name.split("/", 1)
        hint = hint or prefix
        add(name, hint, fast)
    if match := _BEDROCK.match(name):
        name = match["rest"]
        hint = hint or "aws"
        add(name, hint, fast)
    if _BEDROCK_VERSION.search(name):
        name = _BEDROCK_VERSION.sub("", name)
        add(name, hint, fast)
    if name.endswith(_FAST_SUFFIX):
        name = name[: -len(_FAST_SUFFIX)]
        fast = True
        add(name, hint, fast)
    if _DATE_SUFFIX.search(name):
        name = _DATE_SUFFIX.sub("", name)
        add(name, hint, fast)
    return out


# -- genai-prices ----------------------------------------------------------------------------------


@cache
def _genai() -> tuple[Any, str]:
    """A snapshot of genai-prices' bundled data (never a fetched one) and its version."""
    import genai_prices
    from genai_prices.data import providers
    from genai_prices.data_snapshot import DataSnapshot

    return DataSnapshot(providers=providers, from_auto_update=False), (
        f"genai-prices {genai_prices.__version__}"
    )


def _genai_usage(usage: Usage) -> Any:
    from genai_prices import Usage as GenaiUsage

    b = _buckets(usage)
    return GenaiUsage(
        input_tokens=b[0] + b[1] + b[2],
        cache_read_tokens=b[1],
        cache_write_tokens=b[2],
        cache_write_5m_tokens=usage.cache_write_5m_tokens or 0,
        cache_write_1h_tokens=b[3],
        output_tokens=b[4],
        output_reasoning_tokens=b[5],
    )


def _decimal_or_none(value: Any) -> Decimal | None:
    return value if isinstance(value, Decimal) else None


def _genai_rates(model_price: Any) -> tuple[Rates, tuple[tuple[int, Rates], ...], bool]:
    """Rates and tiers from a genai-prices ModelPrice; the flag says the fast path is exact."""
    from genai_prices.types import TieredPrices

    keys = {
        "input": "input_mtok",
        "output": "output_mtok",
        "cache_read": "cache_read_mtok",
        "cache_write": "cache_write_mtok",
        "cache_write_5m": "cache_write_5m_mtok",
        "cache_write_1h": "cache_write_1h_mtok",
        "reasoning": "output_reasoning_mtok",
        "requests": "requests_kcount",
    }
    raw = {name: getattr(model_price, key, None) for name, key in keys.items()}
    thresholds = sorted(
        {
            tier.start
            for value in raw.values()
            if isinstance(value, TieredPrices)
            for tier in value.tiers
        }
    )

    def at(value: Any, threshold: int | None) -> Decimal | None:
        if isinstance(value, TieredPrices):
            chosen: Decimal = value.base
            if threshold is not None:
                for tier in value.tiers:
                    if tier.start <= threshold:
                        chosen = tier.price
            return chosen
        return _decimal_or_none(value)

    def rates(threshold: int | None) -> tuple[Rates, bool]:
        v = {name: at(value, threshold) for name, value in raw.items()}
        inp = v["input"] or Decimal(0)
        out = v["output"] or Decimal(0)
        cw = v["cache_write"] if v["cache_write"] is not None else inp
        cw5 = v["cache_write_5m"] if v["cache_write_5m"] is not None else cw
        per_k = v["requests"] or Decimal(0)
        result = Rates(
            input=inp,
            output=out,
            cache_read=v["cache_read"] if v["cache_read"] is not None else inp,
            cache_write=cw,
            cache_write_1h=v["cache_write_1h"] if v["cache_write_1h"] is not None else cw,
            reasoning=v["reasoning"] if v["reasoning"] is not None else out,
            per_request=per_k / 1000,
        )
        # Without an input price the data is unusual; let calc_price decide.
        return result, cw5 == cw and v["input"] is not None

    base, exact = rates(None)
    tiers: list[tuple[int, Rates]] = []
    for threshold in thresholds:
        tier_rates, tier_exact = rates(threshold)
        tiers.append((threshold, tier_rates))
        exact = exact and tier_exact
    return base, tuple(tiers), exact


@dataclass(slots=True)
class _GenaiEntry:
    """A model genai-prices matched, with its rate cards per price period."""

    model: str
    provider: Any
    info: Any
    context: dict[str, str] | None
    version: str
    boundaries: tuple[date, ...]
    slow: bool
    cards: dict[int, _Card | None] = field(default_factory=dict)
    note: str | None = None

    def card_for(self, index: int) -> _Card | None:
        """The compiled card for price period ``index``; None when only calc_price is exact."""
        try:
            return self.cards[index]
        except KeyError:
            pass
        if index == 0:
            rep = datetime(1970, 1, 1, tzinfo=_UTC)
        else:
            rep = datetime.combine(self.boundaries[index - 1], time(0), tzinfo=_UTC)
        compiled = None if self.slow else self._build(rep)
        self.cards[index] = compiled
        return compiled

    def rate_card(self, at: datetime) -> RateCard:
        """The rates in force at ``at`` (also for models priced through calc_price)."""
        rates, tiers, _ = _genai_rates(self._model_price(at))
        return self._card(rates, tiers)

    def _model_price(self, at: datetime) -> Any:
        own = any(self.info is m for m in self.provider.models)
        context = self.context if own else None
        return self.info.get_prices(at, context)

    def _card(self, rates: Rates, tiers: tuple[tuple[int, Rates], ...]) -> RateCard:
        return RateCard(
            model=self.model,
            matched_model=self.info.id,
            provider=self.provider.id,
            source="genai-prices",
            price_version=self.version,
            rates=rates,
            tiers=tiers,
            note=self.note,
        )

    def _build(self, at: datetime) -> _Card | None:
        rates, tiers, exact = _genai_rates(self._model_price(at))
        if not exact:
            return None
        source = f"{self.version}: {self.provider.id}/{self.info.id}"
        return _compile(self._card(rates, tiers), source, "computed")


def _genai_entry(model: str, provider: str | None) -> _GenaiEntry | None:
    from genai_prices.types import StartDateConstraint, TimeOfDateConstraint

    snapshot, version = _genai()
    candidates = _candidates(model)
    if not candidates:  # an empty or blank name matches nothing
        return None
    wanted = provider.strip().lower() if provider else None
    wanted = _PROVIDER_ALIASES.get(wanted, wanted) if wanted else None
    # A hint found anywhere in the name (bedrock/, us.anthropic., @date) applies to every form
    # of it: "global.anthropic.claude-…" must be looked up under aws as written, not only
    # after normalization has turned it into a name that also matches aws' regional entry.
    hint = candidates[-1].provider_hint
    provider_id = wanted or _PROVIDER_ALIASES.get(hint or "", hint)
    attempts = [(cand, provider_id) for cand in candidates]
    # The provider may be one genai-prices does not list (a proxy, a local server): then
    # infer it from the model name, as genai-prices does when given none.
    if provider_id is not None:
        attempts.extend((cand, None) for cand in candidates)
    # "-fast" selects Anthropic's fast-mode prices even when the bare name already matched.
    context = {"speed": "fast"} if any(c.fast for c in candidates) else None
    for cand, attempt_provider in attempts:
        try:
            prov, info = snapshot.find_provider_model(cand.name, None, attempt_provider, None)
        except LookupError:
            continue
        # Prices that change with the date are resolved once per price period; prices that
        # change with the time of day (DeepSeek off-peak) go through calc_price each time.
        constraints: list[Any] = []
        if isinstance(info.prices, list):
            constraints.extend(cp.constraint for cp in info.prices)
        if context:
            constraints.extend(v.constraint for v in info.price_variants or ())
        slow = any(isinstance(c, TimeOfDateConstraint) for c in constraints)
        boundaries = tuple(
            sorted({c.start_date for c in constraints if isinstance(c, StartDateConstraint)})
        )
        notes = []
        if cand.name != model.strip().lower():
            notes.append(f"matched {model!r} as {cand.name!r}")
        if context:
            notes.append("fast-mode prices (speed=fast) where the data has them")
        if attempt_provider is None and wanted is not None:
            notes.append(f"provider {provider!r} not matched in genai-prices, priced as {prov.id}")
        note = "; ".join(notes) or None
        return _GenaiEntry(model, prov, info, context, version, boundaries, slow, note=note)
    return None


# -- overrides -----------------------------------------------------------------------------------

_OVERRIDE_KEYS = {
    "input",
    "output",
    "cache_read",
    "cache_write",
    "cache_write_1h",
    "reasoning",
    "per_request",
    "included",
    "tiers",
}


def _rate(path: Path, model: str, key: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _EntryError(f"{path}: model {model!r}: {key} must be a number, got {value!r}", key)
    try:
        # str() of a float is its shortest repr, so 0.3 stays 0.3 and not 0.2999…
        rate = Decimal(str(value))
    except InvalidOperation:
        message = f"{path}: model {model!r}: {key} is not a number: {value!r}"
        raise _EntryError(message, key) from None
    if not rate.is_finite() or rate < 0:
        raise _EntryError(f"{path}: model {model!r}: {key} must be >= 0, got {value!r}", key)
    return rate


def _override_rates(path: Path, model: str, entry: Mapping[str, Any], base: Rates | None) -> Rates:
    def get(key: str) -> Decimal | None:
        return _rate(path, model, key, entry[key]) if key in entry else None

    inp = get("input")
    out = get("output")
    if base is None and (inp is None or out is None):
        raise _EntryError(
            f"{path}: model {model!r}: needs both 'input' and 'output' (USD per million "
            "tokens), or 'included = true'"
        )
    inp = inp if inp is not None else base.input if base else Decimal(0)
    out = out if out is not None else base.output if base else Decimal(0)
    cache_read = get("cache_read")
    cache_write = get("cache_write")
    cache_write_1h = get("cache_write_1h")
    reasoning = get("reasoning")
    per_request = get("per_request")
    if base is None:
        # Unlisted cache rates cost as much as plain input (genai-prices' rule for an
        # unpriced child bucket): an overestimate, never a silent zero.
        cache_write = cache_write if cache_write is not None else inp
        return Rates(
            input=inp,
            output=out,
            cache_read=cache_read if cache_read is not None else inp,
            cache_write=cache_write,
            cache_write_1h=cache_write_1h if cache_write_1h is not None else cache_write,
            reasoning=reasoning if reasoning is not None else out,
            per_request=per_request if per_request is not None else Decimal(0),
        )
    return Rates(
        input=inp,
        output=out,
        cache_read=cache_read if cache_read is not None else base.cache_read,
        cache_write=cache_write if cache_write is not None else base.cache_write,
        cache_write_1h=cache_write_1h if cache_write_1h is not None else base.cache_write_1h,
        reasoning=reasoning if reasoning is not None else base.reasoning,
        per_request=per_request if per_request is not None else base.per_request,
    )


def _load_overrides(path: Path) -> tuple[dict[str, _Card], str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OverridesError(f"cannot read prices overrides file {path}: {exc}") from exc
    version = "overrides:" + hashlib.sha256(data).hexdigest()[:8]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise OverridesError(
            f"{path}:{line}: not valid TOML: not UTF-8 text (byte {data[exc.start]:#04x})"
        ) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise OverridesError(f"{path}:{_toml_error_at(str(exc), text)}") from None
    try:
        return _override_cards(path, doc, version), version
    except _EntryError as exc:
        at = _line_of(text, exc.model, exc.field)
        message = str(exc)
        if at is not None and message.startswith(f"{path}: "):
            message = f"{path}:{at}: " + message[len(f"{path}: ") :]
        raise OverridesError(message) from None


def _toml_error_at(message: str, text: str) -> str:
    """``LINE:COLUMN: not valid TOML: REASON`` from tomllib's message, which ends with
    ``(at line L, column C)`` or ``(at end of document)``."""
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found:
        reason = message[: found.start()]
        return f"{found[1]}:{found[2]}: not valid TOML: {reason}"
    found = re.search(r"\s*\(at end of document\)$", message)
    if found:
        return f"{max(1, len(text.splitlines()))}: not valid TOML: {message[: found.start()]}"
    return f" not valid TOML: {message}"


def _key_path(source: str) -> tuple[str, ...] | None:
    """The dotted key ``source`` spells (``models."gpt-5".tiers``), or None."""
    try:
        node: Any = tomllib.loads(f"{source} = 0")
    except tomllib.TOMLDecodeError:
        return None
    keys: list[str] = []
    while isinstance(node, dict) and len(node) == 1:
        key, node = next(iter(node.items()))
        keys.append(key)
    return tuple(keys) if keys else None


def _line_of(text: str, model: str | None, field: str | None) -> int | None:
    """The line of ``field`` in the table of ``model`` (``[models."NAME"]``), else of that
    table's header; of the top-level key ``field`` when ``model`` is None. Found by reading
    the headers and keys line by line: None for what that does not find (inline tables,
    multi-line values)."""
    table: tuple[str, ...] = ()
    entry: int | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\[?\s*(.+?)\s*\]\]?\s*(#.*)?", stripped)
        if header:
            table = _key_path(header[1]) or ()
            if model is None and table[:1] == (field,):
                return number
            if table == ("models", model) and entry is None:
                entry = number
            continue
        key = re.match(r"([^=#]+)=", stripped)
        if not key:
            continue
        full = table + (_key_path(key[1].strip()) or ())
        if model is None and full[:1] == (field,):
            return number
        if full[:2] == ("models", model):
            if entry is None:
                entry = number
            if field is not None and full == ("models", model, field):
                return number
    return entry


def _override_cards(path: Path, doc: dict[str, Any], version: str) -> dict[str, _Card]:
    models = doc.get("models", {})
    unknown_top = set(doc) - {"models"}
    if unknown_top or not isinstance(models, dict):
        found = sorted(unknown_top) or models
        raise _EntryError(
            f'{path}: expected only [models."NAME"] tables, found {found!r}',
            min(unknown_top) if unknown_top else "models",
        )
    cards: dict[str, _Card] = {}
    for name, entry in models.items():
        try:
            cards[name.strip().lower()] = _override_card(path, name, entry, version)
        except _EntryError as exc:
            exc.model = name
            raise
    return cards


def _override_card(path: Path, name: str, entry: Any, version: str) -> _Card:
    if not isinstance(entry, dict):
        raise _EntryError(f"{path}: models.{name!r} must be a table")
    unknown = set(entry) - _OVERRIDE_KEYS
    if unknown:
        raise _EntryError(
            f"{path}: model {name!r}: unknown keys {sorted(unknown)}; "
            f"allowed: {sorted(_OVERRIDE_KEYS)}",
            min(unknown),
        )
    source = f"overrides {path}: {name}"
    included = entry.get("included", False)
    if not isinstance(included, bool):
        raise _EntryError(f"{path}: model {name!r}: included must be true or false", "included")
    if included:
        card = RateCard(
            model=name,
            matched_model=name,
            provider=None,
            source="overrides",
            price_version=version,
            rates=None,
            included=True,
            overrides_path=path,
        )
        return _compile(card, source, "included")
    base = _override_rates(path, name, entry, None)
    tiers: list[tuple[int, Rates]] = []
    for tier in entry.get("tiers", []):
        # A tier's errors point at the model's table (its [[tiers]] are not told apart).
        above = tier.get("above") if isinstance(tier, dict) else None
        if isinstance(above, bool) or not isinstance(above, int) or above < 0:
            raise _EntryError(
                f"{path}: model {name!r}: each tier needs 'above = N' (prompt tokens)"
            )
        rest = {k: v for k, v in tier.items() if k != "above"}
        bad = set(rest) - (_OVERRIDE_KEYS - {"included", "tiers"})
        if bad:
            raise _EntryError(f"{path}: model {name!r}: unknown tier keys {sorted(bad)}")
        try:
            tiers.append((above, _override_rates(path, name, rest, base)))
        except _EntryError as exc:
            exc.field = None
            raise
    card = RateCard(
        model=name,
        matched_model=name,
        provider=None,
        source="overrides",
        price_version=version,
        rates=base,
        tiers=tuple(sorted(tiers, key=lambda t: t[0])),
        overrides_path=path,
    )
    return _compile(card, source, "computed")


# -- pricing ---------------------------------------------------------------------------------------


def _buckets(usage: Usage) -> tuple[int, int, int, int, int, int]:
    """(uncached input, cache read, cache write total, of it 1h, output, of it reasoning)."""
    cw1h = usage.cache_write_1h_tokens or 0
    cw = usage.cache_write_tokens
    if cw is None:
        cw = (usage.cache_write_5m_tokens or 0) + cw1h
    rsn = usage.reasoning_tokens or 0
    out = usage.output_tokens or 0
    # Reasoning is part of output; a source that gives only reasoning billed at least that.
    out = max(out, rsn)
    return usage.input_tokens or 0, usage.cache_read_tokens or 0, cw, cw1h, out, rsn


def _cost(card: _Card, usage: Usage) -> Decimal:
    return Decimal(_cost_pico(card, *_buckets(usage))).scaleb(-_PICO_DIGITS)


def _cost_pico(card: _Card, inp: int, cr: int, cw: int, cw1h: int, out: int, rsn: int) -> int:
    """The cost in pico-dollars of the buckets :func:`_buckets` returns, rounded half-even."""
    v = card.base
    if card.tiers:
        prompt = inp + cr + cw
        for start, tier in card.tiers:
            if prompt > start:
                v = tier
                break
    total = (
        inp * v[0]
        + cr * v[1]
        + (cw - cw1h) * v[2]
        + cw1h * v[3]
        + (out - rsn) * v[4]
        + rsn * v[5]
        + v[6]
    )
    if card.from_pico == 1:
        return total * card.to_pico
    return _round_half_even_div(total, card.from_pico)


class Pricer:
    """Prices calls: reported cost, then the overrides file, then genai-prices' bundled data.

    ``overrides_path`` names a TOML overrides file; without it, ``$LLMLEDGER_PRICES`` or
    ``prices.toml`` in the user config directory is used when present; :data:`NO_OVERRIDES`
    uses none. A broken file raises :class:`OverridesError` here, naming its line. Lookups are
    cached per (provider, model), so pricing a call with a warm cache costs a few microseconds.
    A Pricer is safe to share between threads.
    """

    def __init__(self, overrides_path: str | os.PathLike[str] | None = None) -> None:
        if overrides_path is not None and os.fspath(overrides_path) == NO_OVERRIDES:
            path: Path | None = None
        elif overrides_path is not None:
            path = Path(overrides_path).expanduser()
        else:
            path = default_overrides_path()
            if not path.exists() and not os.environ.get(PRICES_ENV):
                path = None
        self._overrides_path = path
        self._overrides: dict[str, _Card] = {}
        self._overrides_version: str | None = None
        if path is not None:
            self._overrides, self._overrides_version = _load_overrides(path)
        self._entries: dict[tuple[str | None, str], _Card | _GenaiEntry | None] = {}
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._unpriced: dict[str, int] = {}
        # (provider, model, UTC day number) -> the compiled card in force that day.
        self._day_cards: dict[tuple[str | None, str, int], _Card] = {}

    @property
    def overrides_path(self) -> Path | None:
        """The overrides file in use, if any."""
        return self._overrides_path

    @property
    def unpriced_models(self) -> dict[str, int]:
        """How many calls of each model could not be priced (a copy)."""
        with self._lock:
            return dict(self._unpriced)

    # -- public pricing --------------------------------------------------------------------

    def price(self, call: Call) -> Price:
        """Price one call: its reported cost if it has one, else computed from its usage."""
        if call.reported_cost_usd is not None:
            return Price(
                call.reported_cost_usd.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN),
                "reported",
                None,
                f"reported by {call.source}",
            )
        return self.price_usage(
            call.usage, call.model, call.provider, call.started_at or call.finished_at
        )

    def price_usage(
        self,
        usage: Usage,
        model: str | None,
        provider: str | None = None,
        at: datetime | None = None,
    ) -> Price:
        """Price token usage of ``model`` as of ``at`` (default: now; naive means UTC).

        Unreported (None) buckets count as 0, but a usage with no bucket reported at all is
        ``unpriced``: the call happened and we do not know what it cost. An ``included`` model
        costs 0 whatever its usage.
        """
        if model is None:
            return self._unpriced_price("<no model>", "the call names no model")
        entry = self._entry(model, provider)
        if entry is None:
            return self._unpriced_price(model, f"no price for model {model!r}")
        card = _card_of(entry, lambda: _utc_date(at))
        if card is None:
            assert isinstance(entry, _GenaiEntry)
            return self._slow(entry, usage, at)
        if card.status == "included":
            return Price(Decimal(0).quantize(_QUANTUM), "included", card.version, card.source)
        if usage.is_empty:
            return Price(None, "unpriced", None, f"no usage reported for {model!r}")
        return Price(_cost(card, usage), card.status, card.version, card.source)

    def price_pico(
        self,
        model: str,
        provider: str | None,
        at_micros: int | None,
        inp: int,
        cache_read: int,
        cache_write: int,
        cache_write_1h: int,
        output: int,
    ) -> tuple[int, CostStatus, str] | None:
        """Fast path of :meth:`price_usage` for the bulk importer: (pico-dollars, status,
        price version) of a usage with at least one bucket reported and no reasoning split,
        given as :func:`_buckets` returns them (None counts as 0), at ``at_micros`` (epoch
        microseconds, UTC; None means now).

        None when :meth:`price_usage` must decide (an unpriced model, which it logs and
        counts, or a price only genai-prices' calc_price gets right): call it instead.
        """
        day = None if at_micros is None else at_micros // 86_400_000_000
        card = None if day is None else self._day_cards.get((provider, model, day))
        if card is None:
            entry = self._entry(model, provider)
            if entry is None:
                return None
            card = _card_of(entry, lambda: _day_date(day))
            if card is None:
                return None
            if day is not None:
                if len(self._day_cards) >= _MAX_CACHED:
                    self._day_cards.clear()
                self._day_cards[(provider, model, day)] = card
        if card.status == "included":
            return 0, "included", card.version
        cost = _cost_pico(card, inp, cache_read, cache_write, cache_write_1h, output, 0)
        return cost, card.status, card.version

    def _entry(self, model: str, provider: str | None) -> _Card | _GenaiEntry | None:
        # The resolved price entry of ``model`` (cached), None when nothing prices it.
        entry = self._entries.get((provider, model), _MISSING)
        return self._resolve(model, provider) if entry is _MISSING else entry

    def rate_card(
        self, model: str, provider: str | None = None, at: datetime | None = None
    ) -> RateCard | None:
        """The rates that would price ``model`` at ``at`` and their source; None if unknown."""
        entry = self._resolve(model, provider)
        if entry is None:
            return None
        if isinstance(entry, _Card):
            return replace(entry.card, model=model)
        assert isinstance(entry, _GenaiEntry)
        return entry.rate_card(_aware(at))

    # -- internals ---------------------------------------------------------------------------

    def _resolve(self, model: str, provider: str | None) -> _Card | _GenaiEntry | None:
        entry: _Card | _GenaiEntry | None = None
        for cand in _candidates(model):
            if (found := self._overrides.get(cand.name)) is not None:
                entry = found
                break
        else:
            entry = _genai_entry(model, provider)
        with self._lock:
            if len(self._entries) >= _MAX_CACHED:
                self._entries.clear()
            self._entries[(provider, model)] = entry
        return entry

    def _slow(self, entry: _GenaiEntry, usage: Usage, at: datetime | None) -> Price:
        if usage.is_empty:
            return Price(None, "unpriced", None, f"no usage reported for {entry.model!r}")
        own = any(entry.info is m for m in entry.provider.models)
        try:
            calc = entry.info.calc_price(
                _genai_usage(usage),
                entry.provider,
                genai_request_timestamp=_aware(at),
                price_context=entry.context if own else None,
            )
        except ValueError as exc:
            return self._unpriced_price(entry.model, f"genai-prices cannot price it: {exc}")
        cost = calc.total_price.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)
        return Price(
            cost, "computed", entry.version, f"{entry.version}: {entry.provider.id}/{entry.info.id}"
        )

    def _unpriced_price(self, model: str, reason: str) -> Price:
        with self._lock:
            self._unpriced[model] = self._unpriced.get(model, 0) + 1
            first = model not in self._warned
            self._warned.add(model)
        if first:
            where = self._overrides_path or default_overrides_path()
            logger.warning(
                "%s; its calls are unpriced (cost unknown, not $0). To price them, add "
                "[models.%s] with input/output USD per million tokens to %s",
                reason,
                toml_key(model),
                where,
            )
        return Price(None, "unpriced", None, reason)


_MISSING: Any = object()
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _aware(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(_UTC)
    return at if at.tzinfo is not None else at.replace(tzinfo=_UTC)


def _card_of(entry: _Card | _GenaiEntry, on: Callable[[], date]) -> _Card | None:
    """The card of ``entry`` in force on the UTC day ``on()`` gives (asked only when its price
    changed over time); None when only genai-prices' calc_price is exact."""
    if isinstance(entry, _Card):
        return entry
    if not entry.boundaries:
        return entry.card_for(0)
    return entry.card_for(bisect.bisect_right(entry.boundaries, on()))


def _day_date(day: int | None) -> date:
    # The date of UTC day number ``day`` since 1970-01-01 (None: today).
    return _utc_date(None) if day is None else date.fromordinal(_EPOCH_ORDINAL + day)


def _utc_date(at: datetime | None) -> date:
    if at is None:
        return datetime.now(_UTC).date()
    if at.tzinfo is None:
        return at.date()
    return at.astimezone(_UTC).date()


# -- apportioning a reported total -------------------------------------------------------------


def _split_exact(total_pico: int, weights: Sequence[int]) -> list[int]:
    """Split an integer over weights so the parts sum exactly (largest remainder)."""
    if total_pico < 0:
        return [-share for share in _split_exact(-total_pico, weights)]
    n = len(weights)
    wsum = sum(weights)
    if wsum <= 0:
        weights, wsum = [1] * n, n
    shares = []
    remainders = []
    for i, w in enumerate(weights):
        q, r = divmod(total_pico * w, wsum)
        shares.append(q)
        remainders.append((-r, i))
    for _, i in sorted(remainders)[: total_pico - sum(shares)]:
        shares[i] += 1
    return shares


def _same_model(a: str, b: str) -> bool:
    return a == b or _candidates(a)[-1].name == _candidates(b)[-1].name


def apportion_reported(
    calls_with_prices: Sequence[tuple[Call, Price]],
    reported_cost_by_model: Mapping[str, Decimal],
) -> list[Price]:
    """Split each model's reported cost over that model's calls; the parts sum exactly.

    For Claude Code stream-json, whose final result reports each model's cost while the
    per-message calls do not: each model's cost is split in proportion to its calls' computed
    costs, or to their total tokens when any of them is unpriced (equally when all are 0).
    Those calls come back ``reported``; other calls keep their price. A reported model with
    no call is logged, since its cost cannot be placed.
    """
    result = [price for _, price in calls_with_prices]
    for model, reported in reported_cost_by_model.items():
        indexes = [
            i
            for i, (call, _) in enumerate(calls_with_prices)
            if call.model is not None and call.model == model
        ]
        if not indexes:
            indexes = [
                i
                for i, (call, _) in enumerate(calls_with_prices)
                if call.model is not None and _same_model(call.model, model)
            ]
        if not indexes:
            logger.warning(
                "reported cost %s for model %r matches no call; it is not apportioned",
                reported,
                model,
            )
            continue
        prices = [calls_with_prices[i][1] for i in indexes]
        by_cost = all(p.cost_usd is not None for p in prices)
        if by_cost:
            weights = [_pico(p.cost_usd) for p in prices if p.cost_usd is not None]
            basis = "computed cost"
        else:
            weights = [calls_with_prices[i][0].usage.total_tokens or 0 for i in indexes]
            basis = "total tokens"
        shares = _split_exact(_pico(reported), weights)
        for i, share, price in zip(indexes, shares, prices, strict=True):
            result[i] = Price(
                _from_pico(share),
                "reported",
                price.price_version if by_cost else None,
                f"reported total for {model} apportioned by {basis}",
            )
    return result
