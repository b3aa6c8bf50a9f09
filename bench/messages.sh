#!/usr/bin/env bash
# Messages service throughput and latency, measured with wrk against nginx
# serving a fixed JSON body, over plain HTTP and over HTTPS.
#
#   bash bench/messages.sh
#
# Environment (all optional):
#   DURATION=15s     length of one measured wrk run
#   REPEATS=3        measured runs per scenario; the table shows the median
#   THREADS=2        wrk threads
#   CONNECTIONS=50   wrk connections
#   SEED_COUNT=5000  messages stored before the GET runs (the GET runs cycle through them)
#   WARMUP=3s        one unmeasured run per scenario before the first repeat ("0" = none)
#   WRK_TIMEOUT=10s  wrk's per-request timeout (a timed-out request counts as an error)
#   KEEP_TMP=1       keep the temporary directory (nginx config, data dirs) for inspection
#
# Writes bench/results/messages.md, copies it into BENCHMARKS.md (section
# "## messages", other sections are kept), and keeps raw wrk output and server
# logs in bench/results/messages-raw/ (not committed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION="${DURATION:-15s}"
REPEATS="${REPEATS:-3}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-50}"
SEED_COUNT="${SEED_COUNT:-5000}"
WARMUP="${WARMUP:-3s}"
WRK_TIMEOUT="${WRK_TIMEOUT:-10s}"
GET_TARGET=0.5
POST_TARGET=0.25
# nginx answers every request with this body (the digest of "hello").
FIXED_JSON='{"digest":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}'

RESULTS_DIR="$ROOT/bench/results"
RAW_DIR="$RESULTS_DIR/messages-raw"
RESULT_MD="$RESULTS_DIR/messages.md"
BENCH_MD="$ROOT/BENCHMARKS.md"
GET_LUA="bench/wrk/get.lua"
POST_LUA="bench/wrk/post.lua"

[[ $REPEATS =~ ^[1-9][0-9]*$ ]] || die "REPEATS must be a positive integer, not '$REPEATS'"
[[ $SEED_COUNT =~ ^[1-9][0-9]*$ ]] || die "SEED_COUNT must be a positive integer, not '$SEED_COUNT'"
[[ -f $GET_LUA && -f $POST_LUA ]] || die "missing $GET_LUA or $POST_LUA"

