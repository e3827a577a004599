//! Running one input through a target under the two checks every target gets: it must
//! not panic, and it must not request an allocation above [`allocation::CAP`].

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::allocation;

/// Why an input failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The target panicked (a parser panic or a violated property); the panic message.
    Panic { message: String },
    /// The target requested one allocation of `bytes`, above `cap`.
    OverAllocation { bytes: usize, cap: usize },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Panic { message } => write!(f, "panic: {message}"),
            Finding::OverAllocation { bytes, cap } => write!(
                f,
                "over-allocation: one request of {bytes} bytes, above the cap of {cap} bytes \
                 (a length taken from the input without a bound)"
            ),
        }
    }
}

/// What a passing input cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// The largest single allocation request the input caused.
    pub largest_allocation: usize,
}

/// Runs `run_one` on `data`, catching a panic, and checks the largest allocation it
/// requested against `cap`.
///
/// # Errors
/// The [`Finding`] when `run_one` panics or allocates above `cap`.
pub fn run(run_one: impl Fn(&[u8]), data: &[u8], cap: usize) -> Result<Pass, Finding> {
    // A panic leaves nothing behind that a later input reads: each run builds its state
    // from `data` alone.
    let (outcome, largest) =
        allocation::largest_during(|| catch_unwind(AssertUnwindSafe(|| run_one(data))));
    if let Err(payload) = outcome {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(a panic without a message)".to_owned());
        return Err(Finding::Panic { message });
    }
    if largest > cap {
        return Err(Finding::OverAllocation { bytes: largest, cap });
    }
    Ok(Pass { largest_allocation: largest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_over_allocating_target_is_caught() {
        // Reserving address space is enough: the request is what counts, not its use.
        let greedy = |data: &[u8]| {
            let v: Vec<u8> = Vec::with_capacity(allocation::CAP + data.len() + 1);
            std::hint::black_box(&v);
        };
        assert_eq!(
            run(greedy, b"x", allocation::CAP),
            Err(Finding::OverAllocation { bytes: allocation::CAP + 2, cap: allocation::CAP })
        );
        let modest = |_: &[u8]| {
            std::hint::black_box(vec![0u8; 1 << 20]);
        };
        assert_eq!(run(modest, b"x", allocation::CAP), Ok(Pass { largest_allocation: 1 << 20 }));
    }

    #[test]
    fn a_panicking_target_is_caught_with_its_message() {
        let broken = |data: &[u8]| assert!(data.is_empty(), "got {} bytes", data.len());
        assert_eq!(
            run(broken, b"abc", allocation::CAP),
            Err(Finding::Panic { message: "got 3 bytes".to_owned() })
        );
        // And the next input runs normally.
        assert!(run(broken, b"", allocation::CAP).is_ok());
    }
}
