//! Packet builders for tests, benches and fuzzing (public so integration tests, the
//! fuzz target and the bench binary share them; not part of the data path).

use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4/UDP packet with `payload_len` bytes of pattern payload.
pub fn udp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload_len: usize) -> Vec<u8> {
    let total = 20 + 8 + payload_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0x00]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, 17, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = dataplane::proto::checksum::internet(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]); // UDP checksum optional over IPv4
    p.extend((0..payload_len).map(|i| (i * 7 + 3) as u8));
    p
}

/// An IPv6/UDP packet with `payload_len` bytes of pattern payload (valid checksum).
pub fn udp6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload_len: usize) -> Vec<u8> {
    let ulen = 8 + payload_len;
    let mut p = Vec::with_capacity(40 + ulen);
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(ulen as u16).to_be_bytes());
    p.extend_from_slice(&[17, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(ulen as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend((0..payload_len).map(|i| (i * 5 + 1) as u8));
    let c = crate::ip::udp6_checksum(&src, &dst, &p[40..]);
    p[46..48].copy_from_slice(&c.to_be_bytes());
    p
}

/// An IPv4 or IPv6 UDP packet between two addresses of the same family.
pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload_len: usize) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => udp6(s, d, sport, dport, payload_len),
        (IpAddr::V4(s), IpAddr::V4(d)) => udp4(s, d, sport, dport, payload_len),
        _ => Vec::new(),
    }
}

/// Header fields for [`esp_raw`].
#[derive(Clone, Copy, Debug)]
pub struct RawEsp {
    pub spi: u32,
    pub seq: u64,
    pub esn: bool,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub udp: bool,
}

/// An ESP packet built by hand around arbitrary `plaintext` (payload, padding and
/// trailer all chosen by the caller, so a fuzzer reaches the post-ICV checks with a
/// valid ICV). Outer IPv4 or IPv6 header from `src`/`dst`, optional UDP (4500).
pub fn esp_raw(key: &crate::crypto::GcmKey, h: &RawEsp, plaintext: &[u8]) -> Vec<u8> {
    let RawEsp {
        spi,
        seq,
        esn,
        src,
        dst,
        udp,
    } = *h;
    let mut body = plaintext.to_vec();
    let mut aad = Vec::with_capacity(12);
    aad.extend_from_slice(&spi.to_be_bytes());
    if esn {
        aad.extend_from_slice(&((seq >> 32) as u32).to_be_bytes());
    }
    aad.extend_from_slice(&(seq as u32).to_be_bytes());
    let iv = seq.to_be_bytes();
    let Ok(tag) = key.seal(&iv, &aad, &mut body) else {
        return Vec::new();
    };
    let mut esp = Vec::with_capacity(16 + body.len() + 16 + 8);
    if udp {
        let ulen = (8 + 16 + body.len() + 16) as u16;
        esp.extend_from_slice(&4500u16.to_be_bytes());
        esp.extend_from_slice(&4500u16.to_be_bytes());
        esp.extend_from_slice(&ulen.to_be_bytes());
        esp.extend_from_slice(&[0, 0]);
    }
    esp.extend_from_slice(&spi.to_be_bytes());
    esp.extend_from_slice(&(seq as u32).to_be_bytes());
    esp.extend_from_slice(&iv);
    esp.extend_from_slice(&body);
    esp.extend_from_slice(&tag);
    let proto = if udp { 17 } else { 50 };
    let mut p = Vec::with_capacity(40 + esp.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&((20 + esp.len()) as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 0, 64, proto, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&(esp.len() as u16).to_be_bytes());
            p.extend_from_slice(&[proto, 64]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        _ => return Vec::new(),
    }
    p.extend_from_slice(&esp);
    p
}
