"""Settings: `CCPROXY_*` environment variables, validated once at start-up (SPEC §9)."""

from __future__ import annotations

import dataclasses

import pytest

from gateway import config as config_mod
from gateway.config import SETTINGS, ConfigError, Setting

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ccproxy/plan-AbCdEf"

# Values tried, in order, until one is rejected by a setting's parser.
BAD_CANDIDATES = ("not-a-number", "", "-1", "99999999999", "ftp://example.com", "Mars/Olympus_Mons", "mysql://x/y")


def _bad_value(setting: Setting) -> str | None:
    for raw in BAD_CANDIDATES:
        try:
            setting.parse(raw)
        except ValueError:
            return raw
    return None


def _accepts(setting: Setting, raw: str) -> bool:
    try:
        setting.parse(raw)
    except ValueError:
        return False
    return True


# Free-text settings: any string (including empty) is a valid value.
PERMISSIVE = {
    "plan_api_key",
    "key_hash_secret",
    "kms_key_id",
    "bedrock_beta_allowlist",
    "bedrock_strip_fields",
    "admin_username",
    "no_proxy",
}


def test_defaults_match_the_documented_ones() -> None:
    config = config_mod.load({})
    assert config.host == "127.0.0.1"
    assert config.port == 8000
    assert config.workers == 1
    assert config.data_dir == "./.ccproxy"
    assert config.database_url is None  # embedded PostgreSQL
    assert (config.db_pool_size, config.db_max_overflow) == (5, 5)
    assert config.db_pool_timeout == 30
    assert config.db_pool_recycle == 1800
    assert config.plan_base_url == "https://api.anthropic.com"
    assert config.max_body_bytes == 32 * 1024 * 1024
    assert config.ping_interval == 15
    assert config.report_tz == "UTC"
    assert config.log_level == "info"
    assert config.key_hash_secret is None
    assert config.plan_api_key is None


def test_every_config_field_is_declared_exactly_once_as_a_setting() -> None:
    fields = [f.name for f in dataclasses.fields(config_mod.Config)]
    declared = [s.field for s in SETTINGS]
    assert sorted(declared) == sorted(fields)
    assert len(set(declared)) == len(declared)
    for setting in SETTINGS:
        assert setting.env == (setting.standard_env or "CCPROXY_" + setting.field.upper())
        assert setting.doc.strip()
        # Every default is itself valid.
        setting.parse(setting.default)


def test_only_free_text_settings_lack_an_invalid_value() -> None:
    assert {s.field for s in SETTINGS if _bad_value(s) is None} == PERMISSIVE


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.field not in PERMISSIVE], ids=lambda s: s.env)
def test_a_bad_value_stops_loading_with_a_message_naming_the_setting(setting: Setting) -> None:
    bad = _bad_value(setting)
    assert bad is not None
    with pytest.raises(ConfigError) as caught:
        config_mod.load({setting.env: bad})
    assert setting.env in str(caught.value)


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("CCPROXY_PORT", "abc"),
        ("CCPROXY_PORT", "65536"),
        ("CCPROXY_PORT", "-1"),
        ("CCPROXY_DB_POOL_SIZE", "0"),
        ("CCPROXY_DB_POOL_TIMEOUT", "0"),
        ("CCPROXY_DB_POOL_RECYCLE", "soon"),
        ("CCPROXY_PLAN_BASE_URL", "api.anthropic.com"),
        ("CCPROXY_MAX_BODY_BYTES", "12MB"),
        ("CCPROXY_LOG_LEVEL", "verbose"),
        ("CCPROXY_REPORT_TZ", "Europe/Atlantis"),
        ("CCPROXY_HOST", "   "),
    ],
)
def test_typical_mistakes_are_rejected(env: str, value: str) -> None:
    with pytest.raises(ConfigError, match=env):
        config_mod.load({env: value})


def test_an_unknown_ccproxy_setting_is_named() -> None:
    with pytest.raises(ConfigError, match="CCPROXY_PROT"):
        config_mod.load({"CCPROXY_PROT": "8080"})


def test_non_ccproxy_variables_are_ignored() -> None:
    config = config_mod.load({"PORT": "abc", "HOME": "/root", "AWS_REGION": "eu-west-1"})
    assert config.port == 8000


def test_values_are_parsed_to_their_types() -> None:
    config = config_mod.load(
        {
            "CCPROXY_PORT": " 9100 ",
            "CCPROXY_DB_POOL_SIZE": "7",
            "CCPROXY_DB_MAX_OVERFLOW": "0",
            "CCPROXY_DB_POOL_TIMEOUT": "2.5",
            "CCPROXY_PLAN_BASE_URL": "http://127.0.0.1:9/",
            "CCPROXY_DATABASE_URL": "postgresql://u:p@db:5432/ccproxy",
            "CCPROXY_LOG_LEVEL": "DEBUG",
            "CCPROXY_BEDROCK_STRIP_FIELDS": " a, b ,,c ",
        }
    )
    assert config.port == 9100
    assert (config.db_pool_size, config.db_max_overflow, config.db_pool_timeout) == (7, 0, 2.5)
    assert config.plan_base_url == "http://127.0.0.1:9"
    assert config.database_url == "postgresql://u:p@db:5432/ccproxy"
    assert config.log_level == "debug"
    assert config.bedrock_strip_fields == ("a", "b", "c")


