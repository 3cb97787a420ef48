//! End to end: `ioscale lab` runs a tiny experiment from a TOML file, writes its JSON lines, and
//! renders a report with one SVG per declared figure.

mod util;

use std::path::Path;
use std::process::Command;
use util::{temp_dir, BIN};

const TINY: &str = r#"
name = "tiny"
summary = "tiny dispatch experiment for the end-to-end test"
reproduces = "nothing (a test)"
kind = "dispatch"
mechanisms = ["epoll", "poll", "no-such-mechanism"]
duration = 0.02
rounds = 1
[grid]
idle = [0, 50]

[[figure]]
id = "cost"
reproduces = "test figure 1"
title = "cost"
x = "idle"
x_label = "idle"
y = "ns_per_cycle"
y_label = "ns"
paper_finding = "flat for epoll"

[[figure]]
id = "ratio"
reproduces = "test figure 2"
title = "ratio"
x = "idle"
x_label = "idle"
y = "ratio_to_smallest"
y_label = "x"
paper_finding = "1x for epoll"
"#;

fn lab(args: &[&str], exps: &Path, out: &Path) -> std::process::Output {
    Command::new(BIN)
        .arg("lab")
        .args(args)
        .arg("--experiments")
        .arg(exps)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run ioscale lab")
}

#[test]
fn tiny_dispatch_experiment_end_to_end() {
    let exps = temp_dir("lab-exps");
    let out = temp_dir("lab-out");
    std::fs::write(exps.join("tiny.toml"), TINY).unwrap();

    let list = lab(&["list"], &exps, &out);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    assert!(String::from_utf8_lossy(&list.stdout).contains("tiny"));

    let run = lab(&["tiny"], &exps, &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "lab failed: {stderr}");
    // Not a terminal: one plain line per point on stdout, as it is measured, no escape codes.
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(!stdout.contains('\x1b') && !stderr.contains('\x1b'), "{stdout}{stderr}");
    let progress: Vec<&str> = stdout.lines().filter(|l| l.starts_with("lab: tiny ")).collect();
    assert_eq!(progress.len(), 6, "a line per point: {stdout}");
    for (k, line) in progress.iter().enumerate() {
        assert!(line.starts_with(&format!("lab: tiny {}/6 ({}/6, ", k + 1, k + 1)), "{line}");
        if line.contains("no-such-mechanism") {
            assert!(line.contains("NOT MEASURED ('no-such-mechanism' is not"), "{line}");
        } else {
            assert!(line.contains(" ns per cycle") && line.ends_with("VALID"), "{line}");
        }
    }

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    assert_eq!(lines.len(), 6, "3 mechanisms x 2 idle counts");
    for l in &lines {
        assert_eq!(l["experiment"], "tiny");
        assert!(l["machine"]["kernel"].as_str().unwrap().starts_with("Linux"), "{l}");
        if l["mechanism"] == "no-such-mechanism" {
            assert!(l["error"].as_str().unwrap().contains("not a mechanism"), "{l}");
        } else {
            assert!(l["error"].is_null(), "{l}");
            assert!(l["metrics"]["ns_per_cycle"].as_f64().unwrap() > 0.0, "{l}");
        }
    }

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 2, "one SVG per declared figure");
    assert!(html.contains("test figure 1") && html.contains("test figure 2"));
    // Each figure's verdict: in the verdict table and beside its caption.
    assert_eq!(html.matches("class=\"badge no-rule\"").count(), 4);
    assert!(std::fs::read_to_string(out.join("summary.md")).unwrap().contains("## tiny"));

    // Resume skips every point already measured; report re-renders from the results alone.
    let again = lab(&["tiny", "--resume"], &exps, &out);
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("0 points measured (6 skipped"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    std::fs::remove_file(out.join("report.html")).unwrap();
    let report = Command::new(BIN)
        .args(["lab", "report"])
        .arg(&out)
        .arg("--experiments")
        .arg(&exps)
        .output()
        .unwrap();
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    assert!(out.join("report.html").exists());
    let _ = std::fs::remove_dir_all(&exps);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn unknown_experiment_is_one_sentence() {
    let exps = temp_dir("lab-exps2");
    let out = temp_dir("lab-out2");
    std::fs::write(exps.join("tiny.toml"), TINY).unwrap();
    let run = lab(&["nope"], &exps, &out);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("unknown experiment 'nope': expected one of tiny"), "{err}");
    let _ = std::fs::remove_dir_all(&exps);
    let _ = std::fs::remove_dir_all(&out);
}

const TINY_HTTP: &str = r#"
name = "tinyhttp"
summary = "tiny http experiment for the end-to-end test"
reproduces = "nothing (a test)"
kind = "http"
mechanisms = ["epoll", "poll+multi-accept"]
duration = 1
warmup = 0.5
[load]
calls = 2
[grid]
file_size = [92]
idle = [20]
rate = [200]

[[figure]]
id = "rate"
reproduces = "test figure"
title = "reply rate"
x = "idle"
x_label = "idle"
y = "reply_rate_avg"
y_label = "replies/s"
paper_finding = "keeps up"
"#;

