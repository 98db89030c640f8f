//! An in-process vCPE: the graph of `vcpe::vnf::build` run one frame at a time,
//! punts handed to its control plane.
#![allow(dead_code)]

use dataplane::batch::{Batch, Out};
use dataplane::buf::Pool;
use dataplane::stage::Pipeline;
use dataplane::stages::neigh::key_v4;
use etherparse::PacketBuilder;
use std::net::Ipv4Addr;
use vcpe::control::ControlPlane;
use vcpe::vnf::{self, Vcpe};
use vcpe::Config;

pub const A: &str = include_str!("../../examples/vcpe-a.toml");
pub const B: &str = include_str!("../../examples/vcpe-b.toml");

pub struct Dut {
    pub vcpe: std::sync::Arc<Vcpe>,
    pub graph: Pipeline,
    pub control: ControlPlane,
    pub out: Out,
    pub now_ms: u64,
    /// `send` runs the control plane's timers after each frame (default).
    pub poll_control: bool,
    _pool: &'static Pool,
}

impl Dut {
    pub fn new(text: &str) -> Dut {
        let cfg = Config::from_toml(text).unwrap();
        let b = vnf::build(&cfg).unwrap();
        let pool = Pool::new(4096).unwrap();
        let mut out = Out::new(2, pool.cache());
        out.now_ns = 1_000_000_000;
        Dut {
            vcpe: b.vcpe,
            graph: b.graph,
            control: b.control,
            out,
            now_ms: 1000,
            poll_control: true,
            _pool: pool,
        }
    }

    /// A static neighbour entry (as ARP would learn it).
    pub fn neighbour(&self, ip: [u8; 4], mac: [u8; 6]) {
        assert!(self.vcpe.l3.neigh.learn(key_v4(Ipv4Addr::from(ip)), mac, 0));
    }

    /// Runs one frame received on `port`; returns what left (port, frame), with the
    /// control plane's answers to punted frames.
    pub fn send(&mut self, port: u16, f: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut b = Batch::new();
        let mut p = self.out.cache.alloc().unwrap();
        p.copy_from(f).unwrap();
        p.meta.port = port;
        b.push(p).unwrap();
        self.out.now_ns += 1_000_000;
        self.now_ms += 1;
        self.graph.run(&mut b, &mut self.out);
        b.free_all(&mut self.out.cache);
        let mut res = Vec::new();
        for (i, tx) in self.out.ports.iter_mut().enumerate() {
            let mut got = Vec::new();
            tx.drain(|p| got.push(p));
            for p in got {
                res.push((i as u16, p.data().to_vec()));
                self.out.cache.free(p);
            }
        }
        let mut punted = Vec::new();
        self.out.punt.drain(|p| punted.push(p));
        for p in punted {
            self.control
                .handle_frame(p.meta.port, p.data(), self.now_ms);
            self.out.cache.free(p);
        }
        if self.poll_control {
            self.control.poll(self.now_ms);
        }
        res.extend(self.control.take_frames());
        res
    }
}

pub fn udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .udp(sport, dport);
    let mut f = Vec::new();
    b.write(&mut f, payload).unwrap();
    f
}

pub fn icmp_echo(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .icmpv4_echo_request(id, 1);
    let mut f = Vec::new();
    b.write(&mut f, b"ping").unwrap();
    f
}

/// (src, dst, ip protocol, src port, dst port).
pub type Tuple = ([u8; 4], [u8; 4], u8, u16, u16);

/// The [`Tuple`] of an IPv4 frame.
pub fn ip_of(f: &[u8]) -> Option<Tuple> {
    let s = etherparse::SlicedPacket::from_ethernet(f).ok()?;
    let etherparse::NetSlice::Ipv4(ip) = s.net? else {
        return None;
    };
    let h = ip.header();
    let (sp, dp) = match s.transport {
        Some(etherparse::TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        Some(etherparse::TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        _ => (0, 0),
    };
    Some((h.source(), h.destination(), h.protocol().0, sp, dp))
}

/// A DHCPDISCOVER (RFC 2131 §4.4.1) from `mac` with the broadcast flag, in a
/// broadcast frame from 0.0.0.0:68 to 255.255.255.255:67.
pub fn dhcp_discover(mac: [u8; 6], xid: u32) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = 1;
    m[1] = 1;
    m[2] = 6;
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m[10] = 0x80;
    m[28..34].copy_from_slice(&mac);
    m.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1, 55, 3, 1, 3, 6, 255]);
    m.resize(300, 0);
    udp(mac, [0xff; 6], [0, 0, 0, 0], [255; 4], 68, 67, &m)
}
