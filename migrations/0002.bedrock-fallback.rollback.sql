DROP TABLE prices;
DROP FUNCTION notify_price_change();
DROP TABLE circuit_states;
DROP FUNCTION notify_circuit_change();
ALTER TABLE access_keys DROP COLUMN bedrock_default_credentials;
ALTER TABLE access_keys DROP COLUMN bedrock_key_blob;
