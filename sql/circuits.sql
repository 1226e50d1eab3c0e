-- name: list-circuit-states
SELECT c.access_key_id, c.state, c.failures, c.window_started_at, c.opened_at,
       c.probe_started_at, c.last_error_class, c.version, c.updated_at,
       k.prefix, u.name AS user_name
FROM circuit_states c
JOIN access_keys k ON k.id = c.access_key_id
JOIN users u ON u.id = k.user_id
ORDER BY c.access_key_id;

-- name: get-circuit-state
SELECT access_key_id, state, failures, window_started_at, opened_at, probe_started_at, version
FROM circuit_states
WHERE access_key_id = $1;

-- name: record-circuit-failure
-- Count one failure in a window that starts at the first failure and lasts $2 seconds;
-- the failure that reaches $3 opens the circuit. A single statement, so instances
-- failing at once cannot lose counts. Returns the new state.
INSERT INTO circuit_states AS c (access_key_id, state, failures, window_started_at, opened_at, last_error_class)
VALUES ($1, CASE WHEN $3 <= 1 THEN 'open' ELSE 'closed' END, 1, now(),
        CASE WHEN $3 <= 1 THEN now() END, $4)
ON CONFLICT (access_key_id) DO UPDATE SET
    failures = CASE WHEN c.window_started_at > now() - make_interval(secs => $2)
                    THEN c.failures + 1 ELSE 1 END,
    window_started_at = CASE WHEN c.window_started_at > now() - make_interval(secs => $2)
                             THEN c.window_started_at ELSE now() END,
    state = CASE WHEN (CASE WHEN c.window_started_at > now() - make_interval(secs => $2)
                            THEN c.failures + 1 ELSE 1 END) >= $3
                 THEN 'open' ELSE 'closed' END,
    opened_at = CASE WHEN (CASE WHEN c.window_started_at > now() - make_interval(secs => $2)
                                THEN c.failures + 1 ELSE 1 END) >= $3
                     THEN now() END,
    last_error_class = $4,
    version = c.version + 1,
    updated_at = now()
WHERE c.state = 'closed'
RETURNING c.state, c.failures, c.opened_at, c.probe_started_at, c.version;

-- name: claim-circuit-probe
-- Exactly one request across all instances gets to probe the plan once the open period
-- is over ($2 seconds); a probe that never reported back ($3 seconds) may be re-claimed.
UPDATE circuit_states
SET state = 'half_open', probe_started_at = now(), version = version + 1, updated_at = now()
WHERE access_key_id = $1
  AND ((state = 'open' AND opened_at <= now() - make_interval(secs => $2))
       OR (state = 'half_open' AND probe_started_at <= now() - make_interval(secs => $3)))
RETURNING state, opened_at, probe_started_at, version;

-- name: close-circuit
-- The row stays (closed, version + 1) so that no instance mistakes an older reload for news.
UPDATE circuit_states
SET state = 'closed', failures = 0, window_started_at = NULL, opened_at = NULL,
    probe_started_at = NULL, version = version + 1, updated_at = now()
WHERE access_key_id = $1 AND state <> 'closed'
RETURNING state, opened_at, probe_started_at, version;

-- name: reopen-circuit
UPDATE circuit_states
SET state = 'open', opened_at = now(), probe_started_at = NULL, failures = 0,
    last_error_class = $2, version = version + 1, updated_at = now()
WHERE access_key_id = $1
RETURNING state, opened_at, probe_started_at, version;

-- name: list-open-circuits
-- For the faces: keys whose circuit is open or half-open, paged.
SELECT c.access_key_id, k.prefix, u.name AS user_name, c.state, c.failures, c.opened_at,
       c.probe_started_at, c.last_error_class, c.updated_at, count(*) OVER () AS total
FROM circuit_states c
JOIN access_keys k ON k.id = c.access_key_id
JOIN users u ON u.id = k.user_id
WHERE c.state <> 'closed'
ORDER BY c.access_key_id
LIMIT $1 OFFSET $2;
