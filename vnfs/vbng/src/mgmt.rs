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
//! - `GET /restconf/yang/vbng` — the module text (the schema resource).
//!
//! Errors carry the RFC 8040 §7.1 body
//! `{"ietf-restconf:errors":{"error":[{"error-type":…,"error-tag":…,"error-path":…,
//! "error-message":…}]}}` with the status of §7 (400 invalid-value or
//! malformed-message, 404 invalid-value for a missing resource, 405
//! operation-not-supported, 409 data-exists, 501 operation-not-supported).
//!
//! What a running vBNG cannot change (adding RADIUS where none was configured at
//! start, pools, ports) is refused with `operation-not-supported`.

use crate::config::{Config, Password, Secret, ServerConfig, UserConfig};
use crate::control::ControlPlane;
use serde_json::{json, Map, Value};
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

/// The YANG module's name (the JSON namespace qualifier).
pub const MODULE: &str = "vbng";
/// The YANG module.
pub const YANG: &str = include_str!("../yang/vbng@2026-12-02.yang");
/// The media type of RESTCONF JSON (RFC 8040 §11.3.2).
pub const MEDIA: &str = "application/yang-data+json";

/// An API answer: status and JSON body (empty for 204).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body (JSON, or the YANG text for the schema resource).
    pub body: String,
}

impl Answer {
    fn json(status: u16, v: &Value) -> Answer {
        Answer {
            status,
            body: v.to_string(),
        }
    }
    fn empty(status: u16) -> Answer {
        Answer {
            status,
            body: String::new(),
        }
    }
}

/// An RFC 8040 §7.1 error.
fn error(status: u16, etype: &str, tag: &str, path: &str, msg: &str) -> Answer {
    let mut e = json!({
        "error-type": etype,
        "error-tag": tag,
        "error-message": msg,
    });
    if !path.is_empty() {
        e["error-path"] = Value::String(path.to_string());
    }
    Answer::json(status, &json!({"ietf-restconf:errors": {"error": [e]}}))
}

fn invalid(path: &str, msg: &str) -> Answer {
    error(400, "application", "invalid-value", path, msg)
}

fn malformed(msg: &str) -> Answer {
    error(400, "protocol", "malformed-message", "", msg)
}

fn missing(path: &str) -> Answer {
    error(404, "protocol", "invalid-value", path, "no such resource")
}

fn unsupported(status: u16, msg: &str) -> Answer {
    error(status, "protocol", "operation-not-supported", "", msg)
}

/// The key leaf of each list of the module.
fn list_key(list: &str) -> Option<&'static str> {
    match list {
        "user" => Some("name"),
        "auth-server" | "acct-server" => Some("address"),
        "session" => Some("id"),
        _ => None,
    }
}

/// Percent-decoding of a key value in a path (RFC 8040 §3.5.3).
fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = core::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One step of a data path: a node name, with a key for a list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    name: String,
    key: Option<String>,
}

/// The steps below `vbng:vbng` of a data path; `None` when malformed or outside
/// the module.
fn parse_path(p: &str) -> Option<Vec<Step>> {
    let p = p.trim_end_matches('/');
    let rest = p.strip_prefix("vbng:vbng")?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let rest = rest.strip_prefix('/')?;
    let mut v = Vec::new();
    for seg in rest.split('/') {
        // A child may repeat the module prefix (RFC 8040 §3.5.3).
        let seg = seg.strip_prefix("vbng:").unwrap_or(seg);
        let (name, key) = match seg.split_once('=') {
            Some((n, k)) => (n, Some(pct_decode(k)?)),
            None => (seg, None),
        };
        if name.is_empty() || (key.is_some() && list_key(name).is_none()) {
            return None;
        }
        v.push(Step {
            name: name.to_string(),
            key,
        });
    }
    Some(v)
}

/// The value at `steps` in `root`.
fn find<'a>(root: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    let mut cur = root;
    for s in steps {
        let child = cur.get(&s.name)?;
        cur = match &s.key {
            Some(k) => entry(child, &s.name, k)?,
            None => child,
        };
    }
    Some(cur)
}

fn key_of(list: &str, e: &Value) -> Option<String> {
    let k = e.get(list_key(list)?)?;
    Some(match k {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn entry<'a>(list: &'a Value, name: &str, key: &str) -> Option<&'a Value> {
    list.as_array()?
        .iter()
        .find(|e| key_of(name, e).as_deref() == Some(key))
}

/// The parent of `steps`' last node (a container or list entry), mutable.
fn parent_mut<'a>(root: &'a mut Value, steps: &[Step]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = root;
    for s in steps {
        let child = cur.get_mut(&s.name)?;
        cur = match &s.key {
            Some(k) => {
                let k = k.clone();
                child
                    .as_array_mut()?
                    .iter_mut()
                    .find(|e| key_of(&s.name, e).as_deref() == Some(k.as_str()))?
            }
            None => child,
        };
    }
    cur.as_object_mut()
}

