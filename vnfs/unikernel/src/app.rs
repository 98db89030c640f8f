//! The VNF main loop: bring the ports up, print `<vnf> ready`, poll forever.

use crate::config::Options;
use crate::net::VirtioPort;
use crate::{arch, clock, println, virtio, VNF};
use alloc::vec::Vec;

/// Run the VNF; never returns.
pub fn run(_cfg: toml::Table, opts: &Options) -> ! {
    let mut ports = Vec::new();
    for f in virtio::discover() {
        let loc = f.location.clone();
        match VirtioPort::new(f) {
            Ok(p) => {
                let m = p.mac;
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
            Err(e) => crate::fatal(arch::EXIT_PLATFORM, format_args!("port at {loc}: {e:?}")),
        }
    }
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
    let mut frame = Vec::with_capacity(2048);
    let stats_ns = opts.stats_ms * 1_000_000;
    let mut next_stats = clock::now_ns() + stats_ns;
    let stop_at = opts.exit_after_ms.map(|ms| clock::now_ns() + ms * 1_000_000);
    loop {
        let n = ports.len();
        for i in 0..n {
            while let Some(_len) = ports[i].recv(&mut frame) {
                let o = i ^ 1;
                if o < n {
                    ports[o].send(&frame);
                }
            }
            ports[i].reap_tx();
        }
        let now = clock::now_ns();
        if stats_ns > 0 && now >= next_stats {
            next_stats = now + stats_ns;
            for (i, p) in ports.iter().enumerate() {
                let c = p.counters;
                println!(
                    "stats port {i}: rx {} pkts {} bytes, tx {} pkts {} bytes, tx-full {}, rx-err {}",
                    c.rx_packets, c.rx_bytes, c.tx_packets, c.tx_bytes, c.tx_full, c.rx_errors
                );
            }
        }
        if stop_at.is_some_and(|t| now >= t) {
            arch::exit(arch::EXIT_OK);
        }
    }
}
