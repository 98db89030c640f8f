//! The vBNG's management API (issue 19): the YANG module `yang/vbng@2026-12-02.yang`
//! served as a RESTCONF-shaped JSON API (RFC 8040) by the control side, off the
//! data-plane threads.
//!
//! Resources (RFC 8040 §3.3, §3.5; JSON encoding RFC 7951, 64-bit integers as
//! strings):
//! - `GET /restconf` — the API root; `GET /restconf/data` and
//!   `GET /restconf/data/vbng:vbng[/PATH]` — configuration and state (`?content=config`
//!   or `nonconfig`, §4.8.1). Secrets (RADIUS shared secrets, user passwords) are
//!   never returned.
//! - `PUT` (replace, §4.5), `PATCH` (plain merge, §4.6.1), `POST` (create a child,
//!   §4.4.1) and `DELETE` (§4.7) on the configuration: `subscriber-defaults`,
//!   `radius` with its `auth-server`/`acct-server` lists, and the `user` list. A change
//!   is applied to a copy of the running configuration, validated as a whole
//!   ([`Config::validate`] plus what the running control plane checks), and only then
//!   applied to the control plane — atomically under the control side's lock, while
//!   the worker keeps forwarding. An invalid change is refused whole.
//! - `POST /restconf/data/vbng:vbng/state/session=ID/set-rate` and `.../disconnect`:
//!   the YANG actions on a session (§3.6).
//! - `POST /restconf/operations/vbng:drain` — the YANG `drain` RPC (§3.6.1): with
//!   `{"vbng:input":{"enable":false}}` it ends draining; otherwise the vBNG stops
//!   answering PADI/PADR and the DHCP messages that would open an IPoE session
//!   (clients turn to another BNG), existing sessions stay; the output counts them.
//!   The packages' `drain.sh` (terminate_start) calls it.
//! - `GET /restconf/yang/vbng` — the module text (the schema resource).
//!
//! Errors carry the RFC 8040 §7.1 body
//! `{"ietf-restconf:errors":{"error":[{"error-type":…,"error-tag":…,"error-path":…,
//! "error-message":…}]}}` with the status of §7 (400 invalid-value or
//! malformed-message, 404 invalid-value for a missing resource, 405
//! operation-not-supported, 409 data-exists, 501 operation-not-supported).
//!
//! The generic parts (paths with list keys, the JSON tree edits, error bodies,
//! [`Answer`], the media type) are shared with the other VNFs' APIs in
//! [`dataplane::restconf`].
//!
//! - The CGNAT pool (`cgnat/pool`, with `[cgnat]` or `cgnat_public` at start) as the
//!   router's NAT pool: the new pool's tables are built here and the worker's
//!   `nat44` takes them between two bursts
//!   ([`dataplane::stages::nat::Nat44::apply_pool_change`], through [`NatLink`] and
//!   [`nat_pool_hook`]). Existing subscribers keep their outside address and port
//!   blocks — an address removed from the pool *drains* until their last mapping
//!   expires (paired pooling, RFC 6888 REQ-2) — while new subscribers get blocks
//!   from the new pool at once.
//!
//! What a running vBNG cannot change (adding RADIUS or CGNAT where none was
//! configured at start, address pools, ports) is refused with
//! `operation-not-supported`.

use crate::config::{Config, Password, Secret, ServerConfig, UserConfig};
use crate::control::ControlPlane;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use crossbeam_queue::ArrayQueue;
use dataplane::restconf::{
    error, invalid, malformed, missing, str_of, u64_of, unsupported, Schema, Step,
};
use dataplane::stages::nat::PoolChange;
use serde_json::{json, Map, Value};

/// The YANG module's name (the JSON namespace qualifier).
pub const MODULE: &str = "vbng";
/// The YANG module.
pub const YANG: &str = include_str!("../yang/vbng@2026-12-02.yang");
pub use dataplane::restconf::{Answer, MEDIA};

/// The module and the key leaf of each of its lists.
const SCHEMA: Schema = Schema {
    module: MODULE,
    keys: &[
        ("user", "name"),
        ("auth-server", "address"),
        ("acct-server", "address"),
        ("session", "id"),
    ],
};

fn key_of(list: &str, e: &Value) -> Option<String> {
    SCHEMA.key_of(list, e)
}

