//! Scheduling for the two sides of an `http` point, so other work on the machine neither
//! slows the witness nor steals the server's budget.
//!
//! The generator is the witness: a run where it missed its schedule is invalid, and on a shared
//! machine it misses it because other processes hold its core when its timer fires. Where the
//! lab may (root, or `CAP_SYS_NICE`), the generator runs `SCHED_FIFO` at priority 10 on its own
//! core, so it runs the moment it is woken (the kernel's real-time throttling still leaves 5%
//! of each second to everything else); the server runs at nice −20, so it gets the whole of its
//! budget beside other work. Where the lab may not, both run as they are, and every point says
//! which.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Which side of the point a process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The server under test (CPU 0).
    Server,
    /// The load generator (every other core).
    Generator,
}

/// What the lab may raise: real-time scheduling for the generator, −20 for the server.
struct Allowed {
    fifo: bool,
    nice: bool,
}

fn allowed() -> &'static Allowed {
    static A: OnceLock<Allowed> = OnceLock::new();
    A.get_or_init(|| {
        let fifo = Path::new("/usr/bin/chrt").exists()
            && Command::new("/usr/bin/chrt")
                .args(["-f", "10", "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        // `nice` runs the command even when it may not lower the niceness: ask what it got.
        let nice = Path::new("/usr/bin/nice").exists()
            && Command::new("/usr/bin/nice")
                .args(["-n", "-20", "/usr/bin/nice"])
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "-20");
        Allowed { fifo, nice }
    })
}

/// How `role` is scheduled here, in words (for the records).
pub(crate) fn describe(role: Role) -> &'static str {
    match (role, allowed().fifo, allowed().nice) {
        (Role::Generator, true, _) => "SCHED_FIFO 10",
        (Role::Server, _, true) => "nice -20",
        _ => "default",
    }
}

/// How many cores the generator gets: every core but the server's (CPU 0), at least one.
pub(crate) fn generator_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1).max(1)
}

/// The generator's cores as `taskset` writes them: `1`, or `1-3` on four cores.
pub(crate) fn generator_cpus() -> String {
    match generator_cores() {
        1 => "1".into(),
        n => format!("1-{n}"),
    }
}

/// `exe` pinned to its role's cores (the server CPU 0, the generator every other one; see
/// [`crate::runner::children::pinned_to`]) and scheduled for its role.
pub(crate) fn launch(exe: &Path, role: Role) -> Command {
    let cpus = match role {
        Role::Server => "0".to_string(),
        Role::Generator => generator_cpus(),
    };
    let pinned = crate::runner::children::pinned_to(exe, &cpus);
    let prefix: &[&str] = match (role, allowed().fifo, allowed().nice) {
        (Role::Generator, true, _) => &["/usr/bin/chrt", "-f", "10"],
        (Role::Server, _, true) => &["/usr/bin/nice", "-n", "-20"],
        _ => return pinned,
    };
    let mut c = Command::new(prefix[0]);
    c.args(&prefix[1..]).arg(pinned.get_program()).args(pinned.get_args());
    c
}
