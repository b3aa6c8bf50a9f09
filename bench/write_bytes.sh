#!/usr/bin/env bash
# Bytes the server writes to storage per acknowledged write, for the
# embedded stores the other scripts do not already count (messages.sh and
# kv.sh report theirs): counters (`POST /increment`, journal durability:
# the fsynced journal, plus the flushes to counters.redb that fall in the
# run) and calc (`Add` over gRPC, each calculation's event appended to the
# redb event log in batches). Each run is on a fresh server and data dir;
# the figure is `write_bytes` of /proc/<pid>/io over the measured run divided
# by the writes answered in it.
#
#   bash bench/write_bytes.sh
#
# Environment (all optional):
#   DURATION=10s   length of one measured run
#   REPEATS=3      runs per store; the table shows the median
#   KEYS=10000     counter keys picked at random
#   KEEP_TMP=1     keep the temporary directory
#
# Writes bench/results/write-bytes.md and its section "## Bytes written per
# acknowledged write" of BENCHMARKS.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION="${DURATION:-10s}"
REPEATS="${REPEATS:-3}"
KEYS="${KEYS:-10000}"
for n in REPEATS KEYS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer, not '${!n}'"
done
DURATION_S="$(to_seconds "$DURATION")" || die "DURATION must look like 10s, 2m or 20, not '$DURATION'"
((DURATION_S > 0)) || die "DURATION must be longer than 0s"
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
apt_install "${need[@]}"

BUILD=(cargo build --release --locked -p quintet -p quintet-calc --example calc_load)
log "building: $(shell_join "${BUILD[@]}")"
"${BUILD[@]}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
GIT_REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n $(git status --porcelain --untracked-files=no -- . ':!bench' ':!BENCHMARKS.md' 2>/dev/null) ]]; then GIT_REV+=" (with uncommitted changes)"; fi

RESULTS_DIR="$ROOT/bench/results"
RAW_DIR="$RESULTS_DIR/write-bytes-raw"
RESULT_MD="$RESULTS_DIR/write-bytes.md"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/quintet-bench-write-bytes.XXXXXX")"
rm -rf "$RAW_DIR"
mkdir -p "$RAW_DIR"
QUINTET="$WORK/quintet"
LOADGEN="$WORK/calc_load"
cp "$TARGET_DIR/release/quintet" "$QUINTET"
cp "$TARGET_DIR/release/examples/calc_load" "$LOADGEN"
SERVER_PID=""
cleanup() {
    local rc=$?
    [[ -z $SERVER_PID ]] || stop_pid "$SERVER_PID"
    if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

RUNS="$RAW_DIR/runs.tsv" # store repeat writes seconds bytes_written
: >"$RUNS"
URL=""
start_quintet() { # name args...
    local name=$1
    shift
    pick_port
    URL="http://127.0.0.1:$PORT"
    QUINTET_LOG=warn "$QUINTET" serve --addr "127.0.0.1:$PORT" --data-dir "$WORK/$name" --rate-limit 0 "$@" \
        >"$RAW_DIR/$name.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "$URL/readyz" "$SERVER_PID" quintet "$RAW_DIR/$name.log"
}

for rep in $(seq 1 "$REPEATS"); do
    # counters: random keys, journal durability (the default).
    start_quintet "counters-$rep" --services counters
    cmd=(wrk -t2 -c50 -d"${DURATION_S}s" -s bench/wrk/incr.lua "$URL" -- "$KEYS")
    COUNTERS_CMD="$(shell_join "${cmd[@]}")"
    COUNTERS_CMD="${COUNTERS_CMD//$URL/http://127.0.0.1:PORT}"
    w0="$(io_write_bytes "$SERVER_PID")"
    "${cmd[@]}" >"$RAW_DIR/counters-$rep.txt" 2>&1 || die "wrk failed"
    w1="$(io_write_bytes "$SERVER_PID")"
    stop_pid "$SERVER_PID"
    SERVER_PID=""
    n="$(sed -n 's/^BENCH requests=\([0-9]*\) .*/\1/p' "$RAW_DIR/counters-$rep.txt")"
    printf 'counters\t%s\t%s\t%s\t%s\n' "$rep" "$n" "$DURATION_S" "$((w1 - w0))" >>"$RUNS"
    log "counters #$rep: $n increments, $((w1 - w0)) bytes written"

    # calc: Add, each calculation's event appended to the redb event log.
    start_quintet "calc-$rep" --services calc
    cmd=("$LOADGEN" --url "$URL" --op add --concurrency 50 --connections 4 --duration "${DURATION_S}s" --warmup 0s)
    CALC_CMD="$(shell_join calc_load --url http://127.0.0.1:PORT "${cmd[@]:3}")"
    w0="$(io_write_bytes "$SERVER_PID")"
    "${cmd[@]}" >"$RAW_DIR/calc-$rep.json" 2>&1 || die "calc_load failed"
    # Events trail answers by about 100 ms: wait for the last batch.
    sleep 1
    w1="$(io_write_bytes "$SERVER_PID")"
    stop_pid "$SERVER_PID"
    SERVER_PID=""
    n="$(python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["requests"])' "$RAW_DIR/calc-$rep.json")"
    printf 'calc\t%s\t%s\t%s\t%s\n' "$rep" "$n" "$DURATION_S" "$((w1 - w0))" >>"$RUNS"
    log "calc #$rep: $n calculations, $((w1 - w0)) bytes written"
done

{
    echo "## Bytes written per acknowledged write"
    echo
    echo "Written by \`bash bench/write_bytes.sh\` on $(date -u +%Y-%m-%d) (git $GIT_REV; $(nproc) cores). Each run on a fresh \`quintet serve\` and data dir; \`write_bytes\` of the server's \`/proc/<pid>/io\` over the run divided by the writes answered in it; median of $REPEATS runs. messages and kv report theirs in their own sections (728 B per POST, 661 B per 100 B set) and per engine in \"Embedded engines\"."
    echo
    python3 - "$RUNS" "$COUNTERS_CMD" "$CALC_CMD" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    store, rep, n, secs, written = line.rstrip("\n").split("\t")
    rows.setdefault(store, []).append((int(n), int(secs), int(written)))
print("| store | write | driven by | writes/s | bytes written per write |")
print("|---|---|---|--:|--:|")
what = {"counters": ("`POST /increment`, journal durability (journal appends, plus the flushes to counters.redb within the run)", sys.argv[2]),
        "calc": ("gRPC `Add`: its event appended to the redb event log (in batches)", sys.argv[3])}
for store in ("counters", "calc"):
    if store not in rows:
        continue
    r = rows[store]
    print(f"| {store} | {what[store][0]} | `{what[store][1]}` | {statistics.median(n / s for n, s, _ in r):,.0f} "
          f"| {statistics.median(w / n for n, _, w in r if n):,.0f} B |")
EOF
    echo
    echo "receipts: \`bench/receipts.sh\` reports its bytes written per job (the queue, the posted results and the ledger), as it drives jobs end to end through apple-sim."
} >"$RESULT_MD"
merge_section "$RESULT_MD" "Bytes written per acknowledged write"
log "wrote $RESULT_MD"
