//! The vCPE's management API (issue 19): the YANG module `yang/vcpe@2026-12-02.yang`
//! served as a RESTCONF-shaped JSON API (RFC 8040, JSON per RFC 7951 with 64-bit
//! integers as strings) on `vcpe run --listen`, off the worker threads. The generic
//! parts (paths, tree edits, RFC 8040 §7.1 error bodies) are
//! [`dataplane::restconf`]; `vcpe api METHOD PATH [-d JSON|@FILE]` is the client.
//!
//! Resources: `GET /restconf`, `GET /restconf/data[/vcpe:vcpe[/PATH]]`
//! (`?content=config|nonconfig`, RFC 8040 §4.8.1), `GET /restconf/yang/vcpe`, and
//! `PUT`/`PATCH`/`POST`/`DELETE` (§4.4–§4.7) on the configuration.
//!
//! A change is made on a copy of the running configuration's tree, turned back into
//! a [`Config`] and checked as a whole by building a vCPE from it ([`Vcpe::new`]:
//! every config check, the forwarding state with each next hop resolved, the whole
//! graph with the firewall's rules compiled); only then is it applied, while the
//! workers keep forwarding. Each change (and each state report) goes to every
//! worker (`engine.workers`) over its [`WorkerLink`] and comes back once applied
//! ([`dataplane::mgmt_fanout`]: per-worker lock-free queues, drained by
//! [`update_hook`] between two bursts; a stopped worker is waited for at most two
//! seconds):
//! - routes (`route`): the new L3 state is built here; the neighbours the workers
//!   learned are copied into it, every worker swaps its `ip4-lookup`, `ip4-rewrite`
//!   and `arp-input` state for it and hands the old state back to be freed here;
//! - the firewall's own rules (`firewall/rule`): compiled here, one
//!   [`dataplane::stages::firewall::RuleSwap`] per worker, and swapped into each
//!   worker's `firewall`; the tracked connections a worker owns that the new rules
//!   deny end then, and `state/firewall/ended-by-rule-change` counts them summed
//!   over the workers;
//! - the state's firewall and tunnel counters: one report per worker, summed.
//!
//! Any other change (interfaces, DHCP, NAT, firewall limits, tunnels) is refused with
//! `operation-not-supported` (501): restart the vCPE. The tunnels' state shows each
//! SA's SPI and counters, never a key. The control plane keeps the L3 state it
//! started with to reach IKE peers (through the WAN gateway, which does not change).

use crate::config::{FwRule, RouteConfig};
use crate::control::Stats;
use crate::keylink::KeyStats;
use crate::vnf::Vcpe;
use crate::Config;
use dataplane::addr::Net4;
use dataplane::mgmt_fanout::Link;
use dataplane::restconf::{
    error, invalid, malformed, missing, str_of, unsupported, Answer, Schema, Step,
};
use dataplane::runner::WorkerSnapshot;
use dataplane::stages::arp::ArpInput;
use dataplane::stages::firewall::{Action, Firewall, RuleCounter, RuleSwap};
use dataplane::stages::ip4::{Ip4Lookup, Ip4Rewrite};
use dataplane::stages::l3::L3;
use ipsec::sa::{Direction, Mode};
use ipsec::stage::{EspDecrypt, EspEncrypt};
use serde_json::{json, Map, Value};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub use dataplane::restconf::MEDIA;

/// The YANG module's name (the JSON namespace qualifier).
pub const MODULE: &str = "vcpe";
/// The YANG module.
pub const YANG: &str = include_str!("../yang/vcpe@2026-12-02.yang");

const SCHEMA: Schema = Schema {
    module: MODULE,
    keys: &[
        ("interface", "name"),
        ("route", "prefix"),
        ("rule", "name"),
        ("tunnel", "name"),
        ("lease", "mac"),
    ],
};

/// How long a change or a state report waits for the worker.
const APPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Most SAs a state report carries.
const MAX_REPORT_SAS: usize = 4 * crate::config::limits::MAX_TUNNELS;

/// The worker's L3 stages, built off the data path and swapped with the worker's.
pub struct L3Stages {
    lookup: Ip4Lookup,
    rewrite: Ip4Rewrite,
    arp: ArpInput,
}