/// RFC 7951 merge of `src` into `dst`: objects member by member, lists entry by
/// entry by key, leaves replaced.
fn merge(dst: &mut Value, src: &Value, name: &str) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(x) => merge(x, v, k),
                    None => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(d), Value::Array(s)) if list_key(name).is_some() => {
            for v in s {
                let k = key_of(name, v);
                match d.iter_mut().find(|e| k.is_some() && key_of(name, e) == k) {
                    Some(x) => merge(x, v, name),
                    None => d.push(v.clone()),
                }
            }
        }
        (d, s) => *d = s.clone(),
    }
}

/// The member `name` of a request body, with or without the module qualifier
/// (RFC 7951 §4: the top-level member must be qualified; we accept both).
fn body_member<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    let o = body.as_object()?;
    if o.len() != 1 {
        return None;
    }
    o.get(&format!("{MODULE}:{name}")).or_else(|| o.get(name))
}

/// A 64-bit integer leaf: RFC 7951 §6.1 encodes it as a string; a number is taken.
fn u64_of(v: Option<&Value>) -> Result<u64, String> {
    match v {
        None => Ok(0),
        Some(Value::String(s)) => s.parse().map_err(|_| format!("{s:?} is not a uint64")),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| format!("{n} is not a uint64")),
        Some(other) => Err(format!("{other} is not a uint64")),
    }
}

fn str_of<'a>(e: &'a Value, k: &str) -> Option<&'a str> {
    e.get(k).and_then(Value::as_str)
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

/// The operational state.
fn state_tree(cfg: &Config, cp: &ControlPlane) -> Value {
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
        "counters": {
            "sessions-created": s.sessions_created.to_string(),
            "sessions-up": s.sessions_up.to_string(),
            "sessions-ended": s.sessions_ended.to_string(),
            "auth-accept": s.auth_accept.to_string(),
            "auth-reject": s.auth_reject.to_string(),
            "aaa-timeout": s.aaa_timeout.to_string(),
            "malformed": s.malformed.to_string(),
        },
    });
    if !sessions.is_empty() {
        st["session"] = Value::Array(sessions);
    }
    st
}

/// The management side of a running vBNG: the running configuration the API reads
/// and changes.
#[derive(Debug, Clone)]
pub struct Mgmt {
    cfg: Config,
}

impl Mgmt {
    /// The API over the configuration the vBNG started with.
    pub fn new(cfg: Config) -> Mgmt {
        Mgmt { cfg }
    }

