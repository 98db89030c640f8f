//! The access-side framing of a subscriber's datagrams, one writer for every
//! direction and family: Ethernet to the subscriber's MAC from ours, its S-VLAN
//! (802.1ad, TPID 0x88A8) and C-VLAN (802.1Q, TPID 0x8100) tags when set, then
//!
//! * for a PPPoE session (session id ≠ 0): the PPPoE session header (RFC 2516 §6:
//!   ethertype 0x8864, version/type 0x11, code 0, session id, length = PPP protocol
//!   + datagram) and the PPP protocol (0x0021 IPv4, 0x0057 IPv6; RFC 1332, RFC 5072);
//! * for an IPoE session (session id 0, which RFC 2516 §4 never gives a session):
//!   the datagram's ethertype directly (0x0800, 0x86DD; RFC 894).

use dataplane::proto::ethernet::Vlans;

/// Ethernet + two VLAN tags + PPPoE + PPP protocol: the largest access header.
pub const MAX_ACCESS_HDR: usize = 14 + 8 + 8;

/// Where an access-side frame goes: the subscriber's MAC, our MAC, its VLANs and its
/// PPPoE session (0 = an IPoE session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessHdr {
    /// Subscriber MAC (Ethernet destination).
    pub dst: [u8; 6],
    /// Our access MAC (Ethernet source).
    pub src: [u8; 6],
    /// S-VLAN/C-VLAN (0 = absent).
    pub vlans: Vlans,
    /// PPPoE session id; 0 for an IPoE session.
    pub sid: u16,
}

impl AccessHdr {
    /// Header length: Ethernet, the VLAN tags and, for PPPoE, the PPPoE header (6)
    /// and the PPP protocol (2).
    #[inline(always)]
    pub fn len(&self) -> usize {
        14 + 4 * self.vlans.tag_count() + if self.sid != 0 { 8 } else { 0 }
    }

    /// Never empty (present for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Write the header for a datagram of `ip_len` bytes (`v6`: IPv6, else IPv4)
    /// into `h` (at least [`AccessHdr::len`] bytes). Returns the bytes written, or
    /// `None` when `h` is too short or the datagram too long for a PPPoE length.
    #[inline(always)]
    pub fn write(&self, h: &mut [u8], ip_len: usize, v6: bool) -> Option<usize> {
        let n = self.len();
        let h = h.get_mut(..n)?;
        h[0..6].copy_from_slice(&self.dst);
        h[6..12].copy_from_slice(&self.src);
        let mut o = 12;
        for (tpid, vid) in [(0x88a8u16, self.vlans.svlan), (0x8100, self.vlans.cvlan)] {
            if vid != 0 {
                let t = h.get_mut(o..o + 4)?;
                t[0..2].copy_from_slice(&tpid.to_be_bytes());
                t[2..4].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
                o += 4;
            }
        }
        let rest = h.get_mut(o..)?;
        if self.sid == 0 {
            let et: u16 = if v6 { 0x86dd } else { 0x0800 };
            rest.get_mut(..2)?.copy_from_slice(&et.to_be_bytes());
            return Some(n);
        }
        let plen = u16::try_from(ip_len + 2).ok()?;
        let proto: u16 = if v6 { 0x0057 } else { 0x0021 };
        let r = rest.get_mut(..10)?;
        r[0..4].copy_from_slice(&[0x88, 0x64, 0x11, 0x00]);
        r[4..6].copy_from_slice(&self.sid.to_be_bytes());
        r[6..8].copy_from_slice(&plen.to_be_bytes());
        r[8..10].copy_from_slice(&proto.to_be_bytes());
        Some(n)
    }

    /// Where the PPPoE length field sits in a written header (for fragments), or
    /// `None` for IPoE.
    pub fn pppoe_len_at(&self) -> Option<usize> {
        (self.sid != 0).then(|| 12 + 4 * self.vlans.tag_count() + 6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pppoe_and_ipoe_headers() {
        let vlans = Vlans {
            svlan: 10,
            cvlan: 20,
        };
        let h = AccessHdr {
            dst: [2, 1, 1, 1, 1, 1],
            src: [2, 0, 0, 0, 0, 0xa],
            vlans,
            sid: 0x55,
        };
        let mut b = [0u8; MAX_ACCESS_HDR];
        assert_eq!(h.write(&mut b, 100, false), Some(30));
        assert_eq!(
            &b[12..30],
            &[0x88, 0xa8, 0, 10, 0x81, 0, 0, 20, 0x88, 0x64, 0x11, 0, 0, 0x55, 0, 102, 0, 0x21]
        );
        assert_eq!(h.pppoe_len_at(), Some(26));
        assert_eq!(h.write(&mut b, 40, true), Some(30));
        assert_eq!(&b[28..30], &[0, 0x57]);
        let ipoe = AccessHdr { sid: 0, ..h };
        assert_eq!(ipoe.len(), 22);
        assert_eq!(ipoe.write(&mut b, 100, false), Some(22));
        assert_eq!(&b[12..22], &[0x88, 0xa8, 0, 10, 0x81, 0, 0, 20, 0x08, 0]);
        assert_eq!(ipoe.pppoe_len_at(), None);
        let untagged = AccessHdr {
            vlans: Vlans::NONE,
            ..ipoe
        };
        assert_eq!(untagged.write(&mut b, 40, true), Some(14));
        assert_eq!(&b[12..14], &[0x86, 0xdd]);
        // Too short a buffer, too long a datagram for PPPoE: refused, no panic.
        assert_eq!(h.write(&mut b[..20], 100, false), None);
        assert_eq!(h.write(&mut b, 70_000, false), None);
    }
}
