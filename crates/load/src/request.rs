//! The request the generator sends: method, extra headers, body, HTTP version and pipelining
//! depth, validated once from the command line and encoded once per target (the hot path only
//! copies prepared bytes into `write`).
//!
//! Validation follows RFC 9110/9112 syntax: a method is one of the registered methods, a header
//! name is a token, a value holds no control character (so no CR/LF can smuggle in a second
//! header or request). `Content-Length` is computed from the body; a user-given
//! `Content-Length` or `Transfer-Encoding` would contradict it and is refused.

use crate::error::PlanError;

/// Methods accepted by `--method` (RFC 9110 §9 and PATCH, RFC 5789).
pub const METHODS: [&str; 8] =
    ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"];

/// Largest `--pipeline` depth.
pub const MAX_PIPELINE: u32 = 1024;

/// Largest encoded batch (body × `--pipeline`) kept in memory per target.
pub const MAX_BATCH: usize = 256 << 20;

/// What every request of the active and idle populations looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestSpec {
    /// The method, upper case, one of [`METHODS`].
    pub method: String,
    /// Extra headers in the order given; a `Host` or `User-Agent` here replaces the default.
    pub headers: Vec<(String, String)>,
    /// The body (sent with `Content-Length`), if any.
    pub body: Option<Vec<u8>>,
    /// Send `HTTP/1.0` instead of `HTTP/1.1` request lines.
    pub http10: bool,
    /// Requests in flight per connection (1 = no pipelining).
    pub pipeline: u32,
}

impl Default for RequestSpec {
    fn default() -> Self {
        RequestSpec {
            method: "GET".into(),
            headers: Vec::new(),
            body: None,
            http10: false,
            pipeline: 1,
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses `--method`: one of [`METHODS`] (case-insensitive; sent upper case).
pub fn parse_method(s: &str) -> Result<String, PlanError> {
    let up = s.to_ascii_uppercase();
    if METHODS.contains(&up.as_str()) {
        Ok(up)
    } else {
        Err(PlanError(format!("unknown method '{s}': expected one of {}", METHODS.join(", "))))
    }
}

/// Parses one `--header 'Name: value'`.
pub fn parse_header(s: &str) -> Result<(String, String), PlanError> {
    let bad = |why: &str| {
        PlanError(format!("invalid header '{}': {why}; expected 'Name: value'", s.escape_debug()))
    };
    let (name, value) = s.split_once(':').ok_or_else(|| bad("no ':'"))?;
    if name.is_empty() {
        return Err(bad("empty name"));
    }
    if !name.bytes().all(is_tchar) {
        return Err(bad("the name may hold only letters, digits and !#$%&'*+-.^_`|~"));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(bad("the value holds a control character (CR, LF, ...)"));
    }
    if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
    {
        return Err(bad(
            "Content-Length is set from --body/--body-file and Transfer-Encoding is not supported",
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

impl RequestSpec {
    /// Whether responses to this request have no body whatever their headers say.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// Whether the request has a header named `name` (case-insensitive).
    fn has(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The bytes of one request to `path` on `host`.
    pub fn encode(&self, host: &str, path: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.as_ref().map_or(0, Vec::len));
        let version = if self.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        out.extend_from_slice(format!("{} {path} {version}\r\n", self.method).as_bytes());
        if !self.has("host") {
            out.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
        }
        if !self.has("user-agent") {
            out.extend_from_slice(b"User-Agent: ioscale-load\r\n");
        }
        for (n, v) in &self.headers {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        if let Some(b) = &self.body {
            out.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if let Some(b) = &self.body {
            out.extend_from_slice(b);
        }
        out
    }

    /// `pipeline` copies of [`RequestSpec::encode`] back to back: any suffix of it is what is
    /// left to write of up to `pipeline` requests, so one `write` sends them all.
    pub fn encode_batch(&self, host: &str, path: &str) -> (Vec<u8>, usize) {
        let one = self.encode(host, path);
        let len = one.len();
        (one.repeat(self.pipeline.max(1) as usize), len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_plain_get() {
        assert_eq!(
            RequestSpec::default().encode("h:1", "/p"),
            crate::http::encode_get("h:1", "/p"),
        );
    }

    #[test]
    fn headers_method_body_encoded_in_order() {
        let spec = RequestSpec {
            method: parse_method("post").unwrap(),
            headers: vec![parse_header("X-A:  1 ").unwrap(), parse_header("Host: other").unwrap()],
            body: Some(b"abc".to_vec()),
            http10: true,
            pipeline: 2,
        };
        let one = b"POST /p HTTP/1.0\r\nUser-Agent: ioscale-load\r\nX-A: 1\r\nHost: other\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(spec.encode("h", "/p"), one);
        let (batch, len) = spec.encode_batch("h", "/p");
        assert_eq!(len, one.len());
        assert_eq!(batch, [&one[..], &one[..]].concat());
    }

    #[test]
    fn bad_syntax_is_one_sentence() {
        for bad in ["NoColon", ": v", "Bad Name: v", "X: a\r\nY: b", "Content-Length: 3"] {
            let e = parse_header(bad).unwrap_err().0;
            assert!(e.starts_with("invalid header") && !e.contains('\n'), "{e}");
        }
        let e = parse_method("FETCH").unwrap_err().0;
        assert!(e.contains("unknown method 'FETCH'"), "{e}");
    }

    #[test]
    fn https_urls_default_to_port_443_and_carry_tls() {
        let t = crate::plan::parse_target("https://127.0.0.1/x").unwrap();
        assert!(t.tls);
        assert_eq!(t.addr.port(), 443);
        let t = crate::plan::parse_target("http://127.0.0.1/x").unwrap();
        assert!(!t.tls);
        assert_eq!(t.addr.port(), 80);
        let e = crate::plan::parse_target("ftp://127.0.0.1/").unwrap_err().0;
        assert!(e.contains("https://HOST:PORT/PATH"), "{e}");
    }
}
