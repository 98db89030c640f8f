//! IPv6 on the fast path costs no heap: a counting global allocator watches the
//! `bng-fastpath` stage forward IPv6 both ways over PPPoE (RFC 5072), drop spoofed
//! sources, expired hop limits (sending ICMPv6 Time Exceeded back to the subscriber,
//! RFC 4443 §3.3), unknown prefixes and too-big packets (Time Exceeded / Packet Too
//! Big to the core, §3.2), punt Router
//! Solicitations, and police, for 100k packets after a warm-up — and a prefix moving
//! between sessions through the update queue allocates nothing either (the tables are
//! pre-sized at start); the same for an IPoE subscriber's DHCPv6 address.

use dataplane::batch::{Batch, Out};
use dataplane::buf::Pool;
use dataplane::proto::ethernet::Vlans;
use dataplane::stage::{NodeStats, Stage};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::Ordering;
use vbng::control::{FibUpdate, SessionCounters};
use vbng::fastpath::{update_queue, FastPath, FastPathConfig, LocalConfig, ERRORS};
use vbng::pppoe::AccessKey;

struct Counting;

// Only allocations made by a test's own thread count, on that thread's counter:
// libtest's threads (its "running for over 60 seconds" notice on a loaded machine)
// and the other test running beside it are not the code under test.
thread_local! {
    static MINE: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    static COUNT: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

fn count() {
    if MINE.try_with(|m| m.get()).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

/// Allocations counted on this thread.
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

const PFX: u64 = 0x2001_0db8_0100_0005;
const HOST: u128 = ((PFX as u128) << 64) | 0x1234;
const REMOTE: u128 = 0x2001_0db8_ffff_0000_0000_0000_0000_0001;
const KEY: AccessKey = AccessKey {
    port: 0,
    mac: [2, 1, 1, 1, 1, 1],
    vlans: Vlans {
        svlan: 10,
        cvlan: 20,
    },
};

fn ipv6(src: u128, dst: u128, hop: u8, next: u8, payload: usize) -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&(payload as u16).to_be_bytes());
    v.extend_from_slice(&[next, hop]);
    v.extend_from_slice(&src.to_be_bytes());
    v.extend_from_slice(&dst.to_be_bytes());
    v.extend(std::iter::repeat_n(0xab, payload));
    v
}

fn up(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xa];
    f.extend_from_slice(&KEY.mac);
    f.extend_from_slice(&[
        0x88, 0xa8, 0, 10, 0x81, 0, 0, 20, 0x88, 0x64, 0x11, 0, 0, 0x55,
    ]);
    f.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0x57]);
    f.extend_from_slice(ip);
    f
}

fn down(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xc, 2, 0, 0, 0, 0, 0xd, 0x86, 0xdd];
    f.extend_from_slice(ip);
    f
}

