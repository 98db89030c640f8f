//! One subscriber's PPP link on the BNG (RFC 1661 §3.2 phase diagram): Link
//! Establishment (LCP), Authentication (PAP/CHAP, verdict from AAA), Network-Layer
//! Protocol (IPCP, optionally IPv6CP), Link Termination; LCP echo keepalive; unknown
//! protocols are Protocol-Rejected (§5.7); NCP packets before the Network phase are
//! silently discarded (§3.5 / §4).

use crate::auth::{AuthEvent, Credentials, ServerAuth};
use crate::fsm::{Fsm, Output, State, Timers};
use crate::ipcp::{IpcpNeg, Ipv6cpNeg};
use crate::lcp::{AuthProto, Keepalive, KeepaliveAction, LcpNeg};
use crate::rng::Rng;
use alloc::vec::Vec;
use dataplane::proto::ppp::{code, proto, split_protocol, ControlPacket};

/// Phase of the link (RFC 1661 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// LCP negotiating.
    Establish,
    /// Waiting for the subscriber's credentials.
    Authenticate,
    /// Credentials handed to AAA, waiting for the verdict.
    Aaa,
    /// NCPs negotiating.
    Network,
    /// IPCP opened: forwarding.
    Up,
    /// Terminating or finished.
    Closed,
}

impl Phase {
    /// Short name for `show sessions`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Establish => "lcp",
            Phase::Authenticate => "auth",
            Phase::Aaa => "aaa",
            Phase::Network => "ncp",
            Phase::Up => "up",
            Phase::Closed => "closed",
        }
    }
}

/// Why a link ended (maps to Acct-Terminate-Cause).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    /// The subscriber terminated (LCP Terminate-Request, PADT).
    UserRequest,
    /// Keepalive failed.
    LostCarrier,
    /// Negotiation failed (LCP/IPCP gave up).
    NegotiationFailed,
    /// Authentication failed or timed out.
    AuthFailed,
    /// We terminated (admin, timeout).
    Admin,
}

/// What the link asks of the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessEvent {
    /// Send this PPP frame inside PPPoE.
    Send(Vec<u8>),
    /// Verify these credentials, then call [`PppSession::auth_result`].
    Verify(Credentials),
    /// IPCP opened: install the session in the fast path.
    NetworkUp,
    /// IPv6CP opened (interface identifiers agreed).
    Ipv6Up,
    /// IPv6CP left the Opened state (the peer's Terminate-Request or a renegotiation,
    /// RFC 1661 §4.2 This-Layer-Down) or gave up: stop routing the /64, keep IPv4.
    Ipv6Down,
    /// IPCP left the Opened state (the peer's Terminate-Request, a renegotiation, or
    /// IPCP gave up) while IPv6CP carries on (RFC 1661 §3.7: each NCP opens and closes
    /// on its own): stop routing the IPv4 address, keep the link and IPv6. IPCP
    /// coming back up raises [`SessEvent::NetworkUp`] again.
    Ipv4Down,
    /// The link is finished; remove it.
    Ended(EndCause),
    /// The peer renegotiated LCP (RFC 1661 §4.1, RCR in Opened): authentication and
    /// the NCPs start over; forwarding stops until IPCP is up again.
    Renegotiate,
}

/// Per-link parameters.
#[derive(Debug, Clone)]
pub struct LinkParams {
    /// Our MRU.
    pub mru: u16,
    /// Largest MRU accepted from the peer (PPP-Max-Payload).
    pub max_peer_mru: u16,
    /// Auth protocol requested.
    pub auth: AuthProto,
    /// Fallback auth protocol.
    pub auth_fallback: Option<AuthProto>,
    /// CHAP name.
    pub name: Vec<u8>,
    /// Restart timers.
    pub timers: Timers,
    /// Keepalive interval, ms (0 = off).
    pub keepalive_ms: u64,
    /// Keepalive failures.
    pub keepalive_failures: u8,
    /// Gateway address.
    pub gateway: u32,
    /// DNS servers.
    pub dns: [u32; 2],
    /// Negotiate IPv6CP.
    pub ipv6cp: bool,
}

