//! π(x), the number of primes ≤ x, by Lehmer's formula, and the n-th prime
//! from it: count the primes up to li⁻¹(n), just below `p_n`, then sieve only
//! the short stretch between the two.
//!
//! Lehmer (1959), with a = π(x^¼), b = π(x^½), c = π(x^⅓):
//!
//! ```text
//! π(x) = φ(x, a) + (b + a − 2)(b − a + 1)/2
//!        − Σ_{a<i≤b} π(x/p_i)
//!        − Σ_{a<i≤c} Σ_{i≤j≤b_i} (π(x/(p_i·p_j)) − (j − 1)),   b_i = π(√(x/p_i))
//! ```
//!
//! φ(x, a) — how many numbers ≤ x have none of the first a primes as a
//! factor — comes from Legendre's recursion `φ(x, a) = φ(x, a−1) − φ(x/p_a, a−1)`,
//! cut short by a wheel table for a ≤ 6 and by φ(y, k) = π(y) − k + 1 once
//! y < p_{k+1}². Memory stays O(√x): the primes up to √x, plus the `π(x/p_i)`
//! values above √x (up to x^¾), which are answered together by one counting
//! pass of the segmented sieve rather than from a table.

use std::sync::OnceLock;

use super::{
    Sieve, broken, count_primes, isqrt_u32, kth_prime_slot, nth_prime_upper_bound,
    odd_primes_up_to, usize_of,
};
use crate::domain::CalcError;

/// Below this, π(x) is one plain count by the segmented sieve.
const DIRECT: u64 = 1 << 22;
/// The wheel: φ(x, k) for k ≤ 6 from a table of one period (2·3·5·7·11·13).
const WHEEL: [u64; 6] = [2, 3, 5, 7, 11, 13];
/// How many φ steps run between two looks at the cancel flag.
const CANCEL_EVERY: u64 = 1 << 16;

/// The n-th prime for n ≥ 2: π(x) at x = li⁻¹(n), then a sieve over the
/// short stretch from x to `p_n`.
///
/// π(x) < li(x) for every x this module reaches (the first x where π
/// overtakes li is beyond 10^19, and `p_n` for [`super::MAX_N`] is about
/// 3·10^13), so π(li⁻¹(n)) < n and `p_n` lies just above li⁻¹(n): about
/// (li(x) − π(x))·ln x numbers, ~10^6 for n = 10^11, where the Rosser–Dusart
/// lower bound used before left ~5·10^7 for n = 10^9. Should the count come
/// out at n or more anyway, the start steps down until it does not.
pub(super) fn nth_prime(n: u64, cancel: &dyn Fn() -> bool) -> Result<u64, CalcError> {
    let mut below = li_inverse(n).max(2);
    let mut counted = prime_pi(below, cancel)?;
    while counted >= n {
        let step = (counted - n + 1).saturating_mul(u64::from(below.ilog2()) + 1) + 1024;
        below = below.saturating_sub(step).max(2);
        counted = prime_pi(below, cancel)?;
    }
    kth_prime_after(below, n - counted, nth_prime_upper_bound(n), cancel)
}

