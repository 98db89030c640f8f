//! The router's management API (issue 19): the YANG module
//! `yang/router@2026-12-02.yang` served as a RESTCONF-shaped JSON API (RFC 8040,
//! JSON per RFC 7951 with 64-bit integers as strings) on `--listen`, off the
//! data-plane threads. The generic parts (paths, tree edits, RFC 8040 §7.1 error
//! bodies) are [`dataplane::restconf`].
//!
//! Resources:
//! - `GET /restconf`, `GET /restconf/data[/router:router[/PATH]]` (`?content=config`
//!   or `nonconfig`, RFC 8040 §4.8.1), `GET /restconf/yang/router` (the module).
//! - `PUT`/`PATCH`/`POST`/`DELETE` (§4.4–§4.7) on the configuration: the `route`
//!   list and the policer's meter (`qos/policer`). The NAT pool is read-only.
//!
//! A change is applied to a copy of the running configuration, checked as a whole
//! ([`Config::check`] and [`Router::build`], which resolves every next hop), and only
//! then applied, while the workers keep forwarding. Each change goes to every worker
//! over its [`WorkerLink`] and comes back once applied ([`dataplane::mgmt_fanout`]:
//! per-worker lock-free queues drained by [`update_hook`] between two bursts; a
//! stopped worker is waited for at most two seconds):
//! - routes: the new L3 state is built here, off the data path; the neighbour
//!   entries the workers learned (ARP/ND) are copied into it, then every worker gets
//!   a fresh set of L3 stages through its update hook ([`update_hook`]) and swaps its
//!   stages' state for them between two bursts ([`Ip4Lookup::swap_l3`] …). The old
//!   state comes back to this side in the same box, and bindings learned into the
//!   old table meanwhile are copied again; the old state is freed here, never on a
//!   worker.
//! - the policer's meter: set in place in every worker's `policer` stage
//!   ([`dataplane::stages::qos::Policer::set_all_meters`]); the buckets start full.
//! - the NAT44 pool (`nat/pool`): the new pool's tables are built here and every
//!   worker's `nat44` takes them between two bursts
//!   ([`dataplane::stages::nat::Nat44::apply_pool_change`]). Existing sessions keep
//!   their bindings: an address removed from the pool *drains* — its subscribers
//!   keep it (paired pooling, RFC 6888 REQ-2) until their last mapping expires —
//!   while new subscribers are paired from the new pool at once (see
//!   [`dataplane::stages::nat::repool`]). The state's `nat/address` list shows which
//!   addresses are draining.
//! - anything else (the other NAT settings, adding or removing the policer or NAT, route
//!   changes of an IPsec gateway, whose IKE thread holds the L3 state) is refused with
//!   `operation-not-supported` (501): restart the router with the new configuration.
//!
//! Errors carry the RFC 8040 §7.1 body with the status of §7.
//!
//! Without `std` (feature `mgmt`, the unikernel guest) the same code serves the same
//! resources: one loop runs the worker and the API, so a change is applied to the
//! worker's graph directly between two polls ([`Local`], the [`Workers`] the guest
//! passes to [`Mgmt::handle_with`]) instead of over the [`WorkerLink`] queues.

use crate::config::RouteConfig;
use crate::{Config, Router};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use dataplane::graph::Graph;
#[cfg(feature = "std")]
use dataplane::mgmt_fanout;
use dataplane::mgmt_fanout::Link;
use dataplane::port::Port;
use dataplane::restconf::{invalid, malformed, missing, str_of, u64_of, unsupported, Schema, Step};
#[cfg(feature = "std")]
use dataplane::runner::WorkerSnapshot;
use dataplane::stages::arp::ArpInput;
use dataplane::stages::ip4::{Ip4Lookup, Ip4Rewrite};
use dataplane::stages::ip6::{Ip6Lookup, Ip6Nd, Ip6Rewrite};
use dataplane::stages::l3::L3;
use dataplane::stages::nat::{Nat44, PoolChange};
use dataplane::stages::qos::{MeterConfig, Policer};
use dataplane::worker::{Hook, Worker};
use serde_json::{json, Map, Value};
#[cfg(feature = "std")]
use std::time::Duration;

