//! vhost-user messages, as the vhost-user protocol (QEMU `docs/interop/vhost-user.rst`)
//! defines them, and the split-virtqueue layout they set up (VIRTIO 1.1 §2.6).
//!
//! **Framing.** A unix stream socket carries messages of a 12-byte header — `request`
//! (u32), `flags` (u32: version [`VERSION`] in bits 0–1, [`FLAG_REPLY`],
//! [`FLAG_NEED_REPLY`]), `size` (u32, the payload length) — then `size` bytes of
//! payload, all little-endian (host order on the hosts the protocol runs on). File
//! descriptors travel as `SCM_RIGHTS` with the message (one per memory region for
//! `SET_MEM_TABLE`, an eventfd for `SET_VRING_KICK`/`CALL`/`ERR`).
//!
//! **Payloads** used here: a `u64` (features, protocol features, a ring index with
//! [`VRING_INVALID_FD`] for the kick/call/err messages), a vring state (`index` u32,
//! `num` u32), a vring address (`index` u32, `flags` u32, `desc`, `used`, `avail`,
//! `log` u64 — user addresses of the frontend) and a memory table (`nregions` u32,
//! padding u32, then up to [`MAX_REGIONS`] regions of `guest_phys_addr`,
//! `memory_size`, `userspace_addr`, `mmap_offset`, all u64).
//!
//! Nothing here uses `std`; parsing never allocates or panics on any input (the
//! `vhost_user` fuzz target in `dataplane/fuzz` checks that).

use core::fmt;

/// Header length.
pub const HDR_LEN: usize = 12;
/// Largest payload we accept (a memory table is 8 + 8 × 32 = 264 bytes; the
/// protocol's largest fixed messages — config space, inflight — stay below 4 KiB).
pub const MAX_PAYLOAD: usize = 4096;
/// Protocol version in the low two bits of `flags`.
pub const VERSION: u32 = 0x1;
/// `flags`: this message is a reply.
pub const FLAG_REPLY: u32 = 1 << 2;
/// `flags`: the sender wants a `u64` ack (with `REPLY_ACK` negotiated).
pub const FLAG_NEED_REPLY: u32 = 1 << 3;
/// Memory regions in one `SET_MEM_TABLE` (`VHOST_MEMORY_BASELINE_NREGIONS`).
pub const MAX_REGIONS: usize = 8;
/// Bit 8 of the kick/call/err payload: no file descriptor comes with the message.
pub const VRING_INVALID_FD: u64 = 1 << 8;
/// Low byte of the kick/call/err payload: the ring index.
pub const VRING_INDEX_MASK: u64 = 0xff;

// Front-end requests (the subset a network backend sees; others get a clear error).
pub const GET_FEATURES: u32 = 1;
pub const SET_FEATURES: u32 = 2;
pub const SET_OWNER: u32 = 3;
pub const RESET_OWNER: u32 = 4;
pub const SET_MEM_TABLE: u32 = 5;
pub const SET_LOG_BASE: u32 = 6;
pub const SET_LOG_FD: u32 = 7;
pub const SET_VRING_NUM: u32 = 8;
pub const SET_VRING_ADDR: u32 = 9;
pub const SET_VRING_BASE: u32 = 10;
pub const GET_VRING_BASE: u32 = 11;
pub const SET_VRING_KICK: u32 = 12;
pub const SET_VRING_CALL: u32 = 13;
pub const SET_VRING_ERR: u32 = 14;
pub const GET_PROTOCOL_FEATURES: u32 = 15;
pub const SET_PROTOCOL_FEATURES: u32 = 16;
pub const GET_QUEUE_NUM: u32 = 17;
pub const SET_VRING_ENABLE: u32 = 18;
pub const SEND_RARP: u32 = 19;
pub const NET_SET_MTU: u32 = 20;
pub const GET_STATUS: u32 = 40;
pub const SET_STATUS: u32 = 39;

