//! vhost-user port: the **backend** (device) side of a virtio-net device whose driver
//! (the frontend: QEMU, DPDK's `net_virtio_user`, ...) lives in another process.
//!
//! Protocol: QEMU's `docs/interop/vhost-user.rst` (message codec in
//! [`crate::proto::vhost_user`]); rings: VIRTIO 1.1 §2.6 (split virtqueues); device:
//! VIRTIO 1.1 §5.1 (network device: ring 2k is the driver's receiveq(k+1), which we
//! fill, ring 2k+1 its transmitq(k+1), which we drain; multiqueue §5.1.6.5.5).
//!
//! **Roles.** `server`: we bind the unix stream socket and accept one frontend at a
//! time (a second is closed at once). Client (the default): we connect to a frontend
//! listening on the path (`net_virtio_user0,...,server=1`), retrying every
//! [`Config::retry`].
//!
//! **Negotiation.** Features offered: `VIRTIO_F_VERSION_1` and
//! `VHOST_USER_F_PROTOCOL_FEATURES`, with `queues=N` > 1 also `VIRTIO_NET_F_MQ` and
//! `VIRTIO_NET_F_CTRL_VQ` (the control queue stays with the frontend, which sends
//! `SET_VRING_ENABLE` for the pairs it uses); protocol features offered: `MQ`
//! (answering `GET_QUEUE_NUM` with N) and `REPLY_ACK`. Mergeable receive
//! buffers, indirect descriptors, event idx, offloads, dirty logging and the
//! backend request channel are not offered, so the virtio-net header is 12 bytes
//! with `VERSION_1` and 10 without, and we write it zeroed (`num_buffers` = 1).
//!
//! **Memory.** `SET_MEM_TABLE` brings one fd per region (`SCM_RIGHTS`); each is
//! mapped (`mmap_offset + size` bytes, checked against the file's size first). Ring
//! addresses (frontend user addresses) are translated through the regions'
//! `userspace_addr`, descriptor addresses (guest physical) through
//! `guest_phys_addr`; a ring must lie inside one region, a descriptor buffer too.
//!
//! **Fast path.** We poll: the used rings carry `VRING_USED_F_NO_NOTIFY` and kick
//! eventfds are never read. After writing a used ring we signal the ring's `call`
//! eventfd only when the driver left `VRING_AVAIL_F_NO_INTERRUPT` clear (a `write`
//! system call). `rx_burst`/`tx_burst` copy between guest memory and pool buffers
//! (the only copies), allocate nothing and lock nothing; the control socket is read
//! without blocking every [`CTRL_EVERY`] bursts while up ([`CTRL_EVERY_DOWN`] while
//! down). `dataplane/tests/vhost_user_noalloc.rs` checks it with a counting
//! allocator.
//!
//! **Bad frontends.** A malformed, unsupported or out-of-order message, a memory
//! table whose fds do not match, a ring outside every region: counted
//! ([`VhostCounters::ctrl_errors`]), the reason kept ([`VhostUserPort::last_error`]),
//! the connection closed. On the rings: an available index claiming more entries
//! than the ring holds, a head out of range ([`VhostCounters::ring_errors`]), a
//! descriptor outside every region, an indirect descriptor, a chain longer than the
//! ring (a loop) ([`VhostCounters::bad_desc`]): counted, connection closed. A frontend
//! that goes away takes the link down ([`VhostCounters::link_down`]); frames sent
//! while down are dropped and counted (`tx_dropped`, [`VhostCounters::down_tx_drops`]);
//! a server accepts the next frontend, a client reconnects.
//!
//! **Multi-queue.** [`VhostUserPort`] serves pair 0 and runs the control socket
//! inline (every [`CTRL_EVERY`] bursts). [`open_queues`] gives one [`VhostQueue`]
//! per pair, for one worker each: a worker touches only its pair's rings and its
//! own counters, takes no lock and never waits; the control socket is served by a
//! thread of the device's own that sleeps in `poll(2)` and, to apply a message,
//! pauses the pairs with a lock-free handshake (`Shared`): workers skip a burst
//! meanwhile. A ring fault a worker finds is handed to that thread, which closes
//! the connection as for a single pair. `dataplane/tests/vhost_user_testpmd.rs`
//! (`testpmd_two_queues_two_workers`) runs two pairs against DPDK's virtio-user.
//!
//! **Limits.** At most [`MAX_QUEUES`] pairs; split rings only (no packed ring); no
//! mergeable buffers (a frame longer than the driver's receive chain is dropped and
//! counted); a descriptor may not straddle two regions; no live migration (dirty
//! log), no IOMMU (`IOTLB`), no inflight tracking. Region files are checked when
//! mapped but need not be sealed (DPDK's and QEMU's are not), so a frontend that
//! shrinks one afterwards can fault us (`SIGBUS`), as with DPDK's vhost library.

use super::gate::Gate;
use super::{Port, PortStats};
use crate::batch::Batch;
use crate::buf::{PoolCache, DATA_ROOM, HEADROOM};
use crate::proto::vhost_user::{
    self as wire, avail_bytes, desc_bytes, used_bytes, Header, Out, Payload, VringState, DESC_SIZE,
    F_PROTOCOL_FEATURES, HDR_LEN, MAX_PAYLOAD, MAX_QUEUE_SIZE, PROTOCOL_F_MQ, PROTOCOL_F_REPLY_ACK,
    VIRTIO_F_VERSION_1, VIRTIO_NET_F_MRG_RXBUF, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_USED_F_NO_NOTIFY,
};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{fence, AtomicBool, AtomicU16, Ordering};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// While the link is up, the control socket is read every this many bursts.
pub const CTRL_EVERY: u32 = 256;
/// While it is down, every this many bursts.
pub const CTRL_EVERY_DOWN: u32 = 8;
/// Virtio features we offer.
pub const FEATURES: u64 = VIRTIO_F_VERSION_1 | F_PROTOCOL_FEATURES;
/// vhost-user protocol features we offer.
pub const PROTOCOL_FEATURES: u64 = PROTOCOL_F_MQ | PROTOCOL_F_REPLY_ACK;
/// Queue pairs a port may have (`queues=N`, the frontend's rings 0..2N).
pub const MAX_QUEUES: u16 = 64;
/// Virtio-net multiqueue (VIRTIO 1.1 §5.1.3) and the control queue it needs; offered
/// only with `queues` > 1. The frontend keeps the control queue to itself (DPDK's
/// virtio-user and QEMU both handle it and send `SET_VRING_ENABLE` for the pairs).
pub const VIRTIO_NET_F_CTRL_VQ: u64 = 1 << 17;
pub const VIRTIO_NET_F_MQ: u64 = 1 << 22;
/// Pair `k`'s rings: the driver's receiveq (we transmit into it) is `2k`, its
/// transmitq (we receive from it) `2k + 1`.
const RXQ: usize = 0;
const TXQ: usize = 1;

