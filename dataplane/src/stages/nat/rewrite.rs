//! In-place address/port rewriting with RFC 1624 incremental checksum updates: the
//! IPv4 header checksum, the TCP/UDP checksum (pseudo-header address and port), the
//! ICMP query identifier, and for ICMP errors (RFC 5508 §4.2 REQ-3) the embedded
//! packet's address, port, IP and L4 checksums plus the outer ICMP checksum that
//! covers them. Offsets are into the packet data; every access is bounds-checked
//! (a field outside the slice is neither read nor written).

/// Reads a big-endian u16 at `o` (0 when out of range).
#[inline(always)]
pub fn rd16(b: &[u8], o: usize) -> u16 {
    match b.get(o..o + 2) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

/// Writes a big-endian u16 at `o` (nothing when out of range).
#[inline(always)]
pub fn wr16(b: &mut [u8], o: usize, v: u16) {
    if let Some(d) = b.get_mut(o..o + 2) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

#[inline(always)]
pub fn rd32(b: &[u8], o: usize) -> u32 {
    match b.get(o..o + 4) {
        Some(&[x, y, z, w]) => u32::from_be_bytes([x, y, z, w]),
        _ => 0,
    }
}

#[inline(always)]
pub fn wr32(b: &mut [u8], o: usize, v: u32) {
    if let Some(d) = b.get_mut(o..o + 4) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

#[inline(always)]
fn has(b: &[u8], o: usize, n: usize) -> bool {
    o.checked_add(n).is_some_and(|e| e <= b.len())
}

use crate::proto::checksum::{update16, update32};

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;

/// Offset of the port (or ICMP identifier) to rewrite, relative to the L4 header.
#[inline(always)]
fn port_off(proto: u8, dst: bool) -> usize {
    match proto {
        ICMP => 4,
        _ if dst => 2,
        _ => 0,
    }
}

/// Offset of the L4 checksum relative to the L4 header.
#[inline(always)]
fn csum_off(proto: u8) -> usize {
    match proto {
        TCP => 16,
        UDP => 6,
        _ => 2,
    }
}

/// Rewrites the source (`dst == false`) or destination address of the IPv4 header at
/// `l3` to `addr`, and the matching port (or the ICMP query identifier) of the L4
/// header at `l4` to `port`, updating both checksums.
#[inline(always)]
pub fn rewrite(b: &mut [u8], l3: usize, l4: usize, proto: u8, dst: bool, addr: u32, port: u16) {
    let ao = l3 + if dst { 16 } else { 12 };
    let old_addr = rd32(b, ao);
    wr32(b, ao, addr);
    let ic = rd16(b, l3 + 10);
    wr16(b, l3 + 10, update32(ic, old_addr, addr));
    let po = l4 + port_off(proto, dst);
    let old_port = rd16(b, po);
    wr16(b, po, port);
    let co = l4 + csum_off(proto);
    let c = rd16(b, co);
    match proto {
        TCP => wr16(b, co, update16(update32(c, old_addr, addr), old_port, port)),
        UDP => {
            if c != 0 {
                let n = update16(update32(c, old_addr, addr), old_port, port);
                wr16(b, co, if n == 0 { 0xffff } else { n });
            }
        }
        _ => wr16(b, co, update16(c, old_port, port)),
    }
}

/// Rewrites the address only (IPv4 header checksum; and the L4 pseudo-header part for
/// TCP/UDP when `l4` is given) — the outer header of an ICMP error.
#[inline]
pub fn rewrite_addr(b: &mut [u8], l3: usize, dst: bool, addr: u32) {
    let ao = l3 + if dst { 16 } else { 12 };
    let old = rd32(b, ao);
    wr32(b, ao, addr);
    let ic = rd16(b, l3 + 10);
    wr16(b, l3 + 10, update32(ic, old, addr));
}

/// Rewrites the embedded packet of an ICMP error: its source or destination address
/// and port (identifier for an embedded ICMP query), its IP header checksum, its L4
/// checksum when the quote holds it, and the outer ICMP checksum at `icmp_csum` for
/// every 16-bit word that changed. `il3`/`il4` are the embedded headers' offsets.
#[allow(clippy::too_many_arguments)]
pub fn rewrite_inner(
    b: &mut [u8],
    icmp_csum: usize,
    il3: usize,
    il4: usize,
    proto: u8,
    dst: bool,
    addr: u32,
    port: u16,
) {
    let mut oc = rd16(b, icmp_csum);
    // Embedded IP address and header checksum.
    let ao = il3 + if dst { 16 } else { 12 };
    if has(b, ao, 4) {
        let old = rd32(b, ao);
        wr32(b, ao, addr);
        oc = update32(oc, old, addr);
        let ic = rd16(b, il3 + 10);
        let nic = update32(ic, old, addr);
        wr16(b, il3 + 10, nic);
        oc = update16(oc, ic, nic);
        // L4 checksum (pseudo-header address part), if quoted.
        let co = il4 + csum_off(proto);
        if proto != ICMP && has(b, co, 2) {
            let c = rd16(b, co);
            if !(proto == UDP && c == 0) {
                let mut n = update32(c, old, addr);
                if proto == UDP && n == 0 {
                    n = 0xffff;
                }
                wr16(b, co, n);
                oc = update16(oc, c, n);
            }
        }
    }
    // Port / identifier and the L4 checksum again.
    let po = il4 + port_off(proto, dst);
    if has(b, po, 2) {
        let old = rd16(b, po);
        wr16(b, po, port);
        oc = update16(oc, old, port);
        let co = il4 + csum_off(proto);
        if has(b, co, 2) {
            let c = rd16(b, co);
            if !(proto == UDP && c == 0) {
                let mut n = update16(c, old, port);
                if proto == UDP && n == 0 {
                    n = 0xffff;
                }
                wr16(b, co, n);
                oc = update16(oc, c, n);
            }
        }
    }
    wr16(b, icmp_csum, oc);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::checksum;
    use etherparse::PacketBuilder;

    fn udp_pkt() -> alloc::vec::Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [192, 0, 2, 9], 64).udp(40000, 53);
        let mut v = alloc::vec::Vec::new();
        b.write(&mut v, b"hello world!").unwrap();
        v
    }

    fn l4_ok(b: &[u8]) -> bool {
        let tl = usize::from(rd16(b, 2));
        let ph = checksum::pseudo_header_v4(
            rd32(b, 12).into(),
            rd32(b, 16).into(),
            crate::proto::IpProtocol(b[9]),
            (tl - 20) as u16,
        );
        checksum::add(ph, checksum::data(&b[20..tl])) == 0xffff
    }

    #[test]
    fn udp_src_and_dst_rewrite_keep_checksums_valid() {
        let mut p = udp_pkt();
        rewrite(&mut p, 0, 20, UDP, false, 0xc633_6401, 1024);
        assert!(checksum::verify(&p[..20]));
        assert!(l4_ok(&p));
        assert_eq!(rd32(&p, 12), 0xc633_6401);
        assert_eq!(rd16(&p, 20), 1024);
        rewrite(&mut p, 0, 20, UDP, true, 0x0a00_0002, 5353);
        assert!(checksum::verify(&p[..20]));
        assert!(l4_ok(&p));
    }

    #[test]
    fn tcp_and_icmp_rewrite() {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [192, 0, 2, 9], 64).tcp(40000, 80, 7, 1000);
        let mut p = alloc::vec::Vec::new();
        b.write(&mut p, b"GET /").unwrap();
        rewrite(&mut p, 0, 20, TCP, false, 0xc633_6401, 2000);
        assert!(checksum::verify(&p[..20]));
        assert!(l4_ok(&p));
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [192, 0, 2, 9], 64).icmpv4_echo_request(77, 1);
        let mut p = alloc::vec::Vec::new();
        b.write(&mut p, b"ping").unwrap();
        rewrite(&mut p, 0, 20, ICMP, false, 0xc633_6401, 4000);
        assert!(checksum::verify(&p[..20]));
        assert!(checksum::verify(&p[20..]));
        assert_eq!(rd16(&p, 24), 4000);
    }
}
