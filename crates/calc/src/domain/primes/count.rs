//! The n-th prime by counting: π(x) (Deléglise–Rivat, [`super::pi`]) at
//! x = R⁻¹(n), Riemann's estimate of `p_n`, then a sieve over only the short
//! stretch between x and `p_n`, forward or backward.

use super::pi::prime_pi;
use super::{SEGMENT_SLOTS, Sieve, broken, count_primes, kth_prime_slot, nth_prime_upper_bound};
use crate::domain::CalcError;

/// The n-th prime for n ≥ 2: π(x) at x = R⁻¹(n), then a sieve over the
/// short stretch from x to `p_n`.
///
/// Riemann's R(x) = Σ μ(k)/k · li(x^(1/k)) follows π far more closely than
/// li(x) does (at 10^12, 1,476 off against li's 38,263), so `p_n` lies
/// about |R(x) − π(x)|·ln x numbers from x, ~4·10^4 for n = 10^11, on
/// either side: when π(x) < n it is the (n − π(x))-th prime above x,
/// otherwise the (π(x) − n + 1)-th prime counting down from x.
pub(super) fn nth_prime(n: u64, cancel: &(dyn Fn() -> bool + Sync)) -> Result<u64, CalcError> {
    let x = riemann_r_inverse(n).max(2);
    let counted = prime_pi(x, cancel)?;
    if counted < n {
        kth_prime_after(x, n - counted, nth_prime_upper_bound(n), cancel)
    } else {
        kth_prime_down_from(x, counted - n + 1, cancel)
    }
}

/// ⌊R⁻¹(n)⌋ for n ≥ 2: the x where Riemann's R reaches n, by Newton's method
/// from n·ln n (R′(x) ≈ 1/ln x).
// Float math on purpose: n ≤ MAX_N < 2^53 is exact as an f64; the answer is
// positive and far below 2^64, and only needs to be near R⁻¹(n).
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn riemann_r_inverse(n: u64) -> u64 {
    let target = n as f64;
    let mut x = (target * target.ln()).max(3.0);
    for _ in 0..64 {
        let step = (riemann_r(x) - target) * x.ln();
        x = (x - step).max(3.0);
        if step.abs() < 0.5 {
            break;
        }
    }
    x as u64
}

/// Riemann's R(x) = Σ_{k≥1} μ(k)/k · li(x^(1/k)), summed while x^(1/k) ≥ 2
/// (the rest is below 1 in all).
fn riemann_r(x: f64) -> f64 {
    let mut sum = 0.0;
    for k in 1..64u32 {
        let root = x.powf(1.0 / f64::from(k));
        if root < 2.0 {
            break;
        }
        sum += f64::from(mobius(k)) / f64::from(k) * li(root);
    }
    sum
}

/// μ(k) by trial division (k < 64).
fn mobius(mut k: u32) -> i32 {
    let mut mu = 1;
    let mut d = 2;
    while d * d <= k {
        if k.is_multiple_of(d) {
            k /= d;
            if k.is_multiple_of(d) {
                return 0;
            }
            mu = -mu;
        }
        d += 1;
    }
    if k > 1 { -mu } else { mu }
}

/// The logarithmic integral li(x) for x > 1, by Ramanujan's series:
/// li(x) = γ + ln ln x + √x · Σ_{k≥1} (−1)^(k−1) (ln x)^k / (k! 2^(k−1)) · Σ_{j=0}^{⌊(k−1)/2⌋} 1/(2j+1).
#[allow(clippy::cast_precision_loss)]
fn li(x: f64) -> f64 {
    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
    let ln = x.ln();
    let mut sum = 0.0;
    let mut power = 1.0; // (−1)^(k−1) (ln x)^k / (k! 2^(k−1)), built up term by term
    let mut inner = 0.0; // Σ_{j ≤ (k−1)/2} 1/(2j+1)
    for k in 1..200u32 {
        power *= if k == 1 {
            ln
        } else {
            -ln / (2.0 * f64::from(k))
        };
        if (k - 1) % 2 == 0 {
            inner += 1.0 / f64::from(k);
        }
        let term = power * inner;
        sum += term;
        if term.abs() < 1e-17 * sum.abs().max(1.0) {
            break;
        }
    }
    EULER_GAMMA + ln.ln() + x.sqrt() * sum
}

/// The k-th prime above `lo` (k ≥ 1, lo ≥ 2), known to be at most `hi`.
fn kth_prime_after(
    lo: u64,
    k: u64,
    hi: u64,
    cancel: &(dyn Fn() -> bool + Sync),
) -> Result<u64, CalcError> {
    // Slot s stands for the odd number 2s + 1; the first odd above lo is slot ⌈lo/2⌉.
    let mut sieve = Sieve::new(lo.div_ceil(2), hi / 2 + 1);
    let mut counted = 0;
    loop {
        if cancel() {
            return Err(CalcError::Cancelled);
        }
        let (start, slots) = sieve
            .next_segment()
            .ok_or_else(|| broken("p_n lies beyond the Rosser–Dusart bound"))?;
        let found = count_primes(slots);
        if counted + found >= k {
            let slot = kth_prime_slot(slots, k - counted)
                .ok_or_else(|| broken("a segment holds fewer primes than it counted"))?;
            return Ok(2 * (start + slot as u64) + 1);
        }
        counted += found;
    }
}

