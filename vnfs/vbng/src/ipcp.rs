//! Network control protocols on the [`crate::fsm`] automaton: IPCP (RFC 1332 §3,
//! IP-Address option) with the DNS server options (RFC 1877 §1.1, §1.3), and IPv6CP
//! (RFC 5072 §4.1, Interface-Identifier). Both roles: the BNG assigns addresses through
//! Configure-Nak; the subscriber asks with 0.0.0.0 and takes what it is Nak'ed.

use crate::fsm::{Negotiator, Verdict};
use crate::lcp::Role;
use alloc::vec::Vec;
use dataplane::proto::ppp::{ipcp_opt, ipv6cp_opt, proto, put_option, Options};

/// IPCP negotiation state (addresses as big-endian u32; 0 = unset).
#[derive(Debug, Clone)]
pub struct IpcpNeg {
    role: Role,
    /// Our address (server: the gateway address we announce; client: what we got).
    pub our_addr: u32,
    /// The peer's address (server: the subscriber's assigned address).
    pub peer_addr: u32,
    /// DNS servers (server: what we hand out; client: what we were told).
    pub dns: [u32; 2],
    ask_dns: [bool; 2],
}

impl IpcpNeg {
    /// BNG side: we are `gateway`, the subscriber gets `assigned`, DNS servers `dns`.
    pub fn server(gateway: u32, assigned: u32, dns: [u32; 2]) -> Self {
        IpcpNeg {
            role: Role::Server,
            our_addr: gateway,
            peer_addr: assigned,
            dns,
            ask_dns: [false; 2],
        }
    }

    /// Subscriber side: ask for an address and both DNS servers.
    pub fn client() -> Self {
        IpcpNeg {
            role: Role::Client,
            our_addr: 0,
            peer_addr: 0,
            dns: [0; 2],
            ask_dns: [true; 2],
        }
    }
}

fn addr(v: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(v).ok().map(u32::from_be_bytes)
}

impl Negotiator for IpcpNeg {
    fn protocol(&self) -> u16 {
        proto::IPCP
    }

    fn our_request(&mut self, out: &mut Vec<u8>) {
        put_option(out, ipcp_opt::IP_ADDRESS, &self.our_addr.to_be_bytes());
        if self.role == Role::Client {
            if self.ask_dns[0] {
                put_option(out, ipcp_opt::PRIMARY_DNS, &self.dns[0].to_be_bytes());
            }
            if self.ask_dns[1] {
                put_option(out, ipcp_opt::SECONDARY_DNS, &self.dns[1].to_be_bytes());
            }
        }
    }

