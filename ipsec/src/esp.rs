//! ESP packet processing in place (RFC 4303 §3.3 outbound, §3.4 inbound) with
//! AES-GCM (RFC 4106) and optional UDP encapsulation (RFC 3948 §2.1).
//!
//! Layout on the wire (tunnel mode, UDP encapsulation optional):
//!
//! ```text
//! | outer IP | [UDP] | SPI | Seq (low 32) | IV (8) | payload | TFC | pad | padlen | NH | ICV (16) |
//!                    |<---- ESP header ---->|        |<------------ encrypted ------------>|
//! ```
//!
//! The explicit IV is the 64-bit sequence number (RFC 4106 §3.1 allows a counter);
//! it never repeats under one key because the counter never cycles (§3.3.3). The AAD
//! is SPI ‖ Seq, or SPI ‖ Seq-high ‖ Seq-low with ESN (RFC 4106 §5). Padding makes
//! the ciphertext a multiple of 4 bytes, filled with 1, 2, 3, ... (RFC 4303 §2.4).
//!
//! Encapsulation grows the buffer at the front (headers) and back (trailer, ICV); the
//! payload is encrypted where it lies. Transport mode moves only the IP header.

use crate::buf::Buf;
use crate::crypto::{ICV_LEN, IV_LEN};
use crate::error::DropReason;
use crate::ip::{
    self, be16, be32, put, IpInfo, PROTO_ESP, PROTO_IPV4, PROTO_IPV6, PROTO_NONE, PROTO_UDP,
};
use crate::sa::{Mode, Sa};
use crate::sad::SaId;
use crate::LifetimeEvent;
use core::net::IpAddr;

/// SPI + sequence number.
pub const ESP_HDR_LEN: usize = 8;
/// ESP header + explicit IV: the bytes in front of the payload.
pub const ESP_PREFIX_LEN: usize = ESP_HDR_LEN + IV_LEN;
pub const UDP_HDR_LEN: usize = 8;
/// Smallest ESP packet: header, IV, 4 bytes of ciphertext (pad + trailer), ICV.
pub const ESP_MIN_LEN: usize = ESP_PREFIX_LEN + 4 + ICV_LEN;

/// Bytes of padding so that payload + pad + 2 is a multiple of 4.
#[inline]
pub fn pad_len(payload: usize) -> usize {
    (4 - (payload + 2) % 4) % 4
}

/// Worst-case growth of a packet under `sa` (for MTU and room planning).
pub fn overhead(sa: &Sa) -> usize {
    let outer = match sa.cfg.mode {
        Mode::Tunnel {
            src: IpAddr::V4(_), ..
        } => 20,
        Mode::Tunnel { .. } => 40,
        Mode::Transport => 0,
    };
    let udp = if sa.cfg.encap.is_some() {
        UDP_HDR_LEN
    } else {
        0
    };
    outer + udp + ESP_PREFIX_LEN + 3 + 2 + ICV_LEN
}

