#!/usr/bin/env bash
# receipts service end to end: jobs/s from the first job submitted to the
# last result posted, and p99 job latency (sent → result, from the server's
# quintet_receipts_job_seconds histogram), with `quintet apple-sim` answering
# after LATENCY (sandbox receipts: production answers 21007 first, so two
# round trips per job). Embedded queue and ledger (redb); and, when moto is
# installed, the same through SQS and DynamoDB on the moto emulator (the
# emulator is the bound there).
#
#   bash bench/receipts.sh
#
# Environment (all optional):
#   DURATION=10s        how long wrk submits jobs (POST /receipts/jobs, unique transactions)
#   REPEATS=3           runs per path; the table shows the median
#   LATENCY=50ms        apple-sim's added latency per answer
#   CONCURRENCY=1024    --receipts-concurrency (jobs in flight)
#   CONNECTIONS=50      wrk connections submitting jobs (2 threads)
#   MOTO=auto           auto: run the SQS + DynamoDB path when moto_server is on PATH; 0: skip it
#   MOTO_DURATION=3s    how long wrk submits jobs on that path (moto drains slowly)
#   KEEP_TMP=1          keep the temporary directory
#
# Writes bench/results/receipts.md and its section "## receipts" of BENCHMARKS.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION="${DURATION:-10s}"
REPEATS="${REPEATS:-3}"
LATENCY="${LATENCY:-50ms}"
CONCURRENCY="${CONCURRENCY:-1024}"
CONNECTIONS="${CONNECTIONS:-50}"
MOTO="${MOTO:-auto}"
MOTO_DURATION="${MOTO_DURATION:-3s}"
TARGET=2000 # jobs/s on the embedded path
JOB_LUA="bench/wrk/receipt-job.lua"
RESULTS_DIR="$ROOT/bench/results"
RAW_DIR="$RESULTS_DIR/receipts-raw"
RESULT_MD="$RESULTS_DIR/receipts.md"

for n in REPEATS CONCURRENCY CONNECTIONS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer, not '${!n}'"
done
DURATION_S="$(to_seconds "$DURATION")" || die "DURATION must look like 10s, not '$DURATION'"
MOTO_DURATION_S="$(to_seconds "$MOTO_DURATION")" || die "MOTO_DURATION must look like 3s, not '$MOTO_DURATION'"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
apt_install "${need[@]}"

BUILD=(cargo build --release --locked -p quintet)
log "building: $(shell_join "${BUILD[@]}")"
"${BUILD[@]}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
GIT_REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n $(git status --porcelain --untracked-files=no -- . ':!bench' ':!BENCHMARKS.md' 2>/dev/null) ]]; then GIT_REV+=" (with uncommitted changes)"; fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/quintet-bench-receipts.XXXXXX")"
rm -rf "$RAW_DIR"
mkdir -p "$RAW_DIR"
QUINTET="$WORK/quintet"
cp "$TARGET_DIR/release/quintet" "$QUINTET"
PIDS=()
cleanup() {
    local rc=$? pid
    trap - EXIT
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# apple-sim, shared by every run.
pick_port
SIM_URL="http://127.0.0.1:$PORT"
SIM_CMD=("$QUINTET" apple-sim --addr "127.0.0.1:$PORT" --latency "$LATENCY")
"${SIM_CMD[@]}" >"$RAW_DIR/apple-sim.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -fs -o /dev/null "$SIM_URL/sim/stats" && break; sleep 0.1; done

MOTO_URL=""
if [[ $MOTO != 0 ]] && command -v moto_server >/dev/null; then
    pick_port
    MOTO_URL="http://127.0.0.1:$PORT"
    moto_server -H 127.0.0.1 -p "$PORT" >"$RAW_DIR/moto.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do curl -fs -o /dev/null "$MOTO_URL/moto-api/" && break; sleep 0.2; done
fi

RECORDS="$RAW_DIR/records.tsv" # path repeat jobs seconds p99_job_s p99_processing_s submit_errors
: >"$RECORDS"

# Seconds (float) since the epoch.
now() { date +%s.%N; }

# p99 of a Prometheus histogram in a dump: the smallest bucket bound holding 99%.
p99() { # file metric
    awk -v m="$2_bucket" '
        index($1, m "{") == 1 {
            match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5)
            n[le] += $NF; if (le == "+Inf") total += $NF; else bounds[le] = 1
        }
        END {
            if (total == 0) { print "-"; exit }
            best = ""
            for (b in bounds) if (n[b] >= 0.99 * total && (best == "" || b + 0 < best + 0)) best = b
            print (best == "" ? "+Inf" : best)
        }' "$1"
}

