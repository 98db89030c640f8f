//! NAT44/CGNAT with two workers (VPP nat44-ed style): each worker runs its own
//! `nat44` (`Nat44::new_worker`) in the engine's worker loop, joined by the
//! hand-off mesh. Packets enter on either worker's queues, as an asymmetric RSS or
//! a misdirected flow would deliver them; the tests check that every packet is
//! translated by the worker that owns its state: no session exists twice, return
//! traffic always reaches the session's owner, TCP state is tracked across both
//! directions, ICMP errors are translated by the owner of the quoted session, and
//! port blocks come from the owner's slice of the outside ports.

use dataplane::batch::{Batch, Out};
use dataplane::buf::{Pool, PoolCache};
use dataplane::graph::Graph;
use dataplane::port::{mem, Port};
use dataplane::proto::icmpv4::{self, ErrorKind, QuoteLimit};
use dataplane::stages::nat::{CgnatConfig, Flow, Nat44, NatConfig, NatDrop};
use dataplane::stages::xconnect::Xconnect;
use dataplane::worker::{handoff_mesh, Worker, WorkerConfig};
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use std::net::Ipv4Addr;

const IN: usize = 0;
const OUT: usize = 1;
const REMOTE: [u8; 4] = [192, 0, 2, 1];

struct Lab {
    ws: Vec<Worker<mem::MemPort>>,
    /// peers[worker][port]: the generator/sink end of each worker's queue.
    peers: Vec<[mem::MemPort; 2]>,
    c: PoolCache,
    now: u64,
}

fn cfg() -> NatConfig {
    NatConfig {
        inside_ports: vec![0],
        pool: vec!["198.51.100.0/30".into()],
        max_sessions: 4096,
        max_subscribers: 1024,
        cgnat: Some(CgnatConfig {
            block_size: 512,
            blocks_per_subscriber: 4,
            sessions_per_subscriber: 1000,
            log: true,
        }),
        ..NatConfig::default()
    }
}

impl Lab {
    fn new(n: usize) -> Lab {
        let pool = Pool::new(8192).unwrap();
        let mut ws = Vec::new();
        let mut peers = Vec::new();
        for (k, h) in handoff_mesh(n, 1024).into_iter().enumerate() {
            let (a, pa) = mem::pair(&format!("in{k}"), "gen", 1024).unwrap();
            let (b, pb) = mem::pair(&format!("out{k}"), "remote", 1024).unwrap();
            let mut g = Graph::new();
            g.push(Box::new(
                Nat44::new_worker(&cfg(), k as u16, n as u16).unwrap(),
            ));
            g.push(Box::new(Xconnect::new(vec![Some(1), Some(0)])));
            let w = Worker::new(vec![a, b], g, pool.cache(), WorkerConfig::default())
                .unwrap()
                .with_handoff(h);
            ws.push(w);
            peers.push([pa, pb]);
        }
        Lab {
            ws,
            peers,
            c: pool.cache(),
            now: 1_000_000_000,
        }
    }

    /// Offers `frames` on worker `w`'s queue of `port`, runs every worker until
    /// nothing moves, and returns what left on each worker's `OUT`/`IN` side as
    /// (worker, frame).
    fn send(&mut self, w: usize, port: usize, frames: &[Vec<u8>]) -> Vec<(usize, Vec<u8>)> {
        let mut b = Batch::new();
        for f in frames {
            let mut p = self.c.alloc().unwrap();
            p.copy_from(f).unwrap();
            b.push(p).unwrap();
        }
        self.peers[w][port].tx_burst(&mut self.c, &mut b);
        assert!(b.is_empty());
        for _ in 0..6 {
            self.now += 1000;
            for wk in self.ws.iter_mut() {
                wk.poll(self.now);
            }
        }
        let mut got = Vec::new();
        let other = 1 - port;
        for (k, pp) in self.peers.iter_mut().enumerate() {
            let mut rb = Batch::new();
            while pp[other].rx_burst(&mut self.c, &mut rb) > 0 {
                rb.drain(|p| {
                    got.push((k, p.data().to_vec()));
                    p.pool().free(p);
                });
            }
        }
        got
    }

    fn nat(&mut self, w: usize) -> &mut Nat44 {
        self.ws[w].graph.node_mut::<Nat44>("nat44").unwrap()
    }

    fn drops(&self) -> u64 {
        self.ws
            .iter()
            .flat_map(|w| w.graph.nodes())
            .map(|n| n.dropped())
            .sum::<u64>()
            + self
                .ws
                .iter()
                .map(|w| w.stats.handoff_dropped + w.out.stats.no_handoff)
                .sum::<u64>()
    }
}