/// ⌊li⁻¹(n)⌋ for n ≥ 2: the x where the logarithmic integral reaches n, by
/// Newton's method from n·ln n.
// Float math on purpose: n ≤ MAX_N < 2^53 is exact as an f64; the answer is
// positive and far below 2^64, and only needs to be near li⁻¹(n).
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn li_inverse(n: u64) -> u64 {
    let target = n as f64;
    let mut x = (target * target.ln()).max(3.0);
    for _ in 0..64 {
        let step = (li(x) - target) * x.ln();
        x = (x - step).max(3.0);
        if step.abs() < 0.5 {
            break;
        }
    }
    x as u64
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
fn kth_prime_after(lo: u64, k: u64, hi: u64, cancel: &dyn Fn() -> bool) -> Result<u64, CalcError> {
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

/// π(x): how many primes are ≤ x.
pub(super) fn prime_pi(x: u64, cancel: &dyn Fn() -> bool) -> Result<u64, CalcError> {
    if x < DIRECT {
        return Ok(pi_many(&[x], cancel)?[0]);
    }
    let root = isqrt_u32(x);
    let limit = u64::from(root);
    let mut primes = vec![2u64];
    primes.extend(odd_primes_up_to(root).into_iter().map(u64::from));
    let mut lehmer = Lehmer {
        primes,
        limit,
        cancel,
        steps: 0,
    };
    let a = lehmer.pi_small(iroot(x, 4));
    let b = lehmer.pi_small(limit);
    let c = lehmer.pi_small(iroot(x, 3));
    let (ai, bi) = (a as i128, b as i128);
    let mut sum = i128::from(lehmer.phi(x, a)?) + (bi + ai - 2) * (bi - ai + 1) / 2;
    let quotients: Vec<u64> = (a + 1..=b).map(|i| x / lehmer.primes[i - 1]).collect();
    let counts = pi_many(&quotients, cancel)?;
    for (i, (&w, &pi_w)) in (a + 1..=b).zip(quotients.iter().zip(&counts)) {
        sum -= i128::from(pi_w);
        if i <= c {
            // x / (p_i·p_j) < √x here: the small table answers.
            let bi = lehmer.pi_small(w.isqrt());
            for j in i..=bi {
                sum -= lehmer.pi_small(w / lehmer.primes[j - 1]) as i128 - (j as i128 - 1);
            }
        }
    }
    u64::try_from(sum).map_err(|_| broken("Lehmer's sum for π(x) came out negative"))
}

/// The integer k-th root of x: the largest r with r^k ≤ x.
// The float root is only a first guess: the loops below make it exact.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn iroot(x: u64, k: u32) -> u64 {
    let mut r = (x as f64).powf(1.0 / f64::from(k)) as u64;
    while r > 0 && r.checked_pow(k).is_none_or(|v| v > x) {
        r -= 1;
    }
    while (r + 1).checked_pow(k).is_some_and(|v| v <= x) {
        r += 1;
    }
    r
}

struct Lehmer<'a> {
    /// Every prime ≤ `limit`, ascending, from 2.
    primes: Vec<u64>,
    limit: u64,
    cancel: &'a dyn Fn() -> bool,
    steps: u64,
}

impl Lehmer<'_> {
    /// π(v) for v ≤ `limit`.
    fn pi_small(&self, v: u64) -> usize {
        debug_assert!(v <= self.limit);
        self.primes.partition_point(|&p| p <= v)
    }

    /// φ(x, a): how many of 1..=x have none of the first `a` primes as a factor.
    fn phi(&mut self, x: u64, a: usize) -> Result<u64, CalcError> {
        if x == 0 {
            return Ok(0);
        }
        if a <= WHEEL.len() {
            return Ok(wheel_phi(x, a));
        }
        let next = self.primes[a]; // p_{a+1}
        if x <= self.limit && x < next * next {
            // Left standing: 1 and the primes in (p_a, x].
            let pi = self.pi_small(x);
            return Ok(if pi >= a { (pi - a + 1) as u64 } else { 1 });
        }
        self.steps += 1;
        if self.steps.is_multiple_of(CANCEL_EVERY) && (self.cancel)() {
            return Err(CalcError::Cancelled);
        }
        let p = self.primes[a - 1];
        Ok(self.phi(x, a - 1)? - self.phi(x / p, a - 1)?)
    }
}

/// φ(x, k) for k ≤ 6 from one period of the wheel of the first k primes.
fn wheel_phi(x: u64, k: usize) -> u64 {
    if k == 0 {
        return x;
    }
    let (period, totient, table) = &wheel_tables()[k - 1];
    (x / period) * totient + u64::from(table[usize_of(x % period)])
}

/// Per k in 1..=6: the product of the first k primes, how many numbers of
/// one period are coprime to them, and per residue r how many of 1..=r are.
fn wheel_tables() -> &'static [(u64, u64, Vec<u32>); 6] {
    static TABLES: OnceLock<[(u64, u64, Vec<u32>); 6]> = OnceLock::new();
    TABLES.get_or_init(|| {
        std::array::from_fn(|i| {
            let primes = &WHEEL[..=i];
            let period: u64 = primes.iter().product();
            let mut table = Vec::with_capacity(usize_of(period));
            let mut count = 0u32;
            for r in 0..period {
                if r > 0 && primes.iter().all(|&p| r % p != 0) {
                    count += 1;
                }
                table.push(count);
            }
            (period, u64::from(count), table)
        })
    })
}

