//! The error of a plan that cannot be made: one sentence naming the value and what is accepted
//! (exit code 2 on the command line).

use std::fmt;

/// A plan error: one sentence naming the value and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError(pub String);

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlanError {}
