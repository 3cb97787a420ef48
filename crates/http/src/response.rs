//! Response heads: statuses, the cached `Date`, a file's validators ([`Entity`]), conditional GET,
//! and writers that append to a caller-owned buffer.
//!
//! Nothing here allocates once the output buffer has grown to its working size: an [`Entity`]
//! renders its fixed header lines once (when a file is cached), the date is formatted once per
//! second, and numbers are written with `itoa`.

use crate::range::{self, Ranges};
use crate::request::{Method, Request, Version};
pub use crate::status::Status;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `Date` header value, formatted at most once per second.
#[derive(Clone, Debug)]
pub struct DateCache {
    secs: u64,
    text: [u8; 29],
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache::new()
    }
}

impl DateCache {
    /// A cache holding the current second.
    pub fn new() -> DateCache {
        let mut d = DateCache { secs: u64::MAX, text: [b' '; 29] };
        d.update(SystemTime::now());
        d
    }

    /// Reformats if `now` is in another second than the cached text.
    pub fn update(&mut self, now: SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs {
            let s = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
            if s.len() == 29 {
                self.text.copy_from_slice(s.as_bytes());
            }
            self.secs = secs;
        }
    }

    /// The IMF-fixdate text (`Sun, 06 Nov 1994 08:49:37 GMT`).
    pub fn text(&self) -> &[u8] {
        &self.text
    }
}

/// A file as an HTTP representation: length, validators and type, with its fixed header lines
/// rendered once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entity {
    len: u64,
    mtime: u64,
    etag: String,
    lines: Vec<u8>,
}

/// Header lines an [`Entity`] carries besides its type and validators, chosen by the server's
/// options and by what exists on disk.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EntityOptions<'a> {
    /// A `Cache-Control` value (already checked to be visible ASCII and spaces).
    pub cache_control: Option<&'a str>,
    /// This is the gzip-encoded variant of the named file (a precompressed `.gz` beside it):
    /// `Content-Encoding: gzip` and an entity tag ending in `-gz`.
    pub gzip: bool,
    /// The response depends on `Accept-Encoding` (a gzip variant exists): `Vary: Accept-Encoding`.
    pub vary: bool,
}

impl Entity {
    /// Describes a file of `len` bytes modified at `modified`, named `name` (its extension picks
    /// the type: `mime_guess`'s table, `charset=utf-8` for text, `application/octet-stream` when
    /// unknown).
    pub fn new(name: &[u8], len: u64, modified: SystemTime) -> Entity {
        Entity::with_options(name, len, modified, EntityOptions::default())
    }

    /// [`Entity::new`] with the extra header lines `opts` asks for. The lines are, in order:
    /// `Content-Type`, `Content-Encoding` (gzip variant), `Last-Modified`, `ETag`,
    /// `Accept-Ranges: bytes`, `Vary`, `Cache-Control`.
    pub fn with_options(
        name: &[u8],
        len: u64,
        modified: SystemTime,
        opts: EntityOptions<'_>,
    ) -> Entity {
        let mtime = modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        // nginx's form: hex seconds and hex length; strong, since both come from the file itself.
        let etag = if opts.gzip {
            format!("\"{mtime:x}-{len:x}-gz\"")
        } else {
            format!("\"{mtime:x}-{len:x}\"")
        };
        let mut lines = Vec::with_capacity(200);
        lines.extend_from_slice(b"Content-Type: ");
        lines.extend_from_slice(content_type(name).as_bytes());
        if opts.gzip {
            lines.extend_from_slice(b"\r\nContent-Encoding: gzip");
        }
        lines.extend_from_slice(b"\r\nLast-Modified: ");
        lines.extend_from_slice(
            httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(mtime)).as_bytes(),
        );
        lines.extend_from_slice(b"\r\nETag: ");
        lines.extend_from_slice(etag.as_bytes());
        lines.extend_from_slice(b"\r\nAccept-Ranges: bytes\r\n");
        if opts.vary {
            lines.extend_from_slice(b"Vary: Accept-Encoding\r\n");
        }
        if let Some(cc) = opts.cache_control {
            lines.extend_from_slice(b"Cache-Control: ");
            lines.extend_from_slice(cc.as_bytes());
            lines.extend_from_slice(b"\r\n");
        }
        Entity { len, mtime, etag, lines }
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The strong entity tag, quoted.
    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// Modification time, whole seconds since the epoch.
    pub fn mtime(&self) -> u64 {
        self.mtime
    }

