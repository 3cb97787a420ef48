//! Request target → relative path below the document root.
//!
//! The result is a normalised relative path: no leading `/`, no empty or `.` segments, never a
//! `..` segment, no NUL or control byte. A `..` (raw or `%2e%2e`) is refused rather than
//! resolved, an encoded slash (`%2f`) is refused rather than decoded into a separator, and bad
//! percent-encoding is refused: every such request is hostile or broken, and refusing keeps the
//! rule simple enough to prove. The engine still opens the result *beneath* the root with the
//! kernel's help (`openat2` with `RESOLVE_BENEATH`), so a symlink cannot lead out either.

use crate::error::{Error, ErrorKind};

/// What [`resolve`] found besides the path itself.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The target's path ended with `/` (a directory was asked for).
    pub trailing_slash: bool,
}

/// Decodes the path of `target` (an origin-form or absolute-form request target) into `out`
/// (cleared first) as a relative path below the root. The empty path means the root itself.
pub fn resolve(target: &[u8], out: &mut Vec<u8>) -> Result<Resolved, Error> {
    out.clear();
    let mut path = target;
    // Absolute form (RFC 9112 §3.2.2): scheme "://" authority path.
    if let Some(rest) = strip_scheme(path) {
        let slash = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        path = &rest[slash..];
        if path.is_empty() {
            path = b"/";
        }
    }
    let end = path.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(path.len());
    let path = &path[..end];
    if path.first() != Some(&b'/') {
        return Err(Error::new(ErrorKind::BadPath, "the request target does not start with '/'"));
    }
    let trailing_slash = path.len() > 1 && path.ends_with(b"/");
    for seg in path.split(|&b| b == b'/') {
        let start = out.len();
        if !out.is_empty() {
            out.push(b'/');
        }
        let seg_start = out.len();
        let mut i = 0;
        while i < seg.len() {
            let b = seg[i];
            let c = if b == b'%' {
                let (Some(h), Some(l)) =
                    (seg.get(i + 1).and_then(hex), seg.get(i + 2).and_then(hex))
                else {
                    return Err(Error::new(
                        ErrorKind::BadPath,
                        "the path has bad percent-encoding",
                    ));
                };
                i += 3;
                let c = h << 4 | l;
                if c == b'/' || c == b'\\' {
                    return Err(Error::new(ErrorKind::BadPath, "the path has an encoded slash"));
                }
                c
            } else {
                i += 1;
                b
            };
            if c < 0x20 || c == 0x7f {
                return Err(Error::new(ErrorKind::BadPath, "the path has a NUL or control byte"));
            }
            out.push(c);
        }
        match &out[seg_start..] {
            b"" | b"." => out.truncate(start),
            b".." => return Err(Error::new(ErrorKind::Traversal, "the path has a '..' segment")),
            _ => {}
        }
    }
    Ok(Resolved { trailing_slash })
}

fn strip_scheme(t: &[u8]) -> Option<&[u8]> {
    let colon = t.iter().position(|&b| b == b':')?;
    let (scheme, rest) = t.split_at(colon);
    if scheme.is_empty() || !scheme.iter().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
    {
        return None;
    }
    rest.strip_prefix(b"://")
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(t: &str) -> String {
        let mut out = Vec::new();
        resolve(t.as_bytes(), &mut out).unwrap_or_else(|e| panic!("{t}: {e}"));
        String::from_utf8(out).unwrap()
    }

    fn err(t: &[u8]) -> ErrorKind {
        let mut out = Vec::new();
        resolve(t, &mut out).map(|_| String::from_utf8_lossy(&out).into_owned()).unwrap_err().kind()
    }

    #[test]
    fn normalises() {
        assert_eq!(ok("/"), "");
        assert_eq!(ok("/a/b.txt"), "a/b.txt");
        assert_eq!(ok("//a/./b//c/"), "a/b/c");
        assert_eq!(ok("/a%20b?x=../../y"), "a b");
        assert_eq!(ok("/%7Euser/%C3%A9"), "~user/é");
        assert_eq!(ok("http://example.com/x/y"), "x/y");
        assert_eq!(ok("http://example.com"), "");
        assert_eq!(ok("/..a/b..c/.d"), "..a/b..c/.d");
        let mut out = Vec::new();
        assert!(resolve(b"/dir/", &mut out).unwrap().trailing_slash);
        assert!(!resolve(b"/", &mut out).unwrap().trailing_slash);
    }

    #[test]
    fn refuses_traversal_and_tricks() {
        for t in [
            &b"/.."[..],
            b"/../etc/passwd",
            b"/a/../../b",
            b"/%2e%2e/x",
            b"/%2E%2e",
            b"/.%2e/x",
            b"/a/..",
        ] {
            assert_eq!(err(t), ErrorKind::Traversal, "{}", String::from_utf8_lossy(t));
        }
        for t in [
            &b"/a%2fb"[..],
            b"/a%2F..%2Fb",
            b"/a%5cb",
            b"/a%00b",
            b"/a\0b",
            b"/%",
            b"/%4",
            b"/%zz",
            b"/a%0d%0aSet-Cookie:x",
            b"*",
            b"a/b",
            b"",
            b"http:/x",
        ] {
            assert_eq!(err(t), ErrorKind::BadPath, "{}", String::from_utf8_lossy(t));
        }
    }

    fn encode(seg: &[u8]) -> String {
        seg.iter().map(|b| format!("%{b:02X}")).collect()
    }

    proptest! {
        #[test]
        fn round_trips_encoded_segments(segs in prop::collection::vec(prop::collection::vec(0x20u8..=0xff, 1..12), 0..6)) {
            let segs: Vec<Vec<u8>> = segs
                .into_iter()
                .filter(|s| s != b"." && s != b".." && !s.contains(&b'/') && !s.contains(&b'\\') && !s.contains(&0x7f))
                .collect();
            let target: String = segs.iter().map(|s| format!("/{}", encode(s))).collect();
            let target = if target.is_empty() { "/".to_string() } else { target };
            let mut out = Vec::new();
            resolve(target.as_bytes(), &mut out).unwrap();
            prop_assert_eq!(out, segs.join(&b'/'));
        }

        #[test]
        fn never_leaves_the_root(t in prop::collection::vec(prop::sample::select(b"/.%2eEfF0a\x00?".to_vec()), 0..30)) {
            let mut out = Vec::new();
            if resolve(&t, &mut out).is_ok() {
                prop_assert!(!out.starts_with(b"/"));
                prop_assert!(!out.contains(&0));
                for seg in out.split(|&b| b == b'/').filter(|_| !out.is_empty()) {
                    prop_assert!(seg != b".." && seg != b"." && !seg.is_empty());
                }
            }
        }
    }
}
