"""The one frozen configuration object, built once from `CCPROXY_*` environment variables.

Every setting is declared once in `SETTINGS` (name, default, parser, meaning); `load()`
validates all of them eagerly and names the setting in every error. Nothing else in the
package reads `os.environ`.
"""

from __future__ import annotations

import dataclasses
import re
import zoneinfo
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A setting is invalid; the message names it."""


# --- parsers: each takes the raw string and returns the value or raises ValueError ----


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value

    return parse


def _float_range(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value

    return parse


def _url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return raw.rstrip("/")


def _optional_url(raw: str) -> str | None:
    return _url(raw) if raw else None


def _optional_str(raw: str) -> str | None:
    return raw or None


def _str(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _log_level(raw: str) -> str:
    lowered = raw.lower()
    if lowered not in ("debug", "info", "warning", "error"):
        raise ValueError("must be one of debug, info, warning, error")
    return lowered


def _timezone(raw: str) -> str:
    try:
        zoneinfo.ZoneInfo(raw)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {raw!r}") from exc
    return raw


def _database_url(raw: str) -> str | None:
    if not raw:
        return None
    if urlsplit(raw).scheme not in ("postgres", "postgresql"):
        raise ValueError("must be a postgresql:// URL")
    return raw


def _jwt_secret(raw: str) -> str | None:
    if raw and len(raw) < 32:
        raise ValueError("must be at least 32 characters")
    return raw or None


_BCRYPT = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")


def _bcrypt_hash(raw: str) -> str | None:
    if raw and not _BCRYPT.match(raw):
        raise ValueError("must be a bcrypt hash ($2b$12$…)")
    return raw or None


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    field: str
    default: str
    parse: Callable[[str], Any]
    doc: str
    secret: bool = False

    @property
    def env(self) -> str:
        return "CCPROXY_" + self.field.upper()


MiB = 1024 * 1024

SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", _str, "Address `ccproxy serve` listens on."),
    Setting("port", "8000", _int_range(0, 65535), "Port `ccproxy serve` listens on."),
    Setting("workers", "1", _int_range(1, 64), "Server processes sharing the port (SO_REUSEPORT)."),
    Setting(
        "data_dir",
        "./.ccproxy",
        _str,
        "Local state: embedded PostgreSQL, generated key-hash secret, usage journal.",
    ),
    Setting(
        "database_url",
        "",
        _database_url,
        "PostgreSQL URL; empty starts the embedded PostgreSQL in the data directory.",
        secret=True,
    ),
    Setting("db_pool_size", "5", _int_range(1, 100), "Pool connections kept open (seed: 5)."),
    Setting("db_max_overflow", "5", _int_range(0, 100), "Extra connections under load (seed: 5)."),
    Setting("db_pool_timeout", "30", _float_range(0.1, 600), "Seconds to wait for a pool connection."),
    Setting(
        "db_pool_recycle",
        "1800",
        _float_range(1, 86400),
        "Seconds after which a pooled connection is replaced.",
    ),
    Setting(
        "plan_base_url",
        "https://api.anthropic.com",
        _url,
        "Anthropic API the plan calls go to.",
    ),
    Setting(
        "plan_api_key",
        "",
        _optional_str,
        "Organisation Anthropic API key for org mode, or when a request has no credential.",
        secret=True,
    ),
    Setting("plan_connect_timeout", "10", _float_range(0.1, 600), "Seconds to connect to the plan."),
    Setting(
        "plan_first_byte_timeout",
        "60",
        _float_range(0.1, 3600),
        "Seconds a streaming plan call may take to send its response headers.",
    ),
    Setting(
        "plan_nonstream_timeout",
        "600",
        _float_range(0.1, 3600),
        "Seconds a non-streaming plan call may take to send its response headers.",
    ),
    Setting(
        "key_hash_secret",
        "",
        _optional_str,
        "HMAC secret for access keys; empty generates one into the data directory.",
        secret=True,
    ),
    Setting(
        "max_body_bytes",
        str(32 * MiB),
        _int_range(1024, 1024 * MiB),
        "Largest request body accepted (larger gets 413).",
    ),
    Setting(
        "ping_interval",
        "15",
        _float_range(0.05, 3600),
        "Seconds of upstream silence after which a `ping` SSE event is sent.",
    ),
    Setting(
        "usage_batch_rows",
        "5000",
        _int_range(1, 100000),
        "Usage rows per COPY batch (flush at); bigger batches write faster under load.",
    ),
    Setting("usage_flush_ms", "200", _int_range(1, 60000), "Longest wait before a usage flush (ms)."),
    Setting(
        "usage_queue_max",
        "100000",
        _int_range(100, 10_000_000),
        "Usage events held in memory before spilling to the journal.",
    ),
    Setting(
        "drain_seconds",
        "30",
        _float_range(0, 3600),
        "On SIGTERM, seconds in-flight requests get to finish.",
    ),
    # --- adversity: connection limits, parser limits, key-guessing throttle (issue 16) ---
    Setting(
        "header_timeout_seconds",
        "10",
        _float_range(0.5, 600),
        "Seconds a client may take to send a request line and its headers, and longest silence inside a body.",
    ),
    Setting(
        "keepalive_seconds",
        "75",
        _float_range(1, 3600),
        "Seconds an idle keep-alive client connection is kept open between requests.",
    ),
    Setting("max_request_line", "8190", _int_range(256, 65536), "Longest request line accepted (longer gets 414)."),
    Setting("max_header_bytes", "16384", _int_range(1024, MiB), "Longest header line accepted (longer gets 431)."),
    Setting("max_headers", "128", _int_range(16, 4096), "Most request headers accepted (more gets 431)."),
    Setting("max_connections", "10000", _int_range(1, 1_000_000), "Open client connections in total (more get 503)."),
    Setting(
        "max_connections_per_address",
        "2000",
        _int_range(1, 1_000_000),
        "Open client connections from one address (more get 503; behind a load balancer, its nodes).",
    ),
    Setting(
        "key_miss_limit",
        "30",
        _int_range(1, 1_000_000),
        "Unknown access keys one client address may present per window before it gets 429.",
    ),
    Setting(
        "key_miss_window_seconds",
        "60",
        _float_range(1, 86400),
        "Window (seconds) of the key-guessing throttle.",
    ),
    Setting(
        "forwarded_hops",
        "0",
        _int_range(0, 8),
        "Trusted proxies in front (1 behind an ALB): the client address is read from X-Forwarded-For.",
    ),
    Setting(
        "db_connect_retry_seconds",
        "30",
        _float_range(0, 3600),
        "How long `ccproxy serve` keeps retrying an unreachable database before giving up.",
    ),
    Setting(
        "minute_rollup_days",
        "14",
        _int_range(1, 3650),
        "Days minute-level usage rollups are kept (hour and coarser are kept forever).",
    ),
    Setting(
        "budget_refresh_seconds",
        "2",
        _float_range(0.1, 3600),
        "How often month-to-date spend is re-read from the rollups (bounds budget overshoot).",
    ),
    Setting(
        "alert_webhook_url",
        "",
        _optional_url,
        "Budget alerts are POSTed here as JSON (retried), besides the budget_alert log event.",
        secret=True,
    ),
    Setting("log_level", "info", _log_level, "debug, info, warning or error."),
    Setting("report_tz", "UTC", _timezone, "Time zone of usage buckets and budget months."),
    Setting(
        "key_cache_negative_seconds",
        "2",
        _float_range(0, 3600),
        "Seconds an unknown access key is remembered as unknown.",
    ),
    Setting(
        "key_refresh_seconds",
        "30",
        _float_range(1, 86400),
        "Full access-key cache refresh period (backs up LISTEN/NOTIFY).",
    ),
    Setting("circuit_failures", "3", _int_range(1, 1000), "Counted plan failures that open it."),
    Setting(
        "circuit_window_seconds",
        "60",
        _float_range(1, 86400),
        "Window the counted failures must fall in.",
    ),
    Setting(
        "circuit_open_seconds",
        "1800",
        _float_range(1, 604800),
        "Seconds an open circuit waits before a half-open probe.",
    ),
    Setting("bedrock_default_region", "us-east-1", _str, "Bedrock region when the key sets none."),
    Setting(
        "bedrock_default_model",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        _str,
        "Bedrock model id when neither the key nor the mapping table gives one.",
    ),
    Setting(
        "bedrock_endpoint_url",
        "",
        _optional_url,
        "Override of https://bedrock-runtime.{region}.amazonaws.com (tests, bench).",
    ),
    Setting(
        "bedrock_beta_allowlist",
        "interleaved-thinking-2025-05-14,context-1m-2025-08-07,"
        "fine-grained-tool-streaming-2025-05-14,token-efficient-tools-2025-02-19,"
        "computer-use-2025-01-24,output-128k-2025-02-19,context-management-2025-06-27",
        _csv,
        "anthropic-beta values forwarded to Bedrock; others are dropped.",
    ),
    Setting(
        "bedrock_strip_fields",
        "context_management,mcp_servers,container,service_tier",
        _csv,
        "Request fields removed before a Bedrock call (Bedrock rejects them).",
    ),
    Setting(
        "bedrock_timeout",
        "600",
        _float_range(1, 3600),
        "Seconds a Bedrock call may take to send its response headers.",
    ),
    Setting(
        "kms_key_id",
        "",
        _optional_str,
        "KMS key for Bedrock-key envelope encryption; empty uses a master key file.",
    ),
    # --- the admin API (SPEC §7) ---
    Setting(
        "jwt_secret",
        "",
        _jwt_secret,
        "HS256 secret signing admin tokens (32+ characters); empty generates one into the data directory.",
        secret=True,
    ),
    Setting("jwt_ttl_seconds", "86400", _int_range(60, 30 * 86400), "Lifetime of an admin token (seconds)."),
    Setting(
        "key_rotation_grace_seconds",
        "300",
        _float_range(0, 7 * 86400),
        "Seconds a rotated access key keeps working before it is revoked.",
    ),
    Setting(
        "login_max_failures",
        "5",
        _int_range(1, 1000),
        "Failed admin logins per username or client address before logins are refused for the window.",
    ),
    Setting(
        "login_window_seconds",
        "300",
        _float_range(1, 86400),
        "Window (seconds) in which failed admin logins are counted.",
    ),
    Setting("admin_username", "", _optional_str, "Bootstrap admin (role admin) created or updated at start-up."),
    Setting(
        "admin_password_hash",
        "",
        _bcrypt_hash,
        "bcrypt hash of the bootstrap admin's password (`$2b$…`).",
        secret=True,
    ),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    host: str
    port: int
    workers: int
    data_dir: str
    database_url: str | None
    db_pool_size: int
    db_max_overflow: int
    db_pool_timeout: float
    db_pool_recycle: float
    plan_base_url: str
    plan_api_key: str | None
    plan_connect_timeout: float
    plan_first_byte_timeout: float
    plan_nonstream_timeout: float
    key_hash_secret: str | None
    max_body_bytes: int
    ping_interval: float
    usage_batch_rows: int
    usage_flush_ms: int
    usage_queue_max: int
    drain_seconds: float
    header_timeout_seconds: float
    keepalive_seconds: float
    max_request_line: int
    max_header_bytes: int
    max_headers: int
    max_connections: int
    max_connections_per_address: int
    key_miss_limit: int
    key_miss_window_seconds: float
    forwarded_hops: int
    db_connect_retry_seconds: float
    minute_rollup_days: int
    budget_refresh_seconds: float
    alert_webhook_url: str | None
    log_level: str
    report_tz: str
    key_cache_negative_seconds: float
    key_refresh_seconds: float
    circuit_failures: int
    circuit_window_seconds: float
    circuit_open_seconds: float
    bedrock_default_region: str
    bedrock_default_model: str
    bedrock_endpoint_url: str | None
    bedrock_beta_allowlist: tuple[str, ...]
    bedrock_strip_fields: tuple[str, ...]
    bedrock_timeout: float
    kms_key_id: str | None
    jwt_secret: str | None
    jwt_ttl_seconds: int
    key_rotation_grace_seconds: float
    login_max_failures: int
    login_window_seconds: float
    admin_username: str | None
    admin_password_hash: str | None

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


SecretResolver = Callable[[str], str]


def _resolve_secrets_manager(arn: str) -> str:
    """Fetch a secret's string value; ARNs name their region (arn:aws:secretsmanager:REGION:…)."""
    import botocore.session  # imported here: only deployments that use ARNs pay for it

    region = arn.split(":")[3]
    client = botocore.session.get_session().create_client("secretsmanager", region_name=region)
    value = client.get_secret_value(SecretId=arn)["SecretString"]
    return str(value)


def load(environ: Mapping[str, str], *, resolve_secret: SecretResolver = _resolve_secrets_manager) -> Config:
    """Build the config from an environment mapping; raise ConfigError naming the setting."""
    known = {s.env for s in SETTINGS}
    unknown = sorted(k for k in environ if k.startswith("CCPROXY_") and k not in known)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown setting (known: see README settings table)")
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env, setting.default).strip()
        if setting.secret and raw.startswith("arn:aws:secretsmanager:"):
            try:
                raw = resolve_secret(raw).strip()
            except Exception as exc:
                raise ConfigError(f"{setting.env}: cannot read secret {raw}: {exc}") from exc
        try:
            values[setting.field] = setting.parse(raw)
        except ValueError as exc:
            shown = "(hidden)" if setting.secret else repr(raw)
            raise ConfigError(f"{setting.env}={shown}: {exc}") from exc
    config = Config(**values)
    if config.db_pool_timeout <= 0:
        raise ConfigError("CCPROXY_DB_POOL_TIMEOUT: must be positive")
    if (config.admin_username is None) != (config.admin_password_hash is None):
        raise ConfigError("CCPROXY_ADMIN_USERNAME and CCPROXY_ADMIN_PASSWORD_HASH: set both or neither")
    return config
