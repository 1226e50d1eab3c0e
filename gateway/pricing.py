"""Cost arithmetic from a versioned price table (SPEC §5): model-id
normalisation, an immutable in-memory `PriceBook`, per-token-type costs in exact
six-decimal `Decimal`s, price snapshots for usage rows, and the parsers behind
`ccproxy pricing import FILE`.

Prices are USD per million tokens, keyed by provider (`bedrock`, what the organisation
pays; `anthropic`, the Anthropic API list price plan rows are valued at), model and
region. A row applies from its `effective_date` (a UTC calendar date) until a newer row
for the same provider, model and region; an exact region beats the `*` row. Each usage
row stores `snapshot(price)`, so editing the table never rewrites the cost of past
requests.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import datetime as dt
import io
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, cast

import msgspec

ANY_REGION = "*"
BEDROCK = "bedrock"
ANTHROPIC = "anthropic"
PROVIDERS = (BEDROCK, ANTHROPIC)
PRICE_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
ROW_FIELDS = ("model", "region", *PRICE_FIELDS, "effective_date")
# May be left out of a price file or snapshot: rows written before providers existed are Bedrock's.
OPTIONAL_FIELDS = ("provider",)
DEFAULT_PRICES_PATH = Path(__file__).with_name("default_prices.json")

# Enough digits that tokens × price is exact (up to ~10^40); only quantize() rounds.
_CTX = Context(prec=60)
_ONE = Decimal(1)
_ZERO_USD = Decimal("0.000000")
_REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")


@dataclasses.dataclass(frozen=True, slots=True)
class Price:
    """One row of the price table; prices in USD per million tokens."""

    model: str
    region: str
    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    effective_date: dt.date
    provider: str = BEDROCK


class TokenCounts(msgspec.Struct, frozen=True):
    """Token counts of one request, as the upstream reported them.

    When the upstream reports only a total `cache_creation_input_tokens` without the
    5 m / 1 h split (`usage.cache_creation`), the caller passes it as
    `cache_write_5m_tokens`: 5 minutes is the default cache TTL
    (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching).
    A msgspec Struct: built for every priced request, where a frozen dataclass costs 1 µs.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class CostBreakdown:
    """USD per token type, each quantized to six decimals; `total` is their sum."""

    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    total: Decimal


class Rate:
    """A price row ready for arithmetic: its five prices (PRICE_FIELDS order) in
    pico-dollars per token, which is micro-dollars per million tokens. Imported prices
    have at most six decimals, so these are exact integers and a cost is integer
    arithmetic; a price with more decimals (built in code, never imported) is None there
    and takes the exact Decimal path."""

    __slots__ = ("picos", "price")

    def __init__(self, price: Price) -> None:
        self.price = price
        self.picos = tuple(_picos(getattr(price, name)) for name in PRICE_FIELDS)


def _picos(per_million: Decimal) -> int | None:
    scaled = per_million.scaleb(6, _CTX)
    return int(scaled) if scaled == scaled.to_integral_value() else None


def _part_micros(tokens: int, per_million: Decimal, picos: int | None) -> int:
    """tokens / 1e6 × price per million, in micro-dollars, rounded half-up."""
    if tokens < 0:
        raise ValueError(f"token count must not be negative (got {tokens})")
    if picos is not None:
        return (tokens * picos + 500_000) // 1_000_000
    exact = _CTX.multiply(Decimal(tokens), per_million)
    return int(exact.quantize(_ONE, rounding=ROUND_HALF_UP, context=_CTX))


def _token_fields(tokens: TokenCounts) -> tuple[int, int, int, int, int]:
    return (
        tokens.input_tokens,
        tokens.output_tokens,
        tokens.cache_write_5m_tokens,
        tokens.cache_write_1h_tokens,
        tokens.cache_read_tokens,
    )


def _parts_micros(tokens: TokenCounts, rate: Rate) -> list[int]:
    price = rate.price
    fields = zip(_token_fields(tokens), PRICE_FIELDS, rate.picos, strict=True)
    return [_part_micros(n, getattr(price, name), picos) for n, name, picos in fields]


