//! `l3fwd-small` (16 routes) and `l3fwd-bgp` (1M prefixes with the BGP-like
//! prefix-length mix of `dataplane::lpm::gen`, uniformly random destinations among
//! them): the router VNF pipeline between two in-memory virtio ring pairs.
//!
//! One thread plays generator, router and sink; only the router's part (receive
//! burst, pipeline, transmit burst) is inside the cycle counter, so the figure is the
//! router's cost per packet on one core. `mpps_per_core` and `cycles_per_packet` use
//! the median cost per packet over all timed bursts (a burst during which the thread
//! was descheduled is an outlier, not the median); `extra.mpps_from_mean` is the
//! plain mean.

use crate::{tsc_hz, Params, Report};
use anyhow::{anyhow, Context};
use dataplane::batch::Batch;
use dataplane::buf::Pool;
use dataplane::lpm::gen;
use dataplane::port::{mem, Port};
use dataplane::worker::{TxPolicy, Worker, WorkerConfig};
use std::fmt::Write;
use std::time::Instant;
use vnf_router::{Config, Router};

const CONFIG: &str = r#"
[engine]
pool_buffers = 16384
tbl8_groups = 1024
[[interface]]
name = "access"
mac = "02:00:00:00:01:01"
ipv4 = ["10.0.0.1/24"]
[[interface]]
name = "core"
mac = "02:00:00:00:02:01"
ipv4 = ["10.0.1.1/24"]
[route_file]
path = "generated"
next_hops = ["10.0.1.2", "10.0.1.3", "10.0.1.4", "10.0.1.5"]
[[neighbor]]
ip = "10.0.1.2"
mac = "02:00:00:00:02:02"
[[neighbor]]
ip = "10.0.1.3"
mac = "02:00:00:00:02:03"
[[neighbor]]
ip = "10.0.1.4"
mac = "02:00:00:00:02:04"
[[neighbor]]
ip = "10.0.1.5"
mac = "02:00:00:00:02:05"
"#;

