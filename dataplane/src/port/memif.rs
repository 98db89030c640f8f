//! memif port: VPP's shared-memory packet interface, protocol 2.0, in either role.
//!
//! Wire format and ring layout: [`crate::proto::memif`] (libmemif's and DPDK
//! `net_memif`'s `memif.h`); the exchange follows DPDK's `memif_socket.c` and
//! libmemif, so `dpdk-testpmd --vdev net_memif0,...` and VPP's memif interfaces are
//! peers (`dataplane/tests/memif_testpmd.rs` runs testpmd in both roles).
//!
//! **Roles.** The *master* (memif "server") listens on the unix socket path; the
//! *slave* ("client") connects to it, retrying every [`Config::retry`] until a master
//! answers. The slave owns the memory: one `memfd` region (sealed against shrinking)
//! holds its transmit rings (C2S), its receive rings (S2C) and `2 × 2^log2` buffers
//! of [`Config::buf_size`] bytes per ring pair, sent to the master with `ADD_REGION`
//! (fd passing, `SCM_RIGHTS`); each ring comes with an eventfd in `ADD_RING` as the
//! protocol expects, but both sides poll: we set [`RING_FLAG_MASK_INT`] on the rings
//! we receive from and never wait on an eventfd.
//!
//! **Ring pairs** ([`Config::queues`], `memif:PATH,queues=N`, 1 to [`MAX_QUEUES`]).
//! A master's `HELLO` allows ring indices `0..N` each way (`max_c2s_ring` and
//! `max_s2c_ring` are the largest index, `N - 1`) and refuses an `ADD_RING` with a
//! higher index. A slave asks for as many pairs as it wants and the master's maxima
//! allow ([`Hello::ring_pairs`]): `ADD_RING` for C2S rings `0..n`, then S2C rings
//! `0..n`, C2S ring `q` at `q × ring size` in region 0 and S2C ring `q` after all the
//! C2S rings, then a copying slave's buffers, pair by pair. Pair `q` is C2S ring `q`
//! with S2C ring `q`; each has its own descriptors, buffers and, for a zero-copy
//! slave, its own posted engine buffers. At `CONNECT` a master needs rings `0..k`
//! each way without a gap; with more rings one way than the other (a DPDK peer with
//! `--rxq` ≠ `--txq`) the extra ones are not served. [`MemifPort`] serves pair 0 and
//! runs the control socket inline; [`open_queues`] gives one [`MemifQueue`] per pair
//! for one worker each, with the control socket on a thread of its own that pauses
//! the pairs (a lock-free handshake, as the multi-queue vhost-user device does) only
//! while it brings the link up or down. A link with fewer pairs than queues (the
//! peer asked for or allowed fewer) leaves the extra queues down.
//!
//! **Copies.** A *zero-copy slave* ([`Config::zero_copy`], the default) posts engine
//! packet buffers on its rings. Its region 0 holds only the two rings; region 1 is
//! the process's shared buffer region ([`shared_pool`]: one sealed memfd whose
//! [`SHARED_BUFFERS`] buffers are an engine [`Pool`], mapped once and sent to every
//! master). The receive ring (S2C) is posted with empty buffers of that pool (offset
//! = the buffer's data room, length [`DATA_ROOM`]); a frame the master wrote there is
//! handed to the engine as that very packet and the slot is posted again with a
//! fresh buffer. On transmit (C2S) the descriptor points at the packet's own data,
//! and the packet is kept until the master's `tail` passes it, then freed. So a frame
//! received on one memif port and sent on another is never copied: the same buffer
//! goes S2C on the first link and C2S on the second — what DPDK's `zero-copy=yes`
//! client does with its mempool. Copies remain only where a packet is not in the
//! shared region (a packet of the worker's pool, e.g. one the VNF built) or the
//! master chained a frame over several descriptors; [`MemifCounters::zc_frames`] and
//! [`MemifCounters::zc_copies`] count both cases. The price: every master this
//! process serves maps the whole shared region, so it can read and write the frames
//! of the other memif links too — give `memif:PATH,copy` (a region per link, copies
//! both ways, as before) when the masters are not equally trusted.
//!
//! The *master* must copy both ways; the protocol leaves it no choice: all buffers
//! belong to the slave's regions, the master may only fill (S2C) or drain (C2S) the
//! buffers the slave posted and must hand each descriptor back (advance `tail` or
//! `head`) before the slave can reuse it, so it can neither give the engine a buffer
//! it must return within the burst nor put an engine buffer of its own on a ring. VPP
//! and DPDK's `net_memif` server copy for the same reason.
//!
//! **Fast path.** `rx_burst`/`tx_burst` move descriptors and copy bytes; they do not
//! allocate, lock or make system calls, except for a non-blocking look at the control
//! socket every [`CTRL_EVERY`] calls while the link is up (every [`CTRL_EVERY_DOWN`]
//! while it is down, to connect, accept or continue the handshake; setting up or
//! tearing down a link allocates and maps memory, as start-up does).
//! `dataplane/tests/memif_noalloc.rs` checks the bursts with a counting allocator. A frame longer than a
//! buffer is chained over descriptors ([`DESC_FLAG_NEXT`]) on transmit and reassembled
//! on receive, up to [`DATA_ROOM`] bytes.
//!
//! **Bad peers.** Every control message is checked (size, type, version, interface
//! id, secret, order, region fd present, region size within the passed file, ring
//! inside its region, ring cookie); a failure sends `DISCONNECT` with the reason,
//! closes the connection, counts [`MemifCounters::ctrl_errors`] and keeps the reason
//! in [`MemifPort::last_error`]. On the rings, a peer index that claims more entries
//! than the ring holds drops the connection ([`MemifCounters::ring_errors`]); a
//! descriptor pointing outside the peer's regions is dropped and counted
//! ([`MemifCounters::bad_desc`]). A peer that goes away (socket closed or
//! `DISCONNECT`) takes the link down ([`MemifCounters::link_down`]); frames sent
//! meanwhile are dropped and counted (`tx_dropped`, [`MemifCounters::down_tx_drops`]);
//! the slave reconnects and the master accepts the next connection. Nothing panics.
//!
//! **Limits.** At most [`MAX_QUEUES`] ring pairs, served as pairs (C2S and S2C ring
//! `q` together); Ethernet mode only; no interrupt mode; the secret is
//! checked as the C peers do (NUL-terminated, up to 24 bytes); the socket path is a
//! file-system path (DPDK peers need `socket-abstract=no`).

use super::gate::Gate;
use super::{Port, PortStats};
use crate::batch::Batch;
use crate::buf::{Pkt, Pool, PoolCache, BUF_SIZE, DATA_ROOM, HEADROOM};
use crate::proto::memif::{
    self as wire, fixed, ring_bytes, AddRing, Hello, Init, Msg, DESC_FLAGS, DESC_FLAG_NEXT,
    DESC_LENGTH, DESC_OFFSET, DESC_REGION, DESC_SIZE, MAX_LOG2_RING, MSG_SIZE, RING_COOKIE,
    RING_FLAGS, RING_FLAG_MASK_INT, RING_HDR, RING_HEAD, RING_TAIL, SECRET_LEN, VERSION,
};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// While the link is up, the control socket is read every this many bursts.
pub const CTRL_EVERY: u32 = 256;
/// While the link is down (connecting, handshake), every this many bursts.
pub const CTRL_EVERY_DOWN: u32 = 8;
/// Queue pairs a port may have (`queues=N`; ring indices 0..N each way).
pub const MAX_QUEUES: u16 = 16;
/// Regions a master accepts from its slave.
pub const MAX_REGIONS: usize = 16;
/// Largest region a master maps (16 GiB).
const MAX_REGION_SIZE: u64 = 1 << 34;
/// Buffers in the process's shared buffer region (zero-copy slaves; see
/// [`shared_pool`]): 16384 × [`BUF_SIZE`] = 36 MiB of memfd, of which only the pages
/// touched are backed. Each zero-copy slave link holds up to two rings' worth
/// (2 × 2^`log2_ring`) posted or in flight per ring pair: 8 pairs of 1024-slot
/// rings fill it (a pair that finds the region empty posts what it gets and the
/// rest on later bursts).
pub const SHARED_BUFFERS: u32 = 16384;
/// Region index of the shared buffer region in a zero-copy slave's `ADD_REGION`s
/// (region 0 holds its rings).
const SHARED_REGION: u16 = 1;

/// memif role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Listens on the socket, maps the slave's memory ("server").
    Master,
    /// Connects, owns the memory ("client").
    Slave,
}

/// Port settings.
#[derive(Clone)]
pub struct Config {
    pub role: Role,
    /// Interface id: the master serves the slave whose `INIT` names this id.
    pub id: u32,
    /// Shared secret (at most 24 bytes); never printed.
    pub secret: Option<String>,
    /// log2 of the ring size the slave offers (the master's `HELLO` may lower it).
    pub log2_ring: u8,
    /// Buffer size the slave lays out in its region.
    pub buf_size: u32,
    /// Slave: time between connection attempts.
    pub retry: Duration,
    /// Time a handshake may take before the connection is dropped.
    pub handshake_timeout: Duration,
    /// Interface name sent to the peer (`INIT`, `CONNECT`, `CONNECTED`, `HELLO`).
    pub if_name: String,
    /// Slave: post engine buffers of the process's shared region ([`shared_pool`])
    /// on the rings, so frames are received and sent without a copy (`false`: copy
    /// into and out of a region of the link's own, as before). A master always
    /// copies (the buffers are the slave's).
    pub zero_copy: bool,
    /// Queue pairs (1..=[`MAX_QUEUES`]): a slave asks for this many rings each way
    /// (fewer if the master's `HELLO` allows fewer), a master allows this many.
    /// [`MemifPort`] serves pair 0; [`open_queues`] gives one port per pair.
    pub queues: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            role: Role::Slave,
            id: 0,
            secret: None,
            log2_ring: 10,
            buf_size: 2048,
            retry: Duration::from_millis(200),
            handshake_timeout: Duration::from_secs(3),
            if_name: "dataplane".into(),
            zero_copy: true,
            queues: 1,
        }
    }
}

/// Errors of opening a memif port.
#[derive(Debug, thiserror::Error)]
pub enum MemifError {
    #[error("socket path {0:?} is empty or longer than 107 bytes")]
    Path(PathBuf),
    #[error("bad setting: {0}")]
    Config(&'static str),
    #[error("socket {path:?} is in use by a listening process")]
    InUse { path: PathBuf },
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        source: io::Error,
    },
}

/// memif-specific counters (beyond [`PortStats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemifCounters {
    /// Times the link came up (handshake completed).
    pub link_up: u64,
    /// Times an up link went down (peer closed, `DISCONNECT`, error).
    pub link_down: u64,
    /// Control connections dropped for a malformed, unexpected or refused message,
    /// an invalid region or ring, or a handshake timeout.
    pub ctrl_errors: u64,
    /// Slave: connection attempts that found no master.
    pub connect_failures: u64,
    /// Received descriptors outside the peer's regions or longer than a buffer.
    pub bad_desc: u64,
    /// Peer ring indices claiming more entries than the ring holds.
    pub ring_errors: u64,
    /// Frames dropped by `tx_burst` while the link was down.
    pub down_tx_drops: u64,
    /// Zero-copy slave: frames received or sent in place, as engine buffers of the
    /// shared region.
    pub zc_frames: u64,
    /// Zero-copy slave: frames copied anyway — sent from a buffer outside the shared
    /// region (a packet of another pool) or received over a descriptor chain.
    pub zc_copies: u64,
}

/// An `mmap`ed shared region, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn map(fd: RawFd, len: usize) -> io::Result<Mapping> {
        // SAFETY: maps `len` bytes of a file we hold; the result is checked.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr: p.cast(), len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from our successful mmap.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The process's shared buffer region: one memfd (sealed against shrinking),
/// mapped once for the life of the process, whose [`SHARED_BUFFERS`] buffers form an
/// engine [`Pool`]. Every zero-copy slave link sends it to its master as region
/// [`SHARED_REGION`], so a frame received on one memif port is sent on another from
/// the same buffer.
struct Shared {
    pool: &'static Pool,
    fd: OwnedFd,
    len: usize,
}

static SHARED: OnceLock<Result<Shared, (&'static str, i32)>> = OnceLock::new();

fn make_shared() -> Result<Shared, (&'static str, i32)> {
    let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let len = SHARED_BUFFERS as usize * BUF_SIZE;
    // SAFETY: memfd_create with a NUL-terminated name.
    let fd = unsafe {
        libc::memfd_create(
            c"memif_buffers".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(("memfd_create shared buffers", errno()));
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: size the memfd, then forbid shrinking it (masters check the seal).
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
        return Err(("ftruncate shared buffers", errno()));
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) } != 0 {
        return Err(("seal shared buffers", errno()));
    }
    let m = Mapping::map(fd.as_raw_fd(), len)
        .map_err(|e| ("mmap shared buffers", e.raw_os_error().unwrap_or(0)))?;
    let base = core::ptr::NonNull::new(m.ptr).ok_or(("mmap shared buffers", 0))?;
    // Mapped for the rest of the process: the pool's packets live there.
    core::mem::forget(m);
    // SAFETY: `len` = SHARED_BUFFERS × BUF_SIZE bytes at a page-aligned address,
    // never unmapped; only the pool's packets and the masters we hand the memfd to
    // (through the memif rings) touch them.
    let pool = unsafe { Pool::from_raw(base, SHARED_BUFFERS) }.ok_or(("shared pool", 0))?;
    Ok(Shared { pool, fd, len })
}

fn shared() -> Result<&'static Shared, MemifError> {
    SHARED
        .get_or_init(make_shared)
        .as_ref()
        .map_err(|&(what, e)| MemifError::Sys {
            what,
            source: io::Error::from_raw_os_error(e),
        })
}

/// The pool of the process's shared buffer region (made on first use): zero-copy
/// slaves receive into its buffers and send its packets without a copy. A VNF that
/// builds packets itself may take them from this pool so that they, too, leave over
/// memif without a copy.
pub fn shared_pool() -> Result<&'static Pool, MemifError> {
    shared().map(|s| s.pool)
}

/// A ring inside a mapping (bounds checked when it was made).
#[derive(Clone, Copy)]
struct RingView {
    base: *mut u8,
    size: u16,
}