// Virtio feature bits (VIRTIO 1.1 §5.1.3, §6) and the vhost-user one.
/// Device merges receive buffers; the header grows a `num_buffers` field.
pub const VIRTIO_NET_F_MRG_RXBUF: u64 = 1 << 15;
/// `VHOST_USER_F_PROTOCOL_FEATURES`: protocol features may be negotiated.
pub const F_PROTOCOL_FEATURES: u64 = 1 << 30;
/// VIRTIO 1.x device (little-endian, 12-byte net header).
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

// Protocol feature bits.
pub const PROTOCOL_F_MQ: u64 = 1 << 0;
pub const PROTOCOL_F_REPLY_ACK: u64 = 1 << 3;

// Split virtqueue layout (VIRTIO 1.1 §2.6).
/// Descriptor: `addr` u64, `len` u32, `flags` u16, `next` u16.
pub const DESC_SIZE: usize = 16;
/// Descriptor flag: the chain continues at `next`.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: device-writable buffer.
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer is a table of descriptors.
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// Available ring flag: the driver wants no used-buffer notifications.
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used ring flag: the device wants no available-buffer notifications (we poll).
pub const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;
/// Largest split queue (VIRTIO 1.1 §2.6: queue size ≤ 32768).
pub const MAX_QUEUE_SIZE: u32 = 32768;

/// Bytes of the descriptor table of a queue of `num` entries.
pub const fn desc_bytes(num: u32) -> u64 {
    DESC_SIZE as u64 * num as u64
}
/// Bytes of the available ring (`flags`, `idx`, `ring[num]`, `used_event`).
pub const fn avail_bytes(num: u32) -> u64 {
    6 + 2 * num as u64
}
/// Bytes of the used ring (`flags`, `idx`, `ring[num]` of 8 bytes, `avail_event`).
pub const fn used_bytes(num: u32) -> u64 {
    6 + 8 * num as u64
}

/// Message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub request: u32,
    pub flags: u32,
    pub size: u32,
}

impl Header {
    /// Parses the first [`HDR_LEN`] bytes; checks the version and the payload size.
    pub fn parse(b: &[u8]) -> Result<Header, Error> {
        let b: &[u8; HDR_LEN] = b
            .get(..HDR_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::Short)?;
        let h = Header {
            request: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            flags: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            size: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        };
        if h.flags & 0x3 != VERSION {
            return Err(Error::Version(h.flags & 0x3));
        }
        if h.size as usize > MAX_PAYLOAD {
            return Err(Error::TooLong(h.size));
        }
        Ok(h)
    }
    pub fn emit(&self) -> [u8; HDR_LEN] {
        let mut o = [0u8; HDR_LEN];
        o[0..4].copy_from_slice(&self.request.to_le_bytes());
        o[4..8].copy_from_slice(&self.flags.to_le_bytes());
        o[8..12].copy_from_slice(&self.size.to_le_bytes());
        o
    }
    /// Whether the frontend asked for an ack.
    pub fn need_reply(&self) -> bool {
        self.flags & FLAG_NEED_REPLY != 0
    }
}

/// A vring state: `SET_VRING_NUM`, `SET_VRING_BASE`, `GET_VRING_BASE`,
/// `SET_VRING_ENABLE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VringState {
    pub index: u32,
    pub num: u32,
}

/// `SET_VRING_ADDR` (frontend user addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VringAddr {
    pub index: u32,
    pub flags: u32,
    pub desc: u64,
    pub used: u64,
    pub avail: u64,
    pub log: u64,
}

/// One region of `SET_MEM_TABLE`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    pub guest_phys_addr: u64,
    pub memory_size: u64,
    pub userspace_addr: u64,
    pub mmap_offset: u64,
}

/// `SET_MEM_TABLE`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemTable {
    pub nregions: u32,
    pub regions: [Region; MAX_REGIONS],
}

impl MemTable {
    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.nregions as usize]
    }
}

