//! Prime numbers: the n-th prime and the primes of a range, by a segmented
//! sieve of Eratosthenes over odd numbers only.
//!
//! Memory is O(√p) for the base primes plus one fixed segment of
//! [`SEGMENT_SLOTS`] bytes (one byte per odd number, sized to sit in L2).
//! Multiples of 3, 5, 7, 11 and 13 are not crossed off one by one: each
//! segment starts as a copy of their repeating pattern. Every base prime
//! carries its next multiple's offset from one segment to the next, so no
//! division happens after set-up.
//!
//! The n-th prime: up to [`TABLE_LEN`] from a table; for a few larger n, by
//! counting the primes up to R⁻¹(n), Riemann's estimate of `p_n`, by the
//! method of Deléglise and Rivat ([`pi`], O(p^⅔/log² p) time), and sieving
//! only the short stretch between the estimate and `p_n` ([`count`]); for many
//! n at once, by one sieve pass counting each segment's primes and scanning
//! only the segments that hold an answer.
//!
//! Not here: clocks. The caller passes a `cancel` closure, asked once per
//! segment, and runs this on a blocking thread; one π(x) splits its work
//! over that thread and one scoped thread of its own.

mod count;
mod pi;

use std::sync::OnceLock;

use super::CalcError;

/// Odd numbers per segment: 256 KiB of one-byte slots, 524,288 numbers wide.
pub const SEGMENT_SLOTS: usize = 256 * 1024;
/// Primes per call of a range's sink, at most.
pub const CHUNK: usize = 1024;
/// The largest n this module accepts at all (`p_n` ≈ 2.9·10^13), whatever the caller's limit.
pub const MAX_N: u64 = 1_000_000_000_000;
/// The largest upper end of a range: base primes up to √10^15 take ~8 MB.
pub const MAX_HI: u64 = 1_000_000_000_000_000;
/// n up to this is answered from a table computed once.
pub const TABLE_LEN: usize = 10_000;
/// The `TABLE_LEN`-th prime.
const TABLE_LAST: u32 = 104_729;

/// Primes pre-sieved by pattern copy; the pattern repeats every 3·5·7·11·13 odd numbers.
const PRESIEVED: [u64; 5] = [3, 5, 7, 11, 13];
const PATTERN_LEN: usize = 3 * 5 * 7 * 11 * 13;

/// The n-th prime, 1-based (the 1st is 2). `cancel` is asked once per segment.
pub fn nth_prime(n: u64, cancel: &(dyn Fn() -> bool + Sync)) -> Result<u64, CalcError> {
    validate_n(n, MAX_N)?;
    let answers = nth_of_sorted(&[n], cancel)?;
    Ok(answers[0])
}

