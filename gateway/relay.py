"""The request path: identify the key, relay to the plan, meter, record, log.

Hot-path rules (ARCHITECTURE.md): the request body goes upstream as the bytes that came
in; each upstream chunk is written to the client as the same bytes object; the SSE
scanner decodes only the events that carry usage; the usage event is appended to an
in-memory batch; nothing waits for the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import msgspec
import structlog
from aiohttp import web
from yarl import URL

from gateway import errors, keys, log, metrics, sse, usage
from gateway.config import Config

logger = structlog.get_logger("gateway.relay")

ANTHROPIC_VERSION = "2023-06-01"
# Request headers passed to the plan (SPEC §2); everything else, hop-by-hop headers
# included, stays here. The plan credential is handled separately.
FORWARD_REQUEST = frozenset({"anthropic-version", "anthropic-beta", "content-type", "accept", "user-agent"})
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key"})
# Response headers relayed to the client (SPEC §2).
RELAY_RESPONSE = frozenset({"content-type", "request-id", "retry-after"})

SESSION_HEADER = "x-claude-code-session-id"


class Envelope(msgspec.Struct):
    """The only request fields the gateway reads; the rest of the body is never decoded."""

    model: str | None = None
    stream: bool = False


_decode_envelope = msgspec.json.Decoder(Envelope).decode


def classify(status: int, body: bytes | None) -> str | None:
    """SPEC §3's plan outcome classes for a response; None for a success."""
    if status == 429:
        text = (body or b"").lower()
        return "usage_limit" if b"usage limit" in text or b"usage_limit" in text else "rate_limit"
    if status >= 500 or status == 529:
        return "server_error"
    if status >= 400:
        return "client_error"
    return None


class Exchange:
    """Everything one request accumulates for its usage event and log line."""

    __slots__ = (
        "ctx",
        "endpoint",
        "error_class",
        "fallback_state",
        "is_fallback",
        "model",
        "provider",
        "request_id",
        "session_id",
        "started",
        "status",
        "stream",
        "ttfb",
        "upstream_model",
        "usage",
    )

    def __init__(self, request_id: str, endpoint: str, started: float) -> None:
        self.request_id = request_id
        self.endpoint = endpoint
        self.started = started
        self.ctx: keys.KeyContext | None = None
        self.provider = "none"
        self.is_fallback = False
        self.fallback_state: str | None = None
        self.model: str | None = None
        self.upstream_model: str | None = None
        self.status = 0
        self.error_class: str | None = None
        self.stream = False
        self.ttfb: float | None = None
        self.usage: sse.UsageCounts | None = None
        self.session_id: str | None = None


