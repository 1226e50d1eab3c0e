"""Structured JSON logs on stdout (structlog + orjson), with secrets redacted, and the
request metrics as CloudWatch Embedded Metric Format inside the `request_completed` line.

EMF: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import atexit
import contextvars
import datetime as dt
import logging
import os
import re
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any, BinaryIO, cast

import msgspec
import orjson
import structlog

NAMESPACE = "ClaudeCodeProxy"
SERVICE = "ccproxy"
# One low-cardinality dimension set: the alarms and the dashboard use exactly this.
DIMENSIONS = [["Service"]]
REQUEST_METRICS = [
    {"Name": "RequestCount", "Unit": "Count"},
    {"Name": "RequestLatency", "Unit": "Milliseconds"},
    {"Name": "ErrorCount", "Unit": "Count"},
    {"Name": "FallbackCount", "Unit": "Count"},
    {"Name": "FallbackFailedCount", "Unit": "Count"},  # Bedrock failed after the plan did
    {"Name": "BedrockTokensUsed", "Unit": "Count"},
    {"Name": "BedrockCost", "Unit": "None"},
]
CIRCUIT_METRICS = [{"Name": "CircuitOpen", "Unit": "Count"}]

_SECRET_FIELD = re.compile(r"(authorization|api[_-]?key|token|secret|password|credential)", re.I)
_SECRET_VALUE = re.compile(r"(ak_[A-Za-z0-9_-]{6})[A-Za-z0-9_-]{10,}|sk-ant-[A-Za-z0-9_-]{4,}|\bBearer\s+\S+", re.I)
_SAFE_FIELDS = frozenset({"key_prefix", "error_class", "token_count"})


def _mask_value(match: re.Match[str]) -> str:
    if match.group(1):
        return match.group(1) + "…"
    return "[redacted]"


def _scrub(value: Any) -> Any:
    """Mask key-, token- and bearer-shaped text anywhere inside a value."""
    if value.__class__ is str:
        if "ak_" in value or "sk-" in value or "earer" in value or "EARER" in value:
            return _SECRET_VALUE.sub(_mask_value, value)
        return value
    if isinstance(value, dict):
        return {k: "[redacted]" if _secret_name(k, v) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


_secret_names: dict[Any, bool] = {}


def _secret_name(field: Any, value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float):
        return False
    known = _secret_names.get(field)
    if known is None:
        # Field names repeat endlessly; decide each one once.
        known = (
            isinstance(field, str)
            and field not in _SAFE_FIELDS
            and not field.endswith("_tokens")
            and _SECRET_FIELD.search(field) is not None
        )
        if len(_secret_names) < 10_000:
            _secret_names[field] = known
    return known


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never let a full access key, a plan credential or a Bedrock key reach a log line:
    secret-named fields are dropped, and key-shaped text is masked at any depth,
    exception text included (this runs after the traceback is formatted)."""
    for field, value in event.items():
        if field == "_aws":
            continue  # the EMF block is ours: constant names and numbers
        if _secret_name(field, value):
            event[field] = "[redacted]"
        elif value.__class__ is not int and value.__class__ is not float and value is not None:
            event[field] = _scrub(value)
    return event


class BufferedOutput:
    """stdout written once per `flush_now()` (the server calls it every 100 ms and at exit)
    instead of one write syscall per line: at thousands of requests a second the
    per-line write was the largest cost of logging."""

    def __init__(self, raw: BinaryIO, limit: int = 1 << 16) -> None:
        self._raw = raw
        self._limit = limit
        self._buffer = bytearray()
        self._lock = threading.Lock()  # the journal logs from an executor thread

    def write(self, data: bytes) -> int:
        with self._lock:
            self._buffer += data
            full = len(self._buffer) >= self._limit
        if full:
            self.flush_now()
        return len(data)

    def flush(self) -> None:
        """structlog flushes after every line; the timer does it instead."""

    def flush_now(self) -> None:
        with self._lock:
            if not self._buffer:
                return
            data = bytes(self._buffer)
            self._buffer.clear()
        try:
            self._raw.write(data)
            self._raw.flush()
        except (OSError, ValueError):  # stdout gone (closed pipe at exit): nothing to do
            pass


