//! PPP authentication phase: PAP (RFC 1334 §2) and CHAP with MD5 (RFC 1994 §2–§4), both
//! roles. The BNG side ([`ServerAuth`]) collects credentials and hands them to AAA
//! (RADIUS or the local user file) and sends the verdict; the subscriber side
//! ([`ClientAuth`]) is used by the emulator. Restart timers are driven by passed-in time.
//!
//! Passwords and CHAP values never reach a log: the types holding them print
//! `<redacted>` in `Debug` and zero them on drop.

use crate::lcp::AuthProto;
use crate::rng::Rng;
use alloc::vec::Vec;
use dataplane::proto::ppp::{proto, ChapRepr, ControlPacket, PapRepr};
use dataplane::proto::radius::chap_md5;

/// Printed by `Debug` in place of a secret: `<redacted>`.
pub const REDACTED: Redacted = Redacted;

/// See [`REDACTED`].
#[derive(Clone, Copy)]
pub struct Redacted;

impl core::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Credentials presented by a subscriber. `Debug` shows the user name only; the
/// password (PAP) and the CHAP values are zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// PAP: user name and cleartext password.
    Pap {
        /// Peer-ID.
        user: Vec<u8>,
        /// Password.
        password: Vec<u8>,
    },
    /// CHAP-MD5: user name, identifier, our challenge and the peer's response.
    Chap {
        /// Name.
        user: Vec<u8>,
        /// CHAP Identifier.
        id: u8,
        /// The challenge we sent.
        challenge: [u8; 16],
        /// The 16-byte response.
        response: [u8; 16],
    },
}

impl core::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (kind, user) = match self {
            Credentials::Pap { user, .. } => ("Pap", user),
            Credentials::Chap { user, .. } => ("Chap", user),
        };
        f.debug_struct(kind)
            .field("user", &alloc::string::String::from_utf8_lossy(user))
            .field("secret", &REDACTED)
            .finish()
    }
}

impl Drop for Credentials {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        match self {
            Credentials::Pap { password, .. } => password.zeroize(),
            Credentials::Chap {
                challenge,
                response,
                ..
            } => {
                challenge.zeroize();
                response.zeroize();
            }
        }
    }
}

impl Credentials {
    /// The user name.
    pub fn user(&self) -> &[u8] {
        match self {
            Credentials::Pap { user, .. } | Credentials::Chap { user, .. } => user,
        }
    }

    /// Check against a known cleartext password (local user file).
    pub fn check(&self, password: &[u8]) -> bool {
        match self {
            Credentials::Pap { password: p, .. } => p.as_slice() == password,
            Credentials::Chap {
                id,
                challenge,
                response,
                ..
            } => chap_md5(*id, password, challenge) == *response,
        }
    }
}

/// What the server side of authentication asks of its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthEvent {
    /// Send this PPP frame.
    Send(Vec<u8>),
    /// Verify these credentials and call [`ServerAuth::result`].
    Verify(Credentials),
    /// The peer did not authenticate in time.
    Timeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Waiting,
    Verifying,
    Done(bool),
}

/// BNG side of PAP/CHAP.
#[derive(Debug, Clone)]
pub struct ServerAuth {
    proto: AuthProto,
    phase: Phase,
    challenge: [u8; 16],
    id: u8,
    deadline: u64,
    retries: u8,
    restart_ms: u64,
    result_frame: Vec<u8>,
    name: Vec<u8>,
}

impl ServerAuth {
    /// New, idle. `name` is our CHAP name.
    pub fn new(proto: AuthProto, name: &[u8], restart_ms: u64) -> Self {
        ServerAuth {
            proto,
            phase: Phase::Idle,
            challenge: [0; 16],
            id: 0,
            deadline: 0,
            retries: 0,
            restart_ms,
            result_frame: Vec::new(),
            name: name.to_vec(),
        }
    }

    /// The protocol in use.
    pub fn proto(&self) -> AuthProto {
        self.proto
    }

    fn challenge_frame(&self) -> Vec<u8> {
        let mut f = Vec::new();
        ChapRepr::Challenge {
            value: &self.challenge,
            name: &self.name,
        }
        .emit_frame(self.id, &mut f);
        f
    }

    /// Start the phase (LCP opened). CHAP sends a Challenge.
    pub fn start(&mut self, now: u64, rng: &mut Rng, out: &mut Vec<AuthEvent>) {
        self.phase = Phase::Waiting;
        self.retries = 10;
        // PAP waits up to 10 restart intervals for the peer's request.
        self.deadline = now + self.restart_ms * if self.proto == AuthProto::Pap { 10 } else { 1 };
        if self.proto == AuthProto::Chap {
            self.challenge = rng.bytes16();
            self.id = (rng.u32() & 0xff) as u8;
            out.push(AuthEvent::Send(self.challenge_frame()));
        }
    }

