//! The fast path allocates nothing after start-up: a counting global allocator
//! watches a million packets go generator → router → sink over in-memory virtio
//! rings (IPv4 and IPv6, forwarded, ICMP-answered and dropped packets mixed).

mod common;

use dataplane::batch::{Batch, Out};
use dataplane::buf::Pool;
use dataplane::port::{mem, Port};
use std::alloc::{GlobalAlloc, Layout, System};

struct Counting;

// Only allocations made by the test's own thread count, and each thread keeps its own
// count (the tests of a file run in parallel): libtest's threads (its
// "running for over 60 seconds" notice on a loaded machine) are not the code under
// test.
thread_local! {
    static MINE: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    static COUNT: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

fn count() {
    if MINE.try_with(|m| m.get()).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
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

fn templates() -> Vec<Vec<u8>> {
    use etherparse::PacketBuilder;
    let h = [2, 0, 0, 0, 1, 0x10];
    let r = [2, 0, 0, 0, 1, 1];
    let mut t = Vec::new();
    for (i, ttl) in [(0u8, 64u8), (1, 64), (2, 1), (3, 64)] {
        let b = PacketBuilder::ethernet2(h, r)
            .ipv4([192, 0, 2, 10], [100, 64, i, 1], ttl)
            .udp(1000 + i as u16, 2000);
        let mut v = Vec::new();
        b.write(&mut v, &[0u8; 18]).unwrap();
        t.push(v);
    }
    let b = PacketBuilder::ethernet2(h, r)
        .ipv4([192, 0, 2, 10], [192, 0, 2, 1], 64)
        .icmpv4_echo_request(1, 1);
    let mut v = Vec::new();
    b.write(&mut v, &[0u8; 18]).unwrap();
    t.push(v);
    let b = PacketBuilder::ethernet2(h, r)
        .ipv6(
            [
                0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            ],
            [
                0x20, 0x01, 0x0d, 0xb8, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
            ],
            64,
        )
        .udp(1, 2);
    let mut v = Vec::new();
    b.write(&mut v, &[0u8; 10]).unwrap();
    t.push(v);
    let b = PacketBuilder::ethernet2(h, r)
        .ipv4([192, 0, 2, 10], [10, 255, 0, 1], 64)
        .udp(1, 2);
    let mut v = Vec::new();
    b.write(&mut v, &[0u8; 18]).unwrap();
    t.push(v);
    t
}

#[test]
fn million_packets_without_allocating() {
    MINE.with(|m| m.set(true));
    let r = common::router();
    let pool = Pool::new(8192).unwrap();
    let (mut gen, mut r_acc) = mem::pair("gen", "access", 1024).unwrap();
    let (mut r_core, mut sink) = mem::pair("core", "sink", 1024).unwrap();
    let mut pl = r.pipeline();
    let mut out = Out::new(2, pool.cache());
    let mut gc = pool.cache();
    let tpl = templates();
    let mut gb = Batch::new();
    let mut rx = Batch::new();
    let mut sb = Batch::new();
    let mut run = |n: u64, gc: &mut dataplane::buf::PoolCache, out: &mut Out| -> (u64, u64) {
        let (mut sent, mut got) = (0u64, 0u64);
        let mut k = 0usize;
        while sent < n {
            while !gb.is_full() {
                let Some(mut p) = gc.alloc() else { break };
                let t = &tpl[k % tpl.len()];
                k += 1;
                p.copy_from(t).unwrap();
                gb.push(p).unwrap();
            }
            sent += gen.tx_burst(gc, &mut gb) as u64;
            // router: both ports
            for (i, port) in [&mut r_acc, &mut r_core].into_iter().enumerate() {
                port.rx_burst(&mut out.cache, &mut rx);
                for p in rx.iter_mut() {
                    p.meta.port = i as u16;
                }
                pl.run(&mut rx, out);
                rx.free_all(&mut out.cache);
            }
            r_acc.tx_burst(&mut out.cache, &mut out.ports[0]);
            r_core.tx_burst(&mut out.cache, &mut out.ports[1]);
            out.ports[0].free_all(&mut out.cache);
            out.ports[1].free_all(&mut out.cache);
            out.punt.free_all(&mut out.cache);
            got += sink.rx_burst(gc, &mut sb) as u64;
            sb.free_all(gc);
            gen.rx_burst(gc, &mut sb);
            sb.free_all(gc);
        }
        (sent, got)
    };
    // warm-up (caches fill, rings spin up)
    run(20_000, &mut gc, &mut out);
    let before = COUNT.with(|c| c.get());
    let (sent, got) = run(1_000_000, &mut gc, &mut out);
    let after = COUNT.with(|c| c.get());
    assert!(sent >= 1_000_000);
    assert!(got > sent / 2, "forwarded {got} of {sent}");
    assert_eq!(after - before, 0, "allocations on the packet path");
    let errs = pl.show_errors();
    assert!(
        errs.contains("TTL expired") && errs.contains("blackhole"),
        "{errs}"
    );
}

/// A NAT44 pool change (issue 19) is taken by the stage between bursts without
/// allocating: everything was built off the data path by `PoolChange::new`.
#[test]
fn nat_pool_change_applies_without_allocating() {
    use dataplane::stages::nat::{Nat44, NatConfig, PoolChange};
    let mut c = NatConfig {
        inside_ports: vec![0],
        pool: vec!["192.0.2.100/30".into()],
        max_sessions: 1024,
        max_subscribers: 64,
        ..NatConfig::default()
    };
    let mut n = Nat44::new(&c).unwrap();
    c.pool = vec!["192.0.2.102-192.0.2.110".into()];
    let mut ch = PoolChange::new(&c, 4).unwrap();
    MINE.with(|m| m.set(true));
    let before = COUNT.with(|c| c.get());
    n.apply_pool_change(&mut ch);
    let after = COUNT.with(|c| c.get());
    MINE.with(|m| m.set(false));
    assert_eq!(ch.outcome(), Some(Ok(())));
    assert_eq!(n.pool_addresses().count(), 9);
    assert_eq!(after - before, 0, "allocations while taking the pool");
}
