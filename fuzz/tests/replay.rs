//! Replays the committed seed corpora (and any run corpus or crash artifacts present) through
//! the fuzz checks on stable Rust: `cd fuzz && cargo test`.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for dir in ["corpus-seeds", "regressions", "corpus", "artifacts"] {
        let Ok(rd) = std::fs::read_dir(base.join(dir).join(target)) else { continue };
        for e in rd.flatten() {
            let data = std::fs::read(e.path()).unwrap();
            eprintln!("{}", e.path().display());
            check(&data);
            n += 1;
        }
    }
    assert!(n > 0, "no seeds for {target}");
    eprintln!("{target}: {n} inputs replayed");
}

#[test]
fn http_request_seeds() {
    replay("http_request", ioscale_fuzz::http::check);
}

#[test]
fn path_resolver_seeds() {
    replay("path_resolver", ioscale_fuzz::path::check);
}

#[test]
fn response_parser_seeds() {
    replay("response_parser", ioscale_fuzz::response::check);
}
