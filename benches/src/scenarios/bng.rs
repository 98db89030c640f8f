//! `bng-up` and `bng-down`: the vBNG fast path with 10k PPPoE sessions brought up by
//! the emulated subscribers of `pktgen::subscribers::lab` (discovery, LCP, PAP,
//! IPCP), then per-subscriber traffic upstream (PPPoE decapsulation, anti-spoofing,
//! routing to the core) or downstream (PPPoE encapsulation towards the subscriber).
//! `bng-up-ipoe` is `bng-up` with 10k IPoE subscribers instead (DHCPv4 against the
//! vBNG's `[ipoe]` server, then plain IPv4 over Ethernet from each subscriber's MAC
//! and VLANs: session lookup without PPPoE, anti-spoofing, routing to the core).
//! Only the BNG's own loop (receive, stages, transmit) is timed by the lab; each
//! traffic phase runs `--seconds` (`bng-down` runs an upstream phase first, as long).
//! `mpps_per_core` is the median over the BNG's loop steps that received packets of
//! its cost per packet; `mpps_total` is from all its time.
//!
//! `--workers N` (`bng-up`, `bng-down`, `bng-up-ipoe`): the vBNG with N workers
//! (`testbed lab bng --workers N`): a "NIC" steers the subscribers' and the core's
//! frames to the workers' queues as the vBNG asks a NIC to (`vbng::steer`: PPPoE
//! by session id, IPv4 by subscriber address; the control plane allocates each
//! session's address so both land on its owner), a packet that reaches a worker
//! not owning its subscriber is handed over. The sessions are set up by the lab
//! from its one thread (pinned to the first core of `--cores`); the timed traffic
//! phases run each worker on a thread of its own pinned to its core (as the other
//! scenarios' `par_workers`, `LabConfig::parallel`): each thread offers its
//! worker the frames steered to it, runs the worker and takes what it sends, and
//! times only the worker's loop. A worker's rate is its packets over its own loop
//! time, `mpps_total` the sum of the workers' rates (as for the other
//! scenarios), `mpps_per_core` their mean, `per_worker` each one's figures with
//! its hand-offs in the phase. `--workers 1` with `--cores` runs the same way
//! (one thread, pinned), for a like-for-like ratio; without `--workers` or
//! `--cores` the figures are as before (the lab steps the BNG from its thread).

use crate::{Params, PktSize, Report};
use pktgen::subscribers::lab::{imix, run, LabConfig, TrafficReport};
use pktgen::subscribers::AccessPlan;
use std::time::Duration;

const SESSIONS: u32 = 10_000;