impl L3Stages {
    /// The stages over `l3` (allocates: call off the worker).
    pub fn new(l3: &Arc<L3>) -> Box<L3Stages> {
        Box::new(L3Stages {
            lookup: Ip4Lookup::new(l3.clone()),
            rewrite: Ip4Rewrite::new(l3.clone()),
            arp: ArpInput::new(l3.clone()),
        })
    }
}

/// One SA in a state report (no key).
#[derive(Clone, Copy, Debug)]
pub struct SaInfo {
    pub outbound: bool,
    pub spi: u32,
    /// The peer: the outer destination (outbound) or source (inbound).
    pub peer: Option<IpAddr>,
    pub packets: u64,
    pub bytes: u64,
    pub last_seq: u64,
}

/// What the worker reports for the state: filled within the capacity reserved here,
/// so the worker allocates nothing.
pub struct Report {
    pub sas: Vec<SaInfo>,
    pub rules: Vec<RuleCounter>,
    pub connections: usize,
}

impl Report {
    /// An empty report with room for `sas` SAs and `rules` rule counters (allocated
    /// here, off the worker).
    pub fn with_capacity(sas: usize, rules: usize) -> Box<Report> {
        Box::new(Report {
            sas: Vec::with_capacity(sas),
            rules: Vec::with_capacity(rules),
            connections: 0,
        })
    }
}

/// A request to the worker.
pub enum Update {
    /// New L3 stages; they come back holding the old state.
    L3(Box<L3Stages>),
    /// New firewall rules; they come back holding the old ones.
    Rules(Box<RuleSwap>),
    /// A state report to fill.
    Report(Box<Report>),
}

/// The queues between the management side and one worker's update hook
/// ([`dataplane::mgmt_fanout::Link`]: fixed-size lock-free queues, allocated by
/// `WorkerLink::new`; `push` queues a request, `pop_done` takes what came back).
pub type WorkerLink = Link<Update>;

fn sa_info(sa: &ipsec::sa::Sa) -> SaInfo {
    let c = sa.config();
    let outbound = c.direction == Direction::Outbound;
    let peer = match c.mode {
        Mode::Tunnel { src, dst } => Some(if outbound { dst } else { src }),
        Mode::Transport => None,
    };
    let st = sa.stats();
    SaInfo {
        outbound,
        spi: c.spi,
        peer,
        packets: st.packets,
        bytes: st.bytes,
        last_seq: if outbound { sa.last_seq() } else { 0 },
    }
}

/// The worker's side of `link` (register it in `WorkerSpec::hooks`): between bursts
/// it applies the queued changes to the graph's stages by name, fills state reports
/// and hands each back to be read and freed off the worker
/// ([`dataplane::mgmt_fanout::hook`]). Allocates and locks nothing.
pub fn update_hook(link: &WorkerLink) -> dataplane::worker::Hook {
    dataplane::mgmt_fanout::hook(link, |g, _out, u| apply(g, u))
}

/// Applies one request to a worker's graph (its stages by name); returns it, holding
/// what the stages gave up (the old L3 state, the old rules with the connections the
/// new ones ended) or reported, to be read and freed off the data path. Allocates and
/// locks nothing.
fn apply(g: &mut dataplane::graph::Graph, u: Update) -> Update {
    match u {
        Update::L3(mut s) => {
            if let Some(x) = g.node_mut::<Ip4Lookup>("ip4-lookup") {
                x.swap_l3(&mut s.lookup);
            }
            if let Some(x) = g.node_mut::<Ip4Rewrite>("ip4-rewrite") {
                x.swap_l3(&mut s.rewrite);
            }
            if let Some(x) = g.node_mut::<ArpInput>("arp-input") {
                x.swap_l3(&mut s.arp);
            }
            Update::L3(s)
        }
        Update::Rules(mut r) => {
            if let Some(f) = g.node_mut::<Firewall>("firewall") {
                f.swap_rules(&mut r);
            }
            Update::Rules(r)
        }
        Update::Report(mut r) => {
            if let Some(f) = g.node_mut::<Firewall>("firewall") {
                r.connections = f.connection_count();
                for c in f.rule_counters() {
                    if r.rules.len() == r.rules.capacity() {
                        break;
                    }
                    r.rules.push(*c);
                }
            }
            if let Some(e) = g.node_mut::<EspEncrypt>("esp-encrypt") {
                for sa in e.ipsec().sad.iter() {
                    if r.sas.len() == r.sas.capacity() {
                        break;
                    }
                    r.sas.push(sa_info(sa));
                }
            }
            if let Some(d) = g.node_mut::<EspDecrypt>("esp-decrypt") {
                for sa in d.ipsec().sad.iter() {
                    if r.sas.len() == r.sas.capacity() {
                        break;
                    }
                    r.sas.push(sa_info(sa));
                }
            }
            Update::Report(r)
        }
    }
}

