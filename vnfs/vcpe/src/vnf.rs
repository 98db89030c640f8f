//! The composition: [`build`] turns a [`Config`] into the worker's graph and the
//! control plane ([`build_workers`]: one graph per worker, see
//! [`Vcpe::graph_for`]). The `vcpe` binary, `bench vcpe`, `testbed lab vcpe` and
//! the tests all call it, so what is tested is what ships.
//!
//! ```text
//! port lan ─> vcpe-lan-input ──(DHCP to port 67)──> punt (DHCP server)
//!                  ▼
//! port wan ─> ethernet-input ─┬─> arp-input ────────────────────────────> port / drop
//!                             └─> ip4-input ─> vcpe-wan-guard (clear packets from a
//!                                  tunnel's remote subnet: drop) ─> esp-decrypt (ESP
//!                                  to the WAN address; IKE punted) ─> firewall
//!                                  ─> vcpe-select
//!   vcpe-select ─┬─(to a remote subnet)─> esp-encrypt ─> vcpe-tunnel-check ─┐
//!                ├─(LAN→WAN, WAN→WAN address)─> nat44 ─────────────────────┤
//!                └─(decrypted, LAN→LAN, to us)─────────────────────────────┴─>
//!                  ip4-lookup ─> ip4-rewrite (ARP, TTL, frag, ICMP) ─> port
//! ```
//!
//! The firewall's rules: LAN traffic starts tracked connections; traffic decrypted
//! from a tunnel (remote subnet to local subnet) too, unless
//! `firewall.tunnel_inbound = false`; WAN traffic to the WAN address passes on to
//! `nat44`, whose address-and-port-dependent filtering (RFC 4787 REQ-8) lets only
//! the replies of its mappings in — the firewall sees the WAN address before the
//! translation, so the NAT's mapping is the state that admits them; everything else
//! from the WAN is dropped (`firewall`, `deny`).

use crate::config::{Config, ConfigError, TunnelConfig};
use crate::control::ControlPlane;
use crate::nodes::{LanInput, Select, Steer, Subnet, TunnelCheck, WanGuard};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};
use dataplane::stage::Pipeline;
use dataplane::stages::arp::ArpInput;
use dataplane::stages::classify::Classify;
use dataplane::stages::firewall::{Action as FwAction, Firewall, FirewallConfig, RuleConfig};
use dataplane::stages::ip4::{Ip4Input, Ip4Lookup, Ip4Rewrite};
use dataplane::stages::l3::{Iface, L3Builder, L3};
use dataplane::stages::nat::{Behavior, Nat44, NatConfig};
use ipsec::crypto::{Algorithm, KeyMaterial};
use ipsec::sa::{Direction, SaConfig};
use ipsec::spd::{Action, Prefix, Selector};
use ipsec::stage::{EspDecrypt, EspEncrypt, StageQueues};

/// Port number of the LAN interface.
pub const LAN: u16 = 0;
/// Port number of the WAN interface.
pub const WAN: u16 = 1;

/// `ethernet-input`'s next nodes in the vCPE: ARP and IPv4 (IPv6 is not routed:
/// it goes to `ip4-input`, which drops it under its version reason).
const ETH_NEXT: &[&str] = &["arp-input", "ip4-input"];

/// The shared state of a built vCPE.
pub struct Vcpe {
    pub config: Config,
    /// Interfaces, FIB, neighbours (shared by the worker and the control plane).
    pub l3: Arc<L3>,
    /// MAC of the LAN (index 0) and WAN (index 1) ports.
    pub macs: Vec<[u8; 6]>,
}

/// What [`build`] returns: the state, one worker's graph and the control plane.
pub struct Built {
    pub vcpe: Arc<Vcpe>,
    pub graph: Pipeline,
    /// SA queues from the control plane (IKE) to the graph's `esp-*` nodes: register
    /// [`ipsec::stage::update_hook`] on the worker.
    pub queues: StageQueues,
    pub control: ControlPlane,
}

/// Builds the vCPE with the configured MACs (or locally administered ones).
pub fn build(cfg: &Config) -> Result<Built, ConfigError> {
    build_with_macs(cfg, &[])
}

