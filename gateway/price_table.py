"""The live price table: the shipped default prices overlaid with the operator's rows
from PostgreSQL, swapped in whole whenever the table changes (NOTIFY), so a running
gateway prices with an edit at once and never needs a restart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from decimal import Decimal
from typing import Any

import msgspec
import structlog

from gateway import audit, db, errors, paging, pricing

logger = structlog.get_logger("gateway.price_table")


def _row_price(row: Any) -> pricing.Price:
    return pricing.Price(
        model=row["model"],
        region=row["region"],
        input=row["input"],
        output=row["output"],
        cache_write_5m=row["cache_write_5m"],
        cache_write_1h=row["cache_write_1h"],
        cache_read=row["cache_read"],
        effective_date=row["effective_date"],
    )


async def load_book(database: db.Database) -> pricing.PriceBook:
    """Defaults, with any operator row for the same model, region and date winning."""
    rows = {(p.model, p.region, p.effective_date): p for p in pricing.default_rows()}
    for record in await database.fetch("list-prices"):
        price = _row_price(record)
        rows[(price.model, price.region, price.effective_date)] = price
    return pricing.PriceBook(rows.values())


class PriceRow(msgspec.Struct):
    """A price row as the faces show it (USD per million tokens; money as strings)."""

    model: str
    region: str
    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    effective_date: dt.date


class PriceInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model: str
    region: str = pricing.ANY_REGION
    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    effective_date: dt.date | None = None


class PriceReload(msgspec.Struct):
    rows: int


# pricing's row parser names the field in its message ("field 'input': …"); this turns
# that into the service error's field, so the file import and the single row share one rule.
_FIELD = re.compile(r"field '(\w+)'")


def make_price(spec: PriceInput) -> pricing.Price:
    """Validate one row with the same rules as a price file (default date: today)."""
    raw = {
        "model": spec.model,
        "region": spec.region,
        "input": spec.input,
        "output": spec.output,
        "cache_write_5m": spec.cache_write_5m,
        "cache_write_1h": spec.cache_write_1h,
        "cache_read": spec.cache_read,
        "effective_date": (spec.effective_date or dt.date.today()).isoformat(),
    }
    try:
        return pricing.parse_row(raw, "price")
    except ValueError as exc:
        match = _FIELD.search(str(exc))
        raise errors.ValidationFailed(match.group(1) if match else None, str(exc)) from None


def row_of(price: pricing.Price) -> PriceRow:
    return PriceRow(**dataclasses.asdict(price))


async def list_prices(
    database: db.Database, limit: int = paging.DEFAULT_LIMIT, offset: int = 0
) -> paging.Page[PriceRow]:
    paging.check(limit, offset)
    rows = (await load_book(database)).rows
    page = [row_of(p) for p in rows[offset : offset + limit]]
    return paging.Page(items=page, total=len(rows), limit=limit, offset=offset)


async def upsert(database: db.Database, actor: audit.Actor, prices: list[pricing.Price]) -> int:
    """Store price rows in one transaction (one audit row each); the NOTIFY makes every
    gateway price with them at once."""
    async with database.transaction() as conn:
        for p in prices:
            await conn.execute(
                db.q("upsert-price"),
                p.model,
                p.region,
                p.input,
                p.output,
                p.cache_write_5m,
                p.cache_write_1h,
                p.cache_read,
                p.effective_date,
            )
            await audit.record(
                conn, actor, "price.upsert", "price", f"{p.model}/{p.region}/{p.effective_date}", as_dict(p)
            )
    return len(prices)


def as_dict(price: pricing.Price) -> dict[str, Any]:
    return {
        k: (str(v) if isinstance(v, Decimal) else v.isoformat() if isinstance(v, dt.date) else v)
        for k, v in dataclasses.asdict(price).items()
    }


class PriceTable:
    """Holds the current PriceBook; `cost()` is what the request path calls."""

    __slots__ = ("_db", "book")

    def __init__(self, database: db.Database) -> None:
        self._db = database
        self.book = pricing.PriceBook.default()

    async def reload(self) -> None:
        try:
            self.book = await load_book(self._db)
        except Exception as exc:  # keep pricing with the last good table
            logger.warning("price_reload_failed", error=type(exc).__name__)

    async def reload_now(self) -> PriceReload:
        """The admin API's reload: re-read at once, failing loudly rather than keeping the old table."""
        self.book = await load_book(self._db)
        return PriceReload(rows=len(self.book))

    def cost(
        self, model_id: str, region: str, at: dt.datetime, tokens: pricing.TokenCounts
    ) -> tuple[Decimal, dict[str, str] | None]:
        price = self.book.lookup(model_id, region, at)
        if price is None:
            logger.warning("price_missing", model=model_id, region=region)
            return Decimal(0), None
        return pricing.cost(tokens, price).total, pricing.snapshot(price)
