//! AF_XDP port (Linux `Documentation/networking/af_xdp.rst`): one XDP socket per
//! (interface, queue), a UMEM of 2 KiB chunks, the fill/completion and RX/TX rings
//! mapped into our address space, and a tiny XDP program that redirects every frame
//! of a queue to its socket through an `XSKMAP` (`bpf_redirect_map(&xsks,
//! ctx->rx_queue_index, XDP_PASS)`), loaded with `bpf(2)` and attached with a BPF link
//! (native driver mode where the driver has it, e.g. veth; generic/SKB mode
//! otherwise). The socket binds zero-copy when the driver supports it, copy mode
//! otherwise (veth, most virtual devices: the kernel then copies each frame between
//! its skb and the UMEM; zero-copy drivers DMA straight into the UMEM).
//!
//! **UMEM frames are engine buffers.** The UMEM is an engine [`Pool`]
//! ([`Pool::from_raw`]): chunks of [`BUF_SIZE`] bytes registered in unaligned-chunk
//! mode (`XDP_UMEM_UNALIGNED_CHUNK_FLAG`, since 2304 is not a power of two), so the
//! kernel writes a received frame at the chunk's `XDP_PACKET_HEADROOM` (256 = our
//! [`HEADROOM`]) and the engine processes it in place, as the very packet it got —
//! no copy on our side. Every chunk is in exactly one place: the pool (free ring or
//! a cache), the engine (a [`Pkt`]), or the kernel (posted on the fill ring, or
//! queued on the TX ring until its completion comes back). The port keeps the
//! packets the kernel holds in a table indexed by chunk (`kernel`), so a received
//! descriptor gives back its packet, a completion gives back the sent packet (freed
//! to the pool), and closing the port returns every chunk the kernel still had.
//! Receive refills the fill ring with fresh chunks of the pool; transmit posts the
//! packet's own chunk when it belongs to this port's UMEM and copies into a fresh
//! chunk otherwise (a packet received on another port: the kernel only takes
//! addresses inside the socket's own UMEM). A packet the engine drops or forwards
//! elsewhere returns its chunk to this UMEM's pool wherever it is freed, so nothing
//! leaks. Counters: [`XdpPort::tx_copies`]. On a zero-copy driver the UMEM should be
//! on huge pages (we try `MAP_HUGETLB` first): a chunk that crosses a 4 KiB page
//! boundary on ordinary pages is not DMA-contiguous, so with zero-copy on ordinary
//! pages those chunks are set aside at open and only page-contained chunks circulate.
//! A closed port's UMEM stays mapped (its packets may still be in the engine).
//!
//! **libxdp / xsk-rs?** Not as a replacement for what is here. The XDP program is
//! six instructions and the socket setup a few `setsockopt`/`mmap` calls; libxdp
//! (Debian `libxdp-dev`) would add a C library and libbpf to every binary and an
//! object file to ship, and `xsk-rs` wraps the same C libraries (bindgen, a C
//! toolchain at build time), neither usable in the no_std core. What libxdp offers
//! that we lack is its multi-program dispatcher protocol (several XDP programs on one
//! interface, e.g. ours beside a firewall's): if a deployment needs that, attach
//! through libxdp's dispatcher then rather than replacing the socket code. Nor would
//! libxdp's `xsk_umem__create`/`xsk_socket__create` help with the UMEM-as-pool part:
//! they map the rings and register the UMEM (a few lines here), while who owns which
//! chunk — the part that must be right for zero copy — stays with the caller.
//!
//! Ring protocol (af_xdp.rst "Rings"): single producer / single consumer with
//! `producer`/`consumer` u32 indices shared with the kernel; the producer publishes
//! entries with a release store of `producer`, the consumer frees them with a release
//! store of `consumer`.

use super::{Port, PortStats};
use crate::batch::Batch;
use crate::buf::{Pkt, Pool, PoolCache, BUF_SIZE, HEADROOM};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

/// UMEM chunk size: one engine buffer.
pub const FRAME: usize = BUF_SIZE;
/// In unaligned-chunk mode the upper 16 bits of a descriptor address carry the data
/// offset inside the chunk (`XSK_UNALIGNED_BUF_OFFSET_SHIFT`).
const OFFSET_SHIFT: u32 = 48;
const ADDR_MASK: u64 = (1 << OFFSET_SHIFT) - 1;

