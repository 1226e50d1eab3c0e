"""Bedrock cost arithmetic from a versioned price table (SPEC §5): model-id
normalisation, an immutable in-memory `PriceBook`, per-token-type costs in exact
six-decimal `Decimal`s, price snapshots for usage rows, and the parsers behind
`ccproxy pricing import FILE`.

Prices are USD per million tokens. A row applies from its `effective_date` (a UTC
calendar date) until a newer row for the same model and region; an exact region beats
the `*` row. Each usage row stores `snapshot(price)`, so editing the table never
rewrites the cost of past requests.
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
from typing import Any, Literal

ANY_REGION = "*"
PRICE_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
ROW_FIELDS = ("model", "region", *PRICE_FIELDS, "effective_date")
DEFAULT_PRICES_PATH = Path(__file__).with_name("default_prices.json")

# Enough digits that tokens × price is exact (up to ~10^40); only quantize() rounds.
_CTX = Context(prec=60)
_MICRO = Decimal("0.000001")
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


@dataclasses.dataclass(frozen=True, slots=True)
class TokenCounts:
    """Token counts of one request, as the upstream reported them.

    When the upstream reports only a total `cache_creation_input_tokens` without the
    5 m / 1 h split (`usage.cache_creation`), the caller passes it as
    `cache_write_5m_tokens`: 5 minutes is the default cache TTL
    (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching).
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


def _part(tokens: int, per_million: Decimal) -> Decimal:
    if tokens < 0:
        raise ValueError(f"token count must not be negative (got {tokens})")
    exact = _CTX.multiply(Decimal(tokens), per_million).scaleb(-6, _CTX)
    return exact.quantize(_MICRO, rounding=ROUND_HALF_UP, context=_CTX)


def cost(tokens: TokenCounts, price: Price) -> CostBreakdown:
    """Cost per token type = tokens / 1e6 × price per million, rounded half-up to six
    decimals; the total is the sum of the rounded parts, so parts always add up."""
    parts = (
        _part(tokens.input_tokens, price.input),
        _part(tokens.output_tokens, price.output),
        _part(tokens.cache_write_5m_tokens, price.cache_write_5m),
        _part(tokens.cache_write_1h_tokens, price.cache_write_1h),
        _part(tokens.cache_read_tokens, price.cache_read),
    )
    total = sum(parts, Decimal("0.000000"))
    return CostBreakdown(*parts, total=total)


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

    __slots__ = ("_dates", "_rows", "_versions")

    def __init__(self, rows: Iterable[Price]) -> None:
        by_key: dict[tuple[str, str], list[Price]] = {}
        for row in rows:
            by_key.setdefault((row.model, row.region), []).append(row)
        versions: dict[tuple[str, str], tuple[Price, ...]] = {}
        dates: dict[tuple[str, str], tuple[dt.date, ...]] = {}
        for key, group in by_key.items():
            group.sort(key=lambda p: p.effective_date)
            for a, b in itertools.pairwise(group):
                if a.effective_date == b.effective_date:
                    raise ValueError(
                        f"two prices for model {key[0]!r} region {key[1]!r} "
                        f"from the same date {a.effective_date.isoformat()}"
                    )
            versions[key] = tuple(group)
            dates[key] = tuple(p.effective_date for p in group)
        self._versions = versions
        self._dates = dates
        self._rows = tuple(p for group in versions.values() for p in group)

    @classmethod
    def default(cls) -> PriceBook:
        """The prices that ship with the product (`default_prices.json`)."""
        return cls(default_rows())

    @property
    def rows(self) -> tuple[Price, ...]:
        return self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def models(self) -> frozenset[str]:
        return frozenset(model for model, _ in self._versions)

    def lookup(self, model_id: str, region: str, at: dt.datetime) -> Price | None:
        """The price for a request to `model_id` in `region` at time `at`: the newest row
        with effective_date ≤ at's UTC date, from the exact region if it has one in
        force, else from `*`. None when nothing applies (unknown model, or too early).
        A naive `at` is taken as UTC."""
        model = normalize_model(model_id)
        if at.tzinfo is not None:
            at = at.astimezone(dt.UTC)
        day = at.date()
        for key in ((model, region), (model, ANY_REGION)):
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
    unknown = sorted(set(raw) - set(ROW_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(ROW_FIELDS)})")
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
    prices = {name: _parse_decimal(raw[name], where, name) for name in PRICE_FIELDS}
    return Price(model=model, region=region.strip(), effective_date=effective, **prices)


def parse_row(raw: Mapping[str, Any], where: str) -> Price:
    """One price row from a mapping of its fields; ValueError names `where` and the field."""
    return _parse_row(raw, where)


def _check_duplicates(rows: list[Price], labels: list[str]) -> None:
    seen: dict[tuple[str, str, dt.date], str] = {}
    for row, label in zip(rows, labels, strict=True):
        key = (row.model, row.region, row.effective_date)
        if key in seen:
            raise ValueError(
                f"{label}: duplicates {seen[key]} (model {row.model!r}, region "
                f"{row.region!r}, effective_date {row.effective_date.isoformat()})"
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
