//! What this kernel offers right now: every mechanism with its kernel facility, its kind
//! (readiness or completion), how it triggers, its limits, and whether it opens here — probed by
//! opening it, so a refusal (a seccomp filter, `kernel.io_uring_disabled`, a missing opcode)
//! is reported with the mechanism's own explanation rather than guessed from a version number.
//!
//! `ioscale mechanisms` prints [`describe`] as a table ([`table`]) or JSON.

use crate::completion::{probe_features, FeatureCheck};
use crate::{Mechanism, Options, Trigger};
use std::fmt::Write as _;

/// One limit that bounds a mechanism, with where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Limit {
    /// What is limited (e.g. "open descriptors").
    pub what: &'static str,
    /// The current value, as the kernel reports it.
    pub value: String,
    /// Where the value comes from (an rlimit, a sysctl, a constant).
    pub source: &'static str,
}

/// One mechanism as this kernel offers it.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MechanismInfo {
    /// The command-line name.
    pub name: &'static str,
    /// The kernel facility it is built on.
    pub facility: &'static str,
    /// "readiness" (the kernel says "you may read now") or "completion" (the kernel does the I/O).
    pub kind: &'static str,
    /// How notices trigger, when it could be opened.
    pub trigger: Option<Trigger>,
    /// The largest descriptor number plus one it accepts, if it has such a limit.
    pub max_fds: Option<usize>,
    /// Other limits that bound it here.
    pub limits: Vec<Limit>,
    /// Whether it opened on this kernel just now.
    pub supported: bool,
    /// Why not, when it did not.
    pub reason: Option<String>,
    /// Each kernel feature it needs, probed (completion engines only).
    pub features: Vec<FeatureCheck>,
}

/// Probes every mechanism (opening each once) and gathers its limits.
pub fn describe() -> Vec<MechanismInfo> {
    let limits = proc_limits();
    Mechanism::ALL
        .iter()
        .map(|&m| {
            if m.is_completion_based() {
                describe_completion(&limits)
            } else {
                describe_one(m, &limits)
            }
        })
        .collect()
}

/// The completion model ([`crate::completion::Proactor`]): not a readiness dispatcher, so it is
/// described from its own feature probe.
fn describe_completion(proc: &[(String, String)]) -> MechanismInfo {
    let features = probe_features();
    let missing: Vec<String> = features
        .iter()
        .filter(|f| f.required && !f.supported)
        .map(|f| match &f.note {
            Some(n) => format!("{} ({n})", f.name),
            None => f.name.to_string(),
        })
        .collect();
    let mut limits = Vec::new();
    if let Some(v) = proc_limit(proc, "Max open files") {
        limits.push(Limit { what: "open descriptors", value: v, source: "RLIMIT_NOFILE" });
    }
    let c = crate::completion::CompletionConfig::default();
    limits.push(Limit {
        what: "ring entries (submission / completion)",
        value: format!("{} / {}", c.sq_entries, c.cq_entries),
        source: "ioscale's ring sizes",
    });
    limits.push(Limit {
        what: "provided receive buffers",
        value: format!("{} x {} bytes", c.buffers, c.buffer_size),
        source: "ioscale's buffer ring",
    });
    let m = Mechanism::UringCompletion;
    MechanismInfo {
        name: m.name(),
        facility: m.facility(),
        kind: "completion",
        trigger: None,
        max_fds: None,
        limits,
        supported: missing.is_empty(),
        reason: (!missing.is_empty()).then(|| format!("missing: {}", missing.join("; "))),
        features,
    }
}

fn describe_one(m: Mechanism, proc: &[(String, String)]) -> MechanismInfo {
    let opened = m.open(&Options::default());
    let (trigger, max_fds, reason) = match &opened {
        Ok(d) => (Some(d.trigger()), d.max_fds(), None),
        Err(e) => (None, None, Some(e.to_string())),
    };
    let name = m.name();
    let mut limits = Vec::new();
    if let Some(v) = proc_limit(proc, "Max open files") {
        limits.push(Limit { what: "open descriptors", value: v, source: "RLIMIT_NOFILE" });
    }
    if m == Mechanism::Select {
        limits.push(Limit {
            what: "the C library's fd_set (FD_SETSIZE), passed here",
            value: format!(
                "{}; bitmaps are sized at run time for the highest descriptor (the kernel takes any nfds)",
                crate::sys::FD_SETSIZE
            ),
            source: "FD_SETSIZE in <sys/select.h>",
        });
    }
    if name.starts_with("epoll") || name == "devpoll" || name.contains("hybrid") {
        if let Some(v) = sysctl("fs/epoll/max_user_watches") {
            limits.push(Limit {
                what: "epoll watches per user",
                value: v,
                source: "fs.epoll.max_user_watches",
            });
        }
    }
    if name.contains("sig") || m.facility().contains("signal") {
        if let Some(v) = proc_limit(proc, "Max pending signals") {
            limits.push(Limit {
                what: "queued signals (the RT signal queue)",
                value: v,
                source: "RLIMIT_SIGPENDING",
            });
        }
    }
    if name.contains("uring") {
        let c = crate::mechanism::uring::UringConfig::default();
        limits.push(Limit {
            what: "ring entries (submission / completion)",
            value: format!("{} / {}", c.sq_entries, c.cq_entries),
            source: "ioscale's ring sizes",
        });
        if let Some(v) = crate::sys::uring::io_uring_disabled() {
            limits.push(Limit {
                what: "io_uring restriction (0 none, 1 privileged or group, 2 off)",
                value: v.to_string(),
                source: "kernel.io_uring_disabled",
            });
        }
    }
    MechanismInfo {
        name,
        facility: m.facility(),
        kind: if m.is_completion_based() { "completion" } else { "readiness" },
        trigger,
        max_fds,
        limits,
        supported: opened.is_ok(),
        reason,
        features: Vec::new(),
    }
}

