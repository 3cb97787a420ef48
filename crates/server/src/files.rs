//! The document root and phhttpd's static cache: files opened strictly beneath the root, small
//! ones kept in memory, large ones kept open for `sendfile`, each revalidated at most once a
//! second.
//!
//! A hit costs one hash lookup and no system call: the entry holds the bytes (or the open
//! descriptor) and the HTTP header lines rendered once ([`Entity`]). A change on disk (size,
//! modification time, inode) is seen within a second, when the entry is next used after its
//! check interval: the path is opened again beneath the root and compared.

use crate::sys;
use ioscale_http::encoding::accepts_gzip;
use ioscale_http::{Entity, EntityOptions, Error, ErrorKind};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a cached entry is checked against the disk.
pub const REVALIDATE: Duration = Duration::from_secs(1);

/// The body of a cached file.
#[derive(Clone, Debug)]
pub enum Content {
    /// Small file: its bytes.
    Memory(Arc<[u8]>),
    /// Large file: an open descriptor for `sendfile` at explicit offsets.
    Open(Arc<File>),
}

type Ident = (u64, u64, u64, i64, i64);

/// A cached file.
#[derive(Debug)]
pub struct Entry {
    /// Length, validators, type.
    pub entity: Entity,
    /// Its bytes or its descriptor.
    pub content: Content,
    /// With `--precompressed`: the gzip variant (`NAME.gz`, not older than the file).
    pub gz: Option<Variant>,
    checked: Instant,
    ident: Ident,
    gz_ident: Option<Ident>,
}

/// A precompressed variant of a file.
#[derive(Debug)]
pub struct Variant {
    /// Its representation: the original's type, `Content-Encoding: gzip`, its own entity tag.
    pub entity: Entity,
    /// Its bytes or its descriptor.
    pub content: Content,
}

impl Entry {
    /// The representation to send for `accept_encoding`: the gzip variant when there is one and
    /// the client takes gzip, else the file itself. (`Accept-Encoding` is parsed only when a
    /// variant exists.)
    pub fn variant(&self, accept_encoding: Option<&[u8]>) -> (&Entity, &Content) {
        match &self.gz {
            Some(v) if accepts_gzip(accept_encoding) => (&v.entity, &v.content),
            _ => (&self.entity, &self.content),
        }
    }

    fn held(&self) -> u64 {
        let mem = |c: &Content| if let Content::Memory(m) = c { m.len() as u64 } else { 0 };
        mem(&self.content) + self.gz.as_ref().map_or(0, |v| mem(&v.content))
    }
}

/// What a path names.
#[derive(Debug)]
pub enum Found<'a> {
    /// A regular file (or a directory's `index.html`).
    File(&'a Entry),
    /// A directory asked for without its trailing slash: redirect to `path/`.
    Directory,
}

/// Why a lookup failed, beyond the HTTP errors.
#[derive(Debug)]
pub enum LookupError {
    /// An HTTP error (404, 403).
    Http(Error),
    /// Out of descriptors or memory: answer 503.
    Unavailable,
}

/// Limits of the cache.
#[derive(Copy, Clone, Debug)]
pub struct CacheLimits {
    /// Files up to this size are held in memory.
    pub max_file: u64,
    /// Total bytes held in memory (per worker).
    pub max_total: u64,
    /// Most entries (memory and open descriptors).
    pub max_entries: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits { max_file: 256 * 1024, max_total: 64 << 20, max_entries: 4096 }
    }
}

/// The root and the cache of one worker.
#[derive(Debug)]
pub struct Files {
    root: OwnedFd,
    root_path: PathBuf,
    beneath: bool,
    map: HashMap<Box<[u8]>, Entry>,
    limits: CacheLimits,
    held: u64,
    key: Vec<u8>,
    cache_control: Option<String>,
    precompressed: bool,
}

