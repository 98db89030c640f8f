//! Engine stages `esp-encrypt` (RFC 4303 §3.3, outbound) and `esp-decrypt` (§3.4,
//! inbound) over batches of the engine's packet buffers, with one drop counter per
//! [`DropReason`] (VPP's `show errors` shape) and the engine's packet trace.
//!
//! Packets are Ethernet frames whose L3 header starts at `meta.l3` (set by
//! `ethernet-input`). A stage lifts the L2 header off, works on the IP packet in place
//! (the 256-byte headroom takes the outer IP + UDP + ESP header), puts the L2 header
//! back and fixes its EtherType (or PPP protocol) to the new outer family. Encrypted
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
use dataplane::stage::{NodeStats, Stage};

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

/// Longest L2 header kept aside (Ethernet + 2 VLAN tags + PPPoE fits).
const MAX_L2: usize = 64;

struct L2 {
    bytes: [u8; MAX_L2],
    len: usize,
}

/// Lifts the L2 header (the bytes before `meta.l3`) off the packet.
#[inline]
fn take_l2(pkt: &mut Pkt) -> Result<L2, DropReason> {
    let len = usize::from(pkt.meta.l3);
    let mut l2 = L2 {
        bytes: [0; MAX_L2],
        len,
    };
    let src = pkt.data().get(..len).ok_or(DropReason::Malformed)?;
    l2.bytes
        .get_mut(..len)
        .ok_or(DropReason::Malformed)?
        .copy_from_slice(src);
    pkt.strip(len).map_err(|_| DropReason::Malformed)?;
    Ok(l2)
}

/// Puts the L2 header back in front of the (new) IP packet and sets the EtherType or
/// PPP protocol field just before L3 to the packet's IP version.
#[inline]
fn put_l2(pkt: &mut Pkt, l2: &L2) -> Result<(), DropReason> {
    let v6 = pkt.data().first().is_some_and(|b| b >> 4 == 6);
    let hdr = pkt.prepend(l2.len).map_err(|_| DropReason::NoRoom)?;
    hdr.copy_from_slice(l2.bytes.get(..l2.len).ok_or(DropReason::NoRoom)?);
    if let Some(t) = l2.len.checked_sub(2).and_then(|i| hdr.get_mut(i..i + 2)) {
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
    Ok(())
}

#[inline]
fn drop_next(r: DropReason) -> Next {
    Next::Drop(r.index() as u16)
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
        let l2 = match take_l2(pkt) {
            Ok(l2) => l2,
            Err(r) => return drop_next(r),
        };
        let r = self.ipsec.outbound(pkt, now);
        if let Err(e) = put_l2(pkt, &l2) {
            return drop_next(e);
        }
        match r {
            Ok(_) => Next::Keep,
            Err(e) => drop_next(e),
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
        let l2 = match take_l2(pkt) {
            Ok(l2) => l2,
            Err(r) => return drop_next(r),
        };
        let r = self.ipsec.inbound(pkt, now);
        if let Err(e) = put_l2(pkt, &l2) {
            return drop_next(e);
        }
        match r {
            Ok(Inbound::Decrypted { .. }) | Ok(Inbound::Bypass) => Next::Keep,
            Ok(Inbound::Punt) => Next::Punt,
            Err(e) => drop_next(e),
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
