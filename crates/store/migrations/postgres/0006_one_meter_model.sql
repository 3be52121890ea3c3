-- 6: one meter model (SQLite's migration 12). Every meter keeps its totals in
-- meter_counters, the implicit meter of a plans.toml without [[meters]] too: its totals move
-- there from usage_records.used, which stays as the database contract's copy of the implicit
-- meter's total (usage_members too). Each counter row now names the aggregation it counts
-- by, so a meter whose aggregation changes in plans.toml mid-period is never counted two ways
-- in one row (NULL: counted before this migration, taken as what plans.toml says at the next
-- write). A period's kept terms of the implicit meter are the ones its columns kept.

ALTER TABLE meter_counters ADD COLUMN aggregation TEXT COLLATE "C";
INSERT INTO meter_counters (customer_id, period_start, meter_id, group_key, used, aggregation)
    SELECT customer_id, period_start, 'usage', '', used, 'sum' FROM usage_records
    WHERE used > 0
    ON CONFLICT (customer_id, period_start, meter_id, group_key) DO NOTHING;
UPDATE usage_records
    SET meter_terms = jsonb_set(meter_terms::jsonb, '{usage}', jsonb_build_object(
            'included', included, 'at_limit', at_limit, 'overage_rate', overage_rate))::text
    WHERE at_limit IS NOT NULL AND (meter_terms::jsonb -> 'usage') IS NOT NULL;