/// Port settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen (true) or connect (false).
    pub server: bool,
    /// Client: time between connection attempts.
    pub retry: Duration,
    /// Queue pairs (1..=[`MAX_QUEUES`]): [`VhostUserPort::open`] serves one,
    /// [`open_queues`] one per worker.
    pub queues: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: false,
            retry: Duration::from_millis(200),
            queues: 1,
        }
    }
}

/// Errors of opening a vhost-user port.
#[derive(Debug, thiserror::Error)]
pub enum VhostError {
    #[error("socket path {0:?} is empty or longer than 107 bytes")]
    Path(PathBuf),
    #[error("socket {path:?} is in use by a listening process")]
    InUse { path: PathBuf },
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        source: io::Error,
    },
}

/// vhost-user counters (beyond [`PortStats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VhostCounters {
    /// Times both rings became ready (link up).
    pub link_up: u64,
    /// Times an up link went down (frontend gone, ring stopped, error).
    pub link_down: u64,
    /// Connections dropped for a malformed, unsupported or refused message or a
    /// memory table / ring address that does not check out.
    pub ctrl_errors: u64,
    /// Client: connection attempts that found no frontend.
    pub connect_failures: u64,
    /// Descriptors outside every region, indirect, wrongly directed or in a loop.
    pub bad_desc: u64,
    /// Available indices or heads out of range.
    pub ring_errors: u64,
    /// Frames dropped by `tx_burst` while the link was down.
    pub down_tx_drops: u64,
    /// Frames longer than the driver's receive chain (dropped; counted in
    /// `tx_dropped` too).
    pub tx_too_long: u64,
    /// `call` eventfd signals sent.
    pub calls: u64,
}

/// An `mmap`ed region of the frontend's memory, unmapped on drop.
struct Region {
    gpa: u64,
    uaddr: u64,
    size: u64,
    /// Host address of `gpa` / `uaddr`.
    host: *mut u8,
    map: *mut u8,
    map_len: usize,
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: map/map_len come from our successful mmap.
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

/// Host address of `len` bytes at `a` in the address space picked by `key`.
#[inline(always)]
fn translate(regions: &[Region], a: u64, len: u64, key: fn(&Region) -> u64) -> Option<*mut u8> {
    for r in regions {
        let base = key(r);
        if a >= base {
            let off = a - base;
            if off <= r.size && len <= r.size - off {
                // SAFETY: off + len <= size: inside the mapped region.
                return Some(unsafe { r.host.add(off as usize) });
            }
        }
    }
    None
}

/// One split virtqueue as the frontend set it up.
struct Vq {
    num: u32,
    addr: Option<wire::VringAddr>,
    /// Host addresses once resolved (null before).
    desc: *mut u8,
    avail: *mut u8,
    used: *mut u8,
    last_avail: u16,
    used_idx: u16,
    started: bool,
    enabled: bool,
    kick: Option<OwnedFd>,
    call: Option<OwnedFd>,
    err: Option<OwnedFd>,
}

impl Default for Vq {
    fn default() -> Self {
        Vq {
            num: 0,
            addr: None,
            desc: core::ptr::null_mut(),
            avail: core::ptr::null_mut(),
            used: core::ptr::null_mut(),
            last_avail: 0,
            used_idx: 0,
            started: false,
            enabled: false,
            kick: None,
            call: None,
            err: None,
        }
    }
}

impl Vq {
    #[inline(always)]
    fn ready(&self) -> bool {
        !self.desc.is_null()
    }
    #[inline(always)]
    fn mask(&self) -> u16 {
        (self.num - 1) as u16
    }
    #[inline(always)]
    fn avail_idx(&self) -> u16 {
        // SAFETY: avail ring resolved inside a region, 2-aligned (checked).
        unsafe { AtomicU16::from_ptr(self.avail.add(2).cast()) }.load(Ordering::Acquire)
    }
    #[inline(always)]
    fn avail_flags(&self) -> u16 {
        // SAFETY: as above.
        unsafe { self.avail.cast::<u16>().read_volatile() }
    }
    #[inline(always)]
    fn avail_ring(&self, i: u16) -> u16 {
        // SAFETY: slot < num: inside the avail ring.
        unsafe {
            self.avail
                .add(4 + 2 * (i & self.mask()) as usize)
                .cast::<u16>()
                .read_volatile()
        }
    }
    /// Descriptor `i` (< num): addr, len, flags, next.
    #[inline(always)]
    fn desc(&self, i: u16) -> (u64, u32, u16, u16) {
        // SAFETY: i < num: inside the descriptor table (16-aligned, checked).
        unsafe {
            let d = self.desc.add(i as usize * DESC_SIZE);
            (
                d.cast::<u64>().read_volatile(),
                d.add(8).cast::<u32>().read_volatile(),
                d.add(12).cast::<u16>().read_volatile(),
                d.add(14).cast::<u16>().read_volatile(),
            )
        }
    }
    #[inline(always)]
    fn put_used(&mut self, id: u16, len: u32) {
        // SAFETY: slot < num: inside the used ring (4-aligned, checked).
        unsafe {
            let e = self
                .used
                .add(4 + 8 * (self.used_idx & self.mask()) as usize);
            e.cast::<u32>().write_volatile(id as u32);
            e.add(4).cast::<u32>().write_volatile(len);
        }
        self.used_idx = self.used_idx.wrapping_add(1);
    }
    #[inline(always)]
    fn publish_used(&self) {
        // SAFETY: used idx inside the used ring, 2-aligned.
        unsafe { AtomicU16::from_ptr(self.used.add(2).cast()) }
            .store(self.used_idx, Ordering::Release);
    }
}

/// Control failure: the reason, kept as the last error.
struct Fail(String);

impl<T: Into<String>> From<T> for Fail {
    fn from(s: T) -> Fail {
        Fail(s.into())
    }
}

/// A message being received (stream socket: it may come in pieces).
struct Incoming {
    buf: Box<[u8; HDR_LEN + MAX_PAYLOAD]>,
    have: usize,
    fds: Vec<OwnedFd>,
    /// More descriptors came than fit our control buffer.
    fds_truncated: bool,
}

/// What the fast path reads: the memory table, the rings, the header length.
struct Rings {
    hdr_len: usize,
    regions: Vec<Region>,
    /// `2 * queues` rings; a queue pair's worker owns its two while it runs.
    vq: Box<[UnsafeCell<Vq>]>,
}

impl Rings {
    fn new(queues: usize) -> Rings {
        Rings {
            hdr_len: 10,
            regions: Vec::with_capacity(wire::MAX_REGIONS),
            vq: (0..2 * queues)
                .map(|_| UnsafeCell::new(Vq::default()))
                .collect(),
        }
    }

