//! `--expect`: which status codes count as the replies a run asked for. Replies outside the set
//! are a result the run reports apart (and the run fails), never the server's figure.

use crate::error::PlanError;

/// Status codes are three digits: 100..=999 (the HTTP parser refuses others).
pub const CODES: usize = 1000;

/// A set of expected status codes, and the text it was given as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    /// One bit per code 0..=999.
    bits: [u64; CODES.div_ceil(64)],
    /// As given on the command line, e.g. `2xx,3xx`.
    text: String,
}

impl Default for Expect {
    /// 2xx and 3xx (wrk's "Non-2xx or 3xx responses" are the others).
    fn default() -> Self {
        parse(DEFAULT).expect("the default --expect parses")
    }
}

/// The default of `--expect`.
pub const DEFAULT: &str = "2xx,3xx";

impl Expect {
    /// Whether a reply with this status is expected.
    #[inline]
    pub fn ok(&self, code: u16) -> bool {
        let c = code as usize;
        c < CODES && self.bits[c / 64] & (1 << (c % 64)) != 0
    }

    /// The set as given, e.g. `2xx,3xx`.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn set(&mut self, c: usize) {
        self.bits[c / 64] |= 1 << (c % 64);
    }
}

/// Parses `--expect`: a comma list of classes (`2xx`) and codes (`200`), e.g. `2xx`, `200,304`,
/// `2xx,404`.
pub fn parse(s: &str) -> Result<Expect, PlanError> {
    let mut e = Expect { bits: [0; CODES.div_ceil(64)], text: s.to_string() };
    let bad = |item: &str| {
        PlanError(format!(
            "invalid --expect item '{item}' in '{s}': expected status classes like 2xx and codes like 200 to 599, comma-separated"
        ))
    };
    for item in s.split(',').map(str::trim) {
        let b = item.as_bytes();
        if b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && b[1..].eq_ignore_ascii_case(b"xx") {
            let class = usize::from(b[0] - b'0') * 100;
            (class..class + 100).for_each(|c| e.set(c));
        } else if b.len() == 3 && b.iter().all(u8::is_ascii_digit) {
            let c: usize = item.parse().map_err(|_| bad(item))?;
            if !(100..=599).contains(&c) {
                return Err(bad(item));
            }
            e.set(c);
        } else {
            return Err(bad(item));
        }
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_codes() {
        let d = Expect::default();
        assert!(d.ok(200) && d.ok(204) && d.ok(301) && d.ok(399));
        assert!(!d.ok(404) && !d.ok(500) && !d.ok(199) && !d.ok(0) && !d.ok(1000));
        let e = parse("2xx, 404").unwrap();
        assert!(e.ok(200) && e.ok(404) && !e.ok(301) && !e.ok(403));
        assert_eq!(parse("200").unwrap().text(), "200");
        for bad in ["", "2x", "6xx", "99", "600", "abc", "2xx,", "1000"] {
            let err = parse(bad).unwrap_err().0;
            assert!(err.contains("--expect"), "{bad}: {err}");
        }
    }
}
