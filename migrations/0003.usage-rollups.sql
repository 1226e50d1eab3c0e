-- Usage rollups (SPEC §5): totals per (user, access key, model, provider) for minute,
-- hour, day, week and month buckets in the reporting time zone. The usage writer adds
-- each batch's newly inserted events in the same transaction as the events, so the
-- rollups always equal the sum of the rows. Reports and budgets read these, never the
-- event table.
-- depends: 0002.bedrock-fallback

CREATE TABLE usage_rollups (
    granularity   text NOT NULL CHECK (granularity IN ('minute', 'hour', 'day', 'week', 'month')),
    -- The bucket's start: local midnight (etc.) in the reporting zone, as a timestamptz.
    bucket_start  timestamptz NOT NULL,
    user_id       bigint NOT NULL,
    access_key_id bigint NOT NULL,
    model         text NOT NULL,
    provider      text NOT NULL,
    requests          bigint NOT NULL DEFAULT 0,
    fallback_requests bigint NOT NULL DEFAULT 0,
    error_requests    bigint NOT NULL DEFAULT 0,
    input_tokens      bigint NOT NULL DEFAULT 0,
    output_tokens     bigint NOT NULL DEFAULT 0,
    cache_creation_input_tokens bigint NOT NULL DEFAULT 0,
    cache_read_input_tokens     bigint NOT NULL DEFAULT 0,
    cost_usd      numeric(20, 6) NOT NULL DEFAULT 0,
    PRIMARY KEY (granularity, bucket_start, user_id, access_key_id, model, provider)
);
CREATE INDEX usage_rollups_user ON usage_rollups (granularity, user_id, bucket_start);
CREATE INDEX usage_rollups_key ON usage_rollups (granularity, access_key_id, bucket_start);
