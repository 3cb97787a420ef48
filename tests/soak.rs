//! `ioscale soak` end to end, short: it starts the server and the generator as child processes,
//! samples them, writes its CSV, JSON lines and summary, and ends its children by PID — at the
//! planned end and on Ctrl-C (SIGINT).

mod util;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use util::{alive, ioscale, wait_until, Proc, BIN};

/// A fresh path for a soak's output (the soak makes the directory).
fn out_dir(tag: &str) -> PathBuf {
    let d = util::temp_dir(&format!("soak-{tag}"));
    std::fs::remove_dir(&d).unwrap();
    d
}

fn summary(dir: &Path) -> Value {
    let b = std::fs::read(dir.join("summary.json")).expect("summary.json written");
    serde_json::from_slice(&b).unwrap()
}

#[test]
fn a_short_soak_samples_and_ends_its_children() {
    let dir = out_dir("short");
    let out = ioscale(&[
        "soak",
        "--duration",
        "10s",
        "--every",
        "1s",
        "--warmup",
        "2s",
        "--idle",
        "500",
        "--rate",
        "50",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    let s = summary(&dir);
    // 3: the generator marked its run INVALID (a loaded machine): still a complete soak.
    assert!(matches!(out.status.code(), Some(0 | 3)), "{err}\n{s}");
    if out.status.code() == Some(3) {
        eprintln!("note: the generator's record was INVALID: {}", s["load_invalid_reasons"]);
    }
    let csv = std::fs::read_to_string(dir.join("samples.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert!(rows.len() >= 8, "{} samples: {csv}", rows.len());
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .starts_with("t_s,phase,server_rss_kb,server_rss_anon_kb,server_fds"));
    let jsonl = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), rows.len());
    // The server held the idle population, and its memory and descriptors were sampled.
    assert!(s["server_open_max"].as_u64().unwrap() >= 500, "{s}");
    assert!(s["server_fds"]["max"].as_u64().unwrap() >= 500, "{s}");
    assert!(s["server_rss_kb"]["first"].as_u64().unwrap() > 0, "{s}");
    assert!(s["p99_ms"]["last_quarter"].as_f64().is_some(), "latency sampled: {s}");
    assert_eq!(s["errors"]["active"], 0, "{s}");
    assert_eq!(s["active_requests"], s["active_replies"], "{s}");
    assert_eq!(
        (s["load_exit"].as_i64(), s["server_exit"].as_i64()),
        (out.status.code().map(i64::from), Some(0))
    );
    for k in ["server_pid", "load_pid"] {
        assert!(!alive(s[k].as_u64().unwrap()), "{k} still running");
    }
    assert!(std::fs::read_to_string(dir.join("summary.md")).unwrap().contains("| VmRSS kB |"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGINT to the soak alone, and to its whole process group (what Ctrl-C in a terminal does:
/// the server and the generator get it too).
#[test]
fn ctrl_c_stops_the_children_and_keeps_the_samples() {
    use std::os::unix::process::CommandExt;
    for group in [false, true] {
        let dir = out_dir(if group { "intg" } else { "int" });
        let mut child = Proc(
            Command::new(BIN)
                .args([
                    "soak",
                    "--duration",
                    "5m",
                    "--every",
                    "1s",
                    "--warmup",
                    "1s",
                    "--idle",
                    "200",
                ])
                .args(["--rate", "20", "--out"])
                .arg(&dir)
                .process_group(0)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Wait for a few samples.
        let samples =
            || std::fs::read_to_string(dir.join("samples.csv")).map_or(0, |s| s.lines().count());
        assert!(wait_until(Duration::from_secs(30), || samples() >= 4), "no samples");
        let pid = child.pid() as i32;
        // SAFETY: a signal to our own child (or its own process group) by its PID.
        unsafe { libc::kill(if group { -pid } else { pid }, libc::SIGINT) };
        let code = child.wait_exit(Duration::from_secs(40)).unwrap_or_else(|e| {
            panic!("soak did not stop within 40 s of SIGINT (group {group}): {e}")
        });
        assert_eq!(code, Some(3), "interrupted runs exit 3 (group {group})");
        let s = summary(&dir);
        assert_eq!(s["interrupted"], true, "{s}");
        assert!(s["samples"].as_u64().unwrap() >= 3, "{s}");
        assert_eq!(s["server_exit"], 0, "the server drained and exited 0: {s}");
        assert_eq!(s["load_exit"], 3, "the generator wrote its record, marked interrupted: {s}");
        for k in ["server_pid", "load_pid"] {
            assert!(!alive(s[k].as_u64().unwrap()), "{k} still running");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn bad_values_get_one_sentence_and_exit_2() {
    for (args, words) in [
        (&["--every", "10ms"][..], "--every"),
        (&["--idle", "100000"][..], "--idle 100000"),
        (&["--rate", "0", "--idle", "0"][..], "nothing to load"),
        (&["--duration", "soon"][..], "invalid duration 'soon'"),
    ] {
        let out = ioscale(&[&["soak"][..], args].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(words) && err.lines().count() <= 3, "{args:?}: {err}");
    }
}
