//! Completion-based I/O on io_uring: the proactor, beside (not inside) the readiness contract.
//!
//! Provos & Lever open with Windows NT's I/O completion ports as the thing Linux lacked; every
//! mechanism in [`crate::mechanism`] is still *readiness* (the kernel says "you may read now"
//! and the caller then reads). Here the caller hands the kernel the operations themselves —
//! accept, receive, send, close, cancel, timeout, poll — each with a [`Token`], and collects their
//! results from the completion ring, many per system call:
//!
//! * **Batched submission.** Submitting only queues an entry; [`Proactor::complete`] makes one
//!   `io_uring_enter` that submits everything queued and waits (timeout through
//!   `IORING_ENTER_EXT_ARG`), and returns without entering at all when completions are already
//!   in the ring and nothing is queued.
//! * **Multishot accept and receive.** One [`Proactor::accept_multi`] keeps yielding accepted
//!   sockets; one [`Proactor::recv_multi`] keeps yielding data in buffers the kernel picks from a
//!   registered *provided-buffer ring* ([`BufId`]; read it with [`Proactor::buffer`], give it
//!   back with [`Proactor::recycle`]). When the ring runs dry the kernel ends the receive with
//!   `ENOBUFS` (counted in [`CompletionCounters::enobufs`]); the caller recycles and resubmits.
//!   A completion with `more == false` is the last of its operation.
//! * **Setup flags for one thread per ring.** Where the kernel has them the ring is created
//!   with `IORING_SETUP_SINGLE_ISSUER` and `IORING_SETUP_DEFER_TASKRUN` (completions are run
//!   in batches when the thread enters, not by interrupting it), else `COOP_TASKRUN`; which were
//!   granted is in [`Proactor::setup_flags`]. With `SINGLE_ISSUER` the ring must be driven from
//!   the thread that created it.
//! * **Probe.** [`Proactor::open`] checks everything it needs — the opcodes, the provided-buffer
//!   ring, multishot accept and receive, cancellation by descriptor (each by a trial operation) —
//!   and fails with `Unsupported` naming every missing piece. [`probe_features`] reports each
//!   check for `ioscale mechanisms`.
//! * **Ownership.** A send's buffer ([`SendBuf`]) and a timeout's duration belong to the
//!   proactor until the operation completes and come back in its [`Completion`]; an accepted
//!   socket arrives as an `OwnedFd`. Operations are tracked in a table under
//!   `user_data = slot << 32 | generation`, so a completion can only ever be delivered under the
//!   token its own operation was submitted with.
//! * **Closing with operations in flight.** An in-flight operation holds a reference to its
//!   file: closing the descriptor does not end it. [`Proactor::cancel_and_close`] cancels every
//!   operation on the descriptor, then closes it (a hard link, so the close runs whatever the
//!   cancel found); the cancelled operations complete with `ECANCELED` under their own tokens.

use crate::sys::uring::{self as sys_ring, setup_refusal, BufRing, Sqe};
use crate::Token;
use io_uring::{cqueue, opcode, register::Probe, squeue, types, IoUring};
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sizes and flags for [`Proactor::open`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CompletionConfig {
    /// Submission-ring entries (1 to 32768).
    pub sq_entries: u32,
    /// Completion-ring entries (at least `sq_entries`, at most 65536).
    pub cq_entries: u32,
    /// Provided buffers for receives (a power of two, 1 to 32768).
    pub buffers: u16,
    /// Bytes per provided buffer (1 to 1 MiB).
    pub buffer_size: u32,
    /// Ask for `SINGLE_ISSUER` and `DEFER_TASKRUN` (falling back silently where the kernel lacks
    /// them; [`Proactor::setup_flags`] says what was granted).
    pub single_issuer: bool,
}

impl Default for CompletionConfig {
    fn default() -> Self {
        CompletionConfig {
            sq_entries: 256,
            cq_entries: 4096,
            buffers: 512,
            buffer_size: 4096,
            single_issuer: true,
        }
    }
}

/// What the proactor counted since it was opened.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CompletionCounters {
    /// Operations submitted (queued for the kernel).
    pub submitted: u64,
    /// Completions handed to the caller.
    pub completions: u64,
    /// `io_uring_enter` calls (submitting, waiting, or both).
    pub enter_calls: u64,
    /// Receives ended because the provided-buffer ring was empty (`ENOBUFS`).
    pub enobufs: u64,
    /// Times completions had to wait on the kernel's overflow list (`IORING_SQ_CQ_OVERFLOW`),
    /// plus completions the kernel dropped outright.
    pub cq_overflows: u64,
}

