ALTER TABLE users DROP COLUMN deleted_at;
ALTER TABLE users DROP COLUMN deactivated_at;
DROP INDEX access_keys_expiring;
ALTER TABLE access_keys DROP COLUMN replaced_by;
DROP TABLE audit_log;
DROP TABLE admins;
