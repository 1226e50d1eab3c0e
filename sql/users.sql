-- name: create-user
INSERT INTO users (name, description, team_id, monthly_budget_usd, alert_thresholds, allowed_models)
VALUES ($1, $2, $3, $4, COALESCE($5, '{80,100}'::integer[]), $6)
RETURNING id;

-- name: get-user
-- One user as the services show it (deleted users do not exist).
SELECT u.id, u.name, u.description, u.status, u.team_id, t.name AS team,
       u.monthly_budget_usd, u.alert_thresholds, u.allowed_models,
       (SELECT count(*) FROM access_keys k WHERE k.user_id = u.id AND k.status = 'active') AS active_keys,
       u.created_at, u.deactivated_at
FROM users u
LEFT JOIN teams t ON t.id = u.team_id
WHERE u.id = $1 AND u.status <> 'deleted';

-- name: get-user-by-name
SELECT u.id, u.name, u.description, u.status, u.team_id, t.name AS team,
       u.monthly_budget_usd, u.alert_thresholds, u.allowed_models,
       (SELECT count(*) FROM access_keys k WHERE k.user_id = u.id AND k.status = 'active') AS active_keys,
       u.created_at, u.deactivated_at
FROM users u
LEFT JOIN teams t ON t.id = u.team_id
WHERE lower(u.name) = lower($1) AND u.status <> 'deleted';

-- name: list-users
-- $1 search (substring of the name), $2 team id, $3 status; NULL = any. Paged ($4, $5).
SELECT u.id, u.name, u.description, u.status, u.team_id, t.name AS team,
       u.monthly_budget_usd, u.alert_thresholds, u.allowed_models,
       (SELECT count(*) FROM access_keys k WHERE k.user_id = u.id AND k.status = 'active') AS active_keys,
       u.created_at, u.deactivated_at, count(*) OVER () AS total
FROM users u
LEFT JOIN teams t ON t.id = u.team_id
WHERE u.status <> 'deleted'
  AND ($1::text IS NULL OR strpos(lower(u.name), lower($1)) > 0)
  AND ($2::bigint IS NULL OR u.team_id = $2)
  AND ($3::text IS NULL OR u.status = $3)
ORDER BY lower(u.name), u.id
LIMIT $4 OFFSET $5;

-- name: update-user
-- For each field, the boolean before it says whether to change it (so NULL can mean
-- "no team", "unlimited" or "all models").
UPDATE users
SET name = CASE WHEN $2 THEN $3 ELSE name END,
    description = CASE WHEN $4 THEN $5 ELSE description END,
    team_id = CASE WHEN $6 THEN $7 ELSE team_id END,
    monthly_budget_usd = CASE WHEN $8 THEN $9 ELSE monthly_budget_usd END,
    alert_thresholds = CASE WHEN $10 THEN $11 ELSE alert_thresholds END,
    allowed_models = CASE WHEN $12 THEN $13 ELSE allowed_models END,
    updated_at = now()
WHERE id = $1 AND status <> 'deleted'
RETURNING id;

-- name: deactivate-user
UPDATE users SET status = 'inactive', deactivated_at = now(), updated_at = now()
WHERE id = $1 AND status = 'active'
RETURNING id;

-- name: delete-user
-- Soft delete: the row (and its usage) stays; the partial unique index frees the name.
UPDATE users SET status = 'deleted', deleted_at = now(), updated_at = now()
WHERE id = $1 AND status <> 'deleted'
RETURNING id;

-- name: revoke-user-keys
UPDATE access_keys SET status = 'revoked', revoked_at = now()
WHERE user_id = $1 AND status = 'active'
RETURNING id;

-- name: get-user-month-spend
SELECT COALESCE(sum(cost_usd), 0) AS cost_usd
FROM usage_rollups
WHERE granularity = 'month' AND bucket_start = $2 AND user_id = $1;