class Relay:
    """Owns the shared upstream session and turns requests into relayed answers."""

    def __init__(
        self,
        config: Config,
        key_cache: keys.KeyCache,
        writer: usage.UsageWriter,
        session: aiohttp.ClientSession,
        counters: metrics.Counters,
    ) -> None:
        self.config = config
        self.keys = key_cache
        self.writer = writer
        self.session = session
        self.counters = counters
        self._plan_base = config.plan_base_url
        self._plan_key = config.plan_api_key
        self._ping_interval = config.ping_interval

    # --- entry points ---------------------------------------------------------------

    async def handle(
        self, request: web.Request, endpoint: str, upstream_path: str, key: str, org_mode: bool
    ) -> web.StreamResponse:
        started = time.perf_counter()
        ex = Exchange(usage.new_request_id(), endpoint, started)
        ex.session_id = request.headers.get(SESSION_HEADER)
        try:
            ex.ctx = await self.keys.lookup(key)
            return await self._relay(request, ex, upstream_path, org_mode)
        except errors.GatewayError as exc:
            ex.status = exc.status
            ex.error_class = ex.error_class or exc.error_type
            return error_response(exc, ex.request_id)
        except asyncio.CancelledError:
            ex.error_class = ex.error_class or "client_disconnected"
            raise
        finally:
            self._finish(ex, key)

    # --- the plan path ----------------------------------------------------------------

    async def _relay(
        self, request: web.Request, ex: Exchange, upstream_path: str, org_mode: bool
    ) -> web.StreamResponse:
        body: bytes | None = None
        if request.method == "POST":
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise errors.RequestTooLarge(
                    f"Request body exceeds the maximum of {self.config.max_body_bytes} bytes."
                ) from None
            try:
                envelope = _decode_envelope(body)
            except msgspec.ValidationError as exc:
                raise errors.InvalidRequest(f"Invalid request body: {exc}") from None
            except msgspec.DecodeError:
                raise errors.InvalidRequest("Request body is not valid JSON.") from None
            ex.model = envelope.model
            ex.stream = envelope.stream and ex.endpoint == "messages"

        headers = self._upstream_headers(request, org_mode)
        query = request.rel_url.raw_query_string
        url = URL(self._plan_base + upstream_path + ("?" + query if query else ""), encoded=True)
        ex.provider = "plan"
        first_byte_timeout = self.config.plan_first_byte_timeout if ex.stream else self.config.plan_nonstream_timeout
        try:
            async with asyncio.timeout(first_byte_timeout):
                upstream = await self.session.request(request.method, url, data=body, headers=headers)
        except TimeoutError:
            ex.error_class = "timeout"
            raise errors.UpstreamUnavailable("The upstream API did not answer in time.") from None
        except aiohttp.ClientError:
            ex.error_class = "network_error"
            raise errors.UpstreamUnavailable("The upstream API could not be reached.") from None

        try:
            ex.status = upstream.status
            content_type = upstream.headers.get("content-type", "")
            if ex.stream and upstream.status == 200 and content_type.startswith("text/event-stream"):
                return await self._relay_stream(request, ex, upstream)
            return await self._relay_whole(ex, upstream)
        finally:
            upstream.release()

    async def _relay_whole(self, ex: Exchange, upstream: aiohttp.ClientResponse) -> web.Response:
        try:
            payload = await upstream.read()
        except (aiohttp.ClientError, TimeoutError):
            ex.error_class = "network_error"
            raise errors.UpstreamUnavailable("The upstream API closed the connection mid-answer.") from None
        status = upstream.status
        ex.error_class = classify(status, payload)
        if status == 200 and ex.endpoint == "messages":
            counts = sse.UsageCounts()
            if counts.observe_message(payload):
                ex.usage = counts
                ex.upstream_model = counts.model
            else:
                ex.error_class = "server_error"
        ex.ttfb = time.perf_counter()
        return web.Response(status=status, body=payload, headers=self._client_headers(upstream, ex))

    async def _relay_stream(
        self, request: web.Request, ex: Exchange, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        headers = self._client_headers(upstream, ex)
        headers["Cache-Control"] = "no-cache"
        headers["X-Accel-Buffering"] = "no"
        response = web.StreamResponse(status=upstream.status, headers=headers)
        await response.prepare(request)
        scanner = sse.UsageScanner()
        ex.usage = scanner.counts
        pinger = _Pinger(response, scanner, self._ping_interval)
        write = response.write
        feed = scanner.feed
        read = upstream.content.readany
        try:
            chunk = await read()
            ex.ttfb = time.perf_counter()
            while chunk:
                pinger.last = time.monotonic()
                feed(chunk)
                await write(chunk)
                chunk = await read()
            if not scanner.counts.seen_stop and scanner.counts.error_type is None:
                ex.error_class = "stream_incomplete"
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, TimeoutError):
            # The plan died mid-stream: tell the client in-band, as Anthropic does.
            ex.error_class = "network_error"
            if scanner.at_event_boundary:
                await write(
                    b'event: error\ndata: {"type":"error","error":{"type":"api_error",'
                    b'"message":"The upstream connection was lost mid-stream."}}\n\n'
                )
        except ConnectionResetError:
            ex.error_class = "client_disconnected"
            upstream.close()
            return response
        finally:
            pinger.stop()
            ex.upstream_model = scanner.counts.model
            if scanner.counts.error_type is not None:
                ex.error_class = scanner.counts.error_type
        try:
            await response.write_eof()
        except ConnectionResetError:
            ex.error_class = "client_disconnected"
        return response

    # --- headers --------------------------------------------------------------------------

    def _upstream_headers(self, request: web.Request, org_mode: bool) -> dict[str, str]:
        out: dict[str, str] = {}
        credential = False
        for name, value in request.headers.items():
            lname = name.lower()
            if lname in FORWARD_REQUEST or lname.startswith("x-stainless-"):
                out[lname] = value
            elif lname in CREDENTIAL_HEADERS and not org_mode:
                # Path mode: the developer's own plan credential goes through unchanged.
                out[lname] = value
                credential = True
        if not credential and self._plan_key:
            out["x-api-key"] = self._plan_key
        if "anthropic-version" not in out:
            out["anthropic-version"] = ANTHROPIC_VERSION
        if request.method == "POST" and "content-type" not in out:
            out["content-type"] = "application/json"
        return out

    @staticmethod
    def _client_headers(upstream: aiohttp.ClientResponse, ex: Exchange) -> dict[str, str]:
        out = {
            name: value
            for name, value in upstream.headers.items()
            if (lname := name.lower()) in RELAY_RESPONSE or lname.startswith("anthropic-ratelimit-")
        }
        out["x-ccproxy-request-id"] = ex.request_id
        out["x-ccproxy-provider"] = ex.provider
        if ex.fallback_state is not None:
            out["x-ccproxy-fallback"] = ex.fallback_state
        return out

    # --- the end of every request ------------------------------------------------------------

    def _finish(self, ex: Exchange, key: str) -> None:
        ended = time.perf_counter()
        latency_ms = (ended - ex.started) * 1000
        ttfb_ms = (ex.ttfb - ex.started) * 1000 if ex.ttfb is not None else None
        counts = ex.usage
        ctx = ex.ctx
        status = ex.status or 499  # nothing was sent: the client went away first
        if ctx is not None:
            event = usage.UsageEvent(
                request_id=ex.request_id,
                created_at=usage.now(),
                user_id=ctx.user_id,
                access_key_id=ctx.key_id,
                endpoint=ex.endpoint,
                provider=ex.provider,
                is_fallback=ex.is_fallback,
                model=ex.model,
                upstream_model=ex.upstream_model,
                status=status,
                error_class=ex.error_class,
                stream=ex.stream,
                latency_ms=latency_ms,
                ttfb_ms=ttfb_ms,
                session_id=ex.session_id,
            )
            if counts is not None:
                event.input_tokens = counts.input_tokens
                event.output_tokens = counts.output_tokens
                event.cache_creation_input_tokens = counts.cache_creation
                event.cache_creation_5m_tokens = counts.cache_5m
                event.cache_creation_1h_tokens = counts.cache_1h
                event.cache_read_input_tokens = counts.cache_read
            self.writer.add(event)
        is_error = status >= 500 or ex.error_class in ("network_error", "timeout", "server_error")
        self.counters.observe(ex.provider, status, latency_ms, ex.is_fallback, is_error)
        logger.info(
            "request_completed",
            request_id=ex.request_id,
            key_prefix=ctx.prefix + "…" if ctx is not None else keys.mask(key),
            user=ctx.user_name if ctx is not None else None,
            endpoint=ex.endpoint,
            provider_attempted="plan" if ex.provider != "none" else None,
            provider=ex.provider,
            fallback=ex.is_fallback,
            status=status,
            error_class=ex.error_class,
            model=ex.model,
            upstream_model=ex.upstream_model,
            stream=ex.stream,
            input_tokens=counts.input_tokens if counts else 0,
            output_tokens=counts.output_tokens if counts else 0,
            cache_creation_input_tokens=counts.cache_creation if counts else 0,
            cache_read_input_tokens=counts.cache_read if counts else 0,
            cost_usd="0",
            latency_ms=round(latency_ms, 3),
            ttfb_ms=round(ttfb_ms, 3) if ttfb_ms is not None else None,
            session_id=ex.session_id,
            **log.emf(
                log.REQUEST_METRICS,
                {
                    "RequestCount": 1,
                    "RequestLatency": round(latency_ms, 3),
                    "ErrorCount": int(is_error),
                    "FallbackCount": int(ex.is_fallback),
                    "BedrockTokensUsed": 0,
                    "BedrockCost": 0.0,
                },
            ),
        )