/// The k-th prime counting down from `hi` (k ≥ 1, `hi` itself counts if
/// prime), a window of one segment at a time.
fn kth_prime_down_from(
    hi: u64,
    k: u64,
    cancel: &(dyn Fn() -> bool + Sync),
) -> Result<u64, CalcError> {
    const WINDOW: u64 = 2 * SEGMENT_SLOTS as u64;
    let (mut hi, mut k) = (hi, k);
    loop {
        if cancel() {
            return Err(CalcError::Cancelled);
        }
        // The odd numbers in (lo, hi]: slots ⌈lo/2⌉ up to (hi − 1)/2.
        let lo = hi.saturating_sub(WINDOW).max(2);
        if lo >= hi {
            return Err(broken("counted down below 3 looking for p_n"));
        }
        let mut sieve = Sieve::new(lo.div_ceil(2), hi.div_ceil(2));
        let (start, slots) = sieve
            .next_segment()
            .ok_or_else(|| broken("an empty window below p_n's count"))?;
        let found = count_primes(slots);
        if found >= k {
            let slot = kth_prime_slot(slots, found - k + 1)
                .ok_or_else(|| broken("a segment holds fewer primes than it counted"))?;
            return Ok(2 * (start + slot as u64) + 1);
        }
        k -= found;
        hi = lo;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> bool {
        false
    }

    #[test]
    fn the_nth_prime_by_counting_agrees_with_the_sieve() {
        for n in [10_001, 10_002, 300_000, 1_000_000, 2_750_159, 6_000_000] {
            let sieved = super::super::sieve_nth(&[n], &never).expect("sieve")[0];
            assert_eq!(nth_prime(n, &never), Ok(sieved), "p_{n}");
        }
        assert_eq!(nth_prime(1_000_000_000, &never), Ok(22_801_763_489));
    }

    #[test]
    fn li_matches_known_values() {
        // li(10^6) = 78627.549159…; li(10^12) = π(10^12) + 38263 = 37607950280.8…
        assert!((li(1e6) - 78_627.549_159).abs() < 1e-3, "{}", li(1e6));
        assert!((li(1e12) - 37_607_950_280.8).abs() < 1.0, "{}", li(1e12));
    }

    #[test]
    fn counting_starts_close_to_the_nth_prime() {
        for n in [10_001u64, 123_456, 1_000_000, 6_000_000] {
            let p = super::super::sieve_nth(&[n], &never).expect("sieve")[0];
            let start = riemann_r_inverse(n);
            assert!(
                start.abs_diff(p) < 20_000,
                "R⁻¹({n}) = {start} is far from p_n = {p}"
            );
        }
    }

    #[test]
    fn riemann_r_and_mobius_match_known_values() {
        // R(10^12) = 37607910542.2…, π(10^12) − 1476
        assert!(
            (riemann_r(1e12) - 37_607_910_542.2).abs() < 1.0,
            "{}",
            riemann_r(1e12)
        );
        let mu: Vec<i32> = (1..=12).map(mobius).collect();
        assert_eq!(mu, [1, -1, -1, 0, -1, 1, -1, 0, 0, 1, -1, 0]);
    }

    #[test]
    fn the_nth_prime_is_found_from_either_side_of_the_start() {
        // R⁻¹(n) lands above p_n for some n and below it for others: both
        // searches must answer, checked against one sieve pass.
        let ns: Vec<u64> = (0..60).map(|i| 10_007 + i * 99_991).collect();
        let sieved = super::super::sieve_nth(&ns, &never).expect("sieve");
        let (mut above, mut below) = (0, 0);
        for (&n, &p) in ns.iter().zip(&sieved) {
            if riemann_r_inverse(n) >= p {
                above += 1;
            } else {
                below += 1;
            }
            assert_eq!(nth_prime(n, &never), Ok(p), "p_{n}");
        }
        assert!(
            above > 0 && below > 0,
            "{above} starts above p_n, {below} below"
        );
    }

    #[test]
    fn the_backward_search_crosses_windows() {
        // 2,000,000 numbers below 10^9 + 7 hold far more than one window's primes.
        let hi = 1_000_000_007;
        let k: usize = 60_000;
        let lo = hi - 2_000_000;
        let mut primes = Vec::new();
        super::super::primes_in_range(lo, hi, u64::MAX, &never, &mut |chunk| {
            primes.extend_from_slice(chunk);
            true
        })
        .expect("range");
        let want = primes[primes.len() - k];
        assert_eq!(kth_prime_down_from(hi, k as u64, &never), Ok(want));
    }

    #[test]
    fn the_ten_billionth_prime_is_primecounts() {
        // `primecount 1e10 --nth-prime` (primecount 7.6)
        assert_eq!(nth_prime(10_000_000_000, &never), Ok(252_097_800_623));
    }

    #[test]
    fn counting_stops_when_cancelled() {
        assert_eq!(nth_prime(100_000_000, &|| true), Err(CalcError::Cancelled));
    }
}
