//! The vCPE's control plane, sans-IO: punted frames and a millisecond clock in,
//! frames to inject out. Two protocols share the worker's punt ring:
//!
//! - DHCPv4 on the LAN (RFC 2131): `vbng::dhcp4::Server`, the vBNG's server core,
//!   with the LAN address as router and server identifier; frames are taken apart
//!   and built by `vbng::dhcp4::wire` (RFC 2131 §4.1 destinations).
//! - IKEv2 on the WAN (RFC 7296, PSK): `ipsec::ike::daemon::Daemon`, one connection
//!   per `[tunnel.ike]`; its child SAs reach the `esp-*` nodes through their update
//!   queues. Datagrams are framed with the router's IKE helpers
//!   (`vnf_router::ike`); the next hop is the peer on the WAN subnet or the FIB's
//!   gateway, its MAC from the neighbour table, else from the last frame of that
//!   peer, else an ARP request (RFC 826) goes out and the datagram is dropped (IKE
//!   retransmits, RFC 7296 §2.1).
//!
//! [`run`] is the Linux thread around it: punt ring in, inject ring out; the
//! unikernel calls [`step`] from its one loop.
//!
//! Without the `std` feature (the unikernel) there is no IKE daemon and no key
//! server link: [`ControlPlane::new`] refuses `[tunnel.ike]`, `[tunnel.keyserver]`
//! and `[keyserver]` with one line; DHCP and the static-key tunnels work the same.

use crate::config::ConfigError;
#[cfg(feature = "std")]
use crate::config::TunnelConfig;
#[cfg(feature = "std")]
use crate::vnf::WAN;
use crate::vnf::{Vcpe, LAN};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
#[cfg(feature = "std")]
use core::net::IpAddr;
use core::net::Ipv4Addr;
use core::sync::atomic::{AtomicU64, Ordering};
use dataplane::buf::PoolCache;
use dataplane::proto::ethernet::MacAddr;
#[cfg(feature = "std")]
use dataplane::stages::l3::AdjKind;
#[cfg(feature = "std")]
use dataplane::stages::neigh::key_v4;
use dataplane::worker::PktRing;
#[cfg(feature = "std")]
use ipsec::ike::daemon::config::IkeSection;
#[cfg(feature = "std")]
use ipsec::ike::daemon::{Daemon, StageSink};
use ipsec::stage::StageQueues;
#[cfg(feature = "std")]
use std::collections::HashMap;
#[cfg(feature = "std")]
use std::sync::atomic::AtomicBool;
#[cfg(feature = "std")]
use std::time::{Duration, Instant};
use vbng::dhcp4::{self, Dhcp4Config, Server};

/// Counters of the control plane.
#[derive(Default)]
pub struct Stats {
    /// DHCP requests handed to the server.
    pub dhcp_rx: AtomicU64,
    /// DHCP replies sent.
    pub dhcp_tx: AtomicU64,
    /// Punted frames that were neither DHCP on the LAN nor IKE on the WAN.
    pub punt_other: AtomicU64,
    /// IKE datagrams received.
    pub ike_rx: AtomicU64,
    /// IKE datagrams dropped for want of the next hop's MAC (ARP sent).
    pub no_neighbor: AtomicU64,
    /// Frames the inject ring or the pool could not take.
    pub inject_failed: AtomicU64,
    /// Bound DHCP leases (gauge).
    pub leases: AtomicU64,
    /// The bound leases (client MAC, address), as of the last DHCP message or
    /// expiry (for `/leases`).
    #[cfg(feature = "std")]
    pub lease_list: std::sync::Mutex<Vec<([u8; 6], Ipv4Addr)>>,
}

impl Stats {
    /// Prometheus text of these counters.
    pub fn prometheus(&self) -> String {
        let mut s = String::new();
        for (n, t, h, a) in [
            (
                "vcpe_dhcp_requests_total",
                "counter",
                "DHCP requests handed to the server",
                &self.dhcp_rx,
            ),
            (
                "vcpe_dhcp_replies_total",
                "counter",
                "DHCP replies sent",
                &self.dhcp_tx,
            ),
            (
                "vcpe_dhcp_leases",
                "gauge",
                "bound DHCP leases",
                &self.leases,
            ),
            (
                "vcpe_ike_datagrams_total",
                "counter",
                "IKE datagrams received",
                &self.ike_rx,
            ),
            (
                "vcpe_punt_other_total",
                "counter",
                "punted frames that were neither DHCP nor IKE",
                &self.punt_other,
            ),
            (
                "vcpe_ike_no_neighbor_total",
                "counter",
                "IKE datagrams dropped while the next hop's MAC was unknown (ARP sent)",
                &self.no_neighbor,
            ),
            (
                "vcpe_inject_failed_total",
                "counter",
                "frames the inject ring or the buffer pool could not take",
                &self.inject_failed,
            ),
        ] {
            s.push_str(&format!(
                "# HELP {n} {h}\n# TYPE {n} {t}\n{n} {}\n",
                a.load(Ordering::Relaxed)
            ));
        }
        s
    }
}