/// How long a CGNAT pool change (or a pool report) waits for the worker.
#[cfg(feature = "std")]
const APPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// One outside address the worker's `nat44` holds: its address, whether it is
/// draining (removed from the pool at run time, RFC 6888 REQ-2 paired pooling) and
/// the port blocks still bound to subscribers on it.
pub type PoolAddr = (Ipv4Addr, bool, u32);

/// How the management side reaches the worker's `nat44`: over the [`NatLink`]
/// queues when the worker is another thread (the Linux vBNG), or directly when
/// one loop runs both (the unikernel guest reads and changes its worker's graph
/// between two polls).
pub trait NatAccess {
    /// Has the worker take `ch` (built by [`PoolChange::new`] off the data path);
    /// `Err` with the stage's (or the link's) reason when it was not applied.
    fn apply(&mut self, ch: PoolChange) -> Result<(), String>;
    /// The outside addresses the worker holds now (`held` bounds how many), or
    /// why they cannot be read.
    fn pool(&mut self, held: usize) -> Result<Vec<PoolAddr>, String>;
}

/// [`NatAccess`] on a graph the caller owns (one loop runs the worker and the
/// management side): its `nat44` node is read and changed in place.
pub struct GraphNat<'a>(pub &'a mut dataplane::graph::Graph);

impl NatAccess for GraphNat<'_> {
    fn apply(&mut self, mut ch: PoolChange) -> Result<(), String> {
        let Some(n) = self
            .0
            .node_mut::<crate::vnf::CgnatNode>(crate::vnf::NODE_NAT)
        else {
            return Err("the graph has no nat44 node".to_string());
        };
        n.0.apply_pool_change(&mut ch);
        match ch.outcome() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("the nat44 node did not take the change".to_string()),
        }
    }

    fn pool(&mut self, _held: usize) -> Result<Vec<PoolAddr>, String> {
        match self
            .0
            .node_mut::<crate::vnf::CgnatNode>(crate::vnf::NODE_NAT)
        {
            Some(n) => Ok(n.0.pool_addresses().collect()),
            None => Err("the graph has no nat44 node".to_string()),
        }
    }
}

/// The queues between the management side and the worker's `nat44` for CGNAT pool
/// changes (fixed-size, lock-free; allocated here).
#[derive(Clone)]
pub struct NatLink {
    to_worker: Arc<ArrayQueue<Box<PoolChange>>>,
    done: Arc<ArrayQueue<Box<PoolChange>>>,
    /// Pool reports: an empty vector with room for every address the stage may
    /// hold goes to the worker, which fills it within that room.
    ask: Arc<ArrayQueue<Vec<PoolAddr>>>,
    told: Arc<ArrayQueue<Vec<PoolAddr>>>,
}

impl core::fmt::Debug for NatLink {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("NatLink")
    }
}

impl Default for NatLink {
    fn default() -> Self {
        Self::new()
    }
}

impl NatLink {
    pub fn new() -> NatLink {
        NatLink {
            to_worker: Arc::new(ArrayQueue::new(2)),
            done: Arc::new(ArrayQueue::new(2)),
            ask: Arc::new(ArrayQueue::new(2)),
            told: Arc::new(ArrayQueue::new(2)),
        }
    }
}

/// The worker's side of `link` (`Worker::on_update`): between bursts the `nat44`
/// node takes a queued pool change, which goes back (with what the stage no longer
/// holds) to be freed off the worker. Allocates and locks nothing.
pub fn nat_pool_hook(link: &NatLink) -> dataplane::worker::Hook {
    let link = link.clone();
    Box::new(move |g, _out| {
        while let Some(mut ch) = link.to_worker.pop() {
            if let Some(n) = g.node_mut::<crate::vnf::CgnatNode>(crate::vnf::NODE_NAT) {
                n.0.apply_pool_change(&mut ch);
            }
            // The management side empties `done` before each change and waits for
            // it: there is room.
            let _ = link.done.push(ch);
        }
        while let Some(mut v) = link.ask.pop() {
            if let Some(n) = g.node_mut::<crate::vnf::CgnatNode>(crate::vnf::NODE_NAT) {
                // Within the room the management side reserved: no allocation.
                let room = v.capacity();
                v.extend(n.0.pool_addresses().take(room));
            }
            let _ = link.told.push(v);
        }
    })
}

