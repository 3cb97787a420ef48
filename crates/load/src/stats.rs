//! Measurements: HdrHistograms per population, the per-second reply series, errors by kind, and
//! the JSON record (histograms in the standard V2-deflate encoding, base64, so any HdrHistogram
//! library can decode them and runs can be merged losslessly).

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// Kinds of error, each counted apart.
pub const ERROR_KINDS: [&str; 10] = [
    "connect_timeout",
    "response_timeout",
    "refused",
    "reset",
    "fd_unavailable",
    "addr_unavailable",
    "bad_response",
    "closed_early",
    "other",
    "tls",
];

/// Index of an error kind in [`ERROR_KINDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ErrorKind {
    ConnectTimeout = 0,
    ResponseTimeout,
    Refused,
    Reset,
    FdUnavailable,
    AddrUnavailable,
    BadResponse,
    ClosedEarly,
    Other,
    /// A TLS handshake or record failed (certificate, protocol, alert).
    Tls,
}

impl ErrorKind {
    /// Classifies an I/O error from connect, read or write.
    pub fn of(e: &std::io::Error) -> ErrorKind {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => ErrorKind::Refused,
            Some(libc::ECONNRESET) | Some(libc::EPIPE) | Some(libc::ECONNABORTED) => {
                ErrorKind::Reset
            }
            Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) => {
                ErrorKind::FdUnavailable
            }
            Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => ErrorKind::AddrUnavailable,
            Some(libc::ETIMEDOUT) => ErrorKind::ConnectTimeout,
            None if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => ErrorKind::Tls,
            _ => ErrorKind::Other,
        }
    }
}

/// An empty histogram of the range every figure uses: 1 µs .. 1 hour, 3 significant digits.
pub fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// One population's statistics.
#[derive(Debug, Clone)]
pub struct PopStats {
    /// Response time from the intended send time (µs): coordinated omission corrected.
    pub latency: Histogram<u64>,
    /// Response time from the actual send time (µs).
    pub latency_actual: Histogram<u64>,
    /// Connect time (µs).
    pub connect: Histogram<u64>,
    /// TLS handshake time (µs), from the TCP connection up to the handshake's end.
    pub handshake: Histogram<u64>,
    /// TLS handshakes completed, and how many of them resumed a session.
    pub tls_handshakes: u64,
    /// TLS handshakes that resumed a stored session.
    pub tls_resumed: u64,
    /// Replies received in each second of the measured window (whenever their requests were
    /// sent: the server's reply rate in that second, httperf's sample).
    pub per_second: Vec<u64>,
    /// Errors that happened in each second of the measured window.
    pub errors_per_second: Vec<u64>,
    /// Sessions (or held connections) started.
    pub sessions: u64,
    /// Sessions that ended with every call answered.
    pub sessions_ok: u64,
    /// Requests sent.
    pub requests: u64,
    /// Responses received.
    pub replies: u64,
    /// Response bytes received.
    pub bytes: u64,
    /// Responses by status class (1xx..5xx; index 0 = other).
    pub status: [u64; 6],
    /// Responses by status code (index: the code; grown on demand, at most 1,000 long).
    pub codes: Vec<u64>,
    /// Responses whose status `--expect` did not ask for.
    pub unexpected: u64,
    /// Replies received in each second of the window, by status class (as [`Self::status`]).
    pub status_per_second: [Vec<u64>; 6],
    /// Replies received in each second of the window with a status `--expect` did not ask for.
    pub unexpected_per_second: Vec<u64>,
    /// Errors by [`ERROR_KINDS`].
    pub errors: [u64; ERROR_KINDS.len()],
    /// Connections asked for.
    pub asked: u64,
    /// Connections established.
    pub established: u64,
    /// Reconnections after the server closed a held connection.
    pub reconnects: u64,
}

