//! The `path_resolver` target: a request target through [`ioscale_http::resolve`], then through
//! the server's file lookup ([`ioscale_server::files::Files`]) beneath a real root directory
//! that holds symlinks leading out of it.
//!
//! # What must hold
//!
//! * Nothing panics; a refusal is `BadPath` (400) or `Traversal` (403).
//! * A resolved path is relative and normal: no leading `/`, no empty, `.` or `..` segment, no
//!   NUL or control byte; joined to the root, every component is a plain name and the result
//!   starts with the root.
//! * For an origin-form target it is exactly the percent-decoded segments of the path with the
//!   empty and `.` ones dropped (a reference decoder written independently here), and
//!   re-encoding it resolves to itself.
//! * Looked up beneath the fixture root (below), a path is served only if the file it names,
//!   with every symlink resolved by the kernel (`canonicalize`), lies inside the root, and the
//!   bytes served are never the secret kept outside. A directory is redirected to only if it
//!   lies inside the root too.
//!
//! # The fixture root
//!
//! Made once per process in `$TMPDIR/ioscale-fuzz-<pid>/` (a few hundred bytes, left behind at
//! exit):
//!
//! ```text
//! outside/secret.txt, outside/index.html     "IOSCALE-SECRET-OUTSIDE-THE-ROOT"
//! root/index.html, root/a.txt, root/dir/index.html, root/dir/b.txt, "root/sp ace.txt"
//! root/link-out -> ../outside              root/link-secret -> ../outside/secret.txt
//! root/abs-secret -> $TMP/outside/secret.txt   root/etc-passwd -> /etc/passwd
//! root/proc-root -> /proc/self/root (a magic link)   root/dir/upup -> ../..
//! root/dir/up -> .. (inside)   root/link-in -> a.txt (inside)   root/dir/loop -> loop
//! ```

use ioscale_http::{resolve, ErrorKind};
use ioscale_server::files::{CacheLimits, Content, Files, Found, LookupError};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// The secret kept outside the root; no response may ever carry it.
pub const SECRET: &[u8] = b"IOSCALE-SECRET-OUTSIDE-THE-ROOT\n";

/// The fixture: the root, its canonical path, and the server's lookup over it.
pub struct Fixture {
    /// `…/root`, canonical.
    pub root: PathBuf,
    /// The server's cache over the root.
    pub files: Mutex<Files>,
}

/// The fixture of this process, made on first use.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| make_fixture().expect("cannot make the fixture root in the temp directory"))
}

fn make_fixture() -> std::io::Result<Fixture> {
    use std::fs;
    use std::os::unix::fs::symlink;
    let top = std::env::temp_dir().join(format!("ioscale-fuzz-{}", std::process::id()));
    let _ = fs::remove_dir_all(&top);
    let (root, outside) = (top.join("root"), top.join("outside"));
    fs::create_dir_all(root.join("dir"))?;
    fs::create_dir_all(&outside)?;
    fs::write(outside.join("secret.txt"), SECRET)?;
    fs::write(outside.join("index.html"), SECRET)?;
    fs::write(root.join("index.html"), b"root index\n")?;
    fs::write(root.join("a.txt"), b"a\n")?;
    fs::write(root.join("sp ace.txt"), b"space\n")?;
    fs::write(root.join("dir/index.html"), b"dir index\n")?;
    fs::write(root.join("dir/b.txt"), b"b\n")?;
    symlink("../outside", root.join("link-out"))?;
    symlink("../outside/secret.txt", root.join("link-secret"))?;
    symlink(outside.join("secret.txt"), root.join("abs-secret"))?;
    symlink("/etc/passwd", root.join("etc-passwd"))?;
    symlink("/proc/self/root", root.join("proc-root"))?;
    symlink("../..", root.join("dir/upup"))?;
    symlink("..", root.join("dir/up"))?;
    symlink("a.txt", root.join("link-in"))?;
    symlink("loop", root.join("dir/loop"))?;
    let root = root.canonicalize()?;
    let files = Files::open(&root, CacheLimits::default())?;
    Ok(Fixture { root, files: Mutex::new(files) })
}

