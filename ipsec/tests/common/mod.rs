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

/// A program on `PATH`.
pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// An IPv4/UDP packet around `payload` (UDP checksum 0, allowed for IPv4).
pub fn udp_packet(from: std::net::SocketAddr, to: std::net::SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) = (from.ip(), to.ip()) else {
        panic!("IPv4 addresses expected")
    };
    let total = 20 + 8 + payload.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    let c = dataplane::proto::checksum::internet(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&from.port().to_be_bytes());
    p.extend_from_slice(&to.port().to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// Writes IKE datagrams to `dir/name.pcap`, dissects them with `tshark -V` and
/// checks every packet is IKEv2 without malformed-packet or error expert info.
/// Returns the dissection. Panics when tshark is missing (scripts/setup installs it).
pub fn tshark_check_ike(
    dir: &std::path::Path,
    name: &str,
    datagrams: &[(std::net::SocketAddr, std::net::SocketAddr, Vec<u8>)],
) -> String {
    let tshark = which("tshark").unwrap_or_else(|| {
        panic!("tshark not found: install the Debian package `tshark` (scripts/setup does)")
    });
    let pcap = dir.join(format!("{name}.pcap"));
    let packets: Vec<Vec<u8>> = datagrams
        .iter()
        .map(|(f, t, d)| udp_packet(*f, *t, d))
        .collect();
    write_pcap(&pcap, &packets);
    let out = std::process::Command::new(tshark)
        .arg("-r")
        .arg(&pcap)
        .arg("-V")
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    std::fs::write(dir.join(format!("{name}.txt")), text.as_bytes()).ok();
    let ikev2 = text
        .matches("Internet Security Association and Key Management Protocol")
        .count();
    assert_eq!(ikev2, datagrams.len(), "every packet dissected as IKE");
    for bad in ["Malformed", "[Expert Info (Error", "[Expert Info (Warning"] {
        assert!(
            !text.contains(bad),
            "tshark reports {bad:?}; see {}",
            dir.join(format!("{name}.txt")).display()
        );
    }
    text
}