impl RingView {
    /// The ring at `off` in `m`, when `2^log2` descriptors fit and the offset is
    /// 8-byte aligned.
    fn new(m: &Mapping, off: usize, log2: u8) -> Option<RingView> {
        if log2 > MAX_LOG2_RING || !off.is_multiple_of(8) {
            return None;
        }
        let end = off.checked_add(ring_bytes(log2))?;
        (end <= m.len).then(|| RingView {
            // SAFETY: off < end <= len: inside the mapping.
            base: unsafe { m.ptr.add(off) },
            size: 1 << log2,
        })
    }
    #[inline(always)]
    fn mask(&self) -> u16 {
        self.size - 1
    }
    #[inline(always)]
    fn head(&self) -> &AtomicU16 {
        // SAFETY: 2-aligned u16 inside the header (base is 8-aligned).
        unsafe { AtomicU16::from_ptr(self.base.add(RING_HEAD).cast()) }
    }
    #[inline(always)]
    fn tail(&self) -> &AtomicU16 {
        // SAFETY: as for head.
        unsafe { AtomicU16::from_ptr(self.base.add(RING_TAIL).cast()) }
    }
    fn cookie(&self) -> u32 {
        // SAFETY: 4-aligned u32 at the ring's start.
        unsafe { self.base.add(RING_COOKIE).cast::<u32>().read_volatile() }
    }
    fn init(&self, flags: u16) {
        // SAFETY: header fields inside the ring.
        unsafe {
            self.base
                .add(RING_COOKIE)
                .cast::<u32>()
                .write_volatile(wire::COOKIE);
            self.base
                .add(RING_FLAGS)
                .cast::<u16>()
                .write_volatile(flags);
        }
        self.head().store(0, Ordering::Release);
        self.tail().store(0, Ordering::Release);
    }
    fn set_flags(&self, flags: u16) {
        // SAFETY: header field inside the ring.
        unsafe {
            self.base
                .add(RING_FLAGS)
                .cast::<u16>()
                .write_volatile(flags)
        };
    }
    #[inline(always)]
    fn desc(&self, idx: u16) -> Desc {
        // SAFETY: slot < size: inside the ring; descriptors are 16-byte records at an
        // 8-aligned base.
        Desc(unsafe {
            self.base
                .add(RING_HDR + (idx & self.mask()) as usize * DESC_SIZE)
        })
    }
}

/// One descriptor in shared memory; every field is read or written once, volatile.
#[derive(Clone, Copy)]
struct Desc(*mut u8);

impl Desc {
    #[inline(always)]
    fn flags(self) -> u16 {
        // SAFETY: field inside the descriptor (see RingView::desc).
        unsafe { self.0.add(DESC_FLAGS).cast::<u16>().read_volatile() }
    }
    #[inline(always)]
    fn region(self) -> u16 {
        // SAFETY: as above.
        unsafe { self.0.add(DESC_REGION).cast::<u16>().read_volatile() }
    }
    #[inline(always)]
    fn length(self) -> u32 {
        // SAFETY: as above.
        unsafe { self.0.add(DESC_LENGTH).cast::<u32>().read_volatile() }
    }
    #[inline(always)]
    fn offset(self) -> u32 {
        // SAFETY: as above.
        unsafe { self.0.add(DESC_OFFSET).cast::<u32>().read_volatile() }
    }
    #[inline(always)]
    fn write(self, flags: u16, region: u16, length: u32, offset: u32) {
        // SAFETY: as above.
        unsafe {
            self.0.add(DESC_FLAGS).cast::<u16>().write_volatile(flags);
            self.0.add(DESC_REGION).cast::<u16>().write_volatile(region);
            self.0.add(DESC_LENGTH).cast::<u32>().write_volatile(length);
            self.0.add(DESC_OFFSET).cast::<u32>().write_volatile(offset);
        }
    }
    #[inline(always)]
    fn set_len_flags(self, flags: u16, length: u32) {
        // SAFETY: as above.
        unsafe {
            self.0.add(DESC_FLAGS).cast::<u16>().write_volatile(flags);
            self.0.add(DESC_LENGTH).cast::<u32>().write_volatile(length);
        }
    }
}

/// Where a slave's buffers are: slot `j` of its transmit ring at `buf_off + j *
/// buf_size`, slot `j` of its receive ring at `buf_off + (size + j) * buf_size`, all
/// in region 0.
#[derive(Clone, Copy)]
struct SlaveBufs {
    buf_off: usize,
    buf_size: u32,
}

/// One queue pair of a connected link: our two rings (ring index `q` in each
/// direction) and where we are on them. A queue pair's worker alone touches it.
struct Pair {
    /// Our transmit ring (slave: C2S, master: S2C) and receive ring.
    tx: RingView,
    rx: RingView,
    /// Our producer index on `tx` (slave: C2S head; master: S2C tail).
    tx_idx: u16,
    /// Our consumer index on `rx` (slave: S2C tail seen; master: C2S head seen).
    rx_idx: u16,
    /// Slave: buffers posted on the receive ring (S2C head).
    rx_posted: u16,
    /// Slave (either mode): where this pair's own buffers are in region 0 (a
    /// zero-copy slave has none there and posts engine buffers instead); `None`:
    /// master.
    slave: Option<SlaveBufs>,
    /// Zero-copy slave: the engine buffers on this pair's rings.
    zc: Option<Zc>,
}

/// A connected link: the mapped regions and one [`Pair`] per queue pair.
struct Link {
    regions: Vec<Mapping>,
    /// Queue pair `q` (ring index `q` each way); each cell is touched by the pair's
    /// user only (the port itself, or the [`MemifQueue`] of pair `q`).
    pairs: Box<[UnsafeCell<Pair>]>,
    /// memfd and eventfds kept open for the life of the link.
    _fds: Vec<OwnedFd>,
}

/// A zero-copy slave's buffers: which engine packet sits behind each descriptor of
/// its two rings. Dropping it (link down, port closed) returns them to the pool.
struct Zc {
    shared: &'static Shared,
    /// Receive ring (S2C) slot → the empty buffer posted there.
    rx_bufs: Vec<Option<Pkt>>,
    /// Transmit ring (C2S) slot → the packet sent from there until the master's
    /// tail passes it.
    tx_bufs: Vec<Option<Pkt>>,
    /// Transmit entries given back so far (trails the master's C2S tail).
    tx_done: u16,
}

impl Zc {
    fn new(shared: &'static Shared, size: u16) -> Zc {
        let mut rx_bufs = Vec::with_capacity(size as usize);
        let mut tx_bufs = Vec::with_capacity(size as usize);
        rx_bufs.resize_with(size as usize, || None);
        tx_bufs.resize_with(size as usize, || None);
        Zc {
            shared,
            rx_bufs,
            tx_bufs,
            tx_done: 0,
        }
    }

    /// Offset in the shared region of `p`'s first data byte.
    #[inline(always)]
    fn offset(&self, p: &Pkt) -> u32 {
        (p.data_ptr() as usize - self.shared.pool.base() as usize) as u32
    }
}

impl Drop for Zc {
    fn drop(&mut self) {
        let pool = self.shared.pool;
        let (rx, tx) = (&mut self.rx_bufs, &mut self.tx_bufs);
        let done = with_zc_cache(pool, |c| {
            for p in rx.iter_mut().chain(tx.iter_mut()).filter_map(Option::take) {
                c.free(p);
            }
        });
        if done.is_none() {
            // The thread is exiting (its cache is gone): straight to the pool.
            for p in self
                .rx_bufs
                .iter_mut()
                .chain(self.tx_bufs.iter_mut())
                .filter_map(Option::take)
            {
                pool.free(p);
            }
        }
    }
}

std::thread_local! {
    /// The thread's cache over the shared pool, used by all its zero-copy links: a
    /// buffer one link gives back (a sent frame) is the next one another link posts
    /// for receive, last in first out, so the buffers in use stay few and
    /// cache-warm instead of cycling through the whole region.
    static ZC_CACHE: core::cell::RefCell<Option<PoolCache>> =
        const { core::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's cache over the shared pool (made on first use, when
/// a link comes up); `None` while the thread exits.
#[inline]
fn with_zc_cache<R>(pool: &'static Pool, f: impl FnOnce(&mut PoolCache) -> R) -> Option<R> {
    ZC_CACHE
        .try_with(|c| {
            let mut c = c.try_borrow_mut().ok()?;
            Some(f(c.get_or_insert_with(|| pool.cache())))
        })
        .ok()
        .flatten()
}

/// The address of `len` bytes at `off` in region `r` of `regions`, when they lie
/// inside it.
#[inline(always)]
fn region_buf(regions: &[Mapping], r: u16, off: u32, len: u32) -> Option<*mut u8> {
    let m = regions.get(r as usize)?;
    let end = off as u64 + len as u64;
    // SAFETY: off + len <= m.len: inside the mapping.
    (end <= m.len as u64).then(|| unsafe { m.ptr.add(off as usize) })
}

/// Progress of the control exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Slave: not connected; master: listening.
    Down,
    /// Slave: connected, waiting for HELLO.
    WaitHello,
    /// Slave: sent the message before this step, waiting for its ACK.
    WaitAck(Step),
    /// Slave: sent CONNECT, waiting for CONNECTED.
    WaitConnected,
    /// Master: sent HELLO, waiting for INIT.
    WaitInit,
    /// Master: INIT accepted, collecting regions and rings until CONNECT.
    Collect,
    Up,
}

/// What the slave sent last and awaits an ACK for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Init,
    Region,
    /// Zero-copy: the shared buffer region.
    Buffers,
    /// The C2S ring of this index.
    RingC2s(u16),
    /// The S2C ring of this index.
    RingS2c(u16),
}

/// Slave memory made at HELLO, sent during the handshake.
struct SlaveSetup {
    mem: Mapping,
    memfd: OwnedFd,
    /// Per queue pair: the C2S and the S2C ring's eventfd.
    efds: Vec<(OwnedFd, OwnedFd)>,
    log2: u8,
    /// Queue pairs (rings each way): C2S ring `q` at `q × ring_bytes`, S2C ring `q`
    /// at `(pairs + q) × ring_bytes` in region 0.
    pairs: u16,
    /// Pair 0's buffers; pair `q`'s follow at `q × 2 × 2^log2` buffers further.
    bufs: SlaveBufs,
    /// Zero-copy: the shared region, sent as region 1; region 0 holds only rings.
    zc: Option<&'static Shared>,
}

/// Pair `q`'s buffers in a copying slave's region 0 (pair 0's are `b`; each pair has
/// `2 × size` of them).
fn pair_bufs(b: SlaveBufs, q: usize, size: usize) -> SlaveBufs {
    SlaveBufs {
        buf_off: b.buf_off + q * 2 * size * b.buf_size as usize,
        buf_size: b.buf_size,
    }
}

impl SlaveSetup {
    /// `ADD_RING` for ring `q` one way, its eventfd, and the step that awaits the
    /// ACK.
    fn add_ring(&self, c2s: bool, q: u16) -> (Msg, Option<RawFd>, Phase) {
        let rb = ring_bytes(self.log2);
        let (flags, at, efd, step) = match c2s {
            true => (
                wire::ADD_RING_FLAG_C2S,
                usize::from(q),
                &self.efds[usize::from(q)].0,
                Step::RingC2s(q),
            ),
            false => (
                0,
                usize::from(self.pairs + q),
                &self.efds[usize::from(q)].1,
                Step::RingS2c(q),
            ),
        };
        (
            Msg::AddRing(AddRing {
                flags,
                index: q,
                region: 0,
                offset: (at * rb) as u32,
                log2_ring_size: self.log2,
                private_hdr_size: 0,
            }),
            Some(efd.as_raw_fd()),
            Phase::WaitAck(step),
        )
    }
}

/// What a master collects from its slave before CONNECT.
#[derive(Default)]
struct MasterSetup {
    regions: Vec<Mapping>,
    /// Rings by index (each below [`Config::queues`]).
    c2s: Vec<Option<AddRing>>,
    s2c: Vec<Option<AddRing>>,
    fds: Vec<OwnedFd>,
}

/// A memif port in one role on one socket path.
pub struct MemifPort {
    name: String,
    path: PathBuf,
    cfg: Config,
    listener: Option<OwnedFd>,
    ctrl: Option<OwnedFd>,
    phase: Phase,
    since: Instant,
    next_try: Instant,
    slave_setup: Option<SlaveSetup>,
    master_setup: MasterSetup,
    /// The link, shared with the [`MemifQueue`]s of [`open_queues`].
    shared: Arc<LinkShared>,
    polls: u32,
    stats: PortStats,
    counters: MemifCounters,
    last_error: Option<String>,
    peer_name: String,
    mac: [u8; 6],
}

// SAFETY: the mappings and ring pointers are owned by this port and only touched
// through `&mut self` (or, with [`open_queues`], by each pair's queue under the
// handshake of `LinkShared`); the peer is another process (or port) sharing the memory
// through the protocol's head/tail handshake.
unsafe impl Send for MemifPort {}

/// What the control owner of a link shares with the queue pairs' workers.
///
/// Exclusion without a lock, as vhost-user's multi-queue device does it: the
/// pause handshake of [`super::gate`]; the control owner brings the link up or down
/// only while every pair is paused.
struct LinkShared {
    link: UnsafeCell<Option<Link>>,
    /// The pause handshake with the pairs' workers.
    gate: Gate,
    /// The link is up, with this many queue pairs (0 while down).
    pairs: AtomicUsize,
    /// The control owner's counters, published for the queues.
    link_up: AtomicU64,
    link_down: AtomicU64,
    ctrl_errors: AtomicU64,
    connect_failures: AtomicU64,
}

// SAFETY: `link` is replaced only by the control owner while every worker is out of
// its burst (the gate above); workers read the regions and each touches
// only its own pair's cell.
unsafe impl Sync for LinkShared {}
// SAFETY: as for `MemifPort`.
unsafe impl Send for LinkShared {}

impl LinkShared {
    fn new(queues: usize) -> LinkShared {
        LinkShared {
            link: UnsafeCell::new(None),
            gate: Gate::new(queues.max(1)),
            pairs: AtomicUsize::new(0),
            link_up: AtomicU64::new(0),
            link_down: AtomicU64::new(0),
            ctrl_errors: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
        }
    }
}

fn sockaddr(path: &Path) -> Result<(libc::sockaddr_un, libc::socklen_t), MemifError> {
    super::unix::sockaddr(path).ok_or_else(|| MemifError::Path(path.into()))
}

fn seqpacket() -> Result<OwnedFd, MemifError> {
    super::unix::socket(libc::SOCK_SEQPACKET).map_err(|source| MemifError::Sys {
        what: "socket(AF_UNIX, SOCK_SEQPACKET)",
        source,
    })
}

/// Sends one message, with `pass` as `SCM_RIGHTS` when given.
pub(crate) fn send_msg(fd: RawFd, m: &Msg, pass: Option<RawFd>) -> io::Result<()> {
    send_raw(fd, &m.emit(), pass)
}

/// Sends raw bytes as one datagram (tests use it to play a hostile peer).
pub(crate) fn send_raw(fd: RawFd, b: &[u8], pass: Option<RawFd>) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: b.as_ptr() as *mut libc::c_void,
        iov_len: b.len(),
    };
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr is plain old data.
    let mut mh: libc::msghdr = unsafe { core::mem::zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    if let Some(f) = pass {
        // SAFETY: CMSG_* compute sizes and positions inside `cbuf` (32 bytes, 8-aligned,
        // larger than CMSG_SPACE(4)), which msg_control points to.
        unsafe {
            mh.msg_control = cbuf.as_mut_ptr().cast();
            mh.msg_controllen = libc::CMSG_SPACE(4) as _;
            let c = libc::CMSG_FIRSTHDR(&mh);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(4) as _;
            libc::CMSG_DATA(c).cast::<RawFd>().write_unaligned(f);
        }
    }
    // SAFETY: mh points at live iovec/control buffers.
    let r = unsafe { libc::sendmsg(fd, &mh, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else if r as usize != b.len() {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short control send",
        ))
    } else {
        Ok(())
    }
}

