//! `vcpe`: the vCPE VNF's graph (`vcpe::vnf::build`, as the `vcpe` binary runs it)
//! between two in-memory virtio ring pairs, LAN → WAN. Every other packet goes to
//! the Internet (firewall, NAT44 to the WAN address, route) and every other one to
//! the remote site (firewall, ESP AES-GCM-128 tunnel-mode encryption, route to the
//! peer), from 1024 LAN flows; frame sizes from `--pkt-size` (IMIX by default in
//! RESULTS.md).
//!
//! One thread plays generator, vCPE and sink; only one iteration of the engine's
//! worker loop (receive burst, graph, transmit burst) is inside the cycle counter.
//! `mpps_per_core` is the median cost per packet over the timed bursts;
//! `extra.natted` and `extra.encrypted` count what each path did.
//!
//! `--workers N`: the vCPE is built with `engine.workers = N`
//! (`vcpe::vnf::build_workers`, one graph per worker joined by the hand-off mesh)
//! and each worker runs on its own pinned thread (`par_workers`) with its own
//! generator and sink. Each worker's LAN hosts are ones it owns
//! (`Nat44::inside_owner`) and its tunnel traffic goes to a site of its own (N
//! tunnels, worker k's outbound SPI one `ipsec::stage::sa_owner` gives to k), as
//! when the NIC steers each LAN host and each tunnel to its worker: no packet is
//! handed off in steady state (`extra.handoffs`; the hand-off paths are tested in
//! `vnfs/vcpe/tests/workers.rs`). One worker: the one tunnel and flows as before.

use crate::{tsc_hz, Params, Report};
use anyhow::{anyhow, Context};
use dataplane::batch::Batch;
use dataplane::buf::Pool;
use dataplane::port::{mem, Port};
use dataplane::stage::Pipeline;
use dataplane::stages::nat::Nat44;
use dataplane::stages::neigh::key_v4;
use dataplane::worker::{Handoff, TxPolicy, Worker, WorkerConfig};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Instant;

const CONFIG: &str = r#"
[engine]
pool_buffers = 16384
[lan]
mac = "02:c9:00:00:0a:01"
address = "192.168.1.1/24"
[wan]
mac = "02:c9:00:00:0a:02"
address = "198.51.100.2/24"
gateway = "198.51.100.1"
"#;

/// Most workers the scenario runs (one tunnel and one /24 remote site each).
const MAX_WORKERS: usize = 64;

/// The configuration for `n` workers: tunnel t to site 192.168.(2+t).0/24 behind
/// peer 198.51.100.(3+t), its outbound SPI the first from 0x1001 on (after the
/// previous tunnel's) that worker t owns. One worker: the one tunnel `site-b`
/// with SPIs 0x1001/0x2001.
fn config(n: usize) -> String {
    let mut c = CONFIG.replace("[engine]\n", &format!("[engine]\nworkers = {n}\n"));
    let mut spi = 0x1000u32;
    for t in 0..n {
        spi += 1;
        while usize::from(ipsec::stage::sa_owner(spi, n as u16)) != t {
            spi += 1;
        }
        let name = if t == 0 {
            "site-b".to_string()
        } else {
            format!("site-{t}")
        };
        let _ = write!(
            c,
            "[[tunnel]]\nname = \"{name}\"\npeer = \"198.51.100.{}\"\nlocal = \"192.168.1.0/24\"\nremote = \"192.168.{}.0/24\"\n[tunnel.static]\nspi_out = {spi}\nspi_in = {}\nkey_out = \"0123456789abcdef0123456789abcdef01020304\"\nkey_in = \"fedcba9876543210fedcba9876543210a1a2a3a4\"\n",
            3 + t,
            2 + t,
            0x2001 + t,
        );
    }
    c
}

