#!/usr/bin/env bash
# Messages POST on the PostgreSQL store, against the naive per-request path
# on the same PostgreSQL in the same run: pgbench with one INSERT … ON
# CONFLICT DO NOTHING per transaction (bench/pgbench/insert_message.sql),
# each a new message, at the same concurrency. quintet inserts the POSTs
# that wait together with one multi-row statement (its group commit); both
# answer only after PostgreSQL has committed (synchronous_commit as the
# server has it).
#
#   bash bench/messages_pg.sh
#
# Environment (all optional):
#   DURATION=10s      length of one measured run (wrk -d, pgbench -T)
#   REPEATS=3         measured runs per system (interleaved); the table shows the median
#   CONNECTIONS=50    wrk connections, pgbench clients
#   THREADS=2         wrk threads, pgbench -j
#   PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres   where PostgreSQL runs (trust auth)
#   KEEP_TMP=1        keep the temporary directory
#
# Writes bench/results/messages-pg.md and copies it into BENCHMARKS.md
# (section "## messages on PostgreSQL"); each run gets a fresh database,
# dropped afterwards.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION="${DURATION:-10s}"
REPEATS="${REPEATS:-3}"
CONNECTIONS="${CONNECTIONS:-50}"
THREADS="${THREADS:-2}"
PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-5432}"
PG_USER="${PG_USER:-postgres}"
POST_LUA="bench/wrk/post.lua"
INSERT_SQL="$ROOT/bench/pgbench/insert_message.sql"

for n in REPEATS CONNECTIONS THREADS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer, not '${!n}'"
done
DURATION_S="$(to_seconds "$DURATION")" || die "DURATION must look like 10s, 2m or 20, not '$DURATION'"
((DURATION_S > 0)) || die "DURATION must be longer than 0s"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
command -v psql >/dev/null || need+=(postgresql-client)
apt_install "${need[@]}"
PSQL=(psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER")
pg() { "${PSQL[@]}" "$@"; }
pg -d postgres -c 'SELECT 1' >/dev/null || die "PostgreSQL at $PG_HOST:$PG_PORT (user $PG_USER) is not reachable"
if ! pgbench --version >/dev/null 2>&1; then
    apt_install "postgresql-$(pg -d postgres -c 'SHOW server_version_num' | awk '{ print int($1 / 10000) }')"
fi

BUILD=(cargo build --release --locked -p quintet)
log "building: $(shell_join "${BUILD[@]}")"
"${BUILD[@]}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
GIT_REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n $(git status --porcelain --untracked-files=no -- . ':!bench' ':!BENCHMARKS.md' 2>/dev/null) ]]; then GIT_REV+=" (with uncommitted changes)"; fi

