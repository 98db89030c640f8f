//! A minimal vhost-user frontend (the virtio-net driver side) for the vhost-user port
//! tests: one memfd of guest memory, one queue pair of split rings (VIRTIO 1.1 §2.6),
//! driven from the test's thread. Guest physical and user addresses are made up
//! (and differ), so the port's translation is exercised; the port only ever sees the
//! memfd. Its data path does not allocate (the no-alloc test runs it).

#![allow(dead_code)]

use dataplane::port::vhost_user::{send_with_fds, VhostUserPort};
use dataplane::proto::vhost_user::{self as wire, Header, Out, Region, VringAddr, VringState};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

pub const NUM: u16 = 256;
pub const BUF: usize = 2048;
pub const GPA: u64 = 0x4000_0000;
pub const UADDR: u64 = 0x7f00_0000_0000;
pub const MEM: usize = 2 << 20;
/// Offsets in guest memory: rings of queue 0 (driver receive) and 1 (driver
/// transmit), then the buffers.
pub const Q0_DESC: usize = 0x0000;
pub const Q0_AVAIL: usize = 0x1000;
pub const Q0_USED: usize = 0x2000;
pub const Q1_DESC: usize = 0x3000;
pub const Q1_AVAIL: usize = 0x4000;
pub const Q1_USED: usize = 0x5000;
pub const RX_BUFS: usize = 0x10000;
pub const TX_BUFS: usize = RX_BUFS + NUM as usize * BUF;
pub const HDR: usize = 12;

pub struct Frontend {
    pub sock: UnixStream,
    pub memfd: OwnedFd,
    pub mem: *mut u8,
    pub kick: [OwnedFd; 2],
    pub call: [OwnedFd; 2],
    /// Driver transmit ring: next avail index we publish, used index seen.
    tx_next: u16,
    tx_used: u16,
    /// Driver receive ring: avail index published, used index seen.
    rx_avail: u16,
    rx_used: u16,
}