/// The lab with `access` subscribers; each traffic phase runs `--seconds` (the
/// downstream one only when `downstream`).
fn lab_with(
    p: &Params,
    access: AccessPlan,
    downstream: bool,
) -> anyhow::Result<pktgen::subscribers::lab::LabReport> {
    if parallel(p) {
        if let Some(&c) = p.cores.first() {
            dataplane::runner::pin_to(c);
        }
    }
    let frame_sizes = match p.pkt_size {
        PktSize::Imix => imix(),
        PktSize::Fixed(n) => vec![n],
    };
    let cfg = LabConfig {
        sessions: SESSIONS,
        frame_sizes,
        duration: Some(Duration::from_secs_f64(p.seconds)),
        downstream,
        setup_timeout: Duration::from_secs(120),
        access,
        workers: p.workers.max(1),
        parallel: parallel(p).then(|| p.cores.clone()),
        order: p.order,
        ..LabConfig::default()
    };
    let r = run(&cfg, |_| {})?;
    anyhow::ensure!(
        r.sessions_established == SESSIONS,
        "only {} of {SESSIONS} sessions came up (failures by phase: {})",
        r.sessions_established,
        r.setup
            .failed_by_phase
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(r)
}

/// Whether the traffic phases run each worker on its own thread (see the module
/// docs).
fn parallel(p: &Params) -> bool {
    p.workers > 1 || !p.cores.is_empty()
}

fn report(
    name: &str,
    p: &Params,
    t: &TrafficReport,
    r: &pktgen::subscribers::lab::LabReport,
    phase: &str,
) -> Report {
    let mut rep = report1(name, p, t, r);
    if !parallel(p) {
        return rep;
    }
    // Several workers: each one's rate over its own loop time in this phase.
    let hz = crate::tsc_hz(20);
    let mut per = Vec::with_capacity(r.per_worker.len());
    for w in &r.per_worker {
        let ph = w.phases.iter().find(|x| x.phase == phase);
        let (packets, mpps, handoffs) =
            ph.map_or((0, 0.0, 0), |x| (x.packets, x.mpps, x.handed_off));
        per.push(crate::WorkerFigures {
            worker: w.worker,
            core: Some(dataplane::runner::core_for(w.worker, &p.cores)),
            packets,
            mpps_per_core: mpps,
            mpps_median_burst: f64::NAN,
            mpps_total: mpps,
            drops: 0,
            handoffs,
        });
    }
    let total: f64 = per.iter().map(|w| w.mpps_total).sum();
    let mean = total / per.len().max(1) as f64;
    rep.mpps_total = total;
    rep.mpps_per_core = mean;
    rep.mpps_median_burst = f64::NAN;
    rep.headline = "total";
    rep.gbps_per_core = mean * (t.mean_frame + 4.0) * 8.0 / 1e3;
    rep.cycles_per_packet = hz / mean / 1e6;
    rep.extra.insert(
        "handoffs".into(),
        per.iter().map(|w| w.handoffs).sum::<u64>().into(),
    );
    rep.extra.insert(
        "handoff_dropped".into(),
        r.per_worker
            .iter()
            .map(|w| w.handoff_dropped)
            .sum::<u64>()
            .into(),
    );
    rep.workers = r.workers;
    rep.per_worker = per;
    rep
}

fn report1(
    name: &str,
    p: &Params,
    t: &TrafficReport,
    r: &pktgen::subscribers::lab::LabReport,
) -> Report {
    let mut extra = serde_json::Map::new();
    extra.insert("sessions".into(), r.sessions_established.into());
    extra.insert("order".into(), p.order.label().into());
    extra.insert("setup_rate_per_s".into(), r.setup_rate_per_s.into());
    extra.insert("setup_p99_ms".into(), r.setup_p99_ms.into());
    extra.insert("plr".into(), t.plr.into());
    extra.insert("ns_per_packet".into(), t.bng_ns_per_packet.into());
    extra.insert("traffic_seconds".into(), t.duration_s.into());
    let hz = crate::tsc_hz(20);
    let median = t.bng_mpps_per_core_median.unwrap_or(f64::NAN);
    let (mpps, headline, clock) = crate::headline(median, t.bng_mpps_per_core, false);
    Report {
        scenario: name.into(),
        pkt_size: p.pkt_size.label(),
        packets: t.received,
        mpps_per_core: mpps,
        mpps_median_burst: median,
        mpps_total: t.bng_mpps_per_core,
        headline,
        clock,
        gbps_per_core: mpps * (t.mean_frame + 4.0) * 8.0 / 1e3,
        cycles_per_packet: hz / mpps / 1e6,
        drops: t.sent.saturating_sub(t.received),
        extra,
        workers: 1,
        per_worker: Vec::new(),
    }
}

pub fn bng_up(p: &Params) -> anyhow::Result<Report> {
    let r = lab_with(p, AccessPlan::Pppoe, false)?;
    Ok(report("bng-up", p, &r.upstream, &r, "upstream"))
}

pub fn bng_down(p: &Params) -> anyhow::Result<Report> {
    let r = lab_with(p, AccessPlan::Pppoe, true)?;
    let d = r
        .downstream
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the lab ran no downstream phase"))?;
    Ok(report("bng-down", p, &d, &r, "downstream"))
}

pub fn bng_up_ipoe(p: &Params) -> anyhow::Result<Report> {
    let r = lab_with(p, AccessPlan::Ipoe, false)?;
    Ok(report("bng-up-ipoe", p, &r.upstream, &r, "upstream"))
}