    #[inline(always)]
    fn q(&mut self, i: usize) -> &mut Vq {
        self.vq[i].get_mut()
    }

    fn reset(&mut self) {
        self.hdr_len = 10;
        self.regions.clear();
        for q in self.vq.iter_mut() {
            *q.get_mut() = Vq::default();
        }
    }
}

/// The state a control owner shares with the queue pairs' workers.
///
/// Exclusion without a lock (a Dekker-style handshake, sequentially consistent on
/// both sides): a worker sets its `busy`, then reads `paused`, and touches the
/// rings only when it was clear; the control owner sets `paused`, then waits until
/// no `busy` is set, and only then changes the rings (memory table, ring
/// addresses, `GET_VRING_BASE`, disconnects). A worker never waits: a paused pair
/// just moves nothing for that burst.
struct Shared {
    rings: UnsafeCell<Rings>,
    /// The pause handshake with the pairs' workers ([`super::gate`]).
    gate: Gate,
    up: AtomicBool,
}

// SAFETY: `rings` is written only by the control owner while every worker is out
// of its burst (`paused` / `busy` above); workers read the table and each touches
// only its own pair's rings.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

impl Shared {
    fn new(queues: usize) -> Shared {
        Shared {
            rings: UnsafeCell::new(Rings::new(queues)),
            gate: Gate::new(queues),
            up: AtomicBool::new(false),
        }
    }
}

/// A vhost-user backend port.
pub struct VhostUserPort {
    name: String,
    path: PathBuf,
    cfg: Config,
    listener: Option<OwnedFd>,
    conn: Option<OwnedFd>,
    next_try: Instant,
    inc: Incoming,
    features: u64,
    protocol: u64,
    shared: Arc<Shared>,
    /// The rings are served by [`VhostQueue`]s on other threads: pause them
    /// around every change.
    mq: bool,
    up: bool,
    polls: u32,
    stats: PortStats,
    counters: VhostCounters,
    last_error: Option<String>,
    mac: [u8; 6],
}

// SAFETY: the mappings and ring pointers are owned by this port and touched only
// through `&mut self`; the frontend is another process sharing the memory through
// the virtqueue protocol.
unsafe impl Send for VhostUserPort {}

fn sockaddr(path: &Path) -> Result<(libc::sockaddr_un, libc::socklen_t), VhostError> {
    super::unix::sockaddr(path).ok_or_else(|| VhostError::Path(path.into()))
}

fn stream() -> Result<OwnedFd, VhostError> {
    super::unix::socket(libc::SOCK_STREAM).map_err(|source| VhostError::Sys {
        what: "socket(AF_UNIX, SOCK_STREAM)",
        source,
    })
}

/// Sends `b` whole on a stream socket, with `fds` as `SCM_RIGHTS` (tests use it to
/// play a frontend). Waits briefly when the socket buffer is full.
pub fn send_with_fds(fd: RawFd, b: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: b.as_ptr() as *mut libc::c_void,
        iov_len: b.len(),
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain old data.
    let mut mh: libc::msghdr = unsafe { core::mem::zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    if !fds.is_empty() {
        if fds.len() > wire::MAX_REGIONS {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many fds"));
        }
        let n = (fds.len() * 4) as u32;
        // SAFETY: CMSG_SPACE(32) = 48 bytes fit in cbuf (64 bytes, 8-aligned), which
        // msg_control points to.
        unsafe {
            mh.msg_control = cbuf.as_mut_ptr().cast();
            mh.msg_controllen = libc::CMSG_SPACE(n) as _;
            let c = libc::CMSG_FIRSTHDR(&mh);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(n) as _;
            let d = libc::CMSG_DATA(c).cast::<RawFd>();
            for (i, f) in fds.iter().enumerate() {
                d.add(i).write_unaligned(*f);
            }
        }
    }
    // SAFETY: mh points at live buffers.
    let r = unsafe { libc::sendmsg(fd, &mh, libc::MSG_NOSIGNAL) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut done = r as usize;
    // The rest (no fds) if the socket took only part.
    let t = Instant::now();
    while done < b.len() {
        // SAFETY: sends from inside `b`.
        let r = unsafe {
            libc::send(
                fd,
                b[done..].as_ptr().cast(),
                b.len() - done,
                libc::MSG_NOSIGNAL,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock || t.elapsed() > Duration::from_secs(1) {
                return Err(e);
            }
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        done += r as usize;
    }
    Ok(())
}

fn map_region(fd: &OwnedFd, r: &wire::Region) -> Result<Region, Fail> {
    let len = r
        .mmap_offset
        .checked_add(r.memory_size)
        .filter(|&l| r.memory_size > 0 && l <= isize::MAX as u64)
        .ok_or("memory region size out of range")?;
    if r.guest_phys_addr.checked_add(r.memory_size).is_none()
        || r.userspace_addr.checked_add(r.memory_size).is_none()
    {
        return Err("memory region wraps the address space".into());
    }
    // SAFETY: fstat into a zeroed stat of a descriptor we hold.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err("memory region fd: fstat failed".into());
    }
    // A regular file (memfd, hugetlbfs) must hold the whole mapping, or touching its
    // end would fault (SIGBUS).
    if st.st_mode & libc::S_IFMT == libc::S_IFREG && (st.st_size as u64) < len {
        return Err(alloc::format!(
            "memory region of {len} bytes exceeds its file ({} bytes)",
            st.st_size
        )
        .into());
    }
    // SAFETY: maps `len` bytes of a file we hold; the result is checked.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(alloc::format!("mmap memory region: {}", io::Error::last_os_error()).into());
    }
    let map: *mut u8 = p.cast();
    Ok(Region {
        gpa: r.guest_phys_addr,
        uaddr: r.userspace_addr,
        size: r.memory_size,
        // SAFETY: mmap_offset < len: inside the mapping.
        host: unsafe { map.add(r.mmap_offset as usize) },
        map,
        map_len: len as usize,
    })
}

impl VhostUserPort {
    /// Opens a port on `path`: a server binds and listens now (a stale socket file
    /// nobody listens on is replaced); a client connects on the first poll and keeps
    /// retrying.
    pub fn open(path: &Path, cfg: &Config) -> Result<VhostUserPort, VhostError> {
        let (sa, salen) = sockaddr(path)?;
        let name = alloc::format!(
            "vhost-user:{}{}",
            path.display(),
            if cfg.server { ",server" } else { "" }
        );
        let mut mac = [0x02, 0xfe, 0, 0, 0, 0];
        let h = name.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ b as u32).wrapping_mul(0x0100_0193)
        });
        mac[2..6].copy_from_slice(&h.to_be_bytes());
        let mut port = VhostUserPort {
            name,
            path: path.into(),
            cfg: cfg.clone(),
            listener: None,
            conn: None,
            next_try: Instant::now(),
            inc: Incoming {
                buf: Box::new([0; HDR_LEN + MAX_PAYLOAD]),
                have: 0,
                fds: Vec::with_capacity(16),
                fds_truncated: false,
            },
            features: 0,
            protocol: 0,
            shared: Arc::new(Shared::new(usize::from(cfg.queues.clamp(1, MAX_QUEUES)))),
            mq: false,
            up: false,
            polls: 0,
            stats: PortStats::default(),
            counters: VhostCounters::default(),
            last_error: None,
            mac,
        };
        if cfg.server {
            let l =
                super::unix::listen(path, &sa, salen, libc::SOCK_STREAM).map_err(|e| match e {
                    super::unix::ListenError::InUse => VhostError::InUse { path: path.into() },
                    super::unix::ListenError::Sys(what, source) => VhostError::Sys { what, source },
                })?;
            port.listener = Some(l);
        }
        Ok(port)
    }