#[test]
fn ipv6_forwarding_does_not_allocate() {
    MINE.with(|m| m.set(true));
    let pool = Pool::new(1024).expect("pool");
    let mut out = Out::new(2, pool.cache());
    let q = update_queue(64);
    let mut fp = FastPath::new(
        FastPathConfig {
            access_port: 0,
            core_port: 1,
            access_mac: [2, 0, 0, 0, 0, 0xa],
            core_mac: [2, 0, 0, 0, 0, 0xc],
            core_next_hop: [2, 0, 0, 0, 0, 0xd],
            max_sessions: 64,
        },
        q.clone(),
        SessionCounters::new(64),
    )
    .with_local(LocalConfig {
        icmp_rate: 1_000_000_000,
        icmp_burst: 1_000_000,
        ..LocalConfig::default()
    })
    .with_core_ip6(Some("2001:db8:ffff::b".parse().expect("addr")));
    for u in [
        FibUpdate::Add {
            idx: 3,
            key: KEY,
            sid: 0x55,
            ip: 0x6440_0005,
            rate: (10_000_000_000, 10_000_000_000),
            mtu: 1492,
        },
        FibUpdate::Add6 {
            idx: 3,
            prefix: PFX,
            router_iid: 0x77,
        },
    ] {
        q.push(u).expect("queue");
    }
    let mut rs = ipv6(0xfe80 << 112 | 7, 0xff02 << 112 | 2, 255, 58, 8);
    rs[40] = 133;
    // A Neighbor Solicitation for core_ip6 from the core router: answered in place.
    let core6: u128 = 0x2001_0db8_ffff_0000_0000_0000_0000_000b;
    let (ns_src, ns_dst) = (
        0xfe80u128 << 112 | 0xd0,
        0xff02u128 << 112 | 1 << 16 | 0xff00_000b,
    );
    let mut ns = ipv6(ns_src, ns_dst, 255, 58, 32);
    ns[40..48].copy_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
    ns[48..64].copy_from_slice(&core6.to_be_bytes());
    ns[64..72].copy_from_slice(&[1, 1, 2, 0, 0, 0, 0, 0xd]);
    dataplane::proto::icmpv6::Packet::new_unchecked(&mut ns[40..]).fill_checksum(
        &std::net::Ipv6Addr::from(ns_src),
        &std::net::Ipv6Addr::from(ns_dst),
    );
    let templates: Vec<(u16, Vec<u8>)> = vec![
        (0, up(&ipv6(HOST, REMOTE, 64, 17, 64))),
        (0, up(&ipv6(HOST, REMOTE, 64, 17, 1000))),
        (0, up(&ipv6(REMOTE, REMOTE, 64, 17, 64))),
        (0, up(&ipv6(HOST, REMOTE, 1, 17, 64))),
        (0, up(&rs)),
        (1, down(&ipv6(REMOTE, HOST, 64, 17, 64))),
        (1, down(&ipv6(REMOTE, HOST, 64, 6, 1000))),
        (1, down(&ipv6(REMOTE, REMOTE, 64, 17, 64))),
        (1, down(&ipv6(REMOTE, HOST, 1, 17, 64))),
        (1, down(&ipv6(REMOTE, HOST, 64, 17, 1460))),
        (1, down(&ns)),
    ];
    let mut node = NodeStats::new("bng-fastpath", ERRORS);
    let mut batch = Batch::new();
    let mut fwd = [0u64; 2];
    let mut punted = 0u64;
    let mut round = |fp: &mut FastPath, out: &mut Out, now: u64, fwd: &mut [u64; 2]| {
        out.now_ns = now;
        for port in [0u16, 1] {
            for (_, f) in templates.iter().filter(|(p, _)| *p == port) {
                let Some(mut p) = out.cache.alloc() else {
                    panic!("pool empty")
                };
                assert!(p.copy_from(f).is_ok());
                p.meta.port = port;
                assert!(batch.push(p).is_ok());
            }
            fp.process(&mut batch, &mut node, out);
            assert!(batch.is_empty());
        }
        for (i, s) in fwd.iter_mut().enumerate() {
            *s += out.ports[i].len() as u64;
            out.ports[i].free_all(&mut out.cache);
        }
        punted += out.punt.len() as u64;
        out.punt.free_all(&mut out.cache);
    };
    for i in 0..64u64 {
        round(&mut fp, &mut out, 1 + i * 1000, &mut fwd);
    }
    assert_eq!(fp.prefixes6(), 1);
    let rounds = 100_000 / templates.len() as u64;
    let fwd0 = fwd;
    let icmp0 = fp.stats().icmp_sent.load(Ordering::Relaxed);
    let before = allocs();
    for i in 0..rounds {
        if i % 1000 == 500 {
            // The prefix moves to another slot and back through the update queue.
            let _ = q.push(FibUpdate::Remove6 {
                idx: 3,
                prefix: PFX,
            });
            let _ = q.push(FibUpdate::Add6 {
                idx: 9,
                prefix: PFX,
                router_iid: 0x77,
            });
            let _ = q.push(FibUpdate::Remove6 {
                idx: 9,
                prefix: PFX,
            });
            let _ = q.push(FibUpdate::Add6 {
                idx: 3,
                prefix: PFX,
                router_iid: 0x77,
            });
        }
        round(&mut fp, &mut out, 1_000_000 + i * 10_000, &mut fwd);
    }
    let allocs = allocs() - before;
    assert_eq!(allocs, 0, "the IPv6 fast path allocated {allocs} times");
    // Per round: two forwarded each way (the rest are counted drops), one Time
    // Exceeded back to the subscriber, a Time Exceeded and a Packet Too Big to the
    // core, a Neighbor Advertisement to the core, one RS punted.
    assert_eq!(
        fwd[1] - fwd0[1],
        5 * rounds,
        "upstream + errors + NA to the core"
    );
    assert_eq!(fp.stats().core_na_sent.load(Ordering::Relaxed), 64 + rounds);
    assert_eq!(fwd[0] - fwd0[0], 3 * rounds, "downstream + Time Exceeded");
    assert_eq!(
        fp.stats().icmp_sent.load(Ordering::Relaxed) - icmp0,
        3 * rounds
    );
    assert_eq!(punted, 64 + rounds);
    let drops = |name: &str| {
        ERRORS
            .iter()
            .position(|e| *e == name)
            .map_or(0, |i| node.drops[i])
    };
    assert!(drops("spoofed-source") >= rounds);
    assert!(drops("ttl-exceeded") >= 2 * rounds);
    assert!(drops("no-route") >= rounds);
    assert!(drops("too-big") >= rounds);
    drop(out);
    assert_eq!(pool.available(), 1024, "every buffer came back");
}