pub use dataplane::restconf::{Answer, MEDIA};

/// The YANG module's name (the JSON namespace qualifier).
pub const MODULE: &str = "router";
/// The YANG module.
pub const YANG: &str = include_str!("../yang/router@2026-12-02.yang");

const SCHEMA: Schema = Schema {
    module: MODULE,
    keys: &[("route", "prefix"), ("interface", "name"), ("node", "name")],
};

/// How long a change waits for every worker to take it.
#[cfg(feature = "std")]
const APPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// A worker's L3 stages built off the data path: swapped with the worker's own.
pub struct L3Stages {
    ip4_lookup: Ip4Lookup,
    ip4_rewrite: Ip4Rewrite,
    arp: ArpInput,
    ip6_nd: Ip6Nd,
    ip6_lookup: Ip6Lookup,
    ip6_rewrite: Ip6Rewrite,
}

impl L3Stages {
    fn new(l3: &Arc<L3>) -> Box<L3Stages> {
        Box::new(L3Stages {
            ip4_lookup: Ip4Lookup::new(l3.clone()),
            ip4_rewrite: Ip4Rewrite::new(l3.clone()),
            arp: ArpInput::new(l3.clone()),
            ip6_nd: Ip6Nd::new(l3.clone()),
            ip6_lookup: Ip6Lookup::new(l3.clone()),
            ip6_rewrite: Ip6Rewrite::new(l3.clone()),
        })
    }
}

/// A change for one worker.
pub enum Update {
    /// New L3 stages; they come back holding the old state.
    L3(Box<L3Stages>),
    /// A new policer meter.
    Meter(MeterConfig),
    /// A new NAT44 pool; it comes back with what the stage no longer holds.
    NatPool(Box<PoolChange>),
}

/// The queues between the management side and one worker's update hook
/// ([`dataplane::mgmt_fanout::Link`]: fixed-size lock-free queues, allocated by
/// `WorkerLink::new`).
pub type WorkerLink = Link<Update>;

/// The worker's side of `link`: register on the worker (`WorkerSpec::hooks`). Between
/// bursts it takes the queued changes, applies them to the graph's stages by name and
/// hands each back (with the old L3 state) to be freed off the worker
/// ([`dataplane::mgmt_fanout::hook`]). Allocates and locks nothing.
pub fn update_hook(link: &WorkerLink) -> Hook {
    dataplane::mgmt_fanout::hook(link, |g, out, u| apply(g, u, out.now_ns))
}

/// Applies one change to a worker's graph (its stages by name) at `now_ns`; returns
/// it, holding what the stages gave up (the old L3 state), to be freed off the data
/// path. Allocates and locks nothing.
pub fn apply(g: &mut Graph, u: Update, now_ns: u64) -> Update {
    match u {
        Update::L3(mut s) => {
            if let Some(x) = g.node_mut::<Ip4Lookup>("ip4-lookup") {
                x.swap_l3(&mut s.ip4_lookup);
            }
            if let Some(x) = g.node_mut::<Ip4Rewrite>("ip4-rewrite") {
                x.swap_l3(&mut s.ip4_rewrite);
            }
            if let Some(x) = g.node_mut::<ArpInput>("arp-input") {
                x.swap_l3(&mut s.arp);
            }
            if let Some(x) = g.node_mut::<Ip6Nd>("ip6-nd") {
                x.swap_l3(&mut s.ip6_nd);
            }
            if let Some(x) = g.node_mut::<Ip6Lookup>("ip6-lookup") {
                x.swap_l3(&mut s.ip6_lookup);
            }
            if let Some(x) = g.node_mut::<Ip6Rewrite>("ip6-rewrite") {
                x.swap_l3(&mut s.ip6_rewrite);
            }
            Update::L3(s)
        }
        Update::Meter(m) => {
            if let Some(p) = g.node_mut::<Policer>("policer") {
                p.set_all_meters(&m, now_ns);
            }
            Update::Meter(m)
        }
        Update::NatPool(mut ch) => {
            if let Some(n) = g.node_mut::<Nat44>("nat44") {
                n.apply_pool_change(&mut ch);
            }
            Update::NatPool(ch)
        }
    }
}

