"""The aiohttp application: routes, the error middleware, and every long-lived resource
(database, key cache and its listener, usage writer, upstream clients) in `cleanup_ctx`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import (
    circuit,
    dashboard,
    db,
    envelope,
    errors,
    keys,
    limits,
    log,
    metrics,
    model_map,
    price_table,
    quota,
    relay,
    upstream,
    usage,
)
from gateway.config import Config

logger = structlog.get_logger("gateway.server")

CONFIG = web.AppKey("config", Config)
DATABASE = web.AppKey("database", db.Database)
KEY_CACHE = web.AppKey("key_cache", keys.KeyCache)
WRITER = web.AppKey("usage_writer", usage.UsageWriter)
RELAY = web.AppKey("relay", relay.Relay)
COUNTERS = web.AppKey("counters", metrics.Counters)
DSN = web.AppKey("dsn", str)
EXPECTED_MIGRATIONS = web.AppKey("expected_migrations", frozenset)
CIRCUITS = web.AppKey("circuits", circuit.Circuits)
PRICES = web.AppKey("prices", price_table.PriceTable)
SECRETS = web.AppKey("secrets", envelope.SecretCache)
JOURNAL_DIR = web.AppKey("journal_dir", Path)
BUDGETS = web.AppKey("budgets", limits.Budgets)
QUOTAS = web.AppKey("quotas", quota.Quotas)
MODELS = web.AppKey("models", model_map.ModelMap)
KEYRING: web.AppKey[envelope.Keyring] = web.AppKey("keyring")


# --- resources ---------------------------------------------------------------------------


async def _cancel(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def log_flush_ctx(_app: web.Application) -> AsyncIterator[None]:
    """Buffered log output reaches stdout every 100 ms, and everything at shutdown."""

    async def flush_forever() -> None:
        while True:
            await asyncio.sleep(0.1)
            log.flush()

    # Exceptions nobody awaited reach the log as one JSON line, not a stderr traceback.
    asyncio.get_running_loop().set_exception_handler(log.loop_exception_handler)
    task = asyncio.create_task(flush_forever())
    yield
    await _cancel(task)
    log.flush()


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    dsn = await db.resolve_dsn(config)
    db.load_queries()  # a malformed sql/ file stops start-up here
    applied = await db.migrate_out_of_process(dsn)
    if applied:
        logger.info("migrations_applied", migrations=applied)
    database = await db.connect(config, dsn)
    app[DSN] = dsn
    app[DATABASE] = database
    app[EXPECTED_MIGRATIONS] = frozenset(db.migration_ids())
    recycler = asyncio.create_task(database.recycle_forever(config.db_pool_recycle))
    yield
    await _cancel(recycler)
    await database.close()


async def state_ctx(app: web.Application) -> AsyncIterator[None]:
    """Key cache, circuit states and prices: memory copies of PostgreSQL state, kept true
    by one LISTEN connection (and a periodic refresh behind it)."""
    config = app[CONFIG]
    database = app[DATABASE]
    secrets = envelope.SecretCache()
    hasher = keys.KeyHasher(keys.load_secret(config.key_hash_secret, config.data_path))
    # Dropping a key from the cache also drops its decrypted Bedrock key (rotate/revoke).
    cache = keys.KeyCache(
        database,
        hasher,
        config.key_cache_negative_seconds,
        on_evict=lambda key_id: secrets.invalidate(keys.bedrock_owner(key_id)),
    )
    circuits = circuit.Circuits(
        database,
        failures=config.circuit_failures,
        window=config.circuit_window_seconds,
        open_seconds=config.circuit_open_seconds,
    )
    prices = price_table.PriceTable(database)
    quotas = quota.Quotas(database, enabled=config.quota_routing, flush_seconds=config.quota_flush_seconds)
    app[QUOTAS] = quotas
    models = model_map.ModelMap(database)
    app[MODELS] = models
    app[KEY_CACHE] = cache
    app[CIRCUITS] = circuits
    app[PRICES] = prices
    app[SECRETS] = secrets
    app[KEYRING] = envelope.keyring_from_config(config)

    async def on_connect() -> None:
        cache.clear()
        await circuits.reload_all()
        await quotas.reload_all()
        await prices.reload()
        await models.reload()

    def on_prices(_payload: str) -> None:
        task = asyncio.get_running_loop().create_task(prices.reload())
        background.add(task)
        task.add_done_callback(background.discard)

    def on_models(_payload: str) -> None:
        task = asyncio.get_running_loop().create_task(models.reload())
        background.add(task)
        task.add_done_callback(background.discard)

    background: set[asyncio.Task[None]] = set()
    listening = asyncio.Event()
    listener = asyncio.create_task(
        db.listen_forever(
            app[DSN],
            {
                keys.NOTIFY_CHANNEL: cache.on_notify,
                "ccproxy_circuits": circuits.on_notify,
                "ccproxy_prices": on_prices,
                quota.NOTIFY_CHANNEL: quotas.on_notify,
                model_map.NOTIFY_CHANNEL: on_models,
            },
            on_connect,
            listening,
        )
    )
    refresher = asyncio.create_task(cache.refresh_forever(config.key_refresh_seconds))
    circuit_reloader = asyncio.create_task(circuits.reload_forever(config.key_refresh_seconds))
    quota_reloader = asyncio.create_task(quotas.reload_forever(config.key_refresh_seconds))
    quota_flusher = asyncio.create_task(quotas.flush_forever())
    # Serve only once revocations can reach us.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(listening.wait(), 10)
    yield
    await _cancel(listener, refresher, circuit_reloader, quota_reloader, quota_flusher)
    await circuits.drain()
    await quotas.drain()
    close = getattr(app[KEYRING], "close", None)
    if close is not None:
        await close()


async def _prune_minute_rollups(database: db.Database, days: int) -> None:
    """Minute rollups are kept `days` days (SPEC §5); every instance may run this, the
    DELETE is idempotent."""
    while True:
        try:
            await database.execute("delete-old-minute-rollups", days)
        except Exception as exc:  # try again next hour
            logger.warning("rollup_prune_failed", error=type(exc).__name__)
        await asyncio.sleep(3600)


async def usage_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    writer = usage.UsageWriter(
        app[DATABASE],
        batch_rows=config.usage_batch_rows,
        flush_ms=config.usage_flush_ms,
        queue_max=config.usage_queue_max,
        journal_dir=app[JOURNAL_DIR],
        report_tz=config.report_tz,
    )
    app[WRITER] = writer
    writer.start()
    pruner = asyncio.create_task(_prune_minute_rollups(app[DATABASE], config.minute_rollup_days))
    yield
    await _cancel(pruner)
    # Runs after in-flight requests finished (or the drain deadline passed): flush all.
    await writer.close()


async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=300)
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=config.plan_connect_timeout, connect=config.plan_connect_timeout
        ),
        auto_decompress=False,  # relay bytes as they came; never inflate and re-send
        # One session serves every developer: upstream cookies must never be stored and
        # sent with someone else's request (and skipping the jar saves work per request).
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )
    plan = upstream.PlanClient(
        config.plan_base_url,
        connect_timeout=config.plan_connect_timeout,
        proxy=config.proxy_for(config.plan_base_url),
    )
    app[COUNTERS] = metrics.Counters()
    budgets = limits.Budgets(
        app[DATABASE],
        report_tz=config.report_tz,
        refresh=config.budget_refresh_seconds,
        webhook_url=config.alert_webhook_url,
        session=session,
    )
    writer = app[WRITER]
    with contextlib.suppress(Exception):  # a database hiccup at start-up: the refresh retries
        await budgets.refresh()
    refresher = asyncio.create_task(budgets.refresh_forever(writer.pending_events))
    app[BUDGETS] = budgets
    app[RELAY] = relay.Relay(
        config,
        app[KEY_CACHE],
        app[WRITER],
        session,
        plan,
        app[COUNTERS],
        app[CIRCUITS],
        app[PRICES],
        app[KEYRING],
        app[SECRETS],
        budgets,
        app[QUOTAS],
        models=app[MODELS],
    )
    yield
    await _cancel(refresher)
    await budgets.drain()
    await plan.close()
    await session.close()


# --- handlers ------------------------------------------------------------------------------


def _path_handler(endpoint: str, upstream_path: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await request.app[RELAY].handle(
            request, endpoint, upstream_path, request.match_info["key"], org_mode=False
        )

    return handler


def _org_key(request: web.Request) -> str:
    """Org mode: the access key arrives as `x-api-key: ak_…` or `Authorization: Bearer ak_…`."""
    api_key = request.headers.get("x-api-key", "")
    if api_key.startswith(keys.KEY_PREFIX):
        return api_key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.startswith(keys.KEY_PREFIX):
        return token.strip()
    return ""


async def probe_path(request: web.Request) -> web.StreamResponse:
    """HEAD on the base URL `/ak/{key}` (Claude Code probes it at start-up): 200 with no
    upstream call; an unknown key still gets 404."""
    return await request.app[RELAY].probe(request.match_info["key"])


async def probe_org(request: web.Request) -> web.StreamResponse:
    """HEAD / in org mode: the key (if the probe carries one) is checked the same way."""
    key = _org_key(request)
    if not key and not request.headers.get("x-api-key") and not request.headers.get("authorization"):
        return web.Response(status=200)  # a bare liveness probe names no key to check
    return await request.app[RELAY].probe(key)


def _org_handler(endpoint: str, upstream_path: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await request.app[RELAY].handle(request, endpoint, upstream_path, _org_key(request), org_mode=True)

    return handler


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    try:
        rows = await asyncio.wait_for(request.app[DATABASE].fetch("list-applied-migrations"), 5)
    except Exception as exc:  # any failure to reach the database means not ready
        return web.json_response({"status": "unavailable", "database": type(exc).__name__}, status=503)
    missing = sorted(request.app[EXPECTED_MIGRATIONS] - {r["migration_id"] for r in rows})
    if missing:
        return web.json_response({"status": "schema_outdated", "missing": missing}, status=503)
    return web.json_response({"status": "ready"})


async def prometheus(request: web.Request) -> web.Response:
    gauges = {
        "ccproxy_usage_queued": float(request.app[WRITER].queued),
        "ccproxy_key_cache_entries": float(len(request.app[KEY_CACHE])),
        "ccproxy_circuits_open": float(request.app[CIRCUITS].open_count()),
        **request.app[QUOTAS].gauges(time.time()),
    }
    counters = request.app[COUNTERS]
    counters.circuit_open = request.app[CIRCUITS].opened_total
    return web.Response(text=counters.render(gauges), content_type="text/plain")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every error the gateway produces in Anthropic's shape (SPEC §2)."""
    if len(request.match_info.apps) > 1:
        # A sub-application (the admin API, the dashboard) is not the relay: it renders its
        # own answers and errors.
        return await handler(request)
    try:
        return await handler(request)
    except errors.GatewayError as exc:
        return relay.error_response(exc, usage.new_request_id())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        mapped: errors.GatewayError
        if exc.status == 404:
            mapped = errors.NotFound("Not found")
        elif exc.status == 405:
            mapped = errors.InvalidRequest(f"Method {request.method} is not allowed for {request.path}")
        elif exc.status == 413:
            mapped = errors.RequestTooLarge("Request body is too large.")
        else:
            mapped = errors.InvalidRequest(exc.reason)
        response = relay.error_response(mapped, usage.new_request_id())
        response.set_status(exc.status)
        return response


