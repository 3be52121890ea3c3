-- 2: a period keeps every meter's terms (SQLite's migration 11). usage_records.meter_terms is
-- the JSON object of the plan's terms per meter id, written with the period's counter:
-- rewritten while the period runs, kept once it closes. Periods counted before get their
-- plan's terms at the first record after it (`period_terms_pending`; record.rs).

ALTER TABLE usage_records ADD COLUMN meter_terms TEXT;
INSERT INTO meterline_meta (key, value)
    SELECT 'period_terms_pending', '1' WHERE EXISTS (SELECT 1 FROM usage_records)
    ON CONFLICT (key) DO NOTHING;
