-- Quota-aware routing, a routing strategy per team/user/key, and one ledger for both
-- providers (SPEC §3, §5; issue 14).
-- depends: 0004.budgets-and-limits

-- The plan's unified rate-limit state per access key, as last seen by any instance.
-- `routed_until` set and in the future: the key goes straight to Bedrock until then.
-- Instances write a row when a key's routed-away status changes (NOTIFYed) and, coalesced
-- every few seconds, the latest readings for `ccproxy keys quota` (not NOTIFYed).
CREATE TABLE quota_states (
    access_key_id  bigint PRIMARY KEY REFERENCES access_keys (id) ON DELETE CASCADE,
    unified_status text,
    unified_reset  timestamptz,
    -- {"5h": {"status": "allowed", "utilization": 0.42, "reset": 1764633600}, "7d": …}
    windows        jsonb NOT NULL DEFAULT '{}',
    routed_until   timestamptz,
    routed_at      timestamptz,
    seen_at        timestamptz NOT NULL,
    version        bigint NOT NULL DEFAULT 1,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION notify_quota_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ccproxy_quota', NEW.access_key_id::text);
    RETURN NULL;
END;
$$;
-- Only a change of routed-away status reaches the other instances; reading refreshes don't.
CREATE TRIGGER quota_states_notify_insert AFTER INSERT ON quota_states
    FOR EACH ROW WHEN (NEW.routed_until IS NOT NULL) EXECUTE FUNCTION notify_quota_change();
CREATE TRIGGER quota_states_notify_update AFTER UPDATE ON quota_states
    FOR EACH ROW WHEN (OLD.routed_until IS DISTINCT FROM NEW.routed_until)
    EXECUTE FUNCTION notify_quota_change();

-- Routing strategy; NULL inherits (key → user → team → plan_first).
ALTER TABLE teams ADD COLUMN routing text CHECK (routing IN ('plan_first', 'bedrock_only'));
ALTER TABLE users ADD COLUMN routing text CHECK (routing IN ('plan_first', 'bedrock_only'));
ALTER TABLE access_keys ADD COLUMN routing text CHECK (routing IN ('plan_first', 'bedrock_only'));

-- The ledger. cost_usd: what the organisation pays (Bedrock); list_cost_usd: the same
-- tokens at the provider's list price (plan rows at the Anthropic API's). Both are NULL
-- on a row whose model had no price (`unpriced`), never a silent 0; `ccproxy pricing
-- reprice` prices exactly those rows later. New columns go last: the usage writer's
-- staging table copies this column order.
ALTER TABLE usage_events ALTER COLUMN cost_usd DROP NOT NULL;
ALTER TABLE usage_events ALTER COLUMN cost_usd DROP DEFAULT;
ALTER TABLE usage_events ADD COLUMN list_cost_usd numeric(18, 6);
-- A plan row's list price snapshot, by reference: a plan row would otherwise carry ~230
-- bytes of jsonb that PostgreSQL parses on every COPY (measured: ~4 µs of CPU per row,
-- a sixth of the usage writer's cost). A Bedrock row's list price is its price_snapshot.
ALTER TABLE usage_events ADD COLUMN list_price_id bigint;
ALTER TABLE usage_events ADD COLUMN unpriced boolean NOT NULL DEFAULT false;
ALTER TABLE usage_events ADD COLUMN region text;
-- Why a request went where it did, when the plan did not answer it: the plan's failure
-- class (SPEC §3), circuit_open, quota_exhausted, or bedrock_only (the routing strategy).
ALTER TABLE usage_events ADD COLUMN plan_outcome text;
-- Rows written before this migration: a priced Bedrock row carries its Bedrock price in
-- both columns, a row without tokens costs nothing either way; the others (plan rows with
-- tokens, Bedrock rows that found no price) become unpriced, for `ccproxy pricing reprice`.
UPDATE usage_events SET list_cost_usd = cost_usd
WHERE (provider = 'bedrock' AND price_snapshot IS NOT NULL)
   OR input_tokens + output_tokens + cache_creation_input_tokens + cache_read_input_tokens = 0;
UPDATE usage_events SET cost_usd = NULL, unpriced = true WHERE list_cost_usd IS NULL;
-- `ccproxy pricing unpriced` and `reprice` find the few unpriced rows through this.
CREATE INDEX usage_events_unpriced ON usage_events (created_at) WHERE unpriced;

ALTER TABLE usage_rollups ADD COLUMN list_cost_usd numeric(20, 6) NOT NULL DEFAULT 0;
UPDATE usage_rollups SET list_cost_usd = cost_usd WHERE provider = 'bedrock';

-- Immutable price snapshots that usage rows refer to (list_price_id). The id is derived
-- from the snapshot's content (gateway/ledger.py), so every instance names a snapshot the
-- same way without asking the database; rows are only ever added, never changed. No
-- foreign key from usage_events: the writer adds a batch's snapshots in the batch's own
-- transaction, and a per-row key check would cost the COPY path what the reference saved.
CREATE TABLE price_snapshots (
    id         bigint PRIMARY KEY,
    snapshot   jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Prices are keyed by provider too: Bedrock's and the Anthropic API's list prices side by side.
ALTER TABLE prices ADD COLUMN provider text NOT NULL DEFAULT 'bedrock'
    CHECK (provider IN ('bedrock', 'anthropic'));
ALTER TABLE prices DROP CONSTRAINT prices_pkey;
ALTER TABLE prices ADD PRIMARY KEY (provider, model, region, effective_date);
