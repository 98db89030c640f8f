//! `nat44` translation: parsing a packet into a flow, the TCP state tracking that
//! picks the timeout (RFC 5382 §5), session lookup or creation inside→outside,
//! filtering outside→inside (RFC 4787 §5 REQ-8), the rewrite itself and
//! hairpinning (RFC 4787 §6 REQ-9, RFC 5382 §3.3).

use super::*;

impl Nat44 {
    /// First pass: parse one packet.
    #[inline(always)]
    pub(super) fn parse(&self, p: &Pkt) -> Pre {
        let mut r = PRE0;
        let d = p.data();
        let Some(l3) = ipv4_offset(d) else {
            return r;
        };
        let Some(ip) = d
            .get(l3..l3 + 20)
            .and_then(|x| <&[u8; 20]>::try_from(x).ok())
        else {
            r.act = Act::Drop(NatDrop::Malformed);
            return r;
        };
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let tl = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ip[0] >> 4 != 4 || ihl < 20 || tl < ihl || l3 + tl > d.len() {
            r.act = Act::Drop(NatDrop::Malformed);
            return r;
        }
        let inside = self.is_inside(p.meta.port);
        let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
        if !inside && !self.in_pool(dst) {
            return r; // not addressed to the NAT
        }
        let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
        if inside && (dst >> 28 == 0xe || dst == u32::MAX || src == 0) {
            return r; // multicast, broadcast, unconfigured source: not translated
        }
        let proto = ip[9];
        let l4 = l3 + ihl;
        let end = l3 + tl;
        r.l3 = l3 as u16;
        r.l4 = l4 as u16;
        r.end = end as u16;
        r.flow.src = src;
        r.flow.dst = dst;
        r.flow.proto = proto;
        let fo = u16::from_be_bytes([ip[6], ip[7]]);
        if fo & 0x3fff != 0 {
            r.ipid = u16::from_be_bytes([ip[4], ip[5]]);
            if Self::parse_fragment(&mut r, fo, ihl, tl, inside) != FRAG_FIRST {
                return r;
            }
        }
        let need = match proto {
            TCP => 20,
            UDP | ICMP => 8,
            _ => {
                r.act = Act::Drop(NatDrop::ProtoUnsupported);
                return r;
            }
        };
        let Some(h) = d
            .get(l4..l4 + 8)
            .and_then(|x| <&[u8; 8]>::try_from(x).ok())
            .filter(|_| l4 + need <= end && l4 + need <= d.len())
        else {
            // RFC 1858 §3.1: a first fragment without the whole transport header.
            r.act = Act::Drop(if r.frag == FRAG_FIRST {
                NatDrop::FragTiny
            } else {
                NatDrop::Malformed
            });
            return r;
        };
        if proto == ICMP {
            let ident = u16::from_be_bytes([h[4], h[5]]);
            match (h[0], inside) {
                (icmpv4::msg::ECHO_REQUEST, true) => r.flow.sport = ident,
                (icmpv4::msg::ECHO_REPLY, false) => r.flow.dport = ident,
                (3 | 4 | 11 | 12, _) if r.frag == FRAG_NONE => {
                    r.act = if inside {
                        Act::ErrIn2Out
                    } else {
                        Act::ErrOut2In
                    };
                    return r;
                }
                (3 | 4 | 11 | 12, _) => {
                    // Fragmented ICMP errors (a quote over the path MTU) are rare and
                    // not translated.
                    r.act = Act::Drop(NatDrop::Fragment);
                    return r;
                }
                _ => {
                    r.act = Act::Drop(NatDrop::IcmpUnsupported);
                    return r;
                }
            }
        } else {
            r.flow.sport = u16::from_be_bytes([h[0], h[1]]);
            r.flow.dport = u16::from_be_bytes([h[2], h[3]]);
            if proto == TCP {
                r.tcp_flags = d.get(l4 + 13).copied().unwrap_or(0);
            }
        }
        let f = &r.flow;
        if inside {
            r.act = Act::In2Out;
            r.h = key4(K_SIN, f.src, f.sport, f.dst, f.dport, proto);
        } else {
            r.act = Act::Out2In;
            r.h = key4(K_SOUT, f.src, f.sport, f.dst, f.dport, proto);
        }
        r
    }

