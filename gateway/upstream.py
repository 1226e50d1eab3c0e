"""A lean HTTP/1.1 client for the plan API, the one upstream every request meets.

Why not aiohttp's `ClientSession` here: per request it builds a `ClientRequest`, a
`ClientResponse`, a `StreamReader`, a timer context and two header multidicts, which
py-spy put at about a third of the gateway's CPU per relayed request (bench
`throughput`). The plan path needs far less: one origin, keep-alive connections, a
request body already held as bytes, and an answer that is relayed as bytes. This module
does just that on an asyncio `Protocol`: Content-Length, chunked and read-until-close
framing, read-side flow control and an idle-connection pool. The Bedrock path and the
alert webhook keep aiohttp's client; their cost is per fallback, not per request.

Errors: anything that ends a connection before the answer is complete raises
`PlanConnectionError` from `request()` or from a read, after every byte that did arrive has
been handed out, so a relay can tell "lost mid-stream" from "never answered".
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
from types import TracebackType
from typing import cast
from urllib.parse import unquote, urlsplit

_HEAD_LIMIT = 64 * 1024  # the whole response head; the plan's are under 2 KiB
_PAUSE_AT = 256 * 1024  # buffered body bytes before reading from the socket pauses
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_NO_BODY_STATUSES = frozenset({204, 304})
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})  # the headers that frame a body


# Chunk-size lines seen so far and their values: event sizes repeat, and a dict lookup
# is cheaper than validating and converting the hex each time. Bounded.
_CHUNK_SIZES: dict[bytes, int] = {}


def _chunk_size(line: bytes) -> int:
    """The size on a chunk-size line (extensions ignored); -1 if it is not one."""
    field = line.split(b";", 1)[0].strip(b" \t")
    if not _HEX.fullmatch(field):
        return -1
    size = int(field, 16)
    if len(_CHUNK_SIZES) < 4096:
        _CHUNK_SIZES[line] = size
    return size


def interleaved(addresses: list[tuple[int, str, int]]) -> list[tuple[int, str, int]]:
    """Addresses in the order RFC 8305 §4 tries them: families alternating, starting with
    the resolver's first choice, each family keeping its own order."""
    families: dict[int, list[tuple[int, str, int]]] = {}
    for entry in addresses:
        families.setdefault(entry[0], []).append(entry)
    out = []
    queues = list(families.values())
    while queues:
        out += [queue.pop(0) for queue in queues]
        queues = [queue for queue in queues if queue]
    return out


def _drop_late_connection(task: asyncio.Task[_Connection]) -> None:
    # An attempt that connected as it was being cancelled: nobody will use it.
    if not task.cancelled() and task.exception() is None:
        task.result().abort()


def _retrieve(task: asyncio.Task[list[tuple[int, str, int]]]) -> None:
    # Every caller may have given up waiting; the failure is theirs to report, not the loop's.
    if not task.cancelled():
        task.exception()


