//! IPv4/IPv6 router VNF: builds the shared L3 state (interfaces, FIBs, adjacencies,
//! neighbours) from a [`Config`] and composes the forwarding pipeline
//! (`ethernet-input` → `arp-input` → `ip4-input` → `ip4-lookup` → `ip4-rewrite`, and
//! the IPv6 equivalents) that every worker runs. `no_std` + alloc: the unikernel
//! image links the same code; the `router` binary (feature `std`) runs it over Linux
//! ports. With an `[ike]` section (feature `std`), [`Router::pipeline_ipsec`] adds
//! `esp-decrypt` after `ip4-input` and `esp-encrypt` before `ip4-lookup`, and the
//! [`ike`] module runs the IKE daemon (RFC 7296) over the worker's punt and inject
//! rings.
//!
//! `ip4-input` and `ip6-input` are built with the router's own addresses
//! ([`Ip4Input::for_l3`], [`Ip6Input::for_l3`]) so martians (RFC 1812 §5.3.7,
//! §4.2.2.11, §5.3.5; RFC 4291 §2.5.2, §2.5.3, §2.5.5.2, §2.5.6, §2.7) and directed
//! broadcasts of connected subnets are dropped, each under its own reason. The size
//! limits of the configuration are in [`config::limits`] and the crate's README.
#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod config;
#[cfg(feature = "std")]
pub mod ike;
#[cfg(feature = "mgmt")]
pub mod mgmt;

pub use config::{Config, ConfigError};

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use config::{parse_mac, parse_net4, parse_net6, parse_prefix, Prefix};
use core::net::IpAddr;
use dataplane::lpm::NextHop;
use dataplane::stage::Pipeline;
use dataplane::stages::arp::ArpInput;
use dataplane::stages::classify::Classify;
use dataplane::stages::ip4::{Ip4Input, Ip4Lookup, Ip4Rewrite};
use dataplane::stages::ip6::{Ip6Input, Ip6Lookup, Ip6Nd, Ip6Rewrite};
use dataplane::stages::l3::{Iface, L3Builder, Net4, Net6, L3};
use dataplane::stages::neigh::{key_v4, key_v6};

/// A built router: the shared L3 state plus what each worker needs.
pub struct Router {
    pub l3: Arc<L3>,
    /// MAC of each port, index = port number.
    pub macs: Vec<[u8; 6]>,
    pub config: Config,
}

impl core::fmt::Debug for Router {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Router").field("l3", &self.l3).finish()
    }
}

impl Router {
    /// Builds the router. `port_macs[i]` is the MAC of interface `i`'s port, used
    /// when the config gives none; `route_file` is the text of `route_file.path`
    /// when the config names one.
    pub fn build(
        cfg: &Config,
        port_macs: &[[u8; 6]],
        route_file: Option<&str>,
    ) -> Result<Router, ConfigError> {
        cfg.check()?;
        let e = &cfg.engine;
        let mut b = L3Builder::new(e.tbl8_groups, e.neighbors)
            .map_err(|x| ConfigError(format!("engine: {x}")))?;
        let mut macs = Vec::new();
        for (i, ic) in cfg.interfaces.iter().enumerate() {
            let mac = match &ic.mac {
                Some(m) => parse_mac(m).map_err(ConfigError)?,
                None => match port_macs.get(i) {
                    Some(m) => *m,
                    None => [0x02, 0, 0, 0, (i >> 8) as u8, i as u8],
                },
            };
            macs.push(mac);
            let mut v4 = Vec::new();
            for a in &ic.ipv4 {
                let (addr, len) = parse_net4(a).map_err(ConfigError)?;
                v4.push(Net4 { addr, len });
            }
            let mut v6 = Vec::new();
            for a in &ic.ipv6 {
                let (addr, len) = parse_net6(a).map_err(ConfigError)?;
                v6.push(Net6 { addr, len });
            }
            b.iface(Iface {
                name: ic.name.clone(),
                port: i as u16,
                mac,
                v4,
                v6,
                mtu: ic.mtu,
            })
            .map_err(|x| ConfigError(format!("interface[{i}] ({}): {x}", ic.name)))?;
        }
        for (i, r) in cfg.routes.iter().enumerate() {
            let at = format!("route[{i}] ({})", r.prefix);
            let p = parse_prefix(&r.prefix).map_err(|x| ConfigError(format!("{at}: {x}")))?;
            let nh = if r.drop {
                b.blackhole().map_err(|e| format!("{e}"))
            } else {
                via(&mut b, r.via.as_deref().unwrap_or(""))
            }
            .map_err(|x| ConfigError(format!("{at}: {x}")))?;
            add_route(&mut b, p, nh).map_err(|x| ConfigError(format!("{at}: {x}")))?;
        }
        if let Some(rf) = &cfg.route_file {
            let text = route_file.ok_or_else(|| {
                ConfigError(format!("route_file.path: {} was not loaded", rf.path))
            })?;
            let mut nhs = Vec::new();
            for (i, v) in rf.next_hops.iter().enumerate() {
                nhs.push(
                    via(&mut b, v)
                        .map_err(|x| ConfigError(format!("route_file.next_hops[{i}]: {x}")))?,
                );
            }
            load_route_file(&mut b, text, &nhs)
                .map_err(|x| ConfigError(format!("route_file {}: {x}", rf.path)))?;
        }
        let st = b.state_mut();
        for (i, n) in cfg.neighbors.iter().enumerate() {
            let ip: IpAddr =
                n.ip.parse()
                    .map_err(|_| ConfigError(format!("neighbor[{i}].ip: bad address")))?;
            let mac =
                parse_mac(&n.mac).map_err(|x| ConfigError(format!("neighbor[{i}].mac: {x}")))?;
            let key = match ip {
                IpAddr::V4(a) => key_v4(a),
                IpAddr::V6(a) => key_v6(&a),
            };
            if !st.neigh.learn(key, mac, 0) {
                return Err(ConfigError(format!("neighbor[{i}]: neighbour table full")));
            }
        }
        // Static entries never go stale.
        st.neigh.reachable_ns = u64::MAX;
        // Build the optional stages once so a bad section fails here, with its name.
        feature_stages(cfg, 0, 1)?;
        Ok(Router {
            l3: Arc::new(b.build()),
            macs,
            config: cfg.clone(),
        })
    }

