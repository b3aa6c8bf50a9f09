//! π(x), the number of primes ≤ x, by the combinatorial method of Deléglise
//! and Rivat (1996), as laid out by Oliveira e Silva ("Computing π(x): the
//! combinatorial method", 2006): O(x^⅔ / log² x) time and about
//! O(x^⅓ · log³ x) memory (Lehmer's formula, used before, sieved x^¾ numbers).
//!
//! With y = α·∛x (α grows like log³ x; y ≤ √x), z = ⌊x/y⌋, a = π(y) and
//! c = min(a, 6) (φ(·, c) comes from a wheel table):
//!
//! ```text
//! π(x) = φ(x, a) + a − 1 − P2,   φ(x, a) = S1 + S2
//! P2   = Σ_{a < b ≤ π(√x)} (π(x/p_b) − b + 1)       numbers ≤ x with two prime factors > y
//! S1   = Σ_{n ≤ y squarefree, lpf(n) > p_c} μ(n)·φ(x/n, c)         the ordinary leaves
//! S2   = −Σ_{c < b < a} Σ_{m} μ(m)·φ(x/(p_b·m), b − 1)             the special leaves
//!        over squarefree m ≤ y < p_b·m with lpf(m) > p_b
//! ```
//!
//! A special leaf's φ is cheap or not depending on how big x/n is (n = `p_b·m`):
//! - **trivial**: x/n < `p_b`, so φ = 1 (only 1 survives); counted per b;
//! - **easy**: `p_b` > √y (so m is a prime `p_l`) and x/n < y, so
//!   φ(x/n, b − 1) = π(x/n) − b + 2 from a table of π up to y; runs of l
//!   with the same π(x/n) are summed at once;
//! - **hard**: the rest, with y ≤ x/n ≤ z (or `p_b` ≤ √y), answered by a
//!   segmented sieve of [1, z] that crosses off one more prime after each b
//!   and counts what is left below x/n with a per-block tally.
//!
//! P2's π(x/`p_b`) come from one counting pass of the odd-number sieve up to z.
//!
//! The hard leaves run on a scoped thread of their own while the calling
//! thread does S1, the trivial and easy leaves and P2: α is chosen so that
//! the two take about as long.

use std::sync::OnceLock;

use super::{Sieve, broken, count_primes, isqrt_u32, odd_primes_up_to, usize_of};
use crate::domain::CalcError;

/// Below this, π(x) is one plain count by the segmented sieve.
const DIRECT: u64 = 1 << 22;
/// The wheel: φ(x, k) for k ≤ 6 from a table of one period (2·3·5·7·11·13).
const WHEEL: [u64; 6] = [2, 3, 5, 7, 11, 13];
/// Odd numbers per segment of the hard leaves' sieve (a 32 KiB bitmap).
const SEGMENT_BITS: usize = 1 << 18;
/// Bits per tally block of that sieve.
const BLOCK_BITS: usize = 1 << 10;
const WORDS_PER_BLOCK: usize = BLOCK_BITS / 64;

/// π(x): how many primes are ≤ x.
pub(super) fn prime_pi(x: u64, cancel: &(dyn Fn() -> bool + Sync)) -> Result<u64, CalcError> {
    if x < DIRECT {
        return Ok(pi_many(&[x], cancel)?[0]);
    }
    let counter = Counter::new(x);
    // The hard leaves on a second thread, the rest on this one: the two
    // halves take about as long each (see `split_point`). Should the system
    // refuse the thread, this one does both.
    let (hard, rest) = std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("calc-prime-count".to_owned())
            .spawn_scoped(scope, || counter.s2_hard(cancel));
        let rest = counter
            .s1(cancel)
            .and_then(|s1| Ok(s1 + counter.s2_trivial_and_easy(cancel)?))
            .and_then(|phi| Ok(phi - counter.p2(cancel)?));
        let hard = match spawned {
            Ok(handle) => handle
                .join()
                .map_err(|_| broken("the hard leaves' thread panicked"))
                .and_then(|hard| hard),
            Err(_) => counter.s2_hard(cancel),
        };
        (hard, rest)
    });
    let hard = hard?;
    let pi = rest? + hard + counter.a as i128 - 1;
    u64::try_from(pi).map_err(|_| broken("the Deléglise–Rivat sum for π(x) came out negative"))
}

