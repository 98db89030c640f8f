//! `esp-enc` / `esp-dec`: the `esp-encrypt` and `esp-decrypt` stages (ipsec crate,
//! RFC 4303 + RFC 4106 AES-128-GCM, tunnel mode IPv4-in-IPv4, `ring` backend) on
//! batches of 256 engine buffers, one core.
//!
//! Timed: only the stage's `process` on a full batch. Not timed: copying the frame
//! templates into buffers (the "NIC"), freeing them, and for `esp-dec` producing the
//! fresh ESP packets (each needs a new sequence number, the replay window refuses
//! repeats). Frame sizes are wire sizes with FCS (`size - 4` bytes in the buffer);
//! Gbps counts the clear frames going in, like VPP's IPsec figures.
//! `mpps_per_core` is the total over the thread's CPU time (descheduled time is not
//! counted); `mpps_median_burst` is the median cost per packet of the timed sections
//! on the TSC.

use crate::{cycles, tsc_hz, Params, Report};
use dataplane::batch::{Batch, Out};
use dataplane::buf::Pool;
use dataplane::stage::{NodeStats, Stage};
use ipsec::stage::{EspDecrypt, EspEncrypt};
use ipsec::{Action, Algorithm, Backend, Direction, Ipsec, KeyMaterial, SaConfig, Selector};
use std::net::{IpAddr, Ipv4Addr};

const BATCH: usize = 256;

