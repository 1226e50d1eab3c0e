-- name: create-admin
INSERT INTO admins (username, password_hash, role)
VALUES ($1, $2, $3)
RETURNING id;

-- name: get-admin
SELECT id, username, role, password_hash, password_version, created_at
FROM admins
WHERE id = $1 AND deleted_at IS NULL;

-- name: get-admin-by-username
SELECT id, username, role, password_hash, password_version, created_at
FROM admins
WHERE lower(username) = lower($1) AND deleted_at IS NULL;

-- name: list-admins
SELECT id, username, role, created_at, count(*) OVER () AS total
FROM admins
WHERE deleted_at IS NULL
ORDER BY lower(username), id
LIMIT $1 OFFSET $2;

-- name: delete-admin
UPDATE admins SET deleted_at = now(), updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id;

-- name: set-admin-password
-- A new password_version makes every token issued before it invalid.
UPDATE admins
SET password_hash = $2, password_version = password_version + 1, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING password_version;

-- name: set-admin-role
UPDATE admins SET role = $2, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id;