_buffered: BufferedOutput | None = None
_request_out: BinaryIO | None = None  # where request_line() writes; None: above info
_PID = os.getpid()


def _add_pid(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Which worker process wrote the line (`ccproxy serve --workers N`).
    event["pid"] = _PID
    return event


class RequestLine(msgspec.Struct, kw_only=True):
    """The one-per-request `request_completed` line, fields in their JSON order: the usage
    event's fields, the few only the log has, the request metrics in EMF (`_aws` plus the
    metric members), then what every structlog line carries (`event`, `level`, `pid`, `ts`).

    A Struct, not a dict, because it is built and encoded for every request: msgspec
    encodes it in about half the instructions of building the dict and `orjson.dumps`."""

    request_id: str
    key_prefix: str
    user: str | None
    endpoint: str
    provider_attempted: str
    plan_outcome: str | None = None
    provider: str
    fallback: bool
    fallback_state: str | None = None
    status: int
    error_class: str | None
    model: str | None = None
    upstream_model: str | None = None
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = 0.0
    list_cost_usd: float = 0.0
    latency_ms: float
    ttfb_ms: float | None = None
    session_id: str | None = None
    agent_id: str | None = None
    model_substituted: bool = False
    aws: msgspec.Raw = msgspec.field(name="_aws", default=msgspec.Raw(b"{}"))
    Service: str = SERVICE
    RequestCount: int = 1
    RequestLatency: float = 0.0
    ErrorCount: int = 0
    FallbackCount: int = 0
    FallbackFailedCount: int = 0
    BedrockTokensUsed: int = 0
    BedrockCost: float = 0.0
    event: str = "request_completed"
    level: str = "info"
    pid: int = 0
    ts: dt.datetime | None = None


_encode_line = msgspec.json.Encoder().encode


def request_line(line: RequestLine, at: dt.datetime | None = None) -> None:
    """Write the one-per-request `request_completed` line.

    The same JSON to the same output as a structlog line at info level, rendered here
    directly: structlog's pipeline (keyword packing, the context copy, four processor
    calls, the logger proxy) cost 28 µs per request in the bench, several times this. Only
    the fields that come from the client can hold secrets (everything else is ours: ids,
    numbers, masked prefixes), so only they are scrubbed. The request metrics go in as
    EMF (`_aws`, stamped now). Nothing is written when the level is above info. `at`
    (UTC, default now) is the line's `ts`.
    """
    out = _request_out
    if out is None:
        return
    if line.model is not None:
        line.model = _scrub(line.model)
    if line.upstream_model is not None:
        line.upstream_model = _scrub(line.upstream_model)
    if line.session_id is not None:
        line.session_id = _scrub(line.session_id)
    if line.agent_id is not None:
        line.agent_id = _scrub(line.agent_id)
    directive = _directive(REQUEST_METRICS)
    line.aws = msgspec.Raw(b'{"Timestamp":%d,"CloudWatchMetrics":%b}' % (time.time() * 1000, directive))
    line.RequestLatency = line.latency_ms
    line.pid = _PID
    line.ts = at or dt.datetime.now(dt.UTC)
    out.write(_encode_line(line) + b"\n")


def _request_id_var() -> contextvars.ContextVar[Any]:
    """structlog's own context variable behind `bind_contextvars(request_id=…)`, so the
    request path sets and resets it directly (`REQUEST_ID.set`, `.reset`): two C calls
    instead of bind/reset's keyword packing and lookups on every request. Lines logged
    meanwhile get the id from `merge_contextvars` as before."""
    tokens = structlog.contextvars.bind_contextvars(request_id=None)
    structlog.contextvars.reset_contextvars(**tokens)
    return tokens["request_id"].var


REQUEST_ID = _request_id_var()


def flush() -> None:
    if _buffered is not None:
        _buffered.flush_now()


def configure(level: str = "info", stream: Any = None, *, buffered: bool = False) -> None:
    """Configure structlog once: JSON lines, ISO timestamps, contextvars first, redaction.
    `buffered` (the server) batches writes to stdout; call `flush()` periodically."""
    global _buffered
    out = stream if stream is not None else sys.stdout
    out = cast(BinaryIO, getattr(out, "buffer", out))
    if buffered:
        _buffered = BufferedOutput(out)
        atexit.register(flush)
        out = cast(BinaryIO, _buffered)
    global _request_out, _PID
    _PID = os.getpid()  # configure runs in each worker after the fork
    _request_out = out if logging.getLevelNamesMapping()[level.upper()] <= logging.INFO else None
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_pid,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            redact,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.BytesLoggerFactory(out),
        cache_logger_on_first_use=True,
    )


