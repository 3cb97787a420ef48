//! SIGHUP: the configuration read again and applied without dropping a connection, or refused
//! whole with one sentence in the error log (the configuration in force stays).
//!
//! What a reload can change is what each worker's [`crate::respond::Responder`] reads per
//! request — `--cache-control`, `--precompressed`, `--stats-public` — and where the logs go
//! (`--access-log` to another path, `--error-log`). The signal thread publishes the new
//! [`Settings`] and bumps an epoch; each worker compares the epoch once per loop pass and, when
//! it moved, takes the settings (a fresh file cache, so cached heads carry the new
//! `Cache-Control`). Everything else (the port, the workers, the mechanism, the timeouts, the
//! limits, ...) is fixed at start: a file that changes it is refused ([`Config::restart_changes`]).

use crate::config::Config;
use crate::error_log::{error, notice, warning};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The options a reload changes in the workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub cache_control: Option<String>,
    pub precompressed: bool,
    pub stats_public: bool,
}

impl Settings {
    pub fn of(c: &Config) -> Settings {
        Settings {
            cache_control: c.cache_control.clone(),
            precompressed: c.precompressed,
            stats_public: c.stats_public,
        }
    }
}

/// The settings in force and their epoch (bumped by each reload that changes them).
#[derive(Debug)]
pub(crate) struct Live {
    epoch: AtomicU64,
    settings: Mutex<Arc<Settings>>,
}

impl Live {
    pub fn new(c: &Config) -> Live {
        Live { epoch: AtomicU64::new(0), settings: Mutex::new(Arc::new(Settings::of(c))) }
    }

    /// The epoch: a worker that has seen another takes [`Live::get`].
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The settings in force and their epoch.
    pub fn get(&self) -> (Arc<Settings>, u64) {
        let g = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        (g.clone(), self.epoch.load(Ordering::Acquire))
    }

    fn set(&self, s: Settings) {
        let mut g = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        *g = Arc::new(s);
        self.epoch.fetch_add(1, Ordering::Release);
    }
}

/// Applies `new` (the configuration just read) over `running` (the one in force, as it was
/// given): refused whole if it cannot be read or changes an option that needs a restart;
/// otherwise the logs move or are reopened and the workers get the new settings. Every outcome
/// is one line in the error log. Returns whether it was applied.
pub(crate) fn apply(
    shared: &crate::Shared,
    running: &mut Config,
    new: Result<Config, String>,
) -> bool {
    let new = match new {
        Ok(c) => c,
        Err(e) => {
            error!("SIGHUP: {e}; the running configuration is kept");
            return false;
        }
    };
    let restart = running.restart_changes(&new);
    if !restart.is_empty() {
        let (list, verb) = match restart.len() {
            1 => (restart[0].clone(), "needs"),
            n => (format!("{} and {}", restart[..n - 1].join(", "), restart[n - 1]), "need"),
        };
        error!(
            "SIGHUP: the configuration changes {list}, which {verb} a restart; the running \
             configuration is kept"
        );
        return false;
    }
    let changes = running.reload_changes(&new);
    // The logs: moved when their path changed, reopened otherwise (logrotate's case too).
    if let Some(sink) = &shared.access_log {
        let r = match (&running.access_log, &new.access_log) {
            (Some(a), Some(b)) if a != b => sink.reopen_at(b),
            _ => sink.reopen(),
        };
        if let Err(e) = r {
            let p = new.access_log.as_deref().unwrap_or(std::path::Path::new("-"));
            warning!(
                "SIGHUP: cannot open the access log '{}': {e}; lines go on to the old one",
                p.display()
            );
        }
    }
    let r = if running.error_log != new.error_log {
        crate::error_log::open(new.error_log.as_deref())
    } else {
        crate::error_log::reopen()
    };
    if let Err(e) = r {
        let p = new.error_log.as_deref().map_or("-".into(), |p| p.display().to_string());
        warning!("SIGHUP: cannot open the error log '{p}': {e}");
    }
    let settings = Settings::of(&new);
    if settings != Settings::of(running) {
        shared.live.set(settings);
    }
    if changes.is_empty() {
        notice!("SIGHUP: configuration read again, nothing changed; logs reopened");
    } else {
        notice!("SIGHUP: configuration reloaded: {}; logs reopened", changes.join(", "));
    }
    *running = new;
    true
}