/// A port and the next-hop address on it.
#[cfg(feature = "std")]
type Hop = (u16, Ipv4Addr);

/// The control plane of one vCPE.
pub struct ControlPlane {
    #[cfg(feature = "std")]
    l3: Arc<dataplane::stages::l3::L3>,
    macs: Vec<[u8; 6]>,
    #[cfg(feature = "std")]
    lan_addr: Ipv4Addr,
    dhcp: Option<Server>,
    #[cfg(feature = "std")]
    ike: Option<Daemon>,
    /// Tunnel keys from the key server (`[keyserver]`).
    #[cfg(feature = "std")]
    keys: Option<crate::keylink::KeyLink>,
    /// Peer address → (port, MAC) of the last frame from it.
    #[cfg(feature = "std")]
    learned: HashMap<Ipv4Addr, (u16, [u8; 6])>,
    out: Vec<(u16, Vec<u8>)>,
    pub stats: Arc<Stats>,
}

/// The DHCP server's configuration from `[lan.dhcp]`.
pub fn dhcp_config(v: &Vcpe) -> Option<Dhcp4Config> {
    let lan = &v.config.lan;
    let d = lan.dhcp.as_ref()?;
    Some(Dhcp4Config {
        gateway: lan.address,
        pools: vec![vbng::config::PoolConfig {
            name: "lan".into(),
            ranges: d.pool.clone(),
        }],
        dns: d.dns.clone(),
        mtu: Some(lan.mtu),
        lease_time_s: d.lease_time_s,
        max_leases: d.max_leases,
        max_offers: d.max_leases,
        max_rate_clients: d.max_leases.saturating_mul(4),
        ..Dhcp4Config::default()
    })
}

/// What a build without `std` (the unikernel) refuses: IKE and the key server need
/// the IKE daemon and host sockets (`ipsec`'s `daemon` feature is `std`). One line
/// naming the section.
pub fn needs_std(v: &crate::Config) -> Option<String> {
    if let Some((i, t)) = v.tunnels.iter().enumerate().find(|(_, t)| t.ike.is_some()) {
        return Some(format!(
            "tunnel[{i}] ({}).ike: IKEv2 needs the vcpe's std build (the Linux binary); this build takes [tunnel.static] keys only",
            t.name
        ));
    }
    if let Some((i, t)) = v
        .tunnels
        .iter()
        .enumerate()
        .find(|(_, t)| t.keyserver.is_some())
    {
        return Some(format!(
            "tunnel[{i}] ({}).keyserver: the key server link needs the vcpe's std build (the Linux binary); this build takes [tunnel.static] keys only",
            t.name
        ));
    }
    if v.keyserver.is_some() {
        return Some(
            "keyserver: the key server link needs the vcpe's std build (the Linux binary)"
                .to_string(),
        );
    }
    None
}

