"""Usage metering for relayed answers without decoding them.

`UsageScanner.feed()` sees every chunk of an Anthropic SSE stream exactly as relayed. It
looks for the few events that carry usage or errors (`message_start`, `message_delta`,
`error`) with `bytes.find`, buffers only those events (which may be split across chunks
anywhere), and decodes only them with msgspec. Everything else passes untouched.

Token counts: `message_start.message.usage`, then each `message_delta.usage`, whose
fields are cumulative and override (https://docs.anthropic.com/en/docs/build-with-claude/streaming).
"""

from __future__ import annotations

import msgspec

PING = b'event: ping\ndata: {"type": "ping"}\n\n'

# A real newline before "event:" means a line start: JSON in data lines escapes newlines,
# so model text that happens to contain "event: message_start" cannot match.
# Only the events that matter are looked for, not every event line: a 200-event stream
# has 3 or 4 of them, so the scan costs two `bytes.find` passes per chunk.
_EVENT_LINE = b"\nevent: "
_MESSAGE_MARKER = _EVENT_LINE + b"message_"
_ERROR_MARKER = _EVENT_LINE + b"error"
_INTERESTING = (b"message_start", b"message_delta", b"error")
_METERED = frozenset({b"message_start", b"message_delta", b"error", b"message_stop"})
_TAIL = 40  # longer than any marker we look for, so a marker split across chunks is seen


class _CacheCreation(msgspec.Struct):
    ephemeral_5m_input_tokens: int | None = None
    ephemeral_1h_input_tokens: int | None = None


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation: _CacheCreation | None = None


class _Message(msgspec.Struct):
    model: str | None = None
    usage: _Usage | None = None


class _ErrorBody(msgspec.Struct):
    type: str = "api_error"


class _Event(msgspec.Struct):
    type: str = ""
    message: _Message | None = None
    usage: _Usage | None = None
    error: _ErrorBody | None = None


_decode_event = msgspec.json.Decoder(_Event).decode
_decode_message = msgspec.json.Decoder(_Message).decode


class UsageCounts:
    """Token counts as the upstream reported them, merged as they arrive."""

    __slots__ = (
        "cache_1h",
        "cache_5m",
        "cache_creation",
        "cache_read",
        "error_type",
        "input_tokens",
        "model",
        "output_tokens",
        "seen_stop",
    )

    def __init__(self) -> None:
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_creation = 0
        self.cache_5m = 0
        self.cache_1h = 0
        self.cache_read = 0
        self.model: str | None = None
        self.error_type: str | None = None
        self.seen_stop = False

    def merge(self, usage: _Usage) -> None:
        if usage.input_tokens is not None:
            self.input_tokens = usage.input_tokens
        if usage.output_tokens is not None:
            self.output_tokens = usage.output_tokens
        if usage.cache_creation_input_tokens is not None:
            self.cache_creation = usage.cache_creation_input_tokens
        if usage.cache_read_input_tokens is not None:
            self.cache_read = usage.cache_read_input_tokens
        split = usage.cache_creation
        if split is not None:
            if split.ephemeral_5m_input_tokens is not None:
                self.cache_5m = split.ephemeral_5m_input_tokens
            if split.ephemeral_1h_input_tokens is not None:
                self.cache_1h = split.ephemeral_1h_input_tokens

    def observe_message(self, body: bytes) -> bool:
        """Take usage from a non-streaming answer; False when the body is not a JSON object."""
        try:
            message = _decode_message(body)
        except msgspec.DecodeError:
            return False
        self.model = message.model
        if message.usage is not None:
            self.merge(message.usage)
        return True

    def observe_sse(self, kind: bytes, data: bytes) -> None:
        """An emitted SSE event (`event: kind`, `data: data`): the Bedrock translator's
        `on_event`. Only the events that carry usage, errors or the end are decoded."""
        if kind in _METERED:
            self.observe_event(data)

    def observe_event(self, data: bytes) -> None:
        """Take usage from one event's JSON (also used by the Bedrock translator)."""
        try:
            event = _decode_event(data)
        except msgspec.DecodeError:
            return
        kind = event.type
        if kind == "message_start" and event.message is not None:
            self.model = event.message.model
            if event.message.usage is not None:
                self.merge(event.message.usage)
        elif kind == "message_delta":
            if event.usage is not None:
                self.merge(event.usage)
        elif kind == "error":
            self.error_type = event.error.type if event.error is not None else "api_error"
        elif kind == "message_stop":
            self.seen_stop = True


class UsageScanner:
    """Feeds on relayed SSE chunks; fills `counts`; tells whether an event is half-sent."""

    __slots__ = ("_carry", "_pending", "counts")

    def __init__(self) -> None:
        self.counts = UsageCounts()
        self._carry = b"\n"  # the stream start counts as a line start
        self._pending: bytearray | None = None  # an interesting event not yet complete

    def feed(self, chunk: bytes) -> None:
        if self._pending is not None:
            self._pending += chunk
            if b"\n\n" not in self._pending:
                return
            data = bytes(self._pending)
            self._pending = None
            self._scan(data, 0)
            return
        data = self._carry + chunk
        self._scan(data, 0)

    def _scan(self, data: bytes, start: int) -> None:
        find = data.find
        while True:
            at = find(_MESSAGE_MARKER, start)
            error_at = find(_ERROR_MARKER, start, len(data) if at < 0 else at)
            if error_at >= 0:
                at = error_at
            if at < 0:
                self._carry = data[max(start, len(data) - _TAIL) :]
                return
            name_at = at + len(_EVENT_LINE)
            name_end = find(b"\n", name_at)
            if name_end < 0:
                # The event line itself is split; keep it for the next chunk.
                self._pending = bytearray(data[at:])
                self._carry = b""
                return
            name = data[name_at:name_end].strip()
            end = find(b"\n\n", name_end)
            if name in _INTERESTING:
                if end < 0:
                    self._pending = bytearray(data[at:])
                    self._carry = b""
                    return
                self._handle(data[name_end + 1 : end])
            elif name == b"message_stop":
                self.counts.seen_stop = True
            if end < 0:
                self._carry = data[max(start, len(data) - _TAIL) :]
                return
            start = end + 1  # keep the "\n" so the next marker's newline is there

    def _handle(self, fields: bytes) -> None:
        # One event's lines after "event:"; data lines are joined with "\n" (SSE spec).
        parts = [line[5:].lstrip() for line in fields.split(b"\n") if line.startswith(b"data:")]
        if parts:
            self.counts.observe_event(b"\n".join(parts))

    def at_event_boundary(self) -> bool:
        """True when the bytes relayed so far end on a complete event (safe for a ping)."""
        return self._pending is None and (self._carry == b"\n" or self._carry.endswith(b"\n\n"))