/// The n-th prime for each n, in the order asked, from one pass of the sieve.
///
/// Each n must be in `1..=max_n` (and `max_n` is capped at [`MAX_N`]).
pub fn nth_primes(
    ns: &[u64],
    max_n: u64,
    cancel: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<u64>, CalcError> {
    let max_n = max_n.min(MAX_N);
    for &n in ns {
        validate_n(n, max_n)?;
    }
    let mut sorted = ns.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let answers = nth_of_sorted(&sorted, cancel)?;
    ns.iter()
        .map(|n| {
            sorted
                .binary_search(n)
                .map(|at| answers[at])
                .map_err(|_| broken("an n asked is not among the sorted ones"))
        })
        .collect()
}

/// Streams the primes of `[lo, hi]` to `sink` in ascending chunks of at most
/// [`CHUNK`]; `sink` returns `false` to stop early (that is not an error).
///
/// An empty range (`hi < lo`) yields nothing. More than `max_width` numbers
/// is [`CalcError::RangeTooLarge`]; `hi` above [`MAX_HI`] is
/// [`CalcError::HiTooLarge`].
pub fn primes_in_range(
    lo: u64,
    hi: u64,
    max_width: u64,
    cancel: &(dyn Fn() -> bool + Sync),
    sink: &mut dyn FnMut(&[u64]) -> bool,
) -> Result<(), CalcError> {
    if hi < lo {
        return Ok(());
    }
    let width = (hi - lo).saturating_add(1);
    if width > max_width {
        return Err(CalcError::RangeTooLarge {
            width,
            max: max_width,
        });
    }
    if hi > MAX_HI {
        return Err(CalcError::HiTooLarge { hi, max: MAX_HI });
    }
    let mut chunk = Vec::with_capacity(CHUNK);
    if lo <= 2 && 2 <= hi {
        chunk.push(2);
    }
    // Slot i holds the odd number 2i + 1: the first odd ≥ lo is slot lo / 2,
    // the last odd ≤ hi is slot (hi - 1) / 2.
    let (first, end) = (lo / 2, hi.div_ceil(2));
    if first < end {
        let mut sieve = Sieve::new(first, end);
        loop {
            if cancel() {
                return Err(CalcError::Cancelled);
            }
            let Some((start, slots)) = sieve.next_segment() else {
                break;
            };
            for (i, &slot) in slots.iter().enumerate() {
                if slot != 0 {
                    chunk.push(2 * (start + i as u64) + 1);
                    if chunk.len() == CHUNK {
                        if !sink(&chunk) {
                            return Ok(());
                        }
                        chunk.clear();
                    }
                }
            }
        }
    }
    if !chunk.is_empty() {
        sink(&chunk);
    }
    Ok(())
}

/// An upper bound for `p_n`, n ≥ 6: `p_n` < n(ln n + ln ln n) (Rosser 1941;
/// Dusart 1999). The margin covers f64 rounding.
// Float math on purpose: n ≤ MAX_N < 2^53 is exact as an f64, and the bound
// is positive and far below 2^64.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub fn nth_prime_upper_bound(n: u64) -> u64 {
    if n < 6 {
        return 13;
    }
    let x = n as f64;
    (x * (x.ln() + x.ln().ln())) as u64 + 64
}

/// A broken invariant of the sieve, answered as an internal error rather
/// than a panic on the blocking thread.
fn broken(what: &str) -> CalcError {
    CalcError::Internal(format!("prime sieve invariant broken: {what}"))
}

/// A slot count or index as a `usize`. Each one sizes or indexes a slice in
/// memory, so it fits; one that did not would saturate (and fail the bounds
/// check) rather than wrap to a wrong slot.
fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// ⌊√x⌋, which always fits a `u32` (⌊√(2^64 − 1)⌋ = 2^32 − 1).
fn isqrt_u32(x: u64) -> u32 {
    u32::try_from(x.isqrt()).unwrap_or(u32::MAX)
}

fn validate_n(n: u64, max: u64) -> Result<(), CalcError> {
    match n {
        0 => Err(CalcError::InvalidN),
        n if n > max => Err(CalcError::NTooLarge { n, max }),
        _ => Ok(()),
    }
}

/// The first [`TABLE_LEN`] primes, sieved once on first use.
fn table() -> &'static [u64] {
    static TABLE: OnceLock<Vec<u64>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut primes = vec![2];
        primes.extend(odd_primes_up_to(TABLE_LAST).into_iter().map(u64::from));
        debug_assert_eq!(primes.len(), TABLE_LEN);
        primes
    })
}

/// Above the table, up to this many n are answered each by counting
/// (`count::nth_prime`); more share one sieve pass up to the largest.
const COUNTED_TARGETS: usize = 64;

