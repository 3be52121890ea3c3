-- 15: credits. A grant gives a customer money (amount, an exact decimal as text) or units of
-- one meter (meter_id; amount a whole number), burnt in a fixed order (priority, expiry,
-- promotional, effective_at, id). The ledger is append-only: the grant itself, a void, and
-- later burns, expiries and rollovers are each an entry with a signed amount and the grant's
-- remainder after it (remaining), so a grant's remainder is its last entry and is always the
-- sum of its entries (doctor and backup check it). Nothing is updated in place.

    CREATE TABLE credit_grants (
        id              INTEGER PRIMARY KEY,
        customer_id     TEXT NOT NULL REFERENCES customers(id),
        meter_id        TEXT,                   -- NULL: money in the plans' currency
        amount          TEXT NOT NULL,          -- exact decimal (whole units with a meter)
        priority        INTEGER NOT NULL DEFAULT 100 CHECK (priority BETWEEN 0 AND 255),
        effective_at    TEXT NOT NULL,          -- RFC3339 UTC
        expires_at      TEXT,                   -- NULL: never
        promotional     INTEGER NOT NULL DEFAULT 0,
        note            TEXT,
        idempotency_key TEXT,                   -- unique per customer when set
        created_at      TEXT NOT NULL
    );
    CREATE UNIQUE INDEX credit_grants_by_key ON credit_grants (customer_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX credit_grants_by_customer ON credit_grants (customer_id, id);
    CREATE TABLE credit_ledger (
        id          INTEGER PRIMARY KEY,
        customer_id TEXT NOT NULL REFERENCES customers(id),
        grant_id    INTEGER NOT NULL REFERENCES credit_grants(id),
        kind        TEXT NOT NULL CHECK (kind IN ('grant', 'void', 'burn', 'expiry', 'rollover')),
        amount      TEXT NOT NULL,              -- signed exact decimal
        remaining   TEXT NOT NULL,              -- the grant's remainder after this entry
        written_at  TEXT NOT NULL,              -- when it was written
        event_id    INTEGER                     -- a burn's event
    );
    CREATE INDEX credit_ledger_by_customer ON credit_ledger (customer_id, written_at, id);
    CREATE INDEX credit_ledger_by_grant ON credit_ledger (grant_id, id);
