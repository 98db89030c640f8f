//! memif (VPP's shared-memory packet interface) control messages and ring layout,
//! protocol version 2.0 as libmemif (`extras/libmemif/src/memif.h` in FD.io VPP) and
//! DPDK's `net_memif` (`drivers/net/memif/memif.h`) define it.
//!
//! **Control channel.** A unix `SOCK_SEQPACKET` socket carries fixed 128-byte
//! messages: a little-endian `u16` type, then the packed body of that type, zero
//! padded. File descriptors ride along as `SCM_RIGHTS` (the memory region of
//! `ADD_REGION`, the interrupt eventfd of `ADD_RING`). The exchange, one message per
//! answer:
//!
//! ```text
//! master (server, listens)            slave (client, connects)
//!   HELLO  ------------------------->
//!          <-------------------------  INIT (version, id, mode, secret, name)
//!   ACK    ------------------------->
//!          <-------------------------  ADD_REGION (index, size) + memfd   (per region)
//!   ACK    ------------------------->
//!          <-------------------------  ADD_RING (flags, index, region, offset,
//!   ACK    ------------------------->            log2 size) + eventfd  (per ring)
//!          <-------------------------  CONNECT (interface name)
//!   CONNECTED ---------------------->
//! ```
//!
//! `ADD_RING` comes once per ring: its `index` numbers the rings of one direction
//! from 0, at most the master's `HELLO` maximum of that direction (a largest index,
//! not a count; [`Hello::ring_pairs`] is what a slave asks for). Either side may
//! send `DISCONNECT` (code, reason) at any time. The slave owns the
//! shared memory: it creates the regions, lays out the rings and the buffers in them,
//! and the master maps what it is given.
//!
//! **Rings.** A ring is a header of two cache lines — `cookie` (u32 at 0, always
//! [`COOKIE`]), `flags` (u16 at 4, [`RING_FLAG_MASK_INT`]: the receiver polls, no
//! interrupt wanted), `head` (u16 at 6), `tail` (u16 at 64) — followed at 128 by
//! `2^log2` descriptors of 16 bytes: `flags` (u16, [`DESC_FLAG_NEXT`] chains the next
//! descriptor into the same packet), `region` (u16), `length` (u32), `offset` (u32,
//! into the region), `metadata` (u32). Ring C2S (client to server, the slave's
//! transmit ring) is produced by the slave (`head`) and consumed by the master
//! (`tail`); ring S2C (the slave's receive ring) has the slave post empty buffers
//! through `head` and the master return them filled through `tail`. Indices are free
//! running `u16` counters; a slot is `index & (size - 1)`.
//!
//! Nothing here uses `std`; parsing never allocates or panics on any input (the
//! `memif` fuzz target in `dataplane/fuzz` checks that).

use core::fmt;

/// Ring cookie, the first word of every ring header.
pub const COOKIE: u32 = 0x3E31F20;
/// Protocol version 2.0 (`major << 8 | minor`).
pub const VERSION: u16 = 0x0200;
/// Every control message is this long.
pub const MSG_SIZE: usize = 128;
/// Interface and application names.
pub const NAME_LEN: usize = 32;
/// The shared secret of `INIT`.
pub const SECRET_LEN: usize = 24;
/// The reason string of `DISCONNECT`.
pub const REASON_LEN: usize = 96;
/// Largest ring we accept or offer: 2^14 descriptors (DPDK's limit).
pub const MAX_LOG2_RING: u8 = 14;

/// Ring header size; descriptors start here.
pub const RING_HDR: usize = 128;
/// Ring header field offsets.
pub const RING_COOKIE: usize = 0;
pub const RING_FLAGS: usize = 4;
pub const RING_HEAD: usize = 6;
pub const RING_TAIL: usize = 64;
/// Descriptor size and field offsets.
pub const DESC_SIZE: usize = 16;
pub const DESC_FLAGS: usize = 0;
pub const DESC_REGION: usize = 2;
pub const DESC_LENGTH: usize = 4;
pub const DESC_OFFSET: usize = 8;
pub const DESC_METADATA: usize = 12;

/// Ring flag: the receiver polls and wants no interrupt.
pub const RING_FLAG_MASK_INT: u16 = 1;
/// Descriptor flag: the packet continues in the next descriptor.
pub const DESC_FLAG_NEXT: u16 = 1;
/// `ADD_RING` flag: the ring carries client-to-server (slave transmit) traffic.
pub const ADD_RING_FLAG_C2S: u16 = 1;
/// `INIT` mode: Ethernet frames (the only mode we speak).
pub const MODE_ETHERNET: u8 = 0;

