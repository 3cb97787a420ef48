//! `--config FILE` on the real program: the file's keys are the long option names, the command
//! line overrides them, and a bad file is one sentence naming the key, the value and what is
//! accepted (exit 2).

mod util;

use ioscale_testutil::Proc;
use std::process::{Command, Stdio};
use std::time::Duration;
use util::{root, serve_exe, Client, ServerProc};

#[test]
fn the_file_sets_options_and_the_command_line_overrides_them() {
    let root = root("config");
    let dir = root.parent().unwrap();
    let log = dir.join("from-config.log");
    let file = dir.join("serve.toml");
    std::fs::write(
        &file,
        format!(
            "# a comment\nworkers = 2\nidle-timeout = \"30s\"\nmulti-accept = true\nport = 1\n\
             dispatch = \"poll\"\nexclusive = false\naccess-log = '{}'\nroot = '/nonexistent'\n",
            log.display()
        ),
    )
    .unwrap();
    // ServerProc puts `--port 0` first: the command line's port and root and dispatch win.
    let args =
        format!("--config '{}' --root '{}' --dispatch epoll", file.display(), root.display());
    let mut srv = ServerProc::spawn("", &args).unwrap_or_else(|l| panic!("did not start: {l}"));
    let stats = srv.stats();
    assert_eq!(stats["workers"], 2, "{stats}");
    assert_eq!(stats["mechanism"], "epoll", "{stats}");
    assert_eq!(Client::connect(srv.addr()).get("GET", "/1b.txt").status, 200);
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(Duration::from_secs(10)), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("\"GET /1b.txt HTTP/1.1\" 200 1 "), "{text}");
}

/// Runs the program expecting it to refuse at once; returns its exit code and stderr.
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let mut p = Proc(
        Command::new(serve_exe())
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let code = p.wait_exit(Duration::from_secs(10)).ok().flatten();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut p.0.stderr.take().unwrap(), &mut err).unwrap();
    (code, err)
}

#[test]
fn a_bad_file_is_one_sentence_naming_key_value_and_what_is_accepted() {
    let root = root("config-bad");
    let file = root.parent().unwrap().join("bad.toml");
    let f = file.to_str().unwrap();
    for (content, words) in [
        (
            "worker = 2",
            &[
                "unknown key 'worker'",
                "long option name",
                "did you mean 'workers'",
                "idle-timeout, ",
            ][..],
        ),
        ("idle-timeout = \"5\"", &["'idle-timeout'", "a unit is required"]),
        ("header-timeout = \"0s\"", &["'header-timeout'", "above zero"]),
        ("idle-timeout = \"soon\"", &["'idle-timeout'", "soon", "expected a number with ms"]),
        ("workers = 0", &["'workers'", "'0'", "1..=1024"]),
        ("workers = true", &["'workers'", "true", "expected a string or a number"]),
        ("multi-accept = \"yes\"", &["'multi-accept'", "yes", "true or false"]),
        ("dispatch = \"kqueue\"", &["'dispatch'", "kqueue", "expected one of select"]),
        ("workers = [1, 2]", &["'workers'", "[1, 2]", "expected a string or a number"]),
        ("workers = 2\nport = ", &["not valid TOML", "line 2"]),
        ("config = \"other.toml\"", &["'config'", "cannot name another"]),
    ] {
        std::fs::write(&file, content).unwrap();
        let (code, err) = refused(&["--config", f, "--root", root.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{content}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{content}: {err}");
        for w in words {
            assert!(err.contains(w), "{content}: {err:?} lacks {w:?}");
        }
        assert!(err.contains(f), "{content}: {err}");
    }
    let (code, err) = refused(&["--config", "/nonexistent/serve.toml"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("'/nonexistent/serve.toml': cannot read it"), "{err}");
}

#[test]
fn a_file_that_is_too_large_or_not_text_is_one_sentence_and_read_no_further() {
    let root = root("config-big");
    // /dev/zero never ends: it must be refused after at most the limit, not read until memory
    // runs out.
    let (code, err) = refused(&["--config", "/dev/zero", "--root", root.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--config '/dev/zero' is larger than 1024 KiB"), "{err}");
    let file = root.parent().unwrap().join("latin1.toml");
    std::fs::write(&file, b"cache-control = \"caf\xe9\"\n").unwrap();
    let (code, err) = refused(&["--config", file.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is not UTF-8 text (byte 20)"), "{err}");
}

#[test]
fn durations_need_a_unit_and_timeouts_are_above_zero_on_the_command_line() {
    for (args, words) in [
        (&["--header-timeout", "5"][..], &["'5'", "a unit is required", "--header-timeout"][..]),
        (&["--idle-timeout", "0s"], &["'0s'", "above zero"]),
        (&["--drain-timeout", "soon"], &["'soon'", "expected a number with ms"]),
    ] {
        let (code, err) = refused(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        for w in words {
            assert!(err.contains(w), "{args:?}: {err:?} lacks {w:?}");
        }
    }
}

#[test]
fn the_command_line_wins_over_the_file_option_by_option() {
    let root = root("config-wins");
    let file = root.parent().unwrap().join("serve.toml");
    std::fs::write(&file, "workers = 3\nheader-timeout = \"5s\"\nstats-public = true\n").unwrap();
    let args = format!("--config '{}' --root '{}' --workers 1", file.display(), root.display());
    let mut srv = ServerProc::spawn("", &args).unwrap_or_else(|l| panic!("did not start: {l}"));
    assert_eq!(srv.stats()["workers"], 1);
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(Duration::from_secs(10)), Some(0));
}
