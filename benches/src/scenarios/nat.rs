//! NAT, firewall and policer scenarios: one stage on one core, fed batches of 256
//! frames built by the generator outside the timed part; only `Stage::process` (and
//! the stage's periodic `tick`) run inside the cycle counter.
//!
//! - `nat44`: 1M active CGNAT sessions (16384 subscribers × 64 flows, port blocks of
//!   512), 64 B UDP, each packet a random one of the sessions in a random direction.
//! - `nat44-new`: every packet opens a new session (new inside endpoint, so a new
//!   mapping, port allocation and four table inserts); UDP timeout 1 s and the expiry
//!   scan in `tick` keep the table in steady state. Mpps = million new sessions/s.
//! - `fw`: 1000 rules (random prefixes and port ranges, first match), 100k
//!   established connections, random packets among them in both directions; the
//!   rule classifier alone on random tuples is reported as `classify_mpps`.
//! - `policer`: RFC 2697 srTCM per subscriber (65536 meters), random subscribers.

use crate::{cycles, tsc_hz, Params, Report};
use anyhow::anyhow;
use dataplane::batch::{Batch, Out, BATCH_SIZE};
use dataplane::buf::{Pool, PoolCache};
use dataplane::stage::{NodeStats, Stage};
use dataplane::stages::firewall::{Action, Firewall, FirewallConfig, RuleConfig};
use dataplane::stages::nat::{CgnatConfig, Flow, Nat44, NatConfig, Timeouts};
use dataplane::stages::qos::{MeterConfig, MeterKey, Policer, PolicerConfig, Verdict};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

const REMOTE: u32 = 0xc000_0201; // 192.0.2.1
const REMOTE_PORT: u16 = 9;