SERVE_EXAMPLE=""
WRK_EXAMPLE=""
run_one() { # path repeat
    local path=$1 rep=$2 extra=() env=() seconds=$DURATION_S
    if [[ $path == sqs-dynamodb ]]; then
        seconds=$MOTO_DURATION_S
        extra=(--receipts-queue "sqs://?endpoint=$MOTO_URL&create=true"
            --receipts-ledger "dynamodb://ledger-$rep-$RANDOM?endpoint=$MOTO_URL&create=true")
        env=(AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1)
    fi
    pick_port
    local url="http://127.0.0.1:$PORT" logf="$RAW_DIR/$path-$rep.log"
    local cmd=("$QUINTET" serve --services receipts --addr "127.0.0.1:$PORT" --data-dir "$WORK/$path-$rep"
        --rate-limit 0 --log-format json --receipts-concurrency "$CONCURRENCY"
        --apple-production-url "$SIM_URL/verifyReceipt" --apple-sandbox-url "$SIM_URL/sandbox/verifyReceipt" "${extra[@]}")
    [[ $path == embedded ]] && SERVE_EXAMPLE="$(shell_join quintet "${cmd[@]:1}")"
    env QUINTET_LOG=warn "${env[@]}" "${cmd[@]}" >"$logf" 2>&1 &
    local pid=$!
    wait_ready "$url/readyz" "$pid" quintet "$logf"
    local wrk_cmd=(wrk -t2 -c"$CONNECTIONS" -d"${seconds}s" -s "$JOB_LUA" "$url" -- "$((rep * 10 + ${#path}))")
    [[ $path == embedded ]] && WRK_EXAMPLE="$(shell_join "${wrk_cmd[@]}")"
    local t0 t1 sent results=0 i w0 w1
    w0="$(io_write_bytes "$pid")"
    t0="$(now)"
    "${wrk_cmd[@]}" >"$RAW_DIR/$path-$rep.wrk" 2>&1 || die "wrk failed ($path)"
    curl -fsS "$url/metrics" >"$RAW_DIR/$path-$rep.metrics"
    sent="$(metric "$RAW_DIR/$path-$rep.metrics" quintet_receipts_http_requests_total 'route="/receipts/jobs"' 'status="202"')"
    if [[ $sent == 0 ]]; then sent="$(grep -o 'requests=[0-9]*' "$RAW_DIR/$path-$rep.wrk" | cut -d= -f2)"; fi
    # Wait for every submitted job's result.
    for ((i = 0; i < 3000; i++)); do
        curl -fsS "$url/metrics" >"$RAW_DIR/$path-$rep.metrics"
        results="$(metric "$RAW_DIR/$path-$rep.metrics" quintet_receipts_results_total)"
        ((results >= sent)) && break
        sleep 0.1
    done
    t1="$(now)"
    w1="$(io_write_bytes "$pid")"
    ((results >= sent)) || log "$path run $rep: only $results results for $sent jobs after 300 s"
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local errors
    errors="$(grep -o 'non2xx=[0-9]*' "$RAW_DIR/$path-$rep.wrk" | cut -d= -f2)"
    local written="-"
    [[ $w0 == - || $w1 == - ]] || written="$(per_request_bytes "$((w1 - w0))" "$results")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$path" "$rep" "$results" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" \
        "$(p99 "$RAW_DIR/$path-$rep.metrics" quintet_receipts_job_seconds)" \
        "$(p99 "$RAW_DIR/$path-$rep.metrics" quintet_receipts_processing_seconds)" "${errors:-0}" "$written" >>"$RECORDS"
}