def render_head(method: str, target: str, host: str, headers: dict[str, str], body: bytes | None) -> bytes:
    """The request line and headers as bytes. aiohttp decodes request headers as UTF-8
    with surrogateescape, so any byte a client sent in a header value goes upstream as that
    same byte (issue 16); CR, LF and NUL never reach here (aiohttp's parser refuses them)."""
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
    if body is not None or method == "POST":
        lines.append(f"Content-Length: {len(body) if body else 0}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


class PlanConnectionError(Exception):
    """The plan connection failed, or broke HTTP/1.1, before the answer was complete.

    The client's own exception, not a `gateway.errors` one: the relay decides what the
    caller sees (a fallback, or an error in Anthropic's shape)."""


class PlanResponse:
    """One upstream answer: status and headers at once, the body as it arrives.

    Used like aiohttp's `ClientResponse`: `async with` it (leaving returns the connection
    to the pool when the body was read to the end, else closes it) and `async for` its
    body chunks, or `await read()` the whole body.
    """

    __slots__ = (
        "_buffered",
        "_chunk_left",
        "_chunked",
        "_chunks",
        "_conn",
        "_crlf_due",
        "_done",
        "_error",
        "_length_left",
        "_loop",
        "_partial",
        "_paused",
        "_trailers",
        "_waiter",
        "content_type",
        "headers",
        "keep_alive",
        "status",
    )

    def __init__(self, conn: _Connection, status: int, headers: list[tuple[str, str]], keep_alive: bool) -> None:
        self._conn: _Connection | None = conn
        self._loop = conn.loop
        self.status = status
        self.headers = headers  # (lower-case name, value) in the order they came
        self.content_type = ""
        self.keep_alive = keep_alive
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: PlanConnectionError | None = None
        self._done = False
        self._chunked = False
        self._length_left = -1  # -1: no Content-Length (chunked, or until the connection closes)
        self._chunk_left = 0
        self._crlf_due = False
        self._trailers = False
        self._partial = b""
        for name, value in headers:
            if name == "content-type":
                self.content_type = value
                break

    # --- reading (the relay's side) ----------------------------------------------------

    async def readany(self) -> bytes:
        """Every body byte that arrived since the last call; b"" once the body is complete."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            waiter = self._waiter = (self._loop or asyncio.get_running_loop()).create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._paused and self._conn is not None:
            self._paused = False
            self._conn.resume_reading()
        return data

    def __aiter__(self) -> PlanResponse:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.readany()
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def __aenter__(self) -> PlanResponse:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.release()
        else:  # abandoned mid-answer (client gone, cancelled): never reuse the connection
            self.close()

    async def read(self) -> bytes:
        """The whole body."""
        parts = []
        while chunk := await self.readany():
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Done with this answer: the connection goes back to the pool if it is whole."""
        conn, self._conn = self._conn, None
        if conn is not None:
            # A paused connection is reused only after its reader drained it and resumed.
            conn.finished(reusable=self._done and self.keep_alive and self._error is None and not self._paused)

    def close(self) -> None:
        """Done with this answer, and its connection is not to be reused (e.g. abandoned)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finished(reusable=False)

    # --- feeding (the connection's side) --------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _deliver(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _PAUSE_AT and not self._paused and self._conn is not None:
            self._paused = True
            self._conn.pause_reading()

    def _finish_body(self, extra: bool) -> None:
        self._done = True
        if extra:  # bytes after the end of the answer: nothing was asked, so never reuse
            self.keep_alive = False

    def feed(self, data: bytes) -> None:
        if self._done:
            self.keep_alive = False
            return
        if self._chunked:
            self._feed_chunked(data)
        elif self._length_left >= 0:
            left = self._length_left
            if len(data) <= left:
                self._deliver(data)
                left -= len(data)
            else:
                self._deliver(data[:left])
                left = 0
                self.keep_alive = False
            self._length_left = left
            if left == 0:
                self._finish_body(False)
        else:
            self._deliver(data)
        self._wake()

    def _feed_chunked(self, data: bytes) -> None:
        # The hot loop of a relayed stream: one pass per chunk (the API sends one event per
        # chunk), slicing each whole chunk out directly. Everything else (a chunk split
        # across reads, extensions, trailers) takes the step-by-step path below.
        if self._partial:
            data = self._partial + data
            self._partial = b""
        pos = self._continue_chunk(data, 0) if self._chunk_left or self._crlf_due else 0
        size_of = len(data)
        find = data.find
        out = self._chunks
        added = 0
        while 0 <= pos < size_of and not self._trailers:
            line_end = find(b"\r\n", pos)
            if line_end < 0:
                if size_of - pos > 4096:
                    self._fail_framing("a chunk-size line is too long")
                    return
                self._partial = data[pos:]
                break
            field = data[pos:line_end]
            size = _CHUNK_SIZES.get(field, -1)
            if size < 0:
                size = _chunk_size(field)
                if size < 0:
                    self._fail_framing("a chunk size was not hexadecimal")
                    return
            start = line_end + 2
            if size == 0:
                self._trailers = True
                pos = start
                break
            end = start + size
            if end + 2 <= size_of:
                if data[end : end + 2] != b"\r\n":
                    self._fail_framing("a chunk did not end with CRLF")
                    return
                out.append(data[start:end])
                added += size
                pos = end + 2
            else:  # the chunk goes on in the next read
                self._chunk_left = size
                pos = self._continue_chunk(data, start)
        if added:
            self._buffered += added
            if self._buffered > _PAUSE_AT and not self._paused and self._conn is not None:
                self._paused = True
                self._conn.pause_reading()
        if self._trailers and pos >= 0:
            self._feed_trailers(data, pos)

    def _continue_chunk(self, data: bytes, pos: int) -> int:
        """Consume the rest of a chunk begun earlier; the position after it, or -1 when
        `data` ran out first (the state is kept for the next read)."""
        size_of = len(data)
        if self._chunk_left:
            take = min(self._chunk_left, size_of - pos)
            if take:
                self._deliver(data if take == size_of else data[pos : pos + take])
            self._chunk_left -= take
            pos += take
            if self._chunk_left:
                return -1
            self._crlf_due = True
        if size_of - pos < 2:
            self._partial = data[pos:]
            return -1
        if data[pos : pos + 2] != b"\r\n":
            self._fail_framing("a chunk did not end with CRLF")
            return -1
        self._crlf_due = False
        return pos + 2

    def _feed_trailers(self, data: bytes, pos: int) -> None:
        size_of = len(data)
        while pos < size_of:
            line_end = data.find(b"\r\n", pos)
            if line_end < 0:
                if size_of - pos > 4096:
                    self._fail_framing("a trailer line is too long")
                else:
                    self._partial = data[pos:]
                return
            if line_end == pos:  # the empty line after the trailers ends the body
                self._finish_body(line_end + 2 < size_of)
                return
            pos = line_end + 2

    def _fail_framing(self, why: str) -> None:
        self.keep_alive = False
        self._error = PlanConnectionError(f"the upstream answer broke HTTP/1.1 framing: {why}")
        if self._conn is not None:
            self._conn.abort()

    def lost(self, exc: Exception | None) -> None:
        """The connection closed: the end of a read-until-close body, else an error."""
        if not self._done:
            if not self._chunked and self._length_left < 0:
                self._done = True
            elif self._error is None:
                self._error = PlanConnectionError("the upstream closed the connection mid-answer")
                if exc is not None:
                    self._error.__cause__ = exc
        self.keep_alive = False
        self._wake()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one request at a time."""

    __slots__ = ("head", "head_waiter", "idle_since", "loop", "method", "pool", "response", "transport")

    def __init__(self, pool: PlanClient) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        # Its loop, kept: on Python 3.11 every `asyncio.get_running_loop()` is a getpid()
        # system call, and the request path asked for it four times per request.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.response: PlanResponse | None = None
        self.head = b""
        self.head_waiter: asyncio.Future[PlanResponse] | None = None
        self.method = "POST"
        self.idle_since = 0.0

    # asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.loop = asyncio.get_running_loop()
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is not None:
            response.feed(data)
            return
        if self.head_waiter is None:  # bytes nobody asked for: the connection is unusable
            self.abort()
            return
        head = self.head + data if self.head else data
        while True:
            end = head.find(b"\r\n\r\n")
            if end < 0:
                if len(head) > _HEAD_LIMIT:
                    self._head_failed(PlanConnectionError("the upstream response head is too large"))
                else:
                    self.head = head
                return
            try:
                response = self._parse_head(head[:end])
            except (ValueError, UnicodeError) as exc:
                self._head_failed(PlanConnectionError(f"the upstream response head is not HTTP/1.1: {exc}"))
                return
            rest = head[end + 4 :]
            if response is not None:
                break
            head = rest  # an interim 1xx answer: the real head follows
        self.head = b""
        self.response = response
        waiter, self.head_waiter = self.head_waiter, None
        if not waiter.done():
            waiter.set_result(response)
        if rest:
            response.feed(rest)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pool.forget(self)
        if self.head_waiter is not None:
            self._head_failed(PlanConnectionError("the upstream closed the connection before answering"), exc)
        if self.response is not None:
            self.response.lost(exc)

    # ---------------------------------------------------------------------------------

    def _head_failed(self, error: PlanConnectionError, cause: Exception | None = None) -> None:
        waiter, self.head_waiter = self.head_waiter, None
        if cause is not None:
            error.__cause__ = cause
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.abort()

    def _parse_head(self, raw: bytes) -> PlanResponse | None:
        lines = raw.decode("utf-8", "replace").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise ValueError(f"status line {lines[0][:40]!r}")
        status = int(rest[:3])
        if 100 <= status < 200:
            if status == 101:
                raise ValueError("unexpected 101 Switching Protocols")
            return None
        headers: list[tuple[str, str]] = []
        length: int | None = None
        chunked = False
        keep_alive = version == "HTTP/1.1"
        append = headers.append
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            # No whitespace in a field name (RFC 9112 §5.1): `in` tests, not a strip() call,
            # since this loop runs for each of the plan's ~20 headers on every request.
            if not sep or not name or " " in name or "\t" in name:
                raise ValueError(f"header line {line[:40]!r}")
            lname = name.lower()
            value = value.strip()
            append((lname, value))
            if lname not in _FRAMING:
                continue
            if lname == "content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise ValueError("bad Content-Length")
                length = int(value)
            elif lname == "transfer-encoding":
                chunked = value.lower().rsplit(",", 1)[-1].strip() == "chunked"
                keep_alive = keep_alive and chunked  # other codings end at the close
            elif lname == "connection":
                tokens = {token.strip() for token in value.lower().split(",")}
                if "close" in tokens:
                    keep_alive = False
                elif "keep-alive" in tokens:
                    keep_alive = True
        response = PlanResponse(self, status, headers, keep_alive)
        if self.method == "HEAD" or status in _NO_BODY_STATUSES:
            response._done = True
        elif chunked:
            response._chunked = True
        elif length is not None:
            response._length_left = length
            if length == 0:
                response._done = True
        else:
            response.keep_alive = False  # read until the connection closes
        return response

    # the pool's and the response's side -----------------------------------------------

    def send(self, method: str, request_head: bytes, body: bytes | None) -> asyncio.Future[PlanResponse]:
        assert self.transport is not None and self.loop is not None
        self.method = method
        waiter = self.head_waiter = self.loop.create_future()
        if not body:
            self.transport.write(request_head)
        elif len(body) < 16384:
            self.transport.write(request_head + body)  # one segment
        else:
            self.transport.writelines((request_head, body))  # no copy of a large body
        return waiter

    def head_timed_out(self) -> None:
        waiter, self.head_waiter = self.head_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())
        self.abort()

    def finished(self, reusable: bool) -> None:
        self.response = None
        if reusable and self.transport is not None and not self.transport.is_closing():
            self.pool.put(self)
        else:
            self.abort()

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()


