"""AWS event stream (`application/vnd.amazon.eventstream`) decoding, and its translation
from Bedrock's InvokeModelWithResponseStream frames to Anthropic SSE bytes.

Wire format: https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html#streaming-event-stream
(reference implementation: botocore/eventstream.py). Each message is

    total_length:u32 | headers_length:u32 | prelude_crc:u32 | headers | payload | message_crc:u32

with both CRCs CRC-32 (zlib), big-endian, the message CRC covering everything before it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import msgspec
import orjson

from gateway import errors

_PRELUDE = 12  # total_length + headers_length + prelude_crc
_OVERHEAD = _PRELUDE + 4  # plus the trailing message CRC
MAX_FRAME = 16 * 1024 * 1024  # Bedrock chunks are KiBs; a bigger length is corruption or abuse
MAX_HEADERS = 128 * 1024  # botocore's _MAX_HEADERS_LENGTH

_u32x3 = struct.Struct("!III")
_u32 = struct.Struct("!I")
_u16 = struct.Struct("!H")
_i8 = struct.Struct("!b")
_i16 = struct.Struct("!h")
_i32 = struct.Struct("!i")
_i64 = struct.Struct("!q")

HeaderValue = bool | int | bytes | str
OnEvent = Callable[[bytes, bytes], None]


class EventStreamError(ValueError):
    """The byte stream is not a valid event stream (CRC, lengths, header encoding)."""


class Frame:
    """One decoded event-stream message."""

    __slots__ = ("headers", "payload")

    def __init__(self, headers: dict[str, HeaderValue], payload: bytes) -> None:
        self.headers = headers
        self.payload = payload

    def __repr__(self) -> str:
        return f"Frame(headers={self.headers!r}, payload=<{len(self.payload)} bytes>)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return self.headers == other.headers and self.payload == other.payload

    __hash__ = None  # type: ignore[assignment]


def _parse_headers(view: memoryview, start: int, end: int) -> dict[str, HeaderValue]:
    """Header values decode as botocore's do: timestamps as int ms, UUIDs as 16 bytes."""
    headers: dict[str, HeaderValue] = {}
    pos = start
    try:
        while pos < end:
            name_len = view[pos]
            pos += 1
            name = bytes(view[pos : pos + name_len]).decode()
            pos += name_len
            kind = view[pos]
            pos += 1
            value: HeaderValue
            if kind == 7 or kind == 6:  # string / byte array, u16 length
                (length,) = _u16.unpack_from(view, pos)
                pos += 2
                raw = bytes(view[pos : pos + length])
                pos += length
                value = raw.decode() if kind == 7 else raw
            elif kind == 0:
                value = True
            elif kind == 1:
                value = False
            elif kind == 2:
                (value,) = _i8.unpack_from(view, pos)
                pos += 1
            elif kind == 3:
                (value,) = _i16.unpack_from(view, pos)
                pos += 2
            elif kind == 4:
                (value,) = _i32.unpack_from(view, pos)
                pos += 4
            elif kind == 5 or kind == 8:  # long / timestamp (ms since epoch)
                (value,) = _i64.unpack_from(view, pos)
                pos += 8
            elif kind == 9:  # uuid
                value = bytes(view[pos : pos + 16])
                pos += 16
            else:
                raise EventStreamError(f"unknown header value type {kind}")
            if pos > end:
                raise EventStreamError("header runs past the headers section")
            if name in headers:
                raise EventStreamError(f"duplicate header {name!r}")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"malformed headers: {exc}") from exc
    return headers


_HEADER_CACHE: dict[bytes, dict[str, HeaderValue]] = {}