/// `/proc/self/limits` as (name, soft limit) pairs.
fn proc_limits() -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string("/proc/self/limits") else { return Vec::new() };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            // Columns are aligned: the name ends where the soft limit's column starts (26).
            let (name, rest) = (l.get(..26)?, l.get(26..)?);
            let soft = rest.split_whitespace().next()?;
            Some((name.trim().to_string(), soft.to_string()))
        })
        .collect()
}

fn proc_limit(proc: &[(String, String)], name: &str) -> Option<String> {
    proc.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

fn sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{path}")).ok().map(|s| s.trim().to_string())
}

/// Renders [`describe`]'s rows as a plain table, limits and reasons indented below each row.
pub fn table(rows: &[MechanismInfo]) -> String {
    let mut out = format!(
        "{:<16} {:<11} {:<9} {:<10} {:<8} facility\n",
        "name", "kind", "trigger", "supported", "max fd"
    );
    for r in rows {
        let trigger = match r.trigger {
            Some(Trigger::Level) => "level",
            Some(Trigger::Edge) => "edge",
            Some(Trigger::Oneshot) => "oneshot",
            None => "-",
        };
        let _ = writeln!(
            out,
            "{:<16} {:<11} {:<9} {:<10} {:<8} {}",
            r.name,
            r.kind,
            trigger,
            if r.supported { "yes" } else { "no" },
            r.max_fds.map_or("-".to_string(), |n| format!("< {n}")),
            r.facility,
        );
        if let Some(why) = &r.reason {
            let _ = writeln!(out, "{:<16} not here: {why}", "");
        }
        let limits: Vec<String> =
            r.limits.iter().map(|l| format!("{} {} ({})", l.what, l.value, l.source)).collect();
        if !limits.is_empty() {
            let _ = writeln!(out, "{:<16} limits: {}", "", limits.join("; "));
        }
        for f in &r.features {
            let _ = writeln!(
                out,
                "{:<16} {} {}{}{}",
                "",
                if f.supported { "yes" } else { "no " },
                f.name,
                if f.required { "" } else { " (optional)" },
                f.note.as_ref().map_or(String::new(), |n| format!(": {n}")),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mechanism_is_described_and_refusals_say_why() {
        let rows = describe();
        assert_eq!(rows.len(), Mechanism::ALL.len());
        let completion = rows.last().unwrap();
        assert_eq!(completion.kind, "completion");
        assert!(!completion.features.is_empty());
        assert_eq!(completion.supported, completion.reason.is_none(), "{completion:?}");
        for (r, m) in rows.iter().zip(Mechanism::ALL) {
            assert_eq!(r.name, m.name());
            assert_eq!(r.supported, r.reason.is_none(), "{r:?}");
            if let Some(why) = &r.reason {
                assert!(!why.is_empty(), "{r:?}");
                eprintln!("NOTE: {} is not supported here: {why}", r.name);
            } else if r.kind == "readiness" {
                assert!(r.trigger.is_some(), "{r:?}");
            }
            assert!(r.limits.iter().any(|l| l.source == "RLIMIT_NOFILE"), "{r:?}");
        }
        let select = rows.iter().find(|r| r.name == "select").unwrap();
        assert_eq!(select.max_fds, None);
        assert!(select.limits.iter().any(|l| l.source.contains("FD_SETSIZE")), "{select:?}");
        let uring = rows.iter().find(|r| r.name == "uring").unwrap();
        assert_eq!(uring.kind, "readiness");
        assert!(uring.limits.iter().any(|l| l.what.starts_with("ring entries")), "{uring:?}");
        let t = table(&rows);
        for r in &rows {
            assert!(t.contains(r.name), "{t}");
        }
    }

    #[test]
    fn proc_limits_parse() {
        let l = proc_limits();
        let nofile = proc_limit(&l, "Max open files").expect("Max open files in /proc/self/limits");
        assert!(nofile == "unlimited" || nofile.parse::<u64>().is_ok(), "{nofile}");
    }
}
