"""Bedrock pricing: cost per token type, rounding, versioned lookups, regions, model-id
normalisation, snapshots, price-file parsing and the shipped default prices."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import pricing
from gateway.pricing import Price, TokenCounts

D = Decimal
UTC = dt.UTC


def price(
    model: str = "claude-sonnet-4-5",
    region: str = "*",
    input: str = "3",
    output: str = "15",
    cache_write_5m: str = "3.75",
    cache_write_1h: str = "6",
    cache_read: str = "0.30",
    effective_date: str = "2025-01-01",
) -> Price:
    return Price(
        model=model,
        region=region,
        input=D(input),
        output=D(output),
        cache_write_5m=D(cache_write_5m),
        cache_write_1h=D(cache_write_1h),
        cache_read=D(cache_read),
        effective_date=dt.date.fromisoformat(effective_date),
    )


SONNET = price()


# --- cost ---------------------------------------------------------------------------


def test_every_token_type_against_hand_computed_values() -> None:
    c = pricing.cost(
        TokenCounts(
            input_tokens=1234,
            output_tokens=5678,
            cache_write_5m_tokens=10_000,
            cache_write_1h_tokens=10_000,
            cache_read_tokens=123_456,
        ),
        SONNET,
    )
    assert c.input == D("0.003702")  # 1234 × 3 / 1e6
    assert c.output == D("0.085170")  # 5678 × 15 / 1e6
    assert c.cache_write_5m == D("0.037500")  # 10000 × 3.75 / 1e6
    assert c.cache_write_1h == D("0.060000")  # 10000 × 6 / 1e6
    assert c.cache_read == D("0.037037")  # 123456 × 0.30 / 1e6 = 0.0370368
    assert c.total == D("0.223409")
    # six decimals exactly, as stored
    assert [str(v) for v in (c.input, c.output, c.cache_write_1h, c.total)] == [
        "0.003702",
        "0.085170",
        "0.060000",
        "0.223409",
    ]


def test_zero_tokens_cost_zero_with_six_decimals() -> None:
    c = pricing.cost(TokenCounts(), SONNET)
    assert str(c.total) == "0.000000"


def test_large_counts_are_exact() -> None:
    opus = price(model="claude-opus-4-1", input="15", output="75")
    c = pricing.cost(TokenCounts(input_tokens=1_000_000_000, output_tokens=987_654_321), opus)
    assert c.input == D("15000.000000")
    assert c.output == D("74074.074075")  # 74074.074075 exactly (987654321 × 75e-6)
    assert c.total == D("89074.074075")


@pytest.mark.parametrize(
    ("tokens", "per_million", "expected"),
    [
        (1, "0.5", "0.000001"),  # 0.0000005 → up (banker's rounding would give 0)
        (5, "0.5", "0.000003"),  # 0.0000025 → up (banker's rounding would give 2)
        (3, "0.5", "0.000002"),  # 0.0000015 → up
        (1, "0.49", "0.000000"),  # 0.00000049 → down
        (1, "0.80", "0.000001"),  # 0.0000008 → up
        (7, "0.08", "0.000001"),  # 0.00000056 → up
        (1234567, "0.08", "0.098765"),  # 0.09876536 → down
        (1234567, "1.25", "1.543209"),  # 1.54320875 → up
    ],
)
def test_rounding_is_half_up_at_the_seventh_decimal(tokens: int, per_million: str, expected: str) -> None:
    c = pricing.cost(TokenCounts(input_tokens=tokens), price(input=per_million))
    assert str(c.input) == expected


def test_total_is_the_sum_of_the_rounded_parts() -> None:
    p = price(input="0.5", output="0.5")
    c = pricing.cost(TokenCounts(input_tokens=1, output_tokens=1), p)
    # exact cost is 0.000001; each half-up part is 0.000001
    assert (c.input, c.output, c.total) == (D("0.000001"), D("0.000001"), D("0.000002"))


def test_cache_write_5m_and_1h_use_their_own_prices() -> None:
    five = pricing.cost(TokenCounts(cache_write_5m_tokens=1_000_000), SONNET)
    hour = pricing.cost(TokenCounts(cache_write_1h_tokens=1_000_000), SONNET)
    assert (five.cache_write_5m, five.cache_write_1h, five.total) == (
        D("3.750000"),
        D("0.000000"),
        D("3.750000"),
    )
    assert (hour.cache_write_5m, hour.cache_write_1h, hour.total) == (
        D("0.000000"),
        D("6.000000"),
        D("6.000000"),
    )


def test_negative_token_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        pricing.cost(TokenCounts(output_tokens=-1), SONNET)


@given(
    counts=st.tuples(*[st.integers(0, 10**9)] * 5),
    per_million=st.decimals(min_value=0, max_value=1000, places=4),
)
def test_parts_are_within_half_a_micro_dollar_and_add_up(
    counts: tuple[int, int, int, int, int], per_million: Decimal
) -> None:
    p = price(*(["claude-x", "*"] + [str(per_million)] * 5))
    c = pricing.cost(TokenCounts(*counts), p)
    parts = [c.input, c.output, c.cache_write_5m, c.cache_write_1h, c.cache_read]
    for n, part in zip(counts, parts, strict=True):
        assert part.as_tuple().exponent == -6
        assert abs(part - D(n) * per_million / D(10**6)) <= D("0.0000005")
    assert c.total == sum(parts)


def _reference_total(counts: tuple[int, ...], per_million: Decimal) -> Decimal:
    # Each part exact in Decimal, then rounded half-up to six decimals, then summed.
    from decimal import ROUND_HALF_UP, Context

    ctx = Context(prec=60)
    parts = [
        ctx.multiply(D(n), per_million).scaleb(-6, ctx).quantize(D("0.000001"), ROUND_HALF_UP, ctx) for n in counts
    ]
    return sum(parts, D("0.000000"))


@given(
    counts=st.tuples(*[st.integers(0, 10**12)] * 5),
    per_million=st.decimals(min_value=0, max_value=100_000, places=6)
    | st.decimals(min_value=0, max_value=100, places=9),  # built in code: the Decimal path
)
def test_the_integer_arithmetic_gives_the_exact_decimal_result(
    counts: tuple[int, int, int, int, int], per_million: Decimal
) -> None:
    p = price(*(["claude-x", "*"] + [str(per_million)] * 5))
    micros = pricing.cost_micros(TokenCounts(*counts), pricing.Rate(p))
    assert pricing.usd(micros) == _reference_total(counts, per_million)
    assert pricing.cost(TokenCounts(*counts), p).total == pricing.usd(micros)
    assert str(pricing.usd(0)) == "0.000000"


def test_a_repeated_lookup_is_answered_from_the_memo_with_the_same_row() -> None:
    book = pricing.PriceBook([price(effective_date="2025-01-01"), price(input="2", effective_date="2025-06-01")])
    at = dt.datetime(2025, 5, 31, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=-2)))  # 1 June in UTC
    first = book.rate("claude-sonnet-4-5-20250929", "*", at)
    assert first is book.rate("claude-sonnet-4-5-20250929", "*", at)
    assert first is not None and first.price.input == D("2")
    assert book.lookup("claude-sonnet-4-5-20250929", "*", at - dt.timedelta(hours=2)) == price(
        effective_date="2025-01-01"
    )


# --- lookup -------------------------------------------------------------------------


def test_price_change_between_two_requests_leaves_the_first_snapshot_unchanged() -> None:
    old = price(effective_date="2025-01-01")
    new = price(input="2.50", output="12.50", effective_date="2025-06-01")
    book = pricing.PriceBook([new, old])
    model = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
    tokens = TokenCounts(input_tokens=1000, output_tokens=1000)

    first = book.lookup(model, "us-east-1", dt.datetime(2025, 5, 31, 23, 59, 59, tzinfo=UTC))
    assert first == old
    first_snapshot = pricing.snapshot(first)
    stored = json.loads(json.dumps(first_snapshot))  # as it sits in the usage row

    second = book.lookup(model, "us-east-1", dt.datetime(2025, 6, 1, tzinfo=UTC))
    assert second == new
    assert pricing.cost(tokens, first).total == D("0.018000")
    assert pricing.cost(tokens, second).total == D("0.015000")

    # a later edit of the table (a newer book) never rewrites the stored snapshot
    pricing.PriceBook([old, new, price(input="1", effective_date="2025-07-01")])
    assert stored == first_snapshot
    assert pricing.cost(tokens, pricing.from_snapshot(stored)).total == D("0.018000")


def test_effective_date_is_compared_in_utc() -> None:
    book = pricing.PriceBook([price(), price(input="2", effective_date="2025-06-01")])
    # 01:00 in Berlin on 1 June is still 31 May in UTC
    at = dt.datetime(2025, 6, 1, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    found = book.lookup("claude-sonnet-4-5", "us-east-1", at)
    assert found is not None and found.input == D("3")
    naive = book.lookup("claude-sonnet-4-5", "us-east-1", dt.datetime(2025, 6, 1))
    assert naive is not None and naive.input == D("2")


def test_no_price_before_the_first_effective_date_or_for_unknown_models() -> None:
    book = pricing.PriceBook([price(effective_date="2025-01-01")])
    assert book.lookup("claude-sonnet-4-5", "*", dt.datetime(2024, 12, 31, tzinfo=UTC)) is None
    assert book.lookup("claude-unknown-9", "*", dt.datetime(2025, 6, 1, tzinfo=UTC)) is None


def test_exact_region_beats_any_region() -> None:
    star = price()
    eu = price(region="eu-west-1", input="3.30", output="16.50")
    book = pricing.PriceBook([star, eu])
    at = dt.datetime(2025, 3, 1, tzinfo=UTC)
    model = "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert book.lookup(model, "eu-west-1", at) == eu
    assert book.lookup(model, "us-east-1", at) == star


def test_any_region_applies_while_the_exact_region_row_is_not_yet_in_force() -> None:
    star = price()
    eu = price(region="eu-west-1", input="3.30", effective_date="2025-06-01")
    book = pricing.PriceBook([star, eu])
    assert book.lookup("claude-sonnet-4-5", "eu-west-1", dt.datetime(2025, 3, 1)) == star
    assert book.lookup("claude-sonnet-4-5", "eu-west-1", dt.datetime(2025, 7, 1)) == eu


def test_price_book_rejects_two_rows_for_the_same_date() -> None:
    with pytest.raises(ValueError, match=r"claude-sonnet-4-5.*2025-01-01"):
        pricing.PriceBook([price(), price(input="4")])


# --- model ids ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "key"),
    [
        ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("us.anthropic.claude-opus-4-1-20250805-v1:0", "claude-opus-4-1"),
        ("anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku"),
        ("eu.anthropic.claude-3-7-sonnet-20250219-v1:0", "claude-3-7-sonnet"),
        ("apac.anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4"),
        ("us-gov.anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku"),
        ("anthropic.claude-3-haiku-20240307-v1:0:200k", "claude-3-haiku"),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
        ("global.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"),
        ("global.anthropic.claude-opus-4-5-20251101-v1:0", "claude-opus-4-5"),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-20250514-v1:0",
            "claude-opus-4",
        ),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5[1m]", "claude-sonnet-4-5"),
        ("claude-opus-4-0", "claude-opus-4"),
        ("claude-sonnet-4-0", "claude-sonnet-4"),
        ("  Claude-Opus-4-1-20250805 ", "claude-opus-4-1"),
    ],
)
def test_normalize_model(model_id: str, key: str) -> None:
    assert pricing.normalize_model(model_id) == key


# --- snapshots ----------------------------------------------------------------------


def test_snapshot_has_string_decimals_and_round_trips() -> None:
    p = price(input="3", cache_read="0.30")
    snap = pricing.snapshot(p)
    assert snap == {
        "model": "claude-sonnet-4-5",
        "region": "*",
        "input": "3",
        "output": "15",
        "cache_write_5m": "3.75",
        "cache_write_1h": "6",
        "cache_read": "0.30",
        "effective_date": "2025-01-01",
    }
    assert orjson.loads(orjson.dumps(snap)) == snap
    assert pricing.from_snapshot(snap) == p


def test_snapshot_never_uses_exponent_notation() -> None:
    snap = pricing.snapshot(price(output=str(D("1E+1")), cache_read="0.0000001"))
    assert (snap["output"], snap["cache_read"]) == ("10", "0.0000001")


# --- price files --------------------------------------------------------------------


def row(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "model": "claude-sonnet-4-5",
        "region": "*",
        "input": "3",
        "output": "15",
        "cache_write_5m": "3.75",
        "cache_write_1h": "6",
        "cache_read": "0.30",
        "effective_date": "2025-01-01",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def as_json(*rows: dict[str, object]) -> bytes:
    return json.dumps(list(rows)).encode()


CSV_HEADER = "model,region,input,output,cache_write_5m,cache_write_1h,cache_read,effective_date\n"


def test_load_rows_json_list_and_object_forms() -> None:
    rows = [row(), row(model="us.anthropic.claude-opus-4-1-20250805-v1:0", input=15)]
    listed = pricing.load_rows(as_json(*rows), "json")
    wrapped = pricing.load_rows(json.dumps({"source": "x", "prices": rows}).encode(), "json")
    assert listed == wrapped
    assert listed[0] == SONNET
    assert listed[1].model == "claude-opus-4-1"  # normalised on import
    assert listed[1].input == D("15")


def test_load_rows_json_numbers_are_exact_decimals() -> None:
    (p,) = pricing.load_rows(
        b'[{"model": "m", "region": "*", "input": 0.3, "output": 1.1,'
        b' "cache_write_5m": 0.375, "cache_write_1h": 6, "cache_read": 0.03,'
        b' "effective_date": "2025-01-01"}]',
        "json",
    )
    assert (p.input, p.output, p.cache_read) == (D("0.3"), D("1.1"), D("0.03"))


def test_load_rows_csv_with_byte_order_mark() -> None:
    data = (
        "\ufeff" + CSV_HEADER + "claude-sonnet-4-5,*,3,15,3.75,6,0.30,2025-01-01\n"
        "claude-sonnet-4-5,eu-west-1,3.30,16.50,4.125,6.60,0.33,2025-01-01\n"
    ).encode()
    rows = pricing.load_rows(data, "csv")
    assert rows[0] == SONNET
    assert (rows[1].region, rows[1].cache_write_5m) == ("eu-west-1", D("4.125"))


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([row(), row(output="-1")], r"row 2: field 'output': must not be negative"),
        ([row(cache_read=-0.01)], r"row 1: field 'cache_read': must not be negative"),
        ([row(effective_date="2025-13-01")], r"row 1: field 'effective_date': not a YYYY-MM-DD"),
        ([row(effective_date=20250101)], r"row 1: field 'effective_date': expected a YYYY"),
        ([row(), row(), row(cache_write_1h=None)], r"row 3: missing field 'cache_write_1h'"),
        ([row(model="")], r"row 1: missing field 'model'"),
        ([row(input="three")], r"row 1: field 'input': not a number"),
        ([row(input="NaN")], r"row 1: field 'input': must be a finite number"),
        ([row(input=True)], r"row 1: field 'input': expected a number"),
        ([row(region="mars")], r"row 1: field 'region': expected '\*' or an AWS region"),
        ([row(cache_write="1")], r"row 1: unknown field 'cache_write'"),
        (["claude"], r"row 1: expected an object"),
        ([row(), row(input="4")], r"row 2: duplicates row 1 \(model 'claude-sonnet-4-5'"),
    ],
)
def test_load_rows_json_errors_name_the_row_and_the_field(rows: list[object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pricing.load_rows(json.dumps(rows).encode(), "json")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "m,*,3,15,3.75,6,0.30,2025-01-01\nm,*,3,-15,3.75,6,0.30,2025-02-01\n",
            r"row 2 \(line 3\): field 'output': must not be negative",
        ),
        ("m,*,3,15,3.75,6,,2025-01-01\n", r"row 1 \(line 2\): missing field 'cache_read'"),
        ("m,*,3,15,3.75,6,0.30,01/02/2025\n", r"row 1 \(line 2\): field 'effective_date'"),
        ("m,*,3,15,3.75,6,0.30\n", r"row 1 \(line 2\): missing field 'effective_date'"),
        ("m,*,3,15,3.75,6,0.30,2025-01-01,extra\n", r"row 1 \(line 2\): more values"),
    ],
)
def test_load_rows_csv_errors_name_the_row_and_the_field(body: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pricing.load_rows((CSV_HEADER + body).encode(), "csv")


def test_load_rows_csv_header_missing_a_field() -> None:
    header = "model,region,input,output,cache_write_5m,cache_read,effective_date\n"
    with pytest.raises(ValueError, match=r"header \(line 1\): missing field 'cache_write_1h'"):
        pricing.load_rows(header.encode(), "csv")


def test_load_rows_rejects_bad_documents() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        pricing.load_rows(b"{", "json")
    with pytest.raises(ValueError, match="'prices'"):
        pricing.load_rows(b'{"source": "x"}', "json")
    with pytest.raises(ValueError, match="format 'yaml'"):
        pricing.load_rows(b"", "yaml")  # type: ignore[arg-type]


# --- the shipped defaults -----------------------------------------------------------

EXPECTED_DEFAULTS = {
    # model: (input, output, cache write 5m, cache write 1h, cache read)
    "claude-opus-4-5": ("5", "25", "6.25", "10", "0.50"),
    "claude-opus-4-1": ("15", "75", "18.75", "30", "1.50"),
    "claude-opus-4": ("15", "75", "18.75", "30", "1.50"),
    "claude-sonnet-4-5": ("3", "15", "3.75", "6", "0.30"),
    "claude-sonnet-4": ("3", "15", "3.75", "6", "0.30"),
    "claude-3-7-sonnet": ("3", "15", "3.75", "6", "0.30"),
    "claude-haiku-4-5": ("1", "5", "1.25", "2", "0.10"),
    "claude-3-5-haiku": ("0.80", "4", "1.00", "1.60", "0.08"),
}


def test_default_prices_load_and_cover_every_model_key_in_them() -> None:
    doc = json.loads(pricing.DEFAULT_PRICES_PATH.read_bytes())
    assert "review" in doc["source"]
    book = pricing.PriceBook.default()
    assert book.models() == set(EXPECTED_DEFAULTS)
    assert len(book) == len(doc["prices"])
    now = dt.datetime.now(UTC)
    for model, expected in EXPECTED_DEFAULTS.items():
        assert pricing.normalize_model(model) == model
        found = book.lookup(model, "us-west-2", now)
        assert found is not None, model
        got = (
            found.input,
            found.output,
            found.cache_write_5m,
            found.cache_write_1h,
            found.cache_read,
        )
        assert got == tuple(D(v) for v in expected), model
        assert (found.region, found.effective_date) == ("*", dt.date(2025, 1, 1))


def test_default_prices_apply_to_bedrock_ids() -> None:
    book = pricing.PriceBook.default()
    p = book.lookup(
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "us-east-1",
        dt.datetime(2025, 10, 1, tzinfo=UTC),
    )
    assert p is not None
    c = pricing.cost(TokenCounts(input_tokens=1234, cache_read_tokens=100_000), p)
    assert (c.input, c.cache_read, c.total) == (D("0.003702"), D("0.030000"), D("0.033702"))
