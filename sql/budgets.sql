-- name: create-team
INSERT INTO teams (name, description, monthly_budget_usd, alert_thresholds, allowed_models)
VALUES ($1, $2, $3, COALESCE($4, '{80,100}'::integer[]), $5)
RETURNING id;

-- name: get-team
SELECT t.id, t.name, t.description, t.monthly_budget_usd, t.alert_thresholds, t.allowed_models,
       (SELECT count(*) FROM users u WHERE u.team_id = t.id AND u.status <> 'deleted') AS members,
       t.created_at
FROM teams t
WHERE t.id = $1;

-- name: get-team-by-name
SELECT t.id, t.name, t.description, t.monthly_budget_usd, t.alert_thresholds, t.allowed_models,
       (SELECT count(*) FROM users u WHERE u.team_id = t.id AND u.status <> 'deleted') AS members,
       t.created_at
FROM teams t
WHERE lower(t.name) = lower($1);

-- name: list-teams
SELECT t.id, t.name, t.description, t.monthly_budget_usd, t.alert_thresholds, t.allowed_models,
       (SELECT count(*) FROM users u WHERE u.team_id = t.id AND u.status <> 'deleted') AS members,
       t.created_at, count(*) OVER () AS total
FROM teams t
WHERE ($1::text IS NULL OR strpos(lower(t.name), lower($1)) > 0)
ORDER BY lower(t.name), t.id
LIMIT $2 OFFSET $3;

-- name: update-team
-- For each field, the boolean before it says whether to change it (so NULL can mean
-- "unlimited" or "all models").
UPDATE teams
SET name = CASE WHEN $2 THEN $3 ELSE name END,
    description = CASE WHEN $4 THEN $5 ELSE description END,
    monthly_budget_usd = CASE WHEN $6 THEN $7 ELSE monthly_budget_usd END,
    alert_thresholds = CASE WHEN $8 THEN $9 ELSE alert_thresholds END,
    allowed_models = CASE WHEN $10 THEN $11 ELSE allowed_models END,
    updated_at = now()
WHERE id = $1
RETURNING id;

-- name: clear-team-members
-- Members leave a team that is deleted (the UPDATE's trigger tells every gateway).
UPDATE users SET team_id = NULL, updated_at = now() WHERE team_id = $1;

-- name: delete-team
DELETE FROM teams WHERE id = $1 RETURNING id;

-- name: get-team-month-spend
SELECT COALESCE(sum(r.cost_usd), 0) AS cost_usd
FROM usage_rollups r
JOIN users u ON u.id = r.user_id
WHERE r.granularity = 'month' AND r.bucket_start = $2 AND u.team_id = $1;

-- name: list-month-spend
-- Month-to-date Bedrock cost per user and their team, from the month rollups ($1 is the
-- month bucket's start in the reporting zone).
SELECT r.user_id, u.team_id, sum(r.cost_usd) AS cost_usd
FROM usage_rollups r
JOIN users u ON u.id = r.user_id
WHERE r.granularity = 'month' AND r.bucket_start = $1
GROUP BY r.user_id, u.team_id;

-- name: insert-budget-alert
INSERT INTO budget_alerts (scope, scope_id, period, threshold, usage_usd, budget_usd)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT DO NOTHING
RETURNING fired_at;