ROUTES = (
    ("POST", "messages", "/v1/messages"),
    ("POST", "count_tokens", "/v1/messages/count_tokens"),
    ("GET", "models", "/v1/models"),
)


def create_app(config: Config, *, journal_dir: Path | None = None) -> web.Application:
    """The gateway. `journal_dir` is this process's usage journal (one writer per
    directory); by default `<data dir>/journal/w0`."""
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[error_middleware])
    app[CONFIG] = config
    app[JOURNAL_DIR] = journal_dir or config.data_path / "journal" / "w0"
    app.cleanup_ctx.extend([log_flush_ctx, database_ctx, state_ctx, usage_ctx, upstream_ctx])
    for method, endpoint, path in ROUTES:
        app.router.add_route(method, "/ak/{key}" + path, _path_handler(endpoint, path))
        app.router.add_route(method, path, _org_handler(endpoint, path))
    app.router.add_route("HEAD", "/ak/{key}", probe_path)
    app.router.add_route("HEAD", "/ak/{key}/", probe_path)
    app.router.add_route("HEAD", "/", probe_org)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", prometheus)
    # The admin API: its own sub-app (JWT, its own error shape) and its jobs (the env
    # bootstrap admin, the revoker ending rotated keys' grace periods), after the state.
    from gateway.admin import app as admin_app  # it imports this module's app keys

    app.cleanup_ctx.append(admin_app.jobs_ctx)
    app.add_subapp("/admin", admin_app.create(config))
    dashboard.mount(app)
    return app
