//! PPPoE discovery, access-concentrator side (RFC 2516 §5): PADI → PADO, PADR → PADS,
//! PADT; Service-Name matching, AC-Name, Host-Uniq and Relay-Session-Id echoed
//! (§5.1–§5.4, Appendix A), PPP-Max-Payload (RFC 4638 §4), and a stateless AC-Cookie:
//! `epoch(4) || HMAC-SHA256(key, epoch || port || MAC || VLANs)[..16]`, so a PADI flood
//! creates no per-host state; the cookie is valid for the current and the previous
//! epoch. PADIs are rate-limited per source MAC (token buckets hashed by MAC, created
//! on first use, bounded memory) and per access port.
//!
//! Session-id allocation and the session table live in [`crate::control`]; this module
//! decides and builds packets.

use alloc::string::String;
use alloc::vec::Vec;
use dataplane::proto::ethernet::Vlans;
use dataplane::proto::pppoe::{Code, DiscoveryRepr, DiscoveryTags, Packet};
use hashbrown::HashMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Where a subscriber sits on the access side: port, MAC and VLANs (TR-101 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccessKey {
    /// Access port index.
    pub port: u16,
    /// Subscriber MAC.
    pub mac: [u8; 6],
    /// S-VLAN/C-VLAN.
    pub vlans: Vlans,
}

/// Discovery configuration.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// AC-Name we announce.
    pub ac_name: String,
    /// Service names we serve; empty = any (an empty Service-Name always matches).
    pub service_names: Vec<String>,
    /// AC-Cookie HMAC key.
    pub cookie_key: [u8; 32],
    /// Cookie epoch length, ms.
    pub cookie_epoch_ms: u64,
    /// Largest PPP payload we accept (RFC 4638), 1492 without the tag.
    pub max_payload: u16,
    /// PADI allowed per MAC per second (burst = the same number).
    pub padi_per_mac: u32,
    /// PADI allowed per access port per second.
    pub padi_per_port: u32,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            ac_name: String::from("vbng"),
            service_names: Vec::new(),
            cookie_key: [0; 32],
            cookie_epoch_ms: 60_000,
            max_payload: 1500,
            padi_per_mac: 10,
            padi_per_port: 100_000,
        }
    }
}

/// A token bucket (rate per second, burst = rate), time in ms.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    tokens_milli: u64,
    last: u64,
    primed: bool,
}

impl Bucket {
    fn take(&mut self, rate: u32, now: u64) -> bool {
        let cap = u64::from(rate) * 1000;
        if !self.primed {
            // A bucket starts full.
            self.primed = true;
            self.tokens_milli = cap;
            self.last = now;
        }
        let add = now.saturating_sub(self.last) * u64::from(rate);
        self.tokens_milli = (self.tokens_milli + add).min(cap);
        self.last = now;
        if self.tokens_milli >= 1000 {
            self.tokens_milli -= 1000;
            true
        } else {
            false
        }
    }
}

const MAC_BUCKETS: usize = 65536;
const COOKIE_LEN: usize = 20;

/// Counters of the discovery stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiscoveryStats {
    /// PADI received.
    pub padi: u64,
    /// PADO sent.
    pub pado: u64,
    /// PADR received.
    pub padr: u64,
    /// PADT received.
    pub padt: u64,
    /// PADI dropped by the per-MAC limiter.
    pub padi_rate_mac: u64,
    /// PADI dropped by the per-port limiter.
    pub padi_rate_port: u64,
    /// PADR with a missing or bad cookie.
    pub bad_cookie: u64,
    /// Requests for a service we do not offer.
    pub bad_service: u64,
    /// Malformed discovery packets.
    pub malformed: u64,
    /// Discovery codes an AC must not receive (PADO, PADS).
    pub unexpected: u64,
}

/// A validated PADR: the control plane allocates a session and calls [`Discovery::pads`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRequest {
    /// Service-Name requested (echoed in PADS).
    pub service_name: Vec<u8>,
    /// Host-Uniq (echoed).
    pub host_uniq: Option<Vec<u8>>,
    /// Relay-Session-Id (echoed).
    pub relay_session_id: Option<Vec<u8>>,
    /// PPP-Max-Payload granted (RFC 4638), if the host asked.
    pub max_payload: Option<u16>,
}

/// What a discovery packet asks of the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryAction {
    /// Nothing (dropped and counted).
    None,
    /// Send this PPPoE discovery packet (PADO) back to the host.
    Reply(Vec<u8>),
    /// A valid PADR.
    Request(SessionRequest),
    /// The host terminated session `id`.
    Terminate(u16),
}