/// The management side of a running vCPE.
pub struct Mgmt {
    cfg: Config,
    macs: Vec<[u8; 6]>,
    l3: Arc<L3>,
    links: Vec<WorkerLink>,
    control: Option<Arc<Stats>>,
    keys: Option<Arc<KeyStats>>,
    /// Connections the rule changes ended, summed over the changes and the workers.
    ended: u64,
}

impl Mgmt {
    /// The API over `vcpe` (as built at start) whose worker runs [`update_hook`] of
    /// `links`; `control` and `keys` are the control plane's and the key server
    /// link's counters (leases, connection).
    pub fn new(
        vcpe: &Vcpe,
        links: Vec<WorkerLink>,
        control: Option<Arc<Stats>>,
        keys: Option<Arc<KeyStats>>,
    ) -> Mgmt {
        Mgmt {
            cfg: vcpe.config.clone(),
            macs: vcpe.macs.clone(),
            l3: vcpe.l3.clone(),
            links,
            control,
            keys,
            ended: 0,
        }
    }

    /// The running configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The L3 state the worker forwards with.
    pub fn l3(&self) -> &Arc<L3> {
        &self.l3
    }

    /// Answers one request: `path` is the HTTP path (from `/restconf`), `query` the
    /// query string, `snaps` the worker's latest counters.
    pub fn handle(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        snaps: &[WorkerSnapshot],
    ) -> Answer {
        let rest = match dataplane::restconf::front(method, path, "vcpe", YANG) {
            Ok(rest) => rest,
            Err(answer) => return answer,
        };
        let Some(data) = rest.strip_prefix("/data") else {
            return missing(path);
        };
        let data = data.strip_prefix('/').unwrap_or(data);
        let content = match dataplane::restconf::content_of(query) {
            Ok(c) => c,
            Err(a) => return a,
        };
        if data.is_empty() {
            if method != "GET" {
                return unsupported(405, "write below /restconf/data/vcpe:vcpe");
            }
            return self.get(&[], content, snaps);
        }
        let Some(steps) = SCHEMA.parse_path(data) else {
            return missing(&format!("/{data}"));
        };
        let path = format!("/{data}");
        match method {
            "GET" => self.get(&steps, content, snaps),
            "PUT" | "PATCH" | "POST" | "DELETE" => {
                if steps.first().is_some_and(|s| s.name == "state") {
                    return error(
                        405,
                        "protocol",
                        "operation-not-supported",
                        &path,
                        "state is read-only",
                    );
                }
                let parsed = if method == "DELETE" {
                    Value::Null
                } else {
                    match serde_json::from_slice::<Value>(body) {
                        Ok(v) => v,
                        Err(e) => return malformed(&format!("body is not JSON: {e}")),
                    }
                };
                self.write(method, &steps, &parsed, &path)
            }
            _ => unsupported(405, "GET, PUT, PATCH, POST or DELETE"),
        }
    }

    fn get(&self, steps: &[Step], content: &str, snaps: &[WorkerSnapshot]) -> Answer {
        let mut root = Value::Object(Map::new());
        if content != "nonconfig" {
            root = config_tree(&self.cfg);
        }
        if content != "config" && steps.first().is_none_or(|s| s.name == "state") {
            root["state"] = self.state_tree(snaps);
        }
        SCHEMA.get(&root, steps)
    }

