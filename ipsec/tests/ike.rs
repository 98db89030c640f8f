//! IKEv2 (RFC 7296): key derivation against independent vectors
//! (`tests/ike_kdf_vectors.py`, Python `hmac`/`hashlib`), and the sans-IO initiator
//! and responder talking to each other in one process: full handshake, ESP traffic
//! through the negotiated child SA, wrong PSK, INVALID_KE_PAYLOAD, COOKIE, proposal
//! and selector mismatches, retransmission, replayed / truncated / forged messages,
//! deletes.
#![cfg(feature = "ring")]

mod common;

use common::unhex;
use ipsec::crypto::{Backend, GcmKey};
use ipsec::ike::keys::{self, IkeKeys};
use ipsec::ike::wire::{self, notify};
use ipsec::ike::*;
use ipsec::spd::Prefix;
use ipsec::{Algorithm, Inbound, Ipsec, KeyMaterial};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

// ---- known-answer tests ----

struct Kat {
    prf: Prf,
    encr: Algorithm,
    child: Algorithm,
    skeyseed: &'static str,
    sk_d: &'static str,
    sk_ei: &'static str,
    sk_er: &'static str,
    sk_pi: &'static str,
    sk_pr: &'static str,
    child_keymat: &'static str,
    auth: &'static str,
}

/// Output of `python3 tests/ike_kdf_vectors.py`.
const KATS: [Kat; 2] = [
    Kat {
        prf: Prf::HmacSha256,
        encr: Algorithm::Aes256Gcm16,
        child: Algorithm::Aes128Gcm16,
        skeyseed: "35cfb53ee0f3fce50bc2669330b13553db8cf6eff7da80d3f7f463bd647e41f9",
        sk_d: "28cf3c8fc26c961ef2789c0cfcfbec00cfd4bd851e8ebc7cca6743b26fdb2c27",
        sk_ei: "f173e2d368c640069af4f375417bb87b981483bf77ef9ba875f21f816fb6bbbc644122bc",
        sk_er: "1e6d4f420365f51a2e184cccb0f2847cc95c432d45a4c694f04acebb30f92baee606c6fa",
        sk_pi: "444bd4e458f20b4d7f39fbed5131a5fd6ad5da2a8e8942015f611705f974605e",
        sk_pr: "3787f2aa142cf77df5b17c46f93ffab94ef8976caba4a9573ced1c4a111c5aa0",
        child_keymat: "a47f4013d8c5b40a9d9acc332215fd10d6e6a6dbb58a00c8cb3f68c0657a792fb6f0476e36f21f21",
        auth: "ad1912af32ee9875ab8b24ad8d732f65e1a7e21e1a0570270c3fd49ba68214ff",
    },
    Kat {
        prf: Prf::HmacSha384,
        encr: Algorithm::Aes128Gcm16,
        child: Algorithm::Aes256Gcm16,
        skeyseed: "e139473dd870fb7be4b516dae3c8ff91c877b0a988058196bab54900caa9b822a6fa66f1b63cfb96ff24e8472b79d10d",
        sk_d: "9ee094c342023bd04d7c2d1822633ca4aaf99988c361c1b885c31562412af4354a47afb611491914abc62ba94124a8e3",
        sk_ei: "3830cefe0e65134ecf8ab3c4a1d524092475d916",
        sk_er: "ee6469ff52138607014a09d5ec6b34dc86b802dd",
        sk_pi: "5fb55dda24726fff0b62218f065478bf6f6449a5b4d7fb65123f99aee4bafedb4bf4904bb1738f1cac7589e714e2f4e7",
        sk_pr: "fc38f5e305ee0bd0e20eed5bde88d9ff03d47c530b643ac78f038dc8f49a95782d9a7fb1325d87c40842acd1c9fe8618",
        child_keymat: "8ae963d52b617b7ddedc849599e89cd2616c8888379a959d21b2f19e202ab6a4765fc65374058597eb8a5344a4644f0dac562522b69e85944a4e82f14922bf5bfc50728e7885e621",
        auth: "fcda797373ab45be7ec418269bc07dbaf57905115ed7e34df066964d6cfe799e7f75d142ec5908b2cfcd9e6980d5277b",
    },
];

/// Two keys are equal when they seal the same plaintext to the same bytes.
fn same_key(alg: Algorithm, a: &KeyMaterial, b: &[u8]) -> bool {
    let ka = GcmKey::new(Backend::preferred(), alg, a).unwrap();
    let kb = GcmKey::new(
        Backend::preferred(),
        alg,
        &KeyMaterial::new(alg, b).unwrap(),
    )
    .unwrap();
    let (mut x, mut y) = (vec![7u8; 40], vec![7u8; 40]);
    let ta = ka.seal(&[1; 8], b"aad", &mut x).unwrap();
    let tb = kb.seal(&[1; 8], b"aad", &mut y).unwrap();
    x == y && ta == tb
}

#[test]
fn key_derivation_matches_independent_vectors() {
    let ni: Vec<u8> = (0x00..0x20).collect();
    let nr: Vec<u8> = (0x20..0x40).collect();
    let gir = [0xa5u8; 32];
    let (spi_i, spi_r) = (0x0102030405060708u64, 0x1112131415161718u64);
    let msg1: Vec<u8> = (0x40..0x80).collect();
    let id = Identification::fqdn("initiator.example");
    for k in &KATS {
        assert_eq!(*keys::skeyseed(k.prf, &ni, &nr, &gir), unhex(k.skeyseed));
        let ks = IkeKeys::derive(k.prf, k.encr, &ni, &nr, &gir, spi_i, spi_r).unwrap();
        assert_eq!(*ks.sk_d, unhex(k.sk_d));
        assert!(ks.sk_ai.is_empty() && ks.sk_ar.is_empty(), "AEAD: no SK_a");
        assert_eq!(*ks.sk_ei, unhex(k.sk_ei));
        assert_eq!(*ks.sk_er, unhex(k.sk_er));
        assert_eq!(*ks.sk_pi, unhex(k.sk_pi));
        assert_eq!(*ks.sk_pr, unhex(k.sk_pr));
        let want = unhex(k.child_keymat);
        assert_eq!(
            *k.prf.prf_plus(&ks.sk_d, &[&ni, &nr], want.len()).unwrap(),
            want
        );
        let (i2r, r2i) = keys::child_keymat(k.prf, &ks.sk_d, &ni, &nr, k.child).unwrap();
        let half = k.child.keymat_len();
        assert!(same_key(k.child, &i2r, &want[..half]));
        assert!(same_key(k.child, &r2i, &want[half..]));
        assert!(!same_key(k.child, &i2r, &want[half..]));
        let signed = keys::signed_octets(k.prf, &msg1, &nr, &ks.sk_pi, &id.body());
        assert_eq!(*keys::psk_auth(k.prf, b"test-psk", &signed), unhex(k.auth));
        assert!(keys::psk_auth_verify(
            k.prf,
            b"test-psk",
            &signed,
            &unhex(k.auth)
        ));
        assert!(!keys::psk_auth_verify(
            k.prf,
            b"test-psk!",
            &signed,
            &unhex(k.auth)
        ));
    }
    let a: SocketAddr = "192.0.2.1:500".parse().unwrap();
    assert_eq!(
        keys::nat_detection_hash(spi_i, spi_r, a).to_vec(),
        unhex("d798d986143f878f70765e0e869c80bbc375f701")
    );
    // prf+ is limited to 255 blocks (§2.13).
    assert!(Prf::HmacSha256.prf_plus(b"k", &[b"s"], 255 * 32).is_ok());
    assert_eq!(
        Prf::HmacSha256.prf_plus(b"k", &[b"s"], 255 * 32 + 1).err(),
        Some(KeyError::TooLong)
    );
}

// ---- initiator <-> responder ----

const T0: u64 = 1_000_000;

fn addr_i() -> SocketAddr {
    "192.0.2.1:500".parse().unwrap()
}

fn addr_r() -> SocketAddr {
    "192.0.2.2:500".parse().unwrap()
}

fn net(a: [u8; 4], len: u8) -> TrafficSelector {
    TrafficSelector::from_prefix(Prefix::new(IpAddr::V4(Ipv4Addr::from(a)), len))
}