/// Builds the vCPE; `port_macs` are the ports' own MACs (LAN, WAN), used where the
/// configuration gives none.
pub fn build_with_macs(cfg: &Config, port_macs: &[[u8; 6]]) -> Result<Built, ConfigError> {
    let vcpe = Arc::new(Vcpe::new(cfg, port_macs)?);
    let queues = StageQueues::new();
    let graph = vcpe.graph(&queues)?;
    let control = ControlPlane::new(&vcpe, &queues)?;
    Ok(Built {
        vcpe,
        graph,
        queues,
        control,
    })
}

/// What [`build_workers`] returns: the state, one graph and one set of SA queues
/// per worker (`engine.workers`), and the control plane feeding all of them.
pub struct BuiltWorkers {
    pub vcpe: Arc<Vcpe>,
    /// Worker k's graph ([`Vcpe::graph_for`]); run them joined by a hand-off mesh
    /// (`dataplane::worker::handoff_mesh`) when there are several.
    pub graphs: Vec<Pipeline>,
    /// Worker k's SA queues: register [`ipsec::stage::update_hook`] on each worker.
    pub queues: Vec<StageQueues>,
    pub control: ControlPlane,
}

/// Builds the vCPE for `engine.workers` workers; `port_macs` as in
/// [`build_with_macs`]. One worker gives what [`build_with_macs`] gives.
pub fn build_workers(cfg: &Config, port_macs: &[[u8; 6]]) -> Result<BuiltWorkers, ConfigError> {
    let vcpe = Arc::new(Vcpe::new(cfg, port_macs)?);
    let n = cfg
        .engine
        .workers
        .clamp(1, crate::config::limits::MAX_WORKERS);
    let queues: Vec<StageQueues> = (0..n).map(|_| StageQueues::new()).collect();
    let mut graphs = Vec::with_capacity(n);
    for (w, q) in queues.iter().enumerate() {
        graphs.push(vcpe.graph_for(q, w as u16, n as u16)?);
    }
    let control = ControlPlane::for_workers(&vcpe, &queues)?;
    Ok(BuiltWorkers {
        vcpe,
        graphs,
        queues,
        control,
    })
}

fn cerr(at: &str, e: impl core::fmt::Display) -> ConfigError {
    ConfigError(format!("{at}: {e}"))
}

impl Vcpe {
    /// Checks the configuration and builds the L3 state.
    pub fn new(cfg: &Config, port_macs: &[[u8; 6]]) -> Result<Vcpe, ConfigError> {
        cfg.check()?;
        let e = &cfg.engine;
        let mut b = L3Builder::new(e.tbl8_groups, e.neighbors).map_err(|x| cerr("engine", x))?;
        let mac_of = |i: usize, m: Option<dataplane::proto::ethernet::MacAddr>| match m {
            Some(m) => m.0,
            None => port_macs
                .get(i)
                .copied()
                .unwrap_or([0x02, 0xc9, 0, 0, 0, i as u8]),
        };
        let macs = vec![mac_of(0, cfg.lan.mac), mac_of(1, cfg.wan.mac)];
        b.iface(Iface {
            name: "lan".into(),
            port: LAN,
            mac: macs[0],
            v4: vec![cfg.lan.address],
            v6: Vec::new(),
            mtu: cfg.lan.mtu,
        })
        .map_err(|x| cerr("lan", x))?;
        b.iface(Iface {
            name: "wan".into(),
            port: WAN,
            mac: macs[1],
            v4: vec![cfg.wan.address],
            v6: Vec::new(),
            mtu: cfg.wan.mtu,
        })
        .map_err(|x| cerr("wan", x))?;
        let gw = b
            .via4(cfg.wan.gateway)
            .map_err(|x| cerr("wan.gateway", x))?;
        b.route4(Ipv4Addr::UNSPECIFIED, 0, gw)
            .map_err(|x| cerr("wan.gateway", x))?;
        for (i, r) in cfg.routes.iter().enumerate() {
            let at = format!("route[{i}] ({})", r.prefix);
            let nh = b.via4(r.via).map_err(|x| cerr(&at, x))?;
            b.route4(r.prefix.network(), r.prefix.len, nh)
                .map_err(|x| cerr(&at, x))?;
        }
        // Learned neighbours go stale and are asked again (RFC 826 refresh).
        let v = Vcpe {
            config: cfg.clone(),
            l3: Arc::new(b.build()),
            macs,
        };
        // Build the nodes once so a bad section fails here, with its name.
        let n = cfg
            .engine
            .workers
            .clamp(1, crate::config::limits::MAX_WORKERS) as u16;
        v.graph_for(&StageQueues::new(), 0, n)?;
        Ok(v)
    }

