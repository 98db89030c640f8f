//! The vCPE with two workers (`engine.workers = 2`, `vnf::build_workers`, the
//! engine's worker loop joined by the hand-off mesh), over in-memory ports with a
//! queue per worker. Packets are offered on either worker's queue whatever owns
//! their state, as a NIC's RSS would deliver them:
//!
//! - LAN→WAN NAT traffic and its replies both get through; every reply is
//!   translated by the worker that owns its session (the outside port's slice):
//!   no session exists twice, replies create none;
//! - ESP through a static tunnel between two 2-worker vCPEs: each SA is used by one
//!   worker (`ipsec::stage::sa_owner`), its sequence numbers strictly increase and
//!   the receiver (both of whose workers get the ESP) decrypts every packet
//!   without an anti-replay drop;
//! - after start-up neither vCPE's workers allocate (a per-thread counting
//!   allocator watching the thread that polls all four workers).

mod common;
#[path = "../../../dataplane/tests/counting/mod.rs"]
mod counting;

use common::*;
use counting::{allocs, watch};
use dataplane::batch::Batch;
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::mem::{pair, MemPort};
use dataplane::port::Port;
use dataplane::stages::nat::Nat44;
use dataplane::worker::{handoff_mesh, TxPolicy, Worker, WorkerConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use vcpe::vnf::{build_workers, Vcpe};
use vcpe::Config;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

const N: usize = 2;
const A_LAN: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0a, 0x01];
const A_WAN: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0a, 0x02];
const B_LAN: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0b, 0x01];
const B_WAN: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0b, 0x02];
const GW: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0x01];
/// Site A's outbound SPI (examples/vcpe-a.toml), B's is A's inbound one.
const A_SPI_OUT: u32 = 0x1001;
const B_SPI_OUT: u32 = 0x2001;

fn host_mac(site: u8, i: u8) -> [u8; 6] {
    [0x02, 0, 0, site, 0x10, i]
}

/// A site's configuration with two workers.
fn two_workers(text: &str) -> Config {
    let cfg = Config::from_toml(&format!("[engine]\nworkers = {N}\n{text}")).unwrap();
    assert_eq!(cfg.engine.workers, N);
    cfg
}

/// A vCPE's workers over `lan[k]`/`wan[k]` (worker k's queues), joined by a mesh.
fn site(
    cfg: &Config,
    neigh: &[([u8; 4], [u8; 6])],
    lan: Vec<MemPort>,
    wan: Vec<MemPort>,
    pool: &'static Pool,
    wc: WorkerConfig,
) -> (Arc<Vcpe>, Vec<Worker<MemPort>>) {
    let b = build_workers(cfg, &[]).unwrap();
    assert_eq!(b.graphs.len(), N);
    for (ip, mac) in neigh {
        assert!(b
            .vcpe
            .l3
            .neigh
            .learn(dataplane::stages::neigh::key_v4((*ip).into()), *mac, 0));
    }
    let mut ws = Vec::new();
    for (((g, h), l), w) in b
        .graphs
        .into_iter()
        .zip(handoff_mesh(N, 1024))
        .zip(lan)
        .zip(wan)
    {
        ws.push(
            Worker::new(vec![l, w], g, pool.cache(), wc)
                .unwrap()
                .with_handoff(h),
        );
    }
    (b.vcpe, ws)
}

/// `n` in-memory links: (worker ends, peer ends).
fn links(name: &str, n: usize) -> (Vec<MemPort>, Vec<MemPort>) {
    (0..n)
        .map(|k| pair(&format!("{name}{k}"), &format!("{name}-peer{k}"), 1024).unwrap())
        .unzip()
}

fn offer(port: &mut MemPort, c: &mut PoolCache, frames: &[Vec<u8>]) {
    let mut b = Batch::new();
    for f in frames {
        let mut p = c.alloc().unwrap();
        p.copy_from(f).unwrap();
        b.push(p).unwrap();
        if b.is_full() {
            assert_eq!(port.tx_burst(c, &mut b), dataplane::batch::BATCH_SIZE);
        }
    }
    port.tx_burst(c, &mut b);
    assert!(b.is_empty(), "the link took every frame");
}

