//! The subscriber side of IPoE (IPv4 over Ethernet, RFC 894) for the emulator in
//! [`super`]: a DHCPv4 client (RFC 2131 §4.4) on the subscriber's line (untagged,
//! one C-VLAN or S-VLAN + C-VLAN), sharing the engine's wire formats
//! (`dataplane::proto::dhcp4`, `ethernet`, `ipv4`, `udp`, `arp`). No sockets: whole
//! Ethernet frames in and out, time passed in (milliseconds).
//!
//! * INIT → SELECTING: DHCPDISCOVER, broadcast (§4.4.1). The first DHCPOFFER with a
//!   server identifier is taken (§4.4.1 allows any).
//! * SELECTING → REQUESTING: DHCPREQUEST, broadcast, with the offered address
//!   (option 50) and the server identifier (option 54), same `xid` (§4.3.2, §4.4.1).
//! * REQUESTING → BOUND on DHCPACK: address, lease time, T1 and T2 (options 58/59,
//!   else 0.5 and 0.875 of the lease, §4.4.5), subnet mask, router. A DHCPNAK, or no
//!   answer after the retransmissions, restarts at INIT once (§3.1 step 5, §4.4.1);
//!   then the client gives up.
//! * Retransmission (§4.1): the first wait is `initial_timeout_ms` (the RFC's 4 s by
//!   default), doubled after each transmission up to `max_timeout_ms` (64 s),
//!   randomised by ±1 s (by at most a quarter of the wait for waits shorter than
//!   4 s); `tries` transmissions per message.
//! * BOUND → RENEWING at T1: DHCPREQUEST with `ciaddr`, unicast (Ethernet and IP) to
//!   the server that granted the lease; retransmitted after half the time left until
//!   T2, at least 60 s (§4.4.5). → REBINDING at T2: the same, broadcast, waits half
//!   the time left of the lease. A DHCPACK extends the lease (back to BOUND); a
//!   DHCPNAK, or the lease running out, ends the session: the emulator stops there
//!   (state `Down`, reported as a lost session) rather than start over silently.
//! * Stop: DHCPRELEASE with `ciaddr` and the server identifier, unicast to the server
//!   (§4.4.6).
//! * ARP (RFC 826): a request for our bound address is answered with our MAC, as a
//!   CPE does. Kept simple: the client does not probe the offered address before
//!   using it (the §4.4.1 "SHOULD" check), and takes the router's MAC from the
//!   DHCPACK's source (the BNG answers ARP for its gateway with the same MAC).

use dataplane::proto::arp;
use dataplane::proto::checksum::PseudoHeader;
use dataplane::proto::dhcp4::{
    op, opt, MessageType, Packet as DhcpPacket, Repr as DhcpRepr, CLIENT_PORT, SERVER_PORT,
};
use dataplane::proto::ethernet::{Frame, MacAddr, Repr as EthRepr, Vlans};
use dataplane::proto::{ipv4, udp, EtherType, IpProtocol};
use std::net::Ipv4Addr;

/// The RFC 2131 §4.1 first retransmission wait, ms.
pub const RFC_INITIAL_TIMEOUT_MS: u64 = 4000;
/// The RFC 2131 §4.1 longest retransmission wait, ms.
pub const RFC_MAX_TIMEOUT_MS: u64 = 64_000;
/// Shortest wait between renewal or rebinding retransmissions (RFC 2131 §4.4.5), ms.
pub const MIN_RENEW_RETRANSMIT_MS: u64 = 60_000;

/// DHCP client parameters.
#[derive(Debug, Clone)]
pub struct IpoeParams {
    /// Our MAC (also `chaddr`).
    pub mac: [u8; 6],
    /// Our line's VLANs.
    pub vlans: Vlans,
    /// Client identifier (option 61: type octet and identifier), if sent.
    pub client_id: Option<Vec<u8>>,
    /// First retransmission wait, ms ([`RFC_INITIAL_TIMEOUT_MS`]).
    pub initial_timeout_ms: u64,
    /// Longest retransmission wait, ms ([`RFC_MAX_TIMEOUT_MS`]).
    pub max_timeout_ms: u64,
    /// Transmissions of a DHCPDISCOVER or a DHCPREQUEST before giving up on it.
    pub tries: u32,
    /// Seed of the transaction ids and the retransmission jitter.
    pub seed: u32,
}

impl IpoeParams {
    /// Parameters with the RFC's timers and 4 tries (4 + 8 + 16 + 32 s).
    pub fn new(mac: [u8; 6], vlans: Vlans) -> IpoeParams {
        IpoeParams {
            mac,
            vlans,
            client_id: None,
            initial_timeout_ms: RFC_INITIAL_TIMEOUT_MS,
            max_timeout_ms: RFC_MAX_TIMEOUT_MS,
            tries: 4,
            seed: u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]),
        }
    }
}