/// Which operation a completion belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum OpKind {
    /// One accept.
    Accept,
    /// A multishot accept.
    AcceptMulti,
    /// One receive into a provided buffer.
    Recv,
    /// A multishot receive into provided buffers.
    RecvMulti,
    /// A send.
    Send,
    /// A close.
    Close,
    /// A cancellation.
    Cancel,
    /// A timeout.
    Timeout,
    /// A read at an offset (of a file) into an owned buffer.
    Read,
    /// A one-shot poll: the descriptor is ready (writable).
    Poll,
}

/// The handle of a submitted operation, for [`Proactor::cancel`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpId(u64);

/// A provided buffer the kernel filled: read it with [`Proactor::buffer`], then give it back
/// with [`Proactor::recycle`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a received buffer must be recycled, or the buffer ring runs dry"]
pub struct BufId {
    bid: u16,
    len: usize,
}

impl BufId {
    /// Bytes received into it.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Debug)]
enum Data {
    Vec(Vec<u8>),
    Shared(Arc<[u8]>),
}

/// Bytes to send, owned by the proactor while the send is in flight and handed back in its
/// completion; a short send is finished by [`SendBuf::advance`] and sending it again.
#[derive(Debug)]
pub struct SendBuf {
    data: Data,
    start: usize,
    end: usize,
}

impl SendBuf {
    /// All of `v`.
    pub fn from_vec(v: Vec<u8>) -> SendBuf {
        let end = v.len();
        SendBuf { data: Data::Vec(v), start: 0, end }
    }

    /// `range` of a shared buffer (a cached file, say); an out-of-range end is clamped.
    pub fn shared(data: Arc<[u8]>, range: std::ops::Range<usize>) -> SendBuf {
        let end = range.end.min(data.len());
        let start = range.start.min(end);
        SendBuf { data: Data::Shared(data), start, end }
    }

    /// The bytes still to send.
    pub fn remaining(&self) -> &[u8] {
        match &self.data {
            Data::Vec(v) => &v[self.start..self.end],
            Data::Shared(s) => &s[self.start..self.end],
        }
    }