fn take(port: &mut MemPort, c: &mut PoolCache) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut b = Batch::new();
    while port.rx_burst(c, &mut b) > 0 {
        b.drain(|p| {
            got.push(p.data().to_vec());
            c.free(p);
        });
    }
    got
}

fn poll_all(sites: &mut [&mut Vec<Worker<MemPort>>], now: &mut u64) {
    for _ in 0..6 {
        *now += 100_000;
        for ws in sites.iter_mut() {
            for w in ws.iter_mut() {
                w.poll(*now);
            }
        }
    }
}

fn counter(w: &Worker<MemPort>, node: &str, name: &str) -> u64 {
    let mut v = 0;
    w.graph.counters(&mut |n, c| {
        if n == node && c.name == name {
            v += c.value;
        }
    });
    v
}

fn drops(ws: &[Worker<MemPort>]) -> u64 {
    ws.iter()
        .map(|w| {
            w.graph.nodes().map(|n| n.dropped()).sum::<u64>()
                + w.stats.handoff_dropped
                + w.out.stats.no_handoff
        })
        .sum()
}

#[test]
fn nat_replies_reach_the_worker_owning_the_session() {
    let pool = Pool::new(8192).unwrap();
    let mut c = pool.cache();
    let (lan, mut lan_peer) = links("lan", N);
    let (wan, mut wan_peer) = links("wan", N);
    let mut neigh = vec![([198, 51, 100, 1], GW)];
    for i in 0..32u8 {
        neigh.push(([192, 168, 1, 10 + i], host_mac(1, i)));
    }
    let (_v, mut ws) = site(
        &two_workers(A),
        &neigh,
        lan,
        wan,
        pool,
        WorkerConfig::default(),
    );
    // 32 hosts, 2 flows each; host i's frames arrive on worker i % 2's queue.
    let mut flows: BTreeMap<u16, ([u8; 4], u16)> = BTreeMap::new();
    for i in 0..32u8 {
        let src = [192, 168, 1, 10 + i];
        let frames: Vec<Vec<u8>> = (0..2u16)
            .map(|j| {
                let (sport, dport) = (40000 + j, 1000 + u16::from(i) * 2 + j);
                flows.insert(dport, (src, sport));
                udp(
                    host_mac(1, i),
                    A_LAN,
                    src,
                    [203, 0, 113, 5],
                    sport,
                    dport,
                    b"out",
                )
            })
            .collect();
        offer(&mut lan_peer[usize::from(i) % N], &mut c, &frames);
    }
    let mut now = 1_000_000_000;
    poll_all(&mut [&mut ws], &mut now);
    // What left on the WAN: every flow once, translated, from its session's owner.
    let mut out: Vec<(usize, Vec<u8>)> = Vec::new();
    for (k, p) in wan_peer.iter_mut().enumerate() {
        out.extend(take(p, &mut c).into_iter().map(|f| (k, f)));
    }
    assert_eq!(out.len(), flows.len(), "every LAN packet left on the WAN");
    let mut outside = BTreeSet::new();
    for (k, f) in &out {
        let (src, dst, proto, sp, dp) = ip_of(f).unwrap();
        assert_eq!((src, dst, proto), ([198, 51, 100, 2], [203, 0, 113, 5], 17));
        assert!(flows.contains_key(&dp));
        assert!(outside.insert(sp), "outside port {sp} used twice");
        let nat = ws[*k].graph.node_mut::<Nat44>("nat44").unwrap();
        assert_eq!(
            nat.port_owner(sp),
            Some(*k as u16),
            "sent by the port's owner"
        );
    }
    let sessions: Vec<u64> = ws
        .iter()
        .map(|w| counter(w, "nat44", "sessions-active"))
        .collect();
    assert_eq!(
        sessions.iter().sum::<u64>(),
        flows.len() as u64,
        "{sessions:?}"
    );
    assert!(
        sessions.iter().all(|&s| s > 0),
        "both workers own sessions: {sessions:?}"
    );
    // The replies, half of them on the worker that does not own the session.
    for (j, (k, f)) in out.iter().enumerate() {
        let (src, dst, _, sp, dp) = ip_of(f).unwrap();
        let r = udp(GW, A_WAN, dst, src, dp, sp, b"back");
        offer(&mut wan_peer[(k + j) % N], &mut c, &[r]);
    }
    let h0: u64 = ws.iter().map(|w| w.stats.handoff_received).sum();
    poll_all(&mut [&mut ws], &mut now);
    let h1: u64 = ws.iter().map(|w| w.stats.handoff_received).sum();
    assert!(h1 > h0, "replies were handed to their owners");
    let mut back = BTreeSet::new();
    for p in lan_peer.iter_mut() {
        for f in take(p, &mut c) {
            let (src, dst, _, sp, dp) = ip_of(&f).unwrap();
            assert_eq!(src, [203, 0, 113, 5]);
            assert_eq!(flows.get(&sp), Some(&(dst, dp)), "translated back");
            assert!(back.insert(sp), "reply {sp} delivered twice");
        }
    }
    assert_eq!(back.len(), flows.len(), "every reply reached its host");
    let after: u64 = ws
        .iter()
        .map(|w| counter(w, "nat44", "sessions-active"))
        .sum();
    assert_eq!(after, flows.len() as u64, "replies made no session");
    assert_eq!(drops(&ws), 0);
}

