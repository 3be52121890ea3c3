-- 20: a reservation's key becomes the key of the event its settle records, and event keys
-- are unique across customers; so a reserve looks its key up across customers too (a key
-- another customer's reservation or event holds is refused at the reserve, not at the
-- settle, once the work is done). The unique index per customer stays: keys two customers
-- reserved before this step still find their own reservation.

    CREATE INDEX reservations_by_key_alone ON reservations (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
