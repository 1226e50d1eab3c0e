-- name: insert-audit-entry
INSERT INTO audit_log (actor_kind, actor, admin_id, action, target_type, target_id, changes, client_address)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8);

-- name: list-audit-entries
-- Filters are optional (NULL = any); newest first. count(*) OVER () gives the total
-- of the filtered rows alongside the page.
SELECT id, at, actor, actor_kind, action, target_type, target_id, changes, client_address,
       count(*) OVER () AS total
FROM audit_log
WHERE ($1::text IS NULL OR lower(actor) = lower($1))
  AND ($2::text IS NULL OR action = $2)
  AND ($3::text IS NULL OR target_type = $3)
  AND ($4::text IS NULL OR target_id = $4)
  AND ($5::timestamptz IS NULL OR at >= $5)
  AND ($6::timestamptz IS NULL OR at < $6)
ORDER BY at DESC, id DESC
LIMIT $7 OFFSET $8;

-- name: count-recent-failed-logins
-- Failed logins in the last $3 seconds for this username ($1, lowercased) and for this
-- client address ($2).
SELECT count(*) FILTER (WHERE target_id = $1) AS by_username,
       count(*) FILTER (WHERE client_address = $2) AS by_address,
       max(at) AS latest
FROM audit_log
WHERE action = 'admin.login_failed' AND at > now() - make_interval(secs => $3);