class _Pinger:
    """Sends an SSE `ping` when the upstream has been silent for `interval` seconds.

    One timer per stream that re-arms itself from the last activity time, so the relay
    loop pays only for storing a timestamp per chunk. A ping is written only at an event
    boundary, so it can never land inside a half-relayed event.
    """

    __slots__ = ("_handle", "_interval", "_response", "_scanner", "_tasks", "last")

    def __init__(self, response: web.StreamResponse, scanner: sse.UsageScanner, interval: float) -> None:
        self._response = response
        self._scanner = scanner
        self._interval = interval
        self._tasks: set[asyncio.Task[None]] = set()
        self.last = time.monotonic()
        self._handle: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(interval, self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        due = self.last + self._interval
        loop = asyncio.get_running_loop()
        if now >= due and self._scanner.at_event_boundary:
            self.last = now
            task = loop.create_task(self._ping())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            due = now + self._interval
        elif now >= due:
            due = now + min(self._interval, 1.0)  # mid-event: look again soon
        self._handle = loop.call_at(loop.time() + (due - now), self._tick)

    async def _ping(self) -> None:
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await self._response.write(sse.PING)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def error_response(exc: errors.GatewayError, request_id: str) -> web.Response:
    headers = {"x-ccproxy-request-id": request_id, **exc.headers}
    return web.Response(status=exc.status, body=exc.body(request_id), content_type="application/json", headers=headers)
