#!/usr/bin/env bash
# calc service benchmark, in one run on one server:
#  (a) unary Add RPCs/s and latency at CONCURRENCY concurrent gRPC streams,
#      against the same server's grpc.health.v1.Health/Check at the same
#      concurrency (the floor of its gRPC stack), interleaved repeats, medians;
#  (b) NthPrimes wall time for each n of NTH, over gRPC (one RPC timed by
#      calc_load on a connection already open, the judged figure, and one
#      through `quintet calc nth-prime`, CLI start included) and in-process
#      (the example nth_prime_time),
#      against primecount (`primecount N --nth-prime`, the Debian package) with
#      its default threads and with --threads=1, interleaved repeats, medians;
#  (c) server startup: process start to /readyz 200 (and to the port
#      accepting), median over STARTS starts.
#
#   bash bench/calc.sh
#
# Environment (all optional):
#   DURATION=10s      length of one measured load-generator run
#   WARMUP=2s         unmeasured load before each measured run ("0" = none)
#   REPEATS=3         measured runs per op and per n; the table shows the median
#   CONCURRENCY=50    gRPC streams in flight
#   CONNECTIONS=4     HTTP/2 connections the streams share
#   NTH="1000000000 10000000000 100000000000"   the n asked of quintet and primecount
#   STARTS=5          server starts timed for the startup figure
#   KEEP_TMP=1        keep the temporary directory (data dirs, logs)
#
# Writes bench/results/calc.md, copies it into BENCHMARKS.md (section
# "## calc", other sections are kept), and keeps raw load-generator output,
# timings, server logs and /metrics dumps in bench/results/calc-raw/ (not committed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
REPEATS="${REPEATS:-3}"
CONCURRENCY="${CONCURRENCY:-50}"
CONNECTIONS="${CONNECTIONS:-4}"
NTH="${NTH:-1000000000 10000000000 100000000000}"
STARTS="${STARTS:-5}"
ADD_TARGET=0.95 # Add RPCs/s vs Health/Check RPCs/s
NTH_TARGET=1.5  # quintet's NthPrimes wall time (over gRPC) vs primecount's (default threads)
TIMEOUT=900s    # server --request-timeout and client --timeout: a 10^9 sieve must not be cut

RESULTS_DIR="$ROOT/bench/results"
RAW_DIR="$RESULTS_DIR/calc-raw"
RESULT_MD="$RESULTS_DIR/calc.md"

for n in REPEATS CONCURRENCY CONNECTIONS STARTS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer, not '${!n}'"
done
for n in $NTH; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "NTH must be positive integers, not '$n'"; done
DURATION_S="$(to_seconds "$DURATION")" || die "DURATION must look like 10s, 2m or 20, not '$DURATION'"
((DURATION_S > 0)) || die "DURATION must be longer than 0s"
if [[ $WARMUP == 0 ]]; then WARMUP_S=0; else WARMUP_S="$(to_seconds "$WARMUP")" || die "WARMUP must look like 2s or 0, not '$WARMUP'"; fi

# Known n-th primes, to check both programs' answers.
declare -A KNOWN=([100000000]=2038074743 [1000000000]=22801763489 [10000000000]=252097800623
    [100000000000]=2760727302517 [1000000000000]=29996224275833)

# ---------------------------------------------------------------- tools and build
need=()
command -v curl >/dev/null || need+=(curl)
command -v primecount >/dev/null || need+=(primecount)
command -v python3 >/dev/null || need+=(python3)
apt_install "${need[@]}"
command -v cargo >/dev/null || die "cargo is needed to build quintet"

BUILD_QUINTET=(cargo build --release --locked -p quintet)
BUILD_LOADGEN=(cargo build --release --locked -p quintet-calc --example calc_load --example nth_prime_time)
log "building: $(shell_join "${BUILD_QUINTET[@]}") && $(shell_join "${BUILD_LOADGEN[@]}")"
"${BUILD_QUINTET[@]}"
"${BUILD_LOADGEN[@]}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
GIT_REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n $(git status --porcelain --untracked-files=no -- . ':!bench' ':!BENCHMARKS.md' 2>/dev/null) ]]; then GIT_REV+=" (with uncommitted changes)"; fi
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED_AT="$(date -u '+%Y-%m-%d %H:%M UTC')"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/quintet-bench-calc.XXXXXX")"
rm -rf "$RAW_DIR"
mkdir -p "$RAW_DIR"
# Runs use copies, so a rebuild of target/ during the run cannot mix binaries.
QUINTET="$WORK/quintet"
LOADGEN="$WORK/calc_load"
cp "$TARGET_DIR/release/quintet" "$QUINTET"
cp "$TARGET_DIR/release/examples/calc_load" "$LOADGEN"
NTH_LOCAL="$WORK/nth_prime_time"
cp "$TARGET_DIR/release/examples/nth_prime_time" "$NTH_LOCAL"
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

