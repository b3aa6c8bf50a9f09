-- quintet kv: one row per key. Values are sealed (AES-256-GCM under a data
-- key); `key_id` and `wrapped_key` say how to unwrap that data key.
CREATE TABLE IF NOT EXISTS kv_items (
    key         text COLLATE "C" PRIMARY KEY,
    key_id      text        NOT NULL,
    wrapped_key bytea       NOT NULL,
    nonce       bytea       NOT NULL,
    ciphertext  bytea       NOT NULL,
    size        bigint      NOT NULL,
    updated_at  timestamptz NOT NULL
);
