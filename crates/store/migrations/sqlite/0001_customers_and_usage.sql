-- 1: customers, usage events, per-period and per-member counters.

    CREATE TABLE customers (
        id                 TEXT PRIMARY KEY,
        name               TEXT NOT NULL,
        plan_id            TEXT NOT NULL,
        stripe_customer_id TEXT,
        billing_anchor     TEXT NOT NULL,            -- YYYY-MM-DD
        created_at         TEXT NOT NULL
    );
    CREATE TABLE usage_events (
        id                     INTEGER PRIMARY KEY,
        customer_id            TEXT NOT NULL REFERENCES customers(id),
        user_id                TEXT,                 -- member of an organisation account
        quantity               INTEGER NOT NULL CHECK (quantity > 0),
        occurred_at            TEXT NOT NULL,        -- RFC3339 UTC, whole seconds
        recorded_at            TEXT NOT NULL,
        period_start           TEXT NOT NULL,        -- joins usage_records
        idempotency_key        TEXT,                 -- unique when set (index below)
        stripe_reported_at     TEXT,                 -- NULL = not yet reported
        stripe_attempts        INTEGER NOT NULL DEFAULT 0,
        stripe_error           TEXT,                 -- last error Stripe gave, if any
        stripe_failed_at       TEXT,                 -- set when Stripe refused it for good
        stripe_expired_at      TEXT                  -- set when past Stripe's 35-day window
    );
    -- Partial: events recorded without a key cost no index write.
    CREATE UNIQUE INDEX usage_events_idempotency_key ON usage_events(idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    -- The unreported events are indexed by migrations 2 (the outbox, oldest first) and
    -- 3 (the backlog per customer); every index here costs a page write per record.
    CREATE INDEX usage_events_by_customer_time ON usage_events(customer_id, occurred_at);
    CREATE TABLE usage_records (
        customer_id      TEXT NOT NULL REFERENCES customers(id),
        period_start     TEXT NOT NULL,
        period_end       TEXT NOT NULL,
        used             INTEGER NOT NULL CHECK (typeof(used) = 'integer' AND used >= 0),
        plan_id          TEXT NOT NULL,
        meter_event_name TEXT NOT NULL,
        PRIMARY KEY (customer_id, period_start)
    ) WITHOUT ROWID;
    CREATE TABLE usage_members (
        customer_id  TEXT NOT NULL REFERENCES customers(id),
        period_start TEXT NOT NULL,
        user_id      TEXT NOT NULL,
        used         INTEGER NOT NULL CHECK (typeof(used) = 'integer'),
        PRIMARY KEY (customer_id, period_start, user_id)
    ) WITHOUT ROWID;