/// How the management side reaches the workers: over the [`WorkerLink`] queues
/// when they are other threads (the Linux router), or directly when one loop runs
/// the worker and the API ([`Local`], the unikernel guest).
pub trait Workers {
    /// How many workers forward.
    fn count(&self) -> usize;
    /// Hands one update (made by `make`, once per worker) to every worker and
    /// returns what each handed back once applied (the old L3 state with it), to be
    /// read and freed here.
    fn send(&mut self, make: &mut dyn FnMut() -> Option<Update>) -> Vec<Update>;
    /// Interface `i`'s counters summed over the workers: rx and tx packets, rx and
    /// tx drops.
    fn port(&self, i: usize) -> [u64; 4];
    /// Drops per node, summed over the workers.
    fn node_drops(&self) -> Vec<(&'static str, u64)>;
    /// Counter `name` of node `node`, one value per worker.
    fn counter(&self, node: &str, name: &str) -> Vec<u64>;
}

/// The one worker of a loop that also serves the API (the unikernel guest): changes
/// are applied to its graph in place, between two polls, at `now_ns`.
pub struct Local<'a, P: Port> {
    pub worker: &'a mut Worker<P>,
    pub now_ns: u64,
}

impl<P: Port> Workers for Local<'_, P> {
    fn count(&self) -> usize {
        1
    }

    fn send(&mut self, make: &mut dyn FnMut() -> Option<Update>) -> Vec<Update> {
        match make() {
            Some(u) => alloc::vec![apply(&mut self.worker.graph, u, self.now_ns)],
            None => Vec::new(),
        }
    }

    fn port(&self, i: usize) -> [u64; 4] {
        match self.worker.ports.get(i) {
            Some(p) => {
                let s = p.stats();
                [s.rx_packets, s.tx_packets, s.rx_dropped, s.tx_dropped]
            }
            None => [0; 4],
        }
    }

    fn node_drops(&self) -> Vec<(&'static str, u64)> {
        self.worker
            .graph
            .nodes()
            .map(|n| (n.name, n.drops.iter().sum()))
            .collect()
    }

    fn counter(&self, node: &str, name: &str) -> Vec<u64> {
        let mut v = 0;
        self.worker.graph.counters(&mut |n, c| {
            if n == node && c.name == name {
                v += c.value;
            }
        });
        alloc::vec![v]
    }
}

/// Worker threads over their [`WorkerLink`]s, with their latest counters.
#[cfg(feature = "std")]
struct Threads<'a> {
    links: &'a [WorkerLink],
    snaps: &'a [WorkerSnapshot],
}

#[cfg(feature = "std")]
impl Workers for Threads<'_> {
    fn count(&self) -> usize {
        self.links.len()
    }

    /// Waits until each worker has applied the update and handed it back (or the
    /// time-out: a stopped worker; its update stays queued): [`mgmt_fanout::send`].
    fn send(&mut self, make: &mut dyn FnMut() -> Option<Update>) -> Vec<Update> {
        mgmt_fanout::send(self.links, make, APPLY_TIMEOUT)
    }

    fn port(&self, i: usize) -> [u64; 4] {
        let mut c = [0u64; 4];
        for s in self.snaps {
            if let Some((_, p)) = s.ports.get(i) {
                c[0] += p.rx_packets;
                c[1] += p.tx_packets;
                c[2] += p.rx_dropped;
                c[3] += p.tx_dropped;
            }
        }
        c
    }

    fn node_drops(&self) -> Vec<(&'static str, u64)> {
        let mut nodes: Vec<(&'static str, u64)> = Vec::new();
        for s in self.snaps {
            for n in &s.nodes {
                let d: u64 = n.drops.iter().sum();
                match nodes.iter_mut().find(|(x, _)| *x == n.name) {
                    Some(e) => e.1 += d,
                    None => nodes.push((n.name, d)),
                }
            }
        }
        nodes
    }

    fn counter(&self, node: &str, name: &str) -> Vec<u64> {
        self.snaps
            .iter()
            .map(|s| {
                s.counters
                    .iter()
                    .filter(|(n, c)| *n == node && c.name == name)
                    .map(|(_, c)| c.value)
                    .sum::<u64>()
            })
            .collect()
    }
}

