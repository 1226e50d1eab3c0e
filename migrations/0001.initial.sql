-- Users, their access keys, and the usage event table (SPEC §5, §7).
-- depends:

CREATE TABLE users (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text,
    status      text NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'inactive', 'deleted')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Names are unique among users that are not deleted, case-insensitively, so the CLI can
-- address users by name.
CREATE UNIQUE INDEX users_live_name ON users (lower(name)) WHERE status <> 'deleted';

CREATE TABLE access_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id),
    -- HMAC-SHA256(server secret, full key); the key itself is never stored.
    key_hash     bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    -- 'ak_' + 6 characters: enough to recognise a key in lists and logs, useless to an attacker.
    prefix       text NOT NULL,
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    -- Rotation grace: a rotated key keeps working until then (SPEC §7).
    expires_at   timestamptz,
    bedrock_region text,
    bedrock_model  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX access_keys_user ON access_keys (user_id);

-- Every instance LISTENs on this channel and drops its cached copy of the key, so a
-- revocation reaches all of them at once instead of at cache expiry (SPEC §7). A trigger
-- rather than application code, so no writer (CLI, admin API, a psql session) can forget.
CREATE FUNCTION notify_access_key_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ccproxy_keys', COALESCE(NEW.id, OLD.id)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER access_keys_notify AFTER INSERT OR UPDATE OR DELETE ON access_keys
    FOR EACH ROW EXECUTE FUNCTION notify_access_key_change();

-- A user's status gates all their keys, so a user change notifies for each of their keys.
CREATE FUNCTION notify_user_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ccproxy_keys', k.id::text) FROM access_keys k WHERE k.user_id = NEW.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER users_notify AFTER UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION notify_user_change();

-- One row per request (SPEC §5). Layout choice for years of rows on Aurora: a plain
-- table with a BRIN index on created_at instead of monthly partitions. Rows arrive in
-- time order, so BRIN stays tiny and range scans by time are cheap; request ids are
-- UUIDv7 (time-ordered), so the unique index that makes replays idempotent is appended
-- to at its right edge rather than written at random pages. Partitioning would force
-- created_at into that unique key and needs a job that creates partitions ahead of time;
-- retention is a batched DELETE by time, which BRIN makes cheap. Reports read the rollup
-- tables, not this one; the per-user and per-key btrees serve drill-downs.
CREATE TABLE usage_events (
    request_id     uuid NOT NULL,
    created_at     timestamptz NOT NULL,
    user_id        bigint NOT NULL,
    access_key_id  bigint NOT NULL,
    endpoint       text NOT NULL,
    provider       text NOT NULL CHECK (provider IN ('plan', 'bedrock', 'none')),
    is_fallback    boolean NOT NULL,
    model          text,
    upstream_model text,
    status         smallint NOT NULL,
    error_class    text,
    stream         boolean NOT NULL,
    input_tokens   integer NOT NULL DEFAULT 0,
    output_tokens  integer NOT NULL DEFAULT 0,
    cache_creation_input_tokens integer NOT NULL DEFAULT 0,
    cache_creation_5m_tokens    integer NOT NULL DEFAULT 0,
    cache_creation_1h_tokens    integer NOT NULL DEFAULT 0,
    cache_read_input_tokens     integer NOT NULL DEFAULT 0,
    -- Money is numeric with six decimals, never floating point (SPEC §5).
    cost_usd       numeric(18, 6) NOT NULL DEFAULT 0,
    price_snapshot jsonb,
    latency_ms     real NOT NULL,
    ttfb_ms        real,
    session_id     text
);
CREATE UNIQUE INDEX usage_events_request_id ON usage_events (request_id);
CREATE INDEX usage_events_created_brin ON usage_events USING brin (created_at);
CREATE INDEX usage_events_user_time ON usage_events (user_id, created_at);
CREATE INDEX usage_events_key_time ON usage_events (access_key_id, created_at);
