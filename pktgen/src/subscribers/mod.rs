//! Subscriber emulation (issues 8 and 15): N clients (up to hundreds of thousands)
//! that come up against a BNG as PPPoE sessions (discovery, LCP, PAP or CHAP, IPCP and
//! optionally IPv6CP) or as IPoE subscribers (DHCPv4), or half of each
//! ([`AccessPlan`]), with session-setup rate control, then per-subscriber traffic
//! streams. Reports setup rate, setup latency percentiles (HDR histogram) and
//! failures by phase, for all subscribers and per access type.
//!
//! The per-subscriber protocol machines are [`client::Subscriber`] (the RFC 2516 /
//! RFC 1661 client side, sharing the wire codecs and automata with the BNG) and
//! [`ipoe::IpoeClient`] (the RFC 2131 §4.4 DHCP client: INIT, SELECTING, REQUESTING,
//! BOUND, RENEWING, REBINDING, with the §4.1 retransmission backoff, renewal at T1,
//! release on stop, and ARP answers for its address); this module does the scale:
//! addressing (MAC and TR-101 VLAN plans), pacing, timer heap, frame demultiplexing in
//! O(1) from the destination MAC (broadcast DHCP replies by their `chaddr`, ARP
//! requests by target address), and statistics.

pub mod client;
pub mod ipoe;
pub mod ipoe6;

use client::{ClientParams, ClientPhase, Subscriber};
use dataplane::proto::ethernet::Vlans;
use hdrhistogram::Histogram;
use ipoe::{IpoeClient, IpoeParams, IpoeState};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use vbng::fsm::Timers;
use vbng::lcp::AuthProto;

/// How subscribers are placed on VLANs (TR-101 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanPlan {
    /// No tags.
    Untagged,
    /// One C-VLAN per subscriber: `base + i % 4094`.
    Single {
        /// First VID.
        base: u16,
    },
    /// S-VLAN/C-VLAN: `cvlans` C-VLANs per S-VLAN, S-VLANs from `svlan_base`.
    QinQ {
        /// First S-VLAN.
        svlan_base: u16,
        /// C-VLANs per S-VLAN (1..=4094).
        cvlans: u16,
    },
}

/// How a subscriber reaches the BNG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// A PPPoE session (RFC 2516).
    Pppoe,
    /// IPoE (RFC 894) addressed by DHCPv4 (RFC 2131).
    Ipoe,
}

impl Access {
    /// `pppoe` or `ipoe` (report keys, command-line values).
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Pppoe => "pppoe",
            Access::Ipoe => "ipoe",
        }
    }
}

/// Which subscribers use which access type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessPlan {
    /// Every subscriber is a PPPoE client.
    #[default]
    Pppoe,
    /// Every subscriber is an IPoE (DHCPv4) client.
    Ipoe,
    /// Half and half: even indices PPPoE, odd indices IPoE.
    Mixed,
}

impl AccessPlan {
    /// The access type of subscriber `i`.
    pub fn access_of(self, i: u32) -> Access {
        match self {
            AccessPlan::Pppoe => Access::Pppoe,
            AccessPlan::Ipoe => Access::Ipoe,
            AccessPlan::Mixed if i % 2 == 1 => Access::Ipoe,
            AccessPlan::Mixed => Access::Pppoe,
        }
    }

    /// Whether any subscriber uses `a`.
    pub fn uses(self, a: Access) -> bool {
        match self {
            AccessPlan::Mixed => true,
            AccessPlan::Pppoe => a == Access::Pppoe,
            AccessPlan::Ipoe => a == Access::Ipoe,
        }
    }

    /// `pppoe`, `ipoe` or `mixed`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessPlan::Pppoe => "pppoe",
            AccessPlan::Ipoe => "ipoe",
            AccessPlan::Mixed => "mixed",
        }
    }
}

