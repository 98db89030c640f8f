//! Tests of the QoS stages: RFC 2697 / RFC 2698 colours, exact long-run rates,
//! DSCP marking with the RFC 1624 checksum update, the policer and shaper nodes.

use super::*;
use crate::buf::Pool;
use crate::proto::checksum;
use etherparse::PacketBuilder;

#[test]
fn meter_and_shaper_configs_are_checked() {
    let tr = |cir_bps, pir_bps| MeterConfig::Trtcm {
        cir_bps,
        cbs: 1500,
        pir_bps,
        pbs: 3000,
    };
    assert_eq!(
        tr(2_000, 1_000).validate(),
        Err(QosConfigError::PirBelowCir)
    );
    assert_eq!(
        tr(0, 1_000).validate(),
        Err(QosConfigError::ZeroRate("meter.cir_bps"))
    );
    assert!(tr(1_000, 1_000).validate().is_ok());
    let sr = MeterConfig::Srtcm {
        cir_bps: 0,
        cbs: 1,
        ebs: 1,
    };
    assert!(sr.validate().is_err());
    let pc = PolicerConfig {
        meter: tr(2_000, 1_000),
        key: MeterKey::Single,
        meters: 1,
        color_aware: false,
        green: Verdict::Pass,
        yellow: Verdict::Pass,
        red: Verdict::Drop,
    };
    let e = Policer::new(&pc, 0).unwrap_err();
    let msg = alloc::format!("{e}");
    assert_eq!(msg, "meter: pir_bps must be >= cir_bps (RFC 2698 §2)");
    let sc = ShaperConfig {
        subscribers: 4,
        rate_bps: 0,
        burst_bytes: 1500,
        queue_packets: 8,
        total_queue_packets: 64,
        egress_port: None,
    };
    assert_eq!(
        Shaper::new(&sc, 0).err(),
        Some(QosConfigError::ZeroRate("rate_bps"))
    );
    let sc = ShaperConfig {
        rate_bps: 1_000_000,
        total_queue_packets: u32::MAX,
        ..sc
    };
    assert!(sc.validate().is_err());
}

const MS: u64 = 1_000_000;

#[test]
fn srtcm_rfc2697_colours() {
    // CIR 8 kbit/s = 1000 B/s, CBS 1500, EBS 1500.
    let mut m = Srtcm::new(8000, 1500, 1500, 0);
    assert_eq!(m.meter(1000, 0, None), Color::Green);
    assert_eq!(
        m.meter(1000, 0, None),
        Color::Yellow,
        "Tc 500 < 1000, Te full"
    );
    assert_eq!(m.meter(600, 0, None), Color::Red, "Tc 500 and Te 500 < 600");
    assert_eq!(m.meter(500, 0, None), Color::Green);
    assert_eq!(m.meter(500, 0, None), Color::Yellow);
}

#[test]
fn srtcm_refill_and_overflow_to_excess() {
    let mut m = Srtcm::new(8000, 1000, 2000, 0);
    // Drain both buckets.
    assert_eq!(m.meter(1000, 0, None), Color::Green);
    assert_eq!(m.meter(2000, 0, None), Color::Yellow);
    assert_eq!(m.meter(1, 0, None), Color::Red);
    // 1 s later: Tc full (1000), nothing overflowed yet.
    assert_eq!(m.meter(1000, 1000 * MS, None), Color::Green);
    assert_eq!(m.meter(1, 1000 * MS, None), Color::Red);
    // 3 s idle: 1000 into Tc, 2000 overflow into Te.
    assert_eq!(m.c.fill(4000 * MS), 2000 * NANO);
    // Colour-aware: a yellow packet never takes green tokens.
    let mut m = Srtcm::new(8000, 1000, 1000, 0);
    assert_eq!(m.meter(100, 0, Some(Color::Yellow)), Color::Yellow);
    assert_eq!(m.meter(100, 0, Some(Color::Red)), Color::Red);
    assert_eq!(m.c.tokens_bytes(), 1000);
}

#[test]
fn trtcm_rfc2698_colours() {
    // CIR 1000 B/s CBS 1000, PIR 2000 B/s PBS 2000.
    let mut m = Trtcm::new(8000, 1000, 16000, 2000, 0);
    assert_eq!(m.meter(1000, 0, None), Color::Green);
    assert_eq!(m.meter(1000, 0, None), Color::Yellow);
    assert_eq!(m.meter(1, 0, None), Color::Red);
    // Red packets take no tokens; after 0.5 s: Tp 1000, Tc 500.
    assert_eq!(m.meter(600, 500 * MS, None), Color::Yellow);
    assert_eq!(m.meter(400, 500 * MS, None), Color::Green);
    assert_eq!(m.meter(1, 500 * MS, None), Color::Red);
    // Colour-aware: yellow input stays yellow when tokens exist.
    let mut m = Trtcm::new(8000, 1000, 16000, 2000, 0);
    assert_eq!(m.meter(10, 0, Some(Color::Yellow)), Color::Yellow);
    assert_eq!(m.c.tokens_bytes(), 1000);
}

#[test]
fn long_run_rate_is_exact() {
    // 10 Mbit/s, 1500 B packets offered at 2x: green bytes/s == 1.25 MB/s ± burst.
    let mut m = Srtcm::new(10_000_000, 3000, 0, 0);
    let mut green = 0u64;
    let mut t = 0u64;
    let step = 1500 * 8 * 1_000_000_000 / 20_000_000; // ns between packets at 20 Mb/s
    while t < 10_000 * MS {
        if m.meter(1500, t, None) == Color::Green {
            green += 1500;
        }
        t += step;
    }
    let rate = green as f64 / 10.0;
    assert!((rate - 1_250_000.0).abs() < 1000.0, "{rate}");
}

