-- Model mapping as data, and Claude Code attribution on usage rows (issue 15).
-- depends: 0004.budgets-and-limits

-- Operator rows over the shipped defaults (gateway/default_models.json): an Anthropic
-- model name → a Bedrock model id or inference profile. A row whose bedrock_model_id is
-- NULL hides a shipped default (`ccproxy models delete` of a default name).
CREATE TABLE model_map (
    anthropic_name   text PRIMARY KEY CHECK (length(anthropic_name) BETWEEN 1 AND 200),
    bedrock_model_id text CHECK (length(bedrock_model_id) BETWEEN 1 AND 2048),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Every instance swaps in the whole table when it changes, as it does for prices.
CREATE FUNCTION notify_model_map_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ccproxy_models', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER model_map_notify AFTER INSERT OR UPDATE OR DELETE ON model_map
    FOR EACH STATEMENT EXECUTE FUNCTION notify_model_map_change();

-- x-claude-code-agent-id / -parent-agent-id (subagents), and whether Bedrock served a
-- requested model that nothing maps with the configured default.
ALTER TABLE usage_events ADD COLUMN agent_id text;
ALTER TABLE usage_events ADD COLUMN parent_agent_id text;
ALTER TABLE usage_events ADD COLUMN model_substituted boolean NOT NULL DEFAULT false;
CREATE INDEX usage_events_substituted ON usage_events (model) WHERE model_substituted;