impl std::str::FromStr for AccessPlan {
    type Err = String;
    fn from_str(s: &str) -> Result<AccessPlan, String> {
        match s {
            "pppoe" => Ok(AccessPlan::Pppoe),
            "ipoe" => Ok(AccessPlan::Ipoe),
            "mixed" => Ok(AccessPlan::Mixed),
            _ => Err(format!("unknown access type {s:?} (pppoe, ipoe or mixed)")),
        }
    }
}

/// Emulator settings.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Number of subscribers.
    pub sessions: u32,
    /// Session setups started per second (0 = all at once).
    pub setup_rate: u32,
    /// Most setups in progress at once (0 = unlimited).
    pub max_outstanding: u32,
    /// Authentication protocol the clients accept.
    pub auth: AuthProto,
    /// User name prefix: user `i` is `<prefix><i>`.
    pub user_prefix: String,
    /// Password for every user.
    pub password: String,
    /// VLAN plan.
    pub vlans: VlanPlan,
    /// Negotiate IPv6CP too.
    pub ipv6cp: bool,
    /// PPP restart timer, ms.
    pub restart_ms: u64,
    /// PPP-Max-Payload to request (RFC 4638), if any.
    pub max_payload: Option<u16>,
    /// PPPoE, IPoE or both.
    pub access: AccessPlan,
    /// DHCP first retransmission wait, ms (RFC 2131 §4.1: 4000).
    pub dhcp_timeout_ms: u64,
    /// IPoE subscribers also run IPv6: router discovery and a DHCPv6 client asking
    /// for an address and a prefix ([`ipoe6`], RFC 8415), beside DHCPv4.
    pub ipoe_dhcp6: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            sessions: 1000,
            setup_rate: 0,
            max_outstanding: 0,
            auth: AuthProto::Pap,
            user_prefix: "user".into(),
            password: "secret".into(),
            vlans: VlanPlan::QinQ {
                svlan_base: 100,
                cvlans: 4000,
            },
            ipv6cp: false,
            restart_ms: 1000,
            max_payload: None,
            access: AccessPlan::Pppoe,
            dhcp_timeout_ms: ipoe::RFC_INITIAL_TIMEOUT_MS,
            ipoe_dhcp6: false,
        }
    }
}

/// The MAC of subscriber `i` (locally administered, index in the low 4 bytes).
pub fn mac_of(i: u32) -> [u8; 6] {
    let b = i.to_be_bytes();
    [0x02, 0x5b, b[0], b[1], b[2], b[3]]
}

