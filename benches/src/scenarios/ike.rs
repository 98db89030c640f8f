//! `ike-handshake`: complete IKEv2 handshakes (RFC 7296 §1.2: IKE_SA_INIT, IKE_AUTH
//! with a pre-shared key and the first ESP child SA) between the `ipsec` crate's
//! sans-IO [`Initiator`] and one [`Responder`] endpoint in one process, one core, for
//! Diffie-Hellman groups 14 (MODP-2048), 19 (P-256) and 31 (Curve25519), each for
//! `--seconds`.
//!
//! Two rates per group: `handshakes_per_s` over the whole exchange (both ends: key
//! generation, agreement, derivation, sealing and opening on each side) and
//! `responder_handshakes_per_s`, where only the time spent inside the responder's
//! `handle` calls is counted — what one core of a gateway answering handshakes
//! spends. No socket, no clock syscalls besides the timing itself. The responder keeps
//! every established SA (it is not polled), as a gateway would.
//!
//! The JSON report's headline fields describe group 31 and count IKE datagrams
//! handled by the responder (`packets`, `mpps_per_core` and `cycles_per_packet`
//! over responder time: the median over handshakes of the responder's time per
//! datagram; `mpps_total` over all of it); `extra.groups` has one object per group.

use crate::{tsc_hz, Params, Report};
use ipsec::ike::{
    DhGroup, Event, Identification, IkeConfig, Initiator, Output, Responder, TrafficSelector,
};
use ipsec::spd::Prefix;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

fn net(a: [u8; 4], len: u8) -> TrafficSelector {
    TrafficSelector::from_prefix(Prefix::new(IpAddr::V4(Ipv4Addr::from(a)), len))
}

fn configs(g: DhGroup) -> (IkeConfig, IkeConfig) {
    let psk = b"bench pre-shared key, 32 bytes!!";
    let mut i = IkeConfig::psk(
        psk,
        Identification::fqdn("initiator.example"),
        net([10, 1, 0, 0], 16),
        net([10, 2, 0, 0], 16),
    );
    let mut r = IkeConfig::psk(
        psk,
        Identification::fqdn("responder.example"),
        net([10, 2, 0, 0], 16),
        net([10, 0, 0, 0], 8),
    );
    for c in [&mut i, &mut r] {
        c.ike_dh = vec![g];
    }
    (i, r)
}

/// One group's figures.
struct GroupRun {
    group: DhGroup,
    handshakes: u64,
    wall: Duration,
    responder: Duration,
    responder_datagrams: u64,
    /// Responder seconds per datagram of each handshake.
    per_handshake: Vec<f64>,
}

