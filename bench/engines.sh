#!/usr/bin/env bash
# The embedded engines compared per store: fjall (an LSM tree) against redb
# (a copy-on-write B-tree) behind the messages and kv store ports, through
# the adapters `quintet serve` uses (crates/quintet/examples/store_engines.rs).
# Per store, engine and repeat (interleaved): WRITES durable writes from
# CONCURRENCY tasks (writes/s, p50/p99, bytes written to storage per write
# from /proc/self/io, size on disk after them, peak RSS); READS random gets
# after a reopen; and the time to open a store a writer left by kill -9.
#
#   bash bench/engines.sh
#
# Environment (all optional):
#   WRITES=1000000     durable writes per run (random keys: digests, hashed kv keys)
#   READS=100000       random gets after the reopen
#   CONCURRENCY=50     writes in flight
#   REPEATS=3          runs per store and engine; the table shows the median
#   KILL_AFTER=5       seconds a writer runs before kill -9, for the recovery time
#   STORES="messages kv"
#   KEEP_TMP=1         keep the temporary directory
#
# Writes bench/results/engines.md and copies it into BENCHMARKS.md (section
# "## Embedded engines"), keeping every run's RESULT line in
# bench/results/engines-raw/ (not committed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

WRITES="${WRITES:-1000000}"
READS="${READS:-100000}"
CONCURRENCY="${CONCURRENCY:-50}"
REPEATS="${REPEATS:-3}"
KILL_AFTER="${KILL_AFTER:-5}"
STORES="${STORES:-messages kv}"
ENGINES=(fjall redb)

for n in WRITES READS CONCURRENCY REPEATS KILL_AFTER; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer, not '${!n}'"
done
((READS <= WRITES)) || die "READS ($READS) must not exceed WRITES ($WRITES): reads find what the writes stored"
for s in $STORES; do [[ $s == messages || $s == kv ]] || die "STORES takes messages and kv, not '$s'"; done

RESULTS_DIR="$ROOT/bench/results"
RAW_DIR="$RESULTS_DIR/engines-raw"
RESULT_MD="$RESULTS_DIR/engines.md"

command -v python3 >/dev/null || apt_install python3
BUILD=(cargo build --release --locked -p quintet --example store_engines)
log "building: $(shell_join "${BUILD[@]}")"
"${BUILD[@]}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
GIT_REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n $(git status --porcelain --untracked-files=no -- . ':!bench' ':!BENCHMARKS.md' 2>/dev/null) ]]; then GIT_REV+=" (with uncommitted changes)"; fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/quintet-bench-engines.XXXXXX")"
cleanup() { [[ -n ${KEEP_TMP:-} ]] || rm -rf "$WORK"; }
trap cleanup EXIT
rm -rf "$RAW_DIR"
mkdir -p "$RAW_DIR"
BIN="$WORK/store_engines"
cp "$TARGET_DIR/release/examples/store_engines" "$BIN"
RECORDS="$WORK/records.tsv"
: >"$RECORDS"

# One measurement; its RESULT line's fields go to records.tsv as key=value.
measure() { # store engine repeat phase args...
    local store=$1 engine=$2 rep=$3 phase=$4
    shift 4
    local out="$RAW_DIR/$store-$engine-$rep-$phase.txt"
    "$BIN" "$@" >"$out" 2>&1 || {
        cat "$out" >&2
        die "failed: $BIN $*"
    }
    local line
    line="$(grep '^RESULT ' "$out")" || die "no RESULT line in $out"
    printf '%s\t%s\t%s\t%s\t%s\n' "$store" "$engine" "$rep" "$phase" "${line#RESULT }" >>"$RECORDS"
    log "$store $engine #$rep $phase: ${line#RESULT }"
}

for store in $STORES; do
    for rep in $(seq 1 "$REPEATS"); do
        for engine in "${ENGINES[@]}"; do
            dir="$WORK/$store-$engine-$rep"
            mkdir -p "$dir"
            measure "$store" "$engine" "$rep" write write --engine "$engine" --store "$store" --dir "$dir" \
                --writes "$WRITES" --concurrency "$CONCURRENCY"
            measure "$store" "$engine" "$rep" read read --engine "$engine" --store "$store" --dir "$dir" --reads "$READS"
            rm -rf "$dir"

            # A writer killed mid-run, then the open that recovers its store.
            dir="$WORK/$store-$engine-$rep-killed"
            mkdir -p "$dir"
            "$BIN" write --engine "$engine" --store "$store" --dir "$dir" --writes 100000000 \
                --concurrency "$CONCURRENCY" >"$RAW_DIR/$store-$engine-$rep-killed.txt" 2>&1 &
            pid=$!
            sleep "$KILL_AFTER"
            kill -9 "$pid" 2>/dev/null || die "the writer to be killed had already exited (see $RAW_DIR)"
            wait "$pid" 2>/dev/null || true
            size_kb="$(du -sk "$dir" | cut -f1)"
            measure "$store" "$engine" "$rep" recover recover --engine "$engine" --store "$store" --dir "$dir"
            printf '%s\t%s\t%s\tkilled\tstore_kb=%s\n' "$store" "$engine" "$rep" "$size_kb" >>"$RECORDS"
            rm -rf "$dir"
        done
    done
