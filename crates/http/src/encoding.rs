//! `Accept-Encoding` (RFC 9110 §12.5.3): whether a client takes a gzip-encoded body, for
//! serving precompressed files (nginx's `gzip_static`).
//!
//! q-values are respected: `gzip;q=0` refuses gzip even when `*` is listed, `*` stands for
//! gzip when gzip is not named, and gzip is chosen only when it is not less preferred than the
//! identity encoding. A request without the header gets the identity body, as nginx does
//! (RFC 9110 would allow any coding, but clients that say nothing may not decode one). An element
//! with a malformed q-value is ignored. Nothing here allocates.

/// Whether the `Accept-Encoding` value (if any) lets the server answer with `gzip`.
///
/// ```
/// use ioscale_http::encoding::accepts_gzip;
/// assert!(accepts_gzip(Some(b"gzip, deflate, br")));
/// assert!(accepts_gzip(Some(b"*")));
/// assert!(!accepts_gzip(Some(b"gzip;q=0, *")));
/// assert!(!accepts_gzip(None));
/// ```
pub fn accepts_gzip(value: Option<&[u8]>) -> bool {
    let Some(value) = value else { return false };
    // Thousandths; None when the coding is not named.
    let (mut gzip, mut star, mut identity) = (None, None, None);
    for elem in value.split(|&b| b == b',') {
        let mut parts = elem.split(|&b| b == b';');
        let coding = parts.next().unwrap_or_default().trim_ascii();
        if coding.is_empty() {
            continue;
        }
        let mut q = Some(1000u16);
        for p in parts {
            let p = p.trim_ascii();
            if let Some((name, v)) = p.split_at_checked(2) {
                if name.eq_ignore_ascii_case(b"q=") {
                    q = qvalue(v.trim_ascii());
                }
            }
        }
        let Some(q) = q else { continue };
        let slot = if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip")
        {
            &mut gzip
        } else if coding == b"*" {
            &mut star
        } else if coding.eq_ignore_ascii_case(b"identity") {
            &mut identity
        } else {
            continue;
        };
        // The most specific, then the highest, weight wins when a coding repeats.
        *slot = Some(slot.map_or(q, |old: u16| old.max(q)));
    }
    let gzip = gzip.or(star).unwrap_or(0);
    // Identity weighs only when named (itself or `*`): acceptable by default, but not preferred.
    let identity = identity.or(star).unwrap_or(0);
    gzip > 0 && gzip >= identity
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(v: &str) -> bool {
        accepts_gzip(Some(v.as_bytes()))
    }

    #[test]
    fn what_browsers_and_curl_send() {
        assert!(ok("gzip, deflate, br, zstd"));
        assert!(ok("deflate, gzip, br, zstd"));
        assert!(ok("GZIP"));
        assert!(ok("x-gzip"));
        assert!(ok("gzip;q=0.5"));
        assert!(ok(" gzip ; q=1.000 "));
        assert!(!ok("deflate, br"));
        assert!(!ok(""));
        assert!(!ok("identity"));
    }

    #[test]
    fn q_values_and_the_wildcard() {
        assert!(!ok("gzip;q=0"));
        assert!(!ok("gzip;q=0.000, *"));
        assert!(!ok("*;q=0"));
        assert!(ok("*"));
        assert!(ok("br, *;q=0.1"));
        assert!(ok("gzip;q=0.001"));
        // Identity preferred over gzip: identity.
        assert!(!ok("gzip;q=0.5, identity"));
        assert!(ok("gzip, identity;q=0.5"));
        assert!(ok("gzip;q=0.5, identity;q=0"));
        // Malformed q-values drop their element.
        assert!(!ok("gzip;q=2"));
        assert!(!ok("gzip;q=0.5000"));
        assert!(!ok("gzip;q=x"));
        assert!(!ok("gzip;q=1.5"));
        assert!(ok("gzip;q=x, *"));
        assert!(ok("gzip;level=9"));
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue(b"0"), Some(0));
        assert_eq!(qvalue(b"0."), Some(0));
        assert_eq!(qvalue(b"0.5"), Some(500));
        assert_eq!(qvalue(b"0.123"), Some(123));
        assert_eq!(qvalue(b"1"), Some(1000));
        assert_eq!(qvalue(b"1.00"), Some(1000));
        assert_eq!(qvalue(b"1.01"), None);
        assert_eq!(qvalue(b""), None);
        assert_eq!(qvalue(b".5"), None);
    }

    proptest! {
        #[test]
        fn never_panics_and_zero_always_refuses(v in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = accepts_gzip(Some(&v));
            let mut refused = v.clone();
            refused.extend_from_slice(b",gzip;q=0");
            // An explicit gzip;q=0 refuses unless the random part also named gzip with q>0.
            if !v.windows(4).any(|w| w.eq_ignore_ascii_case(b"gzip")) {
                prop_assert!(!accepts_gzip(Some(&refused)));
            }
        }
    }
}
