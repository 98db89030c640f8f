//! The key server's management API (issue 19): the YANG module
//! `yang/keyserver@2026-12-02.yang` served as a RESTCONF-shaped JSON API (RFC 8040,
//! JSON per RFC 7951 with 64-bit integers as strings) on the `server.metrics`
//! address beside `/metrics` and `POST /revoke?id=CPE`. The generic parts (paths,
//! tree edits, RFC 8040 §7.1 error bodies) are [`dataplane::restconf`];
//! `keyserver api METHOD PATH [-d JSON|@FILE] [--connect ADDR]` is the client.
//!
//! Resources:
//! - `GET /restconf/data[/keyserver:keyserver[/PATH]]` (`?content=config|nonconfig`,
//!   RFC 8040 §4.8.1), `GET /restconf/yang/keyserver`;
//! - `PUT`/`PATCH` (§4.5, §4.6) of the configuration: `server/rekey-interval`
//!   (seconds; [`Server::set_rekey_interval`]) and a CPE's `revoked` set to true
//!   (a revocation);
//! - the YANG 1.1 action `POST /restconf/data/keyserver:keyserver/cpe=ID/revoke` and
//!   the RPC `POST /restconf/operations/keyserver:revoke` with
//!   `{"keyserver:input":{"id":"ID"}}` (§3.6): revoke a CPE, 204 when done.
//!
//! A change is checked as a whole before anything is applied; adding or removing
//! CPEs or groups, or un-revoking a CPE, is refused with `operation-not-supported`
//! (501). The state shows per CPE whether it is up and served and per tunnel its SA
//! generation and rotation times — never a key. Requests are answered on the
//! server's own thread ([`Mgmt::handle`] takes the server), so the API never races
//! the protocol state.

use crate::config::Config;
use crate::prelude::*;
use crate::proto::alg_code;
use crate::udp::UdpServer;
use dataplane::restconf::{
    error, invalid, malformed, missing, str_of, u64_of, unsupported, Answer, Schema, Step,
};
use ipsec::crypto::Algorithm;
use serde_json::{json, Map, Value};

pub use dataplane::restconf::MEDIA;

/// The YANG module's name (the JSON namespace qualifier).
pub const MODULE: &str = "keyserver";
/// The YANG module.
pub const YANG: &str = include_str!("../yang/keyserver@2026-12-02.yang");

const SCHEMA: Schema = Schema {
    module: MODULE,
    keys: &[("cpe", "id"), ("group", "name"), ("tunnel", "peer")],
};

/// The management side of a key server: the configuration as the API shows it.
pub struct Mgmt {
    /// The configuration nodes (`server/rekey-interval`, `cpe/{id,revoked}`).
    config: Value,
    /// What the configuration file set that the API shows read-only.
    info: Value,
}

fn algorithm_name(a: Algorithm) -> &'static str {
    // The codes of the update protocol: 1 AES-128-GCM-16, 2 AES-256-GCM-16.
    if alg_code(a) == 1 {
        "aes128gcm16"
    } else {
        "aes256gcm16"
    }
}

fn prefix_text(p: (std::net::IpAddr, u8)) -> String {
    format!("{}/{}", p.0, p.1)
}

impl Mgmt {
    /// The API over a server started from `cfg` (no key or PSK is kept here).
    pub fn new(cfg: &Config) -> Mgmt {
        let s = &cfg.server;
        let config = json!({
            "server": {"rekey-interval": (s.rekey_interval_ms / 1000).max(1)},
            "cpe": cfg.cpes.iter().map(|c| json!({"id": c.id, "revoked": c.revoked})).collect::<Vec<_>>(),
        });
        let info = json!({
            "server": {
                "id": s.id,
                "algorithm": algorithm_name(s.algorithm),
                "overlap": s.overlap_ms,
            },
            "group": cfg.groups.iter().map(|g| {
                let mut v = json!({"name": g.name, "topology": g.topology.to_string()});
                if !g.hubs.is_empty() {
                    v["hub"] = json!(g.hubs);
                }
                v
            }).collect::<Vec<_>>(),
            "cpe": cfg.cpes.iter().map(|c| {
                let mut v = json!({
                    "id": c.id,
                    "address": c.address.to_string(),
                    "subnet": prefix_text(c.subnet),
                });
                if !c.groups.is_empty() {
                    v["group"] = json!(c.groups);
                }
                v
            }).collect::<Vec<_>>(),
        });
        let mut m = Mgmt { config, info };
        if m.info["group"].as_array().is_some_and(Vec::is_empty) {
            if let Some(o) = m.info.as_object_mut() {
                o.remove("group");
            }
        }
        m
    }