/// The subscriber index encoded in a MAC from [`mac_of`].
pub fn index_of(mac: &[u8]) -> Option<u32> {
    match mac {
        [0x02, 0x5b, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// The VLANs of subscriber `i` under `plan`.
pub fn vlans_of(plan: VlanPlan, i: u32) -> Vlans {
    match plan {
        VlanPlan::Untagged => Vlans::default(),
        VlanPlan::Single { base } => Vlans {
            svlan: 0,
            cvlan: ((u32::from(base.max(1)) - 1 + i % 4094) % 4094 + 1) as u16,
        },
        VlanPlan::QinQ { svlan_base, cvlans } => {
            let per = u32::from(cvlans.clamp(1, 4094));
            Vlans {
                svlan: ((u32::from(svlan_base.max(1)) - 1 + i / per) % 4094 + 1) as u16,
                cvlan: (i % per + 1) as u16,
            }
        }
    }
}

/// Setup statistics.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SetupReport {
    /// Subscribers configured.
    pub sessions: u32,
    /// Sessions that reached IPCP Opened (PPPoE) or were bound by a DHCPACK (IPoE).
    pub established: u32,
    /// Failed sessions by the phase they failed in.
    pub failed_by_phase: BTreeMap<String, u64>,
    /// Setups started.
    pub started: u32,
    /// Established sessions per second, first setup started (PADI or DHCPDISCOVER) to
    /// last one up.
    pub setup_rate_per_s: f64,
    /// Setup latency percentiles, ms.
    pub setup_p50_ms: f64,
    /// 90th percentile, ms.
    pub setup_p90_ms: f64,
    /// 99th percentile, ms.
    pub setup_p99_ms: f64,
    /// Largest, ms.
    pub setup_max_ms: f64,
    /// Malformed frames received by the clients.
    pub malformed: u64,
}

/// One emulated subscriber: a PPPoE client or an IPoE (DHCP) client.
#[derive(Debug, Clone)]
pub enum Client {
    /// PPPoE.
    Pppoe(Box<Subscriber>),
    /// IPoE.
    Ipoe(Box<IpoeClient>),
}

impl Client {
    /// Its access type.
    pub fn access(&self) -> Access {
        match self {
            Client::Pppoe(_) => Access::Pppoe,
            Client::Ipoe(_) => Access::Ipoe,
        }
    }

    /// Established (IPCP opened, or a lease held).
    pub fn is_up(&self) -> bool {
        match self {
            Client::Pppoe(s) => s.phase == ClientPhase::Up,
            Client::Ipoe(c) => c.is_up(),
        }
    }

    fn is_down(&self) -> bool {
        match self {
            Client::Pppoe(s) => s.phase == ClientPhase::Down,
            Client::Ipoe(c) => c.state == IpoeState::Down,
        }
    }

    /// The phase it failed in before coming up, if it did.
    pub fn failed_phase(&self) -> Option<&'static str> {
        match self {
            Client::Pppoe(s) => s.failed.map(|p| p.as_str()),
            Client::Ipoe(c) => c.failed.map(|p| p.as_str()),
        }
    }

    /// When it came up first.
    pub fn up_at(&self) -> Option<u64> {
        match self {
            Client::Pppoe(s) => s.up_at,
            Client::Ipoe(c) => c.up_at,
        }
    }

    /// When its setup started.
    pub fn started(&self) -> u64 {
        match self {
            Client::Pppoe(s) => s.started,
            Client::Ipoe(c) => c.started,
        }
    }

    /// Its IPv4 address (0 before it has one).
    pub fn ip(&self) -> u32 {
        match self {
            Client::Pppoe(s) => s.ip,
            Client::Ipoe(c) => c.ip,
        }
    }

    /// Malformed frames it received.
    pub fn malformed(&self) -> u64 {
        match self {
            Client::Pppoe(s) => s.malformed,
            Client::Ipoe(c) => c.malformed,
        }
    }

    fn deadline(&self) -> Option<u64> {
        match self {
            Client::Pppoe(s) => s.deadline(),
            Client::Ipoe(c) => c.deadline(),
        }
    }

    fn start(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        match self {
            Client::Pppoe(s) => s.start(now, out),
            Client::Ipoe(c) => c.start(now, out),
        }
    }

    fn input(&mut self, frame: &[u8], now: u64, out: &mut Vec<Vec<u8>>) {
        match self {
            Client::Pppoe(s) => s.input(frame, now, out),
            Client::Ipoe(c) => c.input(frame, now, out),
        }
    }

    fn poll(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        match self {
            Client::Pppoe(s) => s.poll(now, out),
            Client::Ipoe(c) => c.poll(now, out),
        }
    }
}

/// The emulator.
pub struct Emulator {
    cfg: EmulatorConfig,
    subs: Vec<Client>,
    next: u32,
    t_first: Option<u64>,
    t_last_up: u64,
    up: u32,
    /// Established sessions by access type (PPPoE, IPoE).
    up_by: [u32; 2],
    done: u32,
    /// Deadline heap with lazy deletion: an entry is live only while it equals the
    /// subscriber's `sched` slot, so each subscriber has at most one live timer and
    /// a loop touches only the subscribers whose time has come (never all N).
    timers: BinaryHeap<Reverse<(u64, u32)>>,
    sched: Vec<u64>,
    hist: Option<Histogram<u64>>,
    failed: BTreeMap<String, u64>,
    counted: Vec<bool>,
    lost: Vec<bool>,
    /// IPoE subscribers by bound address (ARP requests are broadcast).
    by_ip: HashMap<u32, u32>,
    /// Per subscriber: its DHCPv6 client (IPoE subscribers with `ipoe_dhcp6`).
    v6: Vec<Option<ipoe6::Ipoe6Client>>,
}

/// `sched` value of a subscriber with no timer.
const NO_TIMER: u64 = u64::MAX;

fn slot_of(a: Access) -> usize {
    match a {
        Access::Pppoe => 0,
        Access::Ipoe => 1,
    }
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("sessions", &self.cfg.sessions)
            .field("up", &self.up)
            .finish()
    }
}

