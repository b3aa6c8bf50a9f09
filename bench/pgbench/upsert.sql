-- pgbench script: the naive per-request counter, one UPSERT per transaction
-- (autocommit), key picked at random in 0..:keys-1 (pgbench -D keys=<n>).
-- bench/counters.sh runs it with search_path set to a fresh schema holding
-- bench_counters (same columns as quintet's counters table).
\set k random(0, :keys - 1)
INSERT INTO bench_counters (key, value, updated_at) VALUES ('k' || :k, 1, now()) ON CONFLICT (key) DO UPDATE SET value = bench_counters.value + 1, updated_at = now();