PATHS=(embedded)
[[ -n $MOTO_URL ]] && PATHS+=(sqs-dynamodb)
for rep in $(seq 1 "$REPEATS"); do
    for path in "${PATHS[@]}"; do
        log "repeat $rep/$REPEATS: $path"
        run_one "$path" "$rep"
    done
done

mkdir -p "$RESULTS_DIR"
{
    echo "## receipts"
    echo
    echo "Written by \`bash bench/receipts.sh\` on $(date -u +%Y-%m-%d) (git $GIT_REV; $(nproc) cores; load average before the run $(cut -d' ' -f1-3 /proc/loadavg))."
    echo "Apple: \`$(shell_join quintet apple-sim --latency "$LATENCY")\` (each job: production answers 21007, then sandbox validates: two answers of $LATENCY). Server: \`$SERVE_EXAMPLE\` (the SQS + DynamoDB path adds \`--receipts-queue sqs://?endpoint=<moto>&create=true --receipts-ledger dynamodb://<table>?endpoint=<moto>&create=true\` and submits for $MOTO_DURATION). Jobs: \`$WRK_EXAMPLE\` (unique transactions; submission and processing overlap; the clock runs from the first submission to the last result). Bytes written per job: \`write_bytes\` of the server's \`/proc/<pid>/io\` from the first submission to the last result, divided by the results (the embedded queue, the posted results and the ledger). $REPEATS repeats, medians; a p99 is the smallest histogram bucket bound holding 99% of jobs (buckets up to 10 s; +Inf: over 10 s). wrk submits faster than jobs are processed, so a backlog builds and the sent → done latency mostly measures time waiting in the queue; received → done is the pipeline's own latency."
    echo
    python3 - "$RECORDS" "$TARGET" <<'EOF'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    path, rep, jobs, seconds, p99, p99_processing, errors, written = line.rstrip("\n").split("\t")
    rows[path].append((int(jobs), float(seconds), p99, int(errors), p99_processing, None if written == "-" else float(written)))
print("| path | jobs per run | seconds | jobs/s | p99 processing (received → done) | p99 job (sent → done, incl. backlog) | submit errors | bytes written per job |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for path, runs in rows.items():
    rates = [j / s for j, s, _, _, _, _ in runs if s > 0]
    written = [r[5] for r in runs if r[5] is not None]
    written = f"{statistics.median(written):,.0f} B" if written else "-"
    p99s = sorted(r[2] for r in runs)
    p99p = sorted(r[4] for r in runs)
    bound = lambda b: "> 10 s" if b == "+Inf" else f"≤ {b} s"
    print(f"| {path} | {statistics.median(r[0] for r in runs):,.0f} | {statistics.median(r[1] for r in runs):.1f} "
          f"| {statistics.median(rates):,.0f} | {bound(p99p[len(p99p) // 2])} | {bound(p99s[len(p99s) // 2])} | {sum(r[3] for r in runs)} | {written} |")
print()
if "embedded" in rows:
    rate = statistics.median(j / s for j, s, _, _, _, _ in rows["embedded"] if s > 0)
    verdict = "met" if rate >= float(sys.argv[2]) else "**missed**"
    print(f"Target: ≥ {sys.argv[2]} jobs/s on the embedded path: {rate:,.0f} jobs/s — {verdict}.")
EOF
    echo
    cat <<'EOF'
The SQS + DynamoDB path runs against moto, a Python emulator serving every call from one process: it answers tens of SQS/DynamoDB calls per second, so that row measures moto, not SQS, DynamoDB or quintet (real SQS and DynamoDB answer in single-digit milliseconds and scale out).
EOF
} >"$RESULT_MD"
merge_section "$RESULT_MD" receipts
log "wrote $RESULT_MD and BENCHMARKS.md"
cat "$RESULT_MD"