/// y = α·∛x with α = ln³x / 3000, kept within [∛x, √x]: the α at which
/// the hard leaves (one thread) and the rest (the other) take about as long.
// Float math on purpose: α only tunes the split of the work; any y in
// [∛x, √x] gives the exact count.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn split_point(x: u64) -> u64 {
    let ln = (x as f64).ln();
    let alpha = (ln * ln * ln / 3000.0).max(1.0);
    let cube = iroot(x, 3);
    ((alpha * cube as f64) as u64).clamp(cube, x.isqrt())
}

/// The tables one π(x) shares between its sums.
struct Counter {
    x: u64,
    y: u64,
    z: u64,
    /// `primes[i]` is the i-th prime (`primes[0]` is a placeholder 0), up to y.
    primes: Vec<u64>,
    /// `pi[v]` = π(v) for v ≤ y.
    pi: Vec<u32>,
    /// π(y).
    a: usize,
    /// How many primes the wheel takes care of.
    c: usize,
}

impl Counter {
    fn new(x: u64) -> Self {
        let y = split_point(x);
        let mut primes = vec![0, 2];
        primes.extend(
            odd_primes_up_to(u32::try_from(y).unwrap_or(u32::MAX))
                .into_iter()
                .map(u64::from),
        );
        let mut pi = vec![0u32; usize_of(y) + 1];
        let mut count = 0u32;
        let mut next = 1;
        for (v, slot) in pi.iter_mut().enumerate() {
            while next < primes.len() && usize_of(primes[next]) <= v {
                count += 1;
                next += 1;
            }
            *slot = count;
        }
        let a = pi[usize_of(y)] as usize;
        Self {
            x,
            y,
            z: x / y,
            primes,
            pi,
            a,
            c: a.min(WHEEL.len()),
        }
    }

    fn pi_of(&self, v: u64) -> usize {
        self.pi[usize_of(v)] as usize
    }

    /// The ordinary leaves: Σ μ(n)·φ(x/n, c) over squarefree n ≤ y whose
    /// prime factors all exceed `p_c`.
    fn s1(&self, cancel: &(dyn Fn() -> bool + Sync)) -> Result<i128, CalcError> {
        let mut sum = i128::from(wheel_phi(self.x, self.c));
        for i in self.c + 1..=self.a {
            if cancel() {
                return Err(CalcError::Cancelled);
            }
            self.s1_from(i, self.primes[i], -1, &mut sum);
        }
        Ok(sum)
    }

    /// Adds the leaf n (whose largest prime factor is `p_i`) and every n·`p_j`
    /// (j > i) still ≤ y, with alternating signs.
    fn s1_from(&self, i: usize, n: u64, sign: i128, sum: &mut i128) {
        *sum += sign * i128::from(wheel_phi(self.x / n, self.c));
        for j in i + 1..=self.a {
            let Some(next) = n.checked_mul(self.primes[j]).filter(|&m| m <= self.y) else {
                break;
            };
            self.s1_from(j, next, -sign, sum);
        }
    }

    /// The special leaves `p_b·p_l` with `p_b` > √y whose φ needs no sieve:
    /// trivial ones (x/n < `p_b`) and easy ones (x/n < y).
    fn s2_trivial_and_easy(&self, cancel: &(dyn Fn() -> bool + Sync)) -> Result<i128, CalcError> {
        let (x, y, z) = (self.x, self.y, self.z);
        let pi_y = self.pi_of(y);
        let first = self.c.max(self.pi_of(y.isqrt())) + 1;
        let mut sum = 0i128;
        for b in first..self.a {
            if cancel() {
                return Err(CalcError::Cancelled);
            }
            let p = self.primes[b];
            // Every leaf of b has p_l in (lo, y].
            let lo = p.max(y / p);
            let trivial_from = lo.max(x / (p * p));
            if trivial_from < y {
                sum += (pi_y - self.pi_of(trivial_from)) as i128;
            }
            let easy_from = lo.max(z / p);
            let easy_to = y.min(x / (p * p));
            if easy_from >= easy_to {
                continue;
            }
            let xp = x / p;
            let last = self.pi_of(easy_to);
            let first_l = self.pi_of(easy_from) + 1;
            let bp = b as i128 - 2;
            sum += self.easy_runs(xp, first_l, last, easy_to, bp);
        }
        Ok(sum)
    }