/// The management side of a running router.
pub struct Mgmt {
    cfg: Config,
    route_file: Option<String>,
    macs: Vec<[u8; 6]>,
    l3: Arc<L3>,
    /// Worker threads' queues (std: [`Mgmt::handle`]; without std the caller passes
    /// its [`Workers`]).
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    links: Vec<WorkerLink>,
    /// Why the routes cannot change while running, when they cannot.
    fixed_routes: Option<&'static str>,
    /// Every NAT pool address since start (a bound on what a `nat44` still holds).
    nat_seen: Vec<u32>,
}

impl Mgmt {
    /// The API over `router` (as built at start, with the route file's text if the
    /// config names one) whose workers run [`update_hook`] of `links`.
    pub fn new(router: &Router, route_file: Option<String>, links: Vec<WorkerLink>) -> Mgmt {
        let mut m = Mgmt {
            cfg: router.config.clone(),
            route_file,
            macs: router.macs.clone(),
            l3: router.l3.clone(),
            links,
            fixed_routes: None,
            nat_seen: Vec::new(),
        };
        if let Some(n) = &router.config.nat {
            m.nat_seen = pool_addrs(n);
        }
        m
    }

    /// Route changes are refused (`operation-not-supported`, 501) with `why`: a
    /// guest that did not keep its route file's text cannot rebuild its tables.
    pub fn with_fixed_routes(mut self, why: &'static str) -> Mgmt {
        self.fixed_routes = Some(why);
        self
    }

    /// The running configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The L3 state the workers forward with.
    pub fn l3(&self) -> &Arc<L3> {
        &self.l3
    }

    /// Answers one request: `path` is the HTTP path (from `/restconf`), `query` the
    /// query string, `snaps` the workers' latest counters (for the state); changes
    /// go to the workers over the links given to [`Mgmt::new`].
    #[cfg(feature = "std")]
    pub fn handle(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        snaps: &[WorkerSnapshot],
    ) -> Answer {
        let links = core::mem::take(&mut self.links);
        let a = self.handle_with(
            method,
            path,
            query,
            body,
            &mut Threads {
                links: &links,
                snaps,
            },
        );
        self.links = links;
        a
    }