/// Reads the (SPI, sequence number) of each ESP frame.
fn esp_of(f: &[u8]) -> Option<(u32, u32)> {
    let ip = f.get(14..)?;
    if ip.get(9) != Some(&50) {
        return None;
    }
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let e = ip.get(ihl..ihl + 8)?;
    Some((
        u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
        u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
    ))
}

/// Moves the ESP leaving `from`'s WAN queues to the other worker's WAN queue of
/// `to` (so the receiver's non-owner gets some), recording (worker, SPI, seq).
fn relay(
    from: &mut [MemPort],
    to: &mut [MemPort],
    c: &mut PoolCache,
    seen: &mut Vec<(usize, u32, u32)>,
) {
    for k in 0..N {
        let fs = take(&mut from[k], c);
        for f in &fs {
            let (spi, seq) = esp_of(f).expect("only ESP crosses the WAN");
            seen.push((k, spi, seq));
        }
        offer(&mut to[(k + 1) % N], c, &fs);
    }
}

fn check_sequence(seen: &[(usize, u32, u32)], spi: u32, want: usize) {
    assert_eq!(seen.len(), want, "one ESP packet per LAN packet");
    let owner = usize::from(ipsec::stage::sa_owner(spi, N as u16));
    let mut last = 0;
    for &(k, s, seq) in seen {
        assert_eq!(s, spi);
        assert_eq!(k, owner, "SA {spi:#x} used by its owner only");
        assert!(seq > last, "sequence {seq} after {last}");
        last = seq;
    }
}

#[test]
fn esp_with_two_workers_keeps_sequence_numbers_increasing() {
    tunnel_round_trip(&two_workers(A));
}

/// With `firewall.tunnel_inbound = false` only replies to connections A's LAN
/// started come in from the tunnel: the reply, decrypted by the inbound SA's
/// owner, must meet the connection on the worker that tracked the request
/// (`vcpe-steer`: the LAN host's owner), not on whichever worker the request
/// arrived.
#[test]
fn tunnel_replies_meet_their_connection_with_two_workers() {
    let a = A.replace("[firewall]\n", "[firewall]\ntunnel_inbound = false\n");
    let cfg = two_workers(&a);
    assert!(!cfg.firewall.tunnel_inbound);
    tunnel_round_trip(&cfg);
}

