//! Shared pieces of the interop tests: SA setup, pcap writing, tool lookup.
#![allow(dead_code)]

use ipsec::*;
use std::path::PathBuf;

/// One test SA: both directions built from the same parameters.
pub struct TestSa {
    pub spi: u32,
    pub cfg: SaConfig,
    pub keymat: Vec<u8>,
}

impl TestSa {
    pub fn new(spi: u32, mode: Mode, alg: Algorithm) -> Self {
        let mut cfg = SaConfig::transport(spi, Direction::Outbound);
        cfg.mode = mode;
        cfg.algorithm = alg;
        let keymat = (0..alg.keymat_len())
            .map(|i| (i as u8).wrapping_mul(17).wrapping_add(spi as u8))
            .collect();
        TestSa { spi, cfg, keymat }
    }

    pub fn key(&self) -> KeyMaterial {
        KeyMaterial::new(self.cfg.algorithm, &self.keymat).expect("key length")
    }

    pub fn hex_keymat(&self) -> String {
        self.keymat.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Workspace root (the `ipsec` crate's parent).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A scratch directory for one test, under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let d = base.join(format!("ipsec-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Prepends an Ethernet header (IPv4 or IPv6 ethertype by the first nibble).
pub fn ethernet(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    let v6 = ip.first().is_some_and(|b| b >> 4 == 6);
    f.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    f.extend_from_slice(ip);
    f
}

/// Writes Ethernet frames to a classic pcap file.
pub fn write_pcap(path: &std::path::Path, ip_packets: &[Vec<u8>]) {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    let file = std::fs::File::create(path).expect("create pcap");
    let mut w = PcapWriter::new(file).expect("pcap header");
    for (i, p) in ip_packets.iter().enumerate() {
        let frame = ethernet(p);
        let ts = std::time::Duration::from_millis(i as u64);
        w.write_packet(&PcapPacket::new(ts, frame.len() as u32, &frame))
            .expect("write packet");
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}