def cost_micros(tokens: TokenCounts, rate: Rate) -> int:
    """The total cost in micro-dollars: the sum of the rounded parts, exactly as
    `cost()`; unrolled, since every request with tokens is priced (about 1 µs)."""
    counts = _token_fields(tokens)
    picos = rate.picos
    if None in picos or min(counts) < 0:
        return sum(_parts_micros(tokens, rate))  # the Decimal path, or the negative count's error
    a, b, c, d, e = counts
    pa, pb, pc, pd, pe = cast(tuple[int, int, int, int, int], picos)
    return (
        (a * pa + 500_000) // 1_000_000
        + (b * pb + 500_000) // 1_000_000
        + (c * pc + 500_000) // 1_000_000
        + (d * pd + 500_000) // 1_000_000
        + (e * pe + 500_000) // 1_000_000
    )


def usd(micros: int) -> Decimal:
    """Micro-dollars as a six-decimal Decimal (0 as 0.000000, never 0E-6)."""
    return Decimal(micros).scaleb(-6) if micros else _ZERO_USD


def cost(tokens: TokenCounts, price: Price) -> CostBreakdown:
    """Cost per token type = tokens / 1e6 × price per million, rounded half-up to six
    decimals; the total is the sum of the rounded parts, so parts always add up."""
    micros = _parts_micros(tokens, Rate(price))
    return CostBreakdown(
        input=usd(micros[0]),
        output=usd(micros[1]),
        cache_write_5m=usd(micros[2]),
        cache_write_1h=usd(micros[3]),
        cache_read=usd(micros[4]),
        total=usd(sum(micros)),
    )


# --- model ids ----------------------------------------------------------------------

# Bedrock: [arn…/][<scope>.]anthropic.<name>-<yyyymmdd>-v<n>[:<rev>][:<context>], where
# scope is an inference-profile prefix (global, us, eu, apac, jp, us-gov, …).
# Anthropic: <name>-<yyyymmdd> or <name>-latest; Claude Code may add "[1m]".
_VERSION_SUFFIX = re.compile(r"-v\d+(:[0-9a-z]+)*$")
_DATE_SUFFIX = re.compile(r"-(\d{8}|latest)$")
_CONTEXT_SUFFIX = re.compile(r"\[[0-9a-z]+\]$")
# Anthropic's "-0" aliases name the first release of a family.
_ALIASES = {"claude-opus-4-0": "claude-opus-4", "claude-sonnet-4-0": "claude-sonnet-4"}


def normalize_model(model_id: str) -> str:
    """Map a Bedrock model id / inference profile or an Anthropic model name to the
    price-table key, e.g. `us.anthropic.claude-opus-4-1-20250805-v1:0` → `claude-opus-4-1`.
    Ids that are not Anthropic's come back lower-cased with the same suffixes removed."""
    key = model_id.strip().lower()
    key = key.rsplit("/", 1)[-1]  # an ARN's resource part
    marker = key.find("anthropic.")
    if marker >= 0:
        key = key[marker + len("anthropic.") :]
    key = _CONTEXT_SUFFIX.sub("", key)
    key = _VERSION_SUFFIX.sub("", key)
    key = _DATE_SUFFIX.sub("", key)
    return _ALIASES.get(key, key)


# --- the price book -----------------------------------------------------------------