    /// Classifies a fragment (`fo` = flags and offset, with MF or an offset set):
    /// sets `r.frag` and, for anything but a well-formed first fragment, `r.act`.
    /// Returns `r.frag`.
    #[cold]
    #[inline(never)]
    pub(super) fn parse_fragment(r: &mut Pre, fo: u16, ihl: usize, tl: usize, inside: bool) -> u8 {
        let off = usize::from(fo & 0x1fff) * 8;
        let mf = fo & 0x2000 != 0;
        let plen = tl - ihl;
        // RFC 791: the datagram is at most 65535 bytes, and every fragment but the
        // last carries a multiple of 8 bytes of payload.
        if off + plen > 65535 - 20 || (mf && !plen.is_multiple_of(8)) || plen == 0 {
            r.act = Act::Drop(NatDrop::Malformed);
            return FRAG_NONE;
        }
        if off == 0 {
            r.frag = FRAG_FIRST;
            return FRAG_FIRST;
        }
        r.frag = FRAG_REST;
        r.act = match r.flow.proto {
            // RFC 1858 §4: a TCP fragment at offset 8 could rewrite the flags of the
            // first one.
            TCP if off == 8 => Act::Drop(NatDrop::FragTiny),
            TCP | UDP | ICMP if inside => Act::FragIn2Out,
            TCP | UDP | ICMP => Act::FragOut2In,
            _ => Act::Drop(NatDrop::ProtoUnsupported),
        };
        FRAG_REST
    }

    #[inline(always)]
    pub(super) fn tcp_track(s: &mut Session, flags: u8, inbound: bool) {
        const FIN: u8 = 0x01;
        const SYN: u8 = 0x02;
        const RST: u8 = 0x04;
        if flags & RST != 0 {
            s.tcp |= TCP_RST;
        }
        if flags & SYN != 0 {
            s.tcp |= if inbound { TCP_SYN_OUT } else { TCP_SYN_IN };
            // A new SYN after a close/reset reopens the session (RFC 7857 §2.1).
            if s.tcp & (TCP_RST | TCP_FIN_IN | TCP_FIN_OUT) != 0 && flags & 0x10 == 0 {
                s.tcp &= !(TCP_RST | TCP_FIN_IN | TCP_FIN_OUT);
                s.tcp &= if inbound { !TCP_SYN_IN } else { !TCP_SYN_OUT };
            }
        }
        if flags & FIN != 0 {
            s.tcp |= if inbound { TCP_FIN_OUT } else { TCP_FIN_IN };
        }
    }

    /// Looks up or creates the in2out session of `f`.
    pub(super) fn in2out_session(&mut self, pre: &Pre, now: u32) -> Result<u32, NatDrop> {
        let f = &pre.flow;
        let hit = if self.sess_in_eq(pre.cand, f) {
            Some(pre.cand & IDX_MASK)
        } else {
            self.find_sess_in_h(f, pre.h)
        };
        if let Some(s) = hit {
            if !self
                .sessions
                .get(s as usize)
                .is_some_and(|x| self.expired(x, now))
            {
                return Ok(s);
            }
            self.delete_session(s);
            self.stats.sessions_expired += 1;
        }
        let m = match self.find_map_in(f) {
            Some(m) => m,
            None => self.new_mapping(f)?,
        };
        match self.new_session(m, f.dst, f.dport, now) {
            Ok(s) => Ok(s),
            Err(e) => {
                // Drop a mapping made just for this session.
                if self.maps.get(m as usize).is_some_and(|x| x.sessions == 0) {
                    if let Some(mp) = self.maps.get(m as usize).copied() {
                        self.table.remove(
                            key4(
                                K_MIN,
                                mp.in_addr,
                                mp.in_port,
                                mp.rem_addr,
                                mp.rem_port,
                                mp.proto,
                            ),
                            tag(K_MIN, m),
                        );
                        self.table.remove(
                            key4(K_MOUT, mp.ext_addr, mp.ext_port, 0, 0, mp.proto),
                            tag(K_MOUT, m),
                        );
                    }
                    self.free_mapping_port(m);
                }
                Err(e)
            }
        }
    }