    /// Whether both rings are ready (memory mapped, rings started and enabled).
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Whether a frontend is connected.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// vhost-user counters.
    pub fn counters(&self) -> VhostCounters {
        self.counters
    }

    /// The last error or disconnect reason, for logs.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Virtio features the frontend acknowledged.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// Runs the control side once: accept/connect, then every complete message
    /// waiting on the socket. The bursts call it themselves.
    pub fn poll_control(&mut self) {
        // Messages of the current frontend first: one that left is noticed before
        // the next one is accepted (a second frontend is refused while one is on).
        self.drain();
        if self.conn.is_none() {
            if self.cfg.server {
                self.accept();
            } else if Instant::now() >= self.next_try {
                self.connect();
            }
            self.drain();
        } else if self.cfg.server {
            self.accept();
        }
    }

    fn drain(&mut self) {
        for _ in 0..64 {
            let Some(fd) = self.conn.as_ref().map(|f| f.as_raw_fd()) else {
                return;
            };
            match self.recv(fd) {
                Ok(false) => return,
                Ok(true) => {
                    if let Err(f) = self.handle() {
                        self.fail(f, true);
                        return;
                    }
                }
                Err(f) => {
                    self.fail(f, false);
                    return;
                }
            }
        }
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
        if self.conn.is_none() {
            self.conn = Some(s);
            self.reset();
        }
        // else: one frontend at a time; `s` is closed here.
    }

