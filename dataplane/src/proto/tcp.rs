//! TCP segments (RFC 9293 §3.1): header, flags (RFC 3168 CWR/ECE), the options walk
//! (RFC 9293 §3.2: EOL, NOP, MSS; RFC 7323 window scale and timestamps; RFC 2018
//! SACK) and MSS clamping with the RFC 1624 incremental checksum update.
//!
//! The view's buffer is the whole segment (the IP payload): TCP has no length field.

use super::bytes::{self, Field};
use super::checksum::{self, PseudoHeader};
use super::{Error, IpProtocol, Result};
use core::ops::BitOr;

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = 20;
/// Longest header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;

/// Option kinds.
pub mod kind {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

/// The eight flag bits of byte 13.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    pub const FIN: Flags = Flags(0x01);
    pub const SYN: Flags = Flags(0x02);
    pub const RST: Flags = Flags(0x04);
    pub const PSH: Flags = Flags(0x08);
    pub const ACK: Flags = Flags(0x10);
    pub const URG: Flags = Flags(0x20);
    pub const ECE: Flags = Flags(0x40);
    pub const CWR: Flags = Flags(0x80);
    pub const NONE: Flags = Flags(0);

    /// True when every bit of `other` is set.
    #[inline]
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    #[inline]
    pub const fn syn(self) -> bool {
        self.0 & 0x02 != 0
    }

    #[inline]
    pub const fn ack(self) -> bool {
        self.0 & 0x10 != 0
    }

    #[inline]
    pub const fn fin(self) -> bool {
        self.0 & 0x01 != 0
    }

    #[inline]
    pub const fn rst(self) -> bool {
        self.0 & 0x04 != 0
    }
}

impl BitOr for Flags {
    type Output = Flags;
    #[inline]
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    EndOfList,
    NoOperation,
    MaxSegmentSize(u16),
    WindowScale(u8),
    SackPermitted,
    /// The SACK blocks as raw bytes (pairs of 32-bit edges).
    Sack(&'a [u8]),
    Timestamps {
        tsval: u32,
        tsecr: u32,
    },
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

impl TcpOption<'_> {
    /// Bytes this option takes on the wire.
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::Sack(d) | TcpOption::Unknown { data: d, .. } => 2 + d.len(),
            TcpOption::Timestamps { .. } => 10,
        }
    }

    /// Writes the option at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let n = self.buffer_len();
        let out = buf.get_mut(..n).ok_or(Error::BufferTooSmall)?;
        let len = u8::try_from(n).map_err(|_| Error::Malformed)?;
        match *self {
            TcpOption::EndOfList => bytes::set_u8_at(out, 0, kind::EOL),
            TcpOption::NoOperation => bytes::set_u8_at(out, 0, kind::NOP),
            TcpOption::MaxSegmentSize(m) => {
                out.copy_from_slice(&[kind::MSS, 4, (m >> 8) as u8, m as u8]);
            }
            TcpOption::WindowScale(s) => out.copy_from_slice(&[kind::WINDOW_SCALE, 3, s]),
            TcpOption::SackPermitted => out.copy_from_slice(&[kind::SACK_PERMITTED, 2]),
            TcpOption::Sack(d) => {
                bytes::set_u8_at(out, 0, kind::SACK);
                bytes::set_u8_at(out, 1, len);
                bytes::set_bytes_at(out, 2..n, d);
            }
            TcpOption::Timestamps { tsval, tsecr } => {
                bytes::set_u8_at(out, 0, kind::TIMESTAMPS);
                bytes::set_u8_at(out, 1, 10);
                bytes::set_u32_at(out, 2..6, tsval);
                bytes::set_u32_at(out, 6..10, tsecr);
            }
            TcpOption::Unknown { kind: k, data } => {
                bytes::set_u8_at(out, 0, k);
                bytes::set_u8_at(out, 1, len);
                bytes::set_bytes_at(out, 2..n, data);
            }
        }
        Ok(n)
    }
}