/// A received datagram: its bytes (up to 256; `len` is its true length, clamped to
/// 257 when it was longer) and the first file descriptor passed with it.
struct Received {
    buf: [u8; 256],
    len: usize,
    fd: Option<OwnedFd>,
}

/// Receives one datagram without blocking: `Ok(None)` when there is none, an
/// `UnexpectedEof` error when the peer closed the socket.
fn recv_msg(fd: RawFd) -> io::Result<Option<Received>> {
    let mut r = Received {
        buf: [0; 256],
        len: 0,
        fd: None,
    };
    let mut iov = libc::iovec {
        iov_base: r.buf.as_mut_ptr().cast(),
        iov_len: r.buf.len(),
    };
    let mut cbuf = [0u64; 16];
    // SAFETY: msghdr is plain old data.
    let mut mh: libc::msghdr = unsafe { core::mem::zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf.as_mut_ptr().cast();
    mh.msg_controllen = core::mem::size_of_val(&cbuf) as _;
    // SAFETY: mh points at live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(fd, &mut mh, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(e)
        };
    }
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "peer closed the control socket",
        ));
    }
    r.len = if mh.msg_flags & libc::MSG_TRUNC != 0 {
        r.buf.len() + 1
    } else {
        n as usize
    };
    // Take the first passed descriptor; close any others.
    // SAFETY: walks the control messages the kernel wrote into cbuf.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&mh);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let nfd = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..nfd {
                    let f = OwnedFd::from_raw_fd(data.add(i).read_unaligned());
                    if r.fd.is_none() {
                        r.fd = Some(f);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&mh, c);
        }
    }
    Ok(Some(r))
}

/// A control failure: the reason sent in DISCONNECT and kept as last error.
struct Fail(String);

impl<T: Into<String>> From<T> for Fail {
    fn from(s: T) -> Fail {
        Fail(s.into())
    }
}

fn text(b: &[u8]) -> String {
    let mut out = [0u8; 128];
    let n = wire::field_text(b, &mut out);
    String::from_utf8_lossy(&out[..n]).into_owned()
}

/// Compares secrets as the C peers do (`strncmp` over 24 bytes), without an early
/// exit on the first difference.
fn secret_matches(ours: &[u8; SECRET_LEN], theirs: &[u8; SECRET_LEN]) -> bool {
    let end = |s: &[u8; SECRET_LEN]| s.iter().position(|&c| c == 0).unwrap_or(SECRET_LEN);
    let (a, b) = (end(ours), end(theirs));
    let mut diff = (a != b) as u8;
    for i in 0..SECRET_LEN {
        let x = if i < a { ours[i] } else { 0 };
        let y = if i < b { theirs[i] } else { 0 };
        diff |= x ^ y;
    }
    diff == 0
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain eventfd creation.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl MemifPort {
    /// Opens a port on the socket at `path`: a master binds and listens now (a stale
    /// socket file nobody listens on is replaced); a slave tries to connect on the
    /// first poll and keeps retrying.
    pub fn open(path: &Path, cfg: &Config) -> Result<MemifPort, MemifError> {
        if cfg.log2_ring > MAX_LOG2_RING || cfg.log2_ring == 0 {
            return Err(MemifError::Config("ring size must be 2^1 .. 2^14"));
        }
        if cfg.buf_size < 128 || cfg.buf_size > 65535 || !cfg.buf_size.is_multiple_of(64) {
            return Err(MemifError::Config(
                "buffer size must be a multiple of 64 in 128 .. 65472",
            ));
        }
        if cfg.queues == 0 || cfg.queues > MAX_QUEUES {
            return Err(MemifError::Config("queues must be 1 .. 16"));
        }
        if cfg.secret.as_ref().is_some_and(|s| s.len() >= SECRET_LEN) {
            return Err(MemifError::Config("secret longer than 23 bytes"));
        }
        let (sa, salen) = sockaddr(path)?;
        if cfg.role == Role::Slave && cfg.zero_copy {
            // Made now, at start-up, not in the first handshake.
            shared()?;
        }
        let role = match cfg.role {
            Role::Master => "master",
            Role::Slave => "slave",
        };
        let name = alloc::format!("memif:{}/{}/{}", path.display(), cfg.id, role);
        let mut mac = [0x02, 0xfe, 0, 0, 0, 0];
        // FNV-1a of the name: a stable, locally administered address per port.
        let h = name.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ b as u32).wrapping_mul(0x0100_0193)
        });
        mac[2..6].copy_from_slice(&h.to_be_bytes());
        let now = Instant::now();
        let mut port = MemifPort {
            name,
            path: path.into(),
            cfg: cfg.clone(),
            listener: None,
            ctrl: None,
            phase: Phase::Down,
            since: now,
            next_try: now,
            slave_setup: None,
            master_setup: MasterSetup::default(),
            shared: Arc::new(LinkShared::new(usize::from(cfg.queues))),
            polls: 0,
            stats: PortStats::default(),
            counters: MemifCounters::default(),
            last_error: None,
            peer_name: String::new(),
            mac,
        };
        if cfg.role == Role::Master {
            let l = super::unix::listen(path, &sa, salen, libc::SOCK_SEQPACKET).map_err(
                |e| match e {
                    super::unix::ListenError::InUse => MemifError::InUse { path: path.into() },
                    super::unix::ListenError::Sys(what, source) => MemifError::Sys { what, source },
                },
            )?;
            port.listener = Some(l);
        }
        Ok(port)
    }

    /// Whether the link is up (handshake done, rings mapped).
    pub fn is_up(&self) -> bool {
        self.phase == Phase::Up
    }

    /// memif counters.
    pub fn counters(&self) -> MemifCounters {
        self.counters
    }

    /// The last control error or disconnect reason, for logs.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The shared ring indices while the link is up: `[tx head, tx tail, rx head, rx
    /// tail]` as the peer sees them (for diagnostics).
    pub fn ring_indices(&self) -> Option<[u16; 4]> {
        // SAFETY: read-only look at pair 0's shared indices; the link is changed only
        // by this port (`&self` excludes that here).
        let l = unsafe { &*(*self.shared.link.get()).as_ref()?.pairs[0].get() };
        Some([
            l.tx.head().load(Ordering::Acquire),
            l.tx.tail().load(Ordering::Acquire),
            l.rx.head().load(Ordering::Acquire),
            l.rx.tail().load(Ordering::Acquire),
        ])
    }

    /// The peer's interface name (from CONNECT/CONNECTED), printable ASCII.
    pub fn peer_name(&self) -> &str {
        &self.peer_name
    }

    /// Runs the control side once: connect/accept, handshake steps, peer messages.
    /// `rx_burst`/`tx_burst` call it themselves; callers that want the link up
    /// before sending may loop on it (with [`Self::is_up`]).
    pub fn poll_control(&mut self) {
        let now = Instant::now();
        if self.phase != Phase::Down
            && self.phase != Phase::Up
            && now.duration_since(self.since) > self.cfg.handshake_timeout
        {
            self.fail(Fail("handshake timed out".into()), true, true);
            return;
        }
        match self.cfg.role {
            Role::Master => self.accept(),
            Role::Slave => {
                if self.ctrl.is_none() && now >= self.next_try {
                    self.connect(now);
                }
            }
        }
        // Handle every queued message (a handshake step per message).
        for _ in 0..16 {
            let Some(fd) = self.ctrl.as_ref().map(|f| f.as_raw_fd()) else {
                return;
            };
            match recv_msg(fd) {
                Ok(None) => return,
                Ok(Some(r)) => {
                    if let Err(f) = self.handle(&r) {
                        // A DISCONNECT from the peer is not our error to answer.
                        let peer_left = f.0.starts_with("peer disconnected");
                        self.fail(f, !peer_left, !peer_left);
                        return;
                    }
                }
                Err(e) => {
                    self.fail(Fail(e.to_string()), false, false);
                    return;
                }
            }
        }
    }

    fn connect(&mut self, now: Instant) {
        self.next_try = now + self.cfg.retry;
        let Ok((sa, salen)) = sockaddr(&self.path) else {
            return;
        };
        let Ok(s) = seqpacket() else {
            self.counters.connect_failures += 1;
            return;
        };
        // SAFETY: sa/salen describe a valid sockaddr_un.
        let r = unsafe {
            libc::connect(
                s.as_raw_fd(),
                (&sa as *const libc::sockaddr_un).cast(),
                salen,
            )
        };
        if r != 0 {
            self.counters.connect_failures += 1;
            return;
        }
        self.ctrl = Some(s);
        self.phase = Phase::WaitHello;
        self.since = now;
    }

    fn accept(&mut self) {
        let Some(l) = self.listener.as_ref() else {
            return;
        };
        // SAFETY: accept on our listening socket; the result is checked.
        let fd = unsafe {
            libc::accept4(
                l.as_raw_fd(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            return;
        }
        // SAFETY: fresh descriptor we own.
        let s = unsafe { OwnedFd::from_raw_fd(fd) };
        if self.ctrl.is_some() {
            // One slave at a time: refuse the newcomer.
            let _ = send_msg(s.as_raw_fd(), &disconnect("Already connected"), None);
            return;
        }
        let hello = Msg::Hello(Hello {
            name: fixed(&self.cfg.if_name),
            min_version: VERSION,
            max_version: VERSION,
            max_region: (MAX_REGIONS - 1) as u16,
            max_s2c_ring: self.cfg.queues - 1,
            max_c2s_ring: self.cfg.queues - 1,
            max_log2_ring_size: MAX_LOG2_RING,
        });
        if send_msg(s.as_raw_fd(), &hello, None).is_ok() {
            self.ctrl = Some(s);
            self.phase = Phase::WaitInit;
            self.since = Instant::now();
            self.master_setup = MasterSetup::default();
        }
    }

    fn send(&mut self, m: &Msg, pass: Option<RawFd>) -> Result<(), Fail> {
        let fd = self
            .ctrl
            .as_ref()
            .map(|f| f.as_raw_fd())
            .ok_or("no control socket")?;
        send_msg(fd, m, pass).map_err(|e| Fail(alloc::format!("control send: {e}")))
    }

    /// One received message in the current phase.
    fn handle(&mut self, r: &Received) -> Result<(), Fail> {
        let m = Msg::parse(&r.buf[..r.len.min(r.buf.len())]).map_err(|e| {
            if r.len > r.buf.len() {
                Fail(alloc::format!(
                    "control message of more than {} bytes (expected {MSG_SIZE})",
                    r.buf.len()
                ))
            } else {
                Fail(e.to_string())
            }
        })?;
        if let Msg::Disconnect { code, reason } = m {
            return Err(Fail(alloc::format!(
                "peer disconnected (code {code}): {}",
                text(&reason)
            )));
        }
        match (self.phase, m) {
            (Phase::WaitHello, Msg::Hello(h)) => self.on_hello(&h),
            (Phase::WaitAck(step), Msg::Ack) => self.on_ack(step),
            (Phase::WaitConnected, Msg::Connected { name }) => {
                self.peer_name = text(&name);
                self.slave_up()
            }
            (Phase::WaitInit, Msg::Init(i)) => self.on_init(&i),
            (Phase::Collect, Msg::AddRegion { index, size }) => {
                self.on_add_region(index, size, r.fd.as_ref())
            }
            (Phase::Collect, Msg::AddRing(ar)) => self.on_add_ring(ar, r.fd.as_ref()),
            (Phase::Collect, Msg::Connect { name }) => {
                self.peer_name = text(&name);
                self.master_up()
            }
            (_, m) => Err(Fail(alloc::format!(
                "unexpected control message type {} in this state",
                m.kind()
            ))),
        }
    }

    // ---- slave ----

    fn on_hello(&mut self, h: &Hello) -> Result<(), Fail> {
        if h.min_version > VERSION || h.max_version < VERSION {
            return Err("Incompatible memif version".into());
        }
        let log2 = self.cfg.log2_ring.min(h.max_log2_ring_size);
        if log2 == 0 {
            return Err("master allows no ring size we can use".into());
        }
        // HELLO's maxima are ring indices: ask for as many pairs as both allow.
        let pairs = h.ring_pairs(self.cfg.queues);
        let np = usize::from(pairs);
        let size = 1usize << log2;
        let rb = ring_bytes(log2);
        let zc = if self.cfg.zero_copy {
            Some(shared().map_err(|e| Fail(e.to_string()))?)
        } else {
            None
        };
        let bs = self.cfg.buf_size as usize;
        let buf_off = 2 * np * rb;
        let total = if zc.is_some() {
            buf_off
        } else {
            buf_off + 2 * np * size * bs
        };
        if total > u32::MAX as usize {
            return Err("region too large for 32-bit offsets".into());
        }
        let err = |what: &str| Fail(alloc::format!("{what}: {}", io::Error::last_os_error()));
        let cname = CString::new("memif_region_0").map_err(|_| "memfd name")?;
        // SAFETY: memfd_create with a valid C string.
        let fd = unsafe {
            libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if fd < 0 {
            return Err(err("memfd_create"));
        }
        // SAFETY: fresh descriptor we own.
        let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: size the memfd, then forbid shrinking it (peers check the seal).
        if unsafe { libc::ftruncate(memfd.as_raw_fd(), total as libc::off_t) } != 0 {
            return Err(err("ftruncate region"));
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) } != 0 {
            return Err(err("seal region"));
        }
        let mem = Mapping::map(memfd.as_raw_fd(), total)
            .map_err(|e| Fail(alloc::format!("mmap region: {e}")))?;
        let bufs = SlaveBufs {
            buf_off,
            buf_size: self.cfg.buf_size,
        };
        let mut efds = Vec::with_capacity(np);
        for q in 0..np {
            let c2s = RingView::new(&mem, q * rb, log2).ok_or("ring layout")?;
            let s2c = RingView::new(&mem, (np + q) * rb, log2).ok_or("ring layout")?;
            c2s.init(0);
            s2c.init(0);
            let pb = pair_bufs(bufs, q, size);
            for j in 0..size as u16 {
                if zc.is_some() {
                    // Posted with engine buffers when the link comes up.
                    c2s.desc(j).write(0, SHARED_REGION, 0, 0);
                    s2c.desc(j).write(0, SHARED_REGION, 0, 0);
                    continue;
                }
                c2s.desc(j)
                    .write(0, 0, pb.buf_size, (pb.buf_off + j as usize * bs) as u32);
                s2c.desc(j).write(
                    0,
                    0,
                    pb.buf_size,
                    (pb.buf_off + (size + j as usize) * bs) as u32,
                );
            }
            let efd_c2s = eventfd().map_err(|e| Fail(alloc::format!("eventfd: {e}")))?;
            let efd_s2c = eventfd().map_err(|e| Fail(alloc::format!("eventfd: {e}")))?;
            efds.push((efd_c2s, efd_s2c));
        }
        self.slave_setup = Some(SlaveSetup {
            mem,
            memfd,
            efds,
            log2,
            pairs,
            bufs,
            zc,
        });
        let mut secret = [0u8; SECRET_LEN];
        if let Some(s) = &self.cfg.secret {
            secret = fixed(s);
        }
        self.send(
            &Msg::Init(Init {
                version: VERSION,
                id: self.cfg.id,
                mode: wire::MODE_ETHERNET,
                secret,
                name: fixed(&self.cfg.if_name),
            }),
            None,
        )?;
        self.phase = Phase::WaitAck(Step::Init);
        Ok(())
    }

    fn on_ack(&mut self, step: Step) -> Result<(), Fail> {
        let s = self.slave_setup.as_ref().ok_or("no slave memory")?;
        let (m, fd, next) = match step {
            Step::Init => (
                Msg::AddRegion {
                    index: 0,
                    size: s.mem.len as u64,
                },
                Some(s.memfd.as_raw_fd()),
                Phase::WaitAck(Step::Region),
            ),
            Step::Region if s.zc.is_some() => {
                let z = s.zc.ok_or("no shared region")?;
                (
                    Msg::AddRegion {
                        index: SHARED_REGION,
                        size: z.len as u64,
                    },
                    Some(z.fd.as_raw_fd()),
                    Phase::WaitAck(Step::Buffers),
                )
            }
            // The C2S rings 0..pairs, then the S2C rings 0..pairs.
            Step::Region | Step::Buffers => s.add_ring(true, 0),
            Step::RingC2s(q) if q + 1 < s.pairs => s.add_ring(true, q + 1),
            Step::RingC2s(_) => s.add_ring(false, 0),
            Step::RingS2c(q) if q + 1 < s.pairs => s.add_ring(false, q + 1),
            Step::RingS2c(_) => (
                Msg::Connect {
                    name: fixed(&self.cfg.if_name),
                },
                None,
                Phase::WaitConnected,
            ),
        };
        self.send(&m, fd)?;
        self.phase = next;
        Ok(())
    }

    fn slave_up(&mut self) -> Result<(), Fail> {
        let s = self.slave_setup.take().ok_or("no slave memory")?;
        let rb = ring_bytes(s.log2);
        let np = usize::from(s.pairs);
        let size = 1usize << s.log2;
        let mut pairs = Vec::with_capacity(np);
        for q in 0..np {
            let tx = RingView::new(&s.mem, q * rb, s.log2).ok_or("ring layout")?;
            let rx = RingView::new(&s.mem, (np + q) * rb, s.log2).ok_or("ring layout")?;
            // We poll our receive rings: no interrupts.
            rx.set_flags(RING_FLAG_MASK_INT);
            let mut p = Pair {
                tx,
                rx,
                tx_idx: 0,
                rx_idx: 0,
                rx_posted: 0,
                slave: Some(pair_bufs(s.bufs, q, size)),
                zc: s.zc.map(|z| Zc::new(z, size as u16)),
            };
            refill(&mut p);
            pairs.push(UnsafeCell::new(p));
        }
        let mut link = Link {
            regions: Vec::new(),
            pairs: pairs.into_boxed_slice(),
            _fds: Vec::with_capacity(1 + 2 * np),
        };
        link.regions.push(s.mem);
        link._fds.push(s.memfd);
        for (a, b) in s.efds {
            link._fds.push(a);
            link._fds.push(b);
        }
        self.link_up(link);
        Ok(())
    }

    // ---- master ----

    fn on_init(&mut self, i: &Init) -> Result<(), Fail> {
        if i.version != VERSION {
            return Err("Incompatible memif version".into());
        }
        if i.id != self.cfg.id {
            return Err("ID not found".into());
        }
        if i.mode != wire::MODE_ETHERNET {
            return Err("Only ethernet mode supported".into());
        }
        if let Some(s) = &self.cfg.secret {
            if i.secret[0] == 0 {
                return Err("Secret required".into());
            }
            if !secret_matches(&fixed(s), &i.secret) {
                return Err("Incorrect secret".into());
            }
        }
        self.peer_name = text(&i.name);
        self.send(&Msg::Ack, None)?;
        self.phase = Phase::Collect;
        Ok(())
    }

    fn on_add_region(&mut self, index: u16, size: u64, fd: Option<&OwnedFd>) -> Result<(), Fail> {
        let fd = fd.ok_or("Missing region fd")?;
        let ms = &mut self.master_setup;
        if index as usize != ms.regions.len() || ms.regions.len() >= MAX_REGIONS {
            return Err("Invalid region index".into());
        }
        if size == 0 || size > MAX_REGION_SIZE {
            return Err(alloc::format!("region size {size} out of range").into());
        }
        // SAFETY: fstat into a zeroed stat of a descriptor we hold.
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err("region fd: fstat failed".into());
        }
        if (st.st_size as u64) < size {
            return Err(alloc::format!(
                "region {index} of {size} bytes exceeds its file ({} bytes)",
                st.st_size
            )
            .into());
        }
        // A region the peer may shrink could fault us (SIGBUS): a memfd must carry
        // F_SEAL_SHRINK. Files without seal support (hugetlbfs) are taken as they are.
        // SAFETY: F_GET_SEALS on a descriptor we hold.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals >= 0 && seals & libc::F_SEAL_SHRINK == 0 {
            return Err("region not sealed against shrinking (F_SEAL_SHRINK)".into());
        }
        let m = Mapping::map(fd.as_raw_fd(), size as usize)
            .map_err(|e| Fail(alloc::format!("mmap region {index}: {e}")))?;
        ms.regions.push(m);
        self.send(&Msg::Ack, None)
    }

    fn on_add_ring(&mut self, ar: AddRing, fd: Option<&OwnedFd>) -> Result<(), Fail> {
        if ar.index >= self.cfg.queues {
            return Err("Invalid ring index".into());
        }
        if ar.log2_ring_size == 0 || ar.log2_ring_size > MAX_LOG2_RING {
            return Err(alloc::format!("ring size 2^{} not supported", ar.log2_ring_size).into());
        }
        let ms = &mut self.master_setup;
        let rings = if ar.is_c2s() {
            &mut ms.c2s
        } else {
            &mut ms.s2c
        };
        let i = usize::from(ar.index);
        if rings.len() <= i {
            rings.resize(i + 1, None);
        }
        let slot = &mut rings[i];
        if slot.is_some() {
            return Err("Ring added twice".into());
        }
        *slot = Some(ar);
        if let Some(fd) = fd {
            // The interrupt eventfd: kept, never written (we poll; see module docs).
            if let Ok(f) = fd.try_clone() {
                ms.fds.push(f);
            }
        }
        self.send(&Msg::Ack, None)
    }

    fn master_up(&mut self) -> Result<(), Fail> {
        let ms = core::mem::take(&mut self.master_setup);
        let view = |ar: AddRing, which: &str| -> Result<RingView, Fail> {
            let m = ms.regions.get(ar.region as usize).ok_or_else(|| {
                Fail(alloc::format!(
                    "{which} ring in unknown region {}",
                    ar.region
                ))
            })?;
            let v = RingView::new(m, ar.offset as usize, ar.log2_ring_size).ok_or_else(|| {
                Fail(alloc::format!(
                    "{which} ring at offset {} (2^{} slots) lies outside region {} or is misaligned",
                    ar.offset, ar.log2_ring_size, ar.region
                ))
            })?;
            if v.cookie() != wire::COOKIE {
                return Err(Fail(alloc::format!("{which} ring has a wrong cookie")));
            }
            Ok(v)
        };
        // Every ring given is checked; rings 0..n each way must all be there. With
        // more rings one way than the other, the extra ones are left unserved (we
        // run queue pairs).
        let mut views = [Vec::new(), Vec::new()];
        for (k, (rings, which)) in [(&ms.c2s, "C2S"), (&ms.s2c, "S2C")].into_iter().enumerate() {
            for (i, ar) in rings.iter().enumerate() {
                let ar = ar.ok_or_else(|| Fail(alloc::format!("Missing {which} ring {i}")))?;
                views[k].push(view(ar, which)?);
            }
            if rings.is_empty() {
                return Err(Fail(alloc::format!("Missing {which} ring")));
            }
        }
        let [c2s, s2c] = views;
        let pairs: Vec<UnsafeCell<Pair>> = c2s
            .into_iter()
            .zip(s2c)
            .map(|(rx, tx)| {
                for r in [rx, tx] {
                    r.head().store(0, Ordering::Release);
                    r.tail().store(0, Ordering::Release);
                }
                rx.set_flags(RING_FLAG_MASK_INT);
                UnsafeCell::new(Pair {
                    tx,
                    rx,
                    tx_idx: 0,
                    rx_idx: 0,
                    rx_posted: 0,
                    slave: None,
                    zc: None,
                })
            })
            .collect();
        let link = Link {
            regions: ms.regions,
            pairs: pairs.into_boxed_slice(),
            _fds: ms.fds,
        };
        self.send(
            &Msg::Connected {
                name: fixed(&self.cfg.if_name),
            },
            None,
        )?;
        self.link_up(link);
        Ok(())
    }

    // ---- both ----

    fn link_up(&mut self, link: Link) {
        let n = link.pairs.len();
        // SAFETY: single-queue: we are the link's only user; multi-queue: the control
        // owner pauses the queues around `poll_control` (see `LinkShared`).
        unsafe { *self.shared.link.get() = Some(link) };
        self.shared.pairs.store(n, Ordering::Release);
        self.phase = Phase::Up;
        self.counters.link_up += 1;
        self.last_error = None;
    }

    /// The queue pairs the link runs with (0 while down).
    pub fn queues_up(&self) -> usize {
        self.shared.pairs.load(Ordering::Acquire)
    }

    /// Drops the connection (sending DISCONNECT with the reason when `tell`), takes
    /// the link down and records why; `ctrl_error` counts it in
    /// [`MemifCounters::ctrl_errors`].
    fn fail(&mut self, f: Fail, tell: bool, ctrl_error: bool) {
        if tell {
            if let Some(c) = self.ctrl.as_ref() {
                let _ = send_msg(c.as_raw_fd(), &disconnect(&f.0), None);
            }
        }
        if self.phase == Phase::Up {
            self.counters.link_down += 1;
        }
        if ctrl_error {
            self.counters.ctrl_errors += 1;
        }
        self.ctrl = None;
        self.shared.pairs.store(0, Ordering::Release);
        // SAFETY: as in `link_up`.
        unsafe { *self.shared.link.get() = None };
        self.slave_setup = None;
        self.master_setup = MasterSetup::default();
        self.phase = Phase::Down;
        self.next_try = Instant::now() + self.cfg.retry;
        self.last_error = Some(f.0);
    }

    /// Control work from the bursts: every [`CTRL_EVERY`] calls while up, every
    /// [`CTRL_EVERY_DOWN`] while down.
    #[inline]
    fn tick(&mut self) {
        self.polls = self.polls.wrapping_add(1);
        let every = if self.phase == Phase::Up {
            CTRL_EVERY
        } else {
            CTRL_EVERY_DOWN
        };
        if self.polls.is_multiple_of(every) {
            self.poll_control();
        }
    }
}

