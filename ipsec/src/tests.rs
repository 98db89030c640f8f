//! End-to-end tests of [`Ipsec`]: a sender and a receiver instance with matching SAs.

use crate::crypto::{GcmKey, ICV_LEN};
use crate::testutil::{udp, udp4};
use crate::*;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use proptest::prelude::*;
use std::sync::Mutex;

const SPI: u32 = 0x0102_0304;

fn v4(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, a, 0, b))
}

fn v6(a: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, a, 0, 0, 0, 0, 1))
}

fn keymat(alg: Algorithm) -> KeyMaterial {
    let bytes: Vec<u8> = (0..alg.keymat_len() as u8)
        .map(|i| i.wrapping_mul(31) ^ 0x5a)
        .collect();
    KeyMaterial::new(alg, &bytes).unwrap()
}

/// Sender with one outbound SA (protect everything), receiver with the inbound twin.
fn pair(mut cfg: SaConfig) -> (Ipsec, SaId, Ipsec, SaId) {
    let km = keymat(cfg.algorithm);
    let mut tx = Ipsec::new();
    cfg.direction = Direction::Outbound;
    let out = tx.sad.add(cfg.clone(), &km, 0).unwrap();
    tx.spd.push_outbound(Selector::any(), Action::Protect(out));
    let mut rx = Ipsec::new();
    cfg.direction = Direction::Inbound;
    let inb = rx.sad.add(cfg, &km, 0).unwrap();
    (tx, out, rx, inb)
}

fn seal(tx: &mut Ipsec, pkt: &[u8]) -> HeadroomBuf {
    let mut b = HeadroomBuf::from_packet(pkt);
    assert!(matches!(tx.outbound(&mut b, 0), Ok(Outbound::Protected(_))));
    b
}

fn backends() -> Vec<Backend> {
    Backend::compiled().to_vec()
}

#[test]
fn round_trip_every_mode_family_encap_esn_key_size_backend() {
    let modes = [
        Mode::Tunnel {
            src: v4(1, 1),
            dst: v4(2, 1),
        },
        Mode::Tunnel {
            src: v6(1),
            dst: v6(2),
        },
        Mode::Transport,
    ];
    let mut n = 0;
    for mode in modes {
        for inner_v6 in [false, true] {
            for encap in [None, Some(UdpEncap::default())] {
                for esn in [false, true] {
                    for alg in [Algorithm::Aes128Gcm16, Algorithm::Aes256Gcm16] {
                        for backend in backends() {
                            let mut cfg = SaConfig::transport(SPI, Direction::Outbound);
                            cfg.mode = mode;
                            cfg.encap = encap;
                            cfg.esn = esn;
                            cfg.algorithm = alg;
                            cfg.backend = backend;
                            let (mut tx, _, mut rx, inb) = pair(cfg);
                            let (s, d) = if inner_v6 {
                                (v6(7), v6(8))
                            } else {
                                (v4(7, 7), v4(8, 8))
                            };
                            for len in [0usize, 1, 2, 3, 4, 5, 17, 64, 1400] {
                                let pkt = udp(s, d, 1000, 2000, len);
                                let mut b = seal(&mut tx, &pkt);
                                let wire = b.to_vec();
                                let ip = ip::parse(&wire).unwrap();
                                assert_eq!(ip.total_len, wire.len());
                                let r = rx.inbound(&mut b, 0);
                                assert_eq!(
                                    r,
                                    Ok(Inbound::Decrypted {
                                        sa: inb,
                                        next_header: match (mode, inner_v6) {
                                            (Mode::Transport, _) => 17,
                                            (_, false) => 4,
                                            (_, true) => 41,
                                        }
                                    }),
                                    "{mode:?} v6={inner_v6} {encap:?} esn={esn} {alg:?} {backend:?} len={len}"
                                );
                                assert_eq!(b.data(), &pkt[..]);
                                n += 1;
                            }
                            assert_eq!(rx.counters.decrypted, 9);
                            assert_eq!(rx.counters.total_drops(), 0);
                        }
                    }
                }
            }
        }
    }
    assert_eq!(n, 3 * 2 * 2 * 2 * 2 * backends().len() * 9);
}