/// Why a message does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the header or the payload needs.
    Short,
    /// Protocol version other than 1.
    Version(u32),
    /// Payload larger than [`MAX_PAYLOAD`].
    TooLong(u32),
    /// Payload size wrong for the request.
    Size { request: u32, size: u32 },
    /// Memory table with zero or more than [`MAX_REGIONS`] regions.
    Regions(u32),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Short => write!(f, "truncated vhost-user message"),
            Error::Version(v) => write!(f, "vhost-user version {v} (expected 1)"),
            Error::TooLong(n) => {
                write!(f, "vhost-user payload of {n} bytes (at most {MAX_PAYLOAD})")
            }
            Error::Size { request, size } => {
                write!(
                    f,
                    "vhost-user request {request} with a payload of {size} bytes"
                )
            }
            Error::Regions(n) => {
                write!(f, "memory table of {n} regions (1 to {MAX_REGIONS})")
            }
        }
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A parsed request payload. (A memory table is held inline: parsing allocates
/// nothing, and payloads live on the control path only, one at a time.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    None,
    U64(u64),
    State(VringState),
    Addr(VringAddr),
    Mem(MemTable),
}

/// Parses the payload of request `h` (the `h.size` bytes after the header). A
/// request with a payload the protocol does not define for it is an error;
/// requests this module does not know parse as [`Payload::None`] whatever they
/// carry (the caller refuses them).
pub fn parse_payload(h: &Header, p: &[u8]) -> Result<Payload, Error> {
    let p = p.get(..h.size as usize).ok_or(Error::Short)?;
    let want = |n: usize| {
        if p.len() == n {
            Ok(())
        } else {
            Err(Error::Size {
                request: h.request,
                size: h.size,
            })
        }
    };
    Ok(match h.request {
        GET_FEATURES
        | GET_PROTOCOL_FEATURES
        | SET_OWNER
        | RESET_OWNER
        | GET_QUEUE_NUM
        | GET_STATUS => {
            // Some frontends send an (ignored) u64 with the GETs.
            if !p.is_empty() && p.len() != 8 {
                want(0)?;
            }
            Payload::None
        }
        SET_FEATURES
        | SET_PROTOCOL_FEATURES
        | SET_VRING_KICK
        | SET_VRING_CALL
        | SET_VRING_ERR
        | SET_LOG_BASE
        | SET_STATUS => {
            want(8)?;
            Payload::U64(le64(p, 0))
        }
        SET_VRING_NUM | SET_VRING_BASE | GET_VRING_BASE | SET_VRING_ENABLE => {
            want(8)?;
            Payload::State(VringState {
                index: le32(p, 0),
                num: le32(p, 4),
            })
        }
        SET_VRING_ADDR => {
            want(40)?;
            Payload::Addr(VringAddr {
                index: le32(p, 0),
                flags: le32(p, 4),
                desc: le64(p, 8),
                used: le64(p, 16),
                avail: le64(p, 24),
                log: le64(p, 32),
            })
        }
        SET_MEM_TABLE => {
            if p.len() < 8 {
                return Err(Error::Size {
                    request: h.request,
                    size: h.size,
                });
            }
            let n = le32(p, 0);
            if n == 0 || n as usize > MAX_REGIONS {
                return Err(Error::Regions(n));
            }
            want(8 + 32 * n as usize)?;
            let mut t = MemTable {
                nregions: n,
                ..MemTable::default()
            };
            for (i, r) in t.regions[..n as usize].iter_mut().enumerate() {
                let o = 8 + 32 * i;
                *r = Region {
                    guest_phys_addr: le64(p, o),
                    memory_size: le64(p, o + 8),
                    userspace_addr: le64(p, o + 16),
                    mmap_offset: le64(p, o + 24),
                };
            }
            Payload::Mem(t)
        }
        _ => Payload::None,
    })
}

