//! Traffic profiles: streams described in TOML or YAML (serde), checked and turned into
//! the runtime [`crate::stream::Stream`]s.
//!
//! ```toml
//! [[stream]]
//! name = "up"
//! size = "imix"            # or 64, or [64, 128, 1518]
//! rate = "1Mpps"           # pps: "2.5Mpps", "500kpps", 1000; bps (L2 frames incl. FCS): "1Gbps"
//! burst = 32
//! count = 100000           # optional: stop after this many packets
//! subscribers = 1000       # per-subscriber fields cycle over this many subscribers
//! vlan = [100, { from = 1, to = 4000, mode = "subscriber" }]   # outer (S-tag), inner
//! pppoe_session = { from = 1, to = 1000, mode = "subscriber" }
//! [stream.ip]
//! version = 4
//! src = { from = "10.0.0.1", to = "10.0.3.232", mode = "subscriber" }
//! dst = "198.51.100.1"
//! [stream.l4]
//! proto = "udp"            # udp | tcp | icmp
//! sport = { from = 1024, to = 65535, mode = "random" }
//! dport = 5001
//! ```
//!
//! Frame sizes count the Ethernet FCS (RFC 2544 §9: 64 … 1518 bytes); the generated
//! data is 4 bytes shorter. IMIX is the simple IMIX 7:4:1 of 64/570/1518 B.

use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// Errors of profile parsing and checking.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profile {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("profile syntax: {0}")]
    Syntax(String),
    #[error("stream {stream:?}: {msg}")]
    Invalid { stream: String, msg: String },
}

/// A whole profile: one or more streams.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(rename = "stream", alias = "streams", default)]
    pub streams: Vec<StreamSpec>,
}

impl Profile {
    /// Parses TOML.
    pub fn from_toml(s: &str) -> Result<Self, ProfileError> {
        toml::from_str(s).map_err(|e| ProfileError::Syntax(e.to_string()))
    }

    /// Parses YAML.
    pub fn from_yaml(s: &str) -> Result<Self, ProfileError> {
        serde_norway::from_str(s).map_err(|e| ProfileError::Syntax(e.to_string()))
    }

    /// Reads a file: `.yaml`/`.yml` as YAML, anything else as TOML.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml") | Some("yml") => Self::from_yaml(&text),
            _ => Self::from_toml(&text),
        }
    }
}

/// A scalar in a profile: a number or a string (an address, a MAC, a rate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Num(u64),
    Str(String),
}

/// How a varying field moves from packet to packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// from, from+step, … to, then wrap.
    #[default]
    Inc,
    /// to, to-step, … from, then wrap.
    Dec,
    /// Uniform in [from, to].
    Random,
    /// from + subscriber × step, where the subscriber index cycles over the stream's
    /// `subscribers`; all per-subscriber fields of a stream move together.
    Subscriber,
}

/// A field value: fixed, or varying over a range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldSpec {
    Fixed(Scalar),
    Vary {
        from: Scalar,
        to: Scalar,
        #[serde(default)]
        step: Option<u64>,
        #[serde(default)]
        mode: Mode,
    },
}

impl From<u64> for FieldSpec {
    fn from(v: u64) -> Self {
        FieldSpec::Fixed(Scalar::Num(v))
    }
}

impl From<&str> for FieldSpec {
    fn from(v: &str) -> Self {
        FieldSpec::Fixed(Scalar::Str(v.into()))
    }
}

/// Frame size(s) of a stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SizeSpec {
    Fixed(u64),
    /// `"imix"` or a single size as a string.
    Named(String),
    /// A sequence of sizes, cycled.
    List(Vec<u64>),
}

impl Default for SizeSpec {
    fn default() -> Self {
        SizeSpec::Fixed(64)
    }
}

/// The simple IMIX, 7:4:1 of 64/570/1518-byte frames, interleaved over 12 frames.
pub const IMIX_SEQ: [u16; 12] = [64, 570, 64, 64, 570, 64, 1518, 64, 570, 64, 570, 64];

