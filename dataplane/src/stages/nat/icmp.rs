//! `nat44` ICMP: translating ICMP errors by their embedded packet (RFC 5508 §4.2
//! REQ-3/4) and answering flows the NAT cannot take with Destination Unreachable
//! code 13 (RFC 5508 REQ-8, RFC 6888 §4), rate limited.

use super::*;

impl Nat44 {
    /// Translates an ICMP error by its embedded packet (RFC 5508 §4.2 REQ-3).
    pub(super) fn icmp_error(&mut self, p: &mut Pkt, pre: &Pre, now: u32) -> Next {
        let inbound = pre.act == Act::ErrOut2In;
        let (l3, l4, end) = (
            usize::from(pre.l3),
            usize::from(pre.l4),
            usize::from(pre.end),
        );
        let d = p.data();
        // Embedded IPv4 header + 8 bytes.
        let il3 = l4 + 8;
        let Some(ih) = d
            .get(il3..il3 + 20)
            .and_then(|x| <&[u8; 20]>::try_from(x).ok())
            .filter(|_| il3 + 20 <= end)
        else {
            return NatDrop::Malformed.into();
        };
        let ihl = usize::from(ih[0] & 0x0f) * 4;
        if ih[0] >> 4 != 4 || ihl < 20 {
            return NatDrop::Malformed.into();
        }
        let iproto = ih[9];
        let isrc = u32::from_be_bytes([ih[12], ih[13], ih[14], ih[15]]);
        let idst = u32::from_be_bytes([ih[16], ih[17], ih[18], ih[19]]);
        let il4 = il3 + ihl;
        if il4 + 8 > end || !matches!(iproto, TCP | UDP | ICMP) {
            return NatDrop::Malformed.into();
        }
        let (ps, pd) = (rd16(d, il4), rd16(d, il4 + 2));
        let ident = rd16(d, il4 + 4);
        let s = if inbound {
            // The embedded packet is one we sent out: (ext → remote).
            let (sp, dp) = if iproto == ICMP { (0, ident) } else { (pd, ps) };
            let f = Flow {
                src: idst,
                dst: isrc,
                sport: sp,
                dport: dp,
                proto: iproto,
            };
            let h = key4(K_SOUT, f.src, f.sport, f.dst, f.dport, f.proto);
            self.find_sess_out_h(&f, h)
        } else {
            // The embedded packet is one we delivered inside: (remote → inside).
            let (sp, dp) = if iproto == ICMP { (ident, 0) } else { (pd, ps) };
            let f = Flow {
                src: idst,
                dst: isrc,
                sport: sp,
                dport: dp,
                proto: iproto,
            };
            let h = key4(K_SIN, f.src, f.sport, f.dst, f.dport, f.proto);
            self.find_sess_in_h(&f, h)
        };
        let Some(sess) = s.and_then(|s| self.sessions.get(s as usize)).copied() else {
            return NatDrop::IcmpErrorNoSession.into();
        };
        if self.expired(&sess, now) {
            return NatDrop::IcmpErrorNoSession.into();
        }
        let Some(b) = p.data_mut().get_mut(..end) else {
            return NatDrop::Malformed.into();
        };
        if inbound {
            rewrite_addr(b, l3, true, sess.in_addr);
            rewrite_inner(
                b,
                l4 + 2,
                il3,
                il4,
                iproto,
                false,
                sess.in_addr,
                sess.in_port,
            );
        } else {
            rewrite_addr(b, l3, false, sess.ext_addr);
            rewrite_inner(
                b,
                l4 + 2,
                il3,
                il4,
                iproto,
                true,
                sess.ext_addr,
                sess.ext_port,
            );
        }
        self.stats.icmp_errors_translated += 1;
        Next::Keep
    }

    /// RFC 5508 REQ-8: answer a flow the NAT cannot take with Destination Unreachable
    /// code 13, sent back out of the ingress port (rate limited).
    pub(super) fn exhausted(&mut self, p: &Pkt, pre: &Pre, _r: NatDrop, out: &mut Out) {
        if !self.icmp_errors {
            return;
        }
        let window = out.now_ns / 1_000_000_000;
        if window != self.icmp_window {
            self.icmp_window = window;
            self.icmp_sent = 0;
        }
        if self.icmp_sent >= self.icmp_rate {
            self.stats.icmp_errors_rate_limited += 1;
            return;
        }
        let d = p.data();
        let l3 = usize::from(pre.l3);
        let (Some(l2), Some(ip)) = (d.get(..l3), d.get(l3..usize::from(pre.end))) else {
            return;
        };
        let Some(mut e) = out.cache.alloc() else {
            return;
        };
        let built = (|| {
            let buf = e.buffer_mut();
            let base = crate::buf::HEADROOM;
            let room = buf.get_mut(base..)?;
            room.get_mut(..l3)?.copy_from_slice(l2);
            // Swap the MAC addresses: the error goes back where the packet came from.
            if l3 >= ETH_LEN {
                room.get_mut(0..6)?.copy_from_slice(l2.get(6..12)?);
                room.get_mut(6..12)?.copy_from_slice(l2.get(0..6)?);
            }
            let n = icmpv4::build_error(
                room.get_mut(l3..)?,
                ip,
                Ipv4Addr::from(self.icmp_src),
                64,
                ErrorKind::DstUnreachable {
                    code: icmpv4::unreachable::ADMIN_PROHIBITED,
                    next_hop_mtu: 0,
                },
                QuoteLimit::HeaderPlus8,
            )
            .ok()?;
            Some(l3 + n)
        })();
        let Some(len) = built else {
            out.cache.free(e);
            return;
        };
        if e.set_window(crate::buf::HEADROOM, len).is_err() {
            out.cache.free(e);
            return;
        }
        e.meta.port = p.meta.port;
        match out.ports.get_mut(usize::from(p.meta.port)) {
            Some(b) => match b.push(e) {
                Ok(()) => {
                    self.icmp_sent += 1;
                    self.stats.icmp_errors_sent += 1;
                }
                Err(e) => out.cache.free(e),
            },
            None => out.cache.free(e),
        }
    }
}
