DROP INDEX usage_events_substituted;
ALTER TABLE usage_events DROP COLUMN model_substituted;
ALTER TABLE usage_events DROP COLUMN parent_agent_id;
ALTER TABLE usage_events DROP COLUMN agent_id;
DROP TRIGGER model_map_notify ON model_map;
DROP FUNCTION notify_model_map_change();
DROP TABLE model_map;
