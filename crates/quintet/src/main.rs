//! `quintet`: see the crate's library for the wiring; this only starts it.

/// mimalloc: per-request allocations are small and short-lived, and glibc's
/// allocator spent ~10% of a GET's CPU on them (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    quintet::main()
}