/// Handshakes until `seconds` of wall time have passed.
fn run_group(g: DhGroup, seconds: f64) -> anyhow::Result<GroupRun> {
    let (_, cr) = configs(g);
    let addr_r: SocketAddr = "192.0.2.2:500".parse()?;
    let addr_i: SocketAddr = "192.0.2.1:500".parse()?;
    let mut r = Responder::new(cr, addr_r).map_err(anyhow::Error::msg)?;
    let mut run = GroupRun {
        group: g,
        handshakes: 0,
        wall: Duration::ZERO,
        responder: Duration::ZERO,
        responder_datagrams: 0,
        per_handshake: Vec::new(),
    };
    let budget = Duration::from_secs_f64(seconds.max(0.01));
    let t0 = Instant::now();
    let now = 1_000u64;
    while t0.elapsed() < budget {
        // Building the initiator's configuration is part of the whole exchange.
        let (cfg, _) = configs(g);
        let mut i = Initiator::new(cfg, addr_i, addr_r, now);
        let mut to_r: Vec<Vec<u8>> = Vec::new();
        let mut i_child = false;
        let mut r_child = false;
        let sends = |out: Vec<Output>, q: &mut Vec<Vec<u8>>, child: &mut bool| {
            for o in out {
                match o {
                    Output::Send { data, .. } => q.push(data),
                    Output::Event(Event::ChildSaUp(_)) => *child = true,
                    Output::Event(_) => {}
                }
            }
        };
        sends(
            i.start(now).map_err(anyhow::Error::msg)?,
            &mut to_r,
            &mut i_child,
        );
        let mut rounds = 0;
        let (mut hs_time, mut hs_datagrams) = (Duration::ZERO, 0u32);
        while let Some(d) = to_r.pop() {
            rounds += 1;
            anyhow::ensure!(rounds < 10, "handshake does not converge");
            let t = Instant::now();
            let out = r.handle(&d, addr_i, now);
            let dt = t.elapsed();
            run.responder += dt;
            hs_time += dt;
            hs_datagrams += 1;
            run.responder_datagrams += 1;
            let mut to_i = Vec::new();
            sends(out, &mut to_i, &mut r_child);
            for d in to_i {
                sends(i.handle(&d, addr_r, now), &mut to_r, &mut i_child);
            }
        }
        anyhow::ensure!(
            i_child && r_child,
            "group {}: handshake did not bring up the child SA",
            g.id()
        );
        run.handshakes += 1;
        if hs_datagrams > 0 {
            run.per_handshake
                .push(hs_time.as_secs_f64() / f64::from(hs_datagrams));
        }
    }
    run.wall = t0.elapsed();
    Ok(run)
}

pub fn ike_handshake(p: &Params) -> anyhow::Result<Report> {
    let mut groups = Vec::new();
    let mut head = None;
    for g in [DhGroup::Modp2048, DhGroup::Ecp256, DhGroup::Curve25519] {
        let r = run_group(g, p.seconds)?;
        let per_s = |d: Duration| r.handshakes as f64 / d.as_secs_f64().max(1e-9);
        let mut o = serde_json::Map::new();
        o.insert("dh_group".into(), g.id().into());
        o.insert("handshakes".into(), r.handshakes.into());
        o.insert("seconds".into(), r.wall.as_secs_f64().into());
        o.insert("handshakes_per_s".into(), per_s(r.wall).into());
        o.insert(
            "responder_handshakes_per_s".into(),
            per_s(r.responder).into(),
        );
        o.insert(
            "responder_us_per_handshake".into(),
            (r.responder.as_secs_f64() * 1e6 / r.handshakes.max(1) as f64).into(),
        );
        o.insert(
            "responder_timing".into(),
            "time inside Responder::handle only".into(),
        );
        groups.push(serde_json::Value::Object(o));
        if r.group == DhGroup::Curve25519 {
            head = Some(r);
        }
    }
    let mut h = head.ok_or_else(|| anyhow::anyhow!("group 31 did not run"))?;
    let resp_s = h.responder.as_secs_f64().max(1e-9);
    let total_mpps = h.responder_datagrams as f64 / resp_s / 1e6;
    let median_mpps = 1.0 / crate::median(&mut h.per_handshake) / 1e6;
    let (mpps, headline, clock) = crate::headline(median_mpps, total_mpps, false);
    let mut extra = serde_json::Map::new();
    extra.insert("headline_dh_group".into(), 31.into());
    extra.insert(
        "handshakes_per_s".into(),
        (h.handshakes as f64 / h.wall.as_secs_f64().max(1e-9)).into(),
    );
    extra.insert(
        "responder_handshakes_per_s".into(),
        (h.handshakes as f64 / resp_s).into(),
    );
    extra.insert("groups".into(), groups.into());
    let hz = tsc_hz(20);
    Ok(Report {
        scenario: "ike-handshake".into(),
        pkt_size: "ike".into(),
        packets: h.responder_datagrams,
        mpps_per_core: mpps,
        mpps_median_burst: median_mpps,
        mpps_total: total_mpps,
        headline,
        clock,
        gbps_per_core: 0.0,
        cycles_per_packet: hz / mpps / 1e6,
        drops: 0,
        extra,
        workers: 1,
        per_worker: Vec::new(),
    })
}