class EventStreamDecoder:
    """Incremental decoder: `feed()` bytes as they arrive, get the complete frames back.

    Frames may be split across reads anywhere. Complete frames are parsed in place from
    the incoming bytes (offsets + memoryview); only an incomplete tail is kept.
    """

    __slots__ = ("_buf", "_max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max_frame = max_frame

    @property
    def pending(self) -> int:
        """Bytes held back as an incomplete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return every frame they complete. Raise EventStreamError when invalid."""
        buf = self._buf
        if buf:
            buf += data
            source: bytes | bytearray = buf
        else:
            source = data
        frames: list[Frame] = []
        size = len(source)
        pos = 0
        with memoryview(source) as view:
            while size - pos >= _PRELUDE:
                total, headers_len, prelude_crc = _u32x3.unpack_from(view, pos)
                if zlib.crc32(view[pos : pos + 8]) != prelude_crc:
                    raise EventStreamError("prelude CRC mismatch")
                if total < _OVERHEAD or total > self._max_frame:
                    raise EventStreamError(f"bad frame length {total}")
                if headers_len > total - _OVERHEAD or headers_len > MAX_HEADERS:
                    raise EventStreamError(f"bad headers length {headers_len}")
                end = pos + total
                if end > size:
                    break
                (message_crc,) = _u32.unpack_from(view, end - 4)
                if zlib.crc32(view[pos + 8 : end - 4], prelude_crc) != message_crc:
                    raise EventStreamError("message CRC mismatch")
                headers_end = pos + _PRELUDE + headers_len
                # Bedrock repeats the same few header sets on every frame: parse each once.
                raw_headers = bytes(view[pos + _PRELUDE : headers_end])
                cached = _HEADER_CACHE.get(raw_headers)
                if cached is None:
                    cached = _parse_headers(view, pos + _PRELUDE, headers_end)
                    if headers_len <= 512 and len(_HEADER_CACHE) < 64:
                        _HEADER_CACHE[raw_headers] = cached
                headers = cached.copy()
                frames.append(Frame(headers, bytes(view[headers_end : end - 4])))
                pos = end
        if buf:
            del buf[:pos]
        elif pos < size:
            buf += source[pos:]
        return frames


def _header_bytes(headers: dict[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name = name.encode()
        raw_value = value.encode()
        out += bytes((len(raw_name),)) + raw_name + b"\x07" + _u16.pack(len(raw_value)) + raw_value
    return bytes(out)


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string headers (for the fake Bedrock and tests)."""
    head = _header_bytes(headers)
    total = _OVERHEAD + len(head) + len(payload)
    prelude = _u32.pack(total) + _u32.pack(len(head))
    prelude += _u32.pack(zlib.crc32(prelude))
    body = prelude + head + payload
    return body + _u32.pack(zlib.crc32(body))


# --- Bedrock stream → Anthropic SSE --------------------------------------------------


# https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ResponseStream.html:
# `chunk` events carry PayloadPart {"bytes": base64}; the bytes are one Anthropic event.
class _PayloadPart(msgspec.Struct):
    data: bytes = msgspec.field(name="bytes")  # msgspec decodes base64 into bytes


class _EventType(msgspec.Struct):
    type: str


class _ExceptionBody(msgspec.Struct):
    message: str = ""
    Message: str = ""


_decode_part = msgspec.json.Decoder(_PayloadPart).decode
_decode_type = msgspec.json.Decoder(_EventType).decode
_decode_exception = msgspec.json.Decoder(_ExceptionBody).decode


_AUTH_CODES = frozenset(
    (
        "accessdenied",
        "unrecognizedclient",
        "invalidsignature",
        "incompletesignature",
        "missingauthenticationtoken",
        "expiredtoken",
        "unauthorized",
    )
)


def error_class(code: str | None, status: int | None = None) -> type[errors.GatewayError]:
    """The gateway error for a Bedrock error code and/or HTTP status (SPEC §4).

    `code` may be an `x-amzn-ErrorType` value (`ThrottlingException:http://…`) or an
    `:exception-type` header (`throttlingException`).
    """
    name = (code or "").split(":", 1)[0].strip().lower().removesuffix("exception")
    if name in _AUTH_CODES:
        # The gateway's own credentials or model access: never a 401/403 (SPEC §4).
        return errors.FallbackAccessDenied
    if name in ("throttling", "toomanyrequests", "servicequotaexceeded"):
        # ServiceQuotaExceeded is a 400 in Bedrock's API but means "too much", like a 429.
        return errors.RateLimited
    if name == "validation":
        return errors.InvalidRequest
    if name in ("modelstreamerror", "modeltimeout"):
        return errors.UpstreamFailed
    if status in (401, 403):
        return errors.FallbackAccessDenied
    if status == 429:
        return errors.RateLimited
    if status == 400:
        return errors.InvalidRequest
    return errors.Overloaded


# Bedrock's throttling answers carry no retry-after; Claude Code's client waits this long
# before it tries again (SPEC §4: throttling stays a 429 with retry-after).
THROTTLE_RETRY_AFTER = "10"


def bedrock_error(
    error: type[errors.GatewayError], message: str, retry_after: str | None = None
) -> errors.GatewayError:
    """The exception for a Bedrock failure before the first byte; a throttle says when to
    retry (Bedrock's own `retry-after` when it sent one)."""
    if issubclass(error, errors.RateLimited):
        return error(message, headers={"retry-after": retry_after or THROTTLE_RETRY_AFTER})
    return error(message)


def sse_error(error_type: str, message: str) -> bytes:
    """An Anthropic in-stream `error` event."""
    data = orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return b"event: error\ndata: " + data + b"\n\n"


class StreamFailure:
    """What ended a Bedrock stream early: the gateway error class and Bedrock's message."""

    __slots__ = ("error", "message")

    def __init__(self, error: type[errors.GatewayError], message: str) -> None:
        self.error = error
        self.message = message

    def exception(self) -> errors.GatewayError:
        return bedrock_error(self.error, self.message)

    def __repr__(self) -> str:
        return f"StreamFailure({self.error.__name__}, {self.message!r})"


_SAFE_TYPES: dict[str, bytes] = {}


def _type_bytes(name: str) -> bytes:
    cached = _SAFE_TYPES.get(name)
    if cached is not None:
        return cached
    raw = name.encode()
    if not raw or b"\n" in raw or b"\r" in raw or len(raw) > 64:
        raise EventStreamError("event type unusable as an SSE event name")
    if len(_SAFE_TYPES) < 256:
        _SAFE_TYPES[name] = raw
    return raw


class BedrockSSETranslator:
    """Bedrock InvokeModelWithResponseStream bytes in, Anthropic SSE bytes out.

    `feed()` returns the SSE for every complete frame. A Bedrock exception frame, or an
    undecodable stream, becomes one `event: error` and ends the translation; `failure`
    then says why, and `emitted` (events sent before it) tells the caller whether the
    failure came before the first byte (and should be an HTTP error instead).
    """

    __slots__ = ("_decoder", "_on_event", "emitted", "failure", "finished", "saw_stop")

    def __init__(self, on_event: OnEvent | None = None) -> None:
        self._decoder = EventStreamDecoder()
        self._on_event = on_event
        self.emitted = 0
        self.failure: StreamFailure | None = None
        self.finished = False
        self.saw_stop = False

    def feed(self, data: bytes) -> bytes:
        if self.finished:
            return b""
        try:
            frames = self._decoder.feed(data)
        except EventStreamError as exc:
            return self.fail(errors.Overloaded, f"Bedrock stream could not be decoded: {exc}")
        out: list[bytes] = []
        on_event = self._on_event
        for frame in frames:
            headers = frame.headers
            kind = headers.get(":message-type")
            if kind == "event":
                if headers.get(":event-type") != "chunk":
                    continue  # e.g. initial-response; nothing Anthropic would send
                try:
                    event = _decode_part(frame.payload).data
                    event_type = _type_bytes(_decode_type(event).type)
                except (msgspec.DecodeError, EventStreamError) as exc:
                    out.append(self.fail(errors.Overloaded, f"Bedrock sent a bad chunk: {exc}"))
                    break
                if b"\n" in event or b"\r" in event:
                    # Bedrock sends compact JSON; if not, keep SSE framing intact (a data
                    # field may span lines: https://html.spec.whatwg.org/multipage/server-sent-events.html)
                    event = event.replace(b"\r", b"").replace(b"\n", b"\ndata: ")
                out.append(b"event: " + event_type + b"\ndata: " + event + b"\n\n")
                self.emitted += 1
                if event_type == b"message_stop":
                    self.saw_stop = True
                if on_event is not None:
                    on_event(event_type, event)
            elif kind == "exception" or kind == "error":
                out.append(self._exception(frame))
                break
        return b"".join(out)

    def _exception(self, frame: Frame) -> bytes:
        headers = frame.headers
        if headers.get(":message-type") == "error":  # generic event-stream error
            code = str(headers.get(":error-code", ""))
            message = str(headers.get(":error-message", ""))
        else:
            code = str(headers.get(":exception-type", ""))
            try:
                body = _decode_exception(frame.payload)
                message = body.message or body.Message
            except msgspec.DecodeError:
                message = ""
        return self.fail(error_class(code or "unknown"), message or f"Bedrock error: {code}")

    def fail(self, error: type[errors.GatewayError], message: str) -> bytes:
        """End the translation with an SSE error event (also used for transport failures)."""
        if self.finished:
            return b""
        self.finished = True
        self.failure = StreamFailure(error, message)
        # The message as the error class words it (an access denial says who must act).
        event = sse_error(error.error_type, error(message).message)
        if self._on_event is not None:
            self._on_event(b"error", event[len(b"event: error\ndata: ") : -2])
        return event

    def finish(self) -> bytes:
        """The upstream ended: an error event if it ended mid-frame or before message_stop."""
        if self.finished:
            return b""
        if self._decoder.pending:
            return self.fail(errors.Overloaded, "Bedrock stream ended inside a frame")
        if not self.saw_stop:
            return self.fail(errors.Overloaded, "Bedrock stream ended before message_stop")
        self.finished = True
        return b""