CLK_TCK="$(getconf CLK_TCK)"
# utime + stime of a live pid, in clock ticks.
pid_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Busy ticks of the whole machine (user, nice, system, irq, softirq, steal).
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# CPU cores used by pid between two tick counts over a wall time in ns.
cores() { awk -v a="$1" -v b="$2" -v ns="$3" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz / (ns / 1e9) }'; }

# ---------------------------------------------------------------- quintet
MAX_NTH="$(printf '%s\n' $NTH | sort -n | tail -n 1)"
((MAX_NTH <= 1000000000000)) || die "NTH above 10^12 is beyond what calc answers (its MAX_N)"
QUINTET_ARGS=(serve --services calc --rate-limit 0 --request-timeout "$TIMEOUT" --calc-max-n "$MAX_NTH" --log-format json)
URL=""
start_quintet() { # name
    local name=$1
    pick_port
    local dir="$WORK/$name" logf="$RAW_DIR/$name.log"
    URL="http://127.0.0.1:$PORT"
    QUINTET_LOG=warn "$QUINTET" "${QUINTET_ARGS[@]}" --addr "127.0.0.1:$PORT" --data-dir "$dir" >"$logf" 2>&1 &
    SERVER_PID=$!
    wait_ready "$URL/readyz" "$SERVER_PID" quintet "$logf"
}
stop_server() {
    stop_pid "$SERVER_PID"
    SERVER_PID=""
}

RPC_TSV="$RAW_DIR/rpc.tsv" # op repeat ops_per_sec p50_ms p99_ms errors server_cores loadgen_cores other_cores requests server_us
NTH_TSV="$RAW_DIR/nth.tsv" # system n repeat seconds answer server_cores threads cpu_s
START_TSV="$RAW_DIR/startup.tsv" # start accept_ms ready_ms
: >"$RPC_TSV"
: >"$NTH_TSV"
: >"$START_TSV"

# ---------------------------------------------------------------- (a) Add vs Health/Check
LOADGEN_EXAMPLE=""
run_loadgen() { # op repeat
    local op=$1 rep=$2 out="$RAW_DIR/load-$1-$2.json"
    local cmd=("$LOADGEN" --url "$URL" --op "$op" --concurrency "$CONCURRENCY" --connections "$CONNECTIONS"
        --duration "${DURATION_S}s" --warmup "${WARMUP_S}s")
    LOADGEN_EXAMPLE="$(shell_join calc_load --url http://127.0.0.1:PORT) --op add|health $(shell_join "${cmd[@]:5}")"
    local s0 t0 t1 s1 m0 m1 usr sys t_end samples="$WORK/ticks-$op-$rep"
    s0="$(pid_ticks "$SERVER_PID")"
    m0="$(machine_ticks)"
    # The server's CPU is also sampled, for its CPU per RPC over the measured
    # stretch alone (the warm-up's RPCs are not counted).
    start_sampler "$SERVER_PID" "$samples"
    t0="$(date +%s%N)"
    # bash's `time` gives the load generator's own CPU (user, system).
    { TIMEFORMAT='%U %S' && time "${cmd[@]}" >"$out"; } 2>"$WORK/loadgen-time" || die "calc_load failed ($op)"
    t_end=${EPOCHREALTIME/[.,]/}
    t1="$(date +%s%N)"
    s1="$(pid_ticks "$SERVER_PID")"
    m1="$(machine_ticks)"
    stop_sampler
    read -r usr sys < <(tail -n 1 "$WORK/loadgen-time")
    local server_cores loadgen_cores other_cores
    server_cores="$(cores "$s0" "$s1" $((t1 - t0)))"
    loadgen_cores="$(awk -v u="$usr" -v s="$sys" -v ns=$((t1 - t0)) 'BEGIN { printf "%.2f", (u + s) / (ns / 1e9) }')"
    # What else kept the machine busy meanwhile (other processes on a shared machine).
    other_cores="$(awk -v m="$(cores "$m0" "$m1" $((t1 - t0)))" -v s="$server_cores" -v l="$loadgen_cores" 'BEGIN { o = m - s - l; printf "%.2f", (o < 0 ? 0 : o) }')"
    local requests seconds
    read -r requests seconds < <(python3 -c 'import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(r["requests"], r["seconds"])' "$out")
    python3 - "$out" "$op" "$rep" "$server_cores" "$loadgen_cores" "$other_cores" \
        "$(stretch_us "$samples" "$t_end" "$s1" "$seconds" "$requests")" >>"$RPC_TSV" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print("\t".join(map(str, [sys.argv[2], sys.argv[3], round(r["ops_per_sec"]), r["p50_ms"], r["p99_ms"],
    r["errors"], sys.argv[4], sys.argv[5], sys.argv[6], r["requests"], sys.argv[7]])))
if r["errors"]:
    print(f"calc_load: {r['errors']} errors, first: {r['first_error']}", file=sys.stderr)
EOF
    log "$(tail -n 1 "$RPC_TSV" | awk -F'\t' '{ printf "%-6s #%s: %8d RPC/s  p50 %.2f ms  p99 %.2f ms  errors %s  server %s cores (%s µs/RPC)  load generator %s cores  other %s cores", $1, $2, $3, $4, $5, $6, $7, $11, $8, $9 }')"
}