/// The IKE daemon's section from the `[tunnel.ike]` tunnels (`None` without one):
/// one connection per tunnel, one child SA `net` from `local` to `remote`.
#[cfg(feature = "std")]
pub fn ike_section(v: &Vcpe) -> Result<Option<IkeSection>, ConfigError> {
    let wan = v.wan_addr();
    let tunnels: Vec<&TunnelConfig> = v
        .config
        .tunnels
        .iter()
        .filter(|t| t.ike.is_some())
        .collect();
    if tunnels.is_empty() {
        return Ok(None);
    }
    use toml::Value;
    let mut conns = toml::Table::new();
    for t in tunnels {
        let Some(k) = &t.ike else { continue };
        let mut c = toml::Table::new();
        c.insert("local_addrs".into(), Value::String(wan.to_string()));
        c.insert("remote_addrs".into(), Value::String(t.peer.to_string()));
        c.insert(
            "local_id".into(),
            Value::String(k.local_id.clone().unwrap_or_else(|| wan.to_string())),
        );
        if let Some(r) = &k.remote_id {
            c.insert("remote_id".into(), Value::String(r.clone()));
        }
        // The daemon's section takes the PSK as text: handed over as hex. This
        // copy lives in the table below until the section is parsed, then is
        // freed (the daemon's own copy is wiped on drop).
        let hex: String = k.psk.bytes().iter().map(|b| format!("{b:02x}")).collect();
        c.insert("psk".into(), Value::String(format!("0x{hex}")));
        if let Some(p) = &k.proposals {
            c.insert(
                "proposals".into(),
                Value::Array(p.iter().cloned().map(Value::String).collect()),
            );
        }
        c.insert(
            "start_action".into(),
            Value::String(if k.initiate { "start" } else { "none" }.into()),
        );
        c.insert(
            "rekey_time_s".into(),
            Value::Integer(k.rekey_time_s.min(i64::MAX as u64) as i64),
        );
        c.insert(
            "dpd_delay_s".into(),
            Value::Integer(k.dpd_delay_s.min(i64::MAX as u64) as i64),
        );
        let mut child = toml::Table::new();
        child.insert(
            "local_ts".into(),
            Value::Array(vec![Value::String(format!(
                "{}/{}",
                t.local.network(),
                t.local.len
            ))]),
        );
        child.insert(
            "remote_ts".into(),
            Value::Array(vec![Value::String(format!(
                "{}/{}",
                t.remote.network(),
                t.remote.len
            ))]),
        );
        if let Some(p) = &k.esp_proposals {
            child.insert(
                "esp_proposals".into(),
                Value::Array(p.iter().cloned().map(Value::String).collect()),
            );
        }
        child.insert(
            "rekey_time_s".into(),
            Value::Integer(k.child_rekey_time_s.min(i64::MAX as u64) as i64),
        );
        let mut children = toml::Table::new();
        children.insert("net".into(), Value::Table(child));
        c.insert("children".into(), Value::Table(children));
        conns.insert(t.name.clone(), Value::Table(c));
    }
    let mut sec = toml::Table::new();
    sec.insert("connections".into(), Value::Table(conns));
    let s: IkeSection = Value::Table(sec)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError(format!("tunnel.ike: {}", e.message())))?;
    Ok(Some(s))
}

impl ControlPlane {
    /// The control plane of `v`; IKE child SAs go to `queues`.
    pub fn new(v: &Vcpe, queues: &StageQueues) -> Result<ControlPlane, ConfigError> {
        Self::for_workers(v, core::slice::from_ref(queues))
    }

    /// The control plane of `v` with several workers: IKE's and the key server's
    /// SA changes go to every worker's `queues` (one entry per worker), each drained
    /// by that worker's [`ipsec::stage::update_hook`] between bursts.
    pub fn for_workers(v: &Vcpe, queues: &[StageQueues]) -> Result<ControlPlane, ConfigError> {
        let dhcp = match dhcp_config(v) {
            Some(c) => Some(Server::new(c).map_err(|e| ConfigError(format!("lan.dhcp: {e}")))?),
            None => None,
        };
        #[cfg(not(feature = "std"))]
        {
            let _ = queues;
            if let Some(why) = needs_std(&v.config) {
                return Err(ConfigError(why));
            }
        }
        #[cfg(feature = "std")]
        let ike = match ike_section(v)? {
            Some(s) => {
                let sink = StageSink::new(
                    queues
                        .iter()
                        .map(|q| (q.encrypt.clone(), q.decrypt.clone()))
                        .collect(),
                );
                Some(
                    Daemon::new(&s, Box::new(sink))
                        .map_err(|e| ConfigError(format!("tunnel.ike: {e}")))?,
                )
            }
            None => None,
        };
        #[cfg(feature = "std")]
        let keys = match &v.config.keyserver {
            Some(k) => Some(crate::keylink::KeyLink::new(k, &v.config.tunnels, queues)?),
            None => None,
        };
        Ok(ControlPlane {
            #[cfg(feature = "std")]
            keys,
            #[cfg(feature = "std")]
            l3: v.l3.clone(),
            macs: v.macs.clone(),
            #[cfg(feature = "std")]
            lan_addr: v.config.lan.address.addr,
            dhcp,
            #[cfg(feature = "std")]
            ike,
            #[cfg(feature = "std")]
            learned: HashMap::new(),
            out: Vec::new(),
            stats: Arc::new(Stats::default()),
        })
    }

    /// The IKE daemon's metrics (RFC 7296 exchanges, SAs), when IKE runs.
    #[cfg(feature = "std")]
    pub fn ike_metrics(&self) -> Option<Arc<ipsec::ike::daemon::Metrics>> {
        self.ike.as_ref().map(|d| d.metrics())
    }

