-- 11: a period keeps every meter's terms. usage_records.meter_terms is the JSON object of the
-- plan's terms per meter id ({"tokens": {"included": 1000000, "at_limit": "overage",
-- "overage_rate": "0.00002"}, …}), written with the period's counter as included, at_limit and
-- overage_rate are for the usage meter: rewritten while the period runs, kept once it closes.
-- Periods counted before this migration get their plan's terms at the first record after it
-- (`period_terms_pending`, as migration 4 did for the usage meter; record.rs).

    ALTER TABLE usage_records ADD COLUMN meter_terms TEXT;
    INSERT INTO meterline_meta (key, value)
        SELECT 'period_terms_pending', '1' WHERE EXISTS (SELECT 1 FROM usage_records)
        ON CONFLICT (key) DO NOTHING;
