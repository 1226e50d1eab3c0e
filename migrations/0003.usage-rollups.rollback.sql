DROP TABLE usage_rollups;
