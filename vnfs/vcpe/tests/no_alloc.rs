//! The fast path allocates nothing after start-up: a counting global allocator
//! watches two vCPEs in the engine's worker loop — site A's LAN sends to the
//! Internet (firewall, NAT44) and through the static tunnel to site B (ESP encrypt);
//! B decrypts to its LAN and answers through the tunnel (B encrypts, A decrypts);
//! unsolicited WAN traffic is dropped on the way. A's worker also takes management
//! changes meanwhile (`vcpe::mgmt::update_hook`: a new L3 state, new firewall rules,
//! a state report), prepared off the worker: taking them allocates nothing either.

mod common;

use common::*;
use dataplane::batch::Batch;
use dataplane::buf::Pool;
use dataplane::port::{mem, Port};
use dataplane::worker::{TxPolicy, Worker, WorkerConfig};
use std::alloc::{GlobalAlloc, Layout, System};

struct Counting;

// Only the test thread's allocations count (libtest's own threads are not the code
// under test).
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
static A_: Counting = Counting;

const A_LAN: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0a, 0x01];
const A_WAN: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0a, 0x02];
const B_LAN: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0b, 0x01];
const B_WAN: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0b, 0x02];
const H1: [u8; 6] = [0x02, 0, 0, 0, 1, 0x10];
const H2: [u8; 6] = [0x02, 0, 0, 0, 2, 0x20];