/// Geometry and mode.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// UMEM chunks (half for receive, half for transmit).
    pub frames: u32,
    /// Entries of each of the four rings.
    pub ring: u32,
    /// Try native (driver) XDP before generic XDP.
    pub native: bool,
    /// Try zero-copy before copy mode.
    pub zerocopy: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            frames: 8192,
            ring: 2048,
            native: true,
            zerocopy: true,
        }
    }
}

/// Errors of opening an AF_XDP port.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("interface {0:?} not found")]
    NoIface(String),
    #[error("bad geometry: {0}")]
    Geometry(&'static str),
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        source: io::Error,
    },
    #[error("XDP program rejected: {err}; verifier log: {log}")]
    Verifier { err: io::Error, log: String },
}

fn sys(what: &'static str) -> XdpError {
    XdpError::Sys {
        what,
        source: io::Error::last_os_error(),
    }
}

// ---- bpf(2) ---------------------------------------------------------------------

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_LINK_CREATE: libc::c_int = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XSKMAP_ENTRIES: u32 = 64;

fn bpf(cmd: libc::c_int, attr: &mut [u64; 16]) -> libc::c_long {
    // SAFETY: attr is a zero-padded 128-byte `union bpf_attr` image laid out for `cmd`.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            core::mem::size_of::<[u64; 16]>(),
        )
    }
}

fn bpf_fd(cmd: libc::c_int, attr: &mut [u64; 16], what: &'static str) -> Result<OwnedFd, XdpError> {
    let r = bpf(cmd, attr);
    if r < 0 {
        return Err(sys(what));
    }
    // SAFETY: the kernel returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Packs two u32 into one u64 of a bpf_attr image (little-endian field order).
fn pair(lo: u32, hi: u32) -> u64 {
    lo as u64 | (hi as u64) << 32
}

/// One BPF instruction: opcode, dst/src registers, offset, immediate.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    let b0 = code as u64;
    let b1 = ((src as u64) << 4 | (dst as u64 & 0xf)) << 8;
    let o = (off as u16 as u64) << 16;
    let i = (imm as u32 as u64) << 32;
    b0 | b1 | o | i
}

/// `bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS)` in eBPF.
fn redirect_prog(map_fd: RawFd) -> [u64; 6] {
    [
        insn(0x61, 2, 1, 16, 0),     // r2 = *(u32 *)(r1 + 16)  rx_queue_index
        insn(0x18, 1, 1, 0, map_fd), // r1 = map (ld_imm64, BPF_PSEUDO_MAP_FD)
        insn(0x00, 0, 0, 0, 0),      //      (second half of ld_imm64)
        insn(0xb7, 3, 0, 0, 2),      // r3 = XDP_PASS (action when the slot is empty)
        insn(0x85, 0, 0, 0, 51),     // call bpf_redirect_map
        insn(0x95, 0, 0, 0, 0),      // exit
    ]
}

/// The program, its map and link on one interface, shared by that interface's ports.
struct Attach {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
    native: bool,
    users: u32,
}

static ATTACHED: Mutex<Option<HashMap<u32, Arc<Mutex<Attach>>>>> = Mutex::new(None);

