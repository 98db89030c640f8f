//! AF_PACKET port with TPACKET_V3 memory-mapped rings (Linux
//! `Documentation/networking/packet_mmap.rst`, "TPACKET_V3").
//!
//! Receive: a ring of blocks; the kernel fills a block with variable-size
//! `tpacket3_hdr` frames and hands the whole block over (`TP_STATUS_USER` in the
//! block descriptor) when it is full or its retire timer (`tp_retire_blk_tov`) fires;
//! we copy each frame into a pool buffer and give the block back
//! (`TP_STATUS_KERNEL`). Frames the kernel sent out of this interface
//! (`PACKET_OUTGOING`) are skipped; a VLAN tag the kernel moved to metadata
//! (`TP_STATUS_VLAN_VALID`) is put back into the frame.
//!
//! Transmit: a ring of fixed-size frames (TPACKET_V3 transmit uses `tp_next_offset
//! = 0` slots, data at `TPACKET3_HDRLEN - sizeof(sockaddr_ll)`); we copy packets in,
//! mark them `TP_STATUS_SEND_REQUEST`, and kick the kernel with one `sendto`. With
//! `PACKET_QDISC_BYPASS` frames skip the qdisc layer.

use super::{Port, PortStats};
use crate::batch::Batch;
use crate::buf::{PoolCache, DATA_ROOM, HEADROOM};
use alloc::string::String;
use core::sync::atomic::{fence, AtomicU32, Ordering};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const TPACKET_V3: libc::c_int = 2;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
/// packet(7) `PACKET_FANOUT` and its hash mode (linux/if_packet.h).
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_HASH: libc::c_int = 0;
const PACKET_OUTGOING: u8 = 4;
/// TPACKET_ALIGN(sizeof(struct tpacket3_hdr)).
const HDR3_LEN: usize = 48;
/// Offset of transmit data in a frame: TPACKET3_HDRLEN - sizeof(sockaddr_ll).
const TX_DATA_OFF: usize = HDR3_LEN;

/// `struct tpacket_req3`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

// Offsets inside `struct tpacket_block_desc` (version, offset_to_priv, then
// tpacket_hdr_v1: block_status, num_pkts, offset_to_first_pkt, ...).
const BD_STATUS: usize = 8;
const BD_NUM_PKTS: usize = 12;
const BD_FIRST: usize = 16;
// Offsets inside `struct tpacket3_hdr`.
const H_NEXT: usize = 0;
const H_SNAPLEN: usize = 12;
const H_LEN: usize = 16;
const H_STATUS: usize = 20;
const H_MAC: usize = 24;
const H_VLAN_TCI: usize = 32;
const H_VLAN_TPID: usize = 36;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// Ring geometry.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Receive block size (a multiple of the page size).
    pub block_size: u32,
    pub rx_blocks: u32,
    /// Block retire timeout in ms (how long a partly filled block waits).
    pub retire_ms: u32,
    /// Transmit frame slots (2048 bytes each).
    pub tx_frames: u32,
    /// Bypass the qdisc layer on transmit.
    pub qdisc_bypass: bool,
    /// Join fanout group `g` (packet(7) `PACKET_FANOUT`, `PACKET_FANOUT_HASH`): the
    /// sockets of one group on one interface share its received frames by the
    /// kernel's flow hash, one socket per worker (several workers over one
    /// interface without NIC queues). `None`: every frame.
    pub fanout: Option<u16>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            block_size: 1 << 18,
            rx_blocks: 16,
            retire_ms: 1,
            tx_frames: 2048,
            qdisc_bypass: true,
            fanout: None,
        }
    }
}

/// Errors of opening an AF_PACKET port.
#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
    #[error("interface {0:?} not found")]
    NoIface(String),
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        source: io::Error,
    },
}

fn sys(what: &'static str) -> AfPacketError {
    AfPacketError::Sys {
        what,
        source: io::Error::last_os_error(),
    }
}

fn setopt<T>(fd: libc::c_int, level: libc::c_int, name: libc::c_int, v: &T) -> libc::c_int {
    // SAFETY: `v` points to a live T of the size passed.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            core::mem::size_of::<T>() as libc::socklen_t,
        )
    }
}

