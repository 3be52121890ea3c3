-- 6: archived customers. NULL = active; an archived customer keeps
-- its data and its unreported usage (still synced) but records nothing new.

    ALTER TABLE customers ADD COLUMN archived_at TEXT;   -- RFC3339 UTC; NULL = active