fn disconnect(reason: &str) -> Msg {
    Msg::Disconnect {
        code: 0,
        reason: fixed(reason),
    }
}

/// Slave: posts every free slot of the receive ring (S2C head) with a whole buffer.
#[inline]
fn refill(l: &mut Pair) {
    let Some(b) = l.slave else {
        return;
    };
    let size = l.rx.size;
    let target = l.rx_idx.wrapping_add(size);
    let mut h = l.rx_posted;
    if h == target {
        return;
    }
    if let Some(z) = l.zc.as_mut() {
        let rx = l.rx;
        h = with_zc_cache(z.shared.pool, |cache| {
            while h != target {
                let slot = (h & rx.mask()) as usize;
                // A buffer still posted (its frame was dropped) is posted again.
                if z.rx_bufs[slot].is_none() {
                    match cache.alloc() {
                        Some(p) => z.rx_bufs[slot] = Some(p),
                        // Shared pool exhausted: post the rest on a later burst.
                        None => break,
                    }
                }
                if let Some(p) = z.rx_bufs[slot].as_ref() {
                    let off = p.index() as usize * BUF_SIZE + HEADROOM;
                    rx.desc(h)
                        .write(0, SHARED_REGION, DATA_ROOM as u32, off as u32);
                }
                h = h.wrapping_add(1);
            }
            h
        })
        .unwrap_or(l.rx_posted);
    } else {
        while h != target {
            let slot = (h & l.rx.mask()) as usize;
            let off = b.buf_off + (size as usize + slot) * b.buf_size as usize;
            l.rx.desc(h).write(0, 0, b.buf_size, off as u32);
            h = h.wrapping_add(1);
        }
    }
    if h == l.rx_posted {
        return;
    }
    l.rx_posted = h;
    l.rx.head().store(h, Ordering::Release);
}

/// Zero-copy slave receive: hands the posted engine buffers the master filled (S2C
/// entries up to its tail, `avail` of them) to `batch` without a copy. A frame the
/// master chained over several descriptors is gathered into its first buffer (a
/// copy, counted in `zc_copies`); the other buffers stay posted.
fn rx_zc(
    l: &mut Pair,
    avail: u16,
    batch: &mut Batch,
    stats: &mut PortStats,
    counters: &mut MemifCounters,
) -> usize {
    let rx = l.rx;
    let Some(z) = l.zc.as_mut() else {
        return 0;
    };
    let base = z.shared.pool.base();
    // First data byte of the buffer posted at a slot (as `refill` posted it).
    let data_at = |p: &Pkt| -> *mut u8 {
        // SAFETY: inside the shared region: buffer `index` + HEADROOM.
        unsafe { base.add(p.index() as usize * BUF_SIZE + HEADROOM) }
    };
    let mut n = 0;
    let mut used: u16 = 0;
    while used < avail && batch.room() > 0 {
        let mut k: u16 = 0;
        let mut complete = false;
        while used + k < avail {
            let d = rx.desc(l.rx_idx.wrapping_add(used + k));
            k += 1;
            if d.flags() & DESC_FLAG_NEXT == 0 {
                complete = true;
                break;
            }
        }
        if !complete {
            if avail == rx.size {
                counters.bad_desc += 1;
                stats.rx_dropped += 1;
                used = avail;
            }
            break;
        }
        let first = l.rx_idx.wrapping_add(used);
        used += k;
        let slot0 = (first & rx.mask()) as usize;
        // Only the length is the master's; where the buffer is, we posted.
        let mut len = rx.desc(first).length() as usize;
        let mut ok = len <= DATA_ROOM;
        if !ok {
            counters.bad_desc += 1;
        }
        if ok && k > 1 {
            match z.rx_bufs[slot0].as_ref().map(data_at) {
                Some(dst) => {
                    for i in 1..k {
                        let idx = first.wrapping_add(i);
                        let dl = rx.desc(idx).length() as usize;
                        let src = z.rx_bufs[(idx & rx.mask()) as usize].as_ref().map(data_at);
                        let Some(src) = src.filter(|_| len + dl <= DATA_ROOM) else {
                            ok = false;
                            break;
                        };
                        // SAFETY: both are DATA_ROOM-byte data rooms of distinct shared
                        // buffers we posted; len + dl <= DATA_ROOM.
                        unsafe { core::ptr::copy_nonoverlapping(src, dst.add(len), dl) };
                        len += dl;
                    }
                    counters.zc_copies += 1;
                }
                None => ok = false,
            }
        }
        let taken = if ok && len > 0 {
            z.rx_bufs[slot0].take()
        } else {
            None
        };
        // A dropped frame's buffers stay posted for the next one.
        let Some(mut p) = taken else {
            stats.rx_dropped += 1;
            continue;
        };
        let _ = p.set_window(HEADROOM, len);
        if k == 1 {
            counters.zc_frames += 1;
        }
        stats.rx_packets += 1;
        stats.rx_bytes += len as u64;
        let _ = batch.push(p);
        n += 1;
    }
    l.rx_idx = l.rx_idx.wrapping_add(used);
    n
}