impl Default for PopStats {
    fn default() -> Self {
        PopStats {
            latency: hist(),
            latency_actual: hist(),
            connect: hist(),
            handshake: hist(),
            tls_handshakes: 0,
            tls_resumed: 0,
            per_second: Vec::new(),
            errors_per_second: Vec::new(),
            sessions: 0,
            sessions_ok: 0,
            requests: 0,
            replies: 0,
            bytes: 0,
            status: [0; 6],
            codes: Vec::new(),
            unexpected: 0,
            status_per_second: Default::default(),
            unexpected_per_second: Vec::new(),
            errors: [0; ERROR_KINDS.len()],
            asked: 0,
            established: 0,
            reconnects: 0,
        }
    }
}

/// Records a value in µs, clamped into the histogram's range.
pub fn record_us(h: &mut Histogram<u64>, us: u64) {
    let _ = h.record(us.clamp(1, h.high()));
}

impl PopStats {
    /// Counts one reply to a request of the window; `expected`: its status is one `--expect`
    /// asked for.
    pub fn reply(&mut self, status: u16, expected: bool) {
        self.replies += 1;
        self.status[class(status)] += 1;
        add_at(&mut self.codes, usize::from(status).min(crate::expect::CODES - 1), 1);
        self.unexpected += u64::from(!expected);
    }

    /// Counts a reply received `second` seconds into the window in the per-second series.
    pub fn reply_at(&mut self, second: usize, status: u16, expected: bool) {
        add_at(&mut self.per_second, second, 1);
        add_at(&mut self.status_per_second[class(status)], second, 1);
        if !expected {
            add_at(&mut self.unexpected_per_second, second, 1);
        }
    }

    /// Counts `n` errors that happened `second` seconds into the window.
    pub fn error_at(&mut self, second: usize, n: u64) {
        add_at(&mut self.errors_per_second, second, n);
    }

    /// Counts an error.
    pub fn error(&mut self, k: ErrorKind) {
        self.errors[k as usize] += 1;
    }

    /// Total errors.
    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Adds `o` into `self`: every counter, the per-second series element-wise, and the
    /// histograms losslessly (the sum is the histogram of both sets of values).
    pub fn add(&mut self, o: &PopStats) {
        for (dst, src) in [
            (&mut self.latency, &o.latency),
            (&mut self.latency_actual, &o.latency_actual),
            (&mut self.connect, &o.connect),
            (&mut self.handshake, &o.handshake),
        ] {
            // Same bounds on both sides: adding cannot fail.
            let _ = dst.add(src);
        }
        self.tls_handshakes += o.tls_handshakes;
        self.tls_resumed += o.tls_resumed;
        for (i, v) in o.per_second.iter().enumerate() {
            add_at(&mut self.per_second, i, *v);
        }
        for (i, v) in o.errors_per_second.iter().enumerate() {
            add_at(&mut self.errors_per_second, i, *v);
        }
        self.sessions += o.sessions;
        self.sessions_ok += o.sessions_ok;
        self.requests += o.requests;
        self.replies += o.replies;
        self.bytes += o.bytes;
        for (a, b) in self.status.iter_mut().zip(o.status) {
            *a += b;
        }
        for (i, v) in o.codes.iter().enumerate() {
            add_at(&mut self.codes, i, *v);
        }
        self.unexpected += o.unexpected;
        for (dst, src) in self.status_per_second.iter_mut().zip(&o.status_per_second) {
            for (i, v) in src.iter().enumerate() {
                add_at(dst, i, *v);
            }
        }
        for (i, v) in o.unexpected_per_second.iter().enumerate() {
            add_at(&mut self.unexpected_per_second, i, *v);
        }
        for (a, b) in self.errors.iter_mut().zip(o.errors) {
            *a += b;
        }
        self.asked += o.asked;
        self.established += o.established;
        self.reconnects += o.reconnects;
    }
}

/// The index of a status's class in [`PopStats::status`]: 1..=5, or 0 for any other.
pub fn class(status: u16) -> usize {
    let c = usize::from(status / 100);
    if (1..=5).contains(&c) {
        c
    } else {
        0
    }
}

