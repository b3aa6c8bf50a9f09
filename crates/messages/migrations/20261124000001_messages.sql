-- quintet messages: content-addressed text, in insertion order.
CREATE TABLE IF NOT EXISTS messages (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest     bytea       NOT NULL UNIQUE CHECK (octet_length(digest) = 32),
    body       bytea       NOT NULL,
    created_at timestamptz NOT NULL
);
