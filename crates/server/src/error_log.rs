//! The error log (`--error-log FILE`): the server's own messages — start, signals, reloads and
//! their refusals, the drain, failures that do not stop it — one line each, as nginx's
//! `error_log` has them:
//!
//! ```text
//! 2026/12/02 21:40:07 [notice] 4242: SIGHUP: reloaded --config 'serve.toml': cache-control "max-age=60" -> "max-age=3600"
//! 2026/12/02 21:41:12 [error] 4242: SIGHUP: --config 'serve.toml' changes workers (2 -> 3), which needs a restart; the running configuration is kept
//! ```
//!
//! Without `--error-log` the messages go to standard error as `ioscale serve: MESSAGE` (the
//! level shown for warnings and errors only). The log belongs to the process, not to one
//! [`crate::Server`]: the command line installs it ([`open`]); SIGUSR1 and SIGHUP reopen it
//! ([`reopen`]). Each line is one `write(2)` to a file opened with `O_APPEND`, so lines from
//! several threads never interleave.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// How much a message matters.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Level {
    /// Something failed (the server goes on).
    Error,
    /// Something is not as asked (e.g. a log that could not be reopened).
    Warn,
    /// Normal but significant: start, signals, reloads, the drain.
    Notice,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Notice => "notice",
        }
    }
}

#[derive(Debug)]
struct Target {
    path: PathBuf,
    file: File,
}

static LOG: Mutex<Option<Target>> = Mutex::new(None);

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

/// Sends the messages to `path` (appended, created if missing) from now on; `None` sends them
/// to standard error again.
pub fn open(path: Option<&Path>) -> io::Result<()> {
    let target = match path {
        None => None,
        Some(p) => Some(Target { path: p.to_path_buf(), file: open_append(p)? }),
    };
    *LOG.lock().unwrap_or_else(|e| e.into_inner()) = target;
    Ok(())
}

/// Opens the log's path again (after logrotate renamed it).
pub fn reopen() -> io::Result<()> {
    let mut g = LOG.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = g.as_mut() {
        t.file = open_append(&t.path)?;
    }
    Ok(())
}

/// Writes one message (its line breaks become spaces).
pub fn write(level: Level, msg: fmt::Arguments<'_>) {
    let text = msg.to_string().replace(['\n', '\r'], " ");
    let g = LOG.lock().unwrap_or_else(|e| e.into_inner());
    match g.as_ref() {
        Some(t) => {
            let line = format!(
                "{} [{}] {}: {text}\n",
                timestamp(SystemTime::now()),
                level.name(),
                std::process::id()
            );
            // One write per line (O_APPEND): whole lines even with several writers. A failed
            // write has nowhere better to go than standard error.
            if let Err(e) = (&t.file).write_all(line.as_bytes()) {
                eprintln!("ioscale serve: cannot write the error log: {e}: {text}");
            }
        }
        None => match level {
            Level::Notice => eprintln!("ioscale serve: {text}"),
            l => eprintln!("ioscale serve: [{}] {text}", l.name()),
        },
    }
}

/// `YYYY/MM/DD HH:MM:SS` in UTC (nginx's error-log time, without a time-zone library).
fn timestamp(t: SystemTime) -> String {
    let t = ioscale_sys::time::UtcTime::at(t);
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// Writes an error to the error log: `error!("cannot {}", x)`.
macro_rules! error {
    ($($t:tt)*) => { $crate::error_log::write($crate::error_log::Level::Error, format_args!($($t)*)) };
}

/// Writes a warning to the error log.
macro_rules! warning {
    ($($t:tt)*) => { $crate::error_log::write($crate::error_log::Level::Warn, format_args!($($t)*)) };
}

/// Writes a notice to the error log.
macro_rules! notice {
    ($($t:tt)*) => { $crate::error_log::write($crate::error_log::Level::Notice, format_args!($($t)*)) };
}

pub(crate) use {error, notice, warning};

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970/01/01 00:00:00");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661); // 2000-02-29 01:01:01
        assert_eq!(timestamp(t), "2000/02/29 01:01:01");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599); // 2026-12-31 23:59:59
        assert_eq!(timestamp(t), "2026/12/31 23:59:59");
    }
}