/// The discovery engine of one vBNG.
#[derive(Debug, Clone)]
pub struct Discovery {
    cfg: DiscoveryConfig,
    /// Per-MAC buckets by keyed hash (index < `MAC_BUCKETS`), created on first use: a
    /// bucket never used is a full one, and the table is built lazily because most
    /// engines (tests, small deployments) see far fewer MACs than it can hold.
    mac_buckets: HashMap<u32, Bucket>,
    port_buckets: Vec<Bucket>,
    /// Counters.
    pub stats: DiscoveryStats,
}

impl Discovery {
    /// New engine.
    pub fn new(cfg: DiscoveryConfig) -> Self {
        Discovery {
            cfg,
            mac_buckets: HashMap::new(),
            port_buckets: Vec::new(),
            stats: DiscoveryStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DiscoveryConfig {
        &self.cfg
    }

    fn cookie_for(&self, epoch: u32, k: &AccessKey) -> [u8; COOKIE_LEN] {
        let mut c = [0u8; COOKIE_LEN];
        c[..4].copy_from_slice(&epoch.to_be_bytes());
        if let Ok(mut m) = Hmac::<Sha256>::new_from_slice(&self.cfg.cookie_key) {
            m.update(&epoch.to_be_bytes());
            m.update(&k.port.to_be_bytes());
            m.update(&k.mac);
            m.update(&k.vlans.svlan.to_be_bytes());
            m.update(&k.vlans.cvlan.to_be_bytes());
            let h = m.finalize().into_bytes();
            c[4..].copy_from_slice(&h[..16]);
        }
        c
    }

    fn epoch(&self, now: u64) -> u32 {
        (now / self.cfg.cookie_epoch_ms.max(1)) as u32
    }

    fn cookie_ok(&self, cookie: &[u8], k: &AccessKey, now: u64) -> bool {
        let Some(e) = cookie.get(..4) else {
            return false;
        };
        let e = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        let cur = self.epoch(now);
        if e != cur && e.wrapping_add(1) != cur {
            return false;
        }
        // Constant-time comparison through HMAC verification semantics.
        let want = self.cookie_for(e, k);
        cookie.len() == COOKIE_LEN
            && want.iter().zip(cookie).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
    }

    fn service_ok(&self, s: &[u8]) -> bool {
        s.is_empty()
            || self.cfg.service_names.is_empty()
            || self.cfg.service_names.iter().any(|n| n.as_bytes() == s)
    }

    fn grant_payload(&self, asked: Option<u16>) -> Option<u16> {
        asked.map(|m| m.clamp(1492, self.cfg.max_payload.max(1492)))
    }

    /// Handle a discovery packet (the bytes after the Ethernet header) from `key`.
    pub fn input(&mut self, key: &AccessKey, pppoe: &[u8], now: u64) -> DiscoveryAction {
        let parsed = Packet::new_checked(pppoe).and_then(|p| DiscoveryRepr::parse(&p));
        let r = match parsed {
            Ok(r) => r,
            Err(_) => {
                self.stats.malformed += 1;
                return DiscoveryAction::None;
            }
        };
        match r.code {
            Code::Padi => {
                self.stats.padi += 1;
                if r.session_id != 0 {
                    self.stats.malformed += 1;
                    return DiscoveryAction::None;
                }
                let p = usize::from(key.port);
                if self.port_buckets.len() <= p {
                    self.port_buckets.resize(p + 1, Bucket::default());
                }
                let rate_port = self.cfg.padi_per_port;
                if let Some(b) = self.port_buckets.get_mut(p) {
                    if !b.take(rate_port, now) {
                        self.stats.padi_rate_port += 1;
                        return DiscoveryAction::None;
                    }
                }
                // Keyed hash: a flooder cannot aim at the bucket of a chosen victim.
                let h = (keyed_bucket(&self.cfg.cookie_key, &key.mac) % MAC_BUCKETS) as u32;
                let rate_mac = self.cfg.padi_per_mac;
                if !self.mac_buckets.entry(h).or_default().take(rate_mac, now) {
                    self.stats.padi_rate_mac += 1;
                    return DiscoveryAction::None;
                }
                let Some(service) = r.tags.service_name else {
                    // §5.1: a PADI MUST contain exactly one Service-Name.
                    self.stats.malformed += 1;
                    return DiscoveryAction::None;
                };
                if !self.service_ok(service) {
                    self.stats.bad_service += 1;
                    return DiscoveryAction::None;
                }
                let cookie = self.cookie_for(self.epoch(now), key);
                let pado = DiscoveryRepr {
                    code: Code::Pado,
                    session_id: 0,
                    tags: DiscoveryTags {
                        service_name: Some(service),
                        ac_name: Some(self.cfg.ac_name.as_bytes()),
                        host_uniq: r.tags.host_uniq,
                        ac_cookie: Some(&cookie),
                        relay_session_id: r.tags.relay_session_id,
                        ppp_max_payload: self.grant_payload(r.tags.ppp_max_payload),
                        error: None,
                    },
                };
                let mut out = Vec::with_capacity(96);
                if pado.emit(&mut out).is_err() {
                    self.stats.malformed += 1;
                    return DiscoveryAction::None;
                }
                self.stats.pado += 1;
                DiscoveryAction::Reply(out)
            }
            Code::Padr => {
                self.stats.padr += 1;
                let ok = r
                    .tags
                    .ac_cookie
                    .is_some_and(|c| self.cookie_ok(c, key, now));
                if !ok {
                    self.stats.bad_cookie += 1;
                    return DiscoveryAction::None;
                }
                let service = r.tags.service_name.unwrap_or(&[]);
                if !self.service_ok(service) {
                    self.stats.bad_service += 1;
                    return DiscoveryAction::None;
                }
                DiscoveryAction::Request(SessionRequest {
                    service_name: service.to_vec(),
                    host_uniq: r.tags.host_uniq.map(|v| v.to_vec()),
                    relay_session_id: r.tags.relay_session_id.map(|v| v.to_vec()),
                    max_payload: self.grant_payload(r.tags.ppp_max_payload),
                })
            }
            Code::Padt => {
                self.stats.padt += 1;
                DiscoveryAction::Terminate(r.session_id)
            }
            Code::Pado | Code::Pads | Code::Session => {
                self.stats.unexpected += 1;
                DiscoveryAction::None
            }
        }
    }

    /// Build the PADS for an accepted request with session id `sid`.
    pub fn pads(&self, req: &SessionRequest, sid: u16) -> Vec<u8> {
        let r = DiscoveryRepr {
            code: Code::Pads,
            session_id: sid,
            tags: DiscoveryTags {
                service_name: Some(&req.service_name),
                ac_name: Some(self.cfg.ac_name.as_bytes()),
                host_uniq: req.host_uniq.as_deref(),
                ac_cookie: None,
                relay_session_id: req.relay_session_id.as_deref(),
                ppp_max_payload: req.max_payload,
                error: None,
            },
        };
        let mut out = Vec::with_capacity(96);
        // Tags come from a validated request and are each < 64 KiB: emit cannot fail.
        let _ = r.emit(&mut out);
        out
    }

    /// Build a PADT for session `sid` (RFC 2516 §5.5), with an optional Generic-Error.
    pub fn padt(
        &self,
        sid: u16,
        relay_session_id: Option<&[u8]>,
        reason: Option<&[u8]>,
    ) -> Vec<u8> {
        let r = DiscoveryRepr {
            code: Code::Padt,
            session_id: sid,
            tags: DiscoveryTags {
                ac_name: Some(self.cfg.ac_name.as_bytes()),
                relay_session_id,
                error: reason.map(|m| (dataplane::proto::pppoe::tag::GENERIC_ERROR, m)),
                ..DiscoveryTags::default()
            },
        };
        let mut out = Vec::with_capacity(64);
        let _ = r.emit(&mut out);
        out
    }
}

/// Bucket of `mac` in the PADI limiter: a multiply-xorshift mix keyed with part of
/// the cookie key.
fn keyed_bucket(key: &[u8; 32], mac: &[u8; 6]) -> usize {
    let k = u64::from_le_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ]);
    let m = u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]);
    let mut h = (m ^ k).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 31;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (h ^ (h >> 29)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn key(mac_last: u8) -> AccessKey {
        AccessKey {
            port: 0,
            mac: [2, 0, 0, 0, 0, mac_last],
            vlans: Vlans {
                svlan: 10,
                cvlan: 20,
            },
        }
    }

    fn padi(host_uniq: &[u8], service: &[u8], relay: Option<&[u8]>) -> Vec<u8> {
        let mut v = Vec::new();
        DiscoveryRepr {
            code: Code::Padi,
            session_id: 0,
            tags: DiscoveryTags {
                service_name: Some(service),
                host_uniq: Some(host_uniq),
                relay_session_id: relay,
                ppp_max_payload: Some(1500),
                ..Default::default()
            },
        }
        .emit(&mut v)
        .unwrap();
        v
    }

    #[test]
    fn padi_pado_padr_flow_with_cookie() {
        let mut d = Discovery::new(DiscoveryConfig {
            cookie_key: [7; 32],
            ..Default::default()
        });
        let DiscoveryAction::Reply(pado) =
            d.input(&key(1), &padi(b"hu1", b"", Some(b"relay")), 1000)
        else {
            panic!("no PADO")
        };
        let p = Packet::new_checked(&pado[..]).unwrap();
        let r = DiscoveryRepr::parse(&p).unwrap();
        assert_eq!(r.code, Code::Pado);
        assert_eq!(r.tags.host_uniq, Some(&b"hu1"[..]));
        assert_eq!(r.tags.relay_session_id, Some(&b"relay"[..]));
        assert_eq!(r.tags.ac_name, Some(&b"vbng"[..]));
        assert_eq!(r.tags.ppp_max_payload, Some(1500));
        let cookie = r.tags.ac_cookie.unwrap().to_vec();
        let padr = |c: &[u8]| {
            let mut v = Vec::new();
            DiscoveryRepr {
                code: Code::Padr,
                session_id: 0,
                tags: DiscoveryTags {
                    service_name: Some(b""),
                    host_uniq: Some(b"hu1"),
                    ac_cookie: Some(c),
                    ..Default::default()
                },
            }
            .emit(&mut v)
            .unwrap();
            v
        };
        // Valid within the next epoch too.
        let a = d.input(&key(1), &padr(&cookie), 1000 + 60_000);
        assert!(
            matches!(a, DiscoveryAction::Request(ref q) if q.host_uniq.as_deref() == Some(&b"hu1"[..]))
        );
        // Another MAC cannot reuse the cookie; nor can it be used two epochs later.
        assert_eq!(
            d.input(&key(2), &padr(&cookie), 1000),
            DiscoveryAction::None
        );
        assert_eq!(
            d.input(&key(1), &padr(&cookie), 1000 + 120_000),
            DiscoveryAction::None
        );
        let mut bad = cookie.clone();
        bad[10] ^= 1;
        assert_eq!(d.input(&key(1), &padr(&bad), 1000), DiscoveryAction::None);
        assert_eq!(d.stats.bad_cookie, 3);
        let DiscoveryAction::Request(q) = a else {
            unreachable!()
        };
        let pads = d.pads(&q, 77);
        let p = Packet::new_checked(&pads[..]).unwrap();
        assert_eq!((p.code(), p.session_id()), (Code::Pads as u8, 77));
    }

    #[test]
    fn padi_rate_limited_per_mac_not_others() {
        let mut d = Discovery::new(DiscoveryConfig {
            padi_per_mac: 3,
            ..Default::default()
        });
        let ok = (0..10)
            .filter(|_| {
                matches!(
                    d.input(&key(1), &padi(b"x", b"", None), 5),
                    DiscoveryAction::Reply(_)
                )
            })
            .count();
        assert_eq!(ok, 3);
        assert!(matches!(
            d.input(&key(9), &padi(b"x", b"", None), 5),
            DiscoveryAction::Reply(_)
        ));
        // Tokens come back with time.
        assert!(matches!(
            d.input(&key(1), &padi(b"x", b"", None), 1005),
            DiscoveryAction::Reply(_)
        ));
        assert_eq!(d.stats.padi_rate_mac, 7);
    }

    #[test]
    fn service_names_and_garbage() {
        let mut d = Discovery::new(DiscoveryConfig {
            service_names: vec![String::from("internet")],
            ..Default::default()
        });
        assert!(matches!(
            d.input(&key(1), &padi(b"x", b"internet", None), 0),
            DiscoveryAction::Reply(_)
        ));
        assert_eq!(
            d.input(&key(2), &padi(b"x", b"voip", None), 0),
            DiscoveryAction::None
        );
        assert_eq!(
            d.input(&key(3), &[0x11, 0x09, 0, 0, 0, 9, 1], 0),
            DiscoveryAction::None
        );
        assert_eq!(d.stats.bad_service, 1);
        assert_eq!(d.stats.malformed, 1);
    }
}
