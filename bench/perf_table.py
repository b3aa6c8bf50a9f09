#!/usr/bin/env python3
"""Where a request's microseconds go: buckets a perf profile of the server.

    perf record -e cpu-clock -F 999 -g -p <server pid> -o perf.data -- sleep 10
    python3 bench/perf_table.py perf.data <cpu µs per request>

Reads `perf report --sort dso,sym` (self time, no call graphs), puts every
symbol in the first bucket whose pattern matches, and prints a markdown table
of each bucket's share of the samples and of the CPU time per request (the
figure the benchmark scripts measure from /proc). Buckets are by crate or
kernel subsystem, so the table reads the same from one build to the next.
"""

import re
import subprocess
import sys

# Kernel symbols by pattern (first match wins); user-space symbols by the
# crate their path starts with (`<hyper::proto::…>` → hyper), then pattern.
KERNEL = [
    ("kernel: scheduling and wake-ups (futex, epoll)",
     r"(sched|switch|futex|wake|epoll|_raw_spin|schedule|enqueue_task|dequeue|pick_next|update_curr|hrtimer|idle)"),
    ("kernel: TCP/IP and loopback",
     r"(\btcp|\binet|\bip_|skb|\bsock|\bnet_|napi|loopback|dev_queue|__dev|bbr|netif|_copy_(from|to)_iter|release_sock|__check_object_size|__virt_addr_valid|\bsk_|backlog)"),
    ("kernel: system calls and other", r"."),
]
CRATES = {
    "kernel: scheduling and wake-ups (futex, epoll)": [],
    "allocator (mimalloc, memcpy)": ["mimalloc", "libmimalloc_sys", "alloc"],
    "TLS (rustls, ring)": ["rustls", "ring", "tokio_rustls", "webpki"],
    "HTTP/2 and gRPC (h2, tonic, prost)": ["h2", "tonic", "prost", "tonic_health"],
    "HTTP/1 (hyper)": ["hyper", "hyper_util", "httparse", "http", "http_body", "http_body_util"],
    "routing and middleware (axum, tower, platform)": ["axum", "axum_core", "tower", "tower_http", "tower_service", "tower_layer", "matchit", "platform", "quintet_platform", "percent_encoding", "form_urlencoded"],
    "tokio runtime": ["tokio", "mio", "tokio_util", "futures_util", "futures_core", "futures_channel", "parking_lot", "parking_lot_core"],
    "metrics and tracing": ["metrics", "metrics_util", "metrics_exporter_prometheus", "tracing", "tracing_core", "tracing_subscriber", "quanta", "sketches_ddsketch"],
    "JSON (serde)": ["serde", "serde_json", "ryu", "itoa", "serde_path_to_error"],
    "storage (redb, sqlx)": ["redb", "sqlx", "sqlx_core", "sqlx_postgres"],
    "service code": ["messages", "counters", "kv", "calc", "receipts", "quick_cache", "hex", "sha2", "aes_gcm", "aead", "ctr", "ghash", "dashmap", "quintet"],
}
PATTERNS = [
    ("allocator (mimalloc, memcpy)", r"(^_?mi_|memmove|memcpy|memset|malloc|^free|__libc_)"),
    ("TLS (rustls, ring)", r"(aes_|gcm_|chacha|x25519|p256|sha256_block|sha512_block|ring_core)"),
    ("tokio runtime", r"(__vdso|clock_gettime|read_tsc|epoll_wait|writev|__GI___|syscall|recv|send|pthread)"),
    ("other", r"."),
]
ORDER = [name for name, _ in KERNEL] + [n for n in CRATES if n not in dict(KERNEL)] + ["other"]


def bucket(dso, sym):
    if "kernel" in dso:
        return next(name for name, pattern in KERNEL if re.search(pattern, sym))
    m = re.match(r"<?(?:&(?:mut )?)?([A-Za-z_]\w*)::", sym)
    if m:
        crate = m.group(1)
        for name, crates in CRATES.items():
            if crate in crates:
                return name
        if crate in ("core", "std", "alloc"):
            inner = re.search(r"<([A-Za-z_]\w*)::", sym[1:])
            if inner:
                for name, crates in CRATES.items():
                    if inner.group(1) in crates:
                        return name
    return next(name for name, pattern in PATTERNS if re.search(pattern, sym))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data, per_request = sys.argv[1], float(sys.argv[2])
    out = subprocess.run(
        ["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym", "-g", "none",
         "--percent-limit", "0", "--stdio"],
        check=True, capture_output=True, text=True).stdout
    shares = {name: 0.0 for name in ORDER}
    top = {name: [] for name in ORDER}
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(3).strip()
        name = bucket(dso, sym)
        shares[name] += pct
        top[name].append((pct, sym))
    total = sum(shares.values()) or 1.0
    print("| Where | Share of server CPU | µs per request | Largest symbols |")
    print("|---|--:|--:|---|")
    for name in ORDER:
        if shares[name] < 0.05:
            continue
        share = shares[name] / total
        largest = ", ".join(f"`{s[:60]}` {p:.1f}%" for p, s in sorted(top[name], reverse=True)[:3])
        print(f"| {name} | {share * 100:.1f}% | {share * per_request:.1f} | {largest} |")
    print(f"| **total** | 100% | **{per_request:.1f}** | |")


if __name__ == "__main__":
    main()
