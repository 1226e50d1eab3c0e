"""The live price table: the shipped default prices overlaid with the operator's rows
from PostgreSQL, swapped in whole whenever the table changes (NOTIFY), so a running
gateway prices with an edit at once and never needs a restart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

import structlog

from gateway import db, ledger, pricing

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
        provider=row["provider"],
    )


async def load_book(database: db.Database) -> pricing.PriceBook:
    """Defaults, with any operator row for the same provider, model, region and date winning."""
    rows = {(p.provider, p.model, p.region, p.effective_date): p for p in pricing.default_rows()}
    for record in await database.fetch("list-prices"):
        price = _row_price(record)
        rows[(price.provider, price.model, price.region, price.effective_date)] = price
    return pricing.PriceBook(rows.values())


async def upsert(database: db.Database, prices: list[pricing.Price]) -> int:
    async with database.acquire() as conn, conn.transaction():
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
                p.provider,
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
            book = await load_book(self._db)
            await ledger.register_book(self._db, book)  # before any row is priced with it
            self.book = book
        except Exception as exc:  # keep pricing with the last good table
            logger.warning("price_reload_failed", error=type(exc).__name__)

    def lookup(self, model_id: str, region: str, at: dt.datetime, provider: str) -> pricing.Price | None:
        return self.book.lookup(model_id, region, at, provider)

    def cost(
        self, model_id: str, region: str, at: dt.datetime, tokens: pricing.TokenCounts
    ) -> tuple[Decimal, dict[str, str] | None]:
        price = self.book.lookup(model_id, region, at)
        if price is None:
            logger.warning("price_missing", model=model_id, region=region)
            return Decimal(0), None
        return pricing.cost(tokens, price).total, pricing.snapshot(price)
