//! CPE liveness (RFC 7296 §2.4 with §1.4 checks): a CPE that stops answering is
//! marked down after `liveness_misses` missed checks, its peers are told to drop
//! their SAs with it (as on a revocation), the other tunnels stay, and once it
//! authenticates again both ends get the pair's keys back.

mod common;
use common::*;
use keyserver::config::Config;

#[test]
fn silent_cpe_is_marked_down_and_its_peers_drop_it() {
    let mut t = server_toml(30.0, 0.1, None);
    // checks every 200 ms, down after 3 missed: well before the IKE retransmissions
    // (200 ms doubling, 4 tries) would close the SA on their own
    t = t.replacen(
        "[server]\n",
        "[server]\nliveness_interval_s = 0.2\nliveness_misses = 3\n",
        1,
    );
    t.push_str("[[group]]\nname = \"g\"\ntopology = \"full-mesh\"\n\n");
    for (k, id) in ["a", "b", "c"].iter().enumerate() {
        t.push_str(&cpe_toml(id, k + 1, &["g"]));
    }
    let cfg = Config::from_toml(&t).unwrap();
    assert_eq!(
        (cfg.server.liveness_interval_ms, cfg.server.liveness_misses),
        (200, 3)
    );
    let srv = ServerThread::start(&cfg);
    let mut cpes: Vec<Cpe> = ["a", "b", "c"]
        .iter()
        .map(|i| Cpe::new(i, srv.addr))
        .collect();
    assert!(run_until(&mut cpes, 10.0, |c| c.iter().all(Cpe::synced)));
    let ac = cpes[0].pair_with("c").unwrap();
    let bc = cpes[1].pair_with("c").unwrap();
    let ab = cpes[0].pair_with("b").unwrap();
    // Everyone answers: checks go out, nobody is marked down.
    assert!(!run_until(&mut cpes, 1.0, |_| false));
    let st = srv.stats();
    assert!(st.liveness_checks >= 3, "{st:?}");
    assert_eq!((st.cpes_marked_down, st.cpes_down), (0, 0), "{st:?}");
    // c falls silent (its process hangs): only a and b run.
    let t0 = std::time::Instant::now();
    let (live, silent) = cpes.split_at_mut(2);
    assert!(
        run_until(live, 5.0, |c| c[0].deletes_all.contains(&ac)
            && c[1].deletes_all.contains(&bc)),
        "the peers were not told to drop the silent CPE: {:?}",
        srv.stats()
    );
    let took = t0.elapsed();
    // three missed checks of 200 ms after at most one idle interval, plus sweeps
    assert!(
        took >= std::time::Duration::from_millis(500) && took.as_secs_f64() < 2.5,
        "{took:?}"
    );
    let st = srv.stats();
    assert_eq!((st.cpes_marked_down, st.cpes_down), (1, 1), "{st:?}");
    assert!(st.liveness_missed >= 3, "{st:?}");
    assert_eq!(st.peer_drops, 2, "{st:?}");
    assert_eq!(st.online, 2, "{st:?}");
    assert_eq!(
        srv.srv.lock().unwrap().server.take_down(),
        vec!["c".to_string()]
    );
    // The pairs stay configured; a and b keep their tunnel and are not down.
    assert_eq!(st.pairs, 3);
    let q = live[0]
        .encrypt(ab, Cpe::lan(1, 1), Cpe::lan(2, 1), 0)
        .unwrap();
    assert!(live[1].decrypt(&q));
    // c's traffic (sent with its old keys) no longer decrypts at a.
    let p = silent[0].encrypt(ac, Cpe::lan(3, 1), Cpe::lan(1, 1), 0);
    assert!(!live[0].decrypt(&p.expect("c still holds its SAs")));
    // Still down after more intervals: a and b answer their checks.
    assert!(!run_until(live, 0.6, |_| false));
    assert_eq!(srv.stats().cpes_marked_down, 1);
    // c comes back: it finds its IKE SA gone, authenticates again and is synced; a
    // and b get the pairs with c again and c's packets decrypt at a.
    assert!(
        run_until(&mut cpes, 8.0, |c| c[0].pair_with("c").is_some()
            && c[1].pair_with("c").is_some()
            && c[2].synced()
            && c[2].pair_with("a").is_some()),
        "c did not come back: {:?}",
        srv.stats()
    );
    let st = srv.stats();
    assert_eq!(st.cpes_down, 0, "{st:?}");
    assert_eq!(st.online, 3, "{st:?}");
    let ac2 = cpes[2].pair_with("a").unwrap();
    assert_eq!(ac2, ac);
    let p = cpes[2]
        .encrypt(ac, Cpe::lan(3, 1), Cpe::lan(1, 1), 0)
        .unwrap();
    assert!(
        cpes[0].decrypt(&p),
        "c's packet does not decrypt at a again"
    );
    let metrics = keyserver::metrics::render(&st);
    assert!(
        metrics.contains("keyserver_cpes_marked_down_total 1\n"),
        "{metrics}"
    );
}

#[test]
fn liveness_settings_are_checked() {
    let mut t = server_toml(30.0, 0.1, None);
    t = t.replacen("[server]\n", "[server]\nliveness_misses = 0\n", 1);
    assert!(Config::from_toml(&t).is_err());
    let mut t = server_toml(30.0, 0.1, None);
    t = t.replacen("[server]\n", "[server]\nliveness_interval_s = -1\n", 1);
    assert!(Config::from_toml(&t).is_err());
    // 0 turns the checks off
    let mut t = server_toml(30.0, 0.1, None);
    t = t.replacen("[server]\n", "[server]\nliveness_interval_s = 0\n", 1);
    assert_eq!(
        Config::from_toml(&t).unwrap().server.liveness_interval_ms,
        0
    );
}
