//! Engine stages `esp-encrypt` (RFC 4303 §3.3, outbound) and `esp-decrypt` (§3.4,
//! inbound) over batches of the engine's packet buffers, with one drop counter per
//! [`DropReason`] (VPP's `show errors` shape) and the engine's packet trace.
//!
//! Packets are Ethernet frames whose L3 header starts at `meta.l3` (set by
//! `ethernet-input`). A stage works on the IP packet in place (the 256-byte headroom
//! takes the outer IP + UDP + ESP header); the L2 header moves along with the front
//! and its EtherType (or PPP protocol) is set to the new outer family. Encrypted
//! and decrypted packets stay in the batch (`Keep`) for the next stage (routing);
//! IKE and NAT keepalives on UDP 4500 are punted to the control plane.
//!
//! Each stage owns one [`Ipsec`] (SAD + SPD + counters): one worker per SA, so the
//! outbound sequence counter needs no atomics.

use crate::buf::Buf;
use crate::error::DropReason;
use crate::{Inbound, Ipsec};
use dataplane::batch::{Batch, Next, Out};
use dataplane::buf::Pkt;
use dataplane::stage::{Counter, NodeStats, Stage};

impl Buf for Pkt {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        Pkt::data(self)
    }

    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        Pkt::data_mut(self)
    }

    #[inline(always)]
    fn push_front(&mut self, n: usize) -> bool {
        self.prepend(n).is_ok()
    }

    #[inline(always)]
    fn pull_front(&mut self, n: usize) -> bool {
        self.strip(n).is_ok()
    }

    #[inline(always)]
    fn push_back(&mut self, n: usize) -> bool {
        self.append(n).is_ok()
    }

    #[inline(always)]
    fn trim_back(&mut self, n: usize) -> bool {
        self.trim(n).is_ok()
    }
}

/// The packet seen from its L3 header: the L2 header (`meta.l3` bytes) stays in the
/// buffer and moves along when ESP grows or shrinks the front, so nothing is copied
/// out and back.
struct L3<'a> {
    pkt: &'a mut Pkt,
    l2: usize,
}

/// Moves the `l2` bytes at `from` to `to` inside `d` (Ethernet: one 14-byte move).
#[inline(always)]
fn move_l2(d: &mut [u8], from: usize, to: usize, l2: usize) -> bool {
    if l2 == 14 {
        let Some(src) = d.get(from..from + 14) else {
            return false;
        };
        let mut h = [0u8; 14];
        h.copy_from_slice(src);
        match d.get_mut(to..to + 14) {
            Some(dst) => {
                dst.copy_from_slice(&h);
                true
            }
            None => false,
        }
    } else if from.max(to) + l2 <= d.len() {
        d.copy_within(from..from + l2, to);
        true
    } else {
        false
    }
}

impl Buf for L3<'_> {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        self.pkt.data().get(self.l2..).unwrap_or(&[])
    }

    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        let l2 = self.l2;
        self.pkt.data_mut().get_mut(l2..).unwrap_or(&mut [])
    }

    #[inline(always)]
    fn push_front(&mut self, n: usize) -> bool {
        if self.pkt.prepend(n).is_err() {
            return false;
        }
        if !move_l2(self.pkt.data_mut(), n, 0, self.l2) {
            let _ = self.pkt.strip(n);
            return false;
        }
        true
    }

    #[inline(always)]
    fn pull_front(&mut self, n: usize) -> bool {
        if n > self.pkt.len().saturating_sub(self.l2) {
            return false;
        }
        move_l2(self.pkt.data_mut(), 0, n, self.l2) && self.pkt.strip(n).is_ok()
    }

    #[inline(always)]
    fn push_back(&mut self, n: usize) -> bool {
        self.pkt.append(n).is_ok()
    }

    #[inline(always)]
    fn trim_back(&mut self, n: usize) -> bool {
        n <= self.pkt.len().saturating_sub(self.l2) && self.pkt.trim(n).is_ok()
    }
}