/// Initiator protects 10.1.0.0/16 -> 10.2.0.0/16; the responder allows 10.0.0.0/8
/// behind the initiator and offers only 10.2.3.0/24 behind itself (narrowing).
fn configs() -> (IkeConfig, IkeConfig) {
    let mut i = IkeConfig::psk(
        b"correct horse battery staple",
        Identification::fqdn("initiator.example"),
        net([10, 1, 0, 0], 16),
        net([10, 2, 0, 0], 16),
    );
    i.remote_id = Some(Identification::fqdn("responder.example"));
    let mut r = IkeConfig::psk(
        b"correct horse battery staple",
        Identification::fqdn("responder.example"),
        net([10, 2, 3, 0], 24),
        net([10, 0, 0, 0], 8),
    );
    r.remote_id = Some(Identification::fqdn("initiator.example"));
    (i, r)
}

#[derive(Default)]
struct Run {
    i_events: Vec<Event>,
    r_events: Vec<Event>,
    /// Every datagram, in order: (from the initiator, sent on port 4500, bytes).
    wire: Vec<(bool, bool, Vec<u8>)>,
    /// A NAT in front of the initiator: the responder sees it as 192.0.2.1, port
    /// 500 -> 500 and 4500 -> 4501.
    nat: bool,
}

impl Run {
    fn nat() -> Self {
        Run {
            nat: true,
            ..Run::default()
        }
    }

    /// The initiator's address as the responder sees it.
    fn public_i(&self, natt: bool) -> SocketAddr {
        match (self.nat, natt) {
            (true, true) => "192.0.2.1:4501".parse().unwrap(),
            (false, true) => "192.0.2.1:4500".parse().unwrap(),
            _ => addr_i(),
        }
    }
}

fn addr_r_natt() -> SocketAddr {
    "192.0.2.2:4500".parse().unwrap()
}

/// Delivers datagrams both ways until nobody has anything to send.
fn pump(
    i: &mut Initiator,
    r: &mut Responder,
    first: Vec<Output>,
    from_initiator: bool,
    now: u64,
    run: &mut Run,
) {
    let mut queue: Vec<(bool, bool, Vec<u8>)> = Vec::new();
    let sort =
        |out: Vec<Output>, from_i: bool, run: &mut Run, q: &mut Vec<(bool, bool, Vec<u8>)>| {
            for o in out {
                match o {
                    Output::Send { to, data, natt } => {
                        let want = match (from_i, natt) {
                            (true, false) => addr_r(),
                            (true, true) => addr_r_natt(),
                            (false, n) => run.public_i(n),
                        };
                        assert_eq!(to, want);
                        assert_eq!(natt, data.starts_with(&[0; 4]));
                        q.push((from_i, natt, data));
                    }
                    Output::Event(e) if from_i => run.i_events.push(e),
                    Output::Event(e) => run.r_events.push(e),
                }
            }
        };
    sort(first, from_initiator, run, &mut queue);
    let mut steps = 0;
    while !queue.is_empty() {
        steps += 1;
        assert!(steps < 100, "exchange does not converge");
        let (from_i, natt, data) = queue.remove(0);
        run.wire.push((from_i, natt, data.clone()));
        let out = match (from_i, natt) {
            (true, false) => r.handle(&data, run.public_i(false), now),
            (true, true) => r.handle_natt(&data, run.public_i(true), now),
            (false, false) => i.handle(&data, addr_r(), now),
            (false, true) => i.handle_natt(&data, addr_r_natt(), now),
        };
        sort(out, !from_i, run, &mut queue);
    }
}

fn handshake(ci: IkeConfig, cr: IkeConfig) -> (Initiator, Responder, Run) {
    let mut i = Initiator::new(ci, addr_i(), addr_r(), T0);
    let mut r = Responder::new(cr, addr_r()).unwrap();
    let mut run = Run::default();
    let first = i.start(T0).unwrap();
    pump(&mut i, &mut r, first, true, T0, &mut run);
    (i, r, run)
}

fn child(events: &[Event]) -> Option<&ChildSa> {
    events.iter().find_map(|e| match e {
        Event::ChildSaUp(c) => Some(&**c),
        _ => None,
    })
}

fn down_reason(events: &[Event]) -> Option<DownReason> {
    events.iter().find_map(|e| match e {
        Event::IkeSaDown { reason, .. } => Some(*reason),
        _ => None,
    })
}

/// ESP through the negotiated SAs, both ways.
fn esp_works(a: &ChildSa, b: &ChildSa) {
    let (mut ia, mut ib) = (Ipsec::new(), Ipsec::new());
    let (_, a_out) = a.install(&mut ia.sad, 0).unwrap();
    let (_, b_out) = b.install(&mut ib.sad, 0).unwrap();
    one_way(&mut ia, &mut ib, a_out, a);
    one_way(&mut ib, &mut ia, b_out, b);
}

fn one_way(from: &mut Ipsec, to: &mut Ipsec, out_id: ipsec::SaId, c: &ChildSa) {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (c.local_ts.start_addr, c.remote_ts.start_addr) else {
        panic!("IPv4 selectors expected")
    };
    let pkt = ipsec::testutil::udp4(s, d, 1000, 2000, 64);
    let mut buf = ipsec::HeadroomBuf::from_packet(&pkt);
    from.encrypt_with(out_id, &mut buf, 0).unwrap();
    assert_ne!(ipsec::Buf::data(&buf), &pkt[..]);
    let r = to.inbound(&mut buf, 0).unwrap();
    assert!(matches!(r, Inbound::Decrypted { .. }), "{r:?}");
    assert_eq!(ipsec::Buf::data(&buf), &pkt[..]);
}

#[test]
fn full_handshake_child_sa_and_esp() {
    let (ci, cr) = configs();
    let (i, r, run) = handshake(ci, cr);
    assert_eq!(
        run.wire.len(),
        4,
        "IKE_SA_INIT and IKE_AUTH, two messages each"
    );
    assert_eq!(i.state(), IkeState::Established);
    let (spi_i, spi_r) = i.spis();
    assert_eq!(r.state(spi_r), Some(IkeState::Established));
    for ev in [&run.i_events, &run.r_events] {
        assert!(ev.iter().any(|e| matches!(
            e,
            Event::IkeSaUp { spi_i: a, spi_r: b, nat_local: false, nat_remote: false }
                if *a == spi_i && *b == spi_r
        )));
    }
    let ci = child(&run.i_events).expect("initiator child SA");
    let cr = child(&run.r_events).expect("responder child SA");
    assert_eq!(ci.inbound.spi, cr.outbound.spi);
    assert_eq!(ci.outbound.spi, cr.inbound.spi);
    assert_eq!(ci.outbound.algorithm, Algorithm::Aes256Gcm16);
    // Narrowed to the intersection: 10.2.3.0/24 behind the responder.
    assert_eq!(ci.remote_ts, net([10, 2, 3, 0], 24));
    assert_eq!(cr.local_ts, net([10, 2, 3, 0], 24));
    assert_eq!(ci.local_ts, net([10, 1, 0, 0], 16));
    assert_eq!(cr.remote_ts, net([10, 1, 0, 0], 16));
    assert!(cr.inbound.selector.is_some());
    // Secrets are not in Debug output.
    assert!(format!("{ci:?}").contains("<secret>"));
    esp_works(ci, cr);
    let c = r.counters();
    assert_eq!(
        (c.parse_errors, c.integrity_failures, c.auth_failures),
        (0, 0, 0)
    );
}

#[test]
fn p256_sha384_aes128_handshake() {
    let (mut ci, mut cr) = configs();
    for c in [&mut ci, &mut cr] {
        c.ike_dh = vec![DhGroup::Ecp256];
        c.ike_prf = vec![Prf::HmacSha384];
        c.ike_encr = vec![Algorithm::Aes128Gcm16];
        c.esp_encr = vec![Algorithm::Aes128Gcm16];
        c.esn = true;
    }
    let (i, _r, run) = handshake(ci, cr);
    assert_eq!(i.state(), IkeState::Established);
    let (a, b) = (child(&run.i_events).unwrap(), child(&run.r_events).unwrap());
    assert!(a.outbound.esn && b.inbound.esn);
    esp_works(a, b);
}

