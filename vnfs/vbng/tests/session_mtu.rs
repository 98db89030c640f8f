//! The session MTU from LCP reaches the fast path: a subscriber without the RFC 4638
//! PPP-Max-Payload tag gets a 1492 session (SYN MSS clamped to 1452), one asking for
//! 1500 gets 1500 (clamped to 1460): control plane → `FibUpdate::Add { mtu }` →
//! `bng-fastpath` → the SYN leaving on the core port.

mod common_core;

use common_core::*;
use dataplane::batch::Out;
use dataplane::buf::Pool;
use dataplane::proto::checksum::PseudoHeader;
use dataplane::proto::ethernet::Vlans;
use pktgen::subscribers::client::{ClientParams, ClientPhase, Subscriber};
use vbng::config::{Config, UserConfig};
use vbng::control::{ControlPlane, FibUpdate, SessionCounters};
use vbng::fsm::Timers;
use vbng::lcp::AuthProto;
use vbng::rng::Rng;

fn mss_of(ip: &[u8]) -> (u16, bool) {
    let v = dataplane::proto::ipv4::Packet::new_checked(ip).expect("ipv4");
    let ph = PseudoHeader::V4 {
        src: v.src_addr(),
        dst: v.dst_addr(),
    };
    let t = dataplane::proto::tcp::Packet::new_checked(v.payload()).expect("tcp");
    let m = t.mss().expect("options").expect("mss").0;
    (m, t.verify_checksum(&ph))
}

#[test]
fn rfc4638_sessions_get_a_larger_clamp() {
    for (max_payload, mtu, mss) in [(None, 1492, 1452), (Some(1500), 1500, 1460)] {
        let cfg = Config {
            auth: AuthProto::Pap,
            auth_fallback: None,
            users: vec![UserConfig {
                name: "alice".into(),
                password: "pw".into(),
                ip: None,
                rate: None,
            }],
            ..Config::default()
        };
        let mut cp = ControlPlane::new(&cfg, 16, SessionCounters::new(16), Rng::from_seed([1; 32]))
            .expect("cp");
        let mut s = Subscriber::new(ClientParams {
            mac: SUB_MAC,
            vlans: Vlans {
                svlan: 10,
                cvlan: 20,
            },
            user: b"alice".to_vec(),
            password: b"pw".to_vec(),
            accept_auth: [Some(AuthProto::Pap), None],
            service_name: Vec::new(),
            host_uniq: None,
            max_payload,
            timers: Timers::default(),
            ipv6cp: false,
            magic: 0x0102_0304,
            discovery_tries: 3,
        });
        let mut up = Vec::new();
        s.start(0, &mut up);
        for now in [0u64, 0, 0, 0, 0, 0, 0, 0, 1000, 1000] {
            for f in up.drain(..) {
                cp.input(0, &f, now);
            }
            cp.poll(now);
            for (_, f) in cp.take_tx() {
                s.input(&f, now, &mut up);
            }
        }
        assert_eq!(s.phase, ClientPhase::Up, "{max_payload:?}");
        let fib = cp.take_fib();
        let Some(add) = fib
            .iter()
            .find(|u| matches!(u, FibUpdate::Add { .. }))
            .cloned()
        else {
            panic!("no FibUpdate::Add in {fib:?}")
        };
        let FibUpdate::Add {
            sid, ip, mtu: got, ..
        } = add
        else {
            unreachable!()
        };
        assert_eq!(got, mtu, "{max_payload:?}");

        let (mut fp, _) = fastpath(1000, 100);
        fp.apply(add, 0);
        let pool = Pool::new(64).expect("pool");
        let mut out = Out::new(2, pool.cache());
        run(&mut fp, &mut out, 1, &[arp(2, GW_MAC, CORE_GW, CORE_IP)]);
        let mut f = up_frame(&tcp(ip.to_be_bytes(), REMOTE, 0x02, 1460));
        f[24..26].copy_from_slice(&sid.to_be_bytes());
        let (_, core, node) = run(&mut fp, &mut out, 0, &[f]);
        assert_eq!(core.len(), 1, "{:?}", node.drops);
        assert_eq!(mss_of(&core[0][14..]), (mss, true), "{max_payload:?}");
    }
}
