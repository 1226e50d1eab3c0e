-- name: upsert-quota-routing
-- A key's routed-away status changed ($5 routed_until, NULL: back to plan first). The
-- trigger NOTIFYs every instance, which reloads the row; `version` lets an instance tell
-- a late reload from the current state. Returns the new version.
INSERT INTO quota_states AS q (access_key_id, unified_status, unified_reset, windows,
                               routed_until, routed_at, seen_at)
VALUES ($1, $2, $3, $4, $5, CASE WHEN $5::timestamptz IS NOT NULL THEN now() END, $6)
ON CONFLICT (access_key_id) DO UPDATE SET
    unified_status = EXCLUDED.unified_status,
    unified_reset = EXCLUDED.unified_reset,
    windows = EXCLUDED.windows,
    routed_until = EXCLUDED.routed_until,
    routed_at = EXCLUDED.routed_at,
    seen_at = GREATEST(q.seen_at, EXCLUDED.seen_at),
    version = q.version + 1,
    updated_at = now()
RETURNING version;

-- name: upsert-quota-readings
-- The latest readings of many keys, coalesced (for `ccproxy keys quota`). Leaves the
-- routed-away status alone, so it NOTIFYs nobody; an older reading never overwrites a newer.
INSERT INTO quota_states AS q (access_key_id, unified_status, unified_reset, windows, seen_at)
SELECT v.access_key_id, v.unified_status, v.unified_reset, v.windows, v.seen_at
FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::jsonb[], $5::timestamptz[])
     AS v (access_key_id, unified_status, unified_reset, windows, seen_at)
JOIN access_keys k ON k.id = v.access_key_id
ORDER BY v.access_key_id
ON CONFLICT (access_key_id) DO UPDATE SET
    unified_status = EXCLUDED.unified_status,
    unified_reset = EXCLUDED.unified_reset,
    windows = EXCLUDED.windows,
    seen_at = EXCLUDED.seen_at,
    updated_at = now()
WHERE q.seen_at <= EXCLUDED.seen_at;

-- name: list-quota-routing
SELECT access_key_id, routed_until, version FROM quota_states;

-- name: get-quota-routing
SELECT access_key_id, routed_until, version FROM quota_states WHERE access_key_id = $1;

-- name: list-quota-states
SELECT q.access_key_id, q.unified_status, q.unified_reset, q.windows, q.routed_until,
       q.seen_at, k.prefix, u.name AS user_name
FROM quota_states q
JOIN access_keys k ON k.id = q.access_key_id
JOIN users u ON u.id = k.user_id
WHERE ($1::text IS NULL OR lower(u.name) = lower($1))
ORDER BY q.access_key_id;

-- name: get-quota-state
SELECT q.access_key_id, q.unified_status, q.unified_reset, q.windows, q.routed_until,
       q.seen_at, k.prefix, u.name AS user_name
FROM quota_states q
JOIN access_keys k ON k.id = q.access_key_id
JOIN users u ON u.id = k.user_id
WHERE q.access_key_id = $1;
