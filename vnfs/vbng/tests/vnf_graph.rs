//! The composed vBNG (`vbng::vnf::build`) on the engine's `Worker` over in-memory
//! ports, with the control side on the punt and inject rings, as the binary and the
//! in-memory lab run it: a PPPoE subscriber (the `pktgen::subscribers::client` emulator) comes up,
//! its traffic reaches the core (translated into the pool with `[cgnat]`), the
//! answer reaches it inside its session, core ARP is answered by `bng-core-arp`, and
//! every node counts what it saw.

use dataplane::batch::Batch;
use dataplane::buf::Pool;
use dataplane::port::mem::{pair, MemPort};
use dataplane::port::Port;
use dataplane::proto::ethernet::Vlans;
use dataplane::worker::{ring, Worker, WorkerConfig};
use pktgen::subscribers::client::{ClientParams, ClientPhase, Subscriber};
use vbng::config::{Config, UserConfig};
use vbng::fsm::Timers;
use vbng::lcp::AuthProto;
use vbng::rng::Rng;
use vbng::vnf::{build, update_hook, BuildEnv, Injector};

mod common_frames;
use common_frames::udp;

const SUB_MAC: [u8; 6] = [2, 0x5b, 0, 0, 0, 1];
const CORE_MAC: [u8; 6] = [2, 0, 0, 0, 0xc0, 2];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0xc0, 1];
const REMOTE: u32 = 0xc633_6401;

fn send(port: &mut MemPort, cache: &mut dataplane::buf::PoolCache, frames: &[Vec<u8>]) {
    let mut b = Batch::new();
    for f in frames {
        let mut p = cache.alloc().unwrap();
        p.copy_from(f).unwrap();
        b.push(p).unwrap();
    }
    port.tx_burst(cache, &mut b);
    b.free_all(cache);
}

fn recv(port: &mut MemPort, cache: &mut dataplane::buf::PoolCache) -> Vec<Vec<u8>> {
    let mut b = Batch::new();
    let mut v = Vec::new();
    while port.rx_burst(cache, &mut b) > 0 {
        b.drain(|p| {
            v.push(p.data().to_vec());
            cache.free(p);
        });
    }
    v
}

fn lab(extra: &str) {
    let mut cfg = Config::from_toml(&format!(
        "core_ip = \"198.51.100.2/24\"\ncore_next_hop_mac = \"02:00:00:00:c0:01\"\n{extra}"
    ))
    .unwrap();
    cfg.auth = AuthProto::Pap;
    cfg.auth_fallback = None;
    cfg.users = vec![UserConfig {
        name: "alice".into(),
        password: "pw".into(),
        ip: None,
        rate: None,
    }];
    let v = build(&cfg, &BuildEnv::new(CORE_MAC, 16, Rng::from_seed([3; 32]))).unwrap();
    let cgnat = v.nat.is_some();
    let mut control = v.control;
    let pool = Pool::new(4096).unwrap();
    let (mut gen, access) = pair("gen", "access", 256).unwrap();
    let (core, mut sink) = pair("core", "sink", 256).unwrap();
    let (punt, inject) = (ring(1024), ring(1024));
    let mut w = Worker::new(
        vec![Box::new(access) as Box<dyn Port>, Box::new(core)],
        v.graph,
        pool.cache(),
        WorkerConfig::default(),
    )
    .unwrap()
    .with_punt(punt.clone())
    .with_inject(inject.clone())
    .on_update(update_hook());
    let mut cache = pool.cache();
    let mut inj = Injector::new();
    let mut s = Subscriber::new(ClientParams {
        mac: SUB_MAC,
        vlans: Vlans {
            svlan: 100,
            cvlan: 7,
        },
        user: b"alice".to_vec(),
        password: b"pw".to_vec(),
        accept_auth: [Some(AuthProto::Pap), None],
        service_name: Vec::new(),
        host_uniq: None,
        max_payload: None,
        timers: Timers::default(),
        ipv6cp: false,
        magic: 0x0102_0304,
        discovery_tries: 3,
    });
    let mut up = Vec::new();
    s.start(0, &mut up);
    let mut step = |now_ms: u64,
                    w: &mut Worker,
                    gen: &mut MemPort,
                    s: &mut Subscriber,
                    up: &mut Vec<Vec<u8>>,
                    cache: &mut dataplane::buf::PoolCache| {
        send(gen, cache, up);
        up.clear();
        w.poll(now_ms * 1_000_000);
        control.drain_punts(&punt, cache, now_ms);
        inj.queue(control.poll(now_ms));
        inj.flush(&inject, cache);
        w.poll(now_ms * 1_000_000);
        for f in recv(gen, cache) {
            s.input(&f, now_ms, up);
        }
    };
    for now in 0..50 {
        step(now, &mut w, &mut gen, &mut s, &mut up, &mut cache);
    }
    assert_eq!(s.phase, ClientPhase::Up);
    // ARP for our core address, from the core peer: answered by bng-core-arp.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&PEER_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&PEER_MAC);
    arp.extend_from_slice(&[198, 51, 100, 1]);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[198, 51, 100, 2]);
    send(&mut sink, &mut cache, &[arp]);
    // Upstream: the session's UDP to a core host.
    let mut ppp = vec![0x00, 0x21];
    ppp.extend_from_slice(&udp(s.ip, REMOTE, 4000, 53));
    let f = s.session_frame(&ppp);
    step(50, &mut w, &mut gen, &mut s, &mut vec![f], &mut cache);
    let got = recv(&mut sink, &mut cache);
    let reply = got
        .iter()
        .find(|f| f[12..14] == [0x08, 0x06])
        .expect("ARP reply");
    assert_eq!(&reply[0..6], &PEER_MAC);
    assert_eq!(&reply[6..12], &CORE_MAC);
    let data: Vec<&Vec<u8>> = got.iter().filter(|f| f[12..14] == [0x08, 0x00]).collect();
    assert_eq!(data.len(), 1, "{got:?}\n{}", w.graph.show_errors());
    let d = data[0];
    assert_eq!(&d[0..6], &PEER_MAC);
    let src = u32::from_be_bytes([d[26], d[27], d[28], d[29]]);
    let sport = u16::from_be_bytes([d[34], d[35]]);
    if cgnat {
        assert_eq!(src & 0xffff_fff0, 0xcb00_7100, "translated into the pool");
    } else {
        assert_eq!(src, s.ip);
        assert_eq!(sport, 4000);
    }
    // Downstream: the answer to what the core saw.
    let mut f = CORE_MAC.to_vec();
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&udp(REMOTE, src, 53, sport));
    send(&mut sink, &mut cache, &[f]);
    w.poll(51_000_000);
    let down = recv(&mut gen, &mut cache);
    assert_eq!(down.len(), 1, "{}", w.graph.show_errors());
    let d = &down[0];
    assert_eq!(&d[0..6], &SUB_MAC);
    // QinQ + PPPoE session + PPP IPv4, inner destination the subscriber's own.
    assert_eq!(&d[20..22], &[0x88, 0x64]);
    assert_eq!(&d[28..30], &[0x00, 0x21]);
    let dst = u32::from_be_bytes([d[46], d[47], d[48], d[49]]);
    assert_eq!(dst, s.ip);
    let dport = u16::from_be_bytes([d[52], d[53]]);
    assert_eq!(dport, 4000);
    // Each port's packets entered at its own node; the nodes count their own.
    let mut counters = Vec::new();
    w.graph
        .counters(&mut |n, c| counters.push((n, c.name, c.value)));
    assert!(
        counters.contains(&("bng-upstream", "sessions", 1)),
        "{counters:?}"
    );
    assert!(
        counters.contains(&("bng-downstream", "sessions", 1)),
        "{counters:?}"
    );
    assert!(
        counters.contains(&("bng-core-arp", "arp-replies", 1)),
        "{counters:?}"
    );
    if cgnat {
        assert!(
            counters.contains(&("nat44", "sessions-active", 1)),
            "{counters:?}"
        );
        let log = control.nat_log.as_ref().unwrap();
        let rec = log.pop().expect("block allocation logged");
        assert_eq!(u32::from(rec.subscriber), s.ip);
    }
    let nodes: Vec<(&str, u64)> = w.graph.nodes().map(|n| (n.name, n.packets)).collect();
    assert!(
        nodes.iter().any(|&(n, p)| n == "bng-upstream" && p >= 10),
        "{nodes:?}"
    );
}