    /// Hands one request (made by `make`, once per worker) to every worker and waits
    /// until each has handed it back (or the time-out: a stopped worker; the request
    /// stays queued): [`dataplane::mgmt_fanout::send`].
    fn send(&self, make: impl FnMut() -> Option<Update>) -> Vec<Update> {
        dataplane::mgmt_fanout::send(&self.links, make, APPLY_TIMEOUT)
    }

    fn report(&self) -> Option<Report> {
        let nrules = self.rule_names().len();
        let back = self.send(|| {
            Some(Update::Report(Report::with_capacity(
                MAX_REPORT_SAS,
                nrules,
            )))
        });
        // Several workers: one report each, summed (an SA is used by its owner
        // only, the other workers' copies count nothing).
        let mut all = back.into_iter().filter_map(|u| match u {
            Update::Report(r) => Some(r),
            _ => None,
        });
        let mut sum = *all.next()?;
        for r in all {
            sum.connections += r.connections;
            for (s, x) in sum.rules.iter_mut().zip(r.rules.iter()) {
                s.packets += x.packets;
                s.bytes += x.bytes;
            }
            for x in &r.sas {
                match sum
                    .sas
                    .iter_mut()
                    .find(|s| s.spi == x.spi && s.outbound == x.outbound)
                {
                    Some(s) => {
                        s.packets += x.packets;
                        s.bytes += x.bytes;
                        s.last_seq = s.last_seq.max(x.last_seq);
                    }
                    None => sum.sas.push(*x),
                }
            }
        }
        Some(sum)
    }