impl SizeSpec {
    /// The frame-size sequence (sizes include the FCS).
    pub fn sequence(&self) -> Result<Vec<u16>, String> {
        let v: Vec<u64> = match self {
            SizeSpec::Fixed(n) => vec![*n],
            SizeSpec::List(l) => l.clone(),
            SizeSpec::Named(s) if s.eq_ignore_ascii_case("imix") => {
                return Ok(IMIX_SEQ.to_vec());
            }
            SizeSpec::Named(s) => vec![s
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("bad frame size {s:?} (a number or \"imix\")"))?],
        };
        if v.is_empty() {
            return Err("empty frame size list".into());
        }
        v.into_iter()
            .map(|n| {
                if (64..=1518 + 8).contains(&n) {
                    Ok(n as u16)
                } else {
                    Err(format!("frame size {n} outside 64..=1526"))
                }
            })
            .collect()
    }
}

/// Transmit rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// As fast as the generator and the port allow.
    Max,
    Pps(f64),
    /// Bits per second of Ethernet frames including the FCS (without preamble/IFG).
    Bps(f64),
}

impl Rate {
    /// Parses `"1.5Mpps"`, `"200kpps"`, `"10Gbps"`, `"max"`, or a bare number (pps).
    pub fn parse(s: &str) -> Result<Rate, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("max") || t.is_empty() {
            return Ok(Rate::Max);
        }
        let lower = t.to_ascii_lowercase();
        let (num, unit) = match lower.find(|c: char| c.is_ascii_alphabetic()) {
            Some(i) => lower.split_at(i),
            None => (lower.as_str(), "pps"),
        };
        let x: f64 = num.trim().parse().map_err(|_| format!("bad rate {s:?}"))?;
        if !(x.is_finite() && x > 0.0) {
            return Err(format!("rate {s:?} must be positive"));
        }
        let mult = |p: &str| match p {
            "" => Some(1.0),
            "k" => Some(1e3),
            "m" => Some(1e6),
            "g" => Some(1e9),
            _ => None,
        };
        if let Some(p) = unit.strip_suffix("pps") {
            mult(p).map(|m| Rate::Pps(x * m))
        } else if let Some(p) = unit.strip_suffix("bps") {
            mult(p).map(|m| Rate::Bps(x * m))
        } else {
            None
        }
        .ok_or_else(|| format!("bad rate unit in {s:?} (pps, kpps, Mpps, bps, Mbps, Gbps)"))
    }

    /// Packets per second for frames of `mean_frame` bytes (incl. FCS); `None` = max.
    pub fn pps(self, mean_frame: f64) -> Option<f64> {
        match self {
            Rate::Max => None,
            Rate::Pps(p) => Some(p),
            Rate::Bps(b) => Some(b / (mean_frame.max(1.0) * 8.0)),
        }
    }
}

fn default_rate() -> Scalar {
    Scalar::Str("max".into())
}
fn default_burst() -> u32 {
    64
}
fn default_subs() -> u32 {
    1
}
fn default_ttl() -> u8 {
    64
}
fn default_version() -> u8 {
    4
}
fn default_src() -> FieldSpec {
    "198.18.0.1".into()
}
fn default_dst() -> FieldSpec {
    "198.19.0.1".into()
}
fn default_sport() -> FieldSpec {
    1024u64.into()
}
fn default_dport() -> FieldSpec {
    1024u64.into()
}

/// IP layer of a stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpSpec {
    #[serde(default = "default_version")]
    pub version: u8,
    #[serde(default = "default_src")]
    pub src: FieldSpec,
    #[serde(default = "default_dst")]
    pub dst: FieldSpec,
    #[serde(default = "default_ttl")]
    pub ttl: u8,
    /// IPv4 TOS / IPv6 traffic class.
    #[serde(default)]
    pub tos: u8,
}