/// Iterator over the options area, yielding `(offset within the options, option)`.
/// Stops after End of Option List or the first error.
#[derive(Debug, Clone)]
pub struct OptionsIter<'a> {
    data: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> OptionsIter<'a> {
    /// Iterates over a raw options area.
    pub fn new(data: &'a [u8]) -> OptionsIter<'a> {
        OptionsIter {
            data,
            pos: 0,
            done: false,
        }
    }

    fn next_inner(&mut self) -> Result<Option<(usize, TcpOption<'a>)>> {
        let at = self.pos;
        let rest = match self.data.get(at..) {
            Some(r) if !r.is_empty() => r,
            _ => return Ok(None),
        };
        let k = bytes::u8_at(rest, 0);
        match k {
            kind::EOL => {
                self.done = true;
                return Ok(Some((at, TcpOption::EndOfList)));
            }
            kind::NOP => {
                self.pos += 1;
                return Ok(Some((at, TcpOption::NoOperation)));
            }
            _ => {}
        }
        let len = usize::from(*rest.get(1).ok_or(Error::Truncated)?);
        if len < 2 {
            return Err(Error::Malformed);
        }
        let opt = rest.get(..len).ok_or(Error::Truncated)?;
        let data = bytes::slice(opt, 2..len);
        let o = match (k, len) {
            (kind::MSS, 4) => TcpOption::MaxSegmentSize(bytes::u16_at(opt, 2..4)),
            (kind::WINDOW_SCALE, 3) => TcpOption::WindowScale(bytes::u8_at(opt, 2)),
            (kind::SACK_PERMITTED, 2) => TcpOption::SackPermitted,
            (kind::SACK, l) if l >= 10 && (l - 2) % 8 == 0 => TcpOption::Sack(data),
            (kind::TIMESTAMPS, 10) => TcpOption::Timestamps {
                tsval: bytes::u32_at(opt, 2..6),
                tsecr: bytes::u32_at(opt, 6..10),
            },
            (kind::MSS | kind::WINDOW_SCALE | kind::SACK_PERMITTED | kind::SACK, _)
            | (kind::TIMESTAMPS, _) => return Err(Error::Malformed),
            _ => TcpOption::Unknown { kind: k, data },
        };
        self.pos += len;
        Ok(Some((at, o)))
    }
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = Result<(usize, TcpOption<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_inner() {
            Ok(Some(v)) => Some(Ok(v)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// A view over a TCP segment.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks (getters on a short buffer read zero).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after checking: 20 ≤ header length (`Malformed`) ≤ buffer
    /// length (`Truncated`).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len < hl {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::DST_PORT)
    }

    #[inline]
    pub fn seq_number(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::SEQ_NUM)
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes (data offset × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(bytes::u8_at(self.buffer.as_ref(), field::DATA_OFF) >> 4) * 4
    }

    #[inline]
    pub fn flags(&self) -> Flags {
        Flags(bytes::u8_at(self.buffer.as_ref(), field::FLAGS))
    }

    #[inline]
    pub fn window_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::WIN_SIZE)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::URGENT)
    }

    /// The options area.
    #[inline]
    pub fn options(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), HEADER_LEN..self.header_len())
    }

    /// Walks the options.
    #[inline]
    pub fn options_iter(&self) -> OptionsIter<'_> {
        OptionsIter::new(self.options())
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(self.header_len()..).unwrap_or(&[])
    }

    /// The MSS option value and its byte offset within the segment, if present.
    pub fn mss(&self) -> Result<Option<(u16, usize)>> {
        for o in self.options_iter() {
            if let (at, TcpOption::MaxSegmentSize(m)) = o? {
                return Ok(Some((m, HEADER_LEN + at + 2)));
            }
        }
        Ok(None)
    }

    /// Verifies the checksum over the pseudo-header and the whole buffer.
    #[inline]
    pub fn verify_checksum(&self, ph: &PseudoHeader) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u32::try_from(b.len()) else {
            return false;
        };
        checksum::add(ph.sum(IpProtocol::TCP, len), checksum::data(b)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::DST_PORT, v);
    }

    #[inline]
    pub fn set_seq_number(&mut self, v: u32) {
        bytes::set_u32_at(self.buffer.as_mut(), field::SEQ_NUM, v);
    }

    #[inline]
    pub fn set_ack_number(&mut self, v: u32) {
        bytes::set_u32_at(self.buffer.as_mut(), field::ACK_NUM, v);
    }

    /// Sets the data offset from a header length in bytes (multiple of 4, 20..=60).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let v = (((len / 4) & 0x0f) as u8) << 4;
        bytes::set_u8_at(self.buffer.as_mut(), field::DATA_OFF, v);
    }

    #[inline]
    pub fn set_flags(&mut self, f: Flags) {
        bytes::set_u8_at(self.buffer.as_mut(), field::FLAGS, f.0);
    }

    #[inline]
    pub fn set_window_len(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::WIN_SIZE, v);
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    #[inline]
    pub fn set_urgent_at(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::URGENT, v);
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        bytes::slice_mut(self.buffer.as_mut(), HEADER_LEN..hl)
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        self.buffer.as_mut().get_mut(hl..).unwrap_or(&mut [])
    }

    /// Computes and stores the checksum over the pseudo-header and the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self, ph: &PseudoHeader) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        let c = !checksum::add(ph.sum(IpProtocol::TCP, len), checksum::data(b));
        self.set_checksum(c);
    }

    /// RFC 1624 update for a 16-bit value at byte offset `at` of the segment (or of
    /// the pseudo-header when `at` is even) that changed from `old` to `new`; handles
    /// odd offsets (a value straddling two checksum words).
    #[inline]
    pub fn update_checksum16_at(&mut self, at: usize, old: u16, new: u16) {
        let (o, n) = if at & 1 == 0 {
            (old, new)
        } else {
            (old.swap_bytes(), new.swap_bytes())
        };
        let c = checksum::update16(self.checksum(), o, n);
        self.set_checksum(c);
    }

    /// Applies RFC 1624 for a 32-bit pseudo-header field (an IPv4 address under NAT).
    #[inline]
    pub fn update_checksum32(&mut self, old: u32, new: u32) {
        let c = checksum::update32(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// Rewrites the source port with an incremental checksum update (NAPT).
    #[inline]
    pub fn set_src_port_update_checksum(&mut self, v: u16) {
        let old = self.src_port();
        self.set_src_port(v);
        self.update_checksum16_at(field::SRC_PORT.start, old, v);
    }

    /// Rewrites the destination port with an incremental checksum update.
    #[inline]
    pub fn set_dst_port_update_checksum(&mut self, v: u16) {
        let old = self.dst_port();
        self.set_dst_port(v);
        self.update_checksum16_at(field::DST_PORT.start, old, v);
    }

    /// MSS clamping (RFC 4459 §3.2, RFC 6691): on a SYN whose MSS option exceeds
    /// `max`, rewrites it to `max` and updates the checksum incrementally. Returns the
    /// original MSS when it was lowered, `None` when nothing changed (not a SYN, no
    /// MSS option, already small enough). A malformed options area is an error and
    /// leaves the segment unchanged.
    pub fn clamp_mss(&mut self, max: u16) -> Result<Option<u16>> {
        if !self.flags().syn() {
            return Ok(None);
        }
        let Some((mss, at)) = self.mss()? else {
            return Ok(None);
        };
        if mss <= max {
            return Ok(None);
        }
        bytes::set_u16_at(self.buffer.as_mut(), at..at + 2, max);
        self.update_checksum16_at(at, mss, max);
        Ok(Some(mss))
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An owned TCP header with the options the stack cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: u32,
    pub ack_number: u32,
    pub flags: Flags,
    pub window_len: u16,
    pub urgent_at: u16,
    pub max_seg_size: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub timestamps: Option<(u32, u32)>,
    pub payload_len: usize,
}

impl Repr {
    /// Parses the header and options (unknown options and SACK blocks are skipped;
    /// a malformed options area is an error). Ports must be non-zero (`Malformed`).
    /// The checksum is verified separately ([`Packet::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if p.src_port() == 0 || p.dst_port() == 0 {
            return Err(Error::Malformed);
        }
        let mut r = Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq_number: p.seq_number(),
            ack_number: p.ack_number(),
            flags: p.flags(),
            window_len: p.window_len(),
            urgent_at: p.urgent_at(),
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            timestamps: None,
            payload_len: p.payload().len(),
        };
        for o in p.options_iter() {
            match o?.1 {
                TcpOption::MaxSegmentSize(m) => r.max_seg_size = Some(m),
                TcpOption::WindowScale(s) => r.window_scale = Some(s),
                TcpOption::SackPermitted => r.sack_permitted = true,
                TcpOption::Timestamps { tsval, tsecr } => r.timestamps = Some((tsval, tsecr)),
                _ => {}
            }
        }
        Ok(r)
    }

    fn options_len(&self) -> usize {
        let mut n = 0;
        if self.max_seg_size.is_some() {
            n += 4;
        }
        if self.window_scale.is_some() {
            n += 4; // NOP + WS
        }
        if self.sack_permitted {
            n += 4; // NOP NOP + SACK-permitted
        }
        if self.timestamps.is_some() {
            n += 12; // NOP NOP + TS
        }
        n
    }

    /// Header length including options (always a multiple of 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    #[inline]
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Writes header and options with a zero checksum; copy the payload in, then
    /// call [`Packet::fill_checksum`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<()> {
        let hl = self.header_len();
        if p.buffer.as_ref().len() < hl {
            return Err(Error::BufferTooSmall);
        }
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq_number(self.seq_number);
        p.set_ack_number(self.ack_number);
        p.set_header_len(hl);
        p.set_flags(self.flags);
        p.set_window_len(self.window_len);
        p.set_checksum(0);
        p.set_urgent_at(self.urgent_at);
        let mut opts = p.options_mut();
        let nop = TcpOption::NoOperation;
        if let Some(m) = self.max_seg_size {
            let n = TcpOption::MaxSegmentSize(m).emit(opts)?;
            opts = opts.get_mut(n..).ok_or(Error::BufferTooSmall)?;
        }
        if let Some(s) = self.window_scale {
            let n = nop.emit(opts)?;
            opts = opts.get_mut(n..).ok_or(Error::BufferTooSmall)?;
            let n = TcpOption::WindowScale(s).emit(opts)?;
            opts = opts.get_mut(n..).ok_or(Error::BufferTooSmall)?;
        }
        if self.sack_permitted {
            for o in [nop, nop, TcpOption::SackPermitted] {
                let n = o.emit(opts)?;
                opts = opts.get_mut(n..).ok_or(Error::BufferTooSmall)?;
            }
        }
        if let Some((tsval, tsecr)) = self.timestamps {
            for o in [nop, nop, TcpOption::Timestamps { tsval, tsecr }] {
                let n = o.emit(opts)?;
                opts = opts.get_mut(n..).ok_or(Error::BufferTooSmall)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;
    use etherparse::{PacketBuilder, TcpHeaderSlice, TcpOptionElement};

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    // A Linux-style SYN: MSS 1460, SACK-permitted, timestamps, NOP, window scale 7.
    const SYN: [u8; 40] = [
        0xc3, 0x50, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01,
        0xe2, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    fn ph() -> PseudoHeader {
        PseudoHeader::V4 { src: SRC, dst: DST }
    }

    fn syn_with_checksum() -> [u8; 40] {
        let mut b = SYN;
        Packet::new_unchecked(&mut b[..]).fill_checksum(&ph());
        b
    }

    #[test]
    fn deconstruct_syn() {
        let b = syn_with_checksum();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (50000, 80));
        assert_eq!(p.seq_number(), 0x1234_5678);
        assert_eq!(p.header_len(), 40);
        assert!(p.flags().syn() && !p.flags().ack());
        assert_eq!(p.window_len(), 64240);
        assert!(p.verify_checksum(&ph()));
        assert_eq!(p.mss().unwrap(), Some((1460, 22)));
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.max_seg_size, Some(1460));
        assert_eq!(r.window_scale, Some(7));
        assert!(r.sack_permitted);
        assert_eq!(r.timestamps, Some((123_456, 0)));
        // etherparse: same fields, same options, same checksum.
        let e = TcpHeaderSlice::from_slice(&b).unwrap();
        assert_eq!(e.sequence_number(), p.seq_number());
        assert_eq!(e.window_size(), p.window_len());
        assert!(e.syn());
        let eh = e.to_header();
        assert_eq!(
            eh.calc_checksum_ipv4_raw(SRC.octets(), DST.octets(), &[])
                .unwrap(),
            p.checksum()
        );
        let opts: alloc::vec::Vec<_> = e.options_iterator().map(|o| o.unwrap()).collect();
        assert_eq!(opts[0], TcpOptionElement::MaximumSegmentSize(1460));
        assert_eq!(opts[1], TcpOptionElement::SelectiveAcknowledgementPermitted);
        assert_eq!(opts[2], TcpOptionElement::Timestamp(123_456, 0));
        assert_eq!(opts[4], TcpOptionElement::WindowScale(7));
    }

    #[test]
    fn construct() {
        let r = Repr {
            src_port: 80,
            dst_port: 50000,
            seq_number: 1,
            ack_number: 0x1234_5679,
            flags: Flags::SYN | Flags::ACK,
            window_len: 65160,
            urgent_at: 0,
            max_seg_size: Some(1400),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some((5, 123_456)),
            payload_len: 0,
        };
        assert_eq!(r.header_len(), 44);
        let mut b = [0u8; 44];
        let mut p = Packet::new_unchecked(&mut b[..]);
        r.emit(&mut p).unwrap();
        p.fill_checksum(&PseudoHeader::V4 { src: DST, dst: SRC });
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap(), r);
        assert!(p.verify_checksum(&PseudoHeader::V4 { src: DST, dst: SRC }));
        let e = TcpHeaderSlice::from_slice(&b).unwrap();
        assert!(e.syn() && e.ack());
        assert_eq!(e.acknowledgment_number(), 0x1234_5679);
    }

    #[test]
    fn data_segment_matches_etherparse() {
        let payload = b"GET / HTTP/1.1\r\n\r\n";
        let builder = PacketBuilder::ipv4(SRC.octets(), DST.octets(), 64)
            .tcp(50000, 80, 1000, 502)
            .ack(77)
            .psh();
        let mut out = alloc::vec::Vec::new();
        builder.write(&mut out, payload).unwrap();
        let seg = &out[20..];
        let p = Packet::new_checked(seg).unwrap();
        assert!(p.verify_checksum(&ph()));
        assert_eq!(p.payload(), payload);
        assert_eq!(p.flags(), Flags::ACK | Flags::PSH);
        let r = Repr::parse(&p).unwrap();
        let mut b = alloc::vec![0u8; r.buffer_len()];
        let mut q = Packet::new_unchecked(&mut b[..]);
        r.emit(&mut q).unwrap();
        q.payload_mut().copy_from_slice(payload);
        q.fill_checksum(&ph());
        assert_eq!(&b[..], seg);
    }

    #[test]
    fn mss_clamp_incremental() {
        let mut b = syn_with_checksum();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.clamp_mss(1452).unwrap(), Some(1460));
        assert_eq!(p.mss().unwrap(), Some((1452, 22)));
        assert!(p.verify_checksum(&ph()));
        assert_eq!(p.clamp_mss(1500).unwrap(), None);
        // MSS at an odd offset (after one NOP): the value straddles checksum words.
        let mut odd = [0u8; 28];
        odd[..20].copy_from_slice(&SYN[..20]);
        odd[12] = 0x70;
        odd[20..28].copy_from_slice(&[1, 2, 4, 0x05, 0xb4, 1, 1, 0]);
        let mut p = Packet::new_checked(&mut odd[..]).unwrap();
        p.fill_checksum(&ph());
        assert_eq!(p.mss().unwrap(), Some((1460, 23)));
        assert_eq!(p.clamp_mss(1360).unwrap(), Some(1460));
        assert!(p.verify_checksum(&ph()));
        // Not a SYN: untouched.
        let mut ack = syn_with_checksum();
        ack[13] = 0x10;
        assert_eq!(
            Packet::new_checked(&mut ack[..])
                .unwrap()
                .clamp_mss(500)
                .unwrap(),
            None
        );
    }

    #[test]
    fn napt_ports_incremental() {
        let mut b = syn_with_checksum();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_src_port_update_checksum(1024);
        p.set_dst_port_update_checksum(8080);
        let new_src = Ipv4Addr::new(100, 64, 0, 9);
        p.update_checksum32(u32::from(SRC), u32::from(new_src));
        assert!(p.verify_checksum(&PseudoHeader::V4 {
            src: new_src,
            dst: DST
        }));
    }

    #[test]
    fn errors() {
        assert_eq!(
            Packet::new_checked(&SYN[..19]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            Packet::new_checked(&SYN[..39]).err(),
            Some(Error::Truncated)
        );
        let mut b = SYN;
        b[12] = 0x40;
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Error::Malformed));
        // Option length 0 and 1 are malformed; running past the header is truncated.
        let mut b = SYN;
        b[21] = 0;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Malformed));
        let mut b = SYN;
        b[38] = 30;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Truncated));
        // MSS with a wrong length.
        let mut b = SYN;
        b[21] = 3;
        b[23] = 1;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().mss(),
            Err(Error::Malformed)
        );
        // Zero port.
        let mut b = SYN;
        b[0] = 0;
        b[1] = 0;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap()),
            Err(Error::Malformed)
        );
    }
}