/// Message types.
pub mod msg_type {
    pub const ACK: u16 = 1;
    pub const HELLO: u16 = 2;
    pub const INIT: u16 = 3;
    pub const ADD_REGION: u16 = 4;
    pub const ADD_RING: u16 = 5;
    pub const CONNECT: u16 = 6;
    pub const CONNECTED: u16 = 7;
    pub const DISCONNECT: u16 = 8;
}

/// Bytes of one ring of `2^log2` descriptors (header included).
pub const fn ring_bytes(log2: u8) -> usize {
    RING_HDR + DESC_SIZE * (1usize << log2)
}

/// `HELLO`: the master's limits (maxima are the largest *index*, not a count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub name: [u8; NAME_LEN],
    pub min_version: u16,
    pub max_version: u16,
    pub max_region: u16,
    /// Largest server-to-client ring index.
    pub max_s2c_ring: u16,
    /// Largest client-to-server ring index.
    pub max_c2s_ring: u16,
    pub max_log2_ring_size: u8,
}

impl Hello {
    /// The ring pairs a slave that wants `wanted` (at least 1) asks this master for:
    /// as many as both ring maxima allow (they are indices: `max + 1` rings), never
    /// fewer than one. Rings are numbered `0..pairs` in each direction.
    pub fn ring_pairs(&self, wanted: u16) -> u16 {
        wanted
            .min(self.max_c2s_ring.saturating_add(1))
            .min(self.max_s2c_ring.saturating_add(1))
            .max(1)
    }
}

/// `INIT`: the slave names the interface it wants.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Init {
    pub version: u16,
    pub id: u32,
    pub mode: u8,
    /// NUL-padded; never printed (the `Debug` impl hides it).
    pub secret: [u8; SECRET_LEN],
    pub name: [u8; NAME_LEN],
}

impl fmt::Debug for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Init")
            .field("version", &self.version)
            .field("id", &self.id)
            .field("mode", &self.mode)
            .field("secret", &"<hidden>")
            .field("name", &self.name)
            .finish()
    }
}

/// `ADD_RING`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddRing {
    pub flags: u16,
    pub index: u16,
    pub region: u16,
    pub offset: u32,
    pub log2_ring_size: u8,
    pub private_hdr_size: u16,
}

impl AddRing {
    /// Whether this is a client-to-server ring.
    pub fn is_c2s(&self) -> bool {
        self.flags & ADD_RING_FLAG_C2S != 0
    }
}

/// One control message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    Ack,
    Hello(Hello),
    Init(Init),
    AddRegion { index: u16, size: u64 },
    AddRing(AddRing),
    Connect { name: [u8; NAME_LEN] },
    Connected { name: [u8; NAME_LEN] },
    Disconnect { code: u32, reason: [u8; REASON_LEN] },
}

/// Why a message did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgError {
    /// Not exactly [`MSG_SIZE`] bytes.
    Length(usize),
    /// A type we do not know (0 is `NONE`, never sent).
    UnknownType(u16),
}

impl fmt::Display for MsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgError::Length(n) => write!(f, "control message of {n} bytes (expected {MSG_SIZE})"),
            MsgError::UnknownType(t) => write!(f, "unknown control message type {t}"),
        }
    }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}
fn arr<const N: usize>(b: &[u8], o: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[o..o + N]);
    a
}

// Body offsets (the body starts after the 2-byte type).
const B: usize = 2;

impl Msg {
    /// Parses one message; `b` must be exactly [`MSG_SIZE`] bytes (a seqpacket
    /// datagram of another size is malformed).
    pub fn parse(b: &[u8]) -> Result<Msg, MsgError> {
        if b.len() != MSG_SIZE {
            return Err(MsgError::Length(b.len()));
        }
        let t = u16_at(b, 0);
        Ok(match t {
            msg_type::ACK => Msg::Ack,
            msg_type::HELLO => Msg::Hello(Hello {
                name: arr(b, B),
                min_version: u16_at(b, B + 32),
                max_version: u16_at(b, B + 34),
                max_region: u16_at(b, B + 36),
                max_s2c_ring: u16_at(b, B + 38),
                max_c2s_ring: u16_at(b, B + 40),
                max_log2_ring_size: b[B + 42],
            }),
            msg_type::INIT => Msg::Init(Init {
                version: u16_at(b, B),
                id: u32_at(b, B + 2),
                mode: b[B + 6],
                secret: arr(b, B + 7),
                name: arr(b, B + 7 + SECRET_LEN),
            }),
            msg_type::ADD_REGION => Msg::AddRegion {
                index: u16_at(b, B),
                size: u64_at(b, B + 2),
            },
            msg_type::ADD_RING => Msg::AddRing(AddRing {
                flags: u16_at(b, B),
                index: u16_at(b, B + 2),
                region: u16_at(b, B + 4),
                offset: u32_at(b, B + 6),
                log2_ring_size: b[B + 10],
                private_hdr_size: u16_at(b, B + 11),
            }),
            msg_type::CONNECT => Msg::Connect { name: arr(b, B) },
            msg_type::CONNECTED => Msg::Connected { name: arr(b, B) },
            msg_type::DISCONNECT => Msg::Disconnect {
                code: u32_at(b, B),
                reason: arr(b, B + 4),
            },
            t => return Err(MsgError::UnknownType(t)),
        })
    }

