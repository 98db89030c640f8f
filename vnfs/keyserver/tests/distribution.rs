//! Key distribution over IKEv2: per-CPE PSKs, hub-and-spoke and full-mesh pairs,
//! keys that match across the ends of each tunnel (ESP encrypted at one end decrypts
//! at the other), refused identities.

mod common;
use common::*;
use keyserver::config::Config;

fn config() -> Config {
    let mut t = server_toml(60.0, 1.0, None);
    t.push_str(
        "[[group]]\nname = \"hs\"\ntopology = \"hub-spoke\"\nhubs = [\"hub\"]\n\n\
         [[group]]\nname = \"mesh\"\ntopology = \"full-mesh\"\n\n",
    );
    t.push_str(&cpe_toml("hub", 1, &["hs"]));
    t.push_str(&cpe_toml("s1", 2, &["hs", "mesh"]));
    t.push_str(&cpe_toml("s2", 3, &["hs"]));
    t.push_str(&cpe_toml("m1", 4, &["mesh"]));
    t.push_str(&cpe_toml("m2", 5, &["mesh"]));
    Config::from_toml(&t).unwrap()
}

fn peers(c: &Cpe) -> Vec<String> {
    let mut v: Vec<String> = c.peers.values().cloned().collect();
    v.sort();
    v
}

#[test]
fn topologies_and_matching_keys() {
    let srv = ServerThread::start(&config());
    let ids = ["hub", "s1", "s2", "m1", "m2"];
    let mut cpes: Vec<Cpe> = ids.iter().map(|id| Cpe::new(id, srv.addr)).collect();
    assert!(
        run_until(&mut cpes, 10.0, |c| c.iter().all(Cpe::synced)
            && srv.stats().served == 5),
        "not every CPE synchronised"
    );
    // Hub-spoke: spokes only reach the hub; full mesh among s1, m1, m2.
    assert_eq!(peers(&cpes[0]), ["s1", "s2"]);
    assert_eq!(peers(&cpes[1]), ["hub", "m1", "m2"]);
    assert_eq!(peers(&cpes[2]), ["hub"]);
    assert_eq!(peers(&cpes[3]), ["m2", "s1"]);
    assert_eq!(peers(&cpes[4]), ["m1", "s1"]);
    let st = srv.stats();
    assert_eq!((st.cpes, st.served, st.pairs, st.groups), (5, 5, 5, 2));
    // Each end's outbound SA is the other's inbound SA: ESP both ways.
    for (x, y) in [(0, 1), (0, 2), (1, 3), (1, 4), (3, 4)] {
        let pair = cpes[x].pair_with(ids[y]).unwrap();
        assert_eq!(cpes[y].pair_with(ids[x]), Some(pair));
        let (kx, ky) = (x + 1, y + 1);
        let p = cpes[x]
            .encrypt(pair, Cpe::lan(kx, 5), Cpe::lan(ky, 6), 1)
            .unwrap();
        assert!(cpes[y].decrypt(&p), "{} -> {}", ids[x], ids[y]);
        let p = cpes[y]
            .encrypt(pair, Cpe::lan(ky, 5), Cpe::lan(kx, 6), 1)
            .unwrap();
        assert!(cpes[x].decrypt(&p), "{} -> {}", ids[y], ids[x]);
        // Traffic from outside the peer's LAN does not pass its selector.
        let p = cpes[y]
            .encrypt(pair, Cpe::lan(99, 5), Cpe::lan(kx, 6), 2)
            .unwrap();
        assert!(!cpes[x].decrypt(&p));
    }
}

#[test]
fn wrong_psk_and_unknown_identity_are_refused() {
    let srv = ServerThread::start(&config());
    let mut cpes = vec![
        Cpe::with_psk("hub", "not-the-right-key", srv.addr),
        Cpe::new("stranger", srv.addr),
        Cpe::new("s2", srv.addr),
    ];
    assert!(run_until(&mut cpes, 10.0, |c| c[2].synced()));
    run_until(&mut cpes, 0.5, |_| false);
    assert!(!cpes[0].udp.client.is_connected());
    assert!(!cpes[1].udp.client.is_connected());
    let st = srv.stats();
    assert!(st.auth_failures >= 2, "{st:?}");
    assert_eq!(st.served, 1);
    // s2's hub has not authenticated, yet s2 holds its keys already.
    assert_eq!(peers(&cpes[2]), ["hub"]);
}
