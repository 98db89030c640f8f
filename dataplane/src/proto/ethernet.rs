//! Ethernet II frames (IEEE 802.3 §3.1, DIX) with IEEE 802.1Q VLAN tags and
//! IEEE 802.1ad QinQ (S-tag 0x88A8 over C-tag 0x8100; 0x9100 accepted as a legacy
//! S-tag TPID).
//!
//! [`Frame`] is the view over the untagged 14-byte header; [`walk_vlans`] follows up to
//! two tags and returns the [`VlanStack`], the inner EtherType and the L3 offset. It is
//! the one VLAN tag walker of the workspace: the classifier, the NAT, QoS and hash
//! helpers, [`Repr::parse`], the vBNG's fast path and control plane and the PPPoE
//! subscriber emulator all call it.
//! [`Repr`] carries the VLAN stack so a parse/emit round trip keeps the tags.
//! [`Vlans`] is the access line's S-VLAN/C-VLAN pair (BBF TR-101 §3 access models:
//! untagged, single C-VLAN, S-VLAN/C-VLAN "QinQ") a BNG keys subscribers by.

use super::bytes::{self, Field, Rest};
use super::{Error, EtherType, Result};
use core::fmt;

/// A 48-bit IEEE 802 MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Builds an address from a slice of exactly six bytes.
    pub fn from_bytes(b: &[u8]) -> Result<MacAddr> {
        let a: [u8; 6] = b.try_into().map_err(|_| Error::Truncated)?;
        Ok(MacAddr(a))
    }

    #[inline]
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    #[inline]
    pub fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }

    /// Group bit set (includes broadcast).
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    #[inline]
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    #[inline]
    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// The IPv6 multicast MAC for a group address (RFC 2464 §7): 33:33 + low 32 bits.
    #[inline]
    pub fn ipv6_multicast(group: &core::net::Ipv6Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// A string that is not a MAC address (see [`MacAddr`]'s `FromStr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseMacError;

impl fmt::Display for ParseMacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a MAC address (expected six hex octets: aa:bb:cc:dd:ee:ff)")
    }
}

impl core::error::Error for ParseMacError {}

/// Parses the IEEE 802 colon form `aa:bb:cc:dd:ee:ff` (the hyphen form
/// `aa-bb-cc-dd-ee-ff` too): six groups of one or two hex digits. Any address is
/// accepted, group (multicast/broadcast) and all-zero included: a caller that needs
/// a unicast address checks [`MacAddr::is_unicast`].
impl core::str::FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> core::result::Result<MacAddr, ParseMacError> {
        let mut m = [0u8; 6];
        let mut n = 0;
        for part in s.split([':', '-']) {
            let slot = m.get_mut(n).ok_or(ParseMacError)?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseMacError);
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| ParseMacError)?;
            n += 1;
        }
        if n != 6 {
            return Err(ParseMacError);
        }
        Ok(MacAddr(m))
    }
}

mod field {
    use super::{Field, Rest};
    pub const DST: Field = 0..6;
    pub const SRC: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;

    // Inside a 4-byte VLAN tag that follows a TPID.
    pub const TAG_TCI: Field = 0..2;
    pub const TAG_TYPE: Field = 2..4;
}

/// Length of the untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of one VLAN tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;
/// Most VLAN tags [`walk_vlans`] follows (QinQ).
pub const MAX_VLAN_TAGS: usize = 2;

/// A view over an Ethernet II frame (14-byte header, then payload).
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