    /// Σ over l in first..=last of π(xp/`p_l`) − b + 2 (bp = b − 2), one run
    /// of equal π at a time: the same for every l up to the last one with
    /// xp/`p_l` ≥ `p_v`.
    fn easy_runs(&self, xp: u64, first: usize, last: usize, easy_to: u64, bp: i128) -> i128 {
        let mut sum = 0i128;
        let mut l = first;
        while l <= last {
            let v = self.pi_of(xp / self.primes[l]);
            let run_end = self.pi_of(easy_to.min(xp / self.primes[v]));
            sum += (run_end - l + 1) as i128 * (v as i128 - bp);
            l = run_end + 1;
        }
        sum
    }

    /// The hard special leaves, by a segmented sieve of the odd numbers in
    /// [1, z]: for each b in turn, the leaves whose x/n falls in the segment
    /// are answered with φ(x/n, b − 1) = (survivors below the segment) +
    /// (survivors in it up to x/n); then the multiples of `p_b` are crossed off.
    // x, y, z, p, l and m are the paper's names; b indexes the primes as
    // well as `below`.
    #[allow(clippy::many_single_char_names, clippy::needless_range_loop)]
    fn s2_hard(&self, cancel: &(dyn Fn() -> bool + Sync)) -> Result<i128, CalcError> {
        let (x, y, z) = (self.x, self.y, self.z);
        let pi_sqrt_y = self.pi_of(y.isqrt());
        let pi_sqrt_z = self.pi_of(z.isqrt().min(y));
        if pi_sqrt_z <= self.c {
            return Ok(0);
        }
        // Per m ≤ y: μ(m)·lpf(m), built here, on the thread that reads it.
        let leaf = leaf_table(&self.primes[1..=self.a], usize_of(y));
        let mut sieve = LeafSieve::new(&self.primes[..=pi_sqrt_z]);
        // Per b: survivors of the first b − 1 primes below the segment.
        let mut below = vec![0u64; pi_sqrt_z + 1];
        let mut sum = 0i128;
        let mut low = 1;
        while low <= z {
            if cancel() {
                return Err(CalcError::Cancelled);
            }
            let high = (low + 2 * SEGMENT_BITS as u64).min(z + 1);
            sieve.start(low, high, self.c);
            'primes: for b in self.c + 1..=pi_sqrt_z {
                let p = self.primes[b];
                let mut tally = Tally::default();
                if b <= pi_sqrt_y {
                    // Leaves p_b·m, m squarefree with lpf(m) > p_b.
                    let min_m = (x / (p * high)).max(y / p);
                    let max_m = (x / (p * low)).min(y);
                    if p >= max_m {
                        break 'primes;
                    }
                    // lpf(m) > p_b ≥ 17: m is odd.
                    let top = max_m - (1 - max_m % 2);
                    for m in (min_m + 1..=top).rev().step_by(2) {
                        let leaf = leaf[usize_of(m)];
                        if leaf != 0 && u64::from(leaf.unsigned_abs()) > p {
                            let phi = below[b] + sieve.count_to(&mut tally, x / (p * m));
                            sum -= i128::from(leaf.signum()) * i128::from(phi);
                        }
                    }
                } else {
                    // Leaves p_b·p_l with y ≤ x/n, so p_l ≤ z/p_b.
                    let mut l = self.pi_of((x / (p * low)).min(z / p).min(y));
                    if p >= self.primes[l] {
                        break 'primes;
                    }
                    let floor = (x / (p * high)).max(y / p).max(p);
                    while self.primes[l] > floor {
                        let phi = below[b] + sieve.count_to(&mut tally, x / (p * self.primes[l]));
                        sum += i128::from(phi);
                        l -= 1;
                    }
                }
                below[b] += sieve.remaining;
                sieve.cross_off(b);
            }
            low = high;
        }
        Ok(sum)
    }

    /// P2: Σ_{a < b ≤ π(√x)} (π(x/`p_b`) − b + 1) over the primes `p_b` in
    /// (y, √x], the π by one sieve pass up to z.
    fn p2(&self, cancel: &(dyn Fn() -> bool + Sync)) -> Result<i128, CalcError> {
        let above_y = odd_primes_up_to(isqrt_u32(self.x))
            .into_iter()
            .map(u64::from)
            .filter(|&p| p > self.y);
        let quotients: Vec<u64> = above_y.map(|p| self.x / p).collect();
        let counts = pi_many(&quotients, cancel)?;
        Ok(counts
            .into_iter()
            .zip(self.a + 1..)
            .map(|(pi, b)| i128::from(pi) - b as i128 + 1)
            .sum())
    }
}

