-- name: set-key-routing
UPDATE access_keys SET routing = $2
WHERE id = $1 AND status = 'active'
RETURNING id, prefix, routing;

-- name: set-user-routing
UPDATE users SET routing = $2, updated_at = now()
WHERE id = $1
RETURNING id, name, routing;

-- name: set-team-routing
UPDATE teams SET routing = $2, updated_at = now()
WHERE id = $1
RETURNING id, name, routing;

-- name: list-keys-left-without-bedrock
-- Active keys that would route bedrock_only, yet have no Bedrock, if scope $1 ('key',
-- 'user' or 'team') with id $2 were set to bedrock_only: the keys that inherit it.
SELECT k.id, k.prefix
FROM access_keys k
JOIN users u ON u.id = k.user_id
WHERE k.status = 'active' AND u.status = 'active'
  AND k.bedrock_key_blob IS NULL AND NOT k.bedrock_default_credentials
  AND CASE $1::text
          WHEN 'key' THEN k.id = $2
          WHEN 'user' THEN u.id = $2 AND k.routing IS NULL
          ELSE u.team_id = $2 AND k.routing IS NULL AND u.routing IS NULL
      END
ORDER BY k.id;

-- name: get-key-routing
-- The key's own setting (NULL: it follows its user); the detail answers of the admin API.
SELECT routing FROM access_keys WHERE id = $1;

-- name: get-user-routing
SELECT routing FROM users WHERE id = $1;

-- name: get-team-routing
SELECT routing FROM teams WHERE id = $1;