    /// Feed a PAP or CHAP packet. Malformed input is an error and changes nothing.
    pub fn input(
        &mut self,
        protocol: u16,
        info: &[u8],
        out: &mut Vec<AuthEvent>,
    ) -> Result<(), dataplane::proto::Error> {
        let p = ControlPacket::parse(info)?;
        match (self.proto, protocol) {
            (AuthProto::Pap, proto::PAP) => {
                let PapRepr::Request { peer_id, password } = PapRepr::parse(&p)? else {
                    return Err(dataplane::proto::Error::Malformed);
                };
                match self.phase {
                    Phase::Waiting => {
                        self.id = p.id;
                        self.phase = Phase::Verifying;
                        out.push(AuthEvent::Verify(Credentials::Pap {
                            user: peer_id.to_vec(),
                            password: password.to_vec(),
                        }));
                    }
                    // A retransmitted request after the verdict: repeat the verdict.
                    Phase::Done(_) if p.id == self.id => {
                        out.push(AuthEvent::Send(self.result_frame.clone()))
                    }
                    _ => {}
                }
            }
            (AuthProto::Chap, proto::CHAP) => {
                let ChapRepr::Response { value, name } = ChapRepr::parse(&p)? else {
                    return Err(dataplane::proto::Error::Malformed);
                };
                if p.id != self.id {
                    return Ok(());
                }
                match self.phase {
                    Phase::Waiting => {
                        let response: [u8; 16] = value
                            .try_into()
                            .map_err(|_| dataplane::proto::Error::Malformed)?;
                        self.phase = Phase::Verifying;
                        out.push(AuthEvent::Verify(Credentials::Chap {
                            user: name.to_vec(),
                            id: p.id,
                            challenge: self.challenge,
                            response,
                        }));
                    }
                    Phase::Done(_) => out.push(AuthEvent::Send(self.result_frame.clone())),
                    _ => {}
                }
            }
            _ => return Err(dataplane::proto::Error::Malformed),
        }
        Ok(())
    }

    /// Deliver the AAA verdict; sends Ack/Success or Nak/Failure.
    pub fn result(&mut self, ok: bool, message: &[u8], out: &mut Vec<AuthEvent>) {
        if self.phase != Phase::Verifying {
            return;
        }
        self.phase = Phase::Done(ok);
        let mut f = Vec::new();
        match (self.proto, ok) {
            (AuthProto::Pap, true) => PapRepr::Ack(message).emit_frame(self.id, &mut f),
            (AuthProto::Pap, false) => PapRepr::Nak(message).emit_frame(self.id, &mut f),
            (AuthProto::Chap, true) => ChapRepr::Success(message).emit_frame(self.id, &mut f),
            (AuthProto::Chap, false) => ChapRepr::Failure(message).emit_frame(self.id, &mut f),
        }
        self.result_frame = f.clone();
        out.push(AuthEvent::Send(f));
    }

    /// The verdict, once given.
    pub fn done(&self) -> Option<bool> {
        match self.phase {
            Phase::Done(ok) => Some(ok),
            _ => None,
        }
    }

    /// Next deadline while waiting for the peer.
    pub fn deadline(&self) -> Option<u64> {
        (self.phase == Phase::Waiting).then_some(self.deadline)
    }

    /// Drive timers: CHAP retransmits its Challenge; give up after the retries.
    pub fn poll(&mut self, now: u64, out: &mut Vec<AuthEvent>) {
        if self.phase != Phase::Waiting || now < self.deadline {
            return;
        }
        if self.proto == AuthProto::Chap && self.retries > 0 {
            self.retries -= 1;
            self.deadline = now + self.restart_ms;
            out.push(AuthEvent::Send(self.challenge_frame()));
        } else {
            self.phase = Phase::Done(false);
            out.push(AuthEvent::Timeout);
        }
    }
}

/// Outcome on the subscriber side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOutcome {
    /// Still in progress.
    Pending,
    /// Authenticated.
    Success,
    /// Rejected or timed out.
    Failure,
}

/// Subscriber side of PAP/CHAP (`Debug` redacts the password; zeroed on drop).
#[derive(Clone)]
pub struct ClientAuth {
    proto: AuthProto,
    user: Vec<u8>,
    password: Vec<u8>,
    id: u8,
    deadline: Option<u64>,
    retries: u8,
    restart_ms: u64,
    responded: bool,
    /// Result so far.
    pub outcome: ClientOutcome,
}

impl core::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("proto", &self.proto)
            .field("user", &alloc::string::String::from_utf8_lossy(&self.user))
            .field("password", &REDACTED)
            .field("id", &self.id)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl Drop for ClientAuth {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.password);
    }
}

impl ClientAuth {
    /// New client for `proto` (what LCP agreed).
    pub fn new(proto: AuthProto, user: &[u8], password: &[u8], restart_ms: u64) -> Self {
        ClientAuth {
            proto,
            user: user.to_vec(),
            password: password.to_vec(),
            id: 0,
            deadline: None,
            retries: 0,
            restart_ms,
            responded: false,
            outcome: ClientOutcome::Pending,
        }
    }

    fn pap_frame(&self) -> Vec<u8> {
        let mut f = Vec::new();
        PapRepr::Request {
            peer_id: &self.user,
            password: &self.password,
        }
        .emit_frame(self.id, &mut f);
        f
    }