impl Default for IpSpec {
    fn default() -> Self {
        IpSpec {
            version: 4,
            src: default_src(),
            dst: default_dst(),
            ttl: 64,
            tos: 0,
        }
    }
}

/// Transport protocol of a stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    #[default]
    Udp,
    Tcp,
    /// ICMP echo request (ICMPv6 echo request over IPv6).
    Icmp,
}

/// Transport layer of a stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L4Spec {
    #[serde(default)]
    pub proto: Proto,
    #[serde(default = "default_sport")]
    pub sport: FieldSpec,
    #[serde(default = "default_dport")]
    pub dport: FieldSpec,
    /// TCP flags: "syn", "ack", "syn-ack", "psh-ack", "fin-ack", "rst".
    #[serde(default)]
    pub flags: Option<String>,
}

impl Default for L4Spec {
    fn default() -> Self {
        L4Spec {
            proto: Proto::Udp,
            sport: default_sport(),
            dport: default_dport(),
            flags: None,
        }
    }
}

/// One stream of a profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    pub name: String,
    #[serde(default)]
    pub src_mac: Option<String>,
    #[serde(default)]
    pub dst_mac: Option<String>,
    /// VLAN ids, outer first (two tags: 802.1ad S-tag 0x88a8 then C-tag 0x8100).
    #[serde(default)]
    pub vlan: Vec<FieldSpec>,
    /// PPPoE session id: when set, IP is carried in PPPoE session frames (RFC 2516 §5).
    #[serde(default)]
    pub pppoe_session: Option<FieldSpec>,
    #[serde(default)]
    pub ip: IpSpec,
    #[serde(default)]
    pub l4: L4Spec,
    #[serde(default)]
    pub size: SizeSpec,
    #[serde(default = "default_rate")]
    pub rate: Scalar,
    #[serde(default = "default_burst")]
    pub burst: u32,
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default = "default_subs")]
    pub subscribers: u32,
}

impl StreamSpec {
    /// A UDP/IPv4 stream with defaults (198.18.0.1 → 198.19.0.1, RFC 2544 §12 test
    /// addresses), 64-byte frames, max rate.
    pub fn udp(name: &str) -> Self {
        StreamSpec {
            name: name.into(),
            src_mac: None,
            dst_mac: None,
            vlan: Vec::new(),
            pppoe_session: None,
            ip: IpSpec::default(),
            l4: L4Spec::default(),
            size: SizeSpec::default(),
            rate: default_rate(),
            burst: default_burst(),
            count: None,
            subscribers: 1,
        }
    }

    /// The parsed rate.
    pub fn rate(&self) -> Result<Rate, String> {
        match &self.rate {
            Scalar::Num(n) => Ok(Rate::Pps(*n as f64)),
            Scalar::Str(s) => Rate::parse(s),
        }
    }

