-- Each migration applied or rolled back from here on, with when: `lollms-server db history`.
-- Additive: the code of revision 3 runs unchanged on this schema.
CREATE TABLE schema_history (
    revision INTEGER NOT NULL,
    action TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