fn attach(ifindex: u32, native: bool) -> Result<Arc<Mutex<Attach>>, XdpError> {
    let mut g = ATTACHED
        .lock()
        .map_err(|_| XdpError::Geometry("attach registry poisoned"))?;
    let reg = g.get_or_insert_with(HashMap::new);
    if let Some(a) = reg.get(&ifindex) {
        if let Ok(mut x) = a.lock() {
            x.users += 1;
        }
        return Ok(a.clone());
    }
    let mut attr = [0u64; 16];
    attr[0] = pair(BPF_MAP_TYPE_XSKMAP, 4); // map_type, key_size
    attr[1] = pair(4, XSKMAP_ENTRIES); // value_size, max_entries
    let map = bpf_fd(BPF_MAP_CREATE, &mut attr, "bpf(BPF_MAP_CREATE xskmap)")?;
    let prog = redirect_prog(map.as_raw_fd());
    let license = b"Dual BSD/GPL\0";
    let mut log = alloc::vec![0u8; 16384];
    let mut attr = [0u64; 16];
    attr[0] = pair(BPF_PROG_TYPE_XDP, prog.len() as u32);
    attr[1] = prog.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    attr[3] = pair(1, log.len() as u32); // log_level, log_size
    attr[4] = log.as_mut_ptr() as u64;
    // kern_version, prog_flags = 0; prog_name at byte 48; expected_attach_type at 68
    let name = b"pg_xsk_redir\0\0\0\0";
    attr[6] = u64::from_le_bytes([
        name[0], name[1], name[2], name[3], name[4], name[5], name[6], name[7],
    ]);
    attr[7] = u64::from_le_bytes([
        name[8], name[9], name[10], name[11], name[12], name[13], name[14], name[15],
    ]);
    attr[8] = pair(0, BPF_XDP); // prog_ifindex, expected_attach_type
    let r = bpf(BPF_PROG_LOAD, &mut attr);
    if r < 0 {
        let err = io::Error::last_os_error();
        let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(log.get(..end).unwrap_or(&[])).into_owned();
        return Err(XdpError::Verifier { err, log: text });
    }
    // SAFETY: new descriptor returned by the kernel.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(r as RawFd) };
    let mut modes: Vec<(u32, bool)> = Vec::new();
    if native {
        modes.push((XDP_FLAGS_DRV_MODE, true));
    }
    modes.push((XDP_FLAGS_SKB_MODE, false));
    let mut last = None;
    for (flags, is_native) in modes {
        let mut attr = [0u64; 16];
        attr[0] = pair(prog_fd.as_raw_fd() as u32, ifindex);
        attr[1] = pair(BPF_XDP, flags);
        match bpf_fd(BPF_LINK_CREATE, &mut attr, "bpf(BPF_LINK_CREATE xdp)") {
            Ok(link) => {
                let a = Arc::new(Mutex::new(Attach {
                    map,
                    _prog: prog_fd,
                    _link: link,
                    native: is_native,
                    users: 1,
                }));
                reg.insert(ifindex, a.clone());
                return Ok(a);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(XdpError::Geometry("no XDP attach mode")))
}

fn detach(ifindex: u32) {
    if let Ok(mut g) = ATTACHED.lock() {
        if let Some(reg) = g.as_mut() {
            let gone = match reg.get(&ifindex).map(|a| a.lock()) {
                Some(Ok(mut a)) => {
                    a.users = a.users.saturating_sub(1);
                    a.users == 0
                }
                _ => false,
            };
            if gone {
                // dropping the link detaches the program
                reg.remove(&ifindex);
            }
        }
    }
}

// ---- rings ------------------------------------------------------------------------

/// `struct xdp_ring_offset`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RingOff {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct MmapOffs {
    rx: RingOff,
    tx: RingOff,
    fr: RingOff,
    cr: RingOff,
}

/// `struct xdp_desc`.
#[repr(C)]
#[derive(Clone, Copy)]
struct XdpDesc {
    addr: u64,
    len: u32,
    options: u32,
}

/// One mapped ring.
struct Ring {
    map: *mut u8,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    desc: *mut u8,
    mask: u32,
    /// Our copy of our own index (producer for fill/tx, consumer for rx/comp).
    local: u32,
    /// Cached peer index.
    cached: u32,
}

impl Ring {
    fn map(fd: RawFd, off: &RingOff, n: u32, entry: usize, pgoff: u64) -> Result<Ring, XdpError> {
        let len = off.desc as usize + n as usize * entry;
        // SAFETY: maps a ring of the socket at the kernel-defined page offset.
        let m = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if m == libc::MAP_FAILED {
            return Err(sys("mmap xdp ring"));
        }
        let b = m.cast::<u8>();
        // SAFETY: offsets reported by XDP_MMAP_OFFSETS lie inside the mapping.
        unsafe {
            Ok(Ring {
                map: b,
                map_len: len,
                producer: b.add(off.producer as usize).cast(),
                consumer: b.add(off.consumer as usize).cast(),
                desc: b.add(off.desc as usize),
                mask: n - 1,
                local: 0,
                cached: 0,
            })
        }
    }

    #[inline(always)]
    fn prod(&self) -> &AtomicU32 {
        // SAFETY: points into our live mapping, 4-aligned, shared with the kernel.
        unsafe { &*self.producer }
    }

    #[inline(always)]
    fn cons(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.consumer }
    }

    #[inline(always)]
    fn u64_slot(&self, i: u32) -> *mut u64 {
        // SAFETY: index masked to the ring size; entries are 8 bytes.
        unsafe { self.desc.add(((i & self.mask) as usize) * 8).cast() }
    }

    #[inline(always)]
    fn desc_slot(&self, i: u32) -> *mut XdpDesc {
        // SAFETY: index masked to the ring size; entries are 16 bytes.
        unsafe { self.desc.add(((i & self.mask) as usize) * 16).cast() }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: our mapping.
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

/// An AF_XDP socket on one interface queue.
pub struct XdpPort {
    name: String,
    ifindex: u32,
    queue: u32,
    attach: Arc<Mutex<Attach>>,
    // fd after rings: rings unmap before the socket closes
    rx: Ring,
    tx: Ring,
    fill: Ring,
    comp: Ring,
    fd: OwnedFd,
    umem: *mut u8,
    /// The UMEM's chunks as engine buffers.
    pool: &'static Pool,
    /// This port's cache over `pool`: fill-ring refills, completed transmits.
    cache: PoolCache,
    /// Chunk index → the packet while the kernel holds the chunk (fill or TX ring).
    kernel: Vec<Option<Pkt>>,
    /// Chunks never handed to the kernel (zero-copy on ordinary pages: they cross a
    /// page boundary); returned to the pool on close.
    parked: Vec<Pkt>,
    /// Frames sent from a packet outside this UMEM (copied into a chunk).
    tx_copies: u64,
    mac: [u8; 6],
    zerocopy: bool,
    stats: PortStats,
}

// SAFETY: the rings and UMEM are owned by this port and used only through &mut self.
unsafe impl Send for XdpPort {}

/// `struct xdp_umem_reg` (current layout, 32 bytes).
#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

/// `struct sockaddr_xdp`.
#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

fn setopt<T>(fd: RawFd, name: libc::c_int, v: &T) -> libc::c_int {
    // SAFETY: v points to a live T of the size passed.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (v as *const T).cast(),
            core::mem::size_of::<T>() as libc::socklen_t,
        )
    }
}