#[test]
fn wire_format_tunnel_v4() {
    let (mut tx, _, _, _) = pair(SaConfig::tunnel(
        SPI,
        Direction::Outbound,
        v4(1, 1),
        v4(2, 1),
    ));
    let pkt = udp4(
        Ipv4Addr::new(192, 168, 0, 1),
        Ipv4Addr::new(192, 168, 1, 1),
        5,
        6,
        3,
    );
    // 31-byte inner packet: pad = 3 so that 31 + 3 + 2 = 36.
    let w1 = seal(&mut tx, &pkt).to_vec();
    let w2 = seal(&mut tx, &pkt).to_vec();
    assert_eq!(w1.len(), 20 + 8 + 8 + 36 + ICV_LEN);
    assert_eq!(w1[9], 50, "outer protocol ESP");
    assert!(
        dataplane::proto::checksum::verify(&w1[..20]),
        "outer checksum valid"
    );
    assert_eq!(&w1[12..16], &[10, 1, 0, 1]);
    assert_eq!(&w1[20..24], &SPI.to_be_bytes());
    assert_eq!(
        &w1[24..28],
        &1u32.to_be_bytes(),
        "first sequence number is 1"
    );
    assert_eq!(
        &w1[28..36],
        &1u64.to_be_bytes(),
        "IV = 64-bit sequence number"
    );
    assert_eq!(&w2[24..28], &2u32.to_be_bytes());
    assert_ne!(w1[36..], w2[36..], "fresh IV, different ciphertext");
    // Decrypt by hand with the key alone: check trailer bytes.
    let k = GcmKey::new(
        Backend::preferred(),
        Algorithm::Aes128Gcm16,
        &keymat(Algorithm::Aes128Gcm16),
    )
    .unwrap();
    let mut region = w1[36..].to_vec();
    let mut aad = SPI.to_be_bytes().to_vec();
    aad.extend_from_slice(&1u32.to_be_bytes());
    k.open(&1u64.to_be_bytes(), &aad, &mut region).unwrap();
    assert_eq!(&region[..31], &pkt[..]);
    assert_eq!(
        &region[31..36],
        &[1, 2, 3, 3, 4],
        "pad 1,2,3; pad length 3; next header 4"
    );
}

#[test]
fn replay_reorder_forgery_truncation_unknown_spi_all_counted() {
    let mut cfg = SaConfig::tunnel(SPI, Direction::Outbound, v4(1, 1), v4(2, 1));
    cfg.replay_window = 64;
    let (mut tx, _, mut rx, _) = pair(cfg);
    let pkt = udp4(
        Ipv4Addr::new(1, 1, 1, 1),
        Ipv4Addr::new(2, 2, 2, 2),
        1,
        2,
        100,
    );
    let wires: Vec<Vec<u8>> = (0..200).map(|_| seal(&mut tx, &pkt).to_vec()).collect();
    // Deliver 100..200 except 170..176 first, then 0 (older than the window of 64) and
    // 150 again.
    for (i, w) in wires.iter().enumerate().skip(100) {
        if !(170..176).contains(&i) {
            assert!(rx.inbound(&mut HeadroomBuf::from_packet(w), 0).is_ok());
        }
    }
    assert_eq!(
        rx.inbound(&mut HeadroomBuf::from_packet(&wires[0]), 0),
        Err(DropReason::Replay)
    );
    assert_eq!(
        rx.inbound(&mut HeadroomBuf::from_packet(&wires[150]), 0),
        Err(DropReason::Replay)
    );
    // Reordered but inside the window: accepted.
    assert!(rx
        .inbound(&mut HeadroomBuf::from_packet(&wires[175]), 0)
        .is_ok());
    // Forged ICV, forged ciphertext, forged sequence number (covered by the AAD).
    for (i, off) in [(0usize, 1usize), (1, 60), (2, 26)] {
        let mut w = wires[170 + i].clone();
        let at = if off == 1 { w.len() - 1 } else { off };
        w[at] ^= 0x80;
        let r = rx.inbound(&mut HeadroomBuf::from_packet(&w), 0);
        assert_eq!(r, Err(DropReason::IcvFail), "offset {at}");
    }
    // A forged packet must not have moved the window: the genuine one still passes.
    assert!(rx
        .inbound(&mut HeadroomBuf::from_packet(&wires[170]), 0)
        .is_ok());
    // Truncated: cut anywhere after the IP header, and fix the IP length so the packet
    // is self-consistent; also a cut without fixing the length.
    let full = wires[174].len();
    for cut in [21usize, 28, 36, 40, 60, full - 1, full - 4] {
        let mut w = wires[174][..cut].to_vec();
        w[2..4].copy_from_slice(&(cut as u16).to_be_bytes());
        let r = rx.inbound(&mut HeadroomBuf::from_packet(&w), 0);
        let want = if cut >= 20 + 36 && (cut - 20 - 32) % 4 == 0 {
            DropReason::IcvFail
        } else {
            DropReason::Malformed
        };
        assert_eq!(r, Err(want), "cut {cut}");
        let r = rx.inbound(&mut HeadroomBuf::from_packet(&wires[174][..cut]), 0);
        assert_eq!(r, Err(DropReason::Malformed));
    }
    let mut w = wires[91].clone();
    w[20] ^= 1;
    assert_eq!(
        rx.inbound(&mut HeadroomBuf::from_packet(&w), 0),
        Err(DropReason::NoSa)
    );
    let c = rx.counters;
    assert_eq!(c.drop_count(DropReason::Replay), 2);
    assert_eq!(c.drop_count(DropReason::NoSa), 1);
    assert_eq!(c.drop_count(DropReason::IcvFail), 5);
    assert_eq!(c.drop_count(DropReason::Malformed), 12);
}