    fn state_tree(&self, snaps: &[WorkerSnapshot]) -> Value {
        let mut st = json!({ "ipv4-routes": self.l3.routes4() });
        let ifaces: Vec<Value> = ["lan", "wan"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut c = [0u64; 4];
                for s in snaps {
                    if let Some((_, p)) = s.ports.get(i) {
                        c[0] += p.rx_packets;
                        c[1] += p.tx_packets;
                        c[2] += p.rx_dropped;
                        c[3] += p.tx_dropped;
                    }
                }
                let m = self.macs.get(i).copied().unwrap_or_default();
                json!({
                    "name": name,
                    "mac": dataplane::proto::ethernet::MacAddr(m).to_string(),
                    "rx-packets": c[0].to_string(),
                    "tx-packets": c[1].to_string(),
                    "rx-dropped": c[2].to_string(),
                    "tx-dropped": c[3].to_string(),
                })
            })
            .collect();
        st["interface"] = Value::Array(ifaces);
        if self.cfg.lan.dhcp.is_some() {
            let leases = self
                .control
                .as_ref()
                .and_then(|c| c.lease_list.lock().ok().map(|l| l.clone()))
                .unwrap_or_default();
            let mut d = json!({ "leases": leases.len() });
            if !leases.is_empty() {
                d["lease"] = leases
                    .iter()
                    .map(|(m, a)| {
                        json!({
                            "mac": dataplane::proto::ethernet::MacAddr(*m).to_string(),
                            "address": a.to_string(),
                        })
                    })
                    .collect();
            }
            st["dhcp"] = d;
        }
        if self.cfg.nat.enabled {
            let sessions: u64 = snaps
                .iter()
                .flat_map(|s| s.counters.iter())
                .filter(|(n, c)| *n == "nat44" && c.name == "sessions-active")
                .map(|(_, c)| c.value)
                .sum();
            st["nat"] = json!({ "sessions": sessions.to_string() });
        }
        let rep = self.report();
        let mut fw = json!({ "ended-by-rule-change": self.ended.to_string() });
        if let Some(r) = &rep {
            fw["connections"] = json!(r.connections);
            let names = self.rule_names();
            let rules: Vec<Value> = r
                .rules
                .iter()
                .zip(names.iter())
                .map(|(c, n)| {
                    json!({
                        "name": n,
                        "packets": c.packets.to_string(),
                        "bytes": c.bytes.to_string(),
                    })
                })
                .collect();
            if !rules.is_empty() {
                fw["rule"] = Value::Array(rules);
            }
        }
        st["firewall"] = fw;
        let tunnels: Vec<Value> = self
            .cfg
            .tunnels
            .iter()
            .map(|t| {
                let peer = IpAddr::V4(t.peer);
                let sas: Vec<&SaInfo> = rep
                    .as_ref()
                    .map(|r| r.sas.iter().filter(|s| s.peer == Some(peer)).collect())
                    .unwrap_or_default();
                let up = sas.iter().any(|s| s.outbound) && sas.iter().any(|s| !s.outbound);
                let mut v = json!({ "name": t.name, "up": up });
                if !sas.is_empty() {
                    v["sa"] = sas
                        .iter()
                        .map(|s| {
                            json!({
                                "direction": if s.outbound { "outbound" } else { "inbound" },
                                "spi": s.spi,
                                "packets": s.packets.to_string(),
                                "bytes": s.bytes.to_string(),
                                "last-sequence": s.last_seq.to_string(),
                            })
                        })
                        .collect();
                }
                v
            })
            .collect();
        if !tunnels.is_empty() {
            st["tunnel"] = Value::Array(tunnels);
        }
        if let Some(k) = &self.keys {
            st["keyserver"] = json!({
                "connected": k.connected.load(Ordering::Relaxed) != 0,
                "installs": k.installs.load(Ordering::Relaxed).to_string(),
                "deletes": k.deletes.load(Ordering::Relaxed).to_string(),
                "refused": k.refused.load(Ordering::Relaxed).to_string(),
            });
        }
        st
    }

    /// The names of the compiled rules in order: the own rules, then `builtin-N`.
    fn rule_names(&self) -> Vec<String> {
        let own = self.cfg.firewall.rules.iter().map(|r| r.name.clone());
        // The built-in rules of `Vcpe::firewall_config`: LAN, one per tunnel when
        // tunnel-inbound, the WAN address.
        let fw = &self.cfg.firewall;
        let builtin = 2 + if fw.tunnel_inbound {
            self.cfg.tunnels.len()
        } else {
            0
        };
        own.chain((0..builtin).map(|i| format!("builtin-{i}")))
            .collect()
    }

    /// A configuration change: the new tree, checked as a whole, then applied.
    fn write(&mut self, method: &str, steps: &[Step], body: &Value, path: &str) -> Answer {
        let old_tree = config_tree(&self.cfg);
        let mut tree = old_tree.clone();
        let created = match SCHEMA.edit(&mut tree, method, steps, body, path) {
            Ok(c) => c,
            Err(a) => return a,
        };
        let new = match config_from(&tree, &old_tree, &self.cfg) {
            Ok(c) => c,
            Err(Refusal::Invalid(m)) => return invalid(path, &m),
            Err(Refusal::Unsupported(m)) => return unsupported(501, &m),
        };
        // The whole new vCPE, built and checked off the data path.
        let built = match Vcpe::new(&new, &self.macs) {
            Ok(v) => v,
            Err(e) => return invalid(path, &name_items(&new, &e.0)),
        };
        let routes_changed = new.routes != self.cfg.routes;
        let rules_changed = new.firewall.rules != self.cfg.firewall.rules;
        let rules = if rules_changed {
            let fc = built.firewall_config();
            match RuleSwap::new(&fc) {
                Ok(r) => Some((fc, r)),
                Err(e) => return invalid(path, &format!("firewall: {e}")),
            }
        } else {
            None
        };
        if routes_changed {
            let l3 = built.l3.clone();
            copy_neighbours(&self.l3, &l3);
            let back = self.send(|| Some(Update::L3(L3Stages::new(&l3))));
            // What the worker learned into the old table before it swapped.
            copy_neighbours(&self.l3, &l3);
            drop(back);
            self.l3 = l3;
        }
        if let Some((fc, first)) = rules {
            // One rule set per worker, each compiled here (checked above, so the
            // others compile too); every worker ends the tracked connections it owns
            // that the new rules deny and reports how many: the count is their sum.
            let mut first = Some(first);
            let back = self.send(|| {
                first
                    .take()
                    .or_else(|| RuleSwap::new(&fc).ok())
                    .map(|x| Update::Rules(Box::new(x)))
            });
            for u in back {
                if let Update::Rules(x) = u {
                    self.ended += u64::from(x.ended());
                }
            }
        }
        self.cfg = new;
        Answer::empty(if created { 201 } else { 204 })
    }
}

