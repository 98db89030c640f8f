//! The subscriber side of PPPoE and PPP, for the emulator in [`super`] and for the
//! vBNG's tests and fuzz targets (a generator, so it lives here and not in the VNF; it
//! shares the engine's wire formats in `dataplane::proto` and the PPP automata of the
//! `vbng` crate): discovery (RFC 2516
//! §5.1–§5.4, PADI/PADR retransmission with doubling timeout), LCP (client role), PAP or
//! CHAP (client role), IPCP (asks for 0.0.0.0 and DNS, RFC 1332/1877), optional IPv6CP
//! (RFC 5072) followed by SLAAC over PPP: a Router Solicitation from
//! `fe80::<our interface identifier>` (RFC 4861 §6.3.7, up to three, 4 s apart), then the
//! address is the advertised /64 plus that identifier (RFC 4862 §5.5.3, RFC 5072 §5).
//! Produces and consumes whole Ethernet frames; time is passed in.

use dataplane::proto::ethernet::{Frame, MacAddr, Repr as EthRepr, Vlans};
use dataplane::proto::ppp::{proto, split_protocol};
use dataplane::proto::pppoe::{Code, DiscoveryRepr, DiscoveryTags, Packet, HEADER_LEN};
use dataplane::proto::EtherType;
use vbng::auth::{ClientAuth, ClientOutcome};
use vbng::fsm::{Fsm, Output, State, Timers};
use vbng::ipcp::{IpcpNeg, Ipv6cpNeg};
use vbng::lcp::{AuthProto, LcpNeg};

/// The types [`ClientParams`] is made of, re-exported so a user can build the
/// parameters with the same crate instance the emulator was compiled against (the
/// vBNG's own unit tests link a second copy of `vbng`; `Vlans` is the engine's
/// `dataplane::proto::ethernet::Vlans`).
pub mod params {
    pub use dataplane::proto::ethernet::Vlans;
    pub use vbng::fsm::Timers;
    pub use vbng::lcp::AuthProto;
}

/// Where a subscriber is in its setup (and where it failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClientPhase {
    /// PADI sent.
    Padi,
    /// PADR sent.
    Padr,
    /// LCP negotiating.
    Lcp,
    /// Authenticating.
    Auth,
    /// IPCP negotiating.
    Ipcp,
    /// Established.
    Up,
    /// Terminated (PADT sent or received after being up).
    Down,
}

impl ClientPhase {
    /// Name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientPhase::Padi => "padi",
            ClientPhase::Padr => "padr",
            ClientPhase::Lcp => "lcp",
            ClientPhase::Auth => "auth",
            ClientPhase::Ipcp => "ipcp",
            ClientPhase::Up => "up",
            ClientPhase::Down => "down",
        }
    }
}

/// Subscriber parameters (`Debug` prints the password as `<redacted>`).
#[derive(Clone)]
pub struct ClientParams {
    /// Our MAC.
    pub mac: [u8; 6],
    /// VLANs.
    pub vlans: Vlans,
    /// User name.
    pub user: Vec<u8>,
    /// Password.
    pub password: Vec<u8>,
    /// Auth protocols we accept.
    pub accept_auth: [Option<AuthProto>; 2],
    /// Service-Name requested (empty = any).
    pub service_name: Vec<u8>,
    /// Host-Uniq value (None = not sent).
    pub host_uniq: Option<Vec<u8>>,
    /// PPP-Max-Payload requested (RFC 4638).
    pub max_payload: Option<u16>,
    /// Restart timers.
    pub timers: Timers,
    /// Negotiate IPv6CP.
    pub ipv6cp: bool,
    /// Magic number seed (non-zero).
    pub magic: u32,
    /// Discovery attempts (PADI and PADR each).
    pub discovery_tries: u8,
}

impl core::fmt::Debug for ClientParams {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientParams")
            .field("mac", &self.mac)
            .field("vlans", &self.vlans)
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("password", &vbng::auth::REDACTED)
            .field("accept_auth", &self.accept_auth)
            .field("host_uniq", &self.host_uniq)
            .finish_non_exhaustive()
    }
}