    /// `Content-Type`, `Last-Modified` and `ETag` lines, each ending in CRLF.
    pub fn header_lines(&self) -> &[u8] {
        &self.lines
    }

    /// The status for a GET or HEAD of this entity: 304 when a validator matches (RFC 9110
    /// §13.2.2: `If-None-Match` wins over `If-Modified-Since`), else 200.
    pub fn evaluate(&self, req: &Request<'_>) -> Status {
        if let Some(inm) = req.if_none_match {
            return if etag_list_matches(inm, self.etag.as_bytes()) {
                Status::NOT_MODIFIED
            } else {
                Status::OK
            };
        }
        if let Some(ims) = req.if_modified_since {
            let since =
                std::str::from_utf8(ims).ok().and_then(|s| httpdate::parse_http_date(s).ok());
            if let Some(since) = since {
                let since = since.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                if self.mtime <= since {
                    return Status::NOT_MODIFIED;
                }
            }
        }
        Status::OK
    }

    /// What the `Range` of a GET or HEAD asks of this entity (call it when [`Entity::evaluate`]
    /// said 200): [`Ranges::Whole`] without `Range`, or when `If-Range` names another
    /// representation — an entity tag compared strongly (a weak tag never matches), or a date
    /// that must equal `Last-Modified` exactly (RFC 9110 §13.1.5).
    pub fn ranges(&self, req: &Request<'_>) -> Ranges {
        let Some(value) = req.range else { return Ranges::Whole };
        if let Some(cond) = req.if_range {
            let cond = cond.trim_ascii();
            let holds = if cond.starts_with(b"\"") {
                cond == self.etag.as_bytes()
            } else if cond.starts_with(b"W/") {
                false
            } else {
                std::str::from_utf8(cond)
                    .ok()
                    .and_then(|s| httpdate::parse_http_date(s).ok())
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .is_some_and(|d| d.as_secs() == self.mtime)
            };
            if !holds {
                return Ranges::Whole;
            }
        }
        range::evaluate(value, self.len)
    }
}

/// Weak comparison (RFC 9110 §8.8.3.2) of each tag in an `If-None-Match` list with `etag`.
fn etag_list_matches(list: &[u8], etag: &[u8]) -> bool {
    list.split(|&b| b == b',').any(|t| {
        let t = t.trim_ascii();
        t == b"*" || t.strip_prefix(b"W/").unwrap_or(t) == etag
    })
}

/// The `Content-Type` value for a file name.
pub fn content_type(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    match mime_guess::from_path(name.as_ref()).first() {
        Some(m)
            if m.type_() == mime_guess::mime::TEXT
                || m.essence_str() == "application/javascript"
                || m.essence_str() == "application/json"
                || m.essence_str() == "image/svg+xml" =>
        {
            format!("{}; charset=utf-8", m.essence_str())
        }
        Some(m) => m.essence_str().to_string(),
        None => "application/octet-stream".to_string(),
    }
}

/// How the connection ends after a response.
fn write_connection(out: &mut Vec<u8>, version: Version, keep_alive: bool) {
    match (version, keep_alive) {
        (Version::Http11, false) => out.extend_from_slice(b"Connection: close\r\n"),
        (Version::Http10, true) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        _ => {}
    }
}

fn write_common(out: &mut Vec<u8>, status: Status, date: &DateCache) {
    status.write_line(out);
    out.extend_from_slice(b"Server: ioscale\r\nDate: ");
    out.extend_from_slice(date.text());
    out.extend_from_slice(b"\r\n");
}

