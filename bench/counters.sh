#!/usr/bin/env bash
# Counters service (POST /increment) throughput and latency, measured with wrk
# on quintet (journal and memory durability, on redb and on PostgreSQL), against
# Redis INCRBY (redis-benchmark, without persistence and with appendfsync
# always) and a naive per-request PostgreSQL UPSERT (pgbench); and the memory
# of a quintet holding 1,000,000 distinct pending keys.
#
#   bash bench/counters.sh
#
# Environment (all optional):
#   DURATION=15s        length of one measured run (wrk -d, pgbench -T; redis-benchmark
#                       gets a request count that lasts about as long)
#   REPEATS=3           measured runs per scenario; the table shows the median
#   THREADS=2           wrk threads (and pgbench -j)
#   CONNECTIONS=50      connections of every load generator
#   KEYS=10000          distinct counter keys; every request picks one at random
#   WARMUP=3s           unmeasured load on each fresh server before its measured run ("0" = none)
#   WRK_TIMEOUT=10s     wrk's per-request timeout (a timed-out request counts as an error)
#   MEMORY_KEYS=1000000 distinct keys sent to the server whose memory is measured
#   PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres PG_DB=test
#                       the PostgreSQL server (trust authentication); every run gets a
#                       fresh schema there, dropped at the end of the run
#   KEEP_TMP=1          keep the temporary directory (data dirs, Redis files) for inspection
#
# Writes bench/results/counters.md, copies it into BENCHMARKS.md (section
# "## counters", other sections are kept), and keeps raw load-generator output,
# server logs and /metrics dumps in bench/results/counters-raw/ (not committed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION="${DURATION:-15s}"
REPEATS="${REPEATS:-3}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-50}"
KEYS="${KEYS:-10000}"
WARMUP="${WARMUP:-3s}"
WRK_TIMEOUT="${WRK_TIMEOUT:-10s}"
MEMORY_KEYS="${MEMORY_KEYS:-1000000}"
PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-5432}"
PG_USER="${PG_USER:-postgres}"
PG_DB="${PG_DB:-test}"
MEMORY_TARGET=0.8      # memory durability vs Redis without persistence
JOURNAL_TARGET=1.0     # journal durability vs Redis with appendfsync always
UPSERT_TARGET=4        # every quintet mode vs the per-request PostgreSQL UPSERT
RSS_TARGET_MB=200      # RSS with MEMORY_KEYS pending keys, in MB (10^6 bytes)
FLUSH_INTERVAL_DEFAULT=10s

RESULTS_DIR="$ROOT/bench/results"
RAW_DIR="$RESULTS_DIR/counters-raw"
RESULT_MD="$RESULTS_DIR/counters.md"
BENCH_MD="$ROOT/BENCHMARKS.md"
INCR_LUA="bench/wrk/incr.lua"
DISTINCT_LUA="bench/wrk/incr-distinct.lua"
UPSERT_SQL="bench/pgbench/upsert.sql"

