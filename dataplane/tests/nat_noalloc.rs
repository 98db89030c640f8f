//! The packet paths of `nat44`, `firewall`, `policer` and `shaper` never call the
//! allocator after start-up: a counting global allocator watches batches that open
//! sessions, hit them, exhaust ports, expire sessions and send ICMP errors, and
//! fragmented datagrams in order and out of order both ways (virtual reassembly: held
//! fragments, released fragments, expired fragments, a full hold queue).

use dataplane::batch::{Batch, Out};
use dataplane::buf::Pool;
use dataplane::stage::{NodeStats, Stage};
use dataplane::stages::firewall::{Action, Firewall, FirewallConfig, RuleConfig};
use dataplane::stages::nat::{CgnatConfig, Flow, Nat44, NatConfig, NatDrop};
use dataplane::stages::qos::{
    MeterConfig, MeterKey, Policer, PolicerConfig, Shaper, ShaperConfig, Verdict,
};
use etherparse::PacketBuilder;

mod counting;
use counting::{allocs, watch};

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

fn udp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .udp(sp, dp)
        .write(&mut v, b"no allocation please")
        .unwrap();
    v
}

/// A UDP frame with `n` bytes of payload.
fn udp_len(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .udp(sp, dp)
        .write(&mut v, &vec![0x3c; n])
        .unwrap();
    v
}

/// IPv4 fragments of an Ethernet+IPv4 frame, `chunk` payload bytes each.
fn fragments(frame: &[u8], chunk: usize, id: u16) -> Vec<Vec<u8>> {
    let (eth, ip) = frame.split_at(14);
    let payload = &ip[20..];
    let mut v = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + chunk).min(payload.len());
        let mut h = ip[..20].to_vec();
        h[2..4].copy_from_slice(&((20 + end - off) as u16).to_be_bytes());
        h[4..6].copy_from_slice(&id.to_be_bytes());
        let mf = if end < payload.len() { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&(((off / 8) as u16) | mf).to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let c = dataplane::proto::checksum::internet(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = eth.to_vec();
        f.extend_from_slice(&h);
        f.extend_from_slice(&payload[off..end]);
        v.push(f);
        off = end;
    }
    v
}

/// Runs `frames` (already built, so building them is not counted) through `stage`.
fn run(stage: &mut dyn Stage, node: &mut NodeStats, out: &mut Out, frames: &[(Vec<u8>, u16)]) {
    let mut b = Batch::new();
    for (f, port) in frames {
        let mut p = out.cache.alloc().unwrap();
        p.copy_from(f).unwrap();
        p.meta.port = *port;
        p.meta.user = u32::from(f[29]);
        let _ = b.push(p).map_err(|p| out.cache.free(p));
    }
    stage.process(&mut b, node, out);
    stage.tick(out);
    b.free_all(&mut out.cache);
    for q in out.ports.iter_mut() {
        q.free_all(&mut out.cache);
    }
    out.punt.free_all(&mut out.cache);
}

