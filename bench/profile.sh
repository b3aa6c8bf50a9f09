#!/usr/bin/env bash
# Where one request path's microseconds go: starts a quintet server, puts a
# load on it, measures the server's CPU time per request from /proc and
# buckets a perf profile of the same run (bench/perf_table.py).
#
#   bash bench/profile.sh PATH [QUINTET_BINARY]
#
# PATH is one of:
#   messages-get   GET /messages/{digest}, wrk -c50 over MESSAGES stored messages
#   counters-incr  POST /increment, memory durability, wrk -c50 over 10,000 keys
#   counters-journal  the same with journal durability (the default)
#   kv-get         KV_SIZE-byte (default 100) gRPC Get, kv_load --concurrency 50
#                  --connections 4, over 1000 keys or 256 MiB of values if less
#   kv-set         the same with Set: each a durable write (group commit, fsync)
#   calc-add       gRPC Add, calc_load --concurrency 50 --connections 4
#   calc-health    grpc.health.v1.Health/Check, the same load
# QUINTET_BINARY defaults to target/release/quintet (CARGO_TARGET_DIR is
# honoured); the load generators kv_load and calc_load are built next to it.
#
# Environment (all optional): DURATION=10 (seconds of measured load; perf
# samples DURATION-2 of them, from the second second), MESSAGES=300,
# SERVER_ARGS (appended to `quintet serve`, e.g. "--worker-threads 1").
# Prints the commands, requests/s, µs of server CPU per request and the table.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

WHAT="${1:-}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
QUINTET="${2:-$TARGET_DIR/release/quintet}"
DURATION="${DURATION:-10}"
MESSAGES="${MESSAGES:-300}"
KV_SIZE="${KV_SIZE:-100}"
[[ $KV_SIZE =~ ^[1-9][0-9]*$ ]] || die "KV_SIZE must be a positive number of bytes"
KV_KEYS=$((268435456 / KV_SIZE))
((KV_KEYS <= 1000)) || KV_KEYS=1000
((KV_KEYS >= 16)) || KV_KEYS=16
SERVER_ARGS="${SERVER_ARGS:-}"
[[ $DURATION =~ ^[0-9]+$ ]] && ((DURATION >= 4)) || die "DURATION must be whole seconds, at least 4"
[[ -x $QUINTET ]] || die "no quintet binary at $QUINTET: cargo build --release -p quintet"
command -v perf >/dev/null || die "perf is needed (Debian: linux-perf)"

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    [[ -z $SERVER_PID ]] || kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

case $WHAT in
messages-get) services=(--services messages) ;;
counters-incr) services=(--services counters --durability memory) ;;
counters-journal) services=(--services counters) ;;
kv-get | kv-set) services=(--services kv --kv-tcp-addr 127.0.0.1:0) ;;
calc-add | calc-health) services=(--services calc) ;;
*) die "usage: bench/profile.sh messages-get|counters-incr|counters-journal|kv-get|kv-set|calc-add|calc-health [QUINTET_BINARY]" ;;
esac
case $WHAT in
kv-get | kv-set) cargo build --release --locked -q -p quintet-kv --example kv_load ;;
calc-*) cargo build --release --locked -q -p quintet-calc --example calc_load ;;
*) command -v wrk >/dev/null || apt_install wrk ;;
esac

pick_port
URL="http://127.0.0.1:$PORT"
# shellcheck disable=SC2206 # SERVER_ARGS is a list of words on purpose
SERVE=("$QUINTET" serve "${services[@]}" --addr "127.0.0.1:$PORT" --data-dir "$WORK/data" --rate-limit 0 $SERVER_ARGS)
echo "server: QUINTET_LOG=warn $(shell_join "${SERVE[@]}")"
QUINTET_LOG=warn "${SERVE[@]}" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
wait_ready "$URL/readyz" "$SERVER_PID" "quintet" "$WORK/server.log"

if [[ $WHAT == messages-get ]]; then
    for ((i = 1; i <= MESSAGES; i++)); do
        curl -sf -H 'content-type: application/json' -d "{\"message\":\"profiled message $i\"}" "$URL/messages" |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["digest"])'
    done >"$WORK/digests"
fi

load() { # seconds
    case $WHAT in
    messages-get) wrk -t2 -c50 -d"$1"s --latency -s bench/wrk/get.lua "$URL" -- "$WORK/digests" ;;
    counters-*) wrk -t2 -c50 -d"$1"s --latency -s bench/wrk/incr.lua "$URL" -- 10000 ;;
    kv-get) "$TARGET_DIR/release/examples/kv_load" --url "$URL" --op get --size "$KV_SIZE" --keys "$KV_KEYS" --concurrency 50 --connections 4 --duration "$1"s ;;
    kv-set) "$TARGET_DIR/release/examples/kv_load" --url "$URL" --op set --size "$KV_SIZE" --keys "$KV_KEYS" --concurrency 50 --connections 4 --duration "$1"s ;;
    calc-add) "$TARGET_DIR/release/examples/calc_load" --url "$URL" --op add --concurrency 50 --connections 4 --duration "$1"s --warmup 0s ;;
    calc-health) "$TARGET_DIR/release/examples/calc_load" --url "$URL" --op health --concurrency 50 --connections 4 --duration "$1"s --warmup 0s ;;
    esac
}
answered() { # load output file
    case $WHAT in
    kv-get | kv-set | calc-*) python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["requests"])' "$1" ;;
    *) awk '/requests in/ { print $1 }' "$1" ;;
    esac
}

load 2 >/dev/null # warm-up
before="$(proc_ticks "$SERVER_PID")"
load "$DURATION" >"$WORK/load.out" &
LOAD_PID=$!
sleep 1
perf record -q -e cpu-clock -F 999 -g -p "$SERVER_PID" -o "$WORK/perf.data" -- sleep $((DURATION - 2)) >/dev/null 2>&1
wait "$LOAD_PID"
after="$(proc_ticks "$SERVER_PID")"
requests="$(answered "$WORK/load.out")"
us="$(per_request_us $((after - before)) "$requests")"
rate="$(awk -v n="$requests" -v s="$DURATION" 'BEGIN { printf "%.0f", n / s }')"
echo "load: $WHAT for ${DURATION}s, $requests answered (~$rate/s); server CPU per request: $us µs"
echo "perf: perf record -e cpu-clock -F 999 -g -p <server pid> -- sleep $((DURATION - 2))"
echo
python3 bench/perf_table.py "$WORK/perf.data" "$us"
