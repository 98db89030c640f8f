//! The subscriber side of IPv6 over IPoE for the emulator in [`super`]: router
//! discovery (RFC 4861 §6.3.7: a Router Solicitation, the router's link-local
//! address and MAC from its Advertisement) and a DHCPv6 client (RFC 8415 §18.2)
//! asking for an address (IA_NA), a delegated prefix (IA_PD) or both, on the
//! subscriber's line (untagged, C-VLAN, or S-VLAN + C-VLAN). Wire formats are the
//! engine's (`dataplane::proto::dhcp6`, `ethernet`, `ipv6`, `udp`, `icmpv6`). No
//! sockets: whole Ethernet frames in and out, time passed in (milliseconds).
//!
//! * Solicit (§18.2.1) to All_DHCP_Relay_Agents_and_Servers (`ff02::1:2`) from our
//!   link-local address (modified EUI-64 of the MAC), with our DUID-LL, the IAs, an
//!   Option Request for DNS and, when asked, Rapid Commit. A Reply with Rapid Commit
//!   binds at once; otherwise the first Advertise is taken and a Request (§18.2.2)
//!   names its server and IAs. A Reply binds: the address and/or prefix, T1, T2 and
//!   the valid lifetime (the shortest of the IAs).
//! * Retransmission (§15): first wait SOL_TIMEOUT/REQ_TIMEOUT (1 s) scaled by
//!   `initial_timeout_ms`, doubled up to `max_timeout_ms`, ±10 % jitter, `tries`
//!   transmissions; a Request that gets no Reply restarts the Solicit once.
//! * Renew at T1 (§18.2.4, with the server's DUID), Rebind at T2 (§18.2.5, without),
//!   the bindings lost when the valid lifetime runs out (state `Down`).
//! * Stop: Release (§18.2.7) naming the server and the IAs.
//!
//! Not emulated: Confirm, Information-request, Reconfigure, several IAs of a kind,
//! duplicate address detection.

use dataplane::proto::checksum::PseudoHeader;
use dataplane::proto::dhcp6::{opt, Duid, Ia, IaAddr, IaPrefix, Message, MessageType, Repr};
use dataplane::proto::ethernet::{Frame, MacAddr, Repr as EthRepr, Vlans};
use dataplane::proto::{icmpv6, ipv6, udp, EtherType, IpProtocol};
use std::net::Ipv6Addr;

/// RFC 8415 §7.6 SOL_TIMEOUT and REQ_TIMEOUT, ms.
pub const RFC_INITIAL_TIMEOUT_MS: u64 = 1000;
/// RFC 8415 §7.6 SOL_MAX_RT (3600 s) is far too long for a lab: the emulator caps
/// its waits at this by default, ms.
pub const LAB_MAX_TIMEOUT_MS: u64 = 30_000;
/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
pub const ALL_DHCP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
/// All-routers (RFC 4291 §2.7.1).
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// DHCPv6 client parameters.
#[derive(Debug, Clone)]
pub struct Ipoe6Params {
    /// Our MAC (the DUID-LL and the link-local address derive from it).
    pub mac: [u8; 6],
    /// Our line's VLANs.
    pub vlans: Vlans,
    /// Ask for an address (IA_NA).
    pub ia_na: bool,
    /// Ask for a delegated prefix (IA_PD).
    pub ia_pd: bool,
    /// Ask for the two-message exchange (Rapid Commit, §18.2.1).
    pub rapid_commit: bool,
    /// First retransmission wait, ms ([`RFC_INITIAL_TIMEOUT_MS`]).
    pub initial_timeout_ms: u64,
    /// Longest retransmission wait, ms.
    pub max_timeout_ms: u64,
    /// Transmissions of a Solicit or a Request before giving up on it.
    pub tries: u32,
    /// Seed of the transaction ids and the jitter.
    pub seed: u32,
}

impl Ipoe6Params {
    /// Address and prefix, Rapid Commit, RFC timers capped for a lab, 5 tries.
    pub fn new(mac: [u8; 6], vlans: Vlans) -> Ipoe6Params {
        Ipoe6Params {
            mac,
            vlans,
            ia_na: true,
            ia_pd: true,
            rapid_commit: true,
            initial_timeout_ms: RFC_INITIAL_TIMEOUT_MS,
            max_timeout_ms: LAB_MAX_TIMEOUT_MS,
            tries: 5,
            seed: u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ 0x6666,
        }
    }
}