/// A (`a`) and B (examples/vcpe-b.toml), two workers each: A's hosts send to B's
/// through the static tunnel, B's hosts answer; checks the ESP on the wire and the
/// counters on both sides.
fn tunnel_round_trip(a: &Config) {
    let pool = Pool::new(8192).unwrap();
    let mut c = pool.cache();
    let (a_lan, mut h1) = links("a-lan", N);
    let (a_wan, mut a_out) = links("a-wan", N);
    let (b_lan, mut h2) = links("b-lan", N);
    let (b_wan, mut b_out) = links("b-wan", N);
    let mut na = vec![([198, 51, 100, 3], B_WAN)];
    let mut nb = vec![([198, 51, 100, 2], A_WAN)];
    for i in 0..16u8 {
        na.push(([192, 168, 1, 10 + i], host_mac(1, i)));
        nb.push(([192, 168, 2, 20 + i], host_mac(2, i)));
    }
    let wc = WorkerConfig::default();
    let (_a, mut wa) = site(a, &na, a_lan, a_wan, pool, wc);
    let (_b, mut wb) = site(&two_workers(B), &nb, b_lan, b_wan, pool, wc);
    let mut now = 1_000_000_000;
    let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
    let (mut to_b, mut to_a) = (0usize, 0usize);
    let mut delivered_b = 0;
    let mut delivered_a = 0;
    for round in 0..10u16 {
        // A's hosts to B's, on both of A's LAN queues.
        for i in 0..16u8 {
            let f = udp(
                host_mac(1, i),
                A_LAN,
                [192, 168, 1, 10 + i],
                [192, 168, 2, 20 + i % 4],
                5000 + round,
                6000,
                &[i; 64],
            );
            offer(&mut h1[usize::from(i) % N], &mut c, &[f]);
            to_b += 1;
        }
        poll_all(&mut [&mut wa], &mut now);
        relay(&mut a_out, &mut b_out, &mut c, &mut seen_a);
        poll_all(&mut [&mut wb], &mut now);
        for p in h2.iter_mut() {
            delivered_b += take(p, &mut c).len();
        }
        // B's hosts answer (half of A's flows), on both of B's LAN queues.
        for i in 0..8u8 {
            let f = udp(
                host_mac(2, i % 4),
                B_LAN,
                [192, 168, 2, 20 + i % 4],
                [192, 168, 1, 10 + i],
                6000,
                5000 + round,
                &[i; 100],
            );
            offer(&mut h2[usize::from(i) % N], &mut c, &[f]);
            to_a += 1;
        }
        poll_all(&mut [&mut wb], &mut now);
        relay(&mut b_out, &mut a_out, &mut c, &mut seen_b);
        poll_all(&mut [&mut wa], &mut now);
        for p in h1.iter_mut() {
            delivered_a += take(p, &mut c).len();
        }
    }
    check_sequence(&seen_a, A_SPI_OUT, to_b);
    check_sequence(&seen_b, B_SPI_OUT, to_a);
    assert_eq!(delivered_b, to_b, "B decrypted every packet to its LAN");
    assert_eq!(delivered_a, to_a, "A decrypted every packet to its LAN");
    let dec = |ws: &[Worker<MemPort>]| -> u64 {
        ws.iter()
            .map(|w| counter(w, "esp-decrypt", "decrypted"))
            .sum()
    };
    assert_eq!(dec(&wb), to_b as u64);
    assert_eq!(dec(&wa), to_a as u64);
    // No anti-replay (or any other) drop on either side, no hand-off lost.
    assert_eq!(drops(&wa), 0, "{}", wa[0].graph.show_errors());
    assert_eq!(drops(&wb), 0, "{}", wb[0].graph.show_errors());
    let handed: u64 = wa
        .iter()
        .chain(wb.iter())
        .map(|w| w.stats.handoff_received)
        .sum();
    assert!(handed > 0, "packets met their SA's owner through the mesh");
}