/// Zero-copy slave transmit: gives back the buffers the master has consumed (C2S
/// tail), then posts each packet's own buffer in a descriptor; a packet of another
/// pool is copied into a shared buffer first (`zc_copies`).
fn tx_zc(
    l: &mut Pair,
    cache: &mut PoolCache,
    batch: &mut Batch,
    stats: &mut PortStats,
    counters: &mut MemifCounters,
) -> Result<usize, RingFault> {
    let tx = l.tx;
    let tail = tx.tail().load(Ordering::Acquire);
    let inflight = wire::pending(l.tx_idx, tail, tx.size).ok_or(RingFault::Index)?;
    let Some(z) = l.zc.as_mut() else {
        return Ok(0);
    };
    let back = tail.wrapping_sub(z.tx_done);
    if back > l.tx_idx.wrapping_sub(z.tx_done) {
        return Err(RingFault::Index);
    }
    let free = (tx.size - inflight) as usize;
    let pool = z.shared.pool;
    let mut idx = l.tx_idx;
    let (mut sent, mut bytes, mut dropped) = (0usize, 0u64, 0u64);
    let _ = with_zc_cache(pool, |zcache| {
        for _ in 0..back {
            if let Some(p) = z.tx_bufs[(z.tx_done & tx.mask()) as usize].take() {
                zcache.free(p);
            }
            z.tx_done = z.tx_done.wrapping_add(1);
        }
        batch.take_front(batch.len().min(free), |p| {
            if p.is_empty() {
                dropped += 1;
                cache.free(p);
                return;
            }
            let p = if pool.owns(&p) {
                counters.zc_frames += 1;
                p
            } else {
                let Some(mut q) = zcache.alloc() else {
                    dropped += 1;
                    cache.free(p);
                    return;
                };
                let len = p.len();
                // A frame grown into its headroom may exceed DATA_ROOM: start earlier.
                let _ = q.set_window(HEADROOM.min(BUF_SIZE - len), len);
                q.data_mut().copy_from_slice(p.data());
                q.meta = p.meta;
                cache.free(p);
                counters.zc_copies += 1;
                q
            };
            tx.desc(idx)
                .write(0, SHARED_REGION, p.len() as u32, z.offset(&p));
            bytes += p.len() as u64;
            sent += 1;
            if let Some(old) = z.tx_bufs[(idx & tx.mask()) as usize].replace(p) {
                zcache.free(old);
            }
            idx = idx.wrapping_add(1);
        });
    });
    if idx != l.tx_idx {
        l.tx_idx = idx;
        tx.head().store(idx, Ordering::Release);
    }
    stats.tx_packets += sent as u64;
    stats.tx_bytes += bytes;
    stats.tx_dropped += dropped;
    Ok(sent)
}

/// What a ring operation found wrong with the peer.
enum RingFault {
    /// The peer's index claims more entries than the ring holds.
    Index,
    /// A transmit descriptor the master must fill lies outside the slave's memory.
    Desc,
}

impl MemifPort {
    fn ring_fault(&mut self, f: RingFault) {
        let msg = match f {
            RingFault::Index => {
                self.counters.ring_errors += 1;
                "peer ring index out of range"
            }
            RingFault::Desc => {
                self.counters.bad_desc += 1;
                "peer descriptor outside its regions"
            }
        };
        self.fail(Fail(msg.into()), true, false);
    }

    fn rx_inner(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> Result<usize, RingFault> {
        // SAFETY: a single-queue port is its link's only user (see `LinkShared`).
        let Some(link) = (unsafe { &mut *self.shared.link.get() }).as_mut() else {
            return Ok(0);
        };
        rx_pair(
            link.pairs[0].get_mut(),
            &link.regions,
            cache,
            batch,
            &mut self.stats,
            &mut self.counters,
        )
    }

    fn tx_inner(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> Result<usize, RingFault> {
        // SAFETY: as in `rx_inner`.
        let Some(link) = (unsafe { &mut *self.shared.link.get() }).as_mut() else {
            return Ok(0);
        };
        tx_pair(
            link.pairs[0].get_mut(),
            &link.regions,
            cache,
            batch,
            &mut self.stats,
            &mut self.counters,
        )
    }
}

/// Receives on one queue pair (either role, either copy mode).
fn rx_pair(
    l: &mut Pair,
    regions: &[Mapping],
    cache: &mut PoolCache,
    batch: &mut Batch,
    stats: &mut PortStats,
    counters: &mut MemifCounters,
) -> Result<usize, RingFault> {
    let master = l.slave.is_none();
    // Entries the peer has published to us.
    let avail = if master {
        let head = l.rx.head().load(Ordering::Acquire);
        wire::pending(head, l.rx_idx, l.rx.size).ok_or(RingFault::Index)?
    } else {
        let tail = l.rx.tail().load(Ordering::Acquire);
        let posted = l.rx_posted.wrapping_sub(l.rx_idx);
        match wire::pending(tail, l.rx_idx, l.rx.size) {
            Some(n) if n <= posted => n,
            _ => return Err(RingFault::Index),
        }
    };
    if l.zc.is_some() {
        let n = rx_zc(l, avail, batch, stats, counters);
        refill(l);
        return Ok(n);
    }
    let mut n = 0;
    let mut used: u16 = 0;
    while used < avail && batch.room() > 0 {
        // Find the packet's chain within what is published.
        let mut k: u16 = 0;
        let mut complete = false;
        while used + k < avail {
            let d = l.rx.desc(l.rx_idx.wrapping_add(used + k));
            k += 1;
            if d.flags() & DESC_FLAG_NEXT == 0 {
                complete = true;
                break;
            }
        }
        if !complete {
            if avail == l.rx.size {
                // A chain that fills the whole ring never ends: drop it.
                counters.bad_desc += 1;
                stats.rx_dropped += 1;
                used = avail;
            }
            break;
        }
        let first = l.rx_idx.wrapping_add(used);
        used += k;
        let Some(mut pkt) = cache.alloc() else {
            stats.rx_dropped += 1;
            continue;
        };
        let buf = pkt.buffer_mut();
        let mut len = 0usize;
        let mut ok = true;
        for i in 0..k {
            let idx = first.wrapping_add(i);
            let d = l.rx.desc(idx);
            let dl = d.length();
            let src = match l.slave {
                // Our own buffers: trust our offsets, bound the length.
                Some(b) => {
                    if dl > b.buf_size {
                        None
                    } else {
                        let slot = (idx & l.rx.mask()) as usize;
                        let off = b.buf_off + (l.rx.size as usize + slot) * b.buf_size as usize;
                        region_buf(regions, 0, off as u32, dl)
                    }
                }
                None => region_buf(regions, d.region(), d.offset(), dl),
            };
            let Some(src) = src else {
                counters.bad_desc += 1;
                ok = false;
                break;
            };
            let dl = dl as usize;
            if len + dl > DATA_ROOM {
                ok = false;
                break;
            }
            // SAFETY: src..src+dl lies in a mapped region (checked by `buf`); the
            // destination stays inside the packet buffer (len + dl <= DATA_ROOM).
            unsafe {
                core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr().add(HEADROOM + len), dl)
            };
            len += dl;
        }
        if !ok || len == 0 {
            stats.rx_dropped += 1;
            cache.free(pkt);
            continue;
        }
        let _ = pkt.set_window(HEADROOM, len);
        stats.rx_packets += 1;
        stats.rx_bytes += len as u64;
        let _ = batch.push(pkt);
        n += 1;
    }
    if used > 0 {
        l.rx_idx = l.rx_idx.wrapping_add(used);
        if master {
            l.rx.tail().store(l.rx_idx, Ordering::Release);
        }
    }
    refill(l);
    Ok(n)
}

/// Sends on one queue pair (either role, either copy mode).
fn tx_pair(
    l: &mut Pair,
    regions: &[Mapping],
    cache: &mut PoolCache,
    batch: &mut Batch,
    stats: &mut PortStats,
    counters: &mut MemifCounters,
) -> Result<usize, RingFault> {
    if l.zc.is_some() {
        return tx_zc(l, cache, batch, stats, counters);
    }
    // Free slots we may fill.
    let mut free = match l.slave {
        Some(_) => {
            let tail = l.tx.tail().load(Ordering::Acquire);
            let inflight = wire::pending(l.tx_idx, tail, l.tx.size).ok_or(RingFault::Index)?;
            l.tx.size - inflight
        }
        None => {
            let head = l.tx.head().load(Ordering::Acquire);
            wire::pending(head, l.tx_idx, l.tx.size).ok_or(RingFault::Index)?
        }
    };
    let mut idx = l.tx_idx;
    let mut count = 0;
    let mut sent = 0;
    let mut bytes = 0u64;
    let mut dropped = 0u64;
    let mut fault = false;
    for p in batch.iter() {
        let data = p.data();
        if data.is_empty() {
            dropped += 1;
            count += 1;
            continue;
        }
        // Reserve the descriptors this frame needs and check them first.
        let mut need: u16 = 0;
        let mut left = data.len();
        let mut ok = true;
        while left > 0 {
            if need >= free {
                ok = false;
                break;
            }
            let d = l.tx.desc(idx.wrapping_add(need));
            let cap = match l.slave {
                Some(b) => b.buf_size as usize,
                None => d.length() as usize,
            };
            if cap == 0 {
                fault = true;
                break;
            }
            left -= left.min(cap);
            need += 1;
        }
        if fault || !ok {
            break;
        }
        let mut off = 0usize;
        for i in 0..need {
            let di = idx.wrapping_add(i);
            let d = l.tx.desc(di);
            let (dst, cap) = match l.slave {
                Some(b) => {
                    let slot = (di & l.tx.mask()) as usize;
                    let o = (b.buf_off + slot * b.buf_size as usize) as u32;
                    (region_buf(regions, 0, o, b.buf_size), b.buf_size)
                }
                None => {
                    let cap = d.length();
                    (region_buf(regions, d.region(), d.offset(), cap), cap)
                }
            };
            let Some(dst) = dst else {
                fault = true;
                break;
            };
            let chunk = (data.len() - off).min(cap as usize);
            // SAFETY: dst..dst+cap lies in a mapped region (checked by `buf`) and
            // chunk <= cap; the source is the packet's data.
            unsafe { core::ptr::copy_nonoverlapping(data.as_ptr().add(off), dst, chunk) };
            off += chunk;
            let flags = if i + 1 < need { DESC_FLAG_NEXT } else { 0 };
            match l.slave {
                Some(b) => {
                    let slot = (di & l.tx.mask()) as usize;
                    d.write(
                        flags,
                        0,
                        chunk as u32,
                        (b.buf_off + slot * b.buf_size as usize) as u32,
                    )
                }
                None => d.set_len_flags(flags, chunk as u32),
            }
        }
        // A slave that shrank a buffer between our two reads of its length.
        if off < data.len() {
            fault = true;
        }
        if fault {
            break;
        }
        idx = idx.wrapping_add(need);
        free -= need;
        bytes += data.len() as u64;
        sent += 1;
        count += 1;
    }
    if idx != l.tx_idx {
        l.tx_idx = idx;
        match l.slave {
            Some(_) => l.tx.head().store(idx, Ordering::Release),
            None => l.tx.tail().store(idx, Ordering::Release),
        }
    }
    batch.take_front(count, |p| cache.free(p));
    stats.tx_packets += sent as u64;
    stats.tx_bytes += bytes;
    stats.tx_dropped += dropped;
    if fault {
        return Err(RingFault::Desc);
    }
    Ok(sent)
}

impl Drop for MemifPort {
    fn drop(&mut self) {
        if let Some(c) = self.ctrl.as_ref() {
            let _ = send_msg(c.as_raw_fd(), &disconnect("Interface closed"), None);
        }
        if self.listener.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Port for MemifPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        self.tick();
        match self.rx_inner(cache, batch) {
            Ok(n) => n,
            Err(f) => {
                self.ring_fault(f);
                0
            }
        }
    }

    fn tx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        self.tick();
        if self.phase != Phase::Up {
            let n = batch.len() as u64;
            batch.free_all(cache);
            self.stats.tx_dropped += n;
            self.counters.down_tx_drops += n;
            return 0;
        }
        match self.tx_inner(cache, batch) {
            Ok(n) => n,
            Err(f) => {
                self.ring_fault(f);
                0
            }
        }
    }

    fn stats(&self) -> PortStats {
        self.stats
    }

    fn mac(&self) -> Option<[u8; 6]> {
        Some(self.mac)
    }
}

/// Ring fault codes a [`MemifQueue`] hands to its control owner.
const FAULT_INDEX: u8 = 1;
const FAULT_DESC: u8 = 2;

/// One queue pair of a multi-queue memif link ([`open_queues`]): a port for one
/// worker. Its bursts touch only pair `q`'s two rings (ring index `q` each way, and
/// the zero-copy buffers posted on them) and its own counters; they take no lock,
/// make no system call and never wait: while the control owner brings the link up
/// or down (a thread of its own, woken by the control socket) the pair moves
/// nothing (see `LinkShared`).
pub struct MemifQueue {
    name: String,
    shared: Arc<LinkShared>,
    q: usize,
    stats: PortStats,
    counters: MemifCounters,
    mac: [u8; 6],
}

/// Opens a memif link of `cfg.queues` queue pairs on `path` (either role) and
/// returns one [`MemifQueue`] per pair, to be polled by one worker each. The control
/// socket is served by a thread of its own (`memif-ctl`), off the fast path: it
/// sleeps in `poll(2)` on the socket (10 ms at most, for a slave's retries and
/// handshake timeouts) and pauses the pairs only while it handles a message, a
/// connection attempt or a ring fault. It ends, sending `DISCONNECT` and removing a
/// master's socket file, once every queue is dropped. A slave whose master allows
/// fewer pairs (or a master whose slave asks for fewer) runs with fewer: the queues
/// beyond them stay down ([`MemifQueue::is_up`]).
pub fn open_queues(path: &Path, cfg: &Config) -> Result<Vec<MemifQueue>, MemifError> {
    let ctl = MemifPort::open(path, cfg)?;
    let queues: Vec<MemifQueue> = (0..usize::from(cfg.queues))
        .map(|q| MemifQueue {
            name: alloc::format!("{},queue={q}", ctl.name),
            shared: ctl.shared.clone(),
            q,
            stats: PortStats::default(),
            counters: MemifCounters::default(),
            mac: ctl.mac,
        })
        .collect();
    std::thread::Builder::new()
        .name("memif-ctl".into())
        .spawn(move || control_loop(ctl))
        .map_err(|source| MemifError::Sys {
            what: "spawning the memif control thread",
            source,
        })?;
    Ok(queues)
}