#[test]
fn two_vcpes_forward_and_encrypt_without_allocating() {
    MINE.with(|m| m.set(true));
    let a = vcpe::vnf::build(&vcpe::Config::from_toml(A).unwrap()).unwrap();
    let b = vcpe::vnf::build(&vcpe::Config::from_toml(B).unwrap()).unwrap();
    let learn = |v: &vcpe::vnf::Built, ip: [u8; 4], mac: [u8; 6]| {
        assert!(v
            .vcpe
            .l3
            .neigh
            .learn(dataplane::stages::neigh::key_v4(ip.into()), mac, 0));
    };
    learn(&a, [198, 51, 100, 3], B_WAN);
    learn(&a, [198, 51, 100, 1], B_WAN); // the "Internet" is B's port too
    learn(&a, [192, 168, 1, 10], H1);
    learn(&b, [198, 51, 100, 2], A_WAN);
    learn(&b, [198, 51, 100, 1], A_WAN);
    learn(&b, [192, 168, 2, 20], H2);
    let pool = Pool::new(8192).unwrap();
    let (mut h1, a_lan) = mem::pair("h1", "a-lan", 1024).unwrap();
    let (a_wan, b_wan) = mem::pair("a-wan", "b-wan", 1024).unwrap();
    let (mut h2, b_lan) = mem::pair("h2", "b-lan", 1024).unwrap();
    let cfg = WorkerConfig {
        tx_policy: TxPolicy::Drop,
        ..WorkerConfig::default()
    };
    let mut wa = Worker::new(vec![a_lan, a_wan], a.graph, pool.cache(), cfg).unwrap();
    let link = vcpe::mgmt::WorkerLink::new();
    wa.add_hook(vcpe::mgmt::update_hook(&link));
    let mut wb = Worker::new(vec![b_lan, b_wan], b.graph, pool.cache(), cfg).unwrap();
    let t1 = [
        udp(
            H1,
            A_LAN,
            [192, 168, 1, 10],
            [203, 0, 113, 5],
            40000,
            9,
            &[0; 18],
        ),
        udp(
            H1,
            A_LAN,
            [192, 168, 1, 10],
            [192, 168, 2, 20],
            5000,
            6000,
            &[0; 400],
        ),
        udp(
            H1,
            A_LAN,
            [192, 168, 1, 11],
            [203, 0, 113, 6],
            40001,
            9,
            &[0; 1000],
        ),
        icmp_echo(H1, A_LAN, [192, 168, 1, 10], [192, 168, 2, 20], 3),
    ];
    let t2 = [
        udp(
            H2,
            B_LAN,
            [192, 168, 2, 20],
            [192, 168, 1, 10],
            6000,
            5000,
            &[0; 100],
        ),
        // to the Internet from B: NATed, sent to the "gateway", which is A's WAN
        // MAC here; A's firewall drops it (not a reply to anything of A's)
        udp(
            H2,
            B_LAN,
            [192, 168, 2, 21],
            [203, 0, 113, 7],
            1,
            2,
            &[0; 30],
        ),
    ];
    let mut gc = pool.cache();
    let mut gb = Batch::new();
    let mut sb = Batch::new();
    let mut now = 1_000_000_000u64;
    let mut run = |n: u64, gc: &mut dataplane::buf::PoolCache| -> (u64, u64) {
        let (mut sent, mut got) = (0u64, 0u64);
        let mut k = 0usize;
        while sent < n {
            for (port, tpl) in [(&mut h1, &t1[..]), (&mut h2, &t2[..])] {
                while !gb.is_full() {
                    let Some(mut p) = gc.alloc() else { break };
                    p.copy_from(&tpl[k % tpl.len()]).unwrap();
                    k += 1;
                    gb.push(p).unwrap();
                }
                sent += port.tx_burst(gc, &mut gb) as u64;
                gb.free_all(gc);
            }
            now += 100_000;
            wa.poll(now);
            wb.poll(now);
            wa.poll(now);
            for port in [&mut h1, &mut h2] {
                got += port.rx_burst(gc, &mut sb) as u64;
                sb.free_all(gc);
            }
        }
        (sent, got)
    };
    run(10_000, &mut gc);
    // Management changes for A's worker, built here as the management side does
    // (not counted: it is not the worker).
    MINE.with(|m| m.set(false));
    let mut rules = a.vcpe.config.clone();
    rules.firewall.rules.push(vcpe::config::FwRule {
        name: "no-6".into(),
        action: dataplane::stages::firewall::Action::Deny,
        from: Some("lan".into()),
        src: None,
        dst: Some("203.0.113.6".into()),
        proto: None,
        sport: None,
        dport: None,
    });
    let rebuilt = vcpe::vnf::Vcpe::new(&rules, &[]).unwrap();
    let sw = dataplane::stages::firewall::RuleSwap::new(&rebuilt.firewall_config()).unwrap();
    let updates = [
        vcpe::mgmt::Update::L3(vcpe::mgmt::L3Stages::new(&a.vcpe.l3)),
        vcpe::mgmt::Update::Rules(Box::new(sw)),
        vcpe::mgmt::Update::Report(vcpe::mgmt::Report::with_capacity(64, 64)),
    ];
    for u in updates {
        assert!(link.push(u).is_ok());
    }
    MINE.with(|m| m.set(true));
    let before = COUNT.with(|c| c.get());
    let (sent, got) = run(100_000, &mut gc);
    let after = COUNT.with(|c| c.get());
    MINE.with(|m| m.set(false));
    let mut back = Vec::new();
    while let Some(u) = link.pop_done() {
        back.push(u);
    }
    assert_eq!(back.len(), 3, "the worker took every change");
    match &back[2] {
        vcpe::mgmt::Update::Report(r) => {
            assert_eq!(r.sas.len(), 2, "the static tunnel's two SAs");
            assert!(r.rules.len() >= 3);
        }
        _ => panic!("the report comes back last"),
    }
    MINE.with(|m| m.set(true));
    assert!(got > sent / 4, "delivered {got} of {sent}");
    assert_eq!(after - before, 0, "allocations on the packet path");
    let mut enc = 0;
    wa.graph.counters(&mut |node, c| {
        if node == "esp-encrypt" && c.name == "encrypted" {
            enc = c.value;
        }
    });
    assert!(enc > 20_000, "encrypted {enc}");
}
