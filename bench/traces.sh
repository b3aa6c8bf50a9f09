#!/usr/bin/env bash
# What traces cost on the request path: the messages service answering
# GET /messages/{digest} (its fastest route, so the relative cost is the
# largest) and POST /messages, without --otlp-endpoint ("off": no span is
# built), with it ("on": a server span per request, and for POST the
# store's client span under it, batched and exported
# over OTLP/gRPC to a receiver on loopback, `otlp-sink` from the testkit
# crate), and with it sampling 1 % of traces ("sampled":
# OTEL_TRACES_SAMPLER=parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=0.01).
# The three servers run at once; the runs are interleaved (off, on, sampled,
# off, ...) and the table shows medians.
#
#   bash bench/traces.sh
#
# Environment (all optional):
#   DURATION=10s     length of one measured wrk run
#   REPEATS=3        measured runs per scenario; the table shows the median
#   THREADS=2        wrk threads
#   CONNECTIONS=50   wrk connections
#   KEEP_TMP=1       keep the temporary directory
#
# Writes bench/results/traces.md and its section "## traces" of BENCHMARKS.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION="${DURATION:-10s}"
REPEATS="${REPEATS:-3}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-50}"
[[ $REPEATS =~ ^[1-9][0-9]*$ ]] || die "REPEATS must be a positive integer, not '$REPEATS'"
RESULT_MD="$ROOT/bench/results/traces.md"

command -v wrk >/dev/null || apt_install wrk
command -v curl >/dev/null || apt_install curl

log "building quintet and otlp-sink (release)"
cargo build --release --locked -p quintet --bin quintet
cargo build --release --locked -p quintet-testkit --bin otlp-sink
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
QUINTET="$TARGET_DIR/release/quintet"
SINK="$TARGET_DIR/release/otlp-sink"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/quintet-traces.XXXXXX")"
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

pick_port
SINK_ADDR="127.0.0.1:$PORT"
"$SINK" "$SINK_ADDR" >"$WORK/sink.log" 2>&1 &
SINK_PID=$!
PIDS+=("$SINK_PID")
for _ in $(seq 1 100); do grep -q '^listening' "$WORK/sink.log" && break; sleep 0.1; done
grep -q '^listening' "$WORK/sink.log" || die "otlp-sink did not start: $(cat "$WORK/sink.log")"

declare -A URL PID
start_server() { # name [flags...]
    local name=$1 port
    shift
    pick_port
    port=$PORT
    mkdir -m 700 "$WORK/$name"
    QUINTET_LOG=warn "$QUINTET" serve --services messages --addr "127.0.0.1:$port" \
        --data-dir "$WORK/$name" --rate-limit 0 --log-format json "$@" >"$WORK/$name.log" 2>&1 &
    PID[$name]=$!
    PIDS+=("${PID[$name]}")
    URL[$name]="http://127.0.0.1:$port"
    wait_ready "${URL[$name]}/readyz" "${PID[$name]}" "quintet ($name)" "$WORK/$name.log"
}
start_server off
start_server on --otlp-endpoint "http://$SINK_ADDR"
# The same with 1 % of traces sampled (a caller's sampled flag still wins).
OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01 \
    start_server sampled --otlp-endpoint "http://$SINK_ADDR"
SERVER_CMD="QUINTET_LOG=warn quintet serve --services messages --data-dir <dir> --rate-limit 0 [--otlp-endpoint http://$SINK_ADDR]"

# One message to read back, in each.
for name in off on sampled; do
    curl -fs -H 'content-type: application/json' -d '{"message":"traced or not"}' \
        "${URL[$name]}/messages" >"$WORK/digest.json"
done
sed -n 's/.*"digest":"\([0-9a-f]*\)".*/\1/p' "$WORK/digest.json" >"$WORK/digests"
[[ -s $WORK/digests ]] || die "no digest from POST /messages"

