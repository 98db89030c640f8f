//! LCP (RFC 1661 §5–§6) option negotiation on the [`crate::fsm`] automaton, both roles:
//! the BNG (authenticator) requests MRU, Authentication-Protocol and Magic-Number; the
//! subscriber (client, used by the emulator) requests MRU and Magic-Number and accepts
//! PAP or CHAP-MD5. PFC and ACFC are rejected (RFC 2516 §7). MRU above PPP-Max-Payload
//! (RFC 4638 §3) is Nak'ed down. Echo-Request keepalive (§5.8) with a configurable
//! interval and failure count is [`Keepalive`].

use crate::fsm::{Negotiator, Output, Verdict};
use alloc::vec::Vec;
use dataplane::proto::ppp::{code, lcp_opt, proto, put_option, ControlPacket, Options, CHAP_MD5};

/// Authentication protocols we negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthProto {
    /// PAP (RFC 1334).
    Pap,
    /// CHAP with MD5 (RFC 1994).
    Chap,
}

impl AuthProto {
    fn option_value(self) -> &'static [u8] {
        match self {
            AuthProto::Pap => &[0xc0, 0x23],
            AuthProto::Chap => &[0xc2, 0x23, CHAP_MD5],
        }
    }
    fn from_option(v: &[u8]) -> Option<AuthProto> {
        match v {
            [0xc0, 0x23] => Some(AuthProto::Pap),
            [0xc2, 0x23, CHAP_MD5] => Some(AuthProto::Chap),
            _ => None,
        }
    }
}

/// Which end of the link we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The BNG: authenticates the peer.
    Server,
    /// The subscriber: is authenticated.
    Client,
}

/// LCP negotiation state.
#[derive(Debug, Clone)]
pub struct LcpNeg {
    role: Role,
    /// MRU we request (0 = do not request; default 1500 applies).
    pub our_mru: u16,
    /// Largest MRU we accept from the peer (PPP-Max-Payload or 1492).
    pub max_peer_mru: u16,
    /// MRU the peer asked for (what we may send), default 1500 capped to max.
    pub peer_mru: u16,
    /// Our magic number.
    pub our_magic: u32,
    /// The peer's magic number (0 = none).
    pub peer_magic: u32,
    /// Server: auth protocol we request; client: what the peer asked of us.
    pub auth: Option<AuthProto>,
    /// Server: auth protocols we may fall back to after a Nak.
    allowed: [Option<AuthProto>; 2],
    send_mru: bool,
    send_magic: bool,
}

impl LcpNeg {
    /// BNG side: request `auth` (and accept a Nak towards `alternative`).
    pub fn server(
        mru: u16,
        max_peer_mru: u16,
        magic: u32,
        auth: AuthProto,
        alternative: Option<AuthProto>,
    ) -> Self {
        LcpNeg {
            role: Role::Server,
            our_mru: mru,
            max_peer_mru,
            peer_mru: max_peer_mru.min(1500),
            our_magic: magic,
            peer_magic: 0,
            auth: Some(auth),
            allowed: [Some(auth), alternative],
            send_mru: true,
            send_magic: true,
        }
    }

    /// Subscriber side.
    pub fn client(mru: u16, magic: u32, accept: [Option<AuthProto>; 2]) -> Self {
        LcpNeg {
            role: Role::Client,
            our_mru: mru,
            max_peer_mru: 1500,
            peer_mru: 1492,
            our_magic: magic,
            peer_magic: 0,
            auth: None,
            allowed: accept,
            send_mru: true,
            send_magic: true,
        }
    }
}

impl Negotiator for LcpNeg {
    fn protocol(&self) -> u16 {
        proto::LCP
    }

    fn our_request(&mut self, out: &mut Vec<u8>) {
        if self.send_mru {
            put_option(out, lcp_opt::MRU, &self.our_mru.to_be_bytes());
        }
        if self.role == Role::Server {
            if let Some(a) = self.auth {
                put_option(out, lcp_opt::AUTH, a.option_value());
            }
        }
        if self.send_magic {
            put_option(out, lcp_opt::MAGIC, &self.our_magic.to_be_bytes());
        }
    }