/// The client's state (RFC 2131 Figure 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpoeState {
    /// Not started (INIT before the first DHCPDISCOVER).
    Init,
    /// DHCPDISCOVER sent, waiting for an offer.
    Selecting,
    /// DHCPREQUEST sent for an offer, waiting for the DHCPACK.
    Requesting,
    /// Lease held.
    Bound,
    /// Past T1: renewing with the server (unicast).
    Renewing,
    /// Past T2: rebinding (broadcast).
    Rebinding,
    /// Stopped: released, given up, or the lease was lost.
    Down,
}

impl IpoeState {
    /// Name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            IpoeState::Init => "dhcp-init",
            IpoeState::Selecting => "dhcp-selecting",
            IpoeState::Requesting => "dhcp-requesting",
            IpoeState::Bound => "dhcp-bound",
            IpoeState::Renewing => "dhcp-renewing",
            IpoeState::Rebinding => "dhcp-rebinding",
            IpoeState::Down => "dhcp-down",
        }
    }
}

/// One emulated IPoE subscriber (a DHCP client and its line).
#[derive(Debug, Clone)]
pub struct IpoeClient {
    p: IpoeParams,
    /// Where the client is.
    pub state: IpoeState,
    /// The state it gave up in, if it did before being bound.
    pub failed: Option<IpoeState>,
    /// Bound address (0 before).
    pub ip: u32,
    /// Subnet mask (option 1), 0 if none was given.
    pub netmask: u32,
    /// First router (option 3), 0 if none was given.
    pub router: u32,
    /// Server identifier of the lease (option 54).
    pub server_id: u32,
    /// The server's MAC (source of its DHCPACK): renewals, releases and traffic go
    /// there.
    pub server_mac: [u8; 6],
    /// Lease time of the last DHCPACK, s.
    pub lease_s: u32,
    /// When T1, T2 and the lease end fall (ms, our clock).
    pub t1_at: u64,
    /// T2.
    pub t2_at: u64,
    /// Lease end.
    pub expires_at: u64,
    /// When [`IpoeClient::start`] ran.
    pub started: u64,
    /// When the first DHCPACK bound us.
    pub up_at: Option<u64>,
    /// Frames we could not parse.
    pub malformed: u64,
    /// Retransmitted messages (SELECTING, REQUESTING, RENEWING, REBINDING).
    pub retransmissions: u64,
    /// Leases extended by a DHCPACK in RENEWING or REBINDING.
    pub renewals: u64,
    /// DHCPNAKs received.
    pub naks: u64,
    /// ARP requests for our address answered.
    pub arp_replies: u64,
    /// The address offered (SELECTING → REQUESTING).
    offered: u32,
    /// Server id of the offer being requested.
    offer_server: u32,
    xid: u32,
    tries_left: u32,
    timeout: u64,
    deadline: Option<u64>,
    /// Start of the current acquisition (`secs`, RFC 2131 §2).
    acquiring_since: u64,
    restarts: u32,
    rng: u32,
}

