//! Calc domain: checked int64 arithmetic (an overflow is a refusal, never a
//! wrap) and, in [`primes`], the segmented sieve behind the prime RPCs. Pure
//! logic only: no I/O, no threads, no clocks; the caller supplies cancellation.

pub mod event;
pub mod primes;

use std::fmt;

/// Why a calculation was refused or stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalcError {
    /// The exact answer does not fit an i64.
    #[error("{op} overflows a signed 64-bit integer")]
    Overflow {
        /// The operation that overflowed.
        op: Operation,
    },
    /// A division by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// n = 0: primes are counted from 1.
    #[error("n must be at least 1 (the 1st prime is 2)")]
    InvalidN,
    /// n above the configured limit.
    #[error("n = {n} is above the limit of {max}")]
    NTooLarge {
        /// The n asked for.
        n: u64,
        /// The largest n allowed.
        max: u64,
    },
    /// A range wider than the configured limit.
    #[error("the range holds {width} numbers; at most {max} are allowed")]
    RangeTooLarge {
        /// How many numbers the range holds.
        width: u64,
        /// The most allowed.
        max: u64,
    },
    /// A range ending above the largest upper end the sieve takes.
    #[error("the range's upper end {hi} is above the limit of {max}")]
    HiTooLarge {
        /// The range's upper end.
        hi: u64,
        /// The largest upper end allowed.
        max: u64,
    },
    /// An empty list where values are needed.
    #[error("{what}: give at least one value")]
    NoValues {
        /// The argument that was empty.
        what: &'static str,
    },
    /// A list longer than allowed.
    #[error("{what}: at most {max} values, got {got}")]
    TooManyValues {
        /// The argument that was too long.
        what: &'static str,
        /// How many values it held.
        got: usize,
        /// The most allowed.
        max: usize,
    },
    /// A range whose start is above its end.
    #[error("from ({from}) is above to ({to})")]
    InvertedRange {
        /// The range's start.
        from: u64,
        /// The range's end.
        to: u64,
    },
    /// The caller went away (or the server is stopping) before the answer.
    #[error("the calculation was cancelled")]
    Cancelled,
    /// The calculation itself failed (a worker thread lost, a broken
    /// invariant): a bug, not the caller's fault.
    #[error("the calculation failed: {0}")]
    Internal(String),
    /// The answer is held back because its event could not be recorded and
    /// the server answers only recorded calculations (`--calc-event-ack
    /// appended`); the reason names why. Retrying is safe.
    #[error(
        "{0}; the answer is given only once its event is recorded (--calc-event-ack appended): retry"
    )]
    NotRecorded(String),
}

impl CalcError {
    /// A stable `snake_case` name for the kind of error (events, metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            CalcError::Overflow { .. } => "overflow",
            CalcError::DivisionByZero => "division_by_zero",
            CalcError::InvalidN => "invalid_n",
            CalcError::NTooLarge { .. } => "n_too_large",
            CalcError::RangeTooLarge { .. } => "range_too_large",
            CalcError::HiTooLarge { .. } => "range_end_too_large",
            CalcError::NoValues { .. } => "no_values",
            CalcError::TooManyValues { .. } => "too_many_values",
            CalcError::InvertedRange { .. } => "inverted_range",
            CalcError::Cancelled => "cancelled",
            CalcError::Internal(_) => "internal",
            CalcError::NotRecorded(_) => "not_recorded",
        }
    }

    /// Whether the caller asked for something the calculator refuses (as
    /// opposed to a value out of the representable or allowed range).
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            CalcError::DivisionByZero
                | CalcError::InvalidN
                | CalcError::NoValues { .. }
                | CalcError::TooManyValues { .. }
                | CalcError::InvertedRange { .. }
        )
    }
}

/// Most values one `Max`/`Min` takes, and most n one `NthPrimes` takes.
pub const MAX_VALUES: usize = 10_000;

/// `Max`/`Min` over 1..=[`MAX_VALUES`] values.
pub fn fold(op: Operation, values: &[i64]) -> Result<i64, CalcError> {
    let (first, rest) = values
        .split_first()
        .ok_or(CalcError::NoValues { what: "values" })?;
    if values.len() > MAX_VALUES {
        return Err(CalcError::TooManyValues {
            what: "values",
            got: values.len(),
            max: MAX_VALUES,
        });
    }
    rest.iter()
        .try_fold(*first, |acc, &value| op.apply(acc, value))
}

/// The binary operations of the calculator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `a + b`.
    Add,
    /// `a − b`.
    Subtract,
    /// `a × b`.
    Multiply,
    /// `a ÷ b`, truncated toward zero.
    Divide,
    /// The larger of `a` and `b`.
    Max,
    /// The smaller of `a` and `b`.
    Min,
}

impl Operation {
    /// `a op b`, checked.
    pub fn apply(self, a: i64, b: i64) -> Result<i64, CalcError> {
        match self {
            Operation::Add => add(a, b),
            Operation::Subtract => subtract(a, b),
            Operation::Multiply => multiply(a, b),
            Operation::Divide => divide(a, b),
            Operation::Max => Ok(max(a, b)),
            Operation::Min => Ok(min(a, b)),
        }
    }
}