/// The control owner of a multi-queue link.
fn control_loop(mut ctl: MemifPort) {
    while Arc::strong_count(&ctl.shared) > 1 {
        let mut fds = [libc::pollfd {
            fd: -1,
            events: libc::POLLIN,
            revents: 0,
        }; 2];
        if let Some(c) = ctl.ctrl.as_ref() {
            fds[0].fd = c.as_raw_fd();
        }
        if let Some(l) = ctl.listener.as_ref() {
            fds[1].fd = l.as_raw_fd();
        }
        // SAFETY: two pollfds of ours (a negative fd is ignored); 10 ms at most.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, 10) };
        let fault = ctl.shared.gate.first_fault();
        let now = Instant::now();
        let handshake = ctl.phase != Phase::Up && ctl.phase != Phase::Down;
        let retry = ctl.cfg.role == Role::Slave && ctl.ctrl.is_none() && now >= ctl.next_try;
        if r > 0 || fault.is_some() || handshake || retry {
            ctl.pause();
            if let Some(f) = fault {
                let why = if f == FAULT_INDEX {
                    "peer ring index out of range"
                } else {
                    "peer descriptor outside its regions"
                };
                ctl.fail(Fail(why.into()), true, false);
                ctl.shared.gate.clear_faults();
            }
            ctl.poll_control();
            ctl.resume();
            let (c, sh) = (ctl.counters, &ctl.shared);
            sh.link_up.store(c.link_up, Ordering::Relaxed);
            sh.link_down.store(c.link_down, Ordering::Relaxed);
            sh.ctrl_errors.store(c.ctrl_errors, Ordering::Relaxed);
            sh.connect_failures
                .store(c.connect_failures, Ordering::Relaxed);
        }
    }
}

impl MemifPort {
    /// Stops every queue pair's worker from touching the link and waits until none
    /// is inside a burst ([`Gate::pause`]).
    fn pause(&self) {
        self.shared.gate.pause();
    }

    fn resume(&self) {
        self.shared.gate.resume();
    }
}

impl MemifQueue {
    /// This pair's index (ring `q` each way).
    pub fn queue(&self) -> usize {
        self.q
    }

    /// Whether the link is up with this pair among its rings.
    pub fn is_up(&self) -> bool {
        self.q < self.shared.pairs.load(Ordering::Acquire)
    }

    /// This pair's counters (frames, faults it found, zero-copy), with the link's
    /// `link_up`, `link_down`, `ctrl_errors` and `connect_failures`.
    pub fn counters(&self) -> MemifCounters {
        let sh = &self.shared;
        MemifCounters {
            link_up: sh.link_up.load(Ordering::Relaxed),
            link_down: sh.link_down.load(Ordering::Relaxed),
            ctrl_errors: sh.ctrl_errors.load(Ordering::Relaxed),
            connect_failures: sh.connect_failures.load(Ordering::Relaxed),
            ..self.counters
        }
    }

    /// Enters a burst: this pair's state and the link's regions while the link is
    /// up with it, `None` while the control owner holds the link, after a fault it
    /// has not handled yet, or while the pair is down. Both stay valid, and the pair
    /// this queue's alone, until [`Self::leave`].
    #[inline(always)]
    fn enter(&self) -> Option<(*mut Pair, *const [Mapping])> {
        if !self.shared.gate.enter(self.q) {
            return None;
        }
        // SAFETY: entered: the control owner changes nothing until we leave.
        let link = unsafe { &*self.shared.link.get() };
        match link.as_ref().and_then(|l| Some((l.pairs.get(self.q)?, l))) {
            Some((p, l)) => Some((p.get(), l.regions.as_slice() as *const [Mapping])),
            None => {
                self.shared.gate.leave(self.q);
                None
            }
        }
    }

    #[inline(always)]
    fn leave(&self) {
        self.shared.gate.leave(self.q);
    }

    fn done(&mut self, res: Result<usize, RingFault>) -> usize {
        match res {
            Ok(n) => n,
            Err(f) => {
                let code = match f {
                    RingFault::Index => {
                        self.counters.ring_errors += 1;
                        FAULT_INDEX
                    }
                    RingFault::Desc => {
                        self.counters.bad_desc += 1;
                        FAULT_DESC
                    }
                };
                self.shared.gate.report(self.q, code);
                0
            }
        }
    }
}