impl Emulator {
    /// Build `cfg.sessions` subscribers (none started).
    pub fn new(cfg: EmulatorConfig) -> Emulator {
        let n = cfg.sessions;
        let subs = (0..n)
            .map(|i| match cfg.access.access_of(i) {
                Access::Pppoe => Client::Pppoe(Box::new(Subscriber::new(ClientParams {
                    mac: mac_of(i),
                    vlans: vlans_of(cfg.vlans, i),
                    user: format!("{}{}", cfg.user_prefix, i).into_bytes(),
                    password: cfg.password.clone().into_bytes(),
                    accept_auth: [Some(cfg.auth), None],
                    service_name: Vec::new(),
                    host_uniq: Some(i.to_be_bytes().to_vec()),
                    max_payload: cfg.max_payload,
                    timers: Timers {
                        restart_ms: cfg.restart_ms,
                        ..Timers::default()
                    },
                    ipv6cp: cfg.ipv6cp,
                    magic: 0x5a00_0000 ^ i.wrapping_mul(2_654_435_761),
                    discovery_tries: 5,
                }))),
                Access::Ipoe => Client::Ipoe(Box::new(IpoeClient::new(IpoeParams {
                    initial_timeout_ms: cfg.dhcp_timeout_ms,
                    seed: 0x1d0e_0000 ^ i.wrapping_mul(2_654_435_761),
                    ..IpoeParams::new(mac_of(i), vlans_of(cfg.vlans, i))
                }))),
            })
            .collect();
        let v6 = (0..n)
            .map(|i| {
                (cfg.ipoe_dhcp6 && cfg.access.access_of(i) == Access::Ipoe).then(|| {
                    ipoe6::Ipoe6Client::new(ipoe6::Ipoe6Params {
                        initial_timeout_ms: cfg.dhcp_timeout_ms.clamp(1, 1000),
                        ..ipoe6::Ipoe6Params::new(mac_of(i), vlans_of(cfg.vlans, i))
                    })
                })
            })
            .collect();
        Emulator {
            cfg,
            subs,
            v6,
            next: 0,
            t_first: None,
            t_last_up: 0,
            up: 0,
            up_by: [0; 2],
            done: 0,
            timers: BinaryHeap::new(),
            sched: vec![NO_TIMER; n as usize],
            hist: Histogram::new(3).ok(),
            failed: BTreeMap::new(),
            counted: vec![false; n as usize],
            lost: vec![false; n as usize],
            by_ip: HashMap::new(),
        }
    }

    /// Subscriber `i` if it is a PPPoE client.
    pub fn subscriber(&self, i: u32) -> Option<&Subscriber> {
        match self.subs.get(i as usize)? {
            Client::Pppoe(s) => Some(s),
            Client::Ipoe(_) => None,
        }
    }

    /// Subscriber `i` if it is an IPoE client.
    pub fn ipoe_client(&self, i: u32) -> Option<&IpoeClient> {
        match self.subs.get(i as usize)? {
            Client::Ipoe(c) => Some(c),
            Client::Pppoe(_) => None,
        }
    }

    /// Subscriber `i`'s DHCPv6 client (IPoE with `ipoe_dhcp6`).
    pub fn ipoe6_client(&self, i: u32) -> Option<&ipoe6::Ipoe6Client> {
        self.v6.get(i as usize)?.as_ref()
    }

    /// IPoE subscribers holding DHCPv6 bindings.
    pub fn ipoe6_bound(&self) -> u32 {
        self.v6.iter().flatten().filter(|c| c.is_up()).count() as u32
    }

    /// Subscriber `i`, either access type.
    pub fn client(&self, i: u32) -> Option<&Client> {
        self.subs.get(i as usize)
    }

