//! `ioscale load` end to end, beyond `tests/load.rs` (which holds the rate, inactive, idle and
//! nginx tests): every mode's `--json` record validates against the documented schema
//! (`docs/load-json.schema.json`), merged records too; a merge adds every counter and its
//! histograms equal the sum of the parts'; bad URLs and dead targets get one clear sentence and
//! their exit codes. The server is `ioscale serve` on a free loopback port, ended by PID.

mod util;

use serde_json::Value;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use util::{docroot, free_port, load, serve};

/// One load run at a time (runs hold sockets and want the machine's attention).
static SERIAL: Mutex<()> = Mutex::new(());

fn schema() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/load-json.schema.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// Validates `v` against the subset of JSON Schema the documented schema uses: `type`, `required`,
/// `properties`, `items`, `enum`, `const`, `minimum`, `minItems` and local `$ref`s
/// (`#/$defs/NAME`). Returns every violation, each with its JSON path.
fn validate(root: &Value, s: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/$defs/").unwrap_or_else(|| panic!("unsupported $ref {r}"));
        let target = &root["$defs"][name];
        assert!(target.is_object(), "the schema has no $defs/{name}");
        return validate(root, target, v, path, errs);
    }
    if let Some(t) = s.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "number" => v.is_number(),
            "integer" => v.is_u64() || v.is_i64(),
            "null" => v.is_null(),
            other => panic!("unsupported type {other}"),
        };
        if !ok {
            errs.push(format!("{path}: expected {t}, found {v}"));
            return;
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            errs.push(format!("{path}: expected {c}, found {v}"));
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            errs.push(format!("{path}: {v} is not one of {e:?}"));
        }
    }
    if let (Some(min), Some(x)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if x < min {
            errs.push(format!("{path}: {x} < minimum {min}"));
        }
    }
    if let Some(req) = s.get("required").and_then(Value::as_array) {
        for k in req {
            let k = k.as_str().unwrap();
            if v.get(k).is_none() {
                errs.push(format!("{path}: missing required {k}"));
            }
        }
    }
    if let (Some(props), Some(obj)) =
        (s.get("properties").and_then(Value::as_object), v.as_object())
    {
        for (k, sub) in props {
            if let Some(x) = obj.get(k) {
                validate(root, sub, x, &format!("{path}.{k}"), errs);
            }
        }
    }
    if let Some(arr) = v.as_array() {
        if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
            if (arr.len() as u64) < min {
                errs.push(format!("{path}: fewer than {min} items"));
            }
        }
        if let Some(items) = s.get("items") {
            for (i, x) in arr.iter().enumerate() {
                validate(root, items, x, &format!("{path}[{i}]"), errs);
            }
        }
    }
}

fn assert_valid(record: &Value, what: &str) {
    let s = schema();
    let mut errs = Vec::new();
    validate(&s, &s, record, "$", &mut errs);
    assert!(
        errs.is_empty(),
        "{what}: the record does not match docs/load-json.schema.json:\n{}",
        errs.join("\n")
    );
}

#[test]
fn the_validator_rejects_what_the_schema_forbids() {
    // The validator must not pass everything: a record missing a field, with a wrong type or an
    // unknown enum value is refused.
    let s = schema();
    let bad = serde_json::json!({"tool": "ioscale load", "valid": "yes", "arrival": "burst", "targets": []});
    let mut errs = Vec::new();
    validate(&s, &s, &bad, "$", &mut errs);
    for needle in [
        "missing required active",
        "$.valid: expected boolean",
        "$.arrival",
        "$.targets: fewer than 1",
    ] {
        assert!(errs.iter().any(|e| e.contains(needle)), "no error about {needle}: {errs:?}");
    }
}