/// The names of the classes, by [`class`] index.
pub const CLASSES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// The codes seen and how many replies had each, e.g. `{"200": 10, "404": 2}`.
pub fn codes_json(codes: &[u64]) -> Value {
    let mut m = Map::new();
    for (c, n) in codes.iter().enumerate().filter(|(_, n)| **n > 0) {
        m.insert(c.to_string(), (*n).into());
    }
    Value::Object(m)
}

fn add_at(series: &mut Vec<u64>, i: usize, n: u64) {
    if series.len() <= i {
        series.resize(i + 1, 0);
    }
    series[i] += n;
}

/// Mean, min, max and standard deviation of per-second samples (httperf's reply-rate figures),
/// and how many seconds had no reply at all (a server that starved every connection then:
/// Provos & Lever's minimum reply rate of zero).
pub fn rate_stats(samples: &[u64]) -> Value {
    if samples.is_empty() {
        return json!({"avg": 0.0, "min": 0.0, "max": 0.0, "stddev": 0.0, "samples": 0, "zero_seconds": 0});
    }
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<u64>() as f64 / n;
    let var = samples.iter().map(|&s| (s as f64 - mean).powi(2)).sum::<f64>() / n;
    json!({
        "avg": mean,
        "min": *samples.iter().min().unwrap_or(&0) as f64,
        "max": *samples.iter().max().unwrap_or(&0) as f64,
        "stddev": var.sqrt(),
        "samples": samples.len(),
        "zero_seconds": samples.iter().filter(|&&s| s == 0).count(),
    })
}

/// The per-second samples of the *whole* seconds of a window of `window_s` seconds: a partial
/// last second would understate the rate, and a second with no reply is a real 0 (a starved
/// server), so missing seconds count as 0.
pub fn full_seconds(per_second: &[u64], window_s: f64) -> Vec<u64> {
    let full = window_s.floor() as usize;
    if full == 0 {
        return per_second.to_vec();
    }
    (0..full).map(|i| per_second.get(i).copied().unwrap_or(0)).collect()
}

/// Percentiles of a µs histogram, in milliseconds.
pub fn percentiles_ms(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    let ms = |v: u64| v as f64 / 1000.0;
    json!({
        "count": h.len(),
        "mean": h.mean() / 1000.0,
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
        "min": ms(h.min()),
    })
}

/// Encodes a histogram in the standard V2 + DEFLATE format, base64.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    let _ = V2DeflateSerializer::new().serialize(h, &mut buf);
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Decodes [`encode`]'s output (or any V2 / V2-deflate histogram, base64).
pub fn decode(s: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("bad base64: {e}"))?;
    Deserializer::new().deserialize(&mut &bytes[..]).map_err(|e| format!("bad histogram: {e:?}"))
}

/// The JSON of one population.
pub fn population_json(p: &PopStats, window_s: f64) -> Value {
    let mut errors = Map::new();
    for (k, v) in ERROR_KINDS.iter().zip(p.errors) {
        errors.insert((*k).into(), v.into());
    }
    errors.insert("total".into(), p.error_total().into());
    // httperf's error figure: errors as a share of what was tried (connections for sessions of
    // one connection each, requests for the persistent-connection modes).
    let tried = p.asked.max(p.requests);
    let error_percent =
        if tried > 0 { (100.0 * p.error_total() as f64 / tried as f64).min(100.0) } else { 0.0 };
    json!({
        "sessions": p.sessions,
        "sessions_ok": p.sessions_ok,
        "requests": p.requests,
        "replies": p.replies,
        "bytes": p.bytes,
        "connections_asked": p.asked,
        "connections_established": p.established,
        "reconnects": p.reconnects,
        "status": {"1xx": p.status[1], "2xx": p.status[2], "3xx": p.status[3], "4xx": p.status[4], "5xx": p.status[5], "other": p.status[0]},
        "status_codes": codes_json(&p.codes),
        "unexpected": p.unexpected,
        "status_per_second": status_series(p, window_s),
        "unexpected_per_second": full_seconds(&p.unexpected_per_second, window_s),
        "errors": errors,
        "error_percent": error_percent,
        "errors_per_second": full_seconds(&p.errors_per_second, window_s),
        "reply_rate": rate_stats(&full_seconds(&p.per_second, window_s)),
        "replies_per_s": if window_s > 0.0 { p.replies as f64 / window_s } else { 0.0 },
        "latency_ms": percentiles_ms(&p.latency),
        "latency_actual_ms": percentiles_ms(&p.latency_actual),
        "connect_ms": percentiles_ms(&p.connect),
        "tls": {"handshakes": p.tls_handshakes, "resumed": p.tls_resumed, "handshake_ms": percentiles_ms(&p.handshake)},
        "per_second": p.per_second,
        "histograms": {
            "latency_us": encode(&p.latency),
            "latency_actual_us": encode(&p.latency_actual),
            "connect_us": encode(&p.connect),
            "handshake_us": encode(&p.handshake),
        },
    })
}

