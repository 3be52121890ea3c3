-- 4: a random Stripe identifier per event, and each period's plan terms.
-- Identifiers were `ml-<database id>-<event id>`; a restored backup reuses event ids, so
-- Stripe took new usage for old. New events get `ml-<UUIDv7>`; existing rows keep the value
-- they were (or will be) sent with, so nothing already delivered changes.
-- The terms (included, at_limit, overage_rate, price; plan_id and meter_event_name were
-- there) are the plan's as the period was billed: a closed period reads them, the current
-- one follows plans.toml. Rows from before this migration have no terms (at_limit NULL):
-- the first record after the upgrade fills them from plans.toml as it is then, under each
-- row's own plan (`period_terms_pending` marks that work; record.rs), and from then on
-- editing plans.toml no longer changes them. Rows of plans no longer defined stay NULL.

    ALTER TABLE usage_events ADD COLUMN stripe_identifier TEXT;
    UPDATE usage_events SET stripe_identifier =
        'ml-' || (SELECT value FROM meterline_meta WHERE key = 'database_id') || '-' || id;
    CREATE UNIQUE INDEX usage_events_stripe_identifier ON usage_events(stripe_identifier);
    ALTER TABLE usage_records ADD COLUMN included INTEGER;      -- NULL: unlimited
    ALTER TABLE usage_records ADD COLUMN at_limit TEXT;         -- 'block' or 'overage'; NULL: no terms yet
    ALTER TABLE usage_records ADD COLUMN overage_rate TEXT;     -- decimal text
    ALTER TABLE usage_records ADD COLUMN price TEXT;            -- decimal text
    INSERT INTO meterline_meta (key, value)
        SELECT 'period_terms_pending', '1' WHERE EXISTS (SELECT 1 FROM usage_records);