impl IpoeClient {
    /// A client in INIT.
    pub fn new(p: IpoeParams) -> IpoeClient {
        let rng = p.seed.wrapping_mul(2_654_435_761) | 1;
        IpoeClient {
            p,
            state: IpoeState::Init,
            failed: None,
            ip: 0,
            netmask: 0,
            router: 0,
            server_id: 0,
            server_mac: [0xff; 6],
            lease_s: 0,
            t1_at: 0,
            t2_at: 0,
            expires_at: 0,
            started: 0,
            up_at: None,
            malformed: 0,
            retransmissions: 0,
            renewals: 0,
            naks: 0,
            arp_replies: 0,
            offered: 0,
            offer_server: 0,
            xid: 0,
            tries_left: 0,
            timeout: 0,
            deadline: None,
            acquiring_since: 0,
            restarts: 0,
            rng,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &IpoeParams {
        &self.p
    }

    /// Whether we hold a lease (BOUND, RENEWING or REBINDING).
    pub fn is_up(&self) -> bool {
        matches!(
            self.state,
            IpoeState::Bound | IpoeState::Renewing | IpoeState::Rebinding
        )
    }

    /// The transaction id of the exchange in progress.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    fn next_rand(&mut self) -> u32 {
        // xorshift32: jitter and transaction ids, no cryptographic need.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    /// `wait` randomised by ±1 s (±wait/4 for short waits), RFC 2131 §4.1.
    fn jittered(&mut self, wait: u64) -> u64 {
        let j = (wait / 4).min(1000);
        if j == 0 {
            return wait.max(1);
        }
        let r = u64::from(self.next_rand()) % (2 * j + 1);
        (wait + r).saturating_sub(j).max(1)
    }

    fn new_xid(&mut self) {
        self.xid = self.next_rand();
    }

    /// Start (INIT → SELECTING): the first DHCPDISCOVER.
    pub fn start(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        self.started = now;
        self.discover(now, out);
    }

    fn discover(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        self.state = IpoeState::Selecting;
        self.ip = 0;
        self.offered = 0;
        self.acquiring_since = now;
        self.new_xid();
        self.arm_retransmit(now);
        out.push(self.message_frame(now));
    }

    /// Fresh retransmission budget for a new message.
    fn arm_retransmit(&mut self, now: u64) {
        self.tries_left = self.p.tries.max(1) - 1;
        self.timeout = self.p.initial_timeout_ms.max(1);
        let w = self.jittered(self.timeout);
        self.deadline = Some(now + w);
    }

    /// Wait before the next renewal (or rebinding) retransmission, RFC 2131 §4.4.5.
    fn renew_wait(now: u64, until: u64) -> u64 {
        let half = until.saturating_sub(now) / 2;
        (now + half.max(MIN_RENEW_RETRANSMIT_MS)).min(until)
    }

    /// Release the lease (DHCPRELEASE to the server) and stop.
    pub fn stop(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        if self.is_up() {
            self.new_xid();
            let r = DhcpRepr {
                ciaddr: Ipv4Addr::from(self.ip),
                server_id: Some(Ipv4Addr::from(self.server_id)),
                ..self.base(MessageType::Release, now)
            };
            out.push(self.frame(&r, true));
        }
        self.state = IpoeState::Down;
        self.deadline = None;
    }

    /// Earliest time [`IpoeClient::poll`] has work.
    pub fn deadline(&self) -> Option<u64> {
        match self.state {
            IpoeState::Init | IpoeState::Down => None,
            _ => self.deadline,
        }
    }

    fn give_up(&mut self) {
        if self.failed.is_none() && self.up_at.is_none() {
            self.failed = Some(self.state);
        }
        self.state = IpoeState::Down;
        self.deadline = None;
    }

    /// The lease is gone (DHCPNAK in RENEWING/REBINDING, or it ran out).
    fn lease_lost(&mut self) {
        self.ip = 0;
        self.state = IpoeState::Down;
        self.deadline = None;
    }

    /// Drive timers: retransmissions, T1, T2, lease end.
    pub fn poll(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        let Some(d) = self.deadline() else {
            return;
        };
        if d > now {
            return;
        }
        match self.state {
            IpoeState::Selecting | IpoeState::Requesting => {
                if self.tries_left == 0 {
                    if self.state == IpoeState::Requesting && self.restarts == 0 {
                        // No DHCPACK: back to INIT (RFC 2131 §4.4.1), once.
                        self.restarts += 1;
                        self.discover(now, out);
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
            IpoeState::Bound => {
                // T1: renew with the server that granted the lease.
                self.state = IpoeState::Renewing;
                self.new_xid();
                self.deadline = Some(Self::renew_wait(now, self.t2_at));
                out.push(self.message_frame(now));
            }
            IpoeState::Renewing => {
                if now >= self.t2_at {
                    // T2: rebind with any server.
                    self.state = IpoeState::Rebinding;
                    self.new_xid();
                } else {
                    self.retransmissions += 1;
                }
                self.deadline = Some(Self::renew_wait(
                    now,
                    if self.state == IpoeState::Renewing {
                        self.t2_at
                    } else {
                        self.expires_at
                    },
                ));
                out.push(self.message_frame(now));
            }
            IpoeState::Rebinding => {
                if now >= self.expires_at {
                    self.lease_lost();
                    return;
                }
                self.retransmissions += 1;
                self.deadline = Some(Self::renew_wait(now, self.expires_at));
                out.push(self.message_frame(now));
            }
            IpoeState::Init | IpoeState::Down => {}
        }
    }

    /// The message fields every client message shares.
    fn base(&self, t: MessageType, now: u64) -> DhcpRepr {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&self.p.mac);
        DhcpRepr {
            op: op::BOOTREQUEST,
            xid: self.xid,
            secs: (now.saturating_sub(self.acquiring_since) / 1000).min(u64::from(u16::MAX)) as u16,
            chaddr,
            message_type: Some(t),
            client_id: self.p.client_id.clone(),
            ..DhcpRepr::default()
        }
    }

    /// The message the current state sends (and retransmits), as a frame.
    fn message_frame(&self, now: u64) -> Vec<u8> {
        let prl = Some(vec![
            opt::SUBNET_MASK,
            opt::ROUTER,
            opt::DNS,
            opt::MTU,
            opt::LEASE_TIME,
            opt::RENEWAL_TIME,
            opt::REBINDING_TIME,
        ]);
        match self.state {
            IpoeState::Selecting => {
                let r = DhcpRepr {
                    parameter_request_list: prl,
                    ..self.base(MessageType::Discover, now)
                };
                self.frame(&r, false)
            }
            IpoeState::Requesting => {
                let r = DhcpRepr {
                    requested_ip: Some(Ipv4Addr::from(self.offered)),
                    server_id: Some(Ipv4Addr::from(self.offer_server)),
                    parameter_request_list: prl,
                    ..self.base(MessageType::Request, now)
                };
                self.frame(&r, false)
            }
            IpoeState::Renewing | IpoeState::Rebinding => {
                let r = DhcpRepr {
                    ciaddr: Ipv4Addr::from(self.ip),
                    parameter_request_list: prl,
                    ..self.base(MessageType::Request, now)
                };
                self.frame(&r, self.state == IpoeState::Renewing)
            }
            _ => Vec::new(),
        }
    }

    /// Ethernet (our VLANs) + IPv4 + UDP 68 → 67 around a DHCP message: broadcast,
    /// or unicast to the server (renewal, release).
    fn frame(&self, r: &DhcpRepr, unicast: bool) -> Vec<u8> {
        let mut msg = Vec::with_capacity(300);
        // Our own messages always fit; an emit error leaves an empty message, which
        // the server counts as malformed.
        let _ = r.emit(&mut msg);
        let src = r.ciaddr;
        let (dst_mac, dst) = if unicast {
            (self.server_mac, Ipv4Addr::from(self.server_id))
        } else {
            ([0xff; 6], Ipv4Addr::BROADCAST)
        };
        self.udp_frame(dst_mac, src, dst, CLIENT_PORT, SERVER_PORT, &msg)
    }

    fn eth(&self, dst: [u8; 6], ethertype: EtherType, payload_len: usize) -> (Vec<u8>, usize) {
        let e = EthRepr {
            dst_addr: MacAddr(dst),
            src_addr: MacAddr(self.p.mac),
            vlans: self.p.vlans.to_stack(),
            ethertype,
        };
        let l3 = e.buffer_len();
        let mut f = vec![0u8; l3 + payload_len];
        let _ = e.emit(&mut Frame::new_unchecked(&mut f[..]));
        (f, l3)
    }

    fn udp_frame(
        &self,
        dst_mac: [u8; 6],
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let ulen = udp::HEADER_LEN + payload.len();
        let (mut f, l3) = self.eth(dst_mac, EtherType::IPV4, ipv4::HEADER_LEN + ulen);
        let _ = ipv4::Repr {
            src_addr: src,
            dst_addr: dst,
            protocol: IpProtocol::UDP,
            payload_len: ulen,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
        }
        .emit(&mut ipv4::Packet::new_unchecked(&mut f[l3..]));
        let at = l3 + ipv4::HEADER_LEN;
        let mut u = udp::Packet::new_unchecked(&mut f[at..]);
        let _ = udp::Repr {
            src_port: sport,
            dst_port: dport,
            payload_len: payload.len(),
        }
        .emit(&mut u);
        u.payload_mut().copy_from_slice(payload);
        u.fill_checksum(&PseudoHeader::V4 { src, dst });
        f
    }

    /// An IPv4 packet from us to the router (the server's MAC), as a frame on our
    /// line, or `None` without a lease.
    pub fn ip_frame(&self, ip: &[u8]) -> Option<Vec<u8>> {
        if !self.is_up() {
            return None;
        }
        let (mut f, l3) = self.eth(self.server_mac, EtherType::IPV4, ip.len());
        f[l3..].copy_from_slice(ip);
        Some(f)
    }

    /// Handle a frame addressed to us (our MAC, or broadcast on our line).
    pub fn input(&mut self, frame: &[u8], now: u64, out: &mut Vec<Vec<u8>>) {
        let Ok(eth) = Frame::new_checked(frame).and_then(|f| EthRepr::parse(&f)) else {
            self.malformed += 1;
            return;
        };
        if Vlans::from_stack(&eth.vlans) != self.p.vlans {
            return;
        }
        let Some(payload) = frame.get(eth.buffer_len()..) else {
            return;
        };
        match eth.ethertype {
            EtherType::ARP => self.arp_input(payload, out),
            EtherType::IPV4 => self.ipv4_input(eth.src_addr.0, payload, now, out),
            _ => {}
        }
    }

    fn arp_input(&mut self, payload: &[u8], out: &mut Vec<Vec<u8>>) {
        let Ok(req) = arp::Packet::new_checked(payload).and_then(|p| arp::Repr::parse(&p)) else {
            self.malformed += 1;
            return;
        };
        if req.operation != arp::Operation::REQUEST
            || self.ip == 0
            || !self.is_up()
            || u32::from(req.target_protocol_addr) != self.ip
        {
            return;
        }
        let rep = req.reply(MacAddr(self.p.mac));
        let (mut f, l3) = self.eth(req.source_hardware_addr.0, EtherType::ARP, rep.buffer_len());
        if rep
            .emit(&mut arp::Packet::new_unchecked(&mut f[l3..]))
            .is_ok()
        {
            self.arp_replies += 1;
            out.push(f);
        }
    }

    fn ipv4_input(&mut self, src_mac: [u8; 6], payload: &[u8], now: u64, out: &mut Vec<Vec<u8>>) {
        let Ok(ip) = ipv4::Packet::new_checked(payload) else {
            self.malformed += 1;
            return;
        };
        let Ok(ipr) = ipv4::Repr::parse(&ip) else {
            self.malformed += 1;
            return;
        };
        if ipr.protocol != IpProtocol::UDP || ip.is_fragment() {
            return; // traffic to us, not DHCP
        }
        let Ok(u) = udp::Packet::new_checked(ip.payload()) else {
            self.malformed += 1;
            return;
        };
        if u.dst_port() != CLIENT_PORT || u.src_port() != SERVER_PORT {
            return;
        }
        if !u.verify_checksum(&PseudoHeader::V4 {
            src: ipr.src_addr,
            dst: ipr.dst_addr,
        }) {
            self.malformed += 1;
            return;
        }
        let Ok(r) = DhcpPacket::new_checked(u.payload()).and_then(|p| DhcpRepr::parse(&p)) else {
            self.malformed += 1;
            return;
        };
        if r.op != op::BOOTREPLY || r.xid != self.xid || r.client_mac() != Some(self.p.mac) {
            return; // another transaction (or client)
        }
        self.dhcp_input(src_mac, &r, now, out);
    }

    fn dhcp_input(&mut self, src_mac: [u8; 6], r: &DhcpRepr, now: u64, out: &mut Vec<Vec<u8>>) {
        match (self.state, r.message_type) {
            (IpoeState::Selecting, Some(MessageType::Offer)) => {
                let Some(sid) = r.server_id.filter(|_| !r.yiaddr.is_unspecified()) else {
                    self.malformed += 1;
                    return;
                };
                self.offered = u32::from(r.yiaddr);
                self.offer_server = u32::from(sid);
                self.state = IpoeState::Requesting;
                self.arm_retransmit(now);
                out.push(self.message_frame(now));
            }
            (
                IpoeState::Requesting | IpoeState::Renewing | IpoeState::Rebinding,
                Some(MessageType::Ack),
            ) => {
                let Some(lease) = r.lease_time.filter(|_| !r.yiaddr.is_unspecified()) else {
                    self.malformed += 1;
                    return;
                };
                let renewing = self.state != IpoeState::Requesting;
                if renewing {
                    self.renewals += 1;
                } else {
                    self.server_id = r.server_id.map_or(self.offer_server, u32::from);
                }
                if let Some(s) = r.server_id {
                    self.server_id = u32::from(s);
                }
                self.server_mac = src_mac;
                self.ip = u32::from(r.yiaddr);
                self.netmask = r.subnet_mask.map_or(0, u32::from);
                self.router = r.routers.first().map_or(0, |&a| u32::from(a));
                self.lease_s = lease;
                let l = u64::from(lease) * 1000;
                let t1 = r.renewal_time.map_or(l / 2, |t| u64::from(t) * 1000);
                let t2 = r.rebinding_time.map_or(l * 7 / 8, |t| u64::from(t) * 1000);
                self.expires_at = now.saturating_add(l);
                self.t2_at = now.saturating_add(t2.min(l));
                self.t1_at = now.saturating_add(t1.min(t2).min(l));
                self.state = IpoeState::Bound;
                self.deadline = Some(self.t1_at);
                if self.up_at.is_none() {
                    self.up_at = Some(now);
                }
            }
            (IpoeState::Requesting, Some(MessageType::Nak)) => {
                self.naks += 1;
                if self.restarts == 0 {
                    self.restarts += 1;
                    self.discover(now, out);
                } else {
                    self.give_up();
                }
            }
            (IpoeState::Renewing | IpoeState::Rebinding, Some(MessageType::Nak)) => {
                self.naks += 1;
                self.lease_lost();
            }
            _ => {}
        }
    }
}

/// The DHCP client hardware address (`chaddr`) of a frame from a DHCP server to a
/// client (Ethernet with up to two VLAN tags, IPv4, UDP to port 68), for
/// demultiplexing broadcast replies; `None` for anything else.
pub fn dhcp_reply_chaddr(frame: &[u8]) -> Option<[u8; 6]> {
    let l2 = dataplane::proto::ethernet::walk_vlans(frame).ok()?;
    if l2.ethertype != EtherType::IPV4 {
        return None;
    }
    let ip = ipv4::Packet::new_checked(frame.get(l2.l3_offset..)?).ok()?;
    if ip.protocol() != IpProtocol::UDP || ip.is_fragment() {
        return None;
    }
    let u = udp::Packet::new_checked(ip.payload()).ok()?;
    if u.dst_port() != CLIENT_PORT {
        return None;
    }
    DhcpPacket::new_checked(u.payload()).ok()?.client_mac()
}

/// The target address of an ARP request (for demultiplexing broadcast requests).
pub fn arp_request_target(frame: &[u8]) -> Option<u32> {
    let l2 = dataplane::proto::ethernet::walk_vlans(frame).ok()?;
    if l2.ethertype != EtherType::ARP {
        return None;
    }
    let p = arp::Packet::new_checked(frame.get(l2.l3_offset..)?).ok()?;
    let r = arp::Repr::parse(&p).ok()?;
    (r.operation == arp::Operation::REQUEST).then(|| u32::from(r.target_protocol_addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vbng::dhcp4::{wire, ClientKey, Dhcp4Config, Server};

    const MAC: [u8; 6] = [0x02, 0x5b, 0, 0, 0, 7];
    const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xb0, 1];
    const QINQ: Vlans = Vlans {
        svlan: 100,
        cvlan: 7,
    };

    fn server(lease_s: u32) -> Server {
        Server::new(Dhcp4Config {
            lease_time_s: lease_s,
            ..Dhcp4Config::default()
        })
        .unwrap()
    }

    fn client(vlans: Vlans) -> IpoeClient {
        IpoeClient::new(IpoeParams::new(MAC, vlans))
    }

    /// The DHCP message of a client frame, parsed, with the frame's IPv4
    /// destination and Ethernet destination.
    fn msg(f: &[u8]) -> (DhcpRepr, Ipv4Addr, [u8; 6]) {
        let r = wire::decap(f).unwrap();
        (
            DhcpRepr::parse_bytes(r.message).unwrap(),
            r.dst_ip,
            f[..6].try_into().unwrap(),
        )
    }

    /// Hands the client's frames to the server and the replies back, until quiet.
    fn exchange(s: &mut Server, c: &mut IpoeClient, mut frames: Vec<Vec<u8>>, now: u64) {
        while !frames.is_empty() {
            let mut next = Vec::new();
            for f in frames {
                let r = wire::decap(&f).unwrap();
                let h = s.handle(now, r.vlans, r.message);
                if let Some(rep) = h.reply {
                    let out = wire::encap(&rep, MacAddr(SERVER_MAC), s.config().server_id(), None);
                    c.input(&out, now, &mut next);
                }
            }
            frames = next;
        }
    }

    #[test]
    fn discover_retransmits_with_doubling_randomised_waits_then_gives_up() {
        let mut c = client(QINQ);
        let mut out = Vec::new();
        c.start(0, &mut out);
        assert_eq!(c.state, IpoeState::Selecting);
        let (first, dst, eth_dst) = msg(&out[0]);
        assert_eq!(first.message_type, Some(MessageType::Discover));
        assert_eq!((dst, eth_dst), (Ipv4Addr::BROADCAST, [0xff; 6]));
        assert_eq!(first.client_mac(), Some(MAC));
        // RFC 2131 §4.1: 4 s, 8 s, 16 s (each ±1 s), same xid, then give up after
        // the fourth transmission's wait (32 s ± 1 s).
        let mut now = 0;
        let mut waits = Vec::new();
        for k in 0..4 {
            let d = c.deadline().unwrap();
            waits.push(d - now);
            // Nothing before the deadline.
            out.clear();
            c.poll(d - 1, &mut out);
            assert!(out.is_empty());
            now = d;
            c.poll(now, &mut out);
            if k < 3 {
                let (m, _, _) = msg(&out[0]);
                assert_eq!(m.message_type, Some(MessageType::Discover));
                assert_eq!(m.xid, first.xid, "a retransmission keeps the xid");
                assert_eq!(u64::from(m.secs), now / 1000, "secs since the start");
            } else {
                assert!(out.is_empty());
            }
        }
        for (w, base) in waits.iter().zip([4000u64, 8000, 16000, 32000]) {
            assert!((base - 1000..=base + 1000).contains(w), "{waits:?}");
        }
        assert_eq!(c.retransmissions, 3);
        assert_eq!(c.state, IpoeState::Down);
        assert_eq!(c.failed, Some(IpoeState::Selecting));
        assert_eq!(c.deadline(), None);
    }

    #[test]
    fn binds_after_a_lost_request_renews_at_t1_unicast_and_releases() {
        for vlans in [
            Vlans::NONE,
            Vlans {
                svlan: 0,
                cvlan: 42,
            },
            QINQ,
        ] {
            let mut s = server(3600);
            let mut c = client(vlans);
            let mut out = Vec::new();
            c.start(0, &mut out);
            // The DISCOVER reaches the server; its OFFER makes the client REQUEST,
            // which is lost.
            let r = wire::decap(&out[0]).unwrap();
            assert_eq!(r.vlans, vlans, "our line's tags");
            let offer = s.handle(0, r.vlans, r.message).reply.unwrap();
            let mut req = Vec::new();
            c.input(
                &wire::encap(&offer, MacAddr(SERVER_MAC), s.config().server_id(), None),
                5,
                &mut req,
            );
            assert_eq!(c.state, IpoeState::Requesting);
            let (m, _, _) = msg(&req[0]);
            assert_eq!(m.message_type, Some(MessageType::Request));
            assert_eq!(m.server_id, Some(s.config().server_id()));
            let offered = m.requested_ip.unwrap();
            // Retransmitted at the deadline, answered this time.
            let d = c.deadline().unwrap();
            assert!((3005..=5005).contains(&d), "{d}");
            let mut again = Vec::new();
            c.poll(d, &mut again);
            assert_eq!(msg(&again[0]).0.xid, m.xid);
            exchange(&mut s, &mut c, again, d);
            assert_eq!(c.state, IpoeState::Bound, "{vlans:?}");
            assert_eq!(c.ip, u32::from(offered));
            assert_eq!(c.up_at, Some(d));
            assert_eq!(c.router, u32::from(Ipv4Addr::new(100, 64, 0, 1)));
            assert_eq!(c.server_mac, SERVER_MAC);
            assert_eq!(c.lease_s, 3600);
            assert_eq!(c.t1_at, d + 1_800_000, "T1 = lease / 2");
            assert_eq!(c.t2_at, d + 3_150_000, "T2 = 7/8 lease");
            assert_eq!(c.deadline(), Some(c.t1_at));
            assert_eq!(s.lease_count(), 1);

            // T1: DHCPREQUEST unicast to the server, ciaddr set, no option 50/54.
            let t1 = c.t1_at;
            let mut renew = Vec::new();
            c.poll(t1, &mut renew);
            assert_eq!(c.state, IpoeState::Renewing);
            let (m, dst, eth_dst) = msg(&renew[0]);
            assert_eq!((dst, eth_dst), (s.config().server_id(), SERVER_MAC));
            assert_eq!(m.ciaddr, offered);
            assert_eq!((m.requested_ip, m.server_id), (None, None));
            // Lost: retransmitted after half the time to T2 (≥ 60 s).
            let d = c.deadline().unwrap();
            assert_eq!(d, t1 + (c.t2_at - t1) / 2);
            let mut again = Vec::new();
            c.poll(d, &mut again);
            assert_eq!(c.state, IpoeState::Renewing);
            assert_eq!(msg(&again[0]).0.xid, m.xid);
            exchange(&mut s, &mut c, again, d);
            assert_eq!(c.state, IpoeState::Bound);
            assert_eq!(c.renewals, 1);
            assert_eq!(c.ip, u32::from(offered));
            assert_eq!(c.t1_at, d + 1_800_000, "T1 from the renewal");
            assert_eq!(s.stats().renewed, 1);

            // ARP for our address is answered, for another is not.
            let ask = |tpa: Ipv4Addr| {
                let rq = arp::Repr {
                    operation: arp::Operation::REQUEST,
                    source_hardware_addr: MacAddr(SERVER_MAC),
                    source_protocol_addr: Ipv4Addr::new(100, 64, 0, 1),
                    target_hardware_addr: MacAddr([0; 6]),
                    target_protocol_addr: tpa,
                };
                let mut body = [0u8; 28];
                rq.emit(&mut arp::Packet::new_unchecked(&mut body[..]))
                    .unwrap();
                let e = EthRepr {
                    dst_addr: MacAddr::BROADCAST,
                    src_addr: MacAddr(SERVER_MAC),
                    vlans: vlans.to_stack(),
                    ethertype: EtherType::ARP,
                };
                let mut f = vec![0u8; e.buffer_len()];
                e.emit(&mut Frame::new_unchecked(&mut f[..])).unwrap();
                f.extend_from_slice(&body);
                f
            };
            let f = ask(offered);
            assert_eq!(arp_request_target(&f), Some(u32::from(offered)));
            let mut rep = Vec::new();
            c.input(&f, d + 1, &mut rep);
            c.input(&ask(Ipv4Addr::new(100, 64, 9, 9)), d + 1, &mut rep);
            assert_eq!(rep.len(), 1);
            assert_eq!(&rep[0][..6], &SERVER_MAC);
            let l2 = dataplane::proto::ethernet::walk_vlans(&rep[0]).unwrap();
            assert_eq!(Vlans::from_stack(&l2.vlans), vlans);
            let a = arp::Repr::parse(&arp::Packet::new_checked(&rep[0][l2.l3_offset..]).unwrap())
                .unwrap();
            assert_eq!(a.operation, arp::Operation::REPLY);
            assert_eq!(a.source_hardware_addr, MacAddr(MAC));
            assert_eq!(a.source_protocol_addr, offered);

            // Stop: DHCPRELEASE to the server ends the lease.
            let mut rel = Vec::new();
            c.stop(d + 2, &mut rel);
            let (m, dst, _) = msg(&rel[0]);
            assert_eq!(m.message_type, Some(MessageType::Release));
            assert_eq!((m.ciaddr, dst), (offered, s.config().server_id()));
            exchange(&mut s, &mut c, rel, d + 2);
            assert_eq!(s.lease_count(), 0);
            assert_eq!(c.state, IpoeState::Down);
            assert_eq!(c.malformed, 0);
        }
    }

    #[test]
    fn rebinds_at_t2_and_loses_the_lease_on_nak() {
        let mut s = server(600);
        let mut c = client(QINQ);
        let mut out = Vec::new();
        c.start(0, &mut out);
        exchange(&mut s, &mut c, out, 0);
        assert_eq!(c.state, IpoeState::Bound);
        let addr = Ipv4Addr::from(c.ip);
        // Renewals go unanswered (server down) until T2: then a broadcast REQUEST.
        let mut now = c.t1_at;
        let mut sent = Vec::new();
        c.poll(now, &mut sent);
        while c.state == IpoeState::Renewing {
            now = c.deadline().unwrap();
            sent.clear();
            c.poll(now, &mut sent);
        }
        assert_eq!(c.state, IpoeState::Rebinding);
        assert_eq!(now, c.t2_at);
        let (m, dst, eth_dst) = msg(&sent[0]);
        assert_eq!((dst, eth_dst), (Ipv4Addr::BROADCAST, [0xff; 6]));
        assert_eq!(m.ciaddr, addr);
        // The operator took the lease away meanwhile and another client got the
        // address: DHCPNAK, the session is lost.
        let key = ClientKey {
            vlans: QINQ,
            mac: MAC,
            client_id: None,
        };
        assert_eq!(s.revoke(&key), Some(addr));
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&[2, 0x5b, 0, 0, 0, 8]);
        for t in [MessageType::Discover, MessageType::Request] {
            let m = DhcpRepr {
                xid: 9,
                chaddr,
                message_type: Some(t),
                requested_ip: Some(addr),
                server_id: (t == MessageType::Request).then(|| s.config().server_id()),
                ..DhcpRepr::default()
            };
            let mut b = Vec::new();
            m.emit(&mut b).unwrap();
            let h = s.handle(now, QINQ, &b);
            let r = DhcpRepr::parse_bytes(&h.reply.unwrap().message).unwrap();
            assert_eq!(r.yiaddr, addr);
        }
        exchange(&mut s, &mut c, sent, now);
        assert_eq!(c.naks, 1);
        assert_eq!((c.state, c.ip, c.failed), (IpoeState::Down, 0, None));
        assert!(
            c.up_at.is_some(),
            "it was up: a lost session, not a failed setup"
        );
    }

    #[test]
    fn replies_of_other_transactions_and_broken_frames_are_ignored() {
        let mut s = server(3600);
        let mut c = client(QINQ);
        let mut out = Vec::new();
        c.start(0, &mut out);
        let r = wire::decap(&out[0]).unwrap();
        let offer = s.handle(0, r.vlans, r.message).reply.unwrap();
        let f = wire::encap(&offer, MacAddr(SERVER_MAC), s.config().server_id(), None);
        // Another line's tags, a cut frame, a wrong xid: nothing happens.
        let mut other = offer.clone();
        other.vlans = Vlans {
            svlan: 100,
            cvlan: 8,
        };
        let mut sent = Vec::new();
        c.input(
            &wire::encap(&other, MacAddr(SERVER_MAC), s.config().server_id(), None),
            1,
            &mut sent,
        );
        c.input(&f[..f.len() - 200], 1, &mut sent);
        let mut wrong = f.clone();
        let at = 14 + 8 + 20 + 8 + 4;
        wrong[at] ^= 0xff;
        c.input(&wrong, 1, &mut sent);
        assert!(sent.is_empty());
        assert_eq!(c.state, IpoeState::Selecting);
        assert!(c.malformed >= 1);
        assert_eq!(dhcp_reply_chaddr(&f), Some(MAC));
        c.input(&f, 2, &mut sent);
        assert_eq!(c.state, IpoeState::Requesting);
    }
}