#[test]
fn wrong_psk_is_authentication_failed() {
    let (mut ci, cr) = configs();
    ci.psk = zeroize::Zeroizing::new(b"wrong".to_vec());
    let (i, r, run) = handshake(ci, cr);
    assert_eq!(i.state(), IkeState::Closed);
    assert_eq!(
        down_reason(&run.i_events),
        Some(DownReason::AuthenticationFailed)
    );
    assert_eq!(
        down_reason(&run.r_events),
        Some(DownReason::AuthenticationFailed)
    );
    assert!(child(&run.r_events).is_none() && child(&run.i_events).is_none());
    assert_eq!(r.counters().auth_failures, 1);
    // The responder's answer carried AUTHENTICATION_FAILED (seen by the initiator,
    // which closed without checking the responder's AUTH).
    assert_eq!(i.counters().auth_failures, 0);
}

#[test]
fn wrong_identity_is_authentication_failed() {
    let (ci, mut cr) = configs();
    cr.remote_id = Some(Identification::fqdn("someone-else.example"));
    let (i, r, _) = handshake(ci, cr);
    assert_eq!(i.state(), IkeState::Closed);
    assert_eq!(r.counters().auth_failures, 1);
}

#[test]
fn invalid_ke_payload_retry() {
    let (mut ci, mut cr) = configs();
    ci.ike_dh = vec![DhGroup::Ecp256, DhGroup::Curve25519];
    cr.ike_dh = vec![DhGroup::Curve25519];
    let (i, r, run) = handshake(ci, cr);
    assert_eq!(i.state(), IkeState::Established);
    assert_eq!(r.counters().invalid_ke_sent, 1);
    assert_eq!(run.wire.len(), 6);
    let m = Message::parse(&run.wire[1].2).unwrap();
    let n = m.notify(notify::INVALID_KE_PAYLOAD).unwrap();
    assert_eq!(n.data, 31u16.to_be_bytes());
    esp_works(child(&run.i_events).unwrap(), child(&run.r_events).unwrap());
}

#[test]
fn no_common_proposal() {
    let (mut ci, mut cr) = configs();
    ci.ike_encr = vec![Algorithm::Aes256Gcm16];
    cr.ike_encr = vec![Algorithm::Aes128Gcm16];
    let (i, r, run) = handshake(ci, cr);
    assert_eq!(
        down_reason(&run.i_events),
        Some(DownReason::NoProposalChosen)
    );
    assert_eq!(i.state(), IkeState::Closed);
    assert_eq!(r.counters().no_proposal_chosen, 1);
    assert!(r.sas_in(IkeState::HalfOpen).is_empty());
}

#[test]
fn child_refused_keeps_ike_sa() {
    let (ci, mut cr) = configs();
    cr.local_ts = net([172, 16, 0, 0], 12);
    let (i, _r, run) = handshake(ci, cr);
    assert_eq!(i.state(), IkeState::Established);
    for ev in [&run.i_events, &run.r_events] {
        assert!(ev.iter().any(|e| matches!(
            e,
            Event::ChildSaFailed { notify: n } if *n == notify::TS_UNACCEPTABLE
        )));
        assert!(child(ev).is_none());
    }
    let (ci, mut cr) = configs();
    cr.esp_encr = vec![Algorithm::Aes128Gcm16];
    let mut ci = ci;
    ci.esp_encr = vec![Algorithm::Aes256Gcm16];
    let (_, r, run) = handshake(ci, cr);
    assert!(run.i_events.iter().any(|e| matches!(
        e,
        Event::ChildSaFailed { notify: n } if *n == notify::NO_PROPOSAL_CHOSEN
    )));
    assert_eq!(r.counters().no_proposal_chosen, 1);
}

#[test]
fn cookie_above_half_open_limit() {
    let (ci, mut cr) = configs();
    cr.half_open_limit = 1;
    let mut r = Responder::new(cr, addr_r()).unwrap();
    // A first initiator whose IKE_AUTH never comes: one half-open SA.
    let (c0, _) = configs();
    let mut stuck = Initiator::new(c0, addr_i(), addr_r(), T0);
    let out = stuck.start(T0).unwrap();
    let Some(Output::Send { data, .. }) = out.into_iter().next() else {
        panic!("no IKE_SA_INIT")
    };
    let resp = r.handle(&data, addr_i(), T0);
    assert_eq!(resp.len(), 1);
    assert_eq!(r.half_open(), 1);
    // The next initiator must come back with a cookie.
    let mut i = Initiator::new(ci, addr_i(), addr_r(), T0);
    let mut run = Run::default();
    let first = i.start(T0).unwrap();
    pump(&mut i, &mut r, first, true, T0, &mut run);
    assert_eq!(i.state(), IkeState::Established);
    assert_eq!(r.counters().cookies_sent, 1);
    let cookie_reply = Message::parse(&run.wire[1].2).unwrap();
    assert!(cookie_reply.notify(notify::COOKIE).is_some());
    let retry = Message::parse(&run.wire[2].2).unwrap();
    assert!(matches!(&retry.payloads[0], Payload::Notify(n) if n.kind == notify::COOKIE));
    // A forged cookie is answered with a fresh cookie, no state.
    let mut forged = run.wire[2].2.clone();
    // The cookie data starts after header (28) + notify header (4 + 4) + version.
    forged[28 + 8 + 1] ^= 1;
    let before = r.half_open();
    let out = r.handle(&forged, "192.0.2.9:500".parse().unwrap(), T0);
    assert_eq!(r.counters().cookies_sent, 2);
    assert_eq!(out.len(), 1);
    assert_eq!(r.half_open(), before);
    assert_eq!(r.half_open(), r.sas_in(IkeState::HalfOpen).len());
    // Half-open SAs expire.
    let out = r.poll(T0 + 30_000);
    assert_eq!(r.counters().half_open_expired, 1);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::IkeSaDown {
            reason: DownReason::HalfOpenExpired,
            ..
        })
    )));
    assert_eq!(r.half_open(), 0);
}

#[test]
fn retransmission_and_timeout() {
    let (ci, cr) = configs();
    let mut i = Initiator::new(ci, addr_i(), addr_r(), T0);
    let mut r = Responder::new(cr, addr_r()).unwrap();
    let out = i.start(T0).unwrap();
    let Some(Output::Send { data: init, .. }) = out.into_iter().next() else {
        panic!()
    };
    assert_eq!(i.next_timeout(), Some(T0 + 500));
    assert!(i.poll(T0 + 499).is_empty());
    let again = i.poll(T0 + 500);
    assert!(matches!(&again[..], [Output::Send { data, .. }] if *data == init));
    assert_eq!(i.counters().retransmits, 1);
    // The responder answers a retransmitted IKE_SA_INIT with the same response.
    let a = r.handle(&init, addr_i(), T0);
    let b = r.handle(&init, addr_i(), T0 + 500);
    match (&a[..], &b[..]) {
        ([Output::Send { data: x, .. }], [Output::Send { data: y, .. }]) => assert_eq!(x, y),
        _ => panic!("expected two identical responses"),
    }
    assert_eq!(r.counters().retransmits_answered, 1);
    assert_eq!(r.half_open(), 1);
    // Lose the IKE_AUTH response: the initiator retransmits, the responder answers
    // from its cache, the handshake completes.
    let Output::Send {
        data: init_resp, ..
    } = &a[0]
    else {
        panic!()
    };
    let out = i.handle(init_resp, addr_r(), T0 + 600);
    let Some(Output::Send { data: auth, .. }) = out.into_iter().next() else {
        panic!("no IKE_AUTH")
    };
    let lost = r.handle(&auth, addr_i(), T0 + 600);
    assert!(lost
        .iter()
        .any(|o| matches!(o, Output::Event(Event::ChildSaUp(_)))));
    let t = i.next_timeout().unwrap();
    let re = i.poll(t);
    let [Output::Send { data: auth2, .. }] = &re[..] else {
        panic!("no retransmission")
    };
    assert_eq!(auth2, &auth);
    let resp = r.handle(auth2, addr_i(), t);
    assert_eq!(r.counters().retransmits_answered, 2);
    assert!(
        !resp.iter().any(|o| matches!(o, Output::Event(_))),
        "no new events"
    );
    let [Output::Send { data, .. }] = &resp[..] else {
        panic!()
    };
    let ev = i.handle(data, addr_r(), t);
    assert!(ev
        .iter()
        .any(|o| matches!(o, Output::Event(Event::ChildSaUp(_)))));
    assert_eq!(i.state(), IkeState::Established);

    // A responder that never answers: the initiator gives up after 5 retries.
    let (ci, _) = configs();
    let mut i = Initiator::new(ci, addr_i(), addr_r(), T0);
    i.start(T0).unwrap();
    let mut sent = 0;
    let mut down = None;
    while let Some(t) = i.next_timeout() {
        for o in i.poll(t) {
            match o {
                Output::Send { .. } => sent += 1,
                Output::Event(Event::IkeSaDown { reason, .. }) => down = Some(reason),
                Output::Event(_) => {}
            }
        }
    }
    assert_eq!(sent, 5);
    assert_eq!(down, Some(DownReason::Timeout));
    assert_eq!(i.state(), IkeState::Closed);
}