/// A UDP/IPv4 frame of `size` bytes on the wire (FCS included, so `size - 4` bytes
/// are built) to `dst`.
fn frame(size: usize, dst: u32, buf: &mut Vec<u8>) {
    let len = size.saturating_sub(4).max(60);
    buf.clear();
    buf.resize(len, 0);
    buf[0..6].copy_from_slice(&[2, 0, 0, 0, 1, 1]);
    buf[6..12].copy_from_slice(&[2, 0, 0, 0, 1, 0x10]);
    buf[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    buf[14] = 0x45;
    buf[16..18].copy_from_slice(&ip_len.to_be_bytes());
    buf[22] = 64;
    buf[23] = 17;
    buf[26..30].copy_from_slice(&[10, 0, 0, 10]);
    buf[30..34].copy_from_slice(&dst.to_be_bytes());
    buf[34..36].copy_from_slice(&1024u16.to_be_bytes());
    buf[36..38].copy_from_slice(&1025u16.to_be_bytes());
    buf[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    let c = dataplane::proto::checksum::internet(&buf[14..34]);
    buf[24..26].copy_from_slice(&c.to_be_bytes());
}

fn run(p: &Params, name: &str, nroutes: usize) -> anyhow::Result<Report> {
    let routes = gen::bgp_like_v4(nroutes, 42);
    let mut text = String::with_capacity(nroutes * 22);
    for (i, r) in routes.iter().enumerate() {
        let a = r.addr.to_be_bytes();
        let _ = writeln!(
            text,
            "{}.{}.{}.{}/{} {}",
            a[0],
            a[1],
            a[2],
            a[3],
            r.len,
            i % 4
        );
    }
    let cfg = Config::from_toml(CONFIG)?;
    let t_build = Instant::now();
    let router = Router::build(&cfg, &[], Some(&text)).map_err(|e| anyhow!("{e}"))?;
    let build_s = t_build.elapsed().as_secs_f64();
    drop(text);
    let dsts = gen::addrs_in_v4(&routes, 1 << 20, 7);
    drop(routes);
    let n = p.workers.max(1);
    let reports = crate::par_workers(n, &p.cores, |k, start| {
        worker(p, name, &router, &dsts, k, n, start, build_s)
    })?;
    crate::combine(reports)
}

/// Worker `k` of `n`: its own generator, queues and sink around the router's graph
/// (the L3 tables are shared, as the router binary's workers share them); destinations
/// start at a different offset per worker.
#[allow(clippy::too_many_arguments)]
fn worker(
    p: &Params,
    name: &str,
    router: &Router,
    dsts: &[u32],
    k: usize,
    n: usize,
    start: &std::sync::Barrier,
    build_s: f64,
) -> anyhow::Result<Report> {
    let pool = Pool::new(16384).context("pool")?;
    let (mut gen_port, r_in) = mem::pair("gen", "access", 1024).context("ring")?;
    let (r_out, mut sink) = mem::pair("core", "sink", 1024).context("ring")?;
    // The router's graph in the engine's worker loop, as the binary runs it.
    let mut worker = Worker::new(
        vec![r_in, r_out],
        router.pipeline_for(k as u16, n as u16),
        pool.cache(),
        WorkerConfig {
            tx_policy: TxPolicy::Drop,
            ..WorkerConfig::default()
        },
    )
    .map_err(|e| anyhow!("router graph: {e}"))?;
    let mut gc = pool.cache();
    // Pre-built frames, one per IMIX slot, patched per packet with the destination.
    let mut tpl = Vec::new();
    for i in 0..crate::PktSize::IMIX_SEQ.len() {
        let mut b = Vec::new();
        frame(p.pkt_size.nth(i), 0, &mut b);
        tpl.push(b);
    }
    start.wait();
    let hz = tsc_hz(50);
    let mut gb = Batch::new();
    let mut sb = Batch::new();
    let mut di = k * 7919;
    let mut k = 0usize;
    let mut bytes = 0u64;
    let mut received = 0u64;
    // cycles per packet of every timed burst: the median filters out bursts during
    // which the thread was descheduled (shared, noisy machines)
    let mut timer = crate::BurstTimer::new();
    let warm = Instant::now();
    let mut timing = false;
    let t0 = Instant::now();
    loop {
        let el = t0.elapsed().as_secs_f64();
        if !timing && warm.elapsed().as_secs_f64() > 0.3 {
            timing = true;
            timer.reset();
            bytes = 0;
            received = 0;
        }
        if timing && el > p.seconds + 0.3 {
            break;
        }
        // generator (not timed)
        while !gb.is_full() {
            let Some(mut pk) = gc.alloc() else { break };
            let t = &tpl[k % tpl.len()];
            k += 1;
            let d = dsts[di & ((1 << 20) - 1)];
            di += 1;
            if pk.copy_from(t).is_err() {
                gc.free(pk);
                continue;
            }
            let data = pk.data_mut();
            let old = u32::from_be_bytes([data[30], data[31], data[32], data[33]]);
            data[30..34].copy_from_slice(&d.to_be_bytes());
            // RFC 1624 update of the header checksum for the new destination
            let hc = u16::from_be_bytes([data[24], data[25]]);
            let c = dataplane::proto::checksum::update32(hc, old, d);
            data[24..26].copy_from_slice(&c.to_be_bytes());
            gb.push(pk).ok();
        }
        gen_port.tx_burst(&mut gc, &mut gb);
        // router (timed): one iteration of the worker loop
        let now = (el * 1e9) as u64;
        timer.poll(&mut worker, now, timing);
        // sink (not timed)
        let got = sink.rx_burst(&mut gc, &mut sb);
        received += got as u64;
        for pk in sb.iter() {
            bytes += pk.len() as u64 + 4;
        }
        sb.free_all(&mut gc);
    }
    let median_cpp = timer.median_cpp();
    let mean_cpp = timer.mean_cpp();
    let (mpps, headline, clock) =
        crate::headline(hz / median_cpp / 1e6, hz / mean_cpp / 1e6, false);
    let drops: u64 = worker.graph.nodes().map(|n| n.dropped()).sum();
    let mut extra = serde_json::Map::new();
    extra.insert("routes".into(), (router.l3.routes4() as u64).into());
    extra.insert("route_build_s".into(), build_s.into());
    extra.insert("received".into(), received.into());
    extra.insert("tsc_ghz".into(), (hz / 1e9).into());
    extra.insert("mpps_from_mean".into(), (hz / mean_cpp / 1e6).into());
    extra.insert("bursts".into(), (timer.per_burst.len() as u64).into());
    Ok(Report {
        scenario: name.into(),
        pkt_size: p.pkt_size.label(),
        packets: timer.packets,
        mpps_per_core: mpps,
        mpps_median_burst: hz / median_cpp / 1e6,
        mpps_total: hz / mean_cpp / 1e6,
        headline,
        clock,
        gbps_per_core: if received > 0 {
            bytes as f64 * 8.0 / received as f64 * mpps / 1e3
        } else {
            0.0
        },
        cycles_per_packet: if headline == "total" {
            mean_cpp
        } else {
            median_cpp
        },
        drops,
        extra,
        workers: 1,
        per_worker: Vec::new(),
    })
}

pub fn l3fwd_small(p: &Params) -> anyhow::Result<Report> {
    run(p, "l3fwd-small", 16)
}

pub fn l3fwd_bgp(p: &Params) -> anyhow::Result<Report> {
    run(p, "l3fwd-bgp", 1_000_000)
}
