-- name: list-prices
SELECT provider, model, region, input, output, cache_write_5m, cache_write_1h, cache_read,
       effective_date
FROM prices
ORDER BY provider, model, region, effective_date;

-- name: upsert-price
INSERT INTO prices (model, region, input, output, cache_write_5m, cache_write_1h,
                    cache_read, effective_date, provider)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (provider, model, region, effective_date) DO UPDATE SET
    input = EXCLUDED.input, output = EXCLUDED.output,
    cache_write_5m = EXCLUDED.cache_write_5m, cache_write_1h = EXCLUDED.cache_write_1h,
    cache_read = EXCLUDED.cache_read, updated_at = now();