    /// The DHCP server's bound leases: (client MAC, address).
    pub fn leases(&self) -> Vec<([u8; 6], Ipv4Addr)> {
        match &self.dhcp {
            Some(s) => s.leases().map(|(k, l)| (k.mac, l.addr)).collect(),
            None => Vec::new(),
        }
    }

    fn publish_leases(&self) {
        let l = self.leases();
        self.stats.leases.store(l.len() as u64, Ordering::Relaxed);
        #[cfg(feature = "std")]
        if let Ok(mut g) = self.stats.lease_list.lock() {
            *g = l;
        }
    }

    /// Established IKE SAs.
    #[cfg(feature = "std")]
    pub fn ike_sas(&self) -> usize {
        self.ike.as_ref().map_or(0, |d| d.ike_sas())
    }

    /// Child SAs (inbound SPI, outbound SPI) of the tunnel `name`.
    #[cfg(feature = "std")]
    pub fn child_sas(&self, name: &str) -> Vec<(u32, u32)> {
        self.ike.as_ref().map_or(Vec::new(), |d| d.children(name))
    }

    /// The key server link, when `[keyserver]` is configured.
    #[cfg(feature = "std")]
    pub fn keylink(&self) -> Option<&crate::keylink::KeyLink> {
        self.keys.as_ref()
    }

    /// Opt-in export of the key server's ESP SAs to `path` (Wireshark `esp_sa`
    /// records, mode 0600; see [`crate::keylink`]). Refused without `[keyserver]`.
    #[cfg(feature = "std")]
    pub fn export_sas(&mut self, path: &std::path::Path) -> Result<(), ConfigError> {
        match self.keys.as_mut() {
            Some(k) => k.export_sas(path),
            None => Err(ConfigError(
                "--esp-sa-log: needs a [keyserver] section (static keys are in the config)".into(),
            )),
        }
    }

    /// Log lines of the IKE daemon and the key server link since the last call.
    #[cfg(feature = "std")]
    pub fn take_log(&mut self) -> Vec<String> {
        let mut l = self.ike.as_mut().map_or(Vec::new(), |d| d.take_log());
        if let Some(k) = self.keys.as_mut() {
            l.extend(k.take_log());
        }
        l
    }

    /// One punted frame received on `port` at `now_ms`.
    pub fn handle_frame(&mut self, port: u16, frame: &[u8], now_ms: u64) {
        if port == LAN {
            if let (Some(srv), Ok(req)) = (self.dhcp.as_mut(), dhcp4::wire::decap(frame)) {
                self.stats.dhcp_rx.fetch_add(1, Ordering::Relaxed);
                let h = srv.handle(now_ms, req.vlans, req.message);
                if let Some(r) = h.reply {
                    let f = dhcp4::wire::encap(
                        &r,
                        MacAddr(self.macs.get(usize::from(LAN)).copied().unwrap_or([0; 6])),
                        srv.config().server_id(),
                        None,
                    );
                    self.stats.dhcp_tx.fetch_add(1, Ordering::Relaxed);
                    self.out.push((LAN, f));
                }
                self.publish_leases();
                return;
            }
        }
        #[cfg(feature = "std")]
        if port == WAN {
            if let Some(d) = self.ike.as_mut() {
                if let Some((port, mac, g)) = vnf_router::ike::parse_frame(port, frame) {
                    if let IpAddr::V4(a) = g.peer.ip() {
                        self.learned.insert(a, (port, mac));
                    }
                    self.stats.ike_rx.fetch_add(1, Ordering::Relaxed);
                    d.handle(&g, now_ms);
                    self.flush_ike();
                    return;
                }
            }
        }
        self.stats.punt_other.fetch_add(1, Ordering::Relaxed);
    }

    /// Timers: lease and offer expiry, IKE retransmissions, rekeys, DPD.
    pub fn poll(&mut self, now_ms: u64) {
        if let Some(s) = self.dhcp.as_mut() {
            let before = s.lease_count();
            s.poll(now_ms);
            if s.lease_count() != before {
                self.publish_leases();
            }
        }
        #[cfg(feature = "std")]
        {
            if let Some(d) = self.ike.as_mut() {
                d.poll(now_ms);
            }
            if let Some(k) = self.keys.as_mut() {
                k.poll(now_ms);
            }
            self.flush_ike();
        }
    }

    /// Deletes the IKE SAs (RFC 7296 §1.4.1) on the way down.
    #[cfg(feature = "std")]
    pub fn shutdown(&mut self, now_ms: u64) {
        if let Some(d) = self.ike.as_mut() {
            d.shutdown(now_ms);
        }
        self.flush_ike();
    }

