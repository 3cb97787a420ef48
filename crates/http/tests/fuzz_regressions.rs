//! Regression tests for what fuzzing found (`fuzz/`, target `http_request`; the raw crash inputs
//! are kept in `fuzz/regressions/`). Each feeds the exact stream of a crash through a
//! [`Connection`] whole, in the crash's cuts and one byte at a time, and requires the same
//! outcomes every way: a verdict must not depend on how the bytes were cut into reads.

use ioscale_http::{Connection, ErrorKind, Limits, Step};

/// The outcomes of feeding `chunks` to a new connection, as text.
fn outcomes(chunks: &[&[u8]], limits: Limits) -> Vec<String> {
    let mut c = Connection::new(limits);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for ch in chunks {
        buf.extend_from_slice(ch);
        loop {
            let (used, step) = c.step(&buf);
            match step {
                Step::NeedMore => {
                    buf.drain(..used);
                    break;
                }
                Step::Request(r) => {
                    out.push(format!("request {}", String::from_utf8_lossy(r.target)));
                    buf.drain(..used);
                }
                Step::Reject(e) => {
                    out.push(format!("reject {:?}", e.kind()));
                    return out;
                }
                Step::Close => {
                    out.push("close".into());
                    return out;
                }
            }
        }
    }
    if !buf.is_empty() {
        out.push(format!("{} bytes pending", buf.len()));
    }
    out
}

/// Whole, byte by byte, and at `cuts`: all the same, and equal to `want`.
fn same_every_way(stream: &[u8], cuts: &[usize], limits: Limits, want: &[&str]) {
    let whole = outcomes(&[stream], limits);
    assert_eq!(whole, want, "whole");
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(outcomes(&bytes, limits), want, "one byte at a time");
    let mut chunks = Vec::new();
    let mut last = 0;
    for &c in cuts.iter().chain([&stream.len()]) {
        chunks.push(&stream[last..c]);
        last = c;
    }
    assert_eq!(outcomes(&chunks, limits), want, "cut at {cuts:?}");
}

fn kind(k: ErrorKind) -> String {
    format!("reject {k:?}")
}

/// crash-4a1a5c0d (the seed made from an HTTP/2 preface): read in pieces, `PRI * HTTP/2` was
/// refused as malformed (400) before the `.0` arrived, whole it is 505.
#[test]
fn http2_preface_is_505_however_it_is_cut() {
    let want = kind(ErrorKind::VersionNotSupported);
    same_every_way(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &[12, 13], Limits::default(), &[&want]);
    same_every_way(b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", &[13], Limits::default(), &[&want]);
}

/// crash-2f2dcc8e (found against the first fix of the above, which deferred the verdict while
/// the line's *last* word could still become a version): the unterminated
/// `GET /gig.bin HTTP/1.T /dir/ ... HTTP/1` waited whole but was refused read byte by byte. The
/// version is the third word, and a fourth makes the line malformed.
#[test]
fn bad_version_word_is_refused_however_it_is_cut() {
    let stream = b"GET /gig.bin HTTP/1.T /dir/ HTTET http\xc6\xd0/localho.txt?x=1 HTTP/1";
    let want = kind(ErrorKind::BadRequest);
    same_every_way(stream, &[20, 21], Limits::default(), &[&want]);
    // A well-formed version followed by more words is malformed too, once the line ends.
    same_every_way(b"GET / HTTP/2.0 x\r\n\r\n", &[14], Limits::default(), &[&want]);
}

/// Found while fixing the above (the fuzz target checks it with its tight limits): a malformed
/// byte beyond the head limit made a whole read 400 where pieces gave 431 at the limit; and a
/// malformed byte beyond an over-long request line made it 400 where pieces gave 414.
#[test]
fn limits_win_over_later_malformed_bytes() {
    let l = Limits { max_head: 512, max_target: 128, max_headers: 8, max_body: 64 };
    let mut big = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
    big.extend(std::iter::repeat_n(b'v', 600));
    big.extend_from_slice(b"\x01\r\n\r\n");
    same_every_way(&big, &[100, 511, 512], l, &[&kind(ErrorKind::HeadersTooLarge)]);
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'a', 200));
    long.extend_from_slice(b"\x01 HTTP/1.1\r\nHost: h\r\n\r\n");
    same_every_way(&long, &[160, 161], l, &[&kind(ErrorKind::UriTooLong)]);
}
