//! One measured point as one JSON line of `results.jsonl`, and the machine facts it carries.
//!
//! Records are durable: each is written whole and synced before the next point starts, a torn
//! last line (a crash, a full disk) is cut before anything is appended, and a reader names the
//! file and line of anything it cannot read and reads the rest.

use crate::spec::{Value, Which};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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
        let nofile = ioscale_sys::limits::nofile().map_or(0, |(soft, _)| soft);
        let host = read("/proc/sys/kernel/hostname").trim().to_string();
        Machine { kernel, cpu, cores, memory_mib, nofile, host }
    }
}

/// The word parameters that say how a point was run rather than where it sits in its grid
/// (the server's budget and why, how capacity was found, scheduling, the counters' span).
pub const CONDITIONS: [&str; 5] =
    ["server_cpu", "budget_why", "capacity_method", "scheduling", "counters"];

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

/// The results file of a run, open for appending: each record is written whole, as one
/// `write` of its complete line, and made durable (`fdatasync`) before the next point starts.
pub struct Appender {
    file: std::fs::File,
    path: PathBuf,
}

impl Appender {
    /// Opens (or creates) `path` for appending. A last line without its newline — a crash or a
    /// full disk in the middle of a write — is cut before anything is appended (or, when it is
    /// a whole record missing only its newline, completed); the returned warning says which.
    pub fn open(path: &Path) -> Result<(Appender, Option<String>), Error> {
        let err = |e: io::Error| Error::io(path, e);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        let warning = repair_tail(&mut file, path).map_err(err)?;
        Ok((Appender { file, path: path.to_path_buf() }, warning))
    }

    /// Appends one record as one JSON line and syncs it, so an interrupted run keeps every
    /// point written. A write that fails part-way is cut back off the file.
    pub fn append(&mut self, rec: &Record) -> Result<(), Error> {
        let mut line =
            serde_json::to_vec(rec).map_err(|e| Error::io(&self.path, io::Error::other(e)))?;
        line.push(b'\n');
        let before = self.file.metadata().map_err(|e| Error::io(&self.path, e))?.len();
        let written = self.file.write_all(&line).and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Leave no torn line behind (best effort: the next open cuts one too).
            let _ = self.file.set_len(before);
            return Err(Error::io(&self.path, e));
        }
        Ok(())
    }
}

/// Cuts (or completes) a last line that has no newline; returns what it did, in words. Only
/// the file's tail is read, back to the last newline.
fn repair_tail(file: &mut std::fs::File, path: &Path) -> io::Result<Option<String>> {
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() == 0 {
        return Ok(None);
    }
    let len = meta.len();
    let mut last = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(None);
    }
    // Back to the last newline, a chunk at a time.
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = len;
    let start = loop {
        let from = pos.saturating_sub(64 * 1024);
        let mut chunk = vec![0u8; (pos - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            chunk.drain(..=i);
            chunk.extend_from_slice(&tail);
            tail = chunk;
            break from + i as u64 + 1;
        }
        chunk.extend_from_slice(&tail);
        tail = chunk;
        if from == 0 {
            break 0;
        }
        pos = from;
    };
    let line = count_lines(file, start)? + 1;
    if serde_json::from_slice::<Record>(&tail).is_ok() {
        file.write_all(b"\n")?;
        file.sync_data()?;
        return Ok(Some(format!(
            "{}: line {line} is a whole record without its newline; completed it",
            path.display()
        )));
    }
    file.set_len(start)?;
    file.sync_data()?;
    Ok(Some(format!(
        "{}: line {line} was cut short ({} bytes, a crash or a full disk in mid-write); removed it \
         before appending, so its point is measured again",
        path.display(),
        tail.len()
    )))
}

/// The newlines in the first `upto` bytes of `file`.
fn count_lines(file: &mut std::fs::File, upto: u64) -> io::Result<usize> {
    file.seek(SeekFrom::Start(0))?;
    let mut n = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = upto;
    while left > 0 {
        let want = buf.len().min(left as usize);
        file.read_exact(&mut buf[..want])?;
        n += buf[..want].iter().filter(|b| **b == b'\n').count();
        left -= want as u64;
    }
    Ok(n)
}

/// A results file that could not be read or written: the file and what happened.
#[derive(Debug)]
pub struct Error {
    /// The file.
    pub path: PathBuf,
    /// What happened.
    pub source: io::Error,
}

