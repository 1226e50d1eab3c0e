-- name: list-applied-migrations
SELECT migration_id FROM _yoyo_migration;