    /// The WAN address (NAT outside address, tunnel endpoint, IKE address).
    pub fn wan_addr(&self) -> Ipv4Addr {
        self.config.wan.address.addr
    }

    /// The tunnels' remote subnets.
    fn remotes(&self) -> Vec<Subnet> {
        self.config
            .tunnels
            .iter()
            .map(|t| Subnet::of(&t.remote))
            .collect()
    }

    /// The firewall's configuration (see the module docs).
    pub fn firewall_config(&self) -> FirewallConfig {
        let c = &self.config;
        // The own rules first (`firewall.rule`), then the built-in ones.
        let mut rules: Vec<RuleConfig> = c
            .firewall
            .rules
            .iter()
            .map(|r| RuleConfig {
                action: r.action,
                src: r.src.clone(),
                dst: r.dst.clone(),
                proto: r.proto.clone(),
                sport: r.sport.clone(),
                dport: r.dport.clone(),
                in_port: match r.from.as_deref() {
                    Some("lan") => Some(LAN),
                    Some("wan") => Some(WAN),
                    _ => None,
                },
            })
            .collect();
        rules.push(RuleConfig {
            action: FwAction::Allow,
            in_port: Some(LAN),
            ..RuleConfig::default()
        });
        if c.firewall.tunnel_inbound {
            for t in &c.tunnels {
                rules.push(RuleConfig {
                    action: FwAction::Allow,
                    src: Some(t.remote.to_string()),
                    dst: Some(t.local.to_string()),
                    in_port: Some(WAN),
                    ..RuleConfig::default()
                });
            }
        }
        rules.push(RuleConfig {
            action: FwAction::AllowStateless,
            dst: Some(format!("{}/32", self.wan_addr())),
            in_port: Some(WAN),
            ..RuleConfig::default()
        });
        FirewallConfig {
            rules,
            default_action: FwAction::Deny,
            allow_established: true,
            max_connections: c.firewall.max_connections,
            ..FirewallConfig::default()
        }
    }

    /// NAT44's configuration: LAN inside, the WAN address as the pool.
    pub fn nat_config(&self) -> NatConfig {
        let n = &self.config.nat;
        NatConfig {
            inside_ports: vec![LAN],
            pool: vec![self.wan_addr().to_string()],
            mapping: Behavior::EndpointIndependent,
            filtering: Behavior::AddressAndPortDependent,
            max_sessions: n.max_sessions,
            max_subscribers: self
                .config
                .lan
                .dhcp
                .as_ref()
                .map_or(4096, |d| d.max_leases.max(256)),
            port_min: n.port_min,
            port_max: n.port_max,
            icmp_source: Some(self.wan_addr()),
            log_capacity: 1024,
            ..NatConfig::default()
        }
    }

    /// One worker's graph (see the module docs); static SAs are installed in its
    /// `esp-*` nodes, IKE's arrive through `queues`.
    pub fn graph(&self, queues: &StageQueues) -> Result<Pipeline, ConfigError> {
        self.graph_for(queues, 0, 1)
    }