    /// Frames to send: (port, Ethernet frame).
    pub fn take_frames(&mut self) -> Vec<(u16, Vec<u8>)> {
        core::mem::take(&mut self.out)
    }

    /// The port and MAC to reach `peer`, or the (port, next hop) to ask for.
    #[cfg(feature = "std")]
    fn next_hop(&self, peer: Ipv4Addr) -> Result<(u16, [u8; 6]), Option<Hop>> {
        let hop = self
            .l3
            .fib4
            .lookup(u32::from(peer))
            .and_then(|nh| self.l3.adj(nh).copied())
            .and_then(|a| match a.kind {
                AdjKind::Glean => Some((a.port, peer)),
                AdjKind::Via4(gw) => Some((a.port, gw)),
                _ => None,
            });
        if let Some((port, gw)) = hop {
            if let Some(mac) = self.l3.neigh.lookup(key_v4(gw)) {
                return Ok((port, mac));
            }
        }
        match self.learned.get(&peer) {
            Some(x) => Ok(*x),
            None => Err(hop),
        }
    }

    #[cfg(feature = "std")]
    fn flush_ike(&mut self) {
        let Some(d) = self.ike.as_mut() else {
            return;
        };
        let out = d.take_output();
        for g in out {
            let IpAddr::V4(peer) = g.peer.ip() else {
                continue;
            };
            match self.next_hop(peer) {
                Ok((port, mac)) => {
                    let src = self.macs.get(usize::from(port)).copied().unwrap_or([0; 6]);
                    match vnf_router::ike::udp_frame(mac, src, &g) {
                        Some(f) => self.out.push((port, f)),
                        None => {
                            self.stats.inject_failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Err(hop) => {
                    self.stats.no_neighbor.fetch_add(1, Ordering::Relaxed);
                    if let Some((port, gw)) = hop {
                        let me = self
                            .l3
                            .iface(port)
                            .and_then(|i| i.v4_for(gw))
                            .unwrap_or(self.lan_addr);
                        if let Some(mac) = self.macs.get(usize::from(port)).copied() {
                            self.out
                                .push((port, vnf_router::ike::arp_request(mac, me, gw)));
                        }
                    }
                }
            }
        }
    }
}

fn inject(cache: &mut PoolCache, ring: &PktRing, port: u16, f: &[u8], stats: &Stats) {
    let ok = match cache.alloc() {
        Some(mut p) => {
            if p.copy_from(f).is_ok() {
                p.meta.port = port;
                match ring.push(p) {
                    Ok(()) => true,
                    Err(p) => {
                        cache.free(p);
                        false
                    }
                }
            } else {
                cache.free(p);
                false
            }
        }
        None => false,
    };
    if !ok {
        stats.inject_failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// One step: every punted frame in, timers, frames out. Returns the frames taken
/// from `punt`.
pub fn step(
    cp: &mut ControlPlane,
    punt: &PktRing,
    inject_ring: &PktRing,
    cache: &mut PoolCache,
    now_ms: u64,
) -> usize {
    let mut n = 0;
    while let Some(p) = punt.pop() {
        n += 1;
        cp.handle_frame(p.meta.port, p.data(), now_ms);
        cache.free(p);
    }
    cp.poll(now_ms);
    let stats = cp.stats.clone();
    for (port, f) in cp.take_frames() {
        inject(cache, inject_ring, port, &f, &stats);
    }
    #[cfg(feature = "std")]
    for l in cp.take_log() {
        tracing::info!("ike: {l}");
    }
    n
}

/// Runs the control plane until `stop`; time is milliseconds since the call. On
/// the way down the IKE SAs are deleted while the worker still runs (it must be
/// stopped after this returns), waiting up to a second for the answers.
#[cfg(feature = "std")]
pub fn run(
    mut cp: ControlPlane,
    punt: PktRing,
    inject_ring: PktRing,
    mut cache: PoolCache,
    stop: Arc<AtomicBool>,
) {
    let t0 = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = t0.elapsed().as_millis() as u64;
        if step(&mut cp, &punt, &inject_ring, &mut cache, now) == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let now = t0.elapsed().as_millis() as u64;
    cp.shutdown(now);
    step(&mut cp, &punt, &inject_ring, &mut cache, now);
    let end = Instant::now() + Duration::from_secs(1);
    while cp.ike_sas() > 0 && Instant::now() < end {
        let now = t0.elapsed().as_millis() as u64;
        step(&mut cp, &punt, &inject_ring, &mut cache, now);
        std::thread::sleep(Duration::from_millis(2));
    }
}