/// Builds a tunnel-mode ESP packet by hand with arbitrary trailer bytes.
fn handmade(payload_and_trailer: &[u8], seq: u32) -> Vec<u8> {
    let k = GcmKey::new(
        Backend::preferred(),
        Algorithm::Aes128Gcm16,
        &keymat(Algorithm::Aes128Gcm16),
    )
    .unwrap();
    let mut body = payload_and_trailer.to_vec();
    let mut aad = SPI.to_be_bytes().to_vec();
    aad.extend_from_slice(&seq.to_be_bytes());
    let iv = u64::from(seq).to_be_bytes();
    let tag = k.seal(&iv, &aad, &mut body).unwrap();
    let total = 20 + 16 + body.len() + 16;
    let mut p = Vec::new();
    p.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0,
        0,
        64,
        50,
        0,
        0,
    ]);
    p.extend_from_slice(&[10, 1, 0, 1, 10, 2, 0, 1]);
    p.extend_from_slice(&SPI.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&iv);
    p.extend_from_slice(&body);
    p.extend_from_slice(&tag);
    p
}

#[test]
fn bad_padding_and_dummy_packets() {
    let (_, _, mut rx, _) = pair(SaConfig::tunnel(
        SPI,
        Direction::Outbound,
        v4(1, 1),
        v4(2, 1),
    ));
    let inner = udp4(
        Ipv4Addr::new(1, 1, 1, 1),
        Ipv4Addr::new(2, 2, 2, 2),
        1,
        2,
        3,
    ); // 31 B
    let mut t = inner.clone();
    t.extend_from_slice(&[1, 2, 3, 3, 4]);
    assert!(rx
        .inbound(&mut HeadroomBuf::from_packet(&handmade(&t, 1)), 0)
        .is_ok());
    let mut bad = inner.clone();
    bad.extend_from_slice(&[1, 2, 4, 3, 4]); // pad byte 3 wrong
    assert_eq!(
        rx.inbound(&mut HeadroomBuf::from_packet(&handmade(&bad, 2)), 0),
        Err(DropReason::BadPadding)
    );
    let mut long = inner.clone();
    long.extend_from_slice(&[0, 0, 0, 200, 4]); // pad length past the payload
    assert_eq!(
        rx.inbound(&mut HeadroomBuf::from_packet(&handmade(&long, 3)), 0),
        Err(DropReason::BadPadding)
    );
    let dummy = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 59, 0];
    let mut d = dummy.to_vec();
    d[14] = 2;
    d[15] = 59;
    assert_eq!(
        rx.inbound(&mut HeadroomBuf::from_packet(&handmade(&d, 4)), 0),
        Err(DropReason::Dummy)
    );
    assert_eq!(rx.counters.drop_count(DropReason::BadPadding), 2);
}