    /// The graph of worker `worker` among `workers` (run them joined by a hand-off
    /// mesh, `dataplane::worker::handoff_mesh`). One worker: [`Vcpe::graph`]. With
    /// several, `vcpe-steer` sits between `esp-decrypt` and `firewall` (a LAN
    /// host's traffic on one worker), `nat44` is the worker's own
    /// (`Nat44::new_worker`: its sessions, its slice of the outside ports) and the
    /// `esp-*` nodes hand packets to the worker owning their SA
    /// (`ipsec::stage::sa_owner`); every worker holds every SA (static ones
    /// installed here, IKE's and the key server's fanned out to each worker's
    /// `queues`).
    pub fn graph_for(
        &self,
        queues: &StageQueues,
        worker: u16,
        workers: u16,
    ) -> Result<Pipeline, ConfigError> {
        let c = &self.config;
        let l3 = &self.l3;
        let workers = workers.max(1);
        let worker = worker.min(workers - 1);
        let mut enc = EspEncrypt::gateway(queues.encrypt.clone()).for_worker(worker, workers);
        let mut dec =
            EspDecrypt::gateway(vec![IpAddr::V4(self.wan_addr())], queues.decrypt.clone())
                .for_worker(worker, workers);
        for (i, t) in c.tunnels.iter().enumerate() {
            install_static(self.wan_addr(), t, &mut enc, &mut dec)
                .map_err(|e| cerr(&format!("tunnel[{i}] ({})", t.name), e))?;
        }
        let fw = Firewall::new(&self.firewall_config()).map_err(|e| cerr("firewall", e))?;
        let mut g = Pipeline::new();
        g.add(Box::new(LanInput::default()), Some("ethernet-input"));
        g.add(
            Box::new(Classify::new(self.macs.clone()).with_next(ETH_NEXT)),
            Some("ip4-input"),
        );
        g.add(Box::new(ArpInput::new(l3.clone())), None);
        g.add(Box::new(Ip4Input::for_l3(l3)), Some("vcpe-wan-guard"));
        g.add(
            Box::new(WanGuard::new(WAN, self.remotes())),
            Some("esp-decrypt"),
        );
        if workers > 1 {
            g.add(Box::new(dec), Some("vcpe-steer"));
            g.add(
                Box::new(Steer::new(LAN, &c.lan.address, worker, workers)),
                Some("firewall"),
            );
        } else {
            g.add(Box::new(dec), Some("firewall"));
        }
        g.add(Box::new(fw), Some("vcpe-select"));
        let nat = c.nat.enabled;
        g.add(
            Box::new(Select::new(
                LAN,
                &c.lan.address,
                self.wan_addr(),
                self.remotes(),
                nat,
            )),
            Some(if nat { "nat44" } else { "ip4-lookup" }),
        );
        if nat {
            let n = Nat44::new_worker(&self.nat_config(), worker, workers)
                .map_err(|e| cerr("nat", e))?;
            g.add(Box::new(n), Some("ip4-lookup"));
        }
        g.add(Box::new(enc), Some("vcpe-tunnel-check"));
        g.add(
            Box::new(TunnelCheck::new(self.remotes())),
            Some("ip4-lookup"),
        );
        g.add(Box::new(Ip4Lookup::new(l3.clone())), Some("ip4-rewrite"));
        g.add(Box::new(Ip4Rewrite::new(l3.clone())), None);
        g.set_entry("ethernet-input");
        g.set_port_entry(LAN, "vcpe-lan-input");
        g.seal().map_err(|e| cerr("graph", e))?;
        Ok(g)
    }
}

fn prefix(n: &dataplane::addr::Net4) -> Prefix {
    Prefix::new(IpAddr::V4(n.network()), n.len)
}

/// Installs a tunnel's static SAs (none for an IKE tunnel): the outbound SA with
/// its policy (local → remote) in `esp-encrypt`, the inbound SA with its selector
/// (remote → local, RFC 4301 §5.2 step 4) in `esp-decrypt`.
fn install_static(
    wan: Ipv4Addr,
    t: &TunnelConfig,
    enc: &mut EspEncrypt,
    dec: &mut EspDecrypt,
) -> Result<(), String> {
    let Some(s) = &t.static_sa else {
        return Ok(());
    };
    let alg = |k: &[u8]| {
        if k.len() == Algorithm::Aes256Gcm16.keymat_len() {
            Algorithm::Aes256Gcm16
        } else {
            Algorithm::Aes128Gcm16
        }
    };
    let (me, peer) = (IpAddr::V4(wan), IpAddr::V4(t.peer));
    let out_alg = alg(s.key_out.bytes());
    let km =
        KeyMaterial::new(out_alg, s.key_out.bytes()).map_err(|e| format!("static.key_out: {e}"))?;
    let mut oc = SaConfig::tunnel(s.spi_out, Direction::Outbound, me, peer);
    oc.algorithm = out_alg;
    let ip = enc.ipsec_mut();
    let id = ip
        .sad
        .add(oc, &km, 0)
        .map_err(|e| format!("static.spi_out: {e}"))?;
    ip.spd.push_outbound(
        Selector::between(prefix(&t.local), prefix(&t.remote)),
        Action::Protect(id),
    );
    let in_alg = alg(s.key_in.bytes());
    let km =
        KeyMaterial::new(in_alg, s.key_in.bytes()).map_err(|e| format!("static.key_in: {e}"))?;
    let mut ic = SaConfig::tunnel(s.spi_in, Direction::Inbound, peer, me);
    ic.algorithm = in_alg;
    ic.selector = Some(Selector::between(prefix(&t.remote), prefix(&t.local)));
    dec.ipsec_mut()
        .sad
        .add(ic, &km, 0)
        .map_err(|e| format!("static.spi_in: {e}"))?;
    Ok(())
}
