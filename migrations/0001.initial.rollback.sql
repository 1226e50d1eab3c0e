DROP TABLE usage_events;
DROP TRIGGER users_notify ON users;
DROP FUNCTION notify_user_change();
DROP TABLE access_keys;
DROP FUNCTION notify_access_key_change();
DROP TABLE users;