    fn check_peer(&mut self, opts: &[u8], resp: &mut Vec<u8>) -> Verdict {
        let mut rej = Vec::new();
        let mut nak = Vec::new();
        let mut mru = None;
        let mut magic = None;
        let mut auth = None;
        for (t, v) in Options::new(opts).flatten() {
            match (t, v.len()) {
                (lcp_opt::MRU, 2) => {
                    let m = u16::from_be_bytes([v[0], v[1]]);
                    if m > self.max_peer_mru || m < 64 {
                        put_option(
                            &mut nak,
                            t,
                            &self.max_peer_mru.clamp(64, 1492).to_be_bytes(),
                        );
                    } else {
                        mru = Some(m);
                    }
                }
                (lcp_opt::MAGIC, 4) => {
                    let m = <[u8; 4]>::try_from(v).map_or(0, u32::from_be_bytes);
                    if m == 0 || m == self.our_magic {
                        // Possible loop-back (§6.4): suggest another number.
                        put_option(
                            &mut nak,
                            t,
                            &(self.our_magic ^ 0x5a5a_5a5a).max(1).to_be_bytes(),
                        );
                    } else {
                        magic = Some(m);
                    }
                }
                (lcp_opt::AUTH, _) if self.role == Role::Client => {
                    match AuthProto::from_option(v) {
                        Some(a) if self.allowed.contains(&Some(a)) => auth = Some(a),
                        _ => match self.allowed.iter().flatten().next() {
                            Some(a) => put_option(&mut nak, t, a.option_value()),
                            None => put_option(&mut rej, t, v),
                        },
                    }
                }
                _ => put_option(&mut rej, t, v),
            }
        }
        if !rej.is_empty() {
            resp.extend_from_slice(&rej);
            return Verdict::Reject;
        }
        if !nak.is_empty() {
            resp.extend_from_slice(&nak);
            return Verdict::Nak;
        }
        self.peer_mru = mru.unwrap_or(1500).min(self.max_peer_mru);
        self.peer_magic = magic.unwrap_or(0);
        if self.role == Role::Client {
            self.auth = auth;
        }
        Verdict::Ack
    }

    fn on_ack(&mut self, opts: &[u8]) -> bool {
        let mut mine = Vec::new();
        self.our_request(&mut mine);
        mine == opts
    }