impl XdpPort {
    /// Opens an XDP socket on `iface` queue `queue`.
    pub fn open(iface: &str, queue: u32, cfg: &Config) -> Result<Self, XdpError> {
        if !cfg.ring.is_power_of_two() || cfg.frames < 2 * cfg.ring || queue >= XSKMAP_ENTRIES {
            return Err(XdpError::Geometry(
                "ring must be a power of two, frames >= 2 x ring, queue < 64",
            ));
        }
        let (ifindex, mac) =
            super::afpacket::iface_info(iface).ok_or_else(|| XdpError::NoIface(iface.into()))?;
        const HUGE: usize = 2 << 20;
        let want = cfg.frames as usize * FRAME;
        let map = |len: usize, flags: libc::c_int| {
            // SAFETY: an anonymous private mapping for the UMEM.
            let m = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE | flags,
                    -1,
                    0,
                )
            };
            (m != libc::MAP_FAILED).then_some(m.cast::<u8>())
        };
        // Huge pages keep chunks physically contiguous for zero-copy drivers.
        let huge_len = want.div_ceil(HUGE) * HUGE;
        let (umem, umem_len, huge) = match map(huge_len, libc::MAP_HUGETLB) {
            Some(m) => (m, huge_len, true),
            None => {
                let len = want.div_ceil(4096) * 4096;
                (map(len, 0).ok_or_else(|| sys("mmap umem"))?, len, false)
            }
        };
        let res = Self::open_inner(iface, ifindex, mac, queue, cfg, (umem, umem_len), huge);
        if res.is_err() {
            // SAFETY: our mapping, not referenced by anything else on this path (the
            // pool is made only on success).
            unsafe { libc::munmap(umem.cast(), umem_len) };
        }
        res
    }

    fn open_inner(
        iface: &str,
        ifindex: u32,
        mac: [u8; 6],
        queue: u32,
        cfg: &Config,
        (umem, umem_len): (*mut u8, usize),
        huge: bool,
    ) -> Result<Self, XdpError> {
        // SAFETY: socket creation.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(sys("socket(AF_XDP)"));
        }
        // SAFETY: fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let f = fd.as_raw_fd();
        let reg = UmemReg {
            addr: umem as u64,
            len: umem_len as u64,
            chunk_size: FRAME as u32,
            headroom: 0,
            flags: libc::XDP_UMEM_UNALIGNED_CHUNK_FLAG,
            tx_metadata_len: 0,
        };
        if setopt(f, libc::XDP_UMEM_REG, &reg) != 0 {
            return Err(sys("XDP_UMEM_REG"));
        }
        let n = cfg.ring;
        for (opt, what) in [
            (libc::XDP_UMEM_FILL_RING, "XDP_UMEM_FILL_RING"),
            (libc::XDP_UMEM_COMPLETION_RING, "XDP_UMEM_COMPLETION_RING"),
            (libc::XDP_RX_RING, "XDP_RX_RING"),
            (libc::XDP_TX_RING, "XDP_TX_RING"),
        ] {
            if setopt(f, opt, &n) != 0 {
                return Err(sys(what));
            }
        }
        let mut offs = MmapOffs::default();
        let mut olen = core::mem::size_of::<MmapOffs>() as libc::socklen_t;
        // SAFETY: offs is a writable MmapOffs of olen bytes.
        if unsafe {
            libc::getsockopt(
                f,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut offs as *mut MmapOffs).cast(),
                &mut olen,
            )
        } != 0
        {
            return Err(sys("XDP_MMAP_OFFSETS"));
        }
        let rx = Ring::map(f, &offs.rx, n, 16, libc::XDP_PGOFF_RX_RING as u64)?;
        let tx = Ring::map(f, &offs.tx, n, 16, libc::XDP_PGOFF_TX_RING as u64)?;
        let fill = Ring::map(f, &offs.fr, n, 8, libc::XDP_UMEM_PGOFF_FILL_RING)?;
        let comp = Ring::map(f, &offs.cr, n, 8, libc::XDP_UMEM_PGOFF_COMPLETION_RING)?;

        let attach = attach(ifindex, cfg.native)?;
        let bind = |flags: u16| {
            let sa = SockaddrXdp {
                family: libc::AF_XDP as u16,
                flags,
                ifindex,
                queue_id: queue,
                shared_umem_fd: 0,
            };
            // SAFETY: sa is a valid sockaddr_xdp of the size passed.
            unsafe {
                libc::bind(
                    f,
                    (&sa as *const SockaddrXdp).cast(),
                    core::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
                )
            }
        };
        let mut zerocopy = false;
        let bound = if cfg.zerocopy && bind(libc::XDP_ZEROCOPY) == 0 {
            zerocopy = true;
            0
        } else {
            bind(libc::XDP_COPY)
        };
        if bound != 0 {
            let e = sys("bind(AF_XDP)");
            detach(ifindex);
            return Err(e);
        }
        // register the socket for this queue in the XSKMAP
        let r = {
            let a = attach
                .lock()
                .map_err(|_| XdpError::Geometry("attach poisoned"))?;
            let key: u32 = queue;
            let val: u32 = f as u32;
            let mut attr = [0u64; 16];
            attr[0] = a.map.as_raw_fd() as u64;
            attr[1] = &key as *const u32 as u64;
            attr[2] = &val as *const u32 as u64;
            bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
        };
        if r < 0 {
            let e = sys("bpf(BPF_MAP_UPDATE_ELEM xskmap)");
            detach(ifindex);
            return Err(e);
        }
        let base = core::ptr::NonNull::new(umem).ok_or(XdpError::Geometry("null UMEM"))?;
        // SAFETY: `frames × BUF_SIZE` bytes of our page-aligned UMEM mapping, never
        // unmapped once the pool exists (see Drop); only the pool's packets and the
        // kernel (for the chunks we hand it) touch them.
        let pool =
            unsafe { Pool::from_raw(base, cfg.frames) }.ok_or(XdpError::Geometry("UMEM pool"))?;
        let mut parked = Vec::new();
        if zerocopy && !huge {
            // Only chunks inside one 4 KiB page may reach a zero-copy driver.
            let mut keep = Vec::with_capacity(cfg.frames as usize);
            while let Some(p) = pool.alloc() {
                let off = p.index() as usize * FRAME % 4096;
                if off + FRAME > 4096 {
                    parked.push(p);
                } else {
                    keep.push(p);
                }
            }
            for p in keep {
                pool.free(p);
            }
        }
        let mut kernel = Vec::with_capacity(cfg.frames as usize);
        kernel.resize_with(cfg.frames as usize, || None);
        let mut port = XdpPort {
            name: alloc::format!("{iface}:{queue}"),
            ifindex,
            queue,
            attach,
            rx,
            tx,
            fill,
            comp,
            fd,
            umem,
            pool,
            cache: pool.cache(),
            kernel,
            parked,
            tx_copies: 0,
            mac,
            zerocopy,
            stats: PortStats::default(),
        };
        port.refill();
        Ok(port)
    }

    /// Posts fresh chunks on the fill ring, as many as it has room for.
    #[inline]
    fn refill(&mut self) {
        let size = self.fill.mask + 1;
        let cons = self.fill.cons().load(Ordering::Acquire);
        let room = size - self.fill.local.wrapping_sub(cons);
        let mut fp = self.fill.local;
        for _ in 0..room {
            let Some(p) = self.cache.alloc() else {
                break;
            };
            let idx = p.index() as usize;
            // SAFETY: the fill ring has room for this entry (counted above).
            unsafe { self.fill.u64_slot(fp).write((idx * FRAME) as u64) };
            if let Some(old) = self.kernel.get_mut(idx).and_then(|k| k.replace(p)) {
                // Cannot happen (a free chunk is not with the kernel); keep it safe.
                self.cache.free(old);
            }
            fp = fp.wrapping_add(1);
        }
        if fp != self.fill.local {
            self.fill.local = fp;
            self.fill.prod().store(fp, Ordering::Release);
        }
    }

    /// Frames sent from a packet outside this port's UMEM (copied into a chunk).
    pub fn tx_copies(&self) -> u64 {
        self.tx_copies
    }

    /// The pool of this port's UMEM chunks.
    pub fn pool(&self) -> &'static Pool {
        self.pool
    }

    /// True when the program runs in the driver (native XDP), false for generic XDP.
    pub fn native(&self) -> bool {
        self.attach.lock().map(|a| a.native).unwrap_or(false)
    }

    /// True when the socket is bound zero-copy.
    pub fn zerocopy(&self) -> bool {
        self.zerocopy
    }

    /// Takes completed transmit chunks back: their packets go to the pool.
    #[inline]
    fn reap(&mut self) {
        let prod = self.comp.prod().load(Ordering::Acquire);
        let mut c = self.comp.local;
        while c != prod {
            // SAFETY: entry published by the kernel (acquire above).
            let a = unsafe { self.comp.u64_slot(c).read() } & ADDR_MASK;
            let idx = a as usize / FRAME;
            if let Some(p) = self.kernel.get_mut(idx).and_then(Option::take) {
                self.cache.free(p);
            }
            c = c.wrapping_add(1);
        }
        if c != self.comp.local {
            self.comp.local = c;
            self.comp.cons().store(c, Ordering::Release);
        }
    }
}

