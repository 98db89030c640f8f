//! Per-stage cost (ns/packet) of the router stages on batches of 256 64-byte UDP/IPv4
//! frames: `ethernet-input`, `ip4-input`, `ip4-lookup` (16 routes), `ip4-rewrite`, and
//! the whole router pipeline. Each iteration restores the batch from templates (not
//! timed with `iter_batched`) and runs one stage on it; criterion reports time per
//! batch with element throughput = 256, so ns/packet = time / 256.
//!
//! Run: `cargo bench -p benches --bench stages -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dataplane::batch::{Batch, Out, BATCH_SIZE};
use dataplane::buf::{Pool, PoolCache};
use dataplane::stage::{NodeStats, Stage};
use dataplane::stages::classify::Classify;
use dataplane::stages::ip4::{Ip4Input, Ip4Lookup, Ip4Rewrite};
use vnf_router::{Config, Router};

const CONFIG: &str = include_str!("../../vnfs/router/examples/router.toml");

fn frame(i: u8) -> Vec<u8> {
    let mut b = vec![0u8; 60];
    b[0..6].copy_from_slice(&[2, 0, 0, 0, 1, 1]);
    b[6..12].copy_from_slice(&[2, 0, 0, 0, 1, 0x10]);
    b[12..14].copy_from_slice(&[0x08, 0x00]);
    b[14] = 0x45;
    b[16..18].copy_from_slice(&46u16.to_be_bytes());
    b[22] = 64;
    b[23] = 17;
    b[26..30].copy_from_slice(&[192, 0, 2, 10]);
    b[30..34].copy_from_slice(&[100, 64, i, 1]);
    b[38..40].copy_from_slice(&26u16.to_be_bytes());
    let c = dataplane::proto::checksum::internet(&b[14..34]);
    b[24..26].copy_from_slice(&c.to_be_bytes());
    b
}

fn fill(c: &mut PoolCache, tpl: &[Vec<u8>]) -> Batch {
    let mut b = Batch::new();
    for i in 0..BATCH_SIZE {
        let mut p = c.alloc().expect("pool");
        p.copy_from(&tpl[i % tpl.len()]).expect("fits");
        p.meta.class = dataplane::stages::classify::class::IPV4;
        p.meta.l3 = 14;
        b.push(p).expect("room");
    }
    b
}

fn bench_stage(c: &mut Criterion, name: &str, mut stage: Box<dyn Stage>, pre: Vec<Box<dyn Stage>>) {
    let pool = Pool::new(65536).expect("pool");
    let mut gen = pool.cache();
    let mut out = Out::new(2, pool.cache());
    let mut pre_out = Out::new(2, pool.cache());
    let tpl: Vec<Vec<u8>> = (0..16).map(frame).collect();
    let mut pre = pre;
    let mut pre_nodes: Vec<NodeStats> = pre
        .iter()
        .map(|s| NodeStats::new(s.name(), s.errors()))
        .collect();
    let mut node = NodeStats::new(stage.name(), stage.errors());
    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    g.bench_function(name, |bn| {
        bn.iter_batched_ref(
            || {
                let mut b = fill(&mut gen, &tpl);
                for (s, n) in pre.iter_mut().zip(pre_nodes.iter_mut()) {
                    s.process(&mut b, n, &mut pre_out);
                }
                b
            },
            |b| {
                stage.process(b, &mut node, &mut out);
                for t in out.ports.iter_mut() {
                    t.free_all(&mut out.cache);
                }
                b.free_all(&mut out.cache);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn stages(c: &mut Criterion) {
    let cfg = Config::from_toml(CONFIG).expect("config");
    let r = Router::build(&cfg, &[], None).expect("router");
    bench_stage(
        c,
        "ethernet-input",
        Box::new(Classify::new(r.macs.clone())),
        vec![],
    );
    bench_stage(c, "ip4-input", Box::new(Ip4Input::default()), vec![]);
    bench_stage(
        c,
        "ip4-lookup",
        Box::new(Ip4Lookup::new(r.l3.clone())),
        vec![],
    );
    bench_stage(
        c,
        "ip4-rewrite",
        Box::new(Ip4Rewrite::new(r.l3.clone())),
        vec![Box::new(Ip4Lookup::new(r.l3.clone()))],
    );
    // whole pipeline
    let pool = Pool::new(65536).expect("pool");
    let mut gen = pool.cache();
    let mut out = Out::new(2, pool.cache());
    let tpl: Vec<Vec<u8>> = (0..16).map(frame).collect();
    let mut pl = r.pipeline();
    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    g.bench_function("router-pipeline", |bn| {
        bn.iter_batched_ref(
            || fill(&mut gen, &tpl),
            |b| {
                pl.run(b, &mut out);
                for t in out.ports.iter_mut() {
                    t.free_all(&mut out.cache);
                }
                b.free_all(&mut out.cache);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
