//! The VNF main loop: bring the ports up, print `<vnf> ready`, poll forever, print
//! counters periodically.

use crate::config::Options;
use crate::net::VirtioPort;
use crate::{arch, clock, println, virtio, VNF};
use alloc::vec::Vec;
use dataplane::batch::Batch;
use dataplane::buf::Pool;
use dataplane::port::Port;

/// Receive buffers posted per port.
const RX_BUFFERS: usize = 256;

/// Bring up every virtio-net port with buffers from `pool`.
fn open_ports(pool: &'static Pool) -> Vec<VirtioPort> {
    let mut cache = pool.cache();
    let mut ports = Vec::new();
    for f in virtio::discover() {
        let loc = f.location.clone();
        match VirtioPort::new(f, ports.len(), &mut cache, RX_BUFFERS) {
            Ok(p) => {
                let m = p.mac().unwrap_or_default();
                log::info!(
                    "port {}: virtio-net {loc} mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    ports.len(),
                    m[0],
                    m[1],
                    m[2],
                    m[3],
                    m[4],
                    m[5]
                );
                ports.push(p);
            }
            Err(e) => crate::fatal(arch::EXIT_PLATFORM, format_args!("port at {loc}: {e}")),
        }
    }
    ports
}

fn print_stats(ports: &[VirtioPort]) {
    for (i, p) in ports.iter().enumerate() {
        let s = p.stats();
        println!(
            "stats port {i}: rx {} pkts {} bytes drop {}, tx {} pkts {} bytes drop {}",
            s.rx_packets, s.rx_bytes, s.rx_dropped, s.tx_packets, s.tx_bytes, s.tx_dropped
        );
    }
}

/// Run the VNF; never returns.
pub fn run(_cfg: toml::Table, opts: &Options) -> ! {
    let nbuf = (RX_BUFFERS * 4 + 1024) as u32;
    let t0 = clock::now_ns();
    let Some(pool) = Pool::new(nbuf) else {
        crate::fatal(
            arch::EXIT_PLATFORM,
            format_args!("memory: cannot allocate {nbuf} packet buffers"),
        )
    };
    log::debug!("pool: {nbuf} buffers in {} us", (clock::now_ns() - t0) / 1000);
    let mut ports = open_ports(pool);
    let mut cache = pool.cache();
    let ready_us = clock::uptime_us();
    println!(
        "{VNF} ready in {}.{:03} ms ({} ports, heap peak {} KiB)",
        ready_us / 1000,
        ready_us % 1000,
        ports.len(),
        crate::heap::peak() / 1024
    );
    if opts.exit_on_ready {
        arch::exit(arch::EXIT_OK);
    }
    let stats_ns = opts.stats_ms * 1_000_000;
    let mut next_stats = clock::now_ns() + stats_ns;
    let stop_at = opts.exit_after_ms.map(|ms| clock::now_ns() + ms * 1_000_000);
    let mut batch = Batch::new();
    loop {
        let n = ports.len();
        for i in 0..n {
            if let Some(p) = ports.get_mut(i) {
                p.rx_burst(&mut cache, &mut batch);
            }
            if let Some(o) = ports.get_mut(i ^ 1) {
                o.tx_burst(&mut cache, &mut batch);
            }
            batch.free_all(&mut cache);
        }
        let now = clock::now_ns();
        if stats_ns > 0 && now >= next_stats {
            next_stats = now + stats_ns;
            print_stats(&ports);
        }
        if stop_at.is_some_and(|t| now >= t) {
            print_stats(&ports);
            arch::exit(arch::EXIT_OK);
        }
    }
}
