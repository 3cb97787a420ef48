//! The command line in the shell: completions, the man page, and one-sentence errors.

mod util;

use util::ioscale;

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = ioscale(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("ioscale") && text.contains("serve") && text.contains("dispatch"),
            "{shell}: {text}"
        );
    }
    let bad = ioscale(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("tcsh"));
}

#[test]
fn man_page_documents_subcommands_and_exit_codes() {
    let out = ioscale(&["man"]);
    assert!(out.status.success());
    let roff = String::from_utf8_lossy(&out.stdout);
    assert!(
        roff.starts_with(".ie") || roff.contains(".TH ioscale"),
        "{}",
        &roff[..200.min(roff.len())]
    );
    for needle in [".SH \"EXIT CODES\"", "IOSCALE SERVE", "IOSCALE LOAD", "IOSCALE LAB", "INVALID"]
    {
        assert!(roff.contains(needle), "man page lacks {needle}");
    }
}

#[test]
fn bad_values_get_one_sentence() {
    let out = ioscale(&["overhead", "--mechanisms", "kqueue"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown mechanism 'kqueue': expected one of select, poll"), "{err}");
    let out = ioscale(&["load", "ftp://127.0.0.1/", "--rate", "1", "--duration", "1s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid URL 'ftp://127.0.0.1/'"));
}