    fn connect(&mut self) {
        self.next_try = Instant::now() + self.cfg.retry;
        let Ok((sa, salen)) = sockaddr(&self.path) else {
            return;
        };
        let Ok(s) = stream() else {
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
        self.conn = Some(s);
        self.reset();
    }

    /// Forgets everything the previous frontend set up.
    fn reset(&mut self) {
        self.inc.have = 0;
        self.inc.fds.clear();
        self.inc.fds_truncated = false;
        self.features = 0;
        self.protocol = 0;
        self.rings().reset();
        self.set_up(false);
    }

    /// The rings, for the control side.
    // SAFETY (of callers): on a single-queue port only this port touches them; on a
    // multi-queue device the control owner calls this only while paused
    // ([`Shared`]).
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    fn rings(&self) -> &mut Rings {
        // SAFETY: see above: no other reference to the rings is live.
        unsafe { &mut *self.shared.rings.get() }
    }

    fn queues(&self) -> usize {
        self.shared.gate.len()
    }

    fn set_up(&mut self, up: bool) {
        if up && !self.up {
            self.counters.link_up += 1;
            self.last_error = None;
        } else if !up && self.up {
            self.counters.link_down += 1;
        }
        self.up = up;
        self.shared.up.store(up, Ordering::Release);
    }

    /// Drops the connection and records why (`ctrl`: count a control error).
    fn fail(&mut self, f: Fail, ctrl: bool) {
        if ctrl {
            self.counters.ctrl_errors += 1;
        }
        self.conn = None;
        self.reset();
        self.next_try = Instant::now() + self.cfg.retry;
        self.last_error = Some(f.0);
    }

    /// Reads what is there of the next message; true when one is complete.
    fn recv(&mut self, fd: RawFd) -> Result<bool, Fail> {
        loop {
            let need = if self.inc.have < HDR_LEN {
                HDR_LEN
            } else {
                match Header::parse(&self.inc.buf[..HDR_LEN]) {
                    Ok(h) => HDR_LEN + h.size as usize,
                    // `handle` refuses it (a counted control error).
                    Err(_) => return Ok(true),
                }
            };
            if self.inc.have == need {
                return Ok(true);
            }
            let dst = &mut self.inc.buf[self.inc.have..need];
            let mut iov = libc::iovec {
                iov_base: dst.as_mut_ptr().cast(),
                iov_len: dst.len(),
            };
            let mut cbuf = [0u64; 16];
            // SAFETY: msghdr is plain old data.
            let mut mh: libc::msghdr = unsafe { core::mem::zeroed() };
            mh.msg_iov = &mut iov;
            mh.msg_iovlen = 1;
            mh.msg_control = cbuf.as_mut_ptr().cast();
            mh.msg_controllen = core::mem::size_of_val(&cbuf) as _;
            // SAFETY: mh points at live buffers of the sizes given.
            let n =
                unsafe { libc::recvmsg(fd, &mut mh, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::WouldBlock {
                    Ok(false)
                } else {
                    Err(Fail(alloc::format!("control socket: {e}")))
                };
            }
            if n == 0 {
                return Err("frontend closed the socket".into());
            }
            // SAFETY: walks the control messages the kernel wrote into cbuf.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&mh);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                        let data = libc::CMSG_DATA(c).cast::<RawFd>();
                        let k = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                        for i in 0..k {
                            self.inc
                                .fds
                                .push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                        }
                    }
                    c = libc::CMSG_NXTHDR(&mh, c);
                }
            }
            self.inc.have += n as usize;
            if mh.msg_flags & libc::MSG_CTRUNC != 0 {
                self.inc.fds_truncated = true;
            }
        }
    }

    fn reply(&self, o: &Out) -> Result<(), Fail> {
        let fd = self
            .conn
            .as_ref()
            .map(|f| f.as_raw_fd())
            .ok_or("no connection")?;
        send_with_fds(fd, o.bytes(), &[]).map_err(|e| Fail(alloc::format!("control send: {e}")))
    }

    fn ring(&self, index: u32) -> Result<usize, Fail> {
        let rings = 2 * self.queues();
        if (index as usize) < rings {
            Ok(index as usize)
        } else {
            Err(Fail(alloc::format!(
                "ring {index}: {} queue pair(s) (rings 0 to {})",
                self.queues(),
                rings - 1
            )))
        }
    }

    /// Virtio features offered: multiqueue only with several pairs.
    fn offered(&self) -> u64 {
        if self.queues() > 1 {
            FEATURES | VIRTIO_NET_F_MQ | VIRTIO_NET_F_CTRL_VQ
        } else {
            FEATURES
        }
    }

    /// Handles the complete message in `self.inc`.
    fn handle(&mut self) -> Result<(), Fail> {
        let h = Header::parse(&self.inc.buf[..HDR_LEN]).map_err(|e| Fail(e.to_string()))?;
        let p = wire::parse_payload(&h, &self.inc.buf[HDR_LEN..HDR_LEN + h.size as usize])
            .map_err(|e| Fail(e.to_string()))?;
        self.inc.have = 0;
        if core::mem::take(&mut self.inc.fds_truncated) {
            return Err("too many file descriptors with one message".into());
        }
        let fds = core::mem::take(&mut self.inc.fds);
        // The rings are resolved before the ack: a memory table or ring address that
        // leaves a live ring uncovered is acked as a failure.
        let r = self.dispatch(&h, p, fds).and_then(|()| self.refresh());
        let acked = self.protocol & PROTOCOL_F_REPLY_ACK != 0 && h.need_reply();
        let replies_anyway = matches!(
            h.request,
            wire::GET_FEATURES
                | wire::GET_PROTOCOL_FEATURES
                | wire::GET_QUEUE_NUM
                | wire::GET_VRING_BASE
        );
        if acked && !replies_anyway {
            let status = if r.is_ok() { 0 } else { 1 };
            let _ = self.reply(&Out::reply_u64(h.request, status));
        }
        r
    }

    fn dispatch(&mut self, h: &Header, p: Payload, mut fds: Vec<OwnedFd>) -> Result<(), Fail> {
        let fd_for = |v: u64, fds: &mut Vec<OwnedFd>| -> Result<Option<OwnedFd>, Fail> {
            if v & wire::VRING_INVALID_FD != 0 {
                Ok(None)
            } else {
                fds.pop().map(Some).ok_or("missing eventfd".into())
            }
        };
        match (h.request, p) {
            (wire::GET_FEATURES, _) => self.reply(&Out::reply_u64(h.request, self.offered())),
            (wire::SET_FEATURES, Payload::U64(v)) => {
                if v & !self.offered() != 0 {
                    return Err(Fail(alloc::format!(
                        "features {:#x} not offered",
                        v & !self.offered()
                    )));
                }
                self.features = v;
                self.rings().hdr_len = if v & (VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MRG_RXBUF) != 0 {
                    12
                } else {
                    10
                };
                Ok(())
            }
            (wire::GET_PROTOCOL_FEATURES, _) => {
                self.reply(&Out::reply_u64(h.request, PROTOCOL_FEATURES))
            }
            (wire::SET_PROTOCOL_FEATURES, Payload::U64(v)) => {
                if v & !PROTOCOL_FEATURES != 0 {
                    return Err(Fail(alloc::format!(
                        "protocol features {:#x} not offered",
                        v & !PROTOCOL_FEATURES
                    )));
                }
                self.protocol = v;
                Ok(())
            }
            (wire::SET_OWNER, _) => Ok(()),
            (wire::RESET_OWNER, _) => {
                self.rings().reset();
                self.set_up(false);
                Ok(())
            }
            (wire::GET_QUEUE_NUM, _) => {
                self.reply(&Out::reply_u64(h.request, self.queues() as u64))
            }
            (wire::SET_MEM_TABLE, Payload::Mem(t)) => {
                if fds.len() != t.nregions as usize {
                    return Err(Fail(alloc::format!(
                        "memory table of {} regions came with {} fds",
                        t.nregions,
                        fds.len()
                    )));
                }
                // The rings will be resolved again against the new table.
                let rings = self.rings();
                for q in rings.vq.iter_mut() {
                    q.get_mut().desc = core::ptr::null_mut();
                }
                rings.regions.clear();
                for (r, fd) in t.regions().iter().zip(fds.iter()) {
                    let m = map_region(fd, r)?;
                    rings.regions.push(m);
                }
                Ok(())
            }
            (wire::SET_VRING_NUM, Payload::State(s)) => {
                let i = self.ring(s.index)?;
                if s.num == 0 || s.num > MAX_QUEUE_SIZE || !s.num.is_power_of_two() {
                    return Err(Fail(alloc::format!(
                        "ring size {} (a power of 2 up to {MAX_QUEUE_SIZE})",
                        s.num
                    )));
                }
                self.rings().q(i).num = s.num;
                self.rings().q(i).desc = core::ptr::null_mut();
                Ok(())
            }
            (wire::SET_VRING_ADDR, Payload::Addr(a)) => {
                let i = self.ring(a.index)?;
                self.rings().q(i).addr = Some(a);
                self.rings().q(i).desc = core::ptr::null_mut();
                Ok(())
            }
            (wire::SET_VRING_BASE, Payload::State(s)) => {
                let i = self.ring(s.index)?;
                if s.num > 0xffff {
                    return Err(Fail(alloc::format!("ring base {} out of range", s.num)));
                }
                self.rings().q(i).last_avail = s.num as u16;
                self.rings().q(i).used_idx = s.num as u16;
                Ok(())
            }
            (wire::GET_VRING_BASE, Payload::State(s)) => {
                let i = self.ring(s.index)?;
                let q = self.rings().q(i);
                q.started = false;
                q.kick = None;
                q.desc = core::ptr::null_mut();
                let base = q.last_avail as u32;
                self.reply(&Out::reply_state(
                    h.request,
                    VringState {
                        index: s.index,
                        num: base,
                    },
                ))
            }
            (wire::SET_VRING_KICK, Payload::U64(v)) => {
                let i = self.ring((v & wire::VRING_INDEX_MASK) as u32)?;
                self.rings().q(i).kick = fd_for(v, &mut fds)?;
                self.rings().q(i).started = true;
                Ok(())
            }
            (wire::SET_VRING_CALL, Payload::U64(v)) => {
                let i = self.ring((v & wire::VRING_INDEX_MASK) as u32)?;
                self.rings().q(i).call = fd_for(v, &mut fds)?;
                Ok(())
            }
            (wire::SET_VRING_ERR, Payload::U64(v)) => {
                let i = self.ring((v & wire::VRING_INDEX_MASK) as u32)?;
                self.rings().q(i).err = fd_for(v, &mut fds)?;
                Ok(())
            }
            (wire::SET_VRING_ENABLE, Payload::State(s)) => {
                let i = self.ring(s.index)?;
                self.rings().q(i).enabled = s.num != 0;
                if s.num == 0 {
                    self.rings().q(i).desc = core::ptr::null_mut();
                }
                Ok(())
            }
            (r, _) => Err(Fail(alloc::format!("unsupported vhost-user request {r}"))),
        }
    }

    /// Resolves the rings that are set up, started and enabled; updates link state.
    fn refresh(&mut self) -> Result<(), Fail> {
        let proto = self.features & F_PROTOCOL_FEATURES != 0;
        let rings = self.rings();
        let mapped = !rings.regions.is_empty();
        for i in 0..rings.vq.len() {
            let q = rings.q(i);
            let want = q.started && (q.enabled || !proto) && q.num != 0 && q.addr.is_some();
            if !want {
                q.desc = core::ptr::null_mut();
                continue;
            }
            if q.ready() || !mapped {
                continue;
            }
            let num = q.num;
            let a = q.addr.unwrap_or(wire::VringAddr {
                index: 0,
                flags: 0,
                desc: 0,
                used: 0,
                avail: 0,
                log: 0,
            });
            let key: fn(&Region) -> u64 = |r| r.uaddr;
            let find = |addr: u64, len: u64, align: usize, what: &str| -> Result<*mut u8, Fail> {
                let p = translate(&rings.regions, addr, len, key).ok_or_else(|| {
                    Fail(alloc::format!(
                        "ring {i}: {what} at {addr:#x} ({len} bytes) not covered by the memory table"
                    ))
                })?;
                if !(p as usize).is_multiple_of(align) {
                    return Err(Fail(alloc::format!("ring {i}: {what} misaligned")));
                }
                Ok(p)
            };
            let desc = find(a.desc, desc_bytes(num), 16, "descriptor table")?;
            let avail = find(a.avail, avail_bytes(num), 2, "available ring")?;
            let used = find(a.used, used_bytes(num), 4, "used ring")?;
            let q = rings.q(i);
            q.desc = desc;
            q.avail = avail;
            q.used = used;
            // We poll: no kicks wanted.
            // SAFETY: used flags inside the used ring (resolved above).
            unsafe { used.cast::<u16>().write_volatile(VIRTQ_USED_F_NO_NOTIFY) };
        }
        // Up once the first pair runs (a frontend may enable fewer pairs than
        // offered).
        let up = rings.q(RXQ).ready() && rings.q(TXQ).ready();
        self.set_up(up);
        Ok(())
    }

    #[inline]
    fn tick(&mut self) {
        self.polls = self.polls.wrapping_add(1);
        let every = if self.up { CTRL_EVERY } else { CTRL_EVERY_DOWN };
        if self.polls.is_multiple_of(every) {
            self.poll_control();
        }
    }
}