    /// [`Mgmt::handle`] with the workers (their counters, and where changes go)
    /// given by `workers`.
    pub fn handle_with(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        workers: &mut dyn Workers,
    ) -> Answer {
        let rest = match dataplane::restconf::front(method, path, "router", YANG) {
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
                return unsupported(405, "write below /restconf/data/router:router");
            }
            return self.get(&[], content, workers);
        }
        let Some(steps) = SCHEMA.parse_path(data) else {
            return missing(&format!("/{data}"));
        };
        let path = format!("/{data}");
        match method {
            "GET" => self.get(&steps, content, workers),
            "PUT" | "PATCH" | "POST" | "DELETE" => {
                if steps.first().is_some_and(|s| s.name == "state") {
                    return dataplane::restconf::error(
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
                self.write(method, &steps, &parsed, &path, workers)
            }
            _ => unsupported(405, "GET, PUT, PATCH, POST or DELETE"),
        }
    }

    fn get(&self, steps: &[Step], content: &str, workers: &dyn Workers) -> Answer {
        let mut root = Value::Object(Map::new());
        if content != "nonconfig" {
            root = config_tree(&self.cfg);
        }
        if content != "config" {
            root["state"] = self.state_tree(workers);
        }
        SCHEMA.get(&root, steps)
    }

    fn state_tree(&self, workers: &dyn Workers) -> Value {
        let ifaces: Vec<Value> = self
            .cfg
            .interfaces
            .iter()
            .enumerate()
            .map(|(i, ic)| {
                let c = workers.port(i);
                let m = self.macs.get(i).copied().unwrap_or_default();
                json!({
                    "name": ic.name,
                    "mac": format!(
                        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                        m[0], m[1], m[2], m[3], m[4], m[5]
                    ),
                    "rx-packets": c[0].to_string(),
                    "tx-packets": c[1].to_string(),
                    "rx-dropped": c[2].to_string(),
                    "tx-dropped": c[3].to_string(),
                })
            })
            .collect();
        let nodes: Vec<Value> = workers
            .node_drops()
            .iter()
            .filter(|(_, d)| *d > 0)
            .map(|(n, d)| json!({"name": n, "drops": d.to_string()}))
            .collect();
        let mut st = json!({
            "ipv4-routes": self.l3.routes4(),
            "ipv6-routes": self.l3.fib6.len(),
        });
        if !ifaces.is_empty() {
            st["interface"] = Value::Array(ifaces);
        }
        if !nodes.is_empty() {
            st["node"] = Value::Array(nodes);
        }
        if self.cfg.nat.is_some() {
            let per_worker = |name: &str| workers.counter("nat44", name);
            st["nat"] = json!({
                "sessions": per_worker("sessions-active").iter().sum::<u64>().to_string(),
                "draining-addresses": per_worker("pool-addresses-draining").into_iter().max().unwrap_or(0),
            });
        }
        st
    }

    /// A configuration change: the new tree, checked as a whole, then applied.
    fn write(
        &mut self,
        method: &str,
        steps: &[Step],
        body: &Value,
        path: &str,
        workers: &mut dyn Workers,
    ) -> Answer {
        let mut tree = config_tree(&self.cfg);
        let created = match SCHEMA.edit(&mut tree, method, steps, body, path) {
            Ok(c) => c,
            Err(a) => return a,
        };
        let new = match config_from(&tree, &self.cfg) {
            Ok(c) => c,
            Err(m) => return invalid(path, &m),
        };
        if let Err(e) = new.check() {
            return invalid(path, &name_route(&new, &e.0));
        }
        let mut pool_change = None;
        if new.nat != self.cfg.nat {
            let (Some(a), Some(b)) = (&new.nat, &self.cfg.nat) else {
                return unsupported(501, "NAT44 cannot be added or removed while running");
            };
            if a.pool != b.pool {
                // Built once here to check it; one per worker when applied.
                if let Err(e) = PoolChange::new(a, self.nat_seen.len()) {
                    return invalid(path, &format!("nat: {e}"));
                }
                pool_change = Some(a.clone());
            }
        }
        let old_meter = self
            .cfg
            .qos
            .as_ref()
            .and_then(|q| q.policer.as_ref())
            .map(|p| p.meter);
        let new_meter = new
            .qos
            .as_ref()
            .and_then(|q| q.policer.as_ref())
            .map(|p| p.meter);
        if old_meter.is_some() != new_meter.is_some() || new.qos.is_some() != self.cfg.qos.is_some()
        {
            return unsupported(
                501,
                "a policer can be changed while running but not added or removed (restart with [qos.policer])",
            );
        }
        let routes_changed = new.routes != self.cfg.routes;
        let mut built = None;
        if routes_changed {
            #[cfg(feature = "std")]
            if self.cfg.ike.is_some() {
                return unsupported(
                    501,
                    "routes of an IPsec gateway cannot change while running (the IKE daemon holds the forwarding state): restart the router",
                );
            }
            if let Some(why) = self.fixed_routes {
                return unsupported(501, why);
            }
            match Router::build(&new, &self.macs, self.route_file.as_deref()) {
                Ok(r) => built = Some(r.l3),
                Err(e) => return invalid(path, &name_route(&new, &e.0)),
            }
        }
        // Apply: everything was checked above.
        if let Some(l3) = built {
            self.swap_l3(l3, workers);
        }
        if let (Some(a), Some(b)) = (new_meter, old_meter) {
            if a != b {
                workers.send(&mut || Some(Update::Meter(a)));
            }
        }
        if let Some(nc) = pool_change {
            if !self.change_pool(&nc, workers) {
                // Only a worker that stopped or has no nat44 node gets here.
                self.cfg = new;
                return dataplane::restconf::error(
                    500,
                    "application",
                    "operation-failed",
                    path,
                    "a worker did not take the new NAT pool (stopped?)",
                );
            }
        }
        self.cfg = new;
        Answer::empty(if created { 201 } else { 204 })
    }

    /// Hands the new pool to every worker's `nat44` (checked by the caller); `false`
    /// when a worker did not take it.
    fn change_pool(
        &mut self,
        nc: &dataplane::stages::nat::NatConfig,
        workers: &mut dyn Workers,
    ) -> bool {
        let held = self.nat_seen.len();
        let back = workers.send(&mut || match PoolChange::new(nc, held) {
            Ok(ch) => Some(Update::NatPool(Box::new(ch))),
            Err(_) => None,
        });
        let taken = back
            .iter()
            .filter(|u| matches!(u, Update::NatPool(ch) if ch.outcome() == Some(Ok(()))))
            .count();
        for a in pool_addrs(nc) {
            if let Err(i) = self.nat_seen.binary_search(&a) {
                self.nat_seen.insert(i, a);
            }
        }
        taken == workers.count()
    }

    /// Hands `l3` to every worker, with the neighbours learned so far.
    fn swap_l3(&mut self, l3: Arc<L3>, workers: &mut dyn Workers) {
        copy_neighbours(&self.l3, &l3);
        workers.send(&mut || Some(Update::L3(L3Stages::new(&l3))));
        // What the workers learned into the old table before they swapped.
        copy_neighbours(&self.l3, &l3);
        // The old state is freed here (the last reference, unless a request holds one).
        self.l3 = l3;
    }
}

/// The addresses of a NAT pool, sorted (empty when the pool does not parse).
fn pool_addrs(n: &dataplane::stages::nat::NatConfig) -> Vec<u32> {
    let mut v = Vec::new();
    for (lo, hi) in n.pool_ranges().unwrap_or_default() {
        v.extend(lo..=hi);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// A configuration error about `route[N]` names the route by its prefix (the key
/// the API knows it by).
fn name_route(cfg: &Config, msg: &str) -> String {
    let Some(rest) = msg.strip_prefix("route[") else {
        return msg.to_string();
    };
    let Some((n, tail)) = rest.split_once(']') else {
        return msg.to_string();
    };
    match n.parse::<usize>().ok().and_then(|i| cfg.routes.get(i)) {
        Some(r) if !tail.starts_with(" (") => format!("route {}{tail}", r.prefix),
        Some(r) => format!(
            "route {}{}",
            r.prefix,
            tail.split_once(')').map_or(tail, |x| x.1)
        ),
        None => msg.to_string(),
    }
}

fn copy_neighbours(from: &L3, to: &L3) {
    for (k, mac, t) in from.neigh.dump() {
        if to.neigh.lookup(k) != Some(mac) {
            to.neigh.learn(k, mac, t);
        }
    }
}

/// The configuration part of the tree.
fn config_tree(cfg: &Config) -> Value {
    let mut v = json!({});
    let routes: Vec<Value> = cfg
        .routes
        .iter()
        .map(|r| {
            let mut e = json!({"prefix": r.prefix});
            if r.drop {
                e["drop"] = json!([null]);
            } else if let Some(via) = &r.via {
                e["next-hop"] = Value::String(via.clone());
            }
            e
        })
        .collect();
    if !routes.is_empty() {
        v["route"] = Value::Array(routes);
    }
    if let Some(n) = &cfg.nat {
        v["nat"] = json!({"pool": n.pool});
    }
    if let Some(q) = &cfg.qos {
        let mut qv = json!({});
        if let Some(p) = &q.policer {
            qv["policer"] = match p.meter {
                MeterConfig::Srtcm { cir_bps, cbs, ebs } => json!({
                    "meter": "srtcm", "cir-bps": cir_bps.to_string(), "cbs": cbs, "ebs": ebs,
                }),
                MeterConfig::Trtcm {
                    cir_bps,
                    cbs,
                    pir_bps,
                    pbs,
                } => json!({
                    "meter": "trtcm", "cir-bps": cir_bps.to_string(), "cbs": cbs,
                    "pir-bps": pir_bps.to_string(), "pbs": pbs,
                }),
            };
        }
        v["qos"] = qv;
    }
    v
}

fn u32_of(v: Option<&Value>, what: &str) -> Result<u32, String> {
    let n = u64_of(v).map_err(|e| format!("{what}: {e}"))?;
    u32::try_from(n).map_err(|_| format!("{what}: {n} is not a uint32"))
}

/// A configuration from the tree: `base` with the modelled parts replaced.
fn config_from(tree: &Value, base: &Config) -> Result<Config, String> {
    let mut c = base.clone();
    if let Some(o) = tree.as_object() {
        if let Some(k) = o
            .keys()
            .find(|k| !["route", "nat", "qos"].contains(&k.as_str()))
        {
            return Err(format!("unknown node {k:?}"));
        }
    }
    c.routes = match tree.get("route") {
        None => Vec::new(),
        Some(l) => l
            .as_array()
            .ok_or("route is a list")?
            .iter()
            .map(|e| {
                let prefix = str_of(e, "prefix").ok_or("route: prefix is the key")?;
                let drop = match e.get("drop") {
                    None => false,
                    Some(Value::Array(a)) if a.len() == 1 && a[0].is_null() => true,
                    Some(_) => return Err(format!("route {prefix}: drop is [null] (empty)")),
                };
                let via = match e.get("next-hop") {
                    None => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => return Err(format!("route {prefix}: next-hop is an address")),
                };
                if drop == via.is_some() {
                    return Err(format!("route {prefix}: either next-hop or drop"));
                }
                Ok(RouteConfig {
                    prefix: prefix.to_string(),
                    via,
                    drop,
                })
            })
            .collect::<Result<Vec<_>, String>>()?,
    };
    c.nat = match (tree.get("nat"), &base.nat) {
        (None, _) => None,
        (Some(n), b) => {
            let Some(mut nc) = b.clone() else {
                return Err("NAT44 cannot be added while running".to_string());
            };
            nc.pool = n
                .get("pool")
                .and_then(Value::as_array)
                .ok_or("nat: pool is a leaf-list")?
                .iter()
                .map(|p| {
                    p.as_str()
                        .map(str::to_string)
                        .ok_or("nat: pool entries are text")
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(nc)
        }
    };
    c.qos = match (tree.get("qos"), &base.qos) {
        (None, _) => None,
        (Some(_), None) => return Err("QoS cannot be added while running".to_string()),
        (Some(q), Some(b)) => {
            let mut qc = b.clone();
            qc.policer = match (q.get("policer"), &b.policer) {
                (None, _) => None,
                (Some(_), None) => {
                    return Err("a policer cannot be added while running".to_string())
                }
                (Some(p), Some(bp)) => {
                    let mut pc = bp.clone();
                    let cir_bps = u64_of(p.get("cir-bps")).map_err(|e| format!("cir-bps: {e}"))?;
                    let cbs = u32_of(p.get("cbs"), "cbs")?;
                    pc.meter = match str_of(p, "meter") {
                        Some("srtcm") => {
                            if p.get("pir-bps").is_some() || p.get("pbs").is_some() {
                                return Err("srtcm has no pir-bps or pbs".to_string());
                            }
                            MeterConfig::Srtcm {
                                cir_bps,
                                cbs,
                                ebs: u32_of(p.get("ebs"), "ebs")?,
                            }
                        }
                        Some("trtcm") => {
                            if p.get("ebs").is_some() {
                                return Err("trtcm has no ebs".to_string());
                            }
                            MeterConfig::Trtcm {
                                cir_bps,
                                cbs,
                                pir_bps: u64_of(p.get("pir-bps"))
                                    .map_err(|e| format!("pir-bps: {e}"))?,
                                pbs: u32_of(p.get("pbs"), "pbs")?,
                            }
                        }
                        _ => return Err("policer: meter is srtcm or trtcm".to_string()),
                    };
                    Some(pc)
                }
            };
            Some(qc)
        }
    };
    Ok(c)
}
