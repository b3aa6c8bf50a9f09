-- calc's event log: one row per calculation, in append order (seq).
CREATE TABLE IF NOT EXISTS calc_events (
    seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL,
    request_id    text NOT NULL,
    method        text NOT NULL,
    input         jsonb NOT NULL,
    result        jsonb,
    error_kind    text,
    error_message text,
    CHECK ((result IS NULL) <> (error_kind IS NULL))
);
CREATE INDEX IF NOT EXISTS calc_events_at ON calc_events (at);
