-- Usage reporting for the CLI and the admin API: the rollups for buckets, totals and
-- rankings; usage_events only for the raw rows. Filters are optional (NULL = any):
-- user id, team id (the user's team now), access key id, requested model, provider.

-- name: report-usage-buckets
-- Every bucket of granularity $1 in [$2, $3) in the reporting zone $4, empty ones as
-- zeros (the series is built in local time, as the rollups' buckets are).
WITH buckets AS (
    SELECT DISTINCT gs AT TIME ZONE $4 AS bucket_start
    FROM generate_series($2::timestamptz AT TIME ZONE $4,
                         $3::timestamptz AT TIME ZONE $4 - ('1 ' || $1)::interval,
                         ('1 ' || $1)::interval) AS gs
), sums AS (
    SELECT r.bucket_start,
           sum(r.requests) AS requests,
           sum(r.requests) FILTER (WHERE r.provider = 'plan') AS plan_requests,
           sum(r.requests) FILTER (WHERE r.provider = 'bedrock') AS bedrock_requests,
           sum(r.fallback_requests) AS fallback_requests,
           sum(r.error_requests) AS error_requests,
           sum(r.input_tokens) AS input_tokens,
           sum(r.output_tokens) AS output_tokens,
           sum(r.cache_creation_input_tokens) AS cache_creation_input_tokens,
           sum(r.cache_read_input_tokens) AS cache_read_input_tokens,
           sum(r.cost_usd) AS cost_usd
    FROM usage_rollups r
    JOIN users u ON u.id = r.user_id
    WHERE r.granularity = $1 AND r.bucket_start >= $2 AND r.bucket_start < $3
      AND ($5::bigint IS NULL OR r.user_id = $5)
      AND ($6::bigint IS NULL OR u.team_id = $6)
      AND ($7::bigint IS NULL OR r.access_key_id = $7)
      AND ($8::text IS NULL OR r.model = $8)
      AND ($9::text IS NULL OR r.provider = $9)
    GROUP BY r.bucket_start
)
SELECT b.bucket_start,
       COALESCE(s.requests, 0)::bigint AS requests,
       COALESCE(s.plan_requests, 0)::bigint AS plan_requests,
       COALESCE(s.bedrock_requests, 0)::bigint AS bedrock_requests,
       COALESCE(s.fallback_requests, 0)::bigint AS fallback_requests,
       COALESCE(s.error_requests, 0)::bigint AS error_requests,
       COALESCE(s.input_tokens, 0)::bigint AS input_tokens,
       COALESCE(s.output_tokens, 0)::bigint AS output_tokens,
       COALESCE(s.cache_creation_input_tokens, 0)::bigint AS cache_creation_input_tokens,
       COALESCE(s.cache_read_input_tokens, 0)::bigint AS cache_read_input_tokens,
       COALESCE(s.cost_usd, 0) AS cost_usd
FROM buckets b
LEFT JOIN sums s USING (bucket_start)
ORDER BY b.bucket_start;

-- name: report-usage-by-model
SELECT r.model,
       sum(r.requests)::bigint AS requests,
       (COALESCE(sum(r.requests) FILTER (WHERE r.provider = 'plan'), 0))::bigint AS plan_requests,
       (COALESCE(sum(r.requests) FILTER (WHERE r.provider = 'bedrock'), 0))::bigint AS bedrock_requests,
       sum(r.fallback_requests)::bigint AS fallback_requests,
       sum(r.error_requests)::bigint AS error_requests,
       sum(r.input_tokens)::bigint AS input_tokens,
       sum(r.output_tokens)::bigint AS output_tokens,
       sum(r.cache_creation_input_tokens)::bigint AS cache_creation_input_tokens,
       sum(r.cache_read_input_tokens)::bigint AS cache_read_input_tokens,
       sum(r.cost_usd) AS cost_usd
FROM usage_rollups r
JOIN users u ON u.id = r.user_id
WHERE r.granularity = $1 AND r.bucket_start >= $2 AND r.bucket_start < $3
  AND ($4::bigint IS NULL OR r.user_id = $4)
  AND ($5::bigint IS NULL OR u.team_id = $5)
  AND ($6::bigint IS NULL OR r.access_key_id = $6)
  AND ($7::text IS NULL OR r.model = $7)
  AND ($8::text IS NULL OR r.provider = $8)
GROUP BY r.model
ORDER BY sum(r.cost_usd) DESC, sum(r.requests) DESC, r.model;

-- name: report-top-users
-- Users ranked by $7 (cost, requests or tokens) over [$2, $3) at granularity $1, with
-- their share of that measure over all users.
WITH per_user AS (
    SELECT r.user_id, sum(r.requests) AS requests, sum(r.input_tokens) AS input_tokens,
           sum(r.output_tokens) AS output_tokens, sum(r.cost_usd) AS cost_usd
    FROM usage_rollups r
    JOIN users u ON u.id = r.user_id
    WHERE r.granularity = $1 AND r.bucket_start >= $2 AND r.bucket_start < $3
      AND ($4::bigint IS NULL OR u.team_id = $4)
      AND ($5::text IS NULL OR r.model = $5)
      AND ($6::text IS NULL OR r.provider = $6)
    GROUP BY r.user_id
), measured AS (
    SELECT p.*,
           (CASE $7::text WHEN 'cost' THEN p.cost_usd
                          WHEN 'requests' THEN p.requests
                          ELSE p.input_tokens + p.output_tokens END)::numeric AS measure
    FROM per_user p
)
SELECT m.user_id, u.name AS user_name, m.requests::bigint AS requests,
       m.input_tokens::bigint AS input_tokens, m.output_tokens::bigint AS output_tokens,
       m.cost_usd,
       CASE WHEN sum(m.measure) OVER () > 0
            THEN (m.measure / sum(m.measure) OVER ())::float8 ELSE 0 END AS share,
       count(*) OVER () AS total
FROM measured m
JOIN users u ON u.id = m.user_id
ORDER BY m.measure DESC, u.name, m.user_id
LIMIT $8 OFFSET $9;

-- name: list-usage-events
-- The raw rows in [$1, $2) (NULL = open), newest first; also status ($9). Paged.
SELECT e.request_id, e.created_at, e.user_id, u.name AS user_name, e.access_key_id,
       k.prefix AS access_key_prefix, e.endpoint, e.provider, e.is_fallback, e.model,
       e.upstream_model, e.status, e.error_class, e.stream, e.input_tokens, e.output_tokens,
       e.cache_creation_input_tokens, e.cache_creation_5m_tokens, e.cache_creation_1h_tokens,
       e.cache_read_input_tokens, e.cost_usd, e.latency_ms, e.ttfb_ms, e.session_id,
       count(*) OVER () AS total
FROM usage_events e
JOIN users u ON u.id = e.user_id
JOIN access_keys k ON k.id = e.access_key_id
WHERE ($1::timestamptz IS NULL OR e.created_at >= $1)
  AND ($2::timestamptz IS NULL OR e.created_at < $2)
  AND ($3::bigint IS NULL OR e.user_id = $3)
  AND ($4::bigint IS NULL OR u.team_id = $4)
  AND ($5::bigint IS NULL OR e.access_key_id = $5)
  AND ($6::text IS NULL OR e.model = $6)
  AND ($7::text IS NULL OR e.provider = $7)
  AND ($8::smallint IS NULL OR e.status = $8)
ORDER BY e.created_at DESC, e.request_id DESC
LIMIT $9 OFFSET $10;

-- name: export-usage-events
-- list-usage-events without paging (and without the total), for CSV export.
SELECT e.request_id, e.created_at, e.user_id, u.name AS user_name, e.access_key_id,
       k.prefix AS access_key_prefix, e.endpoint, e.provider, e.is_fallback, e.model,
       e.upstream_model, e.status, e.error_class, e.stream, e.input_tokens, e.output_tokens,
       e.cache_creation_input_tokens, e.cache_creation_5m_tokens, e.cache_creation_1h_tokens,
       e.cache_read_input_tokens, e.cost_usd, e.latency_ms, e.ttfb_ms, e.session_id
FROM usage_events e
JOIN users u ON u.id = e.user_id
JOIN access_keys k ON k.id = e.access_key_id
WHERE ($1::timestamptz IS NULL OR e.created_at >= $1)
  AND ($2::timestamptz IS NULL OR e.created_at < $2)
  AND ($3::bigint IS NULL OR e.user_id = $3)
  AND ($4::bigint IS NULL OR u.team_id = $4)
  AND ($5::bigint IS NULL OR e.access_key_id = $5)
  AND ($6::text IS NULL OR e.model = $6)
  AND ($7::text IS NULL OR e.provider = $7)
  AND ($8::smallint IS NULL OR e.status = $8)
ORDER BY e.created_at DESC, e.request_id DESC;

-- name: summarize-usage
-- Totals over [$2, $3) from one rollup granularity ($1), grouped by $4: user, key, model
-- or bucket. Buckets are aligned to the range by the caller.
SELECT CASE $4::text
           WHEN 'user' THEN u.name
           WHEN 'key' THEN k.prefix
           WHEN 'model' THEN r.model
           ELSE to_char(r.bucket_start AT TIME ZONE $5, 'YYYY-MM-DD"T"HH24:MI')
       END AS group_key,
       sum(r.requests)::bigint AS requests,
       sum(r.fallback_requests)::bigint AS fallback_requests,
       sum(r.error_requests)::bigint AS error_requests,
       sum(r.input_tokens)::bigint AS input_tokens,
       sum(r.output_tokens)::bigint AS output_tokens,
       sum(r.cache_creation_input_tokens)::bigint AS cache_creation_input_tokens,
       sum(r.cache_read_input_tokens)::bigint AS cache_read_input_tokens,
       sum(r.cost_usd) AS cost_usd
FROM usage_rollups r
JOIN users u ON u.id = r.user_id
JOIN access_keys k ON k.id = r.access_key_id
WHERE r.granularity = $1 AND r.bucket_start >= $2 AND r.bucket_start < $3
  AND ($6::text IS NULL OR lower(u.name) = lower($6))
GROUP BY 1
ORDER BY 1;
