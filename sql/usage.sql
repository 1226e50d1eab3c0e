-- name: create-usage-staging
-- A per-connection staging table: a batch is COPYed here, then moved into usage_events
-- with ON CONFLICT DO NOTHING, so a replayed batch can never write a row twice.
CREATE TEMP TABLE IF NOT EXISTS usage_staging
    (LIKE usage_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;

-- name: insert-usage-from-staging
-- Move a COPYed batch into usage_events, skipping request ids already there (a replay),
-- and add exactly the rows that were new to the rollups, in one statement. $1 is the
-- reporting time zone. The ORDER BY gives concurrent writers one lock order on rollup
-- rows, so two instances flushing at once cannot deadlock. Returns the new-row count.
WITH inserted AS (
    INSERT INTO usage_events
    SELECT * FROM usage_staging
    ON CONFLICT (request_id) DO NOTHING
    RETURNING created_at, user_id, access_key_id, model, provider, is_fallback, status,
              input_tokens, output_tokens, cache_creation_input_tokens,
              cache_read_input_tokens, cost_usd
), rolled AS (
    INSERT INTO usage_rollups AS r (
        granularity, bucket_start, user_id, access_key_id, model, provider, requests,
        fallback_requests, error_requests, input_tokens, output_tokens,
        cache_creation_input_tokens, cache_read_input_tokens, cost_usd)
    SELECT g.granularity,
           date_trunc(g.granularity, i.created_at AT TIME ZONE $1) AT TIME ZONE $1,
           i.user_id, i.access_key_id, COALESCE(i.model, ''), i.provider,
           count(*), count(*) FILTER (WHERE i.is_fallback), count(*) FILTER (WHERE i.status >= 500),
           sum(i.input_tokens), sum(i.output_tokens), sum(i.cache_creation_input_tokens),
           sum(i.cache_read_input_tokens), sum(i.cost_usd)
    FROM inserted i
    CROSS JOIN (VALUES ('minute'), ('hour'), ('day'), ('week'), ('month')) AS g (granularity)
    GROUP BY 1, 2, 3, 4, 5, 6
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (granularity, bucket_start, user_id, access_key_id, model, provider) DO UPDATE SET
        requests = r.requests + EXCLUDED.requests,
        fallback_requests = r.fallback_requests + EXCLUDED.fallback_requests,
        error_requests = r.error_requests + EXCLUDED.error_requests,
        input_tokens = r.input_tokens + EXCLUDED.input_tokens,
        output_tokens = r.output_tokens + EXCLUDED.output_tokens,
        cache_creation_input_tokens = r.cache_creation_input_tokens + EXCLUDED.cache_creation_input_tokens,
        cache_read_input_tokens = r.cache_read_input_tokens + EXCLUDED.cache_read_input_tokens,
        cost_usd = r.cost_usd + EXCLUDED.cost_usd
    RETURNING 1
)
SELECT count(*) FROM inserted;

-- name: delete-old-minute-rollups
DELETE FROM usage_rollups
WHERE granularity = 'minute' AND bucket_start < now() - make_interval(days => $1);

-- name: count-usage-events
SELECT count(*) FROM usage_events;
