//! What every VNF app of the unikernel shares: bringing up the virtio-net ports with
//! buffers from the packet pool, the port counter lines, and the console's line
//! reader (one command per line on the serial port).

use crate::net::VirtioPort;
use crate::{arch, println, serial, virtio};
use alloc::string::String;
use alloc::vec::Vec;
use dataplane::buf::Pool;
use dataplane::port::Port;
use dataplane::worker::Worker;

/// Receive buffers posted per port.
pub const RX_BUFFERS: usize = crate::net::QUEUE_SIZE;

/// Report a configuration the VNF refuses and exit with [`arch::EXIT_CONFIG`].
pub fn config_error(e: impl core::fmt::Display) -> ! {
    crate::fatal(arch::EXIT_CONFIG, format_args!("bad configuration: {e}"))
}

/// Bring up every virtio-net port with buffers from `pool`.
pub fn open_ports(pool: &'static Pool) -> Vec<VirtioPort> {
    let mut cache = pool.cache();
    let mut ports = Vec::new();
    for f in virtio::discover() {
        let loc = f.location.clone();
        match VirtioPort::new(f, ports.len(), &mut cache, RX_BUFFERS) {
            Ok(p) => ports.push(p),
            Err(e) => crate::fatal(arch::EXIT_PLATFORM, format_args!("port at {loc}: {e}")),
        }
    }
    ports
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_str(m: [u8; 6]) -> String {
    alloc::format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[5]
    )
}

/// One `stats t=<ms>ms port <i>: ...` line per port, then the pipeline's line.
pub fn print_port_stats(w: &Worker<VirtioPort>, t: u64) {
    let out = &w.out;
    for (i, p) in w.ports.iter().enumerate() {
        let s = p.stats();
        println!(
            "stats t={t}ms port {i}: rx {} pkts {} bytes drop {}, tx {} pkts {} bytes drop {}",
            s.rx_packets, s.rx_bytes, s.rx_dropped, s.tx_packets, s.tx_bytes, s.tx_dropped
        );
        if let Some((d, l)) = p.tap_stats() {
            println!("stats t={t}ms port {i} host stack: diverted {d} lost {l}");
        }
    }
    let nodes: u64 = w.graph.nodes().map(|n| n.dropped()).sum();
    println!(
        "stats t={t}ms pipeline: dropped {nodes}, tx-full {}, no-port {}, punt-full {}",
        out.stats.tx_full, out.stats.no_port, out.stats.punt_full
    );
}

/// The console's input: bytes from the serial port gathered into lines of at most
/// 128 characters (the rest of a longer line is dropped).
#[derive(Default)]
pub struct LineReader {
    line: String,
}

impl LineReader {
    /// Hand every complete non-empty line (trimmed) to `f`.
    pub fn poll(&mut self, mut f: impl FnMut(&str)) {
        while let Some(b) = serial::try_read() {
            match b {
                b'\r' | b'\n' => {
                    let cmd = core::mem::take(&mut self.line);
                    let cmd = cmd.trim();
                    if !cmd.is_empty() {
                        f(cmd);
                    }
                }
                b if self.line.len() < 128 => self.line.push(b as char),
                _ => {}
            }
        }
    }
}