#[test]
fn two_workers_forward_and_encrypt_without_allocating() {
    let pool = Pool::new(8192).unwrap();
    let mut gc = pool.cache();
    let (a_lan, mut h1) = links("a-lan", N);
    let (b_lan, mut h2) = links("b-lan", N);
    // A's worker k and B's worker k share a WAN link.
    let (a_wan, b_wan): (Vec<MemPort>, Vec<MemPort>) = (0..N)
        .map(|k| pair(&format!("a-wan{k}"), &format!("b-wan{k}"), 1024).unwrap())
        .unzip();
    let na = [
        ([198, 51, 100, 3], B_WAN),
        ([198, 51, 100, 1], B_WAN), // the "Internet" is B's port too
        ([192, 168, 1, 10], host_mac(1, 0)),
        ([192, 168, 1, 11], host_mac(1, 1)),
    ];
    let nb = [
        ([198, 51, 100, 2], A_WAN),
        ([198, 51, 100, 1], A_WAN),
        ([192, 168, 2, 20], host_mac(2, 0)),
    ];
    let wc = WorkerConfig {
        tx_policy: TxPolicy::Drop,
        ..WorkerConfig::default()
    };
    let (_a, mut wa) = site(&two_workers(A), &na, a_lan, a_wan, pool, wc);
    let (_b, mut wb) = site(&two_workers(B), &nb, b_lan, b_wan, pool, wc);
    let t1 = [
        udp(
            host_mac(1, 0),
            A_LAN,
            [192, 168, 1, 10],
            [203, 0, 113, 5],
            40000,
            9,
            &[0; 18],
        ),
        udp(
            host_mac(1, 0),
            A_LAN,
            [192, 168, 1, 10],
            [192, 168, 2, 20],
            5000,
            6000,
            &[0; 400],
        ),
        udp(
            host_mac(1, 1),
            A_LAN,
            [192, 168, 1, 11],
            [203, 0, 113, 6],
            40001,
            9,
            &[0; 1000],
        ),
        udp(
            host_mac(1, 1),
            A_LAN,
            [192, 168, 1, 11],
            [192, 168, 2, 20],
            5001,
            6000,
            &[0; 200],
        ),
    ];
    let t2 = [udp(
        host_mac(2, 0),
        B_LAN,
        [192, 168, 2, 20],
        [192, 168, 1, 10],
        6000,
        5000,
        &[0; 100],
    )];
    let mut gb = Batch::new();
    let mut sb = Batch::new();
    let mut now = 1_000_000_000u64;
    let mut run = |n: u64, gc: &mut PoolCache| -> (u64, u64) {
        let (mut sent, mut got) = (0u64, 0u64);
        let mut k = 0usize;
        while sent < n {
            for q in 0..N {
                for (port, tpl) in [(&mut h1[q], &t1[..]), (&mut h2[q], &t2[..])] {
                    while gb.len() < 16 {
                        let Some(mut p) = gc.alloc() else { break };
                        p.copy_from(&tpl[k % tpl.len()]).unwrap();
                        k += 1;
                        gb.push(p).unwrap();
                    }
                    sent += port.tx_burst(gc, &mut gb) as u64;
                    gb.free_all(gc);
                }
            }
            now += 100_000;
            for w in wa.iter_mut() {
                w.poll(now);
            }
            for w in wb.iter_mut() {
                w.poll(now);
            }
            for w in wa.iter_mut() {
                w.poll(now);
            }
            for port in h1.iter_mut().chain(h2.iter_mut()) {
                got += port.rx_burst(gc, &mut sb) as u64;
                sb.free_all(gc);
            }
        }
        (sent, got)
    };
    run(5_000, &mut gc);
    let handed = |wa: &[Worker<MemPort>], wb: &[Worker<MemPort>]| -> u64 {
        wa.iter()
            .chain(wb.iter())
            .map(|w| w.stats.handoff_received)
            .sum()
    };
    watch(true);
    let before = allocs();
    let (sent, got) = run(20_000, &mut gc);
    let n = allocs() - before;
    watch(false);
    assert_eq!(n, 0, "allocations on the packet path of two workers");
    assert!(got > sent / 4, "delivered {got} of {sent}");
    assert!(handed(&wa, &wb) > 1000, "hand-offs ran while watched");
    let enc: u64 = wa
        .iter()
        .map(|w| counter(w, "esp-encrypt", "encrypted"))
        .sum();
    assert!(enc > 5_000, "encrypted {enc}");
}