    /// A pipeline for one worker (all workers share the L3 state; NAT, firewall and
    /// QoS tables are per worker). The optional stages were built once by
    /// [`Router::build`], so building them again cannot fail on configuration.
    pub fn pipeline(&self) -> Pipeline {
        self.pipeline_with(None, 0, 1)
    }

    /// The pipeline of worker `worker` among `workers` (run them joined by a
    /// hand-off mesh, `dataplane::worker::handoff_mesh`): `nat44` is built for that
    /// worker (its sessions, its slice of the outside ports, steering to the owner).
    pub fn pipeline_for(&self, worker: u16, workers: u16) -> Pipeline {
        self.pipeline_with(None, worker, workers)
    }

    /// The IPv4 addresses IKE is spoken on (the `[ike]` connections' local
    /// addresses); empty without an `[ike]` section.
    #[cfg(feature = "std")]
    pub fn ike_addrs(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = Vec::new();
        if let Some(ike) = &self.config.ike {
            for c in ike.connections().unwrap_or_default() {
                if !v.contains(&c.local) {
                    v.push(c.local);
                }
            }
        }
        v
    }

    /// A pipeline for one worker of an IPsec gateway: as [`Router::pipeline`] plus
    /// `esp-decrypt` right after `ip4-input` (ESP and ESP-in-UDP to the IKE
    /// addresses is decrypted, IKE on UDP 500/4500 punted to the daemon; the inner
    /// packet then goes through firewall, NAT, QoS and routing like any other) and
    /// `esp-encrypt` right before `ip4-lookup` (traffic an SPD policy names is
    /// encrypted first, so the lookup routes the outer packet to the peer). The
    /// stages take their SAs from `queues` (register
    /// [`ipsec::stage::update_hook`] on the worker).
    #[cfg(feature = "std")]
    pub fn pipeline_ipsec(&self, queues: &ipsec::stage::StageQueues) -> Pipeline {
        self.pipeline_with(Some(queues), 0, 1)
    }

    /// [`Router::pipeline_ipsec`] for worker `worker` of `workers`: each worker has
    /// its own `queues` (the daemon fans every SA out to all of them) and hands ESP
    /// traffic to the worker that owns its SA (`ipsec::stage::sa_owner`).
    #[cfg(feature = "std")]
    pub fn pipeline_ipsec_for(
        &self,
        queues: &ipsec::stage::StageQueues,
        worker: u16,
        workers: u16,
    ) -> Pipeline {
        self.pipeline_with(Some(queues), worker, workers)
    }

    #[cfg(feature = "std")]
    fn pipeline_with(
        &self,
        queues: Option<&ipsec::stage::StageQueues>,
        worker: u16,
        workers: u16,
    ) -> Pipeline {
        let extra = feature_stages(&self.config, worker, workers).unwrap_or_default();
        let mut p = self.pipeline_head(queues.is_none() && extra.is_empty());
        if let Some(q) = queues {
            p.push(Box::new(
                ipsec::stage::EspDecrypt::gateway(self.ike_addrs(), q.decrypt.clone())
                    .for_worker(worker, workers),
            ));
        }
        for s in extra {
            p.push(s);
        }
        if let Some(q) = queues {
            p.push(Box::new(
                ipsec::stage::EspEncrypt::gateway(q.encrypt.clone()).for_worker(worker, workers),
            ));
        }
        self.pipeline_tail(p)
    }

    #[cfg(not(feature = "std"))]
    fn pipeline_with(&self, _queues: Option<()>, worker: u16, workers: u16) -> Pipeline {
        let extra = feature_stages(&self.config, worker, workers).unwrap_or_default();
        let mut p = self.pipeline_head(extra.is_empty());
        for s in extra {
            p.push(s);
        }
        self.pipeline_tail(p)
    }

