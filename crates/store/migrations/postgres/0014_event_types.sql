-- 14: event types and prices per dimension. An event of a type feeds every meter of that
-- type: one row per meter it fed, all with the type; the first row carries the idempotency
-- key and the others point at it (event_of). Each counter row (a meter's total and each of
-- its groups) keeps the units past included that its events used and what they cost at each
-- event's rate (overage_units, overage_amount: an exact decimal as text), allocated as each
-- event was recorded, so that a late event never reprices earlier ones.

    ALTER TABLE usage_events ADD COLUMN event_type TEXT COLLATE "C";
    ALTER TABLE usage_events ADD COLUMN event_of BIGINT;
    ALTER TABLE meter_counters ADD COLUMN overage_units BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE meter_counters ADD COLUMN overage_amount TEXT COLLATE "C" NOT NULL DEFAULT '0';
