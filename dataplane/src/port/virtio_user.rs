//! virtio-user port: the **frontend** (driver) side of a virtio-net device whose
//! backend (DPDK's `net_vhost`, OVS-DPDK, VPP, our [`super::vhost_user`] port) runs in
//! another process — what DPDK's `net_virtio_user` driver and a VM's virtio-net driver
//! behind QEMU are. The generator side of `testbed compare dpdk` uses it to feed
//! vhost-user backends exactly as a guest would.
//!
//! Protocol: QEMU's `docs/interop/vhost-user.rst` (frontend messages, codec in
//! [`crate::proto::vhost_user`]); rings: VIRTIO 1.1 §2.6 (split virtqueues, driver
//! side); device: VIRTIO 1.1 §5.1 (one queue pair: ring 0 is our receiveq1, which the
//! backend fills, ring 1 our transmitq1, which it drains).
//!
//! **Role.** Client: we connect to a backend listening on the path, retrying every
//! [`Config::retry`] while down (DPDK's `net_vhost` and our `vhost-user:PATH,server`
//! listen by default).
//!
//! **Memory.** One memfd holds the rings and every buffer (`queue_size` receive and
//! `queue_size` transmit buffers of [`BUF`] bytes); it is the memory table's only
//! region, passed with `SCM_RIGHTS`, and its guest-physical and user addresses are both
//! our mapping's address (as `net_virtio_user` does), so descriptors carry plain
//! pointers.
//!
//! **Negotiation.** We take `VIRTIO_F_VERSION_1` (12-byte virtio-net header, else the
//! 10-byte legacy one) and `VHOST_USER_F_PROTOCOL_FEATURES` when offered, with no
//! protocol feature (one queue pair, no reply-ack), then send the memory table and
//! both rings (`SET_VRING_NUM/BASE/ADDR/CALL/KICK`, and `SET_VRING_ENABLE` with
//! protocol features). Offloads, mergeable buffers and indirect descriptors are not
//! taken.
//!
//! **Fast path.** Both avail rings carry `VRING_AVAIL_F_NO_INTERRUPT` and we never
//! kick: the backend must poll (every PMD does). `tx_burst` copies each frame behind a
//! zeroed header into a free transmit buffer (descriptor `i` always points at buffer
//! `i`; the used ring hands descriptors back in any order); frames that find no free
//! descriptor stay in the batch. `rx_burst` copies received frames into pool buffers
//! and re-posts the descriptor. Nothing is allocated after [`VirtioUserPort::open`].
//!
//! **Bad backends.** A used entry naming a descriptor out of range or not in flight,
//! a length past the buffer, a used index running ahead of what we posted: counted
//! ([`VirtioUserCounters::ring_errors`]), the link taken down, the reason kept. A
//! backend that closes the socket takes the link down too; frames sent while down are
//! dropped and counted, and we reconnect.

use super::{Port, PortStats};
use crate::batch::Batch;
use crate::buf::PoolCache;
use crate::proto::vhost_user::{
    self as wire, Header, Out, Region, VringAddr, VringState, F_PROTOCOL_FEATURES, HDR_LEN,
    VIRTIO_F_VERSION_1, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_WRITE,
};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU16, Ordering};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes per buffer (header + frame).
pub const BUF: usize = 2048;
/// While up, the socket is checked for a closed backend every this many bursts (a
/// power of two).
const CHECK_EVERY: u32 = 1024;

/// Port settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Descriptors per ring (a power of two, 64..=4096).
    pub queue_size: u16,
    /// Time between connection attempts while down.
    pub retry: Duration,
    /// How long a reply from the backend may take.
    pub reply_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            queue_size: 1024,
            retry: Duration::from_millis(200),
            reply_timeout: Duration::from_secs(2),
        }
    }
}

/// Errors of opening a virtio-user port.
#[derive(Debug, thiserror::Error)]
pub enum VirtioUserError {
    #[error("queue size {0} is not a power of two in 64..=4096")]
    QueueSize(u16),
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        source: io::Error,
    },
}