/// The smoltcp-style name of the view.
pub type Packet<T> = Frame<T>;

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking its length: getters on a short buffer read
    /// zero. Use for emitting into a buffer of at least [`HEADER_LEN`] bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a buffer after checking it holds the 14-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let f = Frame { buffer };
        f.check_len()?;
        Ok(f)
    }

    /// Checks that the buffer holds the header.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(bytes::array_at(self.buffer.as_ref(), field::DST))
    }

    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        MacAddr(bytes::array_at(self.buffer.as_ref(), field::SRC))
    }

    /// The EtherType (or, for a tagged frame, the outer TPID).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType(bytes::u16_at(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// Everything after the 14-byte header (for a tagged frame this starts with the TCI).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(field::PAYLOAD).unwrap_or(&[])
    }

    /// Follows the VLAN tags of this frame; see [`walk_vlans`].
    #[inline]
    pub fn vlans(&self) -> Result<L2Info> {
        walk_vlans(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    #[inline]
    pub fn set_dst_addr(&mut self, a: MacAddr) {
        bytes::set_bytes_at(self.buffer.as_mut(), field::DST, &a.0);
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: MacAddr) {
        bytes::set_bytes_at(self.buffer.as_mut(), field::SRC, &a.0);
    }

    #[inline]
    pub fn set_ethertype(&mut self, t: EtherType) {
        bytes::set_u16_at(self.buffer.as_mut(), field::ETHERTYPE, t.0);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(field::PAYLOAD)
            .unwrap_or(&mut [])
    }

    /// Swaps source and destination MAC (for replies such as ARP or ICMP echo).
    #[inline]
    pub fn swap_addrs(&mut self) {
        let (d, s) = (self.dst_addr(), self.src_addr());
        self.set_dst_addr(s);
        self.set_src_addr(d);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Frame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// One 802.1Q / 802.1ad tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanTag {
    /// The TPID that announced this tag (0x8100, 0x88A8 or 0x9100).
    pub tpid: u16,
    /// Priority code point (3 bits).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier (12 bits).
    pub vid: u16,
}

impl VlanTag {
    /// A C-tag (TPID 0x8100) with priority 0.
    pub const fn c_tag(vid: u16) -> VlanTag {
        VlanTag {
            tpid: 0x8100,
            pcp: 0,
            dei: false,
            vid,
        }
    }

    /// An S-tag (TPID 0x88A8) with priority 0.
    pub const fn s_tag(vid: u16) -> VlanTag {
        VlanTag {
            tpid: 0x88A8,
            pcp: 0,
            dei: false,
            vid,
        }
    }

    /// The 16-bit tag control information.
    #[inline]
    pub const fn tci(&self) -> u16 {
        ((self.pcp as u16 & 7) << 13) | ((self.dei as u16) << 12) | (self.vid & 0x0fff)
    }

    #[inline]
    pub const fn from_tci(tpid: u16, tci: u16) -> VlanTag {
        VlanTag {
            tpid,
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }
}

/// Up to [`MAX_VLAN_TAGS`] tags, outermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanStack {
    tags: [VlanTag; MAX_VLAN_TAGS],
    len: u8,
}

impl VlanStack {
    pub const EMPTY: VlanStack = VlanStack {
        tags: [VlanTag {
            tpid: 0,
            pcp: 0,
            dei: false,
            vid: 0,
        }; 2],
        len: 0,
    };

    /// A stack from outermost to innermost tag; more than two tags is `Unsupported`.
    pub fn from_tags(tags: &[VlanTag]) -> Result<VlanStack> {
        let mut s = VlanStack::EMPTY;
        for t in tags {
            s.push(*t)?;
        }
        Ok(s)
    }

    /// Appends an inner tag.
    #[inline]
    pub fn push(&mut self, tag: VlanTag) -> Result<()> {
        match self.tags.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = tag;
                self.len += 1;
                Ok(())
            }
            None => Err(Error::Unsupported),
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tags, outermost first.
    #[inline]
    pub fn tags(&self) -> &[VlanTag] {
        self.tags.get(..self.len()).unwrap_or(&[])
    }

    /// Outermost tag (the S-tag of a QinQ frame).
    #[inline]
    pub fn outer(&self) -> Option<&VlanTag> {
        self.tags().first()
    }

    /// Innermost tag (the C-tag of a QinQ frame).
    #[inline]
    pub fn inner(&self) -> Option<&VlanTag> {
        self.tags().last()
    }
}

/// The VLAN identifiers of an access line (BBF TR-101 §3): outer S-VLAN and inner
/// C-VLAN VIDs, 0 = absent. A single tag (of any TPID) reads as `cvlan` (TR-101 "1:1
/// single tag"); a priority tag (VID 0) reads as absent. The compact form of a
/// [`VlanStack`] that a BNG keys subscriber lines by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Vlans {
    /// Outer VID (S-VLAN) or 0.
    pub svlan: u16,
    /// Inner VID (C-VLAN) or 0.
    pub cvlan: u16,
}

impl Vlans {
    /// Untagged.
    pub const NONE: Vlans = Vlans { svlan: 0, cvlan: 0 };

    /// Number of 4-byte tags these VLANs take on the wire.
    #[inline]
    pub const fn tag_count(&self) -> usize {
        (self.svlan != 0) as usize + (self.cvlan != 0) as usize
    }

    /// The VIDs of a walked tag stack: two tags are S-VLAN/C-VLAN, one tag is the
    /// C-VLAN.
    #[inline]
    pub fn from_stack(stack: &VlanStack) -> Vlans {
        match stack.tags() {
            [] => Vlans::NONE,
            [c] => Vlans {
                svlan: 0,
                cvlan: c.vid,
            },
            [s, c, ..] => Vlans {
                svlan: s.vid,
                cvlan: c.vid,
            },
        }
    }

    /// The tags to emit: an 802.1ad S-tag (TPID 0x88A8) for a non-zero `svlan`, then an
    /// 802.1Q C-tag (TPID 0x8100) for a non-zero `cvlan`, priority 0.
    #[inline]
    pub fn to_stack(&self) -> VlanStack {
        let mut s = VlanStack::EMPTY;
        for t in [VlanTag::s_tag(self.svlan), VlanTag::c_tag(self.cvlan)] {
            if t.vid != 0 {
                if let Some(slot) = s.tags.get_mut(usize::from(s.len)) {
                    *slot = t;
                    s.len += 1;
                }
            }
        }
        s
    }
}

impl From<VlanStack> for Vlans {
    #[inline]
    fn from(s: VlanStack) -> Vlans {
        Vlans::from_stack(&s)
    }
}

impl From<Vlans> for VlanStack {
    #[inline]
    fn from(v: Vlans) -> VlanStack {
        v.to_stack()
    }
}

/// The result of walking the L2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Info {
    pub vlans: VlanStack,
    /// The EtherType after the last tag.
    pub ethertype: EtherType,
    /// Offset of the L3 header from the start of the frame.
    pub l3_offset: usize,
}