    /// Looks up or (filtering permitting) creates the out2in session of `f`.
    pub(super) fn out2in_session(
        &mut self,
        f: &Flow,
        h: u64,
        cand: u32,
        now: u32,
    ) -> Result<u32, NatDrop> {
        let hit = if self.sess_out_eq(cand, f) {
            Some(cand & IDX_MASK)
        } else {
            self.find_sess_out_h(f, h)
        };
        if let Some(s) = hit {
            if !self
                .sessions
                .get(s as usize)
                .is_some_and(|x| self.expired(x, now))
            {
                return Ok(s);
            }
            self.delete_session(s);
            self.stats.sessions_expired += 1;
        }
        let Some(m) = self.find_map_out(f.proto, f.dst, f.dport) else {
            return Err(NatDrop::NoSession);
        };
        match self.filtering {
            Behavior::EndpointIndependent => {}
            Behavior::AddressDependent => {
                // The mapping's sessions are walked (newest first), at most
                // ADF_WALK of them, so an unsolicited packet costs bounded time; a
                // remote beyond that is filtered (the conservative answer).
                let mut cur = self.maps.get(m as usize).map_or(NONE, |x| x.head);
                let mut ok = false;
                let mut steps = 0;
                while let Some(s) = self.sessions.get(cur as usize) {
                    if s.rem_addr == f.src && !self.expired(s, now) {
                        ok = true;
                        break;
                    }
                    steps += 1;
                    if steps >= ADF_WALK {
                        break;
                    }
                    cur = s.next;
                }
                if !ok {
                    return Err(NatDrop::Filtered);
                }
            }
            Behavior::AddressAndPortDependent => return Err(NatDrop::Filtered),
        }
        self.new_session(m, f.src, f.sport, now)
    }

    /// Several workers: marks a packet another worker owns for hand-off (see
    /// [`Nat44::new_worker`]). Non-first outside→inside fragments carry no port and
    /// stay where they arrive (their first fragment's worker may differ).
    ///
    /// Per packet this is a multiply for inside→outside and two compares for
    /// return traffic to this worker's own ports (the common case when the NIC or
    /// the generator steers by subscriber and outside port range); only a port of
    /// another worker's slice pays for [`Nat44::port_owner`].
    #[inline]
    pub(super) fn steer(&self, r: &mut Pre, p: &Pkt) {
        let owner = match r.act {
            Act::In2Out | Act::FragIn2Out | Act::ErrIn2Out => {
                Self::inside_owner(r.flow.src, self.workers)
            }
            Act::Out2In if self.pool.owns_port(r.flow.dport) => return,
            Act::Out2In => match self.port_owner(r.flow.dport) {
                Some(w) => w,
                None => return,
            },
            Act::ErrOut2In => match Self::quoted_sport(p.data(), usize::from(r.l4))
                .and_then(|port| self.port_owner(port))
            {
                Some(w) => w,
                None => return,
            },
            _ => return,
        };
        if owner != self.me {
            r.act = Act::Handoff(owner);
        }
    }

    /// Source port (ICMP query: identifier) of the packet an ICMP error quotes.
    fn quoted_sport(d: &[u8], l4: usize) -> Option<u16> {
        let q = l4 + 8;
        let ihl = usize::from(d.get(q)? & 0x0f) * 4;
        let proto = *d.get(q + 9)?;
        let ql4 = q + ihl;
        let off = if proto == ICMP { 4 } else { 0 };
        Some(u16::from_be_bytes([
            *d.get(ql4 + off)?,
            *d.get(ql4 + off + 1)?,
        ]))
    }

