-- 19: rolling-window limits. window_buckets keeps each limited meter's usage over time, in
-- buckets of a minute, an hour and a day (span, in seconds; start, Unix seconds, a multiple
-- of span): every event adds its units to one bucket of each size, and a minute's bucket
-- keeps its seconds too (seconds: "s:units,…", s from 0 to 59, read only for the minutes a
-- stretch cuts at its ends), so any stretch of time adds up from a bounded number of rows
-- however many events it holds. A window alert
-- is a row of `alerts` whose window_limit names the limit ("5h sliding"; '' for the period's
-- alerts) and whose period_start is where the crossing happened (the fixed window's start, or
-- the instant a sliding window crossed), so each window or crossing alerts once.

    CREATE TABLE window_buckets (
        customer_id TEXT NOT NULL REFERENCES customers(id),
        meter_id    TEXT NOT NULL,
        span        INTEGER NOT NULL CHECK (span IN (60, 3600, 86400)),
        start       INTEGER NOT NULL,
        units       INTEGER NOT NULL CHECK (typeof(units) = 'integer'),
        seconds     TEXT,                          -- a minute's: its units at each second
        PRIMARY KEY (customer_id, meter_id, span, start)
    ) WITHOUT ROWID;
    ALTER TABLE alerts ADD COLUMN window_limit TEXT NOT NULL DEFAULT '';
    DROP INDEX alerts_once;
    CREATE UNIQUE INDEX alerts_once ON alerts(customer_id, period_start, meter_id, level, window_limit);
