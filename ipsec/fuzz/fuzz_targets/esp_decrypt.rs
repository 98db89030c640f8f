//! Fuzzes the inbound ESP path (RFC 4303 §3.4) through `Ipsec::inbound`.
//!
//! Input byte 0 picks the set-up: bit 0 transport mode, bit 1 UDP encapsulation,
//! bit 2 ESN, bit 3 IPv6 outer header, bit 4 "raw" (the rest is fed as the packet
//! as is). Otherwise bytes 1..5 are the low sequence number and the rest is the
//! plaintext (payload + padding + trailer, any bytes), sealed with the SA's key so
//! the ICV verifies and the padding / next-header / inner-header checks are reached.
//! Invariants: no panic; exactly one counter moves per packet; a decrypted packet
//! fits the buffer it came in.
#![no_main]

use ipsec::crypto::GcmKey;
use ipsec::testutil::{esp_raw, RawEsp};
use ipsec::*;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const SPI: u32 = 0x4242_0001;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let v6 = flags & 8 != 0;
    let (src, dst) = if v6 {
        (IpAddr::V6(Ipv6Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2)))
    } else {
        (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)))
    };
    let mut cfg = if flags & 1 != 0 {
        SaConfig::transport(SPI, Direction::Inbound)
    } else {
        SaConfig::tunnel(SPI, Direction::Inbound, src, dst)
    };
    cfg.encap = (flags & 2 != 0).then(UdpEncap::default);
    cfg.esn = flags & 4 != 0;
    cfg.replay_window = 64;
    let km = [7u8; 20];
    let Ok(key) = KeyMaterial::new(Algorithm::Aes128Gcm16, &km) else { return };
    let mut rx = Ipsec::new();
    if rx.sad.add(cfg.clone(), &key, 0).is_err() {
        return;
    }
    rx.spd.push_inbound(Selector::any(), Action::Bypass);

    let packet = if flags & 16 != 0 {
        rest.to_vec()
    } else {
        let Some((seq, plaintext)) = rest.split_first_chunk::<4>() else { return };
        let seq = u64::from(u32::from_be_bytes(*seq));
        let Ok(k) = GcmKey::new(cfg.backend, cfg.algorithm, &key) else { return };
        let h = RawEsp { spi: SPI, seq, esn: cfg.esn, src, dst, udp: cfg.encap.is_some() };
        esp_raw(&k, &h, plaintext)
    };
    let mut buf = HeadroomBuf::from_packet(&packet);
    let r = rx.inbound(&mut buf, 0);
    let c = rx.counters;
    assert_eq!(c.decrypted + c.bypassed + c.punted + c.total_drops(), 1);
    if let Ok(Inbound::Decrypted { .. }) = r {
        assert!(buf.len() <= packet.len());
        // Replaying the same bytes must now be refused.
        let mut again = HeadroomBuf::from_packet(&packet);
        assert_eq!(rx.inbound(&mut again, 0), Err(DropReason::Replay));
    }
});