    /// Sessions established now.
    pub fn established(&self) -> u32 {
        self.up
    }

    /// Sessions of access type `a` established now.
    pub fn established_by(&self, a: Access) -> u32 {
        self.up_by[slot_of(a)]
    }

    /// Whether every subscriber has finished setup (up or failed).
    pub fn settled(&self) -> bool {
        self.done == self.cfg.sessions
    }

    /// Timers armed (at most one per subscriber) and heap entries (live + stale).
    pub fn timer_stats(&self) -> (usize, usize) {
        (
            self.sched.iter().filter(|&&t| t != NO_TIMER).count(),
            self.timers.len(),
        )
    }

    /// Account for subscriber `i` after it did something, and (re)arm its timer, no
    /// earlier than `earliest`.
    fn track(&mut self, i: u32, earliest: u64) {
        let k = i as usize;
        let Some(s) = self.subs.get(k) else {
            return;
        };
        let a = slot_of(s.access());
        if let Client::Ipoe(c) = s {
            if c.ip != 0 && c.is_up() {
                self.by_ip.insert(c.ip, i);
            }
        }
        let done = s.is_up() || s.failed_phase().is_some();
        if done && !self.counted.get(k).copied().unwrap_or(true) {
            if let Some(c) = self.counted.get_mut(k) {
                *c = true;
            }
            self.done += 1;
            if let (true, Some(t)) = (s.is_up(), s.up_at()) {
                self.up += 1;
                self.up_by[a] += 1;
                self.t_last_up = self.t_last_up.max(t);
                if let Some(h) = self.hist.as_mut() {
                    let _ = h.record(t.saturating_sub(s.started()).max(1));
                }
            } else if let Some(p) = s.failed_phase() {
                *self.failed.entry(p.to_string()).or_default() += 1;
            }
        }
        // An established session that went down again (PADT or LCP Terminate from
        // the BNG, a DHCPNAK at renewal or a lease run out) no longer counts as
        // established; it is a failure in phase "up".
        if s.is_down()
            && s.failed_phase().is_none()
            && s.up_at().is_some()
            && self.counted.get(k).copied().unwrap_or(false)
            && !self.lost.get(k).copied().unwrap_or(true)
        {
            if let Some(l) = self.lost.get_mut(k) {
                *l = true;
            }
            self.up = self.up.saturating_sub(1);
            self.up_by[a] = self.up_by[a].saturating_sub(1);
            *self.failed.entry("up".to_string()).or_default() += 1;
        }
        // A subscriber that is down has no timers (its `poll` does nothing); its
        // DHCPv6 client's timers count too.
        let d4 = if s.is_down() { None } else { s.deadline() };
        let d6 = self.v6.get(k).and_then(|c| c.as_ref()?.deadline());
        let d = match (d4, d6) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(|d| d.max(earliest));
        let Some(slot) = self.sched.get_mut(k) else {
            return;
        };
        match d {
            Some(d) if *slot != d => {
                *slot = d;
                self.timers.push(Reverse((d, i)));
            }
            Some(_) => {}
            None => *slot = NO_TIMER,
        }
    }

    /// Start the setups that the rate allows at `now`; frames to send go to `out`.
    pub fn start_due(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        let t0 = *self.t_first.get_or_insert(now);
        let allowed = if self.cfg.setup_rate == 0 {
            self.cfg.sessions
        } else {
            let a = (now.saturating_sub(t0) + 1).saturating_mul(u64::from(self.cfg.setup_rate))
                / 1000
                + 1;
            a.min(u64::from(self.cfg.sessions)) as u32
        };
        while self.next < allowed {
            if self.cfg.max_outstanding > 0 && self.next - self.done >= self.cfg.max_outstanding {
                break;
            }
            let i = self.next;
            if let Some(s) = self.subs.get_mut(i as usize) {
                s.start(now, out);
            }
            if let Some(Some(c)) = self.v6.get_mut(i as usize) {
                c.start(now, out);
            }
            self.next += 1;
            self.track(i, now);
        }
    }

