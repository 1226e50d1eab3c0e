-- name: create-team
INSERT INTO teams (name, description, monthly_budget_usd, allowed_models)
VALUES ($1, $2, $3, $4)
RETURNING id, name, description, monthly_budget_usd, alert_thresholds, allowed_models, created_at;

-- name: get-team-by-name
SELECT id, name, description, monthly_budget_usd, alert_thresholds, allowed_models, created_at
FROM teams
WHERE lower(name) = lower($1);

-- name: list-teams
SELECT t.id, t.name, t.monthly_budget_usd, t.alert_thresholds, t.allowed_models,
       count(u.id) AS members
FROM teams t
LEFT JOIN users u ON u.team_id = t.id AND u.status <> 'deleted'
GROUP BY t.id
ORDER BY t.name;

-- name: update-team
-- For each field, $n_set says whether to change it (so NULL can mean "unlimited").
UPDATE teams
SET monthly_budget_usd = CASE WHEN $2 THEN $3 ELSE monthly_budget_usd END,
    allowed_models = CASE WHEN $4 THEN $5 ELSE allowed_models END,
    alert_thresholds = COALESCE($6, alert_thresholds),
    updated_at = now()
WHERE id = $1
RETURNING id, name, monthly_budget_usd, alert_thresholds, allowed_models;

-- name: update-user-limits
UPDATE users
SET monthly_budget_usd = CASE WHEN $2 THEN $3 ELSE monthly_budget_usd END,
    allowed_models = CASE WHEN $4 THEN $5 ELSE allowed_models END,
    team_id = CASE WHEN $6 THEN $7 ELSE team_id END,
    alert_thresholds = COALESCE($8, alert_thresholds),
    description = COALESCE($9, description),
    updated_at = now()
WHERE id = $1
RETURNING id, name, description, status, team_id, monthly_budget_usd, alert_thresholds,
          allowed_models;

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
