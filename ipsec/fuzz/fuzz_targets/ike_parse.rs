//! Fuzzes the IKEv2 codec (RFC 7296 §3) and the responder's input path.
//!
//! Invariants: no panic on any input; a message that parses re-encodes to bytes that
//! parse to the same payloads (§3.2 chain, §3.3 proposals, ...); payloads sealed in
//! an SK payload (§3.14, RFC 5282) open to the same payloads and a flipped byte
//! fails the ICV; the responder counts every datagram it drops. Each input is also
//! tried with the header's length field patched to match.
#![no_main]

use ipsec::crypto::{Algorithm, Backend, GcmKey, KeyMaterial};
use ipsec::ike::wire::{self, Header, Message};
use ipsec::ike::{sk, Identification, IkeConfig, Responder, TrafficSelector};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

fuzz_target!(|raw: &[u8]| {
    // Most random inputs fail the header length check; also try each input with its
    // length field set to the input length, so the payload parsers see it.
    let mut patched = raw.to_vec();
    if let Some(l) = patched.get_mut(24..28) {
        l.copy_from_slice(&(raw.len() as u32).to_be_bytes());
    }
    for data in [raw, &patched[..]] {
        check(data);
    }
});

fn check(data: &[u8]) {
    let key = GcmKey::new(
        Backend::preferred(),
        Algorithm::Aes128Gcm16,
        &KeyMaterial::new(Algorithm::Aes128Gcm16, &[7u8; 20]).expect("key length"),
    )
    .expect("key");
    if let Ok(m) = Message::parse(data) {
        if m.sk.is_some() {
            // Random bytes never carry a valid ICV under this key.
            assert!(sk::open(data, &m, &key).is_err());
        } else {
            let again = wire::encode(&m.header, &m.payloads);
            let m2 = Message::parse(&again).expect("re-encoded message parses");
            assert_eq!(m2.payloads, m.payloads);
            let h = Header::new(1, 2, wire::exchange::INFORMATIONAL, 0, 3);
            let sealed = sk::seal(&h, &m.payloads, &key, 9);
            let ms = Message::parse(&sealed).expect("sealed message parses");
            assert_eq!(sk::open(&sealed, &ms, &key).expect("opens"), m.payloads);
            let mut bad = sealed.clone();
            if let Some(b) = bad.last_mut() {
                *b ^= 1;
            }
            assert!(sk::open(&bad, &ms, &key).is_err());
        }
    }
    let local: SocketAddr = "192.0.2.2:500".parse().expect("addr");
    let cfg = IkeConfig::psk(
        b"fuzz",
        Identification::fqdn("r.example"),
        TrafficSelector::any(true),
        TrafficSelector::any(true),
    );
    let mut r = Responder::new(cfg, local).expect("responder");
    let from: SocketAddr = "192.0.2.1:500".parse().expect("addr");
    let out = r.handle(data, from, 0);
    let c = r.counters();
    let dropped = c.parse_errors + c.unknown_spi + c.unexpected + c.invalid;
    assert!(out.len() <= 1);
    assert!(out.len() == 1 || dropped == 1);
}
