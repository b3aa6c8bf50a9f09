# Helpers shared by the benchmark scripts (sourced, not run): logging,
# package installs, ports, process start/stop, Prometheus dumps, and the
# BENCHMARKS.md section merge. A script using it sets ROOT first.
# shellcheck shell=bash

# Words joined for a shell: single-quoted where they hold anything special.
shell_join() {
    local words=() w
    for w in "$@"; do
        if [[ $w =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then words+=("$w"); else words+=("'${w//\'/\'\\\'\'}'"); fi
    done
    echo "${words[*]}"
}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# "15s", "2m", "1h" or a plain number of seconds → seconds.
to_seconds() {
    [[ $1 =~ ^([0-9]+)(s|m|h)?$ ]] || return 1
    case ${BASH_REMATCH[2]} in
    m) echo $((BASH_REMATCH[1] * 60)) ;;
    h) echo $((BASH_REMATCH[1] * 3600)) ;;
    *) echo $((BASH_REMATCH[1])) ;;
    esac
}

SUDO=()
apt_install() {
    ((${#@})) || return 0
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "need root (or sudo) to install: $*"
        SUDO=(sudo)
    fi
    log "installing: $*"
    export DEBIAN_FRONTEND=noninteractive
    if ! "${SUDO[@]}" apt-get install -y "$@"; then
        "${SUDO[@]}" apt-get update
        "${SUDO[@]}" apt-get install -y "$@"
    fi
}

# SIGTERM, then wait for the process (a child of this shell) to exit, SIGKILL
# after $2 seconds (default 40); sets STOP_RC to its exit status and STOP_S to
# the seconds it took. Not to be called in a subshell.
STOP_RC=""
STOP_S=""
stop_pid() {
    local pid=$1 limit=${2:-40} i t0
    t0="$(date +%s%N)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < limit * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid ignored SIGTERM for ${limit}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    STOP_RC=0
    wait "$pid" 2>/dev/null || STOP_RC=$?
    STOP_S="$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')"
}

# A loopback port nothing listens on (and not handed out before in this run).
USED_PORTS=" "
PORT=""
pick_port() {
    local p i
    for ((i = 0; i < 500; i++)); do
        # Below the ephemeral range (32768+), where outgoing connections take ports.
        p=$((10000 + RANDOM % 22000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            PORT=$p
            return 0
        fi
    done
    die "no free loopback port found"
}

wait_ready() { # url pid name logfile
    local url=$1 pid=$2 name=$3 logfile=$4 i
    for ((i = 0; i < 300; i++)); do
        if curl -fs -o /dev/null --max-time 2 "$url"; then
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

wait_redis() { # port pid logfile
    local port=$1 pid=$2 logfile=$3 i
    for ((i = 0; i < 300; i++)); do
        [[ $(redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null) == PONG ]] && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$logfile" >&2 || true
            die "redis-server exited before it was ready"
        fi
        sleep 0.1
    done
    die "redis-server not ready after 30s (port $port)"
}

# One value of a Prometheus text dump: the sum over the series of metric $2
# whose labels contain every string in $3.. (e.g. 'status="200"').
metric() { # file name [label-substring...]
    local file=$1 name=$2
    shift 2
    awk -v n="$name" -v want="$(printf '%s\n' "$@")" '
        BEGIN { k = split(want, w, "\n") }
        $1 == n || index($1, n "{") == 1 {
            for (i = 1; i <= k; i++) if (w[i] != "" && !index($1, w[i])) next
            t += $NF; found = 1
        }
        END { printf "%.0f\n", (found ? t : 0) }' "$file"
}

# Puts the markdown file $1 into BENCHMARKS.md as its section "## $2",
# replacing the old one (other sections are kept), or appends it.
merge_section() { # section_file section_name
    local section=$1 name=$2 bench_md="$ROOT/BENCHMARKS.md" tmp
    if [[ ! -f $bench_md ]]; then
        printf '# Benchmarks\n\nMeasured figures; each section names the script that writes it.\n' >"$bench_md"
    fi
    tmp="$(mktemp)"
    awk -v section="$section" -v heading="## $name" '
        function emit(  line) { while ((getline line < section) > 0) print line; close(section); done = 1 }
        /^## / {
            if (skipping) { skipping = 0; print "" }
            if ($0 == heading) { emit(); skipping = 1; next }
        }
        !skipping { print }
        END { if (!done) { print ""; emit() } }
    ' "$bench_md" >"$tmp"
    mv "$tmp" "$bench_md"
}

# ---------------------------------------------------------------- server CPU per request
CLK_TCK="$(getconf CLK_TCK)"

# User + system clock ticks of a live pid (all its threads); "-" once it is gone.
proc_ticks() { # pid
    local stat a
    read -r stat 2>/dev/null <"/proc/$1/stat" || {
        echo -
        return 0
    }
    stat="${stat##*) }"
    read -r -a a <<<"$stat"
    echo $((a[11] + a[12]))
}

# Bytes a live pid caused to be written to storage so far (write_bytes of
# /proc/<pid>/io, all its threads); "-" once it is gone.
io_write_bytes() { # pid
    awk '$1 == "write_bytes:" { print $2; found = 1 } END { if (!found) print "-" }' "/proc/$1/io" 2>/dev/null || echo -
}

# Bytes written to storage per request: a write_bytes delta over requests
# answered; "-" when either is unknown or no request was answered.
per_request_bytes() { # bytes requests
    awk -v d="$1" -v n="$2" 'BEGIN {
        if (d == "-" || d == "" || n == "-" || n == "" || n + 0 <= 0) print "-"; else printf "%.0f\n", d / n }'
}

# µs of CPU per request: ticks over a run / CLK_TCK / requests answered in it
# × 1e6; "-" when either is unknown or no request was answered.
per_request_us() { # ticks requests
    awk -v d="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN {
        if (d == "-" || d == "" || n == "-" || n == "" || n + 0 <= 0) print "-"; else printf "%.1f\n", d / hz / n * 1e6 }'
}

# For a load generator whose measured stretch is not the whole of its run (a
# warm-up or a fill before it), the server's CPU is sampled in the background:
# every 50 ms a line "<µs since the epoch> <ticks>" into a file, with bash
# builtins only (no process started per sample), until the pid or this shell
# is gone or stop_sampler is called.
SAMPLER_PID=""
start_sampler() { # pid file
    local pid=$1 file=$2 parent=$$
    (
        local stat a fd
        exec {fd}<> <(:) # a pipe no one writes to: `read -t` on it sleeps without a process
        while kill -0 "$parent" 2>/dev/null && read -r stat 2>/dev/null <"/proc/$pid/stat"; do
            stat="${stat##*) }"
            read -r -a a <<<"$stat"
            printf '%s %s\n' "${EPOCHREALTIME/[.,]/}" $((a[11] + a[12]))
            read -r -t 0.05 -u "$fd" _ || :
        done
    ) >"$file" 2>/dev/null &
    SAMPLER_PID=$!
}
stop_sampler() {
    [[ -n $SAMPLER_PID ]] || return 0
    kill -TERM "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
}

# µs of server CPU per request over a measured stretch of `seconds` that ended
# at t_end (µs since the epoch, `${EPOCHREALTIME/./}` taken when the load
# generator exited), when the server had used end_ticks: the ticks at the
# stretch's start are interpolated between the sampler's lines around it.
stretch_us() { # samples_file t_end_us end_ticks seconds requests
    awk -v t1="$2" -v k1="$3" -v s="$4" -v n="$5" -v hz="$CLK_TCK" '
        BEGIN { t = t1 - s * 1e6 }
        $1 <= t { ta = $1; ka = $2; a = 1; next }
        !b { tb = $1; kb = $2; b = 1 }
        END {
            if (a && b) k0 = ka + (kb - ka) * (t - ta) / (tb - ta)
            else if (a) k0 = ka
            else if (b) k0 = kb
            if ((!a && !b) || k1 == "-" || n + 0 <= 0) print "-"
            else printf "%.1f\n", (k1 - k0) / hz / n * 1e6
        }' "$1"
}