    pub(crate) fn err(&self, msg: impl Into<String>) -> ProfileError {
        ProfileError::Invalid {
            stream: self.name.clone(),
            msg: msg.into(),
        }
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` (or `-` separated) with the engine's
/// [`dataplane::proto::ethernet::MacAddr`] parser.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    s.parse::<dataplane::proto::ethernet::MacAddr>()
        .map(|m| m.0)
        .map_err(|_| format!("bad MAC {s:?}"))
}

/// What a field holds, to parse its scalars.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Ipv4,
    Ipv6,
    /// An unsigned number of this many bits.
    Bits(u32),
}

/// Parses one scalar of `kind` into a number.
pub fn scalar_value(s: &Scalar, kind: FieldKind) -> Result<u128, String> {
    let v: u128 = match (s, kind) {
        (Scalar::Num(n), FieldKind::Bits(_)) => *n as u128,
        (Scalar::Str(t), FieldKind::Bits(_)) => {
            t.trim()
                .parse::<u64>()
                .map_err(|_| format!("bad number {t:?}"))? as u128
        }
        (Scalar::Str(t), FieldKind::Ipv4) => u32::from(
            t.parse::<Ipv4Addr>()
                .map_err(|_| format!("bad IPv4 address {t:?}"))?,
        ) as u128,
        (Scalar::Str(t), FieldKind::Ipv6) => u128::from(
            t.parse::<Ipv6Addr>()
                .map_err(|_| format!("bad IPv6 address {t:?}"))?,
        ),
        (Scalar::Num(n), _) => return Err(format!("expected an address, got {n}")),
    };
    if let FieldKind::Bits(b) = kind {
        if b < 128 && v >> b != 0 {
            return Err(format!("{v} does not fit in {b} bits"));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(Rate::parse("1.5Mpps"), Ok(Rate::Pps(1.5e6)));
        assert_eq!(Rate::parse("200kpps"), Ok(Rate::Pps(200e3)));
        assert_eq!(Rate::parse("10Gbps"), Ok(Rate::Bps(10e9)));
        assert_eq!(Rate::parse("1000"), Ok(Rate::Pps(1000.0)));
        assert_eq!(Rate::parse("max"), Ok(Rate::Max));
        assert!(Rate::parse("10 furlongs").is_err());
        assert!(Rate::parse("-1pps").is_err());
        let p = Rate::Bps(1e9).pps(125.0).unwrap();
        assert!((p - 1e6).abs() < 1e-6);
    }

    #[test]
    fn toml_and_yaml_profiles() {
        let t = r#"
[[stream]]
name = "up"
size = "imix"
rate = "1Mpps"
subscribers = 10
vlan = [100, { from = 1, to = 10, mode = "subscriber" }]
pppoe_session = { from = 1, to = 10, mode = "subscriber" }
[stream.ip]
src = { from = "10.0.0.1", to = "10.0.0.10", mode = "subscriber" }
dst = "198.51.100.1"
[stream.l4]
proto = "tcp"
flags = "syn"
sport = { from = 1024, to = 2047, mode = "random" }
"#;
        let p = Profile::from_toml(t).unwrap();
        assert_eq!(p.streams.len(), 1);
        let s = &p.streams[0];
        assert_eq!(s.size.sequence().unwrap().len(), 12);
        assert_eq!(s.vlan.len(), 2);
        assert_eq!(s.l4.proto, Proto::Tcp);
        let y = "streams:\n  - name: a\n    size: [64, 128]\n    rate: 1000\n    ip: {version: 6, src: '2001:db8::1', dst: '2001:db8::2'}\n";
        let p = Profile::from_yaml(y).unwrap();
        assert_eq!(p.streams[0].ip.version, 6);
        assert_eq!(p.streams[0].rate(), Ok(Rate::Pps(1000.0)));
        assert!(Profile::from_toml("[[stream]]\nname='x'\nbogus=1\n").is_err());
    }

    #[test]
    fn scalars() {
        assert_eq!(
            scalar_value(&Scalar::Str("10.0.0.1".into()), FieldKind::Ipv4),
            Ok(0x0a00_0001)
        );
        assert!(scalar_value(&Scalar::Num(70000), FieldKind::Bits(16)).is_err());
        assert_eq!(parse_mac("02:00:00:00:00:01"), Ok([2, 0, 0, 0, 0, 1]));
        assert!(parse_mac("02:00").is_err());
        assert!(SizeSpec::Fixed(10).sequence().is_err());
    }
}

#[cfg(test)]
mod example_profiles {
    use super::Profile;
    use crate::Generator;

    #[test]
    fn shipped_profiles_parse_and_build() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles");
        for f in ["udp64.toml", "bng-mix.yaml"] {
            let p = Profile::load(&std::path::Path::new(dir).join(f)).unwrap();
            let g = Generator::from_profile(&p).unwrap();
            assert!(!g.streams.is_empty(), "{f}");
        }
    }
}
