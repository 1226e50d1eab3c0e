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
from collections.abc import Callable
from decimal import Decimal

import aiohttp
import msgspec
import structlog
from aiohttp import web

from gateway import bedrock, circuit, envelope, errors, keys, limits, log, metrics, price_table, pricing, sse, usage
from gateway.config import Config
from gateway.upstream import PlanClient, PlanResponse, UpstreamError

logger = structlog.get_logger("gateway.relay")

ANTHROPIC_VERSION = "2023-06-01"
# Request headers passed to the plan (SPEC §2); everything else, hop-by-hop headers
# included, stays here. The plan credential is handled separately.
FORWARD_REQUEST = frozenset({"anthropic-version", "anthropic-beta", "content-type", "accept", "user-agent"})
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key"})
# Response headers relayed to the client (SPEC §2).
RELAY_RESPONSE = frozenset({"content-type", "request-id", "retry-after"})

SESSION_HEADER = "x-claude-code-session-id"
_USAGE_EVENTS = frozenset({b"message_start", b"message_delta", b"error", b"message_stop"})


_ZERO = Decimal(0)
_ERROR_CLASSES = frozenset({"network_error", "timeout", "server_error", "api_error", "overloaded_error"})


def _too_large(limit: int) -> errors.RequestTooLarge:
    return errors.RequestTooLarge(f"Request body exceeds the maximum of {limit} bytes.")


def _always() -> bool:
    return True


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
        "plan_outcome",
        "provider",
        "region",
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
        self.plan_outcome: str | None = None  # SPEC §3 class of the plan's answer, if it failed
        self.region: str | None = None
        self.model: str | None = None
        self.upstream_model: str | None = None
        self.status = 0
        self.error_class: str | None = None
        self.stream = False
        self.ttfb: float | None = None
        self.usage: sse.UsageCounts | None = None
        self.session_id: str | None = None


