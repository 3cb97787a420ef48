//! The lab's system calls, all from `ioscale-sys`, under the names the lab uses: CPU time of
//! the processes it runs, signals to them, and the interrupt flag (SIGINT or SIGTERM) that
//! stops a run with the points already measured.

pub use ioscale_sys::cpu::schedstat_ns;
pub use ioscale_sys::interrupt::{install as catch_interrupt, requested as interrupted};
pub use ioscale_sys::process::{kill, SIGINT, SIGKILL, SIGTERM, SIGUSR2};