/// One emulated subscriber.
#[derive(Debug, Clone)]
pub struct Subscriber {
    p: ClientParams,
    /// Phase.
    pub phase: ClientPhase,
    /// The phase in which setup failed, if it did.
    pub failed: Option<ClientPhase>,
    /// PPPoE session id.
    pub sid: u16,
    /// The access concentrator's MAC.
    pub ac_mac: [u8; 6],
    cookie: Option<Vec<u8>>,
    relay: Option<Vec<u8>>,
    disc_deadline: u64,
    disc_timeout: u64,
    disc_tries: u8,
    lcp: Option<Fsm<LcpNeg>>,
    auth: Option<ClientAuth>,
    ipcp: Option<Fsm<IpcpNeg>>,
    ipv6cp: Option<Fsm<Ipv6cpNeg>>,
    /// Assigned address (once up).
    pub ip: u32,
    /// Gateway address (IPCP peer).
    pub gateway: u32,
    /// When setup started (PADI), ms.
    pub started: u64,
    /// When IPCP opened, ms.
    pub up_at: Option<u64>,
    /// Malformed frames received.
    pub malformed: u64,
    /// Global IPv6 address formed by SLAAC from the RA (0 = none yet).
    pub ipv6: u128,
    /// The BNG's link-local address (the RA's source), our default router.
    pub ipv6_router: u128,
    /// First RDNSS address of the RA (0 = none).
    pub ipv6_dns: u128,
    /// When the address was formed, ms.
    pub ipv6_up_at: Option<u64>,
    /// Router Advertisements received.
    pub ra_received: u64,
    rs_deadline: Option<u64>,
    rs_left: u8,
}

/// RFC 4861 §10: MAX_RTR_SOLICITATIONS and RTR_SOLICITATION_INTERVAL (ms).
const MAX_RTR_SOLICITATIONS: u8 = 3;
const RTR_SOLICITATION_INTERVAL_MS: u64 = 4000;

/// An IPv6 datagram (RFC 8200 §3) carrying UDP (RFC 768, checksum per RFC 8200 §8.1)
/// of `ip_len` bytes in all (at least 48).
pub fn ipv6_udp(src: u128, dst: u128, ip_len: usize, sport: u16, dport: u16) -> Vec<u8> {
    let ip_len = ip_len.max(48);
    let ulen = (ip_len - 40) as u16;
    let mut v = Vec::with_capacity(ip_len);
    v.extend_from_slice(&[0x60, 0, 0, 0]);
    v.extend_from_slice(&ulen.to_be_bytes());
    v.extend_from_slice(&[17, 64]);
    v.extend_from_slice(&src.to_be_bytes());
    v.extend_from_slice(&dst.to_be_bytes());
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&ulen.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.resize(ip_len, 0x5a);
    let ph = dataplane::proto::checksum::pseudo_header_v6(
        &core::net::Ipv6Addr::from(src),
        &core::net::Ipv6Addr::from(dst),
        dataplane::proto::IpProtocol::UDP,
        u32::from(ulen),
    );
    let mut c = !dataplane::proto::checksum::add(
        ph,
        dataplane::proto::checksum::data(v.get(40..).unwrap_or(&[])),
    );
    if c == 0 {
        c = 0xffff;
    }
    if let Some(x) = v.get_mut(46..48) {
        x.copy_from_slice(&c.to_be_bytes());
    }
    v
}

impl Subscriber {
    /// A subscriber that has not started.
    pub fn new(p: ClientParams) -> Subscriber {
        Subscriber {
            p,
            phase: ClientPhase::Padi,
            failed: None,
            sid: 0,
            ac_mac: [0xff; 6],
            cookie: None,
            relay: None,
            disc_deadline: 0,
            disc_timeout: 0,
            disc_tries: 0,
            lcp: None,
            auth: None,
            ipcp: None,
            ipv6cp: None,
            ip: 0,
            gateway: 0,
            started: 0,
            up_at: None,
            malformed: 0,
            ipv6: 0,
            ipv6_router: 0,
            ipv6_dns: 0,
            ipv6_up_at: None,
            ra_received: 0,
            rs_deadline: None,
            rs_left: 0,
        }
    }