/// Waits (at most [`APPLY_TIMEOUT`]) for the worker to answer on `q`.
#[cfg(feature = "std")]
fn wait_for<T>(q: &ArrayQueue<T>) -> Option<T> {
    let t = std::time::Instant::now();
    loop {
        if let Some(x) = q.pop() {
            return Some(x);
        }
        if t.elapsed() >= APPLY_TIMEOUT {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

#[cfg(feature = "std")]
impl NatAccess for NatLink {
    /// Hands `ch` to the worker's `nat44` and waits until it took it.
    fn apply(&mut self, ch: PoolChange) -> Result<(), String> {
        while self.done.pop().is_some() {}
        if self.to_worker.push(Box::new(ch)).is_err() {
            return Err("the worker has not taken the previous change yet".to_string());
        }
        match wait_for(&self.done) {
            Some(ch) => match ch.outcome() {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(e.to_string()),
                None => Err("the worker has no nat44 node".to_string()),
            },
            None => Err("the worker did not take the new pool (stopped?)".to_string()),
        }
    }

    fn pool(&mut self, held: usize) -> Result<Vec<PoolAddr>, String> {
        while self.told.pop().is_some() {}
        if self.ask.push(Vec::with_capacity(held)).is_err() {
            return Err("the worker has not answered the previous report yet".to_string());
        }
        wait_for(&self.told).ok_or_else(|| "the worker did not answer (stopped?)".to_string())
    }
}

/// The CGNAT pool of a configuration (`[cgnat] pool` or `cgnat_public`).
fn cgnat_pool(cfg: &Config) -> Option<Vec<dataplane::addr::Range4>> {
    match (&cfg.cgnat, &cfg.cgnat_public) {
        (Some(c), _) => Some(c.pool.clone()),
        (None, Some(p)) => Some(vec![*p]),
        (None, None) => None,
    }
}

/// The configuration part of the tree, secrets included (never sent out).
fn config_tree(cfg: &Config) -> Value {
    let mut v = json!({
        "subscriber-defaults": {
            "rate-up": cfg.default_rate_up.to_string(),
            "rate-down": cfg.default_rate_down.to_string(),
        },
    });
    if let Some(r) = &cfg.radius {
        let servers = |l: &[ServerConfig]| {
            l.iter()
                .map(|s| json!({"address": s.addr.to_string(), "secret": s.secret.expose()}))
                .collect::<Vec<_>>()
        };
        v["radius"] = json!({
            "auth-server": servers(&r.auth),
            "acct-server": servers(&r.acct),
        });
    }
    let users: Vec<Value> = cfg
        .users
        .iter()
        .map(|u| {
            let mut e = json!({
                "name": u.name,
                "password": String::from_utf8_lossy(u.password.as_bytes()),
            });
            if let Some(ip) = u.ip {
                e["ip"] = Value::String(ip.to_string());
            }
            if let Some(r) = &u.rate {
                e["rate"] = Value::String(r.clone());
            }
            e
        })
        .collect();
    if !users.is_empty() {
        v["user"] = Value::Array(users);
    }
    if let Some(p) = cgnat_pool(cfg) {
        v["cgnat"] = json!({"pool": p.iter().map(|r| r.to_string()).collect::<Vec<_>>()});
    }
    v
}

/// Removes the write-only leaves (secrets) from a tree about to be sent.
fn strip_secrets(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.remove("secret");
            o.remove("password");
            for x in o.values_mut() {
                strip_secrets(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_secrets),
        _ => {}
    }
}

fn mac_text(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// The operational state; `pool` is what the worker's `nat44` holds (with CGNAT).
fn state_tree(cfg: &Config, cp: &ControlPlane, pool: Option<&[PoolAddr]>) -> Value {
    let s = &cp.stats;
    let sessions: Vec<Value> = cp
        .sessions()
        .iter()
        .map(|x| {
            let mut e = json!({
                "id": x.idx,
                "acct-session-id": x.acct_id,
                "access": if x.sid == 0 { "ipoe" } else { "pppoe" },
                "user": x.user,
                "mac": mac_text(&x.key.mac),
                "svlan": x.key.vlans.svlan,
                "cvlan": x.key.vlans.cvlan,
                "phase": x.phase,
                "rate-up": x.rate.0.to_string(),
                "rate-down": x.rate.1.to_string(),
                "octets-up": x.counters.0.to_string(),
                "packets-up": x.counters.1.to_string(),
                "octets-down": x.counters.2.to_string(),
                "packets-down": x.counters.3.to_string(),
            });
            if x.sid != 0 {
                e["pppoe-session-id"] = json!(x.sid);
            }
            if x.ip != 0 {
                e["ipv4-address"] = Value::String(core::net::Ipv4Addr::from(x.ip).to_string());
            }
            if x.ipv6_prefix != 0 {
                let p = core::net::Ipv6Addr::from(u128::from(x.ipv6_prefix) << 64);
                e["ipv6-prefix"] = Value::String(format!("{p}/64"));
            }
            e
        })
        .collect();
    let mut st = json!({
        "name": cfg.name,
        "sessions": cp.session_count(),
        "sessions-ipv6": cp.ipv6_session_count(),
        "draining": cp.draining(),
        "counters": {
            "sessions-created": s.sessions_created.to_string(),
            "sessions-up": s.sessions_up.to_string(),
            "sessions-ended": s.sessions_ended.to_string(),
            "auth-accept": s.auth_accept.to_string(),
            "auth-reject": s.auth_reject.to_string(),
            "aaa-timeout": s.aaa_timeout.to_string(),
            "malformed": s.malformed.to_string(),
            "drain-refused": cp.drain_refused.to_string(),
        },
    });
    if !sessions.is_empty() {
        st["session"] = Value::Array(sessions);
    }
    if let Some(pool) = pool {
        // Addresses removed from the pool that subscribers still hold (RFC 6888
        // REQ-2: paired pooling keeps them until their last mapping ends).
        let draining: Vec<Value> = pool
            .iter()
            .filter(|(_, d, blocks)| *d && *blocks > 0)
            .map(|(a, _, blocks)| json!({"address": a.to_string(), "port-blocks": blocks}))
            .collect();
        let mut c = json!({
            "pool-addresses": pool.len(),
            "port-blocks-in-use": pool.iter().map(|p| u64::from(p.2)).sum::<u64>().to_string(),
        });
        if !draining.is_empty() {
            c["draining-address"] = Value::Array(draining);
        }
        st["cgnat"] = c;
    }
    st
}

/// The management side of a running vBNG: the running configuration the API reads
/// and changes.
#[derive(Debug, Clone)]
pub struct Mgmt {
    cfg: Config,
    /// The session slots the worker's `nat44` was built for (CGNAT pool changes
    /// through a [`NatAccess`]).
    nat_slots: Option<u32>,
    /// The worker's `nat44` over queues (the Linux vBNG's worker thread).
    #[cfg(feature = "std")]
    link: Option<NatLink>,
    /// Every CGNAT pool address since start (a bound on what `nat44` still holds).
    nat_seen: Vec<u32>,
}

impl Mgmt {
    /// The API over the configuration the vBNG started with.
    pub fn new(cfg: Config) -> Mgmt {
        let mut m = Mgmt {
            cfg,
            nat_slots: None,
            #[cfg(feature = "std")]
            link: None,
            nat_seen: Vec::new(),
        };
        m.see_pool();
        m
    }

    /// With the worker's CGNAT pool link (`nat_pool_hook` registered on the worker
    /// built for `slots` session slots): the pool can change at run time.
    #[cfg(feature = "std")]
    pub fn with_nat_link(mut self, link: NatLink, slots: u32) -> Mgmt {
        self.nat_slots = Some(slots);
        self.link = Some(link);
        self
    }

    /// With a worker built for `slots` session slots whose `nat44` the caller
    /// hands to [`Mgmt::handle_with`] (a loop that runs both, as the unikernel).
    pub fn with_nat_slots(mut self, slots: u32) -> Mgmt {
        self.nat_slots = Some(slots);
        self
    }

    fn see_pool(&mut self) {
        for r in cgnat_pool(&self.cfg).unwrap_or_default() {
            let (lo, hi) = r.bounds();
            for a in lo..=hi {
                if let Err(i) = self.nat_seen.binary_search(&a) {
                    self.nat_seen.insert(i, a);
                }
            }
        }
    }

    /// The running configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Answers one request: `path` is the HTTP path (from `/restconf`), `query` the
    /// query string; `now_ms` is the control plane's clock. The worker's `nat44` is
    /// reached over the link of [`Mgmt::with_nat_link`].
    #[cfg(feature = "std")]
    pub fn handle(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        cp: &mut ControlPlane,
        now_ms: u64,
    ) -> Answer {
        let mut link = self.link.clone();
        let nat = link.as_mut().map(|l| l as &mut dyn NatAccess);
        self.handle_with(method, path, query, body, cp, now_ms, nat)
    }

    /// [`Mgmt::handle`] with the worker's `nat44` reached through `nat` (`None`:
    /// no CGNAT pool state or change).
    #[allow(clippy::too_many_arguments)]
    pub fn handle_with(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        cp: &mut ControlPlane,
        now_ms: u64,
        nat: Option<&mut dyn NatAccess>,
    ) -> Answer {
        let rest = match dataplane::restconf::front(method, path, "vbng", YANG) {
            Ok(rest) => rest,
            Err(answer) => return answer,
        };
        if rest == "/operations/vbng:drain" {
            if method != "POST" {
                return unsupported(405, "operations are invoked with POST");
            }
            let enable = match drain_input(body) {
                Ok(e) => e,
                Err(a) => return a,
            };
            cp.set_draining(enable);
            return Answer::json(
                200,
                &json!({"vbng:output": {"draining": enable, "sessions": cp.session_count()}}),
            );
        }
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
                return unsupported(405, "write below /restconf/data/vbng:vbng");
            }
            return self.get(&[], content, cp, nat);
        }
        let Some(steps) = SCHEMA.parse_path(data) else {
            return missing(&format!("/{data}"));
        };
        // Actions on a session (RFC 8040 §3.6).
        if let Some((id, action)) = action_of(&steps) {
            if method != "POST" {
                return unsupported(405, "actions are invoked with POST");
            }
            return self.action(id, &action, body, cp, now_ms);
        }
        match method {
            "GET" => self.get(&steps, content, cp, nat),
            "PUT" | "PATCH" | "POST" | "DELETE" => {
                if steps.first().is_some_and(|s| s.name == "state") {
                    return error(
                        405,
                        "protocol",
                        "operation-not-supported",
                        &format!("/{data}"),
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
                self.write(
                    method,
                    &steps,
                    &parsed,
                    &format!("/{data}"),
                    cp,
                    now_ms,
                    nat,
                )
            }
            _ => unsupported(405, "GET, PUT, PATCH, POST or DELETE"),
        }
    }

    fn get(
        &self,
        steps: &[Step],
        content: &str,
        cp: &ControlPlane,
        nat: Option<&mut dyn NatAccess>,
    ) -> Answer {
        let mut root = Value::Object(Map::new());
        if content != "nonconfig" {
            root = config_tree(&self.cfg);
            strip_secrets(&mut root);
        }
        if content != "config" {
            let pool = match nat {
                Some(n) if cgnat_pool(&self.cfg).is_some() => match n.pool(self.nat_seen.len()) {
                    Ok(p) => Some(p),
                    Err(m) => return error(500, "application", "operation-failed", "", &m),
                },
                _ => None,
            };
            root["state"] = state_tree(&self.cfg, cp, pool.as_deref());
        }
        SCHEMA.get(&root, steps)
    }

    /// A configuration change: the new tree, checked, then applied.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        method: &str,
        steps: &[Step],
        body: &Value,
        path: &str,
        cp: &mut ControlPlane,
        now_ms: u64,
        nat: Option<&mut dyn NatAccess>,
    ) -> Answer {
        let old = config_tree(&self.cfg);
        let mut tree = old.clone();
        let created = match SCHEMA.edit(&mut tree, method, steps, body, path) {
            Ok(c) => c,
            Err(a) => return a,
        };
        // Write-only secrets a PUT or PATCH left out keep their running value.
        keep_secrets(&mut tree, &old);
        let new = match config_from(&tree, &self.cfg) {
            Ok(c) => c,
            Err(m) => return invalid(path, &m),
        };
        if let Err(e) = new.validate() {
            return invalid(path, &e.0);
        }
        if new.radius.is_some() != self.cfg.radius.is_some() {
            return unsupported(
                501,
                "RADIUS can be changed while running but not added or removed (restart with [radius])",
            );
        }
        let mut pool_change = None;
        if cgnat_pool(&new) != cgnat_pool(&self.cfg) {
            let (Some(slots), Some(nat)) = (self.nat_slots, nat) else {
                return unsupported(
                    501,
                    "no CGNAT pool change here (CGNAT off, or no worker link): restart the vBNG",
                );
            };
            let nc = match new.nat_config(slots) {
                Ok(Some(nc)) => nc,
                Ok(None) => return unsupported(501, "CGNAT cannot be removed while running"),
                Err(e) => return invalid(path, &e.0),
            };
            match PoolChange::new(&nc, self.nat_seen.len()) {
                Ok(ch) => pool_change = Some((nat, ch)),
                Err(e) => return invalid(path, &format!("cgnat: {e}")),
            }
        }
        // Apply: the one fallible step first, so a refusal leaves everything as it was.
        if new.users != self.cfg.users {
            if let Err(e) = cp.set_users(&new.users) {
                return invalid(path, &e.0);
            }
        }
        if (new.default_rate_up, new.default_rate_down)
            != (self.cfg.default_rate_up, self.cfg.default_rate_down)
        {
            cp.set_default_rate((new.default_rate_up, new.default_rate_down));
        }
        if let (Some(a), Some(b)) = (&new.radius, &self.cfg.radius) {
            if a.auth != b.auth || a.acct != b.acct {
                cp.set_radius_servers(&a.auth, &a.acct, now_ms);
            }
        }
        if let Some((nat, ch)) = pool_change {
            let r = nat.apply(ch);
            self.cfg = new;
            self.see_pool();
            if let Err(m) = r {
                return error(500, "application", "operation-failed", path, &m);
            }
            return Answer::empty(if created { 201 } else { 204 });
        }
        self.cfg = new;
        Answer::empty(if created { 201 } else { 204 })
    }

    fn action(
        &mut self,
        id: u32,
        action: &str,
        body: &[u8],
        cp: &mut ControlPlane,
        now_ms: u64,
    ) -> Answer {
        let path = format!("/vbng:vbng/state/session={id}/{action}");
        if !cp.sessions().iter().any(|s| s.idx == id) {
            return missing(&path);
        }
        match action {
            "disconnect" => {
                cp.terminate(id, crate::radius::terminate_cause::ADMIN_RESET, now_ms);
                Answer::empty(204)
            }
            "set-rate" => {
                let v: Value = match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(e) => return malformed(&format!("body is not JSON: {e}")),
                };
                let Some(input) = SCHEMA.body_member(&v, "input") else {
                    return malformed(
                        "expected {\"vbng:input\": {\"rate-up\": …, \"rate-down\": …}}",
                    );
                };
                let (Some(up), Some(down)) = (input.get("rate-up"), input.get("rate-down")) else {
                    return invalid(&path, "rate-up and rate-down are mandatory");
                };
                let rate = match (u64_of(Some(up)), u64_of(Some(down))) {
                    (Ok(u), Ok(d)) => (u, d),
                    (Err(m), _) | (_, Err(m)) => return invalid(&path, &m),
                };
                cp.set_session_rate(id, rate);
                Answer::empty(204)
            }
            _ => missing(&path),
        }
    }
}

/// The input of the `drain` RPC (RFC 8040 §3.6.1, RFC 7951 JSON): an empty body or
/// `{"vbng:input":{}}` drains, `{"vbng:input":{"enable":B}}` sets it; anything else
/// is the RFC 8040 §7.1 error to answer.
pub fn drain_input(body: &[u8]) -> Result<bool, Answer> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(true);
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Err(malformed(&format!("body is not JSON: {e}"))),
    };
    match SCHEMA.body_member(&v, "input").map(|i| i.get("enable")) {
        Some(None) => Ok(true),
        Some(Some(Value::Bool(b))) => Ok(*b),
        Some(Some(_)) => Err(invalid("/vbng:drain/input/enable", "enable is a boolean")),
        None => Err(malformed("expected {\"vbng:input\": {\"enable\": true}}")),
    }
}

