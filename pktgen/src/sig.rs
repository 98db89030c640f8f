//! The test signature carried at the tail of every generated frame: stream id,
//! sequence number and transmit timestamp, so a receiver counts loss, reordering,
//! duplicates and one-way latency (RFC 2544 §26.2 latency, RFC 4737 reordering,
//! RFC 5481 §4.1 loss) without parsing the headers in front of it.
//!
//! Layout (18 bytes, big endian, the last bytes of the frame before the FCS):
//!
//! | bytes | field                                    |
//! |-------|------------------------------------------|
//! | 0..2  | magic `0x50 0x47` ("PG")                 |
//! | 2..4  | stream id                                |
//! | 4..10 | sequence number (48 bits, from 0)        |
//! | 10..18| transmit time, ns of `CLOCK_MONOTONIC`   |
//!
//! At the tail the signature survives whatever a DUT does to the headers (NAT,
//! TTL, VLAN push/pop, PPPoE decapsulation), and it fits a 64-byte UDP/IPv4 frame
//! (60 data bytes − 42 header bytes = 18).

/// Signature length in bytes.
pub const SIG_LEN: usize = 18;
/// Magic bytes.
pub const MAGIC: [u8; 2] = *b"PG";
/// Sequence numbers wrap at 2^48.
pub const SEQ_MASK: u64 = (1 << 48) - 1;

/// A decoded signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    pub stream: u16,
    pub seq: u64,
    pub tx_ns: u64,
}

impl Signature {
    /// Encodes into 18 bytes.
    #[inline(always)]
    pub fn encode(&self) -> [u8; SIG_LEN] {
        let mut b = [0u8; SIG_LEN];
        b[0..2].copy_from_slice(&MAGIC);
        b[2..4].copy_from_slice(&self.stream.to_be_bytes());
        b[4..10].copy_from_slice(&(self.seq & SEQ_MASK).to_be_bytes()[2..8]);
        b[10..18].copy_from_slice(&self.tx_ns.to_be_bytes());
        b
    }

    /// Reads the signature at the tail of `frame`, if there is one.
    #[inline(always)]
    pub fn from_tail(frame: &[u8]) -> Option<Signature> {
        let start = frame.len().checked_sub(SIG_LEN)?;
        let b: &[u8; SIG_LEN] = frame.get(start..)?.try_into().ok()?;
        if b[0..2] != MAGIC {
            return None;
        }
        let mut seq = [0u8; 8];
        seq[2..8].copy_from_slice(&b[4..10]);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[10..18]);
        Some(Signature {
            stream: u16::from_be_bytes([b[2], b[3]]),
            seq: u64::from_be_bytes(seq),
            tx_ns: u64::from_be_bytes(ts),
        })
    }
}

/// Nanoseconds of `CLOCK_MONOTONIC` (shared by every process on the host, so a
/// generator and a sink in different processes or namespaces compare timestamps).
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on
    // Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_reject() {
        let s = Signature {
            stream: 7,
            seq: 0x1234_5678_9abc,
            tx_ns: 987_654_321,
        };
        let mut frame = vec![0xeeu8; 40];
        frame.extend_from_slice(&s.encode());
        assert_eq!(Signature::from_tail(&frame), Some(s));
        assert_eq!(Signature::from_tail(&frame[..10]), None);
        frame[40] = b'X';
        assert_eq!(Signature::from_tail(&frame), None);
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a && a > 0);
    }
}