#[test]
fn replayed_truncated_forged_messages_do_not_disturb_the_sa() {
    let (ci, cr) = configs();
    let (mut i, mut r, run) = handshake(ci, cr);
    let (_, spi_r) = i.spis();
    let init_req = run.wire[0].2.clone();
    let auth_req = run.wire[2].2.clone();
    let auth_resp = run.wire[3].2.clone();

    // Replayed IKE_AUTH request: answered from the cache, no new state or events.
    let out = r.handle(&auth_req, addr_i(), T0 + 1);
    assert!(matches!(&out[..], [Output::Send { data, .. }] if *data == auth_resp));
    assert_eq!(r.counters().retransmits_answered, 1);
    // Replayed IKE_SA_INIT: the same response, no second SA.
    let out = r.handle(&init_req, addr_i(), T0 + 1);
    assert!(matches!(&out[..], [Output::Send { .. }]));
    assert_eq!(r.counters().retransmits_answered, 2);
    assert_eq!(r.sas_in(IkeState::Established), vec![spi_r]);
    // Replayed response at the initiator: no request outstanding.
    assert!(i.handle(&auth_resp, addr_r(), T0 + 1).is_empty());
    assert_eq!(i.counters().bad_message_id, 1);

    // Truncated: every prefix is a counted parse error.
    let before = r.counters().parse_errors;
    for n in [0, 1, 27, 28, 40, auth_req.len() - 1] {
        assert!(r.handle(&auth_req[..n], addr_i(), T0 + 2).is_empty());
    }
    assert_eq!(r.counters().parse_errors, before + 6);

    // Forged: the old body under the next message ID (the header is authenticated),
    // and a flipped ciphertext bit; with the old message ID, it is no retransmission.
    let mut next_id = auth_req.clone();
    next_id[20..24].copy_from_slice(&2u32.to_be_bytes());
    assert!(r.handle(&next_id, addr_i(), T0 + 3).is_empty());
    let mut forged = next_id.clone();
    let last = forged.len() - 20;
    forged[last] ^= 0x01;
    assert!(r.handle(&forged, addr_i(), T0 + 3).is_empty());
    assert_eq!(r.counters().integrity_failures, 2);
    let mut old_id = auth_req.clone();
    old_id[last] ^= 0x01;
    assert!(r.handle(&old_id, addr_i(), T0 + 3).is_empty());
    assert_eq!(r.counters().bad_message_id, 1);
    // Unknown SPI, wrong source address.
    let mut other = auth_req.clone();
    other[8] ^= 0xff;
    assert!(r.handle(&other, addr_i(), T0 + 3).is_empty());
    assert_eq!(r.counters().unknown_spi, 1);
    assert!(r
        .handle(&auth_req, "192.0.2.77:500".parse().unwrap(), T0 + 3)
        .is_empty());
    assert_eq!(r.counters().unexpected, 1);
    assert_eq!(r.state(spi_r), Some(IkeState::Established));

    // The SA still works: delete the child, then (responder) the IKE SA.
    let mut run2 = Run::default();
    let out = i.delete_child(T0 + 4).unwrap();
    assert_eq!(i.delete_child(T0 + 4).err(), Some(RequestError::Busy));
    pump(&mut i, &mut r, out, true, T0 + 4, &mut run2);
    assert!(run2
        .i_events
        .iter()
        .any(|e| matches!(e, Event::ChildSaDown { .. })));
    assert!(run2
        .r_events
        .iter()
        .any(|e| matches!(e, Event::ChildSaDown { .. })));
    assert_eq!(i.delete_child(T0 + 5).err(), Some(RequestError::NoChild));
    // The old IKE_AUTH request is now outside the window: dropped.
    let bad = r.counters().bad_message_id;
    assert!(r.handle(&auth_req, addr_i(), T0 + 5).is_empty());
    assert_eq!(r.counters().bad_message_id, bad + 1);

    let out = r.delete_ike(spi_r, T0 + 6).unwrap();
    pump(&mut i, &mut r, out, false, T0 + 6, &mut run2);
    assert_eq!(down_reason(&run2.i_events), Some(DownReason::DeletedByPeer));
    assert_eq!(
        down_reason(&run2.r_events),
        Some(DownReason::DeletedLocally)
    );
    assert_eq!(i.state(), IkeState::Closed);
    assert_eq!(r.state(spi_r), Some(IkeState::Closed));
    // Closed SAs are forgotten after the timeout.
    r.poll(T0 + 6 + 30_000);
    assert_eq!(r.state(spi_r), None);
}

#[test]
fn initiator_deletes_ike_sa() {
    let (ci, cr) = configs();
    let (mut i, mut r, _) = handshake(ci, cr);
    let mut run = Run::default();
    let out = i.delete_ike(T0 + 1).unwrap();
    assert_eq!(i.state(), IkeState::Deleting);
    pump(&mut i, &mut r, out, true, T0 + 1, &mut run);
    assert_eq!(down_reason(&run.i_events), Some(DownReason::DeletedLocally));
    assert_eq!(down_reason(&run.r_events), Some(DownReason::DeletedByPeer));
    // Both report the child going down with the IKE SA.
    for ev in [&run.i_events, &run.r_events] {
        assert!(ev.iter().any(|e| matches!(e, Event::ChildSaDown { .. })));
    }
}

#[test]
fn tshark_dissects_our_ike_messages() {
    let (mut ci, mut cr) = configs();
    ci.ike_dh = vec![DhGroup::Ecp256, DhGroup::Curve25519];
    cr.ike_dh = vec![DhGroup::Curve25519];
    let (mut i, mut r, mut run) = handshake(ci, cr);
    let out = r.rekey_child(i.spis().1, T0 + 1).unwrap();
    pump(&mut i, &mut r, out, false, T0 + 1, &mut run);
    let out = i.delete_child(T0 + 1).unwrap();
    pump(&mut i, &mut r, out, true, T0 + 1, &mut run);
    let out = i.delete_ike(T0 + 2).unwrap();
    pump(&mut i, &mut r, out, true, T0 + 2, &mut run);
    // The cookie exchange too.
    let (ci, mut cr) = configs();
    cr.half_open_limit = 0;
    let (_, _, run2) = handshake(ci, cr);
    let (_, _, run3) = nat_handshake();
    let datagrams: Vec<_> = [&run, &run2, &run3]
        .iter()
        .flat_map(|r| {
            r.wire.iter().map(|(from_i, natt, d)| {
                let (ri, rr) = (
                    r.public_i(*natt),
                    if *natt { addr_r_natt() } else { addr_r() },
                );
                let (f, t) = if *from_i { (ri, rr) } else { (rr, ri) };
                (f, t, d.clone())
            })
        })
        .collect();
    // INIT x2 (INVALID_KE), INIT, AUTH, rekey + delete of the old child, delete
    // child, delete IKE; cookie run: 6; NAT run: 4.
    assert_eq!(datagrams.len(), 14 + 6 + 4);
    let text = common::tshark_check_ike(&common::scratch("ike-tshark"), "ike", &datagrams);
    for want in [
        "Exchange type: IKE_SA_INIT (34)",
        "Exchange type: IKE_AUTH (35)",
        "Exchange type: INFORMATIONAL (37)",
        "Exchange type: CREATE_CHILD_SA (36)",
        "NAT_DETECTION_SOURCE_IP",
        "INVALID_KE_PAYLOAD",
        "COOKIE",
        "AES-GCM with a 16 octet ICV (20)",
        "Key Length: 256",
        "PRF_HMAC_SHA2_256",
        "Curve25519",
        "Encrypted and Authenticated",
    ] {
        assert!(text.contains(want), "tshark output lacks {want:?}");
    }
}