fn frame(dscp: u8) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64);
    let mut v = Vec::new();
    b.udp(1, 2).write(&mut v, &[0u8; 100]).unwrap();
    set_dscp(&mut v, dscp);
    v
}

#[test]
fn dscp_marking_keeps_checksum() {
    let mut f = frame(0);
    assert!(set_dscp(&mut f, 46));
    assert_eq!(dscp_of(&f), Some(46));
    assert!(checksum::verify(&f[14..34]));
    let b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv6([1; 16], [2; 16], 64)
        .udp(1, 2);
    let mut v = Vec::new();
    b.write(&mut v, &[1]).unwrap();
    assert!(set_dscp(&mut v, 0x2e));
    assert_eq!(dscp_of(&v), Some(0x2e));
    assert_eq!(af_color(12), Color::Yellow);
}

fn run(
    stage: &mut dyn Stage,
    out: &mut Out,
    node: &mut NodeStats,
    frames: &[(Vec<u8>, u32)],
) -> Vec<Vec<u8>> {
    let mut b = Batch::new();
    for (f, user) in frames {
        let mut p = out.cache.alloc().unwrap();
        p.copy_from(f).unwrap();
        p.meta.user = *user;
        b.push(p).unwrap();
    }
    stage.process(&mut b, node, out);
    let mut v = Vec::new();
    b.drain(|p| {
        v.push(p.data().to_vec());
        p.pool().free(p)
    });
    v
}

#[test]
fn policer_stage_marks_yellow_drops_red() {
    let pool = Pool::new(64).unwrap();
    let mut out = Out::new(1, pool.cache());
    let cfg = PolicerConfig {
        meter: MeterConfig::Srtcm {
            cir_bps: 8000,
            cbs: 200,
            ebs: 200,
        },
        key: MeterKey::User,
        meters: 2,
        color_aware: false,
        green: Verdict::Pass,
        yellow: Verdict::Mark(10),
        red: Verdict::Drop,
    };
    let mut pol = Policer::new(&cfg, 0).unwrap();
    let mut node = NodeStats::new("policer", pol.errors());
    let f = frame(0); // 142 bytes
    let got = run(
        &mut pol,
        &mut out,
        &mut node,
        &[
            (f.clone(), 0),
            (f.clone(), 0),
            (f.clone(), 0),
            (f.clone(), 1),
            (f.clone(), 9),
        ],
    );
    assert_eq!(got.len(), 4, "one red dropped");
    assert_eq!(dscp_of(&got[0]), Some(0));
    assert_eq!(dscp_of(&got[1]), Some(10));
    assert!(checksum::verify(&got[1][14..34]));
    assert_eq!(node.drops[0], 1);
    assert_eq!(
        pol.stats,
        ColorStats {
            green: 2,
            yellow: 1,
            red: 1,
            unmetered: 1
        }
    );
}

#[test]
fn shaper_queues_and_releases_in_order_at_rate() {
    let pool = Pool::new(256).unwrap();
    let mut out = Out::new(1, pool.cache());
    // 1 subscriber, 80 kbit/s = 10 kB/s, burst 200 B, queue 4.
    let cfg = ShaperConfig {
        subscribers: 2,
        rate_bps: 80_000,
        burst_bytes: 200,
        queue_packets: 4,
        total_queue_packets: 64,
        egress_port: None,
    };
    let mut sh = Shaper::new(&cfg, 0).unwrap();
    let mut node = NodeStats::new("shaper", sh.errors());
    let mk = |n: u8| {
        let mut f = frame(0);
        let l = f.len();
        f[l - 1] = n;
        (f, 0u32)
    };
    // 6 frames of 142 B at t=0: 1 passes (burst 200), 4 queue, 1 dropped.
    let frames: Vec<_> = (0..6).map(mk).collect();
    let got = run(&mut sh, &mut out, &mut node, &frames);
    assert_eq!(got.len(), 1);
    assert_eq!(sh.queued(), 4);
    assert_eq!(node.drops[0], 1);
    // Another subscriber is not held back.
    let mut f1 = frame(0);
    f1[20] = 0x77;
    assert_eq!(run(&mut sh, &mut out, &mut node, &[(f1, 1)]).len(), 1);
    // 14.2 ms later one frame's worth (142 B at 10 kB/s) has arrived.
    out.now_ns = 14_200_000;
    let got = run(&mut sh, &mut out, &mut node, &[]);
    assert_eq!(got.len(), 1);
    assert_eq!(*got[0].last().unwrap(), 1, "FIFO order");
    // A new packet of subscriber 0 waits behind the queue; one packet leaves per
    // 14.2 ms.
    let mut order = Vec::new();
    for k in 1..=6u64 {
        out.now_ns = 14_200_000 + k * 14_300_000;
        let input = if k == 1 { vec![mk(9)] } else { vec![] };
        let got = run(&mut sh, &mut out, &mut node, &input);
        assert!(got.len() <= 1, "rate exceeded at step {k}");
        order.extend(got.iter().map(|f| *f.last().unwrap()));
    }
    assert_eq!(order, [2, 3, 4, 9]);
    assert_eq!(sh.queued(), 0);
    assert_eq!(sh.stats.released, 5);
}
