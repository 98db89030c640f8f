//! Make-before-break rotation: two emulated CPEs exchange ESP (the `ipsec` crate's
//! encrypt/decrypt) both ways every millisecond while the key server rotates their
//! tunnel's keys every 500 ms; no packet may fail to decrypt, across several
//! rotations. And revocation: the revoked CPE's peers delete its SAs within one
//! rekey interval, and it cannot authenticate again.

mod common;
use common::*;
use keyserver::config::Config;
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

#[test]
fn rotation_loses_no_packet() {
    // The overlap (old inbound SAs kept after both ends switched) must exceed the
    // longest time a packet spends in flight; here that includes this thread being
    // descheduled on a loaded machine between encrypting and decrypting.
    let mut t = server_toml(0.5, 0.25, None);
    t.push_str("[[group]]\nname = \"g\"\ntopology = \"full-mesh\"\n\n");
    t.push_str(&cpe_toml("a", 1, &["g"]));
    t.push_str(&cpe_toml("b", 2, &["g"]));
    let srv = ServerThread::start(&Config::from_toml(&t).unwrap());
    let mut cpes = vec![Cpe::new("a", srv.addr), Cpe::new("b", srv.addr)];
    assert!(run_until(&mut cpes, 10.0, |c| c.iter().all(Cpe::synced)));
    let pair = cpes[0].pair_with("b").unwrap();
    // Packets in flight for 3 ms, as on a real path: some are sent with the old SA
    // and arrive after the sender switched.
    let mut wire: VecDeque<(Instant, usize, Vec<u8>)> = VecDeque::new();
    let (mut sent, mut ok, mut lost) = (0u64, 0u64, 0u64);
    let mut epochs = HashSet::new();
    let start = Instant::now();
    let rekeys0 = srv.stats().rekeys;
    while start.elapsed() < Duration::from_millis(2500) || srv.stats().rekeys < rekeys0 + 3 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "too few rotations"
        );
        for (from, to) in [(0usize, 1usize), (1, 0)] {
            let p = cpes[from]
                .encrypt(pair, Cpe::lan(from + 1, 5), Cpe::lan(to + 1, 6), 0)
                .expect("a sending SA at all times");
            epochs.insert(cpes[from].sending[&pair]);
            wire.push_back((Instant::now() + Duration::from_millis(3), to, p));
            sent += 1;
        }
        for c in cpes.iter_mut() {
            c.step(0);
        }
        while wire.front().is_some_and(|(t, _, _)| *t <= Instant::now()) {
            let (_, to, p) = wire.pop_front().unwrap();
            if cpes[to].decrypt(&p) {
                ok += 1;
            } else {
                lost += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(5));
    for (_, to, p) in wire.drain(..) {
        if cpes[to].decrypt(&p) {
            ok += 1;
        } else {
            lost += 1;
        }
    }
    let st = srv.stats();
    assert!(st.rekeys >= rekeys0 + 3, "{st:?}");
    assert!(epochs.len() >= 3, "sent with epochs {epochs:?}");
    assert_eq!(
        lost, 0,
        "{lost} of {sent} packets lost across {} rotations",
        st.rekeys
    );
    assert_eq!(ok, sent);
    // Old SAs are deleted after the overlap: at most two epochs installed.
    assert!(cpes[0].sas.len() <= 2 && cpes[1].sas.len() <= 2);
}

#[test]
fn revoked_cpe_loses_its_tunnels() {
    let rekey_s = 1.0;
    let mut t = server_toml(rekey_s, 0.1, None);
    t.push_str("[[group]]\nname = \"g\"\ntopology = \"full-mesh\"\n\n");
    for (k, id) in ["a", "b", "c"].iter().enumerate() {
        t.push_str(&cpe_toml(id, k + 1, &["g"]));
    }
    let srv = ServerThread::start(&Config::from_toml(&t).unwrap());
    let mut cpes: Vec<Cpe> = ["a", "b", "c"]
        .iter()
        .map(|i| Cpe::new(i, srv.addr))
        .collect();
    assert!(run_until(&mut cpes, 10.0, |c| c.iter().all(Cpe::synced)));
    let ac = cpes[0].pair_with("c").unwrap();
    let bc = cpes[1].pair_with("c").unwrap();
    let ab = cpes[0].pair_with("b").unwrap();
    // c can reach a before the revocation.
    let p = cpes[2]
        .encrypt(ac, Cpe::lan(3, 1), Cpe::lan(1, 1), 0)
        .unwrap();
    assert!(cpes[0].decrypt(&p));
    let t0 = Instant::now();
    srv.srv.lock().unwrap().revoke("c").unwrap();
    assert!(
        run_until(&mut cpes, rekey_s, |c| c[0].deletes_all.contains(&ac)
            && c[1].deletes_all.contains(&bc)),
        "peers not told within one rekey interval"
    );
    let took = t0.elapsed();
    assert!(took < Duration::from_secs_f64(rekey_s));
    // c's packets (still encrypted with its old keys) no longer decrypt at a.
    assert!(!cpes[0].decrypt(&p));
    // a and b keep their own tunnel.
    let q = cpes[0]
        .encrypt(ab, Cpe::lan(1, 1), Cpe::lan(2, 1), 0)
        .unwrap();
    assert!(cpes[1].decrypt(&q));
    // c is disconnected and cannot authenticate again.
    run_until(&mut cpes, 1.0, |_| false);
    assert!(!cpes[2].udp.client.is_connected());
    let st = srv.stats();
    assert_eq!(
        (st.cpes, st.pairs, st.revocations, st.revocations_pending),
        (2, 1, 1, 0)
    );
    let done = srv.srv.lock().unwrap().server.take_revoked();
    assert_eq!(done.len(), 1);
    // Acknowledged by every peer within one rekey interval, as the server saw it.
    assert!(done[0].took_ms < (rekey_s * 1000.0) as u64, "{done:?}");
}
