-- quintet receipts: every transaction validated so far and the job that
-- claimed it first (a transaction is reported OK once, by that job).
CREATE TABLE IF NOT EXISTS receipt_transactions (
    transaction_id text        PRIMARY KEY,
    job_id         text        NOT NULL,
    user_id        bigint      NOT NULL,
    claimed_at     timestamptz NOT NULL DEFAULT now()
);