#[test]
fn policies_outbound_and_inbound() {
    let lan = Prefix::new(v4(7, 0), 16);
    let mut cfg = SaConfig::tunnel(SPI, Direction::Outbound, v4(1, 1), v4(2, 1));
    cfg.selector = Some(Selector::between(lan, Prefix::new(v4(8, 0), 16)));
    let (mut tx, out, mut rx, inb) = pair(cfg);
    // Sender: only 10.7/16 → 10.8/16 protected; DNS bypasses; the rest discarded.
    tx.spd = Spd::new();
    tx.spd.push_outbound(
        Selector {
            proto: Some(17),
            dport: Some(PortRange::one(53)),
            ..Selector::any()
        },
        Action::Bypass,
    );
    tx.spd.push_outbound(
        Selector::between(lan, Prefix::new(v4(0, 0), 8)),
        Action::Protect(out),
    );
    let ok = udp(v4(7, 7), v4(8, 8), 1, 2, 10);
    let dns = udp(v4(7, 7), v4(8, 8), 1, 53, 10);
    let other = udp(v4(9, 9), v4(8, 8), 1, 2, 10);
    let mut b = HeadroomBuf::from_packet(&dns);
    assert_eq!(tx.outbound(&mut b, 0), Ok(Outbound::Bypass));
    assert_eq!(b.data(), &dns[..]);
    assert_eq!(
        tx.outbound(&mut HeadroomBuf::from_packet(&other), 0),
        Err(DropReason::PolicyDiscard)
    );
    let mut b = HeadroomBuf::from_packet(&ok);
    assert_eq!(tx.outbound(&mut b, 0), Ok(Outbound::Protected(out)));
    assert_eq!(
        rx.inbound(&mut b, 0),
        Ok(Inbound::Decrypted {
            sa: inb,
            next_header: 4
        })
    );
    // The SA protects 10.7→10.8 only: a packet to 10.9 through the same SA is refused
    // after decryption.
    tx.spd = Spd::new();
    tx.spd.push_outbound(Selector::any(), Action::Protect(out));
    let mut b = HeadroomBuf::from_packet(&udp(v4(7, 7), v4(9, 9), 1, 2, 10));
    tx.outbound(&mut b, 0).unwrap();
    assert_eq!(rx.inbound(&mut b, 0), Err(DropReason::PolicyMismatch));
    // Clear packet on the receiver: must have been protected → mismatch; bypass ok.
    rx.spd.push_inbound(
        Selector::between(lan, Prefix::new(v4(8, 0), 16)),
        Action::Protect(inb),
    );
    rx.spd.push_inbound(Selector::any(), Action::Bypass);
    assert_eq!(
        rx.inbound(&mut HeadroomBuf::from_packet(&ok), 0),
        Err(DropReason::PolicyMismatch)
    );
    assert_eq!(
        rx.inbound(&mut HeadroomBuf::from_packet(&other), 0),
        Ok(Inbound::Bypass)
    );
    assert_eq!(rx.counters.drop_count(DropReason::PolicyMismatch), 2);
}

#[test]
fn nat_t_ike_and_keepalive_are_punted() {
    let (_, _, mut rx, _) = pair(SaConfig::tunnel(
        SPI,
        Direction::Outbound,
        v4(1, 1),
        v4(2, 1),
    ));
    let mut ike = udp4(
        Ipv4Addr::new(1, 1, 1, 1),
        Ipv4Addr::new(2, 2, 2, 2),
        4500,
        4500,
        40,
    );
    ike[28..32].copy_from_slice(&[0, 0, 0, 0]);
    assert_eq!(
        rx.inbound(&mut HeadroomBuf::from_packet(&ike), 0),
        Ok(Inbound::Punt)
    );
    let mut ka = udp4(
        Ipv4Addr::new(1, 1, 1, 1),
        Ipv4Addr::new(2, 2, 2, 2),
        4500,
        4500,
        1,
    );
    ka[28] = 0xff;
    assert_eq!(
        rx.inbound(&mut HeadroomBuf::from_packet(&ka), 0),
        Ok(Inbound::Punt)
    );
    assert_eq!(rx.counters.punted, 2);
}

