//! Typed errors: every way a request can be refused, each with the status it is answered with.

use crate::status::Status;
use std::fmt;

/// Why a request was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request line or a header is malformed (400).
    BadRequest,
    /// An HTTP/1.1 request without exactly one `Host` header (400).
    MissingHost,
    /// The request target is not a valid origin-form path (400): bad percent-encoding, an encoded
    /// slash (`%2f`), a NUL or control byte, or no leading `/`.
    BadPath,
    /// The path has a `..` segment, raw or percent-encoded (403).
    Traversal,
    /// The target is outside what may be served (403): e.g. a symlink leading out of the root.
    Forbidden,
    /// No such file (404).
    NotFound,
    /// A known method other than GET and HEAD (405, with `Allow: GET, HEAD`).
    MethodNotAllowed,
    /// The client sent nothing complete before the header timeout (408).
    Timeout,
    /// A request body longer than the limit (413).
    BodyTooLarge,
    /// The request target is longer than the limit (414).
    UriTooLong,
    /// The header section is larger than the limit or has too many fields (431).
    HeadersTooLarge,
    /// An unknown method or a transfer coding this server does not implement (501).
    NotImplemented,
    /// An HTTP version other than 1.0 and 1.1 (505).
    VersionNotSupported,
}

impl ErrorKind {
    /// Every kind, for counters.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::BadRequest,
        ErrorKind::MissingHost,
        ErrorKind::BadPath,
        ErrorKind::Traversal,
        ErrorKind::Forbidden,
        ErrorKind::NotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::Timeout,
        ErrorKind::BodyTooLarge,
        ErrorKind::UriTooLong,
        ErrorKind::HeadersTooLarge,
        ErrorKind::NotImplemented,
        ErrorKind::VersionNotSupported,
    ];

    /// The status this kind is answered with.
    pub const fn status(self) -> Status {
        match self {
            ErrorKind::BadRequest | ErrorKind::MissingHost | ErrorKind::BadPath => {
                Status::BAD_REQUEST
            }
            ErrorKind::Traversal | ErrorKind::Forbidden => Status::FORBIDDEN,
            ErrorKind::NotFound => Status::NOT_FOUND,
            ErrorKind::MethodNotAllowed => Status::METHOD_NOT_ALLOWED,
            ErrorKind::Timeout => Status::REQUEST_TIMEOUT,
            ErrorKind::BodyTooLarge => Status::PAYLOAD_TOO_LARGE,
            ErrorKind::UriTooLong => Status::URI_TOO_LONG,
            ErrorKind::HeadersTooLarge => Status::HEADERS_TOO_LARGE,
            ErrorKind::NotImplemented => Status::NOT_IMPLEMENTED,
            ErrorKind::VersionNotSupported => Status::VERSION_NOT_SUPPORTED,
        }
    }

    /// A short snake_case name (for counters and logs).
    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::MissingHost => "missing_host",
            ErrorKind::BadPath => "bad_path",
            ErrorKind::Traversal => "traversal",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::UriTooLong => "uri_too_long",
            ErrorKind::HeadersTooLarge => "headers_too_large",
            ErrorKind::NotImplemented => "not_implemented",
            ErrorKind::VersionNotSupported => "version_not_supported",
        }
    }

    /// Its position in [`ErrorKind::ALL`] (for counter arrays).
    pub fn index(self) -> usize {
        ErrorKind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// A refused request: its kind and a sentence saying why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    detail: &'static str,
}

impl Error {
    /// An error of `kind` with a static explanation (no allocation: errors can be frequent under
    /// hostile input).
    pub const fn new(kind: ErrorKind, detail: &'static str) -> Error {
        Error { kind, detail }
    }

    /// Its kind.
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The status the request is answered with.
    pub const fn status(&self) -> Status {
        self.kind.status()
    }

    /// The explanation.
    pub const fn detail(&self) -> &'static str {
        self.detail
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status().code(), self.status().reason(), self.detail)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_an_error_status_and_a_unique_name() {
        let mut names = std::collections::HashSet::new();
        for k in ErrorKind::ALL {
            assert!(k.status().code() >= 400, "{k:?}");
            assert!(names.insert(k.name()));
            assert_eq!(ErrorKind::ALL[k.index()], *k);
        }
    }

    #[test]
    fn display_names_status_and_reason() {
        let e = Error::new(ErrorKind::UriTooLong, "the request target is longer than 4096 bytes");
        assert_eq!(e.to_string(), "414 URI Too Long: the request target is longer than 4096 bytes");
    }
}