impl Error {
    fn io(path: &Path, source: io::Error) -> Error {
        Error { path: path.to_path_buf(), source }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for Error {}

/// A line of a results file that could not be read as a record.
#[derive(Clone, Debug, PartialEq)]
pub struct Unreadable {
    /// Its 1-based line number.
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// What a results file holds.
#[derive(Debug, Default)]
pub struct Contents {
    /// Every record read, in file order.
    pub records: Vec<Record>,
    /// The lines that are not records.
    pub unreadable: Vec<Unreadable>,
}

impl Contents {
    /// One line per unreadable line (the first ten) and a count, each naming `path`; empty when
    /// every line was read.
    pub fn warnings(&self, path: &Path) -> Vec<String> {
        let mut out: Vec<String> = self
            .unreadable
            .iter()
            .take(10)
            .map(|u| format!("{}: line {}: {}; skipped", path.display(), u.line, u.reason))
            .collect();
        if !self.unreadable.is_empty() {
            out.push(format!(
                "{}: {} unreadable line(s) skipped, {} record(s) read",
                path.display(),
                self.unreadable.len(),
                self.records.len()
            ));
        }
        out
    }
}

/// Reads every record of a results file (none if it does not exist). Each line is read on its
/// own: one that is not UTF-8, not JSON or not a record is set aside with its number and why,
/// and the rest are read.
pub fn read_all(path: &Path) -> Result<Contents, Error> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(Error::io(path, io::Error::other("not a regular file")));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::default()),
        Err(e) => return Err(Error::io(path, e)),
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut out = Contents::default();
    let ends_whole = matches!(bytes.last(), None | Some(b'\n'));
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let last = lines.len().saturating_sub(if ends_whole { 2 } else { 1 });
    for (i, raw) in lines.iter().enumerate() {
        let line = i + 1;
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t,
            Err(e) => {
                let reason = format!("byte {} is not UTF-8", e.valid_up_to() + 1);
                out.unreadable.push(Unreadable { line, reason });
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(text) {
            Ok(r) => out.records.push(r),
            Err(e) => {
                let reason = if i == last && !ends_whole {
                    "cut short (the file ends in the middle of it)".to_string()
                } else {
                    format!("not a record ({e})")
                };
                out.unreadable.push(Unreadable { line, reason });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Which;

    fn rec(key: &str) -> Record {
        Record {
            experiment: "e".into(),
            variant: Which::Quick,
            key: key.into(),
            mechanism: "epoll".into(),
            params: BTreeMap::new(),
            metrics: [("x".to_string(), 1.0)].into_iter().collect(),
            lists: BTreeMap::new(),
            valid: true,
            invalid_reason: None,
            error: None,
            unix_time: 0,
            machine: Machine::default(),
            raw: serde_json::Value::Null,
        }
    }

    fn file(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ioscale-record-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    fn keys(path: &Path) -> Vec<String> {
        read_all(path).unwrap().records.into_iter().map(|r| r.key).collect()
    }

    #[test]
    fn a_torn_tail_is_cut_before_appending() {
        let path = file("torn");
        let (mut a, w) = Appender::open(&path).unwrap();
        assert_eq!(w, None);
        for k in ["a", "b", "c"] {
            a.append(&rec(k)).unwrap();
        }
        drop(a);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 20).unwrap();
        drop(f);
        let c = read_all(&path).unwrap();
        assert_eq!(c.records.len(), 2);
        assert_eq!(c.unreadable[0].line, 3);
        assert!(c.unreadable[0].reason.contains("cut short"), "{:?}", c.unreadable);
        let (mut a, w) = Appender::open(&path).unwrap();
        let w = w.expect("a warning");
        assert!(w.contains(&path.display().to_string()) && w.contains("line 3"), "{w}");
        a.append(&rec("c")).unwrap();
        a.append(&rec("d")).unwrap();
        assert_eq!(keys(&path), ["a", "b", "c", "d"]);
        assert!(read_all(&path).unwrap().unreadable.is_empty());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_long_torn_line_is_cut_whole() {
        let path = file("long");
        let (mut a, _) = Appender::open(&path).unwrap();
        a.append(&rec("a")).unwrap();
        let mut big = rec("b");
        big.raw = serde_json::Value::String("x".repeat(200_000));
        a.append(&big).unwrap();
        drop(a);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 10).unwrap();
        let (mut a, w) = Appender::open(&path).unwrap();
        assert!(w.unwrap().contains("line 2 was cut short"));
        a.append(&big).unwrap();
        assert_eq!(keys(&path), ["a", "b"]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_whole_record_without_its_newline_is_kept() {
        let path = file("nonl");
        let line = serde_json::to_string(&rec("a")).unwrap();
        std::fs::write(&path, line).unwrap();
        assert_eq!(keys(&path), ["a"]);
        let (mut a, w) = Appender::open(&path).unwrap();
        assert!(w.unwrap().contains("completed"));
        a.append(&rec("b")).unwrap();
        assert_eq!(keys(&path), ["a", "b"]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn unreadable_lines_are_named_and_the_rest_read() {
        let path = file("utf8");
        let good = serde_json::to_string(&rec("a")).unwrap();
        let mut bytes = format!("{good}\n").into_bytes();
        bytes.extend_from_slice(b"{\"experiment\": \"\xff\"}\n");
        bytes.extend_from_slice(b"not json\n\n");
        bytes.extend_from_slice(format!("{good}\n").as_bytes());
        std::fs::write(&path, bytes).unwrap();
        let c = read_all(&path).unwrap();
        assert_eq!(c.records.len(), 2);
        let lines: Vec<usize> = c.unreadable.iter().map(|u| u.line).collect();
        assert_eq!(lines, [2, 3]);
        assert!(c.unreadable[0].reason.contains("not UTF-8"), "{:?}", c.unreadable);
        let w = c.warnings(&path);
        assert!(w[0].contains(&format!("{}: line 2", path.display())), "{w:?}");
        assert!(w.last().unwrap().contains("2 unreadable line(s) skipped, 2 record(s) read"));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_failed_write_names_the_file() {
        let full = Path::new("/dev/full");
        if !full.exists() {
            eprintln!("SKIPPED: no /dev/full here");
            return;
        }
        let (mut a, _) = Appender::open(full).unwrap();
        let e = a.append(&rec("a")).unwrap_err();
        assert!(e.to_string().starts_with("/dev/full: "), "{e}");
    }
}
