ALTER TABLE usage_rollups RESET (fillfactor);