/// The VLAN tag walker (the only one in the workspace): follows up to two tags
/// (802.1Q 0x8100, 802.1ad 0x88A8, legacy 0x9100) from the outer EtherType, calling
/// `on_tag(index, tpid, tci)` for each, outermost first, and returns the inner
/// EtherType and the L3 offset. A third tag is `Unsupported`; a tag cut short or a
/// frame shorter than the Ethernet header is `Truncated`. Callers that need only the
/// VLAN IDs (the vBNG's PPPoE input, per packet) collect them in the callback;
/// [`walk_vlans`] builds the full [`VlanStack`].
#[inline(always)]
pub fn walk_tags(
    frame: &[u8],
    mut on_tag: impl FnMut(usize, u16, u16),
) -> Result<(EtherType, usize)> {
    if frame.len() < HEADER_LEN {
        return Err(Error::Truncated);
    }
    let mut ethertype = EtherType(bytes::u16_at(frame, field::ETHERTYPE));
    let mut off = HEADER_LEN;
    let mut n = 0;
    while ethertype.is_vlan_tpid() {
        if n == MAX_VLAN_TAGS {
            return Err(Error::Unsupported);
        }
        let tag = frame.get(off..off + VLAN_TAG_LEN).ok_or(Error::Truncated)?;
        on_tag(n, ethertype.0, bytes::u16_at(tag, field::TAG_TCI));
        ethertype = EtherType(bytes::u16_at(tag, field::TAG_TYPE));
        off += VLAN_TAG_LEN;
        n += 1;
    }
    Ok((ethertype, off))
}

/// [`walk_tags`] collecting the tag stack: the tags, the inner EtherType and the L3
/// offset.
#[inline]
pub fn walk_vlans(frame: &[u8]) -> Result<L2Info> {
    let mut vlans = VlanStack::EMPTY;
    let (ethertype, l3_offset) = walk_tags(frame, |_, tpid, tci| {
        // At most MAX_VLAN_TAGS calls: the stack has room for each.
        let _ = vlans.push(VlanTag::from_tci(tpid, tci));
    })?;
    Ok(L2Info {
        vlans,
        ethertype,
        l3_offset,
    })
}

/// An owned Ethernet header with its VLAN stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_addr: MacAddr,
    pub dst_addr: MacAddr,
    pub vlans: VlanStack,
    /// The EtherType of the payload (after the tags).
    pub ethertype: EtherType,
}