/// What went wrong on a ring.
enum RingFault {
    Index(&'static str),
    Desc(&'static str),
}

/// Ring faults a [`VhostQueue`]'s worker hands to the control owner (`Slot::fault`).
const FAULTS: [&str; 9] = [
    "",
    "available index ahead by more than the ring",
    "available head out of range",
    "descriptor chain loops",
    "indirect descriptor (not negotiated)",
    "descriptor outside the memory table",
    "descriptor next out of range",
    "receive descriptor indirect or not device-writable",
    "ring fault",
];

impl RingFault {
    /// Index into [`FAULTS`] (never 0).
    fn code(&self) -> u8 {
        let w = match self {
            RingFault::Index(w) | RingFault::Desc(w) => *w,
        };
        FAULTS[1..]
            .iter()
            .position(|f| *f == w)
            .map_or(FAULTS.len() - 1, |i| i + 1) as u8
    }
}

/// Frames handed to a pair whose link is down: freed and counted.
fn down_drop(
    cache: &mut PoolCache,
    batch: &mut Batch,
    stats: &mut PortStats,
    counters: &mut VhostCounters,
) {
    let n = batch.len() as u64;
    batch.free_all(cache);
    stats.tx_dropped += n;
    counters.down_tx_drops += n;
}

/// Signals the ring's call eventfd unless the driver suppressed interrupts.
#[inline]
fn notify(q: &Vq, calls: &mut u64) {
    fence(Ordering::SeqCst);
    if q.avail_flags() & VIRTQ_AVAIL_F_NO_INTERRUPT != 0 {
        return;
    }
    if let Some(c) = q.call.as_ref() {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a local to an eventfd we hold.
        unsafe { libc::write(c.as_raw_fd(), (&one as *const u64).cast(), 8) };
        *calls += 1;
    }
}

impl VhostUserPort {
    fn ring_fault(&mut self, f: RingFault) {
        let why = match f {
            RingFault::Index(w) => {
                self.counters.ring_errors += 1;
                w
            }
            RingFault::Desc(w) => {
                self.counters.bad_desc += 1;
                w
            }
        };
        self.fail(Fail(why.into()), false);
    }
}

/// Drains the driver's transmit ring.
fn rx_inner(
    q: &mut Vq,
    regions: &[Region],
    hdr: usize,
    cache: &mut PoolCache,
    batch: &mut Batch,
    stats: &mut PortStats,
    counters: &mut VhostCounters,
) -> Result<usize, RingFault> {
    if !q.ready() {
        return Ok(0);
    }
    let avail = q.avail_idx();
    let pending = avail.wrapping_sub(q.last_avail);
    if pending as u32 > q.num {
        return Err(RingFault::Index(
            "available index ahead by more than the ring",
        ));
    }
    let mut n = 0;
    let mut left = pending;
    let mut fault = None;
    while left > 0 && batch.room() > 0 {
        let head = q.avail_ring(q.last_avail);
        if head as u32 >= q.num {
            fault = Some(RingFault::Index("available head out of range"));
            break;
        }
        let mut pkt = cache.alloc();
        let mut len = 0usize;
        let mut skip = hdr;
        let mut too_long = false;
        let mut i = head;
        let mut hops = 0u32;
        loop {
            hops += 1;
            if hops > q.num {
                fault = Some(RingFault::Desc("descriptor chain loops"));
                break;
            }
            let (addr, dlen, flags, next) = q.desc(i);
            if flags & VIRTQ_DESC_F_INDIRECT != 0 {
                fault = Some(RingFault::Desc("indirect descriptor (not negotiated)"));
                break;
            }
            let Some(src) = translate(regions, addr, dlen as u64, |r| r.gpa) else {
                fault = Some(RingFault::Desc("descriptor outside the memory table"));
                break;
            };
            let s = skip.min(dlen as usize);
            skip -= s;
            let chunk = dlen as usize - s;
            if len + chunk > DATA_ROOM {
                too_long = true;
            } else if let Some(p) = pkt.as_mut() {
                // SAFETY: src..src+dlen lies in a mapped region (translate); the
                // destination stays inside the buffer (len + chunk <= DATA_ROOM).
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        src.add(s),
                        p.buffer_mut().as_mut_ptr().add(HEADROOM + len),
                        chunk,
                    )
                };
                len += chunk;
            }
            if flags & VIRTQ_DESC_F_NEXT == 0 {
                break;
            }
            if next as u32 >= q.num {
                fault = Some(RingFault::Desc("descriptor next out of range"));
                break;
            }
            i = next;
        }
        if fault.is_some() {
            if let Some(p) = pkt {
                cache.free(p);
            }
            break;
        }
        q.put_used(head, 0);
        q.last_avail = q.last_avail.wrapping_add(1);
        left -= 1;
        match pkt {
            Some(mut p) if !too_long && len > 0 => {
                let _ = p.set_window(HEADROOM, len);
                stats.rx_packets += 1;
                stats.rx_bytes += len as u64;
                let _ = batch.push(p);
                n += 1;
            }
            Some(p) => {
                stats.rx_dropped += 1;
                cache.free(p);
            }
            None => stats.rx_dropped += 1,
        }
    }
    if left != pending {
        q.publish_used();
        notify(q, &mut counters.calls);
    }
    match fault {
        Some(f) => Err(f),
        None => Ok(n),
    }
}

