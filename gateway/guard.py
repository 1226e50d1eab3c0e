"""The gateway's edge against hostile or broken clients (issue 16): connection caps, a
header-read timeout, parser rejections answered in the gateway's own shapes and logged as
one sampled line, and the key-guessing throttle.

aiohttp answers what its HTTP parser rejects itself, in plain text, and logs it with a
traceback that quotes the offending line (which can hold a credential). The request
handler here replaces that: `handle_error` is aiohttp's one hook for both parser
rejections and unhandled handler exceptions.

Every check costs O(1) per connection or per rejected request; nothing runs per
accepted request except one attribute test per received chunk (the header timer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import http_exceptions, web, web_protocol, web_server
from aiohttp.web_log import AccessLogger

from gateway import errors
from gateway.config import Config

logger = structlog.get_logger("gateway.guard")

_Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def _request_id() -> str:
    from gateway import usage  # usage imports the database layer; only a rejection pays

    return usage.new_request_id()


# --- sampled logging -----------------------------------------------------------------------


class Sampler:
    """At most `per_window` lines per address and kind per `window` seconds; the next line
    after a quiet spell says how many were suppressed. Bounded memory."""

    __slots__ = ("_seen", "max_keys", "per_window", "window")

    def __init__(self, per_window: int = 5, window: float = 60.0, max_keys: int = 10_000) -> None:
        self.per_window = per_window
        self.window = window
        self.max_keys = max_keys
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, count, suppressed]

    def allow(self, kind: str, address: str, now: float | None = None) -> int | None:
        """None: drop this line. Otherwise log it, with the returned number of lines
        suppressed since the last one."""
        now = time.monotonic() if now is None else now
        key = (kind, address)
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= self.window:
            suppressed = int(entry[2]) if entry is not None else 0
            if len(self._seen) >= self.max_keys:
                self._seen.clear()
            self._seen[key] = [now, 1, 0]
            return suppressed
        if entry[1] < self.per_window:
            entry[1] += 1
            return 0
        entry[2] += 1
        return None


SAMPLER = Sampler()


def log_sampled(kind: str, address: str, **fields: Any) -> None:
    suppressed = SAMPLER.allow(kind, address)
    if suppressed is None:
        return
    if suppressed:
        fields["suppressed"] = suppressed
    logger.warning(kind, client=address, **fields)


# --- the client address --------------------------------------------------------------------


def client_address(request: web.BaseRequest, forwarded_hops: int) -> str:
    """The caller's address: the peer, or with `forwarded_hops` trusted proxies in front
    (an ALB is one), the entry they appended to X-Forwarded-For. Entries further left
    were written by the client and prove nothing."""
    if forwarded_hops:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            parts = forwarded.split(",")
            if len(parts) >= forwarded_hops:
                return parts[-forwarded_hops].strip()[:64]
    return request.remote or "unknown"


# --- key-guessing throttle -----------------------------------------------------------------


class KeyGuard:
    """Counts unknown access keys per client address in a fixed window. Past `limit`
    misses the address is throttled until the window ends: an unknown key then gets 429
    with `retry-after` instead of 404. The key is still looked up first, the same way,
    so a valid key from that address keeps working and the answer's timing says nothing
    new about which keys exist."""

    __slots__ = ("_misses", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._misses: dict[str, list[float]] = {}  # address -> [window start, misses]

    def miss(self, address: str, now: float) -> errors.RateLimited | None:
        """Record one unknown key; the 429 to answer instead of the 404, if throttled."""
        entry = self._misses.get(address)
        if entry is None or now - entry[0] >= self.window:
            if len(self._misses) >= 100_000:
                self._expire(now)
            self._misses[address] = entry = [now, 0]
        entry[1] += 1
        if entry[1] <= self.limit:
            return None
        retry = max(1, int(entry[0] + self.window - now + 0.999))
        if entry[1] == self.limit + 1:
            logger.warning("key_guessing_throttled", client=address, misses=self.limit, retry_after=retry)
        return errors.RateLimited(
            "Too many requests with unknown access keys from this address; try again later.",
            headers={"retry-after": str(retry)},
        )

    def _expire(self, now: float) -> None:
        for address in [a for a, e in self._misses.items() if now - e[0] >= self.window]:
            del self._misses[address]
        if len(self._misses) >= 100_000:  # all fresh: a flood of addresses; start over
            self._misses.clear()


# --- the request handler: parser rejections, header timeout, connection caps ------------------


def _rejection(exc: BaseException | None) -> tuple[int, str]:
    """HTTP status and client message for what aiohttp's parser rejected. The message
    never quotes the request (it may hold a credential)."""
    if isinstance(exc, http_exceptions.LineTooLong):
        line = exc.args[0] if exc.args else b""
        text = line if isinstance(line, bytes | bytearray) else str(line).encode("utf-8", "replace")
        # The request line's target starts with "/" (or a scheme); a header's does not.
        if text.startswith(b"/") or b"://" in text[:16] or text[:8].isupper():
            return 414, "Request line is too long."
        return 431, "A request header is too long."
    if isinstance(exc, http_exceptions.BadHttpMessage) and "Too many headers" in str(exc):
        return 431, "Too many request headers."
    if isinstance(exc, http_exceptions.BadHttpMessage) and "Too large" in str(exc):
        return 413, "Request is too large."
    return 400, "The request is not valid HTTP."


_ADMIN_CODES = {400: "bad_request", 413: "payload_too_large", 414: "uri_too_long", 431: "headers_too_large"}


def error_response(path: str, status: int, error_type: str, message: str, request_id: str) -> web.Response:
    """An error in the shape of the face the path belongs to: the admin API's under
    /admin, Anthropic's elsewhere (SPEC §2, §7)."""
    import orjson

    if path == "/admin" or path.startswith("/admin/"):
        code = "internal_error" if status >= 500 else _ADMIN_CODES.get(status, "bad_request")
        body = orjson.dumps({"error": {"code": code, "message": message, "field": None}})
    else:
        body = errors.error_body(error_type, message, request_id)
    return web.Response(
        status=status, body=body, content_type="application/json", headers={"x-ccproxy-request-id": request_id}
    )


