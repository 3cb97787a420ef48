//! ioscale-flags: the value parsers every `ioscale` command line shares, written once (as
//! ripgrep keeps its flag parsing apart from its flags).
//!
//! Each parser takes the text of one value and returns the typed value or an [`Error`] whose
//! message is one sentence naming the value and what is accepted. They fit clap's
//! `value_parser = ioscale_flags::duration` directly, and serve configuration files and
//! experiment specs the same way, so a value means the same wherever it is written.
//!
//! | parser | accepts | e.g. |
//! | --- | --- | --- |
//! | [`duration`] | a number with a unit (`humantime`'s ns, us, ms, s, m, h, d and their sums, or a decimal with one unit), at most 10⁹ s; zero allowed | `0s`, `1.5s`, `1h 30m`, `100000000s` |
//! | [`nonzero_duration`] | the same, but not zero (a timeout, a period) | `10s` |
//! | [`size`] | bytes, with an optional binary suffix K, M, G (also KiB, MiB, GiB) | `8192`, `64K`, `1MiB` |
//! | [`ipv4_list`] | comma-separated IPv4 addresses | `127.0.0.1,127.0.0.2` |
//! | [`socket_addrs`] | comma-separated `IP:PORT` (IPv6 in brackets) | `127.0.0.1:8080,[::1]:80` |
//! | [`cpu_list`] | CPU numbers and ranges, as the kernel's cpulist format | `0,2-3` |
//! | [`fraction`] | a number from 0 (excluded) to 1, or a percentage | `0.25`, `25%` |
//! | [`mechanism`] | a name of the dispatch crate's mechanism table | `epoll`, `uring-completion` |
//! | [`readiness_mechanism`] | the same, but not the completion model | `epoll` |
//!
//! Why a crate of its own and not a module of `ioscale-sys`: these are about text, not the
//! kernel; they need `humantime` and the dispatch crate's table of names, which the bottom crate
//! must not depend on.

#![deny(missing_docs)]

use ioscale_dispatch::Mechanism;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// A value that could not be parsed: which kind of value, and one sentence saying what was
/// given and what is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// What kind of value was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A duration: not a number with a unit, or out of range.
    Duration,
    /// A duration of zero where zero has no meaning.
    ZeroDuration,
    /// A size in bytes.
    Size,
    /// An address or a list of addresses.
    Address,
    /// A CPU list.
    CpuList,
    /// A fraction.
    Fraction,
    /// A mechanism name that is not in the table.
    Mechanism,
}

impl Error {
    fn new(kind: ErrorKind, message: String) -> Error {
        Error { kind, message }
    }

    /// What kind of value was refused.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The longest duration accepted (about 31 years: far past any timeout or run, short of
/// overflowing a deadline).
pub const DURATION_MAX: Duration = Duration::from_secs(1_000_000_000);

/// A duration with its unit: `250ms`, `10s`, `1.5s`, `2m`, `1h 30m`, `250us`, `100000000s`
/// (`humantime`'s syntax, and a decimal number with one unit); zero is allowed. A bare number is
/// refused with a sentence saying a unit is required: is `5` seconds or milliseconds?
pub fn duration(s: &str) -> Result<Duration, Error> {
    let t = s.trim();
    let bad = |why: &str| {
        Error::new(
            ErrorKind::Duration,
            format!("invalid duration '{s}': {why}expected a number with ms, s, m or h, e.g. 500ms or 10s"),
        )
    };
    if t.parse::<f64>().is_ok() {
        return Err(bad("a unit is required; "));
    }
    let secs = match humantime::parse_duration(t) {
        Ok(d) => d.as_secs_f64(),
        Err(_) => decimal_seconds(t).ok_or_else(|| bad(""))?,
    };
    if secs > DURATION_MAX.as_secs_f64() {
        return Err(Error::new(
            ErrorKind::Duration,
            format!("duration '{s}' is too long: at most {}s", DURATION_MAX.as_secs()),
        ));
    }
    // humantime's own durations are exact; a decimal one is rounded to the nanosecond.
    Ok(humantime::parse_duration(t).unwrap_or_else(|_| Duration::from_secs_f64(secs)))
}

/// `1.5s`, `0.25ms`, `1e3s`: a decimal number followed by one unit (which `humantime` does not
/// take), in seconds; `None` when it is not one.
fn decimal_seconds(t: &str) -> Option<f64> {
    const UNITS: [(&str, f64); 7] = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ];
    let (num, mult) = UNITS
        .iter()
        .filter_map(|(u, m)| t.strip_suffix(u).map(|n| (n.trim_end(), *m)))
        .find(|(n, _)| n.ends_with(|c: char| c.is_ascii_digit() || c == '.'))?;
    if !num.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let v = num.parse::<f64>().ok()? * mult;
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// [`duration`], refusing zero (for timeouts and periods, where zero has no meaning).
pub fn nonzero_duration(s: &str) -> Result<Duration, Error> {
    let d = duration(s)?;
    if d.is_zero() {
        return Err(Error::new(
            ErrorKind::ZeroDuration,
            format!("invalid duration '{s}': expected a duration above zero, e.g. 10s"),
        ));
    }
    Ok(d)
}

/// A size in bytes: a whole number with an optional binary suffix `K`, `M` or `G` (1024, 1024²,
/// 1024³; `KiB`, `MiB`, `GiB` and a trailing `B` are accepted too).
pub fn size(s: &str) -> Result<u64, Error> {
    let bad = || {
        Error::new(
            ErrorKind::Size,
            format!("'{s}' is not a size: expected bytes with an optional K, M or G (binary), e.g. 8192, 64K or 1M"),
        )
    };
    let t = s.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| bad())?;
    n.checked_mul(mult).ok_or_else(bad)
}

