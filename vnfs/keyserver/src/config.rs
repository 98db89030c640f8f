//! The key server's TOML configuration: `[server]`, `[[group]]` and `[[cpe]]`
//! sections (the crate README has an annotated example). [`Config::from_toml`] parses
//! and validates; `keyserver check CONFIG` runs exactly that.

use crate::prelude::*;
use core::fmt;
use core::net::{IpAddr, SocketAddr};
use hashbrown::{HashMap, HashSet};
use ipsec::crypto::Algorithm;
use serde::{Deserialize, Deserializer};

/// Where the journal lives: a file path (`std`); without `std` (the unikernel) the
/// text of the setting, which such a build refuses (it has no file system).
#[cfg(feature = "std")]
pub type JournalPath = std::path::PathBuf;
/// Where the journal lives: a file path (`std`); without `std` (the unikernel) the
/// text of the setting, which such a build refuses (it has no file system).
#[cfg(not(feature = "std"))]
pub type JournalPath = String;
use zeroize::Zeroizing;

/// How the CPEs of a site group are paired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// Every spoke gets a tunnel to every hub; hubs are meshed among themselves.
    HubSpoke,
    /// Every member gets a tunnel to every other member.
    FullMesh,
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Topology::HubSpoke => "hub-spoke",
            Topology::FullMesh => "full-mesh",
        })
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
    #[serde(default)]
    listen_natt: Option<String>,
    id: String,
    #[serde(default = "d_alg")]
    algorithm: String,
    #[serde(default = "d_rekey")]
    rekey_interval_s: f64,
    #[serde(default = "d_overlap")]
    overlap_s: f64,
    #[serde(default)]
    journal: Option<JournalPath>,
    #[serde(default)]
    metrics: Option<String>,
    #[serde(default = "d_retransmit")]
    retransmit_ms: u64,
    #[serde(default = "d_tries")]
    retransmit_tries: u32,
    #[serde(default = "d_liveness")]
    liveness_interval_s: f64,
    #[serde(default = "d_liveness_misses")]
    liveness_misses: u32,
}

fn d_alg() -> String {
    "aes256gcm16".into()
}
fn d_rekey() -> f64 {
    3600.0
}
fn d_overlap() -> f64 {
    5.0
}
fn d_retransmit() -> u64 {
    500
}
fn d_tries() -> u32 {
    5
}
fn d_liveness() -> f64 {
    10.0
}
fn d_liveness_misses() -> u32 {
    3
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    topology: Topology,
    #[serde(default)]
    hubs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCpe {
    id: String,
    /// Wiped when dropped, on every path (a refused configuration too).
    #[serde(deserialize_with = "secret_string")]
    psk: Zeroizing<String>,
    address: String,
    subnet: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    revoked: bool,
}

/// A secret string straight into a zeroizing buffer (the deserializer's `String`,
/// moved, not copied).
/// A value of another type is refused without echoing it.
fn secret_string<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d)
        .map(Zeroizing::new)
        .map_err(|_| serde::de::Error::custom("psk: expected a string (the value is not shown)"))
}