/// The initiator thinks it is 10.0.0.5:500; a NAT shows it as 192.0.2.1.
fn nat_handshake() -> (Initiator, Responder, Run) {
    let (ci, cr) = configs();
    let mut i = Initiator::new(ci, "10.0.0.5:500".parse().unwrap(), addr_r(), T0);
    let mut r = Responder::new(cr, addr_r()).unwrap();
    let mut run = Run::nat();
    let first = i.start(T0).unwrap();
    pump(&mut i, &mut r, first, true, T0, &mut run);
    (i, r, run)
}

#[test]
fn nat_detected_moves_to_port_4500() {
    let (mut i, mut r, mut run) = nat_handshake();
    assert_eq!(i.state(), IkeState::Established);
    // IKE_SA_INIT on 500, IKE_AUTH on 4500 with the non-ESP marker.
    let natt: Vec<bool> = run.wire.iter().map(|w| w.1).collect();
    assert_eq!(natt, [false, false, true, true]);
    assert!(run.i_events.iter().any(|e| matches!(
        e,
        Event::IkeSaUp {
            nat_local: true,
            nat_remote: false,
            ..
        }
    )));
    assert!(run.r_events.iter().any(|e| matches!(
        e,
        Event::IkeSaUp {
            nat_local: false,
            nat_remote: true,
            ..
        }
    )));
    let (ci, cr) = (child(&run.i_events).unwrap(), child(&run.r_events).unwrap());
    // ESP in UDP between 4500 and the NAT's port.
    assert_eq!(
        cr.outbound.encap,
        Some(ipsec::UdpEncap {
            sport: 4500,
            dport: 4501
        })
    );
    assert_eq!(
        ci.outbound.encap,
        Some(ipsec::UdpEncap {
            sport: 4500,
            dport: 4500
        })
    );
    // ESP from the initiator arrives on 4500 at the responder.
    let (mut ia, mut ib) = (Ipsec::new(), Ipsec::new());
    let (_, i_out) = ci.install(&mut ia.sad, 0).unwrap();
    cr.install(&mut ib.sad, 0).unwrap();
    one_way(&mut ia, &mut ib, i_out, ci);
    // Later exchanges stay on 4500, both ways.
    let n = run.wire.len();
    let out = r.delete_child(i.spis().1, T0 + 1).unwrap();
    pump(&mut i, &mut r, out, false, T0 + 1, &mut run);
    assert!(run.wire[n..].iter().all(|w| w.1));
    assert!(run
        .i_events
        .iter()
        .any(|e| matches!(e, Event::ChildSaDown { .. })));
    // A datagram on 4500 without the marker is ESP, not IKE.
    assert!(r
        .handle_natt(&[0, 0, 1, 0, 0, 0, 0, 1], run.public_i(true), T0)
        .is_empty());
    assert_eq!(r.counters().unexpected, 1);
}

fn drops(c: &IkeCounters) -> u64 {
    c.parse_errors
        + c.integrity_failures
        + c.unknown_spi
        + c.bad_message_id
        + c.unexpected
        + c.invalid
}

/// Every single-bit flip of an authenticated request (the IKE_AUTH request, then an
/// INFORMATIONAL request) is dropped and counted exactly once, sends nothing and
/// changes nothing; the SA then still works.
#[test]
fn every_bit_flip_is_dropped_and_counted() {
    let (ci, cr) = configs();
    let (mut i, mut r, run) = handshake(ci, cr);
    let (_, spi_r) = i.spis();
    let auth_req = run.wire[2].2.clone();
    // An INFORMATIONAL request the responder has not seen yet (message ID 2).
    let out = i.delete_child(T0 + 1).unwrap();
    let [Output::Send { data: info_req, .. }] = &out[..] else {
        panic!("one datagram")
    };
    for msg in [&auth_req, info_req] {
        for bit in 0..msg.len() * 8 {
            let mut m = msg.clone();
            m[bit / 8] ^= 1 << (bit % 8);
            let before = drops(&r.counters());
            let out = r.handle(&m, addr_i(), T0 + 2);
            assert!(out.is_empty(), "bit {bit}: {out:?}");
            assert_eq!(drops(&r.counters()), before + 1, "bit {bit}");
            assert_eq!(r.state(spi_r), Some(IkeState::Established));
        }
    }
    assert_eq!(r.counters().auth_failures, 0);
    // The genuine INFORMATIONAL request still goes through.
    let mut run2 = Run::default();
    pump(&mut i, &mut r, out, true, T0 + 3, &mut run2);
    assert!(run2
        .r_events
        .iter()
        .any(|e| matches!(e, Event::ChildSaDown { .. })));
}

fn children(events: &[Event]) -> Vec<&ChildSa> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaUp(c) => Some(&**c),
            _ => None,
        })
        .collect()
}

fn downs(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaDown { inbound_spi, .. } => Some(*inbound_spi),
            _ => None,
        })
        .collect()
}

/// Ciphertext of a fixed plaintext under `km`: equal keys give equal bytes.
fn fingerprint(alg: Algorithm, km: &KeyMaterial) -> Vec<u8> {
    let k = GcmKey::new(Backend::preferred(), alg, km).unwrap();
    let mut b = vec![0u8; 16];
    let tag = k.seal(&[0; 8], b"", &mut b).unwrap();
    b.extend_from_slice(&tag);
    b
}

/// CREATE_CHILD_SA rekey (§1.3.3, §2.8) started by either end: both get the new
/// child SA (fresh SPIs and keys, `rekey_of` naming the old inbound SPI), the old
/// one is deleted by the rekey's initiator, and ESP works through the new pair.
#[test]
fn child_sa_rekey_from_either_end() {
    for initiator_rekeys in [true, false] {
        let (ci, cr) = configs();
        let (mut i, mut r, run) = handshake(ci, cr);
        let (old_i, old_r) = (child(&run.i_events).unwrap(), child(&run.r_events).unwrap());
        let mut run2 = Run::default();
        let out = if initiator_rekeys {
            i.rekey_child(T0 + 1).unwrap()
        } else {
            r.rekey_child(i.spis().1, T0 + 1).unwrap()
        };
        pump(&mut i, &mut r, out, initiator_rekeys, T0 + 1, &mut run2);
        // CREATE_CHILD_SA, then the Delete of the old SA.
        assert_eq!(run2.wire.len(), 4);
        let (new_i, new_r) = (children(&run2.i_events), children(&run2.r_events));
        let ([new_i], [new_r]) = (&new_i[..], &new_r[..]) else {
            panic!("one new child SA each")
        };
        assert_eq!(new_i.rekey_of, Some(old_i.inbound.spi));
        assert_eq!(new_r.rekey_of, Some(old_r.inbound.spi));
        assert_eq!(new_i.inbound.spi, new_r.outbound.spi);
        assert_eq!(new_i.outbound.spi, new_r.inbound.spi);
        assert_ne!(new_i.inbound.spi, old_i.inbound.spi);
        assert_ne!(new_r.inbound.spi, old_r.inbound.spi);
        let alg = new_i.outbound.algorithm;
        assert_ne!(
            fingerprint(alg, new_i.outbound_key()),
            fingerprint(alg, old_i.outbound_key()),
            "fresh KEYMAT"
        );
        assert_eq!(downs(&run2.i_events), vec![old_i.inbound.spi]);
        assert_eq!(downs(&run2.r_events), vec![old_r.inbound.spi]);
        esp_works(new_i, new_r);
        // The new child SA can itself be deleted; then there is none.
        let mut run3 = Run::default();
        let out = i.delete_child(T0 + 2).unwrap();
        pump(&mut i, &mut r, out, true, T0 + 2, &mut run3);
        assert_eq!(downs(&run3.r_events), vec![new_r.inbound.spi]);
        assert_eq!(i.rekey_child(T0 + 3).err(), Some(RequestError::NoChild));
    }
}

/// A rekey that crosses the peer's Delete of the same child SA gets
/// CHILD_SA_NOT_FOUND (§2.25); both requests of the crossing exchanges (one
/// outstanding per direction, §2.3) complete.
#[test]
fn rekey_crossing_a_delete_is_child_sa_not_found() {
    let (ci, cr) = configs();
    let (mut i, mut r, _) = handshake(ci, cr);
    let spi_r = i.spis().1;
    let rekey = i.rekey_child(T0 + 1).unwrap();
    let delete = r.delete_child(spi_r, T0 + 1).unwrap();
    let mut run = Run::default();
    // The responder's Delete reaches the initiator first, and its answer comes back.
    pump(&mut i, &mut r, delete, false, T0 + 1, &mut run);
    assert_eq!(downs(&run.i_events).len(), 1);
    assert_eq!(downs(&run.r_events).len(), 1);
    // Then the rekey of the SA that is gone.
    pump(&mut i, &mut r, rekey, true, T0 + 2, &mut run);
    assert!(run.i_events.iter().any(|e| matches!(
        e,
        Event::ChildSaFailed { notify: n } if *n == notify::CHILD_SA_NOT_FOUND
    )));
    assert!(children(&run.i_events).is_empty() && children(&run.r_events).is_empty());
    assert_eq!(i.state(), IkeState::Established);
    assert_eq!(r.state(spi_r), Some(IkeState::Established));
}