/// π(v) for every v in `values` (any order), by one counting pass of the
/// segmented sieve up to the largest.
fn pi_many(values: &[u64], cancel: &dyn Fn() -> bool) -> Result<Vec<u64>, CalcError> {
    let mut answers = vec![0; values.len()];
    let mut order: Vec<usize> = (0..values.len()).filter(|&i| values[i] >= 3).collect();
    for (i, &v) in values.iter().enumerate() {
        if v == 2 {
            answers[i] = 1;
        }
    }
    order.sort_unstable_by_key(|&i| values[i]);
    let Some(&last) = order.last() else {
        return Ok(answers);
    };
    // Odd slots 1..: slot s is 2s + 1; the odd numbers ≤ v are slots 0..=(v − 1)/2.
    let mut sieve = Sieve::new(0, (values[last] - 1) / 2 + 1);
    let mut counted = 1; // the prime 2
    let mut queries = order.into_iter().peekable();
    while queries.peek().is_some() {
        if cancel() {
            return Err(CalcError::Cancelled);
        }
        let (start, slots) = sieve
            .next_segment()
            .ok_or_else(|| broken("the sieve ended below the largest value"))?;
        let end = start + slots.len() as u64;
        let mut at = 0usize;
        let mut running = counted;
        while let Some(i) = queries.next_if(|&i| (values[i] - 1) / 2 < end) {
            let upto = usize_of((values[i] - 1) / 2 - start);
            if upto >= at {
                running += count_primes(&slots[at..=upto]);
                at = upto + 1;
            }
            answers[i] = running;
        }
        counted += count_primes(slots);
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> bool {
        false
    }

    fn naive_pi(x: u64) -> u64 {
        (2..=x)
            .filter(|&n| (2..=n.isqrt()).all(|d| n % d != 0))
            .count() as u64
    }

    #[test]
    fn small_counts_match_a_naive_count() {
        let values: Vec<u64> = (0..2_000).collect();
        let counted = pi_many(&values, &never).expect("count");
        for (&v, &pi) in values.iter().zip(&counted) {
            assert_eq!(pi, naive_pi(v), "π({v})");
        }
    }

    #[test]
    fn integer_roots_are_exact_at_the_edges() {
        for (x, k, r) in [
            (15, 4, 1),
            (16, 4, 2),
            (80, 4, 2),
            (81, 4, 3),
            (26, 3, 2),
            (27, 3, 3),
        ] {
            assert_eq!(iroot(x, k), r, "{x}^(1/{k})");
        }
        assert_eq!(iroot(u64::MAX, 2), u64::from(u32::MAX));
        let big: u64 = 1_000_000_000_000;
        assert_eq!(iroot(big, 3), 10_000);
        assert_eq!(iroot(big - 1, 3), 9_999);
    }

    #[test]
    fn wheel_phi_counts_what_it_claims() {
        for k in 1..=6 {
            for x in [0u64, 1, 2, 29, 30, 31, 30_029, 30_030, 30_031, 100_000] {
                let naive = (1..=x)
                    .filter(|n| WHEEL[..k].iter().all(|p| n % p != 0))
                    .count();
                assert_eq!(wheel_phi(x, k), naive as u64, "φ({x}, {k})");
            }
        }
    }

    #[test]
    fn lehmer_agrees_with_the_sieve_and_known_values() {
        // Around powers of ten, at primes and next to them, and off round numbers.
        let xs: Vec<u64> = [
            DIRECT,
            DIRECT + 1,
            10_000_000,
            10_000_019,
            10_000_020,
            31_622_776,
            99_999_989,
            100_000_000,
            123_456_789,
        ]
        .to_vec();
        let sieved = pi_many(&xs, &never).expect("sieve");
        for (&x, &want) in xs.iter().zip(&sieved) {
            assert_eq!(prime_pi(x, &never), Ok(want), "π({x})");
        }
        assert_eq!(prime_pi(1_000_000_000, &never), Ok(50_847_534));
        assert_eq!(prime_pi(10_000_000_000, &never), Ok(455_052_511));
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
    fn counting_starts_just_below_the_nth_prime() {
        for n in [10_001u64, 123_456, 1_000_000, 6_000_000] {
            let p = super::super::sieve_nth(&[n], &never).expect("sieve")[0];
            let start = li_inverse(n);
            assert!(start < p, "li⁻¹({n}) = {start} is not below p_n = {p}");
            assert!(
                p - start < 100_000,
                "li⁻¹({n}) = {start} is far below p_n = {p}"
            );
        }
    }

    #[test]
    fn the_ten_billionth_prime_is_primecounts() {
        // `primecount 1e10 --nth-prime` (primecount 7.6)
        assert_eq!(nth_prime(10_000_000_000, &never), Ok(252_097_800_623));
    }

    #[test]
    fn counting_stops_when_cancelled() {
        assert_eq!(
            prime_pi(10_000_000_000, &|| true),
            Err(CalcError::Cancelled)
        );
        assert_eq!(nth_prime(100_000_000, &|| true), Err(CalcError::Cancelled));
    }
}