/// `state/session=ID/ACTION`.
fn action_of(steps: &[Step]) -> Option<(u32, String)> {
    match steps {
        [a, b, c]
            if a.name == "state"
                && a.key.is_none()
                && b.name == "session"
                && c.key.is_none()
                && matches!(c.name.as_str(), "set-rate" | "disconnect") =>
        {
            Some((b.key.as_deref()?.parse().ok()?, c.name.clone()))
        }
        _ => None,
    }
}

/// Secrets and passwords missing from `tree` keep the value `old` has for the same
/// server or user.
fn keep_secrets(tree: &mut Value, old: &Value) {
    for (list, field) in [
        ("auth-server", "secret"),
        ("acct-server", "secret"),
        ("user", "password"),
    ] {
        let olds: Vec<(String, Value)> = old
            .pointer(if list == "user" {
                "/user"
            } else if list == "auth-server" {
                "/radius/auth-server"
            } else {
                "/radius/acct-server"
            })
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| Some((key_of(list, e)?, e.get(field)?.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let ptr = if list == "user" {
            "/user"
        } else if list == "auth-server" {
            "/radius/auth-server"
        } else {
            "/radius/acct-server"
        };
        if let Some(Value::Array(a)) = tree.pointer_mut(ptr) {
            for e in a.iter_mut() {
                if e.get(field).is_some() {
                    continue;
                }
                let k = key_of(list, e);
                if let Some((_, v)) = olds.iter().find(|(x, _)| Some(x) == k.as_ref()) {
                    if let Some(o) = e.as_object_mut() {
                        o.insert(field.to_string(), v.clone());
                    }
                }
            }
        }
    }
}

/// A configuration from the tree: `base` with the modelled parts replaced.
fn config_from(tree: &Value, base: &Config) -> Result<Config, String> {
    let mut c = base.clone();
    let known = ["subscriber-defaults", "radius", "user", "cgnat"];
    if let Some(o) = tree.as_object() {
        if let Some(k) = o.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(format!("unknown node {k:?}"));
        }
    }
    let d = tree.get("subscriber-defaults");
    c.default_rate_up = u64_of(d.and_then(|d| d.get("rate-up")))?;
    c.default_rate_down = u64_of(d.and_then(|d| d.get("rate-down")))?;
    c.radius = match (tree.get("radius"), &base.radius) {
        (None, _) => None,
        (Some(r), b) => {
            let mut rc = b.clone().unwrap_or_default();
            let servers = |name: &str| -> Result<Vec<ServerConfig>, String> {
                let Some(l) = r.get(name) else {
                    return Ok(Vec::new());
                };
                let a = l.as_array().ok_or_else(|| format!("{name} is a list"))?;
                a.iter()
                    .map(|e| {
                        let addr = str_of(e, "address")
                            .ok_or_else(|| format!("{name}: address is the key"))?;
                        let addr = addr
                            .parse()
                            .map_err(|_| format!("{name} {addr:?}: not address:port"))?;
                        let secret = str_of(e, "secret")
                            .filter(|s| !s.is_empty())
                            .ok_or_else(|| format!("{name} {addr}: secret is mandatory"))?;
                        Ok(ServerConfig {
                            addr,
                            secret: Secret::from(secret),
                        })
                    })
                    .collect()
            };
            rc.auth = servers("auth-server")?;
            rc.acct = servers("acct-server")?;
            Some(rc)
        }
    };
    c.users = match tree.get("user") {
        None => Vec::new(),
        Some(l) => l
            .as_array()
            .ok_or("user is a list")?
            .iter()
            .map(|e| {
                let name = str_of(e, "name").ok_or("user: name is the key")?;
                let ip = match str_of(e, "ip") {
                    Some(s) => Some(s.parse().map_err(|_| format!("user {name:?}: bad ip"))?),
                    None => None,
                };
                Ok(UserConfig {
                    name: name.to_string(),
                    password: Password::from(str_of(e, "password").unwrap_or("")),
                    ip,
                    rate: str_of(e, "rate").map(str::to_string),
                })
            })
            .collect::<Result<Vec<_>, String>>()?,
    };
    match (tree.get("cgnat"), cgnat_pool(base)) {
        (None, None) => {}
        (None, Some(_)) => return Err("CGNAT cannot be removed while running".to_string()),
        (Some(_), None) => return Err("CGNAT cannot be added while running".to_string()),
        (Some(n), Some(_)) => {
            let pool = n
                .get("pool")
                .and_then(Value::as_array)
                .ok_or("cgnat: pool is a leaf-list")?
                .iter()
                .map(|p| {
                    p.as_str()
                        .and_then(|t| t.parse::<dataplane::addr::Range4>().ok())
                        .ok_or_else(|| {
                            format!("cgnat: pool entry {p} is not a.b.c.d, a.b.c.d/len or a.b.c.d-e.f.g.h")
                        })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let mut sec = base.cgnat.clone().unwrap_or_default();
            sec.pool = pool;
            c.cgnat = Some(sec);
            c.cgnat_public = None;
        }
    }
    Ok(c)
}
