-- The operator side (SPEC §7): admin accounts, the audit log, key rotation and user
-- deactivation / soft delete.
-- depends: 0004.budgets-and-limits

-- Admin accounts. `password_version` goes into every token and is bumped by a password
-- change, so tokens issued before it stop working; a deleted admin keeps its row (the
-- audit log names it) but frees the username.
CREATE TABLE admins (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username         text NOT NULL CHECK (length(username) BETWEEN 1 AND 200),
    password_hash    text NOT NULL,
    role             text NOT NULL CHECK (role IN ('admin', 'viewer')),
    password_version integer NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);
CREATE UNIQUE INDEX admins_live_username ON admins (lower(username)) WHERE deleted_at IS NULL;

-- Every admin write and every failed login, written in the same transaction as the
-- change. `changes` holds the changed fields' new values, never a secret.
CREATE TABLE audit_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    actor_kind     text NOT NULL CHECK (actor_kind IN ('admin', 'cli', 'system', 'anonymous')),
    actor          text NOT NULL,
    admin_id       bigint REFERENCES admins (id),
    action         text NOT NULL,
    target_type    text NOT NULL,
    target_id      text,
    changes        jsonb NOT NULL DEFAULT '{}',
    client_address text
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (lower(actor), at);
CREATE INDEX audit_log_target ON audit_log (target_type, target_id, at);
-- The login throttle counts recent failures per username and per client address.
CREATE INDEX audit_log_failed_logins ON audit_log (at) WHERE action = 'admin.login_failed';

-- Rotation: the old key keeps working until expires_at (the grace period), then the
-- periodic revoker revokes it; replaced_by links it to its successor.
ALTER TABLE access_keys ADD COLUMN replaced_by bigint REFERENCES access_keys (id);
CREATE INDEX access_keys_expiring ON access_keys (expires_at) WHERE status = 'active' AND expires_at IS NOT NULL;

ALTER TABLE users ADD COLUMN deactivated_at timestamptz;
ALTER TABLE users ADD COLUMN deleted_at timestamptz;
