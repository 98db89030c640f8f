//! The daemon's configuration: a swanctl-like section (strongSwan's `swanctl.conf`
//! `connections`, in TOML). One IKE SA per connection with exactly one child SA
//! (the session answers additional ones NO_ADDITIONAL_SAS, RFC 7296 §1.3).
//!
//! ```toml
//! [ike]
//! retransmit_ms = 500        # first retransmission timeout (RFC 7296 §2.1)
//! retransmit_tries = 5
//! keepalive_s = 20           # NAT-T keepalive interval behind a NAT (RFC 3948 §2.3)
//! rekey_grace_s = 2          # an SA replaced by a rekey keeps decrypting this long
//!
//! [ike.connections.site-b]
//! local_addrs = "192.0.2.1"
//! remote_addrs = "192.0.2.2"  # or "%any" (responder only)
//! local_id = "gw-a.example"   # FQDN, or an IP address
//! remote_id = "gw-b.example"  # optional: the peer's ID must equal it
//! psk = "a long pre-shared secret"   # or "0x" and hex; never printed
//! proposals = ["aes256gcm16-prfsha256-x25519"]   # IKE (RFC 7296 §3.3)
//! start_action = "start"      # none | start (initiate at start-up) | trap
//! rekey_time_s = 3600         # IKE SA soft lifetime (rekey, §2.18); 0: never
//! over_time_s = 360           # hard = rekey + over (swanctl's over_time)
//! retry_s = 5                 # start_action = start: initiate again after a failure
//! dpd_delay_s = 30            # liveness check after this long without a message (§1.4); 0: off
//! dpd_action = "clear"        # clear | restart (initiate again) when the peer is dead
//!
//! [ike.connections.site-b.children.net]
//! local_ts = ["10.1.0.0/16"]
//! remote_ts = ["10.2.0.0/16"]
//! esp_proposals = ["aes256gcm16-x25519"]  # a DH group: PFS on rekeys (§1.3.1)
//! rekey_time_s = 1200         # child SA soft lifetime (§2.8); 0: never
//! life_time_s = 1320          # child SA hard lifetime
//! ```
//!
//! `trap` is accepted as "trap-lite": the connection is initiated at start-up like
//! `start` (there is no acquire from the data path).

use crate::crypto::Algorithm;
use crate::ike::keys::{DhGroup, Prf};
use crate::ike::session::{IkeConfig, Lifetime};
use crate::ike::wire::{Identification, TrafficSelector};
use crate::spd::Prefix;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;
use serde::Deserialize;

pub use crate::ike::psk::Psk;

/// The `[ike]` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IkeSection {
    #[serde(default = "d_retransmit_ms")]
    pub retransmit_ms: u64,
    #[serde(default = "d_retransmit_tries")]
    pub retransmit_tries: u32,
    /// NAT-T keepalive interval (RFC 3948 §2.3), seconds; 0: none.
    #[serde(default = "d_keepalive")]
    pub keepalive_s: u64,
    /// How long an SA replaced by a rekey still decrypts (and stays installed)
    /// after the peer deleted it, seconds.
    #[serde(default = "d_grace")]
    pub rekey_grace_s: u64,
    pub connections: BTreeMap<String, ConnectionConfig>,
}

fn d_retransmit_ms() -> u64 {
    500
}
fn d_retransmit_tries() -> u32 {
    5
}
fn d_keepalive() -> u64 {
    20
}
fn d_grace() -> u64 {
    2
}
fn d_retry() -> u64 {
    5
}
fn d_ike_rekey() -> u64 {
    14400
}
fn d_child_rekey() -> u64 {
    3600
}

/// `start_action` (swanctl's).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartAction {
    /// Respond only.
    #[default]
    None,
    /// Initiate at start-up (and again `retry_s` after a failure to establish).
    Start,
    /// Trap-lite: initiate at start-up like `start`.
    Trap,
}

/// One connection (swanctl `connections.<name>`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    pub local_addrs: String,
    /// The peer's address, or `%any` (respond to anyone who authenticates).
    pub remote_addrs: String,
    pub local_id: String,
    #[serde(default)]
    pub remote_id: Option<String>,
    pub psk: Psk,
    #[serde(default = "d_proposals")]
    pub proposals: Vec<String>,
    #[serde(default)]
    pub start_action: StartAction,
    /// IKE SA rekey (soft lifetime), seconds; 0: never.
    #[serde(default = "d_ike_rekey")]
    pub rekey_time_s: u64,
    /// Hard IKE SA lifetime beyond the rekey time (default 10 % of it).
    #[serde(default)]
    pub over_time_s: Option<u64>,
    #[serde(default = "d_retry")]
    pub retry_s: u64,
    /// Dead peer detection: a liveness check (RFC 7296 §1.4) after this long
    /// without a message from the peer; 0: off.
    #[serde(default)]
    pub dpd_delay_s: u64,
    #[serde(default)]
    pub dpd_action: DpdAction,
    pub children: BTreeMap<String, ChildConfig>,
}