/// Parses each comma-separated item of `s` as a `T`; a bad one is named with `what` it should be.
fn list<T: std::str::FromStr>(s: &str, what: &str) -> Result<Vec<T>, Error> {
    s.split(',')
        .map(|a| {
            let a = a.trim();
            a.parse::<T>().map_err(|_| {
                Error::new(ErrorKind::Address, format!("'{a}' in '{s}' is not {what}"))
            })
        })
        .collect()
}

/// Comma-separated IPv4 addresses (`127.0.0.1,127.0.0.2`).
pub fn ipv4_list(s: &str) -> Result<Vec<Ipv4Addr>, Error> {
    list(s, "an IPv4 address: expected e.g. 127.0.0.2")
}

/// Comma-separated socket addresses (`127.0.0.1:8080,[::1]:80`).
pub fn socket_addrs(s: &str) -> Result<Vec<SocketAddr>, Error> {
    list(s, "an address: expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080")
}

/// A CPU list as the kernel writes it (`0,2-3`): numbers and inclusive ranges, comma-separated;
/// returned sorted, without repeats.
pub fn cpu_list(s: &str) -> Result<Vec<usize>, Error> {
    let bad = |part: &str| {
        Error::new(
            ErrorKind::CpuList,
            format!("'{part}' in '{s}' is not a CPU or a range: expected a list such as 0,2-3"),
        )
    };
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let p = part.trim();
        let (lo, hi) = match p.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>(), b.trim().parse::<usize>()),
            None => (p.parse::<usize>(), p.parse::<usize>()),
        };
        let (lo, hi) = match (lo, hi) {
            (Ok(lo), Ok(hi)) if lo <= hi && hi < 65_536 => (lo, hi),
            _ => return Err(bad(p)),
        };
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// A fraction in (0, 1]: a number (`0.25`) or a percentage (`25%`).
pub fn fraction(s: &str) -> Result<f64, Error> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    };
    match v {
        Ok(f) if f.is_finite() && f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(Error::new(
            ErrorKind::Fraction,
            format!("'{s}' is not a fraction: expected a number above 0 and at most 1, e.g. 0.25 or 25%"),
        )),
    }
}

/// A mechanism by the name in the dispatch crate's table (the readiness mechanisms and
/// `uring-completion`).
pub fn mechanism(s: &str) -> Result<Mechanism, Error> {
    s.trim().parse::<Mechanism>().map_err(|e| Error::new(ErrorKind::Mechanism, e.to_string()))
}

/// [`mechanism`], refusing the completion model where a readiness dispatcher is needed (the
/// load generator, `ioscale overhead`'s readiness rounds).
pub fn readiness_mechanism(s: &str) -> Result<Mechanism, Error> {
    let m = mechanism(s)?;
    if m.is_completion_based() {
        return Err(Error::new(
            ErrorKind::Mechanism,
            format!(
                "'{s}' is the completion model, not a readiness mechanism: expected one of {}",
                readiness_names()
            ),
        ));
    }
    Ok(m)
}

