//! The document root and phhttpd's static cache: files opened strictly beneath the root, small
//! ones kept in memory, large ones kept open for `sendfile`, each revalidated at most once a
//! second.
//!
//! A hit costs one hash lookup and no system call: the entry holds the bytes (or the open
//! descriptor) and the HTTP header lines rendered once ([`Entity`]). A change on disk (size,
//! modification time, inode) is seen within a second, when the entry is next used after its
//! check interval: the path is opened again beneath the root and compared.
//!
//! The cache is bounded so that no client can make it take what the rest of the server needs:
//! at most [`CacheLimits::max_entries`] entries, [`CacheLimits::max_total`] bytes in memory and
//! [`CacheLimits::max_open`] open descriptors (the worker's share of the descriptor limit, see
//! [`crate::descriptor_budget`]). Over a limit the least recently used entries go; an entry
//! unused for [`CacheLimits::idle`] goes too ([`Files::sweep`]), so the descriptors and memory of
//! a crawl come back when it ends. A large file that cannot be kept open within the budget is
//! opened for its response only, and when the process runs out of descriptors the cache gives
//! back all of its own before the open is tried again: a request is never refused because the
//! cache holds descriptors.

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
    used: Instant,
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

    /// Descriptors it holds open (its own and its variant's).
    fn fds(&self) -> usize {
        let open = |c: &Content| usize::from(matches!(c, Content::Open(_)));
        open(&self.content) + self.gz.as_ref().map_or(0, |v| open(&v.content))
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
    /// Most descriptors the cache keeps open (per worker): its share of the descriptor limit,
    /// set by [`crate::Server::bind`] from the limit and `--max-conns`. A large file that finds
    /// the budget spent (after the least recently used entries are evicted) is opened for its
    /// response only and closed after it.
    pub max_open: usize,
    /// An entry unused this long is dropped: its descriptor closed, its memory freed.
    pub idle: Duration,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_file: 256 * 1024,
            max_total: 64 << 20,
            max_entries: 4096,
            max_open: 1024,
            idle: IDLE,
        }
    }
}

/// How long an unused entry stays cached (see [`CacheLimits::idle`]).
pub const IDLE: Duration = Duration::from_secs(10);

/// What the cache holds and has done, for the stats.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheCounts {
    /// Entries cached.
    pub entries: u64,
    /// Descriptors the cached entries hold open.
    pub open: u64,
    /// Files opened for one response only (the descriptor budget was spent).
    pub transient: u64,
    /// Entries evicted: least recently used (over a limit) or idle.
    pub evicted: u64,
}

/// A cached entry and its key.
#[derive(Debug)]
struct Slot {
    key: Box<[u8]>,
    entry: Entry,
}

/// What [`Files::load`] did.
enum Loaded {
    /// The path names something that is not a cached file (a directory to redirect).
    Answer(Found<'static>),
    /// The entry in this slot is current.
    Cached(usize),
    /// The file is in [`Files::transient`], for this response only.
    Transient,
}

/// The root and the cache of one worker.
///
/// Entries live in a slab (`slots`) found through `index`, so a hit is one hash lookup. Each
/// records when it was last used: over a limit (entries, or the descriptor budget) the least
/// recently used eighth of the candidates goes at once (amortised: no scan per miss), and
/// [`Files::sweep`] drops what has been idle longer than [`CacheLimits::idle`].
#[derive(Debug)]
pub struct Files {
    root: OwnedFd,
    root_path: PathBuf,
    beneath: bool,
    index: HashMap<Box<[u8]>, usize>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    limits: CacheLimits,
    held: u64,
    counts: CacheCounts,
    /// `counts` changed since [`Files::take_counts`] last looked.
    dirty: bool,
    /// When the next idle entry is due ([`Files::sweep`]).
    next_sweep: Option<Instant>,
    /// The last file served without caching.
    transient: Option<Entry>,
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
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            limits,
            held: 0,
            counts: CacheCounts::default(),
            dirty: false,
            next_sweep: None,
            transient: None,
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
        // The hot path: one hash lookup, a fresh entry, its use noted.
        let hit = self.index.get(&self.key[..]).copied();
        if let Some(i) = hit {
            if self.fresh(i, now) {
                return Ok(self.use_slot(i, now));
            }
        }
        let key = std::mem::take(&mut self.key);
        let r = self.load(&key, now);
        self.key = key;
        match r {
            Ok(Loaded::Answer(found)) => Ok(found),
            Ok(Loaded::Cached(i)) => Ok(self.use_slot(i, now)),
            Ok(Loaded::Transient) => match &self.transient {
                Some(e) => Ok(Found::File(e)),
                None => Err(LookupError::Unavailable),
            },
            // Out of descriptors: a cached copy is served as it is rather than refused.
            Err(LookupError::Unavailable) if hit.is_some_and(|i| self.live(i)) => {
                Ok(self.use_slot(hit.unwrap_or_default(), now))
            }
            Err(e) => Err(e),
        }
    }

