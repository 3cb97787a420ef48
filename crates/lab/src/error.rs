//! [`Error`]: a lab failure, one sentence. Its own module because the runner, the kinds and
//! the report all return it and none of them should import another for it.

use crate::{record, spec};
use std::fmt;

/// A lab failure (running, measuring or reporting): one sentence.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error(e.to_string())
    }
}

impl From<record::Error> for Error {
    fn from(e: record::Error) -> Self {
        Error(e.to_string())
    }
}

impl From<spec::SpecError> for Error {
    fn from(e: spec::SpecError) -> Self {
        Error(e.to_string())
    }
}