    /// Drops the first `n` bytes (those a send reported sent).
    pub fn advance(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Whether everything was sent.
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    /// The owned vector back, if it was one.
    pub fn into_vec(self) -> Option<Vec<u8>> {
        match self.data {
            Data::Vec(v) => Some(v),
            Data::Shared(_) => None,
        }
    }
}

/// What an operation produced.
#[derive(Debug)]
pub enum Value {
    /// An accepted socket (non-blocking, close-on-exec).
    Accepted(OwnedFd),
    /// Data in a provided buffer.
    Received(BufId),
    /// The peer shut down its write side (a receive returned 0).
    Eof,
    /// Bytes sent (possibly fewer than asked: a short send).
    Sent(usize),
    /// A close or a timeout removal succeeded.
    Done,
    /// Operations a cancellation found.
    Cancelled(usize),
    /// A timeout expired.
    Expired,
    /// Bytes read (0 at end of file); the buffer comes back holding exactly them.
    Read(usize),
    /// A poll found the descriptor ready: the `poll(2)` events it reported.
    Ready(u32),
}

/// One completion.
#[derive(Debug)]
pub struct Completion {
    /// The token the operation was submitted with.
    pub token: Token,
    /// The operation.
    pub op: OpId,
    /// Its kind.
    pub kind: OpKind,
    /// Its result (`ECANCELED` when cancelled, `ENOBUFS` when the buffer ring was empty).
    pub result: io::Result<Value>,
    /// Whether more completions of this (multishot) operation will come.
    pub more: bool,
    /// A send's buffer, handed back.
    pub buffer: Option<SendBuf>,
}

/// One check of what the proactor needs, for `ioscale mechanisms`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FeatureCheck {
    /// What was checked.
    pub name: &'static str,
    /// Whether the proactor cannot work without it.
    pub required: bool,
    /// Whether this kernel has it.
    pub supported: bool,
    /// Why not, or a note.
    pub note: Option<String>,
}

#[derive(Debug)]
struct Op {
    token: Token,
    kind: OpKind,
    gen: u32,
    send: Option<SendBuf>,
    timespec: Option<Box<types::Timespec>>,
}

/// The completion-based interface (see the module docs).
pub struct Proactor {
    // Dropped first: closing the ring ends every operation before the buffers are freed.
    ring: IoUring,
    bufs: BufRing,
    ops: Vec<Option<Op>>,
    free: Vec<u32>,
    next_gen: u32,
    in_flight: usize,
    dropped_seen: u32,
    flags: Vec<&'static str>,
    checks: Vec<FeatureCheck>,
    counters: CompletionCounters,
    /// Completion entries copied out of the ring before decoding (reused: no allocation per
    /// reap).
    scratch: Vec<cqueue::Entry>,
}

impl Drop for Proactor {
    /// Cancels every operation and waits (up to a second) for them all to finish before the
    /// buffers are freed: closing a ring tears it down asynchronously, so a receive still armed
    /// could otherwise write into freed memory. If they cannot be drained (the ring is dropped
    /// on a thread other than its single issuer), the buffers are leaked instead.
    fn drop(&mut self) {
        if self.in_flight > 0 {
            let _ = sys_ring::push(&mut self.ring, &Sqe::cancel_any(TRIAL));
            let deadline = Instant::now() + Duration::from_secs(1);
            let mut out = Vec::new();
            while self.in_flight > 0 && Instant::now() < deadline {
                out.clear();
                match self.complete(&mut out, Some(Duration::from_millis(50))) {
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        if self.in_flight > 0 {
            // Leak the memory rather than free what the kernel may still touch.
            std::mem::forget(std::mem::take(&mut self.ops));
            self.bufs.leak();
        }
    }
}

impl std::fmt::Debug for Proactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proactor")
            .field("setup_flags", &self.flags)
            .field("in_flight", &self.in_flight)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn check_config(c: &CompletionConfig) -> io::Result<()> {
    if c.sq_entries == 0 || c.sq_entries > 32768 {
        return Err(invalid(format!(
            "io_uring submission ring of {} entries: expected 1 to 32768",
            c.sq_entries
        )));
    }
    if c.cq_entries < c.sq_entries || c.cq_entries > 65536 {
        return Err(invalid(format!(
            "io_uring completion ring of {} entries: expected {} (the submission ring) to 65536",
            c.cq_entries, c.sq_entries
        )));
    }
    if c.buffers == 0 || !c.buffers.is_power_of_two() || c.buffers > 32768 {
        return Err(invalid(format!(
            "{} provided buffers: expected a power of two from 1 to 32768",
            c.buffers
        )));
    }
    if c.buffer_size == 0 || c.buffer_size > 1 << 20 {
        return Err(invalid(format!(
            "provided buffers of {} bytes: expected 1 to 1048576",
            c.buffer_size
        )));
    }
    Ok(())
}

/// Builds the ring with the best setup flags this kernel grants.
fn build(c: &CompletionConfig) -> io::Result<(IoUring, Vec<&'static str>)> {
    type Variant = (&'static [&'static str], fn(&mut io_uring::Builder));
    let variants: [Variant; 4] = [
        (&["SINGLE_ISSUER", "DEFER_TASKRUN", "TASKRUN_FLAG"], |b| {
            b.setup_single_issuer().setup_defer_taskrun().setup_taskrun_flag();
        }),
        (&["SINGLE_ISSUER", "COOP_TASKRUN", "TASKRUN_FLAG"], |b| {
            b.setup_single_issuer().setup_coop_taskrun().setup_taskrun_flag();
        }),
        (&["COOP_TASKRUN", "TASKRUN_FLAG"], |b| {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }),
        (&[], |_| {}),
    ];
    let mut last = None;
    for (names, apply) in variants {
        if !c.single_issuer && names.contains(&"SINGLE_ISSUER") {
            continue;
        }
        let mut b = IoUring::builder();
        b.setup_cqsize(c.cq_entries);
        apply(&mut b);
        match b.build(c.sq_entries) {
            Ok(r) => return Ok((r, names.to_vec())),
            // An unknown flag: try the next, older combination.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !names.is_empty() => last = Some(e),
            Err(e) => return Err(setup_refusal(e)),
        }
    }
    Err(setup_refusal(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))))
}

const TRIAL: u64 = 1 << 63;
/// The buffer group of the provided-buffer ring.
const BGID: u16 = 0;

/// Checks the opcodes, the buffer ring and (by trial operations) multishot accept and receive
/// and cancellation by descriptor, on a fresh ring whose buffer ring is registered as group
/// `BGID`. Returns every check.
fn run_checks(ring: &mut IoUring, bufs: &mut BufRing) -> Vec<FeatureCheck> {
    let mut checks = Vec::new();
    let p = ring.params();
    let mut flag = |name, required, ok: bool, why: &str| {
        checks.push(FeatureCheck {
            name,
            required,
            supported: ok,
            note: (!ok).then(|| why.to_string()),
        })
    };
    flag("IORING_FEAT_NODROP", true, p.is_feature_nodrop(), "needs Linux 5.5");
    flag("IORING_FEAT_EXT_ARG", true, p.is_feature_ext_arg(), "needs Linux 5.11");
    let mut probe = Probe::new();
    let probed = ring.submitter().register_probe(&mut probe);
    for (code, name, required) in [
        (opcode::Accept::CODE, "IORING_OP_ACCEPT", true),
        (opcode::Recv::CODE, "IORING_OP_RECV", true),
        (opcode::Send::CODE, "IORING_OP_SEND", true),
        (opcode::Close::CODE, "IORING_OP_CLOSE", true),
        (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL", true),
        (opcode::Timeout::CODE, "IORING_OP_TIMEOUT", true),
        (opcode::Splice::CODE, "IORING_OP_SPLICE", false),
        (opcode::Read::CODE, "IORING_OP_READ", true),
        (opcode::PollAdd::CODE, "IORING_OP_POLL_ADD", true),
    ] {
        let ok = probed.is_ok() && probe.is_supported(code);
        checks.push(FeatureCheck {
            name,
            required,
            supported: ok,
            note: (!ok).then(|| match &probed {
                Err(e) => format!("IORING_REGISTER_PROBE refused: {e}"),
                Ok(()) => "not in this kernel's opcode list".to_string(),
            }),
        });
    }
    // SAFETY: `bufs` outlives the io_uring: `Proactor` drops its ring first (field order) or
    // leaks the buffers, and `probe_features` drops the ring before the buffers.
    let reg = unsafe { bufs.register(ring, BGID) };
    checks.push(FeatureCheck {
        name: "provided-buffer ring (IORING_REGISTER_PBUF_RING)",
        required: true,
        supported: reg.is_ok(),
        note: reg.as_ref().err().map(|e| format!("refused ({e}); needs Linux 5.19")),
    });
    if reg.is_ok() {
        // Every buffer goes to the kernel now: the trial receive needs some, and so does the
        // proactor.
        for bid in 0..bufs.count() {
            bufs.provide(bid);
        }
    }
    let trial = if reg.is_ok() { trial_ops(ring) } else { Err(io::Error::other("no buffer ring")) };
    let (acc, recv, cancel) = match trial {
        Ok(t) => t,
        Err(e) => {
            let s = format!("could not be tried: {e}");
            (Err(s.clone()), Err(s.clone()), Err(s))
        }
    };
    for (name, r) in [
        ("multishot accept (Linux 5.19)", acc),
        ("multishot receive into provided buffers (Linux 6.0)", recv),
        ("cancellation by descriptor (Linux 5.19)", cancel),
    ] {
        checks.push(FeatureCheck { name, required: true, supported: r.is_ok(), note: r.err() });
    }
    checks
}

type Trial = (Result<(), String>, Result<(), String>, Result<(), String>);

fn trial_ops(ring: &mut IoUring) -> io::Result<Trial> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    let recv = opcode::RecvMulti::new(types::Fd(a.as_raw_fd()), BGID).build().user_data(TRIAL | 2);
    // SAFETY: the receive picks a buffer from the ring registered as BGID, which outlives the
    // io_uring (see `run_checks`); it points at no other memory.
    let pushed = sys_ring::push(ring, &Sqe::accept_multi(listener.as_raw_fd(), TRIAL | 1))
        && unsafe { sys_ring::push_all(ring, &[recv]) }
        && sys_ring::push(ring, &Sqe::cancel_fd(listener.as_raw_fd(), TRIAL | 3))
        && sys_ring::push(ring, &Sqe::cancel_fd(a.as_raw_fd(), TRIAL | 4));
    if !pushed {
        return Err(io::Error::other("submission ring too small for the trial"));
    }
    let mut res = [None::<i32>; 5];
    let deadline = Instant::now() + Duration::from_secs(5);
    while res[1..].iter().any(Option::is_none) && Instant::now() < deadline {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for c in ring.completion() {
            let i = (c.user_data() & 7) as usize;
            if c.user_data() & TRIAL != 0 && i < 5 && !cqueue::more(c.flags()) {
                res[i] = Some(c.result());
            }
        }
    }
    let op = |r: Option<i32>| match r {
        Some(r) if r >= 0 || r == -libc::ECANCELED => Ok(()),
        Some(r) => Err(format!("refused: {}", io::Error::from_raw_os_error(-r))),
        None => Err("the trial never completed".to_string()),
    };
    let cancel = match (res[3], res[4]) {
        (Some(x), _) if x < 0 => op(Some(x)),
        (_, Some(y)) if y < 0 => op(Some(y)),
        (Some(_), Some(_)) => Ok(()),
        _ => Err("the trial never completed".to_string()),
    };
    Ok((op(res[1]), op(res[2]), cancel))
}

/// Probes the kernel for everything the proactor needs, without failing: one entry per check
/// (the ring setup itself first). For `ioscale mechanisms`.
pub fn probe_features() -> Vec<FeatureCheck> {
    let c = CompletionConfig { buffers: 8, buffer_size: 64, ..CompletionConfig::default() };
    let mut bufs = match BufRing::new(c.buffers, c.buffer_size) {
        Ok(b) => b,
        Err(e) => {
            return vec![FeatureCheck {
                name: "buffer allocation",
                required: true,
                supported: false,
                note: Some(e.to_string()),
            }]
        }
    };
    let (mut ring, flags) = match build(&c) {
        Ok(r) => r,
        Err(e) => {
            return vec![FeatureCheck {
                name: "io_uring_setup",
                required: true,
                supported: false,
                note: Some(e.to_string()),
            }]
        }
    };
    let mut checks = vec![FeatureCheck {
        name: "io_uring_setup",
        required: true,
        supported: true,
        note: Some(if flags.is_empty() {
            "no single-thread setup flags granted".to_string()
        } else {
            format!("setup flags granted: {}", flags.join(", "))
        }),
    }];
    for (flag, required) in [("SINGLE_ISSUER", false), ("DEFER_TASKRUN", false)] {
        checks.push(FeatureCheck {
            name: if flag == "SINGLE_ISSUER" {
                "IORING_SETUP_SINGLE_ISSUER (Linux 6.0)"
            } else {
                "IORING_SETUP_DEFER_TASKRUN (Linux 6.1)"
            },
            required,
            supported: flags.contains(&flag),
            note: None,
        });
    }
    checks.extend(run_checks(&mut ring, &mut bufs));
    drop(ring);
    drop(bufs);
    checks
}

impl Proactor {
    /// Opens a proactor with the default sizes (see [`Proactor::open`]).
    pub fn new() -> io::Result<Proactor> {
        Self::open(CompletionConfig::default())
    }