    #[inline]
    fn fresh(&self, i: usize, now: Instant) -> bool {
        matches!(&self.slots[i], Some(s) if now.saturating_duration_since(s.entry.checked) < REVALIDATE)
    }

    fn live(&self, i: usize) -> bool {
        matches!(self.slots.get(i), Some(Some(_)))
    }

    /// The entry in slot `i` (which must be live), its use noted.
    #[inline]
    fn use_slot(&mut self, i: usize, now: Instant) -> Found<'_> {
        match &mut self.slots[i] {
            Some(s) => {
                s.entry.used = now;
                Found::File(&s.entry)
            }
            None => unreachable!("a lookup returns only live slots"),
        }
    }

    /// (Re)loads `key`: the file's entry, cached or (over the descriptor budget) transient, or
    /// the answer for what is not a file.
    fn load(&mut self, key: &[u8], now: Instant) -> Result<Loaded, LookupError> {
        let fd = match self.open_rel(key) {
            Ok(fd) => fd,
            // Out of descriptors: the cache gives back every one it holds, and the open is
            // tried again (the cache never costs a request its answer).
            Err(e) if is_out_of_descriptors(&e) && self.counts.open > 0 => {
                self.release_descriptors();
                self.open_rel(key).map_err(|e| map_open_error(&e))?
            }
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
                Ok(Loaded::Answer(Found::Directory))
            };
        }
        if !meta.is_file() {
            self.evict(key);
            return Err(LookupError::Http(Error::new(ErrorKind::Forbidden, "not a regular file")));
        }
        let ident = (meta.dev(), meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec());
        let gz = if self.precompressed { self.open_gz(key, &ident) } else { None };
        let gz_ident = gz.as_ref().map(|(_, i, _)| *i);
        if let Some(&i) = self.index.get(key) {
            if let Some(s) = &mut self.slots[i] {
                if s.entry.ident == ident && s.entry.gz_ident == gz_ident {
                    s.entry.checked = now;
                    return Ok(Loaded::Cached(i));
                }
            }
        }
        self.evict(key);
        let entry = self.entry(key, file, &meta, ident, gz, now)?;
        self.insert(key, entry, now)
    }

    /// Builds the entry for `file` (with its metadata and identity) and its gzip variant.
    fn entry(
        &mut self,
        key: &[u8],
        file: File,
        meta: &std::fs::Metadata,
        ident: Ident,
        gz: Option<(File, Ident, std::time::SystemTime)>,
        now: Instant,
    ) -> Result<Entry, LookupError> {
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
                Some((Variant { entity, content }, gz_ident))
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
                if let Some((Variant { content: Content::Memory(m), .. }, _)) = &gz {
                    self.held -= m.len() as u64;
                }
                return Err(e);
            }
        };
        let gz_ident = gz.as_ref().map(|(_, i)| *i);
        let gz = gz.map(|(v, _)| v);
        Ok(Entry { entity, content, gz, checked: now, used: now, ident, gz_ident })
    }

    /// Caches `entry` under `key`, making room: over the entry limit or the descriptor budget
    /// the least recently used entries go; an entry whose descriptors still do not fit is not
    /// cached but served once ([`Loaded::Transient`]).
    fn insert(&mut self, key: &[u8], entry: Entry, now: Instant) -> Result<Loaded, LookupError> {
        let fds = entry.fds();
        if fds > 0 && self.counts.open as usize + fds > self.limits.max_open {
            self.evict_lru(fds, true);
            if self.counts.open as usize + fds > self.limits.max_open {
                self.held -= entry.held();
                self.transient = Some(entry);
                self.counts.transient += 1;
                self.dirty = true;
                return Ok(Loaded::Transient);
            }
        }
        if self.index.len() >= self.limits.max_entries {
            self.evict_lru(1, false);
        }
        self.counts.open += fds as u64;
        self.counts.entries += 1;
        self.dirty = true;
        let slot = Slot { key: key.into(), entry };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        self.index.insert(key.into(), i);
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + self.limits.idle);
        }
        Ok(Loaded::Cached(i))
    }

    /// Evicts the least recently used entries (only those holding descriptors when
    /// `descriptors`): at least `need` of them and an eighth of the candidates, so that a run of
    /// misses pays for one scan per eighth.
    fn evict_lru(&mut self, need: usize, descriptors: bool) {
        let mut cands: Vec<(Instant, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (s, i)))
            .filter(|(s, _)| !descriptors || s.entry.fds() > 0)
            .map(|(s, i)| (s.entry.used, i))
            .collect();
        let n = need.max(cands.len() / 8).min(cands.len());
        if n == 0 {
            return;
        }
        if n < cands.len() {
            cands.select_nth_unstable(n - 1);
        }
        for &(_, i) in &cands[..n] {
            self.evict_slot(i);
        }
    }

    /// Drops every entry unused for [`CacheLimits::idle`] by `now` (their descriptors closed,
    /// unless a response still holds one); the next sweep is due when the oldest that is left
    /// turns idle.
    pub fn sweep(&mut self, now: Instant) {
        let idle = self.limits.idle;
        let mut oldest: Option<Instant> = None;
        for i in 0..self.slots.len() {
            let Some(s) = &self.slots[i] else { continue };
            if now.saturating_duration_since(s.entry.used) >= idle {
                self.evict_slot(i);
            } else {
                oldest = Some(oldest.map_or(s.entry.used, |o| o.min(s.entry.used)));
            }
        }
        self.next_sweep = oldest.map(|o| o + idle);
    }

    /// When [`Files::sweep`] is next due (`None`: nothing is cached).
    #[inline]
    pub fn next_sweep(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Gives back every descriptor the cache holds (the process is out of them).
    fn release_descriptors(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].as_ref().is_some_and(|s| s.entry.fds() > 0) {
                self.evict_slot(i);
            }
        }
    }

    fn evict(&mut self, key: &[u8]) {
        if let Some(&i) = self.index.get(key) {
            self.evict_slot(i);
        }
    }

    fn evict_slot(&mut self, i: usize) {
        let Some(s) = self.slots[i].take() else { return };
        self.index.remove(&s.key);
        self.free.push(i);
        self.held -= s.entry.held();
        self.counts.open -= s.entry.fds() as u64;
        self.counts.entries -= 1;
        self.counts.evicted += 1;
        self.dirty = true;
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

    /// The limits in force.
    pub fn limits(&self) -> &CacheLimits {
        &self.limits
    }

    /// What the cache holds and has done, if that changed since the last call.
    #[inline]
    pub fn take_counts(&mut self) -> Option<CacheCounts> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        Some(self.counts)
    }

    /// What the cache holds and has done.
    pub fn counts(&self) -> CacheCounts {
        self.counts
    }
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
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

    /// A root of `n` files `f0.bin`.. of 8 bytes each (held open: `max_file` is 0 below).
    fn many(name: &str, n: usize) -> PathBuf {
        let d = tmp(name);
        for i in 0..n {
            std::fs::write(d.join(format!("f{i}.bin")), b"12345678").unwrap();
        }
        d
    }

    fn get(f: &mut Files, i: usize, now: Instant) -> bool {
        let Ok(Found::File(e)) = f.lookup(format!("f{i}.bin").as_bytes(), false, now) else {
            return false;
        };
        matches!(e.content, Content::Open(_))
    }

    #[test]
    fn descriptors_stay_within_the_budget_least_recently_used_go_first() {
        let d = many("budget", 200);
        let limits = CacheLimits { max_file: 0, max_open: 16, ..CacheLimits::default() };
        let mut f = Files::open(&d, limits).unwrap();
        let t0 = Instant::now();
        // f0 is used all along; a crawl of 200 distinct files passes it by.
        for i in 1..200 {
            let now = t0 + Duration::from_millis(i as u64);
            assert!(get(&mut f, 0, now) && get(&mut f, i, now), "file {i} served");
            assert!(f.counts().open <= 16, "{} descriptors cached", f.counts().open);
        }
        let c = f.counts();
        assert!(c.evicted > 150 && c.transient == 0, "{c:?}");
        assert!(f.index.contains_key(&b"f0.bin"[..]), "the file in use stays cached");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn without_a_budget_every_large_file_is_opened_for_its_response_only() {
        let d = many("nobudget", 3);
        let limits = CacheLimits { max_file: 0, max_open: 0, ..CacheLimits::default() };
        let mut f = Files::open(&d, limits).unwrap();
        let now = Instant::now();
        for i in [0, 1, 2, 0] {
            assert!(get(&mut f, i, now), "file {i} served");
        }
        let c = f.counts();
        assert_eq!((c.open, c.entries, c.transient), (0, 0, 4), "{c:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn idle_entries_are_dropped_and_the_next_sweep_is_when_the_oldest_turns_idle() {
        let d = many("idle", 3);
        let idle = Duration::from_secs(10);
        let limits = CacheLimits { max_file: 0, idle, ..CacheLimits::default() };
        let mut f = Files::open(&d, limits).unwrap();
        let t0 = Instant::now();
        assert!(get(&mut f, 0, t0) && get(&mut f, 1, t0));
        assert_eq!(f.next_sweep(), Some(t0 + idle));
        let t1 = t0 + Duration::from_secs(6);
        assert!(get(&mut f, 1, t1) && get(&mut f, 2, t1));
        f.sweep(t0 + idle);
        assert_eq!(f.counts().entries, 2, "f0, unused for 10 s, is dropped");
        assert_eq!(f.next_sweep(), Some(t1 + idle));
        f.sweep(t1 + idle);
        assert_eq!((f.counts().entries, f.counts().open), (0, 0));
        assert_eq!(f.next_sweep(), None, "nothing left to sweep: no timer");
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