/// What to do when a liveness check goes unanswered (swanctl's `dpd_action`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DpdAction {
    /// Remove the SAs.
    #[default]
    Clear,
    /// Remove the SAs and initiate again (`retry_s` later; needs a remote address).
    Restart,
}

fn d_proposals() -> Vec<String> {
    alloc::vec!["aes256gcm16-aes128gcm16-prfsha256-prfsha384-x25519-ecp256-modp2048".into()]
}

fn d_esp() -> Vec<String> {
    alloc::vec!["aes256gcm16-aes128gcm16".into()]
}

/// One child SA (swanctl `children.<name>`), tunnel mode.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChildConfig {
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    #[serde(default = "d_esp")]
    pub esp_proposals: Vec<String>,
    #[serde(default = "d_child_rekey")]
    pub rekey_time_s: u64,
    /// Hard lifetime (default rekey time + 10 %).
    #[serde(default)]
    pub life_time_s: Option<u64>,
}

/// What one IKE proposal string says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proposal {
    pub encr: Vec<Algorithm>,
    pub prf: Vec<Prf>,
    pub dh: Vec<DhGroup>,
}

/// Parses `aes256gcm16-prfsha256-x25519`-style proposals (strongSwan keywords).
pub fn parse_proposals(list: &[String], esp: bool) -> Result<Proposal, String> {
    let mut p = Proposal::default();
    for s in list {
        for t in s.split('-') {
            match t.trim() {
                "aes128gcm16" | "aes128gcm" => push(&mut p.encr, Algorithm::Aes128Gcm16),
                "aes256gcm16" | "aes256gcm" => push(&mut p.encr, Algorithm::Aes256Gcm16),
                "prfsha256" if !esp => push(&mut p.prf, Prf::HmacSha256),
                "prfsha384" if !esp => push(&mut p.prf, Prf::HmacSha384),
                "x25519" | "curve25519" => push(&mut p.dh, DhGroup::Curve25519),
                "ecp256" => push(&mut p.dh, DhGroup::Ecp256),
                "modp2048" => push(&mut p.dh, DhGroup::Modp2048),
                "" => return Err(format!("{s:?}: empty keyword")),
                other => return Err(format!("{s:?}: unsupported keyword {other:?}")),
            }
        }
    }
    if p.encr.is_empty() {
        return Err("no encryption algorithm (aes128gcm16, aes256gcm16)".into());
    }
    if !esp && p.prf.is_empty() {
        p.prf = alloc::vec![Prf::HmacSha256, Prf::HmacSha384];
    }
    if !esp && p.dh.is_empty() {
        return Err("no DH group (x25519, ecp256, modp2048)".into());
    }
    Ok(p)
}

fn push<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

