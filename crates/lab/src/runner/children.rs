//! The processes the lab starts: spawned, pinned to a CPU, and ended by PID.

use crate::error::Error;
use crate::sys;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The children the lab started, ended by PID on interrupt, on error, or when dropped.
#[derive(Default)]
pub struct Children {
    list: Vec<Child>,
}

impl Children {
    /// Starts `cmd` and keeps it; returns its PID.
    pub fn spawn(&mut self, mut cmd: Command) -> Result<u32, Error> {
        let child =
            cmd.spawn().map_err(|e| Error(format!("cannot start {:?}: {e}", cmd.get_program())))?;
        let pid = child.id();
        self.list.push(child);
        Ok(pid)
    }

    /// Takes a child back (to wait for its output); it is then the caller's to end.
    pub fn take(&mut self, pid: u32) -> Option<Child> {
        let i = self.list.iter().position(|c| c.id() == pid)?;
        Some(self.list.swap_remove(i))
    }

    /// The child itself, still kept (to take its pipes or poll its status).
    pub fn get_mut(&mut self, pid: u32) -> Option<&mut Child> {
        self.list.iter_mut().find(|c| c.id() == pid)
    }

    /// Forgets a child that has already been reaped (its status was read with `try_wait`).
    pub fn forget(&mut self, pid: u32) {
        self.list.retain(|c| c.id() != pid);
    }

    /// SIGTERM, a grace period, then SIGKILL, and reap.
    pub fn stop(&mut self, pid: u32, grace: Duration) -> Option<std::process::ExitStatus> {
        self.stop_with(pid, sys::SIGTERM, grace)
    }

    /// `sig` (unless the child has already exited), a grace period, then SIGKILL, and reap.
    pub fn stop_with(
        &mut self,
        pid: u32,
        sig: i32,
        grace: Duration,
    ) -> Option<std::process::ExitStatus> {
        let mut child = self.take(pid)?;
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        let _ = sys::kill(pid, sig);
        let t = Instant::now();
        while t.elapsed() < grace {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Stops every child still kept.
    pub fn stop_all(&mut self) {
        let pids: Vec<u32> = self.list.iter().map(Child::id).collect();
        for pid in pids {
            self.stop(pid, Duration::from_secs(2));
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Prefixes a command with `taskset -c CPU` when the machine has a CPU to spare for it.
pub fn pinned(exe: &Path, cpu: usize) -> Command {
    pinned_to(exe, &cpu.to_string())
}

/// Prefixes a command with `taskset -c CPUS` (a list such as `1-3`) when the machine has more
/// than one core.
pub fn pinned_to(exe: &Path, cpus: &str) -> Command {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if cores >= 2 && Path::new("/usr/bin/taskset").exists() {
        let mut c = Command::new("/usr/bin/taskset");
        c.arg("-c").arg(cpus).arg(exe);
        c
    } else {
        Command::new(exe)
    }
}