impl Operation {
    /// The method's name, as the API and the event log spell it.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Add => "add",
            Operation::Subtract => "subtract",
            Operation::Multiply => "multiply",
            Operation::Divide => "divide",
            Operation::Max => "max",
            Operation::Min => "min",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `a + b`, refused when it leaves the i64 range.
pub fn add(a: i64, b: i64) -> Result<i64, CalcError> {
    a.checked_add(b)
        .ok_or(CalcError::Overflow { op: Operation::Add })
}

/// `a - b`, refused when it leaves the i64 range.
pub fn subtract(a: i64, b: i64) -> Result<i64, CalcError> {
    a.checked_sub(b).ok_or(CalcError::Overflow {
        op: Operation::Subtract,
    })
}

/// `a * b`, refused when it leaves the i64 range.
pub fn multiply(a: i64, b: i64) -> Result<i64, CalcError> {
    a.checked_mul(b).ok_or(CalcError::Overflow {
        op: Operation::Multiply,
    })
}

/// `a / b` truncated toward zero (Rust's `/`); `i64::MIN / -1` overflows.
pub fn divide(a: i64, b: i64) -> Result<i64, CalcError> {
    if b == 0 {
        return Err(CalcError::DivisionByZero);
    }
    a.checked_div(b).ok_or(CalcError::Overflow {
        op: Operation::Divide,
    })
}

/// The larger of `a` and `b` (never fails).
pub fn max(a: i64, b: i64) -> i64 {
    a.max(b)
}

/// The smaller of `a` and `b` (never fails).
pub fn min(a: i64, b: i64) -> i64 {
    a.min(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn overflow(op: Operation) -> Result<i64, CalcError> {
        Err(CalcError::Overflow { op })
    }

    #[test]
    fn addition_and_subtraction_refuse_to_wrap() {
        assert_eq!(add(2, 3), Ok(5));
        assert_eq!(add(i64::MAX, 0), Ok(i64::MAX));
        assert_eq!(add(i64::MAX, 1), overflow(Operation::Add));
        assert_eq!(add(i64::MIN, -1), overflow(Operation::Add));
        assert_eq!(add(i64::MIN, i64::MAX), Ok(-1));
        assert_eq!(subtract(-3, 4), Ok(-7));
        assert_eq!(subtract(i64::MIN, 1), overflow(Operation::Subtract));
        assert_eq!(subtract(0, i64::MIN), overflow(Operation::Subtract));
        assert_eq!(subtract(-1, i64::MIN), Ok(i64::MAX));
    }

    #[test]
    fn multiplication_refuses_to_wrap() {
        assert_eq!(multiply(-4, 5), Ok(-20));
        assert_eq!(multiply(i64::MIN, 1), Ok(i64::MIN));
        assert_eq!(multiply(i64::MIN, -1), overflow(Operation::Multiply));
        assert_eq!(multiply(i64::MAX, 2), overflow(Operation::Multiply));
        assert_eq!(multiply(1 << 32, 1 << 31), overflow(Operation::Multiply));
        assert_eq!(multiply(1 << 31, -(1 << 32)), Ok(i64::MIN));
    }

    #[test]
    fn division_truncates_toward_zero_and_is_checked() {
        assert_eq!(divide(7, 2), Ok(3));
        assert_eq!(divide(-7, 2), Ok(-3));
        assert_eq!(divide(7, -2), Ok(-3));
        assert_eq!(divide(-7, -2), Ok(3));
        assert_eq!(divide(1, 0), Err(CalcError::DivisionByZero));
        assert_eq!(divide(0, 0), Err(CalcError::DivisionByZero));
        assert_eq!(divide(i64::MIN, -1), overflow(Operation::Divide));
        assert_eq!(divide(i64::MIN, 1), Ok(i64::MIN));
        assert_eq!(divide(i64::MAX, -1), Ok(-i64::MAX));
    }

    #[test]
    fn max_and_min_pick_a_side() {
        assert_eq!(max(i64::MIN, i64::MAX), i64::MAX);
        assert_eq!(min(i64::MIN, i64::MAX), i64::MIN);
        assert_eq!(Operation::Max.apply(-1, -2), Ok(-1));
        assert_eq!(Operation::Min.apply(-1, -2), Ok(-2));
    }

    #[test]
    fn folds_take_one_to_max_values() {
        assert_eq!(fold(Operation::Max, &[3, 9, -1]), Ok(9));
        assert_eq!(fold(Operation::Min, &[3, 9, -1]), Ok(-1));
        assert_eq!(fold(Operation::Min, &[i64::MIN]), Ok(i64::MIN));
        assert_eq!(
            fold(Operation::Max, &[]),
            Err(CalcError::NoValues { what: "values" })
        );
        let many = vec![0; MAX_VALUES + 1];
        assert_eq!(
            fold(Operation::Max, &many),
            Err(CalcError::TooManyValues {
                what: "values",
                got: MAX_VALUES + 1,
                max: MAX_VALUES
            })
        );
        assert!(CalcError::NoValues { what: "n" }.is_invalid_argument());
        assert!(!CalcError::NTooLarge { n: 2, max: 1 }.is_invalid_argument());
    }

    #[test]
    fn errors_name_what_went_wrong() {
        assert_eq!(
            CalcError::Overflow {
                op: Operation::Multiply
            }
            .to_string(),
            "multiply overflows a signed 64-bit integer"
        );
        let too_large = CalcError::NTooLarge { n: 11, max: 10 }.to_string();
        assert!(too_large.contains("limit of 10"), "{too_large}");
    }

    proptest! {
        #[test]
        fn checked_ops_agree_with_wide_arithmetic(a in any::<i64>(), b in any::<i64>()) {
            let fit = |wide: i128| i64::try_from(wide).ok();
            let (wa, wb) = (i128::from(a), i128::from(b));
            prop_assert_eq!(add(a, b).ok(), fit(wa + wb));
            prop_assert_eq!(subtract(a, b).ok(), fit(wa - wb));
            prop_assert_eq!(multiply(a, b).ok(), fit(wa * wb));
            if b == 0 {
                prop_assert_eq!(divide(a, b), Err(CalcError::DivisionByZero));
            } else {
                prop_assert_eq!(divide(a, b).ok(), fit(wa / wb));
            }
        }
    }
}