impl Port for MemifQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        let Some((p, regions)) = self.enter() else {
            return 0;
        };
        // SAFETY: entered: the control owner changes nothing until we leave; pair
        // q's cell is touched by this queue alone and the regions are only read.
        let (p, regions) = unsafe { (&mut *p, &*regions) };
        let res = rx_pair(
            p,
            regions,
            cache,
            batch,
            &mut self.stats,
            &mut self.counters,
        );
        self.leave();
        self.done(res)
    }

    fn tx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        let Some((p, regions)) = self.enter() else {
            let n = batch.len() as u64;
            batch.free_all(cache);
            self.stats.tx_dropped += n;
            self.counters.down_tx_drops += n;
            return 0;
        };
        // SAFETY: as in `rx_burst`.
        let (p, regions) = unsafe { (&mut *p, &*regions) };
        let res = tx_pair(
            p,
            regions,
            cache,
            batch,
            &mut self.stats,
            &mut self.counters,
        );
        self.leave();
        self.done(res)
    }

    fn stats(&self) -> PortStats {
        self.stats
    }

    fn mac(&self) -> Option<[u8; 6]> {
        Some(self.mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::Pool;
    use std::thread::sleep;

    fn sock(tag: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(alloc::format!("dp-memif-{}-{tag}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    fn cfg(role: Role) -> Config {
        Config {
            role,
            retry: Duration::from_millis(10),
            ..Config::default()
        }
    }

    /// Polls both ends until both are up (or 5 s pass).
    fn bring_up(a: &mut MemifPort, b: &mut MemifPort) {
        let t = Instant::now();
        while !(a.is_up() && b.is_up()) {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "link did not come up: {:?} / {:?}",
                a.last_error(),
                b.last_error()
            );
            a.poll_control();
            b.poll_control();
            sleep(Duration::from_millis(1));
        }
    }

    fn frame(i: usize, len: usize) -> alloc::vec::Vec<u8> {
        (0..len).map(|j| (i * 7 + j) as u8).collect()
    }

    /// Sends `frames` from `a` to `b`, receiving as it goes; returns what `b` got.
    fn pass(
        a: &mut MemifPort,
        b: &mut MemifPort,
        c: &mut PoolCache,
        frames: &[alloc::vec::Vec<u8>],
    ) -> alloc::vec::Vec<alloc::vec::Vec<u8>> {
        let mut got = alloc::vec::Vec::new();
        let mut next = 0;
        let t = Instant::now();
        let mut batch = Batch::new();
        while got.len() < frames.len() && t.elapsed() < Duration::from_secs(5) {
            while next < frames.len() && batch.len() < 32 {
                let mut p = c.alloc().unwrap();
                p.copy_from(&frames[next]).unwrap();
                batch.push(p).unwrap();
                next += 1;
            }
            a.tx_burst(c, &mut batch);
            let mut rx = Batch::new();
            b.rx_burst(c, &mut rx);
            for p in rx.iter() {
                got.push(p.data().to_vec());
            }
            rx.free_all(c);
        }
        batch.free_all(c);
        got
    }

    #[test]
    fn master_and_slave_exchange_traffic() {
        exchange_traffic(false);
    }

    #[test]
    fn master_and_zero_copy_slave_exchange_traffic() {
        exchange_traffic(true);
    }

    fn exchange_traffic(zero_copy: bool) {
        let path = sock(if zero_copy { "traffic-zc" } else { "traffic" });
        let pool = Pool::new(1024).unwrap();
        let mut c = pool.cache();
        let mut m = MemifPort::open(&path, &cfg(Role::Master)).unwrap();
        // Copy mode with small slave buffers: frames above 1024 bytes travel as
        // descriptor chains. Zero-copy posts whole engine buffers (DATA_ROOM).
        let scfg = Config {
            buf_size: 1024,
            log2_ring: 8,
            zero_copy,
            ..cfg(Role::Slave)
        };
        let mut s = MemifPort::open(&path, &scfg).unwrap();
        bring_up(&mut m, &mut s);
        assert_eq!(m.peer_name(), "dataplane");
        let frames: alloc::vec::Vec<_> =
            (0..2000).map(|i| frame(i, 60 + (i * 37) % 1989)).collect();
        let got = pass(&mut s, &mut m, &mut c, &frames);
        assert_eq!(got, frames, "slave -> master");
        let got = pass(&mut m, &mut s, &mut c, &frames);
        assert_eq!(got, frames, "master -> slave");
        let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
        let (ms, ss) = (m.stats(), s.stats());
        assert_eq!((ms.rx_packets, ms.tx_packets), (2000, 2000));
        assert_eq!((ss.rx_packets, ss.tx_packets), (2000, 2000));
        assert_eq!(ms.rx_bytes, ss.tx_bytes);
        assert_eq!(ss.rx_bytes, ms.tx_bytes);
        assert_eq!(ms.rx_bytes, bytes);
        assert_eq!(
            ms.rx_dropped + ss.rx_dropped + ms.tx_dropped + ss.tx_dropped,
            0
        );
        assert_eq!(m.counters().ctrl_errors + s.counters().ctrl_errors, 0);
        let sc = s.counters();
        if zero_copy {
            // Received in place; sent from our pool's packets, so copied once each.
            assert_eq!((sc.zc_frames, sc.zc_copies), (2000, 2000));
        } else {
            assert_eq!((sc.zc_frames, sc.zc_copies), (0, 0));
        }
        assert_eq!(pool.available(), 1024 - c.cached());
    }

    /// Two zero-copy slave links, frames received on one sent on the other (a VNF's
    /// port-to-port forwarding): the same shared buffers travel S2C on the first link
    /// and C2S on the second, nothing is copied, and no buffer is lost — more frames
    /// pass than the shared region holds, so a leak per frame would stall the run.
    #[test]
    fn zero_copy_forwarding_copies_nothing_and_leaks_nothing() {
        let (p1, p2) = (sock("zcfwd1"), sock("zcfwd2"));
        let pool = Pool::new(1024).unwrap();
        let mut c = pool.cache();
        let mut m1 = MemifPort::open(&p1, &cfg(Role::Master)).unwrap();
        let mut m2 = MemifPort::open(&p2, &cfg(Role::Master)).unwrap();
        let mut s1 = MemifPort::open(&p1, &cfg(Role::Slave)).unwrap();
        let mut s2 = MemifPort::open(&p2, &cfg(Role::Slave)).unwrap();
        bring_up(&mut m1, &mut s1);
        bring_up(&mut m2, &mut s2);
        let total = SHARED_BUFFERS as usize + 4000;
        let (mut sent, mut got, mut bad) = (0usize, 0usize, 0usize);
        let (mut gen, mut fwd, mut sink) = (Batch::new(), Batch::new(), Batch::new());
        let t = Instant::now();
        while got < total && t.elapsed() < Duration::from_secs(20) {
            while sent < total && gen.len() < 64 {
                let mut p = c.alloc().unwrap();
                p.copy_from(&frame(sent, 60 + sent % 200)).unwrap();
                gen.push(p).unwrap();
                sent += 1;
            }
            m1.tx_burst(&mut c, &mut gen);
            s1.rx_burst(&mut c, &mut fwd);
            s2.tx_burst(&mut c, &mut fwd);
            m2.rx_burst(&mut c, &mut sink);
            for p in sink.iter() {
                if p.data() != frame(got, 60 + got % 200).as_slice() {
                    bad += 1;
                }
                got += 1;
            }
            sink.free_all(&mut c);
        }
        assert_eq!(got, total, "frames through both links");
        assert_eq!(bad, 0, "frames changed on the way");
        let (c1, c2) = (s1.counters(), s2.counters());
        assert_eq!(c1.zc_frames, total as u64, "received in place");
        assert_eq!(c2.zc_frames, total as u64, "sent in place");
        assert_eq!(c1.zc_copies + c2.zc_copies, 0);
        assert_eq!(s1.stats().rx_dropped + s2.stats().tx_dropped, 0);
        gen.free_all(&mut c);
        fwd.free_all(&mut c);
    }

    /// Waits (5 s at most) until every queue reports `up`.
    fn wait_queues(qs: &[&MemifQueue], up: bool) {
        let t = Instant::now();
        while qs.iter().any(|q| q.is_up() != up) {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "queues did not go {}",
                if up { "up" } else { "down" }
            );
            sleep(Duration::from_millis(1));
        }
    }

    /// A frame tagged with the queue pair it is sent on (byte 0) and its number.
    fn qframe(q: usize, i: usize) -> alloc::vec::Vec<u8> {
        let mut f = frame(i, 60 + (i * 37) % 1400);
        f[0] = q as u8;
        f[1..5].copy_from_slice(&(i as u32).to_be_bytes());
        f
    }

    /// Sends `n` tagged frames each way over one queue pair (slave queue `s`,
    /// master queue `m`) and checks that exactly those come out, in order.
    fn pair_traffic(s: &mut MemifQueue, m: &mut MemifQueue, n: usize) {
        let q = s.queue();
        let pool = Pool::new(512).unwrap();
        let mut c = pool.cache();
        for (from, to) in [(0, 1), (1, 0)] {
            let (a, b): (&mut MemifQueue, &mut MemifQueue) = if from == 0 {
                (&mut *s, &mut *m)
            } else {
                (&mut *m, &mut *s)
            };
            let (mut next, mut got) = (0, 0);
            let mut batch = Batch::new();
            let t = Instant::now();
            while got < n {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "queue {q} {from}->{to}: {got} of {n}"
                );
                while next < n && batch.len() < 32 {
                    let mut p = c.alloc().unwrap();
                    p.copy_from(&qframe(q, next)).unwrap();
                    batch.push(p).unwrap();
                    next += 1;
                }
                a.tx_burst(&mut c, &mut batch);
                let mut rx = Batch::new();
                b.rx_burst(&mut c, &mut rx);
                for p in rx.iter() {
                    assert_eq!(p.data(), qframe(q, got).as_slice(), "queue {q} frame {got}");
                    got += 1;
                }
                rx.free_all(&mut c);
            }
            batch.free_all(&mut c);
        }
    }

    #[test]
    fn two_queue_pairs_carry_their_own_traffic() {
        two_queue_pairs(true);
        two_queue_pairs(false);
    }

    /// Our master and our slave with `queues=2`, each pair on a thread of its own
    /// at once: every frame comes out of the pair it went into (no cross-talk), and
    /// each pair's counters on one side equal the other side's.
    fn two_queue_pairs(zero_copy: bool) {
        let path = sock(if zero_copy { "mq-zc" } else { "mq-copy" });
        let m = open_queues(
            &path,
            &Config {
                queues: 2,
                ..cfg(Role::Master)
            },
        )
        .unwrap();
        let s = open_queues(
            &path,
            &Config {
                queues: 2,
                buf_size: 1024,
                log2_ring: 8,
                zero_copy,
                ..cfg(Role::Slave)
            },
        )
        .unwrap();
        assert_eq!((m.len(), s.len()), (2, 2));
        assert!(s[1].name().ends_with("/slave,queue=1"), "{}", s[1].name());
        wait_queues(&[&m[0], &m[1], &s[0], &s[1]], true);
        const N: usize = 3000;
        let workers: alloc::vec::Vec<_> = m
            .into_iter()
            .zip(s)
            .map(|(mut m, mut s)| {
                std::thread::spawn(move || {
                    pair_traffic(&mut s, &mut m, N);
                    (m, s)
                })
            })
            .collect();
        for w in workers {
            let (m, s) = w.join().unwrap();
            let (ms, ss) = (m.stats(), s.stats());
            let q = m.queue();
            assert_eq!((ms.rx_packets, ms.tx_packets), (N as u64, N as u64), "{q}");
            assert_eq!((ss.rx_packets, ss.tx_packets), (N as u64, N as u64), "{q}");
            assert_eq!(
                (ms.rx_bytes, ms.tx_bytes),
                (ss.tx_bytes, ss.rx_bytes),
                "{q}"
            );
            assert_eq!(
                ms.rx_dropped + ms.tx_dropped + ss.rx_dropped + ss.tx_dropped,
                0,
                "{q}"
            );
            let (mc, sc) = (m.counters(), s.counters());
            assert_eq!((mc.link_up, sc.link_up), (1, 1));
            assert_eq!(
                mc.ctrl_errors + sc.ctrl_errors + mc.bad_desc + sc.bad_desc,
                0
            );
            if zero_copy {
                // Received in place; sent from the test's pool, so copied once each.
                assert_eq!((sc.zc_frames, sc.zc_copies), (N as u64, N as u64), "{q}");
            } else {
                assert_eq!(sc.zc_frames, 0);
            }
        }
    }

    /// A slave asking for more pairs than the master allows runs with the master's
    /// count; its extra queue stays down and drops what it is given.
    #[test]
    fn fewer_pairs_than_asked() {
        let path = sock("mq-fewer");
        let mut m = MemifPort::open(&path, &cfg(Role::Master)).unwrap();
        let mut s = open_queues(
            &path,
            &Config {
                queues: 2,
                ..cfg(Role::Slave)
            },
        )
        .unwrap();
        let t = Instant::now();
        while !(m.is_up() && s[0].is_up()) {
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", m.last_error());
            m.poll_control();
            sleep(Duration::from_millis(1));
        }
        assert_eq!(m.queues_up(), 1);
        assert!(!s[1].is_up());
        let pool = Pool::new(64).unwrap();
        let mut c = pool.cache();
        let mut b = Batch::new();
        let mut p = c.alloc().unwrap();
        p.copy_from(&frame(1, 64)).unwrap();
        b.push(p).unwrap();
        assert_eq!(s[1].tx_burst(&mut c, &mut b), 0);
        assert!(b.is_empty());
        assert_eq!(s[1].counters().down_tx_drops, 1);
        let f = [frame(2, 64)];
        let mut got = alloc::vec::Vec::new();
        let t = Instant::now();
        while got.is_empty() && t.elapsed() < Duration::from_secs(5) {
            let mut p = c.alloc().unwrap();
            p.copy_from(&f[0]).unwrap();
            b.push(p).unwrap();
            m.tx_burst(&mut c, &mut b);
            b.free_all(&mut c);
            s[0].rx_burst(&mut c, &mut b);
            got.extend(b.iter().map(|p| p.data().to_vec()));
            b.free_all(&mut c);
        }
        assert_eq!(got[0], f[0]);
    }

    /// Two pairs on worker threads that keep bursting while the peer goes away and
    /// comes back, in both directions: no crash, every queue reports the link down,
    /// frames sent meanwhile are counted as dropped, and after the reconnect both
    /// pairs carry traffic again.
    #[test]
    fn two_queue_pairs_survive_peers_that_leave() {
        use std::sync::atomic::AtomicBool;
        let path = sock("mq-leave");
        let mcfg = Config {
            queues: 2,
            ..cfg(Role::Master)
        };
        let scfg = Config {
            queues: 2,
            ..cfg(Role::Slave)
        };
        let mut m = open_queues(&path, &mcfg).unwrap();
        let s = open_queues(&path, &scfg).unwrap();
        wait_queues(&[&m[0], &m[1], &s[0], &s[1]], true);
        // Workers hammer the master's pairs (send and receive) the whole time.
        let stop = Arc::new(AtomicBool::new(false));
        let spin = |mut q: MemifQueue, stop: Arc<AtomicBool>| {
            std::thread::spawn(move || {
                let pool = Pool::new(256).unwrap();
                let mut c = pool.cache();
                let mut b = Batch::new();
                while !stop.load(Ordering::Relaxed) {
                    while b.len() < 8 {
                        let mut p = c.alloc().unwrap();
                        p.copy_from(&frame(q.queue(), 64)).unwrap();
                        b.push(p).unwrap();
                    }
                    q.tx_burst(&mut c, &mut b);
                    let mut rx = Batch::new();
                    q.rx_burst(&mut c, &mut rx);
                    rx.free_all(&mut c);
                }
                b.free_all(&mut c);
                q
            })
        };
        let hs: alloc::vec::Vec<_> = m.drain(..).map(|q| spin(q, stop.clone())).collect();
        sleep(Duration::from_millis(50));
        // The slave goes away (its queues dropped: DISCONNECT, socket closed).
        // the workers keep bursting through the link going down
        drop(s);
        sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let mut m: alloc::vec::Vec<MemifQueue> =
            hs.into_iter().map(|h| h.join().unwrap()).collect();
        wait_queues(&[&m[0], &m[1]], false);
        for q in &m {
            let c = q.counters();
            assert_eq!((c.link_up, c.link_down), (1, 1), "queue {}", q.queue());
            assert!(c.down_tx_drops > 0, "queue {}: drops while down", q.queue());
        }
        // A new slave: both pairs up and carrying traffic again.
        let mut s = open_queues(&path, &scfg).unwrap();
        wait_queues(&[&m[0], &m[1], &s[0], &s[1]], true);
        for (sq, mq) in s.iter_mut().zip(m.iter_mut()) {
            pair_traffic(sq, mq, 200);
        }
        assert_eq!(m[0].counters().link_up, 2);
        // Now the master goes away while the slave's pairs keep bursting; the slave
        // reconnects to the next master on the path.
        stop.store(false, Ordering::Relaxed);
        let hs: alloc::vec::Vec<_> = s.drain(..).map(|q| spin(q, stop.clone())).collect();
        sleep(Duration::from_millis(50));
        drop(m);
        sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        let mut s: alloc::vec::Vec<MemifQueue> =
            hs.into_iter().map(|h| h.join().unwrap()).collect();
        wait_queues(&[&s[0], &s[1]], false);
        assert_eq!(s[1].counters().link_down, 1);
        assert!(s[0].counters().down_tx_drops > 0);
        let mut m = open_queues(&path, &mcfg).unwrap();
        wait_queues(&[&m[0], &m[1], &s[0], &s[1]], true);
        for (sq, mq) in s.iter_mut().zip(m.iter_mut()) {
            pair_traffic(sq, mq, 200);
        }
        assert_eq!(s[0].counters().link_up, 2);
        assert_eq!(s[0].counters().ctrl_errors + m[0].counters().ctrl_errors, 0);
    }

    #[test]
    fn full_ring_holds_frames_in_the_batch() {
        let path = sock("full");
        let pool = Pool::new(512).unwrap();
        let mut c = pool.cache();
        let mut m = MemifPort::open(&path, &cfg(Role::Master)).unwrap();
        let mut s = MemifPort::open(
            &path,
            &Config {
                log2_ring: 4,
                ..cfg(Role::Slave)
            },
        )
        .unwrap();
        bring_up(&mut m, &mut s);
        let mut batch = Batch::new();
        for i in 0..40 {
            let mut p = c.alloc().unwrap();
            p.copy_from(&frame(i, 64)).unwrap();
            batch.push(p).unwrap();
        }
        // 16 slots: 16 go, 24 stay for a retry.
        assert_eq!(s.tx_burst(&mut c, &mut batch), 16);
        assert_eq!(batch.len(), 24);
        let mut rx = Batch::new();
        assert_eq!(m.rx_burst(&mut c, &mut rx), 16);
        assert_eq!(s.tx_burst(&mut c, &mut batch), 16);
        rx.free_all(&mut c);
        batch.free_all(&mut c);
        // The master towards the slave: only as many as the slave posted.
        for i in 0..40 {
            let mut p = c.alloc().unwrap();
            p.copy_from(&frame(i, 64)).unwrap();
            batch.push(p).unwrap();
        }
        assert_eq!(m.tx_burst(&mut c, &mut batch), 16);
        assert_eq!(s.rx_burst(&mut c, &mut rx), 16);
        rx.free_all(&mut c);
        batch.free_all(&mut c);
    }

    #[test]
    fn peers_that_leave_and_come_back() {
        let path = sock("restart");
        let pool = Pool::new(256).unwrap();
        let mut c = pool.cache();
        let mut m = MemifPort::open(&path, &cfg(Role::Master)).unwrap();
        let mut s = MemifPort::open(&path, &cfg(Role::Slave)).unwrap();
        bring_up(&mut m, &mut s);
        // The slave goes away: the master sees the link down and drops what it sends.
        drop(s);
        let t = Instant::now();
        while m.is_up() && t.elapsed() < Duration::from_secs(2) {
            m.poll_control();
        }
        assert!(!m.is_up());
        assert_eq!(m.counters().link_down, 1);
        assert!(
            m.last_error().unwrap().contains("Interface closed"),
            "{:?}",
            m.last_error()
        );
        let mut batch = Batch::new();
        let mut p = c.alloc().unwrap();
        p.copy_from(&[1; 60]).unwrap();
        batch.push(p).unwrap();
        assert_eq!(m.tx_burst(&mut c, &mut batch), 0);
        assert!(batch.is_empty());
        assert_eq!(m.counters().down_tx_drops, 1);
        assert_eq!(m.stats().tx_dropped, 1);
        // A new slave: accepted, traffic flows.
        let mut s = MemifPort::open(&path, &cfg(Role::Slave)).unwrap();
        bring_up(&mut m, &mut s);
        assert_eq!(m.counters().link_up, 2);
        let f = [frame(1, 100)];
        assert_eq!(pass(&mut m, &mut s, &mut c, &f), f);
        // The master goes away (process killed: no DISCONNECT, socket closed); the
        // slave retries until a new master listens on the same path.
        drop(m);
        let t = Instant::now();
        while s.is_up() && t.elapsed() < Duration::from_secs(2) {
            s.poll_control();
        }
        assert!(!s.is_up());
        for _ in 0..3 {
            s.poll_control();
            sleep(Duration::from_millis(15));
        }
        assert!(s.counters().connect_failures >= 1);
        let mut m = MemifPort::open(&path, &cfg(Role::Master)).unwrap();
        bring_up(&mut m, &mut s);
        assert_eq!(s.counters().link_up, 2);
        assert_eq!(s.counters().link_down, 1);
        assert_eq!(pass(&mut s, &mut m, &mut c, &f), f);
        assert_eq!(s.counters().ctrl_errors + m.counters().ctrl_errors, 0);
    }

    /// A master that goes away mid-run, again and again, while the zero-copy slave
    /// has buffers posted and frames in flight: each link-down returns them to the
    /// shared pool (24 links × 1024 posted buffers exceed the region, so a leak would
    /// leave the later links without buffers and the frames would not arrive).
    #[test]
    fn zero_copy_slave_returns_its_buffers_when_the_master_leaves() {
        let path = sock("zcrestart");
        let pool = Pool::new(512).unwrap();
        let mut c = pool.cache();
        let mut s = MemifPort::open(&path, &cfg(Role::Slave)).unwrap();
        for round in 0..24u32 {
            let mut m = MemifPort::open(&path, &cfg(Role::Master)).unwrap();
            bring_up(&mut m, &mut s);
            let f: alloc::vec::Vec<_> = (0..40).map(|i| frame(i, 64 + i)).collect();
            assert_eq!(pass(&mut m, &mut s, &mut c, &f), f, "round {round}");
            // frames left in flight on the slave's transmit ring
            let mut b = Batch::new();
            for x in &f {
                let mut p = c.alloc().unwrap();
                p.copy_from(x).unwrap();
                b.push(p).unwrap();
            }
            s.tx_burst(&mut c, &mut b);
            b.free_all(&mut c);
            drop(m);
            let t = Instant::now();
            while s.is_up() && t.elapsed() < Duration::from_secs(2) {
                s.poll_control();
            }
            assert!(!s.is_up(), "round {round}: link still up");
        }
        assert_eq!(s.counters().link_down, 24);
        assert_eq!(s.stats().rx_dropped, 0);
    }

    #[test]
    fn second_slave_is_refused_and_id_and_secret_are_checked() {
        let path = sock("refuse");
        let mcfg = Config {
            id: 5,
            secret: Some("sesame".into()),
            ..cfg(Role::Master)
        };
        let mut m = MemifPort::open(&path, &mcfg).unwrap();
        // wrong id
        let mut s = MemifPort::open(
            &path,
            &Config {
                id: 4,
                ..cfg(Role::Slave)
            },
        )
        .unwrap();
        let t = Instant::now();
        while s.last_error().is_none() && t.elapsed() < Duration::from_secs(2) {
            s.poll_control();
            m.poll_control();
        }
        assert_eq!(m.last_error(), Some("ID not found"));
        assert!(s.last_error().unwrap().contains("ID not found"));
        assert!(!m.is_up() && !s.is_up());
        // right id, wrong secret
        let bad = Config {
            id: 5,
            secret: Some("open".into()),
            ..cfg(Role::Slave)
        };
        let mut s = MemifPort::open(&path, &bad).unwrap();
        let t = Instant::now();
        while s.last_error().is_none() && t.elapsed() < Duration::from_secs(2) {
            s.poll_control();
            m.poll_control();
        }
        assert_eq!(m.last_error(), Some("Incorrect secret"));
        // right id and secret
        let good = Config {
            id: 5,
            secret: Some("sesame".into()),
            ..cfg(Role::Slave)
        };
        let mut s = MemifPort::open(&path, &good).unwrap();
        bring_up(&mut m, &mut s);
        // a second slave is refused; the first stays up
        let mut s2 = MemifPort::open(&path, &good).unwrap();
        let t = Instant::now();
        while s2.last_error().is_none() && t.elapsed() < Duration::from_secs(2) {
            s2.poll_control();
            m.poll_control();
        }
        assert!(s2.last_error().unwrap().contains("Already connected"));
        assert!(m.is_up() && s.is_up());
        assert_eq!(m.counters().ctrl_errors, 2);
    }

    #[test]
    fn master_path_in_use() {
        let path = sock("inuse");
        let _m = MemifPort::open(&path, &cfg(Role::Master)).unwrap();
        assert!(matches!(
            MemifPort::open(&path, &cfg(Role::Master)),
            Err(MemifError::InUse { .. })
        ));
        let long = PathBuf::from("/".repeat(120));
        assert!(matches!(
            MemifPort::open(&long, &cfg(Role::Slave)),
            Err(MemifError::Path(_))
        ));
    }

    // ---- hostile peers ----

    /// A raw control socket connected to `path`.
    fn raw_client(path: &Path) -> OwnedFd {
        let s = seqpacket().unwrap();
        let (sa, len) = sockaddr(path).unwrap();
        // SAFETY: valid sockaddr_un.
        let r =
            unsafe { libc::connect(s.as_raw_fd(), (&sa as *const libc::sockaddr_un).cast(), len) };
        assert_eq!(r, 0);
        s
    }

    /// Waits (polling `port`) for a message on `fd`.
    fn expect_msg(port: &mut MemifPort, fd: &OwnedFd) -> Option<Msg> {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(2) {
            port.poll_control();
            match recv_msg(fd.as_raw_fd()) {
                Ok(Some(r)) => return Msg::parse(&r.buf[..r.len.min(256)]).ok(),
                Ok(None) => sleep(Duration::from_millis(1)),
                Err(_) => return None,
            }
        }
        None
    }

    fn memfd(size: usize, seal: bool) -> (OwnedFd, Mapping) {
        let name = CString::new("hostile").unwrap();
        // SAFETY: test helper; results checked.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_ALLOW_SEALING) };
        assert!(fd >= 0);
        // SAFETY: fresh fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sizing and sealing our own memfd.
        unsafe {
            assert_eq!(libc::ftruncate(fd.as_raw_fd(), size as libc::off_t), 0);
            if seal {
                assert_eq!(
                    libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK),
                    0
                );
            }
        }
        let m = Mapping::map(fd.as_raw_fd(), size).unwrap();
        (fd, m)
    }

    fn init(id: u32) -> Msg {
        Msg::Init(Init {
            version: VERSION,
            id,
            mode: 0,
            secret: [0; SECRET_LEN],
            name: fixed("hostile"),
        })
    }

    fn ring(c2s: bool, offset: u32, log2: u8) -> Msg {
        Msg::AddRing(AddRing {
            flags: if c2s { wire::ADD_RING_FLAG_C2S } else { 0 },
            index: 0,
            region: 0,
            offset,
            log2_ring_size: log2,
            private_hdr_size: 0,
        })
    }

    /// Plays a slave that sends `script` (message bytes and an optional fd) after
    /// HELLO, each answered by ACK until the last, which must make the master drop
    /// the connection with an error containing `want`.
    fn hostile_slave(
        m: &mut MemifPort,
        script: &[(alloc::vec::Vec<u8>, Option<RawFd>)],
        want: &str,
    ) {
        let errs = m.counters().ctrl_errors;
        let c = raw_client(&m.path.clone());
        assert!(matches!(expect_msg(m, &c), Some(Msg::Hello(_))));
        for (i, (bytes, fd)) in script.iter().enumerate() {
            send_raw(c.as_raw_fd(), bytes, *fd).unwrap();
            let reply = expect_msg(m, &c);
            if i + 1 < script.len() {
                assert_eq!(reply, Some(Msg::Ack), "step {i} of {want}");
            } else {
                match reply {
                    Some(Msg::Disconnect { reason, .. }) => {
                        assert!(text(&reason).contains(want), "{} vs {want}", text(&reason))
                    }
                    r => panic!("expected DISCONNECT for {want}, got {r:?}"),
                }
            }
        }
        assert!(
            m.last_error().unwrap().contains(want),
            "{:?}",
            m.last_error()
        );
        assert_eq!(m.counters().ctrl_errors, errs + 1, "{want}");
        assert!(!m.is_up());
    }

    #[test]
    fn master_survives_hostile_slaves() {
        let path = sock("hostile-slave");
        let mut m = MemifPort::open(&path, &cfg(Role::Master)).unwrap();
        let e = |m: Msg| m.emit().to_vec();
        let rb = ring_bytes(4);
        let size = 2 * rb + 4096;
        let (good_fd, good) = memfd(size, true);
        RingView::new(&good, 0, 4).unwrap().init(0);
        RingView::new(&good, rb, 4).unwrap().init(0);
        let g = Some(good_fd.as_raw_fd());
        let (unsealed, _um) = memfd(size, false);
        let (nocookie, _nm) = memfd(size, true);
        let region = |sz: usize| {
            e(Msg::AddRegion {
                index: 0,
                size: sz as u64,
            })
        };

        hostile_slave(&mut m, &[(alloc::vec![3u8; 64], None)], "of 64 bytes");
        hostile_slave(
            &mut m,
            &[(alloc::vec![0u8; 300], None)],
            "more than 256 bytes",
        );
        let mut t = [0u8; 128];
        t[0] = 42;
        hostile_slave(
            &mut m,
            &[(t.to_vec(), None)],
            "unknown control message type 42",
        );
        let mut v = init(0).emit();
        v[2] = 1; // version 1.x
        hostile_slave(&mut m, &[(v.to_vec(), None)], "Incompatible memif version");
        hostile_slave(&mut m, &[(e(init(9)), None)], "ID not found");
        hostile_slave(
            &mut m,
            &[(e(Msg::Ack), None)],
            "unexpected control message type 1",
        );
        hostile_slave(
            &mut m,
            &[(e(init(0)), None), (region(size), None)],
            "Missing region fd",
        );
        hostile_slave(
            &mut m,
            &[
                (e(init(0)), None),
                (
                    e(Msg::AddRegion {
                        index: 1,
                        size: size as u64,
                    }),
                    g,
                ),
            ],
            "Invalid region index",
        );
        hostile_slave(
            &mut m,
            &[(e(init(0)), None), (region(size + 4096), g)],
            "exceeds its file",
        );
        hostile_slave(
            &mut m,
            &[
                (e(init(0)), None),
                (region(size), Some(unsealed.as_raw_fd())),
            ],
            "not sealed",
        );
        hostile_slave(
            &mut m,
            &[
                (e(init(0)), None),
                (region(size), g),
                (e(ring(true, 0, 15)), g),
            ],
            "not supported",
        );
        let outside = (size - rb + 16) as u32;
        hostile_slave(
            &mut m,
            &[
                (e(init(0)), None),
                (region(size), g),
                (e(ring(true, outside, 4)), g),
                (e(ring(false, rb as u32, 4)), g),
                (e(Msg::Connect { name: fixed("x") }), None),
            ],
            "lies outside region",
        );
        hostile_slave(
            &mut m,
            &[
                (e(init(0)), None),
                (region(size), g),
                (e(ring(true, 0, 4)), g),
                (e(Msg::Connect { name: fixed("x") }), None),
            ],
            "Missing S2C ring",
        );
        hostile_slave(
            &mut m,
            &[
                (e(init(0)), None),
                (region(size), Some(nocookie.as_raw_fd())),
                (e(ring(true, 0, 4)), g),
                (e(ring(false, rb as u32, 4)), g),
                (e(Msg::Connect { name: fixed("x") }), None),
            ],
            "wrong cookie",
        );
        hostile_slave(
            &mut m,
            &[(e(init(0)), None), (e(init(0)), None)],
            "unexpected control",
        );
        // Ring indices: beyond what HELLO allowed, or with a gap.
        let ring_at = |c2s: bool, index: u16, offset: usize| {
            e(Msg::AddRing(AddRing {
                index,
                ..match ring(c2s, offset as u32, 4) {
                    Msg::AddRing(a) => a,
                    _ => unreachable!(),
                }
            }))
        };
        hostile_slave(
            &mut m,
            &[
                (e(init(0)), None),
                (region(size), g),
                (ring_at(true, 1, 0), g),
            ],
            "Invalid ring index",
        );
        {
            let p2 = sock("hostile-slave-2");
            let mut m2 = MemifPort::open(
                &p2,
                &Config {
                    queues: 2,
                    ..cfg(Role::Master)
                },
            )
            .unwrap();
            hostile_slave(
                &mut m2,
                &[
                    (e(init(0)), None),
                    (region(size), g),
                    (ring_at(true, 2, 0), g),
                ],
                "Invalid ring index",
            );
            hostile_slave(
                &mut m2,
                &[
                    (e(init(0)), None),
                    (region(size), g),
                    (ring_at(true, 1, 0), g),
                    (ring_at(false, 0, rb), g),
                    (e(Msg::Connect { name: fixed("x") }), None),
                ],
                "Missing C2S ring 0",
            );
            hostile_slave(
                &mut m2,
                &[
                    (e(init(0)), None),
                    (region(size), g),
                    (ring_at(true, 0, 0), g),
                    (ring_at(true, 0, rb), g),
                ],
                "Ring added twice",
            );
        }

        // A slave that completes the handshake, then corrupts its ring index and puts
        // a descriptor outside its memory.
        let pool = Pool::new(64).unwrap();
        let mut c = pool.cache();
        let cl = raw_client(&path);
        assert!(matches!(expect_msg(&mut m, &cl), Some(Msg::Hello(_))));
        for (b, fd) in [
            (e(init(0)), None),
            (region(size), g),
            (e(ring(true, 0, 4)), g),
            (e(ring(false, rb as u32, 4)), g),
            (e(Msg::Connect { name: fixed("x") }), None),
        ] {
            send_raw(cl.as_raw_fd(), &b, fd).unwrap();
            assert!(expect_msg(&mut m, &cl).is_some());
        }
        assert!(m.is_up());
        let c2s = RingView::new(&good, 0, 4).unwrap();
        // a descriptor outside the region: dropped and counted, link stays up
        c2s.desc(0).write(0, 0, 64, (size - 10) as u32);
        c2s.desc(1).write(0, 3, 64, 0);
        c2s.head().store(2, Ordering::Release);
        let mut rx = Batch::new();
        assert_eq!(m.rx_burst(&mut c, &mut rx), 0);
        assert_eq!(m.counters().bad_desc, 2);
        assert_eq!(m.stats().rx_dropped, 2);
        assert!(m.is_up());
        // head 100 entries ahead of a 16-entry ring: link dropped
        c2s.head().store(102, Ordering::Release);
        assert_eq!(m.rx_burst(&mut c, &mut rx), 0);
        assert!(!m.is_up());
        assert_eq!(m.counters().ring_errors, 1);
        assert_eq!(m.counters().link_down, 1);
        drop(cl);

        // After all that, a well-behaved slave still gets through.
        let mut s = MemifPort::open(&path, &cfg(Role::Slave)).unwrap();
        bring_up(&mut m, &mut s);
        let f = [frame(3, 200)];
        assert_eq!(pass(&mut s, &mut m, &mut c, &f), f);
    }

    /// A fake master: listens on `path`, accepts our slave and answers its HELLO
    /// with `script`.
    #[test]
    fn slave_survives_hostile_masters() {
        let path = sock("hostile-master");
        let l = seqpacket().unwrap();
        let (sa, len) = sockaddr(&path).unwrap();
        // SAFETY: valid sockaddr_un; our socket.
        unsafe {
            assert_eq!(
                libc::bind(l.as_raw_fd(), (&sa as *const libc::sockaddr_un).cast(), len),
                0
            );
            assert_eq!(libc::listen(l.as_raw_fd(), 4), 0);
        }
        let mut s = MemifPort::open(&path, &cfg(Role::Slave)).unwrap();
        let accept = |s: &mut MemifPort| -> OwnedFd {
            let t = Instant::now();
            loop {
                s.poll_control();
                // SAFETY: accept on our listener.
                let fd = unsafe {
                    libc::accept4(
                        l.as_raw_fd(),
                        core::ptr::null_mut(),
                        core::ptr::null_mut(),
                        0,
                    )
                };
                if fd >= 0 {
                    // SAFETY: fresh fd.
                    return unsafe { OwnedFd::from_raw_fd(fd) };
                }
                assert!(t.elapsed() < Duration::from_secs(2));
                sleep(Duration::from_millis(2));
            }
        };
        let hello = |min: u16, max: u16| {
            Msg::Hello(Hello {
                name: fixed("evil"),
                min_version: min,
                max_version: max,
                max_region: 0,
                max_s2c_ring: 0,
                max_c2s_ring: 0,
                max_log2_ring_size: 10,
            })
        };
        // Version 3 only.
        let c = accept(&mut s);
        send_msg(c.as_raw_fd(), &hello(0x300, 0x300), None).unwrap();
        match expect_msg(&mut s, &c) {
            Some(Msg::Disconnect { reason, .. }) => {
                assert_eq!(text(&reason), "Incompatible memif version")
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(s.counters().ctrl_errors, 1);
        // CONNECTED before anything else.
        let c = accept(&mut s);
        send_msg(c.as_raw_fd(), &Msg::Connected { name: fixed("x") }, None).unwrap();
        assert!(matches!(
            expect_msg(&mut s, &c),
            Some(Msg::Disconnect { .. })
        ));
        assert_eq!(s.counters().ctrl_errors, 2);
        // Garbage after a good HELLO.
        let c = accept(&mut s);
        send_msg(c.as_raw_fd(), &hello(VERSION, VERSION), None).unwrap();
        assert!(matches!(expect_msg(&mut s, &c), Some(Msg::Init(_))));
        send_raw(c.as_raw_fd(), &[1, 2, 3], None).unwrap();
        assert!(matches!(
            expect_msg(&mut s, &c),
            Some(Msg::Disconnect { .. })
        ));
        assert!(s.last_error().unwrap().contains("of 3 bytes"));
        assert_eq!(s.counters().ctrl_errors, 3);
        // A master that stalls mid-handshake: timed out.
        let quick = Config {
            handshake_timeout: Duration::from_millis(100),
            ..cfg(Role::Slave)
        };
        let mut s2 = MemifPort::open(&path, &quick).unwrap();
        let c = accept(&mut s2);
        send_msg(c.as_raw_fd(), &hello(VERSION, VERSION), None).unwrap();
        assert!(matches!(expect_msg(&mut s2, &c), Some(Msg::Init(_))));
        let t = Instant::now();
        while s2.last_error().is_none() && t.elapsed() < Duration::from_secs(2) {
            s2.poll_control();
            sleep(Duration::from_millis(5));
        }
        assert_eq!(s2.last_error(), Some("handshake timed out"));
        // A master that moves the receive tail past what the slave posted.
        let c = accept(&mut s);
        send_msg(c.as_raw_fd(), &hello(VERSION, VERSION), None).unwrap();
        loop {
            match expect_msg(&mut s, &c) {
                Some(Msg::Connect { .. }) => break,
                Some(_) => {}
                None => panic!("handshake stalled"),
            }
            send_msg(c.as_raw_fd(), &Msg::Ack, None).unwrap();
        }
        send_msg(
            c.as_raw_fd(),
            &Msg::Connected {
                name: fixed("evil"),
            },
            None,
        )
        .unwrap();
        let t = Instant::now();
        while !s.is_up() && t.elapsed() < Duration::from_secs(2) {
            s.poll_control();
        }
        assert!(s.is_up());
        assert_eq!(s.peer_name(), "evil");
        // SAFETY: test: nobody else touches the slave's link now.
        let l2 = unsafe { &*(*s.shared.link.get()).as_ref().unwrap().pairs[0].get() };
        l2.rx.tail().store(5000, Ordering::Release);
        let pool = Pool::new(64).unwrap();
        let mut cache = pool.cache();
        let mut rx = Batch::new();
        assert_eq!(s.rx_burst(&mut cache, &mut rx), 0);
        assert!(!s.is_up());
        assert_eq!(s.counters().ring_errors, 1);
        drop(l);
        let _ = std::fs::remove_file(&path);
    }
}