    fn on_nak(&mut self, opts: &[u8]) {
        for (t, v) in Options::new(opts).flatten() {
            match (t, v.len()) {
                (lcp_opt::MRU, 2) => {
                    let m = u16::from_be_bytes([v[0], v[1]]);
                    if (64..=self.our_mru).contains(&m) {
                        self.our_mru = m;
                    }
                }
                (lcp_opt::MAGIC, 4) => {
                    self.our_magic = <[u8; 4]>::try_from(v).map_or(1, u32::from_be_bytes).max(1)
                }
                (lcp_opt::AUTH, _) if self.role == Role::Server => {
                    if let Some(a) = AuthProto::from_option(v) {
                        if self.allowed.contains(&Some(a)) {
                            self.auth = Some(a);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn on_reject(&mut self, opts: &[u8]) -> bool {
        for (t, _) in Options::new(opts).flatten() {
            match t {
                lcp_opt::MRU => self.send_mru = false,
                lcp_opt::MAGIC => self.send_magic = false,
                // The authenticator cannot do without authentication.
                lcp_opt::AUTH if self.role == Role::Server => return false,
                _ => {}
            }
        }
        true
    }

    fn other_code(&mut self, opened: bool, p: &ControlPacket<'_>, out: &mut Vec<Output>) -> bool {
        match p.code {
            code::ECHO_REQ => {
                if opened {
                    let mut d = Vec::with_capacity(p.data.len());
                    d.extend_from_slice(&self.our_magic.to_be_bytes());
                    d.extend_from_slice(p.data.get(4..).unwrap_or(&[]));
                    let mut f = Vec::new();
                    ControlPacket::emit_frame(proto::LCP, code::ECHO_REPLY, p.id, &d, &mut f);
                    out.push(Output::Send(f));
                }
                true
            }
            code::ECHO_REPLY => {
                if opened {
                    out.push(Output::EchoReply);
                }
                true
            }
            code::DISCARD_REQ => true,
            code::PROTO_REJ => {
                if let Some(&[a, b]) = p.data.get(..2) {
                    out.push(Output::ProtocolRejected(u16::from_be_bytes([a, b])));
                }
                true
            }
            _ => false,
        }
    }
}

/// LCP Echo keepalive (RFC 1661 §5.8): every `interval_ms` send an Echo-Request; after
/// `max_failures` unanswered requests the link is declared dead.
#[derive(Debug, Clone)]
pub struct Keepalive {
    interval_ms: u64,
    max_failures: u8,
    next: u64,
    outstanding: u8,
    id: u8,
}

/// What the keepalive wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepaliveAction {
    /// Nothing to do yet.
    Idle,
    /// Send this Echo-Request frame.
    Send(Vec<u8>),
    /// Too many unanswered requests: take the link down.
    Dead,
}

impl Keepalive {
    /// New keepalive starting at `now` (0 interval = disabled).
    pub fn new(interval_ms: u64, max_failures: u8, now: u64) -> Self {
        Keepalive {
            interval_ms,
            max_failures,
            next: now + interval_ms,
            outstanding: 0,
            id: 0,
        }
    }

    /// An Echo-Reply arrived.
    pub fn reply(&mut self) {
        self.outstanding = 0;
    }

    /// Next deadline.
    pub fn deadline(&self) -> Option<u64> {
        (self.interval_ms > 0).then_some(self.next)
    }

    /// Drive with the current time and our magic number.
    pub fn poll(&mut self, now: u64, magic: u32) -> KeepaliveAction {
        if self.interval_ms == 0 || now < self.next {
            return KeepaliveAction::Idle;
        }
        if self.outstanding >= self.max_failures {
            return KeepaliveAction::Dead;
        }
        self.outstanding += 1;
        self.next = now + self.interval_ms;
        self.id = self.id.wrapping_add(1);
        let mut f = Vec::new();
        ControlPacket::emit_frame(
            proto::LCP,
            code::ECHO_REQ,
            self.id,
            &magic.to_be_bytes(),
            &mut f,
        );
        KeepaliveAction::Send(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::tests::pump;
    use crate::fsm::{Fsm, State, Timers};

    fn sends(out: &mut Vec<Output>) -> Vec<Vec<u8>> {
        out.drain(..)
            .filter_map(|o| {
                if let Output::Send(f) = o {
                    Some(f)
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn server_and_client_agree_on_chap_after_nak() {
        // Server prefers PAP, may fall back to CHAP; client only does CHAP.
        let mut s = Fsm::new(
            LcpNeg::server(
                1492,
                1492,
                0x11111111,
                AuthProto::Pap,
                Some(AuthProto::Chap),
            ),
            Timers::default(),
            1,
        );
        let mut c = Fsm::new(
            LcpNeg::client(1492, 0x22222222, [Some(AuthProto::Chap), None]),
            Timers::default(),
            1,
        );
        let mut out = Vec::new();
        c.up(0, &mut out);
        c.open(0, &mut out);
        let fc = sends(&mut out);
        s.up(0, &mut out);
        s.open(0, &mut out);
        let mut fs = sends(&mut out);
        for f in fc {
            s.input(&f[2..], 0, &mut out).unwrap();
        }
        fs.extend(sends(&mut out));
        pump(&mut s, &mut c, fs, 0);
        assert_eq!(s.state(), State::Opened);
        assert_eq!(c.state(), State::Opened);
        assert_eq!(s.neg.auth, Some(AuthProto::Chap));
        assert_eq!(c.neg.auth, Some(AuthProto::Chap));
        assert_eq!(s.neg.peer_magic, 0x22222222);
        assert_eq!(c.neg.peer_mru, 1492);
    }

    #[test]
    fn rejects_pfc_and_naks_big_mru() {
        let mut n = LcpNeg::server(1492, 1492, 7, AuthProto::Pap, None);
        let mut resp = Vec::new();
        assert_eq!(
            n.check_peer(&[7, 2, 1, 4, 0x05, 0xdc], &mut resp),
            Verdict::Reject
        );
        assert_eq!(resp, [7, 2]);
        resp.clear();
        assert_eq!(n.check_peer(&[1, 4, 0x23, 0x28], &mut resp), Verdict::Nak);
        assert_eq!(resp, [1, 4, 0x05, 0xd4]);
        // Peer's magic equal to ours: Nak (loop-back suspicion).
        resp.clear();
        assert_eq!(n.check_peer(&[5, 6, 0, 0, 0, 7], &mut resp), Verdict::Nak);
    }

    #[test]
    fn echo_reply_and_keepalive() {
        let mut n = LcpNeg::server(1492, 1492, 0xabcdef01, AuthProto::Pap, None);
        let mut out = Vec::new();
        let p = ControlPacket {
            code: code::ECHO_REQ,
            id: 4,
            data: &[1, 2, 3, 4, 9],
        };
        assert!(n.other_code(true, &p, &mut out));
        let f = sends(&mut out);
        assert_eq!(f[0], [0xc0, 0x21, 10, 4, 0, 9, 0xab, 0xcd, 0xef, 0x01, 9]);
        let mut k = Keepalive::new(1000, 3, 0);
        assert_eq!(k.poll(999, 1), KeepaliveAction::Idle);
        assert!(matches!(k.poll(1000, 1), KeepaliveAction::Send(_)));
        assert!(matches!(k.poll(2000, 1), KeepaliveAction::Send(_)));
        k.reply();
        assert!(matches!(k.poll(3000, 1), KeepaliveAction::Send(_)));
        assert!(matches!(k.poll(4000, 1), KeepaliveAction::Send(_)));
        assert!(matches!(k.poll(5000, 1), KeepaliveAction::Send(_)));
        assert_eq!(k.poll(6000, 1), KeepaliveAction::Dead);
    }
}