[[ $REPEATS =~ ^[1-9][0-9]*$ ]] || die "REPEATS must be a positive integer, not '$REPEATS'"
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer, not '$THREADS'"
if ! [[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || ((CONNECTIONS < THREADS)); then die "CONNECTIONS must be an integer ≥ THREADS, not '$CONNECTIONS'"; fi
[[ $KEYS =~ ^[1-9][0-9]*$ ]] || die "KEYS must be a positive integer, not '$KEYS'"
[[ $MEMORY_KEYS =~ ^[1-9][0-9]*$ ]] || die "MEMORY_KEYS must be a positive integer, not '$MEMORY_KEYS'"
DURATION_S="$(to_seconds "$DURATION")" || die "DURATION must look like 15s, 2m or 20, not '$DURATION'"
((DURATION_S > 0)) || die "DURATION must be longer than 0s"
if [[ $WARMUP == 0 ]]; then WARMUP_S=0; else WARMUP_S="$(to_seconds "$WARMUP")" || die "WARMUP must look like 3s or 0, not '$WARMUP'"; fi
[[ -f $INCR_LUA && -f $DISTINCT_LUA && -f $UPSERT_SQL ]] || die "missing $INCR_LUA, $DISTINCT_LUA or $UPSERT_SQL"

# ---------------------------------------------------------------- tools
install_missing() {
    local need=()
    command -v wrk >/dev/null || need+=(wrk)
    command -v curl >/dev/null || need+=(curl)
    command -v redis-server >/dev/null || need+=(redis-server)
    command -v redis-benchmark >/dev/null && command -v redis-cli >/dev/null || need+=(redis-tools)
    command -v psql >/dev/null || need+=(postgresql-client)
    apt_install "${need[@]}"
}
install_missing
command -v cargo >/dev/null || die "cargo is needed to build quintet"

PSQL=(psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB")
pg() { "${PSQL[@]}" "$@"; }
pg -c 'SELECT 1' >/dev/null || die "PostgreSQL at $PG_HOST:$PG_PORT (user $PG_USER, database $PG_DB) is not reachable"
PG_MAJOR="$(pg -c 'SHOW server_version_num' | awk '{ print int($1 / 10000) }')"
# pgbench: /usr/bin/pgbench is postgresql-client-common's wrapper; on Debian 12
# the program itself ships with the server package (postgresql-15 has
# /usr/lib/postgresql/15/bin/pgbench), not with postgresql-client-15.
if ! pgbench --version >/dev/null 2>&1; then
    apt_install "postgresql-$PG_MAJOR"
    pgbench --version >/dev/null 2>&1 || die "pgbench still does not run after installing postgresql-$PG_MAJOR"
fi

log "building quintet (cargo build --release --locked -p quintet)"
cargo build --release --locked -p quintet
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
QUINTET="$TARGET_DIR/release/quintet"
[[ -x $QUINTET ]] || die "no binary at $QUINTET"
# The sources the binary was built from. Changes to the benchmark's own
# files (bench/, BENCHMARKS.md) do not count.
GIT_REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n $(git status --porcelain --untracked-files=no -- . ':!bench' ':!BENCHMARKS.md' 2>/dev/null) ]]; then GIT_REV+=" (with uncommitted changes)"; fi

# ---------------------------------------------------------------- processes and cleanup
WORK="$(mktemp -d "${TMPDIR:-/tmp}/quintet-bench.XXXXXX")"
rm -rf "$RAW_DIR"
mkdir -p "$RAW_DIR"
# Every server runs from this copy, so a rebuild of target/ while the
# benchmark runs cannot mix two binaries in one report.
QUINTET_RUN="$WORK/quintet"
cp "$QUINTET" "$QUINTET_RUN"
SERVER_PID=""  # the one server (quintet or redis-server) currently running
LOADGEN_PID="" # a load generator running in the background (memory test)
SCHEMAS=()     # PostgreSQL schemas made by this run and not dropped yet

drop_schema() {
    local s=$1 keep=() x
    pg -c "DROP SCHEMA IF EXISTS \"$s\" CASCADE" 2>/dev/null || log "could not drop schema $s"
    for x in "${SCHEMAS[@]}"; do [[ $x == "$s" ]] || keep+=("$x"); done
    SCHEMAS=("${keep[@]}")
}

cleanup() {
    local rc=$?
    trap - EXIT
    if [[ -n $LOADGEN_PID ]]; then
        kill -TERM "$LOADGEN_PID" 2>/dev/null || true
        wait "$LOADGEN_PID" 2>/dev/null || true
    fi
    [[ -z $SERVER_PID ]] || stop_pid "$SERVER_PID"
    local s
    for s in "${SCHEMAS[@]}"; do drop_schema "$s"; done
    if [[ ${KEEP_TMP:-0} == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

CLK_TCK="$(getconf CLK_TCK)"
# Sum of user+system CPU ticks of the given pids (gone pids count 0).
cpu_ticks() {
    local total=0 pid stat a
    for pid in "$@"; do
        stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
        stat="${stat##*) }"
        read -r -a a <<<"$stat"
        total=$((total + a[11] + a[12]))
    done
    echo "$total"
}

# Machine-wide busy and steal ticks: "busy steal" (busy includes steal).
machine_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $9; exit }' /proc/stat
}

# Pids whose parent is $1.
children_of() {
    local f stat a
    for f in /proc/[0-9]*/stat; do
        stat="$(cat "$f" 2>/dev/null)" || continue
        stat="${stat##*) }"
        read -r -a a <<<"$stat"
        if [[ ${a[1]} == "$1" ]]; then
            f="${f#/proc/}"
            echo "${f%/stat}"
        fi
    done
}

# kB of a /proc/<pid>/status field, summed over pids.
proc_kb() {
    local field=$1 total=0 pid v
    shift
    for pid in "$@"; do
        v="$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# PostgreSQL's CPU: the postmaster's own and reaped children's ticks plus
# those of its live children (backends that connect and exit during a run are
# counted once reaped). Only when this user can read postmaster.pid (the
# server runs on this machine); otherwise the column shows "-".
PG_POSTMASTER=""
pm_file="$(pg -c 'SHOW data_directory' 2>/dev/null)/postmaster.pid"
if [[ $PG_HOST == 127.0.0.1 || $PG_HOST == localhost ]] && [[ -r $pm_file ]]; then
    PG_POSTMASTER="$(head -n 1 "$pm_file")"
    [[ -r /proc/$PG_POSTMASTER/stat ]] || PG_POSTMASTER=""
fi
pg_ticks() {
    [[ -n $PG_POSTMASTER ]] || {
        echo -
        return 0
    }
    local stat a
    stat="$(cat "/proc/$PG_POSTMASTER/stat")"
    stat="${stat##*) }"
    read -r -a a <<<"$stat"
    # shellcheck disable=SC2046 # one pid per word
    echo $((a[11] + a[12] + a[13] + a[14] + $(cpu_ticks $(children_of "$PG_POSTMASTER"))))
}

# Begin/end of a measured stretch: wall clock, CPU of the server pids, of
# PostgreSQL and of the machine. cpu_end sets WALL_S and, in cores (CPU time /
# wall time), CPU_SERVER, CPU_PG ("-" when unknown), CPU_MACHINE and CPU_STEAL;
# and the ticks themselves, TICKS_SERVER and TICKS_PG ("-" when unknown), for
# the CPU time per request. Not to be called in a subshell.
CPU_T0="" CPU_S0="" CPU_P0="" CPU_M0="" WALL_S=""
CPU_SERVER="" CPU_PG="" CPU_MACHINE="" CPU_STEAL="" TICKS_SERVER="" TICKS_PG=""
cpu_begin() {
    CPU_S0="$(cpu_ticks "$@")"
    CPU_P0="$(pg_ticks)"
    CPU_M0="$(machine_ticks)"
    CPU_T0="$(date +%s%N)"
}
cpu_end() {
    local t1 s1 p1 m1
    t1="$(date +%s%N)"
    s1="$(cpu_ticks "$@")"
    p1="$(pg_ticks)"
    m1="$(machine_ticks)"
    WALL_S="$(awk -v a="$CPU_T0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')"
    TICKS_SERVER=$((s1 - CPU_S0))
    if [[ $CPU_P0 == - || $p1 == - ]]; then TICKS_PG=-; else TICKS_PG=$((p1 - CPU_P0)); fi
    read -r CPU_SERVER CPU_PG CPU_MACHINE CPU_STEAL < <(awk -v s0="$CPU_S0" -v s1="$s1" -v p0="$CPU_P0" -v p1="$p1" -v a="$CPU_M0" -v b="$m1" -v hz="$CLK_TCK" -v w="$WALL_S" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        pg = (p0 == "-" || p1 == "-") ? "-" : sprintf("%.2f", (p1 - p0) / hz / w)
        printf "%.2f %s %.2f %.2f\n", (s1 - s0) / hz / w, pg, (y[1] - x[1]) / hz / w, (y[2] - x[2]) / hz / w }')
}

# ---------------------------------------------------------------- quintet metrics
# "<status>×<count>" of POST /increment answers, from a /metrics dump (minus an earlier one).
answers() { # after_file [before_file]
    local after=$1 before=${2:-/dev/null}
    awk '
        /^quintet_counters_http_requests_total\{/ && index($0, "method=\"POST\"") && index($0, "route=\"/increment\"") {
            if (match($0, /status="[0-9]+"/)) c[substr($0, RSTART + 8, RLENGTH - 9)] += (FILENAME == b ? -$NF : $NF)
        }
        END { n = 0; for (s in c) if (c[s] > 0) { printf "%s%s×%d", (n++ ? " " : ""), s, c[s] } if (!n) printf "-" }
    ' b="$before" "$before" "$after" | tr ' ' '\n' | sort | paste -sd' ' -
}
dump_metrics() { curl -fsS --max-time 10 "$1/metrics" >"$2"; }

# Sum of every counter's value as the server lists them (GET /counters, all pages).
counters_sum() { # base_url
    local base=$1 cursor="" page total=0 values
    while :; do
        page="$(curl -fsS --max-time 30 "$base/counters?limit=1000${cursor:+&cursor=$cursor}")"
        values="$(grep -o '"value":-\{0,1\}[0-9]*' <<<"$page" | cut -d: -f2 | paste -sd+ - || true)"
        [[ -z $values ]] || total=$((total + values))
        cursor="$(grep -o '"next":"[^"]*"' <<<"$page" | cut -d'"' -f4 || true)"
        [[ -n $cursor ]] || break
    done
    echo "$total"
}

log_counts() { # logfile... → "E errors, W warnings (count × message, ...)"
    local e w what
    e="$(cat "$@" | grep -c '"level":"ERROR"' || true)"
    w="$(cat "$@" | grep -c '"level":"WARN"' || true)"
    what="$(cat "$@" | grep -E '"level":"(ERROR|WARN)"' | grep -o '"message":"[^"]*"' | cut -d'"' -f4 |
        sort | uniq -c | sort -rn | awk '{ n = $1; $1 = ""; printf "%s%d × \"%s\"", sep, n, substr($0, 2); sep = ", " }' || true)"
    echo "$e errors, $w warnings${what:+ ($what)}"
}

# ---------------------------------------------------------------- runs
RUNS_TSV="$RAW_DIR/runs.tsv"
printf 'scenario\trepeat\trps\tp50_us\tp99_us\trequests\terrors\tsocket_errors\tserver_cpu\tpg_cpu\tloadgen_cpu\tmachine_cpu\tsteal\tserver_rss_kb\tanswers\tsum\texpected\treceived\tstop_rc\twall_s\tjournal_commits\tflushes\tserver_us\tother_cpu\n' >"$RUNS_TSV"
declare -A CMDLINE SERVER_CMDLINE
declare -A REDIS_RATE # requests/s of the latest run, per Redis scenario

record() { # scenario repeat rps p50 p99 requests errors sock server_cpu pg_cpu loadgen_cpu machine steal rss answers sum expected received stop_rc wall commits flushes server_us
    local a=() x other
    for x in "$@"; do a+=("${x:--}"); done
    # Other CPU: the machine's busy time not spent by the server, PostgreSQL
    # (counted once for pgbench, where it is the server) or the load generator.
    other="$(awk -v m="${a[11]}" -v s="${a[8]}" -v p="${a[9]}" -v l="${a[10]}" -v u="$([[ $1 == upsert ]] && echo 1 || echo 0)" \
        'BEGIN { if (u) s = 0; o = m - s - (p == "-" ? 0 : p) - l; printf "%.2f", (o < 0 ? 0 : o) }')"
    set -- "${a[@]}" "$other"
    local IFS=$'\t'
    printf '%s\n' "$*" >>"$RUNS_TSV"
    log "$(printf '%-12s #%s: %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %s/%s  server CPU %s (%s µs/request)  PostgreSQL CPU %s  load CPU %s  machine %s (steal %s)  answers %s  sum %s of %s  exit %s' \
        "$1" "$2" "$3" "$(awk -v u="$4" 'BEGIN { print u / 1000 }')" "$(awk -v u="$5" 'BEGIN { print u / 1000 }')" \
        "$7" "$8" "$9" "${23}" "${10}" "${11}" "${12}" "${13}" "${15}" "${16}" "${17}" "${19}")  other CPU ${24}"
}

# wrk: prints the "BENCH ..." line's fields into the associative array W.
declare -A W
run_wrk() { # out_file duration script url args...
    local out=$1 duration=$2 script=$3 url=$4
    shift 4
    local cmd=(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --timeout "$WRK_TIMEOUT" --latency -s "$script" "$url" -- "$@")
    WRK_CMD="$(shell_join "${cmd[@]}")"
    local TIMEFORMAT='%3U %3S'
    if ! { time "${cmd[@]}" >"$out" 2>&1; } 2>"$WORK/loadgen-time"; then
        cat "$out" >&2
        die "wrk failed"
    fi
    local line kv
    line="$(grep '^BENCH ' "$out")" || {
        cat "$out" >&2
        die "no BENCH line in wrk output"
    }
    W=()
    for kv in ${line#BENCH }; do W[${kv%%=*}]=${kv#*=}; done
}
loadgen_cpu() { awk -v w="$WALL_S" '{ printf "%.2f", ($1 + $2) / w }' "$WORK/loadgen-time"; }

# One quintet run on a fresh server (fresh data dir; fresh schema on PostgreSQL).
run_quintet() { # scenario repeat
    local scenario=$1 rep=$2 durability store schema="" args=()
    durability="${scenario#*-}"
    store="${scenario%-*}"
    pick_port
    local workers=()
    # w1-*: redb with one runtime worker (--worker-threads 1), the rest as redb-*.
    [[ $store != w1 ]] || { store=redb workers=(--worker-threads 1); }
    local url="http://127.0.0.1:$PORT" dir="$WORK/$scenario-$rep" logf="$RAW_DIR/$scenario-$rep.log"
    args=(serve --services counters --addr "127.0.0.1:$PORT" --data-dir "$dir" --rate-limit 0)
    [[ $durability == journal ]] || args+=(--durability "$durability")
    args+=("${workers[@]}")
    if [[ $store == pg ]]; then
        schema="bench_counters_${scenario//-/_}_${rep}_$$_$RANDOM"
        pg -c "CREATE SCHEMA \"$schema\""
        SCHEMAS+=("$schema")
        args+=(--store "postgres://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB?options[search_path]=$schema")
    fi
    SERVER_CMDLINE[$scenario]="$(shell_join "$QUINTET" "${args[@]}")"
    "$QUINTET_RUN" "${args[@]}" >"$logf" 2>&1 &
    SERVER_PID=$!
    wait_ready "$url/readyz" "$SERVER_PID" "quintet ($scenario)" "$logf"

    # received: answers wrk read, warm-up and measured run together.
    local received=0
    if ((WARMUP_S > 0)); then
        run_wrk "$RAW_DIR/$scenario-$rep-warmup.txt" "$WARMUP" "$INCR_LUA" "$url" "$KEYS"
        received=$((received + W[requests]))
    fi
    dump_metrics "$url" "$WORK/before"
    cpu_begin "$SERVER_PID"
    run_wrk "$RAW_DIR/$scenario-$rep.txt" "$DURATION" "$INCR_LUA" "$url" "$KEYS"
    cpu_end "$SERVER_PID"
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        tail -n 20 "$logf" >&2 || true
        die "quintet ($scenario) exited during the measured run (log: $logf)"
    fi
    received=$((received + W[requests]))
    CMDLINE[$scenario]="$WRK_CMD"
    local rss
    rss="$(proc_kb VmRSS "$SERVER_PID")"
    # Let requests that were still under way when wrk closed its connections settle.
    sleep 0.5
    dump_metrics "$url" "$RAW_DIR/$scenario-$rep.metrics"
    local after="$RAW_DIR/$scenario-$rep.metrics" measured lifetime_200 commits flushes
    measured="$(answers "$after" "$WORK/before")"
    lifetime_200="$(metric "$after" quintet_counters_http_requests_total 'route="/increment"' 'status="200"')"
    commits=$(($(metric "$after" quintet_counters_journal_sync_seconds_count) - $(metric "$WORK/before" quintet_counters_journal_sync_seconds_count)))
    flushes=$(($(metric "$after" quintet_counters_flush_seconds_count) - $(metric "$WORK/before" quintet_counters_flush_seconds_count)))
    stop_pid "$SERVER_PID"
    SERVER_PID=""
    local rc=$STOP_RC sum
    if [[ $store == pg ]]; then
        # Every increment is +1: after the final flush the table must hold them all.
        sum="$(pg -c "SELECT coalesce(sum(value), 0) FROM \"$schema\".counters")"
        drop_schema "$schema"
    else
        # Start again on the same data dir and add up what it lists.
        pick_port
        local url2="http://127.0.0.1:$PORT" args2=("${args[@]}")
        args2[4]="127.0.0.1:$PORT"
        "$QUINTET_RUN" "${args2[@]}" >"$RAW_DIR/$scenario-$rep-restart.log" 2>&1 &
        SERVER_PID=$!
        wait_ready "$url2/readyz" "$SERVER_PID" "quintet ($scenario, restarted)" "$RAW_DIR/$scenario-$rep-restart.log"
        sum="$(counters_sum "$url2")"
        stop_pid "$SERVER_PID"
        SERVER_PID=""
        rc="$rc/$STOP_RC"
    fi
    local errors=${W[non2xx]} sock=$((W[connect_errors] + W[read_errors] + W[write_errors] + W[timeouts]))
    [[ $durability == journal ]] || commits="-"
    record "$scenario" "$rep" "$(printf '%.0f' "${W[rps]}")" "${W[p50_us]}" "${W[p99_us]}" "${W[requests]}" "$errors" "$sock" \
        "$CPU_SERVER" "$CPU_PG" "$(loadgen_cpu)" "$CPU_MACHINE" "$CPU_STEAL" "$rss" "$measured" "$sum" "$lifetime_200" "$received" \
        "$rc" "$WALL_S" "$commits" "$flushes" "$(per_request_us "$TICKS_SERVER" "${W[requests]}")"
    rm -rf "$dir"
}

# redis-benchmark: one INCRBY per request on a random key of KEYS, not pipelined.
# Fields of its CSV line into the array R (rps, p50_us, p99_us).
declare -A R
run_redis_benchmark() { # out_file port requests
    local out=$1 port=$2 n=$3
    local cmd=(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CONNECTIONS" -n "$n" -r "$KEYS" -P 1 --csv INCRBY key:__rand_int__ 1)
    REDIS_CMD="$(shell_join "${cmd[@]}")"
    local TIMEFORMAT='%3U %3S'
    if ! { time "${cmd[@]}" >"$out" 2>&1; } 2>"$WORK/loadgen-time"; then
        cat "$out" >&2
        die "redis-benchmark failed"
    fi
    local line
    line="$(grep '^"INCRBY' "$out" | tr -d '"')" || {
        cat "$out" >&2
        die "no INCRBY line in redis-benchmark output"
    }
    local rps p50 p99
    IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"$line"
    R=([rps]="$rps" [p50_us]="$(awk -v m="$p50" 'BEGIN { printf "%.0f", m * 1000 }')" [p99_us]="$(awk -v m="$p99" 'BEGIN { printf "%.0f", m * 1000 }')")
}

# One Redis run on a fresh redis-server (fresh directory).
run_redis() { # scenario repeat
    local scenario=$1 rep=$2 persist=()
    pick_port
    local port=$PORT dir="$WORK/$scenario-$rep" logf="$RAW_DIR/$scenario-$rep.log"
    mkdir -p "$dir"
    if [[ $scenario == redis-aof ]]; then
        persist=(--appendonly yes --appendfsync always)
    else
        persist=(--appendonly no)
    fi
    local args=(--bind 127.0.0.1 --port "$port" --save "" "${persist[@]}" --dir "$dir")
    SERVER_CMDLINE[$scenario]="$(shell_join redis-server "${args[@]}")"
    redis-server "${args[@]}" >"$logf" 2>&1 &
    SERVER_PID=$!
    wait_redis "$port" "$SERVER_PID" "$logf"

    # Request counts: from the rate of the previous run of this scenario (a
    # first calibration run of 20000 requests when there is none yet), so that
    # the warm-up lasts about WARMUP and the measured run about DURATION.
    local sent=0 n
    if [[ -z ${REDIS_RATE[$scenario]:-} ]]; then
        run_redis_benchmark "$RAW_DIR/$scenario-calibration.txt" "$port" 20000
        REDIS_RATE[$scenario]=${R[rps]}
        sent=$((sent + 20000))
    fi
    if ((WARMUP_S > 0)); then
        n="$(awk -v r="${REDIS_RATE[$scenario]}" -v s="$WARMUP_S" 'BEGIN { printf "%.0f", r * s }')"
        run_redis_benchmark "$RAW_DIR/$scenario-$rep-warmup.txt" "$port" "$n"
        sent=$((sent + n))
    fi
    n="$(awk -v r="${REDIS_RATE[$scenario]}" -v s="$DURATION_S" 'BEGIN { printf "%.0f", r * s }')"
    cpu_begin "$SERVER_PID"
    run_redis_benchmark "$RAW_DIR/$scenario-$rep.txt" "$port" "$n"
    cpu_end "$SERVER_PID"
    sent=$((sent + n))
    REDIS_RATE[$scenario]=${R[rps]}
    CMDLINE[$scenario]="$REDIS_CMD"
    local rss sum
    rss="$(proc_kb VmRSS "$SERVER_PID")"
    # Every INCRBY adds 1: the keys must add up to the requests sent.
    # shellcheck disable=SC2016 # Lua, not shell
    sum="$(redis-cli -h 127.0.0.1 -p "$port" EVAL 'local s = 0 for _, k in ipairs(redis.call("KEYS", "key:*")) do s = s + tonumber(redis.call("GET", k)) end return s' 0)"
    stop_pid "$SERVER_PID"
    SERVER_PID=""
    record "$scenario" "$rep" "$(printf '%.0f' "${R[rps]}")" "${R[p50_us]}" "${R[p99_us]}" "$n" - - \
        "$CPU_SERVER" - "$(loadgen_cpu)" "$CPU_MACHINE" "$CPU_STEAL" "$rss" - "$sum" "$sent" "$sent" "$STOP_RC" "$WALL_S" - - \
        "$(per_request_us "$TICKS_SERVER" "$n")"
    rm -rf "$dir"
}

# pgbench: fields of its report into the array P.
declare -A P
run_pgbench() { # out_file seconds schema [log_prefix]
    local out=$1 secs=$2 schema=$3 logp=${4:-}
    local cmd=(pgbench -n -c "$CONNECTIONS" -j "$THREADS" -T "$secs" -r -D "keys=$KEYS" -f "$UPSERT_SQL"
        -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER")
    [[ -z $logp ]] || cmd+=(--log --log-prefix="$logp")
    cmd+=("$PG_DB")
    PGBENCH_CMD="PGOPTIONS='-c search_path=<schema>' $(shell_join "${cmd[@]}")"
    local TIMEFORMAT='%3U %3S'
    if ! { time PGOPTIONS="-c search_path=$schema" "${cmd[@]}" >"$out" 2>&1; } 2>"$WORK/loadgen-time"; then
        cat "$out" >&2
        die "pgbench failed"
    fi
    P[processed]="$(awk -F': ' '/^number of transactions actually processed/ { split($2, a, "/"); print a[1] }' "$out")"
    P[failed]="$(awk -F': ' '/^number of failed transactions/ { split($2, a, " "); print a[1] }' "$out")"
    P[tps]="$(awk '/^tps = / { print $3 }' "$out")"
    P[avg_ms]="$(awk '/^latency average = / { print $4 }' "$out")"
    [[ -n ${P[processed]} && -n ${P[tps]} ]] || {
        cat "$out" >&2
        die "cannot read pgbench's report"
    }
    P[failed]=${P[failed]:-0}
}

# One pgbench run on a fresh schema holding an empty bench_counters table.
run_upsert() { # scenario repeat
    local scenario=$1 rep=$2 schema
    schema="bench_counters_upsert_${rep}_$$_$RANDOM"
    pg -c "CREATE SCHEMA \"$schema\"" \
        -c "CREATE TABLE \"$schema\".bench_counters (key text COLLATE \"C\" PRIMARY KEY, value bigint NOT NULL, updated_at timestamptz NOT NULL)"
    SCHEMAS+=("$schema")
    local sent=0
    if ((WARMUP_S > 0)); then
        run_pgbench "$RAW_DIR/$scenario-$rep-warmup.txt" "$WARMUP_S" "$schema"
        sent=$((sent + P[processed]))
    fi
    local logp="$WORK/pgbench-$rep"
    cpu_begin
    run_pgbench "$RAW_DIR/$scenario-$rep.txt" "$DURATION_S" "$schema" "$logp"
    cpu_end
    sent=$((sent + P[processed]))
    CMDLINE[$scenario]="$PGBENCH_CMD"
    # Exact latency percentiles from the per-transaction log (3rd field: µs).
    local p50 p99
    read -r p50 p99 < <(cat "$logp".* | awk '{ print $3 }' | sort -n | awk '{ a[NR] = $1 } END {
        i50 = int(NR * 0.50 + 0.999999); i99 = int(NR * 0.99 + 0.999999); print a[i50 < 1 ? 1 : i50], a[i99 < 1 ? 1 : i99] }')
    rm -f "$logp".*
    local sum
    sum="$(pg -c "SELECT coalesce(sum(value), 0) FROM \"$schema\".bench_counters")"
    drop_schema "$schema"
    record "$scenario" "$rep" "$(printf '%.0f' "${P[tps]}")" "$p50" "$p99" "${P[processed]}" "${P[failed]}" - \
        "$CPU_PG" "$CPU_PG" "$(loadgen_cpu)" "$CPU_MACHINE" "$CPU_STEAL" - - "$sum" "$sent" "$sent" - "$WALL_S" - - \
        "$(per_request_us "$TICKS_PG" "${P[processed]}")"
}

run_one() { # scenario repeat
    case $1 in
    redis | redis-aof) run_redis "$@" ;;
    upsert) run_upsert "$@" ;;
    *) run_quintet "$@" ;;
    esac
}

ANCHORS=(redis redis-aof upsert)
QUINTETS=(redb-journal redb-memory pg-journal pg-memory w1-journal w1-memory)
SCENARIOS=("${ANCHORS[@]}" "${QUINTETS[@]}")
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED_AT="$(date -u '+%Y-%m-%d %H:%M UTC')"
# Repeats are interleaved (every scenario once, then again) so that noise from
# other load on the machine spreads over all scenarios instead of hitting one.
for ((rep = 1; rep <= REPEATS; rep++)); do
    for scenario in "${SCENARIOS[@]}"; do run_one "$scenario" "$rep"; done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- memory with MEMORY_KEYS pending keys
MEM_TSV="$RAW_DIR/memory.tsv"
printf 'durability\tsent\tanswers\tpending_keys\tincrements\tidle_rss_kb\trss_kb\thwm_kb\tload_s\tjournal_kb\tstop_rc\tstop_s\n' >"$MEM_TSV"
declare -A MEM_CMDLINE
MEM_WRK_CMD=""

memory_run() { # durability
    local durability=$1
    pick_port
    local url="http://127.0.0.1:$PORT" dir="$WORK/memory-$durability" logf="$RAW_DIR/memory-$durability.log"
    local args=(serve --services counters --addr "127.0.0.1:$PORT" --data-dir "$dir" --durability "$durability"
        --flush-interval 1h --flush-max-keys 2000000 --max-pending-keys 2000000 --rate-limit 0)
    MEM_CMDLINE[$durability]="$(shell_join "$QUINTET" "${args[@]}")"
    "$QUINTET_RUN" "${args[@]}" >"$logf" 2>&1 &
    SERVER_PID=$!
    wait_ready "$url/readyz" "$SERVER_PID" "quintet (memory test, $durability)" "$logf"
    local idle_rss
    idle_rss="$(proc_kb VmRSS "$SERVER_PID")"

    # wrk sends every key once, then idles; it is interrupted once the server
    # has answered all of them.
    local out="$RAW_DIR/memory-$durability-wrk.txt"
    local cmd=(wrk -t"$THREADS" -c"$CONNECTIONS" -d3600s --timeout 60s --latency -s "$DISTINCT_LUA" "$url" -- "$MEMORY_KEYS" "$THREADS")
    MEM_WRK_CMD="$(shell_join "${cmd[@]}")"
    log "memory test ($durability): sending $MEMORY_KEYS increments to distinct keys"
    local t0 t1 done_n=0 last=-1 still=0
    t0="$(date +%s%N)"
    "${cmd[@]}" >"$out" 2>&1 &
    LOADGEN_PID=$!
    while :; do
        sleep 0.5
        dump_metrics "$url" "$WORK/mem-metrics"
        done_n="$(metric "$WORK/mem-metrics" quintet_counters_http_requests_total 'route="/increment"')"
        ((done_n < MEMORY_KEYS)) || break
        kill -0 "$LOADGEN_PID" 2>/dev/null || {
            cat "$out" >&2
            die "wrk stopped after $done_n of $MEMORY_KEYS answers"
        }
        if ((done_n == last)); then still=$((still + 1)); else still=0; fi
        ((still < 120)) || die "no progress for 60s at $done_n of $MEMORY_KEYS answers"
        last=$done_n
    done
    t1="$(date +%s%N)"
    kill -INT "$LOADGEN_PID" 2>/dev/null || true
    wait "$LOADGEN_PID" 2>/dev/null || true
    LOADGEN_PID=""
    sleep 1
    dump_metrics "$url" "$RAW_DIR/memory-$durability.metrics"
    local m="$RAW_DIR/memory-$durability.metrics" sent ok pending incs rss hwm journal_kb
    sent="$(grep -o 'sent=[0-9]*' "$out" | cut -d= -f2 || true)"
    ok="$(metric "$m" quintet_counters_http_requests_total 'route="/increment"' 'status="200"')"
    pending="$(metric "$m" quintet_counters_pending_keys)"
    incs="$(metric "$m" quintet_counters_increments_total)"
    rss="$(proc_kb VmRSS "$SERVER_PID")"
    hwm="$(proc_kb VmHWM "$SERVER_PID")"
    journal_kb="$(du -sk "$dir/counters-journal" 2>/dev/null | cut -f1 || echo 0)"
    log "memory test ($durability): answers $(answers "$m"), pending keys $pending, VmRSS $rss kB, VmHWM $hwm kB; stopping (final flush of $pending keys)"
    stop_pid "$SERVER_PID" 600
    SERVER_PID=""
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$durability" "${sent:--}" "$ok" "$pending" "$incs" "$idle_rss" "$rss" "$hwm" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')" "$journal_kb" "$STOP_RC" "$STOP_S" >>"$MEM_TSV"
    rm -rf "$dir"
}
memory_run memory
memory_run journal

# ---------------------------------------------------------------- report
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k * 1024 / 1e6 }'; }
ms() { awk -v u="$1" 'BEGIN { printf "%.2f ms", u / 1000 }'; }
us() { if [[ $1 == - ]]; then echo -; else awk -v u="$1" 'BEGIN { printf "%.1f µs", u }'; fi; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { # scenario column → values, one per line
    awk -F'\t' -v s="$1" -v c="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next } $1 == s { print $k }' "$RUNS_TSV"
}
sum_col() { col "$@" | awk '{ t += $1 } END { print t + 0 }'; }
median_col() { # "-" when the column has no figures
    local v
    v="$(col "$1" "$2" | grep -v '^-$' || true)"
    if [[ -z $v ]]; then echo -; else median <<<"$v"; fi
}
mcol() { awk -F'\t' -v d="$1" -v c="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next } $1 == d { print $k }' "$MEM_TSV"; }

QUINTET_VERSION="$("$QUINTET_RUN" --version)"
REDIS_VERSION="$(redis-server --version | awk '{ print $1, $2, $3 }')"
PGBENCH_VERSION="$(pgbench --version)"
PG_VERSION="$(pg -c 'SELECT version()' | awk '{ print $1, $2 }')"
PG_SETTINGS="$(pg -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'wal_sync_method', 'max_connections')")"
WRK_VERSION="$(wrk -v 2>&1 | head -n 1 | sed 's/ Copyright.*//' || true)"
RUSTC_VERSION="$(rustc --version 2>/dev/null || echo unknown)"
CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
MEM_TOTAL="$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
OS_NAME="$( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null || echo unknown)"
FS_TYPE="$(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $2 }')"

declare -A RPS P50 P99
for scenario in "${SCENARIOS[@]}"; do
    RPS[$scenario]="$(col "$scenario" rps | median)"
    P50[$scenario]="$(col "$scenario" p50_us | median)"
    P99[$scenario]="$(col "$scenario" p99_us | median)"
done

scenario_name() {
    case $1 in
    redis) echo "Redis INCRBY, no persistence (anchor)" ;;
    redis-aof) echo "Redis INCRBY, AOF appendfsync always (anchor)" ;;
    upsert) echo "PostgreSQL UPSERT per request, pgbench (anchor)" ;;
    redb-journal) echo "quintet, journal durability, redb" ;;
    redb-memory) echo "quintet, memory durability, redb" ;;
    pg-journal) echo "quintet, journal durability, PostgreSQL" ;;
    pg-memory) echo "quintet, memory durability, PostgreSQL" ;;
    w1-journal) echo "quintet, journal durability, redb, \`--worker-threads 1\`" ;;
    w1-memory) echo "quintet, memory durability, redb, \`--worker-threads 1\`" ;;
    esac
}