/// The L3 view of a packet, or `Malformed` when `meta.l3` lies past its end.
#[inline(always)]
fn l3(pkt: &mut Pkt) -> Result<L3<'_>, DropReason> {
    let l2 = usize::from(pkt.meta.l3);
    if l2 > pkt.len() {
        return Err(DropReason::Malformed);
    }
    Ok(L3 { pkt, l2 })
}

/// Sets the EtherType or PPP protocol field just before L3 to the packet's (new) IP
/// version.
#[inline(always)]
fn fix_l2_type(pkt: &mut Pkt) {
    let l2 = usize::from(pkt.meta.l3);
    let d = pkt.data_mut();
    let v6 = d.get(l2).is_some_and(|b| b >> 4 == 6);
    if let Some(t) = l2.checked_sub(2).and_then(|i| d.get_mut(i..i + 2)) {
        let new = match [t[0], t[1]] {
            [0x08, 0x00] | [0x86, 0xdd] => Some(if v6 { [0x86, 0xdd] } else { [0x08, 0x00] }),
            [0x00, 0x21] | [0x00, 0x57] => Some(if v6 { [0x00, 0x57] } else { [0x00, 0x21] }),
            _ => None,
        };
        if let Some(n) = new {
            t.copy_from_slice(&n);
        }
    }
    pkt.meta.l4 = 0;
}

impl From<DropReason> for Next {
    /// A drop with this reason (`Next::Drop` code = the reason's index).
    #[inline(always)]
    fn from(r: DropReason) -> Next {
        Next::Drop(r as u16)
    }
}

/// `esp-encrypt`: SPD lookup, then ESP encapsulation with the policy's SA.
pub struct EspEncrypt {
    ipsec: Ipsec,
}

impl EspEncrypt {
    pub fn new(ipsec: Ipsec) -> Self {
        EspEncrypt { ipsec }
    }

    pub fn ipsec(&self) -> &Ipsec {
        &self.ipsec
    }

    pub fn ipsec_mut(&mut self) -> &mut Ipsec {
        &mut self.ipsec
    }

    /// One packet (the stage's per-packet body; public for callers without batches).
    #[inline]
    pub fn encrypt(&mut self, pkt: &mut Pkt, now: u64) -> Next {
        let r = match l3(pkt) {
            Ok(mut b) => self.ipsec.outbound(&mut b, now),
            Err(e) => Err(e),
        };
        match r {
            Ok(crate::Outbound::Protected(_)) => {
                fix_l2_type(pkt);
                Next::Keep
            }
            Ok(crate::Outbound::Bypass) => Next::Keep,
            Err(e) => e.into(),
        }
    }
}

impl Stage for EspEncrypt {
    fn name(&self) -> &'static str {
        "esp-encrypt"
    }

    fn errors(&self) -> &'static [&'static str] {
        &DropReason::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        &DropReason::HELP
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        let c = &self.ipsec.counters;
        f(Counter::gauge(
            "sas",
            "security associations installed",
            self.ipsec.sad.len() as u64,
        ));
        f(Counter::total(
            "encrypted",
            "packets ESP-encapsulated (RFC 4303 §3.3)",
            c.encrypted,
        ));
        f(Counter::total(
            "bypassed",
            "packets a BYPASS policy let through in clear (RFC 4301 §4.4.1)",
            c.bypassed,
        ));
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let now = out.now_ns / 1_000_000_000;
        batch.dispatch(node, out, |pkt, _| self.encrypt(pkt, now));
    }

    fn tick(&mut self, out: &mut Out) {
        self.ipsec.sad.tick(out.now_ns / 1_000_000_000);
    }
}

/// `esp-decrypt`: SPI lookup, anti-replay, ICV, decapsulation, inbound policy check;
/// clear packets go through the inbound SPD (bypass or drop).
pub struct EspDecrypt {
    ipsec: Ipsec,
}

impl EspDecrypt {
    pub fn new(ipsec: Ipsec) -> Self {
        EspDecrypt { ipsec }
    }

    pub fn ipsec(&self) -> &Ipsec {
        &self.ipsec
    }

    pub fn ipsec_mut(&mut self) -> &mut Ipsec {
        &mut self.ipsec
    }