/// The client's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ipoe6State {
    /// Not started.
    Init,
    /// Solicit sent.
    Soliciting,
    /// Request sent for an Advertise.
    Requesting,
    /// Bound.
    Bound,
    /// Past T1: Renew sent.
    Renewing,
    /// Past T2: Rebind sent.
    Rebinding,
    /// Released, given up, or the bindings ran out.
    Down,
}

impl Ipoe6State {
    /// Name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Ipoe6State::Init => "dhcp6-init",
            Ipoe6State::Soliciting => "dhcp6-soliciting",
            Ipoe6State::Requesting => "dhcp6-requesting",
            Ipoe6State::Bound => "dhcp6-bound",
            Ipoe6State::Renewing => "dhcp6-renewing",
            Ipoe6State::Rebinding => "dhcp6-rebinding",
            Ipoe6State::Down => "dhcp6-down",
        }
    }
}

/// One emulated IPoE subscriber's IPv6 side.
#[derive(Debug, Clone)]
pub struct Ipoe6Client {
    p: Ipoe6Params,
    /// Where the client is.
    pub state: Ipoe6State,
    /// The state it gave up in, if it did before being bound.
    pub failed: Option<Ipoe6State>,
    /// Bound address (IA_NA), 0 before.
    pub addr: u128,
    /// Bound prefix (IA_PD) and its length, (0, 0) before.
    pub prefix: (u128, u8),
    /// DNS servers of the last Reply (option 23).
    pub dns: Vec<Ipv6Addr>,
    /// The router (from its RA): link-local address and MAC.
    pub router: Option<(Ipv6Addr, [u8; 6])>,
    /// The RA's M and O flags.
    pub ra_flags: (bool, bool),
    /// The server's DUID (from the Advertise or Reply).
    pub server_id: Option<Duid>,
    /// The server's MAC (source of its Reply).
    pub server_mac: [u8; 6],
    /// When T1, T2 and the valid lifetime fall (ms, our clock).
    pub t1_at: u64,
    /// T2.
    pub t2_at: u64,
    /// End of the valid lifetime.
    pub expires_at: u64,
    /// When [`Ipoe6Client::start`] ran.
    pub started: u64,
    /// When the first Reply bound us.
    pub up_at: Option<u64>,
    /// Frames we could not parse.
    pub malformed: u64,
    /// Retransmitted messages.
    pub retransmissions: u64,
    /// Renew/Rebind answered.
    pub renewals: u64,
    xid: u32,
    tries_left: u32,
    timeout: u64,
    deadline: Option<u64>,
    since: u64,
    restarts: u32,
    /// The IAs of the Advertise being requested.
    offer: (Vec<IaAddr>, Vec<IaPrefix>),
    rng: u32,
}

/// `fe80::` + modified EUI-64 of `mac` (RFC 4291 §2.5.1, Appendix A).
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

const IAID_NA: u32 = 1;
const IAID_PD: u32 = 2;