#[test]
fn tiny_http_experiment_serves_and_loads_for_real() {
    let exps = temp_dir("lab-exps3");
    let out = temp_dir("lab-out3");
    std::fs::write(exps.join("tinyhttp.toml"), TINY_HTTP).unwrap();
    let run = lab(&["tinyhttp"], &exps, &out);
    assert!(run.status.success(), "lab failed: {}", String::from_utf8_lossy(&run.stderr));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert!(l["error"].is_null(), "{l}");
        let m = &l["metrics"];
        // Two calls per session at 200 sessions/s: replies were really served and counted.
        assert!(m["replies"].as_f64().unwrap() > 0.0, "{l}");
        assert!(
            m["server_cpu_ns"].as_f64().unwrap() > 0.0,
            "the server's CPU comes from schedstat: {l}"
        );
        assert!(
            m["wait_calls"].as_f64().unwrap() > 0.0,
            "dispatch counters come from the stats endpoint: {l}"
        );
        assert_eq!(l["raw"]["tool"], "ioscale load");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 1);
    let _ = std::fs::remove_dir_all(&exps);
    let _ = std::fs::remove_dir_all(&out);
}

/// Each bad experiment file: one sentence naming the file and the key, exit 1, nothing run and
/// the previous results left where they were.
#[test]
fn bad_experiment_files_are_refused_before_anything_runs() {
    let many: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let rates: Vec<String> = (1..=1000).map(|i| i.to_string()).collect();
    let huge: Vec<String> = (0..1_000_000).map(|i| i.to_string()).collect();
    let cases: Vec<(&str, String, String, &str)> = vec![
        (TINY, "duration = 0.02".into(), "duration = -1".into(), "`duration` = -1"),
        (TINY, "duration = 0.02".into(), "duration = 0".into(), "`duration` = 0"),
        (TINY, "duration = 0.02".into(), "duration = nan".into(), "`duration` = nan"),
        (TINY, "rounds = 1".into(), "rounds = 0".into(), "`rounds` = 0"),
        (TINY, "idle = [0, 50]".into(), "idle = [-5]".into(), "`grid.idle[1]` = -5"),
        (TINY, "idle = [0, 50]".into(), "idel = [0, 50]".into(), "unknown key `grid.idel`"),
        (TINY, "summary =".into(), "sumary =".into(), "unknown key `sumary`"),
        (TINY, "title = \"cost\"".into(), "titel = \"cost\"".into(), "`figure[1].titel`"),
        (
            TINY,
            "y = \"ns_per_cycle\"".into(),
            "y = \"ns_per_cycle\"\nwhere = { idel = 0 }".into(),
            "`figure[1].where.idel`",
        ),
        (
            TINY,
            "idle = [0, 50]".into(),
            format!("idle = [{}]", huge.join(",")),
            "more than an experiment file may be",
        ),
        (
            TINY_HTTP,
            "idle = [20]\nrate = [200]".into(),
            format!("idle = [{}]\nrate = [{}]", many.join(","), rates.join(",")),
            "at most 10000 are accepted",
        ),
        (
            TINY_HTTP,
            "calls = 2".into(),
            "cals = 2".into(),
            "unknown key `load.cals` (did you mean `calls`?)",
        ),
    ];
    for (i, (base, from, to, want)) in cases.iter().enumerate() {
        assert!(base.contains(from.as_str()), "case {i}: {from}");
        let name = if *base == TINY { "tiny" } else { "tinyhttp" };
        let exps = temp_dir(&format!("lab-bad-exps-{i}"));
        let out = temp_dir(&format!("lab-bad-out-{i}"));
        let file = exps.join(format!("{name}.toml"));
        std::fs::write(&file, base.replacen(from.as_str(), to, 1)).unwrap();
        std::fs::write(out.join("results.jsonl"), "earlier results\n").unwrap();
        let run = lab(&[name], &exps, &out);
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "case {i} ({to:.60}): {err}");
        assert_eq!(err.trim().lines().count(), 1, "case {i}: one sentence: {err}");
        assert!(err.contains(&file.display().to_string()), "case {i}: names the file: {err}");
        assert!(err.contains(want), "case {i}: wanted {want:?} in: {err}");
        let left: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["results.jsonl"], "case {i}: nothing ran, nothing renamed");
        assert_eq!(
            std::fs::read_to_string(out.join("results.jsonl")).unwrap(),
            "earlier results\n"
        );
        let _ = std::fs::remove_dir_all(&exps);
        let _ = std::fs::remove_dir_all(&out);
    }
}

