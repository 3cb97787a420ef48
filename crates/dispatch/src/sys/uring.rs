//! io_uring: setup with a refusal explained, and the one unsafe step the `io-uring` crate leaves
//! to its caller (pushing a submission entry whose memory must outlive the operation).
//!
//! Entries are built here, as [`Sqe`], only from operations that borrow no memory of the
//! process (poll add and remove), so pushing one is sound whatever the caller does afterwards.

use io_uring::{opcode, squeue, types, IoUring};
use std::io;
use std::os::fd::RawFd;

/// A submission entry that references no user memory.
#[derive(Clone, Debug)]
pub struct Sqe(squeue::Entry);

impl Sqe {
    /// `IORING_OP_POLL_ADD` with `IORING_POLL_ADD_MULTI` on `fd` for the `poll(2)` bits `mask`.
    pub fn poll_multishot(fd: RawFd, mask: u32, user_data: u64) -> Sqe {
        Sqe(opcode::PollAdd::new(types::Fd(fd), mask).multi(true).build().user_data(user_data))
    }

    /// `IORING_OP_POLL_REMOVE` of the poll request submitted under `target`.
    pub fn poll_remove(target: u64, user_data: u64) -> Sqe {
        Sqe(opcode::PollRemove::new(target).build().user_data(user_data))
    }
}

/// Pushes `sqe` onto the submission queue; `false` when the queue is full.
pub fn push(ring: &mut IoUring, sqe: &Sqe) -> bool {
    // SAFETY: an `Sqe` is only built by the constructors above, none of which points the kernel
    // at memory of this process, so nothing has to outlive the operation.
    unsafe { ring.submission().push(&sqe.0) }.is_ok()
}

/// Creates a ring of `sq` submission and `cq` completion entries, turning the kernel's refusal
/// into an `Unsupported` error that says why (see [`setup_refusal`]).
pub fn setup(sq: u32, cq: u32) -> io::Result<IoUring> {
    IoUring::builder().setup_cqsize(cq).build(sq).map_err(setup_refusal)
}

/// Explains an `io_uring_setup(2)` failure: which facility refused and why, as `Unsupported`
/// for the refusals (ENOSYS, EPERM, EINVAL) and unchanged otherwise.
pub fn setup_refusal(e: io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        Some(libc::ENOSYS) => "io_uring_setup(2) is not implemented (ENOSYS): the kernel is older \
             than 5.1, was built without CONFIG_IO_URING, or a seccomp filter (a container \
             runtime's default profile) refuses it"
            .to_string(),
        Some(libc::EPERM) => match io_uring_disabled() {
            Some(2) => {
                "io_uring is disabled for every process by sysctl kernel.io_uring_disabled=2 \
                 (EPERM)"
                    .to_string()
            }
            Some(1) => "io_uring is restricted by sysctl kernel.io_uring_disabled=1 and this \
                 process is neither privileged nor in kernel.io_uring_group (EPERM)"
                .to_string(),
            _ => "io_uring_setup(2) was refused (EPERM), e.g. by a seccomp filter or a security \
                 module"
                .to_string(),
        },
        Some(libc::EINVAL) => "io_uring_setup(2) rejected the ring parameters (EINVAL): the \
             kernel is too old for IORING_SETUP_CQSIZE (Linux 5.5)"
            .to_string(),
        Some(libc::ENOMEM) => "io_uring_setup(2) could not allocate or lock the rings (ENOMEM): \
             raise RLIMIT_MEMLOCK (kernels before 5.12 charge rings to it)"
            .to_string(),
        _ => return e,
    };
    io::Error::new(io::ErrorKind::Unsupported, why)
}

/// The value of `/proc/sys/kernel/io_uring_disabled` (absent before Linux 6.6).
pub fn io_uring_disabled() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok()?.trim().parse().ok()
}
