-- pgbench script: the naive per-request message store, one INSERT per
-- transaction (autocommit, so one WAL flush each), a new 100-byte message
-- each time under its SHA-256 digest. bench/messages_pg.sh runs it against a
-- fresh database holding bench_messages (the columns of quintet's messages
-- table).
\set n random(1, 9000000000000000000)
INSERT INTO bench_messages (digest, body, created_at) VALUES (sha256(convert_to('benchmark message number ' || :n || ' ' || :client_id, 'UTF8')), convert_to(rpad('benchmark message number ' || :n || ' ' || :client_id, 100, '.'), 'UTF8'), now()) ON CONFLICT (digest) DO NOTHING;