/// A message to send (frontend requests in tests, our replies): header plus at most a
/// memory table's worth of payload.
#[derive(Clone, Copy)]
pub struct Out {
    buf: [u8; HDR_LEN + 8 + 32 * MAX_REGIONS],
    len: usize,
}

impl Out {
    fn new(request: u32, flags: u32, payload: &[u8]) -> Out {
        let mut o = Out {
            buf: [0; HDR_LEN + 8 + 32 * MAX_REGIONS],
            len: HDR_LEN + payload.len(),
        };
        let h = Header {
            request,
            flags: flags | VERSION,
            size: payload.len() as u32,
        };
        o.buf[..HDR_LEN].copy_from_slice(&h.emit());
        o.buf[HDR_LEN..o.len].copy_from_slice(payload);
        o
    }
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    /// A reply carrying a `u64` (features, queue count, ack status).
    pub fn reply_u64(request: u32, v: u64) -> Out {
        Out::new(request, FLAG_REPLY, &v.to_le_bytes())
    }
    /// A reply carrying a vring state (`GET_VRING_BASE`).
    pub fn reply_state(request: u32, s: VringState) -> Out {
        let mut p = [0u8; 8];
        p[..4].copy_from_slice(&s.index.to_le_bytes());
        p[4..].copy_from_slice(&s.num.to_le_bytes());
        Out::new(request, FLAG_REPLY, &p)
    }
    /// A request without payload.
    pub fn request(request: u32, flags: u32) -> Out {
        Out::new(request, flags, &[])
    }
    /// A request with a `u64`.
    pub fn request_u64(request: u32, flags: u32, v: u64) -> Out {
        Out::new(request, flags, &v.to_le_bytes())
    }
    /// A request with a vring state.
    pub fn request_state(request: u32, flags: u32, s: VringState) -> Out {
        let mut o = Out::reply_state(request, s);
        o.buf[4..8].copy_from_slice(&(flags | VERSION).to_le_bytes());
        o
    }
    /// `SET_VRING_ADDR`.
    pub fn request_addr(flags: u32, a: &VringAddr) -> Out {
        let mut p = [0u8; 40];
        p[0..4].copy_from_slice(&a.index.to_le_bytes());
        p[4..8].copy_from_slice(&a.flags.to_le_bytes());
        p[8..16].copy_from_slice(&a.desc.to_le_bytes());
        p[16..24].copy_from_slice(&a.used.to_le_bytes());
        p[24..32].copy_from_slice(&a.avail.to_le_bytes());
        p[32..40].copy_from_slice(&a.log.to_le_bytes());
        Out::new(SET_VRING_ADDR, flags, &p)
    }
    /// `SET_MEM_TABLE` (at most [`MAX_REGIONS`] regions are taken).
    pub fn request_mem(flags: u32, regions: &[Region]) -> Out {
        let n = regions.len().min(MAX_REGIONS);
        let mut p = [0u8; 8 + 32 * MAX_REGIONS];
        p[0..4].copy_from_slice(&(n as u32).to_le_bytes());
        for (i, r) in regions[..n].iter().enumerate() {
            let o = 8 + 32 * i;
            p[o..o + 8].copy_from_slice(&r.guest_phys_addr.to_le_bytes());
            p[o + 8..o + 16].copy_from_slice(&r.memory_size.to_le_bytes());
            p[o + 16..o + 24].copy_from_slice(&r.userspace_addr.to_le_bytes());
            p[o + 24..o + 32].copy_from_slice(&r.mmap_offset.to_le_bytes());
        }
        Out::new(SET_MEM_TABLE, flags, &p[..8 + 32 * n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Result<(Header, Payload), Error> {
        let h = Header::parse(b)?;
        let p = parse_payload(&h, &b[HDR_LEN..])?;
        Ok((h, p))
    }

    #[test]
    fn round_trips() {
        let (h, p) = parse(Out::request(GET_FEATURES, 0).bytes()).unwrap();
        assert_eq!(
            (h.request, h.flags, h.size, p),
            (GET_FEATURES, VERSION, 0, Payload::None)
        );
        let (h, p) =
            parse(Out::request_u64(SET_FEATURES, FLAG_NEED_REPLY, 1 << 32).bytes()).unwrap();
        assert!(h.need_reply());
        assert_eq!(p, Payload::U64(1 << 32));
        let s = VringState { index: 1, num: 256 };
        let (_, p) = parse(Out::request_state(SET_VRING_NUM, 0, s).bytes()).unwrap();
        assert_eq!(p, Payload::State(s));
        let a = VringAddr {
            index: 1,
            flags: 0,
            desc: 0x1000,
            used: 0x3000,
            avail: 0x2000,
            log: 0,
        };
        let (_, p) = parse(Out::request_addr(0, &a).bytes()).unwrap();
        assert_eq!(p, Payload::Addr(a));
        let r = [
            Region {
                guest_phys_addr: 0,
                memory_size: 1 << 20,
                userspace_addr: 0x7f00_0000_0000,
                mmap_offset: 0,
            },
            Region {
                guest_phys_addr: 1 << 20,
                memory_size: 4096,
                userspace_addr: 0x7f10_0000_0000,
                mmap_offset: 4096,
            },
        ];
        let (h, p) = parse(Out::request_mem(0, &r).bytes()).unwrap();
        assert_eq!(h.size, 8 + 64);
        let Payload::Mem(t) = p else {
            panic!("not a table")
        };
        assert_eq!(t.regions(), &r);
        let rep = Out::reply_u64(GET_QUEUE_NUM, 1);
        let h = Header::parse(rep.bytes()).unwrap();
        assert_eq!(h.flags, VERSION | FLAG_REPLY);
        assert_eq!(&rep.bytes()[HDR_LEN..], &1u64.to_le_bytes());
    }

    #[test]
    fn refuses_malformed() {
        assert_eq!(Header::parse(&[1, 0, 0]), Err(Error::Short));
        let mut b = Out::request(GET_FEATURES, 0).bytes().to_vec();
        b[4] = 2;
        assert_eq!(Header::parse(&b), Err(Error::Version(2)));
        b[4] = 1;
        b[8..12].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        assert!(matches!(Header::parse(&b), Err(Error::TooLong(_))));
        // SET_FEATURES with 4 bytes
        let mut b = Out::request_u64(SET_FEATURES, 0, 1).bytes().to_vec();
        b[8] = 4;
        b.truncate(HDR_LEN + 4);
        assert!(matches!(parse(&b), Err(Error::Size { .. })));
        // payload promised, not there
        let mut b = Out::request_u64(SET_FEATURES, 0, 1).bytes().to_vec();
        b.truncate(HDR_LEN + 3);
        assert_eq!(parse(&b), Err(Error::Short));
        // memory tables: 0 regions, 9 regions, size disagreeing with the count
        let mut b = Out::request_mem(0, &[Region::default()]).bytes().to_vec();
        b[HDR_LEN] = 0;
        assert_eq!(parse(&b), Err(Error::Regions(0)));
        b[HDR_LEN] = 9;
        assert_eq!(parse(&b), Err(Error::Regions(9)));
        b[HDR_LEN] = 2;
        assert!(matches!(parse(&b), Err(Error::Size { .. })));
        // a vring address too short
        let mut b = Out::request_addr(
            0,
            &VringAddr {
                index: 0,
                flags: 0,
                desc: 0,
                used: 0,
                avail: 0,
                log: 0,
            },
        )
        .bytes()
        .to_vec();
        b[8] = 32;
        b.truncate(HDR_LEN + 32);
        assert!(matches!(parse(&b), Err(Error::Size { .. })));
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(desc_bytes(256), 4096);
        assert_eq!(avail_bytes(256), 518);
        assert_eq!(used_bytes(256), 2054);
    }
}