fn copy_neighbours(from: &L3, to: &L3) {
    for (k, mac, t) in from.neigh.dump() {
        if to.neigh.lookup(k) != Some(mac) {
            to.neigh.learn(k, mac, t);
        }
    }
}

/// A configuration error about `route[N]` or a rule names the item by its key.
fn name_items(cfg: &Config, msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("route[") {
        if let Some((n, tail)) = rest.split_once(']') {
            if let Some(r) = n.parse::<usize>().ok().and_then(|i| cfg.routes.get(i)) {
                let tail = match tail.strip_prefix(" (") {
                    Some(t) => t.split_once(')').map_or(tail, |x| x.1),
                    None => tail,
                };
                return format!("route {}{tail}", r.prefix);
            }
        }
    }
    if let Some(rest) = msg.strip_prefix("firewall: rules[") {
        if let Some((n, tail)) = rest.split_once(']') {
            if let Some(r) = n
                .parse::<usize>()
                .ok()
                .and_then(|i| cfg.firewall.rules.get(i))
            {
                return format!("firewall rule {}{tail}", r.name);
            }
        }
    }
    msg.to_string()
}

/// The configuration part of the tree (no key, no PSK).
fn config_tree(cfg: &Config) -> Value {
    let mut v = json!({});
    let lan = json!({"name": "lan", "address": cfg.lan.address.to_string(), "mtu": cfg.lan.mtu});
    let wan = json!({
        "name": "wan",
        "address": cfg.wan.address.to_string(),
        "mtu": cfg.wan.mtu,
        "gateway": cfg.wan.gateway.to_string(),
    });
    v["interface"] = json!([lan, wan]);
    if let Some(d) = &cfg.lan.dhcp {
        v["dhcp"] = json!({
            "pool": d.pool.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "lease-time": d.lease_time_s,
            "dns": d.dns.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "max-leases": d.max_leases,
        });
        if d.dns.is_empty() {
            if let Some(o) = v["dhcp"].as_object_mut() {
                o.remove("dns");
            }
        }
    }
    if !cfg.routes.is_empty() {
        v["route"] = cfg
            .routes
            .iter()
            .map(|r| json!({"prefix": r.prefix.to_string(), "next-hop": r.via.to_string()}))
            .collect();
    }
    v["nat"] = json!({
        "enabled": cfg.nat.enabled,
        "max-sessions": cfg.nat.max_sessions,
        "port-min": cfg.nat.port_min,
        "port-max": cfg.nat.port_max,
    });
    let mut fw = json!({
        "max-connections": cfg.firewall.max_connections,
        "tunnel-inbound": cfg.firewall.tunnel_inbound,
    });
    if !cfg.firewall.rules.is_empty() {
        fw["rule"] = cfg.firewall.rules.iter().map(rule_tree).collect();
    }
    v["firewall"] = fw;
    if !cfg.tunnels.is_empty() {
        v["tunnel"] = cfg
            .tunnels
            .iter()
            .map(|t| {
                let keying = if t.static_sa.is_some() {
                    "static"
                } else if t.ike.is_some() {
                    "ike"
                } else {
                    "keyserver"
                };
                json!({
                    "name": t.name,
                    "peer": t.peer.to_string(),
                    "local": t.local.to_string(),
                    "remote": t.remote.to_string(),
                    "keying": keying,
                })
            })
            .collect();
    }
    v
}

const RULE_LEAVES: &[&str] = &[
    "name",
    "action",
    "from",
    "source",
    "destination",
    "protocol",
    "source-port",
    "destination-port",
];

fn rule_tree(r: &FwRule) -> Value {
    let mut e = json!({
        "name": r.name,
        "action": match r.action {
            Action::Allow => "allow",
            Action::AllowStateless => "allow-stateless",
            Action::Deny => "deny",
        },
    });
    for (k, v) in [
        ("from", &r.from),
        ("source", &r.src),
        ("destination", &r.dst),
        ("protocol", &r.proto),
        ("source-port", &r.sport),
        ("destination-port", &r.dport),
    ] {
        if let Some(x) = v {
            e[k] = Value::String(x.clone());
        }
    }
    e
}

