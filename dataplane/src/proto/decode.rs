//! One-line decoding of a frame's headers for the packet trace and `show trace`
//! (like VPP's per-node trace formatters): Ethernet (IEEE 802.3), 802.1Q/802.1ad
//! tags, PPPoE discovery and session (RFC 2516 §4–5) with the PPP protocol
//! (RFC 1661 §2), ARP (RFC 826), IPv4 (RFC 791), IPv6 (RFC 8200), ICMP (RFC 792),
//! ICMPv6 (RFC 4443), UDP (RFC 768) and TCP (RFC 9293) ports and flags, ESP (RFC 4303)
//! SPI and sequence number. Never panics: a short or malformed header ends the line
//! with `truncated`. Off the packet path (formats trace records when shown).

use alloc::string::String;
use core::fmt::Write;
use core::net::{Ipv4Addr, Ipv6Addr};

fn be16(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(o)?, *b.get(o + 1)?]))
}

fn be32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(o)?,
        *b.get(o + 1)?,
        *b.get(o + 2)?,
        *b.get(o + 3)?,
    ]))
}

fn mac(s: &mut String, b: &[u8]) {
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{x:02x}");
    }
}

/// Appends a one-line summary of the frame's headers to `s`.
pub fn summary(frame: &[u8], s: &mut String) {
    if decode_eth(frame, s).is_none() {
        s.push_str(" truncated");
    }
}

fn decode_eth(f: &[u8], s: &mut String) -> Option<()> {
    let dst = f.get(0..6)?;
    let src = f.get(6..12)?;
    mac(s, src);
    s.push_str(" > ");
    mac(s, dst);
    // The engine's VLAN walker (two tags at most, like every node).
    let l2 = match super::ethernet::walk_vlans(f) {
        Ok(l2) => l2,
        Err(super::Error::Unsupported) => {
            s.push_str(" more than two VLAN tags");
            return Some(());
        }
        Err(_) => return None,
    };
    for t in l2.vlans.tags() {
        let _ = write!(s, " vlan {}", t.vid);
        if t.pcp != 0 {
            let _ = write!(s, " pcp {}", t.pcp);
        }
    }
    let p = f.get(l2.l3_offset..)?;
    match l2.ethertype.0 {
        0x0806 => arp(p, s),
        0x0800 => ip4(p, s),
        0x86dd => ip6(p, s),
        0x8863 => pppoe_disc(p, s),
        0x8864 => pppoe_sess(p, s),
        t => {
            let _ = write!(s, " ethertype 0x{t:04x}");
            Some(())
        }
    }
}

fn arp(p: &[u8], s: &mut String) -> Option<()> {
    let op = be16(p, 6)?;
    let spa = Ipv4Addr::from(be32(p, 14)?);
    let tpa = Ipv4Addr::from(be32(p, 24)?);
    match op {
        1 => write!(s, " ARP who-has {tpa} tell {spa}"),
        2 => write!(s, " ARP {spa} is-at "),
        o => write!(s, " ARP op {o} {spa} -> {tpa}"),
    }
    .ok()?;
    if op == 2 {
        mac(s, p.get(8..14)?);
    }
    Some(())
}

fn pppoe_disc(p: &[u8], s: &mut String) -> Option<()> {
    let code = *p.get(1)?;
    let sid = be16(p, 2)?;
    let name = match code {
        0x09 => "PADI",
        0x07 => "PADO",
        0x19 => "PADR",
        0x65 => "PADS",
        0xa7 => "PADT",
        _ => "code?",
    };
    let _ = write!(s, " PPPoE {name} (0x{code:02x}) session {sid}");
    Some(())
}

fn pppoe_sess(p: &[u8], s: &mut String) -> Option<()> {
    let sid = be16(p, 2)?;
    let len = be16(p, 4)?;
    let proto = be16(p, 6)?;
    let _ = write!(s, " PPPoE session {sid} len {len}");
    let q = p.get(8..)?;
    match proto {
        0x0021 => ip4(q, s),
        0x0057 => ip6(q, s),
        0xc021 => ppp_ctl(" LCP", q, s),
        0xc023 => ppp_ctl(" PAP", q, s),
        0xc223 => ppp_ctl(" CHAP", q, s),
        0x8021 => ppp_ctl(" IPCP", q, s),
        0x8057 => ppp_ctl(" IPv6CP", q, s),
        pr => {
            let _ = write!(s, " PPP proto 0x{pr:04x}");
            Some(())
        }
    }
}

fn ppp_ctl(name: &str, q: &[u8], s: &mut String) -> Option<()> {
    let _ = write!(s, "{name} code {} id {}", q.first()?, q.get(1)?);
    Some(())
}