    /// Answers one request on the server's thread: `path` is the HTTP path (from
    /// `/restconf`), `query` the query string.
    pub fn handle(
        &mut self,
        srv: &mut UdpServer,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> Answer {
        let rest = match dataplane::restconf::front(method, path, "keyserver", YANG) {
            Ok(rest) => rest,
            Err(answer) => return answer,
        };
        if let Some(op) = rest.strip_prefix("/operations/") {
            if op != "keyserver:revoke" {
                return missing(rest);
            }
            if method != "POST" {
                return unsupported(405, "invoke an operation with POST");
            }
            let v = match serde_json::from_slice::<Value>(body) {
                Ok(v) => v,
                Err(e) => return malformed(&format!("body is not JSON: {e}")),
            };
            let Some(id) = v
                .get("keyserver:input")
                .or_else(|| v.get("input"))
                .and_then(|i| str_of(i, "id"))
            else {
                return malformed("expected {\"keyserver:input\":{\"id\":\"CPE\"}}");
            };
            return self.revoke(srv, id, rest);
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
                return unsupported(405, "write below /restconf/data/keyserver:keyserver");
            }
            return self.get(srv, &[], content);
        }
        let Some(steps) = SCHEMA.parse_path(data) else {
            return missing(&format!("/{data}"));
        };
        let path = format!("/{data}");
        // The revoke action (RFC 8040 §3.6): POST on cpe=ID/revoke.
        if let [cpe, act] = steps.as_slice() {
            if cpe.name == "cpe" && act.name == "revoke" && act.key.is_none() {
                if method != "POST" {
                    return unsupported(405, "invoke the revoke action with POST");
                }
                let Some(id) = cpe.key.as_deref() else {
                    return missing(&path);
                };
                return self.revoke(srv, id, &path);
            }
        }
        match method {
            "GET" => self.get(srv, &steps, content),
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
                self.write(srv, method, &steps, &parsed, &path)
            }
            _ => unsupported(405, "GET, PUT, PATCH, POST or DELETE"),
        }
    }

    fn revoke(&mut self, srv: &mut UdpServer, id: &str, path: &str) -> Answer {
        let Some(e) = self.cpe_entry_mut(id) else {
            return missing(path);
        };
        if e["revoked"] == Value::Bool(true) {
            return error(
                409,
                "application",
                "data-exists",
                path,
                &format!("CPE {id} is already revoked"),
            );
        }
        if let Err(m) = srv.revoke(id) {
            return error(500, "application", "operation-failed", path, &m);
        }
        e["revoked"] = Value::Bool(true);
        Answer::empty(204)
    }

    fn cpe_entry_mut(&mut self, id: &str) -> Option<&mut Value> {
        self.config
            .get_mut("cpe")?
            .as_array_mut()?
            .iter_mut()
            .find(|e| str_of(e, "id") == Some(id))
    }

    fn get(&self, srv: &UdpServer, steps: &[Step], content: &str) -> Answer {
        let mut root = Value::Object(Map::new());
        if content != "nonconfig" {
            root = self.config.clone();
        }
        if content != "config" {
            if content == "all" {
                SCHEMA.merge(&mut root, &self.info, MODULE);
            } else {
                root = self.info.clone();
            }
            if steps.first().is_none_or(|s| s.name == "state") {
                root["state"] = self.state_tree(srv);
            }
        }
        SCHEMA.get(&root, steps)
    }

    fn state_tree(&self, srv: &UdpServer) -> Value {
        let s = srv.stats();
        let now = srv.now();
        let cpes: Vec<Value> = srv
            .server
            .views(now)
            .into_iter()
            .map(|c| {
                let mut v = json!({
                    "id": c.id,
                    "revoked": c.revoked,
                    "up": c.online,
                    "served": c.served,
                });
                if !c.tunnels.is_empty() {
                    v["tunnel"] = c
                        .tunnels
                        .iter()
                        .map(|t| {
                            let mut x = json!({
                                "peer": t.peer,
                                "sa-generation": t.generation,
                                "rekeying": t.rekeying,
                            });
                            if let Some(ms) = t.since_rekey_ms {
                                x["seconds-since-rekey"] = Value::String((ms / 1000).to_string());
                            }
                            if let Some(ms) = t.next_rekey_ms {
                                x["seconds-to-rekey"] = Value::String((ms / 1000).to_string());
                            }
                            x
                        })
                        .collect();
                }
                v
            })
            .collect();
        let mut st = json!({
            "cpes": s.cpes,
            "online": s.online,
            "served": s.served,
            "tunnels": s.pairs,
            "rekeys": s.rekeys.to_string(),
            "rekeys-in-progress": s.rekeys_in_progress,
            "revocations": s.revocations.to_string(),
            "revocations-pending": s.revocations_pending,
            "auth-failures": s.auth_failures.to_string(),
        });
        if !cpes.is_empty() {
            st["cpe"] = Value::Array(cpes);
        }
        st
    }

    /// A configuration change: the new tree checked as a whole, then applied.
    fn write(
        &mut self,
        srv: &mut UdpServer,
        method: &str,
        steps: &[Step],
        body: &Value,
        path: &str,
    ) -> Answer {
        let mut tree = self.config.clone();
        if let Err(a) = SCHEMA.edit(&mut tree, method, steps, body, path) {
            return a;
        }
        // Check everything first.
        let Some(o) = tree.as_object() else {
            return invalid(path, "keyserver is a container");
        };
        if let Some(k) = o.keys().find(|k| *k != "server" && *k != "cpe") {
            return if self.info.get(k.as_str()).is_some() {
                unsupported(501, &format!("{k} is read-only while the server runs"))
            } else {
                invalid(path, &format!("unknown node {k:?}"))
            };
        }
        let Some(server) = tree.get("server").and_then(Value::as_object) else {
            return invalid(path, "server: rekey-interval is needed");
        };
        if let Some(k) = server.keys().find(|k| *k != "rekey-interval") {
            return if self.info["server"].get(k.as_str()).is_some() {
                unsupported(
                    501,
                    &format!("server {k} is read-only while the server runs"),
                )
            } else {
                invalid(path, &format!("server: unknown leaf {k:?}"))
            };
        }
        let secs = match u64_of(server.get("rekey-interval")) {
            Ok(n) if (1..=u64::from(u32::MAX)).contains(&n) => n,
            Ok(n) => {
                return invalid(
                    path,
                    &format!("rekey-interval {n} is not in 1..=4294967295"),
                )
            }
            Err(e) => return invalid(path, &format!("rekey-interval: {e}")),
        };
        let old_cpes = self.config["cpe"].as_array().cloned().unwrap_or_default();
        let new_cpes = match tree.get("cpe") {
            None => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return invalid(path, "cpe is a list"),
        };
        let id_of = |e: &Value| str_of(e, "id").map(str::to_string);
        let old_ids: Vec<Option<String>> = old_cpes.iter().map(id_of).collect();
        let new_ids: Vec<Option<String>> = new_cpes.iter().map(id_of).collect();
        if old_ids != new_ids {
            return unsupported(
                501,
                "CPEs cannot be added or removed while the server runs: change its configuration and restart it",
            );
        }
        let mut revoke = Vec::new();
        for (old, new) in old_cpes.iter().zip(&new_cpes) {
            let id = str_of(new, "id").unwrap_or("");
            if let Some(k) = new
                .as_object()
                .and_then(|o| o.keys().find(|k| *k != "id" && *k != "revoked"))
            {
                return if k == "address" || k == "subnet" || k == "group" {
                    unsupported(
                        501,
                        &format!("cpe {id}: {k} is read-only while the server runs"),
                    )
                } else {
                    invalid(path, &format!("cpe {id}: unknown leaf {k:?}"))
                };
            }
            let was = old["revoked"].as_bool().unwrap_or(false);
            let is = match new.get("revoked") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return invalid(path, &format!("cpe {id}: revoked is a boolean")),
            };
            match (was, is) {
                (true, false) => {
                    return unsupported(
                        501,
                        &format!("cpe {id}: a revocation cannot be undone while the server runs"),
                    )
                }
                (false, true) => revoke.push(id.to_string()),
                _ => {}
            }
        }
        let ms = secs.saturating_mul(1000);
        let now = srv.now();
        if ms != srv.server.rekey_interval_ms() {
            if let Err(m) = srv.server.set_rekey_interval(ms, now) {
                return invalid(path, &m);
            }
        }
        self.config["server"]["rekey-interval"] = json!(secs);
        for id in revoke {
            if let Err(m) = srv.revoke(&id) {
                return error(500, "application", "operation-failed", path, &m);
            }
            if let Some(e) = self.cpe_entry_mut(&id) {
                e["revoked"] = Value::Bool(true);
            }
        }
        Answer::empty(204)
    }
}
