//! The IPsec gateway's control plane (feature `std`): the IKE daemon
//! (`ipsec::ike::daemon`, RFC 7296) fed from the worker's punt ring and answering
//! through its inject ring, on a thread of its own.
//!
//! `esp-decrypt` punts IKE (UDP 500, and UDP 4500 with the non-ESP marker, RFC 3948
//! §2.2) and NAT keepalives addressed to the router; this thread parses the
//! Ethernet/IPv4/UDP frames into datagrams for the daemon and builds frames for the
//! daemon's replies: the next hop comes from the router's FIB and the MAC from the
//! neighbour table, else from the last frame received from that peer; with neither,
//! an ARP request (RFC 826) goes out and the datagram is dropped (the session
//! retransmits requests, RFC 7296 §2.1). SAs reach the worker's `esp-*` stages
//! through their update queues ([`ipsec::ike::daemon::StageSink`]). IPv4 only.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use dataplane::buf::PoolCache;
use dataplane::stages::l3::{AdjKind, L3};
use dataplane::stages::neigh::key_v4;
use dataplane::worker::PktRing;
use ipsec::ike::daemon::{Daemon, Datagram};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counters of the punt/inject path (besides the daemon's own metrics).
#[derive(Default)]
pub struct IoStats {
    /// Punted frames that were not IPv4/UDP IKE for us (freed).
    pub punt_other: AtomicU64,
    /// Datagrams dropped for want of a next-hop MAC (an ARP request went out).
    pub no_neighbor: AtomicU64,
    /// Frames the inject ring or the pool could not take.
    pub inject_failed: AtomicU64,
}

impl IoStats {
    pub fn prometheus(&self) -> String {
        let mut s = String::new();
        for (n, h, a) in [
            (
                "ike_punt_other_total",
                "punted frames that were not IKE for us",
                &self.punt_other,
            ),
            (
                "ike_no_neighbor_total",
                "IKE datagrams dropped while the next hop's MAC was unknown (ARP sent)",
                &self.no_neighbor,
            ),
            (
                "ike_inject_failed_total",
                "IKE frames the inject ring or the buffer pool could not take",
                &self.inject_failed,
            ),
        ] {
            s.push_str(&format!(
                "# HELP {n} {h}\n# TYPE {n} counter\n{n} {}\n",
                a.load(Ordering::Relaxed)
            ));
        }
        s
    }
}

/// A punted Ethernet frame as a datagram for the daemon: (arrival port, sender
/// MAC, datagram). `None` unless IPv4/UDP (no VLAN tag, not a fragment) to port 500
/// or 4500.
pub fn parse_frame(port: u16, f: &[u8]) -> Option<(u16, [u8; 6], Datagram)> {
    if f.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = f.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || ihl < 20 || *ip.get(9)? != 17 {
        return None;
    }
    // fragments: MF set or an offset
    if u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x3fff != 0 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let ip = ip.get(..total)?;
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(12..16)?).ok()?);
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(16..20)?).ok()?);
    let udp = ip.get(ihl..)?;
    let sport = u16::from_be_bytes([*udp.first()?, *udp.get(1)?]);
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let ulen = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    if dport != 500 && dport != 4500 {
        return None;
    }
    let data = udp.get(8..ulen.max(8))?.to_vec();
    let mac = <[u8; 6]>::try_from(f.get(6..12)?).ok()?;
    Some((
        port,
        mac,
        Datagram {
            local: SocketAddr::new(IpAddr::V4(dst), dport),
            peer: SocketAddr::new(IpAddr::V4(src), sport),
            data,
        },
    ))
}