/// One PPP link, server side.
#[derive(Debug, Clone)]
pub struct PppSession {
    /// LCP automaton.
    pub lcp: Fsm<LcpNeg>,
    keepalive: Keepalive,
    auth: Option<ServerAuth>,
    /// IPCP automaton (after authentication).
    pub ipcp: Option<Fsm<IpcpNeg>>,
    /// IPv6CP automaton (after authentication, if enabled).
    pub ipv6cp: Option<Fsm<Ipv6cpNeg>>,
    /// Phase.
    pub phase: Phase,
    ended: bool,
}

/// Whether an NCP in `state` is open or still negotiating (not finished, not
/// terminating).
fn ncp_alive(state: Option<State>) -> bool {
    matches!(
        state,
        Some(State::ReqSent | State::AckRcvd | State::AckSent | State::Opened)
    )
}

fn relay(out: &mut Vec<Output>, ev: &mut Vec<SessEvent>) -> (bool, bool, bool, bool) {
    let (mut up, mut down, mut fin, mut echo) = (false, false, false, false);
    for o in out.drain(..) {
        match o {
            Output::Send(f) => ev.push(SessEvent::Send(f)),
            Output::Up => up = true,
            Output::Down => down = true,
            Output::Finished => fin = true,
            Output::EchoReply => echo = true,
            Output::Started | Output::ProtocolRejected(_) => {}
        }
    }
    (up, down, fin, echo)
}

impl PppSession {
    /// Start the link (PADS sent): LCP Up + Open, our Configure-Request goes out.
    pub fn start(p: &LinkParams, rng: &mut Rng, now: u64, ev: &mut Vec<SessEvent>) -> PppSession {
        let neg = LcpNeg::server(
            p.mru,
            p.max_peer_mru,
            rng.nonzero_u32(),
            p.auth,
            p.auth_fallback,
        );
        let mut s = PppSession {
            lcp: Fsm::new(neg, p.timers, 1),
            keepalive: Keepalive::new(0, 0, now),
            auth: None,
            ipcp: None,
            ipv6cp: None,
            phase: Phase::Establish,
            ended: false,
        };
        let mut out = Vec::new();
        s.lcp.up(now, &mut out);
        s.lcp.open(now, &mut out);
        relay(&mut out, ev);
        s
    }

    fn end(&mut self, cause: EndCause, ev: &mut Vec<SessEvent>) {
        if !self.ended {
            self.ended = true;
            self.phase = Phase::Closed;
            ev.push(SessEvent::Ended(cause));
        }
    }

    fn lcp_outputs(
        &mut self,
        p: &LinkParams,
        rng: &mut Rng,
        out: &mut Vec<Output>,
        now: u64,
        ev: &mut Vec<SessEvent>,
    ) {
        let (up, down, fin, echo) = relay(out, ev);
        if echo {
            self.keepalive.reply();
        }
        if up && self.phase == Phase::Establish {
            self.phase = Phase::Authenticate;
            self.keepalive = Keepalive::new(p.keepalive_ms, p.keepalive_failures, now);
            let proto = self.lcp.neg.auth.unwrap_or(p.auth);
            let mut a = ServerAuth::new(proto, &p.name, p.timers.restart_ms);
            let mut aev = Vec::new();
            a.start(now, rng, &mut aev);
            self.auth = Some(a);
            self.auth_events(aev, ev);
        }
        if down
            && !fin
            && matches!(self.lcp.state(), State::ReqSent | State::AckSent)
            && self.phase != Phase::Closed
        {
            // Renegotiation: back to Link Establishment.
            self.phase = Phase::Establish;
            self.auth = None;
            self.ipcp = None;
            self.ipv6cp = None;
            ev.push(SessEvent::Renegotiate);
            return;
        }
        if down || fin {
            let cause = if self.lcp.failed || (fin && self.phase == Phase::Establish) {
                EndCause::NegotiationFailed
            } else if matches!(self.lcp.state(), State::Stopping | State::Stopped) {
                EndCause::UserRequest
            } else {
                EndCause::Admin
            };
            if fin || self.lcp.state() != State::Closing {
                self.end(cause, ev);
            } else {
                self.phase = Phase::Closed;
            }
        }
    }

