//! Cost of one idle loop of a vBNG worker (no packet on any queue), the price a
//! poll-mode worker pays between bursts and the floor of its latency at low load.
//! The worker runs the vBNG graph of the lab's config (CGNAT on, so the
//! `nat44` node is there too) on two in-memory ports, with the table-update
//! hook the vBNG registers:
//!
//! - `vbng-idle-loop/by-name`: a hook that finds the fast-path and NAT nodes by
//!   name on every loop (what `vbng::vnf::update_hook` did before: three string
//!   searches over the nodes, then `pop` on each empty queue);
//! - `vbng-idle-loop/update-hook`: `vbng::vnf::update_hook` as shipped (node
//!   indices looked up once, an empty queue tested with two loads).
//!
//! Run: `cargo bench -p benches --bench idle_poll -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use dataplane::batch::Out;
use dataplane::buf::Pool;
use dataplane::graph::Graph;
use dataplane::port::mem::{pair, MemPort};
use dataplane::worker::{Hook, Worker, WorkerConfig};
use pktgen::subscribers::lab::{lab_config, LabConfig};
use vbng::fastpath::FastPath;
use vbng::rng::Rng;
use vbng::vnf::{
    build, update_hook, BuildEnv, CgnatNode, NODE_DOWNSTREAM, NODE_NAT, NODE_UPSTREAM,
};

/// The hook as it was: every loop looks the nodes up by name.
fn by_name() -> Hook {
    Box::new(|g: &mut Graph, out: &mut Out| {
        for name in [NODE_UPSTREAM, NODE_DOWNSTREAM] {
            if let Some(fp) = g.node_mut::<FastPath>(name) {
                fp.drain_updates(out.now_ns);
            }
        }
        if let Some(n) = g.node_mut::<CgnatNode>(NODE_NAT) {
            n.drain_bindings();
        }
    })
}

fn worker(hook: Hook) -> (Worker<MemPort>, [MemPort; 2]) {
    let lc = LabConfig {
        sessions: 1024,
        cgnat: Some("203.0.113.0/30".parse().expect("range")),
        ..LabConfig::default()
    };
    let cfg = lab_config(&lc);
    let env = BuildEnv::new([2, 0, 0, 0, 0, 2], lc.sessions, Rng::from_seed([1; 32]));
    let v = build(&cfg, &env).expect("vbng graph");
    let pool = Pool::new(4096).expect("pool");
    let (access, subs) = pair("bng-access", "subscribers", 1024).expect("ring");
    let (core, sink) = pair("bng-core", "core", 1024).expect("ring");
    let w = Worker::new(
        vec![access, core],
        v.graph,
        pool.cache(),
        WorkerConfig::default(),
    )
    .expect("worker")
    .on_update(hook);
    (w, [subs, sink])
}

fn idle(c: &mut Criterion) {
    let mut g = c.benchmark_group("vbng-idle-loop");
    for (name, hook) in [
        ("by-name", by_name as fn() -> Hook),
        ("update-hook", update_hook),
    ] {
        let (mut w, _peers) = worker(hook());
        assert!(
            w.graph.node_index(NODE_NAT).is_some(),
            "the graph has nat44"
        );
        let mut now = 1_000_000u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                now += 1;
                assert_eq!(w.poll(now), 0, "idle");
            })
        });
    }
    g.finish();
}

criterion_group!(benches, idle);
criterion_main!(benches);