# ---------------------------------------------------------------- tools
install_missing() {
    local need=()
    command -v wrk >/dev/null || need+=(wrk)
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
    command -v openssl >/dev/null || need+=(openssl)
    command -v curl >/dev/null || need+=(curl)
    ((${#need[@]})) || return 0
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "need root (or sudo) to install: ${need[*]}"
        sudo=(sudo)
    fi
    log "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y "${need[@]}"; then
        "${sudo[@]}" apt-get update
        "${sudo[@]}" apt-get install -y "${need[@]}"
    fi
}
install_missing
command -v cargo >/dev/null || die "cargo is needed to build quintet"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

log "building quintet (cargo build --release --locked -p quintet)"
cargo build --release --locked -p quintet
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
QUINTET="$TARGET_DIR/release/quintet"
[[ -x $QUINTET ]] || die "no binary at $QUINTET"

# ---------------------------------------------------------------- processes and cleanup
WORK="$(mktemp -d "${TMPDIR:-/tmp}/quintet-bench.XXXXXX")"
rm -rf "$RAW_DIR"
mkdir -p "$RAW_DIR"
NGINX_PIDFILE="$WORK/nginx/nginx.pid"
QHTTP_PID=""
QHTTPS_PID=""
NGINX_STARTED=0

# SIGTERM, then wait for the process (a child of this shell) to exit, SIGKILL
# after 40 s; sets STOP_RC to its exit status. Not to be called in a subshell.
STOP_RC=""
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 400; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid ignored SIGTERM for 40s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    STOP_RC=0
    wait "$pid" 2>/dev/null || STOP_RC=$?
}

stop_nginx() {
    [[ $NGINX_STARTED == 1 && -s $NGINX_PIDFILE ]] || return 0
    local pid i
    pid="$(cat "$NGINX_PIDFILE")"
    kill -QUIT "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null || true
    NGINX_STARTED=0
}

cleanup() {
    local rc=$?
    trap - EXIT
    [[ -z $QHTTP_PID ]] || stop_pid "$QHTTP_PID"
    [[ -z $QHTTPS_PID ]] || stop_pid "$QHTTPS_PID"
    stop_nginx
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

wait_ready() { # url pid name logfile
    local url=$1 pid=$2 name=$3 logfile=$4 i
    for ((i = 0; i < 300; i++)); do
        if curl -fsk -o /dev/null --max-time 2 "$url"; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$logfile" >&2 || true
            die "$name exited before it was ready"
        fi
        sleep 0.2
    done
    tail -n 40 "$logfile" >&2 || true
    die "$name not ready after 60s ($url)"
}

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

# ---------------------------------------------------------------- nginx
pick_port
NGINX_HTTP_PORT=$PORT
pick_port
NGINX_HTTPS_PORT=$PORT
mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
log "generating the self-signed certificate for nginx"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$WORK/nginx/key.pem" -out "$WORK/nginx/cert.pem" 2>/dev/null
NGINX_CONF="$WORK/nginx/nginx.conf"
cat >"$NGINX_CONF" <<EOF
worker_processes auto;
pid $NGINX_PIDFILE;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    # Like quintet (hyper), never close a busy keep-alive connection.
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:$NGINX_HTTP_PORT;
        location / { default_type application/json; return 200 '$FIXED_JSON'; }
    }
    server {
        listen 127.0.0.1:$NGINX_HTTPS_PORT ssl;
        ssl_certificate $WORK/nginx/cert.pem;
        ssl_certificate_key $WORK/nginx/key.pem;
        location / { default_type application/json; return 200 '$FIXED_JSON'; }
    }
}
EOF
NGINX_CMD=("$NGINX" -e "$WORK/nginx/logs/error.log" -p "$WORK/nginx" -c "$NGINX_CONF")
log "starting nginx on 127.0.0.1:$NGINX_HTTP_PORT (http) and :$NGINX_HTTPS_PORT (https)"
"${NGINX_CMD[@]}"
NGINX_STARTED=1
for ((i = 0; i < 50; i++)); do
    [[ -s $NGINX_PIDFILE ]] && break
    sleep 0.1
done
[[ -s $NGINX_PIDFILE ]] || die "nginx wrote no pid file"
NGINX_MASTER="$(cat "$NGINX_PIDFILE")"
wait_ready "http://127.0.0.1:$NGINX_HTTP_PORT/" "$NGINX_MASTER" nginx "$WORK/nginx/logs/error.log"
wait_ready "https://127.0.0.1:$NGINX_HTTPS_PORT/" "$NGINX_MASTER" nginx "$WORK/nginx/logs/error.log"
read -r -a NGINX_WORKERS <<<"$(children_of "$NGINX_MASTER" | tr '\n' ' ')"
((${#NGINX_WORKERS[@]})) || die "nginx has no worker processes"
NGINX_PIDS=("$NGINX_MASTER" "${NGINX_WORKERS[@]}")

# ---------------------------------------------------------------- quintet
pick_port
QHTTP_PORT=$PORT
pick_port
QHTTPS_PORT=$PORT
QHTTP_URL="http://127.0.0.1:$QHTTP_PORT"
QHTTPS_URL="https://127.0.0.1:$QHTTPS_PORT"
QHTTP_CMD=("$QUINTET" serve --addr "127.0.0.1:$QHTTP_PORT" --data-dir "$WORK/quintet-http" --rate-limit 0)
QHTTPS_CMD=("$QUINTET" serve --addr "127.0.0.1:$QHTTPS_PORT" --data-dir "$WORK/quintet-https" --rate-limit 0 --tls self-signed)
log "starting quintet: ${QHTTP_CMD[*]}"
"${QHTTP_CMD[@]}" >"$RAW_DIR/quintet-http.log" 2>&1 &
QHTTP_PID=$!
log "starting quintet: ${QHTTPS_CMD[*]}"
"${QHTTPS_CMD[@]}" >"$RAW_DIR/quintet-https.log" 2>&1 &
QHTTPS_PID=$!
wait_ready "$QHTTP_URL/readyz" "$QHTTP_PID" "quintet (http)" "$RAW_DIR/quintet-http.log"
wait_ready "$QHTTPS_URL/readyz" "$QHTTPS_PID" "quintet (https)" "$RAW_DIR/quintet-https.log"

# ---------------------------------------------------------------- seed
# The same SEED_COUNT messages go to both servers (so both hold the same
# digests), posted by one curl process over up to 16 parallel connections.
seed() { # base_url name
    local base=$1 name=$2 i codes
    local cfg="$WORK/seed-$name.curl"
    {
        for ((i = 1; i <= SEED_COUNT; i++)); do
            ((i == 1)) || echo next
            printf 'url = "%s/messages"\nheader = "Content-Type: text/plain; charset=utf-8"\n' "$base"
            printf 'data-binary = "seed message %d of the messages benchmark: the quick brown fox jumps over the lazy dog"\n' "$i"
            # per transfer: "next" resets these
            printf 'output = "/dev/null"\nwrite-out = "%%{http_code}\\n"\nsilent\nshow-error\ninsecure\n'
        done
    } >"$cfg"
    curl --no-progress-meter --parallel --parallel-max 16 -K "$cfg" >"$WORK/seed-$name.codes" 2>"$WORK/seed-$name.err" || true
    codes="$(sort "$WORK/seed-$name.codes" | uniq -c | awk '{ printf "%s%s×%s", sep, $2, $1; sep = ", " }')"
    log "seeded $name: $codes"
    [[ ! -s $WORK/seed-$name.err ]] || sort "$WORK/seed-$name.err" | uniq -c | head -n 5 >&2
    [[ $codes == "201×$SEED_COUNT" ]] || die "seeding $name: expected 201×$SEED_COUNT, got $codes"
}

# Every digest the server lists, oldest first (follows the paging cursor).
list_digests() { # base_url out_file
    local base=$1 out=$2 cursor="" page
    : >"$out"
    while :; do
        page="$(curl -fsSk "$base/messages?limit=1000${cursor:+&cursor=$cursor}")"
        grep -o '"digest":"[0-9a-f]\{64\}"' <<<"$page" | cut -d'"' -f4 >>"$out" || true
        cursor="$(grep -o '"next":"[^"]*"' <<<"$page" | cut -d'"' -f4 || true)"
        [[ -n $cursor ]] || break
    done
}

log "seeding $SEED_COUNT messages into each quintet"
seed "$QHTTP_URL" http
seed "$QHTTPS_URL" https
DIGESTS="$WORK/digests.txt"
list_digests "$QHTTP_URL" "$DIGESTS"
list_digests "$QHTTPS_URL" "$WORK/digests-https.txt"
[[ $(wc -l <"$DIGESTS") -eq $SEED_COUNT ]] || die "http server lists $(wc -l <"$DIGESTS") digests, expected $SEED_COUNT"
cmp -s <(sort "$DIGESTS") <(sort "$WORK/digests-https.txt") || die "the two servers list different digests"
first_digest="$(head -n 1 "$DIGESTS")"
curl -fsS -o /dev/null "$QHTTP_URL/messages/$first_digest" || die "GET of a seeded digest failed"

# ---------------------------------------------------------------- runs
# "<status>×<count>" of the requests a quintet answered on one route since the
# snapshot in $1, read from its Prometheus metrics.
route_snapshot() { # base_url method route
    curl -fsSk "$1/metrics" | awk -v m="method=\"$2\"" -v r="route=\"$3\"" '
        /^quintet_messages_http_requests_total\{/ && index($0, m) && index($0, r) {
            if (match($0, /status="[0-9]+"/)) { c[substr($0, RSTART + 8, RLENGTH - 9)] += $NF }
        }
        END { for (s in c) print s, c[s] }'
}
route_delta() { # before_file after_file
    awk 'NR == FNR { b[$1] = $2; next } { d = $2 - b[$1]; if (d > 0) out[$1] = d }
         END { n = 0; for (s in out) { printf "%s%s×%d", (n++ ? " " : ""), s, out[s] } if (!n) printf "-" }' "$1" "$2" |
        tr ' ' '\n' | sort | paste -sd' ' -
}

RUNS_TSV="$RAW_DIR/runs.tsv"
printf 'scenario\tprotocol\trepeat\trps\tp50_us\tp99_us\trequests\tnon2xx\tsocket_errors\tserver_cpu\twrk_cpu\tmachine_cpu\tsteal\tserver_rss_kb\tserver_us\tserver_statuses\tbytes_written_per_request\n' >"$RUNS_TSV"
declare -A WRK_CMDLINE

scenario_target() { # scenario protocol → url|script|arg|pids-var|route-method|route
    case $1 in
    nginx)
        if [[ $2 == http ]]; then echo "http://127.0.0.1:$NGINX_HTTP_PORT"; else echo "https://127.0.0.1:$NGINX_HTTPS_PORT"; fi
        ;;
    get | post)
        if [[ $2 == http ]]; then echo "$QHTTP_URL"; else echo "$QHTTPS_URL"; fi
        ;;
    esac
}

# One wrk run; appends a line to runs.tsv unless it is a warm-up.
run_one() { # scenario protocol repeat duration
    local scenario=$1 proto=$2 rep=$3 duration=$4
    local url script arg pids=() method route
    url="$(scenario_target "$scenario" "$proto")"
    case $scenario in
    nginx) script=$GET_LUA arg=$DIGESTS pids=("${NGINX_PIDS[@]}") ;;
    get) script=$GET_LUA arg=$DIGESTS method=GET route='/messages/{digest}' ;;
    post) script=$POST_LUA arg="r${rep}x${RANDOM}${RANDOM}" method=POST route=/messages ;;
    esac
    if [[ $scenario != nginx ]]; then
        if [[ $proto == http ]]; then pids=("$QHTTP_PID"); else pids=("$QHTTPS_PID"); fi
    fi
    local cmd=(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --timeout "$WRK_TIMEOUT" --latency -s "$script" "$url" -- "$arg")
    local out="$RAW_DIR/$scenario-$proto-$rep.txt"
    [[ $rep == warmup ]] || WRK_CMDLINE[$scenario-$proto]="${cmd[*]}"

    [[ -z ${method:-} ]] || route_snapshot "$url" "$method" "$route" >"$WORK/before"
    local t0 t1 c0 c1 m0 m1 w0 w1
    w0="$(io_write_bytes "${pids[0]}")"
    c0="$(cpu_ticks "${pids[@]}")"
    m0="$(machine_ticks)"
    t0="$(date +%s%N)"
    local TIMEFORMAT='%3U %3S'
    if ! { time "${cmd[@]}" >"$out" 2>&1; } 2>"$WORK/wrk-time"; then
        cat "$out" >&2
        die "wrk failed: ${cmd[*]}"
    fi
    t1="$(date +%s%N)"
    c1="$(cpu_ticks "${pids[@]}")"
    w1="$(io_write_bytes "${pids[0]}")"
    m1="$(machine_ticks)"
    [[ $rep == warmup ]] && return 0

    local statuses="-"
    if [[ -n ${method:-} ]]; then
        route_snapshot "$url" "$method" "$route" >"$WORK/after"
        statuses="$(route_delta "$WORK/before" "$WORK/after")"
    fi
    local line
    line="$(grep '^BENCH ' "$out")" || {
        cat "$out" >&2
        die "no BENCH line in wrk output"
    }
    local -A r=()
    local kv
    for kv in ${line#BENCH }; do r[${kv%%=*}]=${kv#*=}; done
    local wall_s server_cpu server_us wrk_cpu rss machine_cpu steal
    wall_s="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')"
    server_cpu="$(awk -v d="$((c1 - c0))" -v hz="$CLK_TCK" -v w="$wall_s" 'BEGIN { printf "%.2f", d / hz / w }')"
    # CPU time per answered request, in µs: the figure that survives a noisy machine.
    server_us="$(awk -v d="$((c1 - c0))" -v hz="$CLK_TCK" -v n="${r[requests]}" 'BEGIN { printf "%.1f", (n > 0 ? d / hz / n * 1e6 : 0) }')"
    wrk_cpu="$(awk -v w="$wall_s" '{ printf "%.2f", ($1 + $2) / w }' "$WORK/wrk-time")"
    rss="$(proc_kb VmRSS "${pids[@]}")"
    read -r machine_cpu steal < <(awk -v a="$m0" -v b="$m1" -v hz="$CLK_TCK" -v w="$wall_s" 'BEGIN {
        split(a, x, " "); split(b, y, " "); printf "%.2f %.2f\n", (y[1] - x[1]) / hz / w, (y[2] - x[2]) / hz / w }')
    local sock=$((r[connect_errors] + r[read_errors] + r[write_errors] + r[timeouts]))
    local written="-"
    [[ $w0 == - || $w1 == - ]] || written="$(per_request_bytes "$((w1 - w0))" "${r[requests]}")"
    printf '%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$proto" "$rep" \
        "${r[rps]}" "${r[p50_us]}" "${r[p99_us]}" "${r[requests]}" "${r[non2xx]}" "$sock" \
        "$server_cpu" "$wrk_cpu" "$machine_cpu" "$steal" "$rss" "$server_us" "$statuses" "$written" >>"$RUNS_TSV"
    log "$(printf '%-5s %-5s #%s: %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  non-2xx %s  socket errors %s  server CPU %s (%s µs/request)  wrk CPU %s  machine %s (steal %s)  %s' \
        "$scenario" "$proto" "$rep" "${r[rps]}" "$(awk -v u="${r[p50_us]}" 'BEGIN { print u / 1000 }')" \
        "$(awk -v u="${r[p99_us]}" 'BEGIN { print u / 1000 }')" "${r[non2xx]}" "$sock" "$server_cpu" "$server_us" "$wrk_cpu" "$machine_cpu" "$steal" "$statuses")"
}

SCENARIOS=(nginx get post)
PROTOCOLS=(http https)
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED_AT="$(date -u '+%Y-%m-%d %H:%M UTC')"
if [[ $WARMUP != 0 ]]; then
    log "warm-up: $WARMUP per scenario (not measured)"
    for proto in "${PROTOCOLS[@]}"; do
        for scenario in "${SCENARIOS[@]}"; do run_one "$scenario" "$proto" warmup "$WARMUP"; done
    done
fi
# Repeats are interleaved (every scenario once, then again) so that noise from
# other load on the machine spreads over all scenarios instead of hitting one.
for ((rep = 1; rep <= REPEATS; rep++)); do
    for proto in "${PROTOCOLS[@]}"; do
        for scenario in "${SCENARIOS[@]}"; do run_one "$scenario" "$proto" "$rep" "$DURATION"; done
    done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- stop, peak memory
QHTTP_HWM="$(proc_kb VmHWM "$QHTTP_PID")"
QHTTPS_HWM="$(proc_kb VmHWM "$QHTTPS_PID")"
NGINX_HWM="$(proc_kb VmHWM "${NGINX_PIDS[@]}")"
QHTTP_MESSAGES="$(route_snapshot "$QHTTP_URL" POST /messages | awk '$1 == 201 { print $2 }')"
QHTTPS_MESSAGES="$(route_snapshot "$QHTTPS_URL" POST /messages | awk '$1 == 201 { print $2 }')"
log "stopping quintet (SIGTERM)"
stop_pid "$QHTTP_PID"
QHTTP_RC=$STOP_RC
QHTTP_PID=""
stop_pid "$QHTTPS_PID"
QHTTPS_RC=$STOP_RC
QHTTPS_PID=""
stop_nginx
QHTTP_DB_KB="$(du -sk "$WORK/quintet-http" | cut -f1)"
QHTTPS_DB_KB="$(du -sk "$WORK/quintet-https" | cut -f1)"
cp "$WORK/nginx/logs/error.log" "$RAW_DIR/nginx-error.log" 2>/dev/null || true
cp "$NGINX_CONF" "$RAW_DIR/nginx.conf"

log_counts() { # logfile → "E errors, W warnings (count × message, ...)"
    local e w what
    e="$(grep -c '"level":"ERROR"' "$1" || true)"
    w="$(grep -c '"level":"WARN"' "$1" || true)"
    what="$(grep -E '"level":"(ERROR|WARN)"' "$1" | grep -o '"message":"[^"]*"' | cut -d'"' -f4 |
        sort | uniq -c | sort -rn | awk '{ n = $1; $1 = ""; printf "%s%d × \"%s\"", sep, n, substr($0, 2); sep = ", " }' || true)"
    echo "$e errors, $w warnings${what:+ ($what)}"
}

# ---------------------------------------------------------------- report
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
ms() { awk -v u="$1" 'BEGIN { printf "%.2f ms", u / 1000 }'; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { # scenario protocol column → values, one per line
    awk -F'\t' -v s="$1" -v p="$2" -v c="$3" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next } $1 == s && $2 == p { print $k }' "$RUNS_TSV"
}
sum_col() { col "$@" | awk '{ t += $1 } END { print t + 0 }'; }

QUINTET_VERSION="$("$QUINTET" --version)"
NGINX_VERSION="$("$NGINX" -v 2>&1)"
WRK_VERSION="$(wrk -v 2>&1 | head -n 1 | sed 's/ Copyright.*//' || true)"
OPENSSL_VERSION="$(openssl version)"
RUSTC_VERSION="$(rustc --version 2>/dev/null || echo unknown)"
GIT_REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then GIT_REV+=" (with uncommitted changes)"; fi
CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
MEM_TOTAL="$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
OS_NAME="$( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null || echo unknown)"

declare -A RPS P50 P99
for proto in "${PROTOCOLS[@]}"; do
    for scenario in "${SCENARIOS[@]}"; do
        RPS[$scenario-$proto]="$(col "$scenario" "$proto" rps | median)"
        P50[$scenario-$proto]="$(col "$scenario" "$proto" p50_us | median)"
        P99[$scenario-$proto]="$(col "$scenario" "$proto" p99_us | median)"
    done
done

ALL_PASS=1
{
    echo "## messages"
    echo
    echo "Throughput and latency of the messages service (\`quintet serve\`) under wrk, against nginx"
    echo "returning a fixed JSON body on the same machine, over plain HTTP and over HTTPS."
    echo "Written by \`bash bench/messages.sh\`; do not edit by hand."
    echo
    echo "- Date: $STARTED_AT"
    echo "- Machine: $(nproc) CPUs ($CPU_MODEL), $MEM_TOTAL RAM, Linux $(uname -r), $OS_NAME"
    echo "- Load average (1/5/15 min) before the runs: $LOAD_BEFORE; after: $LOAD_AFTER"
    echo "- Versions: \`$QUINTET_VERSION\` (git $GIT_REV, release build, $RUSTC_VERSION), \`$NGINX_VERSION\`, \`$WRK_VERSION\`, $OPENSSL_VERSION"
    echo "- Load: wrk, $THREADS threads, $CONNECTIONS connections, $DURATION per run, $REPEATS runs per scenario (interleaved), after one ${WARMUP} warm-up run per scenario; figures are the median of the runs"
    echo
    echo "### Results"
    echo
    echo "| Scenario | Protocol | Requests/s (median) | p50 | p99 | Ratio to nginx | Target | Result | Non-2xx / socket errors | Server answers (all runs) | Server CPU per request | Bytes written per request | Server CPU (cores) | wrk CPU (cores) | Server peak RSS |"
    echo "|---|---|--:|--:|--:|--:|--:|---|--:|---|--:|--:|--:|--:|--:|"
    for proto in "${PROTOCOLS[@]}"; do
        base="${RPS[nginx-$proto]}"
        for scenario in "${SCENARIOS[@]}"; do
            key=$scenario-$proto
            case $scenario in
            nginx) name="nginx, fixed JSON (GET)" target="" hwm=$NGINX_HWM ;;
            get) name="quintet GET /messages/{digest}" target=$GET_TARGET ;;
            post) name="quintet POST /messages (new message each)" target=$POST_TARGET ;;
            esac
            if [[ $scenario != nginx ]]; then
                if [[ $proto == http ]]; then hwm=$QHTTP_HWM; else hwm=$QHTTPS_HWM; fi
            fi
            ratio="$(awk -v a="${RPS[$key]}" -v b="$base" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
            if [[ -z $target ]]; then
                ratio_cell="1.00 (baseline)" target_cell="-" result="-"
            else
                ratio_cell="${ratio}×" target_cell="≥ ${target}×"
                if awk -v r="$ratio" -v t="$target" 'BEGIN { exit !(r >= t) }'; then result="pass"; else
                    result="**FAIL**"
                    ALL_PASS=0
                fi
            fi
            answers="$(col "$scenario" "$proto" server_statuses | tr ' ' '\n' | awk -F'×' '$2 != "" { c[$1] += $2 } END { for (s in c) printf "%s×%d\n", s, c[s] }' | sort | paste -sd' ' -)"
            [[ -n $answers ]] || answers="-"
            printf '| %s | %s | %.0f | %s | %s | %s | %s | %s | %s / %s | %s | %s µs | %s | %s | %s | %s |\n' \
                "$name" "${proto^^}" "${RPS[$key]}" "$(ms "${P50[$key]}")" "$(ms "${P99[$key]}")" \
                "$ratio_cell" "$target_cell" "$result" "$(sum_col "$scenario" "$proto" non2xx)" \
                "$(sum_col "$scenario" "$proto" socket_errors)" "$answers" \
                "$(col "$scenario" "$proto" server_us | median)" "$(col "$scenario" "$proto" bytes_written_per_request | median) B" \
                "$(col "$scenario" "$proto" server_cpu | median)" "$(col "$scenario" "$proto" wrk_cpu | median)" "$(mib "$hwm")"
        done
    done
    echo
    if [[ $ALL_PASS == 1 ]]; then echo "All targets met."; else echo "Not all targets met (see **FAIL** rows)."; fi
    echo
    echo "How to read it:"
    echo
    echo "- Ratio to nginx: quintet's median requests/s divided by nginx's at the same protocol. Targets: GET ≥ ${GET_TARGET}×, POST ≥ ${POST_TARGET}×."
    echo "- p50/p99: wrk's latency percentiles (\`--latency\`), median over the runs."
    echo "- Non-2xx / socket errors: summed over the measured runs, as wrk counts them (socket errors = connect + read + write errors + timeouts)."
    echo "- Server answers: status × count of the responses the server itself counted on that route during the measured runs (from its \`/metrics\`); for POST every answer should be 201 (a new message written), none 200 (already stored)."
    echo "- Server CPU per request: the server's user + system CPU time over a run (from \`/proc/<pid>/stat\`, all its processes) divided by the requests wrk counted in it; median over the runs. Unlike requests/s it does not depend on how much of the machine the load generator and other tenants took."
    echo "- Bytes written per request: what the server process caused to be written to storage during a run (\`write_bytes\` of \`/proc/<pid>/io\`: its journal, tables and their compaction, fsynced or not) divided by the requests wrk counted in it; median over the runs. For nginx, its master process only (its workers write nothing)."
    echo "- Server CPU / wrk CPU: CPU time used during a run divided by its wall time (median over the runs); the machine has $(nproc) cores in all, shared by wrk and the server."
    echo "- Server peak RSS: \`VmHWM\` of the server process read just before it was stopped, so it covers seeding, warm-up and every run on it (GET and POST at one protocol share one quintet process). For nginx it is the sum over the master and its ${#NGINX_WORKERS[@]} workers. quintet's grows with its store, which by the end held $QHTTP_MESSAGES (HTTP) and $QHTTPS_MESSAGES (HTTPS) messages, $(mib "$QHTTP_DB_KB") and $(mib "$QHTTPS_DB_KB") on disk; the raw figures below give the RSS after each run."
    echo
    echo "### Setup"
    echo
    echo "- wrk runs on the same $(nproc)-core machine as the server under test and takes a large share of the CPU (see the wrk CPU column). That is the same for nginx and for quintet, so the ratios compare like with like, but the absolute figures are lower than either server would reach with a load generator on its own machine. The machine is shared and noisy: runs are interleaved and summarised by their median to damp that."
    echo "- \`--rate-limit 0\` turns off quintet's per-client rate limit: at its default (1000 requests/s per client, burst 2000) the load generator, one client on one address, would mostly get 429s."
    echo "- quintet runs with its other defaults: embedded redb store in a fresh \`--data-dir\`, no bearer tokens, logs (JSON lines, level info) to a file."
    echo "- GET: $SEED_COUNT messages are stored first (POST text/plain, all answered 201), then \`$GET_LUA\` cycles through the list of their digests, each wrk thread from a different offset. The nginx baseline uses the same script (nginx ignores the path), so wrk does the same work per request in both."
    echo "- POST: \`$POST_LUA\` sends \`{\"message\": \"benchmark message <run tag> thread <n> number <counter>\"}\` as application/json, unique on every request, so every POST writes a new message; each answer waits for its group commit to be durable. POST runs on the same servers as the GET runs, so later GET runs read a store that also holds the messages of the earlier POST runs. Messages stored in the end: $QHTTP_MESSAGES (HTTP server), $QHTTPS_MESSAGES (HTTPS server); store size on disk: $(mib "$QHTTP_DB_KB"), $(mib "$QHTTPS_DB_KB")."
    echo "- HTTPS: nginx uses a self-signed ECDSA P-256 certificate made by openssl; quintet its own \`--tls self-signed\` certificate. wrk offers no ALPN, so both speak HTTP/1.1 over TLS; connections are made once per run and kept alive (nginx is configured with \`keepalive_requests 1000000\` so that, like quintet, it never closes a busy connection)."
    echo "- nginx: \`worker_processes auto\` (${#NGINX_WORKERS[@]} workers), \`access_log off\`, \`location / { default_type application/json; return 200 '$FIXED_JSON'; }\`, started from a private config file on free loopback ports."
    echo "- Server logs after the runs: quintet HTTP $(log_counts "$RAW_DIR/quintet-http.log"), quintet HTTPS $(log_counts "$RAW_DIR/quintet-https.log"); exit status after SIGTERM: $QHTTP_RC (HTTP), $QHTTPS_RC (HTTPS)."
    echo
    echo "### Commands"
    echo
    echo "Ports and the temporary directory differ from run to run."
    echo
    echo '```sh'
    echo "# servers"
    echo "${NGINX_CMD[*]}"
    echo "${QHTTP_CMD[*]} >quintet-http.log 2>&1 &"
    echo "${QHTTPS_CMD[*]} >quintet-https.log 2>&1 &"
    echo "# load (each run $REPEATS times)"
    for proto in "${PROTOCOLS[@]}"; do
        for scenario in "${SCENARIOS[@]}"; do echo "${WRK_CMDLINE[$scenario-$proto]}"; done
    done
    echo '```'
    echo
    echo "The POST run tag (last argument) is different for every run."
    echo
    echo "<details><summary>Raw figures of every run</summary>"
    echo
    echo "CPU columns are in cores (CPU time / wall time): the server (all its processes), wrk, the whole machine (everything, including other tenants' load and steal time), and steal time alone."
    echo
    echo "| Scenario | Protocol | Run | Requests/s | p50 | p99 | Requests | Non-2xx | Socket errors | Server CPU | Server CPU per request | wrk CPU | Machine CPU | Steal | Server RSS after run | Server answers |"
    echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
    tail -n +2 "$RUNS_TSV" | sort -t$'\t' -k2,2 -k1,1 -k3,3n | while IFS=$'\t' read -r s p rep rps p50 p99 n non sock scpu wcpu mcpu steal rss sus st; do
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s µs | %s | %s | %s | %s | %s |\n' \
            "$s" "${p^^}" "$rep" "$rps" "$(ms "$p50")" "$(ms "$p99")" "$n" "$non" "$sock" "$scpu" "$sus" "$wcpu" "$mcpu" "$steal" "$(mib "$rss")" "$st"
    done
    echo
    echo "</details>"
} >"$RESULT_MD"

# ---------------------------------------------------------------- BENCHMARKS.md
# Replace the "## messages" section (up to the next "## " heading), keep the rest.
merge_section "$RESULT_MD" messages

log "wrote $RESULT_MD and $BENCH_MD"
cat "$RESULT_MD"