/// Answers for `targets` (ascending, distinct, each in `1..=MAX_N`): the table
/// first, then by counting ([`count`]) for a few, or one sieve pass for many.
fn nth_of_sorted(
    targets: &[u64],
    cancel: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<u64>, CalcError> {
    let table = table();
    let split = targets.partition_point(|&n| n <= TABLE_LEN as u64);
    let mut answers: Vec<u64> = targets[..split]
        .iter()
        .map(|&n| table[usize_of(n - 1)])
        .collect();
    let rest = &targets[split..];
    if rest.len() <= COUNTED_TARGETS {
        for &n in rest {
            answers.push(count::nth_prime(n, cancel)?);
        }
    } else {
        answers.extend(sieve_nth(rest, cancel)?);
    }
    Ok(answers)
}

/// The n-th primes for `targets` (ascending, distinct, ≥ 1) by counting
/// segment by segment and scanning only the segments that hold an answer.
fn sieve_nth(targets: &[u64], cancel: &(dyn Fn() -> bool + Sync)) -> Result<Vec<u64>, CalcError> {
    let Some(&last) = targets.last() else {
        return Ok(Vec::new());
    };
    let mut answers = Vec::with_capacity(targets.len());
    let mut sieve = Sieve::new(0, nth_prime_upper_bound(last) / 2 + 1);
    let mut counted = 1; // the prime 2, which has no slot
    let mut pending = targets.iter().copied().peekable();
    if pending.next_if_eq(&1).is_some() {
        answers.push(2);
    }
    while pending.peek().is_some() {
        if cancel() {
            return Err(CalcError::Cancelled);
        }
        let (start, slots) = sieve
            .next_segment()
            .ok_or_else(|| broken("p_n lies beyond the Rosser–Dusart bound"))?;
        let found = count_primes(slots);
        while let Some(n) = pending.next_if(|&n| n <= counted + found) {
            let slot = kth_prime_slot(slots, n - counted)
                .ok_or_else(|| broken("a segment holds fewer primes than it counted"))?;
            answers.push(2 * (start + slot as u64) + 1);
        }
        counted += found;
    }
    Ok(answers)
}

/// Odd primes from 3 to `limit`, by a plain odd-only sieve (for base primes
/// and the table; `limit` ≤ √`MAX_HI` keeps this ≤ 16 MB).
fn odd_primes_up_to(limit: u32) -> Vec<u32> {
    if limit < 3 {
        return Vec::new();
    }
    let slots = limit.div_ceil(2) as usize; // odd numbers 1, 3, …, ≤ limit
    let mut is_prime = vec![true; slots];
    is_prime[0] = false;
    let mut i = 1;
    while (2 * i + 1) * (2 * i + 1) < 2 * slots {
        if is_prime[i] {
            let p = 2 * i + 1;
            let mut m = (p * p - 1) / 2;
            while m < slots {
                is_prime[m] = false;
                m += p;
            }
        }
        i += 1;
    }
    // Slot i is the odd number 2i + 1: the slots and the odd numbers up to
    // `limit` are as many.
    is_prime
        .iter()
        .zip((1..=limit).step_by(2))
        .filter_map(|(&prime, number)| prime.then_some(number))
        .collect()
}

/// The odd numbers' slots cleared for multiples of 3, 5, 7, 11, 13; slot k
/// stands for the odd number 2k + 1, so the pattern repeats every 15,015 slots.
fn presieve_pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        (0..PATTERN_LEN as u64)
            .map(|k| u8::from(PRESIEVED.iter().all(|&q| (2 * k + 1) % q != 0)))
            .collect()
    })
}

/// A segmented sieve over the odd numbers of slots `[start, end)`.
struct Sieve {
    /// Odd primes from 17 to √(last number), ascending.
    primes: Vec<u32>,
    /// Per prime: the slot of its next odd multiple to cross, relative to `start`.
    offsets: Vec<u64>,
    slots: Vec<u8>,
    /// The first slot of the next segment.
    start: u64,
    end: u64,
}

impl Sieve {
    /// A sieve of the odd numbers 2·first + 1 up to 2·(end − 1) + 1; `first < end`.
    fn new(first: u64, end: u64) -> Self {
        let last_number = 2 * (end - 1) + 1;
        let primes: Vec<u32> = odd_primes_up_to(isqrt_u32(last_number))
            .into_iter()
            .filter(|&p| u64::from(p) > PRESIEVED[PRESIEVED.len() - 1])
            .collect();
        let lowest = 2 * first + 1;
        let offsets = primes
            .iter()
            .map(|&p| {
                let p = u64::from(p);
                // Smaller multiples of p have a smaller prime factor; even ones have no slot.
                let mut m = (p * p).max(lowest.div_ceil(p) * p);
                if m % 2 == 0 {
                    m += p;
                }
                (m - 1) / 2 - first
            })
            .collect();
        let len = usize_of(end - first).min(SEGMENT_SLOTS);
        Self {
            primes,
            offsets,
            slots: vec![0; len],
            start: first,
            end,
        }
    }

