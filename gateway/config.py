"""The one frozen configuration object, built once from `CCPROXY_*` environment variables.

Every setting is declared once, as a field of `Config` (name, type, default, parser,
meaning); `SETTINGS` is derived from those declarations. `load()` validates all of them
eagerly and names the setting in every error. Nothing else in the package reads
`os.environ`.
"""

from __future__ import annotations

import dataclasses
import re
import typing
import zoneinfo
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any
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


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _optional_str(raw: str) -> str | None:
    return raw or None


def _str(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


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


def _proxy_url(raw: str) -> str | None:
    if not raw:
        return None
    parts = urlsplit(raw if "://" in raw else "http://" + raw)  # curl reads host:port as http
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError("must be an http:// proxy URL (the tunnel to the upstream is CONNECT over plain TCP)")
    return parts.geturl()


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
    standard_env: str = ""  # a conventional variable read instead of CCPROXY_<FIELD>

    @property
    def env(self) -> str:
        return self.standard_env or "CCPROXY_" + self.field.upper()


def setting(
    default: str, parse: Callable[[str], Any], doc: str, *, secret: bool = False, standard_env: str = ""
) -> Setting:
    """A `Config` field's declaration (inside its `Annotated[...]`); the field's name is
    filled in when `SETTINGS` is derived."""
    return Setting("", default, parse, doc, secret, standard_env)


MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """Every setting, declared once: its type, then its default (as the environment would
    spell it), parser and meaning. `SETTINGS` below is derived from these declarations."""

    host: Annotated[str, setting("127.0.0.1", _str, "Address `ccproxy serve` listens on.")]
    port: Annotated[int, setting("8000", _int_range(0, 65535), "Port `ccproxy serve` listens on.")]
    workers: Annotated[int, setting("1", _int_range(1, 64), "Server processes sharing the port (SO_REUSEPORT).")]
    data_dir: Annotated[
        str, setting("./.ccproxy", _str, "Local state: embedded PostgreSQL, generated key-hash secret, usage journal.")
    ]
    database_url: Annotated[
        str | None,
        setting(
            "",
            _database_url,
            "PostgreSQL URL; empty starts the embedded PostgreSQL in the data directory.",
            secret=True,
        ),
    ]
    db_pool_size: Annotated[int, setting("5", _int_range(1, 100), "Pool connections kept open (seed: 5).")]
    db_max_overflow: Annotated[int, setting("5", _int_range(0, 100), "Extra connections under load (seed: 5).")]
    db_pool_timeout: Annotated[float, setting("30", _float_range(0.1, 600), "Seconds to wait for a pool connection.")]
    db_pool_recycle: Annotated[
        float, setting("1800", _float_range(1, 86400), "Seconds after which a pooled connection is replaced.")
    ]
    plan_base_url: Annotated[str, setting("https://api.anthropic.com", _url, "Anthropic API the plan calls go to.")]
    plan_api_key: Annotated[
        str | None,
        setting(
            "",
            _optional_str,
            "Organisation Anthropic API key for org mode, or when a request has no credential.",
            secret=True,
        ),
    ]
    plan_connect_timeout: Annotated[float, setting("10", _float_range(0.1, 600), "Seconds to connect to the plan.")]
    plan_first_byte_timeout: Annotated[
        float,
        setting("60", _float_range(0.1, 3600), "Seconds a streaming plan call may take to send its response headers."),
    ]
    plan_nonstream_timeout: Annotated[
        float,
        setting(
            "600", _float_range(0.1, 3600), "Seconds a non-streaming plan call may take to send its response headers."
        ),
    ]
    plan_custom_header_bytes: Annotated[
        int,
        setting(
            "8192",
            _int_range(0, 65536),
            "Bytes of other request headers (ANTHROPIC_CUSTOM_HEADERS) forwarded to the plan; the rest are dropped.",
        ),
    ]
    key_hash_secret: Annotated[
        str | None,
        setting(
            "", _optional_str, "HMAC secret for access keys; empty generates one into the data directory.", secret=True
        ),
    ]
    max_body_bytes: Annotated[
        int, setting(str(32 * MiB), _int_range(1024, 1024 * MiB), "Largest request body accepted (larger gets 413).")
    ]
    ping_interval: Annotated[
        float,
        setting("15", _float_range(0.05, 3600), "Seconds of upstream silence after which a `ping` SSE event is sent."),
    ]
    usage_batch_rows: Annotated[
        int,
        setting(
            "5000",
            _int_range(1, 100000),
            "Usage rows per COPY batch (flush at); bigger batches write faster under load.",
        ),
    ]
    usage_flush_ms: Annotated[int, setting("200", _int_range(1, 60000), "Longest wait before a usage flush (ms).")]
    usage_queue_max: Annotated[
        int,
        setting("100000", _int_range(100, 10_000_000), "Usage events held in memory before spilling to the journal."),
    ]
    drain_seconds: Annotated[
        float, setting("30", _float_range(0, 3600), "On SIGTERM, seconds in-flight requests get to finish.")
    ]
    # Edge limits (issue 16): parser limits, timeouts, connection caps, key-guessing throttle.
    header_timeout_seconds: Annotated[
        float,
        setting(
            "10",
            _float_range(0.5, 600),
            "Seconds a client may take to send a request line and its headers, and longest silence inside a body.",
        ),
    ]
    keepalive_seconds: Annotated[
        float,
        setting(
            "75", _float_range(1, 3600), "Seconds an idle keep-alive client connection is kept open between requests."
        ),
    ]
    max_request_line: Annotated[
        int,
        setting("8190", _int_range(256, 65536), "Longest request line accepted (longer gets 414)."),
    ]
    max_header_bytes: Annotated[
        int,
        setting("16384", _int_range(1024, MiB), "Longest header line accepted (longer gets 431)."),
    ]
    max_headers: Annotated[
        int,
        setting("128", _int_range(16, 4096), "Most request headers accepted (more gets 431)."),
    ]
    max_json_depth: Annotated[
        int,
        setting(
            "0",
            _int_range(0, 900),
            "Deepest JSON nesting accepted in a relay or admin body (deeper gets 400); 0: the decoder's own"
            " ceiling (about 990 levels), with no scan. A limit costs a scan of bodies holding more brackets.",
        ),
    ]
    max_connections: Annotated[
        int,
        setting("10000", _int_range(1, 1_000_000), "Open client connections in total (more get 503)."),
    ]
    max_connections_per_address: Annotated[
        int,
        setting(
            "2000",
            _int_range(1, 1_000_000),
            "Open client connections from one address (more get 503; behind a load balancer, its nodes).",
        ),
    ]
    key_miss_limit: Annotated[
        int,
        setting(
            "30",
            _int_range(1, 1_000_000),
            "Unknown access keys one client address may present per window before it gets 429.",
        ),
    ]
    key_miss_window_seconds: Annotated[
        float,
        setting("60", _float_range(1, 86400), "Window (seconds) of the key-guessing throttle."),
    ]
    forwarded_hops: Annotated[
        int,
        setting(
            "0",
            _int_range(0, 8),
            "Trusted proxies in front (1 behind an ALB): the client address is read from X-Forwarded-For.",
        ),
    ]
    db_connect_retry_seconds: Annotated[
        float,
        setting(
            "30",
            _float_range(0, 3600),
            "How long `ccproxy serve` keeps retrying an unreachable database before giving up.",
        ),
    ]
    minute_rollup_days: Annotated[
        int,
        setting(
            "14", _int_range(1, 3650), "Days minute-level usage rollups are kept (hour and coarser are kept forever)."
        ),
    ]
    budget_refresh_seconds: Annotated[
        float,
        setting(
            "2",
            _float_range(0.1, 3600),
            "How often month-to-date spend is re-read from the rollups (bounds budget overshoot).",
        ),
    ]
    alert_webhook_url: Annotated[
        str | None,
        setting(
            "",
            _optional_url,
            "Budget alerts are POSTed here as JSON (retried), besides the budget_alert log event.",
            secret=True,
        ),
    ]
    log_level: Annotated[str, setting("info", _log_level, "debug, info, warning or error.")]
    report_tz: Annotated[str, setting("UTC", _timezone, "Time zone of usage buckets and budget months.")]
    key_cache_negative_seconds: Annotated[
        float, setting("2", _float_range(0, 3600), "Seconds an unknown access key is remembered as unknown.")
    ]
    key_refresh_seconds: Annotated[
        float, setting("30", _float_range(1, 86400), "Full access-key cache refresh period (backs up LISTEN/NOTIFY).")
    ]
    circuit_failures: Annotated[int, setting("3", _int_range(1, 1000), "Counted plan failures that open it.")]
    circuit_window_seconds: Annotated[
        float, setting("60", _float_range(1, 86400), "Window the counted failures must fall in.")
    ]
    circuit_open_seconds: Annotated[
        float, setting("1800", _float_range(1, 604800), "Seconds an open circuit waits before a half-open probe.")
    ]
    bedrock_default_region: Annotated[str, setting("us-east-1", _str, "Bedrock region when the key sets none.")]
    bedrock_default_model: Annotated[
        str,
        setting(
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            _str,
            "Bedrock model id when neither the key nor the mapping table gives one.",
        ),
    ]
    bedrock_endpoint_url: Annotated[
        str | None,
        setting("", _optional_url, "Override of https://bedrock-runtime.{region}.amazonaws.com (tests, bench)."),
    ]
    bedrock_beta_allowlist: Annotated[
        tuple[str, ...],
        setting(
            "interleaved-thinking-2025-05-14,context-1m-2025-08-07,context-management-2025-06-27,"
            "effort-2025-11-24,fine-grained-tool-streaming-2025-05-14,tool-search-tool-2025-10-19,"
            "tool-examples-2025-10-29,extended-cache-ttl-2025-04-11,mid-conversation-system-2026-04-07,"
            "token-efficient-tools-2025-02-19,computer-use-2025-01-24,output-128k-2025-02-19",
            _csv,
            "anthropic-beta values Bedrock accepts, moved into the body's anthropic_beta; others are dropped.",
        ),
    ]
    bedrock_strip_fields: Annotated[
        tuple[str, ...],
        setting(
            "mcp_servers,container,speed,service_tier,tools.strict,cache_control.scope",
            _csv,
            "Request fields removed before a Bedrock call, each together with its beta (README: Bedrock features).",
        ),
    ]
    bedrock_timeout: Annotated[
        float, setting("600", _float_range(1, 3600), "Seconds a Bedrock call may take to send its response headers.")
    ]
    kms_key_id: Annotated[
        str | None,
        setting("", _optional_str, "KMS key for Bedrock-key envelope encryption; empty uses a master key file."),
    ]

    # The admin API (SPEC §7).
    jwt_secret: Annotated[
        str | None,
        setting(
            "",
            _jwt_secret,
            "HS256 secret signing admin tokens (32+ characters); empty generates one into the data directory.",
            secret=True,
        ),
    ]
    jwt_ttl_seconds: Annotated[
        int, setting("86400", _int_range(60, 30 * 86400), "Lifetime of an admin token (seconds).")
    ]
    key_rotation_grace_seconds: Annotated[
        float,
        setting("300", _float_range(0, 7 * 86400), "Seconds a rotated access key keeps working before it is revoked."),
    ]
    login_max_failures: Annotated[
        int,
        setting(
            "5",
            _int_range(1, 1000),
            "Failed admin logins per username or client address before logins are refused for the window.",
        ),
    ]
    login_window_seconds: Annotated[
        float, setting("300", _float_range(1, 86400), "Window (seconds) in which failed admin logins are counted.")
    ]
    admin_username: Annotated[
        str | None, setting("", _optional_str, "Bootstrap admin (role admin) created or updated at start-up.")
    ]
    admin_password_hash: Annotated[
        str | None,
        setting("", _bcrypt_hash, "bcrypt hash of the bootstrap admin's password (`$2b$…`).", secret=True),
    ]

    # Quota-aware routing (SPEC §3).
    quota_routing: Annotated[
        bool,
        setting("true", _bool, "Route a key whose plan rejected it with a reset time straight to Bedrock until then."),
    ]
    quota_flush_seconds: Annotated[
        float,
        setting(
            "5",
            _float_range(0.1, 3600),
            "How often the plan's latest quota readings are written for `ccproxy keys quota`.",
        ),
    ]

    # Outbound proxies, under their conventional names (as curl and the AWS SDKs read them).
    https_proxy: Annotated[
        str | None,
        setting(
            "",
            _proxy_url,
            "Proxy for https:// upstreams (plan, Bedrock), reached with CONNECT; user:password@ allowed.",
            secret=True,
            standard_env="HTTPS_PROXY",
        ),
    ]
    http_proxy: Annotated[
        str | None,
        setting("", _proxy_url, "Proxy for http:// upstreams (tests, bench).", secret=True, standard_env="HTTP_PROXY"),
    ]
    no_proxy: Annotated[
        tuple[str, ...],
        setting(
            "",
            _csv,
            "Hosts reached directly: names (suffix match), IP addresses, or `*`.",
            standard_env="NO_PROXY",
        ),
    ]

    def proxy_for(self, url: str) -> str | None:
        """The outbound proxy URL for an upstream URL, or None to connect directly."""
        parts = urlsplit(url)
        proxy = self.https_proxy if parts.scheme == "https" else self.http_proxy
        if proxy is None:
            return None
        host = (parts.hostname or "").lower()
        for entry in self.no_proxy:
            entry = entry.lower().lstrip(".")
            if entry == "*" or host == entry or host.endswith("." + entry):
                return None
        return proxy

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def _declared() -> tuple[Setting, ...]:
    hints = typing.get_type_hints(Config, include_extras=True)
    found = []
    for field in dataclasses.fields(Config):
        [declared] = [m for m in typing.get_args(hints[field.name])[1:] if isinstance(m, Setting)]
        found.append(dataclasses.replace(declared, field=field.name))
    return tuple(found)


# Every setting in declaration order: the README table, validation and errors read this.
SETTINGS: tuple[Setting, ...] = _declared()

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
        raw = environ.get(setting.env, setting.default)
        if setting.standard_env:  # curl and the AWS SDKs read the lower-case spelling too
            raw = environ.get(setting.env.lower(), raw)
        raw = raw.strip()
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