fn rekeyed(events: &[Event]) -> Vec<(u64, u64, u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaRekeyed {
                old_spi_i,
                old_spi_r,
                spi_i,
                spi_r,
            } => Some((*old_spi_i, *old_spi_r, *spi_i, *spi_r)),
            _ => None,
        })
        .collect()
}

/// Two data planes holding the child SAs of both ends; `send` checks ESP both ways
/// through the newest pair. Rekeyed pairs join the SADs next to the old ones (make
/// before break); `ChildSaDown` takes them out.
struct Planes {
    i: Ipsec,
    r: Ipsec,
    out_i: ipsec::SaId,
    out_r: ipsec::SaId,
    /// (inbound SPI, inbound SA, outbound SA) per installed child SA, per end.
    ids_i: Vec<(u32, ipsec::SaId, ipsec::SaId)>,
    ids_r: Vec<(u32, ipsec::SaId, ipsec::SaId)>,
    /// Traffic behind the initiator and behind the responder.
    ts: (TrafficSelector, TrafficSelector),
}

impl Planes {
    fn new(ci: &ChildSa, cr: &ChildSa) -> Self {
        let (mut i, mut r) = (Ipsec::new(), Ipsec::new());
        let (ii, out_i) = ci.install(&mut i.sad, 0).unwrap();
        let (ir, out_r) = cr.install(&mut r.sad, 0).unwrap();
        Planes {
            i,
            r,
            out_i,
            out_r,
            ids_i: vec![(ci.inbound.spi, ii, out_i)],
            ids_r: vec![(cr.inbound.spi, ir, out_r)],
            ts: (ci.local_ts, ci.remote_ts),
        }
    }

    /// Applies the child SA events of one run: new SAs in, deleted SAs out.
    fn apply(&mut self, run: &Run) {
        for (events, ipsec, ids, out) in [
            (&run.i_events, &mut self.i, &mut self.ids_i, &mut self.out_i),
            (&run.r_events, &mut self.r, &mut self.ids_r, &mut self.out_r),
        ] {
            for e in events {
                match e {
                    Event::ChildSaUp(c) => {
                        let (a, b) = c.install(&mut ipsec.sad, 0).unwrap();
                        ids.push((c.inbound.spi, a, b));
                        *out = b;
                    }
                    Event::ChildSaDown { inbound_spi, .. } => {
                        let k = ids.iter().position(|x| x.0 == *inbound_spi).unwrap();
                        let (_, a, b) = ids.remove(k);
                        ipsec.sad.remove(a);
                        ipsec.sad.remove(b);
                    }
                    _ => {}
                }
            }
        }
    }

    fn send(&mut self) {
        let (a, b) = self.ts;
        let IpAddr::V4(ia) = a.start_addr else {
            panic!()
        };
        let IpAddr::V4(ib) = b.start_addr else {
            panic!()
        };
        for (from_i, s, d) in [(true, ia, ib), (false, ib, ia)] {
            let pkt = ipsec::testutil::udp4(s, d, 1000, 2000, 64);
            let mut buf = ipsec::HeadroomBuf::from_packet(&pkt);
            let (from, to, id) = if from_i {
                (&mut self.i, &mut self.r, self.out_i)
            } else {
                (&mut self.r, &mut self.i, self.out_r)
            };
            from.encrypt_with(id, &mut buf, 0).unwrap();
            let r = to.inbound(&mut buf, 0).unwrap();
            assert!(matches!(r, Inbound::Decrypted { .. }), "{r:?}");
            assert_eq!(ipsec::Buf::data(&buf), &pkt[..]);
        }
    }
}

/// IKE SA rekey (§2.18) started by either end, then a child SA rekey with PFS
/// (§1.3.1) on the new IKE SA started by the other end, then a second IKE SA rekey:
/// the child SA moves to each new IKE SA without going down, the old IKE SA is
/// deleted by the rekey's initiator (`IkeSaDown { Rekeyed }`, no `ChildSaDown`),
/// roles follow the rekey's initiator, and ESP flows throughout.
#[test]
fn ike_sa_rekey_from_either_end_keeps_traffic_flowing() {
    for initiator_first in [true, false] {
        let (mut ci, mut cr) = configs();
        ci.child_pfs = Some(DhGroup::Modp2048);
        cr.child_pfs = Some(DhGroup::Curve25519);
        let (mut i, mut r, run) = handshake(ci, cr);
        let mut planes = Planes::new(child(&run.i_events).unwrap(), child(&run.r_events).unwrap());
        planes.send();
        let mut t = T0;
        for (step, by_initiator) in [initiator_first, !initiator_first].into_iter().enumerate() {
            t += 1000;
            let old = i.spis();
            let old_r_key = i.peer_spi();
            let out = if by_initiator {
                i.rekey_ike(t).unwrap()
            } else {
                r.rekey_ike(old_r_key, t).unwrap()
            };
            let mut run = Run::default();
            pump(&mut i, &mut r, out, by_initiator, t, &mut run);
            // CREATE_CHILD_SA, then the Delete of the old IKE SA.
            assert_eq!(run.wire.len(), 4, "step {step}");
            let ri = rekeyed(&run.i_events);
            assert_eq!(ri, rekeyed(&run.r_events));
            let [(oi, or, ni, nr)] = ri[..] else {
                panic!("one rekey: {:?}", run.i_events)
            };
            assert_eq!((oi, or), old);
            assert_eq!(i.spis(), (ni, nr));
            assert!(ni != oi && ni != or && nr != oi && nr != or);
            // The new SA's initiator is the rekey's initiator.
            let (mine, theirs) = if by_initiator { (ni, nr) } else { (nr, ni) };
            assert_eq!(i.peer_spi(), theirs);
            assert_ne!(i.peer_spi(), mine);
            for ev in [&run.i_events, &run.r_events] {
                assert_eq!(down_reason(ev), Some(DownReason::Rekeyed));
                assert!(downs(ev).is_empty(), "children stay up");
            }
            assert_eq!(r.state(old_r_key), Some(IkeState::Closed));
            assert_eq!(r.state(i.peer_spi()), Some(IkeState::Established));
            assert_eq!(i.state(), IkeState::Established);
            planes.send();

            // A child SA rekey with PFS over the new IKE SA, by the other end.
            t += 1000;
            let out = if by_initiator {
                r.rekey_child(i.peer_spi(), t).unwrap()
            } else {
                i.rekey_child(t).unwrap()
            };
            let mut run = Run::default();
            pump(&mut i, &mut r, out, !by_initiator, t, &mut run);
            assert_eq!(run.wire.len(), 4, "CREATE_CHILD_SA and the Delete");
            let (new_i, new_r) = (children(&run.i_events), children(&run.r_events));
            let ([new_i], [new_r]) = (&new_i[..], &new_r[..]) else {
                panic!("one new child SA each: {:?}", run.i_events)
            };
            assert_eq!((new_i.ike_spi_i, new_i.ike_spi_r), (ni, nr));
            assert_eq!(new_i.inbound.spi, new_r.outbound.spi);
            // The request carried a KE payload: MODP-2048 (256 bytes) from the
            // initiator, Curve25519 (32) from the responder, and the answer the
            // same group.
            let (req, resp) = (run.wire[0].2.len(), run.wire[1].2.len());
            let g = if by_initiator { 32 } else { 256 };
            // KE payload (8 + g) and the DH transform (8) on top of a plain rekey.
            let plain = plain_rekey_len();
            assert!(
                req >= plain.0 + 16 + g && resp >= plain.1 + 16 + g,
                "{req} {resp} {plain:?}"
            );
            planes.apply(&run);
            assert_eq!(planes.ids_i.len(), 1);
            assert_eq!(planes.ids_r.len(), 1);
            planes.send();
        }
        // The last IKE SA still works for deletes.
        t += 1000;
        let out = i.delete_ike(t).unwrap();
        let mut run = Run::default();
        pump(&mut i, &mut r, out, true, t, &mut run);
        assert_eq!(i.state(), IkeState::Closed);
        assert_eq!(down_reason(&run.r_events), Some(DownReason::DeletedByPeer));
        assert_eq!(downs(&run.r_events).len(), 1);
    }
}

