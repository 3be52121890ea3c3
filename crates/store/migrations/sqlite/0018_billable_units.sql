-- 18: each usage event's billable units: of what it added to its meter, the units neither
-- the allowance nor credits covered, fixed when it was recorded. `[stripe] report_units =
-- "billable"` reports these instead of every unit. NULL: a meter whose units are not split so
-- (max, latest), and every event from before.

    ALTER TABLE usage_events ADD COLUMN billable INTEGER;