impl Files {
    /// Opens the root directory.
    pub fn open(root: &Path, limits: CacheLimits) -> io::Result<Files> {
        let dir = File::open(root)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a directory"));
        }
        let root_path = root.canonicalize()?;
        let beneath = match sys::open_beneath(dir.as_raw_fd(), b"") {
            Ok(_) => true,
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => false,
            Err(e) => return Err(e),
        };
        Ok(Files {
            root: dir.into(),
            root_path,
            beneath,
            map: HashMap::new(),
            limits,
            held: 0,
            key: Vec::with_capacity(256),
            cache_control: None,
            precompressed: false,
        })
    }

    /// Adds `Cache-Control: VALUE` to every file's header lines (`None`: no such line), and
    /// with `precompressed` looks for a `NAME.gz` beside each file (nginx's `gzip_static`).
    /// Applies to files loaded from now on: call it before the first lookup.
    pub fn set_options(&mut self, cache_control: Option<String>, precompressed: bool) {
        self.cache_control = cache_control;
        self.precompressed = precompressed;
    }

    /// Looks up the resolved relative `path` (from [`ioscale_http::resolve`]); `dir_slash` when
    /// the target ended with `/`.
    pub fn lookup(
        &mut self,
        path: &[u8],
        dir_slash: bool,
        now: Instant,
    ) -> Result<Found<'_>, LookupError> {
        self.key.clear();
        self.key.extend_from_slice(path);
        if dir_slash || path.is_empty() {
            if !path.is_empty() {
                self.key.push(b'/');
            }
            self.key.extend_from_slice(b"index.html");
        }
        let fresh = match self.map.get(&self.key[..]) {
            Some(e) => now.saturating_duration_since(e.checked) < REVALIDATE,
            None => false,
        };
        if !fresh {
            let key = std::mem::take(&mut self.key);
            let r = self.load(&key, now);
            self.key = key;
            match r {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                // Out of descriptors: a cached copy is served as it is rather than refused.
                Err(LookupError::Unavailable) if self.map.contains_key(&self.key[..]) => {}
                Err(e) => return Err(e),
            }
        }
        match self.map.get(&self.key[..]) {
            Some(e) => Ok(Found::File(e)),
            None => Err(LookupError::Http(Error::new(ErrorKind::NotFound, "no such file"))),
        }
    }

    /// (Re)loads `key` into the map. `Some` for an answer that is not a cached file.
    fn load(&mut self, key: &[u8], now: Instant) -> Result<Option<Found<'static>>, LookupError> {
        let fd = match self.open_rel(key) {
            Ok(fd) => fd,
            Err(e) => {
                let err = map_open_error(&e);
                if !matches!(err, LookupError::Unavailable) {
                    self.evict(key);
                }
                return Err(err);
            }
        };
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| map_open_error(&e))?;
        if meta.is_dir() {
            self.evict(key);
            return if key.ends_with(b"index.html") {
                Err(LookupError::Http(Error::new(ErrorKind::NotFound, "no such file")))
            } else {
                Ok(Some(Found::Directory))
            };
        }
        if !meta.is_file() {
            self.evict(key);
            return Err(LookupError::Http(Error::new(ErrorKind::Forbidden, "not a regular file")));
        }
        let ident = (meta.dev(), meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec());
        let gz = if self.precompressed { self.open_gz(key, &ident) } else { None };
        let gz_ident = gz.as_ref().map(|(_, i, _)| *i);
        if let Some(e) = self.map.get_mut(key) {
            if e.ident == ident && e.gz_ident == gz_ident {
                e.checked = now;
                return Ok(None);
            }
        }
        self.evict(key);
        let gz = match gz {
            Some((gz_file, gz_ident, modified)) => {
                let opts = EntityOptions {
                    cache_control: self.cache_control.as_deref(),
                    gzip: true,
                    vary: true,
                };
                // Typed as the original file: the name without `.gz` picks the type.
                let entity = Entity::with_options(key, gz_ident.2, modified, opts);
                let content = self.content(gz_file, gz_ident.2)?;
                Some(Variant { entity, content })
            }
            None => None,
        };
        let len = meta.len();
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        let opts = EntityOptions {
            cache_control: self.cache_control.as_deref(),
            gzip: false,
            vary: gz.is_some(),
        };
        let entity = Entity::with_options(key, len, modified, opts);
        let content = match self.content(file, len) {
            Ok(c) => c,
            Err(e) => {
                if let Some(Variant { content: Content::Memory(m), .. }) = &gz {
                    self.held -= m.len() as u64;
                }
                return Err(e);
            }
        };
        let entry = Entry { entity, content, gz, checked: now, ident, gz_ident };
        if self.map.len() >= self.limits.max_entries {
            // Crude but bounded: start over (the hot set comes back at once).
            self.map.clear();
            self.held = entry.held();
        }
        self.map.insert(key.into(), entry);
        Ok(None)
    }

    /// `KEY.gz` when it is a regular file not older than the file (whose identity is `of`):
    /// its descriptor, identity and modification time.
    fn open_gz(&self, key: &[u8], of: &Ident) -> Option<(File, Ident, std::time::SystemTime)> {
        let mut name = Vec::with_capacity(key.len() + 3);
        name.extend_from_slice(key);
        name.extend_from_slice(b".gz");
        let file = File::from(self.open_rel(&name).ok()?);
        let m = file.metadata().ok()?;
        let ident = (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec());
        // Whole seconds, HTTP's granularity: copies that keep only seconds still count.
        let fresh = ident.3 >= of.3;
        (m.is_file() && fresh).then(|| (file, ident, m.modified().unwrap_or(std::time::UNIX_EPOCH)))
    }

    /// The body of a file of `len` bytes: read into memory when it fits the cache's limits
    /// (counted in `held`), else its descriptor kept open.
    fn content(&mut self, file: File, len: u64) -> Result<Content, LookupError> {
        if len <= self.limits.max_file && self.held + len <= self.limits.max_total {
            let mut data = Vec::with_capacity(len as usize);
            (&file).take(len).read_to_end(&mut data).map_err(|e| map_open_error(&e))?;
            if data.len() as u64 == len {
                self.held += len;
                return Ok(Content::Memory(data.into()));
            }
            // Changed while being read: serve from the descriptor this time.
        }
        Ok(Content::Open(Arc::new(file)))
    }

    fn evict(&mut self, key: &[u8]) {
        if let Some(e) = self.map.remove(key) {
            self.held -= e.held();
        }
    }

    fn open_rel(&self, rel: &[u8]) -> io::Result<OwnedFd> {
        if self.beneath {
            return sys::open_beneath(self.root.as_raw_fd(), rel);
        }
        // Kernels without openat2: resolve every symlink and check the prefix.
        let p = self.root_path.join(std::ffi::OsStr::new(
            std::str::from_utf8(rel).map_err(|_| io::Error::from_raw_os_error(libc::ENOENT))?,
        ));
        let real = p.canonicalize()?;
        if !real.starts_with(&self.root_path) {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        Ok(File::open(real)?.into())
    }

    /// Bytes held in memory.
    pub fn held(&self) -> u64 {
        self.held
    }
}