start_quintet calc
for rep in $(seq 1 "$REPEATS"); do
    # Alternate which op goes first, so a drift of the machine hits both alike.
    if ((rep % 2)); then ops=(add health); else ops=(health add); fi
    for op in "${ops[@]}"; do
        log "repeat $rep/$REPEATS: $op, $CONCURRENCY streams over $CONNECTIONS connections, ${DURATION_S}s"
        run_loadgen "$op" "$rep"
    done
done
curl -fsS "$URL/metrics" >"$RAW_DIR/metrics-rpc.txt" || true

# ---------------------------------------------------------------- (b) NthPrimes vs primecount
# One timed command: prints "seconds answer cpu_seconds" (wall time from fork
# to exit, ns clock; the command's own user + system CPU time, from bash's `time`).
time_cmd() { # out-file cmd...
    local out=$1 t0 t1 usr sys TIMEFORMAT='%3U %3S'
    shift
    t0="$(date +%s%N)"
    { time "$@" >"$out" 2>&1; } 2>"$out.time" || {
        cat "$out" >&2
        die "failed: $(shell_join "$@")"
    }
    t1="$(date +%s%N)"
    read -r usr sys <"$out.time"
    # The answer is the last word of the last line (nth_prime_time: "p=N").
    echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }') $(tail -n 1 "$out" | awk '{ w = $NF; sub(/^p=/, "", w); print w }') $(awk -v u="$usr" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')"
}
QUINTET_NTH_EXAMPLE="quintet calc nth-prime N --url http://127.0.0.1:PORT --timeout $TIMEOUT"
RPC_NTH_EXAMPLE="calc_load --url http://127.0.0.1:PORT --op nth-prime --n N"
LOCAL_NTH_EXAMPLE="nth_prime_time N"
PRIMECOUNT_EXAMPLE="primecount N --nth-prime"
PRIMECOUNT1_EXAMPLE="primecount N --nth-prime --threads=1"
record_nth() { # system n repeat cmd...
    local system=$1 n=$2 rep=$3 secs answer cpu s0 s1 t0 t1 server_cores="-" threads="-"
    local out="$RAW_DIR/nth-$system-$n-$rep.out"
    shift 3
    s0="$(pid_ticks "$SERVER_PID")"
    t0="$(date +%s%N)"
    # cpu: the process's own CPU time; for quintet over gRPC the CLI's, replaced below by the server's.
    read -r secs answer cpu < <(time_cmd "$out" "$@")
    t1="$(date +%s%N)"
    if [[ $system == quintet-rpc ]]; then
        # calc_load times the RPC itself, on a connection already open.
        read -r secs answer < <(python3 -c 'import json, sys; r = json.loads(open(sys.argv[1]).read().splitlines()[-1]); print("%.3f" % r["seconds"], r["answer"])' "$out")
    fi
    if [[ $system == quintet || $system == quintet-rpc ]]; then
        s1="$(pid_ticks "$SERVER_PID")"
        server_cores="$(cores "$s0" "$s1" $((t1 - t0)))"
        cpu="$(awk -v d=$((s1 - s0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')"
    elif [[ $system == primecount ]]; then
        threads="$(nproc)" # its default: every core
    elif [[ $system == primecount-1t ]]; then
        threads=1
    fi
    if [[ -n ${KNOWN[$n]:-} && $answer != "${KNOWN[$n]}" ]]; then
        die "$system answered $answer for n = $n; the $n-th prime is ${KNOWN[$n]}"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$system" "$n" "$rep" "$secs" "$answer" "$server_cores" "${threads:--}" "$cpu" >>"$NTH_TSV"
    if [[ $system == quintet* && $system != quintet-local ]]; then
        log "$(printf '%-13s n = %-11s #%s: %8.3f s  answer %s  server %s cores (%s s CPU)' "$system" "$n" "$rep" "$secs" "$answer" "$server_cores" "$cpu")"
    else
        log "$(printf '%-13s n = %-11s #%s: %8.3f s  answer %s  %s threads (%s s CPU)' "$system" "$n" "$rep" "$secs" "$answer" "$threads" "$cpu")"
    fi
}
for rep in $(seq 1 "$REPEATS"); do
    for n in $NTH; do
        record_nth quintet-rpc "$n" "$rep" "$LOADGEN" --url "$URL" --op nth-prime --n "$n"
        q=("$QUINTET" calc nth-prime "$n" --url "$URL" --timeout "$TIMEOUT")
        record_nth quintet "$n" "$rep" "${q[@]}"
        record_nth quintet-local "$n" "$rep" "$NTH_LOCAL" "$n"
        record_nth primecount "$n" "$rep" primecount "$n" --nth-prime
        record_nth primecount-1t "$n" "$rep" primecount "$n" --nth-prime --threads=1
    done
