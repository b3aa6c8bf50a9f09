-- quintet counters: plain, human-readable totals, and which flush of each
-- instance they include (so a flush replayed after a crash applies once).
CREATE TABLE IF NOT EXISTS counters (
    key        text COLLATE "C" PRIMARY KEY,
    value      bigint      NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS counter_flushes (
    instance_id text PRIMARY KEY,
    flushed_seq bigint      NOT NULL,
    updated_at  timestamptz NOT NULL
);