/// Moves each `[[cpe]]` table's `psk` string out of `table` into a zeroizing
/// buffer (by the CPE's index; `None` where it is missing or not a string, which
/// the deserializer then refuses), leaving an empty string in its place: a value
/// tree dropped half-way through deserialization (a refused configuration) then
/// holds no PSK, and these buffers are wiped whatever happens.
fn take_psks(table: &mut toml::Table) -> Vec<Option<Zeroizing<String>>> {
    let Some(toml::Value::Array(cpes)) = table.get_mut("cpe") else {
        return Vec::new();
    };
    cpes.iter_mut()
        .map(|c| match c {
            toml::Value::Table(t) => match t.get_mut("psk") {
                Some(toml::Value::String(s)) => Some(Zeroizing::new(core::mem::take(s))),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    server: RawServer,
    #[serde(default, rename = "group")]
    groups: Vec<RawGroup>,
    #[serde(default, rename = "cpe")]
    cpes: Vec<RawCpe>,
}

/// `[server]`.
#[derive(Clone, Debug)]
pub struct Server {
    /// UDP address of the IKE socket (port 500, or any for labs and tests).
    pub listen: SocketAddr,
    /// UDP address of the NAT-T socket (port 4500; RFC 7296 §2.23, RFC 3948 non-ESP
    /// marker), for CPEs behind NATs or, like strongSwan with kernel-libipsec, that
    /// always float to 4500.
    pub listen_natt: Option<SocketAddr>,
    /// The key server's IKE identity (FQDN, IDr).
    pub id: String,
    /// Cipher of the CPE-to-CPE child SAs.
    pub algorithm: Algorithm,
    /// Every pair's keys are replaced this often (milliseconds).
    pub rekey_interval_ms: u64,
    /// After both ends of a pair send with the new keys, the old SAs stay this long
    /// for packets in flight (milliseconds).
    pub overlap_ms: u64,
    /// Where the state journal lives; `None`: state is not kept across restarts.
    pub journal: Option<JournalPath>,
    /// HTTP address of the metrics endpoint (`/metrics`), if any.
    pub metrics: Option<SocketAddr>,
    pub retransmit_ms: u64,
    pub retransmit_tries: u32,
    /// A CPE silent this long gets a liveness check (RFC 7296 §1.4, §2.4: an
    /// empty INFORMATIONAL request); each further interval without an answer is a
    /// missed check (milliseconds; 0: no checks).
    pub liveness_interval_ms: u64,
    /// After this many missed checks in a row the CPE is down: its IKE SA is
    /// deleted and its peers drop their SAs with it until it is back.
    pub liveness_misses: u32,
}

/// `[[group]]`: a site group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub topology: Topology,
    pub hubs: Vec<String>,
}

/// `[[cpe]]`: one CPE. The PSK is never printed.
#[derive(Clone)]
pub struct Cpe {
    /// IKE identity (FQDN, IDi) and the name used everywhere else.
    pub id: String,
    pub psk: Zeroizing<Vec<u8>>,
    /// The CPE's tunnel endpoint (WAN address).
    pub address: IpAddr,
    /// The LAN behind it (traffic selector of its tunnels).
    pub subnet: (IpAddr, u8),
    pub groups: Vec<String>,
    /// Revoked in the configuration: authenticates no more, gets no keys.
    pub revoked: bool,
}

impl fmt::Debug for Cpe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cpe")
            .field("id", &self.id)
            .field("psk", &"<secret>")
            .field("address", &self.address)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: Server,
    pub groups: Vec<Group>,
    pub cpes: Vec<Cpe>,
}

/// A configuration error, in one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for ConfigError {}

fn err<T>(s: String) -> Result<T, ConfigError> {
    Err(ConfigError(s))
}

/// `a.b.c.d/n` or `x::/n`.
pub fn parse_prefix(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, n) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not a prefix (address/length)"))?;
    let a: IpAddr = a.parse().map_err(|_| format!("bad address in {s:?}"))?;
    let n: u8 = n.parse().map_err(|_| format!("bad length in {s:?}"))?;
    let max = if a.is_ipv4() { 32 } else { 128 };
    if n > max {
        return Err(format!("prefix length {n} too long in {s:?}"));
    }
    Ok((a, n))
}

fn ms(what: &str, s: f64) -> Result<u64, ConfigError> {
    if !(s.is_finite() && s > 0.0 && s < 1e9) {
        return err(format!(
            "server.{what} must be a positive number of seconds"
        ));
    }
    // Rounded to the nearest millisecond (`s` is positive; `f64::round` is std).
    Ok(((s * 1000.0 + 0.5) as u64).max(1))
}

