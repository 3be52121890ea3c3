-- 5: the Stripe change marks find the events whose Stripe state moved without joining the
-- transition tables. PL/pgSQL plans a trigger's statement once per connection and keeps the
-- plan, made for the transition tables of the statement that first fired it. A sync's first
-- UPDATE of usage_events usually changes no row (nothing to expire), so every later statement
-- of its connection joined OLD TABLE and NEW TABLE with a nested loop, in time n²: a sync
-- packing 10,000 events spent 15 s on the marks, 61,780 events 928 s, all under the writers'
-- lock.
-- Grouping both versions of each row instead has no plan worse than n log n: a row whose
-- Stripe state moved leaves two groups of one version each, an unchanged row one group of
-- two (GROUP BY compares NULLs as equal, as IS NOT DISTINCT FROM). The marks are the same.

CREATE OR REPLACE FUNCTION meterline_stripe_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH moved AS (
        SELECT DISTINCT customer_id
        FROM (SELECT id, customer_id, stripe_reported_at, stripe_failed_at, stripe_expired_at,
                     stripe_error
              FROM meterline_after
              UNION ALL
              SELECT id, customer_id, stripe_reported_at, stripe_failed_at, stripe_expired_at,
                     stripe_error
              FROM meterline_before) AS versions
        GROUP BY id, customer_id, stripe_reported_at, stripe_failed_at, stripe_expired_at,
                 stripe_error
        HAVING COUNT(*) = 1
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