/// Index and MAC address of an interface.
pub fn iface_info(name: &str) -> Option<(u32, [u8; 6])> {
    let c = CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return None;
    }
    let mut mac = [0u8; 6];
    // SAFETY: plain socket for an ioctl; closed by OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd >= 0 {
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ifreq is plain old data; zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { core::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: SIOCGIFHWADDR fills ifr_hwaddr of a valid ifreq.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr) } == 0 {
            // SAFETY: the union member written by SIOCGIFHWADDR.
            let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
            for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
                *d = *s as u8;
            }
        }
    }
    Some((idx, mac))
}

/// An AF_PACKET port bound to one interface.
pub struct AfPacketPort {
    name: String,
    fd: OwnedFd,
    map: *mut u8,
    map_len: usize,
    block_size: usize,
    rx_blocks: usize,
    cur_block: usize,
    /// Packets left in the current block and the offset of the next one.
    left: u32,
    next_off: usize,
    tx_base: usize,
    tx_frames: usize,
    tx_head: usize,
    frame_size: usize,
    mac: [u8; 6],
    stats: PortStats,
    /// Frames the kernel dropped on the receive ring (`PACKET_STATISTICS`).
    kernel_drops: u64,
}

// SAFETY: the mapping is owned by this port and only touched through `&mut self`.
unsafe impl Send for AfPacketPort {}

