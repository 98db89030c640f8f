//! LPM lookup cost on full-size tables: IPv4 DIR-24-8 with 1M BGP-like prefixes and
//! IPv6 with 200k BGP-like prefixes (prefix-length mix: `dataplane::lpm::gen`).
//!
//! Destinations are uniformly random inside uniformly chosen routes (as in the
//! `l3fwd-bgp` scenario), drawn from a pool of 2^20 addresses so the access pattern is
//! cache-cold like real traffic. Each iteration looks up one batch of 256 addresses;
//! criterion reports time per batch and lookups per second (ns/lookup = time / 256).
//!
//! Run: `cargo bench -p benches --bench lpm -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::lpm::gen;
use dataplane::lpm::ipv4::Lpm4;
use dataplane::lpm::ipv6::Lpm6;

const BATCH: usize = 256;
const POOL: usize = 1 << 20;

/// Hands out consecutive batches of a pool, wrapping around.
struct Batches<'a, T> {
    pool: &'a [T],
    at: usize,
}

impl<'a, T> Batches<'a, T> {
    fn next(&mut self) -> &'a [T] {
        if self.at + BATCH > self.pool.len() {
            self.at = 0;
        }
        let b = &self.pool[self.at..self.at + BATCH];
        self.at += BATCH;
        b
    }
}

fn lpm4(c: &mut Criterion) {
    let routes = gen::bgp_like_v4(1_000_000, 1);
    let mut t = Lpm4::new();
    for r in &routes {
        t.add(r.addr, r.len, r.nh)
            .expect("1M BGP-like routes fit the default table");
    }
    let pool = gen::addrs_in_v4(&routes, POOL, 2);
    let mut g = c.benchmark_group("lpm4_1M");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut b = Batches { pool: &pool, at: 0 };
    g.bench_function("single", |bench| {
        bench.iter(|| {
            for &a in b.next() {
                black_box(t.lookup(black_box(a)));
            }
        })
    });
    let mut out = vec![None; BATCH];
    g.bench_function("bulk", |bench| {
        bench.iter(|| {
            t.lookup_bulk(black_box(b.next()), &mut out);
            black_box(&out);
        })
    });
    g.bench_function("x4", |bench| {
        bench.iter(|| {
            for q in b.next().chunks_exact(4) {
                black_box(t.lookup_x4([q[0], q[1], q[2], q[3]]));
            }
        })
    });
    g.finish();
}

fn lpm6(c: &mut Criterion) {
    let routes = gen::bgp_like_v6(200_000, 1);
    let mut t = Lpm6::new();
    for r in &routes {
        t.add(r.addr, r.len, r.nh)
            .expect("200k BGP-like routes fit the default table");
    }
    let pool = gen::addrs_in_v6(&routes, POOL, 2);
    let mut g = c.benchmark_group("lpm6_200k");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut b = Batches { pool: &pool, at: 0 };
    g.bench_function("single", |bench| {
        bench.iter(|| {
            for &a in b.next() {
                black_box(t.lookup(black_box(a)));
            }
        })
    });
    let mut out = vec![None; BATCH];
    g.bench_function("bulk", |bench| {
        bench.iter(|| {
            t.lookup_bulk(black_box(b.next()), &mut out);
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(benches, lpm4, lpm6);
criterion_main!(benches);