_ERROR_TYPES = {
    400: "invalid_request_error",
    413: "request_too_large",
    414: "invalid_request_error",
    431: "invalid_request_error",
    503: "overloaded_error",
}


_HEAD_BYTES = 64  # enough for "METHOD /admin/..." however long the rest of the line is


def _target_path(head: bytes) -> str:
    """The path of a request line's origin-form target, from its first bytes; "" when the
    bytes are no request line (the parser rejected them before the target was known)."""
    _, space, rest = head.partition(b" ")
    if not space or not rest.startswith(b"/"):
        return ""
    end = len(rest)
    for stop in (b" ", b"?", b"#", b"\r"):
        found = rest.find(stop)
        if found != -1:
            end = min(end, found)
    return rest[:end].decode("latin-1")


class GatewayRequestHandler(web_protocol.RequestHandler):
    """aiohttp's per-connection protocol with the gateway's edge rules."""

    __slots__ = ("_address", "_head", "_header_deadline", "_header_timeout", "_header_timer")

    def __init__(self, manager: GatewayServer, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._address = "unknown"
        # The first bytes of the request whose head is being read: aiohttp's C parser keeps
        # the target to itself, and a rejection under /admin is answered in the admin shape.
        self._head = b""

    # -- header-read timeout: from the connection's (or a request's) first byte until its
    #    headers are complete; slowloris and silent connections die within seconds.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        self._header_timer = self._loop.call_later(self._header_timeout, self._headers_late)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._waiter is not None:
            # The first bytes of a new request on a kept-alive connection.
            self._header_timer = self._loop.call_later(self._header_timeout, self._headers_late)
            self._head = b""
        if self._header_timer is not None and len(self._head) < _HEAD_BYTES:
            # Only while a head is read, and at most _HEAD_BYTES: one short slice a request.
            self._head += data[: _HEAD_BYTES - len(self._head)]
        super().data_received(data)
        if self._header_timer is not None and self._messages:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._messages or self._request_in_progress or self.transport is None:
            return
        log_sampled("header_timeout", self._address, request_id=_request_id(), seconds=self._header_timeout)
        self.force_close()

    # -- what aiohttp would answer in plain text, answered in the gateway's shape

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        request_id = _request_id()
        if isinstance(exc, http_exceptions.HttpProcessingError):
            status, text = _rejection(exc)
            path = _target_path(self._head)  # "" when the request line never parsed: the relay's shape
            log_sampled(
                "request_rejected", self._address, request_id=request_id, error=type(exc).__name__, status=status
            )
        else:
            path = request.path if request.message is not None else ""
            text = "The gateway failed to handle this request." if status >= 500 else "Bad request."
            where_ = where(exc)
            logger.error(
                "unhandled_error", request_id=request_id, error=type(exc).__name__ if exc else None, where=where_
            )
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        response = error_response(path, status, _ERROR_TYPES.get(status, "api_error"), text, request_id)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # aiohttp's own "Unhandled exception" lines: the class only, never the message.
        exc = kw.get("exc_info")
        logger.error("server_error", error=type(exc).__name__ if isinstance(exc, BaseException) else str(args[:1]))


def where(exc: BaseException | None) -> str | None:
    """file:line where an exception was raised: enough to find it, quoting nothing."""
    tb = exc.__traceback__ if exc is not None else None
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename.rsplit('/', 2)[-1]}:{tb.tb_lineno}"