fn parse_ts(list: &[String]) -> Result<TrafficSelector, String> {
    match list {
        [one] => {
            let (a, l) = match one.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (one.as_str(), None),
            };
            let addr: IpAddr = a.parse().map_err(|_| format!("{one:?}: bad address"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len = match l {
                Some(l) => l
                    .parse::<u8>()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or_else(|| format!("{one:?}: bad prefix length"))?,
                None => max,
            };
            Ok(TrafficSelector::from_prefix(Prefix::new(addr, len)))
        }
        [] => Err("empty".into()),
        _ => Err("one prefix per child (a traffic selector list is not implemented)".into()),
    }
}

fn parse_id(s: &str) -> Identification {
    match s.parse::<IpAddr>() {
        Ok(a) => Identification::addr(a),
        Err(_) => Identification::fqdn(s),
    }
}

/// A connection with every field checked.
#[derive(Clone, Debug)]
pub struct Connection {
    pub name: String,
    pub local: IpAddr,
    /// `None`: `%any`.
    pub remote: Option<IpAddr>,
    pub child_name: String,
    pub start_action: StartAction,
    pub retry_ms: u64,
    /// 0: no liveness checks.
    pub dpd_ms: u64,
    pub dpd_action: DpdAction,
    ike: Proposal,
    esp: Proposal,
    local_id: Identification,
    remote_id: Option<Identification>,
    psk: Psk,
    local_ts: TrafficSelector,
    remote_ts: TrafficSelector,
    ike_life: Option<Lifetime>,
    child_life: Option<Lifetime>,
    retransmit_ms: u64,
    retransmit_tries: u32,
}

fn lifetime(rekey_s: u64, hard_s: Option<u64>) -> Result<Option<Lifetime>, String> {
    if rekey_s == 0 {
        return Ok(None);
    }
    let hard = hard_s.unwrap_or(rekey_s.saturating_add(rekey_s / 10));
    if hard <= rekey_s {
        return Err(format!(
            "hard lifetime {hard} s is not after the rekey time {rekey_s} s"
        ));
    }
    let soft_ms = rekey_s.saturating_mul(1000);
    Ok(Some(Lifetime {
        soft_ms,
        hard_ms: hard.saturating_mul(1000),
        // swanctl's rand_time default: a tenth of the margin.
        jitter_ms: (hard - rekey_s).saturating_mul(100).min(soft_ms / 2),
    }))
}

impl IkeSection {
    /// Every connection checked (addresses, proposals, selectors, lifetimes); errors
    /// name the connection and the key.
    pub fn connections(&self) -> Result<Vec<Connection>, String> {
        if self.retransmit_ms == 0 || self.retransmit_ms > 60_000 {
            return Err("retransmit_ms: not in 1..=60000".into());
        }
        if self.retransmit_tries > 16 {
            return Err("retransmit_tries: not in 0..=16".into());
        }
        let mut v: Vec<Connection> = Vec::new();
        for (name, c) in &self.connections {
            let at = |k: &str, e: String| format!("connections.{name}.{k}: {e}");
            let local: IpAddr = c
                .local_addrs
                .parse()
                .map_err(|_| at("local_addrs", "not an IP address".into()))?;
            let remote = match c.remote_addrs.as_str() {
                "%any" => None,
                r => Some(
                    r.parse::<IpAddr>()
                        .map_err(|_| at("remote_addrs", "not an IP address or %any".into()))?,
                ),
            };
            if remote.is_some_and(|r| r.is_ipv4() != local.is_ipv4()) {
                return Err(at("remote_addrs", "not of local_addrs' family".into()));
            }
            if remote.is_none() && c.dpd_action == DpdAction::Restart {
                return Err(at(
                    "dpd_action",
                    "a connection to %any cannot restart".into(),
                ));
            }
            if remote.is_none() && c.start_action != StartAction::None {
                return Err(at(
                    "start_action",
                    "a connection to %any cannot initiate".into(),
                ));
            }
            let ike = parse_proposals(&c.proposals, false).map_err(|e| at("proposals", e))?;
            let (child_name, ch) = match c.children.iter().next() {
                Some(x) if c.children.len() == 1 => x,
                _ => return Err(at(
                    "children",
                    "exactly one child per connection (additional child SAs are not implemented)"
                        .into(),
                )),
            };
            let cat =
                |k: &str, e: String| format!("connections.{name}.children.{child_name}.{k}: {e}");
            let esp =
                parse_proposals(&ch.esp_proposals, true).map_err(|e| cat("esp_proposals", e))?;
            if esp.dh.len() > 1 {
                return Err(cat("esp_proposals", "at most one DH group (PFS)".into()));
            }
            if let Some(g) = esp.dh.first() {
                if !ike.dh.contains(g) {
                    return Err(cat(
                        "esp_proposals",
                        "the PFS group must also be in the IKE proposals".into(),
                    ));
                }
            }
            let local_ts = parse_ts(&ch.local_ts).map_err(|e| cat("local_ts", e))?;
            let remote_ts = parse_ts(&ch.remote_ts).map_err(|e| cat("remote_ts", e))?;
            let ike_life = lifetime(
                c.rekey_time_s,
                c.over_time_s.map(|o| c.rekey_time_s.saturating_add(o)),
            )
            .map_err(|e| at("rekey_time_s", e))?;
            let child_life =
                lifetime(ch.rekey_time_s, ch.life_time_s).map_err(|e| cat("rekey_time_s", e))?;
            if v.iter().any(|o| o.local == local && o.remote == remote) {
                return Err(at(
                    "remote_addrs",
                    "another connection has the same local and remote address".into(),
                ));
            }
            v.push(Connection {
                name: name.clone(),
                local,
                remote,
                child_name: child_name.clone(),
                start_action: c.start_action,
                retry_ms: c.retry_s.max(1).saturating_mul(1000),
                dpd_ms: c.dpd_delay_s.saturating_mul(1000),
                dpd_action: c.dpd_action,
                ike,
                esp,
                local_id: parse_id(&c.local_id),
                remote_id: c.remote_id.as_deref().map(parse_id),
                psk: c.psk.clone(),
                local_ts,
                remote_ts,
                ike_life,
                child_life,
                retransmit_ms: self.retransmit_ms,
                retransmit_tries: self.retransmit_tries,
            });
        }
        if v.is_empty() {
            return Err("connections: none".into());
        }
        Ok(v)
    }
}

impl Connection {
    /// The session configuration of this connection.
    pub fn ike_config(&self) -> IkeConfig {
        let mut c = IkeConfig::psk(
            self.psk.bytes(),
            self.local_id.clone(),
            self.local_ts,
            self.remote_ts,
        );
        c.remote_id = self.remote_id.clone();
        c.ike_encr = self.ike.encr.clone();
        c.ike_prf = self.ike.prf.clone();
        c.ike_dh = self.ike.dh.clone();
        c.esp_encr = self.esp.encr.clone();
        c.child_pfs = self.esp.dh.first().copied();
        c.child_lifetime = self.child_life;
        c.ike_lifetime = self.ike_life;
        c.retransmit_ms = self.retransmit_ms;
        c.retransmit_tries = self.retransmit_tries;
        c
    }

    /// Whether a datagram from `peer` to `local` may belong to this connection.
    pub fn matches(&self, local: IpAddr, peer: IpAddr) -> bool {
        self.local == local && self.remote.is_none_or(|r| r == peer)
    }
}

impl fmt::Display for StartAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StartAction::None => "none",
            StartAction::Start => "start",
            StartAction::Trap => "trap",
        })
    }
}