/// Per m ≤ `y`: μ(m)·lpf(m), 0 where m is not squarefree, `i32::MAX` at m = 1.
fn leaf_table(primes: &[u64], y: usize) -> Vec<i32> {
    let mut lpf = vec![0u32; y + 1];
    let mut mu = vec![1i8; y + 1];
    for &p in primes {
        let p = usize_of(p);
        for m in (p..=y).step_by(p) {
            if lpf[m] == 0 {
                lpf[m] = u32::try_from(p).unwrap_or(u32::MAX);
            }
            mu[m] = -mu[m];
        }
        if let Some(square) = p.checked_mul(p) {
            for m in (square..=y).step_by(square) {
                mu[m] = 0;
            }
        }
    }
    let mut leaf: Vec<i32> = lpf
        .iter()
        .zip(&mu)
        .map(|(&f, &m)| i32::try_from(f).unwrap_or(i32::MAX) * i32::from(m))
        .collect();
    if y >= 1 {
        leaf[1] = i32::MAX;
    }
    leaf
}

/// One segment of odd numbers [low, high) as a bitmap (bit i is low + 2i),
/// with how many bits are set per block and in all.
struct LeafSieve<'a> {
    words: Vec<u64>,
    blocks: Vec<u32>,
    /// Per prime index b (b ≥ 2): its next odd multiple to cross off.
    next: Vec<u64>,
    primes: &'a [u64],
    low: u64,
    bits: usize,
    remaining: u64,
}

/// Where a run of rising `count_to` queries has got to in the bitmap.
#[derive(Default)]
struct Tally {
    /// Set bits in `words[..word]`.
    counted: u64,
    word: usize,
}

impl<'a> LeafSieve<'a> {
    fn new(primes: &'a [u64]) -> Self {
        Self {
            words: vec![0; SEGMENT_BITS / 64],
            blocks: vec![0; SEGMENT_BITS / BLOCK_BITS],
            next: primes.to_vec(),
            primes,
            low: 1,
            bits: 0,
            remaining: 0,
        }
    }

    /// Starts the segment [low, high) (low odd) with the multiples of
    /// `p_2`..=`p_c` crossed off (2's have no bit).
    fn start(&mut self, low: u64, high: u64, c: usize) {
        self.low = low;
        self.bits = usize_of((high - low).div_ceil(2));
        let full = self.bits / 64;
        self.words.fill(0);
        self.words[..full].fill(u64::MAX);
        if !self.bits.is_multiple_of(64) {
            self.words[full] = (1u64 << (self.bits % 64)) - 1;
        }
        for b in 2..=c {
            let p = usize_of(self.primes[b]);
            let mut i = usize_of((self.next[b] - low) / 2);
            while i < self.bits {
                self.words[i / 64] &= !(1u64 << (i % 64));
                i += p;
            }
            self.next[b] = low + 2 * i as u64;
        }
        let mut remaining = 0;
        for (block, words) in self
            .blocks
            .iter_mut()
            .zip(self.words.chunks(WORDS_PER_BLOCK))
        {
            *block = words.iter().map(|w| w.count_ones()).sum();
            remaining += u64::from(*block);
        }
        self.remaining = remaining;
    }