/// The per-second reply series of each status class that had a reply in the window.
fn status_series(p: &PopStats, window_s: f64) -> Value {
    let mut m = Map::new();
    for (i, name) in CLASSES.iter().enumerate() {
        if p.status_per_second[i].iter().any(|&n| n > 0) {
            m.insert((*name).into(), json!(full_seconds(&p.status_per_second[i], window_s)));
        }
    }
    Value::Object(m)
}

/// The record's `status_check`: whether every reply (active and idle populations) had a status
/// `--expect` asked for, how many did not, and which codes they had.
pub fn status_check(active: &Value, idle: &Value, expect: &crate::expect::Expect) -> Value {
    let mut codes = std::collections::BTreeMap::<u16, u64>::new();
    for p in [active, idle] {
        for (code, n) in p["status_codes"].as_object().into_iter().flatten() {
            if let Ok(c) = code.parse::<u16>() {
                *codes.entry(c).or_default() += n.as_u64().unwrap_or(0);
            }
        }
    }
    let unexpected_codes: Map<String, Value> = codes
        .iter()
        .filter(|(c, _)| !expect.ok(**c))
        .map(|(c, n)| (c.to_string(), (*n).into()))
        .collect();
    let count = |k: &str| active[k].as_u64().unwrap_or(0) + idle[k].as_u64().unwrap_or(0);
    let unexpected = count("unexpected");
    json!({
        "expect": expect.text(),
        "as_expected": unexpected == 0,
        "replies": count("replies"),
        "unexpected": unexpected,
        "unexpected_codes": unexpected_codes,
    })
}