#[inline]
fn aad(spi: u32, seq: u64, esn: bool, out: &mut [u8; 12]) -> usize {
    out[..4].copy_from_slice(&spi.to_be_bytes());
    if esn {
        out[4..8].copy_from_slice(&((seq >> 32) as u32).to_be_bytes());
        out[8..12].copy_from_slice(&(seq as u32).to_be_bytes());
        12
    } else {
        out[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        8
    }
}

/// Writes padding and trailer into `t` (`pad` + 2 bytes).
#[inline]
fn write_trailer(t: &mut [u8], pad: usize, next_header: u8) -> Option<()> {
    for (i, b) in t.get_mut(..pad)?.iter_mut().enumerate() {
        *b = (i + 1) as u8;
    }
    put(t, pad, &[pad as u8, next_header])
}

/// Outbound processing (RFC 4303 §3.3) of the IP packet in `buf` under outbound SA
/// `sa`. On error the buffer is unchanged except when the crypto fails.
pub fn encapsulate<B: Buf + ?Sized>(
    sa: &mut Sa,
    id: SaId,
    buf: &mut B,
    now: u64,
    events: &mut impl FnMut(LifetimeEvent),
) -> Result<(), DropReason> {
    let inner = ip::parse(buf.data())?;
    encapsulate_parsed(sa, id, buf, &inner, now, events)
}

/// [`encapsulate`] for a caller that already parsed the packet's IP header.
#[inline]
pub fn encapsulate_parsed<B: Buf + ?Sized>(
    sa: &mut Sa,
    id: SaId,
    buf: &mut B,
    inner: &IpInfo,
    now: u64,
    events: &mut impl FnMut(LifetimeEvent),
) -> Result<(), DropReason> {
    sa.check_hard(id, now, events)?;
    // Trailing bytes beyond the IP length (Ethernet padding) are not part of it.
    let extra = buf.len().saturating_sub(inner.total_len);
    if extra > 0 && !buf.trim_back(extra) {
        return Err(DropReason::Malformed);
    }
    if sa.cfg.mode == Mode::Transport && inner.fragment {
        // Transport mode protects whole datagrams only (RFC 4303 §3.3.4).
        return Err(DropReason::Malformed);
    }
    let plain_len = inner.total_len;
    let seq = sa.next_seq(id, events)?;
    match sa.cfg.mode {
        Mode::Tunnel { src, dst } => encap_tunnel(sa, buf, inner, seq, src, dst)?,
        Mode::Transport => encap_transport(sa, buf, inner, seq)?,
    }
    sa.account(id, plain_len, now, events);
    Ok(())
}

fn encap_tunnel<B: Buf + ?Sized>(
    sa: &mut Sa,
    buf: &mut B,
    inner: &IpInfo,
    seq: u64,
    src: IpAddr,
    dst: IpAddr,
) -> Result<(), DropReason> {
    let nh = if inner.version == 4 {
        PROTO_IPV4
    } else {
        PROTO_IPV6
    };
    let len = buf.len();
    let tfc = sa
        .cfg
        .tfc_pad_to
        .map_or(0, |t| usize::from(t).saturating_sub(len));
    let payload = len + tfc;
    let pad = pad_len(payload);
    let tail = tfc + pad + 2 + ICV_LEN;
    let outer = if src.is_ipv4() { 20 } else { 40 };
    let udp = if sa.cfg.encap.is_some() {
        UDP_HDR_LEN
    } else {
        0
    };
    let head = outer + udp + ESP_PREFIX_LEN;
    if !buf.push_back(tail) {
        return Err(DropReason::NoRoom);
    }
    if !buf.push_front(head) {
        buf.trim_back(tail);
        return Err(DropReason::NoRoom);
    }
    let total = buf.len();
    let d = buf.data_mut();
    let esp_off = outer + udp;
    let ct_end = head + payload + pad + 2;
    {
        let t = d.get_mut(head + len..ct_end).ok_or(DropReason::NoRoom)?;
        let (tfc_bytes, trailer) = t.split_at_mut(tfc);
        tfc_bytes.fill(0);
        write_trailer(trailer, pad, nh).ok_or(DropReason::NoRoom)?;
    }
    seal(sa, d, esp_off, seq, ct_end)?;
    // Outer header (RFC 4301 §5.1.2.1): DSCP and ECN copied from the inner packet.
    write_outer(sa, d, src, dst, inner.tos, total, udp > 0)
}

fn write_outer(
    sa: &mut Sa,
    d: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    tos: u8,
    total: usize,
    udp: bool,
) -> Result<(), DropReason> {
    let proto = if udp { PROTO_UDP } else { PROTO_ESP };
    let outer = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(t)) => {
            let tl = u16::try_from(total).map_err(|_| DropReason::NoRoom)?;
            sa.ip_id = sa.ip_id.wrapping_add(1);
            let mut h = [0u8; 20];
            h[0] = 0x45;
            h[1] = tos;
            h[2..4].copy_from_slice(&tl.to_be_bytes());
            h[4..6].copy_from_slice(&sa.ip_id.to_be_bytes());
            h[8] = sa.cfg.ttl;
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&t.octets());
            let c = dataplane::proto::checksum::internet(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            put(d, 0, &h).ok_or(DropReason::NoRoom)?;
            20
        }
        (IpAddr::V6(s), IpAddr::V6(t)) => {
            let pl = u16::try_from(total - 40).map_err(|_| DropReason::NoRoom)?;
            let mut h = [0u8; 40];
            h[0] = 0x60 | (tos >> 4);
            h[1] = tos << 4;
            h[4..6].copy_from_slice(&pl.to_be_bytes());
            h[6] = proto;
            h[7] = sa.cfg.ttl;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&t.octets());
            put(d, 0, &h).ok_or(DropReason::NoRoom)?;
            40
        }
        _ => return Err(DropReason::Malformed),
    };
    if udp {
        write_udp(sa, d, outer, total, src, dst)?;
    }
    Ok(())
}