class Relay:
    """Turns requests into relayed answers: the plan through `PlanClient`, Bedrock through
    the shared aiohttp session."""

    def __init__(
        self,
        config: Config,
        key_cache: keys.KeyCache,
        writer: usage.UsageWriter,
        session: aiohttp.ClientSession,
        plan: PlanClient,
        counters: metrics.Counters,
        circuits: circuit.Circuits,
        prices: price_table.PriceTable,
        keyring: envelope.Keyring,
        secrets: envelope.SecretCache,
        budgets: limits.Budgets,
    ) -> None:
        self.config = config
        self.keys = key_cache
        self.writer = writer
        self.session = session  # Bedrock and webhooks
        self.plan = plan
        self.counters = counters
        self.circuits = circuits
        self.prices = prices
        self.keyring = keyring
        self.secrets = secrets
        self.budgets = budgets
        self.rate = limits.RateLimiter()
        self.sigv4 = bedrock.SigV4Auth()  # the deployment's default AWS credential chain
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
            response = error_response(exc, ex.request_id)
            if ex.provider != "none":
                response.headers["x-ccproxy-provider"] = ex.provider  # which upstream failed
            return response
        except asyncio.CancelledError:
            ex.error_class = ex.error_class or "client_disconnected"
            raise
        finally:
            self._finish(ex, key)

    # --- routing: circuit, plan, fallback ----------------------------------------------------

    async def _relay(
        self, request: web.Request, ex: Exchange, upstream_path: str, org_mode: bool
    ) -> web.StreamResponse:
        ctx = ex.ctx
        assert ctx is not None
        self.rate.check(ctx.key_id, ctx.rpm_limit, time.monotonic())
        body = await self._read_body(request, ex) if request.method == "POST" else None
        limits.check_model(ctx, ex.model)
        probing = False
        if ex.endpoint != "models":
            route = self.circuits.route(ctx.key_id, time.time())
            if route == circuit.PROBE_DUE:
                probing = await self.circuits.claim_probe(ctx.key_id)
            if route != circuit.PLAN and not probing:
                return await self._circuit_open(request, ex, body)

        ex.provider = "plan"
        try:
            upstream = await self._plan_request(request, ex, upstream_path, org_mode, body)
        except errors.UpstreamUnavailable as exc:
            # timeout / network_error: nothing reached the client yet, so fall back.
            return await self._plan_failed(request, ex, body, probing, None, exc)

        try:
            ex.status = upstream.status
            if ex.stream and upstream.status == 200 and upstream.content_type.startswith("text/event-stream"):
                if probing:
                    self.circuits.record_probe(ctx.key_id, True, None)
                body = None  # the plan is answering: no fallback can need the body now
                return await self._relay_stream(request, ex, upstream)
            try:
                payload = await upstream.read()
            except (UpstreamError, TimeoutError):
                ex.plan_outcome = "network_error"
                lost = errors.UpstreamUnavailable("The upstream API closed the connection mid-answer.")
                return await self._plan_failed(request, ex, body, probing, None, lost)
        finally:
            upstream.release()

        reply = self._plan_reply(ex, upstream, payload)
        outcome = ex.plan_outcome
        if outcome is None or outcome == "client_error":
            # Success, or the caller's own mistake: relayed unchanged, never a fallback.
            # Either way the plan answered, so a probe closes the circuit.
            if probing:
                self.circuits.record_probe(ctx.key_id, True, None)
            return reply
        return await self._plan_failed(request, ex, body, probing, reply, None)

    async def _read_body(self, request: web.Request, ex: Exchange) -> bytes:
        # Read from the stream rather than `request.read()`, which keeps a second copy of
        # the body on the request for its whole life: 50 KB per open Claude Code stream.
        limit = self.config.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise _too_large(limit)  # without reading it
        read = request.content.readany
        chunks = []
        size = 0
        while chunk := await read():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            envelope = _decode_envelope(body)
        except msgspec.ValidationError as exc:
            raise errors.InvalidRequest(f"Invalid request body: {exc}") from None
        except msgspec.DecodeError:
            raise errors.InvalidRequest("Request body is not valid JSON.") from None
        ex.model = envelope.model
        ex.stream = envelope.stream and ex.endpoint == "messages"
        return body

    async def _plan_request(
        self, request: web.Request, ex: Exchange, upstream_path: str, org_mode: bool, body: bytes | None
    ) -> PlanResponse:
        headers = self._upstream_headers(request, org_mode)
        query = request.rel_url.raw_query_string
        target = upstream_path + "?" + query if query else upstream_path
        first_byte_timeout = self.config.plan_first_byte_timeout if ex.stream else self.config.plan_nonstream_timeout
        try:
            return await self.plan.request(request.method, target, headers, body, first_byte_timeout)
        except TimeoutError:
            ex.plan_outcome = "timeout"
            raise errors.UpstreamUnavailable("The upstream API did not answer in time.") from None
        except UpstreamError:
            ex.plan_outcome = "network_error"
            raise errors.UpstreamUnavailable("The upstream API could not be reached.") from None

    def _plan_reply(self, ex: Exchange, upstream: PlanResponse, payload: bytes) -> web.Response:
        """The plan's whole answer, classified (SPEC §3) and ready to relay unchanged."""
        status = upstream.status
        ex.plan_outcome = classify(status, payload)
        if status == 200 and ex.endpoint == "messages":
            counts = sse.UsageCounts()
            if counts.observe_message(payload):
                ex.usage = counts
                ex.upstream_model = counts.model
            else:
                ex.plan_outcome = "server_error"  # a 200 whose JSON is invalid
        ex.error_class = ex.plan_outcome
        ex.ttfb = time.perf_counter()
        return web.Response(status=status, body=payload, headers=self._client_headers(upstream, ex))

    async def _plan_failed(
        self,
        request: web.Request,
        ex: Exchange,
        body: bytes | None,
        probing: bool,
        reply: web.Response | None,
        exc: errors.GatewayError | None,
    ) -> web.StreamResponse:
        """The plan failed in a way that falls back: count it, then Bedrock if the key has it."""
        ctx = ex.ctx
        assert ctx is not None and ex.plan_outcome is not None
        if probing:
            self.circuits.record_probe(ctx.key_id, False, ex.plan_outcome)
        else:
            self.circuits.record_failure(ctx.key_id, ex.plan_outcome)
        auth = await self._bedrock_auth(ctx) if ex.endpoint != "models" else None
        if auth is None:
            # No fallback: the plan's own error goes back unchanged; Claude Code's recovery
            # reads its wording (SPEC §3).
            ex.fallback_state = "unavailable"
            if reply is not None:
                reply.headers["x-ccproxy-fallback"] = "unavailable"
                return reply
            assert exc is not None
            ex.error_class = ex.plan_outcome
            exc.headers["x-ccproxy-fallback"] = "unavailable"
            raise exc
        return await self._bedrock(request, ex, body or b"", auth)

    async def _circuit_open(self, request: web.Request, ex: Exchange, body: bytes | None) -> web.StreamResponse:
        ctx = ex.ctx
        assert ctx is not None
        ex.plan_outcome = "circuit_open"
        auth = await self._bedrock_auth(ctx)
        if auth is None:
            ex.fallback_state = "unavailable"
            raise errors.ServiceUnavailable(
                "The plan is failing for this key and no Bedrock fallback is configured; try again later.",
                headers={
                    "retry-after": str(self.circuits.retry_after(ctx.key_id, time.time())),
                    "x-ccproxy-fallback": "unavailable",
                },
            )
        return await self._bedrock(request, ex, body or b"", auth)

    # --- the Bedrock path -----------------------------------------------------------------------

    async def _bedrock_auth(self, ctx: keys.KeyContext) -> bedrock.Auth | None:
        if ctx.bedrock_key_blob is not None:
            owner = keys.bedrock_owner(ctx.key_id)
            try:
                secret = await self.secrets.unsealed(self.keyring, ctx.bedrock_key_blob, owner)
            except Exception as exc:  # a key we cannot open is no fallback; say so loudly
                logger.error("bedrock_key_unreadable", access_key_id=ctx.key_id, error=type(exc).__name__)
                return None
            return bedrock.BearerAuth(secret.decode())
        if ctx.bedrock_default_credentials:
            return self.sigv4
        return None

    async def _bedrock(self, request: web.Request, ex: Exchange, raw: bytes, auth: bedrock.Auth) -> web.StreamResponse:
        ctx = ex.ctx
        assert ctx is not None
        ex.provider = "bedrock"
        ex.is_fallback = True
        ex.error_class = None
        ex.usage = None
        config = self.config
        region = ctx.bedrock_region or config.bedrock_default_region
        model_id = bedrock.resolve_model(ex.model or "", ctx.bedrock_model, config)
        ex.region = region
        ex.upstream_model = model_id
        body = bedrock.prepare_body(raw, request.headers.get("anthropic-beta"), config)
        base_url = bedrock.endpoint(region, config)
        headers = {"x-ccproxy-request-id": ex.request_id, "x-ccproxy-provider": "bedrock", "request-id": ex.request_id}
        if ex.endpoint == "count_tokens":  # free on Bedrock too: no budget check
            payload = await bedrock.count_tokens(
                self.session,
                base_url=base_url,
                model_id=model_id,
                body=body,
                auth=auth,
                region=region,
                timeout=config.bedrock_timeout,
            )
            ex.status = 200
            ex.ttfb = time.perf_counter()
            return web.Response(body=payload, content_type="application/json", headers=headers)

        try:
            self.budgets.check(ctx)  # before any Bedrock call; plan calls are never blocked
        except errors.RateLimited:
            ex.error_class = "budget_exceeded"
            raise
        counts = sse.UsageCounts()
        ex.usage = counts
        observe = counts.observe_event

        def on_event(kind: bytes, data: bytes) -> None:
            if kind in _USAGE_EVENTS:
                observe(data)

        answer = await bedrock.invoke(
            self.session,
            base_url=base_url,
            model_id=model_id,
            body=body,
            stream=ex.stream,
            auth=auth,
            region=region,
            timeout=config.bedrock_timeout,
            on_event=on_event,
        )
        async with answer:
            ex.status = answer.status
            if not answer.stream:
                counts.observe_message(answer.body)
                ex.ttfb = time.perf_counter()
                return web.Response(body=answer.body, content_type="application/json", headers=headers)
            headers["Content-Type"] = "text/event-stream; charset=utf-8"
            headers["Cache-Control"] = "no-cache"
            headers["X-Accel-Buffering"] = "no"
            response = web.StreamResponse(headers=headers)
            await response.prepare(request)
            # The translator emits whole events only, so a ping can go in at any time.
            pinger = _Pinger(response, _always, self._ping_interval)
            write = response.write
            try:
                async for chunk in answer:
                    if ex.ttfb is None:
                        ex.ttfb = time.perf_counter()
                    pinger.last = time.monotonic()
                    await write(chunk)
            except ConnectionResetError:
                ex.error_class = "client_disconnected"
                return response
            finally:
                pinger.stop()
            if counts.error_type is not None:
                ex.error_class = counts.error_type
            try:
                await response.write_eof()
            except ConnectionResetError:
                ex.error_class = "client_disconnected"
            return response

    async def _relay_stream(self, request: web.Request, ex: Exchange, upstream: PlanResponse) -> web.StreamResponse:
        headers = self._client_headers(upstream, ex)
        headers["Cache-Control"] = "no-cache"
        headers["X-Accel-Buffering"] = "no"
        response = web.StreamResponse(status=upstream.status, headers=headers)
        await response.prepare(request)
        scanner = sse.UsageScanner()
        ex.usage = scanner.counts
        pinger = _Pinger(response, lambda: scanner.at_event_boundary, self._ping_interval)
        write = response.write
        feed = scanner.feed
        read = upstream.readany
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
        except (UpstreamError, TimeoutError):
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
    def _client_headers(upstream: PlanResponse, ex: Exchange) -> dict[str, str]:
        out = {
            name: value
            for name, value in upstream.headers
            if name in RELAY_RESPONSE or name.startswith("anthropic-ratelimit-")
        }
        out["x-ccproxy-request-id"] = ex.request_id
        out["x-ccproxy-provider"] = ex.provider
        if ex.fallback_state is not None:
            out["x-ccproxy-fallback"] = ex.fallback_state
        return out

    # --- the end of every request ------------------------------------------------------------

    def _finish(self, ex: Exchange, key: str) -> None:
        """Exactly one usage event (for an identified key) and one log line per request."""
        latency_ms = (time.perf_counter() - ex.started) * 1000
        ttfb_ms = (ex.ttfb - ex.started) * 1000 if ex.ttfb is not None else None
        counts = ex.usage
        ctx = ex.ctx
        status = ex.status or 499  # nothing was sent: the client went away first
        created_at = usage.now()
        cost = _ZERO
        snapshot = None
        bedrock_tokens = 0
        if ex.provider == "bedrock" and counts is not None and ex.upstream_model is not None:
            # Plan calls cost the organisation nothing; Bedrock is priced per token type.
            tokens = pricing.TokenCounts(
                input_tokens=counts.input_tokens,
                output_tokens=counts.output_tokens,
                cache_write_5m_tokens=counts.cache_5m or max(counts.cache_creation - counts.cache_1h, 0),
                cache_write_1h_tokens=counts.cache_1h,
                cache_read_tokens=counts.cache_read,
            )
            cost, snapshot = self.prices.cost(ex.upstream_model, ex.region or "*", created_at, tokens)
            bedrock_tokens = counts.input_tokens + counts.output_tokens + counts.cache_creation + counts.cache_read
            self.counters.bedrock_tokens += bedrock_tokens
            self.counters.bedrock_cost += float(cost)
            if ctx is not None:
                self.budgets.record(ctx, cost)
        if ctx is not None:
            event = usage.UsageEvent(
                request_id=ex.request_id,
                created_at=created_at,
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
                cost_usd=cost,
                price_snapshot=snapshot,
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
        is_error = status >= 500 or ex.error_class in _ERROR_CLASSES
        self.counters.observe(ex.provider, status, latency_ms, ex.is_fallback, is_error)
        log.request_line(
            {
                "request_id": ex.request_id,
                "key_prefix": ctx.prefix + "…" if ctx is not None else keys.mask(key),
                "user": ctx.user_name if ctx is not None else None,
                "endpoint": ex.endpoint,
                "provider_attempted": "plan"
                if ex.plan_outcome != "circuit_open" and ex.provider != "none"
                else ex.provider,
                "plan_outcome": ex.plan_outcome,
                "provider": ex.provider,
                "fallback": ex.is_fallback,
                "fallback_state": ex.fallback_state,
                "status": status,
                "error_class": ex.error_class,
                "model": ex.model,
                "upstream_model": ex.upstream_model,
                "stream": ex.stream,
                "input_tokens": counts.input_tokens if counts else 0,
                "output_tokens": counts.output_tokens if counts else 0,
                "cache_creation_input_tokens": counts.cache_creation if counts else 0,
                "cache_read_input_tokens": counts.cache_read if counts else 0,
                "cost_usd": float(cost),
                "latency_ms": round(latency_ms, 3),
                "ttfb_ms": round(ttfb_ms, 3) if ttfb_ms is not None else None,
                "session_id": ex.session_id,
                **log.emf(
                    log.REQUEST_METRICS,
                    {
                        "RequestCount": 1,
                        "RequestLatency": round(latency_ms, 3),
                        "ErrorCount": int(is_error),
                        "FallbackCount": int(ex.is_fallback),
                        "BedrockTokensUsed": bedrock_tokens,
                        "BedrockCost": float(cost),
                    },
                ),
            }
        )


class _Pinger:
    """Sends an SSE `ping` when the upstream has been silent for `interval` seconds.

    One timer per stream that re-arms itself from the last activity time, so the relay
    loop pays only for storing a timestamp per chunk. A ping is written only at an event
    boundary, so it can never land inside a half-relayed event.
    """

    __slots__ = ("_at_boundary", "_handle", "_interval", "_response", "_tasks", "last")

    def __init__(self, response: web.StreamResponse, at_boundary: Callable[[], bool], interval: float) -> None:
        self._response = response
        self._at_boundary = at_boundary
        self._interval = interval
        self._tasks: set[asyncio.Task[None]] = set()
        self.last = time.monotonic()
        self._handle: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(interval, self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        due = self.last + self._interval
        loop = asyncio.get_running_loop()
        if now >= due and self._at_boundary():
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
