"""The request path: identify the key, relay to the plan (or Bedrock), meter, record, log.

One request reads top to bottom in `Relay.handle`: the key is resolved first (every
`Call` has its `KeyContext`); `_answer` picks the route; the provider branch (`_plan`,
`_bedrock`) or the gateway's own refusal *returns* an `Outcome`; a streamed answer goes
through the one loop in `_stream`; `_meter` turns the outcome into the usage event, the
counters and the log line.

Hot-path rules (ARCHITECTURE.md): the request body goes upstream as the bytes that came
in; each upstream chunk is written to the client as the same bytes object; the SSE
scanner decodes only the events that carry usage; the usage event is appended to an
in-memory batch; nothing waits for the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, NamedTuple

import aiohttp
import msgspec
import structlog
from aiohttp import web

from gateway import (
    bedrock,
    circuit,
    decoding,
    envelope,
    errors,
    guard,
    headers,
    keys,
    ledger,
    limits,
    log,
    metrics,
    model_map,
    price_table,
    quota,
    routing,
    sse,
    usage,
)
from gateway.config import Config
from gateway.upstream import PlanClient, PlanConnectionError, PlanResponse

logger = structlog.get_logger("gateway.relay")

ANTHROPIC_VERSION = headers.ANTHROPIC_VERSION
SESSION_HEADER = headers.SESSION
# What the client sees when the plan dies mid-stream, in-band as Anthropic does.
LOST_MID_STREAM = (
    b'event: error\ndata: {"type":"error","error":{"type":"api_error",'
    b'"message":"The upstream connection was lost mid-stream."}}\n\n'
)
# A plan stream that ended (cleanly or not) before `message_stop`: Claude Code must see
# it was cut, and retries an overloaded_error (issue 16).
TRUNCATED = (
    b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
    b'"message":"The upstream stream ended before message_stop."}}\n\n'
)
MAX_MODEL_CHARS = 256

_ZERO = Decimal(0)
_NO_USAGE = sse.UsageCounts()  # read-only stand-in for an answer that reported none
_ERROR_CLASSES = frozenset({"network_error", "timeout", "server_error", "api_error", "overloaded_error"})
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8"}
# Plan outcomes of requests that never asked the plan (SPEC §3).
CIRCUIT_OPEN = "circuit_open"
QUOTA_EXHAUSTED = "quota_exhausted"  # the plan rejected the key until a reset time
BEDROCK_ONLY = routing.BEDROCK_ONLY  # the key's routing strategy
_PLAN_SKIPPED = frozenset({CIRCUIT_OPEN, QUOTA_EXHAUSTED, BEDROCK_ONLY})


def _iso(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


class Call:
    """What one request brought: its identified key and the few body fields the gateway
    reads. Built once the key is resolved, so `ctx` is never None."""

    __slots__ = (
        "abandoned",
        "agent_id",
        "body",
        "ctx",
        "endpoint",
        "model",
        "parent_agent_id",
        "plan_resets_at",
        "request_id",
        "session_id",
        "started",
        "stream",
    )

    def __init__(self, request_id: str, endpoint: str, started: float, ctx: keys.KeyContext, session_id: str | None):
        self.request_id = request_id
        self.endpoint = endpoint
        self.started = started
        self.ctx = ctx
        self.session_id = session_id
        # Claude Code's subagent attribution (issue 15), recorded on the usage row.
        self.agent_id: str | None = None
        self.parent_agent_id: str | None = None
        self.body: bytes | None = None
        self.model: str | None = None
        self.stream = False
        # The outcome a stream was producing when the request was cancelled (shutdown
        # after the drain deadline): the usage seen so far is still recorded.
        self.abandoned: Outcome | None = None
        # Unix seconds until which the plan rejected this key (quota routing); 0: it did not.
        self.plan_resets_at = 0.0

    async def read_body(self, request: web.Request, limit: int, silence: float, max_depth: int) -> None:
        # Read from the stream rather than `request.read()`, which keeps a second copy of
        # the body on the request for its whole life: 50 KB per open Claude Code stream.
        length = request.content_length
        if length is not None and length > limit:
            raise _too_large(limit)  # without reading it
        content = request.content
        read = content.readany
        chunks = []
        size = 0
        try:
            while True:
                if content.is_eof():  # all of it is here (the usual case): no timer needed
                    chunk = await read()
                else:
                    # A body that stops arriving holds its connection like slowloris does.
                    async with asyncio.timeout(silence):
                        chunk = await read()
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
        except web.RequestPayloadError:  # broken chunked framing, a short body
            raise errors.InvalidRequest("The request body could not be read (broken framing).") from None
        except TimeoutError:
            raise errors.InvalidRequest(f"The request body stopped arriving for {silence:g} s.") from None
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        fields = parse_envelope(body, max_depth)
        self.body = body
        self.model = fields.model
        self.stream = fields.stream and self.endpoint == "messages"


def parse_envelope(body: bytes, max_depth: int) -> Envelope:
    """The fields the gateway reads from a request body, or InvalidRequest (any bytes in:
    one of the two out, nothing else escapes)."""
    # 0 (the default): msgspec's own ceiling, which costs nothing; a limit costs a scan of
    # every body with more brackets than it, about 1 ns a byte (most Claude Code bodies).
    if max_depth and decoding.too_deep(body, max_depth):
        raise errors.InvalidRequest(f"Request body nests JSON deeper than {max_depth} levels.")
    try:
        fields = _decode_envelope(body)
    except msgspec.ValidationError as exc:
        raise errors.InvalidRequest(f"Invalid request body: {exc}") from None
    except msgspec.DecodeError:
        raise errors.InvalidRequest("Request body is not valid JSON.") from None
    except RecursionError:  # msgspec's fixed depth limit (about 1,000 levels)
        raise errors.InvalidRequest("Request body nests JSON too deeply.") from None
    model = fields.model
    if model is not None and (len(model) > MAX_MODEL_CHARS or "\x00" in model):
        # It is recorded with the usage: PostgreSQL text refuses NUL, and a huge name
        # would bloat every row and log line.
        raise errors.InvalidRequest("model must be a model name (at most 256 characters, no NUL).")
    return fields


def _too_large(limit: int) -> errors.RequestTooLarge:
    return errors.RequestTooLarge(f"Request body exceeds the maximum of {limit} bytes.")


class Outcome:
    """How one request ended, as the branch that answered it saw it: the response, which
    provider gave it, and what the usage event and the log line record."""

    __slots__ = (
        "error_class",
        "fallback_state",
        "is_fallback",
        "model_substituted",
        "plan_outcome",
        "provider",
        "region",
        "response",
        "ttfb",
        "upstream_model",
        "usage",
    )

    def __init__(
        self,
        response: web.StreamResponse | None,
        provider: str,
        *,
        error_class: str | None = None,
        plan_outcome: str | None = None,  # SPEC §3 class of the plan's answer when it failed
        fallback_state: str | None = None,  # x-ccproxy-fallback: unavailable | failed
        is_fallback: bool = False,
        region: str | None = None,
        upstream_model: str | None = None,  # Bedrock's model id; the plan's comes with its usage
        usage: sse.UsageCounts | None = None,
        ttfb: float | None = None,
        model_substituted: bool = False,  # Bedrock served an unmapped name with the default
    ) -> None:
        self.response = response
        self.model_substituted = model_substituted
        self.provider = provider  # plan | bedrock | none (answered by the gateway itself)
        self.error_class = error_class
        self.plan_outcome = plan_outcome
        self.fallback_state = fallback_state
        self.is_fallback = is_fallback
        self.region = region
        self.upstream_model = upstream_model
        self.usage = usage
        self.ttfb = ttfb


def refusal(exc: errors.GatewayError, request_id: str, provider: str = "none", **fields: Any) -> Outcome:
    """An error the gateway answers itself, in Anthropic's shape; `provider` says which
    upstream failed, if one did."""
    response = error_response(exc, request_id)
    if provider != "none":
        response.headers["x-ccproxy-provider"] = provider
    return Outcome(response, provider, error_class=fields.pop("error_class", exc.recorded_class), **fields)


def _routed_away(call: Call, outcome: Outcome) -> Outcome:
    """A gateway error for a key routed away from its plan (quota) still says so."""
    if call.plan_resets_at and outcome.response is not None:
        outcome.response.headers["x-ccproxy-plan-resets-at"] = _iso(call.plan_resets_at)
        if outcome.fallback_state is not None:
            outcome.response.headers["x-ccproxy-fallback"] = outcome.fallback_state
    return outcome


class PlanFailure:
    """A plan answer that falls back (SPEC §3): its class, and what the client gets if no
    Bedrock answer replaces it: the plan's own reply, or the gateway's error when the plan
    never answered (timeout, network)."""

    __slots__ = ("error", "outcome", "reply", "ttfb")

    def __init__(
        self, outcome: str, reply: web.Response | None, error: errors.GatewayError | None, ttfb: float | None = None
    ):
        self.outcome = outcome
        self.reply = reply
        self.error = error
        self.ttfb = ttfb

    def relayed(self, call: Call, fallback_state: str, **fields: Any) -> Outcome:
        """The plan's failure as the answer, marked with `x-ccproxy-fallback`; `fields`
        say what the usage row records (by default: the plan failed, nothing else ran)."""
        if self.reply is not None:
            self.reply.headers["x-ccproxy-fallback"] = fallback_state
            response = self.reply
        else:
            assert self.error is not None
            response = error_response(self.error, call.request_id)
            response.headers["x-ccproxy-provider"] = "plan"
            response.headers["x-ccproxy-fallback"] = fallback_state
        fields.setdefault("provider", "plan")
        fields.setdefault("error_class", self.outcome)
        fields.setdefault("plan_outcome", self.outcome)
        return Outcome(response, fallback_state=fallback_state, ttfb=self.ttfb, **fields)


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
        quotas: quota.Quotas,
        models: model_map.ModelMap | None = None,
    ) -> None:
        self.config = config
        self.models = models or model_map.ModelMap()
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
        self.quotas = quotas
        self.rate = limits.RateLimiter()
        self.sigv4 = bedrock.SigV4Auth()  # the deployment's default AWS credential chain
        self._plan_key = config.plan_api_key
        self._ping_interval = config.ping_interval
        self._forward = headers.RequestHeaders(config.plan_custom_header_bytes)
        self._forwarded_hops = config.forwarded_hops
        self.key_guard = guard.KeyGuard(config.key_miss_limit, config.key_miss_window_seconds)

    # --- one request, top to bottom ----------------------------------------------------

    async def handle(
        self, request: web.Request, endpoint: str, upstream_path: str, key: str, org_mode: bool
    ) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = usage.new_request_id()
        # Every line logged while serving this request carries its id (SPEC §9).
        bound = log.REQUEST_ID.set(request_id)
        try:
            try:
                ctx = await self.keys.lookup(key)
            except errors.NotFound as exc:
                # Key guessing (issue 16): past N misses from one address, 429 instead.
                address = guard.client_address(request, self._forwarded_hops)
                throttled = self.key_guard.miss(address, time.monotonic())
                return self._unidentified(throttled or exc, request_id, endpoint, key, started)
            except errors.GatewayError as exc:
                return self._unidentified(exc, request_id, endpoint, key, started)
            request_headers = request.headers
            call = Call(request_id, endpoint, started, ctx, _clean_header(request_headers.get(SESSION_HEADER)))
            call.agent_id = _clean_header(request_headers.get(headers.AGENT))
            call.parent_agent_id = _clean_header(request_headers.get(headers.PARENT_AGENT))
            outcome = None
            try:
                outcome = await self._answer(request, call, upstream_path, org_mode)
            except errors.GatewayError as exc:  # refused by the gateway before any upstream
                outcome = refusal(exc, request_id)
            except asyncio.CancelledError:
                outcome = call.abandoned or Outcome(None, "none")
                outcome.error_class = "client_disconnected"
                raise
            except Exception as exc:
                # A bug, not the caller's fault: answered in Anthropic's shape and recorded
                # as internal_error (the class and place go to the log, never the message).
                logger.error("internal_error", error=type(exc).__name__, where=guard.where(exc))
                if call.abandoned is not None:  # mid-stream: nothing else can be sent
                    outcome = call.abandoned
                    outcome.error_class = "internal_error"
                    raise
                failed = errors.InternalError("The gateway failed to handle this request.")
                outcome = refusal(failed, request_id, error_class="internal_error")
            finally:
                self._meter(call, outcome or Outcome(None, "none", error_class="internal_error"))
            assert outcome.response is not None
            return outcome.response
        finally:
            log.REQUEST_ID.reset(bound)

    async def _answer(self, request: web.Request, call: Call, upstream_path: str, org_mode: bool) -> Outcome:
        ctx = call.ctx
        self.rate.check(ctx.key_id, ctx.rpm_limit, time.monotonic())
        if request.method == "POST":
            await call.read_body(
                request, self.config.max_body_bytes, self.config.header_timeout_seconds, self.config.max_json_depth
            )
        limits.check_model(ctx, call.model)
        if ctx.routing == BEDROCK_ONLY:
            return await self._bedrock_only(request, call)
        probing = False
        if call.endpoint != "models":
            now = time.time()
            resets_at = self.quotas.routed_until(ctx.key_id, now)
            if resets_at:
                # The plan rejected this key until then: Bedrock without asking it again.
                # A key without (usable) Bedrock keeps asking the plan, as before.
                auth = await self._bedrock_auth(ctx)
                if auth is not None:
                    call.plan_resets_at = resets_at
                    return await self._bedrock(request, call, auth, None, QUOTA_EXHAUSTED)
            route = self.circuits.route(ctx.key_id, now)
            if route == circuit.PROBE_DUE:
                probing = await self.circuits.claim_probe(ctx.key_id)
            if route != circuit.PLAN and not probing:
                return await self._circuit_open(request, call)
        return await self._plan(request, call, upstream_path, org_mode, probing)

    # --- the plan ----------------------------------------------------------------------

    async def _plan(
        self, request: web.Request, call: Call, upstream_path: str, org_mode: bool, probing: bool
    ) -> Outcome:
        query = request.rel_url.raw_query_string
        target = upstream_path + "?" + query if query else upstream_path
        timeout = self.config.plan_first_byte_timeout if call.stream else self.config.plan_nonstream_timeout
        headers = self._upstream_headers(request, org_mode)
        try:
            answer = await self.plan.request(request.method, target, headers, call.body, timeout)
        except TimeoutError:
            late = errors.UpstreamUnavailable("The upstream API did not answer in time.")
            return await self._plan_failed(request, call, probing, PlanFailure("timeout", None, late))
        except PlanConnectionError:
            unreached = errors.UpstreamUnavailable("The upstream API could not be reached.")
            return await self._plan_failed(request, call, probing, PlanFailure("network_error", None, unreached))

        async with answer:
            status = answer.status
            # Every plan answer reports the key's quota; a rejection naming a reset routes it.
            call.plan_resets_at = self.quotas.observe(call.ctx.key_id, answer.headers, status, time.time())
            reply_headers = self._client_headers(answer, call.request_id)
            if call.stream and status == 200 and answer.content_type.startswith("text/event-stream"):
                if probing:
                    self.circuits.record_probe(call.ctx.key_id, True, None)
                call.body = None  # the plan is answering: no fallback can need the body now
                scanner = sse.UsageScanner()
                reply_headers.update(_SSE_NO_BUFFERING)
                streaming = Outcome(None, "plan", usage=scanner.counts)
                return await self._stream(request, call, streaming, status, reply_headers, answer.readany, scanner)
            try:
                payload = await answer.read()
            except (PlanConnectionError, TimeoutError):
                lost = errors.UpstreamUnavailable("The upstream API closed the connection mid-answer.")
                return await self._plan_failed(request, call, probing, PlanFailure("network_error", None, lost))

        ttfb = time.perf_counter()
        plan_outcome = classify(status, payload)
        counts = None
        if status == 200 and call.endpoint == "messages":
            counts = sse.UsageCounts()
            if not counts.observe_message(payload):
                plan_outcome, counts = "server_error", None  # a 200 whose JSON is invalid
        if call.plan_resets_at and plan_outcome == "rate_limit":
            plan_outcome = "usage_limit"  # a quota rejection with a reset: not a transient limit, not counted
        reply = web.Response(status=status, body=payload, headers=reply_headers)
        if plan_outcome is not None and plan_outcome != "client_error":
            return await self._plan_failed(request, call, probing, PlanFailure(plan_outcome, reply, None, ttfb))
        # Success, or the caller's own mistake: relayed unchanged, never a fallback.
        # Either way the plan answered, so a probe closes the circuit.
        if probing:
            self.circuits.record_probe(call.ctx.key_id, True, None)
        return Outcome(reply, "plan", error_class=plan_outcome, usage=counts, ttfb=ttfb)

    async def _plan_failed(self, request: web.Request, call: Call, probing: bool, failure: PlanFailure) -> Outcome:
        """The plan failed in a way that falls back: count it, then Bedrock if the key has it."""
        key_id = call.ctx.key_id
        if probing:
            self.circuits.record_probe(key_id, False, failure.outcome)
        else:
            self.circuits.record_failure(key_id, failure.outcome)
        auth = await self._bedrock_auth(call.ctx)
        if auth is None:
            # No fallback: the plan's own error goes back unchanged; Claude Code's recovery
            # reads its wording (SPEC §3).
            return failure.relayed(call, "unavailable")
        if call.endpoint == "models":
            return self._bedrock_models(call, failure)
        return await self._bedrock(request, call, auth, failure)

    def _bedrock_models(self, call: Call, failure: PlanFailure) -> Outcome:
        """GET /v1/models when the plan failed and the key has Bedrock: the mapping's names
        (ids starting with `claude`) this key may use, in the API's list shape (SPEC §2)."""
        ctx = call.ctx
        names = []
        for name in self.models.names():
            try:
                limits.check_model(ctx, name)
            except errors.PermissionDenied:
                continue
            names.append(name)
        body = headers.models_page(names)
        request_id = call.request_id
        reply = web.Response(
            body=body,
            content_type="application/json",
            headers={"x-ccproxy-request-id": request_id, "x-ccproxy-provider": "bedrock", "request-id": request_id},
        )
        return Outcome(reply, "bedrock", is_fallback=True, plan_outcome=failure.outcome, ttfb=time.perf_counter())

    async def _circuit_open(self, request: web.Request, call: Call) -> Outcome:
        key_id = call.ctx.key_id
        auth = await self._bedrock_auth(call.ctx)
        if auth is None:
            closed = errors.ServiceUnavailable(
                "The plan is failing for this key and no Bedrock fallback is configured; try again later.",
                headers={
                    "retry-after": str(self.circuits.retry_after(key_id, time.time())),
                    "x-ccproxy-fallback": "unavailable",
                },
            )
            return refusal(closed, call.request_id, plan_outcome=CIRCUIT_OPEN, fallback_state="unavailable")
        return await self._bedrock(request, call, auth, None, CIRCUIT_OPEN)

    async def _bedrock_only(self, request: web.Request, call: Call) -> Outcome:
        """The key's routing strategy never calls the plan (SPEC §3)."""
        auth = await self._bedrock_auth(call.ctx)
        if auth is None:
            # Setting bedrock_only needs Bedrock (gateway/routing.py); the key lost it since.
            lost = errors.InternalError(
                "This access key is routed bedrock_only but has no usable Bedrock credentials; "
                "an operator must register a Bedrock key for it or change its routing."
            )
            return refusal(lost, call.request_id, plan_outcome=BEDROCK_ONLY)
        if call.endpoint == "models":
            return Outcome(self._mapped_models(call.request_id), "bedrock", plan_outcome=BEDROCK_ONLY)
        return await self._bedrock(request, call, auth, None, BEDROCK_ONLY)

    @staticmethod
    def _mapped_models(request_id: str) -> web.Response:
        """GET /v1/models in the Anthropic shape, from the Bedrock mapping table."""
        data = [
            {"type": "model", "id": name, "display_name": name, "created_at": "2025-01-01T00:00:00Z"}
            for name in bedrock.DEFAULT_MODEL_MAP
        ]
        body = {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
        headers = {"x-ccproxy-request-id": request_id, "x-ccproxy-provider": "bedrock", "request-id": request_id}
        return web.json_response(body, headers=headers)

    # --- Bedrock -------------------------------------------------------------------------

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

    async def _bedrock(
        self,
        request: web.Request,
        call: Call,
        auth: bedrock.Auth,
        failure: PlanFailure | None,
        skipped: str | None = None,
    ) -> Outcome:
        """Bedrock answers in the plan's place: after `failure`, or without asking the plan
        (`skipped`: circuit_open, quota_exhausted or bedrock_only)."""
        config = self.config
        ctx = call.ctx
        region = ctx.bedrock_region or config.bedrock_default_region
        resolved = self.models.resolve(call.model, ctx.bedrock_model, config.bedrock_default_model)
        model_id = resolved.model_id
        fields: dict[str, Any] = {
            "is_fallback": skipped != BEDROCK_ONLY,  # bedrock_only is the route, not a fallback
            "plan_outcome": failure.outcome if failure is not None else skipped,
            "region": region,
            "upstream_model": model_id,
            "model_substituted": resolved.substituted,
        }
        headers = _bedrock_headers(call, resolved, skipped, fields)
        try:
            body = bedrock.prepare_body(call.body or b"", request.headers.get("anthropic-beta"), config)
        except errors.InvalidRequest as exc:  # a feature Bedrock lacks, named (README: Bedrock features)
            refused = refusal(exc, call.request_id, "bedrock", **fields)
            if resolved.substituted:
                refused.response.headers[SUBSTITUTED] = headers[SUBSTITUTED]  # type: ignore[union-attr]
            return refused
        if call.endpoint != "count_tokens":
            try:
                self.budgets.check(ctx)  # before any Bedrock call; plan calls are never blocked
            except errors.RateLimited as exc:
                refused = refusal(exc, call.request_id, "bedrock", error_class="budget_exceeded", **fields)
                return _routed_away(call, refused)
        target = _Target(bedrock.endpoint(region, config), model_id, region, auth)
        return await self._bedrock_answer(request, call, target, body, headers, failure, fields)

    async def _bedrock_answer(
        self,
        request: web.Request,
        call: Call,
        target: _Target,
        body: bytes,
        headers: dict[str, str],
        failure: PlanFailure | None,
        fields: dict[str, Any],
    ) -> Outcome:
        """Bedrock's answer relayed: token counting (free on Bedrock too, so no budget
        check), a whole message, or a stream. A call that fails before its first byte is
        answered by `_bedrock_failed`."""
        timeout = self.config.bedrock_timeout
        proxy = self.config.proxy_for(target.base_url)
        if call.endpoint == "count_tokens":
            try:
                payload = await bedrock.count_tokens(
                    self.session, base_url=target.base_url, model_id=target.model_id, body=body, auth=target.auth,
                    region=target.region, timeout=timeout, proxy=proxy,
                )  # fmt: skip
            except errors.GatewayError as exc:
                return self._bedrock_failed(call, exc, failure, fields)
            counted = web.Response(body=payload, content_type="application/json", headers=headers)
            return Outcome(counted, "bedrock", ttfb=time.perf_counter(), **fields)
        counts = sse.UsageCounts()
        try:
            answer = await bedrock.invoke(
                self.session, base_url=target.base_url, model_id=target.model_id, body=body, stream=call.stream,
                auth=target.auth, region=target.region, timeout=timeout, on_event=counts.observe_sse, proxy=proxy,
            )  # fmt: skip
        except errors.GatewayError as exc:
            return self._bedrock_failed(call, exc, failure, fields)
        async with answer:
            if not answer.stream:
                counts.observe_message(answer.body)
                whole = web.Response(body=answer.body, content_type="application/json", headers=headers)
                return Outcome(whole, "bedrock", usage=counts, ttfb=time.perf_counter(), **fields)
            headers.update(_SSE_HEADERS)
            headers.update(_SSE_NO_BUFFERING)
            streaming = Outcome(None, "bedrock", usage=counts, **fields)
            return await self._stream(request, call, streaming, answer.status, headers, answer.readany, None)

    def _bedrock_failed(
        self, call: Call, exc: errors.GatewayError, failure: PlanFailure | None, fields: dict[str, Any]
    ) -> Outcome:
        """Bedrock failed before the first byte (SPEC §3, §4). After a plan failure the
        client gets exactly what it would have got with no fallback (the plan's own error,
        whose wording Claude Code reads, or the gateway's timeout or network error), marked
        `x-ccproxy-fallback: failed`; the Bedrock error is logged, counted and recorded.
        With no plan answer to relay (circuit open, quota routing, bedrock_only), Bedrock's
        error is the answer, in Anthropic's shape."""
        klass = exc.recorded_class
        if failure is None:
            return _routed_away(call, refusal(exc, call.request_id, "bedrock", **fields))
        logger.warning("bedrock_fallback_failed", error_class=klass, status=exc.status, message=exc.message)
        self.counters.fallback_failed(klass)
        return failure.relayed(call, "failed", provider="bedrock", error_class=klass, **fields)

    # --- the one streaming loop ------------------------------------------------------------

    async def _stream(
        self,
        request: web.Request,
        call: Call,
        outcome: Outcome,
        status: int,
        headers: dict[str, str],
        read: Callable[[], Awaitable[bytes]],
        scanner: sse.UsageScanner | None,
    ) -> Outcome:
        """Relay an answer's chunks to the client as they come, for either provider, and
        complete `outcome` with what the stream showed (response, first byte, error).

        `read()` returns the next chunk, b"" at the end. A plan stream is metered by
        `scanner` as its bytes pass (and a ping waits for an event boundary); Bedrock's
        translator emits whole events and meters them itself (`scanner` None).
        """
        response = outcome.response = web.StreamResponse(status=status, headers=headers)
        call.abandoned = outcome
        await response.prepare(request)
        at_boundary = _always if scanner is None else scanner.at_event_boundary
        feed = None if scanner is None else scanner.feed
        pinger = _Pinger(response, at_boundary, self._ping_interval)
        write = response.write
        monotonic = time.monotonic
        broke = None
        try:
            chunk = await read()
            outcome.ttfb = time.perf_counter()
            while chunk:
                pinger.last = monotonic()
                if feed is not None:
                    feed(chunk)
                await write(chunk)
                chunk = await read()
        except (PlanConnectionError, TimeoutError):
            broke = "network_error"
        except ConnectionResetError:
            broke = "client_disconnected"
        finally:
            pinger.stop()
        counts = outcome.usage or _NO_USAGE
        outcome.error_class = counts.error_type or broke or (None if counts.seen_stop else "stream_incomplete")
        if outcome.error_class in ("network_error", "stream_incomplete"):
            outcome.error_class = await self._truncated(write, scanner)
        if broke != "client_disconnected":
            try:
                await response.write_eof()
            except ConnectionResetError:
                outcome.error_class = "client_disconnected"
        return outcome

    @staticmethod
    async def _truncated(write: Callable[[bytes], Awaitable[None]], scanner: sse.UsageScanner | None) -> str:
        """The upstream stream ended (closed or broke) before `message_stop` and before any
        error event of its own: say so in-band, as Anthropic does, so the client knows.
        A cut inside an event is ended first (a blank line), so the error is its own event."""
        tail = TRUNCATED if scanner is None or scanner.at_event_boundary() else b"\n\n" + TRUNCATED
        with contextlib.suppress(ConnectionResetError):
            await write(tail)
        return "upstream_truncated"

    # --- headers --------------------------------------------------------------------------

    def _upstream_headers(self, request: web.Request, org_mode: bool) -> dict[str, str]:
        return self._forward.build(request.headers.items(), org_mode, self._plan_key, request.method == "POST")

    @staticmethod
    def _client_headers(upstream: PlanResponse, request_id: str) -> dict[str, str]:
        out = headers.response_headers(upstream.headers)
        out["x-ccproxy-request-id"] = request_id
        out["x-ccproxy-provider"] = "plan"
        return out

    async def probe(self, key: str) -> web.Response:
        """HEAD on the base URL: 200 for a known key with no upstream call, 404 otherwise
        (the same answer as any request with that key, so nothing is enumerable)."""
        request_id = usage.new_request_id()
        try:
            await self.keys.lookup(key)
        except errors.GatewayError as exc:
            return error_response(exc, request_id)
        return web.Response(status=200, headers={"x-ccproxy-request-id": request_id})

    # --- metering: the end of every request ---------------------------------------------------

    def _meter(self, call: Call, outcome: Outcome) -> None:
        """Exactly one usage event, one set of counters and one log line per request, all
        from the outcome."""
        latency_ms = (time.perf_counter() - call.started) * 1000
        ttfb_ms = (outcome.ttfb - call.started) * 1000 if outcome.ttfb is not None else None
        counts = outcome.usage or _NO_USAGE
        response = outcome.response
        created_at = usage.now()
        upstream_model = outcome.upstream_model or counts.model
        priced, bedrock_tokens = self._price(call, outcome, counts, upstream_model, created_at)
        event = usage.UsageEvent(
            request_id=call.request_id,
            created_at=created_at,
            user_id=call.ctx.user_id,
            access_key_id=call.ctx.key_id,
            endpoint=call.endpoint,
            provider=outcome.provider,
            is_fallback=outcome.is_fallback,
            model=call.model,
            upstream_model=upstream_model,
            status=response.status if response is not None else 499,  # 499: the client left first
            error_class=outcome.error_class,
            stream=call.stream,
            input_tokens=counts.input_tokens,
            output_tokens=counts.output_tokens,
            cache_creation_input_tokens=counts.cache_creation,
            cache_creation_5m_tokens=counts.cache_5m,
            cache_creation_1h_tokens=counts.cache_1h,
            cache_read_input_tokens=counts.cache_read,
            cost_usd=priced.cost_usd,
            price_snapshot=priced.price_snapshot,
            latency_ms=latency_ms,
            ttfb_ms=ttfb_ms,
            session_id=call.session_id,
            list_cost_usd=priced.list_cost_usd,
            list_price_id=priced.list_price_id,
            unpriced=priced.unpriced,
            region=outcome.region,
            plan_outcome=outcome.plan_outcome,
            agent_id=call.agent_id,
            parent_agent_id=call.parent_agent_id,
            model_substituted=outcome.model_substituted,
        )
        self.writer.add(event)
        is_error = event.status >= 500 or event.error_class in _ERROR_CLASSES or outcome.fallback_state == "failed"
        self.counters.observe(event.provider, event.status, latency_ms, event.is_fallback, is_error)
        log.request_line(_request_line(call, outcome, event, is_error, bedrock_tokens), created_at)

    def _price(
        self, call: Call, outcome: Outcome, counts: sse.UsageCounts, model: str | None, created_at: Any
    ) -> tuple[ledger.Priced, int]:
        """Both ledger columns (gateway/ledger.py) and the Bedrock tokens; a Bedrock cost is
        recorded against the budgets at once. Plan calls cost the organisation nothing."""
        if outcome.usage is None:
            return ledger.FREE, 0
        tokens = ledger.tokens_of(
            counts.input_tokens,
            counts.output_tokens,
            counts.cache_creation,
            counts.cache_5m,
            counts.cache_1h,
            counts.cache_read,
        )
        model = model or call.model
        priced = ledger.price(self.prices.book, outcome.provider, model, outcome.region, created_at, tokens)
        if priced.unpriced:
            # Never priced at 0 in silence: counted, logged, listed by `ccproxy pricing unpriced`.
            self.counters.unpriced += 1
            logger.warning("price_missing", provider=outcome.provider, model=model, region=outcome.region)
        if outcome.provider != "bedrock":
            return priced, 0
        cost = priced.cost_usd or _ZERO
        used = counts.input_tokens + counts.output_tokens + counts.cache_creation + counts.cache_read
        self.counters.bedrock_tokens += used
        self.counters.bedrock_cost += float(cost)
        self.budgets.record(call.ctx, cost)
        return priced, used

    def _unidentified(
        self, exc: errors.GatewayError, request_id: str, endpoint: str, key: str, started: float
    ) -> web.Response:
        """An unknown, revoked or malformed key (404), or the key store away (503): no
        usage row (it belongs to nobody), but a counted request and a log line, key masked."""
        latency_ms = (time.perf_counter() - started) * 1000
        is_error = exc.status >= 500
        self.counters.observe("none", exc.status, latency_ms, False, is_error)
        line = log.RequestLine(
            request_id=request_id,
            key_prefix=keys.mask(key),
            user=None,
            endpoint=endpoint,
            provider_attempted="none",
            provider="none",
            fallback=False,
            status=exc.status,
            error_class=exc.recorded_class,
            latency_ms=round(latency_ms, 3),
            ErrorCount=int(is_error),
        )
        log.request_line(line)
        return error_response(exc, request_id)


SUBSTITUTED = "x-ccproxy-model-substituted"


class _Target(NamedTuple):
    """Where one request goes on Bedrock, and as whom."""

    base_url: str
    model_id: str
    region: str
    auth: bedrock.Auth


def _bedrock_headers(
    call: Call, resolved: model_map.Resolution, skipped: str | None, fields: dict[str, Any]
) -> dict[str, str]:
    """The gateway's headers on a Bedrock answer; a quota route also marks `fields`."""
    request_id = call.request_id
    headers = {"x-ccproxy-request-id": request_id, "x-ccproxy-provider": "bedrock", "request-id": request_id}
    if call.plan_resets_at:
        # While the key is routed away, the client can see when its plan comes back.
        headers["x-ccproxy-plan-resets-at"] = _iso(call.plan_resets_at)
        if skipped == QUOTA_EXHAUSTED:
            headers["x-ccproxy-fallback"] = "quota"
            fields["fallback_state"] = "quota"
    if resolved.substituted:
        # Never silent (issue 15): the client, the usage row and the log all say so.
        headers[SUBSTITUTED] = f"{call.model} -> {resolved.model_id}"
        logger.warning("model_substituted", requested=call.model, bedrock_model=resolved.model_id)
    return headers


_SSE_NO_BUFFERING = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _clean_header(value: str | None) -> str | None:
    """A client header value fit for a usage row and a log line: aiohttp hands over any
    byte (as a surrogate), which neither PostgreSQL nor JSON accepts; bounded."""
    if value is None:
        return None
    if not value.isascii() or "\x00" in value:
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\x00", "")
    return value[:200]


def _request_line(
    call: Call, outcome: Outcome, event: usage.UsageEvent, is_error: bool, bedrock_tokens: int
) -> log.RequestLine:
    """The request_completed line: the usage event's fields plus the few only the log has
    (masked key, user name, plan outcome, fallback state, rounded times, EMF metrics)."""
    ttfb_ms = event.ttfb_ms
    cost = _usd(event.cost_usd)
    return log.RequestLine(
        request_id=event.request_id,
        key_prefix=call.ctx.prefix + "…",
        user=call.ctx.user_name,
        endpoint=event.endpoint,
        provider_attempted="plan"
        if outcome.plan_outcome not in _PLAN_SKIPPED and event.provider != "none"
        else event.provider,
        plan_outcome=outcome.plan_outcome,
        provider=event.provider,
        fallback=event.is_fallback,
        fallback_state=outcome.fallback_state,
        status=event.status,
        error_class=event.error_class,
        model=event.model,
        upstream_model=event.upstream_model,
        stream=event.stream,
        input_tokens=event.input_tokens,
        output_tokens=event.output_tokens,
        cache_creation_input_tokens=event.cache_creation_input_tokens,
        cache_read_input_tokens=event.cache_read_input_tokens,
        cost_usd=cost,
        list_cost_usd=_usd(event.list_cost_usd),
        latency_ms=round(event.latency_ms, 3),
        ttfb_ms=round(ttfb_ms, 3) if ttfb_ms is not None else None,
        session_id=event.session_id,
        agent_id=event.agent_id,
        model_substituted=event.model_substituted,
        ErrorCount=int(is_error),
        FallbackCount=int(event.is_fallback),
        FallbackFailedCount=int(outcome.fallback_state == "failed"),
        BedrockTokensUsed=bedrock_tokens,
        BedrockCost=cost,
    )


def _usd(value: Decimal | None) -> float:
    # float(Decimal) goes through a string; most rows cost nothing (plan) or are unpriced.
    return float(value) if value else 0.0


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