/// UDP header for RFC 3948 encapsulation. IPv4: checksum 0 (§2.1). IPv6: a real
/// checksum, since zero is not allowed there by default (RFC 8200 §8.1).
fn write_udp(
    sa: &Sa,
    d: &mut [u8],
    off: usize,
    total: usize,
    src: IpAddr,
    dst: IpAddr,
) -> Result<(), DropReason> {
    let enc = sa.cfg.encap.unwrap_or_default();
    let ulen = u16::try_from(total - off).map_err(|_| DropReason::NoRoom)?;
    let mut h = [0u8; 8];
    h[0..2].copy_from_slice(&enc.sport.to_be_bytes());
    h[2..4].copy_from_slice(&enc.dport.to_be_bytes());
    h[4..6].copy_from_slice(&ulen.to_be_bytes());
    put(d, off, &h).ok_or(DropReason::NoRoom)?;
    if let (IpAddr::V6(s), IpAddr::V6(t)) = (src, dst) {
        let seg = d.get(off..total).ok_or(DropReason::NoRoom)?;
        let c = ip::udp6_checksum(&s, &t, seg);
        put(d, off + 6, &c.to_be_bytes()).ok_or(DropReason::NoRoom)?;
    }
    Ok(())
}

/// Writes SPI, sequence number and IV at `esp_off` and encrypts up to `ct_end`, then
/// puts the ICV after it.
#[inline]
fn seal(sa: &Sa, d: &mut [u8], esp_off: usize, seq: u64, ct_end: usize) -> Result<(), DropReason> {
    let iv = seq.to_be_bytes();
    let mut hdr = [0u8; ESP_PREFIX_LEN];
    hdr[0..4].copy_from_slice(&sa.cfg.spi.to_be_bytes());
    hdr[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
    hdr[8..16].copy_from_slice(&iv);
    put(d, esp_off, &hdr).ok_or(DropReason::NoRoom)?;
    let mut a = [0u8; 12];
    let alen = aad(sa.cfg.spi, seq, sa.cfg.esn, &mut a);
    let region = d
        .get_mut(esp_off + ESP_PREFIX_LEN..ct_end + ICV_LEN)
        .ok_or(DropReason::NoRoom)?;
    let (ct, icv) = region.split_at_mut(ct_end - esp_off - ESP_PREFIX_LEN);
    let tag = sa
        .key
        .seal(&iv, a.get(..alen).unwrap_or(&[]), ct)
        .map_err(|_| DropReason::Crypto)?;
    icv.copy_from_slice(&tag);
    Ok(())
}

fn encap_transport<B: Buf + ?Sized>(
    sa: &mut Sa,
    buf: &mut B,
    inner: &IpInfo,
    seq: u64,
) -> Result<(), DropReason> {
    let hl = inner.hdr_len;
    let len = buf.len();
    let payload = len - hl;
    let pad = pad_len(payload);
    let tail = pad + 2 + ICV_LEN;
    let udp = if sa.cfg.encap.is_some() {
        UDP_HDR_LEN
    } else {
        0
    };
    let head = udp + ESP_PREFIX_LEN;
    if !buf.push_back(tail) {
        return Err(DropReason::NoRoom);
    }
    if !buf.push_front(head) {
        buf.trim_back(tail);
        return Err(DropReason::NoRoom);
    }
    let total = buf.len();
    let d = buf.data_mut();
    // Move the IP header to the new front; ESP goes between it and the payload.
    if d.len() < head + hl {
        return Err(DropReason::Malformed);
    }
    d.copy_within(head..head + hl, 0);
    let ct_end = hl + head + payload + pad + 2;
    write_trailer(
        d.get_mut(hl + head + payload..ct_end)
            .ok_or(DropReason::NoRoom)?,
        pad,
        inner.proto,
    )
    .ok_or(DropReason::NoRoom)?;
    seal(sa, d, hl + udp, seq, ct_end)?;
    let proto = if udp > 0 { PROTO_UDP } else { PROTO_ESP };
    put(d, inner.proto_off, &[proto]).ok_or(DropReason::Malformed)?;
    fix_lengths(d, inner.version, hl, total)?;
    if udp > 0 {
        write_udp(sa, d, hl, total, inner.src, inner.dst)?;
    }
    Ok(())
}

/// Sets the IP length field(s) for a packet of `total` bytes and fixes the IPv4
/// header checksum.
fn fix_lengths(d: &mut [u8], version: u8, hl: usize, total: usize) -> Result<(), DropReason> {
    if version == 4 {
        let tl = u16::try_from(total).map_err(|_| DropReason::NoRoom)?;
        put(d, 2, &tl.to_be_bytes()).ok_or(DropReason::Malformed)?;
        ip::fix_ipv4_checksum(d, hl).ok_or(DropReason::Malformed)
    } else {
        let pl = u16::try_from(total - 40).map_err(|_| DropReason::NoRoom)?;
        put(d, 4, &pl.to_be_bytes()).ok_or(DropReason::Malformed)
    }
}

/// Where the ESP header of an arriving packet is, and what it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspPacket {
    /// The outer IP header.
    pub ip: IpInfo,
    /// Offset of the SPI (after the IP header, and the UDP header if encapsulated).
    pub esp_off: usize,
    pub spi: u32,
    /// Low 32 bits of the sequence number, as on the wire.
    pub seq_lo: u32,
}

