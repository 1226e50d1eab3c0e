-- name: create-usage-staging
-- A per-connection staging table: a batch is COPYed here, then moved into usage_events
-- with ON CONFLICT DO NOTHING, so a replayed batch can never write a row twice.
CREATE TEMP TABLE IF NOT EXISTS usage_staging
    (LIKE usage_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;

-- name: insert-usage-from-staging
INSERT INTO usage_events
SELECT * FROM usage_staging
ON CONFLICT (request_id) DO NOTHING;

-- name: list-recent-usage
SELECT e.request_id, e.created_at, u.name AS user, k.prefix AS access_key_prefix,
       e.endpoint, e.provider, e.is_fallback, e.model, e.upstream_model, e.status,
       e.error_class, e.stream, e.input_tokens, e.output_tokens,
       e.cache_creation_input_tokens, e.cache_creation_5m_tokens,
       e.cache_creation_1h_tokens, e.cache_read_input_tokens, e.cost_usd,
       e.latency_ms, e.ttfb_ms, e.session_id
FROM usage_events e
JOIN users u ON u.id = e.user_id
JOIN access_keys k ON k.id = e.access_key_id
WHERE ($2::text IS NULL OR lower(u.name) = lower($2))
ORDER BY e.created_at DESC, e.request_id DESC
LIMIT $1;

-- name: count-usage-events
SELECT count(*) FROM usage_events;
