-- name: list-model-map
SELECT anthropic_name, bedrock_model_id, updated_at
FROM model_map
ORDER BY anthropic_name;

-- name: upsert-model-map
INSERT INTO model_map (anthropic_name, bedrock_model_id)
VALUES ($1, $2)
ON CONFLICT (anthropic_name) DO UPDATE SET
    bedrock_model_id = EXCLUDED.bedrock_model_id, updated_at = now();

-- name: delete-model-map
DELETE FROM model_map WHERE anthropic_name = $1;

-- name: list-unmapped-models
-- Requested model names Bedrock served with the configured default, most used first.
SELECT model AS requested, upstream_model AS served_by, count(*) AS requests,
       min(created_at) AS first_seen, max(created_at) AS last_seen
FROM usage_events
WHERE model_substituted AND created_at >= $1
GROUP BY model, upstream_model
ORDER BY requests DESC, requested;