    /// The subscriber a frame from the BNG is for: its destination MAC, or for a
    /// broadcast, the DHCP reply's `chaddr` or the ARP request's target address.
    fn demux(&self, frame: &[u8]) -> Option<u32> {
        let dst = frame.get(..6)?;
        if let Some(i) = index_of(dst) {
            return Some(i);
        }
        if dst != [0xff; 6] {
            return None;
        }
        if let Some(m) = ipoe::dhcp_reply_chaddr(frame) {
            return index_of(&m);
        }
        ipoe::arp_request_target(frame).and_then(|a| self.by_ip.get(&a).copied())
    }

    /// A frame from the BNG (demultiplexed by destination MAC).
    pub fn input(&mut self, frame: &[u8], now: u64, out: &mut Vec<Vec<u8>>) {
        let Some(i) = self.demux(frame) else {
            return;
        };
        // IPv6 (after up to two VLAN tags) goes to the DHCPv6 client, if any.
        let ipv6 = dataplane::proto::ethernet::walk_vlans(frame)
            .is_ok_and(|l2| l2.ethertype == dataplane::proto::EtherType::IPV6);
        match self.v6.get_mut(i as usize) {
            Some(Some(c)) if ipv6 => c.input(frame, now, out),
            _ => {
                let Some(s) = self.subs.get_mut(i as usize) else {
                    return;
                };
                s.input(frame, now, out);
            }
        }
        self.track(i, now);
    }

    /// Drive timers.
    pub fn poll(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        while let Some(Reverse((t, i))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.sched.get_mut(i as usize) else {
                continue;
            };
            if *slot != t {
                continue; // superseded by a later (re)arm
            }
            *slot = NO_TIMER;
            let Some(s) = self.subs.get_mut(i as usize) else {
                continue;
            };
            if s.deadline().is_some_and(|d| d <= now) {
                s.poll(now, out);
            }
            if let Some(Some(c)) = self.v6.get_mut(i as usize) {
                if c.deadline().is_some_and(|d| d <= now) {
                    c.poll(now, out);
                }
            }
            // Re-armed no earlier than the next millisecond, so one call ends even if
            // a timer did not move.
            self.track(i, now + 1);
        }
    }

    /// Churn (set-up/tear-down bursts while traffic flows): a PPPoE subscriber `i`
    /// that is up ends its session (PADT), one that is down starts again (PADI,
    /// then the whole setup); one in between is left alone. With `finish`, one in
    /// between is stopped instead (PADT once it has a session id), so the churn can
    /// end with every subscriber up or down. Returns whether it sent anything.
    /// IPoE subscribers are left alone.
    pub fn churn(&mut self, i: u32, now: u64, finish: bool, out: &mut Vec<Vec<u8>>) -> bool {
        let Some(Client::Pppoe(s)) = self.subs.get_mut(i as usize) else {
            return false;
        };
        let n = out.len();
        match s.phase {
            ClientPhase::Up if !finish => s.terminate(out),
            ClientPhase::Down if !finish => s.start(now, out),
            ClientPhase::Up | ClientPhase::Down => {}
            _ if finish => s.terminate(out),
            _ => {}
        }
        self.track(i, now);
        out.len() > n
    }

    /// End every session: PADT for PPPoE, DHCPRELEASE for IPoE (teardown).
    pub fn terminate_all(&mut self, out: &mut Vec<Vec<u8>>) {
        let now = self.t_last_up;
        self.terminate_all_at(now, out);
    }

    /// [`Emulator::terminate_all`] at time `now` (the DHCPRELEASE's `secs`).
    pub fn terminate_all_at(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        for s in self.subs.iter_mut() {
            match s {
                Client::Pppoe(s) if s.phase == ClientPhase::Up => s.terminate(out),
                Client::Ipoe(c) if c.is_up() => c.stop(now, out),
                _ => {}
            }
        }
        for c in self.v6.iter_mut().flatten() {
            if c.is_up() {
                c.stop(now, out);
            }
        }
    }