/// An Ethernet/IPv4/UDP frame (UDP checksum 0, allowed for IPv4, RFC 768).
pub fn udp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], d: &Datagram) -> Option<Vec<u8>> {
    let (IpAddr::V4(s), IpAddr::V4(t)) = (d.local.ip(), d.peer.ip()) else {
        return None;
    };
    let total = 20 + 8 + d.data.len();
    let total16 = u16::try_from(total).ok()?;
    let mut f = Vec::with_capacity(14 + total);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    f.extend_from_slice(&total16.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&t.octets());
    let c = dataplane::proto::checksum::internet(f.get(14..34)?);
    f.get_mut(24..26)?.copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&d.local.port().to_be_bytes());
    f.extend_from_slice(&d.peer.port().to_be_bytes());
    f.extend_from_slice(&((8 + d.data.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&d.data);
    Some(f)
}

/// An ARP request (RFC 826) for `target` from `ip`/`mac`.
pub fn arp_request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// A port and the next-hop address on it.
type Hop = (u16, Ipv4Addr);

/// The punt/inject side of the daemon.
pub struct Io {
    l3: Arc<L3>,
    macs: Vec<[u8; 6]>,
    punt: PktRing,
    inject: PktRing,
    cache: PoolCache,
    /// Peer address → (port, MAC) of the last frame from it.
    learned: HashMap<Ipv4Addr, (u16, [u8; 6])>,
    pub stats: Arc<IoStats>,
}

impl Io {
    pub fn new(
        l3: Arc<L3>,
        macs: Vec<[u8; 6]>,
        punt: PktRing,
        inject: PktRing,
        cache: PoolCache,
    ) -> Io {
        Io {
            l3,
            macs,
            punt,
            inject,
            cache,
            learned: HashMap::new(),
            stats: Arc::new(IoStats::default()),
        }
    }

    /// Hands every punted frame to the daemon; returns how many there were.
    pub fn receive(&mut self, d: &mut Daemon, now: u64) -> usize {
        let mut n = 0;
        while let Some(p) = self.punt.pop() {
            n += 1;
            match parse_frame(p.meta.port, p.data()) {
                Some((port, mac, g)) => {
                    if let IpAddr::V4(a) = g.peer.ip() {
                        self.learned.insert(a, (port, mac));
                    }
                    d.handle(&g, now);
                }
                None => {
                    self.stats.punt_other.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.cache.free(p);
        }
        n
    }

    /// The port and MAC to reach `peer` (FIB + neighbour table, else learned); when
    /// unknown, the port and next-hop address to ask for (if routed).
    fn next_hop(&mut self, peer: Ipv4Addr) -> Result<(u16, [u8; 6]), Option<Hop>> {
        let route = self
            .l3
            .fib4
            .lookup(u32::from(peer))
            .and_then(|nh| self.l3.adj(nh).copied());
        let hop = route.and_then(|a| match a.kind {
            AdjKind::Glean => Some((a.port, peer)),
            AdjKind::Via4(gw) => Some((a.port, gw)),
            _ => None,
        });
        if let Some((port, gw)) = hop {
            if let Some(mac) = self.l3.neigh.lookup(key_v4(gw)) {
                return Ok((port, mac));
            }
        }
        match self.learned.get(&peer) {
            Some(x) => Ok(*x),
            None => Err(hop),
        }
    }

    fn inject_frame(&mut self, port: u16, f: &[u8]) {
        let ok = match self.cache.alloc() {
            Some(mut p) => {
                if p.copy_from(f).is_ok() {
                    p.meta.port = port;
                    match self.inject.push(p) {
                        Ok(()) => true,
                        Err(p) => {
                            self.cache.free(p);
                            false
                        }
                    }
                } else {
                    self.cache.free(p);
                    false
                }
            }
            None => false,
        };
        if !ok {
            self.stats.inject_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends the daemon's datagrams as frames on the inject ring.
    pub fn send(&mut self, d: &mut Daemon) {
        for g in d.take_output() {
            let IpAddr::V4(peer) = g.peer.ip() else {
                continue;
            };
            match self.next_hop(peer) {
                Ok((port, mac)) => {
                    let src = self.macs.get(usize::from(port)).copied().unwrap_or([0; 6]);
                    match udp_frame(mac, src, &g) {
                        Some(f) => self.inject_frame(port, &f),
                        None => {
                            self.stats.inject_failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Err(hop) => {
                    self.stats.no_neighbor.fetch_add(1, Ordering::Relaxed);
                    if let Some((port, gw)) = hop {
                        let me =
                            self.l3
                                .iface(port)
                                .and_then(|i| i.v4_for(gw))
                                .or(match g.local.ip() {
                                    IpAddr::V4(a) => Some(a),
                                    IpAddr::V6(_) => None,
                                });
                        let mac = self.macs.get(usize::from(port)).copied();
                        if let (Some(me), Some(mac)) = (me, mac) {
                            let f = arp_request(mac, me, gw);
                            self.inject_frame(port, &f);
                        }
                    }
                }
            }
        }
    }
}

/// Runs the daemon over `io` until `stop`; time is milliseconds since the call.
/// Log lines go to `tracing`.
pub fn run(mut d: Daemon, mut io: Io, stop: Arc<AtomicBool>) {
    let t0 = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = t0.elapsed().as_millis() as u64;
        let got = io.receive(&mut d, now);
        d.poll(now);
        io.send(&mut d);
        for l in d.take_log() {
            tracing::info!("ike: {l}");
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // Going down: delete the IKE SAs (RFC 7296 §1.4.1) while the worker still runs,
    // and wait up to a second for the answers.
    let now = t0.elapsed().as_millis() as u64;
    d.shutdown(now);
    io.send(&mut d);
    let end = Instant::now() + Duration::from_secs(1);
    while d.ike_sas() > 0 && Instant::now() < end {
        let now = t0.elapsed().as_millis() as u64;
        io.receive(&mut d, now);
        d.poll(now);
        io.send(&mut d);
        std::thread::sleep(Duration::from_millis(2));
    }
    for l in d.take_log() {
        tracing::info!("ike: {l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_other_frames_are_refused() {
        let g = Datagram {
            local: "192.0.2.1:4500".parse().unwrap(),
            peer: "192.0.2.2:4500".parse().unwrap(),
            data: alloc::vec![0, 0, 0, 0, 1, 2, 3],
        };
        let f = udp_frame([2; 6], [4; 6], &g).unwrap();
        // as received by the peer: swap the addresses
        let (port, mac, back) = parse_frame(3, &f).unwrap();
        assert_eq!((port, mac), (3, [4; 6]));
        assert_eq!(back.local, g.peer);
        assert_eq!(back.peer, g.local);
        assert_eq!(back.data, g.data);
        assert_eq!(dataplane::proto::checksum::internet(&f[14..34]), 0);
        assert!(parse_frame(0, &f[..30]).is_none(), "truncated");
        let mut other = f.clone();
        other[14 + 20 + 3] = 53; // UDP to port 53
        assert!(parse_frame(0, &other).is_none());
        let arp = arp_request(
            [2; 6],
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
        );
        assert_eq!(arp.len(), 42);
        assert!(parse_frame(0, &arp).is_none());
    }
}