    fn auth_events(&mut self, aev: Vec<AuthEvent>, ev: &mut Vec<SessEvent>) {
        for e in aev {
            match e {
                AuthEvent::Send(f) => ev.push(SessEvent::Send(f)),
                AuthEvent::Verify(c) => {
                    self.phase = Phase::Aaa;
                    ev.push(SessEvent::Verify(c));
                }
                AuthEvent::Timeout => self.end(EndCause::AuthFailed, ev),
            }
        }
    }

    /// Feed a PPP frame (protocol + information) from the subscriber. Errors are
    /// malformed packets (counted by the caller); the link state is unchanged by them.
    pub fn input(
        &mut self,
        p: &LinkParams,
        rng: &mut Rng,
        frame: &[u8],
        now: u64,
        ev: &mut Vec<SessEvent>,
    ) -> Result<(), dataplane::proto::Error> {
        let (protocol, info) = split_protocol(frame)?;
        let mut out = Vec::new();
        match protocol {
            proto::LCP => {
                self.lcp.input(info, now, &mut out)?;
                self.lcp_outputs(p, rng, &mut out, now, ev);
            }
            proto::PAP | proto::CHAP => {
                if let Some(a) = self.auth.as_mut() {
                    let mut aev = Vec::new();
                    a.input(protocol, info, &mut aev)?;
                    self.auth_events(aev, ev);
                }
            }
            proto::IPCP => {
                if let Some(f) = self.ipcp.as_mut() {
                    f.input(info, now, &mut out)?;
                    let (up, down, fin, _) = relay(&mut out, ev);
                    if down || fin {
                        self.ncp_down(true, fin, now, ev);
                    }
                    if up && !self.ended {
                        self.phase = Phase::Up;
                        ev.push(SessEvent::NetworkUp);
                    }
                }
            }
            proto::IPV6CP if p.ipv6cp => {
                if let Some(f) = self.ipv6cp.as_mut() {
                    f.input(info, now, &mut out)?;
                    let (up, down, fin, _) = relay(&mut out, ev);
                    if down || fin {
                        self.ncp_down(false, fin, now, ev);
                    }
                    if up && !self.ended {
                        self.phase = Phase::Up;
                        ev.push(SessEvent::Ipv6Up);
                    }
                }
            }
            _ => {
                // Protocol-Reject (RFC 1661 §5.7) only in the Opened state.
                if self.lcp.state() == State::Opened {
                    let mut d = Vec::with_capacity(frame.len().min(1400));
                    d.extend_from_slice(frame.get(..frame.len().min(1400)).unwrap_or(frame));
                    let mut f = Vec::new();
                    ControlPacket::emit_frame(
                        proto::LCP,
                        code::PROTO_REJ,
                        rng.u32() as u8,
                        &d,
                        &mut f,
                    );
                    ev.push(SessEvent::Send(f));
                }
            }
        }
        Ok(())
    }

    /// An NCP (IPCP when `v4`, else IPv6CP) left the Opened state (`fin`: it finished,
    /// RFC 1661 §4.4 This-Layer-Finished, rather than renegotiating). Each NCP comes
    /// and goes on its own while the other still runs (RFC 1661 §3.7, RFC 5072 §1);
    /// when the last one has finished, the link has no use left and we close it.
    fn ncp_down(&mut self, v4: bool, fin: bool, now: u64, ev: &mut Vec<SessEvent>) {
        ev.push(if v4 {
            SessEvent::Ipv4Down
        } else {
            SessEvent::Ipv6Down
        });
        let other_alive = if v4 {
            ncp_alive(self.ipv6cp.as_ref().map(|f| f.state()))
        } else {
            ncp_alive(self.ipcp.as_ref().map(|f| f.state()))
        };
        if fin && !other_alive {
            self.terminate(now, ev);
        }
    }