RESULTS_DIR="$ROOT/bench/results"
RAW_DIR="$RESULTS_DIR/messages-pg-raw"
RESULT_MD="$RESULTS_DIR/messages-pg.md"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/quintet-bench-messages-pg.XXXXXX")"
rm -rf "$RAW_DIR"
mkdir -p "$RAW_DIR"
QUINTET="$WORK/quintet"
cp "$TARGET_DIR/release/quintet" "$QUINTET"
SERVER_PID=""
DATABASES=()
cleanup() {
    local rc=$?
    [[ -z $SERVER_PID ]] || stop_pid "$SERVER_PID"
    local db
    for db in "${DATABASES[@]}"; do pg -d postgres -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true; done
    if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fresh_database() { # name
    pg -d postgres -c "DROP DATABASE IF EXISTS \"$1\"" -c "CREATE DATABASE \"$1\""
    DATABASES+=("$1")
}

# The PostgreSQL server's CPU: every live PostgreSQL process's own, plus
# what the postmaster has reaped from backends that exited (its cutime and
# cstime), so a client's connections that close before the second reading
# (pgbench's) are counted too.
pg_ticks() {
    local total=0 pid stat a
    for pid in $(pgrep -f '^postgres|^/usr/lib/postgresql' || true); do
        read -r stat 2>/dev/null <"/proc/$pid/stat" || continue
        stat="${stat##*) }"
        read -r -a a <<<"$stat"
        total=$((total + a[11] + a[12]))
        [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == /usr/lib/postgresql/* ]] && total=$((total + a[13] + a[14]))
    done
    echo "$total"
}

RUNS="$RAW_DIR/runs.tsv" # system repeat rps p50_us p99_us requests errors server_us pg_us group
: >"$RUNS"

run_quintet() { # repeat
    local rep=$1 db="quintet_bench_messages_${rep}_$$"
    fresh_database "$db"
    pick_port
    local url="http://127.0.0.1:$PORT" logf="$RAW_DIR/quintet-$rep.log"
    QUINTET_CMD="quintet serve --services messages --store postgres://$PG_USER@$PG_HOST:$PG_PORT/<fresh database> --rate-limit 0"
    QUINTET_LOG=warn "$QUINTET" serve --services messages --addr "127.0.0.1:$PORT" --data-dir "$WORK/data-$rep" \
        --store "postgres://$PG_USER@$PG_HOST:$PG_PORT/$db" --rate-limit 0 >"$logf" 2>&1 &
    SERVER_PID=$!
    wait_ready "$url/readyz" "$SERVER_PID" quintet "$logf"
    # Warm-up: connections open, plans cached.
    wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -s "$POST_LUA" "$url" -- "warm${rep}x$RANDOM" >/dev/null 2>&1 || true
    curl -fsS "$url/metrics" >"$WORK/before-$rep.txt"
    local cmd=(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION_S}s" --timeout 10s --latency -s "$POST_LUA" "$url" -- "r${rep}x$RANDOM")
    WRK_CMD="$(shell_join "${cmd[@]}")"
    local out="$RAW_DIR/quintet-$rep.txt" c0 c1 p0 p1
    c0="$(proc_ticks "$SERVER_PID")" p0="$(pg_ticks)"
    "${cmd[@]}" >"$out" 2>&1 || die "wrk failed: ${cmd[*]}"
    c1="$(proc_ticks "$SERVER_PID")" p1="$(pg_ticks)"
    curl -fsS "$url/metrics" >"$WORK/after-$rep.txt"
    stop_pid "$SERVER_PID"
    SERVER_PID=""
    local line
    line="$(grep '^BENCH ' "$out")" || die "no BENCH line in $out"
    local -A r=()
    local kv
    for kv in ${line#BENCH }; do r[${kv%%=*}]=${kv#*=}; done
    # Mean group size over the run: the batch-size histogram's sum / count.
    local group
    group="$(awk -v s0="$(metric "$WORK/before-$rep.txt" quintet_store_commit_batch_size_sum 'store="messages"')" \
        -v n0="$(metric "$WORK/before-$rep.txt" quintet_store_commit_batch_size_count 'store="messages"')" \
        -v s1="$(metric "$WORK/after-$rep.txt" quintet_store_commit_batch_size_sum 'store="messages"')" \
        -v n1="$(metric "$WORK/after-$rep.txt" quintet_store_commit_batch_size_count 'store="messages"')" \
        'BEGIN { printf "%.1f", (n1 > n0 ? (s1 - s0) / (n1 - n0) : 0) }')"
    local errors=$((r[connect_errors] + r[read_errors] + r[write_errors] + r[timeouts] + r[non2xx]))
    printf 'quintet\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "${r[rps]}" "${r[p50_us]}" "${r[p99_us]}" "${r[requests]}" \
        "$errors" "$(per_request_us $((c1 - c0)) "${r[requests]}")" "$(per_request_us $((p1 - p0)) "${r[requests]}")" "$group" >>"$RUNS"
    log "quintet #$rep: ${r[rps]} POST/s, p99 ${r[p99_us]} µs, errors $errors, mean group $group"
}

run_pgbench() { # repeat
    local rep=$1 db="quintet_bench_pgbench_${rep}_$$"
    fresh_database "$db"
    pg -d "$db" -c "CREATE TABLE bench_messages (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, digest bytea NOT NULL UNIQUE CHECK (octet_length(digest) = 32), body bytea NOT NULL, created_at timestamptz NOT NULL)"
    local base=(pgbench -n -c "$CONNECTIONS" -j "$THREADS" -f "$INSERT_SQL" -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER")
    "${base[@]}" -T 2 "$db" >/dev/null 2>&1 || die "pgbench warm-up failed"
    local cmd=("${base[@]}" -T "$DURATION_S" --log --log-prefix="$WORK/pgbench-$rep" "$db")
    PGBENCH_CMD="$(shell_join "${base[@]}" -T "$DURATION_S" "<fresh database>")"
    PGBENCH_CMD="${PGBENCH_CMD//$ROOT\//}"
    local out="$RAW_DIR/pgbench-$rep.txt" p0 p1
    p0="$(pg_ticks)"
    (cd "$WORK" && "${cmd[@]}") >"$out" 2>&1 || {
        cat "$out" >&2
        die "pgbench failed"
    }
    p1="$(pg_ticks)"
    local tps processed failed p50 p99
    tps="$(awk '/^tps = / { print $3 }' "$out")"
    processed="$(awk -F': ' '/^number of transactions actually processed/ { split($2, a, "/"); print a[1] }' "$out")"
    failed="$(awk -F': ' '/^number of failed transactions/ { split($2, a, " "); print a[1] }' "$out")"
    read -r p50 p99 < <(cat "$WORK/pgbench-$rep".* | awk '{ print $3 }' | sort -n | awk '{ a[NR] = $1 } END {
        printf "%d %d\n", a[int(NR * 0.50 + 0.5)], a[int(NR * 0.99 + 0.5)] }')
    rm -f "$WORK/pgbench-$rep".*
    printf 'pgbench\t%s\t%.0f\t%s\t%s\t%s\t%s\t-\t%s\t1\n' "$rep" "$tps" "$p50" "$p99" "$processed" "${failed:-0}" \
        "$(per_request_us $((p1 - p0)) "$processed")" >>"$RUNS"
    log "pgbench #$rep: $tps inserts/s, p99 $p99 µs"
}

for rep in $(seq 1 "$REPEATS"); do
    run_quintet "$rep"
    run_pgbench "$rep"
done

PG_VERSION="$(pg -d postgres -c 'SHOW server_version')"
PG_SETTINGS="$(pg -d postgres -c "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings WHERE name IN ('synchronous_commit', 'fsync', 'wal_sync_method', 'commit_delay')")"
{
    echo "## messages on PostgreSQL"
    echo
    echo "Written by \`bash bench/messages_pg.sh\` on $(date -u +%Y-%m-%d) (git $GIT_REV; $(nproc) cores; PostgreSQL $PG_VERSION on the same machine, $PG_SETTINGS)."
    echo "quintet: \`$QUINTET_CMD\` driven by \`$WRK_CMD\` (bench/wrk/post.lua: a new message each request, answered 201 once committed); anchor: \`$PGBENCH_CMD\` (bench/pgbench/insert_message.sql: one INSERT … ON CONFLICT DO NOTHING per transaction, a new 100-byte message each). $REPEATS runs each, interleaved, each on a fresh database after a 2 s warm-up; medians."
    echo
    python3 - "$RUNS" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    system, rep, rps, p50, p99, requests, errors, server_us, pg_us, group = line.rstrip("\n").split("\t")
    rows.setdefault(system, []).append(dict(rps=float(rps), p50=float(p50), p99=float(p99), errors=int(errors),
        server_us=None if server_us == "-" else float(server_us), pg_us=None if pg_us == "-" else float(pg_us), group=float(group)))
def med(system, key):
    v = [r[key] for r in rows.get(system, []) if r[key] is not None]
    return statistics.median(v) if v else None
def fmt(v, f):
    return "-" if v is None else format(v, f)
print("| system | new messages/s | p50 | p99 | errors | quintet CPU per message | PostgreSQL CPU per message | messages per commit |")
print("|---|--:|--:|--:|--:|--:|--:|--:|")
names = {"quintet": "quintet POST /messages, PostgreSQL store (a group per statement)", "pgbench": "pgbench, one INSERT per transaction (anchor)"}
for system in ("quintet", "pgbench"):
    if system not in rows:
        continue
    print(f"| {names[system]} | {fmt(med(system, 'rps'), ',.0f')} | {fmt(med(system, 'p50') / 1000, '.2f')} ms | {fmt(med(system, 'p99') / 1000, '.2f')} ms "
          f"| {sum(r['errors'] for r in rows[system])} | {fmt(med(system, 'server_us'), ',.1f')} µs | {fmt(med(system, 'pg_us'), ',.1f')} µs | {fmt(med(system, 'group'), '.1f')} |")
if "quintet" in rows and "pgbench" in rows:
    print()
    print(f"Ratio, quintet over pgbench: {med('quintet', 'rps') / med('pgbench', 'rps'):.2f}×, though quintet's figure also carries HTTP, JSON and SHA-256 on the same two cores.")
print()
print("- PostgreSQL CPU per message: the user + system CPU of every PostgreSQL process over the run (`/proc/<pid>/stat`) divided by the messages stored in it.")
print("- Messages per commit: the mean of `quintet_store_commit_batch_size{store=\"messages\"}` over the run (its sum over its count, from /metrics before and after).")
EOF
    echo
    echo "<details><summary>Every run</summary>"
    echo
    echo '```'
    echo "system repeat rps p50_us p99_us requests errors quintet_us_per_message pg_us_per_message messages_per_commit"
    cat "$RUNS"
    echo '```'
    echo
    echo "</details>"
} >"$RESULT_MD"
merge_section "$RESULT_MD" "messages on PostgreSQL"
log "wrote $RESULT_MD and the \"messages on PostgreSQL\" section of BENCHMARKS.md"