ALL_PASS=1
# "ratio×|≥ target×|result" for quintet's median against an anchor's (run in a
# subshell: the caller clears ALL_PASS on a FAIL).
verdict() { # scenario anchor target
    local ratio
    ratio="$(awk -v a="${RPS[$1]}" -v b="${RPS[$2]}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
    if awk -v r="$ratio" -v t="$3" 'BEGIN { exit !(r >= t) }'; then
        echo "${ratio}×|≥ ${3}×|pass"
    else
        echo "${ratio}×|≥ ${3}×|**FAIL**"
    fi
}

# Every request adds 1. "exact in n of n runs" when every run's sum equals
# what was acknowledged (A); a sum above A is no loss as long as the excess
# fits in the requests the load generator abandoned when it closed its
# connections (at most CONNECTIONS per closing: warm-up and measured run).
CUT_LIMIT=$(((WARMUP_S > 0 ? 2 : 1) * CONNECTIONS))
sum_checks() { # scenario
    awk -F'\t' -v s="$1" -v limit="$CUT_LIMIT" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
        $1 == s {
            n++; S = $c["sum"]; A = $c["expected"]; C = $c["received"]
            if (S == A) { exact++; extra = extra (extra == "" ? "" : ", ") "0"; next }
            if (S > A && S - C <= limit) { over++; extra = extra (extra == "" ? "" : ", ") "+" (S - A); next }
            bad = bad sprintf("%srun %s: sum %s, acknowledged %s", (bad ? ", " : ""), $c["repeat"], S, A)
        }
        END {
            if (bad) printf "**FAIL** (%s)", bad
            else if (!over) printf "exact in %d of %d runs", exact, n
            else printf "no acknowledged increment lost in %d of %d runs; sum − 200 answers: %s", exact + over, n, extra
        }' "$RUNS_TSV"
}

