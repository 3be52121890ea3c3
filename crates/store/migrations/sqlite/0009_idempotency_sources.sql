-- 9: a namespace per idempotency key source (native, stripe, ce, lago), so that a key
-- sent to one route never takes the identity of another route's event. A key kept from
-- before that could have been made by a drop-in route is `legacy`: either side may have
-- sent it, so both still find it and a resend gets the answer it got before. Every other
-- old key can only have been a native one (the drop-in routes' keys always have those
-- prefixes).

    ALTER TABLE usage_events ADD COLUMN idempotency_source TEXT;
    UPDATE usage_events SET idempotency_source = CASE
            WHEN idempotency_key GLOB 'stripe:*' OR idempotency_key GLOB 'stripe-sha256:*'
              OR idempotency_key GLOB 'ce:*' OR idempotency_key GLOB 'ce-sha256:*'
              OR idempotency_key GLOB 'lago:*' OR idempotency_key GLOB 'lago-sha256:*'
            THEN 'legacy' ELSE 'native' END
        WHERE idempotency_key IS NOT NULL;
    DROP INDEX usage_events_idempotency_key;
    CREATE UNIQUE INDEX usage_events_idempotency_key
        ON usage_events(idempotency_key, idempotency_source) WHERE idempotency_key IS NOT NULL;