fn udp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .udp(sp, dp);
    let mut v = Vec::new();
    b.write(&mut v, b"payload!").unwrap();
    v
}

fn tcp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, flags: &str) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, 1000, 65535);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(2000),
            'F' => b.fin(),
            'R' => b.rst(),
            _ => b,
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, b"").unwrap();
    v
}

fn tuple(f: &[u8]) -> ([u8; 4], u16, [u8; 4], u16) {
    let s = SlicedPacket::from_ethernet(f).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = s.net else {
        panic!("not ipv4")
    };
    let (a, b) = (ip.header().source(), ip.header().destination());
    match s.transport.unwrap() {
        TransportSlice::Udp(u) => (a, u.source_port(), b, u.destination_port()),
        TransportSlice::Tcp(t) => (a, t.source_port(), b, t.destination_port()),
        _ => (a, 0, b, 0),
    }
}

fn host(i: u32) -> [u8; 4] {
    (0x0a00_0000 + i).to_be_bytes()
}

/// 64 subscribers × 4 flows enter on alternating workers; each session is created
/// once, on the subscriber's owner, with a port from the owner's slice; return
/// traffic entering on *every* worker reaches the owner and is translated back.
#[test]
fn return_traffic_reaches_the_owner_and_no_session_exists_twice() {
    let mut lab = Lab::new(2);
    let mut flows = Vec::new();
    for i in 1..=64u32 {
        for f in 0..4u16 {
            flows.push((host(i), 4000 + f));
        }
    }
    let mut outside = Vec::new(); // (inside src, sport) -> (ext addr, ext port)
    for (k, chunk) in flows.chunks(32).enumerate() {
        let frames: Vec<_> = chunk
            .iter()
            .map(|&(h, sp)| udp(h, sp, REMOTE, 53))
            .collect();
        let got = lab.send(k % 2, IN, &frames);
        assert_eq!(got.len(), chunk.len(), "every packet translated");
        for (w, f) in got {
            let (s, sp, d, dp) = tuple(&f);
            assert_eq!((d, dp), (REMOTE, 53));
            assert_eq!(Ipv4Addr::from(s).octets()[..3], [198, 51, 100]);
            outside.push((w, s, sp));
        }
    }
    assert_eq!(lab.drops(), 0);
    // Each flow has a session on exactly one worker: the subscriber's owner, and
    // the outside port is in that worker's slice.
    let total: usize = (0..2).map(|w| lab.nat(w).session_count()).sum();
    assert_eq!(total, flows.len(), "no session twice");
    for &(h, sp) in &flows {
        let f = Flow {
            src: u32::from_be_bytes(h),
            dst: u32::from_be_bytes(REMOTE),
            sport: sp,
            dport: 53,
            proto: 17,
        };
        let owner = usize::from(Nat44::inside_owner(f.src, 2));
        let here: Vec<_> = (0..2)
            .filter_map(|w| lab.nat(w).lookup_in2out(&f).map(|e| (w, e)))
            .collect();
        assert_eq!(here.len(), 1, "{h:?}:{sp} on {here:?}");
        assert_eq!(here[0].0, owner);
        let (_, ext_port) = here[0].1;
        assert_eq!(
            lab.nat(0).port_owner(ext_port),
            Some(owner as u16),
            "port {ext_port} from the owner's slice"
        );
    }
    assert!(lab.ws.iter().all(|w| w.stats.handoff_received > 0));
    // Replies: every one on worker 0's outside queue, then every one on worker 1's.
    for entry in 0..2 {
        let replies: Vec<_> = outside
            .iter()
            .map(|&(_, s, sp)| udp(REMOTE, 53, s, sp))
            .collect();
        let mut back = Vec::new();
        for c in replies.chunks(64) {
            back.extend(lab.send(entry, OUT, c));
        }
        assert_eq!(back.len(), flows.len(), "entry on worker {entry}");
        for (w, f) in back {
            let (s, sp, d, dp) = tuple(&f);
            assert_eq!((s, sp), (REMOTE, 53));
            assert!(flows.contains(&(d, dp)), "{d:?}:{dp}");
            assert_eq!(
                usize::from(Nat44::inside_owner(u32::from_be_bytes(d), 2)),
                w
            );
        }
    }
    assert_eq!(lab.drops(), 0);
    let total: usize = (0..2).map(|w| lab.nat(w).session_count()).sum();
    assert_eq!(total, flows.len(), "replies created nothing");
}

