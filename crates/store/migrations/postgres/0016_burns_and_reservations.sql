-- 16: credits burnt by the record path, and reservations. Each counter row (a meter's total
-- and each group) keeps the units past included that credits paid for (credited_units) and
-- the money they took from money grants (credited_amount, an exact decimal as text); its
-- overage_units and overage_amount are from now on what neither included nor credits covered.
-- A reservation holds units of its meters, and the credits they would burn, until it is
-- settled, released or past expires_at; a hold past its expiry counts for nothing, with no
-- job to end it.

    ALTER TABLE meter_counters ADD COLUMN credited_units BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE meter_counters ADD COLUMN credited_amount TEXT COLLATE "C" NOT NULL DEFAULT '0';
    CREATE TABLE reservations (
        id              TEXT COLLATE "C" PRIMARY KEY,           -- rsv_<uuid>
        customer_id     TEXT COLLATE "C" NOT NULL REFERENCES customers(id),
        idempotency_key TEXT COLLATE "C",                       -- unique per customer when set
        event_type      TEXT COLLATE "C",                       -- what was reserved: a type,
        meter_id        TEXT COLLATE "C",                       -- or one meter
        properties      TEXT COLLATE "C",                       -- the estimate's properties (JSON)
        period_start    TEXT COLLATE "C" NOT NULL,              -- the period its units are held in
        created_at      TEXT COLLATE "C" NOT NULL,
        expires_at      TEXT COLLATE "C" NOT NULL,
        ended_at        TEXT COLLATE "C",                       -- NULL: held until expires_at
        ended_as        TEXT COLLATE "C" CHECK (ended_as IN ('settled', 'released')),
        event_id         BIGINT                     -- a settled reservation's event
    );
    CREATE UNIQUE INDEX reservations_by_key ON reservations (customer_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX reservations_held ON reservations (customer_id, expires_at)
        WHERE ended_at IS NULL;
    CREATE TABLE reservation_holds (
        reservation_id TEXT COLLATE "C" NOT NULL REFERENCES reservations(id),
        meter_id       TEXT COLLATE "C" NOT NULL,
        units          BIGINT NOT NULL,            -- units held on the meter's total
        credit_units   BIGINT NOT NULL DEFAULT 0,  -- meter-unit credits held for them
        credit_amount  TEXT COLLATE "C" NOT NULL DEFAULT '0',   -- money credits held for them
        PRIMARY KEY (reservation_id, meter_id)
    );