    /// The wire type.
    pub fn kind(&self) -> u16 {
        match self {
            Msg::Ack => msg_type::ACK,
            Msg::Hello(_) => msg_type::HELLO,
            Msg::Init(_) => msg_type::INIT,
            Msg::AddRegion { .. } => msg_type::ADD_REGION,
            Msg::AddRing(_) => msg_type::ADD_RING,
            Msg::Connect { .. } => msg_type::CONNECT,
            Msg::Connected { .. } => msg_type::CONNECTED,
            Msg::Disconnect { .. } => msg_type::DISCONNECT,
        }
    }

    /// The message as its 128 wire bytes.
    pub fn emit(&self) -> [u8; MSG_SIZE] {
        let mut b = [0u8; MSG_SIZE];
        b[0..2].copy_from_slice(&self.kind().to_le_bytes());
        let mut put = |o: usize, v: &[u8]| b[o..o + v.len()].copy_from_slice(v);
        match self {
            Msg::Ack => {}
            Msg::Hello(h) => {
                put(B, &h.name);
                put(B + 32, &h.min_version.to_le_bytes());
                put(B + 34, &h.max_version.to_le_bytes());
                put(B + 36, &h.max_region.to_le_bytes());
                put(B + 38, &h.max_s2c_ring.to_le_bytes());
                put(B + 40, &h.max_c2s_ring.to_le_bytes());
                put(B + 42, &[h.max_log2_ring_size]);
            }
            Msg::Init(i) => {
                put(B, &i.version.to_le_bytes());
                put(B + 2, &i.id.to_le_bytes());
                put(B + 6, &[i.mode]);
                put(B + 7, &i.secret);
                put(B + 7 + SECRET_LEN, &i.name);
            }
            Msg::AddRegion { index, size } => {
                put(B, &index.to_le_bytes());
                put(B + 2, &size.to_le_bytes());
            }
            Msg::AddRing(r) => {
                put(B, &r.flags.to_le_bytes());
                put(B + 2, &r.index.to_le_bytes());
                put(B + 4, &r.region.to_le_bytes());
                put(B + 6, &r.offset.to_le_bytes());
                put(B + 10, &[r.log2_ring_size]);
                put(B + 11, &r.private_hdr_size.to_le_bytes());
            }
            Msg::Connect { name } | Msg::Connected { name } => put(B, name),
            Msg::Disconnect { code, reason } => {
                put(B, &code.to_le_bytes());
                put(B + 4, reason);
            }
        }
        b
    }
}

/// `s` as a NUL-padded fixed field (cut to `N - 1` bytes so a NUL always ends it, as
/// the C peers' `strlcpy` does).
pub fn fixed<const N: usize>(s: &str) -> [u8; N] {
    let mut a = [0u8; N];
    let n = s.len().min(N.saturating_sub(1));
    a[..n].copy_from_slice(&s.as_bytes()[..n]);
    a
}

/// The text of a NUL-padded field up to its first NUL, with bytes that are not
/// printable ASCII replaced by `?` (peer-supplied names and reasons end up in logs).
pub fn field_text(b: &[u8], out: &mut [u8]) -> usize {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let n = end.min(out.len());
    for (d, &s) in out.iter_mut().zip(&b[..n]) {
        *d = if (0x20..0x7f).contains(&s) { s } else { b'?' };
    }
    n
}