/// A child SA rekey without KE is refused by a responder that requires PFS; one
/// with KE is accepted by a responder that does not ask for it (the group is one of
/// its IKE groups), and the new child SA's keys come out the same at both ends.
#[test]
fn child_rekey_pfs_required_and_accepted() {
    let (ci, mut cr) = configs();
    cr.child_pfs = Some(DhGroup::Curve25519);
    let (mut i, mut r, _) = handshake(ci, cr);
    let out = i.rekey_child(T0 + 1).unwrap();
    let mut run = Run::default();
    pump(&mut i, &mut r, out, true, T0 + 1, &mut run);
    assert!(run.i_events.iter().any(|e| matches!(
        e,
        Event::ChildSaFailed { notify: n } if *n == notify::NO_PROPOSAL_CHOSEN
    )));
    assert!(children(&run.r_events).is_empty());

    let (mut ci, cr) = configs();
    ci.child_pfs = Some(DhGroup::Ecp256);
    let (mut i, mut r, run) = handshake(ci, cr);
    let (old_i, old_r) = (child(&run.i_events).unwrap(), child(&run.r_events).unwrap());
    let mut planes = Planes::new(old_i, old_r);
    let plain = plain_rekey_len();
    let out = i.rekey_child(T0 + 2).unwrap();
    let mut run = Run::default();
    pump(&mut i, &mut r, out, true, T0 + 2, &mut run);
    let [new_i] = children(&run.i_events)[..] else {
        panic!("{:?}", run.i_events)
    };
    let [new_r] = children(&run.r_events)[..] else {
        panic!("{:?}", run.r_events)
    };
    assert!(
        run.wire[0].2.len() >= plain.0 + 16 + 64,
        "P-256 KE payload sent"
    );
    assert!(
        run.wire[1].2.len() >= plain.1 + 16 + 64,
        "P-256 KE payload answered"
    );
    let alg = new_i.outbound.algorithm;
    assert_eq!(
        fingerprint(alg, new_i.outbound_key()),
        fingerprint(alg, new_r.inbound_key())
    );
    planes.apply(&run);
    planes.send();
}

/// Sizes of the request and response of a child SA rekey without PFS.
fn plain_rekey_len() -> (usize, usize) {
    let (ci, cr) = configs();
    let (mut i, mut r, _) = handshake(ci, cr);
    let out = i.rekey_child(T0 + 1).unwrap();
    let mut run = Run::default();
    pump(&mut i, &mut r, out, true, T0 + 1, &mut run);
    assert_eq!(children(&run.r_events).len(), 1);
    (run.wire[0].2.len(), run.wire[1].2.len())
}

/// Soft lifetime: `poll` starts the rekey between soft - jitter and soft, and the
/// new child SA gets fresh timers. Hard lifetime: the child SA goes (both ends get
/// `ChildSaDown`) when `poll` runs after it without a rekey.
#[test]
fn child_lifetimes_drive_rekey_and_expiry() {
    let (mut ci, cr) = configs();
    let life = Lifetime {
        soft_ms: 10_000,
        hard_ms: 15_000,
        jitter_ms: 2_000,
    };
    ci.child_lifetime = Some(life);
    let (mut i, mut r, run) = handshake(ci, cr);
    let first = child(&run.i_events).unwrap().inbound.spi;
    let mut planes = Planes::new(child(&run.i_events).unwrap(), child(&run.r_events).unwrap());
    assert!(i.poll(T0 + 7_999).is_empty());
    let at = i.next_timeout().expect("a rekey is due");
    assert!((T0 + 8_000..=T0 + 10_000).contains(&at), "{}", at - T0);
    assert!(i.poll(at - 1).is_empty());
    let out = i.poll(at);
    assert_eq!(out.len(), 1, "the CREATE_CHILD_SA request");
    let mut run = Run::default();
    pump(&mut i, &mut r, out, true, at, &mut run);
    let [new] = children(&run.i_events)[..] else {
        panic!("{:?}", run.i_events)
    };
    assert_eq!(new.rekey_of, Some(first));
    let second = new.inbound.spi;
    assert_eq!(downs(&run.i_events), vec![first]);
    planes.apply(&run);
    planes.send();
    let next = i.next_timeout().unwrap();
    assert!((at + 8_000..=at + 10_000).contains(&next), "fresh timers");
    // Skip past the hard lifetime of the new child SA without polling at its soft
    // one: it is deleted, and the peer told.
    let late = at + 15_000;
    let out = i.poll(late);
    let mut run = Run::default();
    let evs: Vec<u32> = out
        .iter()
        .filter_map(|o| match o {
            Output::Event(Event::ChildSaDown { inbound_spi, .. }) => Some(*inbound_spi),
            _ => None,
        })
        .collect();
    assert_eq!(evs, vec![second]);
    pump(&mut i, &mut r, out, true, late, &mut run);
    assert_eq!(downs(&run.r_events).len(), 1);
    assert!(children(&run.r_events).is_empty());
    assert_eq!(i.rekey_child(late + 1).err(), Some(RequestError::NoChild));
    assert_eq!(i.next_timeout(), None);
    assert_eq!(i.state(), IkeState::Established);
}

/// IKE SA lifetime: `poll` rekeys the IKE SA at the soft lifetime (the child SA moves
/// along), the new IKE SA gets fresh timers, and past its hard lifetime it is deleted
/// (`Expired` here, `DeletedByPeer` at the peer, the child SA with it).
#[test]
fn ike_lifetime_drives_rekey_and_expiry() {
    let (mut ci, cr) = configs();
    ci.ike_lifetime = Some(Lifetime {
        soft_ms: 20_000,
        hard_ms: 30_000,
        jitter_ms: 0,
    });
    let (mut i, mut r, _) = handshake(ci, cr);
    assert_eq!(i.next_timeout(), Some(T0 + 20_000));
    assert!(i.poll(T0 + 19_999).is_empty());
    let t = T0 + 20_000;
    let out = i.poll(t);
    let mut run = Run::default();
    pump(&mut i, &mut r, out, true, t, &mut run);
    assert_eq!(rekeyed(&run.i_events).len(), 1);
    assert_eq!(down_reason(&run.r_events), Some(DownReason::Rekeyed));
    assert!(downs(&run.i_events).is_empty());
    assert_eq!(i.next_timeout(), Some(t + 20_000), "fresh timers");
    let late = t + 30_000;
    let out = i.poll(late);
    let mut run = Run::default();
    pump(&mut i, &mut r, out, true, late, &mut run);
    assert_eq!(i.state(), IkeState::Closed);
    assert_eq!(down_reason(&run.i_events), Some(DownReason::Expired));
    assert_eq!(down_reason(&run.r_events), Some(DownReason::DeletedByPeer));
    assert_eq!(downs(&run.i_events).len(), 1);
    assert_eq!(downs(&run.r_events).len(), 1);
}

fn datagrams(out: Vec<Output>, events: &mut Vec<Event>) -> Vec<Vec<u8>> {
    let mut d = Vec::new();
    for o in out {
        match o {
            Output::Send { data, .. } => d.push(data),
            Output::Event(e) => events.push(e),
        }
    }
    d
}