fn ip4(p: &[u8], s: &mut String) -> Option<()> {
    let vihl = *p.first()?;
    if vihl >> 4 != 4 {
        let _ = write!(s, " IPv4? version {}", vihl >> 4);
        return Some(());
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    let tot = be16(p, 2)?;
    let frag = be16(p, 6)?;
    let ttl = *p.get(8)?;
    let proto = *p.get(9)?;
    let src = Ipv4Addr::from(be32(p, 12)?);
    let dst = Ipv4Addr::from(be32(p, 16)?);
    let _ = write!(s, " IPv4 {src} > {dst} ttl {ttl} len {tot}");
    if frag & 0x4000 != 0 {
        s.push_str(" DF");
    }
    let off = frag & 0x1fff;
    if off != 0 || frag & 0x2000 != 0 {
        let _ = write!(
            s,
            " frag off {}{}",
            off * 8,
            if frag & 0x2000 != 0 { " MF" } else { "" }
        );
        if off != 0 {
            return Some(());
        }
    }
    l4(proto, p.get(ihl..)?, s)
}

fn ip6(p: &[u8], s: &mut String) -> Option<()> {
    let v = *p.first()?;
    if v >> 4 != 6 {
        let _ = write!(s, " IPv6? version {}", v >> 4);
        return Some(());
    }
    let plen = be16(p, 4)?;
    let nh = *p.get(6)?;
    let hl = *p.get(7)?;
    let mut a = [0u8; 16];
    a.copy_from_slice(p.get(8..24)?);
    let src = Ipv6Addr::from(a);
    a.copy_from_slice(p.get(24..40)?);
    let dst = Ipv6Addr::from(a);
    let _ = write!(s, " IPv6 {src} > {dst} hlim {hl} plen {plen}");
    l4(nh, p.get(40..)?, s)
}

fn l4(proto: u8, q: &[u8], s: &mut String) -> Option<()> {
    match proto {
        1 => write!(s, " ICMP type {} code {}", q.first()?, q.get(1)?).ok(),
        58 => write!(s, " ICMPv6 type {} code {}", q.first()?, q.get(1)?).ok(),
        17 => write!(s, " UDP {} > {}", be16(q, 0)?, be16(q, 2)?).ok(),
        6 => {
            let _ = write!(s, " TCP {} > {}", be16(q, 0)?, be16(q, 2)?);
            let fl = *q.get(13)?;
            s.push_str(" [");
            for (bit, c) in [
                (0x02, 'S'),
                (0x10, '.'),
                (0x01, 'F'),
                (0x04, 'R'),
                (0x08, 'P'),
            ] {
                if fl & bit != 0 {
                    s.push(c);
                }
            }
            s.push(']');
            Some(())
        }
        50 => write!(s, " ESP spi 0x{:08x} seq {}", be32(q, 0)?, be32(q, 4)?).ok(),
        4 => {
            s.push_str(" IPIP");
            ip4(q, s)
        }
        p => write!(s, " proto {p}").ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(f: &[u8]) -> String {
        let mut s = String::new();
        summary(f, &mut s);
        s
    }

    #[test]
    fn pppoe_ipv4_udp_with_qinq() {
        let mut f = alloc::vec::Vec::new();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x07]);
        f.extend_from_slice(&[0x88, 0x64, 0x11, 0x00, 0x12, 0x34, 0x00, 30, 0x00, 0x21]);
        let mut ip = [0u8; 28];
        ip[0] = 0x45;
        ip[3] = 28;
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[100, 64, 0, 2]);
        ip[16..20].copy_from_slice(&[198, 51, 100, 9]);
        ip[20..24].copy_from_slice(&[0x30, 0x39, 0x00, 0x35]);
        f.extend_from_slice(&ip);
        let s = sum(&f);
        assert!(s.contains("vlan 100 vlan 7"), "{s}");
        assert!(s.contains("PPPoE session 4660"), "{s}");
        assert!(s.contains("IPv4 100.64.0.2 > 198.51.100.9 ttl 64"), "{s}");
        assert!(s.contains("UDP 12345 > 53"), "{s}");
        assert!(!s.contains("truncated"), "{s}");
    }

    #[test]
    fn never_panics_on_prefixes() {
        let f = [0xffu8; 80];
        for n in 0..f.len() {
            let _ = sum(&f[..n]);
        }
        let mut g = [0u8; 80];
        g[12] = 0x86;
        g[13] = 0xdd;
        g[14] = 0x60;
        for n in 0..g.len() {
            let _ = sum(&g[..n]);
        }
        assert!(sum(&g[..20]).ends_with("truncated"));
    }
}