def test_a_bad_secret_value_is_named_but_never_shown() -> None:
    with pytest.raises(ConfigError) as caught:
        config_mod.load({"CCPROXY_DATABASE_URL": "mysql://admin:hunter2-very-secret@db/ccproxy"})
    message = str(caught.value)
    assert "CCPROXY_DATABASE_URL" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.secret], ids=lambda s: s.env)
def test_secret_settings_accept_a_secrets_manager_arn(setting: Setting) -> None:
    candidates = (
        "http://proxy.example:3128",
        "s3cr3t",
        "https://hooks.example.com/s3cr3t",
        "postgresql://u:from-secrets-manager@db/ccproxy",
        "$2b$12$" + "a" * 53,  # a bcrypt hash
    )
    resolved = next(raw for raw in candidates if _accepts(setting, raw))
    asked: list[str] = []

    def resolve(arn: str) -> str:
        asked.append(arn)
        return resolved

    # The bootstrap admin's hash comes with its username (both or neither).
    companion = {"CCPROXY_ADMIN_USERNAME": "root"} if setting.field == "admin_password_hash" else {}
    config = config_mod.load({setting.env: ARN, **companion}, resolve_secret=resolve)
    assert asked == [ARN]
    assert getattr(config, setting.field) == resolved


def test_the_bootstrap_admin_needs_both_its_username_and_its_password_hash() -> None:
    with pytest.raises(ConfigError, match="CCPROXY_ADMIN_USERNAME and CCPROXY_ADMIN_PASSWORD_HASH"):
        config_mod.load({"CCPROXY_ADMIN_USERNAME": "root"})
    with pytest.raises(ConfigError, match="CCPROXY_ADMIN_PASSWORD_HASH"):
        config_mod.load({"CCPROXY_ADMIN_USERNAME": "root", "CCPROXY_ADMIN_PASSWORD_HASH": "hunter2"})
    with pytest.raises(ConfigError, match="CCPROXY_JWT_SECRET"):
        config_mod.load({"CCPROXY_JWT_SECRET": "too-short"})


def test_secrets_are_not_resolved_when_not_arns() -> None:
    def resolve(arn: str) -> str:
        raise AssertionError("resolver must not be called")

    config = config_mod.load({"CCPROXY_PLAN_API_KEY": "sk-ant-plain"}, resolve_secret=resolve)
    assert config.plan_api_key == "sk-ant-plain"


def test_a_resolved_secret_is_still_validated_and_kept_hidden() -> None:
    with pytest.raises(ConfigError) as caught:
        config_mod.load({"CCPROXY_DATABASE_URL": ARN}, resolve_secret=lambda _arn: "mysql://root:topsecret@db/x")
    assert "CCPROXY_DATABASE_URL" in str(caught.value)
    assert "topsecret" not in str(caught.value)


def test_an_unreadable_secret_names_the_setting() -> None:
    def resolve(_arn: str) -> str:
        raise RuntimeError("AccessDeniedException")

    with pytest.raises(ConfigError, match="CCPROXY_PLAN_API_KEY"):
        config_mod.load({"CCPROXY_PLAN_API_KEY": ARN}, resolve_secret=resolve)


def test_config_is_frozen() -> None:
    config = config_mod.load({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    changed = config.replace(port=1)
    assert (changed.port, config.port) == (1, 8000)


def test_data_path_is_absolute() -> None:
    config = config_mod.load({"CCPROXY_DATA_DIR": "relative/dir"})
    assert config.data_path.is_absolute()
    assert config.data_path.parts[-2:] == ("relative", "dir")


def test_outbound_proxies_are_read_under_their_conventional_names() -> None:
    environ = {"HTTPS_PROXY": "http://user:pw@proxy.corp:3128", "http_proxy": "proxy.corp:8080"}
    config = config_mod.load({**environ, "NO_PROXY": "localhost,.corp"})
    assert config.proxy_for("https://api.anthropic.com/v1/messages") == "http://user:pw@proxy.corp:3128"
    assert config.proxy_for("https://bedrock-runtime.eu-west-1.amazonaws.com") == "http://user:pw@proxy.corp:3128"
    assert config.proxy_for("http://fake:9000") == "http://proxy.corp:8080"
    for direct in ("https://localhost:8443", "https://db.corp", "https://a.b.corp"):
        assert config.proxy_for(direct) is None, direct
    assert config_mod.load({"NO_PROXY": "*", "HTTPS_PROXY": "http://p:1"}).proxy_for("https://x") is None
    assert config_mod.load({}).proxy_for("https://api.anthropic.com") is None


def test_a_tls_proxy_url_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match=r"HTTPS_PROXY=.*http:// proxy URL"):
        config_mod.load({"HTTPS_PROXY": "https://proxy.corp:3128"})