class PlanClient:
    """Keep-alive HTTP/1.1 connections to one origin, handed out one request at a time."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        keepalive: float = 60.0,
        dns_ttl: float = 300.0,
        attempt_delay: float = 0.25,  # RFC 8305 §8's recommended Connection Attempt Delay
        proxy: str | None = None,  # http://[user:password@]host:port, tunnelled with CONNECT
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default_port else f"{host}:{self.port}"
        self.prefix = parts.path.rstrip("/")
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if parts.scheme == "https" else None
        # Through an outbound proxy, connections go to the proxy (its name is what gets
        # resolved) and each becomes a CONNECT tunnel to the upstream before TLS starts.
        self._tunnel_head: bytes | None = None
        self._dial_host, self._dial_port = self.host, self.port
        if proxy is not None:
            via = urlsplit(proxy)
            if via.scheme != "http" or not via.hostname:
                raise ValueError("the outbound proxy must be an http:// URL")
            self._dial_host, self._dial_port = via.hostname, via.port or 80
            authority = f"{host}:{self.port}"
            head = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
            if via.username is not None:
                credentials = f"{unquote(via.username)}:{unquote(via.password or '')}".encode()
                head += f"Proxy-Authorization: Basic {base64.b64encode(credentials).decode()}\r\n"
            self._tunnel_head = (head + "\r\n").encode()
        self.connect_timeout = connect_timeout  # per address (name resolution has its own)
        self.attempt_delay = attempt_delay
        self.keepalive = keepalive
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        # Resolved addresses, shared by every new connection for `dns_ttl` seconds: a burst
        # of new streams would otherwise queue one getaddrinfo each in the thread pool.
        self.dns_ttl = dns_ttl
        self._addresses: list[tuple[int, str, int]] = []
        self._resolved_at = 0.0
        self._resolving: asyncio.Task[list[tuple[int, str, int]]] | None = None
        self.resolutions = 0

    @property
    def in_use(self) -> int:
        """Connections carrying a request or an answer not yet released (tests check 0)."""
        return len(self._open) - len(self._idle)

    async def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None, head_timeout: float | None = None
    ) -> PlanResponse:
        """Send one request and wait for the response head. `target` is path + query.

        `head_timeout` bounds the wait for the head, connecting included (TimeoutError). It is a
        timer on the loop rather than `asyncio.timeout()`, which costs several times more
        per request. Cancelling before the head arrives closes the connection.
        """
        if self._closed:
            raise PlanConnectionError("the plan client is closed")
        request_head = render_head(method, self.prefix + target, self.host_header, headers, body)
        loop = asyncio.get_running_loop()
        deadline = None if head_timeout is None else loop.time() + head_timeout
        conn = self._take(loop.time())
        if conn is None:
            async with asyncio.timeout_at(deadline):
                conn = await self._connect()
        waiter = conn.send(method, request_head, body)
        timer = None if deadline is None else loop.call_at(deadline, conn.head_timed_out)
        try:
            return await waiter
        except BaseException:
            conn.abort()
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _take(self, now: float) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.usable and now - conn.idle_since < self.keepalive:
                return conn
            conn.abort()
        return None

    async def _resolve(self) -> list[tuple[int, str, int]]:
        """(family, address, port) of the upstream, cached for `dns_ttl`. One lookup runs at
        a time, as its own task, so a caller that times out does not cancel it for others."""
        loop = asyncio.get_running_loop()
        if self._addresses and loop.time() - self._resolved_at < self.dns_ttl:
            return self._addresses
        if self._resolving is None:
            self._resolving = loop.create_task(self._lookup())
            self._resolving.add_done_callback(_retrieve)
        return await asyncio.shield(self._resolving)

    async def _lookup(self) -> list[tuple[int, str, int]]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(self._dial_host, self._dial_port, type=socket.SOCK_STREAM)
        finally:
            self._resolving = None
        self.resolutions += 1
        addresses = [(int(family), str(addr[0]), int(addr[1])) for family, _, _, _, addr in infos]
        if not addresses:
            raise OSError(f"no address for {self._dial_host}")
        self._addresses = addresses
        self._resolved_at = loop.time()
        return addresses

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                addresses = await self._resolve()
        except TimeoutError:
            raise PlanConnectionError(f"resolving {self._dial_host} took over {self.connect_timeout:g} s") from None
        except OSError as exc:
            raise PlanConnectionError(f"could not connect to the upstream: {exc.__class__.__name__}") from exc
        conn = await self._race(interleaved(addresses))
        if self._closed:
            conn.abort()
            raise PlanConnectionError("the plan client is closed")
        self._open.add(conn)
        return conn

    async def _race(self, addresses: list[tuple[int, str, int]]) -> _Connection:
        """Happy Eyeballs (RFC 8305 §5): the next address is tried as soon as the previous
        attempt fails or `attempt_delay` passes without an answer, each attempt with its
        own `connect_timeout`; the first connection made wins and the others are dropped.
        So a first address that silently drops packets (a broken IPv6 route, typically)
        costs the attempt delay, not the whole budget."""
        loop = asyncio.get_running_loop()
        waiting = list(addresses)
        pending: set[asyncio.Task[_Connection]] = set()
        failures: list[BaseException] = []
        winner: _Connection | None = None
        try:
            while winner is None and (waiting or pending):
                if waiting:
                    pending.add(loop.create_task(self._attempt(*waiting.pop(0))))
                done, pending = await asyncio.wait(
                    pending, timeout=self.attempt_delay if waiting else None, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    failure = task.exception()
                    if failure is not None:
                        failures.append(failure)
                    elif winner is None:
                        winner = task.result()
                    else:
                        task.result().abort()  # two connected at once: keep one
        finally:
            for task in pending:
                task.add_done_callback(_drop_late_connection)
                task.cancel()
        if winner is not None:
            return winner
        self._addresses = []  # resolve again next time: the upstream may have moved
        if all(isinstance(f, TimeoutError) for f in failures):
            raise PlanConnectionError(f"connecting to the upstream took over {self.connect_timeout:g} s")
        failure = next(f for f in reversed(failures) if not isinstance(f, TimeoutError))
        if isinstance(failure, PlanConnectionError):  # the proxy's answer says more than a class name
            raise failure
        raise PlanConnectionError(f"could not connect to the upstream: {failure.__class__.__name__}") from failure

    async def _attempt(self, family: int, address: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        server_hostname = self.host if self.ssl is not None else None
        async with asyncio.timeout(self.connect_timeout):
            if self._tunnel_head is None:
                _, conn = await loop.create_connection(
                    lambda: _Connection(self),
                    address,
                    port,
                    family=family,
                    ssl=self.ssl,
                    server_hostname=server_hostname,
                )
            else:
                sock = await self._tunnel(family, address, port, self._tunnel_head)
                _, conn = await loop.create_connection(
                    lambda: _Connection(self), sock=sock, ssl=self.ssl, server_hostname=server_hostname
                )
        return conn

    @staticmethod
    async def _tunnel(family: int, address: str, port: int, head: bytes) -> socket.socket:
        """A TCP connection to the proxy at (address, port), turned into a tunnel to the
        upstream with HTTP CONNECT (RFC 9110 §9.3.6); TLS to the upstream then runs inside."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (address, port))
            await loop.sock_sendall(sock, head)
            answer = b""
            while b"\r\n\r\n" not in answer:
                piece = await loop.sock_recv(sock, 4096)
                if not piece or len(answer) > _HEAD_LIMIT:
                    raise PlanConnectionError("the outbound proxy closed the connection before opening the tunnel")
                answer += piece
            status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
            version, _, rest = status_line.partition(" ")
            if not version.startswith("HTTP/1.") or not rest.startswith("200"):
                raise PlanConnectionError(f"the outbound proxy refused the tunnel: {status_line[:60]}")
            if not answer.endswith(b"\r\n\r\n"):  # the upstream cannot have spoken yet
                raise PlanConnectionError("the outbound proxy sent bytes after opening the tunnel")
            return sock
        except BaseException:
            sock.close()
            raise

    def put(self, conn: _Connection) -> None:
        if self._closed:
            conn.abort()
            return
        loop = conn.loop or asyncio.get_running_loop()
        conn.idle_since = loop.time()
        self._idle.append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.keepalive, self._sweep)

    def forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)

    def _sweep(self) -> None:
        """Close connections idle for `keepalive` seconds (the oldest sit at the bottom)."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        kept = []
        for conn in self._idle:
            if now - conn.idle_since >= self.keepalive:
                conn.abort()  # connection_lost → forget
            else:
                kept.append(conn)
        self._idle = kept
        if kept:
            oldest = min(c.idle_since for c in kept)
            self._sweeper = loop.call_at(oldest + self.keepalive, self._sweep)

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._open):
            conn.abort()
        self._idle.clear()
        await asyncio.sleep(0)  # let connection_lost callbacks run