/// The fuzz target's body.
pub fn check(target: &[u8]) {
    let mut out = Vec::new();
    let resolved = match resolve(target, &mut out) {
        Ok(r) => r,
        Err(e) => {
            assert!(
                matches!(e.kind(), ErrorKind::BadPath | ErrorKind::Traversal),
                "refused with {e}"
            );
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    check_lexical(&out);
    if target.first() == Some(&b'/') {
        let want = reference(target);
        assert_eq!(Some(&out), want.as_ref(), "the resolver and the reference decoder disagree");
    }
    let again = reencode(&out);
    let mut out2 = Vec::new();
    resolve(&again, &mut out2).unwrap_or_else(|e| {
        panic!("re-encoded {:?} refused: {e}", String::from_utf8_lossy(&again))
    });
    assert_eq!(out2, out, "re-encoding changed the path");
    check_beneath(&out, resolved.trailing_slash);
}

fn check_lexical(out: &[u8]) {
    let shown = || String::from_utf8_lossy(out).into_owned();
    assert!(!out.starts_with(b"/"), "absolute result {:?}", shown());
    assert!(!out.iter().any(|&b| b < 0x20 || b == 0x7f), "control byte in {:?}", shown());
    if !out.is_empty() {
        for seg in out.split(|&b| b == b'/') {
            assert!(
                !seg.is_empty() && seg != b"." && seg != b"..",
                "segment {:?} in {:?}",
                String::from_utf8_lossy(seg),
                shown()
            );
        }
    }
    let root = Path::new("/srv/root");
    let joined = root.join(std::ffi::OsStr::from_bytes(out));
    assert!(joined.starts_with(root), "{joined:?} is not below the root");
    for c in joined.strip_prefix(root).expect("below the root").components() {
        assert!(matches!(c, Component::Normal(_)), "component {c:?} in {joined:?}");
    }
}

/// The path of an origin-form target, decoded independently: split at `/`, percent-decode each
/// segment, drop the empty and `.` ones. `None` where it cannot decode.
fn reference(target: &[u8]) -> Option<Vec<u8>> {
    let end = target.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(target.len());
    let mut segs: Vec<Vec<u8>> = Vec::new();
    for seg in target[..end].split(|&b| b == b'/') {
        let mut d = Vec::new();
        let mut it = seg.iter();
        while let Some(&b) = it.next() {
            if b == b'%' {
                let h = (*it.next()? as char).to_digit(16)?;
                let l = (*it.next()? as char).to_digit(16)?;
                d.push((h * 16 + l) as u8);
            } else {
                d.push(b);
            }
        }
        if !d.is_empty() && d != b"." {
            segs.push(d);
        }
    }
    Some(segs.join(&b'/'))
}

/// `out` as an origin-form target again: every byte but letters, digits, `/` and `\` encoded.
fn reencode(out: &[u8]) -> Vec<u8> {
    let mut t = vec![b'/'];
    for &b in out {
        if b.is_ascii_alphanumeric() || b == b'/' || b == b'\\' {
            t.push(b);
        } else {
            t.extend_from_slice(format!("%{b:02x}").as_bytes());
        }
    }
    t
}

fn check_beneath(rel: &[u8], trailing_slash: bool) {
    let f = fixture();
    let mut files = f.files.lock().unwrap_or_else(|p| p.into_inner());
    let found = files.lookup(rel, trailing_slash, Instant::now());
    let joined = f.root.join(std::ffi::OsStr::from_bytes(rel));
    let shown = || String::from_utf8_lossy(rel).into_owned();
    match found {
        Ok(Found::File(entry)) => {
            let file =
                if trailing_slash || rel.is_empty() { joined.join("index.html") } else { joined };
            let real = file.canonicalize().unwrap_or_else(|e| {
                panic!("served {:?}, which the kernel cannot resolve: {e}", shown())
            });
            assert!(
                real.starts_with(&f.root),
                "served {real:?} (outside the root) for {:?}",
                shown()
            );
            if let Content::Memory(bytes) = &entry.content {
                assert_ne!(&bytes[..], SECRET, "served the secret for {:?}", shown());
            }
        }
        Ok(Found::Directory) => {
            let real = joined.canonicalize().unwrap_or_else(|e| {
                panic!("redirected to {:?}, which the kernel cannot resolve: {e}", shown())
            });
            assert!(real.starts_with(&f.root), "redirect into {real:?} (outside the root)");
        }
        Err(LookupError::Http(e)) => {
            assert!(
                matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Forbidden),
                "lookup of {:?} refused with {e}",
                shown()
            );
        }
        Err(LookupError::Unavailable) => panic!("lookup of {:?}: out of descriptors", shown()),
    }
}
