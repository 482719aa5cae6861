-- The schema of release 0.1 (schema_version 3): API keys and the audit log. Older databases
-- (versions 1-2) already have these tables; they only lose the index on audit.at.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL,
    allowed_bindings TEXT,
    allowed_models TEXT,
    rpm INTEGER,
    tpm INTEGER,
    max_concurrent INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    event TEXT NOT NULL,
    key_id TEXT,
    client TEXT,
    method TEXT,
    path TEXT,
    status INTEGER,
    request_id TEXT,
    instance TEXT,
    model TEXT,
    generation_type TEXT,
    duration_ms REAL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    detail TEXT
);
DROP INDEX IF EXISTS audit_at;
INSERT OR IGNORE INTO meta(key, value) VALUES ('created_at', CAST(unixepoch() AS TEXT));