class GatewayServer(web_server.Server):
    """aiohttp's server with connection caps: beyond `max_total` open connections, or
    `max_per_address` from one peer, requests get 503 and the connection closes.
    /health still answers on such a connection (liveness must not depend on load)."""

    def __init__(
        self, handler: Any, *, max_total: int, max_per_address: int, header_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.header_timeout = header_timeout
        self.per_address: dict[str, int] = {}
        self.refused = 0

    def __call__(self) -> GatewayRequestHandler:
        return GatewayRequestHandler(self, loop=self._loop, header_timeout=self.header_timeout, **self._kwargs)

    def connection_made(self, handler: web_protocol.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        address = handler._address if isinstance(handler, GatewayRequestHandler) else "unknown"
        count = self.per_address.get(address, 0) + 1
        self.per_address[address] = count
        if count > self.max_per_address or len(self._connections) > self.max_total:
            self.refused += 1
            log_sampled("connection_refused", address, open=count, total=len(self._connections))
            inner = handler._request_handler
            assert inner is not None
            handler._request_handler = _over_capacity(inner)

    def connection_lost(self, handler: web_protocol.RequestHandler, exc: BaseException | None = None) -> None:
        address = handler._address if isinstance(handler, GatewayRequestHandler) else "unknown"
        count = self.per_address.get(address, 0) - 1
        if count > 0:
            self.per_address[address] = count
        else:
            self.per_address.pop(address, None)
        super().connection_lost(handler, exc)


def _over_capacity(inner: _Handler) -> _Handler:
    async def refuse(request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/health":
            return await inner(request)
        request_id = _request_id()
        response = error_response(
            request.path, 503, "overloaded_error", "Too many open connections; try again shortly.", request_id
        )
        response.headers["retry-after"] = "1"
        response.force_close()
        return response

    return refuse


class GatewayRunner(web.AppRunner):
    """`web.AppRunner` serving through `GatewayServer`, with the parser limits, timeouts and
    caps from the config, and handler cancellation on: a client that leaves cancels its
    request at once, so a silent upstream is released within the second (issue 16)."""

    def __init__(self, app: web.Application, config: Config, **kwargs: Any) -> None:
        kwargs.setdefault("access_log", None)
        kwargs.setdefault("shutdown_timeout", config.drain_seconds)
        super().__init__(
            app,
            handler_cancellation=True,
            keepalive_timeout=config.keepalive_seconds,
            max_line_size=config.max_request_line,
            max_field_size=config.max_header_bytes,
            max_headers=config.max_headers,
            **kwargs,
        )
        self._config = config

    async def _make_server(self) -> web_server.Server:
        loop = asyncio.get_running_loop()
        app = self._app
        app._set_loop(loop)
        app.on_startup.freeze()
        await app.startup()
        app.freeze()
        kwargs = dict(self._kwargs)
        kwargs["debug"] = False
        kwargs.setdefault("access_log_class", AccessLogger)
        config = self._config
        return GatewayServer(
            app._handle,
            request_factory=app._make_request,
            loop=loop,
            max_total=config.max_connections,
            max_per_address=config.max_connections_per_address,
            header_timeout=config.header_timeout_seconds,
            **kwargs,
        )
