-- name: create-usage-staging
-- A per-connection staging table: a batch is COPYed here, then moved into usage_events
-- with ON CONFLICT DO NOTHING, so a replayed batch can never write a row twice. The two
-- costs arrive as integer micro-dollars: asyncpg encodes a Decimal for COPY at about
-- 1.3 µs, a bigint at almost nothing, and the usage writer does this for every row.
CREATE TEMP TABLE IF NOT EXISTS usage_staging
    (LIKE usage_events INCLUDING DEFAULTS, cost_micros bigint, list_cost_micros bigint)
    ON COMMIT DELETE ROWS;

-- name: insert-usage-from-staging
-- Move a COPYed batch into usage_events, skipping request ids already there (a replay),
-- and add exactly the rows that were new to the rollups, in one statement. $1 is the
-- reporting time zone. The ORDER BY gives concurrent writers one lock order on rollup
-- rows, so two instances flushing at once cannot deadlock. Returns the new-row count.
WITH inserted AS (
    INSERT INTO usage_events (
        request_id, created_at, user_id, access_key_id, endpoint, provider, is_fallback,
        model, upstream_model, status, error_class, stream, input_tokens, output_tokens,
        cache_creation_input_tokens, cache_creation_5m_tokens, cache_creation_1h_tokens,
        cache_read_input_tokens, cost_usd, price_snapshot, latency_ms, ttfb_ms,
        session_id, list_cost_usd, list_price_id, unpriced, region, plan_outcome,
        agent_id, parent_agent_id, model_substituted)
    SELECT request_id, created_at, user_id, access_key_id, endpoint, provider,
           is_fallback, model, upstream_model, status, error_class, stream,
           input_tokens, output_tokens, cache_creation_input_tokens,
           cache_creation_5m_tokens, cache_creation_1h_tokens, cache_read_input_tokens,
           cost_micros * 0.000001, price_snapshot, latency_ms, ttfb_ms, session_id,
           list_cost_micros * 0.000001, list_price_id, unpriced, region, plan_outcome,
           agent_id, parent_agent_id, model_substituted
    FROM usage_staging
    ON CONFLICT (request_id) DO NOTHING
    RETURNING created_at, user_id, access_key_id, model, provider, is_fallback, status,
              input_tokens, output_tokens, cache_creation_input_tokens,
              cache_read_input_tokens, cost_usd, list_cost_usd
), minutes AS (
    -- Summed per local minute first: every coarser bucket is a truncation of the minute
    -- (every time zone offset since 1972 is whole minutes), so the five granularities below aggregate a
    -- few hundred groups instead of every row five times.
    SELECT date_trunc('minute', i.created_at AT TIME ZONE $1) AS minute,
           i.user_id, i.access_key_id, COALESCE(i.model, '') AS model, i.provider,
           count(*) AS requests, count(*) FILTER (WHERE i.is_fallback) AS fallback_requests,
           count(*) FILTER (WHERE i.status >= 500) AS error_requests,
           sum(i.input_tokens) AS input_tokens, sum(i.output_tokens) AS output_tokens,
           sum(i.cache_creation_input_tokens) AS cache_creation_input_tokens,
           sum(i.cache_read_input_tokens) AS cache_read_input_tokens,
           -- an unpriced row (NULL) adds nothing until `ccproxy pricing reprice` prices it
           COALESCE(sum(i.cost_usd), 0) AS cost_usd, COALESCE(sum(i.list_cost_usd), 0) AS list_cost_usd
    FROM inserted i
    GROUP BY 1, 2, 3, 4, 5
), rolled AS (
    INSERT INTO usage_rollups AS r (
        granularity, bucket_start, user_id, access_key_id, model, provider, requests,
        fallback_requests, error_requests, input_tokens, output_tokens,
        cache_creation_input_tokens, cache_read_input_tokens, cost_usd, list_cost_usd)
    SELECT g.granularity, date_trunc(g.granularity, m.minute) AT TIME ZONE $1,
           m.user_id, m.access_key_id, m.model, m.provider,
           sum(m.requests), sum(m.fallback_requests), sum(m.error_requests),
           sum(m.input_tokens), sum(m.output_tokens), sum(m.cache_creation_input_tokens),
           sum(m.cache_read_input_tokens), sum(m.cost_usd), sum(m.list_cost_usd)
    FROM minutes m
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
        cost_usd = r.cost_usd + EXCLUDED.cost_usd,
        list_cost_usd = r.list_cost_usd + EXCLUDED.list_cost_usd
    RETURNING 1
)
SELECT count(*) FROM inserted;