enum Refusal {
    Invalid(String),
    Unsupported(String),
}

impl From<String> for Refusal {
    fn from(s: String) -> Refusal {
        Refusal::Invalid(s)
    }
}

impl From<&str> for Refusal {
    fn from(s: &str) -> Refusal {
        Refusal::Invalid(s.to_string())
    }
}

/// The tree without what can change at run time (routes, own firewall rules).
fn fixed_part(tree: &Value) -> Value {
    let mut t = tree.clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("route");
    }
    if let Some(o) = t.get_mut("firewall").and_then(Value::as_object_mut) {
        o.remove("rule");
    }
    t
}

/// A configuration from the changed `tree`: `base` with its routes and own firewall
/// rules replaced; a change anywhere else is refused (not supported while running).
fn config_from(tree: &Value, old: &Value, base: &Config) -> Result<Config, Refusal> {
    if let Some(o) = tree.as_object() {
        if let Some(k) = o.keys().find(|k| {
            !["interface", "dhcp", "route", "nat", "firewall", "tunnel"].contains(&k.as_str())
        }) {
            return Err(format!("unknown node {k:?}").into());
        }
    } else {
        return Err("vcpe is a container".into());
    }
    if fixed_part(tree) != fixed_part(old) {
        return Err(Refusal::Unsupported(
            "only routes and firewall rules change while the vCPE runs: restart it for the rest"
                .to_string(),
        ));
    }
    let mut c = base.clone();
    c.routes = match tree.get("route") {
        None => Vec::new(),
        Some(l) => l
            .as_array()
            .ok_or("route is a list")?
            .iter()
            .map(|e| -> Result<RouteConfig, Refusal> {
                let prefix = str_of(e, "prefix").ok_or("route: prefix is the key")?;
                if let Some(k) = e
                    .as_object()
                    .and_then(|o| o.keys().find(|k| *k != "prefix" && *k != "next-hop"))
                {
                    return Err(format!("route {prefix}: unknown leaf {k:?}").into());
                }
                let p: Net4 = prefix
                    .parse()
                    .map_err(|_| format!("route {prefix}: not an IPv4 prefix"))?;
                let via = str_of(e, "next-hop")
                    .ok_or_else(|| format!("route {prefix}: next-hop is mandatory"))?;
                let via: Ipv4Addr = via
                    .parse()
                    .map_err(|_| format!("route {prefix}: next-hop {via:?} is not an address"))?;
                Ok(RouteConfig { prefix: p, via })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    c.firewall.rules = match tree.get("firewall").and_then(|f| f.get("rule")) {
        None => Vec::new(),
        Some(l) => l
            .as_array()
            .ok_or("firewall rule is a list")?
            .iter()
            .map(|e| -> Result<FwRule, Refusal> {
                let name = str_of(e, "name").ok_or("firewall rule: name is the key")?;
                let o = e
                    .as_object()
                    .ok_or("firewall rule: an entry is an object")?;
                if let Some(k) = o.keys().find(|k| !RULE_LEAVES.contains(&k.as_str())) {
                    return Err(format!("firewall rule {name}: unknown leaf {k:?}").into());
                }
                let text = |k: &str| -> Result<Option<String>, Refusal> {
                    match o.get(k) {
                        None => Ok(None),
                        Some(Value::String(s)) => Ok(Some(s.clone())),
                        Some(_) => Err(format!("firewall rule {name}: {k} is text").into()),
                    }
                };
                let action = match str_of(e, "action") {
                    Some("allow") => Action::Allow,
                    Some("allow-stateless") => Action::AllowStateless,
                    Some("deny") => Action::Deny,
                    _ => {
                        return Err(format!(
                            "firewall rule {name}: action is allow, allow-stateless or deny"
                        )
                        .into())
                    }
                };
                Ok(FwRule {
                    name: name.to_string(),
                    action,
                    from: text("from")?,
                    src: text("source")?,
                    dst: text("destination")?,
                    proto: text("protocol")?,
                    sport: text("source-port")?,
                    dport: text("destination-port")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(c)
}