impl Drop for AfPacketPort {
    fn drop(&mut self) {
        // SAFETY: map/map_len come from our successful mmap.
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

impl AfPacketPort {
    /// Opens `iface` with `cfg`'s rings.
    pub fn open(iface: &str, cfg: &Config) -> Result<Self, AfPacketError> {
        let (ifindex, mac) =
            iface_info(iface).ok_or_else(|| AfPacketError::NoIface(iface.into()))?;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket creation.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as libc::c_int) };
        if raw < 0 {
            return Err(sys("socket(AF_PACKET)"));
        }
        // SAFETY: raw is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let f = fd.as_raw_fd();
        if setopt(f, libc::SOL_PACKET, libc::PACKET_VERSION, &TPACKET_V3) != 0 {
            return Err(sys("PACKET_VERSION TPACKET_V3"));
        }
        let one: libc::c_int = 1;
        // Best effort: older kernels lack it, and we also filter by pkttype.
        let _ = setopt(f, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &one);
        if cfg.qdisc_bypass {
            let _ = setopt(f, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one);
        }
        let frame_size = 2048u32;
        let rx = TpacketReq3 {
            block_size: cfg.block_size,
            block_nr: cfg.rx_blocks,
            frame_size,
            frame_nr: cfg.block_size / frame_size * cfg.rx_blocks,
            retire_blk_tov: cfg.retire_ms,
            ..TpacketReq3::default()
        };
        if setopt(f, libc::SOL_PACKET, libc::PACKET_RX_RING, &rx) != 0 {
            return Err(sys("PACKET_RX_RING"));
        }
        let per_block = cfg.block_size / frame_size;
        let tx_blocks = cfg.tx_frames.div_ceil(per_block).max(1);
        let tx = TpacketReq3 {
            block_size: cfg.block_size,
            block_nr: tx_blocks,
            frame_size,
            frame_nr: per_block * tx_blocks,
            ..TpacketReq3::default()
        };
        if setopt(f, libc::SOL_PACKET, libc::PACKET_TX_RING, &tx) != 0 {
            return Err(sys("PACKET_TX_RING"));
        }
        let rx_len = cfg.block_size as usize * cfg.rx_blocks as usize;
        let tx_len = cfg.block_size as usize * tx_blocks as usize;
        let map_len = rx_len + tx_len;
        // SAFETY: maps the rings the kernel just set up for this socket.
        let map = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                f,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(sys("mmap rings"));
        }
        let port = AfPacketPort {
            name: iface.into(),
            fd,
            map: map.cast(),
            map_len,
            block_size: cfg.block_size as usize,
            rx_blocks: cfg.rx_blocks as usize,
            cur_block: 0,
            left: 0,
            next_off: 0,
            tx_base: rx_len,
            tx_frames: (per_block * tx_blocks) as usize,
            tx_head: 0,
            frame_size: frame_size as usize,
            mac,
            stats: PortStats::default(),
            kernel_drops: 0,
        };
        // SAFETY: sockaddr_ll is plain old data.
        let mut sll: libc::sockaddr_ll = unsafe { core::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a valid sockaddr_ll of the size passed.
        let r = unsafe {
            libc::bind(
                f,
                (&sll as *const libc::sockaddr_ll).cast(),
                core::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(sys("bind"));
        }
        if let Some(g) = cfg.fanout {
            // packet(7): the group id in the low 16 bits, the mode in the high ones;
            // joined after bind.
            let arg: libc::c_int = libc::c_int::from(g) | (PACKET_FANOUT_HASH << 16);
            if setopt(f, libc::SOL_PACKET, PACKET_FANOUT, &arg) != 0 {
                return Err(sys("PACKET_FANOUT"));
            }
        }
        Ok(port)
    }

    #[inline(always)]
    fn at(&self, off: usize) -> *mut u8 {
        // SAFETY: callers keep off < map_len (ring geometry).
        unsafe { self.map.add(off) }
    }

    #[inline(always)]
    fn u32_at(&self, off: usize) -> u32 {
        // SAFETY: 4-aligned offset inside the mapping (kernel-defined layouts).
        unsafe { self.at(off).cast::<u32>().read_volatile() }
    }

    #[inline(always)]
    fn status(&self, off: usize) -> &AtomicU32 {
        // SAFETY: 4-aligned u32 status word shared with the kernel, inside the map.
        unsafe { AtomicU32::from_ptr(self.at(off).cast()) }
    }
}

impl Port for AfPacketPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        let mut n = 0;
        while batch.room() > 0 {
            let boff = self.cur_block * self.block_size;
            if self.left == 0 {
                let st = self.status(boff + BD_STATUS).load(Ordering::Acquire);
                if st & libc::TP_STATUS_USER == 0 {
                    break;
                }
                self.left = self.u32_at(boff + BD_NUM_PKTS);
                self.next_off = self.u32_at(boff + BD_FIRST) as usize;
                if self.left == 0 {
                    self.release_block(boff);
                    continue;
                }
            }
            let rel = self.next_off;
            if rel + HDR3_LEN + 20 > self.block_size {
                // a header outside the block: give the block back
                self.stats.rx_dropped += self.left as u64;
                self.release_block(boff);
                continue;
            }
            let h = boff + rel;
            let next = self.u32_at(h + H_NEXT) as usize;
            let snap = self.u32_at(h + H_SNAPLEN) as usize;
            let len = self.u32_at(h + H_LEN) as usize;
            let status = self.u32_at(h + H_STATUS);
            // SAFETY: u16 inside the header.
            let mac_off = unsafe { self.at(h + H_MAC).cast::<u16>().read_volatile() } as usize;
            // SAFETY: sll_pkttype of the sockaddr_ll after the header.
            let pkttype = unsafe { self.at(h + HDR3_LEN + 10).read_volatile() };
            let tci = self.u32_at(h + H_VLAN_TCI) as u16;
            // SAFETY: u16 inside the header.
            let tpid = unsafe { self.at(h + H_VLAN_TPID).cast::<u16>().read_volatile() };
            self.left -= 1;
            self.next_off += next;
            let in_block = rel + mac_off + snap <= self.block_size;
            if pkttype != PACKET_OUTGOING {
                let vlan = status & libc::TP_STATUS_VLAN_VALID != 0;
                let extra = if vlan { 4 } else { 0 };
                if snap < len || snap + extra > DATA_ROOM || snap < 12 || !in_block {
                    self.stats.rx_dropped += 1;
                } else if let Some(mut pkt) = cache.alloc() {
                    // SAFETY: the frame lies inside the block we own (checked above).
                    let src = unsafe { core::slice::from_raw_parts(self.at(h + mac_off), snap) };
                    let buf = pkt.buffer_mut();
                    let o = HEADROOM;
                    if vlan {
                        let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 && tpid != 0 {
                            tpid
                        } else {
                            0x8100
                        };
                        buf[o..o + 12].copy_from_slice(&src[..12]);
                        buf[o + 12..o + 14].copy_from_slice(&tpid.to_be_bytes());
                        buf[o + 14..o + 16].copy_from_slice(&tci.to_be_bytes());
                        buf[o + 16..o + 4 + snap].copy_from_slice(&src[12..]);
                    } else {
                        buf[o..o + snap].copy_from_slice(src);
                    }
                    let _ = pkt.set_window(o, snap + extra);
                    self.stats.rx_packets += 1;
                    self.stats.rx_bytes += (snap + extra) as u64;
                    let _ = batch.push(pkt);
                    n += 1;
                } else {
                    self.stats.rx_dropped += 1;
                }
            }
            if self.left == 0 {
                self.release_block(boff);
            }
        }
        n
    }

    fn tx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        let mut sent = 0;
        let mut bytes = 0u64;
        let mut dropped = 0u64;
        let tx_base = self.tx_base;
        let fs = self.frame_size;
        let nframes = self.tx_frames;
        let mut head = self.tx_head;
        let map = self.map;
        let mut count = 0;
        for p in batch.iter() {
            let off = tx_base + head * fs;
            // SAFETY: frame `head` lies inside the TX ring; its status word is shared
            // with the kernel.
            let st = unsafe { AtomicU32::from_ptr(map.add(off + H_STATUS).cast()) };
            let s = st.load(Ordering::Acquire);
            if s != libc::TP_STATUS_AVAILABLE && s & libc::TP_STATUS_WRONG_FORMAT == 0 {
                break;
            }
            let len = p.len();
            if len + TX_DATA_OFF <= fs {
                // SAFETY: the slot is ours (status available); the copy stays in the
                // frame (checked above).
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        p.data().as_ptr(),
                        map.add(off + TX_DATA_OFF),
                        len,
                    );
                    map.add(off + H_LEN)
                        .cast::<u32>()
                        .write_volatile(len as u32);
                    map.add(off + H_SNAPLEN)
                        .cast::<u32>()
                        .write_volatile(len as u32);
                    map.add(off + H_NEXT).cast::<u32>().write_volatile(0);
                }
                fence(Ordering::Release);
                st.store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
                bytes += len as u64;
                sent += 1;
                head = (head + 1) % nframes;
            } else {
                dropped += 1;
            }
            count += 1;
        }
        self.tx_head = head;
        batch.take_front(count, |p| cache.free(p));
        if sent > 0 {
            // SAFETY: a zero-length send on our socket asks the kernel to transmit
            // the frames marked SEND_REQUEST.
            unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    core::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    core::ptr::null(),
                    0,
                )
            };
        }
        self.stats.tx_packets += sent as u64;
        self.stats.tx_bytes += bytes;
        self.stats.tx_dropped += dropped;
        sent
    }

    fn stats(&self) -> PortStats {
        self.stats
    }

    fn mac(&self) -> Option<[u8; 6]> {
        Some(self.mac)
    }
}

impl AfPacketPort {
    #[inline]
    fn release_block(&mut self, boff: usize) {
        self.status(boff + BD_STATUS)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.cur_block = (self.cur_block + 1) % self.rx_blocks;
        self.left = 0;
        self.read_kernel_drops();
    }

    /// Adds the frames the kernel dropped because the receive ring was full to
    /// `rx_dropped` (`PACKET_STATISTICS`, packet(7): the counters reset on every read).
    /// Called once per released block, so the syscall is amortised over its frames.
    fn read_kernel_drops(&mut self) {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = core::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `st` and `len` are valid for writes of the sizes given.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if r == 0 {
            self.stats.rx_dropped += u64::from(st.tp_drops);
            self.kernel_drops += u64::from(st.tp_drops);
        }
    }

    /// Frames the kernel dropped on this port's receive ring so far (also counted in
    /// `stats().rx_dropped`); reads the kernel's counter now.
    pub fn kernel_drops(&mut self) -> u64 {
        self.read_kernel_drops();
        self.kernel_drops
    }
}
