"""/admin/pricing: the price table; upsert a row; reload now."""

from __future__ import annotations

from aiohttp import web

from gateway import price_table, server
from gateway.admin import http


async def list_(request: web.Request) -> web.Response:
    limit, offset = http.page_args(request)
    return http.json(await price_table.list_prices(request.config_dict[server.DATABASE], limit, offset))


async def upsert(request: web.Request) -> web.Response:
    spec = await http.body(request, price_table.PriceInput)
    price = price_table.make_price(spec)
    await price_table.upsert(request.config_dict[server.DATABASE], http.actor(request), [price])
    return http.json(price_table.row_of(price))


async def reload(request: web.Request) -> web.Response:
    return http.json(await request.config_dict[server.PRICES].reload_now())


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/pricing", list_)
    r.add_put("/pricing", upsert)
    r.add_post("/pricing/reload", reload)