/// A TCP connection whose two directions enter on different workers: the owner
/// sees SYN, SYN-ACK, FIN both ways; the other worker has no state for it.
#[test]
fn tcp_state_is_tracked_on_the_owner_across_workers() {
    let mut lab = Lab::new(2);
    let h = host(7);
    let owner = usize::from(Nat44::inside_owner(u32::from_be_bytes(h), 2));
    let other = 1 - owner;
    // SYN enters on the other worker
    let got = lab.send(other, IN, &[tcp(h, 40000, REMOTE, 80, "S")]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, owner);
    let (ea, ep, _, _) = tuple(&got[0].1);
    // SYN-ACK enters on the other worker too
    let back = lab.send(other, OUT, &[tcp(REMOTE, 80, ea, ep, "SA")]);
    assert_eq!(back.len(), 1);
    assert_eq!(tuple(&back[0].1), (REMOTE, 80, h, 40000));
    let s = *lab.nat(owner).sessions().next().unwrap();
    assert_eq!(s.tcp & 3, 3, "SYN both ways on the owner: {:#x}", s.tcp);
    assert_eq!(lab.nat(other).session_count(), 0);
    lab.send(owner, IN, &[tcp(h, 40000, REMOTE, 80, "FA")]);
    lab.send(other, OUT, &[tcp(REMOTE, 80, ea, ep, "FA")]);
    let s = *lab.nat(owner).sessions().next().unwrap();
    assert_eq!(s.tcp & 12, 12, "FIN both ways: {:#x}", s.tcp);
    assert_eq!(lab.drops(), 0);
}

/// ICMP errors about a translated packet, entering on the worker that does not
/// own the session, are translated by the owner (outer and quoted headers).
#[test]
fn icmp_errors_are_translated_by_the_session_owner() {
    let mut lab = Lab::new(2);
    for i in 1..=8u32 {
        let h = host(i);
        let owner = usize::from(Nat44::inside_owner(u32::from_be_bytes(h), 2));
        let orig = udp(h, 5000, REMOTE, 53);
        let got = lab.send(owner, IN, std::slice::from_ref(&orig));
        assert_eq!(got.len(), 1);
        let translated = &got[0].1;
        let (ea, ep, _, _) = tuple(translated);
        // a router on the path answers the translated packet
        let mut buf = [0u8; 600];
        let n = icmpv4::build_error(
            &mut buf,
            &translated[14..],
            Ipv4Addr::new(203, 0, 113, 9),
            64,
            ErrorKind::DstUnreachable {
                code: 3,
                next_hop_mtu: 0,
            },
            QuoteLimit::Rfc1812,
        )
        .unwrap();
        let mut err = translated[..14].to_vec();
        err.extend_from_slice(&buf[..n]);
        let back = lab.send(1 - owner, OUT, &[err]);
        assert_eq!(back.len(), 1, "host {i}");
        assert_eq!(back[0].0, owner);
        let f = &back[0].1;
        // outer destination and the quoted source are the inside endpoint again
        assert_eq!(f[30..34], h);
        let q = 14 + 20 + 8;
        assert_eq!(f[q + 12..q + 16], h);
        assert_eq!(u16::from_be_bytes([f[q + 20], f[q + 21]]), 5000);
        let _ = (ea, ep);
    }
    let translated: u64 = (0..2)
        .map(|w| lab.nat(w).stats.icmp_errors_translated)
        .sum();
    assert_eq!(translated, 8);
    assert_eq!(lab.drops(), 0);
}

/// Port blocks: a subscriber's blocks all come from its owner's slice and are
/// whole blocks; the slices of two workers do not overlap and cover the range.
#[test]
fn port_slices_partition_the_outside_ports_in_whole_blocks() {
    let n0 = Nat44::new_worker(&cfg(), 0, 2).unwrap();
    let n1 = Nat44::new_worker(&cfg(), 1, 2).unwrap();
    let mut counts = [0u32; 2];
    for port in 1024..=65535u16 {
        let a = n0.port_owner(port);
        assert_eq!(a, n1.port_owner(port), "both agree on {port}");
        if let Some(w) = a {
            counts[usize::from(w)] += 1;
            // a block never straddles two workers
            let block_first = 1024 + (port - 1024) / 512 * 512;
            assert_eq!(n0.port_owner(block_first), Some(w));
        }
    }
    assert_eq!(counts[0] + counts[1], 126 * 512);
    assert!(counts[0].abs_diff(counts[1]) <= 512);
    // with one worker every port is its own
    let one = Nat44::new(&cfg()).unwrap();
    assert_eq!(one.port_owner(1024), Some(0));
    assert_eq!(one.port_owner(65000), Some(0));
    let _ = NatDrop::HairpinRemote;
    let _ = Out::owner_of(0, 1);
}
