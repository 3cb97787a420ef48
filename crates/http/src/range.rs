//! Byte ranges (RFC 9110 §14): the `Range` header of a GET, evaluated against a representation
//! of known length.
//!
//! The server answers one satisfiable range with 206 and `Content-Range`, no satisfiable range
//! with 416 and `Content-Range: bytes */LEN`, and several satisfiable ranges with the whole
//! representation (200) rather than `multipart/byteranges`: RFC 9110 §14.2 lets a server ignore
//! `Range`, the whole body is always a correct answer, and clients that ask for several ranges
//! (download managers, `curl -r 0-1,5-6`) accept it. A header that is not a well-formed
//! `bytes=` range set is ignored the same way (§14.2: "a server MAY ignore"). Numbers too large
//! for a `u64` saturate: a first position beyond any file is unsatisfiable, a last position or a
//! suffix length beyond it is clamped, as RFC 9110 §14.1.2 says.
//!
//! Nothing here allocates; parsing is one pass over the header value.

/// What a `Range` header asks of a representation of a given length.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Ranges {
    /// Serve the whole representation (200): the header is malformed, uses another unit,
    /// names several satisfiable ranges, or the representation is empty.
    Whole,
    /// Serve the bytes `start..end` (end exclusive, never empty) with 206.
    One {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// No range is satisfiable: 416 with `Content-Range: bytes */LEN`.
    Unsatisfiable,
}

/// One range-spec of the header, before it meets a length.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Spec {
    /// `first-last` (`last` is `None` for `first-`).
    From(u64, Option<u64>),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl Spec {
    /// The bytes this spec selects of `len` bytes, or `None` when unsatisfiable.
    fn span(self, len: u64) -> Option<(u64, u64)> {
        match self {
            Spec::From(first, _) if first >= len => None,
            Spec::From(first, last) => {
                Some((first, last.map_or(len, |l| l.saturating_add(1).min(len))))
            }
            Spec::Suffix(0) => None,
            Spec::Suffix(n) => Some((len - n.min(len), len)),
        }
    }
}

/// Evaluates the `Range` header `value` for a representation of `len` bytes.
///
/// ```
/// use ioscale_http::range::{evaluate, Ranges};
/// assert_eq!(evaluate(b"bytes=0-99", 1000), Ranges::One { start: 0, end: 100 });
/// assert_eq!(evaluate(b"bytes=-10", 1000), Ranges::One { start: 990, end: 1000 });
/// assert_eq!(evaluate(b"bytes=1000-", 1000), Ranges::Unsatisfiable);
/// assert_eq!(evaluate(b"bytes=0-1,5-6", 1000), Ranges::Whole);
/// assert_eq!(evaluate(b"lines=1-2", 1000), Ranges::Whole);
/// ```
pub fn evaluate(value: &[u8], len: u64) -> Ranges {
    let Some(set) = strip_unit(value) else { return Ranges::Whole };
    let mut found = None;
    let mut satisfiable = 0u32;
    let mut any = false;
    for elem in set.split(|&b| b == b',') {
        let elem = elem.trim_ascii();
        if elem.is_empty() {
            continue; // empty list elements are allowed (RFC 9110 §5.6.1.2)
        }
        let Some(spec) = parse_spec(elem) else { return Ranges::Whole };
        any = true;
        if let Some(span) = spec.span(len) {
            satisfiable += 1;
            found = Some(span);
        }
    }
    if !any || len == 0 {
        // No range-spec at all is malformed; an empty representation has nothing to range
        // over (only a suffix could be "satisfiable", and it would select nothing).
        return Ranges::Whole;
    }
    match (satisfiable, found) {
        (0, _) => Ranges::Unsatisfiable,
        (1, Some((start, end))) => Ranges::One { start, end },
        _ => Ranges::Whole,
    }
}

/// The range set after a case-insensitive `bytes=`.
fn strip_unit(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (unit, rest) = value.split_at_checked(6)?;
    unit.eq_ignore_ascii_case(b"bytes=").then_some(rest)
}

fn parse_spec(s: &[u8]) -> Option<Spec> {
    let dash = s.iter().position(|&b| b == b'-')?;
    let (first, last) = (&s[..dash], &s[dash + 1..]);
    if first.is_empty() {
        return Some(Spec::Suffix(digits(last)?));
    }
    let first = digits(first)?;
    if last.is_empty() {
        return Some(Spec::From(first, None));
    }
    let last = digits(last)?;
    // A last position before the first makes the whole header invalid (§14.1.1).
    (last >= first).then_some(Spec::From(first, Some(last)))
}

