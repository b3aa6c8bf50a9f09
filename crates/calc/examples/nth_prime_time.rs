//! Times `calc`'s n-th prime in-process, without the RPC, for the benchmark
//! (`bench/calc.sh`): one line per n, `n=<n> ms=<wall ms> p=<p_n>`.
//!
//!     cargo run --release -p quintet-calc --example nth_prime_time -- 1000000000 10000000000

use std::process::ExitCode;
use std::time::Instant;

use calc::domain::primes;

fn main() -> ExitCode {
    let mut ns = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.parse::<u64>() {
            Ok(n) => ns.push(n),
            Err(error) => {
                eprintln!("error: '{arg}' is not an n ({error}): usage: nth_prime_time N [N...]");
                return ExitCode::from(2);
            }
        }
    }
    if ns.is_empty() {
        eprintln!("usage: nth_prime_time N [N...]");
        return ExitCode::from(2);
    }
    for n in ns {
        let started = Instant::now();
        match primes::nth_prime(n, &|| false) {
            Ok(p) => println!(
                "n={n} ms={:.1} p={p}",
                started.elapsed().as_secs_f64() * 1000.0
            ),
            Err(error) => {
                eprintln!("error: n = {n}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