/// Fills the driver's receive ring.
fn tx_inner(
    q: &mut Vq,
    regions: &[Region],
    hdr: usize,
    cache: &mut PoolCache,
    batch: &mut Batch,
    stats: &mut PortStats,
    counters: &mut VhostCounters,
) -> Result<usize, RingFault> {
    let mut avail = q.avail_idx();
    if avail.wrapping_sub(q.last_avail) as u32 > q.num {
        return Err(RingFault::Index(
            "available index ahead by more than the ring",
        ));
    }
    // virtio-net header: all zero (no offloads), num_buffers = 1 with 12 bytes.
    let mut h = [0u8; 12];
    h[10] = 1;
    let mut count = 0;
    let mut sent = 0;
    let mut bytes = 0u64;
    let mut too_long = 0u64;
    let mut fault = None;
    for p in batch.iter() {
        if q.last_avail == avail {
            avail = q.avail_idx();
            if q.last_avail == avail {
                break;
            }
            if avail.wrapping_sub(q.last_avail) as u32 > q.num {
                fault = Some(RingFault::Index(
                    "available index ahead by more than the ring",
                ));
                break;
            }
        }
        let head = q.avail_ring(q.last_avail);
        if head as u32 >= q.num {
            fault = Some(RingFault::Index("available head out of range"));
            break;
        }
        let data = p.data();
        let total = hdr + data.len();
        let mut off = 0usize; // bytes of header + data written
        let mut i = head;
        let mut hops = 0u32;
        loop {
            hops += 1;
            if hops > q.num {
                fault = Some(RingFault::Desc("descriptor chain loops"));
                break;
            }
            let (addr, dlen, flags, next) = q.desc(i);
            if flags & VIRTQ_DESC_F_INDIRECT != 0 || flags & VIRTQ_DESC_F_WRITE == 0 {
                fault = Some(RingFault::Desc(
                    "receive descriptor indirect or not device-writable",
                ));
                break;
            }
            let Some(dst) = translate(regions, addr, dlen as u64, |r| r.gpa) else {
                fault = Some(RingFault::Desc("descriptor outside the memory table"));
                break;
            };
            let mut w = 0usize;
            while w < dlen as usize && off < total {
                let (src, n) = if off < hdr {
                    (h[off..hdr].as_ptr(), (hdr - off).min(dlen as usize - w))
                } else {
                    let d = off - hdr;
                    (data[d..].as_ptr(), (data.len() - d).min(dlen as usize - w))
                };
                // SAFETY: dst..dst+dlen lies in a mapped region (translate) and
                // w + n <= dlen; the source is the header or the frame.
                unsafe { core::ptr::copy_nonoverlapping(src, dst.add(w), n) };
                w += n;
                off += n;
            }
            if flags & VIRTQ_DESC_F_NEXT == 0 || off == total {
                break;
            }
            if next as u32 >= q.num {
                fault = Some(RingFault::Desc("descriptor next out of range"));
                break;
            }
            i = next;
        }
        if fault.is_some() {
            break;
        }
        q.last_avail = q.last_avail.wrapping_add(1);
        count += 1;
        if off < total {
            // The chain was too short: give the buffer back empty.
            q.put_used(head, 0);
            too_long += 1;
        } else {
            q.put_used(head, total as u32);
            sent += 1;
            bytes += data.len() as u64;
        }
    }
    if count > 0 {
        q.publish_used();
        notify(q, &mut counters.calls);
    }
    batch.take_front(count, |p| cache.free(p));
    stats.tx_packets += sent as u64;
    stats.tx_bytes += bytes;
    stats.tx_dropped += too_long;
    counters.tx_too_long += too_long;
    match fault {
        Some(f) => Err(f),
        None => Ok(sent),
    }
}

/// One queue pair of a multi-queue vhost-user device ([`open_queues`]): a port for
/// one worker. Its bursts touch only pair `k`'s two rings (the driver's
/// receiveq `2k` and transmitq `2k + 1`) and its own counters; they take no lock,
/// make no system call but the `call` eventfd write, and never wait: while the
/// control owner changes the device (a thread of its own, woken by the control
/// socket) the pair moves nothing (see `Shared`).
pub struct VhostQueue {
    name: String,
    shared: Arc<Shared>,
    k: usize,
    stats: PortStats,
    counters: VhostCounters,
    mac: [u8; 6],
}