#[test]
fn lifetimes_soft_and_hard_with_rekey_callback() {
    let mut cfg = SaConfig::tunnel(SPI, Direction::Outbound, v4(1, 1), v4(2, 1));
    cfg.lifetime.soft = Limits {
        packets: Some(3),
        ..Limits::default()
    };
    cfg.lifetime.hard = Limits {
        packets: Some(5),
        bytes: Some(1 << 20),
        ..Limits::default()
    };
    let (mut tx, out, _, _) = pair(cfg);
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev2 = Arc::clone(&events);
    tx.sad
        .set_rekey_callback(alloc::boxed::Box::new(move |e| ev2.lock().unwrap().push(e)));
    let pkt = udp4(
        Ipv4Addr::new(1, 1, 1, 1),
        Ipv4Addr::new(2, 2, 2, 2),
        1,
        2,
        10,
    );
    for _ in 0..5 {
        seal(&mut tx, &pkt);
    }
    for _ in 0..2 {
        assert_eq!(
            tx.outbound(&mut HeadroomBuf::from_packet(&pkt), 0),
            Err(DropReason::SaExpired)
        );
    }
    let ev = events.lock().unwrap().clone();
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(
        (ev[0].kind, ev[0].cause, ev[0].sa),
        (ExpiryKind::Soft, ExpiryCause::Packets, out)
    );
    assert_eq!(
        (ev[1].kind, ev[1].cause),
        (ExpiryKind::Hard, ExpiryCause::Packets)
    );
    assert_eq!(tx.counters.drop_count(DropReason::SaExpired), 2);
    assert_eq!(tx.sad.get(out).unwrap().stats().packets, 5);
}

#[test]
fn sequence_overflow_without_esn_and_wrap_with_esn() {
    let (mut tx, out, mut rx, inb) = pair(SaConfig::tunnel(
        SPI,
        Direction::Outbound,
        v4(1, 1),
        v4(2, 1),
    ));
    tx.sad
        .get_mut(out)
        .unwrap()
        .set_last_seq(u64::from(u32::MAX) - 1);
    let pkt = udp4(
        Ipv4Addr::new(1, 1, 1, 1),
        Ipv4Addr::new(2, 2, 2, 2),
        1,
        2,
        10,
    );
    let mut b = seal(&mut tx, &pkt);
    assert!(rx.inbound(&mut b, 0).is_ok());
    assert_eq!(
        tx.outbound(&mut HeadroomBuf::from_packet(&pkt), 0),
        Err(DropReason::SeqOverflow)
    );
    assert_eq!(tx.counters.drop_count(DropReason::SeqOverflow), 1);
    let _ = inb;

    let mut cfg = SaConfig::tunnel(SPI, Direction::Outbound, v4(1, 1), v4(2, 1));
    cfg.esn = true;
    let (mut tx, out, mut rx, inb) = pair(cfg);
    let start = (1u64 << 32) - 3;
    tx.sad.get_mut(out).unwrap().set_last_seq(start);
    // The receiver learns the high half from the stream (first packet moves it).
    rx.sad
        .get_mut(inb)
        .unwrap()
        .replay
        .as_mut()
        .unwrap()
        .update(start)
        .unwrap();
    let wires: Vec<_> = (0..6).map(|_| seal(&mut tx, &pkt)).collect();
    for (i, mut w) in wires.into_iter().enumerate() {
        assert_eq!(
            &w.data()[24..28],
            &((start + 1 + i as u64) as u32).to_be_bytes()
        );
        assert!(rx.inbound(&mut w, 0).is_ok(), "packet {i}");
        assert_eq!(w.data(), &pkt[..]);
    }
    assert_eq!(
        rx.sad.get(inb).unwrap().replay_window().unwrap().top(),
        (1u64 << 32) + 3
    );
}

#[test]
fn tfc_padding_hides_length_and_is_removed() {
    let mut cfg = SaConfig::tunnel(SPI, Direction::Outbound, v4(1, 1), v4(2, 1));
    cfg.tfc_pad_to = Some(256);
    let (mut tx, _, mut rx, _) = pair(cfg);
    let mut lens = Vec::new();
    for l in [1usize, 50, 200] {
        let pkt = udp4(
            Ipv4Addr::new(1, 1, 1, 1),
            Ipv4Addr::new(2, 2, 2, 2),
            1,
            2,
            l,
        );
        let mut b = seal(&mut tx, &pkt);
        lens.push(b.len());
        assert!(rx.inbound(&mut b, 0).is_ok());
        assert_eq!(b.data(), &pkt[..]);
    }
    assert!(lens.iter().all(|l| *l == lens[0]), "{lens:?}");
}