fn map_open_error(e: &io::Error) -> LookupError {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM) => LookupError::Unavailable,
        Some(libc::EXDEV | libc::ELOOP | libc::EACCES | libc::EPERM) => LookupError::Http(
            Error::new(ErrorKind::Forbidden, "the path leads outside the root or is not readable"),
        ),
        _ => LookupError::Http(Error::new(ErrorKind::NotFound, "no such file")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ioscale-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn caches_small_files_and_sees_changes() {
        let d = tmp("change");
        std::fs::write(d.join("a.txt"), "one").unwrap();
        let mut f = Files::open(&d, CacheLimits::default()).unwrap();
        let t0 = Instant::now();
        let Ok(Found::File(e)) = f.lookup(b"a.txt", false, t0) else { panic!() };
        assert!(matches!(&e.content, Content::Memory(m) if &m[..] == b"one"));
        std::fs::write(d.join("a.txt"), "three").unwrap();
        // Within the interval: the cached copy.
        let Ok(Found::File(e)) = f.lookup(b"a.txt", false, t0) else { panic!() };
        assert_eq!(e.entity.len(), 3);
        let Ok(Found::File(e)) = f.lookup(b"a.txt", false, t0 + REVALIDATE * 2) else { panic!() };
        assert!(matches!(&e.content, Content::Memory(m) if &m[..] == b"three"));
        std::fs::remove_file(d.join("a.txt")).unwrap();
        assert!(f.lookup(b"a.txt", false, t0 + REVALIDATE * 4).is_err());
        assert_eq!(f.held(), 0);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn large_files_stay_open_directories_redirect_and_index() {
        let d = tmp("large");
        std::fs::write(d.join("big.bin"), vec![7u8; 1000]).unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::create_dir(d.join("empty")).unwrap();
        std::fs::write(d.join("sub/index.html"), "<p>").unwrap();
        let limits = CacheLimits { max_file: 100, ..CacheLimits::default() };
        let mut f = Files::open(&d, limits).unwrap();
        let now = Instant::now();
        assert!(matches!(
            f.lookup(b"big.bin", false, now),
            Ok(Found::File(Entry { content: Content::Open(_), .. }))
        ));
        assert!(matches!(f.lookup(b"sub", false, now), Ok(Found::Directory)));
        assert!(matches!(f.lookup(b"sub", true, now), Ok(Found::File(_))));
        assert!(
            matches!(f.lookup(b"empty", true, now), Err(LookupError::Http(e)) if e.kind() == ErrorKind::NotFound)
        );
        assert!(
            matches!(f.lookup(b"", false, now), Err(LookupError::Http(e)) if e.kind() == ErrorKind::NotFound)
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn precompressed_variants_come_and_go_with_the_gz() {
        let d = tmp("gz");
        std::fs::write(d.join("a.txt"), "plain").unwrap();
        let mut f = Files::open(&d, CacheLimits::default()).unwrap();
        f.set_options(Some("no-cache".into()), true);
        let t0 = Instant::now();
        let Ok(Found::File(e)) = f.lookup(b"a.txt", false, t0) else { panic!() };
        assert!(e.gz.is_none());
        let lines = String::from_utf8_lossy(e.entity.header_lines()).into_owned();
        assert!(!lines.contains("Vary") && lines.contains("Cache-Control: no-cache\r\n"));
        std::fs::write(d.join("a.txt.gz"), "zipped").unwrap();
        let Ok(Found::File(e)) = f.lookup(b"a.txt", false, t0 + REVALIDATE * 2) else { panic!() };
        let v = e.gz.as_ref().expect("the .gz is seen at the next check");
        assert!(matches!(&v.content, Content::Memory(m) if &m[..] == b"zipped"));
        assert!(String::from_utf8_lossy(e.entity.header_lines()).contains("Vary: Accept-Encoding"));
        assert_eq!(e.variant(Some(b"gzip")).0, &v.entity);
        assert_eq!(e.variant(Some(b"br")).0, &e.entity);
        assert_eq!(e.variant(None).0, &e.entity);
        assert_eq!(f.held(), 5 + 6);
        std::fs::remove_file(d.join("a.txt.gz")).unwrap();
        let Ok(Found::File(e)) = f.lookup(b"a.txt", false, t0 + REVALIDATE * 4) else { panic!() };
        assert!(e.gz.is_none());
        assert_eq!(f.held(), 5);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let d = tmp("symlink");
        let outside = tmp("outside");
        std::fs::write(outside.join("secret"), "s").unwrap();
        std::fs::write(d.join("in.txt"), "i").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), d.join("abs")).unwrap();
        std::os::unix::fs::symlink(
            "../ioscale-files-outside-".to_string() + &std::process::id().to_string() + "/secret",
            d.join("rel"),
        )
        .unwrap();
        std::os::unix::fs::symlink("in.txt", d.join("inside")).unwrap();
        std::os::unix::fs::symlink(&outside, d.join("dirlink")).unwrap();
        let mut f = Files::open(&d, CacheLimits::default()).unwrap();
        let now = Instant::now();
        for p in [&b"abs"[..], b"rel", b"dirlink/secret"] {
            match f.lookup(p, false, now) {
                Err(LookupError::Http(e)) => {
                    assert!(matches!(e.kind(), ErrorKind::Forbidden | ErrorKind::NotFound))
                }
                other => panic!("{} served: {other:?}", String::from_utf8_lossy(p)),
            }
        }
        assert!(matches!(f.lookup(b"inside", false, now), Ok(Found::File(_))));
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&outside);
    }
}