/// Opens a vhost-user device of `cfg.queues` queue pairs on `path` and returns one
/// [`VhostQueue`] per pair, to be polled by one worker each. The control socket is
/// served by a thread of its own (`vhost-ctl`), off the fast path: it sleeps in
/// `poll(2)` on the socket and pauses the pairs only while it applies a message
/// or a disconnect. It ends, closing the socket (and removing a server's socket
/// file), once every queue is dropped.
pub fn open_queues(path: &Path, cfg: &Config) -> Result<Vec<VhostQueue>, VhostError> {
    let mut ctl = VhostUserPort::open(path, cfg)?;
    ctl.mq = true;
    let queues: Vec<VhostQueue> = (0..ctl.queues())
        .map(|k| VhostQueue {
            name: alloc::format!("{},queue={k}", ctl.name),
            shared: ctl.shared.clone(),
            k,
            stats: PortStats::default(),
            counters: VhostCounters::default(),
            mac: ctl.mac,
        })
        .collect();
    std::thread::Builder::new()
        .name("vhost-ctl".into())
        .spawn(move || control_loop(ctl))
        .map_err(|source| VhostError::Sys {
            what: "spawning the vhost-user control thread",
            source,
        })?;
    Ok(queues)
}

/// The control owner of a multi-queue device.
fn control_loop(mut ctl: VhostUserPort) {
    while Arc::strong_count(&ctl.shared) > 1 {
        let mut fds = [libc::pollfd {
            fd: -1,
            events: libc::POLLIN,
            revents: 0,
        }; 2];
        if let Some(c) = ctl.conn.as_ref() {
            fds[0].fd = c.as_raw_fd();
        }
        if let Some(l) = ctl.listener.as_ref() {
            fds[1].fd = l.as_raw_fd();
        }
        // SAFETY: two pollfds of ours (a negative fd is ignored); 10 ms at most, so
        // faults, client retries and the end are noticed.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, 10) };
        let fault = ctl.shared.gate.first_fault();
        let retry = !ctl.cfg.server && ctl.conn.is_none() && Instant::now() >= ctl.next_try;
        if r > 0 || fault.is_some() || retry {
            ctl.pause();
            if let Some(f) = fault {
                let why = FAULTS.get(usize::from(f)).copied().unwrap_or("ring fault");
                ctl.fail(Fail(why.into()), false);
                ctl.shared.gate.clear_faults();
            }
            ctl.poll_control();
            ctl.resume();
        }
    }
}

impl VhostUserPort {
    /// Stops every queue pair's worker from touching the rings and waits until
    /// none is inside a burst ([`Gate::pause`]).
    fn pause(&self) {
        self.shared.gate.pause();
    }

    fn resume(&self) {
        self.shared.gate.resume();
    }
}

impl VhostQueue {
    /// This pair's index (rings `2k` and `2k + 1`).
    pub fn queue(&self) -> usize {
        self.k
    }

    /// Whether the device's first pair runs (the frontend set it up).
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Acquire)
    }

    /// Whether this pair's rings run (the frontend enabled it).
    pub fn is_running(&self) -> bool {
        if !self.enter() {
            return false;
        }
        // SAFETY: entered (see `rx_burst`).
        let r = unsafe { &*self.shared.rings.get() };
        // SAFETY: pair k's rings are this queue's alone.
        let up = unsafe {
            (*r.vq[2 * self.k + RXQ].get()).ready() && (*r.vq[2 * self.k + TXQ].get()).ready()
        };
        self.leave();
        up
    }

    /// This pair's counters (ring faults it found, calls, drops); link changes
    /// and control errors are the device's.
    pub fn counters(&self) -> VhostCounters {
        self.counters
    }

    /// Enters a burst: false while the control owner holds the rings or after a
    /// fault it has not handled yet.
    #[inline(always)]
    fn enter(&self) -> bool {
        self.shared.gate.enter(self.k)
    }

    #[inline(always)]
    fn leave(&self) {
        self.shared.gate.leave(self.k);
    }

    fn done(&mut self, res: Result<usize, RingFault>) -> usize {
        match res {
            Ok(n) => n,
            Err(f) => {
                match f {
                    RingFault::Index(_) => self.counters.ring_errors += 1,
                    RingFault::Desc(_) => self.counters.bad_desc += 1,
                }
                self.shared.gate.report(self.k, f.code());
                0
            }
        }
    }
}

impl Port for VhostQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        if !self.enter() {
            return 0;
        }
        // SAFETY: entered: the control owner changes nothing until we leave, and
        // the regions are only read.
        let r = unsafe { &*self.shared.rings.get() };
        // SAFETY: pair k's transmitq is touched by this queue alone.
        let q = unsafe { &mut *r.vq[2 * self.k + TXQ].get() };
        let res = rx_inner(
            q,
            &r.regions,
            r.hdr_len,
            cache,
            batch,
            &mut self.stats,
            &mut self.counters,
        );
        self.leave();
        self.done(res)
    }

    fn tx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        if !self.enter() {
            down_drop(cache, batch, &mut self.stats, &mut self.counters);
            return 0;
        }
        // SAFETY: as in `rx_burst`.
        let r = unsafe { &*self.shared.rings.get() };
        // SAFETY: pair k's receiveq is touched by this queue alone.
        let q = unsafe { &mut *r.vq[2 * self.k + RXQ].get() };
        let res = if q.ready() {
            tx_inner(
                q,
                &r.regions,
                r.hdr_len,
                cache,
                batch,
                &mut self.stats,
                &mut self.counters,
            )
        } else {
            down_drop(cache, batch, &mut self.stats, &mut self.counters);
            Ok(0)
        };
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

impl Drop for VhostUserPort {
    fn drop(&mut self) {
        if self.listener.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Port for VhostUserPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        self.tick();
        // SAFETY: a single-queue port is the rings' only user (no `VhostQueue`).
        let r = unsafe { &mut *self.shared.rings.get() };
        let res = rx_inner(
            r.vq[TXQ].get_mut(),
            &r.regions,
            r.hdr_len,
            cache,
            batch,
            &mut self.stats,
            &mut self.counters,
        );
        match res {
            Ok(n) => n,
            Err(f) => {
                self.ring_fault(f);
                0
            }
        }
    }

    fn tx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        self.tick();
        // SAFETY: a single-queue port is the rings' only user (no `VhostQueue`).
        let r = unsafe { &mut *self.shared.rings.get() };
        if !r.q(RXQ).ready() {
            down_drop(cache, batch, &mut self.stats, &mut self.counters);
            return 0;
        }
        let res = tx_inner(
            r.vq[RXQ].get_mut(),
            &r.regions,
            r.hdr_len,
            cache,
            batch,
            &mut self.stats,
            &mut self.counters,
        );
        match res {
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
