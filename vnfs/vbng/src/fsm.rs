//! The PPP option negotiation automaton (RFC 1661 §4): states, events and actions of
//! the state transition table (§4.1), the restart timer and its counters (§4.6), shared
//! by LCP, IPCP and IPv6CP. Time is passed in (milliseconds on any monotonic clock), so
//! the automaton is tested without sleeping.
//!
//! What is specific to a protocol (which options we request, how we judge the peer's)
//! lives behind [`Negotiator`]. The automaton turns events into [`Output`]s: frames to
//! send (a PPP frame: 2-byte protocol + control packet) and layer signals (`tlu`, `tld`,
//! `tls`, `tlf`).

use alloc::vec::Vec;
use dataplane::proto::ppp::{code, ControlPacket, Options};

/// Automaton states (RFC 1661 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Lower layer down, no Open.
    Initial,
    /// Open issued, lower layer down.
    Starting,
    /// Lower layer up, no Open.
    Closed,
    /// Waiting for an Open or a peer's Configure-Request after termination/failure.
    Stopped,
    /// Terminate-Request sent after Close.
    Closing,
    /// Terminate-Request sent, no Close.
    Stopping,
    /// Configure-Request sent.
    ReqSent,
    /// Configure-Ack received, not sent.
    AckRcvd,
    /// Configure-Ack sent, not received.
    AckSent,
    /// Both Acks exchanged.
    Opened,
}

/// What the automaton asks of its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this PPP frame (protocol + control packet).
    Send(Vec<u8>),
    /// This-Layer-Up (tlu).
    Up,
    /// This-Layer-Down (tld).
    Down,
    /// This-Layer-Started (tls).
    Started,
    /// This-Layer-Finished (tlf).
    Finished,
    /// The peer rejected a protocol (LCP Protocol-Reject, RFC 1661 §5.7).
    ProtocolRejected(u16),
    /// An LCP Echo-Reply arrived (keepalive, RFC 1661 §5.8).
    EchoReply,
}

/// The verdict on a peer's Configure-Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// All options acceptable: Configure-Ack.
    Ack,
    /// Some values unacceptable: Configure-Nak with the options written to `resp`.
    Nak,
    /// Some options unknown/not negotiable: Configure-Reject with `resp`.
    Reject,
}

/// The protocol-specific part of a control protocol.
pub trait Negotiator {
    /// PPP protocol number.
    fn protocol(&self) -> u16;
    /// Write the options of our next Configure-Request.
    fn our_request(&mut self, out: &mut Vec<u8>);
    /// Judge the peer's Configure-Request `opts` (already length-checked). For Nak or
    /// Reject, write the options to send back into `resp`.
    fn check_peer(&mut self, opts: &[u8], resp: &mut Vec<u8>) -> Verdict;
    /// A Configure-Ack for our request arrived; return false if it does not match.
    fn on_ack(&mut self, opts: &[u8]) -> bool;
    /// A Configure-Nak arrived: adjust our next request.
    fn on_nak(&mut self, opts: &[u8]);
    /// A Configure-Reject arrived: stop requesting those options. Return false if a
    /// rejected option is required (negotiation cannot converge).
    fn on_reject(&mut self, opts: &[u8]) -> bool;
    /// Codes beyond 1..=7 (LCP: Protocol-Reject, Echo, Discard). Return false to
    /// Code-Reject the packet.
    fn other_code(
        &mut self,
        _opened: bool,
        _p: &ControlPacket<'_>,
        _out: &mut Vec<Output>,
    ) -> bool {
        false
    }
}

/// Timers and counters (RFC 1661 §4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Restart timer, ms (default 3000).
    pub restart_ms: u64,
    /// Max-Terminate (default 2).
    pub max_terminate: u8,
    /// Max-Configure (default 10).
    pub max_configure: u8,
    /// Max-Failure (default 5): Naks sent before converting to Reject.
    pub max_failure: u8,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            restart_ms: 3000,
            max_terminate: 2,
            max_configure: 10,
            max_failure: 5,
        }
    }
}