/// Appends the head of a response for `entity` with `status` (200 or 304) to `out`; `keep_alive`
/// decides the `Connection` header for the request's `version`. A 304 has no `Content-Length`
/// and no body.
pub fn write_entity_head(
    out: &mut Vec<u8>,
    status: Status,
    entity: &Entity,
    date: &DateCache,
    version: Version,
    keep_alive: bool,
) {
    write_common(out, status, date);
    out.extend_from_slice(entity.header_lines());
    if status != Status::NOT_MODIFIED {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(entity.len).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    write_connection(out, version, keep_alive);
    out.extend_from_slice(b"\r\n");
}

/// Appends the head of a 206 for the bytes `start..end` of `entity` (from [`Entity::ranges`]):
/// the entity's lines, `Content-Range: bytes FIRST-LAST/LEN` and the range's `Content-Length`.
pub fn write_partial_head(
    out: &mut Vec<u8>,
    entity: &Entity,
    start: u64,
    end: u64,
    date: &DateCache,
    version: Version,
    keep_alive: bool,
) {
    write_common(out, Status::PARTIAL_CONTENT, date);
    out.extend_from_slice(entity.header_lines());
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"Content-Range: bytes ");
    out.extend_from_slice(n.format(start).as_bytes());
    out.push(b'-');
    out.extend_from_slice(n.format(end.saturating_sub(1)).as_bytes());
    out.push(b'/');
    out.extend_from_slice(n.format(entity.len).as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    out.extend_from_slice(n.format(end.saturating_sub(start)).as_bytes());
    out.extend_from_slice(b"\r\n");
    write_connection(out, version, keep_alive);
    out.extend_from_slice(b"\r\n");
}

/// Appends a 416 for `entity` to `out`: `Content-Range: bytes */LEN` and a one-line text body
/// (dropped when `head_only`).
pub fn write_unsatisfiable(
    out: &mut Vec<u8>,
    entity: &Entity,
    date: &DateCache,
    head_only: bool,
    version: Version,
    keep_alive: bool,
) {
    // A cold path: a small allocation is fine here.
    let mut extra = Vec::with_capacity(48);
    extra.extend_from_slice(b"Content-Range: bytes */");
    extra.extend_from_slice(itoa::Buffer::new().format(entity.len).as_bytes());
    extra.extend_from_slice(b"\r\n");
    write_error_with(
        out,
        Status::RANGE_NOT_SATISFIABLE,
        &extra,
        date,
        head_only,
        version,
        keep_alive,
    );
}

/// Appends a whole response with a caller-made body (e.g. JSON) to `out`; for HEAD only the head.
#[allow(clippy::too_many_arguments)]
pub fn write_simple(
    out: &mut Vec<u8>,
    status: Status,
    content_type: &str,
    body: &[u8],
    date: &DateCache,
    method: Method,
    version: Version,
    keep_alive: bool,
) {
    write_common(out, status, date);
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\nCache-Control: no-store\r\nContent-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    write_connection(out, version, keep_alive);
    out.extend_from_slice(b"\r\n");
    if !method.is_head() {
        out.extend_from_slice(body);
    }
}

/// Appends an error response (`status` with a one-line text body) to `out`. `head_only` drops the
/// body (a HEAD request); `keep_alive` false adds `Connection: close`. A 405 carries
/// `Allow: GET, HEAD`.
pub fn write_error(
    out: &mut Vec<u8>,
    status: Status,
    date: &DateCache,
    head_only: bool,
    keep_alive: bool,
) {
    write_error_for(out, status, date, head_only, Version::Http11, keep_alive);
}

/// [`write_error`] for a request of `version`: an HTTP/1.0 request that asked for keep-alive
/// is told `Connection: keep-alive` when the connection stays open.
pub fn write_error_for(
    out: &mut Vec<u8>,
    status: Status,
    date: &DateCache,
    head_only: bool,
    version: Version,
    keep_alive: bool,
) {
    write_error_with(out, status, b"", date, head_only, version, keep_alive);
}

/// [`write_error_for`] with `extra` header lines (each ending in CRLF) after the date.
fn write_error_with(
    out: &mut Vec<u8>,
    status: Status,
    extra: &[u8],
    date: &DateCache,
    head_only: bool,
    version: Version,
    keep_alive: bool,
) {
    write_common(out, status, date);
    out.extend_from_slice(extra);
    if status == Status::METHOD_NOT_ALLOWED {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    let code = itoa::Buffer::new();
    let mut code = code;
    let code = code.format(status.code());
    let body_len = code.len() + 1 + status.reason().len() + 1;
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
    out.extend_from_slice(b"\r\n");
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(code.as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.reason().as_bytes());
        out.push(b'\n');
    }
}

/// Appends a 301 to `location` (a path on this host, already safe: built from a resolved path).
pub fn write_redirect(
    out: &mut Vec<u8>,
    location: &[u8],
    date: &DateCache,
    method: Method,
    version: Version,
    keep_alive: bool,
) {
    write_common(out, Status::MOVED_PERMANENTLY, date);
    out.extend_from_slice(b"Location: ");
    out.extend_from_slice(location);
    out.extend_from_slice(b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 22\r\n");
    write_connection(out, version, keep_alive);
    out.extend_from_slice(b"\r\n");
    if !method.is_head() {
        out.extend_from_slice(b"301 Moved Permanently\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{parse, Limits, Parsed};

    fn req(text: &[u8]) -> Request<'_> {
        match parse(text, &Limits::default()) {
            Ok(Parsed::Complete(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn head_text(out: &[u8]) -> String {
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn entity_head_has_length_type_validators_and_date() {
        let e = Entity::new(b"dir/index.html", 6144, UNIX_EPOCH + Duration::from_secs(784111777));
        let mut out = Vec::new();
        let d = DateCache::new();
        write_entity_head(&mut out, Status::OK, &e, &d, Version::Http11, true);
        let t = head_text(&out);
        assert!(t.starts_with("HTTP/1.1 200 OK\r\n"), "{t}");
        assert!(t.contains("Content-Length: 6144\r\n"));
        assert!(t.contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert!(t.contains("Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n"));
        assert!(t.contains("ETag: \"2ebc98a1-1800\"\r\n"));
        assert!(t.contains("Date: "));
        assert!(!t.contains("Connection"));
        assert!(t.ends_with("\r\n\r\n"));
    }

    #[test]
    fn connection_header_follows_the_version_rules() {
        let e = Entity::new(b"a.bin", 1, UNIX_EPOCH);
        let d = DateCache::new();
        for (v, ka, want) in [
            (Version::Http11, true, None),
            (Version::Http11, false, Some("Connection: close")),
            (Version::Http10, true, Some("Connection: keep-alive")),
            (Version::Http10, false, None),
        ] {
            let mut out = Vec::new();
            write_entity_head(&mut out, Status::OK, &e, &d, v, ka);
            let t = head_text(&out);
            assert_eq!(t.contains("Connection:"), want.is_some(), "{t}");
            if let Some(w) = want {
                assert!(t.contains(w));
            }
        }
    }

    #[test]
    fn types_come_from_the_extension() {
        assert_eq!(content_type(b"a.css"), "text/css; charset=utf-8");
        assert_eq!(content_type(b"a.png"), "image/png");
        assert_eq!(content_type(b"a.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type(b"noext"), "application/octet-stream");
        assert_eq!(content_type(b"x.unknownext"), "application/octet-stream");
    }

    #[test]
    fn conditional_get() {
        let e = Entity::new(b"f", 10, UNIX_EPOCH + Duration::from_secs(784111777));
        let tag = e.etag().to_string();
        let r = format!("GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"zz\", {tag}\r\n\r\n");
        assert_eq!(e.evaluate(&req(r.as_bytes())), Status::NOT_MODIFIED);
        let r = format!("GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: W/{tag}\r\n\r\n");
        assert_eq!(e.evaluate(&req(r.as_bytes())), Status::NOT_MODIFIED);
        assert_eq!(
            e.evaluate(&req(b"GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: *\r\n\r\n")),
            Status::NOT_MODIFIED
        );
        assert_eq!(
            e.evaluate(&req(b"GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"no\"\r\n\r\n")),
            Status::OK
        );
        let same = b"GET / HTTP/1.1\r\nHost: h\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";
        assert_eq!(e.evaluate(&req(same)), Status::NOT_MODIFIED);
        let older = b"GET / HTTP/1.1\r\nHost: h\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:36 GMT\r\n\r\n";
        assert_eq!(e.evaluate(&req(older)), Status::OK);
        let junk = b"GET / HTTP/1.1\r\nHost: h\r\nIf-Modified-Since: yesterday\r\n\r\n";
        assert_eq!(e.evaluate(&req(junk)), Status::OK);
        // If-None-Match wins over If-Modified-Since.
        let both = b"GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"no\"\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";
        assert_eq!(e.evaluate(&req(both)), Status::OK);
        let mut out = Vec::new();
        write_entity_head(
            &mut out,
            Status::NOT_MODIFIED,
            &e,
            &DateCache::new(),
            Version::Http11,
            true,
        );
        let t = head_text(&out);
        assert!(t.starts_with("HTTP/1.1 304 Not Modified\r\n") && !t.contains("Content-Length"));
    }

    #[test]
    fn if_range_and_partial_heads() {
        let e = Entity::new(b"f.bin", 1000, UNIX_EPOCH + Duration::from_secs(784111777));
        let tag = e.etag().to_string();
        let ask = |extra: &str| {
            let r = format!("GET / HTTP/1.1\r\nHost: h\r\nRange: bytes=10-19\r\n{extra}\r\n");
            e.ranges(&req(r.as_bytes()))
        };
        let part = Ranges::One { start: 10, end: 20 };
        assert_eq!(ask(""), part);
        assert_eq!(ask(&format!("If-Range: {tag}\r\n")), part);
        assert_eq!(ask("If-Range: Sun, 06 Nov 1994 08:49:37 GMT\r\n"), part);
        assert_eq!(ask("If-Range: Sun, 06 Nov 1994 08:49:38 GMT\r\n"), Ranges::Whole);
        assert_eq!(ask(&format!("If-Range: W/{tag}\r\n")), Ranges::Whole);
        assert_eq!(ask("If-Range: \"other\"\r\n"), Ranges::Whole);
        assert_eq!(ask("If-Range: junk\r\n"), Ranges::Whole);
        assert_eq!(e.ranges(&req(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")), Ranges::Whole);
        let d = DateCache::new();
        let mut out = Vec::new();
        write_partial_head(&mut out, &e, 10, 20, &d, Version::Http11, true);
        let t = head_text(&out);
        assert!(t.starts_with("HTTP/1.1 206 Partial Content\r\n"), "{t}");
        assert!(t.contains("Content-Range: bytes 10-19/1000\r\nContent-Length: 10\r\n"), "{t}");
        assert!(t.contains("Accept-Ranges: bytes\r\n"));
        let mut out = Vec::new();
        write_unsatisfiable(&mut out, &e, &d, false, Version::Http11, true);
        let t = head_text(&out);
        assert!(t.starts_with("HTTP/1.1 416 Range Not Satisfiable\r\n"), "{t}");
        assert!(t.contains("Content-Range: bytes */1000\r\n"), "{t}");
        assert!(t.ends_with("\r\n\r\n416 Range Not Satisfiable\n"), "{t}");
    }

    #[test]
    fn entity_options_add_their_lines() {
        let t = UNIX_EPOCH + Duration::from_secs(784111777);
        let opts = EntityOptions { cache_control: Some("max-age=60"), gzip: true, vary: true };
        let e = Entity::with_options(b"a.css", 5, t, opts);
        let lines = String::from_utf8(e.header_lines().to_vec()).unwrap();
        assert_eq!(
            lines,
            "Content-Type: text/css; charset=utf-8\r\nContent-Encoding: gzip\r\n\
             Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nETag: \"2ebc98a1-5-gz\"\r\n\
             Accept-Ranges: bytes\r\nVary: Accept-Encoding\r\nCache-Control: max-age=60\r\n"
        );
        assert_ne!(e.etag(), Entity::new(b"a.css", 5, t).etag());
    }

    #[test]
    fn errors_have_a_body_unless_head_and_405_has_allow() {
        let d = DateCache::new();
        let mut out = Vec::new();
        write_error(&mut out, Status::METHOD_NOT_ALLOWED, &d, false, false);
        let t = head_text(&out);
        assert!(t.contains("Allow: GET, HEAD\r\n") && t.contains("Connection: close\r\n"));
        let (head, body) = t.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "405 Method Not Allowed\n");
        assert!(head.contains(&format!("Content-Length: {}\r", body.len())));
        let mut out = Vec::new();
        write_error(&mut out, Status::NOT_FOUND, &d, true, true);
        let t = head_text(&out);
        assert!(t.ends_with("\r\n\r\n") && t.contains("Content-Length: 14\r\n"), "{t}");
    }

    #[test]
    fn errors_to_http10_keep_alive_say_so() {
        let d = DateCache::new();
        let mut out = Vec::new();
        write_error_for(&mut out, Status::NOT_FOUND, &d, false, Version::Http10, true);
        assert!(head_text(&out).contains("Connection: keep-alive\r\n"));
        let mut out = Vec::new();
        write_error_for(&mut out, Status::NOT_FOUND, &d, false, Version::Http11, true);
        assert!(!head_text(&out).contains("Connection:"));
    }

    #[test]
    fn no_allocation_once_the_buffer_has_grown() {
        let e = Entity::new(b"a.txt", 1, UNIX_EPOCH);
        let d = DateCache::new();
        let mut out = Vec::with_capacity(4096);
        let ptr = out.as_ptr();
        for _ in 0..100 {
            out.clear();
            write_entity_head(&mut out, Status::OK, &e, &d, Version::Http11, true);
        }
        assert_eq!(out.as_ptr(), ptr);
    }

    #[test]
    fn date_cache_formats_imf_fixdate() {
        let mut d = DateCache::new();
        d.update(UNIX_EPOCH + Duration::from_secs(784111777));
        assert_eq!(d.text(), b"Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