/// `--resume` after a torn last line (a crash or a full disk mid-write) keeps every record: the
/// torn line is cut with a warning naming the file and line and its point measured again; a
/// line that is not UTF-8 is named by `lab report` and `--resume`, and the rest are read.
#[test]
fn resume_after_a_torn_last_line_keeps_every_record() {
    let exps = temp_dir("lab-torn-exps");
    let out = temp_dir("lab-torn-out");
    std::fs::write(exps.join("tiny.toml"), TINY).unwrap();
    let first = lab(&["tiny"], &exps, &out);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let results = out.join("results.jsonl");
    let keys = |text: &str| -> Vec<String> {
        let mut k: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["key"].as_str().unwrap().to_string())
            .collect();
        k.sort();
        k
    };
    let whole = std::fs::read_to_string(&results).unwrap();
    let all = keys(&whole);
    assert_eq!(all.len(), 6);

    // Tear the last line.
    std::fs::write(&results, &whole[..whole.len() - 25]).unwrap();
    let again = lab(&["tiny", "--resume"], &exps, &out);
    let (stdout, stderr) =
        (String::from_utf8_lossy(&again.stdout), String::from_utf8_lossy(&again.stderr));
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{}: line 6 was cut short", results.display())), "{stderr}");
    assert!(stdout.contains("1 points measured (5 skipped"), "{stdout}");
    let text = std::fs::read_to_string(&results).unwrap();
    assert_eq!(text.lines().count(), 6, "{text}");
    assert_eq!(keys(&text), all, "every record kept, each once");

    // One byte that is not UTF-8 in line 2.
    let mut bytes = text.into_bytes();
    let second = bytes.iter().position(|b| *b == b'\n').unwrap() + 3;
    bytes[second] = 0xff;
    std::fs::write(&results, &bytes).unwrap();
    let report = Command::new(BIN)
        .args(["lab", "report"])
        .arg(&out)
        .arg("--experiments")
        .arg(&exps)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&report.stderr);
    assert!(report.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{}: line 2: byte", results.display())), "{stderr}");
    assert!(stderr.contains("1 unreadable line(s) skipped, 5 record(s) read"), "{stderr}");
    let resumed = lab(&["tiny", "--resume"], &exps, &out);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains("line 2: byte"), "{stderr}");
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("1 points measured (5 skipped"));
    let _ = std::fs::remove_dir_all(&exps);
    let _ = std::fs::remove_dir_all(&out);
}

/// `ioscale overhead` and `ioscale herd` write their progress as plain lines, not terminal
/// escape codes, when stderr is not a terminal.
#[test]
fn overhead_and_herd_write_no_escape_codes_into_files() {
    let overhead = Command::new(BIN)
        .args(["overhead", "--mechanisms", "epoll", "--idle", "0,10", "--rounds", "1"])
        .args(["--round-ms", "5"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&overhead.stderr);
    assert!(overhead.status.success(), "{err}");
    assert!(!err.contains('\x1b'), "{err:?}");
    assert!(err.lines().any(|l| l == "round 1/1: epoll with 10 idle"), "{err}");
    let herd = Command::new(BIN)
        .args(["herd", "--waiters", "2", "--wait-in", "epoll", "--connects", "3"])
        .args(["--warmup", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&herd.stderr);
    assert!(herd.status.success(), "{err}");
    assert!(!err.contains('\x1b') && !String::from_utf8_lossy(&herd.stdout).contains('\x1b'));
    assert!(!err.trim().is_empty(), "herd says what it measures: {err:?}");
}

const TINY_BUDGET: &str = r#"
name = "tinybudget"
summary = "tiny http experiment under a CPU budget for the end-to-end test"
reproduces = "nothing (a test)"
kind = "http"
mechanisms = ["epoll"]
duration = 1
warmup = 0.5
server_cpu = 0.3
[load]
calls = 2
[grid]
file_size = [92]
idle = [20]
rate = [200]
"#;

/// A tiny experiment under a 30% CPU budget: the server really runs in its cgroup, every point
/// says so, its CPU is stated as a share of the budget, and its counters cover the measured
/// window only (snapshots at the window's edges). Skipped, with the reason, where this machine
/// cannot make a cgroup with a CPU limit (not root, or no cpu controller).
#[test]
fn tiny_http_experiment_under_a_cpu_budget() {
    if let Err(e) = ioscale_lab::budget::Budget::create(0.3) {
        eprintln!("skipped: no CPU budget can be made here: {}", e.0);
        return;
    }
    let exps = temp_dir("lab-exps-budget");
    let out = temp_dir("lab-out-budget");
    std::fs::write(exps.join("tinybudget.toml"), TINY_BUDGET).unwrap();
    let run = lab(&["tinybudget"], &exps, &out);
    assert!(run.status.success(), "lab failed: {}", String::from_utf8_lossy(&run.stderr));
    let text = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert!(l["error"].is_null(), "{l}");
    let m = &l["metrics"];
    assert_eq!(m["server_budget"].as_f64(), Some(0.3), "{l}");
    assert!(l["params"]["server_cpu"].as_str().unwrap().contains("0.3 of a core"), "{l}");
    let pct = m["cpu_budget_pct"].as_f64().unwrap();
    let util = m["cpu_util"].as_f64().unwrap();
    assert!((pct - util / 0.3).abs() < 1e-6 * pct.max(1.0), "{l}");
    assert_eq!(l["params"]["counters"], "window", "counters from the window's snapshots: {l}");
    assert!(m["wait_calls"].as_f64().unwrap() > 0.0, "{l}");
    let _ = std::fs::remove_dir_all(&exps);
    let _ = std::fs::remove_dir_all(&out);
}