    /// Start (LCP opened): PAP sends its request; CHAP waits for a Challenge.
    pub fn start(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        if self.proto == AuthProto::Pap {
            self.id = 1;
            self.retries = 10;
            self.deadline = Some(now + self.restart_ms);
            self.responded = true;
            out.push(self.pap_frame());
        } else {
            self.deadline = Some(now + self.restart_ms * 10);
        }
    }

    /// Feed a PAP or CHAP packet.
    pub fn input(
        &mut self,
        protocol: u16,
        info: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), dataplane::proto::Error> {
        let p = ControlPacket::parse(info)?;
        match protocol {
            proto::PAP => match PapRepr::parse(&p)? {
                PapRepr::Ack(_) if p.id == self.id => {
                    self.outcome = ClientOutcome::Success;
                    self.deadline = None;
                }
                PapRepr::Nak(_) if p.id == self.id => {
                    self.outcome = ClientOutcome::Failure;
                    self.deadline = None;
                }
                _ => {}
            },
            proto::CHAP => match ChapRepr::parse(&p)? {
                ChapRepr::Challenge { value, .. } => {
                    self.id = p.id;
                    let r = chap_md5(p.id, &self.password, value);
                    let mut f = Vec::new();
                    ChapRepr::Response {
                        value: &r,
                        name: &self.user,
                    }
                    .emit_frame(p.id, &mut f);
                    self.responded = true;
                    out.push(f);
                }
                ChapRepr::Success(_) if p.id == self.id => {
                    self.outcome = ClientOutcome::Success;
                    self.deadline = None;
                }
                ChapRepr::Failure(_) if p.id == self.id => {
                    self.outcome = ClientOutcome::Failure;
                    self.deadline = None;
                }
                _ => {}
            },
            _ => return Err(dataplane::proto::Error::Malformed),
        }
        Ok(())
    }

    /// Drive timers (PAP retransmission, overall timeout).
    pub fn poll(&mut self, now: u64, out: &mut Vec<Vec<u8>>) {
        let Some(d) = self.deadline else { return };
        if now < d {
            return;
        }
        if self.proto == AuthProto::Pap && self.retries > 0 {
            self.retries -= 1;
            self.deadline = Some(now + self.restart_ms);
            out.push(self.pap_frame());
        } else {
            self.deadline = None;
            self.outcome = ClientOutcome::Failure;
        }
    }

    /// Next deadline.
    pub fn deadline(&self) -> Option<u64> {
        self.deadline
    }

    /// Whether we have sent our credentials (PAP request or CHAP response).
    pub fn responded(&self) -> bool {
        self.responded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(
        proto: AuthProto,
        client_pw: &[u8],
        server_pw: &[u8],
    ) -> (Option<bool>, ClientOutcome) {
        let mut rng = Rng::from_seed([3; 32]);
        let mut s = ServerAuth::new(proto, b"vbng", 3000);
        let mut c = ClientAuth::new(proto, b"alice", client_pw, 3000);
        let mut se = Vec::new();
        let mut cf = Vec::new();
        s.start(0, &mut rng, &mut se);
        c.start(0, &mut cf);
        for _ in 0..4 {
            for e in core::mem::take(&mut se) {
                match e {
                    AuthEvent::Send(f) => {
                        let p = u16::from_be_bytes([f[0], f[1]]);
                        c.input(p, &f[2..], &mut cf).unwrap();
                    }
                    AuthEvent::Verify(cr) => {
                        assert_eq!(cr.user(), b"alice");
                        let ok = cr.check(server_pw);
                        s.result(ok, b"msg", &mut se);
                    }
                    AuthEvent::Timeout => panic!("timeout"),
                }
            }
            for f in core::mem::take(&mut cf) {
                let p = u16::from_be_bytes([f[0], f[1]]);
                s.input(p, &f[2..], &mut se).unwrap();
            }
        }
        (s.done(), c.outcome)
    }

    #[test]
    fn pap_and_chap_accept_and_reject() {
        assert_eq!(
            exchange(AuthProto::Pap, b"pw", b"pw"),
            (Some(true), ClientOutcome::Success)
        );
        assert_eq!(
            exchange(AuthProto::Pap, b"pw", b"other"),
            (Some(false), ClientOutcome::Failure)
        );
        assert_eq!(
            exchange(AuthProto::Chap, b"pw", b"pw"),
            (Some(true), ClientOutcome::Success)
        );
        assert_eq!(
            exchange(AuthProto::Chap, b"pw", b"other"),
            (Some(false), ClientOutcome::Failure)
        );
    }

    #[test]
    fn chap_retransmits_then_times_out() {
        let mut rng = Rng::from_seed([3; 32]);
        let mut s = ServerAuth::new(AuthProto::Chap, b"vbng", 100);
        let mut ev = Vec::new();
        s.start(0, &mut rng, &mut ev);
        let mut t = 0;
        while !ev.contains(&AuthEvent::Timeout) {
            t += 100;
            s.poll(t, &mut ev);
            assert!(t < 5000);
        }
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, AuthEvent::Send(_)))
                .count(),
            11
        );
        // Garbage does not panic.
        assert!(s.input(proto::CHAP, &[2, 1, 0, 5, 200], &mut ev).is_err());
    }
}
