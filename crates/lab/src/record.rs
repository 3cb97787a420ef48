//! One measured point as one JSON line of `results.jsonl`, and the machine facts it carries.

use crate::spec::{Value, Which};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::path::Path;

/// The machine a point was measured on.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    /// `uname -sr`.
    pub kernel: String,
    /// CPU model name from /proc/cpuinfo.
    pub cpu: String,
    /// Online CPUs.
    pub cores: usize,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The soft open-file limit.
    pub nofile: u64,
    /// The host name.
    pub host: String,
}

impl Machine {
    /// Reads this machine's facts.
    pub fn detect() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let kernel = format!(
            "{} {}",
            read("/proc/sys/kernel/ostype").trim(),
            read("/proc/sys/kernel/osrelease").trim()
        );
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let memory_mib = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<u64>().ok())
            .map_or(0, |k| k / 1024);
        let nofile = crate::sys::nofile_soft();
        let host = read("/proc/sys/kernel/hostname").trim().to_string();
        Machine { kernel, cpu, cores, memory_mib, nofile, host }
    }
}

/// One point's result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// The experiment's name.
    pub experiment: String,
    /// quick or full.
    pub variant: Which,
    /// The resume key.
    pub key: String,
    /// The mechanism (or wait mode, or a peer such as "nginx").
    pub mechanism: String,
    /// The point's parameters (and derived ones such as the absolute rate).
    pub params: BTreeMap<String, Value>,
    /// Named numbers measured at the point.
    pub metrics: BTreeMap<String, f64>,
    /// Named lists (e.g. mode-switch times).
    #[serde(default)]
    pub lists: BTreeMap<String, Vec<f64>>,
    /// False when the generator (or the runner) says the point cannot be trusted.
    pub valid: bool,
    /// Why the point is invalid.
    pub invalid_reason: Option<String>,
    /// Why the point could not be measured at all.
    pub error: Option<String>,
    /// Seconds since the Unix epoch when it finished.
    pub unix_time: u64,
    /// The machine.
    pub machine: Machine,
    /// The generator's or tool's whole record, for anyone who wants more than the metrics.
    #[serde(default)]
    pub raw: serde_json::Value,
}

impl Record {
    /// A metric, if present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied().filter(|v| v.is_finite())
    }

    /// A parameter or, failing that, a metric, as a number.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.params.get(name).and_then(Value::as_f64).or_else(|| self.metric(name))
    }

    /// Whether it can be plotted as the server's figure.
    pub fn usable(&self) -> bool {
        self.valid && self.error.is_none()
    }
}

/// Appends one record as a JSON line and flushes it, so an interrupted run keeps every point.
pub fn append(path: &Path, rec: &Record) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let line = serde_json::to_string(rec).map_err(io::Error::other)?;
    writeln!(f, "{line}")?;
    f.sync_data()
}

/// Reads every record of a results file; a damaged line (an interrupted write) is skipped and
/// counted.
pub fn read_all(path: &Path) -> io::Result<(Vec<Record>, usize)> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut bad = 0;
    for line in io::BufReader::new(f).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(&line) {
            Ok(r) => out.push(r),
            Err(_) => bad += 1,
        }
    }
    Ok((out, bad))
}