-- name: delete-old-minute-rollups
DELETE FROM usage_rollups
WHERE granularity = 'minute' AND bucket_start < now() - make_interval(days => $1);

-- name: count-usage-events
SELECT count(*) FROM usage_events;

-- name: list-unpriced-usage
-- Rows stored without a price (their model had none), oldest first; $1 rows at most,
-- after the row ($2 created_at, $3 request_id) when given (paging).
SELECT e.request_id, e.created_at, u.name AS user, e.provider, e.model, e.upstream_model,
       e.region, e.input_tokens, e.output_tokens, e.cache_creation_input_tokens,
       e.cache_creation_5m_tokens, e.cache_creation_1h_tokens, e.cache_read_input_tokens
FROM usage_events e
JOIN users u ON u.id = e.user_id
WHERE e.unpriced
  AND ($2::timestamptz IS NULL OR (e.created_at, e.request_id) > ($2, $3::uuid))
ORDER BY e.created_at, e.request_id
LIMIT $1;

-- name: count-unpriced-usage
SELECT count(*) FROM usage_events WHERE unpriced;

-- name: reprice-usage
-- Price unpriced rows ($1 ids with their costs and snapshots) and add those costs to the
-- rollups the rows were counted in, in one statement, so totals stay the sum of the rows.
-- `WHERE e.unpriced` makes a row priced once: a priced row is never rewritten. $6 is the
-- reporting time zone. Rollup rows already pruned (old minutes) are simply not there.
WITH priced AS (
    UPDATE usage_events e
    SET cost_usd = v.cost_usd, price_snapshot = v.price_snapshot,
        list_cost_usd = v.list_cost_usd, list_price_id = v.list_price_id,
        unpriced = false
    FROM unnest($1::uuid[], $2::numeric[], $3::jsonb[], $4::numeric[], $5::bigint[])
         AS v (request_id, cost_usd, price_snapshot, list_cost_usd, list_price_id)
    WHERE e.request_id = v.request_id AND e.unpriced
    RETURNING e.created_at, e.user_id, e.access_key_id, e.model, e.provider, e.cost_usd, e.list_cost_usd
), sums AS (
    SELECT g.granularity,
           date_trunc(g.granularity, p.created_at AT TIME ZONE $6) AT TIME ZONE $6 AS bucket_start,
           p.user_id, p.access_key_id, COALESCE(p.model, '') AS model, p.provider,
           sum(p.cost_usd) AS cost_usd, sum(p.list_cost_usd) AS list_cost_usd
    FROM priced p
    CROSS JOIN (VALUES ('minute'), ('hour'), ('day'), ('week'), ('month')) AS g (granularity)
    GROUP BY 1, 2, 3, 4, 5, 6
), rolled AS (
    UPDATE usage_rollups r
    SET cost_usd = r.cost_usd + s.cost_usd, list_cost_usd = r.list_cost_usd + s.list_cost_usd
    FROM sums s
    WHERE r.granularity = s.granularity AND r.bucket_start = s.bucket_start
      AND r.user_id = s.user_id AND r.access_key_id = s.access_key_id
      AND r.model = s.model AND r.provider = s.provider
    RETURNING 1
)
SELECT count(*) FROM priced;

-- name: insert-price-snapshots
-- Snapshots are immutable and named by their content: a second writer of the same one
-- changes nothing.
INSERT INTO price_snapshots (id, snapshot)
SELECT * FROM unnest($1::bigint[], $2::jsonb[])
ON CONFLICT (id) DO NOTHING;

-- name: get-price-snapshot
SELECT snapshot FROM price_snapshots WHERE id = $1;