    /// Crosses off `p_b`'s odd multiples in the segment, keeping the tallies.
    fn cross_off(&mut self, b: usize) {
        let p = usize_of(self.primes[b]);
        let mut i = usize_of((self.next[b] - self.low) / 2);
        while i < self.bits {
            let bit = 1u64 << (i % 64);
            let word = &mut self.words[i / 64];
            let was = u32::from(*word & bit != 0);
            *word &= !bit;
            self.blocks[i / BLOCK_BITS] -= was;
            self.remaining -= u64::from(was);
            i += p;
        }
        self.next[b] = self.low + 2 * i as u64;
    }

    /// Set bits for the odd numbers in [low, v]; `v` in [low, high), and
    /// never below the last `v` asked with the same `tally`.
    fn count_to(&self, tally: &mut Tally, v: u64) -> u64 {
        let pos = usize_of((v - self.low) / 2);
        let word = pos / 64;
        // Whole blocks first, then whole words.
        let block = word / WORDS_PER_BLOCK;
        if block > tally.word / WORDS_PER_BLOCK {
            let from = tally.word / WORDS_PER_BLOCK;
            let into: u64 = self.words[tally.word..(from + 1) * WORDS_PER_BLOCK]
                .iter()
                .map(|w| u64::from(w.count_ones()))
                .sum();
            let blocks: u64 = self.blocks[from + 1..block]
                .iter()
                .map(|&n| u64::from(n))
                .sum();
            tally.counted += into + blocks;
            tally.word = block * WORDS_PER_BLOCK;
        }
        while tally.word < word {
            tally.counted += u64::from(self.words[tally.word].count_ones());
            tally.word += 1;
        }
        let partial = self.words[word] & (u64::MAX >> (63 - pos % 64));
        tally.counted + u64::from(partial.count_ones())
    }
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
pub(super) fn pi_many(
    values: &[u64],
    cancel: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<u64>, CalcError> {
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
    use proptest::prelude::*;

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
    fn the_leaf_table_holds_mobius_times_least_factor() {
        let primes: Vec<u64> = vec![2, 3, 5, 7];
        let leaf = leaf_table(&primes, 60);
        assert_eq!(leaf[1], i32::MAX);
        assert_eq!(leaf[2], -2);
        assert_eq!(leaf[6], 2);
        assert_eq!(leaf[12], 0);
        assert_eq!(leaf[30], -2);
        assert_eq!(leaf[35], 5);
        assert_eq!(leaf[49], 0);
    }

    #[test]
    fn the_count_agrees_with_the_sieve_around_hard_cases() {
        // Around powers of ten, at primes and next to them, off round numbers,
        // and at squares and cubes, where y, z and the leaf bounds change.
        let xs: Vec<u64> = vec![
            DIRECT,
            DIRECT + 1,
            10_000_000,
            10_000_019,
            10_000_020,
            31_622_776,
            99_999_989,
            100_000_000,
            123_456_789,
            500_000_003 * 2,
            1_771_561 * 1_771_561 / 1_000, // near a sixth power
            1_000_000_007,
        ];
        let sieved = pi_many(&xs, &never).expect("sieve");
        for (&x, &want) in xs.iter().zip(&sieved) {
            assert_eq!(prime_pi(x, &never), Ok(want), "π({x})");
        }
    }

    #[test]
    fn the_count_matches_primecount_at_powers_of_ten() {
        // `primecount 1e9` … `primecount 1e13` (primecount 7.6)
        for (x, pi) in [
            (1_000_000_000u64, 50_847_534u64),
            (10_000_000_000, 455_052_511),
            (100_000_000_000, 4_118_054_813),
            (1_000_000_000_000, 37_607_912_018),
            (10_000_000_000_000, 346_065_536_839),
        ] {
            assert_eq!(prime_pi(x, &never), Ok(pi), "π({x})");
        }
    }

    #[test]
    fn counting_stops_when_cancelled() {
        assert_eq!(
            prime_pi(10_000_000_000, &|| true),
            Err(CalcError::Cancelled)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn random_counts_match_the_sieve(x in DIRECT..300_000_000u64) {
            let want = pi_many(&[x], &never).expect("sieve")[0];
            prop_assert_eq!(prime_pi(x, &never), Ok(want));
        }
    }
}