    /// One packet (the stage's per-packet body).
    #[inline]
    pub fn decrypt(&mut self, pkt: &mut Pkt, now: u64) -> Next {
        let r = match l3(pkt) {
            Ok(mut b) => self.ipsec.inbound(&mut b, now),
            Err(e) => Err(e),
        };
        match r {
            Ok(Inbound::Decrypted { .. }) => {
                fix_l2_type(pkt);
                Next::Keep
            }
            Ok(Inbound::Bypass) => Next::Keep,
            Ok(Inbound::Punt) => Next::Punt,
            Err(e) => e.into(),
        }
    }
}

impl Stage for EspDecrypt {
    fn name(&self) -> &'static str {
        "esp-decrypt"
    }

    fn errors(&self) -> &'static [&'static str] {
        &DropReason::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        &DropReason::HELP
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        let c = &self.ipsec.counters;
        f(Counter::gauge(
            "sas",
            "security associations installed",
            self.ipsec.sad.len() as u64,
        ));
        f(Counter::total(
            "decrypted",
            "ESP packets verified and decrypted (RFC 4303 §3.4)",
            c.decrypted,
        ));
        f(Counter::total(
            "bypassed",
            "clear packets a BYPASS policy let through (RFC 4301 §4.4.1)",
            c.bypassed,
        ));
        f(Counter::total(
            "punted",
            "IKE and NAT-T keepalives on UDP 4500 sent to the control plane (RFC 3948)",
            c.punted,
        ));
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let now = out.now_ns / 1_000_000_000;
        batch.dispatch(node, out, |pkt, _| self.decrypt(pkt, now));
    }

    fn tick(&mut self, out: &mut Out) {
        self.ipsec.sad.tick(out.now_ns / 1_000_000_000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{udp4, udp6};
    use crate::*;
    use alloc::vec::Vec;
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use dataplane::buf::Pool;

    fn eth(ip: &[u8]) -> Vec<u8> {
        let mut f = alloc::vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        f.extend_from_slice(if ip[0] >> 4 == 6 {
            &[0x86, 0xdd]
        } else {
            &[0x08, 0x00]
        });
        f.extend_from_slice(ip);
        f
    }

    fn stages(outer6: bool) -> (EspEncrypt, EspDecrypt) {
        let (s, d) = if outer6 {
            (
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9)),
            )
        } else {
            (
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            )
        };
        let km = KeyMaterial::new(Algorithm::Aes128Gcm16, &[3; 20]).unwrap();
        let mut tx = Ipsec::new();
        let id = tx
            .sad
            .add(SaConfig::tunnel(0x5000, Direction::Outbound, s, d), &km, 0)
            .unwrap();
        tx.spd.push_outbound(Selector::any(), Action::Protect(id));
        let mut rx = Ipsec::new();
        rx.sad
            .add(SaConfig::tunnel(0x5000, Direction::Inbound, s, d), &km, 0)
            .unwrap();
        rx.spd.push_inbound(Selector::any(), Action::Bypass);
        (EspEncrypt::new(tx), EspDecrypt::new(rx))
    }

    #[test]
    fn batch_round_trip_with_drop_counters() {
        let pool = Pool::new(1024).unwrap();
        let mut out = Out::new(1, pool.cache());
        for outer6 in [false, true] {
            let (mut enc, mut dec) = stages(outer6);
            let mut n_enc = NodeStats::new(enc.name(), enc.errors());
            let mut n_dec = NodeStats::new(dec.name(), dec.errors());
            let mut frames = Vec::new();
            let mut batch = Batch::new();
            for i in 0..200usize {
                let ip = if i % 3 == 0 {
                    udp6(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED, 1, 2, i)
                } else {
                    udp4(
                        Ipv4Addr::new(10, 0, 0, 1),
                        Ipv4Addr::new(10, 0, 0, 2),
                        1,
                        2,
                        i * 7,
                    )
                };
                let f = eth(&ip);
                let mut p = out.cache.alloc().unwrap();
                p.copy_from(&f).unwrap();
                p.meta.l3 = 14;
                batch.push(p).unwrap();
                frames.push(f);
            }
            enc.process(&mut batch, &mut n_enc, &mut out);
            assert_eq!(batch.len(), 200);
            let want_type = if outer6 { [0x86, 0xdd] } else { [0x08, 0x00] };
            let mut copies = Vec::new();
            for p in batch.iter() {
                assert_eq!(&p.data()[12..14], &want_type);
                copies.push(p.data().to_vec());
            }
            dec.process(&mut batch, &mut n_dec, &mut out);
            assert_eq!(batch.len(), 200);
            for (p, f) in batch.iter().zip(&frames) {
                assert_eq!(p.data(), &f[..]);
            }
            batch.free_all(&mut out.cache);
            // Replays, a forgery and a truncation, counted per reason.
            for (i, c) in copies.iter().enumerate().take(5) {
                let mut p = out.cache.alloc().unwrap();
                let mut c = c.clone();
                if i == 3 {
                    let l = c.len() - 1;
                    c[l] ^= 1;
                }
                if i == 4 {
                    c.truncate(40);
                }
                p.copy_from(&c).unwrap();
                p.meta.l3 = 14;
                batch.push(p).unwrap();
            }
            dec.process(&mut batch, &mut n_dec, &mut out);
            assert!(batch.is_empty());
            assert_eq!(
                n_dec.drops[DropReason::Replay.index()],
                4,
                "3 replays + forged (seq seen)"
            );
            assert_eq!(n_dec.drops[DropReason::Malformed.index()], 1);
            assert_eq!(n_dec.dropped(), 5);
            assert_eq!(dec.ipsec().counters.decrypted, 200);
        }
    }

    #[test]
    fn transport_mode_behind_a_vlan_tag() {
        let pool = Pool::new(64).unwrap();
        let mut out = Out::new(1, pool.cache());
        let km = KeyMaterial::new(Algorithm::Aes256Gcm16, &[9; 36]).unwrap();
        let mut cfg = SaConfig::transport(0x6000, Direction::Outbound);
        cfg.algorithm = Algorithm::Aes256Gcm16;
        cfg.encap = Some(UdpEncap::default());
        let mut tx = Ipsec::new();
        let id = tx.sad.add(cfg.clone(), &km, 0).unwrap();
        tx.spd.push_outbound(Selector::any(), Action::Protect(id));
        cfg.direction = Direction::Inbound;
        let mut rx = Ipsec::new();
        rx.sad.add(cfg, &km, 0).unwrap();
        let (mut enc, mut dec) = (EspEncrypt::new(tx), EspDecrypt::new(rx));
        // Ethernet + 802.1Q tag: L3 at 18.
        let mut f =
            alloc::vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0x00, 0x00, 0x07, 0x08, 0x00];
        f.extend_from_slice(&udp4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            7,
            8,
            33,
        ));
        let mut p = out.cache.alloc().unwrap();
        p.copy_from(&f).unwrap();
        p.meta.l3 = 18;
        assert_eq!(enc.encrypt(&mut p, 0), Next::Keep);
        assert_eq!(&p.data()[..18], &f[..18], "L2 header moved along intact");
        assert_eq!(p.data()[18 + 9], 17, "UDP-encapsulated ESP");
        assert_eq!(dec.decrypt(&mut p, 0), Next::Keep);
        assert_eq!(p.data(), &f[..], "original frame restored");
        out.cache.free(p);
    }

    #[test]
    fn l3_offset_past_the_packet_is_a_counted_drop() {
        let pool = Pool::new(64).unwrap();
        let mut out = Out::new(1, pool.cache());
        let (mut enc, _) = stages(false);
        let mut node = NodeStats::new(enc.name(), enc.errors());
        let mut batch = Batch::new();
        let mut p = out.cache.alloc().unwrap();
        p.copy_from(&[1, 2, 3]).unwrap();
        p.meta.l3 = 14;
        batch.push(p).unwrap();
        enc.process(&mut batch, &mut node, &mut out);
        assert_eq!(node.drops[DropReason::Malformed.index()], 1);
    }
}