#[test]
fn no_room_is_a_drop_not_a_panic() {
    let (mut tx, _, _, _) = pair(SaConfig::tunnel(
        SPI,
        Direction::Outbound,
        v4(1, 1),
        v4(2, 1),
    ));
    let pkt = udp4(
        Ipv4Addr::new(1, 1, 1, 1),
        Ipv4Addr::new(2, 2, 2, 2),
        1,
        2,
        10,
    );
    let mut b = HeadroomBuf::with_room(8, &pkt, 64);
    assert_eq!(tx.outbound(&mut b, 0), Err(DropReason::NoRoom));
    assert_eq!(b.data(), &pkt[..], "unchanged");
    let mut b = HeadroomBuf::with_room(64, &pkt, 4);
    assert_eq!(tx.outbound(&mut b, 0), Err(DropReason::NoRoom));
    assert_eq!(b.data(), &pkt[..]);
}

#[cfg(all(feature = "ring", feature = "rustcrypto"))]
#[test]
fn ring_and_rustcrypto_give_identical_packets() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(4106);
    for alg in [Algorithm::Aes128Gcm16, Algorithm::Aes256Gcm16] {
        let mk = |backend| {
            let mut cfg = SaConfig::tunnel(SPI, Direction::Outbound, v4(1, 1), v4(2, 1));
            cfg.backend = backend;
            cfg.algorithm = alg;
            cfg.esn = true;
            pair(cfg)
        };
        let (mut a, _, mut ra, _) = mk(Backend::Ring);
        let (mut b, _, mut rb, _) = mk(Backend::RustCrypto);
        for _ in 0..300 {
            let len = rng.gen_range(0..1450);
            let mut pkt = udp4(
                Ipv4Addr::new(1, 1, 1, 1),
                Ipv4Addr::new(2, 2, 2, 2),
                1,
                2,
                len,
            );
            for x in pkt[28..].iter_mut() {
                *x = rng.gen();
            }
            let wa = seal(&mut a, &pkt);
            let wb = seal(&mut b, &pkt);
            assert_eq!(wa.data(), wb.data());
            // And each opens the other's packets.
            let (mut x, mut y) = (wa.clone(), wb.clone());
            assert!(rb.inbound(&mut x, 0).is_ok() && ra.inbound(&mut y, 0).is_ok());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any corruption of a valid ESP packet (bit flips, truncation, extension) is a
    /// counted drop or, when only bytes outside the ICV's coverage change (outer
    /// header TTL/ID), a correct decryption. Never a panic, never wrong plaintext.
    #[test]
    fn corrupted_packets_never_panic_or_leak(
        len in 0usize..300,
        flips in proptest::collection::vec((0usize..400, 0u8..8), 0..4),
        cut in proptest::option::of(0usize..400),
        grow in proptest::collection::vec(any::<u8>(), 0..8),
        udp_encap in any::<bool>(),
        v6_outer in any::<bool>(),
    ) {
        let mode = if v6_outer { Mode::Tunnel { src: v6(1), dst: v6(2) } } else { Mode::Tunnel { src: v4(1, 1), dst: v4(2, 1) } };
        let mut cfg = SaConfig::transport(SPI, Direction::Outbound);
        cfg.mode = mode;
        cfg.encap = udp_encap.then(UdpEncap::default);
        let (mut tx, _, mut rx, _) = pair(cfg);
        let pkt = udp4(Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2), 1, 2, len);
        let mut w = seal(&mut tx, &pkt).to_vec();
        for (pos, bit) in &flips {
            if let Some(b) = w.get_mut(*pos) { *b ^= 1 << bit; }
        }
        if let Some(c) = cut { w.truncate(c); }
        w.extend_from_slice(&grow);
        let mut b = HeadroomBuf::from_packet(&w);
        match rx.inbound(&mut b, 0) {
            Ok(Inbound::Decrypted { .. }) => prop_assert_eq!(b.data(), &pkt[..]),
            Ok(_) => {}
            Err(_) => prop_assert_eq!(rx.counters.total_drops(), 1),
        }
    }

    /// Arbitrary bytes into the decrypt path: no panic, and every non-success counted.
    #[test]
    fn arbitrary_input_is_counted(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (_, _, mut rx, _) = pair(SaConfig::tunnel(SPI, Direction::Outbound, v4(1, 1), v4(2, 1)));
        let r = rx.inbound(&mut HeadroomBuf::from_packet(&bytes), 0);
        let c = rx.counters;
        prop_assert_eq!(c.total_drops() + c.decrypted + c.bypassed + c.punted, 1);
        let decrypted = matches!(r, Ok(Inbound::Decrypted { .. }));
        prop_assert!(!decrypted);
    }
}