{
    echo "## counters"
    echo
    echo "Throughput and latency of the counters service (\`POST /increment\`, \`quintet serve --services counters\`) under wrk,"
    echo "against Redis \`INCRBY\` (redis-benchmark) and a per-request PostgreSQL UPSERT (pgbench) on the same machine,"
    echo "at the same concurrency; and the memory of a server holding $MEMORY_KEYS distinct pending keys."
    echo "Written by \`bash bench/counters.sh\`; do not edit by hand."
    echo
    echo "- Date: $STARTED_AT"
    echo "- Machine: $(nproc) CPUs ($CPU_MODEL), $MEM_TOTAL RAM, Linux $(uname -r), $OS_NAME; data directories on $FS_TYPE"
    echo "- Load average (1/5/15 min) before the runs: $LOAD_BEFORE; after: $LOAD_AFTER"
    echo "- Versions: \`$QUINTET_VERSION\` (git $GIT_REV, release build, $RUSTC_VERSION), \`$WRK_VERSION\`, $REDIS_VERSION (redis-server and redis-benchmark), $PG_VERSION ($PG_SETTINGS), \`$PGBENCH_VERSION\`"
    echo "- Load: $CONNECTIONS connections for every load generator (wrk with $THREADS threads, pgbench with $THREADS threads, redis-benchmark with its one), one request per connection at a time (no pipelining), keys picked at random among $KEYS; $DURATION per measured run, $REPEATS runs per scenario (interleaved), each on a fresh server after ${WARMUP} of unmeasured warm-up load on it; figures are the median of the runs"
    echo
    echo "### Results"
    echo
    echo "| Scenario | Requests/s (median) | p50 | p99 | Ratio to Redis | Target | Result | Ratio to PostgreSQL UPSERT | Target | Result | Errors / socket errors | Sum check | Server CPU per request | Server CPU (cores) | PostgreSQL CPU (cores) | Load generator CPU (cores) | Other CPU (cores) |"
    echo "|---|--:|--:|--:|--:|--:|---|--:|--:|---|--:|---|--:|--:|--:|--:|--:|"
    for scenario in "${SCENARIOS[@]}"; do
        redis_cells="-|-|-" upsert_cells="-|-|-"
        case $scenario in
        *-memory) redis_cells="$(verdict "$scenario" redis "$MEMORY_TARGET")" ;;
        *-journal) redis_cells="$(verdict "$scenario" redis-aof "$JOURNAL_TARGET")" ;;
        esac
        [[ $redis_cells != *FAIL* ]] || ALL_PASS=0
        case $scenario in
        redb-* | pg-* | w1-*) upsert_cells="$(verdict "$scenario" upsert "$UPSERT_TARGET")" ;;
        esac
        [[ $upsert_cells != *FAIL* ]] || ALL_PASS=0
        errs="$(sum_col "$scenario" errors) / $(sum_col "$scenario" socket_errors)"
        [[ $scenario != redis* ]] || errs="- / -"
        [[ $scenario != upsert ]] || errs="$(sum_col "$scenario" errors) failed / -"
        printf '| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
            "$(scenario_name "$scenario")" "${RPS[$scenario]}" "$(ms "${P50[$scenario]}")" "$(ms "${P99[$scenario]}")" \
            "${redis_cells//|/ | }" "${upsert_cells//|/ | }" "$errs" "$(sum_checks "$scenario")" \
            "$(us "$(median_col "$scenario" server_us)")" "$(median_col "$scenario" server_cpu)" "$(median_col "$scenario" pg_cpu)" "$(median_col "$scenario" loadgen_cpu)" "$(median_col "$scenario" other_cpu)"
    done
    echo
    echo "Memory of one server holding $MEMORY_KEYS distinct pending keys (redb store, nothing flushed yet):"
    echo
    echo "| Durability | Increments sent / answered 200 | Pending keys (gauge) | RSS idle | VmRSS | VmHWM | Target | Result | Load time | Journal on disk | Stop (final flush) |"
    echo "|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|"
    for durability in memory journal; do
        rss="$(mcol "$durability" rss_kb)" hwm="$(mcol "$durability" hwm_kb)"
        pending="$(mcol "$durability" pending_keys)" ok="$(mcol "$durability" answers)"
        if [[ $pending != "$MEMORY_KEYS" || $ok != "$MEMORY_KEYS" ]]; then
            result="**FAIL** (not $MEMORY_KEYS keys pending)"
            ALL_PASS=0
        elif awk -v k="$rss" -v t="$RSS_TARGET_MB" 'BEGIN { exit !(k * 1024 <= t * 1e6) }'; then
            result="pass"
        else
            result="**FAIL**"
            ALL_PASS=0
        fi
        load_s="$(mcol "$durability" load_s)"
        printf '| %s | %s / %s | %s | %s | %s (%s) | %s (%s) | ≤ %s MB | %s | %s s (%s req/s) | %s | %s s, exit %s |\n' \
            "$durability" "$(mcol "$durability" sent)" "$ok" "$pending" "$(mib "$(mcol "$durability" idle_rss_kb)")" \
            "$(mib "$rss")" "$(mb "$rss")" "$(mib "$hwm")" "$(mb "$hwm")" "$RSS_TARGET_MB" "$result" \
            "$load_s" "$(awk -v n="$ok" -v s="$load_s" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')" \
            "$(mib "$(mcol "$durability" journal_kb)")" "$(mcol "$durability" stop_s)" "$(mcol "$durability" stop_rc)"
    done
    echo
    if [[ $ALL_PASS == 1 ]]; then echo "All targets met."; else echo "Not all targets met (see **FAIL** rows)."; fi
    echo
    echo "How to read it:"
    echo
    echo "- Targets: memory durability ≥ ${MEMORY_TARGET}× Redis without persistence; journal durability ≥ ${JOURNAL_TARGET}× Redis with \`appendfsync always\` (both acknowledge only what is fsynced); every quintet mode ≥ ${UPSERT_TARGET}× the per-request PostgreSQL UPSERT; RSS with $MEMORY_KEYS pending keys ≤ ${RSS_TARGET_MB} MB (10^6 bytes). Ratios divide medians of requests/s (for pgbench: transactions/s, one UPSERT each)."
    echo "- p50/p99: wrk's latency percentiles (\`--latency\`), redis-benchmark's own percentiles, and for pgbench exact percentiles of the per-transaction log (\`--log\`), all of the measured run; median over the runs."
    echo "- Errors / socket errors: summed over the measured runs; for quintet wrk's non-2xx answers and its connect, read, write errors and timeouts; for pgbench failed transactions; redis-benchmark reports none."
    echo "- Sum check: every request adds 1, so after each run the totals must add up to what was acknowledged (warm-up and measured run together). quintet on PostgreSQL: \`SELECT sum(value) FROM <schema>.counters\` after the server stopped on SIGTERM (its final flush) against the server's own count of 200 answers to \`POST /increment\` (from \`/metrics\`, \`quintet_counters_http_requests_total{method=\"POST\",route=\"/increment\",status=\"200\"}\`). quintet on redb: the server is started again on the same data directory and the values it lists (\`GET /counters\`, every page) are added up. Redis: the values of all keys (one \`EVAL\`) against the requests redis-benchmark sent. pgbench: \`sum(value)\` against the transactions it processed. wrk ends a run by closing its connections with up to one request under way on each; with journal durability quintet applies an increment in memory and hands it to the journal before it waits for the fsync, so a request cut off there is applied and journaled but never answered, and the server's metrics do not count it (a dropped request gets no status). Such a run has a sum above the 200 answers; it counts as no loss when the sum is at least the 200 answers and exceeds the answers wrk read by at most $CUT_LIMIT (one per connection at the end of the warm-up and of the measured run). The raw figures give sum / acknowledged / answers read by the load generator."
    echo "- Server CPU per request: the server's user + system CPU time over a measured run (\`/proc/<pid>/stat\`; for pgbench PostgreSQL's, the postmaster and all its children, \"-\" when PostgreSQL runs elsewhere) divided by the requests the load generator counted in it (wrk's requests, redis-benchmark's \`-n\`, pgbench's transactions processed); median over the runs. Unlike requests/s it does not depend on how much of the $(nproc)-core machine the load generator and other tenants took. For quintet on PostgreSQL it is quintet's own share; what its flushes cost PostgreSQL is in the PostgreSQL CPU column."
    echo "- Server CPU: CPU time of the server process during the measured run divided by its wall time (for pgbench that is PostgreSQL). PostgreSQL CPU: the postmaster and all its children (backends, WAL writer, checkpointer); for the quintet rows on PostgreSQL it is what the flushes cost. Load generator CPU: wrk, redis-benchmark (one thread) or pgbench. Other CPU: the machine's busy time (including steal) minus all of those, i.e. load from other tenants, plus kernel threads working for the run itself (the file system's journal behind every fsync shows up here, hence 0.1–0.2 cores in the fsyncing scenarios); a run with a much higher figure was slowed by other load. The machine has $(nproc) cores in all, shared by the load generator, the servers and that other load."
    echo "- Memory: \`VmRSS\` and \`VmHWM\` from \`/proc/<pid>/status\` one second after the last of the $MEMORY_KEYS increments was answered; \"RSS idle\" is \`VmRSS\` of the same server before the load. Pending keys is the server's \`quintet_counters_pending_keys\` gauge. Stop is the time from SIGTERM to exit, which includes flushing all $MEMORY_KEYS keys to redb in one batch."
    echo
    echo "### Setup"
    echo
    echo "- The load generators run on the same $(nproc)-core machine as the servers and take a share of its CPU (Load generator CPU column); redis-benchmark is one thread, so a figure near 1.00 there means it, not Redis, sets the pace, and the Redis anchors are then lower than Redis alone could do. The machine is shared and noisy (see Other CPU, and Machine CPU and Steal in the raw figures): runs are interleaved and summarised by their median to damp that."
    echo "- Every run starts its own server: quintet (from a copy of the binary taken right after the build, so that a rebuild during the benchmark cannot mix two binaries) on a free loopback port with a fresh \`--data-dir\` (and, on PostgreSQL, a fresh schema, created with psql before and dropped after the run); redis-server with a fresh \`--dir\`; pgbench gets a fresh schema with an empty \`bench_counters\` table. The warm-up load (${WARMUP}) then creates the $KEYS keys, so the measured run updates existing keys only. After the measured run quintet and redis-server are stopped with SIGTERM and their exit status checked (column stop_rc below; \"0/0\" for redb is the run and the restart for the sum check)."
    echo "- quintet: \`--services counters --rate-limit 0\` (at the default rate limit, 1000 requests/s per client, the load generator, one client on one address, would mostly get 429s), default \`--flush-interval $FLUSH_INTERVAL_DEFAULT\` and \`--flush-max-keys\` (100000), so pending increments reach the store about once or twice per measured run and once more at SIGTERM; default store redb in the data directory, or \`--store postgres://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB?options[search_path]=<schema>\`. Journal durability answers after the increment is in its group-committed, fsynced local journal; memory durability answers at once."
    echo "- wrk: \`$INCR_LUA\` POSTs \`{\"key\":\"k<n>\",\"value\":1}\` as application/json, n random in 0..$((KEYS - 1)), the $KEYS requests formatted once per thread."
    echo "- Redis: \`--save \"\"\` and \`--appendonly no\` (nothing written), or \`--appendonly yes --appendfsync always\` (the AOF fsynced before answers, one fsync per event-loop round). redis-benchmark runs a number of requests, not a time: each run gets the rate of the previous run of the same scenario times ${DURATION_S}s (a first, unmeasured calibration run of 20000 requests sets the first rate), so runs last about $DURATION; see the wall time below. It is one thread, \`-P 1\` (no pipelining), \`-r $KEYS\` random keys \`key:<12 digits>\`."
    echo "- pgbench: \`$UPSERT_SQL\`, one \`INSERT ... ON CONFLICT (key) DO UPDATE SET value = bench_counters.value + 1\` per transaction in autocommit, ${CONNECTIONS} connections and ${THREADS} threads, the table in a fresh schema (\`PGOPTIONS='-c search_path=<schema>'\`), columns as quintet's \`counters\` table. That is the naive design quintet's write-behind replaces: one durable commit per request."
    echo "- Memory test: \`$DISTINCT_LUA\` sends \`{\"key\":\"m<n>\",\"value\":1}\` once for each n in 0..$((MEMORY_KEYS - 1)) and then idles; the script reads the server's \`/metrics\` every 0.5 s and interrupts wrk once all $MEMORY_KEYS are answered. \`--flush-interval 1h --flush-max-keys 2000000\` keep them all pending, \`--max-pending-keys 2000000\` lets them in."
    echo "- Exit status after SIGTERM (every run; for quintet on redb also the restart for the sum check): $(for s in redis redis-aof "${QUINTETS[@]}"; do printf '%s %s; ' "$s" "$(col "$s" stop_rc | sort | uniq -c | awk '{ printf "%s%s × %s", sep, $2, $1; sep = ", " }')"; done)memory test $(awk -F'\t' 'NR > 1 { printf "%s%s %s", sep, $1, $(NF - 1); sep = ", " }' "$MEM_TSV")."
    echo "- Server logs after the runs: $(for s in "${QUINTETS[@]}"; do printf '%s %s; ' "$s" "$(log_counts "$RAW_DIR/$s"-[0-9]*.log)"; done)memory test $(log_counts "$RAW_DIR"/memory-*.log)."
    echo
    echo "### Commands"
    echo
    echo "Ports, temporary directories, schemas and redis-benchmark's request counts (\`-n\`) differ from run to run."
    echo
    echo '```sh'
    for scenario in "${SCENARIOS[@]}"; do
        echo "# $(scenario_name "$scenario")"
        case $scenario in
        upsert) ;;
        *) echo "${SERVER_CMDLINE[$scenario]} &" ;;
        esac
        echo "${CMDLINE[$scenario]}"
    done
    echo "# memory test ($MEMORY_KEYS distinct keys), each durability"
    echo "${MEM_CMDLINE[memory]} &"
    echo "${MEM_CMDLINE[journal]} &"
    echo "$MEM_WRK_CMD"
    echo '```'
    echo
    echo "<details><summary>Raw figures of every run</summary>"
    echo
    echo "CPU columns are in cores (CPU time / wall time): the server, PostgreSQL (postmaster and children), the load generator, the whole machine (everything, including other tenants' load and steal time), steal time alone, and other load (machine minus server, PostgreSQL and load generator). Journal commits: fsynced journal groups during the measured run (requests / commits = mean group size); flushes: store flushes during the measured run."
    echo
    echo "| Scenario | Run | Requests/s | p50 | p99 | Requests | Errors | Socket errors | Server CPU per request | Server CPU | PostgreSQL CPU | Load gen. CPU | Machine CPU | Steal | Other CPU | Server RSS after run | Server answers (measured run) | Sum / acknowledged / answers read | Stop rc | Wall | Journal commits | Flushes |"
    echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|"
    for scenario in "${SCENARIOS[@]}"; do
        awk -F'\t' -v s="$scenario" 'NR > 1 && $1 == s' "$RUNS_TSV" | while IFS=$'\t' read -r s rep rps p50 p99 n err sock scpu pcpu lcpu mcpu steal rss st sum exp recv rc wall commits flushes sus other; do
            [[ $rss == - ]] || rss="$(mib "$rss")"
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s / %s | %s | %s s | %s | %s |\n' \
                "$s" "$rep" "$rps" "$(ms "$p50")" "$(ms "$p99")" "$n" "$err" "$sock" "$(us "$sus")" "$scpu" "$pcpu" "$lcpu" "$mcpu" "$steal" "$other" "$rss" "$st" \
                "$sum" "$exp" "$recv" "$rc" "$wall" "$commits" "$flushes"
        done
    done
    echo
    echo "</details>"
} >"$RESULT_MD"

# ---------------------------------------------------------------- BENCHMARKS.md
# Replace the "## counters" section (up to the next "## " heading), keep the rest.
merge_section "$RESULT_MD" counters

log "wrote $RESULT_MD and $BENCH_MD"
cat "$RESULT_MD"
