-- 3: change marks for live views, and a covering index for the Stripe backlog counts.
-- The dashboard polls these instead of rescanning 100k customers or millions of events.

    CREATE TABLE change_counters (
        name  TEXT PRIMARY KEY,                      -- 'customers' or 'stripe'
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO change_counters (name, value) VALUES ('customers', 0), ('stripe', 0);
    CREATE TRIGGER customers_inserted AFTER INSERT ON customers BEGIN
        UPDATE change_counters SET value = value + 1 WHERE name = 'customers';
    END;
    CREATE TRIGGER customers_updated AFTER UPDATE ON customers BEGIN
        UPDATE change_counters SET value = value + 1 WHERE name = 'customers';
    END;
    CREATE TRIGGER customers_deleted AFTER DELETE ON customers BEGIN
        UPDATE change_counters SET value = value + 1 WHERE name = 'customers';
    END;
    -- Recording only inserts events (new ids are seen cheaply); syncing updates them. Each
    -- customer's last Stripe change is kept, so a refresh recounts only those customers.
    CREATE TABLE stripe_changes (
        customer_id TEXT PRIMARY KEY,
        seq         INTEGER NOT NULL                 -- the 'stripe' counter at the change
    ) WITHOUT ROWID;
    CREATE INDEX stripe_changes_by_seq ON stripe_changes(seq);
    CREATE TRIGGER usage_events_stripe_changed
        AFTER UPDATE OF stripe_reported_at, stripe_failed_at, stripe_expired_at, stripe_error
        ON usage_events BEGIN
        UPDATE change_counters SET value = value + 1 WHERE name = 'stripe';
        INSERT INTO stripe_changes (customer_id, seq)
            VALUES (NEW.customer_id, (SELECT value FROM change_counters WHERE name = 'stripe'))
            ON CONFLICT (customer_id) DO UPDATE SET seq = excluded.seq;
    END;
    CREATE INDEX usage_events_backlog
        ON usage_events(customer_id, stripe_failed_at, stripe_expired_at)
        WHERE stripe_reported_at IS NULL;
