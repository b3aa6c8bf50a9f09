#!/usr/bin/env bash
# What `--calc-event-ack appended` costs: unary Add RPCs against calc with its
# event log on NATS JetStream, answered at once ("buffered", the default: the
# event is appended within ~100 ms) or only once the event is in the stream
# ("appended": every answered calculation is in the history). Both servers
# run at once on the same NATS server; runs interleaved, medians.
#
#   bash bench/calc_ack.sh
#
# Environment (all optional):
#   DURATION=10s      length of one measured run
#   REPEATS=3         measured runs per server
#   CONCURRENCY=50    gRPC streams in flight
#   CONNECTIONS=4     HTTP/2 connections they share
#   NATS=127.0.0.1:4222   the NATS server (with JetStream) both log to
#
# Writes bench/results/calc-ack.md and its section "## calc event acks" of
# BENCHMARKS.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION="${DURATION:-10s}"
REPEATS="${REPEATS:-3}"
CONCURRENCY="${CONCURRENCY:-50}"
CONNECTIONS="${CONNECTIONS:-4}"
NATS="${NATS:-127.0.0.1:4222}"
RESULT_MD="$ROOT/bench/results/calc-ack.md"
for n in REPEATS CONCURRENCY CONNECTIONS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer, not '${!n}'"
done
DURATION_S="$(to_seconds "$DURATION")" || die "DURATION must look like 10s, not '$DURATION'"
(exec 3<>"/dev/tcp/${NATS%:*}/${NATS##*:}") 2>/dev/null || die "NATS with JetStream is needed at $NATS (scripts/test starts one)"

log "building quintet and calc_load (release)"
cargo build --release --locked -p quintet --bin quintet
cargo build --release --locked -p quintet-calc --example calc_load
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
QUINTET="$TARGET_DIR/release/quintet"
LOADGEN="$TARGET_DIR/release/examples/calc_load"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/quintet-calc-ack.XXXXXX")"
PIDS=()
cleanup() {
    local rc=$? pid
    trap - EXIT
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

RUN="$$$RANDOM"
declare -A URL PID
for ack in buffered appended; do
    pick_port
    mkdir -m 700 "$WORK/$ack"
    QUINTET_LOG=warn "$QUINTET" serve --services calc --addr "127.0.0.1:$PORT" --data-dir "$WORK/$ack" \
        --rate-limit 0 --log-format json --calc-event-ack "$ack" \
        --calc-events "nats://$NATS?stream=BENCH${RUN}${ack^^}&subject=bench.$RUN.$ack" >"$WORK/$ack.log" 2>&1 &
    PID[$ack]=$!
    PIDS+=("${PID[$ack]}")
    URL[$ack]="http://127.0.0.1:$PORT"
    wait_ready "${URL[$ack]}/readyz" "${PID[$ack]}" "quintet ($ack)" "$WORK/$ack.log"
done
SERVER_CMD="quintet serve --services calc --rate-limit 0 --calc-events nats://$NATS?stream=…&subject=… --calc-event-ack buffered|appended"
LOAD_CMD="calc_load --url <url> --op add --concurrency $CONCURRENCY --connections $CONNECTIONS --duration ${DURATION_S}s --warmup 0s"

RUNS="$WORK/runs.tsv"
: >"$RUNS"
run_one() { # ack repeat
    local ack=$1 rep=$2 out="$WORK/$1-$2.json" c0 c1
    c0="$(proc_ticks "${PID[$ack]}")"
    "$LOADGEN" --url "${URL[$ack]}" --op add --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" \
        --duration "${DURATION_S}s" --warmup 0s >"$out" || die "calc_load failed ($ack)"
    c1="$(proc_ticks "${PID[$ack]}")"
    python3 - "$out" "$ack" "$rep" "$((c1 - c0))" "$CLK_TCK" >>"$RUNS" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
if r["errors"]:
    sys.exit(f"calc_load: {r['errors']} errors, first: {r['first_error']}")
us = int(sys.argv[4]) / int(sys.argv[5]) / r["requests"] * 1e6
print("\t".join(map(str, [sys.argv[2], sys.argv[3], round(r["ops_per_sec"]), r["p50_ms"], r["p99_ms"], f"{us:.1f}"])))
EOF
    log "$(tail -n 1 "$RUNS")"
}
for ack in buffered appended; do run_one "$ack" warmup >/dev/null; done
: >"$RUNS"
for rep in $(seq 1 "$REPEATS"); do
    for ack in buffered appended; do run_one "$ack" "$rep"; done
done

# Every answer's event is in the stream once the servers have written them.
curl -fs "${URL[appended]}/metrics" >"$WORK/appended.metrics"
APPENDED_EVENTS="$(metric "$WORK/appended.metrics" quintet_calc_events_appended_total)"
ANSWERED="$(metric "$WORK/appended.metrics" quintet_calc_calculations_total)"

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -F'\t' -v a="$1" -v c="$2" '$1 == a { print $c }' "$RUNS" | median; }
{
    echo "## calc event acks"
    echo
    echo "Written by \`bash bench/calc_ack.sh\` on $(date -u +%Y-%m-%d): unary \`Add\` over gRPC"
    echo "($CONCURRENCY streams on $CONNECTIONS connections) against calc with its event log on NATS"
    echo "JetStream ($NATS), answering at once (*buffered*, the default) or only once the event is"
    echo "in the stream (*appended*, \`--calc-event-ack appended\`). Both servers at once, release"
    echo "build, runs interleaved, $REPEATS repeats of ${DURATION_S}s after a warm-up; medians. $(nproc) cores."
    echo
    echo "| --calc-event-ack | Add/s | ÷ buffered | p50 | p99 | server CPU/RPC |"
    echo "|---|--:|--:|--:|--:|--:|"
    base="$(col buffered 3)"
    for ack in buffered appended; do
        awk -v a="$ack" -v r="$(col "$ack" 3)" -v b="$base" -v p50="$(col "$ack" 4)" -v p99="$(col "$ack" 5)" \
            -v us="$(col "$ack" 6)" 'BEGIN { printf "| %s | %.0f | %.2f | %.2f ms | %.2f ms | %.1f µs |\n", a, r, r / b, p50, p99, us }'
    done
    echo
    echo "The appended server answered $ANSWERED calculations and appended $APPENDED_EVENTS events."
    echo "Server CPU/RPC: the server's user + system time (/proc/<pid>/stat) over the RPCs of the run."
    echo "An appended answer waits for its batch's JetStream acknowledgement: the round trip is in"
    echo "every answer's latency, and as the writer no longer lingers to gather ~100 ms of events, its"
    echo "appends are small (what the callers in flight sent meanwhile) and cost more CPU per event."
    echo
    echo "Commands: \`$SERVER_CMD\`; \`$LOAD_CMD\` (crates/calc/examples/calc_load.rs)."
    echo
    echo "| --calc-event-ack | repeat | Add/s | p50 ms | p99 ms | CPU µs/RPC |"
    echo "|---|--:|--:|--:|--:|--:|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' "$RUNS"
} >"$RESULT_MD"
merge_section "$RESULT_MD" "calc event acks"
log "wrote $RESULT_MD and BENCHMARKS.md"
cat "$RESULT_MD"