/// What an arriving IP packet is, from the ESP point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// An ESP packet (maybe inside UDP).
    Esp(EspPacket),
    /// IKE on the NAT-T port (non-ESP marker, RFC 3948 §2.2): for the control plane.
    Ike,
    /// NAT keepalive (one 0xFF byte, RFC 3948 §2.3).
    NatKeepalive,
    /// Anything else.
    Other(IpInfo),
}

/// Classifies the IP packet at the start of `d`; `natt_port` is the UDP port of
/// encapsulated ESP (4500).
pub fn classify(d: &[u8], natt_port: u16) -> Result<Class, DropReason> {
    let ip = ip::parse(d)?;
    let esp_off = match ip.proto {
        PROTO_ESP => ip.hdr_len,
        PROTO_UDP if !ip.fragment && be16(d, ip.hdr_len + 2) == Some(natt_port) => {
            let body = ip.hdr_len + UDP_HDR_LEN;
            let blen = ip.total_len.saturating_sub(body);
            if blen == 1 && d.get(body) == Some(&0xff) {
                return Ok(Class::NatKeepalive);
            }
            if blen >= 4 && be32(d, body) == Some(0) {
                return Ok(Class::Ike);
            }
            body
        }
        _ => return Ok(Class::Other(ip)),
    };
    if ip.fragment {
        // Reassembly happens before ESP (RFC 4303 §3.4.1); we do not reassemble.
        return Err(DropReason::Malformed);
    }
    let spi = be32(d, esp_off).ok_or(DropReason::Malformed)?;
    let seq_lo = be32(d, esp_off + 4).ok_or(DropReason::Malformed)?;
    Ok(Class::Esp(EspPacket {
        ip,
        esp_off,
        spi,
        seq_lo,
    }))
}

