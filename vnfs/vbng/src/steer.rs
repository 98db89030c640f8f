//! Receive-side steering of the vBNG's ports over several workers, chosen so that
//! a subscriber's traffic arrives on the worker that owns it and is not handed
//! over (the hand-off mesh stays for what a NIC steers otherwise, counted as
//! `handed_off` by the workers).
//!
//! What a NIC is programmed with (and what the in-memory lab's "NIC" computes):
//!
//! - access port, PPPoE session stage (EtherType 0x8864, RFC 2516 §5): by the
//!   PPPoE session id ([`sid_owner`]) — a flow rule or RSS on the session id
//!   field (DPDK's `RTE_ETH_RSS_PPPOE`, the E810's PPPoE session hash), which
//!   ordinary RSS cannot do as it does not parse PPPoE;
//! - access port, untagged or VLAN-tagged IPv4 (IPoE subscribers): by the source
//!   address ([`Nat44::inside_owner`], RSS on the IPv4 source only);
//! - core port, IPv4: by the destination address (the same function, RSS on the
//!   IPv4 destination only);
//! - everything else (PPPoE discovery, ARP, IPv6): the symmetric flow hash
//!   ([`frame_queue`] over `dataplane::hash::frame_hash`).
//!
//! The control plane makes the two agree: a PPPoE session is owned by the worker
//! its session id steers to until it has an address, and its address is allocated
//! from that worker's share of the pool (the addresses `inside_owner` gives to it,
//! [`crate::fastpath::session_owner`]), so the upstream frames (by session id) and
//! the downstream ones (by address) both land on the owner, and so does its
//! CGNAT state (`nat44` owns inside addresses by the same function). An address
//! the control plane cannot choose (RADIUS Framed-IP-Address, an exhausted
//! share) keeps its owner by address: its upstream frames are then handed over.

use dataplane::batch::Out;
use dataplane::stages::nat::Nat44;

/// PPPoE session stage EtherType (RFC 2516 §4).
const ETH_PPPOE_SESSION: u16 = 0x8864;
/// IPv4 EtherType.
const ETH_IPV4: u16 = 0x0800;

/// The worker among `workers` that frames of PPPoE session `sid` are steered to.
#[inline]
pub fn sid_owner(sid: u16, workers: u16) -> u16 {
    if workers <= 1 {
        return 0;
    }
    let x = u32::from(sid) ^ (u32::from(sid) << 16);
    Out::owner_of(x.wrapping_mul(0x9e37_79b1), workers)
}

/// The worker among `workers` of an IPv4 subscriber address (the CGNAT's inside
/// owner).
#[inline]
pub fn addr_owner(ip: u32, workers: u16) -> u16 {
    if workers <= 1 {
        0
    } else {
        Nat44::inside_owner(ip, workers)
    }
}

/// The queue of a frame without a BNG rule: the symmetric flow hash.
#[inline]
pub fn frame_queue(frame: &[u8], workers: u16) -> u16 {
    if workers <= 1 {
        0
    } else {
        Out::owner_of(dataplane::hash::frame_hash(frame), workers)
    }
}

/// The EtherType after up to two VLAN tags and the payload's offset.
#[inline]
fn ether(frame: &[u8]) -> Option<(u16, usize)> {
    let l2 = dataplane::proto::ethernet::walk_vlans(frame).ok()?;
    Some((l2.ethertype.0, l2.l3_offset))
}

#[inline]
fn be32(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The worker a frame received on the access port goes to (see the module docs).
#[inline]
pub fn access_queue(frame: &[u8], workers: u16) -> u16 {
    if workers <= 1 {
        return 0;
    }
    match ether(frame) {
        Some((ETH_PPPOE_SESSION, off)) => match frame.get(off + 2..off + 4) {
            Some(&[a, b]) => sid_owner(u16::from_be_bytes([a, b]), workers),
            _ => frame_queue(frame, workers),
        },
        Some((ETH_IPV4, off)) => match be32(frame, off + 12) {
            Some(src) => addr_owner(src, workers),
            None => frame_queue(frame, workers),
        },
        _ => frame_queue(frame, workers),
    }
}

/// The worker a frame received on the core port goes to (see the module docs).
#[inline]
pub fn core_queue(frame: &[u8], workers: u16) -> u16 {
    if workers <= 1 {
        return 0;
    }
    match ether(frame) {
        Some((ETH_IPV4, off)) => match be32(frame, off + 16) {
            Some(dst) => addr_owner(dst, workers),
            None => frame_queue(frame, workers),
        },
        _ => frame_queue(frame, workers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_and_addresses_spread_over_the_workers() {
        let mut by_sid = [0u32; 2];
        for sid in 1..=0xfffeu16 {
            by_sid[usize::from(sid_owner(sid, 2))] += 1;
        }
        // Both workers get a fair share of the session ids (within 5 %).
        assert!(
            by_sid.iter().all(|&n| n > 0xffff / 2 * 95 / 100),
            "{by_sid:?}"
        );
        let mut by_addr = [0u32; 2];
        for i in 0..4096u32 {
            by_addr[usize::from(addr_owner(0x6440_0002 + i, 2))] += 1;
        }
        assert!(by_addr.iter().all(|&n| n > 2048 * 90 / 100), "{by_addr:?}");
        assert_eq!(sid_owner(7, 1), 0);
        assert_eq!(access_queue(&[0; 10], 2), frame_queue(&[0; 10], 2));
    }

    #[test]
    fn access_by_session_id_core_by_destination() {
        // QinQ PPPoE session frame of session 0x1234 carrying IPv4.
        let mut f = alloc::vec![0u8; 12];
        f.extend_from_slice(&[0x88, 0xa8, 0, 100, 0x81, 0, 0, 7, 0x88, 0x64, 0x11, 0]);
        f.extend_from_slice(&0x1234u16.to_be_bytes());
        f.extend_from_slice(&[0, 22, 0, 0x21]);
        f.extend_from_slice(&[0x45; 20]);
        for n in 2..5 {
            assert_eq!(access_queue(&f, n), sid_owner(0x1234, n));
        }
        // IPv4 from the core to 100.64.0.9 and from an IPoE subscriber 100.64.0.9.
        let mut c = alloc::vec![0u8; 12];
        c.extend_from_slice(&[8, 0, 0x45]);
        c.extend_from_slice(&[0; 11]);
        c.extend_from_slice(&[198, 51, 100, 1, 100, 64, 0, 9]);
        let ip = u32::from_be_bytes([100, 64, 0, 9]);
        for n in 2..5 {
            assert_eq!(core_queue(&c, n), addr_owner(ip, n));
        }
        c[26..30].copy_from_slice(&[100, 64, 0, 9]);
        assert_eq!(access_queue(&c, 3), addr_owner(ip, 3));
    }
}