    /// The AAA verdict. On success the subscriber gets `assigned` (and NCPs start).
    #[allow(clippy::too_many_arguments)]
    pub fn auth_result(
        &mut self,
        p: &LinkParams,
        ok: bool,
        assigned: u32,
        iid: (u64, u64),
        msg: &[u8],
        now: u64,
        ev: &mut Vec<SessEvent>,
    ) {
        let Some(a) = self.auth.as_mut() else { return };
        let mut aev = Vec::new();
        a.result(ok, msg, &mut aev);
        self.auth_events(aev, ev);
        if !ok {
            // RFC 1994 §4.4 / RFC 1334 §2.2.2: the authenticator SHOULD take the link down.
            self.terminate(now, ev);
            return;
        }
        self.phase = Phase::Network;
        let mut out = Vec::new();
        let mut ipcp = Fsm::new(IpcpNeg::server(p.gateway, assigned, p.dns), p.timers, 1);
        ipcp.up(now, &mut out);
        ipcp.open(now, &mut out);
        relay(&mut out, ev);
        self.ipcp = Some(ipcp);
        if p.ipv6cp {
            let mut f = Fsm::new(Ipv6cpNeg::new(iid.0, iid.1), p.timers, 1);
            f.up(now, &mut out);
            f.open(now, &mut out);
            relay(&mut out, ev);
            self.ipv6cp = Some(f);
        }
    }

    /// Take the link down from our side (LCP Terminate-Request).
    pub fn terminate(&mut self, now: u64, ev: &mut Vec<SessEvent>) {
        let mut out = Vec::new();
        self.lcp.close(now, &mut out);
        relay(&mut out, ev);
        self.phase = Phase::Closed;
        if self.lcp.state() != State::Closing {
            self.end(EndCause::Admin, ev);
        }
    }

    /// Whether IPCP is open or still negotiating (it may yet bring IPv4 up).
    pub fn ipcp_alive(&self) -> bool {
        ncp_alive(self.ipcp.as_ref().map(|f| f.state()))
    }

    /// Whether the link has ended.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Earliest time `poll` has work.
    pub fn deadline(&self) -> Option<u64> {
        let mut d = self.lcp.deadline();
        let mut m = |x: Option<u64>| {
            if let Some(x) = x {
                d = Some(d.map_or(x, |y| y.min(x)));
            }
        };
        if self.lcp.state() == State::Opened {
            m(self.keepalive.deadline());
        }
        m(self.auth.as_ref().and_then(|a| a.deadline()));
        m(self.ipcp.as_ref().and_then(|f| f.deadline()));
        m(self.ipv6cp.as_ref().and_then(|f| f.deadline()));
        d
    }

    /// Drive timers.
    pub fn poll(&mut self, p: &LinkParams, rng: &mut Rng, now: u64, ev: &mut Vec<SessEvent>) {
        let mut out = Vec::new();
        self.lcp.poll(now, &mut out);
        self.lcp_outputs(p, rng, &mut out, now, ev);
        if self.ended {
            return;
        }
        if self.lcp.state() == State::Opened {
            match self.keepalive.poll(now, self.lcp.neg.our_magic) {
                KeepaliveAction::Send(f) => ev.push(SessEvent::Send(f)),
                KeepaliveAction::Dead => {
                    self.terminate(now, ev);
                    // The peer is gone: do not wait for a Terminate-Ack.
                    self.end(EndCause::LostCarrier, ev);
                    return;
                }
                KeepaliveAction::Idle => {}
            }
        }
        if let Some(a) = self.auth.as_mut() {
            let mut aev = Vec::new();
            a.poll(now, &mut aev);
            self.auth_events(aev, ev);
        }
        if let Some(f) = self.ipcp.as_mut() {
            f.poll(now, &mut out);
            let (_, _, fin, _) = relay(&mut out, ev);
            if fin {
                self.ncp_down(true, true, now, ev);
                if self.phase == Phase::Closed && !self.ended {
                    // No NCP came up: negotiation failed.
                    self.end(EndCause::NegotiationFailed, ev);
                }
            }
        }
        if self.ended {
            return;
        }
        if let Some(f) = self.ipv6cp.as_mut() {
            f.poll(now, &mut out);
            let (_, down, fin, _) = relay(&mut out, ev);
            if down || fin {
                self.ncp_down(false, fin, now, ev);
            }
        }
    }
}