/// A UDP/IPv4 frame of `size` bytes on the wire (FCS included) from a LAN host.
fn frame(size: usize, src: [u8; 4], dst: [u8; 4], sport: u16, buf: &mut Vec<u8>) {
    let len = size.saturating_sub(4).max(60);
    buf.clear();
    buf.resize(len, 0);
    buf[0..6].copy_from_slice(&[0x02, 0xc9, 0, 0, 0x0a, 0x01]);
    buf[6..12].copy_from_slice(&[2, 0, 0, 0, 1, 0x10]);
    buf[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    buf[14] = 0x45;
    buf[16..18].copy_from_slice(&ip_len.to_be_bytes());
    buf[22] = 64;
    buf[23] = 17;
    buf[26..30].copy_from_slice(&src);
    buf[30..34].copy_from_slice(&dst);
    buf[34..36].copy_from_slice(&sport.to_be_bytes());
    buf[36..38].copy_from_slice(&9000u16.to_be_bytes());
    buf[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    let c = dataplane::proto::checksum::internet(&buf[14..34]);
    buf[24..26].copy_from_slice(&c.to_be_bytes());
}

/// Flows: 1024 (source host, port) pairs, each alternately to the Internet and to
/// the remote site.
const FLOWS: usize = 1024;

pub fn vcpe(p: &Params) -> anyhow::Result<Report> {
    let n = p.workers.max(1);
    if n > MAX_WORKERS {
        anyhow::bail!("vcpe: --workers {n} is over {MAX_WORKERS}");
    }
    let cfg = vcpe::Config::from_toml(&config(n)).map_err(|e| anyhow!("{e}"))?;
    let built = vcpe::vnf::build_workers(&cfg, &[]).map_err(|e| anyhow!("{e}"))?;
    let l3 = &built.vcpe.l3;
    let mut neigh = vec![([198, 51, 100, 1], [2, 0, 0, 0, 0, 0xfe])];
    for t in 0..n {
        neigh.push(([198, 51, 100, 3 + t as u8], [0x02, 0xc9, 0, 0, 0x0b, 0x02]));
    }
    for (ip, mac) in neigh {
        if !l3.neigh.learn(key_v4(Ipv4Addr::from(ip)), mac, 0) {
            anyhow::bail!("neighbour table full");
        }
    }
    // Worker k takes its graph and its end of the mesh on its own thread.
    let graphs: Vec<Mutex<Option<Pipeline>>> = built
        .graphs
        .into_iter()
        .map(|g| Mutex::new(Some(g)))
        .collect();
    let mesh: Vec<Mutex<Option<Handoff>>> = dataplane::worker::handoff_mesh(n, 1024)
        .into_iter()
        .map(|h| Mutex::new((n > 1).then_some(h)))
        .collect();
    let take = |k: usize| -> anyhow::Result<(Pipeline, Option<Handoff>)> {
        let g = graphs
            .get(k)
            .and_then(|m| m.lock().ok()?.take())
            .ok_or_else(|| anyhow!("worker {k}: no graph"))?;
        let h = mesh.get(k).and_then(|m| m.lock().ok()?.take());
        Ok((g, h))
    };
    let reports = crate::par_workers(n, &p.cores, |k, start| {
        let (g, h) = take(k)?;
        worker(p, g, h, k, n, start)
    })?;
    crate::combine(reports)
}

/// Worker `k` of `n`: its own generator, queues and sink around its graph.
fn worker(
    p: &Params,
    graph: Pipeline,
    handoff: Option<Handoff>,
    k: usize,
    n: usize,
    start: &std::sync::Barrier,
) -> anyhow::Result<Report> {
    let pool = Pool::new(16384).context("pool")?;
    let (mut gen_port, lan) = mem::pair("gen", "lan", 1024).context("ring")?;
    let (wan, mut sink) = mem::pair("wan", "sink", 1024).context("ring")?;
    let mut worker = Worker::new(
        vec![lan, wan],
        graph,
        pool.cache(),
        WorkerConfig {
            tx_policy: TxPolicy::Drop,
            ..WorkerConfig::default()
        },
    )
    .map_err(|e| anyhow!("vcpe graph: {e}"))?;
    if let Some(h) = handoff {
        worker = worker.with_handoff(h);
    }
    let mut gc = pool.cache();
    // The LAN hosts this worker owns (all of them with one worker).
    let hosts: Vec<[u8; 4]> = (0..240u8)
        .map(|i| [192, 168, 1, 10 + i])
        .filter(|h| usize::from(Nat44::inside_owner(u32::from_be_bytes(*h), n as u16)) == k)
        .take(128)
        .collect();
    if hosts.is_empty() {
        anyhow::bail!("worker {k} of {n} owns no LAN host");
    }
    let site = [192, 168, 2 + k as u8, 20];
    // Templates: one per (IMIX slot, flow), alternating Internet / remote site.
    let slots = crate::PktSize::IMIX_SEQ.len();
    let mut tpl = Vec::with_capacity(slots * FLOWS * 2);
    for f in 0..FLOWS {
        let host = hosts[f % hosts.len()];
        let sport = 10000 + f as u16;
        for (i, dst) in [[203, 0, 113, (f % 250) as u8 + 1], site]
            .iter()
            .enumerate()
        {
            for s in 0..slots {
                let mut b = Vec::new();
                frame(p.pkt_size.nth(s + i), host, *dst, sport, &mut b);
                tpl.push(b);
            }
        }
    }
    start.wait();
    let hz = tsc_hz(50);
    let mut gb = Batch::new();
    let mut sb = Batch::new();
    let mut k = 0usize;
    let (mut bytes, mut received) = (0u64, 0u64);
    let mut timer = crate::BurstTimer::new();
    let mut timing = false;
    let t0 = Instant::now();
    loop {
        let el = t0.elapsed().as_secs_f64();
        if !timing && el > 0.3 {
            timing = true;
            timer.reset();
            bytes = 0;
            received = 0;
        }
        if timing && el > p.seconds + 0.3 {
            break;
        }
        // generator (not timed): flow k/2, alternating Internet and tunnel
        while !gb.is_full() {
            let Some(mut pk) = gc.alloc() else { break };
            let flow = (k / 2) % FLOWS;
            let t = &tpl[(flow * 2 + (k & 1)) * slots + (k / 2) % slots];
            k += 1;
            if pk.copy_from(t).is_err() {
                gc.free(pk);
                continue;
            }
            gb.push(pk).ok();
        }
        gen_port.tx_burst(&mut gc, &mut gb);
        // the vCPE (timed): one iteration of the worker loop
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
    let mut counters = Vec::new();
    worker.graph.counters(&mut |node, c| {
        counters.push((node, c.name, c.value));
    });
    for (node, name, key) in [
        ("vcpe-select", "to_nat", "natted"),
        ("esp-encrypt", "encrypted", "encrypted"),
        ("firewall", "connections-active", "fw_connections"),
        ("nat44", "sessions-active", "nat_sessions"),
    ] {
        if let Some((_, _, v)) = counters.iter().find(|(n, c, _)| *n == node && *c == name) {
            extra.insert(key.into(), (*v).into());
        }
    }
    extra.insert("flows".into(), (FLOWS as u64).into());
    extra.insert("handoffs".into(), worker.stats.handed_off.into());
    extra.insert("received".into(), received.into());
    extra.insert("tsc_ghz".into(), (hz / 1e9).into());
    extra.insert("mpps_from_mean".into(), (hz / mean_cpp / 1e6).into());
    extra.insert("bursts".into(), (timer.per_burst.len() as u64).into());
    Ok(Report {
        scenario: "vcpe".into(),
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
        workers: 1,
        per_worker: Vec::new(),
        extra,
    })
}