    /// `ethernet-input` and `ip4-input`. `lookup_next`: `ip4-lookup` follows
    /// `ip4-input` directly (no firewall, NAT, QoS or IPsec node in between), so
    /// martian destinations are left to the FIB's drop routes.
    fn pipeline_head(&self, lookup_next: bool) -> Pipeline {
        let mut p = Pipeline::new();
        // ethernet-input branches by class; each protocol's nodes form a chain. IPv4
        // is also its default successor and comes next, so IPv4 batches move no
        // packet between frames.
        p.add(
            Box::new(Classify::new(self.macs.clone()).with_next(ROUTER_NEXT)),
            Some("ip4-input"),
        );
        let input = Ip4Input::for_l3(&self.l3);
        p.push(Box::new(if lookup_next {
            input.dst_checked_by_fib()
        } else {
            input
        }));
        p
    }

    fn pipeline_tail(&self, mut p: Pipeline) -> Pipeline {
        p.push(Box::new(Ip4Lookup::new(self.l3.clone())));
        p.add(Box::new(Ip4Rewrite::new(self.l3.clone())), None);
        p.add(Box::new(ArpInput::new(self.l3.clone())), None);
        p.push(Box::new(Ip6Input::for_l3(&self.l3)));
        p.push(Box::new(Ip6Nd::new(self.l3.clone())));
        p.push(Box::new(Ip6Lookup::new(self.l3.clone())));
        p.add(Box::new(Ip6Rewrite::new(self.l3.clone())), None);
        p
    }
}

/// `ethernet-input`'s next nodes in the router: ARP, IPv4, IPv6.
const ROUTER_NEXT: &[&str] = &["arp-input", "ip4-input", "ip6-input"];

/// Firewall, NAT44 and QoS stages of the config, in pipeline order: firewall first
/// (it sees inside addresses), then NAT, then the policer, shaper and marker.
fn feature_stages(
    cfg: &Config,
    worker: u16,
    workers: u16,
) -> Result<Vec<Box<dyn dataplane::stage::Stage>>, ConfigError> {
    use dataplane::stages::{firewall::Firewall, nat::Nat44, qos};
    let mut v: Vec<Box<dyn dataplane::stage::Stage>> = Vec::new();
    if let Some(f) = &cfg.firewall {
        v.push(Box::new(
            Firewall::new(f).map_err(|e| ConfigError(format!("firewall: {e}")))?,
        ));
    }
    if let Some(n) = &cfg.nat {
        v.push(Box::new(
            Nat44::new_worker(n, worker, workers).map_err(|e| ConfigError(format!("nat: {e}")))?,
        ));
    }
    if let Some(q) = &cfg.qos {
        if let Some(pc) = &q.policer {
            v.push(Box::new(
                qos::Policer::new(pc, 0).map_err(|e| ConfigError(format!("qos.policer: {e}")))?,
            ));
        }
        if let Some(sc) = &q.shaper {
            v.push(Box::new(
                qos::Shaper::new(sc, 0).map_err(|e| ConfigError(format!("qos.shaper: {e}")))?,
            ));
        }
        if let Some(mc) = &q.marker {
            v.push(Box::new(
                qos::DscpMarker::new(mc).map_err(|e| ConfigError(format!("qos.marker: {e}")))?,
            ));
        }
    }
    Ok(v)
}

fn via(b: &mut L3Builder, gw: &str) -> Result<NextHop, String> {
    match gw.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => b.via4(a).map_err(|e| format!("{e}")),
        Ok(IpAddr::V6(a)) => b.via6(a).map_err(|e| format!("{e}")),
        Err(_) => Err(format!("{gw:?} is not an IP address")),
    }
}

fn add_route(b: &mut L3Builder, p: Prefix, nh: NextHop) -> Result<(), String> {
    match p {
        Prefix::V4(a, l) => b.route4(a, l, nh),
        Prefix::V6(a, l) => b.route6(a, l, nh),
    }
    .map_err(|e| format!("{e}"))
}

/// Loads a route file (`PREFIX/LEN INDEX` lines, the syntax of
/// [`dataplane::lpm::routes`]); INDEX picks one of `nhs`. Errors name the line.
fn load_route_file(b: &mut L3Builder, text: &str, nhs: &[NextHop]) -> Result<usize, String> {
    use dataplane::lpm::routes::{parse_line, Route};
    let mut n = 0;
    for (ln, line) in text.lines().enumerate() {
        let at = ln + 1;
        let r = match parse_line(line) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => return Err(format!("line {at}: {e}")),
        };
        let idx = match r {
            Route::V4(x) => x.nh,
            Route::V6(x) => x.nh,
        } as usize;
        let nh = *nhs.get(idx).ok_or_else(|| {
            format!("line {at}: next-hop index {idx} not in route_file.next_hops")
        })?;
        match r {
            Route::V4(x) => b.route4(core::net::Ipv4Addr::from(x.addr), x.len, nh),
            Route::V6(x) => b.route6(core::net::Ipv6Addr::from(x.addr), x.len, nh),
        }
        .map_err(|e| format!("line {at}: {e}"))?;
        n += 1;
    }
    Ok(n)
}
