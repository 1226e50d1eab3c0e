-- Bedrock fallback (SPEC §3, §4): per-key Bedrock credentials, the shared circuit
-- breaker state, and the versioned Bedrock price table (SPEC §5).
-- depends: 0001.initial

-- Envelope-encrypted Bedrock API key (version byte, wrapped data key, nonce, AES-GCM
-- ciphertext; see gateway/envelope.py). Never readable without the KMS/master key.
ALTER TABLE access_keys ADD COLUMN bedrock_key_blob bytea;
-- The operator may let a key fall back on the deployment's own AWS credentials (SigV4).
ALTER TABLE access_keys ADD COLUMN bedrock_default_credentials boolean NOT NULL DEFAULT false;

-- One row per access key whose plan has failed. Absent row = closed circuit.
-- Every instance keeps a copy in memory and reloads a row when it is NOTIFYed, so all
-- tasks route a key the same way (SPEC §3). `version` grows with every change, so an
-- instance can tell a late answer to an older reload from the current state.
CREATE TABLE circuit_states (
    access_key_id     bigint PRIMARY KEY REFERENCES access_keys (id) ON DELETE CASCADE,
    state             text NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    failures          integer NOT NULL DEFAULT 0,
    window_started_at timestamptz,
    opened_at         timestamptz,
    probe_started_at  timestamptz,
    last_error_class  text,
    version           bigint NOT NULL DEFAULT 1,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION notify_circuit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ccproxy_circuits', COALESCE(NEW.access_key_id, OLD.access_key_id)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER circuit_states_notify AFTER INSERT OR UPDATE OR DELETE ON circuit_states
    FOR EACH ROW EXECUTE FUNCTION notify_circuit_change();

-- Bedrock prices, USD per million tokens. A row applies from effective_date until a newer
-- row for the same model and region; region '*' applies where no exact region row does.
-- Usage rows copy the price they were charged at, so editing this never rewrites history.
CREATE TABLE prices (
    model          text NOT NULL,
    region         text NOT NULL DEFAULT '*',
    input          numeric(12, 6) NOT NULL CHECK (input >= 0),
    output         numeric(12, 6) NOT NULL CHECK (output >= 0),
    cache_write_5m numeric(12, 6) NOT NULL CHECK (cache_write_5m >= 0),
    cache_write_1h numeric(12, 6) NOT NULL CHECK (cache_write_1h >= 0),
    cache_read     numeric(12, 6) NOT NULL CHECK (cache_read >= 0),
    effective_date date NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, region, effective_date)
);

CREATE FUNCTION notify_price_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ccproxy_prices', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER prices_notify AFTER INSERT OR UPDATE OR DELETE ON prices
    FOR EACH STATEMENT EXECUTE FUNCTION notify_price_change();
