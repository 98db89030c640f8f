//! Firewall configuration, rules and the rule classifier: ordered 5-tuple rules
//! matched first-match-wins by a bit-vector classifier (Lakshman & Stiliadis,
//! SIGCOMM 1998) over elementary intervals of each field.

use super::*;

/// What a rule does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Pass and track the connection.
    Allow,
    /// Pass without creating a connection.
    AllowStateless,
    #[default]
    Deny,
}

/// One rule as written in the config. Absent fields match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    pub action: Action,
    /// `a.b.c.d/len` or `a.b.c.d`.
    pub src: Option<String>,
    pub dst: Option<String>,
    /// `tcp`, `udp`, `icmp` or a number.
    pub proto: Option<String>,
    /// `80` or `1024-65535`.
    pub sport: Option<String>,
    pub dport: Option<String>,
    /// Ingress port.
    pub in_port: Option<u16>,
}

/// Idle timeouts in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FwTimeouts {
    pub tcp_syn: u32,
    pub tcp_established: u32,
    pub tcp_closing: u32,
    pub tcp_time_wait: u32,
    pub udp: u32,
    pub icmp: u32,
}

impl Default for FwTimeouts {
    fn default() -> Self {
        FwTimeouts {
            tcp_syn: 30,
            tcp_established: 7440,
            tcp_closing: 120,
            tcp_time_wait: 120,
            udp: 180,
            icmp: 30,
        }
    }
}

/// The `[firewall]` section of a VNF config.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FirewallConfig {
    pub rules: Vec<RuleConfig>,
    /// Action when no rule matches.
    pub default_action: Action,
    /// Packets of tracked connections pass without rule evaluation.
    pub allow_established: bool,
    pub max_connections: u32,
    pub timeouts: FwTimeouts,
    /// Connection slots examined for expiry per `tick`.
    pub expiry_scan: u32,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            rules: Vec::new(),
            default_action: Action::Deny,
            allow_established: true,
            max_connections: 1 << 18,
            timeouts: FwTimeouts::default(),
            expiry_scan: 4096,
        }
    }
}

/// Most tracked connections per worker: 2^24.
pub const MAX_CONNECTIONS: u32 = 1 << 24;
/// Most rules.
pub const MAX_RULES: usize = 65535;

/// A config the firewall cannot be built from. The messages name the field but not
/// the section: the caller knows where it came from (`firewall: ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FwConfigError {
    /// Rule index and the field that does not parse.
    BadRule(usize, &'static str),
    TooManyRules,
    BadLimit(&'static str),
    /// Rule index: it matches ports but its protocol has none (only TCP and UDP do).
    PortsWithoutPorts(usize),
}

impl fmt::Display for FwConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FwConfigError::BadRule(i, w) => write!(f, "rules[{i}].{w}: does not parse"),
            FwConfigError::TooManyRules => write!(f, "rules: more than {MAX_RULES}"),
            FwConfigError::BadLimit(w) => write!(f, "{w} out of range"),
            FwConfigError::PortsWithoutPorts(i) => write!(
                f,
                "rules[{i}]: sport/dport only match tcp or udp, not this proto"
            ),
        }
    }
}

impl core::error::Error for FwConfigError {}

impl FirewallConfig {
    /// Every check [`Firewall::new`] makes, without building anything: at most
    /// [`MAX_RULES`] rules, each parsing, ports only on TCP/UDP rules,
    /// `max_connections` in 1..=[`MAX_CONNECTIONS`].
    pub fn validate(&self) -> Result<(), FwConfigError> {
        if self.rules.len() > MAX_RULES {
            return Err(FwConfigError::TooManyRules);
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            return Err(FwConfigError::BadLimit("max_connections (1..=16777216)"));
        }
        for (i, r) in self.rules.iter().enumerate() {
            let rule = Rule::parse(r, i)?;
            let has_ports = r.sport.is_some() || r.dport.is_some();
            let l4_ports = rule.proto == (6, 6) || rule.proto == (17, 17);
            if has_ports && r.proto.is_some() && !l4_ports {
                return Err(FwConfigError::PortsWithoutPorts(i));
            }
        }
        Ok(())
    }
}

/// A parsed rule: inclusive ranges per field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub src: (u32, u32),
    pub dst: (u32, u32),
    pub proto: (u32, u32),
    pub sport: (u32, u32),
    pub dport: (u32, u32),
    pub in_port: (u32, u32),
}

fn parse_prefix(s: &str) -> Option<(u32, u32)> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse::<u32>().ok()?),
        None => (s, 32),
    };
    let a: Ipv4Addr = a.trim().parse().ok()?;
    if len > 32 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let lo = u32::from(a) & mask;
    Some((lo, lo | !mask))
}