done

CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
FS="$(df -T "$WORK" | awk 'NR == 2 { print $2 }')"
{
    echo "## Embedded engines"
    echo
    echo "Written by \`bench/engines.sh\` on $(date -u +%Y-%m-%d) at git $GIT_REV: fjall 3.1 (an LSM tree) against redb 2.6 (a copy-on-write B-tree), behind the messages and kv store ports, through the adapters \`quintet serve\` uses (\`crates/quintet/examples/store_engines.rs\`). Machine: $(nproc) cores ($CPU_MODEL), $FS file system under $WORK."
    echo
    echo "Command: \`WRITES=$WRITES READS=$READS CONCURRENCY=$CONCURRENCY REPEATS=$REPEATS KILL_AFTER=$KILL_AFTER bash bench/engines.sh\`; each figure is the median of $REPEATS runs, engines interleaved."
    echo
    python3 - "$RECORDS" "$WRITES" "$READS" "$CONCURRENCY" "$KILL_AFTER" <<'EOF'
import statistics, sys
path, writes, reads, conc, kill_after = sys.argv[1:]
runs = {}
for line in open(path):
    store, engine, rep, phase, fields = line.rstrip("\n").split("\t")
    kv = dict(f.split("=", 1) for f in fields.split())
    runs.setdefault((store, engine, phase), []).append({k: float(v) for k, v in kv.items()})
def med(store, engine, phase, key):
    values = [r[key] for r in runs.get((store, engine, phase), []) if key in r]
    return statistics.median(values) if values else float("nan")
print(f"| store | engine | durable writes/s (c{conc}) | p50 | p99 | bytes written per write | on disk after {int(writes):,} writes | peak RSS writing | random get p50 / p99 after reopen ({int(reads):,} gets) | open after kill -9 ({kill_after} s of writes) |")
print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
for store in ("messages", "kv"):
    for engine in ("fjall", "redb"):
        if (store, engine, "write") not in runs:
            continue
        w = lambda k: med(store, engine, "write", k)
        r = lambda k: med(store, engine, "read", k)
        print(f"| {store} | {engine} | {w('writes_per_s'):,.0f} | {w('p50_us') / 1000:.2f} ms | {w('p99_us') / 1000:.2f} ms "
              f"| {w('bytes_written_per_write'):,.0f} B | {w('disk_bytes') / 1048576:,.0f} MiB | {w('peak_rss_kb') / 1024:,.0f} MiB "
              f"| {r('p50_us'):.1f} / {r('p99_us'):.1f} µs | {med(store, engine, 'recover', 'open_ms'):,.0f} ms "
              f"({med(store, engine, 'killed', 'store_kb') / 1024:,.0f} MiB store) |")
print()
print("How to read it:")
print()
print(f"- Writes: {int(writes):,} new records per run from {conc} tasks, each waiting for its write to be durable (fsynced) before its next; "
      "messages are distinct 100-byte texts under their SHA-256 digest, kv records 100-byte sealed values (216 bytes encoded) under hashed 32-character keys: "
      "random keys, as the services see them. Both engines commit through the same group-commit writer (`platform::group_commit`): "
      "one transaction or batch, one fsync, per group of waiting writes.")
print("- Bytes written per write: `write_bytes` of `/proc/self/io` over the run, the close included (journal, tables, flushes and compaction for fjall; "
      "every copied-on-write page and the commit slots for redb), divided by the writes.")
print("- On disk: allocated blocks under the store directory after the close (fjall preallocates its journal; allocated, not apparent, size).")
print("- Random get: one get at a time, in a fixed shuffled order, in a new process that reopened the store (for fjall: after its journal replay; "
      "tables as the writes' flushes and compactions left them).")
print("- Open after kill -9: a writer was killed after the given seconds of writing; the time the next open took (journal replay for fjall, "
      "redb's repair of a file not closed cleanly).")
EOF
    echo
    echo "<details><summary>Every run's RESULT line</summary>"
    echo
    echo '```'
    cat "$RECORDS"
    echo '```'
    echo
    echo "</details>"
} >"$RESULT_MD"
merge_section "$RESULT_MD" "Embedded engines"
log "wrote $RESULT_MD and the \"Embedded engines\" section of BENCHMARKS.md"