/// Writes an Ethernet/IPv4/UDP frame of `size` bytes on the wire (FCS excluded from
/// the buffer) with a valid IPv4 header checksum and no UDP checksum (RFC 768).
fn frame(buf: &mut [u8], size: usize, src: u32, sport: u16, dst: u32, dport: u16) -> usize {
    let len = size.saturating_sub(4).clamp(60, buf.len());
    let b = &mut buf[..len];
    b.fill(0);
    b[0..6].copy_from_slice(&[2, 0, 0, 0, 1, 1]);
    b[6..12].copy_from_slice(&[2, 0, 0, 0, 1, 0x10]);
    b[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    b[14] = 0x45;
    b[16..18].copy_from_slice(&ip_len.to_be_bytes());
    b[22] = 64;
    b[23] = 17;
    b[26..30].copy_from_slice(&src.to_be_bytes());
    b[30..34].copy_from_slice(&dst.to_be_bytes());
    b[34..36].copy_from_slice(&sport.to_be_bytes());
    b[36..38].copy_from_slice(&dport.to_be_bytes());
    b[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    let c = dataplane::proto::checksum::internet(&b[14..34]);
    b[24..26].copy_from_slice(&c.to_be_bytes());
    len
}

/// Fills `b` with up to `n` frames from `make(i, buf) -> (len, port)`.
fn fill(
    b: &mut Batch,
    cache: &mut PoolCache,
    n: usize,
    mut make: impl FnMut(&mut [u8]) -> (usize, u16),
) {
    let mut tmp = [0u8; 1600];
    while b.len() < n {
        let Some(mut p) = cache.alloc() else { break };
        let (len, port) = make(&mut tmp);
        if p.copy_from(&tmp[..len]).is_err() {
            cache.free(p);
            break;
        }
        p.meta.port = port;
        if let Err(p) = b.push(p) {
            cache.free(p);
            break;
        }
    }
}

/// What one timed run measured.
struct Run {
    packets: u64,
    cycles: u64,
    bytes: u64,
    hz: f64,
    /// Median over batches of cycles per packet: robust to the thread being
    /// descheduled on a shared machine (a preempted batch is an outlier).
    median_cpp: f64,
}

/// Runs `stage` for `seconds` (after 0.3 s of warm-up) on batches from `make`;
/// `tick_every` batches the stage's `tick` runs (timed too).
fn drive(
    stage: &mut dyn Stage,
    node: &mut NodeStats,
    out: &mut Out,
    seconds: f64,
    tick_every: u32,
    mut make: impl FnMut(&mut [u8]) -> (usize, u16),
) -> Run {
    let hz = tsc_hz(50);
    let mut gc = out.cache.pool().cache();
    let mut b = Batch::new();
    let t0 = Instant::now();
    let (mut packets, mut cyc, mut bytes) = (0u64, 0u64, 0u64);
    let mut timing = false;
    let mut nb = 0u32;
    let mut per_batch: Vec<f32> = Vec::with_capacity(1 << 22);
    loop {
        let el = t0.elapsed().as_secs_f64();
        if !timing && el > 0.3 {
            timing = true;
            (packets, cyc, bytes) = (0, 0, 0);
            per_batch.clear();
        }
        if timing && el > seconds + 0.3 {
            break;
        }
        fill(&mut b, &mut gc, BATCH_SIZE, &mut make);
        let n = b.len() as u64;
        let sz: u64 = b.iter().map(|p| p.len() as u64 + 4).sum();
        out.now_ns = t0.elapsed().as_nanos() as u64 + 1_000_000_000;
        let c0 = cycles();
        stage.process(&mut b, node, out);
        nb += 1;
        if nb.is_multiple_of(tick_every) {
            stage.tick(out);
        }
        let c1 = cycles();
        cyc += c1.wrapping_sub(c0);
        if n > 0 && per_batch.len() < per_batch.capacity() {
            per_batch.push(c1.wrapping_sub(c0) as f32 / n as f32);
        }
        packets += n;
        bytes += sz;
        b.free_all(&mut gc);
        for q in out.ports.iter_mut() {
            q.free_all(&mut gc);
        }
    }
    per_batch.sort_unstable_by(|a, b| a.total_cmp(b));
    let median_cpp = per_batch.get(per_batch.len() / 2).copied().unwrap_or(0.0) as f64;
    Run {
        packets,
        cycles: cyc,
        bytes,
        hz,
        median_cpp,
    }
}

fn report(
    name: &str,
    p: &Params,
    r: &Run,
    drops: u64,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Report {
    // Per-core rate from the median batch cost; the mean (which counts time the
    // thread spent descheduled on a shared machine) is reported beside it.
    let mean_cpp = r.cycles as f64 / r.packets.max(1) as f64;
    let median_mpps = if r.median_cpp > 0.0 {
        r.hz / r.median_cpp / 1e6
    } else {
        f64::NAN
    };
    let total_mpps = r.hz / mean_cpp / 1e6;
    let (mpps, headline, clock) = crate::headline(median_mpps, total_mpps, false);
    let cpp = r.hz / mpps / 1e6;
    let mean_bytes = r.bytes as f64 / r.packets.max(1) as f64;
    let mut extra = extra;
    extra.insert("mean_cycles_per_packet".into(), mean_cpp.into());
    extra.insert("mpps_from_mean".into(), (r.hz / mean_cpp / 1e6).into());
    Report {
        scenario: name.into(),
        pkt_size: p.pkt_size.label(),
        packets: r.packets,
        mpps_per_core: mpps,
        mpps_median_burst: median_mpps,
        mpps_total: total_mpps,
        headline,
        clock,
        gbps_per_core: mpps * mean_bytes * 8.0 / 1e3,
        cycles_per_packet: cpp,
        drops,
        extra,
        workers: 1,
        per_worker: Vec::new(),
    }
}

fn drop_map(node: &NodeStats) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (i, c) in node.drops.iter().enumerate() {
        if *c > 0 {
            m.insert(node.reason_name(i).into(), (*c).into());
        }
    }
    m.into()
}

const SUBS: u32 = 16384;
const FLOWS_PER_SUB: u32 = 64;

fn sub_addr(i: u32) -> u32 {
    0x6440_0000 + i // 100.64.0.0/10
}

/// `nat44`: 1M active sessions, random flows among them, both directions. With
/// `--workers N` each worker runs its own `nat44` (`Nat44::new_worker`) over the
/// subscribers it owns (about 1M/N sessions each, 1M in all) and gets only its own
/// traffic, as when the NIC steers upstream by subscriber and downstream by outside
/// port range (flow director rules): no packet is handed off in this scenario (the
/// hand-off path is tested in `dataplane/tests/nat_workers.rs`).
pub fn nat44(p: &Params) -> anyhow::Result<Report> {
    let n = p.workers.max(1);
    let reports = crate::par_workers(n, &p.cores, |k, start| nat44_worker(p, k, n, start))?;
    crate::combine(reports)
}

fn nat44_worker(
    p: &Params,
    k: usize,
    n: usize,
    start: &std::sync::Barrier,
) -> anyhow::Result<Report> {
    let owned: Vec<u32> = (0..SUBS * FLOWS_PER_SUB)
        .filter(|f| usize::from(Nat44::inside_owner(sub_addr(f / FLOWS_PER_SUB), n as u16)) == k)
        .collect();
    let n_flows = owned.len() as u32;
    if owned.is_empty() {
        return Err(anyhow!("worker {k} of {n} owns no subscriber"));
    }
    let cfg = NatConfig {
        inside_ports: vec![0],
        pool: vec!["198.51.100.0/24".into()],
        max_sessions: (n_flows + n_flows / 8).max(1024),
        max_subscribers: SUBS * 2,
        cgnat: Some(CgnatConfig {
            block_size: 512,
            blocks_per_subscriber: 4,
            sessions_per_subscriber: 4000,
            log: true,
        }),
        log_capacity: 1 << 17,
        ..NatConfig::default()
    };
    let mut nat = Nat44::new_worker(&cfg, k as u16, n as u16).map_err(|e| anyhow!("{e}"))?;
    let pool = Pool::new(8192).ok_or_else(|| anyhow!("buffer pool"))?;
    let mut out = Out::new(2, pool.cache());
    let mut node = NodeStats::new("nat44", nat.errors());
    // Set-up: open every session once (timed separately).
    let size = p.pkt_size;
    let t_setup = Instant::now();
    let mut gc = pool.cache();
    let mut b = Batch::new();
    let mut next = 0u32;
    out.now_ns = 1_000_000_000;
    while next < n_flows {
        fill(&mut b, &mut gc, BATCH_SIZE, |buf| {
            let f = owned[next as usize % owned.len()];
            next += 1;
            let (s, j) = (f / FLOWS_PER_SUB, f % FLOWS_PER_SUB);
            (
                frame(
                    buf,
                    size.nth(f as usize),
                    sub_addr(s),
                    10_000 + j as u16,
                    REMOTE,
                    REMOTE_PORT,
                ),
                0,
            )
        });
        nat.process(&mut b, &mut node, &mut out);
        b.free_all(&mut gc);
        if next >= n_flows {
            break;
        }
    }
    let setup_s = t_setup.elapsed().as_secs_f64();
    let sessions = nat.session_count();
    if sessions < n_flows as usize * 99 / 100 {
        return Err(anyhow!(
            "set-up opened only {sessions} of {n_flows} sessions"
        ));
    }
    // Outside ports of every flow, for the out→in direction.
    let mut ext = vec![(0u32, 0u16); n_flows as usize];
    for (i, e) in ext.iter_mut().enumerate() {
        let f = owned[i];
        let (s, j) = (f / FLOWS_PER_SUB, f % FLOWS_PER_SUB);
        if let Some((a, port)) = nat.lookup_in2out(&Flow {
            src: sub_addr(s),
            sport: 10_000 + j as u16,
            dst: REMOTE,
            dport: REMOTE_PORT,
            proto: 17,
        }) {
            *e = (u32::from(a), port);
        }
    }
    let setup_drops = node.dropped();
    let mut node = NodeStats::new("nat44", nat.errors());
    let mut rng = SmallRng::seed_from_u64(7 + k as u64);
    let mut pk = 0usize;
    start.wait();
    let r = drive(&mut nat, &mut node, &mut out, p.seconds, 64, |buf| {
        let i = rng.gen_range(0..n_flows);
        let f = owned[i as usize];
        let sz = size.nth(pk);
        pk += 1;
        let (s, j) = (f / FLOWS_PER_SUB, f % FLOWS_PER_SUB);
        if rng.gen::<bool>() {
            (
                frame(buf, sz, sub_addr(s), 10_000 + j as u16, REMOTE, REMOTE_PORT),
                0,
            )
        } else {
            let (a, port) = ext[i as usize];
            (frame(buf, sz, REMOTE, REMOTE_PORT, a, port), 1)
        }
    });
    let mut extra = serde_json::Map::new();
    extra.insert("sessions".into(), (nat.session_count() as u64).into());
    extra.insert("subscribers".into(), (nat.subscriber_count() as u64).into());
    extra.insert("port_blocks".into(), nat.blocks_in_use().into());
    extra.insert(
        "setup_sessions_per_s".into(),
        (sessions as f64 / setup_s).into(),
    );
    extra.insert("setup_drops".into(), setup_drops.into());
    extra.insert(
        "table_mib".into(),
        (nat.memory() as f64 / (1 << 20) as f64).into(),
    );
    extra.insert("drop_reasons".into(), drop_map(&node));
    extra.insert("tsc_ghz".into(), (r.hz / 1e9).into());
    extra.insert("handoffs".into(), node.handoffs.into());
    Ok(report("nat44", p, &r, node.dropped(), extra))
}

/// `nat44-new`: a new session per packet.
pub fn nat44_new(p: &Params) -> anyhow::Result<Report> {
    let cfg = NatConfig {
        inside_ports: vec![0],
        pool: vec!["198.51.100.0/24".into()],
        max_sessions: 3 << 20,
        max_subscribers: SUBS * 2,
        timeouts: Timeouts {
            udp: 1,
            ..Timeouts::default()
        },
        cgnat: Some(CgnatConfig {
            block_size: 512,
            blocks_per_subscriber: 8,
            sessions_per_subscriber: 4000,
            log: true,
        }),
        expiry_scan: 2048,
        log_capacity: 1 << 16,
        ..NatConfig::default()
    };
    let mut nat = Nat44::new(&cfg).map_err(|e| anyhow!("{e}"))?;
    let pool = Pool::new(8192).ok_or_else(|| anyhow!("buffer pool"))?;
    let mut out = Out::new(2, pool.cache());
    let mut node = NodeStats::new("nat44", nat.errors());
    let size = p.pkt_size;
    let mut n = 0u64;
    let r = drive(&mut nat, &mut node, &mut out, p.seconds, 1, |buf| {
        // A new inside endpoint per packet: subscriber n % SUBS, source port cycling
        // through 1024..65535, remote port changing every full cycle.
        let s = (n % u64::from(SUBS)) as u32;
        let round = n / u64::from(SUBS);
        let sport = 1024 + (round % 64_000) as u16;
        let rport = 1 + ((round / 64_000) % 60_000) as u16;
        let len = frame(buf, size.nth(n as usize), sub_addr(s), sport, REMOTE, rport);
        n += 1;
        (len, 0)
    });
    let created = nat.stats.sessions_created;
    let mut extra = serde_json::Map::new();
    extra.insert("sessions_created".into(), created.into());
    extra.insert("sessions_expired".into(), nat.stats.sessions_expired.into());
    extra.insert(
        "sessions_active_at_end".into(),
        (nat.session_count() as u64).into(),
    );
    extra.insert(
        "new_sessions_per_s".into(),
        ((r.packets - node.dropped()) as f64 / (r.cycles as f64 / r.hz)).into(),
    );
    extra.insert("log_records_lost".into(), nat.log.lost.into());
    extra.insert("drop_reasons".into(), drop_map(&node));
    extra.insert("tsc_ghz".into(), (r.hz / 1e9).into());
    Ok(report("nat44-new", p, &r, node.dropped(), extra))
}

/// `fw`: 1000 rules, 100k established connections.
pub fn fw(p: &Params) -> anyhow::Result<Report> {
    const CONNS: u32 = 100_000;
    let mut rng = SmallRng::seed_from_u64(3);
    let mut rules = Vec::new();
    for _ in 0..999 {
        let len = rng.gen_range(8..=32);
        let a: u32 = rng.gen::<u32>() | 0x8000_0000; // never 10/8
        let lo: u16 = rng.gen_range(1..60_000);
        let hi = lo.saturating_add(rng.gen_range(0..2000));
        rules.push(RuleConfig {
            action: if rng.gen::<bool>() {
                Action::Allow
            } else {
                Action::Deny
            },
            src: Some(format!("{}/{len}", std::net::Ipv4Addr::from(a))),
            dst: None,
            proto: Some(if rng.gen::<bool>() { "tcp" } else { "udp" }.into()),
            sport: None,
            dport: Some(format!("{lo}-{hi}")),
            in_port: None,
        });
    }
    rules.push(RuleConfig {
        action: Action::Allow,
        src: Some("10.0.0.0/8".into()),
        in_port: Some(0),
        ..RuleConfig::default()
    });
    let cfg = FirewallConfig {
        rules,
        max_connections: 1 << 18,
        ..FirewallConfig::default()
    };
    let mut fw = Firewall::new(&cfg).map_err(|e| anyhow!("{e}"))?;
    let pool = Pool::new(8192).ok_or_else(|| anyhow!("buffer pool"))?;
    let mut out = Out::new(2, pool.cache());
    let mut node = NodeStats::new("firewall", fw.errors());
    let size = p.pkt_size;
    let inside = |c: u32| 0x0a00_0000 + (c / 16);
    let sport = |c: u32| 20_000 + (c % 16) as u16;
    // Open the connections.
    let mut gc = pool.cache();
    let mut b = Batch::new();
    let mut c = 0u32;
    out.now_ns = 1_000_000_000;
    while c < CONNS {
        fill(&mut b, &mut gc, BATCH_SIZE, |buf| {
            let x = c;
            c += 1;
            (frame(buf, 64, inside(x), sport(x), REMOTE, 53), 0)
        });
        fw.process(&mut b, &mut node, &mut out);
        b.free_all(&mut gc);
    }
    let opened = fw.connection_count();
    // Classifier alone.
    let tuples: Vec<(u32, u16)> = (0..1 << 16).map(|_| (rng.gen(), rng.gen())).collect();
    let c0 = cycles();
    let mut hits = 0u64;
    for _ in 0..16 {
        for &(a, port) in &tuples {
            if fw_classify(&fw, a, port).is_some() {
                hits += 1;
            }
        }
    }
    let cls_cycles = cycles().wrapping_sub(c0);
    let mut node = NodeStats::new("firewall", fw.errors());
    let mut k = 0usize;
    let r = drive(&mut fw, &mut node, &mut out, p.seconds, 64, |buf| {
        let x = rng.gen_range(0..CONNS);
        let sz = size.nth(k);
        k += 1;
        if rng.gen::<bool>() {
            (frame(buf, sz, inside(x), sport(x), REMOTE, 53), 0)
        } else {
            (frame(buf, sz, REMOTE, 53, inside(x), sport(x)), 1)
        }
    });
    let mut extra = serde_json::Map::new();
    extra.insert("rules".into(), 1000u64.into());
    extra.insert("connections".into(), (opened as u64).into());
    extra.insert(
        "classify_mpps".into(),
        ((16 * tuples.len()) as f64 / (cls_cycles as f64 / r.hz) / 1e6).into(),
    );
    extra.insert("classify_hits".into(), hits.into());
    extra.insert("drop_reasons".into(), drop_map(&node));
    extra.insert("tsc_ghz".into(), (r.hz / 1e9).into());
    Ok(report("fw", p, &r, node.dropped(), extra))
}

fn fw_classify(fw: &Firewall, a: u32, port: u16) -> Option<usize> {
    fw.rule_set().classify(a, REMOTE, 6, 1234, port, 0)
}

/// `policer`: srTCM per subscriber, 65536 subscribers.
pub fn policer(p: &Params) -> anyhow::Result<Report> {
    let cfg = PolicerConfig {
        meter: MeterConfig::Srtcm {
            cir_bps: 10_000_000,
            cbs: 15_000,
            ebs: 30_000,
        },
        key: MeterKey::User,
        meters: 65536,
        color_aware: false,
        green: Verdict::Pass,
        yellow: Verdict::Mark(10),
        red: Verdict::Drop,
    };
    let mut pol = Policer::new(&cfg, 0).map_err(|e| anyhow!("{e}"))?;
    let pool = Pool::new(8192).ok_or_else(|| anyhow!("buffer pool"))?;
    let mut out = Out::new(2, pool.cache());
    let mut node = NodeStats::new("policer", pol.errors());
    let size = p.pkt_size;
    let mut rng = SmallRng::seed_from_u64(5);
    let mut k = 0usize;
    let r = {
        // The subscriber index travels in `meta.user`; `drive` sets the port only,
        // so the frame's source address carries it and a wrapper stage copies it
        // (inside the timed part).
        let mut st = UserFromSrc { inner: &mut pol };
        drive(&mut st, &mut node, &mut out, p.seconds, 1 << 30, |buf| {
            let u = rng.gen_range(0..65536u32);
            let sz = size.nth(k);
            k += 1;
            (frame(buf, sz, 0x0a00_0000 + u, 1000, REMOTE, 53), 0)
        })
    };
    let mut extra = serde_json::Map::new();
    extra.insert("meters".into(), 65536u64.into());
    extra.insert("green".into(), pol.stats.green.into());
    extra.insert("yellow".into(), pol.stats.yellow.into());
    extra.insert("red".into(), pol.stats.red.into());
    extra.insert("tsc_ghz".into(), (r.hz / 1e9).into());
    Ok(report("policer", p, &r, node.dropped(), extra))
}

/// Sets `meta.user` from the low 16 bits of the IPv4 source (the role a session
/// stage plays in a VNF), then runs the policer. Part of the timed work.
struct UserFromSrc<'a> {
    inner: &'a mut Policer,
}

impl Stage for UserFromSrc<'_> {
    fn name(&self) -> &'static str {
        "policer"
    }
    fn errors(&self) -> &'static [&'static str] {
        self.inner.errors()
    }
    fn error_help(&self) -> &'static [&'static str] {
        self.inner.error_help()
    }
    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        for p in batch.iter_mut() {
            let d = p.data();
            p.meta.user = u32::from(u16::from_be_bytes([d[28], d[29]]));
        }
        self.inner.process(batch, node, out);
    }
}
