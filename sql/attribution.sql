-- name: summarize-usage-by-attribution
-- Totals over [$2, $3) straight from usage_events (the rollups do not carry Claude Code's
-- ids), grouped by $1: 'session' (x-claude-code-session-id) or 'agent'
-- (x-claude-code-agent-id; '' for the main conversation). $4 limits to one user (name),
-- $5 caps the groups, most recent first.
SELECT CASE $1::text WHEN 'session' THEN COALESCE(e.session_id, '') ELSE COALESCE(e.agent_id, '') END AS group_key,
       min(u.name) AS user,
       max(e.session_id) AS session_id,
       max(e.parent_agent_id) AS parent_agent_id,
       count(*)::bigint AS requests,
       (count(*) FILTER (WHERE e.is_fallback))::bigint AS fallback_requests,
       (count(*) FILTER (WHERE e.status >= 500))::bigint AS error_requests,
       sum(e.input_tokens)::bigint AS input_tokens,
       sum(e.output_tokens)::bigint AS output_tokens,
       sum(e.cache_creation_input_tokens)::bigint AS cache_creation_input_tokens,
       sum(e.cache_read_input_tokens)::bigint AS cache_read_input_tokens,
       sum(e.cost_usd) AS cost_usd,
       min(e.created_at) AS first_seen,
       max(e.created_at) AS last_seen
FROM usage_events e
JOIN users u ON u.id = e.user_id
WHERE e.created_at >= $2 AND e.created_at < $3
  AND ($4::text IS NULL OR lower(u.name) = lower($4))
GROUP BY 1
ORDER BY max(e.created_at) DESC, 1
LIMIT $5;