#[test]
fn routed() {
    lab("");
}

#[test]
fn cgnat() {
    lab("[cgnat]\npool = [\"203.0.113.0/28\"]\n");
}

/// With `[cgnat]` and the DHCP relay, a DHCP server's reply to our `giaddr` (the IPoE
/// gateway) entering the core port is punted by `bng-core-input` to the control
/// plane's relay before `nat44` (control traffic does not cross the NAT); other
/// traffic to the gateway goes the data path.
#[test]
fn relay_reply_with_cgnat_reaches_the_control_plane() {
    let cfg = Config::from_toml(
        "core_ip = \"198.51.100.2/24\"\ncore_next_hop_mac = \"02:00:00:00:c0:01\"\n\
         [cgnat]\npool = [\"203.0.113.0/28\"]\n\
         [ipoe]\nauthorize = false\n[ipoe.dhcp]\ngateway = \"100.72.0.1/16\"\n\
         [[ipoe.dhcp.pools]]\nname = \"ipoe\"\nranges = [\"100.72.1.10-100.72.1.50\"]\n\
         [ipoe.relay]\nservers = [\"198.51.100.1\"]\n",
    )
    .unwrap();
    cfg.validate()
        .expect("relay with CGNAT is a valid combination");
    let v = build(&cfg, &BuildEnv::new(CORE_MAC, 16, Rng::from_seed([5; 32]))).unwrap();
    let mut control = v.control;
    let pool = Pool::new(256).unwrap();
    let (_gen, access) = pair("gen6", "access6", 64).unwrap();
    let (core, mut sink) = pair("core6", "sink6", 64).unwrap();
    let (punt, inject) = (ring(64), ring(64));
    let mut w = Worker::new(
        vec![Box::new(access) as Box<dyn Port>, Box::new(core)],
        v.graph,
        pool.cache(),
        WorkerConfig::default(),
    )
    .unwrap()
    .with_punt(punt.clone())
    .with_inject(inject)
    .on_update(update_hook());
    let mut cache = pool.cache();
    let gw = u32::from_be_bytes([100, 72, 0, 1]);
    let server = u32::from_be_bytes([198, 51, 100, 1]);
    let frame = |dport: u16| {
        let mut f = CORE_MAC.to_vec();
        f.extend_from_slice(&PEER_MAC);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&udp(server, gw, 67, dport));
        f
    };
    send(&mut sink, &mut cache, &[frame(67), frame(68)]);
    w.poll(1_000_000);
    assert_eq!(punt.len(), 1, "the server's reply is punted");
    let before = control.cp.stats.relay_dropped;
    control.drain_punts(&punt, &mut cache, 1);
    // Not a DHCP message our relay sent (no option 82): counted by the relay.
    assert_eq!(control.cp.stats.relay_dropped, before + 1);
    // The other datagram to the gateway went the data path and was refused there.
    let errors = w.graph.show_errors();
    assert!(
        errors.contains("local-not-handled"),
        "the other datagram is not the relay's:\n{errors}"
    );
}
