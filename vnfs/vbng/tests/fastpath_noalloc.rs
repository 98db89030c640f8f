//! The BNG's own packets cost no heap: a counting global allocator watches the
//! `bng-fastpath` stage answer ARP, resolve and refresh the core gateway, send ICMP
//! Time Exceeded (both directions) and Fragmentation Needed, answer pings and clamp
//! the MSS of SYN/SYN-ACK, for 200k packets after a warm-up, with time advancing so
//! the ICMP token bucket refills and ARP refreshes fall due.

mod common_core;

use common_core::*;
use dataplane::batch::{Batch, Out};
use dataplane::buf::Pool;
use dataplane::stage::{NodeStats, Stage};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::Ordering;
use vbng::fastpath::ERRORS;

struct Counting;

// Allocations are counted per thread: each test counts only its own (the tests of
// this file run in parallel, and libtest's own threads are not the code under test).
thread_local! {
    static MINE: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    static COUNT: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

fn count() {
    if MINE.try_with(|m| m.get()).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

/// Allocations made by this thread so far (while counting).
fn allocs() -> u64 {
    COUNT.with(|c| c.get())
}

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// One round: every template through the stage on its port, plus a tick; what the
/// stage sends is counted and freed.
fn round(
    fp: &mut FastPath,
    out: &mut Out,
    node: &mut NodeStats,
    batch: &mut Batch,
    templates: &[(u16, Vec<u8>)],
    sent: &mut [u64; 2],
) {
    for port in [0u16, 1] {
        for (_, f) in templates.iter().filter(|(p, _)| *p == port) {
            let Some(mut p) = out.cache.alloc() else {
                panic!("pool empty")
            };
            assert!(p.copy_from(f).is_ok());
            p.meta.port = port;
            assert!(batch.push(p).is_ok());
        }
        fp.process(batch, node, out);
        assert!(batch.is_empty());
    }
    fp.tick(out);
    for (i, s) in sent.iter_mut().enumerate() {
        *s += out.ports[i].len() as u64;
        out.ports[i].free_all(&mut out.cache);
    }
}

use vbng::fastpath::FastPath;

#[test]
fn own_packets_do_not_allocate() {
    MINE.with(|m| m.set(true));
    let pool = Pool::new(1024).expect("pool");
    let mut out = Out::new(2, pool.cache());
    let (mut fp, link) = fastpath(1_000_000, 1000);
    let templates: Vec<(u16, Vec<u8>)> = vec![
        (1, arp(1, HOST_MAC, [198, 51, 100, 9], CORE_IP)),
        (0, up_frame(&udp(SUB_IP, REMOTE, 64, false, 64))),
        (0, up_frame(&udp(SUB_IP, REMOTE, 1, false, 64))),
        (0, up_frame(&ping(SUB_IP, GATEWAY))),
        (0, up_frame(&tcp(SUB_IP, REMOTE, 0x02, 1460))),
        (1, core_frame(&udp(REMOTE, SUB_IP, 64, false, 64))),
        (1, core_frame(&udp(REMOTE, SUB_IP, 1, false, 64))),
        (1, core_frame(&udp(REMOTE, SUB_IP, 64, true, 1472))),
        (1, core_frame(&tcp(REMOTE, SUB_IP, 0x12, 1460))),
        (1, core_frame(&ping(REMOTE, CORE_IP))),
    ];
    let mut node = NodeStats::new("bng-fastpath", ERRORS);
    let mut batch = Batch::new();
    let mut sent = [0u64; 2];
    // Warm-up: caches, the pool's per-worker cache; the gateway answers once.
    let (_, _, _) = run(&mut fp, &mut out, 1, &[arp(2, GW_MAC, CORE_GW, CORE_IP)]);
    for i in 0..64u64 {
        out.now_ns = 1 + i * 1_000_000;
        round(
            &mut fp, &mut out, &mut node, &mut batch, &templates, &mut sent,
        );
    }
    assert!(link.gateway_mac().is_some());
    let stats = fp.stats();
    let icmp0 = stats.icmp_sent.load(Ordering::Relaxed);
    let mss0 = stats.mss_clamped.load(Ordering::Relaxed);
    let req0 = link.stats.requests.load(Ordering::Relaxed);
    let sent0 = sent;
    let rounds = 200_000 / templates.len() as u64;
    let before = allocs();
    for i in 0..rounds {
        // 15 ms per round: 270 s in all, past the point (3/4 of the 300 s
        // reachable time) where refresh requests for the gateway start.
        out.now_ns = 1_000_000_000 + i * 15_000_000;
        round(
            &mut fp, &mut out, &mut node, &mut batch, &templates, &mut sent,
        );
    }
    let allocs = allocs() - before;
    assert_eq!(allocs, 0, "the fast path allocated {allocs} times");
    // The paths really ran: 3 ICMP errors and 2 clamps per round, ARP replies and
    // refresh requests went out.
    assert_eq!(stats.icmp_sent.load(Ordering::Relaxed) - icmp0, 3 * rounds);
    assert_eq!(stats.mss_clamped.load(Ordering::Relaxed) - mss0, 2 * rounds);
    assert!(link.stats.requests.load(Ordering::Relaxed) > req0);
    // Per round: access gets fwd down, SYN-ACK, TTL error, echo reply; core gets
    // ARP reply, fwd up, SYN, TTL error, frag needed, echo reply (+ refreshes).
    assert_eq!(sent[0] - sent0[0], 4 * rounds);
    assert!(sent[1] - sent0[1] >= 6 * rounds);
    drop(out);
    assert_eq!(pool.available(), 1024, "every buffer came back");
}

/// IPoE sessions (issue 15) cost no heap either: upstream by MAC and VLANs with
/// anti-spoofing and MSS clamping, Time Exceeded back to the subscriber in plain
/// Ethernet, pings to the IPoE gateway, DHCP and ARP punted, downstream framing
/// without PPPoE — 200k packets after a warm-up.
#[test]
fn ipoe_packets_do_not_allocate() {
    MINE.with(|m| m.set(true));
    const IPOE_MAC: [u8; 6] = [2, 9, 9, 9, 9, 9];
    const IPOE_IP: [u8; 4] = [100, 72, 0, 20];
    const IPOE_GW: [u8; 4] = [100, 72, 0, 1];
    let pool = Pool::new(1024).expect("pool");
    let mut out = Out::new(2, pool.cache());
    let (fp, _link) = fastpath(1_000_000, 1000);
    let mut fp = fp.with_ipoe(Some(std::net::Ipv4Addr::from(IPOE_GW)));
    let mut k = key();
    k.mac = IPOE_MAC;
    fp.apply(
        vbng::control::FibUpdate::Add {
            idx: 4,
            key: k,
            sid: 0,
            ip: u32::from_be_bytes(IPOE_IP),
            rate: (0, 0),
            mtu: 1500,
        },
        0,
    );
    let ipoe = |ethertype: [u8; 2], payload: &[u8]| {
        let mut f = ACCESS_MAC.to_vec();
        f.extend_from_slice(&IPOE_MAC);
        f.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0, 0, 20]);
        f.extend_from_slice(&ethertype);
        f.extend_from_slice(payload);
        f
    };
    let mut dhcp = udp([0; 4], [255; 4], 64, false, 300);
    dhcp[20..24].copy_from_slice(&[0, 68, 0, 67]);
    let templates: Vec<(u16, Vec<u8>)> = vec![
        (0, ipoe([8, 0], &udp(IPOE_IP, REMOTE, 64, false, 64))),
        (0, ipoe([8, 0], &udp(IPOE_IP, REMOTE, 1, false, 64))),
        (0, ipoe([8, 0], &ping(IPOE_IP, IPOE_GW))),
        (0, ipoe([8, 0], &tcp(IPOE_IP, REMOTE, 0x02, 1460))),
        (0, ipoe([8, 0], &dhcp)),
        (0, ipoe([8, 6], &[0; 28])),
        (1, core_frame(&udp(REMOTE, IPOE_IP, 64, false, 64))),
        (1, core_frame(&tcp(REMOTE, IPOE_IP, 0x12, 1460))),
    ];
    let mut node = NodeStats::new("bng-fastpath", ERRORS);
    let mut batch = Batch::new();
    let mut sent = [0u64; 2];
    let (_, _, _) = run(&mut fp, &mut out, 1, &[arp(2, GW_MAC, CORE_GW, CORE_IP)]);
    let mut punted = 0u64;
    let mut go = |fp: &mut FastPath, out: &mut Out, sent: &mut [u64; 2], punted: &mut u64| {
        round(fp, out, &mut node, &mut batch, &templates, sent);
        *punted += out.punt.len() as u64;
        out.punt.free_all(&mut out.cache);
    };
    for i in 0..64u64 {
        out.now_ns = 1 + i * 1_000_000;
        go(&mut fp, &mut out, &mut sent, &mut punted);
    }
    let (sent0, punted0) = (sent, punted);
    let rounds = 200_000 / templates.len() as u64;
    let before = allocs();
    for i in 0..rounds {
        // 1 ms per round: within the gateway's reachable time (no ARP answers here).
        out.now_ns = 1_000_000_000 + i * 1_000_000;
        go(&mut fp, &mut out, &mut sent, &mut punted);
    }
    let allocs = allocs() - before;
    assert_eq!(allocs, 0, "the IPoE fast path allocated {allocs} times");
    // Per round: access gets the downstream datagram, the SYN-ACK, the Time
    // Exceeded and the echo reply; core gets the datagram and the SYN; DHCP and ARP
    // are punted.
    assert_eq!(sent[0] - sent0[0], 4 * rounds);
    assert!(sent[1] - sent0[1] >= 2 * rounds);
    assert_eq!(punted - punted0, 2 * rounds);
    drop(out);
    assert_eq!(pool.available(), 1024, "every buffer came back");
}
