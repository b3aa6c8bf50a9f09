-- A job's user_id is an integer or a string ("user-8"): an integer one stays
-- in user_id, a string one goes to user_id_text, never both. Only catalog
-- changes (no rewrite, no scan: the check is NOT VALID, and every existing
-- row passes it), so a large ledger migrates at once, and workers of the
-- previous version, which write user_id alone, keep working beside new ones.
ALTER TABLE receipt_transactions ALTER COLUMN user_id DROP NOT NULL;
ALTER TABLE receipt_transactions ADD COLUMN user_id_text text;
ALTER TABLE receipt_transactions
    ADD CONSTRAINT receipt_transactions_one_user_id
    CHECK ((user_id IS NULL) <> (user_id_text IS NULL)) NOT VALID;
