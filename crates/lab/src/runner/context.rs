//! The shared state of one lab run: the machine, the results file, the children, what this
//! build can run, and the counts the run reports.

use super::children::Children;
use super::progress;
use crate::error::Error;
use crate::record::{self, Machine, Record};
use crate::spec::{Plan, Point, Which};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// What to run and where.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `ioscale` binary (normally the running one).
    pub exe: PathBuf,
    /// Where the experiment files are.
    pub experiments_dir: PathBuf,
    /// Where results and the report go.
    pub out: PathBuf,
    /// quick or full.
    pub which: Which,
    /// Skip points already in `results.jsonl`.
    pub resume: bool,
    /// Run only these experiments (all when empty).
    pub only: Vec<String>,
    /// Where progress goes: bars on a terminal, a line per point otherwise.
    pub progress: progress::Mode,
    /// Drive the http experiments from these load hosts (`ioscale load --hosts`), not locally.
    pub load_hosts: Vec<String>,
    /// The command template that reaches a load host (`ioscale load --remote-cmd`).
    pub load_remote_cmd: Option<String>,
    /// The address the server under test listens on (one the load hosts reach).
    pub server_addr: std::net::Ipv4Addr,
    /// The server's CPU budget for every `http` experiment (`--server-cpu`), overriding the
    /// experiments' own `server_cpu`.
    pub server_cpu: Option<crate::spec::Budgeting>,
}

/// The shared state of one lab run, handed to each kind's runner.
pub(crate) struct Ctx<'a> {
    pub(crate) cfg: &'a Config,
    pub(crate) machine: Machine,
    pub(crate) results: record::Appender,
    /// Keys of the points already in `results.jsonl` (skipped by `--resume`) or written since.
    pub(crate) done: BTreeSet<String>,
    pub(crate) children: Children,
    pub(crate) available: BTreeMap<String, Option<String>>,
    pub(crate) measured: usize,
    pub(crate) invalid: usize,
    pub(crate) progress: progress::Progress,
}

impl Ctx<'_> {
    /// Writes a record (and counts it).
    pub(crate) fn emit(&mut self, mut rec: Record) -> Result<(), Error> {
        rec.unix_time = now_unix();
        if !rec.usable() {
            self.invalid += 1;
        }
        self.results.append(&rec)?;
        self.done.insert(rec.key.clone());
        self.measured += 1;
        self.progress.point(&rec);
        Ok(())
    }

    /// Writes a record for each point, carrying `why` as the reason it was not measured.
    pub(crate) fn emit_errors<'p>(
        &mut self,
        plan: &Plan,
        points: impl IntoIterator<Item = &'p Point>,
        why: &str,
    ) -> Result<(), Error> {
        for p in points {
            let mut rec = blank(plan, p, &self.machine);
            rec.error = Some(why.to_string());
            self.emit(rec)?;
        }
        Ok(())
    }

    /// Shows what is being measured now.
    pub(crate) fn message(&self, msg: String) {
        self.progress.message(msg);
    }

    /// Why a mechanism cannot run here, if it cannot ("select+multi-accept" is select).
    pub(crate) fn unavailable(&self, mech: &str) -> Option<String> {
        let mech = mech.split('+').next().unwrap_or(mech);
        match self.available.get(mech) {
            None => Some(format!("'{mech}' is not a mechanism of this ioscale build")),
            Some(why) => why.clone(),
        }
    }
}

/// What this binary and kernel can run: mechanism name → None if supported, or why not.
pub(crate) fn availability(exe: &Path) -> BTreeMap<String, Option<String>> {
    let out = Command::new(exe).args(["mechanisms", "--json"]).stderr(Stdio::null()).output();
    let mut map = BTreeMap::new();
    if let Ok(out) = out {
        if let Ok(serde_json::Value::Array(rows)) =
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
        {
            for r in rows {
                let name = r["name"].as_str().unwrap_or_default().to_string();
                let why = if r["supported"].as_bool() == Some(true) {
                    None
                } else {
                    Some(r["reason"].as_str().unwrap_or("not supported by this kernel").to_string())
                };
                map.insert(name, why);
            }
        }
    }
    map
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A record with no measurement yet.
pub(crate) fn blank(plan: &Plan, p: &Point, machine: &Machine) -> Record {
    Record {
        experiment: plan.exp.name.clone(),
        variant: plan.which,
        key: p.key(&plan.exp.name, plan.which),
        mechanism: p.mechanism.clone(),
        params: p.params.clone(),
        metrics: BTreeMap::new(),
        lists: BTreeMap::new(),
        valid: true,
        invalid_reason: None,
        error: None,
        unix_time: now_unix(),
        machine: machine.clone(),
        raw: serde_json::Value::Null,
    }
}
