-- 4: the Stripe change marks the dashboard reads (`stripe_changes`, the 'stripe' counter) are
-- made once per statement instead of once per row. Each row's trigger updated the one counter
-- row again, and PostgreSQL keeps every version of a row its transaction updates, so marking
-- n events in one transaction took time in n²: 10 s for 20,000 events, 32 s for 40,000.
-- (SQLite updates a row in place; its row trigger stays.) The marks are the same: every
-- customer whose events' Stripe state changed gets the counter's new value. A statement
-- trigger cannot name its columns (UPDATE OF) and see the rows, so the rows whose Stripe
-- state moved are found by comparing them.

DROP TRIGGER usage_events_stripe_changed ON usage_events;
DROP FUNCTION meterline_stripe_changed();

CREATE FUNCTION meterline_stripe_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH moved AS (
        SELECT DISTINCT a.customer_id
        FROM meterline_after a JOIN meterline_before b ON b.id = a.id
        WHERE (a.stripe_reported_at, a.stripe_failed_at, a.stripe_expired_at, a.stripe_error)
              IS DISTINCT FROM
              (b.stripe_reported_at, b.stripe_failed_at, b.stripe_expired_at, b.stripe_error)
    ), bumped AS (
        UPDATE change_counters SET value = value + 1
        WHERE name = 'stripe' AND EXISTS (SELECT 1 FROM moved)
        RETURNING value
    )
    INSERT INTO stripe_changes (customer_id, seq)
        SELECT moved.customer_id, bumped.value FROM moved CROSS JOIN bumped
        ON CONFLICT (customer_id) DO UPDATE SET seq = excluded.seq;
    RETURN NULL;
END $$;
CREATE TRIGGER usage_events_stripe_changed AFTER UPDATE ON usage_events
    REFERENCING OLD TABLE AS meterline_before NEW TABLE AS meterline_after
    FOR EACH STATEMENT EXECUTE FUNCTION meterline_stripe_changed();