#[test]
fn stages_do_not_allocate_on_the_packet_path() {
    let pool = Pool::new(4096).unwrap();
    let mut out = Out::new(2, pool.cache());
    let nat_cfg = NatConfig {
        inside_ports: vec![0],
        pool: vec!["198.51.100.1".into()],
        max_sessions: 512,
        max_subscribers: 16,
        cgnat: Some(CgnatConfig {
            block_size: 16,
            blocks_per_subscriber: 2,
            sessions_per_subscriber: 1000,
            log: true,
        }),
        log_capacity: 64,
        ..NatConfig::default()
    };
    let mut nat = Nat44::new(&nat_cfg).unwrap();
    let mut fw = Firewall::new(&FirewallConfig {
        rules: vec![RuleConfig {
            action: Action::Allow,
            src: Some("10.0.0.0/8".into()),
            ..RuleConfig::default()
        }],
        max_connections: 256,
        ..FirewallConfig::default()
    })
    .unwrap();
    let mut pol = Policer::new(
        &PolicerConfig {
            meter: MeterConfig::Srtcm {
                cir_bps: 1_000_000,
                cbs: 1000,
                ebs: 1000,
            },
            key: MeterKey::User,
            meters: 256,
            color_aware: true,
            green: Verdict::Pass,
            yellow: Verdict::Mark(12),
            red: Verdict::Drop,
        },
        0,
    )
    .unwrap();
    let mut sh = Shaper::new(
        &ShaperConfig {
            subscribers: 256,
            rate_bps: 100_000,
            burst_bytes: 200,
            queue_packets: 8,
            total_queue_packets: 256,
            egress_port: Some(1),
        },
        0,
    )
    .unwrap();
    let mut nn = NodeStats::new("nat44", nat.errors());
    let mut nf = NodeStats::new("firewall", fw.errors());
    let mut np = NodeStats::new("policer", pol.errors());
    let mut ns = NodeStats::new("shaper", sh.errors());
    // Frames: 200 new flows from 4 subscribers (exhausting two of them), their
    // replies, and more of the same later.
    let mut inside = Vec::new();
    for i in 0..200u16 {
        inside.push((
            udp([10, 0, 0, (i % 4) as u8], 1000 + i, [192, 0, 2, 1], 9),
            0,
        ));
    }
    let replies: Vec<_> = (0..200u16)
        .map(|i| (udp([192, 0, 2, 1], 9, [198, 51, 100, 1], 1024 + i), 1))
        .collect();
    // Fragmented datagrams from a fifth subscriber: in order, reversed (held, then
    // released by the first fragment), orphans that expire, and enough orphans to
    // fill the hold queue; then the fragmented replies, reversed.
    let mut frag_out = Vec::new();
    let mut frag_rev = Vec::new();
    let mut orphans = Vec::new();
    for i in 0..8u16 {
        let d = udp_len([10, 0, 0, 9], 3000 + i, [192, 0, 2, 1], 9, 3000);
        frag_out.extend(fragments(&d, 1024, 100 + i).into_iter().map(|f| (f, 0)));
        let mut r = fragments(&d, 1024, 200 + i);
        r.reverse();
        frag_rev.extend(r.into_iter().map(|f| (f, 0)));
    }
    for i in 0..80u16 {
        let d = udp_len([10, 0, 0, 9], 3000, [192, 0, 2, 1], 9, 200);
        orphans.push((fragments(&d, 64, 1000 + i).swap_remove(1), 0));
    }
    // Warm-up (allocation not watched): map the fragmented flows, then build their
    // fragmented replies, last fragment first.
    out.now_ns = 1_000_000_000;
    run(&mut nat, &mut nn, &mut out, &frag_out);
    let mut frag_replies = Vec::new();
    for i in 0..8u16 {
        let f = Flow {
            src: u32::from_be_bytes([10, 0, 0, 9]),
            sport: 3000 + i,
            dst: u32::from_be_bytes([192, 0, 2, 1]),
            dport: 9,
            proto: 17,
        };
        let (ext, port) = nat.lookup_in2out(&f).expect("fragmented flow mapped");
        let d = udp_len([192, 0, 2, 1], 9, ext.octets(), port, 3000);
        let mut r = fragments(&d, 1024, 300 + i);
        r.reverse();
        frag_replies.extend(r.into_iter().map(|f| (f, 1)));
    }
    watch(true);
    for round in 0..5u64 {
        out.now_ns = 1_000_000_000 + round * 400_000_000_000; // 400 s apart: expiry
        run(&mut nat, &mut nn, &mut out, &inside);
        run(&mut nat, &mut nn, &mut out, &replies);
        run(&mut nat, &mut nn, &mut out, &frag_out);
        run(&mut nat, &mut nn, &mut out, &frag_rev);
        run(&mut nat, &mut nn, &mut out, &frag_replies);
        run(&mut nat, &mut nn, &mut out, &orphans);
        run(&mut fw, &mut nf, &mut out, &inside);
        run(&mut fw, &mut nf, &mut out, &replies);
        run(&mut pol, &mut np, &mut out, &inside);
        run(&mut sh, &mut ns, &mut out, &inside);
    }
    watch(false);
    assert!(nat.stats.sessions_created > 200, "sessions opened");
    assert!(nat.stats.sessions_expired > 0, "sessions expired");
    assert!(nat.stats.icmp_errors_sent > 0, "exhaustion answered");
    assert!(
        nat.stats.frag_translated > 0,
        "in-order fragments translated"
    );
    assert!(
        nat.stats.frag_released > 0,
        "out-of-order fragments released"
    );
    assert!(nat.stats.frag_expired > 0, "orphan fragments expired");
    assert!(
        nn.drops[usize::from(NatDrop::FragHoldFull.code())] > 0,
        "hold queue full counted"
    );
    assert!(nn.dropped() > 0);
    assert!(fw.stats.connections_created > 0 && pol.stats.red > 0);
    assert!(sh.stats.queued > 0);
    assert_eq!(allocs(), 0, "allocations on the packet path");
}
