-- name: insert-key
INSERT INTO access_keys (user_id, key_hash, prefix, bedrock_region, bedrock_model)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, user_id, prefix, status, bedrock_region, bedrock_model, created_at;

-- name: list-keys-for-user
SELECT id, user_id, prefix, status, bedrock_region, bedrock_model, created_at,
       revoked_at, expires_at,
       bedrock_key_blob IS NOT NULL AS bedrock_key_registered, bedrock_default_credentials
FROM access_keys
WHERE user_id = $1
ORDER BY id;

-- name: get-key
SELECT k.id, k.user_id, u.name AS user_name, k.prefix, k.status, k.bedrock_region,
       k.bedrock_model, k.created_at, k.revoked_at, k.expires_at, k.rpm_limit,
       k.bedrock_key_blob IS NOT NULL AS bedrock_key_registered, k.bedrock_default_credentials
FROM access_keys k
JOIN users u ON u.id = k.user_id
WHERE k.id = $1;

-- name: revoke-key
UPDATE access_keys
SET status = 'revoked', revoked_at = now()
WHERE id = $1 AND status = 'active'
RETURNING id;

-- name: get-key-context
-- What the request path needs to know about a usable key (active key, active user,
-- rotation grace not over).
SELECT k.id, k.user_id, u.name AS user_name, k.prefix, k.key_hash,
       k.bedrock_region, k.bedrock_model, k.bedrock_key_blob, k.bedrock_default_credentials,
       k.rpm_limit, u.monthly_budget_usd, u.alert_thresholds, u.allowed_models,
       u.team_id, t.name AS team_name, t.monthly_budget_usd AS team_budget_usd,
       t.alert_thresholds AS team_alert_thresholds, t.allowed_models AS team_allowed_models,
       -- the most specific routing strategy wins (gateway/routing.py)
       COALESCE(k.routing, u.routing, t.routing, 'plan_first') AS routing
FROM access_keys k
JOIN users u ON u.id = k.user_id
LEFT JOIN teams t ON t.id = u.team_id
WHERE k.key_hash = $1
  AND k.status = 'active'
  AND u.status = 'active'
  AND (k.expires_at IS NULL OR k.expires_at > now());

-- name: get-key-contexts
SELECT k.id, k.user_id, u.name AS user_name, k.prefix, k.key_hash,
       k.bedrock_region, k.bedrock_model, k.bedrock_key_blob, k.bedrock_default_credentials,
       k.rpm_limit, u.monthly_budget_usd, u.alert_thresholds, u.allowed_models,
       u.team_id, t.name AS team_name, t.monthly_budget_usd AS team_budget_usd,
       t.alert_thresholds AS team_alert_thresholds, t.allowed_models AS team_allowed_models,
       -- the most specific routing strategy wins (gateway/routing.py)
       COALESCE(k.routing, u.routing, t.routing, 'plan_first') AS routing
FROM access_keys k
JOIN users u ON u.id = k.user_id
LEFT JOIN teams t ON t.id = u.team_id
WHERE k.key_hash = ANY($1::bytea[])
  AND k.status = 'active'
  AND u.status = 'active'
  AND (k.expires_at IS NULL OR k.expires_at > now());

-- name: update-key-bedrock
-- NULL arguments leave a field as it is; '' clears region/model back to the defaults.
UPDATE access_keys
SET bedrock_region = CASE WHEN $2::text IS NULL THEN bedrock_region ELSE NULLIF($2, '') END,
    bedrock_model = CASE WHEN $3::text IS NULL THEN bedrock_model ELSE NULLIF($3, '') END,
    bedrock_default_credentials = COALESCE($4, bedrock_default_credentials),
    -- $5: NULL keeps, 0 removes the limit
    rpm_limit = CASE WHEN $5::integer IS NULL THEN rpm_limit ELSE NULLIF($5, 0) END
WHERE id = $1 AND status = 'active'
RETURNING id;

-- name: set-key-bedrock-blob
UPDATE access_keys SET bedrock_key_blob = $2
WHERE id = $1 AND status = 'active'
RETURNING id;