    /// Sieves the next segment: its first slot and its slots (1 = prime).
    fn next_segment(&mut self) -> Option<(u64, &[u8])> {
        if self.start >= self.end {
            return None;
        }
        let start = self.start;
        let len = usize_of(self.end - start).min(SEGMENT_SLOTS);
        let slots = &mut self.slots[..len];
        presieve(slots, start);
        for (&p, offset) in self.primes.iter().zip(self.offsets.iter_mut()) {
            if *offset >= len as u64 {
                *offset -= len as u64;
                continue;
            }
            let p = p as usize;
            let mut i = usize_of(*offset);
            // Four crossings per round when they fit: fewer loop tests for small primes.
            while i + 3 * p < slots.len() {
                slots[i] = 0;
                slots[i + p] = 0;
                slots[i + 2 * p] = 0;
                slots[i + 3 * p] = 0;
                i += 4 * p;
            }
            while i < slots.len() {
                slots[i] = 0;
                i += p;
            }
            *offset = (i - len) as u64;
        }
        // The pattern cleared 3..=13 themselves and left 1 standing.
        let within = start..start + len as u64;
        for q in PRESIEVED {
            if within.contains(&(q / 2)) {
                slots[usize_of(q / 2 - start)] = 1;
            }
        }
        if start == 0 {
            slots[0] = 0;
        }
        self.start += len as u64;
        Some((start, &self.slots[..len]))
    }
}

/// Fills `slots` (starting at slot `start`) from the repeating pattern.
fn presieve(slots: &mut [u8], start: u64) {
    let pattern = presieve_pattern();
    let mut from = usize_of(start % PATTERN_LEN as u64);
    let mut at = 0;
    while at < slots.len() {
        let n = (PATTERN_LEN - from).min(slots.len() - at);
        slots[at..at + n].copy_from_slice(&pattern[from..from + n]);
        at += n;
        from = 0;
    }
}

/// Primes in a segment: a popcount over 8 one-byte slots at a time (each slot
/// is 0 or 1, so one multiply sums a word's bytes into its top byte).
fn count_primes(slots: &[u8]) -> u64 {
    let (words, rest) = slots.as_chunks::<8>();
    let whole: u64 = words
        .iter()
        .map(|word| u64::from_ne_bytes(*word).wrapping_mul(0x0101_0101_0101_0101) >> 56)
        .sum();
    whole + rest.iter().map(|&slot| u64::from(slot)).sum::<u64>()
}