/// The same for IPoE subscribers' DHCPv6 addresses (issue 15): IA_NA /128s routed
/// both ways over Ethernet with a C-VLAN, spoofed sources dropped, an address
/// moving between sessions through the update queue — no allocation (the address
/// table is sized for every slot by `with_ipoe6`).
#[test]
fn ipoe_ipv6_forwarding_does_not_allocate() {
    MINE.with(|m| m.set(true));
    let pool = Pool::new(1024).expect("pool");
    let mut out = Out::new(2, pool.cache());
    let q = update_queue(64);
    let mut fp = FastPath::new(
        FastPathConfig {
            access_port: 0,
            core_port: 1,
            access_mac: [2, 0, 0, 0, 0, 0xa],
            core_mac: [2, 0, 0, 0, 0, 0xc],
            core_next_hop: [2, 0, 0, 0, 0, 0xd],
            max_sessions: 64,
        },
        q.clone(),
        SessionCounters::new(64),
    )
    .with_ipoe(Some("100.72.0.1".parse().expect("addr")))
    .with_ipoe6(true);
    const NA: u128 = 0x2001_0db8_0100_0000_0000_0000_0000_1000;
    let line = AccessKey {
        port: 0,
        mac: [2, 9, 9, 9, 9, 9],
        vlans: Vlans {
            svlan: 0,
            cvlan: 33,
        },
    };
    for u in [
        FibUpdate::Add {
            idx: 5,
            key: line,
            sid: 0,
            ip: 0,
            rate: (10_000_000_000, 10_000_000_000),
            mtu: 1500,
        },
        FibUpdate::AddAddr6 {
            idx: 5,
            addr: NA,
            router_iid: 0x99,
        },
    ] {
        q.push(u).expect("queue");
    }
    let up = |ip: &[u8]| {
        let mut f = vec![2, 0, 0, 0, 0, 0xa];
        f.extend_from_slice(&line.mac);
        f.extend_from_slice(&[0x81, 0, 0, 33, 0x86, 0xdd]);
        f.extend_from_slice(ip);
        f
    };
    let templates: Vec<(u16, Vec<u8>)> = vec![
        (0, up(&ipv6(NA, REMOTE, 64, 17, 64))),
        (0, up(&ipv6(NA + 1, REMOTE, 64, 17, 64))),
        (1, down(&ipv6(REMOTE, NA, 64, 17, 64))),
        (1, down(&ipv6(REMOTE, NA + 1, 64, 17, 64))),
    ];
    let mut node = NodeStats::new("bng-fastpath", ERRORS);
    let mut batch = Batch::new();
    let mut fwd = [0u64; 2];
    let mut round = |fp: &mut FastPath, out: &mut Out, now: u64, fwd: &mut [u64; 2]| {
        out.now_ns = now;
        for port in [0u16, 1] {
            for (_, f) in templates.iter().filter(|(p, _)| *p == port) {
                let Some(mut p) = out.cache.alloc() else {
                    panic!("pool empty")
                };
                assert!(p.copy_from(f).is_ok());
                p.meta.port = port;
                assert!(batch.push(p).is_ok());
            }
            fp.process(&mut batch, &mut node, out);
            assert!(batch.is_empty());
        }
        for (i, s) in fwd.iter_mut().enumerate() {
            *s += out.ports[i].len() as u64;
            out.ports[i].free_all(&mut out.cache);
        }
        out.punt.free_all(&mut out.cache);
    };
    for i in 0..64u64 {
        round(&mut fp, &mut out, 1 + i * 1000, &mut fwd);
    }
    assert_eq!(fp.addresses6(), 1);
    let rounds = 100_000 / templates.len() as u64;
    let fwd0 = fwd;
    let before = allocs();
    for i in 0..rounds {
        if i % 1000 == 500 {
            for u in [
                FibUpdate::RemoveAddr6 { idx: 5, addr: NA },
                FibUpdate::AddAddr6 {
                    idx: 9,
                    addr: NA,
                    router_iid: 0x99,
                },
                FibUpdate::RemoveAddr6 { idx: 9, addr: NA },
                FibUpdate::AddAddr6 {
                    idx: 5,
                    addr: NA,
                    router_iid: 0x99,
                },
            ] {
                let _ = q.push(u);
            }
        }
        round(&mut fp, &mut out, 1_000_000 + i * 10_000, &mut fwd);
    }
    let allocs = allocs() - before;
    assert_eq!(
        allocs, 0,
        "the IPoE IPv6 fast path allocated {allocs} times"
    );
    assert_eq!(fwd[1] - fwd0[1], rounds, "upstream from the address");
    assert_eq!(fwd[0] - fwd0[0], rounds, "downstream to the address");
    let spoofed = ERRORS
        .iter()
        .position(|e| *e == "spoofed-source")
        .map_or(0, |i| node.drops[i]);
    assert!(spoofed >= rounds);
    drop(out);
    assert_eq!(pool.available(), 1024, "every buffer came back");
}