impl Ipoe6Client {
    /// A client in Init.
    pub fn new(p: Ipoe6Params) -> Ipoe6Client {
        let rng = p.seed.wrapping_mul(2_654_435_761) | 1;
        Ipoe6Client {
            p,
            state: Ipoe6State::Init,
            failed: None,
            addr: 0,
            prefix: (0, 0),
            dns: Vec::new(),
            router: None,
            ra_flags: (false, false),
            server_id: None,
            server_mac: [0x33, 0x33, 0, 1, 0, 2],
            t1_at: 0,
            t2_at: 0,
            expires_at: 0,
            started: 0,
            up_at: None,
            malformed: 0,
            retransmissions: 0,
            renewals: 0,
            xid: 0,
            tries_left: 0,
            timeout: 0,
            deadline: None,
            since: 0,
            restarts: 0,
            offer: (Vec::new(), Vec::new()),
            rng,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &Ipoe6Params {
        &self.p
    }

    /// Whether we hold bindings (Bound, Renewing or Rebinding).
    pub fn is_up(&self) -> bool {
        matches!(
            self.state,
            Ipoe6State::Bound | Ipoe6State::Renewing | Ipoe6State::Rebinding
        )
    }

    fn next_rand(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    /// `wait` ±10 % (RFC 8415 §15: RAND between -0.1 and +0.1).
    fn jittered(&mut self, wait: u64) -> u64 {
        let j = wait / 10;
        if j == 0 {
            return wait.max(1);
        }
        let r = u64::from(self.next_rand()) % (2 * j + 1);
        (wait + r).saturating_sub(j).max(1)
    }

    fn new_xid(&mut self) {
        self.xid = self.next_rand() & 0x00ff_ffff;
    }

    fn arm(&mut self, now: u64) {
        self.tries_left = self.p.tries.max(1) - 1;
        self.timeout = self.p.initial_timeout_ms.max(1);
        let w = self.jittered(self.timeout);
        self.deadline = Some(now + w);
    }

    /// Start: a Router Solicitation and the first Solicit.
    pub fn start(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        self.started = now;
        out.push(self.router_solicitation());
        self.solicit(now, out);
    }

    fn solicit(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        self.state = Ipoe6State::Soliciting;
        self.since = now;
        self.new_xid();
        self.arm(now);
        out.push(self.message_frame(now));
    }

    /// Release the bindings and stop.
    pub fn stop(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        if self.is_up() {
            self.new_xid();
            let mut m = self.base(MessageType::Release, now);
            m.server_id = self.server_id.clone();
            self.bound_ias(&mut m);
            out.push(self.frame(&m));
        }
        self.addr = 0;
        self.prefix = (0, 0);
        self.state = Ipoe6State::Down;
        self.deadline = None;
    }

    /// Earliest time [`Ipoe6Client::poll`] has work.
    pub fn deadline(&self) -> Option<u64> {
        match self.state {
            Ipoe6State::Init | Ipoe6State::Down => None,
            _ => self.deadline,
        }
    }

    fn give_up(&mut self) {
        if self.failed.is_none() && self.up_at.is_none() {
            self.failed = Some(self.state);
        }
        self.state = Ipoe6State::Down;
        self.deadline = None;
    }

    /// Drive timers: retransmissions, T1, T2, the end of the valid lifetime.
    pub fn poll(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        let Some(d) = self.deadline() else {
            return;
        };
        if d > now {
            return;
        }
        match self.state {
            Ipoe6State::Soliciting | Ipoe6State::Requesting => {
                if self.tries_left == 0 {
                    if self.state == Ipoe6State::Requesting && self.restarts == 0 {
                        self.restarts += 1;
                        self.solicit(now, out);
                    } else {
                        self.give_up();
                    }
                    return;
                }
                self.tries_left -= 1;
                self.timeout = (self.timeout * 2).min(self.p.max_timeout_ms.max(1));
                let w = self.jittered(self.timeout);
                self.deadline = Some(now + w);
                self.retransmissions += 1;
                out.push(self.message_frame(now));
            }
            Ipoe6State::Bound | Ipoe6State::Renewing | Ipoe6State::Rebinding => {
                if now >= self.expires_at {
                    self.addr = 0;
                    self.prefix = (0, 0);
                    self.state = Ipoe6State::Down;
                    self.deadline = None;
                    return;
                }
                let next = if now >= self.t2_at {
                    Ipoe6State::Rebinding
                } else {
                    Ipoe6State::Renewing
                };
                if next != self.state {
                    self.state = next;
                    self.since = now;
                    self.new_xid();
                } else {
                    self.retransmissions += 1;
                }
                let until = if next == Ipoe6State::Renewing {
                    self.t2_at
                } else {
                    self.expires_at
                };
                // Retransmit within the window, at most every max_timeout.
                let w = until
                    .saturating_sub(now)
                    .div_ceil(2)
                    .clamp(1, self.p.max_timeout_ms.max(1));
                self.deadline = Some(now + w);
                out.push(self.message_frame(now));
            }
            Ipoe6State::Init | Ipoe6State::Down => {}
        }
    }

    fn base(&self, t: MessageType, now: u64) -> Message {
        let elapsed = (now.saturating_sub(self.since) / 10).min(0xffff) as u16;
        Message {
            client_id: Some(Duid::ll(self.p.mac)),
            oro: Some(vec![opt::DNS_SERVERS]),
            elapsed_time: Some(elapsed),
            ..Message::new(t, self.xid)
        }
    }

    /// The IAs we hold (Renew, Rebind, Release).
    fn bound_ias(&self, m: &mut Message) {
        if self.p.ia_na && self.addr != 0 {
            let mut ia = Ia::new(IAID_NA, 0, 0);
            ia.items.push(IaAddr {
                addr: Ipv6Addr::from(self.addr),
                preferred: 0,
                valid: 0,
                status: None,
                other: Vec::new(),
            });
            m.ia_na.push(ia);
        }
        if self.p.ia_pd && self.prefix.1 != 0 {
            let mut ia = Ia::new(IAID_PD, 0, 0);
            ia.items.push(IaPrefix {
                preferred: 0,
                valid: 0,
                len: self.prefix.1,
                prefix: Ipv6Addr::from(self.prefix.0),
                status: None,
                other: Vec::new(),
            });
            m.ia_pd.push(ia);
        }
    }

    /// The message the current state sends (and retransmits), as a frame.
    fn message_frame(&self, now: u64) -> Vec<u8> {
        let m = match self.state {
            Ipoe6State::Soliciting => {
                let mut m = self.base(MessageType::Solicit, now);
                m.rapid_commit = self.p.rapid_commit;
                if self.p.ia_na {
                    m.ia_na.push(Ia::new(IAID_NA, 0, 0));
                }
                if self.p.ia_pd {
                    m.ia_pd.push(Ia::new(IAID_PD, 0, 0));
                }
                m
            }
            Ipoe6State::Requesting => {
                let mut m = self.base(MessageType::Request, now);
                m.server_id = self.server_id.clone();
                if self.p.ia_na {
                    let mut ia = Ia::new(IAID_NA, 0, 0);
                    ia.items = self.offer.0.clone();
                    m.ia_na.push(ia);
                }
                if self.p.ia_pd {
                    let mut ia = Ia::new(IAID_PD, 0, 0);
                    ia.items = self.offer.1.clone();
                    m.ia_pd.push(ia);
                }
                m
            }
            Ipoe6State::Renewing => {
                let mut m = self.base(MessageType::Renew, now);
                m.server_id = self.server_id.clone();
                self.bound_ias(&mut m);
                m
            }
            Ipoe6State::Rebinding => {
                let mut m = self.base(MessageType::Rebind, now);
                self.bound_ias(&mut m);
                m
            }
            _ => self.base(MessageType::InformationRequest, now),
        };
        self.frame(&m)
    }

    /// `m` from our link-local address to `ff02::1:2`, UDP 546 → 547, as a frame.
    fn frame(&self, m: &Message) -> Vec<u8> {
        let mut msg = Vec::new();
        if Repr::Message(m.clone()).emit(&mut msg).is_err() {
            return Vec::new();
        }
        let mut l4 = vec![0u8; udp::HEADER_LEN + msg.len()];
        let mut u = udp::Packet::new_unchecked(&mut l4[..]);
        let _ = udp::Repr {
            src_port: 546,
            dst_port: 547,
            payload_len: msg.len(),
        }
        .emit(&mut u);
        u.payload_mut().copy_from_slice(&msg);
        let src = link_local(self.p.mac);
        u.fill_checksum(&PseudoHeader::V6 { src, dst: ALL_DHCP });
        self.ip_frame(
            [0x33, 0x33, 0, 1, 0, 2],
            src,
            ALL_DHCP,
            IpProtocol::UDP,
            1,
            &l4,
        )
    }

    /// A Router Solicitation (RFC 4861 §4.1) with our Source Link-Layer Address.
    pub fn router_solicitation(&self) -> Vec<u8> {
        let mut m = vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 1];
        m.extend_from_slice(&self.p.mac);
        let src = link_local(self.p.mac);
        icmpv6::Packet::new_unchecked(&mut m[..]).fill_checksum(&src, &ALL_ROUTERS);
        self.ip_frame(
            [0x33, 0x33, 0, 0, 0, 2],
            src,
            ALL_ROUTERS,
            IpProtocol::ICMPV6,
            255,
            &m,
        )
    }

    fn ip_frame(
        &self,
        dst_mac: [u8; 6],
        src: Ipv6Addr,
        dst: Ipv6Addr,
        next: IpProtocol,
        hop: u8,
        l4: &[u8],
    ) -> Vec<u8> {
        let eth = EthRepr {
            dst_addr: MacAddr(dst_mac),
            src_addr: MacAddr(self.p.mac),
            vlans: self.p.vlans.to_stack(),
            ethertype: EtherType::IPV6,
        };
        let l3 = eth.buffer_len();
        let mut f = vec![0u8; l3 + ipv6::HEADER_LEN + l4.len()];
        let _ = eth.emit(&mut Frame::new_unchecked(&mut f[..]));
        let _ = ipv6::Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: next,
            payload_len: l4.len(),
            hop_limit: hop,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut ipv6::Packet::new_unchecked(&mut f[l3..]));
        f[l3 + ipv6::HEADER_LEN..].copy_from_slice(l4);
        f
    }

    /// A frame on our line: an RA sets the router; a DHCPv6 Advertise or Reply for
    /// our transaction moves the exchange on. Anything else is ignored (frames for
    /// other lines or MACs are not ours); what does not parse is counted.
    pub fn input(&mut self, frame: &[u8], now: u64, out: &mut Vec<Vec<u8>>) {
        let Ok(f) = Frame::new_checked(frame) else {
            self.malformed += 1;
            return;
        };
        let Ok(eth) = EthRepr::parse(&f) else {
            self.malformed += 1;
            return;
        };
        if eth.ethertype != EtherType::IPV6
            || Vlans::from(eth.vlans) != self.p.vlans
            || (eth.dst_addr.0 != self.p.mac && eth.dst_addr.0[0] & 1 == 0)
        {
            return;
        }
        let Some(ip) = frame.get(eth.buffer_len()..) else {
            return;
        };
        let Ok(p) = ipv6::Packet::new_checked(ip) else {
            self.malformed += 1;
            return;
        };
        let body = p.payload();
        match p.next_header() {
            IpProtocol::ICMPV6 => {
                if let [134, 0, _, _, _, flags, ..] = body {
                    let (m, o) = (flags & 0x80 != 0, flags & 0x40 != 0);
                    self.ra_flags = (m, o);
                    self.router = Some((p.src_addr(), eth.src_addr.0));
                }
            }
            IpProtocol::UDP => {
                let Ok(u) = udp::Packet::new_checked(body) else {
                    self.malformed += 1;
                    return;
                };
                if u.dst_port() != 546 || u.src_port() != 547 {
                    return;
                }
                match Repr::parse_bytes(u.payload()) {
                    Ok(Repr::Message(m)) => self.message(m, eth.src_addr.0, now, out),
                    Ok(Repr::Relay(_)) => {}
                    Err(_) => self.malformed += 1,
                }
            }
            _ => {}
        }
    }

    fn message(&mut self, m: Message, from: [u8; 6], now: u64, out: &mut Vec<Vec<u8>>) {
        if m.transaction_id != self.xid || m.client_id.as_ref() != Some(&Duid::ll(self.p.mac)) {
            return;
        }
        match (self.state, m.msg_type) {
            (Ipoe6State::Soliciting, MessageType::Advertise) => {
                let na: Vec<IaAddr> = m.ia_na.iter().flat_map(|ia| ia.items.clone()).collect();
                let pd: Vec<IaPrefix> = m.ia_pd.iter().flat_map(|ia| ia.items.clone()).collect();
                if (self.p.ia_na && na.is_empty()) && (self.p.ia_pd && pd.is_empty()) {
                    return; // nothing offered (NoAddrsAvail / NoPrefixAvail): keep soliciting
                }
                self.offer = (na, pd);
                self.server_id = m.server_id.clone();
                self.state = Ipoe6State::Requesting;
                self.new_xid();
                self.arm(now);
                out.push(self.message_frame(now));
            }
            (
                Ipoe6State::Soliciting
                | Ipoe6State::Requesting
                | Ipoe6State::Renewing
                | Ipoe6State::Rebinding,
                MessageType::Reply,
            ) => {
                if self.state == Ipoe6State::Soliciting && !m.rapid_commit {
                    return;
                }
                self.bind(&m, from, now);
            }
            _ => {}
        }
    }

    fn bind(&mut self, m: &Message, from: [u8; 6], now: u64) {
        let renewing = matches!(self.state, Ipoe6State::Renewing | Ipoe6State::Rebinding);
        let mut t1 = u32::MAX;
        let mut t2 = u32::MAX;
        let mut valid = u32::MAX;
        let mut got = false;
        for ia in &m.ia_na {
            if let Some(a) = ia.items.iter().find(|a| a.valid > 0) {
                self.addr = u128::from(a.addr);
                valid = valid.min(a.valid);
                t1 = t1.min(ia.t1);
                t2 = t2.min(ia.t2);
                got = true;
            }
        }
        for ia in &m.ia_pd {
            if let Some(p) = ia.items.iter().find(|p| p.valid > 0) {
                self.prefix = (u128::from(p.prefix), p.len);
                valid = valid.min(p.valid);
                t1 = t1.min(ia.t1);
                t2 = t2.min(ia.t2);
                got = true;
            }
        }
        if !got {
            // NoBinding or no IA answered: a renewal keeps trying until T2/expiry;
            // an acquisition keeps retransmitting.
            return;
        }
        let ms = |s: u32| u64::from(s) * 1000;
        // T1/T2 of 0 leave the times to the client (§21.4): 0.5 and 0.8 of valid.
        let t1 = if t1 == 0 || t1 == u32::MAX {
            valid / 2
        } else {
            t1
        };
        let t2 = if t2 == 0 || t2 == u32::MAX {
            valid / 5 * 4
        } else {
            t2
        };
        self.t1_at = now + ms(t1);
        self.t2_at = now + ms(t2.max(t1));
        self.expires_at = now + ms(valid);
        self.dns = m.dns_servers.clone();
        if m.server_id.is_some() {
            self.server_id = m.server_id.clone();
        }
        self.server_mac = from;
        if renewing {
            self.renewals += 1;
        }
        if self.up_at.is_none() {
            self.up_at = Some(now);
        }
        self.state = Ipoe6State::Bound;
        self.deadline = Some(self.t1_at);
    }

    /// An IPv6 UDP datagram from our address (or `src`) to `dst` through the router
    /// (its MAC from the RA, else the server's), as a frame; `None` before we know a
    /// router or hold an address to send from.
    pub fn udp_frame(
        &self,
        src: Option<Ipv6Addr>,
        dst: Ipv6Addr,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let src = src.or_else(|| (self.addr != 0).then(|| Ipv6Addr::from(self.addr)))?;
        let mac = self.router.map(|r| r.1)?;
        let mut l4 = vec![0u8; udp::HEADER_LEN + payload.len()];
        let mut u = udp::Packet::new_unchecked(&mut l4[..]);
        udp::Repr {
            src_port: sport,
            dst_port: dport,
            payload_len: payload.len(),
        }
        .emit(&mut u)
        .ok()?;
        u.payload_mut().copy_from_slice(payload);
        u.fill_checksum(&PseudoHeader::V6 { src, dst });
        Some(self.ip_frame(mac, src, dst, IpProtocol::UDP, 64, &l4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vbng::config::{Config, IpoeSection};
    use vbng::control::{ControlPlane, SessionCounters};
    use vbng::dhcp6::{AddrPoolConfig, Dhcp6Config, PrefixPoolConfig};
    use vbng::rng::Rng;

    fn cp(rapid: bool) -> ControlPlane {
        let cfg = Config {
            ra_managed: true,
            ra_other: true,
            ipoe: Some(IpoeSection {
                authorize: false,
                dhcp6: true,
                ..IpoeSection::default()
            }),
            dhcp6: Some(Dhcp6Config {
                address_pools: vec![AddrPoolConfig {
                    name: "na".into(),
                    first: "2001:db8:100::10".parse().unwrap(),
                    last: "2001:db8:100::1f".parse().unwrap(),
                }],
                prefix_pools: vec![PrefixPoolConfig {
                    name: "pd".into(),
                    prefix: "2001:db8:8000::/40".parse().unwrap(),
                    len: 56,
                }],
                rapid_commit: rapid,
                preferred_lifetime_s: 60,
                valid_lifetime_s: 120,
                dns: vec!["2001:db8::53".parse().unwrap()],
                ..Dhcp6Config::default()
            }),
            ..Config::default()
        };
        ControlPlane::new(&cfg, 16, SessionCounters::new(16), Rng::from_seed([2; 32])).unwrap()
    }

    /// Frames both ways until nothing moves, from `now`.
    fn run(cp: &mut ControlPlane, c: &mut Ipoe6Client, mut up: Vec<Vec<u8>>, now: u64) {
        for _ in 0..10 {
            if up.is_empty() {
                break;
            }
            for f in up.drain(..) {
                cp.input(0, &f, now);
            }
            for (_, f) in cp.take_tx() {
                c.input(&f, now, &mut up);
            }
        }
    }

    /// Against the vBNG's control plane: the two- and four-message exchanges bind an
    /// address and a /56, the RA names the router, Renew at T1 extends, Release ends
    /// the IPoE session.
    #[test]
    fn binds_against_the_vbng_renews_and_releases() {
        for rapid in [true, false] {
            let mut cp = cp(rapid);
            let mut c = Ipoe6Client::new(Ipoe6Params {
                rapid_commit: rapid,
                ..Ipoe6Params::new(
                    [2, 0x16, 0, 0, 0, 1],
                    Vlans {
                        svlan: 10,
                        cvlan: 20,
                    },
                )
            });
            let mut up = Vec::new();
            c.start(0, &mut up);
            run(&mut cp, &mut c, up, 0);
            assert_eq!(c.state, Ipoe6State::Bound, "rapid {rapid}");
            assert_eq!(c.addr >> 16, 0x2001_0db8_0100_0000_0000_0000_0000);
            assert_eq!(c.prefix.1, 56);
            assert_eq!(c.prefix.0 >> 88, 0x0020_010d_b880);
            assert_eq!(c.dns, vec!["2001:db8::53".parse::<Ipv6Addr>().unwrap()]);
            assert_eq!(c.ra_flags, (true, true));
            assert_eq!(c.router.map(|r| r.1), Some(cp.mac()));
            assert_eq!(cp.ipoe_session_count(), 1);
            // T1 (half the preferred 60 s): Renew, answered.
            let mut up = Vec::new();
            c.poll(c.t1_at, &mut up);
            assert_eq!(c.state, Ipoe6State::Renewing);
            let t = c.t1_at;
            run(&mut cp, &mut c, up, t);
            assert_eq!((c.state, c.renewals), (Ipoe6State::Bound, 1));
            // A datagram from the address is addressed to the router's MAC.
            let f = c
                .udp_frame(None, "2001:db8:ffff::1".parse().unwrap(), 5000, 53, b"q")
                .unwrap();
            assert_eq!(&f[..6], &cp.mac());
            let mut up = Vec::new();
            c.stop(t + 10, &mut up);
            run(&mut cp, &mut c, up, t + 10);
            assert_eq!(
                cp.session_count(),
                0,
                "released: the IPv6-only session ends"
            );
        }
    }

    /// No server: Solicit retransmitted with growing waits, then given up.
    #[test]
    fn gives_up_without_a_server() {
        let mut c = Ipoe6Client::new(Ipoe6Params {
            tries: 3,
            ..Ipoe6Params::new([2, 0x16, 0, 0, 0, 2], Vlans::NONE)
        });
        let mut out = Vec::new();
        c.start(0, &mut out);
        assert_eq!(out.len(), 2, "RS and Solicit");
        let mut t = 0;
        let mut sends = Vec::new();
        while c.state != Ipoe6State::Down && t < 60_000 {
            let mut o = Vec::new();
            c.poll(t, &mut o);
            if !o.is_empty() {
                sends.push(t);
            }
            t += 10;
        }
        assert_eq!(c.failed, Some(Ipoe6State::Soliciting));
        assert_eq!(sends.len(), 2, "two retransmissions: {sends:?}");
        assert!(sends[1] - sends[0] > 1500, "{sends:?}");
    }
}