fn parse_ports(s: &str) -> Option<(u32, u32)> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?),
        None => {
            let p = s.trim().parse::<u16>().ok()?;
            (p, p)
        }
    };
    (a <= b).then_some((u32::from(a), u32::from(b)))
}

fn parse_proto(s: &str) -> Option<(u32, u32)> {
    let p = match s.trim() {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        n => n.parse::<u8>().ok()?,
    };
    Some((u32::from(p), u32::from(p)))
}

impl Rule {
    /// Parses a config rule (`idx` for the error message).
    pub fn parse(r: &RuleConfig, idx: usize) -> Result<Rule, FwConfigError> {
        let any32 = (0, u32::MAX);
        let field = |v: &Option<String>, f: fn(&str) -> Option<(u32, u32)>, any, name| match v {
            None => Ok(any),
            Some(s) => f(s).ok_or(FwConfigError::BadRule(idx, name)),
        };
        Ok(Rule {
            action: r.action,
            src: field(&r.src, parse_prefix, any32, "src")?,
            dst: field(&r.dst, parse_prefix, any32, "dst")?,
            proto: field(&r.proto, parse_proto, (0, 255), "proto")?,
            sport: field(&r.sport, parse_ports, (0, 65535), "sport")?,
            dport: field(&r.dport, parse_ports, (0, 65535), "dport")?,
            in_port: r
                .in_port
                .map_or((0, 65535), |p| (u32::from(p), u32::from(p))),
        })
    }
}

/// One field of the bit-vector classifier.
struct Dim {
    /// Start of each elementary interval (sorted, first is 0).
    starts: Vec<u32>,
    /// `words` bitmap words per interval.
    bits: Vec<u64>,
}

impl Dim {
    fn build(ranges: &[(u32, u32)], words: usize) -> Dim {
        let mut starts: Vec<u32> = vec![0];
        for &(lo, hi) in ranges {
            starts.push(lo);
            if let Some(n) = hi.checked_add(1) {
                starts.push(n);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let mut bits = vec![0u64; starts.len() * words];
        for (r, &(lo, hi)) in ranges.iter().enumerate() {
            let first = starts.partition_point(|&s| s < lo);
            for (j, &s) in starts.iter().enumerate().skip(first) {
                if s > hi {
                    break;
                }
                if let Some(w) = bits.get_mut(j * words + r / 64) {
                    *w |= 1 << (r % 64);
                }
            }
        }
        Dim { starts, bits }
    }

    #[inline(always)]
    fn row(&self, v: u32, words: usize) -> &[u64] {
        let j = self.starts.partition_point(|&s| s <= v).saturating_sub(1);
        self.bits.get(j * words..(j + 1) * words).unwrap_or(&[])
    }
}

/// The rule set compiled for matching.
pub struct RuleSet {
    pub(super) rules: Vec<Rule>,
    words: usize,
    dims: [Dim; 6],
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        let words = rules.len().div_ceil(64).max(1);
        let pick = |f: fn(&Rule) -> (u32, u32)| rules.iter().map(f).collect::<Vec<_>>();
        let dims = [
            Dim::build(&pick(|r| r.src), words),
            Dim::build(&pick(|r| r.dst), words),
            Dim::build(&pick(|r| r.proto), words),
            Dim::build(&pick(|r| r.sport), words),
            Dim::build(&pick(|r| r.dport), words),
            Dim::build(&pick(|r| r.in_port), words),
        ];
        RuleSet { rules, words, dims }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Index of the first rule matching the packet's fields.
    #[inline]
    pub fn classify(
        &self,
        src: u32,
        dst: u32,
        proto: u8,
        sport: u16,
        dport: u16,
        port: u16,
    ) -> Option<usize> {
        let w = self.words;
        let [d0, d1, d2, d3, d4, d5] = &self.dims;
        let r0 = d0.row(src, w);
        let r1 = d1.row(dst, w);
        let r2 = d2.row(u32::from(proto), w);
        let r3 = d3.row(u32::from(sport), w);
        let r4 = d4.row(u32::from(dport), w);
        let r5 = d5.row(u32::from(port), w);
        for i in 0..w {
            let get = |r: &[u64]| r.get(i).copied().unwrap_or(0);
            let x = get(r0) & get(r1) & get(r2) & get(r3) & get(r4) & get(r5);
            if x != 0 {
                let idx = i * 64 + x.trailing_zeros() as usize;
                return (idx < self.rules.len()).then_some(idx);
            }
        }
        None
    }
}