/// Inbound processing (RFC 4303 §3.4) of a packet classified as [`Class::Esp`] under
/// inbound SA `sa`: replay check, ICV, replay update, trailer checks, header removal.
/// Returns the next-header value (inner protocol). On success `buf` holds the inner
/// packet (tunnel) or the restored IP packet (transport).
pub fn decapsulate<B: Buf + ?Sized>(
    sa: &mut Sa,
    id: SaId,
    buf: &mut B,
    pkt: &EspPacket,
    now: u64,
    events: &mut impl FnMut(LifetimeEvent),
) -> Result<u8, DropReason> {
    sa.check_hard(id, now, events)?;
    let (ip, esp_off) = (&pkt.ip, pkt.esp_off);
    let total = ip.total_len;
    let esp_len = total.checked_sub(esp_off).ok_or(DropReason::Malformed)?;
    if esp_len < ESP_MIN_LEN || (esp_len - ESP_PREFIX_LEN - ICV_LEN) & 3 != 0 {
        return Err(DropReason::Malformed);
    }
    let replay = sa.replay.as_ref().ok_or(DropReason::NoSa)?;
    let seq = replay.check(pkt.seq_lo)?;
    let extra = buf.len().saturating_sub(total);
    if extra > 0 && !buf.trim_back(extra) {
        return Err(DropReason::Malformed);
    }
    let d = buf.data_mut();
    let iv: [u8; IV_LEN] = d
        .get(esp_off + ESP_HDR_LEN..esp_off + ESP_PREFIX_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(DropReason::Malformed)?;
    let mut a = [0u8; 12];
    let alen = aad(sa.cfg.spi, seq, sa.cfg.esn, &mut a);
    let region = d
        .get_mut(esp_off + ESP_PREFIX_LEN..total)
        .ok_or(DropReason::Malformed)?;
    sa.key
        .open(&iv, a.get(..alen).unwrap_or(&[]), region)
        .map_err(|_| DropReason::IcvFail)?;
    // Authenticated: now the window may move (RFC 4303 §3.4.3).
    sa.replay.as_mut().ok_or(DropReason::NoSa)?.update(seq)?;

    let ct_len = esp_len - ESP_PREFIX_LEN - ICV_LEN;
    let ct_end = esp_off + ESP_PREFIX_LEN + ct_len;
    let nh = *d.get(ct_end - 1).ok_or(DropReason::Malformed)?;
    let pad = usize::from(*d.get(ct_end - 2).ok_or(DropReason::Malformed)?);
    if pad + 2 > ct_len {
        return Err(DropReason::BadPadding);
    }
    let pad_bytes = d
        .get(ct_end - 2 - pad..ct_end - 2)
        .ok_or(DropReason::BadPadding)?;
    if pad_bytes
        .iter()
        .enumerate()
        .any(|(i, b)| usize::from(*b) != i + 1)
    {
        return Err(DropReason::BadPadding);
    }
    if nh == PROTO_NONE {
        return Err(DropReason::Dummy);
    }
    let payload = ct_len - pad - 2;
    let tail = pad + 2 + ICV_LEN;
    match sa.cfg.mode {
        Mode::Tunnel { .. } => {
            if nh != PROTO_IPV4 && nh != PROTO_IPV6 {
                return Err(DropReason::PolicyMismatch);
            }
            if !buf.pull_front(esp_off + ESP_PREFIX_LEN) || !buf.trim_back(tail) {
                return Err(DropReason::Malformed);
            }
            let inner = ip::parse(buf.data())?;
            if (inner.version == 4) != (nh == PROTO_IPV4) {
                return Err(DropReason::Malformed);
            }
            // Strip TFC padding (RFC 4303 §2.4): the inner header knows its length.
            let tfc = buf.len().saturating_sub(inner.total_len);
            if tfc > 0 && !buf.trim_back(tfc) {
                return Err(DropReason::Malformed);
            }
            sa.account(id, inner.total_len, now, events);
        }
        Mode::Transport => {
            let hl = ip.hdr_len;
            let shift = esp_off + ESP_PREFIX_LEN - hl;
            if d.len() < hl + shift {
                return Err(DropReason::Malformed);
            }
            d.copy_within(0..hl, shift);
            if !buf.pull_front(shift) || !buf.trim_back(tail) {
                return Err(DropReason::Malformed);
            }
            let new_total = hl + payload;
            let d = buf.data_mut();
            put(d, ip.proto_off, &[nh]).ok_or(DropReason::Malformed)?;
            fix_lengths(d, ip.version, hl, new_total)?;
            sa.account(id, new_total, now, events);
        }
    }
    Ok(nh)
}