impl Drop for XdpPort {
    fn drop(&mut self) {
        if let Ok(a) = self.attach.lock() {
            let key: u32 = self.queue;
            let mut attr = [0u64; 16];
            attr[0] = a.map.as_raw_fd() as u64;
            attr[1] = &key as *const u32 as u64;
            let _ = bpf(BPF_MAP_DELETE_ELEM, &mut attr);
        }
        detach(self.ifindex);
        // The chunks the kernel held go back to the pool (the socket closes when
        // this port's fields drop, so the kernel stops using them). The UMEM stays
        // mapped: packets of its pool may still be in the engine or in other ports.
        for p in self.kernel.iter_mut().filter_map(Option::take) {
            self.cache.free(p);
        }
        for p in self.parked.drain(..) {
            self.cache.free(p);
        }
    }
}

impl Port for XdpPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(&mut self, _cache: &mut PoolCache, batch: &mut Batch) -> usize {
        let prod = self.rx.prod().load(Ordering::Acquire);
        let avail = prod.wrapping_sub(self.rx.local) as usize;
        let n = avail.min(batch.room());
        if n == 0 {
            self.refill();
            return 0;
        }
        let mut got = 0;
        let mut bytes = 0u64;
        for k in 0..n as u32 {
            // SAFETY: entry published by the kernel (acquire above).
            let d = unsafe { self.rx.desc_slot(self.rx.local.wrapping_add(k)).read() };
            let base = (d.addr & ADDR_MASK) as usize;
            let off = (d.addr >> OFFSET_SHIFT) as usize + base % FRAME;
            let len = d.len as usize;
            // The chunk we posted: its packet, with the frame where the kernel put it.
            // (A descriptor for a chunk the kernel does not hold is dropped as well.)
            let pkt = self.kernel.get_mut(base / FRAME).and_then(Option::take);
            match pkt {
                Some(pkt) if off + len > FRAME || len == 0 => {
                    self.cache.free(pkt);
                    self.stats.rx_dropped += 1;
                }
                Some(mut pkt) => {
                    let _ = pkt.set_window(off, len);
                    pkt.meta = Default::default();
                    bytes += len as u64;
                    let _ = batch.push(pkt);
                    got += 1;
                }
                None => self.stats.rx_dropped += 1,
            }
        }
        self.rx.local = self.rx.local.wrapping_add(n as u32);
        self.rx.cons().store(self.rx.local, Ordering::Release);
        self.refill();
        self.stats.rx_packets += got as u64;
        self.stats.rx_bytes += bytes;
        got
    }

    fn tx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        self.reap();
        let size = self.tx.mask + 1;
        let cons = self.tx.cons().load(Ordering::Acquire);
        self.tx.cached = cons;
        let room = size - self.tx.local.wrapping_sub(cons);
        // Completions must fit their ring too: in flight <= its size.
        let inflight = self.tx.local.wrapping_sub(self.comp.local);
        let n = batch
            .len()
            .min(room.min(size.saturating_sub(inflight)) as usize);
        let (mut sent, mut bytes, mut dropped, mut copies) = (0u32, 0u64, 0u64, 0u64);
        let mut p = self.tx.local;
        let pool = self.pool;
        let umem = self.umem as usize;
        let (tx, kernel, own) = (&self.tx, &mut self.kernel, &mut self.cache);
        batch.take_front(n, |pkt| {
            if pkt.is_empty() {
                dropped += 1;
                cache.free(pkt);
                return;
            }
            let pkt = if pool.owns(&pkt) {
                pkt
            } else {
                // Another port's packet: the kernel only takes our UMEM's chunks.
                let Some(mut q) = own.alloc() else {
                    dropped += 1;
                    cache.free(pkt);
                    return;
                };
                let len = pkt.len();
                let _ = q.set_window(HEADROOM.min(FRAME - len), len);
                q.data_mut().copy_from_slice(pkt.data());
                cache.free(pkt);
                copies += 1;
                q
            };
            let len = pkt.len();
            let addr = (pkt.data_ptr() as usize - umem) as u64;
            let idx = pkt.index() as usize;
            // SAFETY: slot p is ours until we publish (room counted above).
            unsafe {
                tx.desc_slot(p).write(XdpDesc {
                    addr,
                    len: len as u32,
                    options: 0,
                })
            };
            if let Some(old) = kernel.get_mut(idx).and_then(|k| k.replace(pkt)) {
                own.free(old);
            }
            p = p.wrapping_add(1);
            sent += 1;
            bytes += len as u64;
        });
        self.tx_copies += copies;
        if sent > 0 {
            self.tx.local = p;
            self.tx.prod().store(p, Ordering::Release);
            // copy mode sends at most 32 frames per call (TX_BATCH_SIZE)
            let kicks = if self.zerocopy { 1 } else { sent.div_ceil(32) };
            for _ in 0..kicks {
                // SAFETY: zero-length send on our socket: "transmit what is queued".
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
        }
        self.stats.tx_packets += sent as u64;
        self.stats.tx_bytes += bytes;
        self.stats.tx_dropped += dropped;
        sent as usize
    }

    fn stats(&self) -> PortStats {
        self.stats
    }

    fn mac(&self) -> Option<[u8; 6]> {
        Some(self.mac)
    }
}