    /// Opens a ring and its provided-buffer ring, probing everything it needs first; a kernel
    /// that lacks something gets `Unsupported` naming every missing piece.
    pub fn open(config: CompletionConfig) -> io::Result<Proactor> {
        check_config(&config)?;
        let mut bufs = BufRing::new(config.buffers, config.buffer_size)?;
        let (mut ring, flags) = build(&config)?;
        let checks = run_checks(&mut ring, &mut bufs);
        let missing: Vec<String> = checks
            .iter()
            .filter(|c| c.required && !c.supported)
            .map(|c| match &c.note {
                Some(n) => format!("{} ({n})", c.name),
                None => c.name.to_string(),
            })
            .collect();
        if !missing.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "this kernel's io_uring lacks what completion I/O needs: {}",
                    missing.join("; ")
                ),
            ));
        }
        let dropped_seen = ring.completion().overflow();
        Ok(Proactor {
            ring,
            bufs,
            ops: Vec::new(),
            free: Vec::new(),
            next_gen: 0,
            in_flight: 0,
            dropped_seen,
            flags,
            checks,
            counters: CompletionCounters::default(),
            scratch: Vec::with_capacity(config.cq_entries as usize),
        })
    }

    /// The setup flags the kernel granted (e.g. `SINGLE_ISSUER`, `DEFER_TASKRUN`).
    pub fn setup_flags(&self) -> &[&'static str] {
        &self.flags
    }

    /// The checks made at open.
    pub fn features(&self) -> &[FeatureCheck] {
        &self.checks
    }

    /// What it counted so far.
    pub fn counters(&self) -> CompletionCounters {
        self.counters
    }

    /// Operations submitted and not yet finished (multishot ones count until their last
    /// completion).
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Provided buffers currently held by the caller (received and not recycled).
    pub fn buffers_lent(&self) -> usize {
        self.bufs.lent()
    }

    /// The bytes of a received buffer.
    pub fn buffer(&self, b: &BufId) -> &[u8] {
        self.bufs.slice(b.bid, b.len)
    }

    /// Gives a received buffer back to the kernel.
    pub fn recycle(&mut self, b: BufId) {
        if self.bufs.is_lent(b.bid) {
            self.bufs.provide(b.bid);
        }
    }

    fn slot(&mut self, token: Token, kind: OpKind) -> (usize, u64) {
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let op = Op { token, kind, gen, send: None, timespec: None };
        let i = match self.free.pop() {
            Some(i) => {
                self.ops[i as usize] = Some(op);
                i as usize
            }
            None => {
                self.ops.push(Some(op));
                self.ops.len() - 1
            }
        };
        self.in_flight += 1;
        (i, ((i as u64) << 32) | u64::from(gen))
    }

    fn release(&mut self, i: usize) -> Option<Op> {
        let op = self.ops.get_mut(i)?.take()?;
        self.free.push(i as u32);
        self.in_flight -= 1;
        Some(op)
    }

    /// Queues `entries` (built with user data `ud`) for the operation in slot `i`; on failure
    /// the slot is released.
    ///
    /// # Safety
    ///
    /// Memory the entries point to must stay valid until the operation completes (it must be
    /// owned by the slot, or be the buffer ring).
    unsafe fn queue(&mut self, i: usize, entries: &[squeue::Entry]) -> io::Result<OpId> {
        let ud = entries.last().map_or(0, |e| e.get_user_data());
        // SAFETY: the caller's contract covers the entries' memory.
        if !unsafe { sys_ring::push_all(&mut self.ring, entries) } {
            if let Err(e) = self.enter(0, None) {
                self.release(i);
                return Err(e);
            }
            // SAFETY: the same entries as the first attempt; the caller's contract covers their
            // memory.
            if !unsafe { sys_ring::push_all(&mut self.ring, entries) } {
                self.release(i);
                return Err(io::Error::other("io_uring submission ring full after a submit"));
            }
        }
        self.counters.submitted += entries.len() as u64;
        Ok(OpId(ud))
    }

    fn simple(
        &mut self,
        token: Token,
        kind: OpKind,
        build: impl FnOnce() -> squeue::Entry,
    ) -> io::Result<OpId> {
        let (i, ud) = self.slot(token, kind);
        let e = build().user_data(ud);
        // SAFETY: the entries built by callers of `simple` point at no memory of this process.
        unsafe { self.queue(i, &[e]) }
    }

    /// Accepts one connection on the listening socket `fd`.
    pub fn accept(&mut self, fd: RawFd, token: Token) -> io::Result<OpId> {
        self.simple(token, OpKind::Accept, || {
            opcode::Accept::new(types::Fd(fd), std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                .build()
        })
    }

    /// Accepts connections on `fd` until cancelled or ended by the kernel (`more == false`).
    pub fn accept_multi(&mut self, fd: RawFd, token: Token) -> io::Result<OpId> {
        self.simple(token, OpKind::AcceptMulti, || {
            opcode::AcceptMulti::new(types::Fd(fd))
                .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                .build()
        })
    }

    /// Receives once into a provided buffer.
    pub fn recv(&mut self, fd: RawFd, token: Token) -> io::Result<OpId> {
        let len = self.bufs.size();
        self.simple(token, OpKind::Recv, || {
            opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), len)
                .buf_group(BGID)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT)
        })
    }

    /// Receives into provided buffers until the peer shuts down, an error, a cancellation or an
    /// empty buffer ring (`ENOBUFS`) ends it (`more == false`).
    pub fn recv_multi(&mut self, fd: RawFd, token: Token) -> io::Result<OpId> {
        self.simple(token, OpKind::RecvMulti, || {
            opcode::RecvMulti::new(types::Fd(fd), BGID).build()
        })
    }

    /// Sends `buf`'s remaining bytes (`MSG_NOSIGNAL`); the buffer comes back in the completion,
    /// with the count sent (which may be short).
    pub fn send(&mut self, fd: RawFd, buf: SendBuf, token: Token) -> io::Result<OpId> {
        let (i, ud) = self.slot(token, OpKind::Send);
        let rem = buf.remaining();
        let (ptr, len) = (rem.as_ptr(), rem.len().min(u32::MAX as usize) as u32);
        if let Some(Some(op)) = self.ops.get_mut(i) {
            op.send = Some(buf); // the heap bytes do not move with the SendBuf
        }
        let e = opcode::Send::new(types::Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(ud);
        // SAFETY: the bytes belong to the SendBuf now held in slot `i` until the completion.
        unsafe { self.queue(i, &[e]) }
    }

    /// Closes `fd` (taking it). Operations still in flight on it keep its file open: see
    /// [`Proactor::cancel_and_close`].
    pub fn close(&mut self, fd: OwnedFd, token: Token) -> io::Result<OpId> {
        let raw = fd.into_raw_fd();
        self.simple(token, OpKind::Close, || opcode::Close::new(types::Fd(raw)).build())
    }

    /// Cancels every operation on `fd`, then closes it: two completions under `token` (a
    /// [`OpKind::Cancel`] with the count found, then the [`OpKind::Close`]).
    pub fn cancel_and_close(&mut self, fd: OwnedFd, token: Token) -> io::Result<(OpId, OpId)> {
        let raw = fd.into_raw_fd();
        let (ci, cud) = self.slot(token, OpKind::Cancel);
        let (xi, xud) = self.slot(token, OpKind::Close);
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(raw)).all())
            .build()
            .user_data(cud)
            .flags(squeue::Flags::IO_HARDLINK);
        let close = opcode::Close::new(types::Fd(raw)).build().user_data(xud);
        // SAFETY: neither entry points at memory of this process.
        let r = unsafe { self.queue(xi, &[cancel, close]) };
        if let Err(e) = r {
            self.release(ci);
            return Err(e);
        }
        Ok((OpId(cud), OpId(xud)))
    }

    /// Cancels the operation `target` (it completes with `ECANCELED`); this cancellation
    /// completes with the count found (0 or an `ENOENT` error when it had already finished).
    pub fn cancel(&mut self, target: OpId, token: Token) -> io::Result<OpId> {
        self.simple(token, OpKind::Cancel, || opcode::AsyncCancel::new(target.0).build())
    }

    /// Cancels every operation on `fd`.
    pub fn cancel_fd(&mut self, fd: RawFd, token: Token) -> io::Result<OpId> {
        self.simple(token, OpKind::Cancel, || {
            opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all()).build()
        })
    }

    /// Reads up to `buf.len()` bytes of `fd` at `offset` into `buf` (a file being served, say).
    /// The buffer comes back in the completion as a [`SendBuf`] holding exactly the bytes read,
    /// ready to be sent; the count is in [`Value::Read`].
    pub fn read_at(
        &mut self,
        fd: RawFd,
        buf: Vec<u8>,
        offset: u64,
        token: Token,
    ) -> io::Result<OpId> {
        let (i, ud) = self.slot(token, OpKind::Read);
        let mut buf = buf;
        let (ptr, len) = (buf.as_mut_ptr(), buf.len().min(u32::MAX as usize) as u32);
        if let Some(Some(op)) = self.ops.get_mut(i) {
            op.send = Some(SendBuf::from_vec(buf)); // the heap bytes do not move
        }
        let e = opcode::Read::new(types::Fd(fd), ptr, len).offset(offset).build().user_data(ud);
        // SAFETY: the bytes belong to the buffer held in slot `i` until the completion, and
        // nothing reads them until then.
        unsafe { self.queue(i, &[e]) }
    }

    /// Completes with [`Value::Ready`] once `fd` is writable (`POLLOUT`, or an error or hang-up
    /// on it): one-shot. For output the caller writes itself when the descriptor can take it
    /// (a `sendfile` of a large file, with no copy in user memory).
    pub fn poll_writable(&mut self, fd: RawFd, token: Token) -> io::Result<OpId> {
        self.simple(token, OpKind::Poll, || {
            opcode::PollAdd::new(types::Fd(fd), libc::POLLOUT as u32).build()
        })
    }

    /// Completes with [`Value::Expired`] after `after` (or `ECANCELED` if cancelled first).
    pub fn timeout(&mut self, after: Duration, token: Token) -> io::Result<OpId> {
        let (i, ud) = self.slot(token, OpKind::Timeout);
        let ts = Box::new(types::Timespec::from(after));
        let e = opcode::Timeout::new(&*ts as *const types::Timespec).build().user_data(ud);
        if let Some(Some(op)) = self.ops.get_mut(i) {
            op.timespec = Some(ts); // the box's heap address does not move
        }
        // SAFETY: the timespec is owned by slot `i` until the completion.
        unsafe { self.queue(i, &[e]) }
    }

    /// One `io_uring_enter`: submits what is queued and waits for `want` completions, at most
    /// `left` (`None`: no limit). Returns `false` if interrupted.
    fn enter(&mut self, want: usize, left: Option<Duration>) -> io::Result<bool> {
        self.counters.enter_calls += 1;
        let r = match left {
            Some(d) if want > 0 => {
                let ts = types::Timespec::from(d);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
            _ => self.ring.submit_and_wait(want),
        };
        match r {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME) | Some(libc::EBUSY)) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn needs_enter_to_look(&mut self) -> bool {
        let sq = self.ring.submission();
        !sq.is_empty() || sq.cq_overflow() || sq.taskrun()
    }

    /// Submits what is queued without waiting (one enter, if anything is queued).
    pub fn submit(&mut self) -> io::Result<()> {
        if self.needs_enter_to_look() {
            self.enter(0, None)?;
        }
        Ok(())
    }

    /// Submits what is queued, waits until at least one completion or `timeout` (`None`:
    /// forever; `Some(0)`: just look), and appends the completions to `out`. Returns how many
    /// were appended (0 on timeout or interruption). Makes no system call when completions are
    /// already in the ring and nothing is queued.
    pub fn complete(
        &mut self,
        out: &mut Vec<Completion>,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let start = out.len();
        self.reap(out)?;
        if out.len() > start {
            if !self.ring.submission().is_empty() {
                self.enter(0, None)?;
                self.reap(out)?;
            }
            return Ok(out.len() - start);
        }
        if timeout == Some(Duration::ZERO) {
            if self.needs_enter_to_look() {
                self.enter(0, None)?;
                self.reap(out)?;
            }
            return Ok(out.len() - start);
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let left = match deadline {
                None => None,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(0);
                    }
                    Some(d - now)
                }
            };
            if !self.enter(1, left)? {
                return Ok(0);
            }
            self.reap(out)?;
            if out.len() > start {
                return Ok(out.len() - start);
            }
        }
    }

    /// Moves every completion in the ring to `out`, flushing the kernel's overflow list.
    fn reap(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
        for _ in 0..8 {
            let mut batch = std::mem::take(&mut self.scratch);
            batch.extend(self.ring.completion());
            for c in batch.drain(..) {
                self.decode(c.user_data(), c.result(), c.flags(), out);
            }
            self.scratch = batch;
            let dropped = self.ring.completion().overflow();
            if dropped != self.dropped_seen {
                // Lost for good (the kernel could not even queue them): counted, not recoverable.
                self.counters.cq_overflows += u64::from(dropped.wrapping_sub(self.dropped_seen));
                self.dropped_seen = dropped;
            }
            if !self.ring.submission().cq_overflow() {
                break;
            }
            self.counters.cq_overflows += 1;
            self.enter(0, None)?;
        }
        Ok(())
    }

    fn decode(&mut self, ud: u64, res: i32, flags: u32, out: &mut Vec<Completion>) {
        if ud & TRIAL != 0 {
            return;
        }
        let i = (ud >> 32) as usize;
        let gen = ud as u32;
        let Some(Some(op)) = self.ops.get(i) else { return };
        if op.gen != gen {
            return;
        }
        let (token, kind) = (op.token, op.kind);
        let multishot = matches!(kind, OpKind::AcceptMulti | OpKind::RecvMulti);
        let more = multishot && cqueue::more(flags);
        let mut buffer = if more { None } else { self.release(i).and_then(|op| op.send) };
        if kind == OpKind::Read {
            if let Some(b) = buffer.as_mut() {
                b.end = if res > 0 { (res as usize).min(b.end) } else { 0 };
            }
        }
        let result = if res < 0 {
            if res == -libc::ENOBUFS {
                self.counters.enobufs += 1;
            }
            if kind == OpKind::Timeout && res == -libc::ETIME {
                Ok(Value::Expired)
            } else {
                // A buffer the kernel picked but could not fill is not returned; nothing lent.
                Err(io::Error::from_raw_os_error(-res))
            }
        } else {
            let n = res as usize;
            Ok(match kind {
                OpKind::Accept | OpKind::AcceptMulti => {
                    // SAFETY: a successful accept's result is a new descriptor that nothing
                    // else owns.
                    Value::Accepted(unsafe { ioscale_sys::fd::owned(res) })
                }
                OpKind::Recv | OpKind::RecvMulti => match cqueue::buffer_select(flags) {
                    Some(bid) if self.bufs.lend(bid) => {
                        if n == 0 {
                            // An empty buffer: give it straight back.
                            self.bufs.provide(bid);
                            Value::Eof
                        } else {
                            Value::Received(BufId { bid, len: n })
                        }
                    }
                    _ => Value::Eof,
                },
                OpKind::Send => Value::Sent(n),
                OpKind::Close => Value::Done,
                OpKind::Cancel => Value::Cancelled(n),
                OpKind::Timeout => Value::Done,
                OpKind::Read => Value::Read(n),
                OpKind::Poll => Value::Ready(n as u32),
            })
        };
        self.counters.completions += 1;
        out.push(Completion { token, op: OpId(ud), kind, result, more, buffer });
    }
}