/// A firewall rule change with two workers (the management API's fan-out,
/// `vcpe::mgmt`): every worker takes the new rules between two bursts and ends the
/// tracked connections it owns that they deny; the API's
/// `state/firewall/ended-by-rule-change` is the sum over both workers.
#[test]
fn a_rule_change_ends_the_connections_of_both_workers() {
    use dataplane::stages::firewall::Firewall;
    use vcpe::mgmt::{update_hook, Mgmt, WorkerLink};

    const Z: [u8; 4] = [203, 0, 113, 77];
    const X: [u8; 4] = [203, 0, 113, 5];
    let pool = Pool::new(8192).unwrap();
    let mut c = pool.cache();
    let (lan, mut lan_peer) = links("fw-lan", N);
    let (wan, mut wan_peer) = links("fw-wan", N);
    let mut neigh = vec![([198, 51, 100, 1], GW)];
    for i in 0..32u8 {
        neigh.push(([192, 168, 1, 10 + i], host_mac(1, i)));
    }
    let (v, mut ws) = site(
        &two_workers(A),
        &neigh,
        lan,
        wan,
        pool,
        WorkerConfig::default(),
    );
    let mgmt_links: Vec<WorkerLink> = (0..N).map(|_| WorkerLink::new()).collect();
    for (w, l) in ws.iter_mut().zip(&mgmt_links) {
        w.add_hook(update_hook(l));
    }
    let mut mgmt = Mgmt::new(&v, mgmt_links, None, None);
    // 32 hosts, one connection each to Z and to X; host i's frames arrive on worker
    // i % 2's queue, its connections are tracked by its owner.
    let frames = |dst: [u8; 4], sport: u16| -> Vec<(usize, Vec<u8>)> {
        (0..32u8)
            .map(|i| {
                let f = udp(
                    host_mac(1, i),
                    A_LAN,
                    [192, 168, 1, 10 + i],
                    dst,
                    sport,
                    9,
                    b"q",
                );
                (usize::from(i) % N, f)
            })
            .collect()
    };
    let send = |frames: &[(usize, Vec<u8>)],
                lan_peer: &mut [MemPort],
                ws: &mut Vec<Worker<MemPort>>,
                wan_peer: &mut [MemPort],
                c: &mut PoolCache,
                now: &mut u64|
     -> usize {
        for (k, f) in frames {
            offer(&mut lan_peer[*k], c, std::slice::from_ref(f));
        }
        poll_all(&mut [ws], now);
        wan_peer.iter_mut().map(|p| take(p, c).len()).sum()
    };
    let mut now = 1_000_000_000;
    let (to_z, to_x) = (frames(Z, 40000), frames(X, 40001));
    assert_eq!(
        send(
            &to_z,
            &mut lan_peer,
            &mut ws,
            &mut wan_peer,
            &mut c,
            &mut now
        ),
        32
    );
    assert_eq!(
        send(
            &to_x,
            &mut lan_peer,
            &mut ws,
            &mut wan_peer,
            &mut c,
            &mut now
        ),
        32
    );
    let conns = |ws: &mut Vec<Worker<MemPort>>| -> Vec<usize> {
        ws.iter_mut()
            .map(|w| {
                w.graph
                    .node_mut::<Firewall>("firewall")
                    .unwrap()
                    .connection_count()
            })
            .collect()
    };
    let before = conns(&mut ws);
    assert_eq!(before.iter().sum::<usize>(), 64, "{before:?}");

    // The rule change and the state, from the management thread while the workers
    // poll here.
    let api = std::thread::spawn(move || {
        let post = mgmt.handle(
            "POST",
            "/restconf/data/vcpe:vcpe/firewall/rule=no-z",
            "",
            br#"{"vcpe:rule":[{"name":"no-z","action":"deny","from":"lan","destination":"203.0.113.77/32","protocol":"udp"}]}"#,
            &[],
        );
        let state = mgmt.handle("GET", "/restconf/data/vcpe:vcpe/state", "", b"", &[]);
        (post, state)
    });
    let t = std::time::Instant::now();
    while !api.is_finished() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "API stuck"
        );
        now += 100_000;
        for w in ws.iter_mut() {
            w.poll(now);
        }
        std::thread::yield_now();
    }
    let (post, state) = api.join().unwrap();
    assert_eq!(post.status, 201, "{}", post.body);
    assert_eq!(state.status, 200, "{}", state.body);

    let after = conns(&mut ws);
    let ended: Vec<usize> = before.iter().zip(&after).map(|(b, a)| b - a).collect();
    assert_eq!(
        ended.iter().sum::<usize>(),
        32,
        "every connection to Z ended"
    );
    assert!(
        ended.iter().all(|&e| e > 0),
        "both workers owned connections to Z: {ended:?}"
    );
    let st: serde_json::Value = serde_json::from_str(&state.body).unwrap();
    assert_eq!(
        st["vcpe:state"]["firewall"]["ended-by-rule-change"], "32",
        "the count sums both workers': {ended:?}, {st}"
    );
    assert_eq!(st["vcpe:state"]["firewall"]["connections"], 32, "{st}");
    // Both workers forward with the new rules: nothing more to Z, X as before.
    assert_eq!(
        send(
            &to_z,
            &mut lan_peer,
            &mut ws,
            &mut wan_peer,
            &mut c,
            &mut now
        ),
        0
    );
    assert_eq!(
        send(
            &to_x,
            &mut lan_peer,
            &mut ws,
            &mut wan_peer,
            &mut c,
            &mut now
        ),
        32
    );
}
