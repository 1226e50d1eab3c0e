-- name: create-user
INSERT INTO users (name, description)
VALUES ($1, $2)
RETURNING id, name, description, status, created_at;

-- name: get-user-by-name
SELECT id, name, description, status, created_at
FROM users
WHERE lower(name) = lower($1) AND status <> 'deleted';

-- name: get-user
SELECT id, name, description, status, created_at
FROM users
WHERE id = $1 AND status <> 'deleted';

-- name: list-users
SELECT u.id, u.name, u.description, u.status, u.created_at,
       count(k.id) FILTER (WHERE k.status = 'active') AS active_keys
FROM users u
LEFT JOIN access_keys k ON k.user_id = u.id
WHERE u.status <> 'deleted'
  AND ($1::text IS NULL OR u.name ILIKE '%' || $1 || '%')
GROUP BY u.id
ORDER BY u.name
LIMIT $2 OFFSET $3;