    /// Setup statistics so far.
    pub fn report(&self) -> SetupReport {
        let secs = self
            .t_first
            .map_or(0.0, |t| self.t_last_up.saturating_sub(t) as f64 / 1000.0);
        let h = self.hist.as_ref().filter(|h| !h.is_empty());
        let q = |p: f64| h.map_or(0.0, |h| h.value_at_quantile(p) as f64);
        SetupReport {
            sessions: self.cfg.sessions,
            established: self.up,
            failed_by_phase: self.failed.clone(),
            started: self.next,
            setup_rate_per_s: if secs > 0.0 {
                f64::from(self.up) / secs
            } else {
                f64::from(self.up) * 1000.0
            },
            setup_p50_ms: q(0.5),
            setup_p90_ms: q(0.9),
            setup_p99_ms: q(0.99),
            setup_max_ms: h.map_or(0.0, |h| h.max() as f64),
            malformed: self.subs.iter().map(|s| s.malformed()).sum(),
        }
    }

    /// Setup statistics of the subscribers of access type `a` (counted over them:
    /// the rate runs from the first one's start to the last one's setup).
    pub fn report_access(&self, a: Access) -> SetupReport {
        let mut r = SetupReport::default();
        let mut hist = Histogram::<u64>::new(3).ok();
        let (mut first, mut last) = (u64::MAX, 0u64);
        for (k, s) in self.subs.iter().enumerate() {
            if s.access() != a {
                continue;
            }
            r.sessions += 1;
            r.malformed += s.malformed();
            if (k as u32) < self.next {
                r.started += 1;
                first = first.min(s.started());
            }
            let lost = self.lost.get(k).copied().unwrap_or(false);
            if let Some(p) = s.failed_phase() {
                *r.failed_by_phase.entry(p.to_string()).or_default() += 1;
            } else if lost {
                *r.failed_by_phase.entry("up".to_string()).or_default() += 1;
            } else if let (true, Some(t)) =
                (self.counted.get(k).copied().unwrap_or(false), s.up_at())
            {
                r.established += 1;
                last = last.max(t);
                if let Some(h) = hist.as_mut() {
                    let _ = h.record(t.saturating_sub(s.started()).max(1));
                }
            }
        }
        let secs = if first <= last {
            (last - first) as f64 / 1000.0
        } else {
            0.0
        };
        r.setup_rate_per_s = if secs > 0.0 {
            f64::from(r.established) / secs
        } else {
            f64::from(r.established) * 1000.0
        };
        if let Some(h) = hist.as_ref().filter(|h| !h.is_empty()) {
            r.setup_p50_ms = h.value_at_quantile(0.5) as f64;
            r.setup_p90_ms = h.value_at_quantile(0.9) as f64;
            r.setup_p99_ms = h.value_at_quantile(0.99) as f64;
            r.setup_max_ms = h.max() as f64;
        }
        r
    }

    /// An upstream traffic frame of subscriber `i` (PPPoE + IPv4 + UDP to `dst`, or
    /// for IPoE Ethernet + IPv4 + UDP with the first payload octet 1, which tells the
    /// lab's core sink the access type even behind CGNAT), `frame_len` bytes on the
    /// wire (min 64), or `None` if `i` is not up.
    pub fn upstream_frame(&self, i: u32, dst: u32, frame_len: usize) -> Option<Vec<u8>> {
        let sport = 1024 + (i % 50000) as u16;
        match self.subs.get(i as usize).filter(|s| s.is_up())? {
            Client::Pppoe(s) => {
                let hdr = 14 + 4 * s.params().vlans.tag_count() + 8;
                let ip_len = frame_len.max(hdr + 28).saturating_sub(hdr).min(1492);
                let ip = ipv4_udp(s.ip, dst, ip_len, sport, 5001);
                let mut ppp = vec![0x00, 0x21];
                ppp.extend_from_slice(&ip);
                Some(s.session_frame(&ppp))
            }
            Client::Ipoe(c) => {
                let hdr = 14 + 4 * c.params().vlans.tag_count();
                let ip_len = frame_len.max(hdr + 28).saturating_sub(hdr).min(1500);
                let mut ip = ipv4_udp(c.ip, dst, ip_len, sport, 5001);
                if let Some(b) = ip.get_mut(28) {
                    *b = IPOE_MARK;
                }
                c.ip_frame(&ip)
            }
        }
    }