/// The sentence saying a run's replies were not what `--expect` asked for; None when they were.
pub fn status_reason(check: &Value) -> Option<String> {
    if check["as_expected"].as_bool() != Some(false) {
        return None;
    }
    let codes: Vec<String> = check["unexpected_codes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(c, n)| format!("{c}: {n}"))
        .collect();
    Some(format!(
        "{} of {} replies had a status --expect {} did not ask for ({})",
        check["unexpected"],
        check["replies"],
        check["expect"].as_str().unwrap_or(""),
        codes.join(", ")
    ))
}

/// Whether the server kept up with the active load, from the figures alone: errors (httperf's
/// share of connections or requests), seconds with no reply at all (Provos & Lever's starved
/// connections), and, for an open loop, the reply rate against the `offered` one (replies per
/// second the plan asked for; 0 for a closed loop). A server that did not keep up is a result,
/// not a fault of the run: the run stays VALID when the generator kept its own schedule.
pub fn server_verdict(active: &Value, offered: f64) -> Value {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let mut reasons: Vec<String> = Vec::new();
    let pct = f(&active["error_percent"]);
    if pct >= 1.0 {
        reasons.push(format!("{pct:.1}% of the active load failed"));
    }
    let rate = &active["reply_rate"];
    let zero = rate["zero_seconds"].as_u64().unwrap_or(0);
    if zero > 0 {
        reasons.push(format!("no reply at all in {zero} of {} seconds", rate["samples"]));
    }
    let avg = f(&rate["avg"]);
    if offered > 0.0 && rate["samples"].as_u64().unwrap_or(0) > 0 && avg < 0.95 * offered {
        reasons.push(format!("replied {avg:.0}/s of the {offered:.0}/s offered"));
    }
    json!({"kept_up": reasons.is_empty(), "reasons": reasons})
}

/// Merges several records of the same plan (e.g. the segments of a multi-host run, or repeated
/// runs) into one: counters add, histograms are decoded, added and re-encoded, percentiles are
/// recomputed from the merged histograms, per-second series add element-wise, and the merged
/// record is valid only if every part is.
pub fn merge(records: &[Value]) -> Result<Value, String> {
    let first = records.first().ok_or("nothing to merge")?;
    let mut out = first.clone();
    for pop in ["active", "idle", "inactive"] {
        let parts: Vec<&Value> = records.iter().filter_map(|r| r.get(pop)).collect();
        if parts.is_empty() {
            continue;
        }
        let mut merged = PopStats::default();
        let window = first["window_s"].as_f64().unwrap_or(0.0);
        for p in &parts {
            let h = &p["histograms"];
            for (dst, key) in [
                (&mut merged.latency, "latency_us"),
                (&mut merged.latency_actual, "latency_actual_us"),
                (&mut merged.connect, "connect_us"),
            ] {
                let part = decode(h[key].as_str().ok_or(format!("{pop}: no {key} histogram"))?)?;
                dst.add(&part).map_err(|e| format!("{pop}: cannot add histograms: {e:?}"))?;
            }
            // Absent from records written before TLS targets existed.
            if let Some(s) = h["handshake_us"].as_str() {
                let part = decode(s)?;
                merged
                    .handshake
                    .add(&part)
                    .map_err(|e| format!("{pop}: cannot add histograms: {e:?}"))?;
            }
            merged.tls_handshakes += p["tls"]["handshakes"].as_u64().unwrap_or(0);
            merged.tls_resumed += p["tls"]["resumed"].as_u64().unwrap_or(0);
            let u = |k: &str| p[k].as_u64().unwrap_or(0);
            merged.sessions += u("sessions");
            merged.sessions_ok += u("sessions_ok");
            merged.requests += u("requests");
            merged.replies += u("replies");
            merged.bytes += u("bytes");
            merged.asked += u("connections_asked");
            merged.established += u("connections_established");
            merged.reconnects += u("reconnects");
            for (i, k) in CLASSES.iter().enumerate() {
                merged.status[i] += p["status"][k].as_u64().unwrap_or(0);
                if let Some(series) = p["status_per_second"][k].as_array() {
                    for (s, v) in series.iter().enumerate() {
                        add_at(&mut merged.status_per_second[i], s, v.as_u64().unwrap_or(0));
                    }
                }
            }
            for (code, n) in p["status_codes"].as_object().into_iter().flatten() {
                if let Ok(c) = code.parse::<usize>() {
                    add_at(
                        &mut merged.codes,
                        c.min(crate::expect::CODES - 1),
                        n.as_u64().unwrap_or(0),
                    );
                }
            }
            merged.unexpected += u("unexpected");
            for (i, k) in ERROR_KINDS.iter().enumerate() {
                merged.errors[i] += p["errors"][k].as_u64().unwrap_or(0);
            }
            for (dst, key) in [
                (&mut merged.per_second, "per_second"),
                (&mut merged.errors_per_second, "errors_per_second"),
                (&mut merged.unexpected_per_second, "unexpected_per_second"),
            ] {
                if let Some(series) = p[key].as_array() {
                    for (i, v) in series.iter().enumerate() {
                        add_at(dst, i, v.as_u64().unwrap_or(0));
                    }
                }
            }
        }
        out[pop] = population_json(&merged, window);
    }
    let invalid: Vec<String> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r["valid"].as_bool() != Some(true))
        .map(|(i, r)| format!("part {i}: {}", r["invalid_reasons"]))
        .collect();
    out["valid"] = Value::Bool(invalid.is_empty());
    out["invalid_reasons"] = json!(invalid);
    out["reply_rate"] = out["active"]["reply_rate"].clone();
    out["merged_from"] = json!(records.len());
    if let Some(text) = first["status_check"]["expect"].as_str() {
        let expect = crate::expect::parse(text).map_err(|e| e.0)?;
        out["status_check"] = status_check(&out["active"], &out["idle"], &expect);
    }
    let sum = |k: &str| records.iter().filter_map(|r| r["self_check"][k].as_f64()).sum::<f64>();
    out["self_check"]["target_rate"] = json!(sum("target_rate"));
    out["self_check"]["achieved_rate"] = json!(sum("achieved_rate"));
    out["target_rate"] = out["self_check"]["target_rate"].clone();
    let calls = first["mode"]["calls"].as_f64().unwrap_or(1.0);
    out["server"] = server_verdict(&out["active"], sum("target_rate") * calls);
    out["achieved_rate"] = out["self_check"]["achieved_rate"].clone();
    // The generators' own figures: schedule lag merged losslessly when every part has it, CPU
    // summed (and the busiest generator's utilisation, the one the 95% check is about).
    let lags: Vec<&str> = records
        .iter()
        .filter_map(|r| r["self_check"]["schedule_lag_us_histogram"].as_str())
        .collect();
    if lags.len() == records.len() {
        let mut lag = hist();
        for l in lags {
            lag.add(decode(l)?).map_err(|e| format!("cannot add lag histograms: {e:?}"))?;
        }
        out["self_check"]["schedule_lag_ms"] = percentiles_ms(&lag);
        out["self_check"]["schedule_lag_us_histogram"] = json!(encode(&lag));
    }
    if records.iter().all(|r| r["self_check"]["cpu_s"].is_number()) {
        let cpu = sum("cpu_s");
        let util = records
            .iter()
            .filter_map(|r| r["self_check"]["cpu_util"].as_f64())
            .fold(0.0f64, f64::max);
        let replies = ["active", "idle"]
            .iter()
            .map(|p| out[*p]["replies"].as_u64().unwrap_or(0))
            .sum::<u64>();
        out["self_check"]["cpu_s"] = json!(cpu);
        out["self_check"]["cpu_util"] = json!(util);
        out["generator_cpu_util"] = json!(util);
        out["self_check"]["cpu_us_per_reply"] =
            json!(if replies > 0 { cpu * 1e6 / replies as f64 } else { 0.0 });
        let count =
            |k: &str| records.iter().filter_map(|r| r["self_check"][k].as_u64()).sum::<u64>();
        out["self_check"]["connections_asked"] = json!(count("connections_asked"));
        out["self_check"]["connections_established"] = json!(count("connections_established"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_merge_equals_one_histogram_over_both() {
        let (mut a, mut b, mut both) = (hist(), hist(), hist());
        for i in 0..5000u64 {
            let v = 1 + (i * 7919) % 200_000;
            if i % 3 == 0 {
                record_us(&mut a, v)
            } else {
                record_us(&mut b, v)
            }
            record_us(&mut both, v);
        }
        assert_eq!(decode(&encode(&a)).unwrap(), a);
        let pa = PopStats { latency: a, replies: 1, per_second: vec![1, 2], ..Default::default() };
        let pb = PopStats { latency: b, replies: 2, per_second: vec![3], ..Default::default() };
        let rec = |p: &PopStats| json!({"window_s": 2.0, "valid": true, "active": population_json(p, 2.0), "self_check": {"target_rate": 10.0, "achieved_rate": 9.0}});
        let m = merge(&[rec(&pa), rec(&pb)]).unwrap();
        let merged = decode(m["active"]["histograms"]["latency_us"].as_str().unwrap()).unwrap();
        assert_eq!(merged, both);
        assert_eq!(m["active"]["replies"], 3);
        assert_eq!(m["active"]["per_second"], json!([4, 2]));
        assert_eq!(m["target_rate"], 20.0);
        assert_eq!(m["valid"], true);
    }

    #[test]
    fn reply_rate_figures() {
        let v = rate_stats(&[10, 20, 30]);
        assert_eq!(v["avg"], 20.0);
        assert_eq!(v["min"], 10.0);
        assert_eq!(v["max"], 30.0);
        assert!((v["stddev"].as_f64().unwrap() - 8.1649).abs() < 1e-3);
    }
}
