-- name: create-user
INSERT INTO users (name, description)
VALUES ($1, $2)
RETURNING id, name, description, status, created_at;

-- name: get-user-by-name
SELECT u.id, u.name, u.description, u.status, u.created_at, u.team_id, t.name AS team,
       u.monthly_budget_usd, u.alert_thresholds, u.allowed_models
FROM users u
LEFT JOIN teams t ON t.id = u.team_id
WHERE lower(u.name) = lower($1) AND u.status <> 'deleted';

-- name: get-user
SELECT id, name, description, status, created_at
FROM users
WHERE id = $1 AND status <> 'deleted';

-- name: list-users
SELECT u.id, u.name, u.description, u.status, u.created_at, t.name AS team,
       u.monthly_budget_usd, u.allowed_models,
       count(k.id) FILTER (WHERE k.status = 'active') AS active_keys
FROM users u
LEFT JOIN teams t ON t.id = u.team_id
LEFT JOIN access_keys k ON k.user_id = u.id
WHERE u.status <> 'deleted'
  AND ($1::text IS NULL OR u.name ILIKE '%' || $1 || '%')
GROUP BY u.id, t.name
ORDER BY u.name
LIMIT $2 OFFSET $3;