/// The automaton for one protocol instance.
#[derive(Debug, Clone)]
pub struct Fsm<N: Negotiator> {
    /// Protocol-specific negotiation.
    pub neg: N,
    state: State,
    timers: Timers,
    restart_count: u8,
    failures: u8,
    deadline: Option<u64>,
    req_id: u8,
    next_id: u8,
    term_id: u8,
    /// Set when negotiation cannot converge (a required option was rejected).
    pub failed: bool,
}

impl<N: Negotiator> Fsm<N> {
    /// A new automaton in the Initial state.
    pub fn new(neg: N, timers: Timers, first_id: u8) -> Self {
        Fsm {
            neg,
            state: State::Initial,
            timers,
            restart_count: 0,
            failures: 0,
            deadline: None,
            req_id: 0,
            next_id: first_id,
            term_id: 0,
            failed: false,
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Next time `poll` has work, if any.
    pub fn deadline(&self) -> Option<u64> {
        self.deadline
    }

    fn alloc_id(&mut self) -> u8 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn irc_cfg(&mut self) {
        self.restart_count = self.timers.max_configure;
    }
    fn irc_term(&mut self) {
        self.restart_count = self.timers.max_terminate;
    }

    fn scr(&mut self, now: u64, out: &mut Vec<Output>) {
        let mut opts = Vec::new();
        self.neg.our_request(&mut opts);
        self.req_id = self.alloc_id();
        let mut f = Vec::with_capacity(opts.len() + 6);
        ControlPacket::emit_frame(
            self.neg.protocol(),
            code::CONF_REQ,
            self.req_id,
            &opts,
            &mut f,
        );
        out.push(Output::Send(f));
        self.restart_count = self.restart_count.saturating_sub(1);
        self.deadline = Some(now + self.timers.restart_ms);
    }

    fn str_(&mut self, now: u64, out: &mut Vec<Output>) {
        self.term_id = self.alloc_id();
        let mut f = Vec::new();
        ControlPacket::emit_frame(
            self.neg.protocol(),
            code::TERM_REQ,
            self.term_id,
            &[],
            &mut f,
        );
        out.push(Output::Send(f));
        self.restart_count = self.restart_count.saturating_sub(1);
        self.deadline = Some(now + self.timers.restart_ms);
    }

    fn send(&self, c: u8, id: u8, data: &[u8], out: &mut Vec<Output>) {
        let mut f = Vec::with_capacity(data.len() + 6);
        ControlPacket::emit_frame(self.neg.protocol(), c, id, data, &mut f);
        out.push(Output::Send(f));
    }

    fn sta(&self, id: u8, out: &mut Vec<Output>) {
        self.send(code::TERM_ACK, id, &[], out);
    }

    fn zrc(&mut self, now: u64) {
        self.restart_count = 0;
        self.deadline = Some(now + self.timers.restart_ms);
    }

    /// Up event: the lower layer is ready.
    pub fn up(&mut self, now: u64, out: &mut Vec<Output>) {
        match self.state {
            State::Initial => self.state = State::Closed,
            State::Starting => {
                self.irc_cfg();
                self.scr(now, out);
                self.state = State::ReqSent;
            }
            _ => {}
        }
    }

    /// Down event: the lower layer went away.
    pub fn down(&mut self, out: &mut Vec<Output>) {
        self.deadline = None;
        self.state = match self.state {
            State::Closed | State::Closing => State::Initial,
            State::Stopped => {
                out.push(Output::Started);
                State::Starting
            }
            State::Stopping | State::ReqSent | State::AckRcvd | State::AckSent => State::Starting,
            State::Opened => {
                out.push(Output::Down);
                State::Starting
            }
            s => s,
        };
    }

    /// Open event: administrative open.
    pub fn open(&mut self, now: u64, out: &mut Vec<Output>) {
        match self.state {
            State::Initial => {
                out.push(Output::Started);
                self.state = State::Starting;
            }
            State::Closed => {
                self.irc_cfg();
                self.scr(now, out);
                self.state = State::ReqSent;
            }
            State::Closing => self.state = State::Stopping,
            _ => {}
        }
    }

    /// Close event: administrative close.
    pub fn close(&mut self, now: u64, out: &mut Vec<Output>) {
        match self.state {
            State::Starting => {
                out.push(Output::Finished);
                self.state = State::Initial;
            }
            State::Stopped => self.state = State::Closed,
            State::Stopping => self.state = State::Closing,
            State::ReqSent | State::AckRcvd | State::AckSent => {
                self.irc_term();
                self.str_(now, out);
                self.state = State::Closing;
            }
            State::Opened => {
                out.push(Output::Down);
                self.irc_term();
                self.str_(now, out);
                self.state = State::Closing;
            }
            _ => {}
        }
    }

    /// Drive the restart timer (TO+ / TO- events).
    pub fn poll(&mut self, now: u64, out: &mut Vec<Output>) {
        let Some(d) = self.deadline else { return };
        if now < d {
            return;
        }
        self.deadline = None;
        if self.restart_count > 0 {
            match self.state {
                State::Closing | State::Stopping => self.str_(now, out),
                State::ReqSent | State::AckRcvd => {
                    self.scr(now, out);
                    self.state = State::ReqSent;
                }
                State::AckSent => self.scr(now, out),
                _ => {}
            }
        } else {
            match self.state {
                State::Closing => {
                    out.push(Output::Finished);
                    self.state = State::Closed;
                }
                State::Stopping | State::ReqSent | State::AckRcvd | State::AckSent => {
                    out.push(Output::Finished);
                    self.state = State::Stopped;
                }
                _ => {}
            }
        }
    }

    /// Feed a received control packet (the information field after the PPP protocol).
    /// Malformed packets are discarded silently (RFC 1661 §5) and reported as `Err`.
    pub fn input(
        &mut self,
        info: &[u8],
        now: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), dataplane::proto::Error> {
        let p = ControlPacket::parse(info)?;
        if matches!(self.state, State::Initial | State::Starting) {
            return Ok(());
        }
        match p.code {
            code::CONF_REQ => {
                Options::validate(p.data)?;
                let mut resp = Vec::new();
                let mut v = self.neg.check_peer(p.data, &mut resp);
                if v == Verdict::Nak {
                    if self.failures >= self.timers.max_failure {
                        v = Verdict::Reject;
                    } else {
                        self.failures += 1;
                    }
                }
                self.rcr(v, p.id, p.data, &resp, now, out);
            }
            code::CONF_ACK | code::CONF_NAK | code::CONF_REJ => {
                if p.id != self.req_id {
                    return Ok(());
                }
                Options::validate(p.data)?;
                match p.code {
                    code::CONF_ACK => {
                        if self.neg.on_ack(p.data) {
                            self.rca(now, out);
                        }
                    }
                    code::CONF_NAK => {
                        self.neg.on_nak(p.data);
                        self.rcn(now, out);
                    }
                    _ => {
                        if self.neg.on_reject(p.data) {
                            self.rcn(now, out);
                        } else {
                            self.failed = true;
                            self.close(now, out);
                        }
                    }
                }
            }
            code::TERM_REQ => self.rtr(p.id, now, out),
            code::TERM_ACK => self.rta(now, out),
            code::CODE_REJ => {
                let rejected = p.data.first().copied().unwrap_or(0);
                if (1..=7).contains(&rejected) {
                    self.rxj_minus(now, out);
                } else if self.state == State::AckRcvd {
                    self.state = State::ReqSent;
                }
            }
            _ => {
                let opened = self.state == State::Opened;
                if !self.neg.other_code(opened, &p, out) {
                    // RUC: Code-Reject with the rejected packet (truncated to fit).
                    let n = info.len().min(1400);
                    let rejected = info.get(..n).unwrap_or(info);
                    let id = self.alloc_id();
                    self.send(code::CODE_REJ, id, rejected, out);
                }
            }
        }
        Ok(())
    }

    fn rcr(
        &mut self,
        v: Verdict,
        id: u8,
        opts: &[u8],
        resp: &[u8],
        now: u64,
        out: &mut Vec<Output>,
    ) {
        let good = v == Verdict::Ack;
        let send_reply = |s: &Self, out: &mut Vec<Output>| match v {
            Verdict::Ack => s.send(code::CONF_ACK, id, opts, out),
            Verdict::Nak => s.send(code::CONF_NAK, id, resp, out),
            Verdict::Reject => s.send(code::CONF_REJ, id, resp, out),
        };
        match self.state {
            State::Closed => self.sta(id, out),
            State::Stopped => {
                self.irc_cfg();
                self.scr(now, out);
                send_reply(self, out);
                self.state = if good { State::AckSent } else { State::ReqSent };
            }
            State::Closing | State::Stopping => {}
            State::ReqSent => {
                send_reply(self, out);
                if good {
                    self.state = State::AckSent;
                }
            }
            State::AckRcvd => {
                send_reply(self, out);
                if good {
                    self.deadline = None;
                    self.failures = 0;
                    self.state = State::Opened;
                    out.push(Output::Up);
                }
            }
            State::AckSent => {
                send_reply(self, out);
                if !good {
                    self.state = State::ReqSent;
                }
            }
            State::Opened => {
                out.push(Output::Down);
                self.scr(now, out);
                send_reply(self, out);
                self.state = if good { State::AckSent } else { State::ReqSent };
            }
            State::Initial | State::Starting => {}
        }
    }

    fn rca(&mut self, now: u64, out: &mut Vec<Output>) {
        match self.state {
            State::Closed | State::Stopped => self.sta(self.req_id, out),
            State::ReqSent => {
                self.irc_cfg();
                self.deadline = None;
                self.state = State::AckRcvd;
            }
            State::AckRcvd => {
                self.scr(now, out);
                self.state = State::ReqSent;
            }
            State::AckSent => {
                self.irc_cfg();
                self.deadline = None;
                self.failures = 0;
                self.state = State::Opened;
                out.push(Output::Up);
            }
            State::Opened => {
                out.push(Output::Down);
                self.scr(now, out);
                self.state = State::ReqSent;
            }
            _ => {}
        }
    }

    fn rcn(&mut self, now: u64, out: &mut Vec<Output>) {
        match self.state {
            State::Closed | State::Stopped => self.sta(self.req_id, out),
            State::ReqSent => {
                self.irc_cfg();
                self.scr(now, out);
            }
            State::AckRcvd => {
                self.scr(now, out);
                self.state = State::ReqSent;
            }
            State::AckSent => {
                self.irc_cfg();
                self.scr(now, out);
            }
            State::Opened => {
                out.push(Output::Down);
                self.scr(now, out);
                self.state = State::ReqSent;
            }
            _ => {}
        }
    }

    fn rtr(&mut self, id: u8, now: u64, out: &mut Vec<Output>) {
        match self.state {
            State::Closed | State::Stopped | State::Closing | State::Stopping => self.sta(id, out),
            State::ReqSent | State::AckRcvd | State::AckSent => {
                self.sta(id, out);
                self.state = State::ReqSent;
            }
            State::Opened => {
                out.push(Output::Down);
                self.zrc(now);
                self.sta(id, out);
                self.state = State::Stopping;
            }
            _ => {}
        }
    }

    fn rta(&mut self, now: u64, out: &mut Vec<Output>) {
        match self.state {
            State::Closing => {
                self.deadline = None;
                out.push(Output::Finished);
                self.state = State::Closed;
            }
            State::Stopping => {
                self.deadline = None;
                out.push(Output::Finished);
                self.state = State::Stopped;
            }
            State::AckRcvd => self.state = State::ReqSent,
            State::Opened => {
                out.push(Output::Down);
                self.scr(now, out);
                self.state = State::ReqSent;
            }
            _ => {}
        }
    }

    fn rxj_minus(&mut self, now: u64, out: &mut Vec<Output>) {
        match self.state {
            State::Closed | State::Stopped => out.push(Output::Finished),
            State::Closing => {
                out.push(Output::Finished);
                self.state = State::Closed;
            }
            State::Stopping | State::ReqSent | State::AckRcvd | State::AckSent => {
                self.deadline = None;
                out.push(Output::Finished);
                self.state = State::Stopped;
            }
            State::Opened => {
                out.push(Output::Down);
                self.irc_term();
                self.str_(now, out);
                self.state = State::Stopping;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dataplane::proto::ppp::split_protocol;

    /// A negotiator with no options that acks everything.
    #[derive(Debug, Default)]
    pub struct Plain;
    impl Negotiator for Plain {
        fn protocol(&self) -> u16 {
            0x8021
        }
        fn our_request(&mut self, _out: &mut Vec<u8>) {}
        fn check_peer(&mut self, opts: &[u8], resp: &mut Vec<u8>) -> Verdict {
            if opts.is_empty() {
                Verdict::Ack
            } else {
                resp.extend_from_slice(opts);
                Verdict::Reject
            }
        }
        fn on_ack(&mut self, _opts: &[u8]) -> bool {
            true
        }
        fn on_nak(&mut self, _opts: &[u8]) {}
        fn on_reject(&mut self, _opts: &[u8]) -> bool {
            true
        }
    }

    fn frames(out: &mut Vec<Output>) -> Vec<Vec<u8>> {
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

    /// Exchange frames between two automata until quiet.
    pub fn pump<A: Negotiator, B: Negotiator>(
        a: &mut Fsm<A>,
        b: &mut Fsm<B>,
        mut fa: Vec<Vec<u8>>,
        now: u64,
    ) {
        let mut fb = Vec::new();
        for _ in 0..20 {
            let mut out = Vec::new();
            for f in fa.drain(..) {
                let (_, info) = split_protocol(&f).unwrap();
                b.input(info, now, &mut out).unwrap();
            }
            fb.extend(frames(&mut out));
            for f in fb.drain(..) {
                let (_, info) = split_protocol(&f).unwrap();
                a.input(info, now, &mut out).unwrap();
            }
            fa.extend(frames(&mut out));
            if fa.is_empty() {
                break;
            }
        }
    }

    #[test]
    fn two_peers_open_and_terminate() {
        let mut a = Fsm::new(Plain, Timers::default(), 1);
        let mut b = Fsm::new(Plain, Timers::default(), 100);
        let mut out = Vec::new();
        b.up(0, &mut out);
        b.open(0, &mut out);
        let fb = frames(&mut out);
        a.up(0, &mut out);
        a.open(0, &mut out);
        let mut fa = frames(&mut out);
        // Deliver b's request to a first.
        for f in fb {
            a.input(&f[2..], 0, &mut out).unwrap();
        }
        fa.extend(frames(&mut out));
        pump(&mut a, &mut b, fa, 0);
        assert_eq!(a.state(), State::Opened);
        assert_eq!(b.state(), State::Opened);
        a.close(10, &mut out);
        assert!(out.contains(&Output::Down));
        let fa = frames(&mut out);
        pump(&mut a, &mut b, fa, 10);
        assert_eq!(a.state(), State::Closed);
        assert_eq!(b.state(), State::Stopping);
        // b's restart timer expires with zero count: tlf, Stopped.
        b.poll(10 + 3000, &mut out);
        assert!(out.contains(&Output::Finished));
        assert_eq!(b.state(), State::Stopped);
    }

    #[test]
    fn restart_timer_gives_up_after_max_configure() {
        let mut a = Fsm::new(
            Plain,
            Timers {
                restart_ms: 100,
                ..Timers::default()
            },
            1,
        );
        let mut out = Vec::new();
        a.up(0, &mut out);
        a.open(0, &mut out);
        assert_eq!(frames(&mut out).len(), 1);
        let mut sent = 1;
        let mut t = 0;
        while a.state() == State::ReqSent {
            t += 100;
            a.poll(t, &mut out);
            sent += frames(&mut out).len();
            assert!(t < 10_000);
        }
        assert_eq!(sent, 10);
        assert_eq!(a.state(), State::Stopped);
        // Nothing happens before the deadline.
        let mut b = Fsm::new(Plain, Timers::default(), 1);
        b.up(0, &mut out);
        b.open(0, &mut out);
        out.clear();
        b.poll(2999, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn unknown_code_is_code_rejected_and_garbage_is_an_error() {
        let mut a = Fsm::new(Plain, Timers::default(), 1);
        let mut out = Vec::new();
        a.up(0, &mut out);
        a.open(0, &mut out);
        out.clear();
        a.input(&[42, 1, 0, 4], 0, &mut out).unwrap();
        let f = frames(&mut out);
        assert_eq!(f[0][2], code::CODE_REJ);
        assert!(a.input(&[1, 1, 0, 9], 0, &mut out).is_err());
        assert!(a.input(&[1, 1, 0, 6, 3, 0], 0, &mut out).is_err());
        assert_eq!(a.state(), State::ReqSent);
    }
}