    /// Parameters.
    pub fn params(&self) -> &ClientParams {
        &self.p
    }

    fn eth(&self, ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
        let e = EthRepr {
            dst_addr: MacAddr(self.ac_mac),
            src_addr: MacAddr(self.p.mac),
            vlans: self.p.vlans.to_stack(),
            ethertype,
        };
        let mut f = vec![0u8; e.buffer_len()];
        let _ = e.emit(&mut Frame::new_unchecked(&mut f[..]));
        f.extend_from_slice(payload);
        f
    }

    fn disc_frame(&self, code: Code) -> Vec<u8> {
        let r = DiscoveryRepr {
            code,
            session_id: if code == Code::Padt { self.sid } else { 0 },
            tags: DiscoveryTags {
                service_name: (code != Code::Padt).then_some(self.p.service_name.as_slice()),
                host_uniq: self.p.host_uniq.as_deref(),
                ac_cookie: if code == Code::Padr {
                    self.cookie.as_deref()
                } else {
                    None
                },
                relay_session_id: self.relay.as_deref(),
                ppp_max_payload: if code == Code::Padt {
                    None
                } else {
                    self.p.max_payload
                },
                ..DiscoveryTags::default()
            },
        };
        let mut v = Vec::with_capacity(64);
        let _ = r.emit(&mut v);
        self.eth(EtherType::PPPOE_DISCOVERY, &v)
    }