    /// Translates one packet (third pass).
    #[inline(always)]
    pub(super) fn handle(&mut self, p: &mut Pkt, pre: &Pre, now: u32, out: &mut Out) -> Next {
        match pre.act {
            Act::Pass => Next::Keep,
            Act::Drop(r) => r.into(),
            Act::Handoff(w) => Next::Handoff(w),
            Act::In2Out => {
                let s = match self.in2out_session(pre, now) {
                    Ok(s) => s,
                    Err(r) => {
                        self.exhausted(&*p, pre, r, out);
                        return r.into();
                    }
                };
                if pre.frag != FRAG_NONE {
                    self.last_sess = s;
                }
                let Some(sess) = self.sessions.get_mut(s as usize) else {
                    return NatDrop::TableFull.into();
                };
                sess.last = now;
                if pre.flow.proto == TCP {
                    Self::tcp_track(sess, pre.tcp_flags, false);
                }
                let (ea, ep) = (sess.ext_addr, sess.ext_port);
                let (l3, l4, end) = (
                    usize::from(pre.l3),
                    usize::from(pre.l4),
                    usize::from(pre.end),
                );
                let Some(b) = p.data_mut().get_mut(..end) else {
                    return NatDrop::Malformed.into();
                };
                rewrite(b, l3, l4, pre.flow.proto, false, ea, ep);
                if self.hairpinning && self.in_pool(pre.flow.dst) {
                    if self.workers > 1
                        && !self.pool.owns_port(pre.flow.dport)
                        && self
                            .port_owner(pre.flow.dport)
                            .is_some_and(|w| w != self.me)
                    {
                        return NatDrop::HairpinRemote.into();
                    }
                    return self.hairpin(p, pre, ea, ep, now);
                }
                Next::Keep
            }
            Act::Out2In => {
                let s = match self.out2in_session(&pre.flow, pre.h, pre.cand, now) {
                    Ok(s) => s,
                    Err(r) => return r.into(),
                };
                if pre.frag != FRAG_NONE {
                    self.last_sess = s;
                }
                let refresh = self.inbound_refresh;
                let Some(sess) = self.sessions.get_mut(s as usize) else {
                    return NatDrop::TableFull.into();
                };
                if refresh {
                    sess.last = now;
                }
                if pre.flow.proto == TCP {
                    Self::tcp_track(sess, pre.tcp_flags, true);
                }
                let (ia, ip) = (sess.in_addr, sess.in_port);
                let (l3, l4, end) = (
                    usize::from(pre.l3),
                    usize::from(pre.l4),
                    usize::from(pre.end),
                );
                let Some(b) = p.data_mut().get_mut(..end) else {
                    return NatDrop::Malformed.into();
                };
                rewrite(b, l3, l4, pre.flow.proto, true, ia, ip);
                Next::Keep
            }
            Act::ErrIn2Out | Act::ErrOut2In => self.icmp_error(p, pre, now),
            Act::FragIn2Out | Act::FragOut2In => self.fragment_rest(p, pre, now),
        }
    }
}

impl Nat44 {
    /// Second translation of a hairpinned packet (RFC 4787 REQ-9): now from the
    /// sender's outside endpoint to a pool address, translated outside→inside.
    pub(super) fn hairpin(&mut self, p: &mut Pkt, pre: &Pre, ea: u32, ep: u16, now: u32) -> Next {
        let mut f = pre.flow;
        f.src = ea;
        if f.proto == ICMP {
            // An echo request to our own outside address: there is no inside host.
            return NatDrop::NoSession.into();
        }
        f.sport = ep;
        let h = key4(K_SOUT, f.src, f.sport, f.dst, f.dport, f.proto);
        let s = match self.out2in_session(&f, h, NONE, now) {
            Ok(s) => s,
            Err(r) => return r.into(),
        };
        let Some(sess) = self.sessions.get_mut(s as usize) else {
            return NatDrop::TableFull.into();
        };
        sess.last = now;
        if f.proto == TCP {
            Self::tcp_track(sess, pre.tcp_flags, true);
        }
        let (ia, ip) = (sess.in_addr, sess.in_port);
        let Some(b) = p.data_mut().get_mut(..usize::from(pre.end)) else {
            return NatDrop::Malformed.into();
        };
        rewrite(
            b,
            usize::from(pre.l3),
            usize::from(pre.l4),
            f.proto,
            true,
            ia,
            ip,
        );
        self.stats.hairpinned += 1;
        Next::Keep
    }
}