    /// The running configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Answers one request: `path` is the HTTP path (from `/restconf`), `query` the
    /// query string; `now_ms` is the control plane's clock.
    pub fn handle(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        cp: &mut ControlPlane,
        now_ms: u64,
    ) -> Answer {
        let Some(rest) = path.strip_prefix("/restconf") else {
            return missing(path);
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            if method != "GET" {
                return unsupported(405, "the API root is read-only");
            }
            return Answer::json(
                200,
                &json!({"ietf-restconf:restconf": {
                    "data": {}, "operations": {}, "yang-library-version": "2019-01-04"
                }}),
            );
        }
        if rest == "/yang/vbng" {
            return Answer {
                status: 200,
                body: YANG.to_string(),
            };
        }
        let Some(data) = rest.strip_prefix("/data") else {
            return missing(path);
        };
        let data = data.strip_prefix('/').unwrap_or(data);
        let content = query
            .split('&')
            .find_map(|q| q.strip_prefix("content="))
            .unwrap_or("all");
        if !matches!(content, "all" | "config" | "nonconfig") {
            return invalid("", "content must be all, config or nonconfig");
        }
        if data.is_empty() {
            if method != "GET" {
                return unsupported(405, "write below /restconf/data/vbng:vbng");
            }
            return self.get(&[], content, cp);
        }
        let Some(steps) = parse_path(data) else {
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
            "GET" => self.get(&steps, content, cp),
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
                self.write(method, &steps, &parsed, &format!("/{data}"), cp, now_ms)
            }
            _ => unsupported(405, "GET, PUT, PATCH, POST or DELETE"),
        }
    }

    fn get(&self, steps: &[Step], content: &str, cp: &ControlPlane) -> Answer {
        let mut root = Value::Object(Map::new());
        if content != "nonconfig" {
            root = config_tree(&self.cfg);
            strip_secrets(&mut root);
        }
        if content != "config" {
            root["state"] = state_tree(&self.cfg, cp);
        }
        let Some(last) = steps.last() else {
            return Answer::json(200, &json!({"vbng:vbng": root}));
        };
        let path = steps_text(steps);
        let Some(v) = find(&root, steps) else {
            return missing(&path);
        };
        let v = if last.key.is_some() {
            Value::Array(vec![v.clone()])
        } else {
            v.clone()
        };
        Answer::json(200, &json!({ format!("{MODULE}:{}", last.name): v }))
    }

    /// A configuration change: the new tree, checked, then applied.
    fn write(
        &mut self,
        method: &str,
        steps: &[Step],
        body: &Value,
        path: &str,
        cp: &mut ControlPlane,
        now_ms: u64,
    ) -> Answer {
        let old = config_tree(&self.cfg);
        let mut tree = old.clone();
        let created = match edit(&mut tree, method, steps, body, path) {
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
                let Some(input) = body_member(&v, "input") else {
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

fn steps_text(steps: &[Step]) -> String {
    let mut s = String::from("/vbng:vbng");
    for x in steps {
        s.push('/');
        s.push_str(&x.name);
        if let Some(k) = &x.key {
            s.push('=');
            s.push_str(k);
        }
    }
    s
}

/// Applies `method` at `steps` to the configuration tree; `true` when a resource
/// was created.
fn edit(
    tree: &mut Value,
    method: &str,
    steps: &[Step],
    body: &Value,
    path: &str,
) -> Result<bool, Answer> {
    let Some((last, parents)) = steps.split_last() else {
        // The whole configuration.
        let Some(v) = body_member(body, "vbng") else {
            return Err(malformed("expected {\"vbng:vbng\": {…}}"));
        };
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("state");
        }
        match method {
            "PUT" => *tree = v,
            "PATCH" => merge(tree, &v, "vbng"),
            _ => return Err(unsupported(405, "PUT or PATCH the whole configuration")),
        }
        return Ok(false);
    };
    let Some(parent) = parent_mut(tree, parents) else {
        return Err(missing(path));
    };
    let exists = match &last.key {
        Some(k) => parent
            .get(&last.name)
            .and_then(|l| entry(l, &last.name, k))
            .is_some(),
        None => parent.contains_key(&last.name),
    };
    if method == "DELETE" {
        if !exists {
            return Err(missing(path));
        }
        match &last.key {
            Some(k) => {
                if let Some(Value::Array(a)) = parent.get_mut(&last.name) {
                    a.retain(|e| key_of(&last.name, e).as_deref() != Some(k.as_str()));
                }
            }
            None => {
                parent.remove(&last.name);
            }
        }
        return Ok(false);
    }
    let Some(v) = body_member(body, &last.name) else {
        return Err(malformed(&format!(
            "expected {{\"{MODULE}:{}\": …}}",
            last.name
        )));
    };
    // A list entry's body is a one-entry array whose key matches the path.
    let v = match &last.key {
        Some(k) => {
            let e = match v {
                Value::Array(a) if a.len() == 1 => &a[0],
                _ => return Err(malformed("a list entry's body is a one-entry array")),
            };
            if key_of(&last.name, e).as_deref() != Some(k.as_str()) {
                return Err(invalid(path, "the key in the body differs from the path"));
            }
            e.clone()
        }
        None => v.clone(),
    };
    match (method, &last.key) {
        ("POST", _) if exists => Err(error(
            409,
            "application",
            "data-exists",
            path,
            "already exists",
        )),
        ("PATCH", _) if !exists => Err(missing(path)),
        (_, Some(k)) => {
            let list = parent
                .entry(last.name.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            let Some(a) = list.as_array_mut() else {
                return Err(invalid(path, "not a list"));
            };
            match a
                .iter_mut()
                .find(|e| key_of(&last.name, e).as_deref() == Some(k.as_str()))
            {
                Some(x) if method == "PATCH" => merge(x, &v, &last.name),
                Some(x) => *x = v,
                None => a.push(v),
            }
            Ok(!exists)
        }
        (_, None) => {
            match parent.get_mut(&last.name) {
                Some(x) if method == "PATCH" => merge(x, &v, &last.name),
                Some(x) => *x = v,
                None => {
                    parent.insert(last.name.clone(), v);
                }
            }
            Ok(!exists)
        }
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
    let known = ["subscriber-defaults", "radius", "user"];
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
    Ok(c)
}