done
curl -fsS "$URL/metrics" >"$RAW_DIR/metrics-nth.txt" || true
stop_server
# Every system must have given the same answer for each n.
awk -F'\t' '{ a[$2] = a[$2] ? a[$2] : $5; if (a[$2] != $5) { print "answers differ for n = " $2 ": " a[$2] " and " $5; bad = 1 } } END { exit bad }' "$NTH_TSV" >&2 ||
    die "quintet and primecount disagree"

# ---------------------------------------------------------------- (c) startup
# Spawns the server and polls every 2 ms: the port accepting a connection,
# then GET /readyz answering 200. Prints "accept_ms ready_ms".
for i in $(seq 1 "$STARTS"); do
    pick_port
    python3 - "$PORT" "$RAW_DIR/startup-$i.log" "$QUINTET" "${QUINTET_ARGS[@]}" --addr "127.0.0.1:$PORT" --data-dir "$WORK/start-$i" >"$WORK/start.out" <<'EOF'
import http.client, os, socket, subprocess, sys, time
port, logf, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
env = dict(os.environ, QUINTET_LOG="warn")
with open(logf, "w") as log:
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    accept = ready = None
    while ready is None and time.monotonic() - t0 < 60 and p.poll() is None:
        if accept is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                accept = time.monotonic() - t0
            except OSError:
                pass
        if accept is not None:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    ready = time.monotonic() - t0
                c.close()
            except OSError:
                pass
        if ready is None:
            time.sleep(0.002)
    p.terminate()
    try:
        p.wait(40)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
if ready is None:
    sys.exit(f"quintet was not ready within 60s (see {logf})")
print(f"{accept * 1000:.1f} {ready * 1000:.1f}")
EOF
    read -r accept_ms ready_ms <"$WORK/start.out"
    printf '%s\t%s\t%s\n' "$i" "$accept_ms" "$ready_ms" >>"$START_TSV"
    log "start $i/$STARTS: port accepting after $accept_ms ms, /readyz 200 after $ready_ms ms"
done