/// The slot of the k-th (1-based) prime in a segment.
fn kth_prime_slot(slots: &[u8], k: u64) -> Option<usize> {
    let mut seen = 0;
    slots.iter().position(|&slot| {
        seen += u64::from(slot);
        slot != 0 && seen == k
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use proptest::prelude::*;

    use super::*;

    fn never() -> bool {
        false
    }

    /// Every prime ≤ limit, by the textbook sieve.
    fn naive_primes(limit: u64) -> Vec<u64> {
        let limit = usize::try_from(limit).unwrap();
        let mut composite = vec![false; limit + 1];
        let mut primes = Vec::new();
        for i in 2..=limit {
            if !composite[i] {
                primes.push(i as u64);
                let mut m = i * i;
                while m <= limit {
                    composite[m] = true;
                    m += i;
                }
            }
        }
        primes
    }

    /// Deterministic Miller–Rabin for u64 (these bases suffice below 2^64).
    fn is_prime(n: u64) -> bool {
        const BASES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
        if n < 2 {
            return false;
        }
        for p in BASES {
            if n.is_multiple_of(p) {
                return n == p;
            }
        }
        let mul =
            |a: u64, b: u64| u64::try_from(u128::from(a) * u128::from(b) % u128::from(n)).unwrap();
        let pow = |mut b: u64, mut e: u64| {
            let mut r = 1;
            while e > 0 {
                if e & 1 == 1 {
                    r = mul(r, b);
                }
                b = mul(b, b);
                e >>= 1;
            }
            r
        };
        let s = (n - 1).trailing_zeros();
        let d = (n - 1) >> s;
        BASES.iter().all(|&a| {
            let mut x = pow(a, d);
            if x == 1 || x == n - 1 {
                return true;
            }
            (1..s).any(|_| {
                x = mul(x, x);
                x == n - 1
            })
        })
    }

    fn range(lo: u64, hi: u64) -> Result<Vec<u64>, CalcError> {
        let mut out = Vec::new();
        primes_in_range(lo, hi, u64::MAX, &never, &mut |chunk| {
            assert!(!chunk.is_empty() && chunk.len() <= CHUNK);
            out.extend_from_slice(chunk);
            true
        })?;
        Ok(out)
    }

    /// A cancel hook that says "cancelled" from its `after`-th question on.
    fn cancel_after(after: usize) -> impl Fn() -> bool + Sync {
        let asked = AtomicUsize::new(0);
        move || asked.fetch_add(1, Ordering::Relaxed) + 1 > after
    }

    #[test]
    fn known_nth_primes() {
        for (n, p) in [
            (1, 2),
            (2, 3),
            (3, 5),
            (6, 13),
            (7, 17),
            (10_000, 104_729),
            (10_001, 104_743),
            (1_000_000, 15_485_863),
        ] {
            assert_eq!(nth_prime(n, &never), Ok(p), "n = {n}");
        }
    }

    /// Runs in test builds too: calc is compiled optimised in the dev
    /// profile (see the workspace Cargo.toml). The 10^9-th prime
    /// (22,801,763,489) is checked by bench/calc.sh, which times it.
    #[test]
    fn hundred_millionth_prime() {
        assert_eq!(nth_prime(100_000_000, &never), Ok(2_038_074_743));
    }

    #[test]
    fn the_sieve_agrees_with_a_naive_sieve_for_the_first_5000_primes() {
        let expected = naive_primes(50_000);
        let targets: Vec<u64> = (1..=5_000).collect();
        // Bypass the table: every answer comes from the segmented sieve.
        let sieved = sieve_nth(&targets, &never).expect("not cancelled");
        assert_eq!(sieved, expected[..5_000]);
        assert_eq!(nth_of_sorted(&targets, &never), Ok(sieved));
    }

    #[test]
    fn the_table_and_the_sieve_meet_without_a_seam() {
        let expected = naive_primes(120_000);
        let targets: Vec<u64> = (9_990..=10_020).collect();
        let answers = nth_primes(&targets, 20_000, &never).expect("valid");
        for (n, p) in targets.iter().zip(answers) {
            assert_eq!(p, expected[usize_of(n - 1)], "n = {n}");
        }
    }

    #[test]
    fn several_n_share_a_pass_and_keep_their_order() {
        let answers = nth_primes(&[1_000_000, 1, 10_001, 1, 200_000], 1_000_000, &never);
        assert_eq!(answers, Ok(vec![15_485_863, 2, 104_743, 2, 2_750_159]));
        assert_eq!(nth_primes(&[], 10, &never), Ok(vec![]));
    }

    #[test]
    fn n_is_validated() {
        assert_eq!(nth_prime(0, &never), Err(CalcError::InvalidN));
        assert_eq!(
            nth_prime(MAX_N + 1, &never),
            Err(CalcError::NTooLarge {
                n: MAX_N + 1,
                max: MAX_N
            })
        );
        assert_eq!(nth_primes(&[5, 0], 10, &never), Err(CalcError::InvalidN));
        assert_eq!(
            nth_primes(&[5, 11], 10, &never),
            Err(CalcError::NTooLarge { n: 11, max: 10 })
        );
        assert_eq!(
            nth_primes(&[u64::MAX], u64::MAX, &never),
            Err(CalcError::NTooLarge {
                n: u64::MAX,
                max: MAX_N
            })
        );
    }

    #[test]
    fn cancellation_stops_a_large_computation() {
        let began = std::time::Instant::now();
        assert_eq!(
            nth_prime(1_000_000_000, &cancel_after(3)),
            Err(CalcError::Cancelled)
        );
        assert_eq!(
            nth_primes(&[MAX_N], MAX_N, &cancel_after(2)),
            Err(CalcError::Cancelled)
        );
        let mut delivered = 0;
        let outcome = primes_in_range(0, MAX_HI - 1, u64::MAX, &cancel_after(2), &mut |chunk| {
            delivered += chunk.len();
            true
        });
        assert_eq!(outcome, Err(CalcError::Cancelled));
        assert!(delivered > 0, "the first segments' primes were streamed");
        assert!(began.elapsed().as_secs() < 30, "took {:?}", began.elapsed());
    }

    #[test]
    fn small_ranges_match_the_definition() {
        assert_eq!(range(0, 30), Ok(vec![2, 3, 5, 7, 11, 13, 17, 19, 23, 29]));
        assert_eq!(range(2, 2), Ok(vec![2]));
        assert_eq!(range(0, 1), Ok(vec![]));
        assert_eq!(range(14, 16), Ok(vec![]));
        assert_eq!(range(13, 13), Ok(vec![13]));
        assert_eq!(range(10, 5), Ok(vec![]));
    }

    #[test]
    fn a_range_across_many_segments_matches_a_naive_sieve() {
        assert_eq!(range(0, 3_000_000), Ok(naive_primes(3_000_000)));
    }

    #[test]
    fn ranges_far_out_match_miller_rabin() {
        let lo = 1_000_000_000_000 - 5_000;
        let expected: Vec<u64> = (lo..=lo + 10_000).filter(|&n| is_prime(n)).collect();
        assert_eq!(range(lo, lo + 10_000), Ok(expected));
        let hi = MAX_HI;
        let expected: Vec<u64> = (hi - 2_000..=hi).filter(|&n| is_prime(n)).collect();
        assert_eq!(range(hi - 2_000, hi), Ok(expected));
    }

    #[test]
    fn range_limits_are_enforced() {
        let mut sink = |_: &[u64]| true;
        assert_eq!(
            primes_in_range(10, 109, 99, &never, &mut sink),
            Err(CalcError::RangeTooLarge {
                width: 100,
                max: 99
            })
        );
        assert_eq!(primes_in_range(10, 109, 100, &never, &mut sink), Ok(()));
        assert_eq!(
            primes_in_range(0, u64::MAX, u64::MAX, &never, &mut sink),
            Err(CalcError::HiTooLarge {
                hi: u64::MAX,
                max: MAX_HI
            })
        );
    }

    #[test]
    fn the_sink_gets_chunks_and_can_stop() {
        let mut sizes = Vec::new();
        primes_in_range(0, 100_000, u64::MAX, &never, &mut |chunk| {
            sizes.push(chunk.len());
            true
        })
        .expect("in bounds");
        assert_eq!(sizes.iter().sum::<usize>(), 9_592);
        assert!(sizes[..sizes.len() - 1].iter().all(|&n| n == CHUNK));

        let mut calls = 0;
        let outcome = primes_in_range(0, 100_000, u64::MAX, &never, &mut |_| {
            calls += 1;
            false
        });
        assert_eq!((outcome, calls), (Ok(()), 1));
    }

    #[test]
    fn the_upper_bound_holds_where_it_is_used() {
        let primes = naive_primes(2_000_000);
        for n in (6..=primes.len() as u64).step_by(997) {
            assert!(
                nth_prime_upper_bound(n) > primes[usize_of(n - 1)],
                "n = {n}"
            );
        }
        assert!(nth_prime_upper_bound(100_000_000) > 2_038_074_743);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_ranges_match_a_naive_sieve(lo in 0u64..1_200_000, width in 0u64..40_000) {
            let hi = lo + width;
            let expected: Vec<u64> = naive_primes(hi).into_iter().filter(|&p| p >= lo).collect();
            prop_assert_eq!(range(lo, hi), Ok(expected));
        }

    }

    proptest! {
        // Each case sieves base primes up to √hi (up to 3·10^7): few cases keep debug runs short.
        #![proptest_config(ProptestConfig::with_cases(12))]

        #[test]
        fn random_far_ranges_match_miller_rabin(lo in 0u64..MAX_HI - 3_000, width in 0u64..3_000) {
            let hi = lo + width;
            let expected: Vec<u64> = (lo..=hi).filter(|&n| is_prime(n)).collect();
            prop_assert_eq!(range(lo, hi), Ok(expected));
        }
    }
}