# --- one logging path: the standard library's loggers, asyncio and stray exceptions ---------


class _ToStructlog(logging.Handler):
    """Standard-library records (aiohttp, asyncio, botocore, warnings) as structlog JSON
    lines, through the same redaction. A record's traceback and exception message are
    never written (they can quote request bytes); its class is."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format
            message = str(record.msg)
        fields: dict[str, Any] = {"logger": record.name, "message": message[:500]}
        if record.exc_info and record.exc_info[1] is not None:
            fields["error"] = type(record.exc_info[1]).__name__
        structlog.get_logger("stdlib").log(max(record.levelno, logging.DEBUG), "library_log", **fields)


_HANDLER = _ToStructlog()


def capture_stdlib(level: str = "info") -> None:
    """Route every standard-library logger, `warnings`, and uncaught exceptions in threads
    and at exit through structlog (issue 16: one logging path). Idempotent."""
    import sys as _sys
    import threading as _threading

    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler is not _HANDLER:
            root.removeHandler(handler)
    if _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)
    root.setLevel(max(logging.getLevelNamesMapping()[level.upper()], logging.INFO))
    for name in ("aiohttp.access", "aiohttp.server", "aiohttp.web", "asyncio"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    logging.captureWarnings(True)
    error_log = structlog.get_logger("gateway.crash")

    def excepthook(kind: type[BaseException], exc: BaseException, _tb: Any) -> None:
        error_log.error("uncaught_exception", error=kind.__name__)
        flush()

    def thread_hook(args: Any) -> None:
        error_log.error("uncaught_exception", error=args.exc_type.__name__, thread=getattr(args.thread, "name", None))

    def unraisable_hook(args: Any) -> None:
        error_log.warning("unraisable_exception", error=type(args.exc_value).__name__)

    _sys.excepthook = excepthook
    _threading.excepthook = thread_hook
    _sys.unraisablehook = unraisable_hook


def loop_exception_handler(_loop: Any, context: dict[str, Any]) -> None:
    """asyncio's handler for exceptions nobody awaited: one line with the class and
    asyncio's own message (which names the callback or task, never request bytes)."""
    exc = context.get("exception")
    structlog.get_logger("asyncio").error(
        "loop_exception",
        message=str(context.get("message", ""))[:200],
        error=type(exc).__name__ if exc is not None else None,
    )


_directives: dict[int, bytes] = {}


def _directive(metrics: list[dict[str, str]]) -> bytes:
    """An EMF line's `CloudWatchMetrics` directive: the same JSON on every line of a kind,
    so it is rendered once, not built per line."""
    rendered = _directives.get(id(metrics))
    if rendered is None:
        body = [{"Namespace": NAMESPACE, "Dimensions": DIMENSIONS, "Metrics": metrics}]
        rendered = _directives[id(metrics)] = orjson.dumps(body)
    return rendered


def emf_metadata(metrics: list[dict[str, str]]) -> dict[str, Any]:
    """The `_aws` member of an EMF line logged through structlog."""
    return {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": orjson.Fragment(_directive(metrics))}


def emf(metrics: list[dict[str, str]], values: dict[str, Any]) -> dict[str, Any]:
    """The EMF fields to merge into a log line: metadata plus the metric values."""
    return {"_aws": emf_metadata(metrics), "Service": SERVICE, **values}