RUNS="$WORK/runs.tsv"
: >"$RUNS"
run_one() { # scenario server repeat
    local scenario=$1 name=$2 rep=$3 script arg out c0 c1 line kv
    case $scenario in
    get) script=bench/wrk/get.lua arg="$WORK/digests" ;;
    post) script=bench/wrk/post.lua arg="t${rep}${name}${RANDOM}" ;;
    esac
    out="$WORK/$scenario-$name-$rep.txt"
    WRK_CMD[$scenario]="wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency -s $script <url> -- <arg>"
    c0="$(proc_ticks "${PID[$name]}")"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$script" "${URL[$name]}" -- "$arg" >"$out" 2>&1 ||
        die "wrk failed: $(cat "$out")"
    c1="$(proc_ticks "${PID[$name]}")"
    line="$(grep '^BENCH ' "$out")" || die "no BENCH line: $(cat "$out")"
    local -A r=()
    for kv in ${line#BENCH }; do r[${kv%%=*}]=${kv#*=}; done
    ((r[non2xx] == 0)) || die "$scenario/$name: ${r[non2xx]} answers were not 2xx"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$name" "$rep" "${r[rps]}" "${r[p99_us]}" \
        "$(per_request_us "$((c1 - c0))" "${r[requests]}")" >>"$RUNS"
    log "$scenario $name #$rep: ${r[rps]} req/s, p99 ${r[p99_us]} µs, $(tail -n1 "$RUNS" | cut -f6) µs CPU/request"
}
declare -A WRK_CMD
for scenario in get post; do
    for name in off on sampled; do run_one "$scenario" "$name" warmup >/dev/null 2>&1 || true; done
    sed -i '/\twarmup\t/d' "$RUNS"
    for rep in $(seq 1 "$REPEATS"); do
        for name in off on sampled; do run_one "$scenario" "$name" "$rep"; done
    done
done

# Spans really went out: every request of the "on" server was exported.
curl -fs "${URL[on]}/metrics" >"$WORK/on.metrics"
EXPORTED="$(metric "$WORK/on.metrics" quintet_trace_spans_exported_total)"
FAILED="$(metric "$WORK/on.metrics" quintet_trace_export_failures_total)"
RECEIVED="$(grep '^spans ' "$WORK/sink.log" | tail -n1 | cut -d' ' -f2)"
(( EXPORTED > 0 )) || die "the traced server exported no span"
(( FAILED == 0 )) || die "the traced server failed $FAILED exports"

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -F'\t' -v s="$1" -v n="$2" -v c="$3" '$1 == s && $2 == n { print $c }' "$RUNS" | median; }

{
    echo "## traces"
    echo
    echo "Written by \`bash bench/traces.sh\` on $(date -u +%Y-%m-%d): what a server span per"
    echo "request (and for POST the store's client span under it; a GET of a stored message is"
    echo "answered from the cache, without a store call), exported over OTLP/gRPC, costs. The messages service (embedded store, release"
    echo "build) three times at once: *off* without \`--otlp-endpoint\` (no span is built), *on*"
    echo "exporting every request's span to \`otlp-sink\` on loopback (a counting OTLP receiver,"
    echo "crates/testkit), *sampled* the same with \`OTEL_TRACES_SAMPLER=parentbased_traceidratio"
    echo "OTEL_TRACES_SAMPLER_ARG=0.01\` (1 % of traces). Runs interleaved, off, on, sampled,"
    echo "$REPEATS repeats of $DURATION after a warm-up; medians. $(nproc) cores."
    echo
    echo "| route | server | req/s | ÷ off | p99 | CPU/request | CPU − off |"
    echo "|---|---|--:|--:|--:|--:|--:|"
    for scenario in get post; do
        route="GET /messages/{digest}"
        [[ $scenario == post ]] && route="POST /messages"
        ro="$(col "$scenario" off 4)" co="$(col "$scenario" off 6)"
        for name in off on sampled; do
            awk -v r="$route" -v n="$name" -v ro="$ro" -v co="$co" -v rn="$(col "$scenario" "$name" 4)" \
                -v pn="$(col "$scenario" "$name" 5)" -v cn="$(col "$scenario" "$name" 6)" 'BEGIN {
                printf "| %s | %s | %.0f | %.2f | %.2f ms | %.1f µs | %+.1f µs |\n",
                    r, n, rn, rn / ro, pn / 1000, cn, cn - co }'
        done
    done
    echo
    echo "Spans exported by the traced server: $EXPORTED (export failures: $FAILED; the sink counted ${RECEIVED:-?})."
    echo "CPU/request is the server's own user + system time (/proc/<pid>/stat) over the requests"
    echo "wrk counted, the figure that survives a noisy machine. With 2 cores, wrk and the server"
    echo "share them, so req/s is bounded by the machine as much as by the server."
    echo
    echo "Commands: \`$SERVER_CMD\`; \`${WRK_CMD[get]}\` (\`bench/wrk/get.lua\`, one stored"
    echo "digest); \`${WRK_CMD[post]}\` (\`bench/wrk/post.lua\`, a new message per request)."
    echo
    echo "| route | server | repeat | req/s | p99 µs | CPU µs/request |"
    echo "|---|---|--:|--:|--:|--:|"
    awk -F'\t' '{ printf "| %s | %s | %s | %.0f | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' "$RUNS"
} >"$RESULT_MD"
merge_section "$RESULT_MD" traces
log "wrote $RESULT_MD and BENCHMARKS.md"
cat "$RESULT_MD"