fn readiness_names() -> String {
    Mechanism::READINESS.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
}

/// The accepted word nearest a misspelled one (at most two edits away; the first listed wins a
/// tie), for a "did you mean" in the sentence that refuses it.
pub fn nearest<'a>(word: &str, accepted: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    accepted
        .into_iter()
        .map(|a| (edit_distance(word, a), a))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// Levenshtein distance: the fewest insertions, deletions and substitutions from `a` to `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit_and_take_large_values() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("100000000s"), Ok(Duration::from_secs(100_000_000)));
        let e = duration("5").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Duration);
        assert!(e.to_string().contains("'5': a unit is required"), "{e}");
        let e = duration("soon").unwrap_err();
        assert!(
            e.to_string().contains("'soon'") && e.to_string().contains("expected a number with ms"),
            "{e}"
        );
        for bad in ["-1s", "nans", "1.2.3s", "s", ""] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        assert!(duration("1e12s").unwrap_err().to_string().contains("too long"));
        assert!(duration("2000000000s").unwrap_err().to_string().contains("too long"));
    }

    #[test]
    fn nonzero_durations_refuse_zero_with_a_sentence() {
        assert_eq!(nonzero_duration("10s"), Ok(Duration::from_secs(10)));
        for zero in ["0s", "0ms"] {
            let e = nonzero_duration(zero).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ZeroDuration);
            assert!(e.to_string().contains("above zero"), "{e}");
        }
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(size("8192"), Ok(8192));
        assert_eq!(size("64K"), Ok(65536));
        assert_eq!(size("1MiB"), Ok(1 << 20));
        assert_eq!(size("2G"), Ok(2 << 30));
        assert_eq!(size("3KB"), Ok(3072));
        assert_eq!(size("x").unwrap_err().kind(), ErrorKind::Size);
        assert!(size("99999999999999999999G").is_err());
    }

    #[test]
    fn address_lists() {
        assert_eq!(ipv4_list("127.0.0.1, 127.0.0.2").unwrap().len(), 2);
        assert!(ipv4_list("127.0.0.1,nope").unwrap_err().to_string().contains("'nope'"));
        let a = socket_addrs("127.0.0.1:80,[::1]:8080").unwrap();
        assert_eq!(a[1].port(), 8080);
        assert_eq!(socket_addrs("127.0.0.1").unwrap_err().kind(), ErrorKind::Address);
    }

    #[test]
    fn the_nearest_word_is_at_most_two_edits_away() {
        let words = ["calls", "connections", "idle_period"];
        assert_eq!(nearest("cals", words), Some("calls"));
        assert_eq!(nearest("idle_perod", words), Some("idle_period"));
        assert_eq!(nearest("rate", words), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn cpu_lists_as_the_kernel_writes_them() {
        assert_eq!(cpu_list("0,2-3"), Ok(vec![0, 2, 3]));
        assert_eq!(cpu_list("3,1,1-2"), Ok(vec![1, 2, 3]));
        assert!(cpu_list("3-1").unwrap_err().to_string().contains("'3-1'"));
        assert!(cpu_list("a").is_err());
    }

    #[test]
    fn fractions_and_percentages() {
        assert_eq!(fraction("0.25"), Ok(0.25));
        assert_eq!(fraction("25%"), Ok(0.25));
        assert_eq!(fraction("1"), Ok(1.0));
        for bad in ["0", "1.5", "-0.1", "NaN", "x"] {
            assert_eq!(fraction(bad).unwrap_err().kind(), ErrorKind::Fraction, "{bad}");
        }
    }

    #[test]
    fn every_mechanism_name_parses_and_an_unknown_one_lists_them() {
        for &m in Mechanism::ALL {
            assert_eq!(mechanism(m.name()), Ok(m));
        }
        assert_eq!(mechanism("uring-completion"), Ok(Mechanism::UringCompletion));
        let e = mechanism("kqueue").unwrap_err();
        assert!(e.to_string().contains("kqueue") && e.to_string().contains("uring-completion"));
        assert_eq!(readiness_mechanism("epoll"), Ok(Mechanism::Epoll));
        let e = readiness_mechanism("uring-completion").unwrap_err();
        assert!(e.to_string().contains("not a readiness mechanism"), "{e}");
    }
}
