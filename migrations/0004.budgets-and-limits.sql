-- Budgets and limits (SPEC §6): teams, monthly Bedrock budgets for users and teams,
-- alert thresholds, model allow-lists, and a per-key requests-per-minute limit.
-- depends: 0003.usage-rollups

CREATE TABLE teams (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description        text,
    -- NULL means unlimited.
    monthly_budget_usd numeric(10, 2) CHECK (monthly_budget_usd BETWEEN 0.01 AND 999999.99),
    -- Percentages of the budget at which an alert fires, once per period each.
    alert_thresholds   integer[] NOT NULL DEFAULT '{80,100}',
    -- fnmatch patterns such as 'claude-sonnet-*'; NULL means every model.
    allowed_models     text[],
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX teams_name ON teams (lower(name));

-- A user belongs to at most one team.
ALTER TABLE users ADD COLUMN team_id bigint REFERENCES teams (id);
ALTER TABLE users ADD COLUMN monthly_budget_usd numeric(10, 2)
    CHECK (monthly_budget_usd BETWEEN 0.01 AND 999999.99);
ALTER TABLE users ADD COLUMN alert_thresholds integer[] NOT NULL DEFAULT '{80,100}';
ALTER TABLE users ADD COLUMN allowed_models text[];
CREATE INDEX users_team ON users (team_id);

ALTER TABLE access_keys ADD COLUMN rpm_limit integer CHECK (rpm_limit > 0);

-- A team change reaches every instance's key cache like a key change does.
CREATE FUNCTION notify_team_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ccproxy_keys', k.id::text)
    FROM access_keys k JOIN users u ON u.id = k.user_id
    WHERE u.team_id = NEW.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER teams_notify AFTER UPDATE ON teams
    FOR EACH ROW EXECUTE FUNCTION notify_team_change();

-- Each alert fires once per budget, period and threshold across all instances: the
-- instance whose INSERT wins sends it.
CREATE TABLE budget_alerts (
    scope      text NOT NULL CHECK (scope IN ('user', 'team')),
    scope_id   bigint NOT NULL,
    period     date NOT NULL,
    threshold  integer NOT NULL,
    usage_usd  numeric(20, 6) NOT NULL,
    budget_usd numeric(10, 2) NOT NULL,
    fired_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, scope_id, period, threshold)
);