/// A non-empty run of ASCII digits, saturating at `u64::MAX`.
fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(start: u64, end: u64) -> Ranges {
        Ranges::One { start, end }
    }

    #[test]
    fn the_three_forms() {
        assert_eq!(evaluate(b"bytes=0-99", 1000), one(0, 100));
        assert_eq!(evaluate(b"bytes=500-", 1000), one(500, 1000));
        assert_eq!(evaluate(b"bytes=-1", 1000), one(999, 1000));
        assert_eq!(evaluate(b"bytes=0-0", 1), one(0, 1));
        assert_eq!(evaluate(b"BYTES=5-9", 10), one(5, 10));
        assert_eq!(evaluate(b" bytes=5-9 ", 10), one(5, 10));
    }

    #[test]
    fn clamping_and_saturation() {
        assert_eq!(evaluate(b"bytes=0-5000", 1000), one(0, 1000));
        assert_eq!(evaluate(b"bytes=-5000", 1000), one(0, 1000));
        assert_eq!(evaluate(b"bytes=0-99999999999999999999999", 10), one(0, 10));
        assert_eq!(evaluate(b"bytes=-99999999999999999999999", 10), one(0, 10));
        assert_eq!(evaluate(b"bytes=99999999999999999999999-", 10), Ranges::Unsatisfiable);
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(evaluate(b"bytes=1000-", 1000), Ranges::Unsatisfiable);
        assert_eq!(evaluate(b"bytes=1000-2000", 1000), Ranges::Unsatisfiable);
        assert_eq!(evaluate(b"bytes=-0", 1000), Ranges::Unsatisfiable);
        assert_eq!(evaluate(b"bytes=2000-,3000-4000", 1000), Ranges::Unsatisfiable);
    }

    #[test]
    fn several_ranges_get_the_whole_body_unless_one_is_satisfiable() {
        assert_eq!(evaluate(b"bytes=0-1,5-6", 1000), Ranges::Whole);
        assert_eq!(evaluate(b"bytes=0-1, -5", 1000), Ranges::Whole);
        // Only one of them is satisfiable: that one, alone.
        assert_eq!(evaluate(b"bytes=0-1,5000-6000", 1000), one(0, 2));
        // Empty list elements are fine.
        assert_eq!(evaluate(b"bytes=,0-1,", 1000), one(0, 2));
    }

    #[test]
    fn malformed_headers_are_ignored() {
        for v in [
            &b""[..],
            b"bytes",
            b"bytes=",
            b"bytes=,",
            b"bytes=-",
            b"bytes=a-b",
            b"bytes=5-1",
            b"bytes=1-2-3",
            b"bytes=+1-2",
            b"bytes= 1 - 2",
            b"bytes=0x1-2",
            b"items=0-1",
            b"bytes 0-1",
            b"bytes=0-1,junk",
        ] {
            assert_eq!(evaluate(v, 1000), Ranges::Whole, "{}", String::from_utf8_lossy(v));
        }
        // Nothing to range over in an empty file.
        assert_eq!(evaluate(b"bytes=0-1", 0), Ranges::Whole);
        assert_eq!(evaluate(b"bytes=-1", 0), Ranges::Whole);
    }

    proptest! {
        /// Whatever the header, an answer of one range lies inside the representation and is
        /// not empty; and well-formed single ranges select what the RFC says.
        #[test]
        fn answers_stay_inside(value in prop::collection::vec(prop::sample::select(b"bytes=0123456789-, ".to_vec()), 0..24), len in 0u64..5000) {
            if let Ranges::One { start, end } = evaluate(&value, len) {
                prop_assert!(start < end && end <= len);
            }
        }

        #[test]
        fn single_ranges_select_what_the_rfc_says(a in 0u64..3000, b in 0u64..3000, n in 0u64..3000, len in 1u64..2000) {
            let (first, last) = (a.min(b), a.max(b));
            let got = evaluate(format!("bytes={first}-{last}").as_bytes(), len);
            if first >= len {
                prop_assert_eq!(got, Ranges::Unsatisfiable);
            } else {
                prop_assert_eq!(got, one(first, (last + 1).min(len)));
            }
            let got = evaluate(format!("bytes=-{n}").as_bytes(), len);
            if n == 0 {
                prop_assert_eq!(got, Ranges::Unsatisfiable);
            } else {
                prop_assert_eq!(got, one(len - n.min(len), len));
            }
            let got = evaluate(format!("bytes={a}-").as_bytes(), len);
            if a >= len {
                prop_assert_eq!(got, Ranges::Unsatisfiable);
            } else {
                prop_assert_eq!(got, one(a, len));
            }
        }
    }
}
