-- 5: bearer tokens for `meterline serve`. Only the SHA-256 of a token is stored.

    CREATE TABLE api_tokens (
        id           INTEGER PRIMARY KEY,
        name         TEXT NOT NULL UNIQUE,
        token_sha256 TEXT NOT NULL UNIQUE,           -- lowercase hex
        created_at   TEXT NOT NULL,                  -- RFC3339 UTC
        last_used_at TEXT,                           -- precise to about a minute
        revoked_at   TEXT                            -- set by `token revoke`; never reused
    );