    /// Build a session-stage frame carrying `ppp` (protocol + information).
    pub fn session_frame(&self, ppp: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + ppp.len());
        v.extend_from_slice(&[0x11, 0]);
        v.extend_from_slice(&self.sid.to_be_bytes());
        v.extend_from_slice(&(ppp.len() as u16).to_be_bytes());
        v.extend_from_slice(ppp);
        self.eth(EtherType::PPPOE_SESSION, &v)
    }

    fn fail(&mut self) {
        if self.failed.is_none() && self.phase != ClientPhase::Up {
            self.failed = Some(self.phase);
        }
    }

    /// Send the PADI.
    pub fn start(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        self.started = now;
        self.phase = ClientPhase::Padi;
        self.ac_mac = [0xff; 6];
        self.disc_tries = self.p.discovery_tries.max(1) - 1;
        self.disc_timeout = self.p.timers.restart_ms.min(1000);
        self.disc_deadline = now + self.disc_timeout;
        out.push(self.disc_frame(Code::Padi));
    }

    /// Send PADT and stop.
    pub fn terminate(&mut self, out: &mut Vec<Vec<u8>>) {
        if self.sid != 0 {
            out.push(self.disc_frame(Code::Padt));
        }
        self.phase = ClientPhase::Down;
    }

    fn ppp_out(&self, o: &mut Vec<Output>, out: &mut Vec<Vec<u8>>) -> (bool, bool) {
        let (mut up, mut down) = (false, false);
        for x in o.drain(..) {
            match x {
                Output::Send(f) => out.push(self.session_frame(&f)),
                Output::Up => up = true,
                Output::Finished => down = true,
                Output::Down => {}
                _ => {}
            }
        }
        (up, down)
    }

    /// Handle a frame addressed to us.
    pub fn input(&mut self, frame: &[u8], now: u64, out: &mut Vec<Vec<u8>>) {
        let Ok(eth) = Frame::new_checked(frame).and_then(|f| EthRepr::parse(&f)) else {
            self.malformed += 1;
            return;
        };
        let Some(payload) = frame.get(eth.buffer_len()..) else {
            return;
        };
        let Ok(pk) = Packet::new_checked(payload) else {
            self.malformed += 1;
            return;
        };
        match eth.ethertype {
            EtherType::PPPOE_DISCOVERY => {
                let Ok(r) = DiscoveryRepr::parse(&pk) else {
                    self.malformed += 1;
                    return;
                };
                // Offers and confirmations must echo our Host-Uniq (RFC 2516 §5.2, §5.4);
                // a PADT carries none.
                if r.code != Code::Padt && r.tags.host_uniq != self.p.host_uniq.as_deref() {
                    return;
                }
                match (r.code, self.phase) {
                    (Code::Pado, ClientPhase::Padi) => {
                        if r.tags.error.is_some() {
                            return;
                        }
                        self.ac_mac = eth.src_addr.0;
                        self.cookie = r.tags.ac_cookie.map(|c| c.to_vec());
                        self.relay = r.tags.relay_session_id.map(|c| c.to_vec());
                        self.phase = ClientPhase::Padr;
                        self.disc_tries = self.p.discovery_tries.max(1) - 1;
                        self.disc_timeout = self.p.timers.restart_ms.min(1000);
                        self.disc_deadline = now + self.disc_timeout;
                        out.push(self.disc_frame(Code::Padr));
                    }
                    (Code::Pads, ClientPhase::Padr) if eth.src_addr.0 == self.ac_mac => {
                        if r.session_id == 0 || r.tags.error.is_some() {
                            self.fail();
                            self.phase = ClientPhase::Down;
                            return;
                        }
                        self.sid = r.session_id;
                        self.phase = ClientPhase::Lcp;
                        let mru = r.tags.ppp_max_payload.unwrap_or(1492);
                        let mut lcp = Fsm::new(
                            LcpNeg::client(mru, self.p.magic.max(1), self.p.accept_auth),
                            self.p.timers,
                            1,
                        );
                        let mut o = Vec::new();
                        lcp.up(now, &mut o);
                        lcp.open(now, &mut o);
                        self.ppp_out(&mut o, out);
                        self.lcp = Some(lcp);
                    }
                    (Code::Padt, _)
                        if r.session_id == self.sid && eth.src_addr.0 == self.ac_mac =>
                    {
                        self.fail();
                        self.phase = ClientPhase::Down;
                    }
                    _ => {}
                }
            }
            EtherType::PPPOE_SESSION => {
                // Still answer LCP (Terminate-Ack) after a failure, so the BNG finishes cleanly.
                if pk.session_id() != self.sid || eth.src_addr.0 != self.ac_mac || self.sid == 0 {
                    return;
                }
                let ppp = pk.payload();
                if self.ppp_input(ppp, now, out).is_err() {
                    self.malformed += 1;
                }
            }
            _ => {}
        }
    }

    fn start_ncp(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        self.phase = ClientPhase::Ipcp;
        let mut o = Vec::new();
        let mut ipcp = Fsm::new(IpcpNeg::client(), self.p.timers, 1);
        ipcp.up(now, &mut o);
        ipcp.open(now, &mut o);
        self.ppp_out(&mut o, out);
        self.ipcp = Some(ipcp);
        if self.p.ipv6cp {
            let id = (u64::from(self.p.magic) << 16) | 0x1234;
            let mut f = Fsm::new(Ipv6cpNeg::new(id, id ^ 0xff), self.p.timers, 1);
            f.up(now, &mut o);
            f.open(now, &mut o);
            self.ppp_out(&mut o, out);
            self.ipv6cp = Some(f);
        }
    }

    fn ppp_input(
        &mut self,
        ppp: &[u8],
        now: u64,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), dataplane::proto::Error> {
        let (protocol, info) = split_protocol(ppp)?;
        let mut o = Vec::new();
        match protocol {
            proto::LCP => {
                let Some(mut lcp) = self.lcp.take() else {
                    return Ok(());
                };
                let r = lcp.input(info, now, &mut o);
                let renegotiating = o.contains(&Output::Down)
                    && matches!(lcp.state(), State::ReqSent | State::AckSent);
                let (up, down) = self.ppp_out(&mut o, out);
                let auth = lcp.neg.auth;
                self.lcp = Some(lcp);
                r?;
                if renegotiating && self.phase != ClientPhase::Down {
                    // The BNG renegotiated LCP (RFC 1661 §4.1): start over from LCP.
                    self.phase = ClientPhase::Lcp;
                    self.auth = None;
                    self.ipcp = None;
                    self.ipv6cp = None;
                    self.up_at = None;
                }
                if up && self.phase == ClientPhase::Lcp {
                    match auth {
                        Some(a) => {
                            self.phase = ClientPhase::Auth;
                            let mut c = ClientAuth::new(
                                a,
                                &self.p.user,
                                &self.p.password,
                                self.p.timers.restart_ms,
                            );
                            let mut frames = Vec::new();
                            c.start(now, &mut frames);
                            for f in frames {
                                out.push(self.session_frame(&f));
                            }
                            self.auth = Some(c);
                        }
                        None => self.start_ncp(now, out),
                    }
                }
                if down {
                    self.fail();
                    self.phase = ClientPhase::Down;
                }
            }
            proto::PAP | proto::CHAP => {
                let Some(mut a) = self.auth.take() else {
                    return Ok(());
                };
                let mut frames = Vec::new();
                let r = a.input(protocol, info, &mut frames);
                for f in frames {
                    out.push(self.session_frame(&f));
                }
                let outcome = a.outcome;
                self.auth = Some(a);
                r?;
                match outcome {
                    ClientOutcome::Success if self.phase == ClientPhase::Auth => {
                        self.start_ncp(now, out)
                    }
                    ClientOutcome::Failure => {
                        self.fail();
                        self.phase = ClientPhase::Down;
                    }
                    _ => {}
                }
            }
            proto::IPCP => {
                // The BNG starts IPCP only after authentication succeeded (RFC 1661
                // §3.5): an IPCP packet while we wait for a lost CHAP Success or PAP
                // Ack means success.
                if self.phase == ClientPhase::Auth
                    && self.auth.as_ref().is_some_and(|a| a.responded())
                {
                    self.start_ncp(now, out);
                }
                let Some(mut f) = self.ipcp.take() else {
                    return Ok(());
                };
                let r = f.input(info, now, &mut o);
                let (up, _) = self.ppp_out(&mut o, out);
                if up {
                    self.ip = f.neg.our_addr;
                    self.gateway = f.neg.peer_addr;
                    self.phase = ClientPhase::Up;
                    self.up_at = Some(now);
                }
                self.ipcp = Some(f);
                r?;
            }
            proto::IPV6CP => {
                if let Some(mut f) = self.ipv6cp.take() {
                    let r = f.input(info, now, &mut o);
                    let (up, _) = self.ppp_out(&mut o, out);
                    self.ipv6cp = Some(f);
                    r?;
                    if up {
                        self.rs_left = MAX_RTR_SOLICITATIONS;
                        self.send_rs(now, out);
                    }
                }
            }
            proto::IPV6 => self.ipv6_input(info, now),
            _ => {}
        }
        Ok(())
    }

    /// Our IPv6CP interface identifier once IPv6CP is open.
    pub fn interface_id(&self) -> Option<u64> {
        self.ipv6cp
            .as_ref()
            .filter(|f| f.state() == State::Opened)
            .map(|f| f.neg.our_id)
    }

    fn send_rs(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        let Some(iid) = self.interface_id() else {
            self.rs_deadline = None;
            return;
        };
        if self.rs_left == 0 || self.ipv6 != 0 {
            self.rs_deadline = None;
            return;
        }
        self.rs_left -= 1;
        self.rs_deadline = Some(now + RTR_SOLICITATION_INTERVAL_MS);
        let mut f = Vec::with_capacity(50);
        vbng::nd::router_solicitation(iid, &mut f);
        out.push(self.session_frame(&f));
    }

    fn ipv6_input(&mut self, ip: &[u8], now: u64) {
        let Ok(vbng::nd::Nd::RouterAdvert {
            src,
            slaac_prefix,
            dns,
            ..
        }) = vbng::nd::parse(ip)
        else {
            return;
        };
        self.ra_received += 1;
        let (Some(p), Some(iid)) = (slaac_prefix, self.interface_id()) else {
            return;
        };
        self.ipv6 = (u128::from(p) << 64) | u128::from(iid);
        self.ipv6_router = src;
        self.ipv6_dns = dns.unwrap_or(0);
        self.rs_deadline = None;
        if self.ipv6_up_at.is_none() {
            self.ipv6_up_at = Some(now);
        }
    }

    /// A PPPoE session frame carrying an IPv6 UDP datagram from our SLAAC address to
    /// `dst`, `frame_len` bytes on the wire, or `None` before the address is formed.
    pub fn ipv6_udp_frame(
        &self,
        dst: u128,
        frame_len: usize,
        sport: u16,
        dport: u16,
    ) -> Option<Vec<u8>> {
        if self.ipv6 == 0 || self.phase != ClientPhase::Up {
            return None;
        }
        let hdr = 14 + 4 * self.p.vlans.tag_count() + 8;
        let ip_len = frame_len.saturating_sub(hdr).clamp(48, 1492);
        let mut ppp = Vec::with_capacity(2 + ip_len);
        ppp.extend_from_slice(&proto::IPV6.to_be_bytes());
        ppp.extend_from_slice(&ipv6_udp(self.ipv6, dst, ip_len, sport, dport));
        Some(self.session_frame(&ppp))
    }

    /// Earliest time `poll` has work.
    pub fn deadline(&self) -> Option<u64> {
        let mut d = match self.phase {
            ClientPhase::Padi | ClientPhase::Padr if self.failed.is_none() => {
                Some(self.disc_deadline)
            }
            _ => None,
        };
        let mut m = |x: Option<u64>| {
            if let Some(x) = x {
                d = Some(d.map_or(x, |y: u64| y.min(x)));
            }
        };
        m(self.lcp.as_ref().and_then(|f| f.deadline()));
        m(self.auth.as_ref().and_then(|a| a.deadline()));
        m(self.ipcp.as_ref().and_then(|f| f.deadline()));
        m(self.ipv6cp.as_ref().and_then(|f| f.deadline()));
        m(self.rs_deadline);
        d
    }

    /// Drive timers.
    pub fn poll(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        if self.phase == ClientPhase::Down {
            return;
        }
        if matches!(self.phase, ClientPhase::Padi | ClientPhase::Padr) && now >= self.disc_deadline
        {
            if self.disc_tries == 0 {
                self.fail();
                self.phase = ClientPhase::Down;
                return;
            }
            self.disc_tries -= 1;
            self.disc_timeout = (self.disc_timeout * 2).min(8000);
            self.disc_deadline = now + self.disc_timeout;
            let c = if self.phase == ClientPhase::Padi {
                Code::Padi
            } else {
                Code::Padr
            };
            out.push(self.disc_frame(c));
        }
        let mut o = Vec::new();
        if let Some(mut f) = self.lcp.take() {
            f.poll(now, &mut o);
            let (_, down) = self.ppp_out(&mut o, out);
            let st = f.state();
            self.lcp = Some(f);
            if down || (st == State::Stopped && self.phase != ClientPhase::Up) {
                self.fail();
                self.phase = ClientPhase::Down;
                return;
            }
        }
        if let Some(mut a) = self.auth.take() {
            let mut frames = Vec::new();
            a.poll(now, &mut frames);
            for f in frames {
                out.push(self.session_frame(&f));
            }
            if a.outcome == ClientOutcome::Failure && self.phase == ClientPhase::Auth {
                self.fail();
                self.phase = ClientPhase::Down;
            }
            self.auth = Some(a);
        }
        if let Some(mut f) = self.ipcp.take() {
            f.poll(now, &mut o);
            self.ppp_out(&mut o, out);
            if f.state() == State::Stopped && self.phase == ClientPhase::Ipcp {
                self.fail();
                self.phase = ClientPhase::Down;
            }
            self.ipcp = Some(f);
        }
        if let Some(mut f) = self.ipv6cp.take() {
            f.poll(now, &mut o);
            self.ppp_out(&mut o, out);
            self.ipv6cp = Some(f);
        }
        if self.rs_deadline.is_some_and(|t| t <= now) {
            self.send_rs(now, out);
        }
    }
}