class PriceBook:
    """An immutable index of price rows; build a new one when the table changes."""

    __slots__ = ("_dates", "_memo", "_rows", "_versions")

    def __init__(self, rows: Iterable[Price]) -> None:
        by_key: dict[tuple[str, str, str], list[Price]] = {}
        for row in rows:
            by_key.setdefault((row.provider, row.model, row.region), []).append(row)
        versions: dict[tuple[str, str, str], tuple[Price, ...]] = {}
        dates: dict[tuple[str, str, str], tuple[dt.date, ...]] = {}
        for key, group in by_key.items():
            group.sort(key=lambda p: p.effective_date)
            for a, b in itertools.pairwise(group):
                if a.effective_date == b.effective_date:
                    raise ValueError(
                        f"two {key[0]} prices for model {key[1]!r} region {key[2]!r} "
                        f"from the same date {a.effective_date.isoformat()}"
                    )
            versions[key] = tuple(group)
            dates[key] = tuple(p.effective_date for p in group)
        self._versions = {key: tuple(Rate(p) for p in group) for key, group in versions.items()}
        self._dates = dates
        self._rows = tuple(p for group in versions.values() for p in group)
        # (model id as asked, region, UTC day, provider) → its rate: every request asks
        # again for the same few, and normalising the name alone costs more than the dict.
        self._memo: dict[tuple[str, str, dt.date, str], Rate | None] = {}

    @classmethod
    def default(cls) -> PriceBook:
        """The prices that ship with the product (`default_prices.json`)."""
        return cls(default_rows())

    @property
    def rows(self) -> tuple[Price, ...]:
        return self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def models(self, provider: str = BEDROCK) -> frozenset[str]:
        return frozenset(model for p, model, _ in self._versions if p == provider)

    def lookup(self, model_id: str, region: str, at: dt.datetime, provider: str = BEDROCK) -> Price | None:
        """The price for a request to `model_id` in `region` at time `at`: the newest row
        with effective_date ≤ at's UTC date, from the exact region if it has one in
        force, else from `*`. None when nothing applies (unknown model, or too early).
        A naive `at` is taken as UTC."""
        rate = self.rate(model_id, region, at, provider)
        return rate.price if rate is not None else None

    def rate(self, model_id: str, region: str, at: dt.datetime, provider: str = BEDROCK) -> Rate | None:
        """`lookup()`'s row as a `Rate`, for `cost_micros()`."""
        if at.tzinfo is not None and at.tzinfo is not dt.UTC:  # the request path's are UTC already
            at = at.astimezone(dt.UTC)
        day = at.date()
        memo_key = (model_id, region, day, provider)
        try:
            return self._memo[memo_key]
        except KeyError:
            pass
        if len(self._memo) > 4096:  # model names come from clients: a bound
            self._memo.clear()
        found = self._memo[memo_key] = self._find(normalize_model(model_id), region, day, provider)
        return found

    def _find(self, model: str, region: str, day: dt.date, provider: str) -> Rate | None:
        for key in ((provider, model, region), (provider, model, ANY_REGION)):
            dates = self._dates.get(key)
            if dates is None:
                continue
            i = bisect.bisect_right(dates, day)
            if i:
                return self._versions[key][i - 1]
        return None


# --- snapshots ----------------------------------------------------------------------


def _dec_str(d: Decimal) -> str:
    return format(d, "f")  # never exponent notation ("1E+1"), keeps given decimals


def snapshot(price: Price) -> dict[str, str]:
    """The price as stored with a usage row: every value a string, decimals exact."""
    snap = {"model": price.model, "region": price.region}
    for name in PRICE_FIELDS:
        snap[name] = _dec_str(getattr(price, name))
    snap["effective_date"] = price.effective_date.isoformat()
    if price.provider != BEDROCK:  # Bedrock snapshots keep the shape they had before providers
        snap["provider"] = price.provider
    return snap


def from_snapshot(snap: Mapping[str, Any]) -> Price:
    """Inverse of `snapshot()` (validated like an imported row)."""
    return _parse_row(snap, "snapshot")


# --- import parsing -----------------------------------------------------------------


def _parse_decimal(raw: Any, where: str, name: str) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
        raise ValueError(f"{where}: field {name!r}: expected a number, got {raw!r}")
    try:
        # str() of a float is its shortest repr, so 0.3 stays 0.3, not 0.2999…
        value = raw if isinstance(raw, Decimal) else Decimal(str(raw).strip())
    except InvalidOperation:
        raise ValueError(f"{where}: field {name!r}: not a number: {raw!r}") from None
    if not value.is_finite():
        raise ValueError(f"{where}: field {name!r}: must be a finite number, got {raw!r}")
    if value < 0:
        raise ValueError(f"{where}: field {name!r}: must not be negative, got {raw!r}")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -6:
        # The table stores six decimals; silently rounding a price would misprice usage.
        raise ValueError(f"{where}: field {name!r}: at most 6 decimal places, got {raw!r}")
    return value


