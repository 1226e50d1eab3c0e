-- name: insert-key
INSERT INTO access_keys (user_id, key_hash, prefix, bedrock_region, bedrock_model, rpm_limit,
                         bedrock_key_blob, bedrock_default_credentials)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id;

-- name: get-key
SELECT k.id, k.user_id, u.name AS user_name, k.prefix, k.status, k.bedrock_region,
       k.bedrock_model, k.bedrock_default_credentials,
       k.bedrock_key_blob IS NOT NULL AS bedrock_key_registered, k.rpm_limit,
       k.created_at, k.revoked_at, k.expires_at, k.replaced_by
FROM access_keys k
JOIN users u ON u.id = k.user_id
WHERE k.id = $1 AND u.status <> 'deleted';

-- name: list-keys-for-user
SELECT k.id, k.user_id, u.name AS user_name, k.prefix, k.status, k.bedrock_region,
       k.bedrock_model, k.bedrock_default_credentials,
       k.bedrock_key_blob IS NOT NULL AS bedrock_key_registered, k.rpm_limit,
       k.created_at, k.revoked_at, k.expires_at, k.replaced_by, count(*) OVER () AS total
FROM access_keys k
JOIN users u ON u.id = k.user_id
WHERE k.user_id = $1
ORDER BY k.id
LIMIT $2 OFFSET $3;

-- name: lock-key
-- What rotation copies from the old key, locked so two rotations cannot both win.
SELECT k.id, k.user_id, k.status, k.expires_at, k.bedrock_region, k.bedrock_model,
       k.rpm_limit, k.bedrock_key_blob, k.bedrock_default_credentials, u.status AS user_status
FROM access_keys k
JOIN users u ON u.id = k.user_id
WHERE k.id = $1 AND u.status <> 'deleted'
FOR UPDATE OF k;

-- name: expire-rotated-key
-- The old key works until the grace period ends; the revoker then revokes it.
UPDATE access_keys
SET expires_at = now() + make_interval(secs => $3), replaced_by = $2
WHERE id = $1
RETURNING expires_at;

-- name: revoke-expired-keys
-- Run by every instance periodically; idempotent. The UPDATE's NOTIFY evicts the keys
-- from every cache.
UPDATE access_keys SET status = 'revoked', revoked_at = now()
WHERE status = 'active' AND expires_at IS NOT NULL AND expires_at <= now()
RETURNING id;

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
       t.alert_thresholds AS team_alert_thresholds, t.allowed_models AS team_allowed_models
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
       t.alert_thresholds AS team_alert_thresholds, t.allowed_models AS team_allowed_models
FROM access_keys k
JOIN users u ON u.id = k.user_id
LEFT JOIN teams t ON t.id = u.team_id
WHERE k.key_hash = ANY($1::bytea[])
  AND k.status = 'active'
  AND u.status = 'active'
  AND (k.expires_at IS NULL OR k.expires_at > now());

-- name: update-key-bedrock
-- For each field, the boolean before it says whether to change it (NULL resets region
-- and model to the defaults and removes the rpm limit).
UPDATE access_keys
SET bedrock_region = CASE WHEN $2 THEN $3 ELSE bedrock_region END,
    bedrock_model = CASE WHEN $4 THEN $5 ELSE bedrock_model END,
    bedrock_default_credentials = CASE WHEN $6 THEN $7 ELSE bedrock_default_credentials END,
    rpm_limit = CASE WHEN $8 THEN $9 ELSE rpm_limit END
WHERE id = $1 AND status = 'active'
RETURNING id;

-- name: set-key-bedrock-blob
UPDATE access_keys SET bedrock_key_blob = $2
WHERE id = $1 AND status = 'active'
RETURNING id;