# ---------------------------------------------------------------- report
mkdir -p "$RESULTS_DIR"
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
PRIMECOUNT_VERSION="$(primecount --version | awk 'NR == 1 { print $1, $2 }' | tr -d ',')"  # awk reads it all: no SIGPIPE under pipefail
{
    echo "## calc"
    echo
    echo "Written by \`bash bench/calc.sh\`; do not edit by hand."
    echo
    echo "- Date: $STARTED_AT; git $GIT_REV; release build"
    echo "- Machine: $(nproc) cores (${CPU_MODEL:-unknown CPU}), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
    echo "- Load average (1/5/15 min) before the run: $LOAD_BEFORE; after: $LOAD_AFTER"
    echo "- Server: \`$(shell_join quintet "${QUINTET_ARGS[@]}") --addr 127.0.0.1:PORT --data-dir DIR\` (QUINTET_LOG=warn, every other option at its default), one server for (a) and (b)"
    echo "- (a) load: \`$LOADGEN_EXAMPLE\` (crates/calc/examples/calc_load.rs, a tonic client on the same machine; \`--op health\` calls \`grpc.health.v1.Health/Check\` for \`quintet.calc.v1.Calculator\`); ${WARMUP_S}s warm-up then ${DURATION_S}s measured per run, $REPEATS run(s) per op, Add and Check interleaved; medians. CPU in cores = CPU time / wall time of the load generator's process (warm-up included); \"other\" is the rest of the machine's busy time (other processes)"
    echo "- (b) NthPrimes: over gRPC from a connected client, \`$RPC_NTH_EXAMPLE\` (one RPC on a connection that has answered a health check first, timed by the client from call to answer: what a service that keeps its channel sees), over gRPC from the CLI, \`$QUINTET_NTH_EXAMPLE\` (one RPC; the time includes the CLI's process start and connect), and in-process, \`$LOCAL_NTH_EXAMPLE\` (crates/calc/examples/nth_prime_time.rs, the same function the server calls), against $PRIMECOUNT_VERSION (Debian package; Deleglise–Rivat and Gourdon's algorithms): \`$PRIMECOUNT_EXAMPLE\` (its default: all cores) and \`$PRIMECOUNT1_EXAMPLE\`; wall time of each process, $REPEATS run(s) per n and program, interleaved; medians; answers checked against the known n-th primes and each other. The judged ratio is quintet over gRPC from a connected client to primecount's default (whose time includes its own process start)"
    echo "- (c) startup: process spawn to the port accepting and to \`GET /readyz\` 200, polled every 2 ms, $STARTS starts; median"
    echo "- Server CPU per RPC (a): the server's user + system CPU time (\`/proc/<pid>/stat\`) over calc_load's measured stretch (sampled every 50 ms, so the warm-up is left out) divided by the RPCs calc_load counted in it (its \`requests\`); median over the runs. CPU time per call (b): the server's CPU time over one NthPrimes call, and the process's own user + system time (bash's \`time\`) for the in-process run and primecount. Unlike RPCs/s and wall times they do not depend on how much of the $(nproc)-core machine the load generator and other tenants took (the server's Health/Check is the anchor of (a), so both rows are quintet's)."
    echo
    python3 - "$RPC_TSV" "$NTH_TSV" "$START_TSV" "$ADD_TARGET" "$NTH_TARGET" <<'EOF'
import statistics, sys
from collections import defaultdict
rpc, nth = defaultdict(list), defaultdict(list)
for line in open(sys.argv[1]):
    op, rep, ops, p50, p99, errors, scpu, lcpu, ocpu, requests, server_us = line.rstrip("\n").split("\t")
    rpc[op].append((float(ops), float(p50), float(p99), int(errors), float(scpu), float(lcpu), float(ocpu),
                    None if server_us == "-" else float(server_us)))
for line in open(sys.argv[2]):
    system, n, rep, secs, answer, scpu, threads, cpu = line.rstrip("\n").split("\t")
    nth[(system, int(n))].append((float(secs), answer, scpu, threads, float(cpu)))
starts = [line.rstrip("\n").split("\t") for line in open(sys.argv[3])]
add_t, nth_t = float(sys.argv[4]), float(sys.argv[5])
med = statistics.median
def med_us(r):
    v = [x[7] for x in r if x[7] is not None]
    return med(v) if v else None
def us(v):
    return "-" if v is None else f"{v:,.1f} µs"
def verdict(ok):
    return "met" if ok else "**missed**"
targets = []

print("### (a) unary RPCs at the same concurrency")
print()
print("| RPC | RPCs/s (median) | p50 ms | p99 ms | errors (all runs) | server CPU per RPC | server CPU (cores) | load generator CPU (cores) | other CPU (cores) | runs (RPCs/s) |")
print("|---|--:|--:|--:|--:|--:|--:|--:|--:|---|")
names = {"add": "`quintet.calc.v1.Calculator/Add`", "health": "`grpc.health.v1.Health/Check`"}
for op in ("add", "health"):
    if op not in rpc:
        continue
    r = rpc[op]
    print(f"| {names[op]} | {med(x[0] for x in r):,.0f} | {med(x[1] for x in r):.2f} | {med(x[2] for x in r):.2f} "
          f"| {sum(x[3] for x in r)} | {us(med_us(r))} | {med(x[4] for x in r):.2f} | {med(x[5] for x in r):.2f} | {med(x[6] for x in r):.2f} "
          f"| {', '.join(f'{x[0]:,.0f}' for x in r)} |")
print()
if "add" in rpc and "health" in rpc:
    a, h = med(x[0] for x in rpc["add"]), med(x[0] for x in rpc["health"])
    ratio = a / h
    print(f"Add / Check: **{ratio:.2f}×** RPCs/s; server CPU per RPC: Add {us(med_us(rpc['add']))}, "
          f"Check {us(med_us(rpc['health']))}.")
    print()
    targets.append(f"- Add ≥ {add_t:g}× Health/Check RPCs/s at the same concurrency: {ratio:.2f}× — {verdict(ratio >= add_t)}")

print("### (b) NthPrimes against primecount")
print()
print("| n | answer | quintet over gRPC, connected client, s | quintet over gRPC, CLI, s | quintet in-process, s | quintet server CPU time per call | primecount s, default (threads) | primecount s, --threads=1 | gRPC / primecount default | CLI / primecount default | in-process / primecount default | in-process / primecount 1 thread | runs (s): gRPC; CLI; in-process; primecount default; 1 thread |")
print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
for n in sorted({k[1] for k in nth}):
    r_, q, l, p, p1 = (nth.get((s_, n)) for s_ in ("quintet-rpc", "quintet", "quintet-local", "primecount", "primecount-1t"))
    if not r_ or not q or not l or not p or not p1:
        continue
    rs, qs, ls, ps, p1s = (med(x[0] for x in r) for r in (r_, q, l, p, p1))
    threads = "/".join(sorted({x[3] for x in p}))
    runs = "; ".join(", ".join(f"{x[0]:.3f}" for x in r) for r in (r_, q, l, p, p1))
    rcpu = med(x[4] for x in r_)
    print(f"| {n:,} | {int(r_[0][1]):,} | {rs:.3f} | {qs:.3f} | {ls:.3f} | {rcpu:.2f} s | {ps:.3f} ({threads}) | {p1s:.3f} "
          f"| {rs / ps:.1f}× | {qs / ps:.1f}× | {ls / ps:.1f}× | {ls / p1s:.1f}× | {runs} |")
    targets.append(f"- NthPrimes n = {n:,} within {nth_t:g}× primecount's time (its default, {threads} threads here), over gRPC from a connected client: {rs / ps:.2f}× — {verdict(rs / ps <= nth_t)} (from the CLI: {qs / ps:.1f}×; in-process: {ls / ps:.2f}×; in-process against `--threads=1`: {ls / p1s:.2f}×)")
print()

print("### (c) startup")
print()
if starts:
    acc, rdy = [float(s[1]) for s in starts], [float(s[2]) for s in starts]
    print(f"Process start to the port accepting: **{med(acc):.0f} ms**; to `/readyz` 200: **{med(rdy):.0f} ms** "
          f"(median of {len(starts)} starts; runs: {', '.join(f'{x:.0f}' for x in rdy)} ms).")
    print()
print("### Targets")
print()
print("\n".join(targets))
print()
print("<details><summary>Raw figures of every run</summary>")
print()
print("(a) CPU in cores over the whole load-generator run (warm-up included); server CPU per RPC over its measured stretch.")
print()
print("| RPC | Run | RPCs/s | p50 ms | p99 ms | Errors | RPCs | Server CPU per RPC | Server CPU (cores) | Load generator CPU (cores) | Other CPU (cores) |")
print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
for line in open(sys.argv[1]):
    op, rep, ops, p50, p99, errors, scpu, lcpu, ocpu, requests, server_us = line.rstrip("\n").split("\t")
    print(f"| {op} | {rep} | {ops} | {p50} | {p99} | {errors} | {requests} | {server_us if server_us == '-' else server_us + ' µs'} | {scpu} | {lcpu} | {ocpu} |")
print()
print("(b) CPU time: the server's for quintet over gRPC (quintet-rpc: the connected client; quintet: the CLI), the process's own for the in-process run and primecount.")
print()
print("| Program | n | Run | Wall s | Answer | CPU time | Server CPU (cores) | Threads |")
print("|---|--:|--:|--:|--:|--:|--:|--:|")
for line in open(sys.argv[2]):
    system, n, rep, secs, answer, scpu, threads, cpu = line.rstrip("\n").split("\t")
    print(f"| {system} | {n} | {rep} | {secs} | {answer} | {cpu} s | {scpu} | {threads} |")
print()
print("</details>")
EOF
} >"$RESULT_MD"
merge_section "$RESULT_MD" calc
log "wrote $RESULT_MD and BENCHMARKS.md"
cat "$RESULT_MD"
