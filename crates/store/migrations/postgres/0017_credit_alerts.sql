-- 17: credit alerts. An `[[alerts]]` entry with credits_below gets `credits.low` when a
-- customer's available money credits fall below it, and `credits.exhausted` when they run
-- out: rows of `alerts` like the level crossings, with their deliveries in the same outbox.
-- A credit alert's level is its type, its meter_id NULL (it is about no meter, and NULLs never
-- collide in alerts_once), `threshold` and `available` the decimals it crossed and was left
-- with. credit_alerts_sent holds one row per customer x alert x threshold sent and not yet
-- re-armed: a grant that brings the available credits back to the threshold deletes it.

    ALTER TABLE alerts DROP CONSTRAINT alerts_level_check;
    ALTER TABLE alerts ADD CONSTRAINT alerts_level_check
        CHECK (level IN ('warning', 'critical', 'hard_cap', 'credits.low', 'credits.exhausted'));
    ALTER TABLE alerts ALTER COLUMN meter_id DROP NOT NULL;
    ALTER TABLE alerts ADD COLUMN threshold TEXT COLLATE "C";
    ALTER TABLE alerts ADD COLUMN available TEXT COLLATE "C";
    CREATE TABLE credit_alerts_sent (
        customer_id TEXT COLLATE "C" NOT NULL REFERENCES customers(id),
        level       TEXT COLLATE "C" NOT NULL,       -- 'credits.low' or 'credits.exhausted'
        threshold   TEXT COLLATE "C" NOT NULL,       -- as in alerts.threshold
        alert_id    TEXT COLLATE "C" NOT NULL REFERENCES alerts(id),
        PRIMARY KEY (customer_id, level, threshold)
    );