/// Crossing IKE SA rekeys (§2.25.2): each end answers the other's request with
/// TEMPORARY_FAILURE, both report `IkeSaRekeyFailed`, the IKE SA and its child SA
/// stay, and a later rekey succeeds.
#[test]
fn crossing_ike_rekeys_both_fail_temporarily_then_one_succeeds() {
    let (ci, cr) = configs();
    let (mut i, mut r, run) = handshake(ci, cr);
    let mut planes = Planes::new(child(&run.i_events).unwrap(), child(&run.r_events).unwrap());
    let spi_r = i.peer_spi();
    let (mut ev_i, mut ev_r) = (Vec::new(), Vec::new());
    let req_i = datagrams(i.rekey_ike(T0 + 1).unwrap(), &mut ev_i);
    let req_r = datagrams(r.rekey_ike(spi_r, T0 + 1).unwrap(), &mut ev_r);
    let ([req_i], [req_r]) = (&req_i[..], &req_r[..]) else {
        panic!("one request each")
    };
    let resp_r = datagrams(r.handle(req_i, addr_i(), T0 + 1), &mut ev_r);
    let resp_i = datagrams(i.handle(req_r, addr_r(), T0 + 1), &mut ev_i);
    assert!(datagrams(i.handle(&resp_r[0], addr_r(), T0 + 1), &mut ev_i).is_empty());
    assert!(datagrams(r.handle(&resp_i[0], addr_i(), T0 + 1), &mut ev_r).is_empty());
    for ev in [&ev_i, &ev_r] {
        assert!(
            ev.iter().any(|e| matches!(
                e,
                Event::IkeSaRekeyFailed { notify: n } if *n == notify::TEMPORARY_FAILURE
            )),
            "{ev:?}"
        );
        assert!(rekeyed(ev).is_empty() && down_reason(ev).is_none());
    }
    assert_eq!(i.state(), IkeState::Established);
    assert_eq!(r.state(spi_r), Some(IkeState::Established));
    planes.send();
    let out = r.rekey_ike(spi_r, T0 + 2).unwrap();
    let mut run = Run::default();
    pump(&mut i, &mut r, out, false, T0 + 2, &mut run);
    assert_eq!(rekeyed(&run.i_events).len(), 1);
    planes.send();
    // Rekeying again at once, before anything else: the new SA works as well.
    let out = i.rekey_ike(T0 + 3).unwrap();
    let mut run = Run::default();
    pump(&mut i, &mut r, out, true, T0 + 3, &mut run);
    assert_eq!(rekeyed(&run.r_events).len(), 1);
    assert_eq!(r.sas_in(IkeState::Established), vec![i.peer_spi()]);
    planes.send();
}

/// A second IKE SA rekey while the first old SA's Delete is still outstanding: that
/// old SA is given up at once (`IkeSaDown { Rekeyed }`), the late Delete still
/// closes it at the peer, and the child SA works over the newest IKE SA.
#[test]
fn second_ike_rekey_before_the_old_delete_completes() {
    let (ci, cr) = configs();
    let (mut i, mut r, run) = handshake(ci, cr);
    let mut planes = Planes::new(child(&run.i_events).unwrap(), child(&run.r_events).unwrap());
    let first = i.spis();
    let (mut ev_i, mut ev_r) = (Vec::new(), Vec::new());
    let req = datagrams(i.rekey_ike(T0 + 1).unwrap(), &mut ev_i);
    let resp = datagrams(r.handle(&req[0], addr_i(), T0 + 1), &mut ev_r);
    let delete = datagrams(i.handle(&resp[0], addr_r(), T0 + 1), &mut ev_i);
    assert_eq!(delete.len(), 1, "the Delete of the old IKE SA, held back");
    assert_eq!(rekeyed(&ev_i).len(), 1);
    let out = i.rekey_ike(T0 + 2).unwrap();
    let mut run = Run::default();
    pump(&mut i, &mut r, out, true, T0 + 2, &mut run);
    let downs_i: Vec<(u64, u64)> = run
        .i_events
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaDown {
                spi_i,
                spi_r,
                reason: DownReason::Rekeyed,
            } => Some((*spi_i, *spi_r)),
            _ => None,
        })
        .collect();
    assert_eq!(downs_i.len(), 2, "the first and the second old SA");
    assert!(downs_i.contains(&first));
    // The held-back Delete reaches the peer: its first old SA closes too.
    let answer = datagrams(r.handle(&delete[0], addr_i(), T0 + 3), &mut ev_r);
    assert_eq!(down_reason(&ev_r), Some(DownReason::Rekeyed));
    let before = i.counters().unknown_spi;
    assert!(datagrams(i.handle(&answer[0], addr_r(), T0 + 3), &mut ev_i).is_empty());
    assert_eq!(
        i.counters().unknown_spi,
        before + 1,
        "the old SA is gone here"
    );
    assert_eq!(r.sas_in(IkeState::Established), vec![i.peer_spi()]);
    planes.send();
    let out = i.rekey_child(T0 + 4).unwrap();
    let mut run = Run::default();
    pump(&mut i, &mut r, out, true, T0 + 4, &mut run);
    planes.apply(&run);
    planes.send();
}

// ---- per-peer PSKs and private-use INFORMATIONAL requests (key server) ----

/// A responder with a PSK per initiator identity (`IkeConfig::peer_psks`).
fn peer_psk_responder(peer_key: &[u8]) -> IkeConfig {
    let (_, mut r) = configs();
    r.psk = zeroize::Zeroizing::new(b"not this one".to_vec());
    r.remote_id = None;
    r.peer_psks.insert(
        (wire::id_type::FQDN, b"initiator.example".to_vec()),
        zeroize::Zeroizing::new(peer_key.to_vec()),
    );
    r.peer_psks.insert(
        (wire::id_type::FQDN, b"other.example".to_vec()),
        zeroize::Zeroizing::new(b"other key".to_vec()),
    );
    r
}

#[test]
fn per_peer_psk_selects_the_initiators_key() {
    let (ci, _) = configs();
    let (i, r, run) = handshake(ci, peer_psk_responder(b"correct horse battery staple"));
    assert_eq!(i.state(), IkeState::Established);
    let spi_r = i.spis().1;
    assert_eq!(
        r.peer_id(spi_r),
        Some(&Identification::fqdn("initiator.example"))
    );
    assert!(child(&run.r_events).is_some());
    // Another identity's key does not authenticate this one.
    let (ci, _) = configs();
    let (i, r, _) = handshake(ci, peer_psk_responder(b"other key"));
    assert_eq!(i.state(), IkeState::Closed);
    assert_eq!(r.counters().auth_failures, 1);
    // An identity missing from the table fails (no fallback to `psk`).
    let (mut ci, _) = configs();
    ci.local_id = Identification::fqdn("stranger.example");
    ci.psk = zeroize::Zeroizing::new(b"not this one".to_vec());
    let (i, mut r, _) = handshake(ci, peer_psk_responder(b"x"));
    assert_eq!(i.state(), IkeState::Closed);
    assert_eq!(r.counters().auth_failures, 1);
    // Revoking a peer's key at run time.
    r.peer_psks_mut().clear();
    assert!(r.peer_psks_mut().is_empty());
}

#[test]
fn private_notifies_travel_in_informational_requests() {
    let (ci, cr) = configs();
    let (mut i, mut r, mut run) = handshake(ci, cr);
    let spi_r = i.spis().1;
    run.i_events.clear();
    run.r_events.clear();
    let n = wire::Notify::new(notify::FIRST_PRIVATE_STATUS + 7, b"key material".to_vec());
    // Not a private type: not reported to the application.
    let plain = wire::Notify::new(notify::FIRST_STATUS + 100, b"x".to_vec());
    let out = r
        .private_request(spi_r, vec![n.clone(), plain], T0)
        .unwrap();
    assert!(r.busy(spi_r));
    // The payload is encrypted: its bytes are not on the wire.
    for o in &out {
        if let Output::Send { data, .. } = o {
            assert!(!data.windows(12).any(|w| w == b"key material"));
        }
    }
    // Window of one (RFC 7296 §2.3).
    assert_eq!(
        r.private_request(spi_r, vec![n.clone()], T0).unwrap_err(),
        RequestError::Busy
    );
    pump(&mut i, &mut r, out, false, T0, &mut run);
    let got: Vec<_> = run
        .i_events
        .iter()
        .filter_map(|e| match e {
            Event::PrivateRequest { notifies, .. } => Some(notifies.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![vec![n.clone()]]);
    assert!(run
        .r_events
        .iter()
        .any(|e| matches!(e, Event::PrivateAnswered { notifies, .. } if notifies.is_empty())));
    assert!(!r.busy(spi_r));
    // And from the initiator.
    let out = i.private_request(vec![n.clone()], T0).unwrap();
    assert!(i.busy());
    pump(&mut i, &mut r, out, true, T0, &mut run);
    assert!(run.r_events.iter().any(
        |e| matches!(e, Event::PrivateRequest { notifies, .. } if *notifies == vec![n.clone()])
    ));
    assert!(!i.busy());
    assert_eq!(i.state(), IkeState::Established);
}