/// Entries a consumer may take: `produced - consumed` (free-running `u16` indices),
/// or `None` when the producer claims more than the ring holds (a corrupt or hostile
/// peer).
pub fn pending(produced: u16, consumed: u16, size: u16) -> Option<u16> {
    let n = produced.wrapping_sub(consumed);
    (n <= size).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(m: Msg) {
        let b = m.emit();
        assert_eq!(b.len(), MSG_SIZE);
        assert_eq!(Msg::parse(&b).unwrap(), m);
    }

    #[test]
    fn messages_roundtrip() {
        roundtrip(Msg::Ack);
        roundtrip(Msg::Hello(Hello {
            name: fixed("dataplane"),
            min_version: VERSION,
            max_version: VERSION,
            max_region: 1,
            max_s2c_ring: 0,
            max_c2s_ring: 0,
            max_log2_ring_size: 14,
        }));
        roundtrip(Msg::Init(Init {
            version: VERSION,
            id: 0xdead_beef,
            mode: MODE_ETHERNET,
            secret: fixed("s3cret"),
            name: fixed("slave"),
        }));
        roundtrip(Msg::AddRegion {
            index: 3,
            size: 0x1_0000_0001,
        });
        roundtrip(Msg::AddRing(AddRing {
            flags: ADD_RING_FLAG_C2S,
            index: 0,
            region: 0,
            offset: 0x4080,
            log2_ring_size: 10,
            private_hdr_size: 0,
        }));
        roundtrip(Msg::Connect {
            name: fixed("memif0"),
        });
        roundtrip(Msg::Connected {
            name: fixed("memif1"),
        });
        roundtrip(Msg::Disconnect {
            code: 7,
            reason: fixed("bye"),
        });
    }

    /// The byte positions of the C structs (`__attribute__((packed))` after a u16
    /// type), written out by hand.
    #[test]
    fn wire_offsets() {
        let b = Msg::Init(Init {
            version: 0x0200,
            id: 0x0403_0201,
            mode: 0,
            secret: fixed("k"),
            name: fixed("n"),
        })
        .emit();
        assert_eq!(&b[..2], &[3, 0]);
        assert_eq!(&b[2..4], &[0x00, 0x02]);
        assert_eq!(&b[4..8], &[1, 2, 3, 4]);
        assert_eq!(b[8], 0);
        assert_eq!(b[9], b'k');
        assert_eq!(b[33], b'n');
        let b = Msg::AddRing(AddRing {
            flags: 1,
            index: 2,
            region: 3,
            offset: 0x0807_0605,
            log2_ring_size: 9,
            private_hdr_size: 0x0b0a,
        })
        .emit();
        assert_eq!(
            &b[..15],
            &[5, 0, 1, 0, 2, 0, 3, 0, 5, 6, 7, 8, 9, 0x0a, 0x0b]
        );
        let b = Msg::Hello(Hello {
            name: fixed("x"),
            min_version: 0x0200,
            max_version: 0x0201,
            max_region: 5,
            max_s2c_ring: 6,
            max_c2s_ring: 7,
            max_log2_ring_size: 14,
        })
        .emit();
        assert_eq!(&b[34..45], &[0, 2, 1, 2, 5, 0, 6, 0, 7, 0, 14]);
        let b = Msg::AddRegion { index: 1, size: 2 }.emit();
        assert_eq!(&b[..12], &[4, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(ring_bytes(10), 128 + 16 * 1024);
    }

    #[test]
    fn ring_pairs_within_both_maxima() {
        let h = |c2s, s2c| Hello {
            name: fixed("m"),
            min_version: VERSION,
            max_version: VERSION,
            max_region: 0,
            max_s2c_ring: s2c,
            max_c2s_ring: c2s,
            max_log2_ring_size: 10,
        };
        assert_eq!(h(0, 0).ring_pairs(4), 1);
        assert_eq!(h(255, 255).ring_pairs(4), 4);
        assert_eq!(h(1, 3).ring_pairs(4), 2);
        assert_eq!(h(3, 2).ring_pairs(2), 2);
        assert_eq!(h(u16::MAX, u16::MAX).ring_pairs(16), 16);
        assert_eq!(h(5, 5).ring_pairs(0), 1);
    }

    #[test]
    fn malformed_messages() {
        assert_eq!(Msg::parse(&[0; 127]), Err(MsgError::Length(127)));
        assert_eq!(Msg::parse(&[0; 129]), Err(MsgError::Length(129)));
        assert_eq!(Msg::parse(&[]), Err(MsgError::Length(0)));
        assert_eq!(Msg::parse(&[0; 128]), Err(MsgError::UnknownType(0)));
        let mut b = [0u8; 128];
        b[0] = 9;
        assert_eq!(Msg::parse(&b), Err(MsgError::UnknownType(9)));
        b[0] = 0xff;
        b[1] = 0xff;
        assert_eq!(Msg::parse(&b), Err(MsgError::UnknownType(0xffff)));
    }

    #[test]
    fn names_and_secrets() {
        let f: [u8; 4] = fixed("abcdef");
        assert_eq!(&f, b"abc\0");
        let mut out = [0u8; 8];
        let n = field_text(b"a\x01b\0zz", &mut out);
        assert_eq!(&out[..n], b"a?b");
        let i = Init {
            version: VERSION,
            id: 1,
            mode: 0,
            secret: fixed("topsecret"),
            name: fixed("x"),
        };
        assert!(!alloc::format!("{i:?}").contains("topsecret"));
    }

    #[test]
    fn ring_pending() {
        assert_eq!(pending(5, 5, 8), Some(0));
        assert_eq!(pending(13, 5, 8), Some(8));
        assert_eq!(pending(14, 5, 8), None);
        // wrap-around of the free-running indices
        assert_eq!(pending(2, 65534, 8), Some(4));
        assert_eq!(pending(65534, 2, 8), None);
    }
}