    fn check_peer(&mut self, opts: &[u8], resp: &mut Vec<u8>) -> Verdict {
        let mut rej = Vec::new();
        let mut nak = Vec::new();
        let mut got = None;
        for (t, v) in Options::new(opts).flatten() {
            match (self.role, t, addr(v)) {
                (Role::Server, ipcp_opt::IP_ADDRESS, Some(a)) => {
                    if a != self.peer_addr {
                        put_option(&mut nak, t, &self.peer_addr.to_be_bytes());
                    }
                }
                (Role::Server, ipcp_opt::PRIMARY_DNS | ipcp_opt::SECONDARY_DNS, Some(a)) => {
                    let want = self.dns[usize::from(t == ipcp_opt::SECONDARY_DNS)];
                    if want == 0 {
                        put_option(&mut rej, t, v);
                    } else if a != want {
                        put_option(&mut nak, t, &want.to_be_bytes());
                    }
                }
                (Role::Client, ipcp_opt::IP_ADDRESS, Some(a)) => got = Some(a),
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
        if let Some(a) = got {
            self.peer_addr = a;
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
            if let Some(a) = addr(v) {
                match t {
                    ipcp_opt::IP_ADDRESS if self.role == Role::Client => self.our_addr = a,
                    ipcp_opt::PRIMARY_DNS => self.dns[0] = a,
                    ipcp_opt::SECONDARY_DNS => self.dns[1] = a,
                    _ => {}
                }
            }
        }
    }

    fn on_reject(&mut self, opts: &[u8]) -> bool {
        for (t, _) in Options::new(opts).flatten() {
            match t {
                ipcp_opt::PRIMARY_DNS => self.ask_dns[0] = false,
                ipcp_opt::SECONDARY_DNS => self.ask_dns[1] = false,
                ipcp_opt::IP_ADDRESS => return false,
                _ => {}
            }
        }
        true
    }
}

/// IPv6CP negotiation state (RFC 5072 §4.1).
#[derive(Debug, Clone)]
pub struct Ipv6cpNeg {
    /// Our interface identifier (non-zero).
    pub our_id: u64,
    /// The peer's interface identifier.
    pub peer_id: u64,
    suggest: u64,
}

impl Ipv6cpNeg {
    /// New negotiator with our identifier and one to suggest if the peer's is unusable.
    pub fn new(our_id: u64, suggest: u64) -> Self {
        Ipv6cpNeg {
            our_id: our_id.max(1),
            peer_id: 0,
            suggest: suggest.max(2),
        }
    }
}

impl Negotiator for Ipv6cpNeg {
    fn protocol(&self) -> u16 {
        proto::IPV6CP
    }
    fn our_request(&mut self, out: &mut Vec<u8>) {
        put_option(out, ipv6cp_opt::INTERFACE_ID, &self.our_id.to_be_bytes());
    }
    fn check_peer(&mut self, opts: &[u8], resp: &mut Vec<u8>) -> Verdict {
        let mut rej = Vec::new();
        let mut nak = Vec::new();
        let mut got = None;
        for (t, v) in Options::new(opts).flatten() {
            match (t, <[u8; 8]>::try_from(v).ok().map(u64::from_be_bytes)) {
                (ipv6cp_opt::INTERFACE_ID, Some(id)) => {
                    if id == 0 || id == self.our_id {
                        let s = if self.suggest == self.our_id {
                            self.suggest ^ 1
                        } else {
                            self.suggest
                        };
                        put_option(&mut nak, t, &s.to_be_bytes());
                    } else {
                        got = Some(id);
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
        if let Some(id) = got {
            self.peer_id = id;
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
            if let (ipv6cp_opt::INTERFACE_ID, Ok(b)) = (t, <[u8; 8]>::try_from(v)) {
                let id = u64::from_be_bytes(b);
                if id != 0 {
                    self.our_id = id;
                }
            }
        }
    }
    fn on_reject(&mut self, _opts: &[u8]) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::tests::pump;
    use crate::fsm::{Fsm, Output, State, Timers};

    fn run<A: Negotiator, B: Negotiator>(s: &mut Fsm<A>, c: &mut Fsm<B>) {
        let mut out = Vec::new();
        c.up(0, &mut out);
        c.open(0, &mut out);
        s.up(0, &mut out);
        s.open(0, &mut out);
        // Both requests cross; deliver everything by pumping from the server side.
        let (mut to_c, mut to_s) = (Vec::new(), Vec::new());
        // The first two frames: the client's request then the server's.
        for o in out.drain(..) {
            if let Output::Send(f) = o {
                if to_s.is_empty() {
                    to_s.push(f)
                } else {
                    to_c.push(f)
                }
            }
        }
        for f in to_s {
            s.input(&f[2..], 0, &mut out).unwrap();
        }
        let mut fs: Vec<Vec<u8>> = to_c;
        fs.extend(out.drain(..).filter_map(|o| {
            if let Output::Send(f) = o {
                Some(f)
            } else {
                None
            }
        }));
        pump(s, c, fs, 0);
    }

    #[test]
    fn ipcp_assigns_address_and_dns() {
        let mut s = Fsm::new(
            IpcpNeg::server(0x0a000001, 0x0a000042, [0x08080808, 0]),
            Timers::default(),
            1,
        );
        let mut c = Fsm::new(IpcpNeg::client(), Timers::default(), 1);
        run(&mut s, &mut c);
        assert_eq!(s.state(), State::Opened);
        assert_eq!(c.state(), State::Opened);
        assert_eq!(c.neg.our_addr, 0x0a000042);
        assert_eq!(c.neg.peer_addr, 0x0a000001);
        assert_eq!(c.neg.dns, [0x08080808, 0]);
    }

    #[test]
    fn ipv6cp_resolves_identifier_collision() {
        let mut s = Fsm::new(Ipv6cpNeg::new(5, 77), Timers::default(), 1);
        let mut c = Fsm::new(Ipv6cpNeg::new(5, 99), Timers::default(), 1);
        run(&mut s, &mut c);
        assert_eq!(s.state(), State::Opened);
        assert_eq!(c.state(), State::Opened);
        assert_ne!(s.neg.peer_id, s.neg.our_id);
        assert_eq!(s.neg.peer_id, c.neg.our_id);
    }
}
