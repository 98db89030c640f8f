//! `pktgen-tx`: the packet generator's transmit rate on one core into an in-memory
//! virtio ring pair — a UDP/IPv4 stream with 1024 flows (varying source port), the
//! tail signature (stream, sequence, timestamp) and incremental checksums, unpaced.
//!
//! Only the generator's part (emit a batch, `tx_burst`) is inside the cycle counter;
//! the ring's far end is drained outside it (that is the DUT's work in a lab) and its
//! buffers go back to the generator's own cache, so the figure is the generator's
//! cost without the shared pool ring's transfers between two cores' caches.
//! `mpps_per_core` is the median over bursts (cycles per packet of each timed burst);
//! `mpps_total` counts all the timed cycles.

use crate::{cycles, tsc_hz, Params, PktSize, Report};
use anyhow::Context;
use dataplane::batch::Batch;
use dataplane::buf::Pool;
use dataplane::port::{mem, Port};
use pktgen::profile::{FieldSpec, Mode, Scalar, SizeSpec, StreamSpec};
use pktgen::sig::now_ns;
use pktgen::{Generator, Stream};
use std::time::Instant;

/// Generator rate per core into the in-memory ring.
pub fn pktgen_tx(p: &Params) -> anyhow::Result<Report> {
    let mut spec = StreamSpec::udp("bench");
    spec.size = match p.pkt_size {
        PktSize::Fixed(n) => SizeSpec::Fixed(n as u64),
        PktSize::Imix => SizeSpec::Named("imix".into()),
    };
    spec.l4.sport = FieldSpec::Vary {
        from: Scalar::Num(1024),
        to: Scalar::Num(2047),
        step: None,
        mode: Mode::Inc,
    };
    spec.burst = 256;
    let mut g = Generator::new(vec![Stream::new(0, &spec)?]);
    let pool = Pool::new(8192).context("pool")?;
    let (mut tx, mut rx) = mem::pair("gen", "sink", 1024).context("ring")?;
    let mut gc = pool.cache();
    let mut out = Batch::new();
    let mut inb = Batch::new();
    let hz = tsc_hz(50);
    g.start(now_ns());
    let warm = Instant::now();
    let mut timing = false;
    let mut gen_cycles = 0u64;
    let mut packets = 0u64;
    let mut bytes = 0u64;
    let mut refused = 0u64;
    let t0 = Instant::now();
    let mut ts = now_ns();
    let mut iter = 0u64;
    // cycles per packet of every timed burst
    let mut per_burst: Vec<f64> = Vec::with_capacity(1 << 22);
    loop {
        if !timing && warm.elapsed().as_secs_f64() > 0.2 {
            timing = true;
            gen_cycles = 0;
            packets = 0;
            bytes = 0;
            refused = 0;
            per_burst.clear();
        }
        if timing && t0.elapsed().as_secs_f64() > p.seconds + 0.2 {
            break;
        }
        // one timestamp per 16 bursts, as a paced generator would read the clock
        iter += 1;
        if iter & 15 == 0 {
            ts = now_ns();
        }
        let c0 = cycles();
        g.fill(&mut gc, &mut out, ts);
        let sent = tx.tx_burst(&mut gc, &mut out);
        let c1 = cycles();
        gen_cycles += c1.wrapping_sub(c0);
        packets += sent as u64;
        if timing && sent > 0 && per_burst.len() < per_burst.capacity() {
            per_burst.push(c1.wrapping_sub(c0) as f64 / sent as f64);
        }
        refused += out.len() as u64;
        out.free_all(&mut gc);
        // drain the far end (not timed)
        while rx.rx_burst(&mut gc, &mut inb) > 0 {
            bytes += inb.iter().map(|p| p.len() as u64 + 4).sum::<u64>();
            inb.free_all(&mut gc);
        }
    }
    let secs = gen_cycles as f64 / hz;
    let total_mpps = packets as f64 / secs.max(1e-9) / 1e6;
    let median_mpps = hz / crate::median(&mut per_burst) / 1e6;
    let (mpps, headline, clock) = crate::headline(median_mpps, total_mpps, false);
    let mut extra = serde_json::Map::new();
    extra.insert("tx_refused".into(), refused.into());
    extra.insert(
        "wall_mpps_with_drain".into(),
        (packets as f64 / p.seconds / 1e6).into(),
    );
    Ok(Report {
        scenario: "pktgen-tx".into(),
        pkt_size: p.pkt_size.label(),
        packets,
        mpps_per_core: mpps,
        mpps_median_burst: median_mpps,
        mpps_total: total_mpps,
        headline,
        clock,
        gbps_per_core: bytes as f64 * 8.0 / secs.max(1e-9) / 1e9 * mpps / total_mpps,
        cycles_per_packet: hz / mpps / 1e6,
        drops: refused,
        extra,
        workers: 1,
        per_worker: Vec::new(),
    })
}
