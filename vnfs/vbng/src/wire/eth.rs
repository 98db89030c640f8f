//! Ethernet II header with up to two VLAN tags (IEEE 802.1Q §9.6; TR-101 §3 access
//! models: untagged, single C-VLAN, and S-VLAN/C-VLAN "QinQ" with TPID 0x88a8, 0x8100
//! or 0x9100 for the outer tag).

use super::{be16, Error, Result};

/// EtherType of PPPoE discovery (RFC 2516 §4).
pub const ETHERTYPE_PPPOE_DISC: u16 = 0x8863;
/// EtherType of PPPoE session (RFC 2516 §5).
pub const ETHERTYPE_PPPOE_SESS: u16 = 0x8864;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// 802.1Q C-tag TPID.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad S-tag TPID.
pub const TPID_8021AD: u16 = 0x88a8;
/// Legacy QinQ TPID still seen on access networks.
pub const TPID_9100: u16 = 0x9100;

/// The VLAN tags of a frame: outer (S-VLAN) and inner (C-VLAN) VIDs; 0 = absent.
/// With one tag only, it is reported as `cvlan` (TR-101 "1:1 single tag").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Vlans {
    /// Outer VID (S-VLAN) or 0.
    pub svlan: u16,
    /// Inner VID (C-VLAN) or 0.
    pub cvlan: u16,
}

impl Vlans {
    /// Number of 4-byte tags these VLANs take on the wire.
    pub fn tag_count(&self) -> usize {
        match (self.svlan, self.cvlan) {
            (0, 0) => 0,
            (0, _) | (_, 0) => 1,
            _ => 2,
        }
    }
}

/// A parsed Ethernet header: addresses, VLANs, EtherType and where the payload starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthRepr {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// VLAN tags.
    pub vlans: Vlans,
    /// EtherType after the tags.
    pub ethertype: u16,
    /// Length of the header including tags (offset of the payload).
    pub header_len: usize,
}

fn is_tpid(t: u16) -> bool {
    t == TPID_8021Q || t == TPID_8021AD || t == TPID_9100
}

impl EthRepr {
    /// Parse the header of `frame`. More than two tags is `Malformed` (TR-101 allows two).
    pub fn parse(frame: &[u8]) -> Result<EthRepr> {
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(frame.get(0..6).ok_or(Error::Truncated)?);
        src.copy_from_slice(frame.get(6..12).ok_or(Error::Truncated)?);
        let mut off = 12;
        let mut tags = [0u16; 2];
        let mut n = 0;
        let mut et = be16(frame, off)?;
        while is_tpid(et) {
            if n == 2 {
                return Err(Error::Malformed);
            }
            tags[n] = be16(frame, off + 2)? & 0x0fff;
            n += 1;
            off += 4;
            et = be16(frame, off)?;
        }
        let vlans = match n {
            0 => Vlans::default(),
            1 => Vlans {
                svlan: 0,
                cvlan: tags[0],
            },
            _ => Vlans {
                svlan: tags[0],
                cvlan: tags[1],
            },
        };
        Ok(EthRepr {
            dst,
            src,
            vlans,
            ethertype: et,
            header_len: off + 2,
        })
    }

    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        14 + 4 * self.vlans.tag_count()
    }

    /// Write the header into the front of `buf` (S-tag TPID 0x88a8, C-tag 0x8100).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let n = self.buffer_len();
        let b = buf.get_mut(..n).ok_or(Error::NoSpace)?;
        b[0..6].copy_from_slice(&self.dst);
        b[6..12].copy_from_slice(&self.src);
        let mut off = 12;
        if self.vlans.svlan != 0 {
            b[off..off + 2].copy_from_slice(&TPID_8021AD.to_be_bytes());
            b[off + 2..off + 4].copy_from_slice(&self.vlans.svlan.to_be_bytes());
            off += 4;
        }
        if self.vlans.cvlan != 0 {
            b[off..off + 2].copy_from_slice(&TPID_8021Q.to_be_bytes());
            b[off + 2..off + 4].copy_from_slice(&self.vlans.cvlan.to_be_bytes());
            off += 4;
        }
        b[off..off + 2].copy_from_slice(&self.ethertype.to_be_bytes());
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qinq_roundtrip() {
        let r = EthRepr {
            dst: [0xff; 6],
            src: [2, 0, 0, 0, 0, 1],
            vlans: Vlans {
                svlan: 100,
                cvlan: 7,
            },
            ethertype: ETHERTYPE_PPPOE_DISC,
            header_len: 22,
        };
        let mut b = [0u8; 22];
        assert_eq!(r.emit(&mut b), Ok(22));
        assert_eq!(&b[12..16], &[0x88, 0xa8, 0x00, 100]);
        assert_eq!(&b[16..20], &[0x81, 0x00, 0x00, 7]);
        assert_eq!(EthRepr::parse(&b), Ok(r));
    }

    #[test]
    fn single_tag_and_errors() {
        let b = [
            0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x81, 0, 0x0f, 0xff, 0x88, 0x64,
        ];
        let r = EthRepr::parse(&b).unwrap();
        assert_eq!(
            r.vlans,
            Vlans {
                svlan: 0,
                cvlan: 0xfff
            }
        );
        assert_eq!(r.ethertype, ETHERTYPE_PPPOE_SESS);
        assert_eq!(EthRepr::parse(&b[..15]), Err(Error::Truncated));
        let three = [
            0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x81, 0, 0, 1, 0x81, 0, 0, 1, 0x81, 0, 0, 1, 8, 0,
        ];
        assert_eq!(EthRepr::parse(&three), Err(Error::Malformed));
    }
}