#[test]
fn every_mode_writes_a_record_that_matches_the_schema() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = docroot("schema");
    let (_s, port) = serve(&root, &[]);
    let a = format!("http://127.0.0.1:{port}/one.txt");
    let b = format!("http://127.0.0.1:{port}/big.html@3");
    let runs: [&[&str]; 4] = [
        &[
            "--rate",
            "100",
            "--calls",
            "2",
            "--arrival",
            "poisson",
            "--idle",
            "5",
            "--idle-period",
            "200ms",
            "--inactive",
            "5",
            "--duration",
            "1s",
        ],
        &["--request-rate", "200", "--connections", "4", "--duration", "1s"],
        &["--peak", "--connections", "4", "--duration", "1s"],
        &["--idle", "3", "--idle-period", "300ms", "--duration", "1s"],
    ];
    for args in runs {
        let mut all = vec![a.as_str(), b.as_str(), "--json"];
        all.extend_from_slice(args);
        let (code, r, err) = load(&all);
        assert!(code == Some(0) || code == Some(3), "{args:?}: exit {code:?}: {err}");
        assert_valid(&r, &format!("{args:?}"));
        let replies =
            r["active"]["replies"].as_u64().unwrap() + r["idle"]["replies"].as_u64().unwrap();
        assert!(replies > 0, "{args:?}: no replies at all: {r}");
        assert_eq!(r["targets"][1]["weight"], 3, "{args:?}");
        // The encoded histograms decode and hold as many values as the percentiles say.
        for pop in ["active", "idle", "inactive"] {
            let h =
                ioscale_load::stats::decode(r[pop]["histograms"]["latency_us"].as_str().unwrap())
                    .unwrap();
            assert_eq!(h.len(), r[pop]["latency_ms"]["count"].as_u64().unwrap(), "{args:?} {pop}");
        }
    }
}

#[test]
fn merged_records_add_every_counter_and_their_histograms() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = docroot("merge");
    let (_s, port) = serve(&root, &[]);
    let url = format!("http://127.0.0.1:{port}/big.html");
    let run = |rate: &str| {
        let (code, r, err) = load(&[
            &url,
            "--rate",
            rate,
            "--idle",
            "4",
            "--idle-period",
            "250ms",
            "--duration",
            "1s",
            "--json",
        ]);
        assert!(code == Some(0) || code == Some(3), "{err}");
        r
    };
    let (a, b) = (run("150"), run("80"));
    let m = ioscale_load::stats::merge(&[a.clone(), b.clone()]).unwrap();
    assert_valid(&m, "merged record");
    let u = |r: &Value, pop: &str, k: &str| r[pop][k].as_u64().unwrap();
    for pop in ["active", "idle", "inactive"] {
        for k in util::POPULATION_COUNTS {
            assert_eq!(u(&m, pop, k), u(&a, pop, k) + u(&b, pop, k), "{pop}.{k}");
        }
        for k in ["1xx", "2xx", "3xx", "4xx", "5xx", "other"] {
            assert_eq!(
                m[pop]["status"][k].as_u64(),
                Some(a[pop]["status"][k].as_u64().unwrap() + b[pop]["status"][k].as_u64().unwrap()),
                "{pop}.status.{k}"
            );
        }
        assert_eq!(
            m[pop]["errors"]["total"].as_u64(),
            Some(
                a[pop]["errors"]["total"].as_u64().unwrap()
                    + b[pop]["errors"]["total"].as_u64().unwrap()
            )
        );
        for k in ["latency_us", "latency_actual_us", "connect_us"] {
            let h = |r: &Value| {
                ioscale_load::stats::decode(r[pop]["histograms"][k].as_str().unwrap()).unwrap()
            };
            let mut sum = h(&a);
            sum.add(h(&b)).unwrap();
            assert_eq!(h(&m), sum, "{pop}.{k}: the merged histogram is the sum of both runs'");
            assert_eq!(
                m[pop][k.replace("_us", "_ms")]["count"].as_u64().unwrap_or(0),
                sum.len(),
                "{pop}.{k}: percentiles recomputed"
            );
        }
    }
    assert!(u(&m, "active", "replies") > 0 && u(&m, "idle", "replies") > 0, "{m}");
    assert_eq!(m["merged_from"], 2);
    let rate = |r: &Value| r["self_check"]["target_rate"].as_f64().unwrap();
    assert_eq!(rate(&m), rate(&a) + rate(&b));
    assert_eq!(m["valid"], a["valid"].as_bool().unwrap() && b["valid"].as_bool().unwrap());
}

#[test]
fn a_bad_url_is_refused_with_exit_2_and_one_sentence_naming_it() {
    for url in ["ftp://127.0.0.1:80/", "http://", "127.0.0.1:80/x", "http://127.0.0.1:99999/"] {
        let (code, _, err) = load(&[url, "--rate", "10", "--duration", "1s"]);
        assert_eq!(code, Some(2), "{url}: {err}");
        assert!(err.contains(url), "the error names {url}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn nothing_listening_gives_exit_1_and_cannot_connect() {
    // A port that was free a moment ago: bind, read the port, close.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let t = Instant::now();
    let (code, r, err) = load(&[&url, "--rate", "10", "--duration", "2s", "--json"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot connect") && err.contains(&url), "{err}");
    assert!(r.is_null(), "no record for a run that could not be made");
    assert!(t.elapsed() < Duration::from_secs(10), "gave up promptly, not after retrying for long");
}