    /// A downstream frame to subscriber `i` as the core would send it (Ethernet + IPv4 +
    /// UDP from `src`), `frame_len` bytes before PPPoE encapsulation.
    pub fn downstream_frame(
        &self,
        i: u32,
        src: u32,
        dst_mac: [u8; 6],
        src_mac: [u8; 6],
        frame_len: usize,
    ) -> Option<Vec<u8>> {
        let s = self.subs.get(i as usize).filter(|s| s.is_up())?;
        let ip_len = frame_len.max(14 + 28).saturating_sub(14).min(1492);
        let mut f = Vec::with_capacity(14 + ip_len);
        f.extend_from_slice(&dst_mac);
        f.extend_from_slice(&src_mac);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&ipv4_udp(
            src,
            s.ip(),
            ip_len,
            5001,
            1024 + (i % 50000) as u16,
        ));
        Some(f)
    }
}

/// The first UDP payload octet of IPoE upstream traffic frames
/// ([`Emulator::upstream_frame`]; PPPoE ones carry 0).
pub const IPOE_MARK: u8 = 1;

/// An IPv4/UDP packet of `ip_len` bytes (header checksum set, UDP checksum 0).
pub fn ipv4_udp(src: u32, dst: u32, ip_len: usize, sport: u16, dport: u16) -> Vec<u8> {
    let ip_len = ip_len.clamp(28, 65535);
    let mut v = vec![0u8; ip_len];
    v[0] = 0x45;
    v[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    v[8] = 64;
    v[9] = 17;
    v[12..16].copy_from_slice(&src.to_be_bytes());
    v[16..20].copy_from_slice(&dst.to_be_bytes());
    let c = dataplane::proto::checksum::internet(&v[..20]);
    v[10..12].copy_from_slice(&c.to_be_bytes());
    v[20..22].copy_from_slice(&sport.to_be_bytes());
    v[22..24].copy_from_slice(&dport.to_be_bytes());
    v[24..26].copy_from_slice(&((ip_len - 20) as u16).to_be_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addressing() {
        assert_eq!(index_of(&mac_of(123_456)), Some(123_456));
        assert_eq!(index_of(&[0xff; 6]), None);
        assert_eq!(
            vlans_of(
                VlanPlan::QinQ {
                    svlan_base: 100,
                    cvlans: 10
                },
                25
            ),
            Vlans {
                svlan: 102,
                cvlan: 6
            }
        );
        assert_eq!(
            vlans_of(VlanPlan::Single { base: 4094 }, 1),
            Vlans { svlan: 0, cvlan: 1 }
        );
        assert_eq!(vlans_of(VlanPlan::Untagged, 7), Vlans::default());
    }

    #[test]
    fn rate_control_starts_at_the_configured_pace() {
        let mut e = Emulator::new(EmulatorConfig {
            sessions: 100,
            setup_rate: 1000,
            ..EmulatorConfig::default()
        });
        let mut out = Vec::new();
        e.start_due(0, &mut out);
        assert_eq!(out.len(), 2);
        e.start_due(49, &mut out);
        assert_eq!(e.report().started, 51);
        e.start_due(10_000, &mut out);
        assert_eq!(e.report().started, 100);
        // Without a BNG, discovery fails after its retries.
        for t in (10_000..120_000).step_by(500) {
            e.poll(t, &mut out);
        }
        assert!(e.settled());
        assert_eq!(e.report().failed_by_phase.get("padi"), Some(&100));
        // Retransmissions re-armed each timer: still at most one live timer per
        // subscriber, and none once all have failed.
        let (live, entries) = e.timer_stats();
        assert_eq!(live, 0);
        assert!(entries <= 100, "{entries} heap entries left");
    }
}
pub mod lab;
pub mod lab_cups;
