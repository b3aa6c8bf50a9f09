#!/usr/bin/env bash
# kv service throughput and latency over gRPC (Set and Get at CONCURRENCY
# concurrent streams) for each value size, local key provider on redb, against
# Redis SET/GET of the same sizes at the same concurrency (redis-benchmark,
# no persistence: the unencrypted, in-memory ceiling), and 100 B SETs on a
# Redis that fsyncs each before its answer (appendfsync always: durable like
# quintet's sets), in the same run; and
# the key-provider calls per CALLS_SETS sets with the data-key cache on and off.
#
#   bash bench/kv.sh
#
# Environment (all optional):
#   DURATION=10s         length of one measured run (redis-benchmark gets a request
#                        count that lasts about as long)
#   REPEATS=3            measured runs per size and system; the table shows the median
#   CONCURRENCY=50       requests in flight: gRPC streams, redis-benchmark clients
#   CONNECTIONS=4        HTTP/2 connections the gRPC streams share
#   SIZES="100 4096 65536 1048576"   value sizes in bytes
#   WORKING_SET_MB=256   keys per size: WORKING_SET_MB MB of values, 16 to 10000 keys
#   CALLS_SETS=10000     sets sent to count key-provider calls
#   KEEP_TMP=1           keep the temporary directory (data dirs, logs)
#
# Writes bench/results/kv.md, copies it into BENCHMARKS.md (section "## kv",
# other sections are kept), and keeps raw load-generator output, server logs
# and /metrics dumps in bench/results/kv-raw/ (not committed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION="${DURATION:-10s}"
REPEATS="${REPEATS:-3}"
CONCURRENCY="${CONCURRENCY:-50}"
CONNECTIONS="${CONNECTIONS:-4}"
SIZES="${SIZES:-100 4096 65536 1048576}"
WORKING_SET_MB="${WORKING_SET_MB:-256}"
CALLS_SETS="${CALLS_SETS:-10000}"
GET_TARGET=0.5      # 100 B get vs Redis GET
SET_TARGET=0.3      # 100 B set vs Redis SET
AOF_TARGET=0.5      # 100 B set vs Redis SET with appendfsync always
MIB_GET_TARGET=1000 # 1 MiB get, MB/s of plaintext

RESULTS_DIR="$ROOT/bench/results"
RAW_DIR="$RESULTS_DIR/kv-raw"
RESULT_MD="$RESULTS_DIR/kv.md"

for n in REPEATS CONCURRENCY CONNECTIONS WORKING_SET_MB CALLS_SETS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer, not '${!n}'"
done
for s in $SIZES; do [[ $s =~ ^[1-9][0-9]*$ ]] || die "SIZES must be positive integers, not '$s'"; done
DURATION_S="$(to_seconds "$DURATION")" || die "DURATION must look like 10s, 2m or 20, not '$DURATION'"
((DURATION_S > 0)) || die "DURATION must be longer than 0s"

# ---------------------------------------------------------------- tools and build
need=()
command -v curl >/dev/null || need+=(curl)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-benchmark >/dev/null && command -v redis-cli >/dev/null || need+=(redis-tools)
command -v python3 >/dev/null || need+=(python3)
apt_install "${need[@]}"
command -v cargo >/dev/null || die "cargo is needed to build quintet"

