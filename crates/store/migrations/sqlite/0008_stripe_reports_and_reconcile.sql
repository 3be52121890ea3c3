-- 8: aggregated reporting, events in doubt, reconciliation. A report is one meter event
-- standing for the unreported events of one customer, meter and period; it is created,
-- identifier included, with its events pointing at it, before anything is sent.
-- A report's `first_sent_at` (an event's `stripe_first_sent_at` in per_event mode) is
-- when a request for it may first have gone out: past Stripe's 24-hour identifier window
-- an unanswered one is held in doubt (`in_doubt_at`, `stripe_in_doubt_at`).

    CREATE TABLE stripe_reports (
        id               INTEGER PRIMARY KEY,
        customer_id      TEXT NOT NULL REFERENCES customers(id),
        period_start     TEXT NOT NULL,
        meter_event_name TEXT NOT NULL,
        value            INTEGER NOT NULL CHECK (value > 0),
        events           INTEGER NOT NULL,
        occurred_at      TEXT NOT NULL,              -- the latest event's: the meter event's timestamp
        identifier       TEXT NOT NULL UNIQUE,
        created_at       TEXT NOT NULL,
        first_sent_at    TEXT,
        reported_at      TEXT,                       -- NULL = not yet reported
        attempts         INTEGER NOT NULL DEFAULT 0,
        error            TEXT,
        failed_at        TEXT,
        expired_at       TEXT,
        in_doubt_at      TEXT                        -- held: unanswered and past 23 hours
    );
    CREATE INDEX stripe_reports_open ON stripe_reports(occurred_at, id)
        WHERE reported_at IS NULL AND expired_at IS NULL;
    CREATE INDEX stripe_reports_by_customer ON stripe_reports(customer_id, period_start);
    ALTER TABLE usage_events ADD COLUMN stripe_report_id INTEGER REFERENCES stripe_reports(id);
    ALTER TABLE usage_events ADD COLUMN stripe_first_sent_at TEXT;  -- per_event mode
    ALTER TABLE usage_events ADD COLUMN stripe_in_doubt_at TEXT;    -- per_event mode
    CREATE INDEX usage_events_by_report ON usage_events(stripe_report_id)
        WHERE stripe_report_id IS NOT NULL;
    CREATE TABLE reconcile_runs (
        id           INTEGER PRIMARY KEY,
        started_at   TEXT NOT NULL,
        finished_at  TEXT NOT NULL,
        rows         INTEGER NOT NULL,
        drifted      INTEGER NOT NULL,
        pending      INTEGER NOT NULL,
        in_doubt     INTEGER NOT NULL
    );
    CREATE TABLE reconcile_rows (
        run_id           INTEGER NOT NULL REFERENCES reconcile_runs(id),
        customer_id      TEXT NOT NULL,
        meter_event_name TEXT NOT NULL,
        period_start     TEXT NOT NULL,
        period_end       TEXT NOT NULL,
        local            INTEGER NOT NULL,
        stripe           INTEGER NOT NULL,
        status           TEXT NOT NULL,              -- ok, drift, pending, in_doubt
        PRIMARY KEY (run_id, customer_id, meter_event_name)
    ) WITHOUT ROWID;
