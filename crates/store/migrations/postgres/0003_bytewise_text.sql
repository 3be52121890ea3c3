-- 3: every text column compares byte by byte (collation "C"), as SQLite compares text. A
-- database created with a language's collation (a managed server's default is often
-- en_US.UTF-8) would otherwise list customers, tokens, members and exports in another order
-- than SQLite, and compare every key more slowly. PostgreSQL only: SQLite's text is bytewise.
-- A collation change rewrites no table; the indexes on these columns are rebuilt. The trigger
-- naming four of usage_events' columns is taken off while they change, then put back as 1 made it.

DROP TRIGGER usage_events_stripe_changed ON usage_events;
DO $$
DECLARE
    col record;
BEGIN
    FOR col IN
        SELECT c.table_name, c.column_name
        FROM information_schema.columns c
        JOIN information_schema.tables t
          ON t.table_schema = c.table_schema AND t.table_name = c.table_name
        WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
          AND c.data_type = 'text' AND c.collation_name IS DISTINCT FROM 'C'
        ORDER BY c.table_name, c.ordinal_position
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE TEXT COLLATE "C"',
                       col.table_name, col.column_name);
    END LOOP;
END
$$;
CREATE TRIGGER usage_events_stripe_changed
    AFTER UPDATE OF stripe_reported_at, stripe_failed_at, stripe_expired_at, stripe_error
    ON usage_events FOR EACH ROW EXECUTE FUNCTION meterline_stripe_changed();