impl Config {
    /// Parses and validates.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| {
            ConfigError(
                e.to_string()
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })?;
        Config::from_raw(raw)
    }

    /// Validates a TOML table (the unikernel's configuration, after its command-line
    /// overrides) as [`Config::from_toml`] validates text. The table is consumed:
    /// its PSK strings are moved into zeroizing buffers before anything else (see
    /// [`take_psks`]), so no copy survives in it, whether the configuration is
    /// accepted or refused.
    pub fn from_table(mut table: toml::Table) -> Result<Config, ConfigError> {
        let mut psks = take_psks(&mut table);
        let mut raw = Raw::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError(e.message().trim().replace('\n', " ")))?;
        // Deserialized in order, one `RawCpe` per array element.
        for (c, p) in raw.cpes.iter_mut().zip(psks.iter_mut()) {
            if let Some(p) = p.take() {
                c.psk = p;
            }
        }
        Config::from_raw(raw)
    }

    fn from_raw(raw: Raw) -> Result<Config, ConfigError> {
        let s = raw.server;
        let listen: SocketAddr = s
            .listen
            .parse()
            .map_err(|_| ConfigError(format!("server.listen {:?} is not ip:port", s.listen)))?;
        if s.id.is_empty() {
            return err("server.id is empty".into());
        }
        let algorithm = match s.algorithm.as_str() {
            "aes128gcm16" => Algorithm::Aes128Gcm16,
            "aes256gcm16" => Algorithm::Aes256Gcm16,
            a => {
                return err(format!(
                    "server.algorithm {a:?}: use aes128gcm16 or aes256gcm16"
                ))
            }
        };
        let rekey_interval_ms = ms("rekey_interval_s", s.rekey_interval_s)?;
        let overlap_ms = ms("overlap_s", s.overlap_s)?;
        if overlap_ms >= rekey_interval_ms {
            return err("server.overlap_s must be shorter than server.rekey_interval_s".into());
        }
        let metrics = match s.metrics {
            None => None,
            Some(m) => Some(
                m.parse()
                    .map_err(|_| ConfigError(format!("server.metrics {m:?} is not ip:port")))?,
            ),
        };
        if s.retransmit_ms == 0 || s.retransmit_tries == 0 {
            return err("server.retransmit_ms and retransmit_tries must be positive".into());
        }
        let liveness_interval_ms = if s.liveness_interval_s == 0.0 {
            0
        } else {
            ms("liveness_interval_s", s.liveness_interval_s)?
        };
        if s.liveness_misses == 0 || s.liveness_misses > 1000 {
            return err("server.liveness_misses must be in 1..=1000".into());
        }
        let listen_natt = match s.listen_natt {
            None => None,
            Some(m) => Some(
                m.parse()
                    .map_err(|_| ConfigError(format!("server.listen_natt {m:?} is not ip:port")))?,
            ),
        };
        let server = Server {
            listen,
            listen_natt,
            id: s.id,
            algorithm,
            rekey_interval_ms,
            overlap_ms,
            journal: s.journal,
            metrics,
            retransmit_ms: s.retransmit_ms,
            retransmit_tries: s.retransmit_tries,
            liveness_interval_ms,
            liveness_misses: s.liveness_misses,
        };
        let mut names = HashSet::new();
        let mut groups = Vec::new();
        for g in raw.groups {
            if g.name.is_empty() || !names.insert(g.name.clone()) {
                return err(format!("group {:?}: empty or duplicate name", g.name));
            }
            if g.topology == Topology::HubSpoke && g.hubs.is_empty() {
                return err(format!(
                    "group {}: hub-spoke needs at least one hub",
                    g.name
                ));
            }
            if g.topology == Topology::FullMesh && !g.hubs.is_empty() {
                return err(format!("group {}: full-mesh takes no hubs", g.name));
            }
            groups.push(Group {
                name: g.name,
                topology: g.topology,
                hubs: g.hubs,
            });
        }
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut cpes = Vec::new();
        for c in raw.cpes {
            // `c.psk` is wiped when `c` goes, at the end of this iteration.
            let psk = Zeroizing::new(c.psk.as_bytes().to_vec());
            if c.id.is_empty() || c.id.len() > 255 || ids.contains_key(&c.id) {
                return err(format!(
                    "cpe {:?}: empty, longer than 255 octets or duplicate id",
                    c.id
                ));
            }
            if c.id == server.id {
                return err(format!("cpe {}: has the server's id", c.id));
            }
            if psk.len() < 8 {
                return err(format!("cpe {}: psk shorter than 8 characters", c.id));
            }
            let address: IpAddr = c
                .address
                .parse()
                .map_err(|_| ConfigError(format!("cpe {}: bad address {:?}", c.id, c.address)))?;
            let subnet =
                parse_prefix(&c.subnet).map_err(|e| ConfigError(format!("cpe {}: {e}", c.id)))?;
            if subnet.0.is_ipv4() != address.is_ipv4() {
                return err(format!(
                    "cpe {}: address and subnet of different families",
                    c.id
                ));
            }
            for g in &c.groups {
                if !names.contains(g) {
                    return err(format!("cpe {}: unknown group {g:?}", c.id));
                }
            }
            ids.insert(c.id.clone(), cpes.len());
            cpes.push(Cpe {
                id: c.id,
                psk,
                address,
                subnet,
                groups: c.groups,
                revoked: c.revoked,
            });
        }
        for g in &groups {
            for h in &g.hubs {
                let Some(&k) = ids.get(h) else {
                    return err(format!("group {}: unknown hub {h:?}", g.name));
                };
                if !cpes[k].groups.contains(&g.name) {
                    return err(format!("group {}: hub {h} is not a member", g.name));
                }
            }
        }
        Ok(Config {
            server,
            groups,
            cpes,
        })
    }

    /// Reads and validates a file.
    #[cfg(feature = "std")]
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        // The text holds the PSKs: wiped when dropped.
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?,
        );
        Config::from_toml(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[server]
listen = "127.0.0.1:0"
id = "ks.example"
rekey_interval_s = 60
overlap_s = 2

[[group]]
name = "g"
topology = "hub-spoke"
hubs = ["hub"]

[[cpe]]
id = "hub"
psk = "hub-secret-1"
address = "192.0.2.1"
subnet = "10.0.0.0/24"
groups = ["g"]

[[cpe]]
id = "spoke"
psk = "spoke-secret-1"
address = "192.0.2.2"
subnet = "10.0.1.0/24"
groups = ["g"]
"#;

    #[test]
    fn parses_and_redacts() {
        let c = Config::from_toml(OK).unwrap();
        assert_eq!(c.cpes.len(), 2);
        assert_eq!(c.server.rekey_interval_ms, 60_000);
        assert_eq!(c.groups[0].topology, Topology::HubSpoke);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hub-secret-1"), "{dbg}");
    }

    #[test]
    fn refuses_bad_configs() {
        for (from, to, what) in [
            ("hubs = [\"hub\"]", "hubs = [\"nobody\"]", "unknown hub"),
            (
                "topology = \"hub-spoke\"",
                "topology = \"ring\"",
                "unknown variant",
            ),
            ("psk = \"hub-secret-1\"", "psk = \"short\"", "shorter"),
            ("overlap_s = 2", "overlap_s = 90", "shorter than"),
            (
                "groups = [\"g\"]\n\n[[cpe]]",
                "groups = [\"x\"]\n\n[[cpe]]",
                "unknown group",
            ),
            (
                "subnet = \"10.0.0.0/24\"",
                "subnet = \"10.0.0.0/33\"",
                "too long",
            ),
            ("id = \"spoke\"", "id = \"hub\"", "duplicate"),
            ("[server]", "[server]\nbogus = 1", "unknown field"),
        ] {
            let t = OK.replacen(from, to, 1);
            assert_ne!(t, OK, "{from}");
            let e = Config::from_toml(&t).unwrap_err();
            assert!(e.0.contains(what), "{what}: {e}");
            assert!(!e.0.contains('\n'));
        }
    }

    /// Compiles only for a zeroizing buffer.
    fn zeroizing<T: zeroize::Zeroize>(_: &Zeroizing<T>) {}

    #[test]
    fn psks_are_zeroizing_and_never_printed() {
        let raw: Raw = toml::from_str(OK).unwrap();
        zeroizing(&raw.cpes[0].psk);
        assert_eq!(raw.cpes[0].psk.as_str(), "hub-secret-1");
        let c = Config::from_toml(OK).unwrap();
        zeroizing(&c.cpes[0].psk);
        assert_eq!(&c.cpes[0].psk[..], b"hub-secret-1");
        assert_eq!(&c.cpes[1].psk[..], b"spoke-secret-1");
        for text in [
            format!("{c:?}"),
            format!("{c:#?}"),
            format!("{:?}", c.cpes[1]),
        ] {
            assert!(!text.contains("secret-1"), "{text}");
            assert!(text.contains("<secret>"), "{text}");
        }
        // Refusals name the CPE, never its key.
        let short = OK.replacen("\"hub-secret-1\"", "\"sh0rt!\"", 1);
        let e = Config::from_toml(&short).unwrap_err();
        assert!(
            e.0.contains("cpe hub: psk shorter") && !e.0.contains("sh0rt!"),
            "{e}"
        );
        let t: toml::Table = OK
            .replacen("\"hub-secret-1\"", "918273645", 1)
            .parse()
            .unwrap();
        let e = Config::from_table(t).unwrap_err();
        assert!(
            e.0.contains("psk: expected a string") && !e.0.contains("918273645"),
            "{e}"
        );
    }

    #[test]
    fn the_table_keeps_no_psk() {
        let mut t: toml::Table = OK.parse().unwrap();
        let psks = take_psks(&mut t);
        let got: Vec<Option<&str>> = psks
            .iter()
            .map(|p| p.as_ref().map(|s| s.as_str()))
            .collect();
        assert_eq!(got, [Some("hub-secret-1"), Some("spoke-secret-1")]);
        let cpes = t["cpe"].as_array().unwrap();
        assert_eq!(cpes.len(), 2);
        for c in cpes {
            assert_eq!(c["psk"].as_str(), Some(""));
        }
        // The table route gives the same keys as the text route.
        let c = Config::from_table(OK.parse().unwrap()).unwrap();
        let keys: Vec<&[u8]> = c.cpes.iter().map(|c| &c.psk[..]).collect();
        assert_eq!(keys, [&b"hub-secret-1"[..], &b"spoke-secret-1"[..]]);
        // A missing PSK is still refused as one.
        let t: toml::Table = OK
            .replacen("psk = \"hub-secret-1\"\n", "", 1)
            .parse()
            .unwrap();
        let e = Config::from_table(t).unwrap_err();
        assert!(e.0.contains("missing field `psk`"), "{e}");
    }
}

#[cfg(test)]
mod shipped {
    #[test]
    fn the_example_is_valid() {
        let t = include_str!("../examples/keyserver.toml");
        let c = super::Config::from_toml(t).unwrap();
        assert_eq!(c.cpes.len(), 2);
        assert_eq!(c.server.listen_natt.map(|a| a.port()), Some(4500));
    }
}