impl Repr {
    /// Parses the header and up to two VLAN tags.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr> {
        let l2 = walk_vlans(frame.buffer.as_ref())?;
        Ok(Repr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlans: l2.vlans,
            ethertype: l2.ethertype,
        })
    }

    /// Header length including tags (the L3 offset).
    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + VLAN_TAG_LEN * self.vlans.len()
    }

    /// Writes the header and tags into the start of the frame.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) -> Result<()> {
        let need = self.buffer_len();
        let buf = frame.buffer.as_mut();
        if buf.len() < need {
            return Err(Error::BufferTooSmall);
        }
        bytes::set_bytes_at(buf, field::DST, &self.dst_addr.0);
        bytes::set_bytes_at(buf, field::SRC, &self.src_addr.0);
        let mut type_at = field::ETHERTYPE;
        for tag in self.vlans.tags() {
            bytes::set_u16_at(buf, type_at.clone(), tag.tpid);
            bytes::set_u16_at(buf, type_at.end..type_at.end + 2, tag.tci());
            type_at = type_at.start + VLAN_TAG_LEN..type_at.end + VLAN_TAG_LEN;
        }
        bytes::set_u16_at(buf, type_at, self.ethertype.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{DoubleVlanHeaderSlice, Ethernet2HeaderSlice};

    #[test]
    fn mac_from_str_and_display_round_trip() {
        let m: MacAddr = "02:00:00:AA:bb:0c".parse().unwrap();
        assert_eq!(m, MacAddr([2, 0, 0, 0xaa, 0xbb, 0x0c]));
        assert_eq!(alloc::format!("{m}"), "02:00:00:aa:bb:0c");
        assert_eq!("2-0-0-aa-bb-c".parse::<MacAddr>(), Ok(m));
        // group addresses parse; refusing them is the caller's choice
        let b: MacAddr = "ff:ff:ff:ff:ff:ff".parse().unwrap();
        assert!(b.is_broadcast() && b.is_multicast());
        assert!("01:00:5e:00:00:01"
            .parse::<MacAddr>()
            .unwrap()
            .is_multicast());
        for bad in [
            "",
            "02:00:00:aa:bb",
            "02:00:00:aa:bb:cc:dd",
            "zz:00:00:aa:bb:cc",
            "02:00:00:aa:bb:+c",
            "002:00:00:aa:bb:cc",
            "02::00:aa:bb:cc",
            "02:00:00:aa:bb:cc:",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(ParseMacError), "{bad:?}");
        }
    }

    // A captured-looking ARP request frame header (broadcast) + 28-byte ARP body.
    const ARP_FRAME: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02,
    ];

    // QinQ: S-tag 0x88a8 vid 100 pcp 5, C-tag 0x8100 vid 200, IPv4 (first bytes).
    const QINQ_FRAME: [u8; 26] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0x88, 0xa8, 0xa0,
        0x64, 0x81, 0x00, 0x00, 0xc8, 0x08, 0x00, 0x45, 0x00, 0x00, 0x14,
    ];

    #[test]
    fn deconstruct_untagged() {
        let f = Frame::new_checked(&ARP_FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(f.src_addr(), MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        assert_eq!(f.ethertype(), EtherType::ARP);
        assert_eq!(f.payload().len(), 28);
        let e = Ethernet2HeaderSlice::from_slice(&ARP_FRAME).unwrap();
        assert_eq!(e.destination(), f.dst_addr().0);
        assert_eq!(e.source(), f.src_addr().0);
        assert_eq!(e.ether_type().0, f.ethertype().0);
        let l2 = f.vlans().unwrap();
        assert!(l2.vlans.is_empty());
        assert_eq!(l2.l3_offset, 14);
    }

    #[test]
    fn construct_untagged() {
        let r = Repr {
            src_addr: MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            dst_addr: MacAddr::BROADCAST,
            vlans: VlanStack::EMPTY,
            ethertype: EtherType::ARP,
        };
        let mut buf = [0u8; 14];
        r.emit(&mut Frame::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(buf, ARP_FRAME[..14]);
        assert_eq!(
            Repr::parse(&Frame::new_checked(&buf[..]).unwrap()).unwrap(),
            r
        );
    }

    #[test]
    fn qinq_walk_and_emit() {
        let l2 = walk_vlans(&QINQ_FRAME).unwrap();
        assert_eq!(l2.ethertype, EtherType::IPV4);
        assert_eq!(l2.l3_offset, 22);
        assert_eq!(l2.vlans.len(), 2);
        let outer = l2.vlans.outer().unwrap();
        assert_eq!(
            (outer.tpid, outer.pcp, outer.dei, outer.vid),
            (0x88a8, 5, false, 100)
        );
        assert_eq!(l2.vlans.inner().unwrap().vid, 200);
        // etherparse agrees on the tags.
        let d = DoubleVlanHeaderSlice::from_slice(&QINQ_FRAME[14..]).unwrap();
        assert_eq!(d.outer().vlan_identifier().value(), 100);
        assert_eq!(d.outer().priority_code_point().value(), 5);
        assert_eq!(d.inner().vlan_identifier().value(), 200);
        assert_eq!(d.inner().ether_type().0, 0x0800);
        let r = Repr::parse(&Frame::new_checked(&QINQ_FRAME[..]).unwrap()).unwrap();
        assert_eq!(r.buffer_len(), 22);
        let mut out = [0u8; 22];
        r.emit(&mut Frame::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, QINQ_FRAME[..22]);
    }

    #[test]
    fn vlan_errors() {
        // Three tags: unsupported.
        let mut three = [0u8; 30];
        three[12..14].copy_from_slice(&[0x88, 0xa8]);
        three[16..18].copy_from_slice(&[0x81, 0x00]);
        three[20..22].copy_from_slice(&[0x81, 0x00]);
        three[24..26].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(walk_vlans(&three), Err(Error::Unsupported));
        // Tag cut short.
        assert_eq!(walk_vlans(&QINQ_FRAME[..17]), Err(Error::Truncated));
        assert_eq!(walk_vlans(&QINQ_FRAME[..13]), Err(Error::Truncated));
        assert!(Frame::new_checked(&QINQ_FRAME[..13]).is_err());
        // Emitting into a short buffer.
        let r = Repr::parse(&Frame::new_checked(&QINQ_FRAME[..]).unwrap()).unwrap();
        let mut small = [0u8; 20];
        assert_eq!(
            r.emit(&mut Frame::new_unchecked(&mut small[..])),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn access_vlans_qinq_round_trip() {
        let r = Repr {
            dst_addr: MacAddr::BROADCAST,
            src_addr: MacAddr([2, 0, 0, 0, 0, 1]),
            vlans: Vlans {
                svlan: 100,
                cvlan: 7,
            }
            .to_stack(),
            ethertype: EtherType::PPPOE_DISCOVERY,
        };
        let mut b = [0u8; 22];
        assert_eq!(r.buffer_len(), 22);
        r.emit(&mut Frame::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(&b[12..16], &[0x88, 0xa8, 0x00, 100]);
        assert_eq!(&b[16..20], &[0x81, 0x00, 0x00, 7]);
        assert_eq!(&b[20..22], &[0x88, 0x63]);
        let back = Repr::parse(&Frame::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            Vlans::from(back.vlans),
            Vlans {
                svlan: 100,
                cvlan: 7
            }
        );
        // S-VLAN only: one S-tag on the wire, read back as the single (C-)VLAN.
        let s_only = Vlans { svlan: 5, cvlan: 0 };
        assert_eq!(s_only.tag_count(), 1);
        assert_eq!(s_only.to_stack().tags(), &[VlanTag::s_tag(5)]);
        assert_eq!(Vlans::NONE.to_stack(), VlanStack::EMPTY);
        assert_eq!(Vlans::NONE.tag_count(), 0);
    }

    #[test]
    fn access_vlans_single_tag_and_errors() {
        let b = [
            0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x81, 0, 0x0f, 0xff, 0x88, 0x64,
        ];
        let l2 = walk_vlans(&b).unwrap();
        assert_eq!(
            Vlans::from(l2.vlans),
            Vlans {
                svlan: 0,
                cvlan: 0xfff
            }
        );
        assert_eq!(l2.ethertype, EtherType::PPPOE_SESSION);
        assert_eq!(l2.l3_offset, 18);
        assert_eq!(walk_vlans(&b[..15]), Err(Error::Truncated));
        let three = [
            0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x81, 0, 0, 1, 0x81, 0, 0, 1, 0x81, 0, 0, 1, 8, 0,
        ];
        assert_eq!(walk_vlans(&three), Err(Error::Unsupported));
        // A priority tag (VID 0) is walked but names no VLAN.
        let prio = [
            0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x81, 0, 0xa0, 0, 0x88, 0x64,
        ];
        let l2 = walk_vlans(&prio).unwrap();
        assert_eq!((l2.vlans.len(), l2.l3_offset), (1, 18));
        assert_eq!(Vlans::from(l2.vlans), Vlans::NONE);
    }

    #[test]
    fn mac_helpers() {
        let m = MacAddr::ipv6_multicast(&"ff02::1:ff00:2".parse().unwrap());
        assert_eq!(m, MacAddr([0x33, 0x33, 0xff, 0x00, 0x00, 0x02]));
        assert!(m.is_multicast());
        assert_eq!(alloc::format!("{m}"), "33:33:ff:00:00:02");
        let mut buf = ARP_FRAME;
        let mut f = Frame::new_checked(&mut buf[..]).unwrap();
        f.swap_addrs();
        assert_eq!(f.src_addr(), MacAddr::BROADCAST);
    }
}