fn eventfd() -> OwnedFd {
    // SAFETY: plain eventfd creation, checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: fresh descriptor.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A memfd of `size` bytes, mapped.
pub fn memfd(size: usize) -> (OwnedFd, *mut u8) {
    // SAFETY: memfd_create with a C string literal; results checked.
    let fd = unsafe { libc::memfd_create(c"vhost-test".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: size the file we own.
    assert_eq!(
        unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) },
        0
    );
    // SAFETY: map it; checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    (fd, p.cast())
}

impl Frontend {
    pub fn new(sock: UnixStream) -> Frontend {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let (memfd, mem) = memfd(MEM);
        Frontend {
            sock,
            memfd,
            mem,
            kick: [eventfd(), eventfd()],
            call: [eventfd(), eventfd()],
            tx_next: 0,
            tx_used: 0,
            rx_avail: 0,
            rx_used: 0,
        }
    }

    pub fn connect(path: &std::path::Path) -> Frontend {
        Frontend::new(UnixStream::connect(path).unwrap())
    }

    pub fn region() -> Region {
        Region {
            guest_phys_addr: GPA,
            memory_size: MEM as u64,
            userspace_addr: UADDR,
            mmap_offset: 0,
        }
    }

    pub fn send(&self, o: &Out, fds: &[RawFd]) {
        send_with_fds(self.sock.as_raw_fd(), o.bytes(), fds).unwrap();
    }

    pub fn send_raw(&self, b: &[u8]) {
        send_with_fds(self.sock.as_raw_fd(), b, &[]).unwrap();
    }

    /// Lets the port read what we sent, then reads its reply (if any).
    pub fn reply(&mut self, port: &mut VhostUserPort) -> Option<(Header, Vec<u8>)> {
        for _ in 0..4 {
            port.poll_control();
        }
        let mut h = [0u8; wire::HDR_LEN];
        self.sock.read_exact(&mut h).ok()?;
        let h = Header::parse(&h).ok()?;
        let mut p = vec![0u8; h.size as usize];
        self.sock.read_exact(&mut p).ok()?;
        Some((h, p))
    }

    /// Whether the port closed the connection (EOF within 200 ms, after polling it).
    pub fn closed(&mut self, port: &mut VhostUserPort) -> bool {
        for _ in 0..4 {
            port.poll_control();
        }
        let mut b = [0u8; 64];
        loop {
            match self.sock.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }

    pub fn u64_reply(&mut self, port: &mut VhostUserPort, req: u32) -> u64 {
        self.send(&Out::request(req, 0), &[]);
        let (h, p) = self.reply(port).expect("reply");
        assert_eq!(h.request, req);
        assert_ne!(h.flags & wire::FLAG_REPLY, 0);
        u64::from_le_bytes(p[..8].try_into().unwrap())
    }

    /// Sends `o` with NEED_REPLY and returns the ack status.
    pub fn acked(&mut self, port: &mut VhostUserPort, o: &Out, fds: &[RawFd]) -> Option<u64> {
        let mut b = o.bytes().to_vec();
        let f = u32::from_le_bytes(b[4..8].try_into().unwrap()) | wire::FLAG_NEED_REPLY;
        b[4..8].copy_from_slice(&f.to_le_bytes());
        send_with_fds(self.sock.as_raw_fd(), &b, fds).unwrap();
        let (_, p) = self.reply(port)?;
        Some(u64::from_le_bytes(p[..8].try_into().unwrap()))
    }

    /// Feature negotiation and the memory table.
    pub fn negotiate(&mut self, port: &mut VhostUserPort) {
        self.send(&Out::request(wire::SET_OWNER, 0), &[]);
        let f = self.u64_reply(port, wire::GET_FEATURES);
        assert_ne!(f & wire::VIRTIO_F_VERSION_1, 0);
        self.send(&Out::request_u64(wire::SET_FEATURES, 0, f), &[]);
        let pf = self.u64_reply(port, wire::GET_PROTOCOL_FEATURES);
        assert_ne!(pf & wire::PROTOCOL_F_REPLY_ACK, 0);
        self.send(&Out::request_u64(wire::SET_PROTOCOL_FEATURES, 0, pf), &[]);
        assert_eq!(self.u64_reply(port, wire::GET_QUEUE_NUM), 1);
        let ack = self.acked(
            port,
            &Out::request_mem(0, &[Frontend::region()]),
            &[self.memfd.as_raw_fd()],
        );
        assert_eq!(ack, Some(0), "{:?}", port.last_error());
    }

    pub fn addr(q: u32) -> VringAddr {
        let (d, a, u) = if q == 0 {
            (Q0_DESC, Q0_AVAIL, Q0_USED)
        } else {
            (Q1_DESC, Q1_AVAIL, Q1_USED)
        };
        VringAddr {
            index: q,
            flags: 0,
            desc: UADDR + d as u64,
            used: UADDR + u as u64,
            avail: UADDR + a as u64,
            log: 0,
        }
    }

    /// Sets up ring `q` with `a` and starts and enables it.
    pub fn ring(&mut self, port: &mut VhostUserPort, q: u32, a: &VringAddr) {
        let st = |num| VringState { index: q, num };
        self.send(
            &Out::request_state(wire::SET_VRING_NUM, 0, st(NUM as u32)),
            &[],
        );
        self.send(&Out::request_state(wire::SET_VRING_BASE, 0, st(0)), &[]);
        self.send(&Out::request_addr(0, a), &[]);
        self.send(
            &Out::request_u64(wire::SET_VRING_CALL, 0, q as u64),
            &[self.call[q as usize].as_raw_fd()],
        );
        self.send(
            &Out::request_u64(wire::SET_VRING_KICK, 0, q as u64),
            &[self.kick[q as usize].as_raw_fd()],
        );
        self.send(&Out::request_state(wire::SET_VRING_ENABLE, 0, st(1)), &[]);
        for _ in 0..4 {
            port.poll_control();
        }
    }

    /// Posts every receive buffer, then the whole setup; returns with the port up.
    pub fn setup(&mut self, port: &mut VhostUserPort) {
        self.negotiate(port);
        for i in 0..NUM {
            self.write_desc(
                Q0_DESC,
                i,
                GPA + (RX_BUFS + i as usize * BUF) as u64,
                BUF as u32,
                2,
                0,
            );
            self.avail_ring(Q0_AVAIL, i, i);
        }
        self.rx_avail = NUM;
        self.idx(Q0_AVAIL).store(NUM, Ordering::Release);
        self.ring(port, 0, &Frontend::addr(0));
        self.ring(port, 1, &Frontend::addr(1));
        assert!(port.is_up(), "{:?}", port.last_error());
    }

    pub fn at(&self, off: usize) -> *mut u8 {
        assert!(off < MEM);
        // SAFETY: inside the mapping.
        unsafe { self.mem.add(off) }
    }

    pub fn idx(&self, ring: usize) -> &AtomicU16 {
        // SAFETY: 2-aligned u16 inside the mapping.
        unsafe { AtomicU16::from_ptr(self.at(ring + 2).cast()) }
    }

    pub fn flags(&self, ring: usize) -> &AtomicU16 {
        // SAFETY: as above.
        unsafe { AtomicU16::from_ptr(self.at(ring).cast()) }
    }

    pub fn write_desc(&self, table: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = self.at(table + 16 * i as usize);
        // SAFETY: a descriptor inside the table inside the mapping.
        unsafe {
            d.cast::<u64>().write_volatile(addr);
            d.add(8).cast::<u32>().write_volatile(len);
            d.add(12).cast::<u16>().write_volatile(flags);
            d.add(14).cast::<u16>().write_volatile(next);
        }
    }

    pub fn avail_ring(&self, ring: usize, slot: u16, head: u16) {
        // SAFETY: inside the avail ring.
        unsafe {
            self.at(ring + 4 + 2 * (slot % NUM) as usize)
                .cast::<u16>()
                .write_volatile(head)
        };
    }

    fn used_elem(&self, ring: usize, slot: u16) -> (u32, u32) {
        // SAFETY: inside the used ring.
        unsafe {
            let e = self.at(ring + 4 + 8 * (slot % NUM) as usize);
            (
                e.cast::<u32>().read_volatile(),
                e.add(4).cast::<u32>().read_volatile(),
            )
        }
    }

    /// Posts one frame on the driver transmit ring (header + frame in one
    /// descriptor, or split after the header when `split`); false when full.
    pub fn transmit(&mut self, f: &[u8], split: bool) -> bool {
        self.tx_used = self.idx(Q1_USED).load(Ordering::Acquire);
        if self.tx_next.wrapping_sub(self.tx_used) >= NUM / 2 {
            return false;
        }
        // Two descriptors per slot pair: d = 2*slot (header or all), d+1 (frame).
        let slot = self.tx_next % (NUM / 2);
        let d = slot * 2;
        let off = TX_BUFS + slot as usize * 2 * BUF;
        // SAFETY: header + frame fit in the slot's two buffers.
        unsafe {
            std::ptr::write_bytes(self.at(off), 0, HDR);
            std::ptr::copy_nonoverlapping(f.as_ptr(), self.at(off + HDR), f.len());
        }
        let a = GPA + off as u64;
        if split {
            self.write_desc(Q1_DESC, d, a, HDR as u32, 1, d + 1);
            self.write_desc(Q1_DESC, d + 1, a + HDR as u64, f.len() as u32, 0, 0);
        } else {
            self.write_desc(Q1_DESC, d, a, (HDR + f.len()) as u32, 0, 0);
        }
        self.avail_ring(Q1_AVAIL, self.tx_next, d);
        self.tx_next = self.tx_next.wrapping_add(1);
        self.idx(Q1_AVAIL).store(self.tx_next, Ordering::Release);
        true
    }

    /// Takes received frames off the driver receive ring into `out` (cleared first),
    /// re-posting the buffers; returns how many.
    pub fn receive(&mut self, out: &mut [u8], mut each: impl FnMut(&[u8])) -> usize {
        let used = self.idx(Q0_USED).load(Ordering::Acquire);
        let mut n = 0;
        while self.rx_used != used {
            let (id, len) = self.used_elem(Q0_USED, self.rx_used);
            let len = len as usize;
            assert!(id < NUM as u32 && len <= BUF);
            if len >= HDR {
                let f = &mut out[..len - HDR];
                // SAFETY: inside buffer `id`.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.at(RX_BUFS + id as usize * BUF + HDR),
                        f.as_mut_ptr(),
                        len - HDR,
                    )
                };
                // num_buffers = 1, no flags
                // SAFETY: inside buffer `id`.
                let nb = unsafe {
                    self.at(RX_BUFS + id as usize * BUF + 10)
                        .cast::<u16>()
                        .read()
                };
                assert_eq!(nb, 1);
                each(f);
            }
            self.avail_ring(Q0_AVAIL, self.rx_avail, id as u16);
            self.rx_avail = self.rx_avail.wrapping_add(1);
            self.rx_used = self.rx_used.wrapping_add(1);
            n += 1;
        }
        self.idx(Q0_AVAIL).store(self.rx_avail, Ordering::Release);
        n
    }

    /// Eventfd count of `call[q]` (0 when never signalled), reset.
    pub fn calls(&self, q: usize) -> u64 {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into a local from our eventfd.
        let r = unsafe { libc::read(self.call[q].as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        if r == 8 {
            v
        } else {
            0
        }
    }
}

impl Drop for Frontend {
    fn drop(&mut self) {
        // SAFETY: unmaps our mapping.
        unsafe { libc::munmap(self.mem.cast(), MEM) };
    }
}