/// A UDP/IPv4 Ethernet frame of `size` bytes on the wire (FCS included).
fn frame(size: usize, i: usize) -> Vec<u8> {
    let len = size.saturating_sub(4).max(60);
    let mut f = vec![0u8; len];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 1, (i >> 8) as u8, i as u8]);
    let c = dataplane::proto::checksum::internet(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&1024u16.to_be_bytes());
    udp[2..4].copy_from_slice(&4791u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

/// An outbound and an inbound SA of SPI `spi` (one worker owns both).
fn sa_pair(spi: u32) -> anyhow::Result<(EspEncrypt, EspDecrypt)> {
    let src = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let dst = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    let km = KeyMaterial::new(Algorithm::Aes128Gcm16, &[0x42; 20]).map_err(anyhow::Error::msg)?;
    let mut cfg = SaConfig::tunnel(spi, Direction::Outbound, src, dst);
    cfg.backend = Backend::Ring;
    cfg.esn = true;
    let mut tx = Ipsec::new();
    let id = tx
        .sad
        .add(cfg.clone(), &km, 0)
        .map_err(anyhow::Error::msg)?;
    tx.spd.push_outbound(Selector::any(), Action::Protect(id));
    cfg.direction = Direction::Inbound;
    let mut rx = Ipsec::new();
    rx.sad.add(cfg, &km, 0).map_err(anyhow::Error::msg)?;
    Ok((EspEncrypt::new(tx), EspDecrypt::new(rx)))
}

/// CPU time this thread has run, in ns (`sum_exec_runtime` of
/// `/proc/thread-self/schedstat`): unlike the TSC it does not count time spent
/// preempted, which on these shared 2-core machines is most of the wall time.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Both clocks around timed sections, less the cost of reading them (calibrated on
/// empty sections).
#[derive(Default)]
struct Clocks {
    tsc: u64,
    cpu_ns: u64,
    /// Per-section cost of the clock reads themselves.
    tsc_cost: u64,
    cpu_cost: u64,
}

impl Clocks {
    fn calibrated() -> Self {
        let mut c = Clocks::default();
        let n = 2000;
        for _ in 0..n {
            c.time(|| {});
        }
        Clocks {
            tsc_cost: c.tsc / n,
            cpu_cost: c.cpu_ns / n,
            ..Clocks::default()
        }
    }

    /// Times `f`; returns its (TSC cycles, thread CPU ns if known).
    fn time(&mut self, f: impl FnOnce()) -> (u64, Option<u64>) {
        let (n0, c0) = (thread_cpu_ns(), cycles());
        f();
        let (c1, n1) = (cycles(), thread_cpu_ns());
        let tsc = c1.wrapping_sub(c0).saturating_sub(self.tsc_cost);
        self.tsc += tsc;
        let mut cpu = None;
        if let (Some(a), Some(b)) = (n0, n1) {
            let d = b.saturating_sub(a).saturating_sub(self.cpu_cost);
            self.cpu_ns += d;
            cpu = Some(d);
        }
        (tsc, cpu)
    }
}

/// Most batches per timed section (fewer clock reads per packet at small sizes).
const SECTION: usize = 16;
/// Packet bytes per timed section: about what a core's L2 holds, as after a NIC's
/// DMA into cache (DDIO); more would time DRAM misses the generator caused.
const SECTION_BYTES: u64 = 64 * 1024;

/// With `--workers N` every worker owns its own SA (SPI 0x10000001 + k), as the
/// engine steers an SA's traffic to its one owner (sequence numbers and the replay
/// window never shared).
fn run(p: &Params, decrypt: bool) -> anyhow::Result<Report> {
    let n = p.workers.max(1);
    let reports = crate::par_workers(n, &p.cores, |k, start| run_one(p, decrypt, k, start))?;
    crate::combine(reports)
}

fn run_one(
    p: &Params,
    decrypt: bool,
    k: usize,
    start: &std::sync::Barrier,
) -> anyhow::Result<Report> {
    let name = if decrypt { "esp-dec" } else { "esp-enc" };
    let pool =
        Pool::new(((SECTION + 2) * BATCH) as u32).ok_or_else(|| anyhow::anyhow!("buffer pool"))?;
    let mut out = Out::new(1, pool.cache());
    let (mut enc, mut dec) = sa_pair(0x1000_0001 + k as u32)?;
    let mut n_enc = NodeStats::new(enc.name(), enc.errors());
    let mut n_dec = NodeStats::new(dec.name(), dec.errors());
    // One batch worth of templates; IMIX interleaves sizes inside each batch.
    let templates: Vec<Vec<u8>> = (0..BATCH).map(|i| frame(p.pkt_size.nth(i), i)).collect();
    let wire_per_batch: u64 = (0..BATCH).map(|i| p.pkt_size.nth(i) as u64).sum();
    start.wait();
    let hz = tsc_hz(50);
    let warmup_ns = 200_000_000u64;
    let budget_ns = (p.seconds * 1e9) as u64;
    let mut clk = Clocks::calibrated();
    let (mut packets, mut bytes) = (0u64, 0u64);
    let mut warm = true;
    let section = ((SECTION_BYTES / wire_per_batch.max(1)) as usize).clamp(1, SECTION);
    let mut batches: Vec<Batch> = (0..section).map(|_| Batch::new()).collect();
    let mut rounds = 0u64;
    let mut per_section: Vec<f64> = Vec::with_capacity(1 << 20);
    loop {
        let spent = if clk.cpu_ns > 0 {
            clk.cpu_ns
        } else {
            (clk.tsc as f64 / hz * 1e9) as u64
        };
        if warm && spent >= warmup_ns {
            warm = false;
            clk = Clocks::calibrated();
            packets = 0;
            bytes = 0;
            n_enc = NodeStats::new(enc.name(), enc.errors());
            n_dec = NodeStats::new(dec.name(), dec.errors());
            per_section.clear();
        } else if !warm && spent >= budget_ns {
            break;
        }
        rounds += 1;
        anyhow::ensure!(rounds < 10_000_000, "no progress");
        for b in batches.iter_mut() {
            for t in &templates {
                let mut pkt = out
                    .cache
                    .alloc()
                    .ok_or_else(|| anyhow::anyhow!("pool empty"))?;
                pkt.copy_from(t).map_err(|e| anyhow::anyhow!("{e}"))?;
                pkt.meta.l3 = 14;
                b.push(pkt).map_err(|_| anyhow::anyhow!("batch full"))?;
            }
            if decrypt {
                enc.process(b, &mut n_enc, &mut out);
            }
            packets += b.len() as u64;
            bytes += wire_per_batch;
        }
        let in_section: usize = batches.iter().map(|b| b.len()).sum();
        let (tsc, _) = clk.time(|| {
            for b in batches.iter_mut() {
                if decrypt {
                    dec.process(b, &mut n_dec, &mut out);
                } else {
                    enc.process(b, &mut n_enc, &mut out);
                }
            }
        });
        if !warm && in_section > 0 && per_section.len() < per_section.capacity() {
            // seconds per packet of this section on the TSC (the thread's CPU time
            // advances in scheduler ticks, too coarse for one section)
            per_section.push(tsc as f64 / hz / in_section as f64);
        }
        for b in batches.iter_mut() {
            b.free_all(&mut out.cache);
        }
    }
    let node = if decrypt { &n_dec } else { &n_enc };
    let wall_secs = clk.tsc as f64 / hz;
    let secs = if clk.cpu_ns > 0 {
        clk.cpu_ns as f64 / 1e9
    } else {
        wall_secs
    };
    let total_mpps = packets as f64 / secs / 1e6;
    let median_mpps = 1.0 / crate::median(&mut per_section) / 1e6;
    let (mpps, headline, clock) = crate::headline(median_mpps, total_mpps, clk.cpu_ns > 0);
    let raw = raw_seal_mpps(p, hz)?;
    let mut extra = serde_json::Map::new();
    extra.insert(
        "cipher".into(),
        "AES-128-GCM (RFC 4106), ESN, tunnel IPv4".into(),
    );
    extra.insert("backend".into(), "ring".into());
    extra.insert("batch".into(), BATCH.into());
    extra.insert("batches_per_timed_section".into(), section.into());
    extra.insert(
        "timing".into(),
        if clk.cpu_ns > 0 {
            "thread CPU time (/proc/thread-self/schedstat)"
        } else {
            "TSC wall clock"
        }
        .into(),
    );
    extra.insert(
        "wall_mpps".into(),
        (packets as f64 / wall_secs / 1e6).into(),
    );
    extra.insert("raw_ring_seal_mpps".into(), raw.into());
    extra.insert(
        "show_errors".into(),
        dataplane::stage::show_errors([node].into_iter()).into(),
    );
    Ok(Report {
        scenario: name.into(),
        pkt_size: p.pkt_size.label(),
        packets,
        mpps_per_core: mpps,
        mpps_median_burst: median_mpps,
        mpps_total: total_mpps,
        headline,
        clock,
        gbps_per_core: bytes as f64 * 8.0 / secs / 1e9 * mpps / total_mpps,
        cycles_per_packet: hz / mpps / 1e6,
        drops: node.dropped(),
        extra,
        workers: 1,
        per_worker: Vec::new(),
    })
}

/// Reference under the same load: bare `ring` AES-128-GCM seals of the same
/// plaintext sizes (inner IP packet + ESP trailer), no ESP, for 0.3 s of CPU.
fn raw_seal_mpps(p: &Params, hz: f64) -> anyhow::Result<f64> {
    let km = KeyMaterial::new(Algorithm::Aes128Gcm16, &[0x42; 20]).map_err(anyhow::Error::msg)?;
    let key = ipsec::crypto::GcmKey::new(Backend::Ring, Algorithm::Aes128Gcm16, &km)
        .map_err(anyhow::Error::msg)?;
    let mut bufs: Vec<Vec<u8>> = (0..BATCH)
        .map(|i| {
            let ip = p.pkt_size.nth(i).saturating_sub(4).max(60) - 14;
            vec![0u8; ip + ipsec::esp::pad_len(ip) + 2]
        })
        .collect();
    let mut clk = Clocks::calibrated();
    let mut n = 0u64;
    let mut seq = 0u64;
    let spent = |c: &Clocks| {
        if c.cpu_ns > 0 {
            c.cpu_ns
        } else {
            (c.tsc as f64 / hz * 1e9) as u64
        }
    };
    while spent(&clk) < 300_000_000 {
        clk.time(|| {
            for _ in 0..SECTION {
                for b in bufs.iter_mut() {
                    seq += 1;
                    let _ = key.seal(&seq.to_be_bytes(), &[0u8; 12], b);
                }
            }
        });
        n += (SECTION * BATCH) as u64;
    }
    let secs = if clk.cpu_ns > 0 {
        clk.cpu_ns as f64 / 1e9
    } else {
        clk.tsc as f64 / hz
    };
    Ok(n as f64 / secs / 1e6)
}

/// `esp-enc`: SPD lookup + ESP tunnel encapsulation + AES-128-GCM seal.
pub fn esp_enc(p: &Params) -> anyhow::Result<Report> {
    run(p, false)
}

/// `esp-dec`: SPI lookup + anti-replay (ESN) + AES-128-GCM open + decapsulation.
pub fn esp_dec(p: &Params) -> anyhow::Result<Report> {
    run(p, true)
}