BUILD_QUINTET=(cargo build --release --locked -p quintet)
BUILD_LOADGEN=(cargo build --release --locked -p quintet-kv --example kv_load)
log "building: $(shell_join "${BUILD_QUINTET[@]}") && $(shell_join "${BUILD_LOADGEN[@]}")"
"${BUILD_QUINTET[@]}"
"${BUILD_LOADGEN[@]}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
GIT_REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n $(git status --porcelain --untracked-files=no -- . ':!bench' ':!BENCHMARKS.md' 2>/dev/null) ]]; then GIT_REV+=" (with uncommitted changes)"; fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/quintet-bench-kv.XXXXXX")"
rm -rf "$RAW_DIR"
mkdir -p "$RAW_DIR"
# Runs use copies, so a rebuild of target/ during the run cannot mix binaries.
QUINTET="$WORK/quintet"
LOADGEN="$WORK/kv_load"
cp "$TARGET_DIR/release/quintet" "$QUINTET"
cp "$TARGET_DIR/release/examples/kv_load" "$LOADGEN"
SERVER_PID=""
cleanup() {
    local rc=$?
    trap - EXIT
    stop_sampler
    [[ -z $SERVER_PID ]] || stop_pid "$SERVER_PID"
    if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

RECORDS="$RAW_DIR/records.tsv" # system op size repeat ops_per_sec p50_ms p99_ms mb_per_sec errors requests server_us
: >"$RECORDS"
WRITTEN="$RAW_DIR/written.tsv" # system size bytes_written_per_set
: >"$WRITTEN"

keys_for() { # size → keys
    awk -v s="$1" -v mb="$WORKING_SET_MB" 'BEGIN { k = int(mb * 1e6 / s); if (k < 16) k = 16; if (k > 10000) k = 10000; print k }'
}

# ---------------------------------------------------------------- quintet
QUINTET_ARGS=(serve --services kv --kv-tcp-addr 127.0.0.1:0 --rate-limit 0 --log-format json)
URL=""
start_quintet() { # name extra-args...
    local name=$1
    shift
    pick_port
    local dir="$WORK/$name" logf="$RAW_DIR/$name.log"
    URL="http://127.0.0.1:$PORT"
    QUINTET_LOG=warn "$QUINTET" "${QUINTET_ARGS[@]}" --addr "127.0.0.1:$PORT" --data-dir "$dir" "$@" >"$logf" 2>&1 &
    SERVER_PID=$!
    wait_ready "$URL/readyz" "$SERVER_PID" quintet "$logf"
}
stop_server() {
    stop_pid "$SERVER_PID"
    SERVER_PID=""
}

LOADGEN_EXAMPLE=""
run_loadgen() { # op size repeat
    local op=$1 size=$2 rep=$3 out="$RAW_DIR/quintet-$1-$2-$3.json"
    local cmd=("$LOADGEN" --url "$URL" --op "$op" --size "$size" --keys "$(keys_for "$size")"
        --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" --duration "${DURATION_S}s")
    LOADGEN_EXAMPLE="$(shell_join kv_load "${cmd[@]:1}")"
    # The server's CPU over the measured stretch only: a get run first sets
    # every key once, which kv_load neither counts nor times.
    local samples="$WORK/ticks-$op-$size-$rep" t_end end_ticks requests seconds w0 w1
    start_sampler "$SERVER_PID" "$samples"
    w0="$(io_write_bytes "$SERVER_PID")"
    "${cmd[@]}" >"$out" || die "kv_load failed ($op, $size B)"
    w1="$(io_write_bytes "$SERVER_PID")"
    t_end=${EPOCHREALTIME/[.,]/}
    end_ticks="$(proc_ticks "$SERVER_PID")"
    stop_sampler
    read -r requests seconds < <(python3 -c 'import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(r["requests"], r["seconds"])' "$out")
    # Bytes the server wrote to storage per set (a get run's sets are not counted).
    if [[ $op == set && $w0 != - && $w1 != - ]]; then
        printf 'quintet\t%s\t%s\n' "$size" "$(per_request_bytes "$((w1 - w0))" "$requests")" >>"$WRITTEN"
    fi
    python3 - "$out" "$op" "$size" "$rep" "$(stretch_us "$samples" "$t_end" "$end_ticks" "$seconds" "$requests")" >>"$RECORDS" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print("\t".join(map(str, ["quintet", sys.argv[2], sys.argv[3], sys.argv[4], round(r["ops_per_sec"]),
    r["p50_ms"], r["p99_ms"], round(r["mb_per_sec"], 1), r["errors"], r["requests"], sys.argv[5]])))
if r["errors"]:
    print(f"kv_load: {r['errors']} errors, first: {r['first_error']}", file=sys.stderr)
EOF
}

# ---------------------------------------------------------------- redis
REDIS_EXAMPLE=""
REDIS_AOF_CMDLINE=""
# system: redis (no persistence: SET and GET) or redis-aof (appendfsync
# always, every SET fsynced before its answer: SET only).
run_redis() { # size repeat [system]
    local size=$1 rep=$2 system=${3:-redis} keys
    keys="$(keys_for "$size")"
    pick_port
    local port=$PORT dir="$WORK/$system-$size-$rep" logf="$RAW_DIR/$system-$size-$rep.log"
    mkdir -p "$dir"
    local persist=(--appendonly no) ops=(set get)
    if [[ $system == redis-aof ]]; then
        persist=(--appendonly yes --appendfsync always) ops=(set)
        REDIS_AOF_CMDLINE="$(shell_join redis-server --port '<port>' --bind 127.0.0.1 --dir '<fresh dir>' --save '' "${persist[@]}")"
    fi
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' "${persist[@]}" >"$logf" 2>&1 &
    SERVER_PID=$!
    wait_redis "$port" "$SERVER_PID" "$logf"
    # A short run to size the measured one to about DURATION.
    local calib rps n
    calib="$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CONCURRENCY" -n 2000 -d "$size" -r "$keys" -t set --csv | grep '^"SET"' | tr -d '"')"
    rps="$(cut -d, -f2 <<<"$calib")"
    n="$(awk -v r="$rps" -v d="$DURATION_S" 'BEGIN { n = int(r * d); if (n < 2000) n = 2000; print n }')"
    # SET, then GET (of the keys SET wrote): one redis-benchmark run each, so
    # that redis-server's CPU is known per test.
    local op cmd csv s0 s1 w0 w1 test rps_ p50 p99
    for op in "${ops[@]}"; do
        cmd=(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CONCURRENCY" -n "$n" -d "$size" -r "$keys" -P 1 -t "$op" --csv)
        if [[ $op == set ]]; then REDIS_EXAMPLE="$(shell_join "${cmd[@]}")"; fi
        csv="$RAW_DIR/$system-$size-$rep-$op.csv"
        s0="$(proc_ticks "$SERVER_PID")"
        w0="$(io_write_bytes "$SERVER_PID")"
        "${cmd[@]}" >"$csv" || die "redis-benchmark failed ($system $op, $size B)"
        s1="$(proc_ticks "$SERVER_PID")"
        w1="$(io_write_bytes "$SERVER_PID")"
        if [[ $op == set && $w0 != - && $w1 != - ]]; then
            printf '%s\t%s\t%s\n' "$system" "$size" "$(per_request_bytes "$((w1 - w0))" "$n")" >>"$WRITTEN"
        fi
        while IFS=, read -r test rps_ _ _ p50 _ p99 _; do
            [[ $test == "${op^^}" ]] || continue
            printf '%s\t%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t0\t%s\t%s\n' "$system" "$op" "$size" "$rep" "$rps_" "$p50" "$p99" \
                "$(awk -v r="$rps_" -v s="$size" 'BEGIN { printf "%.1f", r * s / 1e6 }')" "$n" "$(per_request_us $((s1 - s0)) "$n")" >>"$RECORDS"
        done < <(tr -d '"' <"$csv")
    done
    stop_server
}

# ---------------------------------------------------------------- throughput
for rep in $(seq 1 "$REPEATS"); do
    for size in $SIZES; do
        log "repeat $rep/$REPEATS, $size B: quintet set, get"
        start_quintet "q-$size-$rep"
        run_loadgen set "$size" "$rep"
        run_loadgen get "$size" "$rep"
        curl -fsS "$URL/metrics" >"$RAW_DIR/metrics-$size-$rep.txt" || true
        stop_server
        log "repeat $rep/$REPEATS, $size B: redis SET, GET"
        run_redis "$size" "$rep"
        if [[ $size == 100 ]]; then
            log "repeat $rep/$REPEATS, $size B: redis SET with appendfsync always"
            run_redis "$size" "$rep" redis-aof
        fi
    done
done

# ---------------------------------------------------------------- key-provider calls
provider_calls() { # name extra-args... → calls per CALLS_SETS sets
    local name=$1
    shift
    start_quintet "$name" "$@"
    "$LOADGEN" --url "$URL" --op set --size 100 --keys 1000 --concurrency "$CONCURRENCY" \
        --connections "$CONNECTIONS" --requests "$CALLS_SETS" --duration 600s >"$RAW_DIR/$name.json"
    curl -fsS "$URL/metrics" >"$RAW_DIR/$name-metrics.txt"
    stop_server
    metric "$RAW_DIR/$name-metrics.txt" quintet_kv_provider_calls_total
}
log "key-provider calls per $CALLS_SETS sets, cache on and off"
CALLS_ON="$(provider_calls calls-cache-on)"
CALLS_OFF="$(provider_calls calls-cache-off --kv-dek-max-uses 0)"
CALLS_EXAMPLE="$(shell_join kv_load --op set --size 100 --keys 1000 --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" --requests "$CALLS_SETS")"

# ---------------------------------------------------------------- report
mkdir -p "$RESULTS_DIR"
{
    echo "## kv"
    echo
    echo "Written by \`bash bench/kv.sh\` on $(date -u +%Y-%m-%d) (git $GIT_REV; $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); load average before the run $(cut -d' ' -f1-3 /proc/loadavg))."
    echo "quintet: \`$(shell_join quintet "${QUINTET_ARGS[@]}")\` (local key provider, the embedded store (fjall), data-key cache on with its defaults; every set fsynced before its answer)"
    echo "driven by \`$LOADGEN_EXAMPLE\` (the gRPC load generator in crates/kv/examples, \`--op get\` first sets each key once); Redis $(redis-server --version | awk '{ print $3 }' | tr -d 'v=') without persistence driven by \`$REDIS_EXAMPLE\` and then the same with \`-t get\` (n sized to last about $DURATION). Same machine, one system at a time; $REPEATS repeats, medians; p99 in ms; MB = 10^6 bytes of plaintext values."
    echo
    python3 - "$RECORDS" "$GET_TARGET" "$SET_TARGET" "$MIB_GET_TARGET" "$(nproc)" "$WRITTEN" "$AOF_TARGET" "$REDIS_AOF_CMDLINE" <<'EOF'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    system, op, size, rep, ops, p50, p99, mb, errors, requests, server_us = line.rstrip("\n").split("\t")
    rows[(system, op, int(size))].append((float(ops), float(p99), float(mb), int(errors),
                                          None if server_us == "-" else float(server_us), int(rep), float(p50), int(requests)))
get_t, set_t, mib_t = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
def med(system, op, size, i):
    return statistics.median(r[i] for r in rows[(system, op, size)])
def med_us(system, op, size):
    v = [r[4] for r in rows[(system, op, size)] if r[4] is not None]
    return f"{statistics.median(v):,.1f} µs" if v else "-"
def human(size):
    return f"{size // 1048576} MiB" if size >= 1048576 else f"{size // 1024} KiB" if size >= 1024 else f"{size} B"
print("| value | op | quintet ops/s | quintet p99 | quintet MB/s | quintet server CPU per op | Redis ops/s | Redis p99 | Redis server CPU per op | ratio | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for size in sorted({k[2] for k in rows}):
    for op in ("set", "get"):
        if (("quintet", op, size) not in rows) or (("redis", op, size) not in rows):
            continue
        q, r = med("quintet", op, size, 0), med("redis", op, size, 0)
        errors = sum(x[3] for x in rows[("quintet", op, size)])
        print(f"| {human(size)} | {op} | {q:,.0f} | {med('quintet', op, size, 1):.2f} | {med('quintet', op, size, 2):,.1f} "
              f"| {med_us('quintet', op, size)} | {r:,.0f} | {med('redis', op, size, 1):.2f} | {med_us('redis', op, size)} "
              f"| {q / r:.2f} | {errors} |")
print()
print("How to read it:")
print()
print("- Server CPU per op: the server's user + system CPU time (`/proc/<pid>/stat`: quintet, or redis-server) over a measured run "
      "divided by the requests the load generator counted in it (kv_load's `requests`, redis-benchmark's `-n`); median over the runs. "
      "For quintet the CPU is taken over kv_load's measured stretch only (sampled every 50 ms; a get run first sets every key, unmeasured). "
      f"Unlike ops/s it does not depend on how much of the {sys.argv[5]}-core machine the load generator and other tenants took.")
print()
def verdict(ok):
    return "met" if ok else "**missed**"
lines = []
if ("quintet", "get", 100) in rows and ("redis", "get", 100) in rows:
    g = med("quintet", "get", 100, 0) / med("redis", "get", 100, 0)
    lines.append(f"- 100 B get ≥ {get_t}× Redis GET: {g:.2f}× — {verdict(g >= get_t)}")
if ("quintet", "set", 100) in rows and ("redis", "set", 100) in rows:
    s = med("quintet", "set", 100, 0) / med("redis", "set", 100, 0)
    lines.append(f"- 100 B set ≥ {set_t}× Redis SET: {s:.2f}× — {verdict(s >= set_t)}")
aof_t = float(sys.argv[7])
if ("quintet", "set", 100) in rows and ("redis-aof", "set", 100) in rows:
    a = med("quintet", "set", 100, 0) / med("redis-aof", "set", 100, 0)
    lines.append(f"- 100 B set ≥ {aof_t}× Redis SET with appendfsync always (both durable before the answer): {a:.2f}× — {verdict(a >= aof_t)}")
if ("quintet", "get", 1048576) in rows:
    m = med("quintet", "get", 1048576, 2)
    lines.append(f"- 1 MiB get ≥ {mib_t:.0f} MB/s of plaintext: {m:,.0f} MB/s — {verdict(m >= mib_t)}")
written = defaultdict(list)
for line in open(sys.argv[6]):
    system, size, per = line.rstrip("\n").split("\t")
    if per != "-":
        written[(system, int(size))].append(float(per))
if ("redis-aof", "set", 100) in rows:
    print()
    print(f"Durable 100 B sets: Redis with every SET fsynced before its answer (`{sys.argv[8]}`, driven like the run above, `-t set`).")
    print()
    print("| system | ops/s | p99 | server CPU per op | bytes written to storage per set |")
    print("|---|---:|---:|---:|---:|")
    def wr(system):
        v = written.get((system, 100))
        return f"{statistics.median(v):,.0f} B" if v else "-"
    print(f"| quintet set (fjall, group fsync) | {med('quintet', 'set', 100, 0):,.0f} | {med('quintet', 'set', 100, 1):.2f} | {med_us('quintet', 'set', 100)} | {wr('quintet')} |")
    print(f"| Redis SET, appendfsync always | {med('redis-aof', 'set', 100, 0):,.0f} | {med('redis-aof', 'set', 100, 1):.2f} | {med_us('redis-aof', 'set', 100)} | {wr('redis-aof')} |")
    print(f"| Redis SET, no persistence | {med('redis', 'set', 100, 0):,.0f} | {med('redis', 'set', 100, 1):.2f} | {med_us('redis', 'set', 100)} | {wr('redis')} |")
    print()
    print("Bytes written per set: `write_bytes` of the server's `/proc/<pid>/io` over the set run, divided by the sets in it; median over the runs.")
    print()
print("Targets:")
print()
print("\n".join(lines))
EOF
    echo
    echo "Where the server's time goes, and the measured reason for each missed target: section \"kv: where the time goes\" below, written by hand from profiles (\`bench/profile.sh kv-get\`)."
    echo
    echo "Key-provider calls per $CALLS_SETS sets of 100 B (\`$CALLS_EXAMPLE\`, \`quintet_kv_provider_calls_total\` from /metrics): cache on (defaults: 5m, 100000 uses, 1 GiB) **$CALLS_ON**; cache off (\`--kv-dek-max-uses 0\`) **$CALLS_OFF**."
    echo
    echo "<details><summary>Raw figures of every run</summary>"
    echo
    python3 - "$RECORDS" <<'EOF'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
rows.sort(key=lambda r: (int(r[2]), r[1] != "set", r[0], int(r[3])))
print("| Value (bytes) | Op | System | Run | Ops/s | p50 ms | p99 ms | MB/s | Errors | Requests | Server CPU per op |")
print("|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
for system, op, size, rep, ops, p50, p99, mb, errors, requests, server_us in rows:
    print(f"| {size} | {op} | {system} | {rep} | {ops} | {p50} | {p99} | {mb} | {errors} | {requests} | {server_us if server_us == '-' else server_us + ' µs'} |")
EOF
    echo
    echo "</details>"
} >"$RESULT_MD"
merge_section "$RESULT_MD" kv
log "wrote $RESULT_MD and BENCHMARKS.md"
cat "$RESULT_MD"