/// virtio-user counters (beyond [`PortStats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioUserCounters {
    /// Completed setups (connections that reached "up").
    pub connects: u64,
    /// Times the link went down (backend gone, ring error).
    pub link_down: u64,
    /// Frames dropped because the link was down.
    pub down_tx_drops: u64,
    /// Setups that failed (refused connection, short reply, closed socket).
    pub ctrl_errors: u64,
    /// Used-ring entries that broke the rules.
    pub ring_errors: u64,
    /// Frames longer than a buffer (dropped on transmit).
    pub too_long: u64,
}

/// The shared memory: rings of both queues, then the buffers.
struct Mem {
    _fd: OwnedFd,
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by the port and only touched through it.
unsafe impl Send for Mem {}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: unmaps our own mapping.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Offsets of one ring's parts in the memory.
#[derive(Clone, Copy)]
struct RingAt {
    desc: usize,
    avail: usize,
    used: usize,
}

fn page(x: usize) -> usize {
    (x + 4095) & !4095
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain eventfd creation, checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One connection to a backend.
struct Link {
    sock: UnixStream,
    _kick: [OwnedFd; 2],
    _call: [OwnedFd; 2],
}

/// A virtio-net driver over vhost-user, as a [`Port`].
pub struct VirtioUserPort {
    name: String,
    path: PathBuf,
    cfg: Config,
    mem: Mem,
    q: [RingAt; 2],
    rx_bufs: usize,
    tx_bufs: usize,
    num: u16,
    hdr: usize,
    link: Option<Link>,
    /// Receive ring: avail index published, used index consumed.
    rx_avail: u16,
    rx_used: u16,
    /// Transmit ring: avail index published, used index consumed.
    tx_avail: u16,
    tx_used: u16,
    /// Free transmit descriptors (a stack) and which are in flight.
    free: Vec<u16>,
    in_flight: Vec<bool>,
    tick: u32,
    next_try: Instant,
    stats: PortStats,
    counters: VirtioUserCounters,
    last_error: Option<String>,
    mac: [u8; 6],
}

impl VirtioUserPort {
    /// Maps the memory and tries to connect (the port comes up on a later burst when
    /// the backend is not there yet).
    pub fn open(path: &Path, cfg: &Config) -> Result<VirtioUserPort, VirtioUserError> {
        let num = cfg.queue_size;
        if !num.is_power_of_two() || !(64..=4096).contains(&num) {
            return Err(VirtioUserError::QueueSize(num));
        }
        let n = num as usize;
        let mut off = 0;
        let mut q = [RingAt {
            desc: 0,
            avail: 0,
            used: 0,
        }; 2];
        for r in q.iter_mut() {
            r.desc = off;
            off = page(off + 16 * n);
            r.avail = off;
            off = page(off + 6 + 2 * n);
            r.used = off;
            off = page(off + 6 + 8 * n);
        }
        let rx_bufs = off;
        let tx_bufs = rx_bufs + n * BUF;
        let len = tx_bufs + n * BUF;
        let sys = |what| move |source| VirtioUserError::Sys { what, source };
        // SAFETY: memfd_create with a C string literal; checked.
        let fd = unsafe { libc::memfd_create(c"virtio-user".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(sys("memfd_create")(io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sizes our own file.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(sys("ftruncate")(io::Error::last_os_error()));
        }
        // SAFETY: maps our own file, checked.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(sys("mmap")(io::Error::last_os_error()));
        }
        let pid = std::process::id().to_be_bytes();
        let mut port = VirtioUserPort {
            name: alloc::format!("virtio-user:{}", path.display()),
            path: path.into(),
            cfg: cfg.clone(),
            mem: Mem {
                _fd: fd,
                base: p.cast(),
                len,
            },
            q,
            rx_bufs,
            tx_bufs,
            num,
            hdr: 12,
            link: None,
            rx_avail: 0,
            rx_used: 0,
            tx_avail: 0,
            tx_used: 0,
            free: Vec::with_capacity(n),
            in_flight: alloc::vec![false; n],
            tick: 0,
            next_try: Instant::now(),
            stats: PortStats::default(),
            counters: VirtioUserCounters::default(),
            last_error: None,
            mac: [0x02, 0x76, pid[0], pid[1], pid[2], pid[3]],
        };
        port.try_connect();
        Ok(port)
    }

    /// Whether the rings are set up with a live backend.
    pub fn is_up(&self) -> bool {
        self.link.is_some()
    }

    pub fn counters(&self) -> VirtioUserCounters {
        self.counters
    }

    /// Why the last setup failed or the link last went down.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Waits until the port is up (retrying the connection), at most `t`.
    pub fn wait_up(&mut self, t: Duration) -> bool {
        let start = Instant::now();
        while !self.is_up() && start.elapsed() < t {
            std::thread::sleep(self.cfg.retry.min(Duration::from_millis(20)));
            if Instant::now() >= self.next_try {
                self.try_connect();
            }
        }
        self.is_up()
    }

    fn at(&self, off: usize) -> *mut u8 {
        debug_assert!(off < self.mem.len);
        // SAFETY: every offset we compute lies inside the mapping.
        unsafe { self.mem.base.add(off) }
    }

    fn idx(&self, ring: usize) -> &AtomicU16 {
        // SAFETY: a 2-aligned u16 inside the mapping (rings are page-aligned).
        unsafe { AtomicU16::from_ptr(self.at(ring + 2).cast()) }
    }

    fn set_flags(&self, ring: usize, f: u16) {
        // SAFETY: as above.
        unsafe { AtomicU16::from_ptr(self.at(ring).cast()) }.store(f, Ordering::Relaxed);
    }

    fn write_desc(&self, q: usize, i: u16, addr: u64, len: u32, flags: u16) {
        let d = self.at(self.q[q].desc + 16 * i as usize);
        // SAFETY: descriptor `i` < num inside the table inside the mapping.
        unsafe {
            d.cast::<u64>().write_volatile(addr);
            d.add(8).cast::<u32>().write_volatile(len);
            d.add(12).cast::<u16>().write_volatile(flags);
            d.add(14).cast::<u16>().write_volatile(0);
        }
    }

    fn avail_slot(&self, q: usize, slot: u16, head: u16) {
        let s = (slot & (self.num - 1)) as usize;
        // SAFETY: slot < num inside the avail ring.
        unsafe {
            self.at(self.q[q].avail + 4 + 2 * s)
                .cast::<u16>()
                .write_volatile(head)
        };
    }

    fn used_elem(&self, q: usize, slot: u16) -> (u32, u32) {
        let s = (slot & (self.num - 1)) as usize;
        // SAFETY: slot < num inside the used ring.
        unsafe {
            let e = self.at(self.q[q].used + 4 + 8 * s);
            (
                e.cast::<u32>().read_volatile(),
                e.add(4).cast::<u32>().read_volatile(),
            )
        }
    }

    fn addr(&self, off: usize) -> u64 {
        self.mem.base as u64 + off as u64
    }

    /// Resets both rings to their initial state: every receive buffer posted, every
    /// transmit descriptor free.
    fn reset_rings(&mut self) {
        // SAFETY: zeroes the ring area of our own mapping (buffers untouched).
        unsafe { core::ptr::write_bytes(self.mem.base, 0, self.rx_bufs) };
        let n = self.num;
        for i in 0..n {
            let a = self.addr(self.rx_bufs + i as usize * BUF);
            self.write_desc(0, i, a, BUF as u32, VIRTQ_DESC_F_WRITE);
            self.avail_slot(0, i, i);
        }
        self.set_flags(self.q[0].avail, VIRTQ_AVAIL_F_NO_INTERRUPT);
        self.set_flags(self.q[1].avail, VIRTQ_AVAIL_F_NO_INTERRUPT);
        self.idx(self.q[0].avail).store(n, Ordering::Release);
        self.rx_avail = n;
        self.rx_used = 0;
        self.tx_avail = 0;
        self.tx_used = 0;
        self.free.clear();
        self.free.extend((0..n).rev());
        self.in_flight.iter_mut().for_each(|f| *f = false);
    }

    fn try_connect(&mut self) {
        self.next_try = Instant::now() + self.cfg.retry;
        let sock = match UnixStream::connect(&self.path) {
            Ok(s) => s,
            // nobody listening yet: not an error, just down
            Err(_) => return,
        };
        match self.setup(sock) {
            Ok(link) => {
                self.link = Some(link);
                self.counters.connects += 1;
            }
            Err(e) => {
                self.counters.ctrl_errors += 1;
                self.last_error = Some(e);
            }
        }
    }

    fn setup(&mut self, sock: UnixStream) -> Result<Link, String> {
        let io = |what: &str, e: io::Error| alloc::format!("{what}: {e}");
        sock.set_read_timeout(Some(self.cfg.reply_timeout))
            .map_err(|e| io("socket", e))?;
        let fd = sock.as_raw_fd();
        let send = |o: &Out, fds: &[i32]| {
            super::vhost_user::send_with_fds(fd, o.bytes(), fds).map_err(|e| io("send", e))
        };
        let mut s = &sock;
        let mut get_u64 = |req: u32| -> Result<u64, String> {
            send(&Out::request(req, 0), &[])?;
            let mut h = [0u8; HDR_LEN];
            s.read_exact(&mut h).map_err(|e| io("reply", e))?;
            let h = Header::parse(&h).map_err(|_| "malformed reply header".to_string())?;
            if h.request != req || h.flags & wire::FLAG_REPLY == 0 || h.size != 8 {
                return Err(alloc::format!(
                    "reply to request {req} is request {} with {} bytes",
                    h.request,
                    h.size
                ));
            }
            let mut b = [0u8; 8];
            s.read_exact(&mut b).map_err(|e| io("reply", e))?;
            Ok(u64::from_le_bytes(b))
        };
        send(&Out::request(wire::SET_OWNER, 0), &[])?;
        let offered = get_u64(wire::GET_FEATURES)?;
        let features = offered & (VIRTIO_F_VERSION_1 | F_PROTOCOL_FEATURES);
        send(&Out::request_u64(wire::SET_FEATURES, 0, features), &[])?;
        if features & F_PROTOCOL_FEATURES != 0 {
            get_u64(wire::GET_PROTOCOL_FEATURES)?;
            send(&Out::request_u64(wire::SET_PROTOCOL_FEATURES, 0, 0), &[])?;
        }
        self.hdr = if features & VIRTIO_F_VERSION_1 != 0 {
            12
        } else {
            10
        };
        self.reset_rings();
        let base = self.mem.base as u64;
        let region = Region {
            guest_phys_addr: base,
            memory_size: self.mem.len as u64,
            userspace_addr: base,
            mmap_offset: 0,
        };
        send(&Out::request_mem(0, &[region]), &[self.mem._fd.as_raw_fd()])?;
        let kick = [
            eventfd().map_err(|e| io("eventfd", e))?,
            eventfd().map_err(|e| io("eventfd", e))?,
        ];
        let call = [
            eventfd().map_err(|e| io("eventfd", e))?,
            eventfd().map_err(|e| io("eventfd", e))?,
        ];
        for qi in 0..2u32 {
            let r = self.q[qi as usize];
            let st = |num| VringState { index: qi, num };
            send(
                &Out::request_state(wire::SET_VRING_NUM, 0, st(self.num as u32)),
                &[],
            )?;
            send(&Out::request_state(wire::SET_VRING_BASE, 0, st(0)), &[])?;
            let a = VringAddr {
                index: qi,
                flags: 0,
                desc: self.addr(r.desc),
                used: self.addr(r.used),
                avail: self.addr(r.avail),
                log: 0,
            };
            send(&Out::request_addr(0, &a), &[])?;
            send(
                &Out::request_u64(wire::SET_VRING_CALL, 0, qi as u64),
                &[call[qi as usize].as_raw_fd()],
            )?;
            send(
                &Out::request_u64(wire::SET_VRING_KICK, 0, qi as u64),
                &[kick[qi as usize].as_raw_fd()],
            )?;
        }
        if features & F_PROTOCOL_FEATURES != 0 {
            for qi in 0..2u32 {
                send(
                    &Out::request_state(
                        wire::SET_VRING_ENABLE,
                        0,
                        VringState { index: qi, num: 1 },
                    ),
                    &[],
                )?;
            }
        }
        sock.set_nonblocking(true).map_err(|e| io("socket", e))?;
        Ok(Link {
            sock,
            _kick: kick,
            _call: call,
        })
    }

    fn down(&mut self, why: &str) {
        if self.link.take().is_some() {
            self.counters.link_down += 1;
        }
        self.last_error = Some(why.to_string());
        self.next_try = Instant::now() + self.cfg.retry;
    }

    /// Every [`CHECK_EVERY`] bursts: a closed socket takes the link down; while down,
    /// reconnects every [`Config::retry`].
    fn check(&mut self) {
        self.tick = self.tick.wrapping_add(1);
        match &self.link {
            Some(l) => {
                if self.tick & (CHECK_EVERY - 1) != 0 {
                    return;
                }
                let mut b = [0u8; 64];
                match (&l.sock).read(&mut b) {
                    Ok(0) => self.down("the backend closed the connection"),
                    // the backend sends nothing we asked for: ignore stray bytes
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => self.down("the backend's socket failed"),
                }
            }
            None => {
                if self.tick & 63 == 0 && Instant::now() >= self.next_try {
                    self.try_connect();
                }
            }
        }
    }

    fn ring_error(&mut self, why: &'static str) {
        self.counters.ring_errors += 1;
        self.down(why);
    }

    /// Takes transmit descriptors the backend used back onto the free stack.
    fn reclaim(&mut self) -> Result<(), &'static str> {
        let used = self.idx(self.q[1].used).load(Ordering::Acquire);
        if used.wrapping_sub(self.tx_used) > self.tx_avail.wrapping_sub(self.tx_used) {
            return Err("transmit used index ahead of the available index");
        }
        while self.tx_used != used {
            let (id, _) = self.used_elem(1, self.tx_used);
            if id >= self.num as u32 || !self.in_flight[id as usize] {
                return Err("transmit used entry names a descriptor not in flight");
            }
            self.in_flight[id as usize] = false;
            self.free.push(id as u16);
            self.tx_used = self.tx_used.wrapping_add(1);
        }
        Ok(())
    }
}

impl Port for VirtioUserPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        self.check();
        if self.link.is_none() {
            return 0;
        }
        let used = self.idx(self.q[0].used).load(Ordering::Acquire);
        if used.wrapping_sub(self.rx_used) > self.num {
            self.ring_error("receive used index ahead of the ring");
            return 0;
        }
        let mut n = 0;
        let from = self.rx_used;
        while self.rx_used != used && batch.room() > 0 {
            let (id, len) = self.used_elem(0, self.rx_used);
            if id >= self.num as u32 || len as usize > BUF {
                self.ring_error("receive used entry out of range");
                return n;
            }
            let len = len as usize;
            if len > self.hdr {
                let src = self.at(self.rx_bufs + id as usize * BUF + self.hdr);
                match cache.alloc() {
                    Some(mut p) => {
                        // SAFETY: `len - hdr` bytes inside buffer `id` of our mapping.
                        let f = unsafe { core::slice::from_raw_parts(src, len - self.hdr) };
                        if p.copy_from(f).is_ok() {
                            self.stats.rx_packets += 1;
                            self.stats.rx_bytes += f.len() as u64;
                            let _ = batch.push(p);
                            n += 1;
                        } else {
                            cache.free(p);
                            self.stats.rx_dropped += 1;
                        }
                    }
                    None => self.stats.rx_dropped += 1,
                }
            } else {
                self.stats.rx_dropped += 1;
            }
            // re-post the same descriptor (its address and length never change)
            self.avail_slot(0, self.rx_avail, id as u16);
            self.rx_avail = self.rx_avail.wrapping_add(1);
            self.rx_used = self.rx_used.wrapping_add(1);
        }
        if self.rx_used != from {
            self.idx(self.q[0].avail)
                .store(self.rx_avail, Ordering::Release);
        }
        n
    }

    fn tx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        self.check();
        if self.link.is_none() {
            let n = batch.len() as u64;
            batch.free_all(cache);
            self.stats.tx_dropped += n;
            self.counters.down_tx_drops += n;
            return 0;
        }
        if let Err(e) = self.reclaim() {
            self.ring_error(e);
            return 0;
        }
        let mut taken = 0;
        let mut sent = 0;
        for p in batch.iter() {
            let Some(&id) = self.free.last() else {
                break;
            };
            taken += 1;
            let data = p.data();
            if self.hdr + data.len() > BUF {
                self.counters.too_long += 1;
                self.stats.tx_dropped += 1;
                continue;
            }
            self.free.pop();
            let off = self.tx_bufs + id as usize * BUF;
            // SAFETY: header + frame fit in buffer `id` of our mapping.
            unsafe {
                core::ptr::write_bytes(self.at(off), 0, self.hdr);
                core::ptr::copy_nonoverlapping(data.as_ptr(), self.at(off + self.hdr), data.len());
            }
            self.write_desc(1, id, self.addr(off), (self.hdr + data.len()) as u32, 0);
            self.in_flight[id as usize] = true;
            self.avail_slot(1, self.tx_avail, id);
            self.tx_avail = self.tx_avail.wrapping_add(1);
            self.stats.tx_packets += 1;
            self.stats.tx_bytes += data.len() as u64;
            sent += 1;
        }
        if sent > 0 {
            self.idx(self.q[1].avail)
                .store(self.tx_avail, Ordering::Release);
        }
        batch.take_front(taken, |p| cache.free(p));
        sent
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
    use crate::port::vhost_user::{self, VhostUserPort};

    fn sock(tag: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(alloc::format!("dp-vuser-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    /// Our frontend against our backend in one thread: frames both ways, counters
    /// agree, and the backend going away takes the link down and back up.
    #[test]
    fn frontend_and_backend_exchange_frames_and_reconnect() {
        let path = sock("pair");
        let vcfg = vhost_user::Config {
            server: true,
            ..vhost_user::Config::default()
        };
        let mut be = VhostUserPort::open(&path, &vcfg).unwrap();
        let cfg = Config {
            queue_size: 256,
            retry: Duration::from_millis(10),
            ..Config::default()
        };
        let pool = Pool::new(2048).unwrap();
        let mut c = pool.cache();
        // The backend answers from its own polls: run it in a thread while we connect.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        let h = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                be.poll_control();
                std::thread::sleep(Duration::from_micros(200));
            }
            be
        });
        let mut fe = VirtioUserPort::open(&path, &cfg).unwrap();
        assert!(fe.wait_up(Duration::from_secs(5)), "{:?}", fe.last_error());
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        let mut be = h.join().unwrap();
        let t = Instant::now();
        while !be.is_up() && t.elapsed() < Duration::from_secs(5) {
            be.poll_control();
        }
        assert!(be.is_up(), "{:?}", be.last_error());
        let mut to_be = 0;
        let mut from_be = 0;
        let mut back = 0;
        let mut got_fe = 0;
        let t = Instant::now();
        while (got_fe < 1000 || back < 1000) && t.elapsed() < Duration::from_secs(10) {
            if to_be < 1000 {
                let mut b = Batch::new();
                for i in 0..32 {
                    let mut p = c.alloc().unwrap();
                    let mut f = [0u8; 64];
                    f[0] = i;
                    p.copy_from(&f).unwrap();
                    b.push(p).unwrap();
                }
                to_be += fe.tx_burst(&mut c, &mut b);
                b.free_all(&mut c);
            }
            let mut r = Batch::new();
            from_be += be.rx_burst(&mut c, &mut r);
            // echo back
            back += be.tx_burst(&mut c, &mut r);
            r.free_all(&mut c);
            let mut r = Batch::new();
            got_fe += fe.rx_burst(&mut c, &mut r);
            r.free_all(&mut c);
            if to_be >= 1000 && from_be == to_be && got_fe == back {
                break;
            }
        }
        assert!(to_be >= 1000);
        assert_eq!(from_be, to_be);
        assert_eq!(got_fe, back);
        assert_eq!(fe.stats().tx_packets, be.stats().rx_packets);
        assert_eq!(fe.stats().rx_packets, be.stats().tx_packets);
        assert_eq!(fe.counters().ring_errors, 0);
        // the backend goes away: the frontend notices, drops and counts, reconnects
        drop(be);
        let t = Instant::now();
        while fe.is_up() && t.elapsed() < Duration::from_secs(5) {
            let mut r = Batch::new();
            fe.rx_burst(&mut c, &mut r);
            r.free_all(&mut c);
        }
        assert!(!fe.is_up());
        assert_eq!(fe.counters().link_down, 1);
        let mut b = Batch::new();
        b.push(c.alloc().unwrap()).unwrap();
        fe.tx_burst(&mut c, &mut b);
        assert!(b.is_empty());
        assert_eq!(fe.counters().down_tx_drops, 1);
        let be2 = VhostUserPort::open(&path, &vcfg).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        let h = std::thread::spawn(move || {
            let mut be2 = be2;
            while !st.load(Ordering::Relaxed) {
                be2.poll_control();
                std::thread::sleep(Duration::from_micros(200));
            }
            be2
        });
        let t = Instant::now();
        while !fe.is_up() && t.elapsed() < Duration::from_secs(5) {
            let mut r = Batch::new();
            fe.rx_burst(&mut c, &mut r);
            r.free_all(&mut c);
            std::thread::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::Relaxed);
        let _ = h.join().unwrap();
        assert!(fe.is_up(), "{:?}", fe.last_error());
        assert_eq!(fe.counters().connects, 2);
    }

    /// A backend that answers with the wrong reply, one that closes mid-setup, and
    /// one that writes garbage into the used rings: clear errors, counted, no crash.
    #[test]
    fn hostile_backends_are_counted_and_survived() {
        use std::io::Write;
        use std::os::unix::net::UnixListener;
        let path = sock("hostile");
        let l = UnixListener::bind(&path).unwrap();
        let cfg = Config {
            queue_size: 64,
            retry: Duration::from_millis(5),
            reply_timeout: Duration::from_millis(300),
        };
        // 1: GET_FEATURES answered as if it were GET_PROTOCOL_FEATURES
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 2 * HDR_LEN];
            let _ = s.read_exact(&mut b); // SET_OWNER, GET_FEATURES
            let _ = s.write_all(Out::reply_u64(wire::GET_PROTOCOL_FEATURES, 0).bytes());
            // 2: the next connection is closed before any reply
            let (s2, _) = l.accept().unwrap();
            drop(s2);
            l
        });
        let mut fe = VirtioUserPort::open(&path, &cfg).unwrap();
        assert!(!fe.is_up());
        assert_eq!(fe.counters().ctrl_errors, 1);
        assert!(
            fe.last_error().unwrap().contains("reply to request 1"),
            "{:?}",
            fe.last_error()
        );
        std::thread::sleep(Duration::from_millis(10));
        fe.try_connect();
        assert!(!fe.is_up());
        assert_eq!(fe.counters().ctrl_errors, 2);
        let l = h.join().unwrap();
        drop(l);
        let _ = std::fs::remove_file(&path);
        // 3: a real backend, then garbage in the used ring it shares with us
        let vcfg = vhost_user::Config {
            server: true,
            ..vhost_user::Config::default()
        };
        let mut be = VhostUserPort::open(&path, &vcfg).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        let h = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                be.poll_control();
                std::thread::sleep(Duration::from_micros(200));
            }
            be
        });
        assert!(fe.wait_up(Duration::from_secs(5)), "{:?}", fe.last_error());
        stop.store(true, Ordering::Relaxed);
        let _be = h.join().unwrap();
        let pool = Pool::new(256).unwrap();
        let mut c = pool.cache();
        // used entry 0 names descriptor 999 (there are 64) with a huge length
        let used = fe.q[0].used;
        // SAFETY: the first used element of ring 0 inside our mapping.
        unsafe {
            let e = fe.at(used + 4);
            e.cast::<u32>().write_volatile(999);
            e.add(4).cast::<u32>().write_volatile(1 << 20);
        }
        fe.idx(used).store(1, Ordering::Release);
        let mut b = Batch::new();
        assert_eq!(fe.rx_burst(&mut c, &mut b), 0);
        assert_eq!(fe.counters().ring_errors, 1);
        assert!(!fe.is_up());
        assert!(fe.last_error().unwrap().contains("out of range"));
        // frames sent now are dropped and counted, not written to a dead ring
        let mut b = Batch::new();
        b.push(c.alloc().unwrap()).unwrap();
        fe.tx_burst(&mut c, &mut b);
        assert!(b.is_empty());
        assert_eq!(fe.counters().down_tx_drops, 1);
    }

    #[test]
    fn bad_queue_size_is_refused() {
        let cfg = Config {
            queue_size: 100,
            ..Config::default()
        };
        assert!(matches!(
            VirtioUserPort::open(Path::new("/nonexistent/x.sock"), &cfg),
            Err(VirtioUserError::QueueSize(100))
        ));
    }
}
