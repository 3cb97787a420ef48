//! io_uring: setup with a refusal explained, the unsafe steps the `io-uring` crate leaves to its
//! caller (pushing a submission entry whose memory must outlive the operation), and the
//! provided-buffer ring, memory shared with the kernel.
//!
//! Entries are built here, as [`Sqe`], only from operations that borrow no memory of the
//! process (poll add and remove, cancellations), so pushing one is sound whatever the caller
//! does afterwards; the proactor's entries that do point at memory go through [`push_all`],
//! whose contract its caller keeps.

use io_uring::{opcode, squeue, types, IoUring};
use std::alloc::{self, Layout};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};

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

    /// `IORING_OP_ASYNC_CANCEL` of every operation in flight.
    pub fn cancel_any(user_data: u64) -> Sqe {
        Sqe(opcode::AsyncCancel2::new(types::CancelBuilder::any()).build().user_data(user_data))
    }

    /// `IORING_OP_ASYNC_CANCEL` of every operation on `fd`.
    pub fn cancel_fd(fd: RawFd, user_data: u64) -> Sqe {
        Sqe(opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
            .build()
            .user_data(user_data))
    }

    /// `IORING_OP_ACCEPT` with `IORING_ACCEPT_MULTISHOT`: the accepted sockets are new
    /// descriptors, no memory of this process is written.
    pub fn accept_multi(fd: RawFd, user_data: u64) -> Sqe {
        Sqe(opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data))
    }
}

/// Pushes `sqe` onto the submission queue; `false` when the queue is full.
pub fn push(ring: &mut IoUring, sqe: &Sqe) -> bool {
    // SAFETY: an `Sqe` is only built by the constructors above, none of which points the kernel
    // at memory of this process, so nothing has to outlive the operation.
    unsafe { ring.submission().push(&sqe.0) }.is_ok()
}

/// Pushes `entries` onto the submission queue, all or none; `false` when they do not fit.
///
/// # Safety
///
/// Memory every entry points to (a send's bytes, a read's buffer, a timeout's timespec) must
/// stay valid, and not be moved, until that operation completes; a receive may name only a
/// buffer group registered with [`BufRing::register`] on this ring.
pub unsafe fn push_all(ring: &mut IoUring, entries: &[squeue::Entry]) -> bool {
    // SAFETY: the caller's contract covers the entries' memory.
    unsafe { ring.submission().push_multiple(entries) }.is_ok()
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

/// The provided-buffer ring: entries shared with the kernel, and the buffers they point to.
pub struct BufRing {
    ring: *mut types::BufRingEntry,
    ring_layout: Layout,
    bufs: *mut u8,
    bufs_layout: Layout,
    count: u16,
    size: u32,
    tail: u16,
    lent: Vec<bool>,
    /// Set when operations may still use the memory: it is then never freed.
    leak: bool,
}

// SAFETY: the raw pointers are owned allocations reached only through `&mut self` (or `&self`
// for reads of buffers the kernel handed back); nothing is tied to the creating thread.
unsafe impl Send for BufRing {}

impl BufRing {
    /// Allocates `count` (a power of two) buffers of `size` bytes and their ring, all zero,
    /// none handed to the kernel yet.
    pub fn new(count: u16, size: u32) -> io::Result<BufRing> {
        if count == 0 || !count.is_power_of_two() || size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a buffer ring of {count} buffers of {size} bytes: expected a power of two of non-empty buffers"),
            ));
        }
        let entry = std::mem::size_of::<types::BufRingEntry>();
        let ring_layout = Layout::from_size_align(entry * usize::from(count), 4096)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let bufs_layout = Layout::from_size_align(usize::from(count) * size as usize, 64)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        // SAFETY: both layouts have a non-zero size (count and size are checked to be >= 1).
        let ring = unsafe { alloc::alloc_zeroed(ring_layout) }.cast::<types::BufRingEntry>();
        // SAFETY: as above.
        let bufs = unsafe { alloc::alloc_zeroed(bufs_layout) };
        if ring.is_null() || bufs.is_null() {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "buffer ring allocation"));
        }
        Ok(BufRing {
            ring,
            ring_layout,
            bufs,
            bufs_layout,
            count,
            size,
            tail: 0,
            lent: vec![true; usize::from(count)],
            leak: false,
        })
    }

    /// Hands buffer `bid` (< count) to the kernel (at the ring's tail).
    pub fn provide(&mut self, bid: u16) {
        if bid >= self.count {
            return;
        }
        let mask = self.count - 1;
        // SAFETY: the index is masked into the ring's `count` entries; the entry at the tail is
        // not owned by the kernel until the tail is published below.
        let e = unsafe { &mut *self.ring.add(usize::from(self.tail & mask)) };
        // SAFETY: bid < count, so the buffer lies inside the allocation.
        e.set_addr(unsafe { self.bufs.add(usize::from(bid) * self.size as usize) } as u64);
        e.set_len(self.size);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        self.lent[usize::from(bid)] = false;
        // SAFETY: the tail field lives in the first entry of the page-aligned ring; it is a u16
        // the kernel reads atomically, so it is published with a release store.
        unsafe {
            let tail = types::BufRingEntry::tail(self.ring).cast_mut().cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// The first `len` bytes of buffer `bid`, which the kernel handed back (lent to the
    /// caller); empty for a buffer that is not lent.
    pub fn slice(&self, bid: u16, len: usize) -> &[u8] {
        if self.lent.get(usize::from(bid)) != Some(&true) {
            return &[];
        }
        let len = len.min(self.size as usize);
        // SAFETY: bid < count (checked by the `lent` lookup) and len <= size; the kernel handed
        // this buffer back and writes to it again only after `provide`.
        unsafe {
            std::slice::from_raw_parts(self.bufs.add(usize::from(bid) * self.size as usize), len)
        }
    }

    /// Registers the ring with `ring` as buffer group `bgid` (`IORING_REGISTER_PBUF_RING`).
    ///
    /// # Safety
    ///
    /// `self` must outlive every operation of `ring` that may pick a buffer from it: drop the
    /// ring (after its operations finished) before this, or leak this ([`BufRing::leak`]).
    pub unsafe fn register(&self, ring: &IoUring, bgid: u16) -> io::Result<()> {
        // SAFETY: the ring memory is a live, page-aligned allocation of `count` entries; the
        // caller keeps it alive as long as the kernel may use it.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(self.ring as u64, self.count, bgid, 0)
        }
    }

    /// Never frees the memory (the kernel may still write into it).
    pub fn leak(&mut self) {
        self.leak = true;
    }

    /// Bytes per buffer.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// How many buffers.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Marks buffer `bid` as handed back by the kernel (lent to the caller); `false` for an id
    /// that is not one of ours.
    pub fn lend(&mut self, bid: u16) -> bool {
        match self.lent.get_mut(usize::from(bid)) {
            Some(l) => {
                *l = true;
                true
            }
            None => false,
        }
    }

    /// Whether buffer `bid` is lent to the caller.
    pub fn is_lent(&self, bid: u16) -> bool {
        self.lent.get(usize::from(bid)) == Some(&true)
    }

    /// How many buffers are lent to the caller.
    pub fn lent(&self) -> usize {
        self.lent.iter().filter(|&&l| l).count()
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: both were allocated in `new` with these layouts; the io_uring that used them
        // was dropped first (the contract of `register`).
        unsafe {
            alloc::dealloc(self.ring.cast(), self.ring_layout);
            alloc::dealloc(self.bufs, self.bufs_layout);
        }
    }
}