def _parse_row(raw: Mapping[str, Any], where: str) -> Price:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected an object with fields {', '.join(ROW_FIELDS)}")
    unknown = sorted(set(raw) - set(ROW_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        fields = ", ".join((*ROW_FIELDS, *OPTIONAL_FIELDS))
        raise ValueError(f"{where}: unknown field {unknown[0]!r} (fields: {fields})")
    for name in ROW_FIELDS:
        value = raw.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError(f"{where}: missing field {name!r}")

    model_raw, region, date_raw = raw["model"], raw["region"], raw["effective_date"]
    if not isinstance(model_raw, str):
        raise ValueError(f"{where}: field 'model': expected a string, got {model_raw!r}")
    model = normalize_model(model_raw)
    if not isinstance(region, str) or not (region.strip() == ANY_REGION or _REGION_RE.fullmatch(region.strip())):
        raise ValueError(f"{where}: field 'region': expected '*' or an AWS region such as 'us-east-1', got {region!r}")
    if not isinstance(date_raw, str):
        raise ValueError(f"{where}: field 'effective_date': expected a YYYY-MM-DD string, got {date_raw!r}")
    try:
        effective = dt.date.fromisoformat(date_raw.strip())
    except ValueError:
        raise ValueError(f"{where}: field 'effective_date': not a YYYY-MM-DD date: {date_raw!r}") from None
    provider = raw.get("provider") or BEDROCK
    if not isinstance(provider, str) or provider.strip().lower() not in PROVIDERS:
        raise ValueError(f"{where}: field 'provider': expected one of {', '.join(PROVIDERS)}, got {provider!r}")
    provider = provider.strip().lower()
    if provider == ANTHROPIC and region.strip() != ANY_REGION:
        raise ValueError(f"{where}: field 'region': Anthropic API prices have no region; use '*'")
    prices = {name: _parse_decimal(raw[name], where, name) for name in PRICE_FIELDS}
    return Price(model=model, region=region.strip(), effective_date=effective, provider=provider, **prices)


def parse_row(raw: Mapping[str, Any], where: str) -> Price:
    """One price row from a mapping of its fields; ValueError names `where` and the field."""
    return _parse_row(raw, where)


def _check_duplicates(rows: list[Price], labels: list[str]) -> None:
    seen: dict[tuple[str, str, str, dt.date], str] = {}
    for row, label in zip(rows, labels, strict=True):
        key = (row.provider, row.model, row.region, row.effective_date)
        if key in seen:
            raise ValueError(
                f"{label}: duplicates {seen[key]} (model {row.model!r}, region "
                f"{row.region!r}, effective_date {row.effective_date.isoformat()}, provider {row.provider})"
            )
        seen[key] = label


def _load_json(data: bytes) -> tuple[list[Price], list[str]]:
    try:
        # parse_float=Decimal keeps 0.30 exact; floats never touch a price.
        doc = json.loads(data, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if isinstance(doc, dict):
        if "prices" not in doc:
            raise ValueError("JSON object has no 'prices' list")
        doc = doc["prices"]
    if not isinstance(doc, list):
        raise ValueError("expected a JSON list of price rows (or an object with 'prices')")
    labels = [f"row {n}" for n in range(1, len(doc) + 1)]
    return [_parse_row(item, label) for item, label in zip(doc, labels, strict=True)], labels


def _load_csv(data: bytes) -> tuple[list[Price], list[str]]:
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's byte-order mark is not a field
    except UnicodeDecodeError as exc:
        raise ValueError(f"CSV is not UTF-8: {exc}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [name for name in ROW_FIELDS if name not in header]
    if missing:
        raise ValueError(f"CSV header (line 1): missing field {missing[0]!r}")
    reader.fieldnames = header
    rows: list[Price] = []
    labels: list[str] = []
    for n, record in enumerate(reader, start=1):
        label = f"row {n} (line {reader.line_num})"
        if None in record:
            raise ValueError(f"{label}: more values than header fields")
        rows.append(_parse_row(record, label))
        labels.append(label)
    return rows, labels


def load_rows(data: bytes, fmt: Literal["json", "csv"]) -> list[Price]:
    """Parse a price file for `ccproxy pricing import`. JSON: a list of row objects, or
    an object whose `prices` holds that list; CSV: a header naming every field. Errors
    are ValueErrors naming the row and the field. Model ids are normalised."""
    if fmt == "json":
        rows, labels = _load_json(data)
    elif fmt == "csv":
        rows, labels = _load_csv(data)
    else:
        raise ValueError(f"unknown price file format {fmt!r} (expected 'json' or 'csv')")
    _check_duplicates(rows, labels)
    return rows


def default_rows() -> list[Price]:
    """The rows of `default_prices.json`, shipped next to this module."""
    return load_rows(DEFAULT_PRICES_PATH.read_bytes(), "json")
