//! IPsec with two workers: every worker holds every SA, but an SA is owned by one
//! worker (`ipsec::stage::sa_owner`): outbound packets are handed to the owner
//! before a sequence number is taken, inbound ESP is handed to the owner by SPI
//! before the replay check. Checked here: the sequence numbers of each SA strictly
//! increase in the order its packets leave, a receiver's anti-replay accepts every
//! packet, and a packet replayed on the other worker is caught by the one window.

use dataplane::batch::{Batch, Next, Out};
use dataplane::buf::{Pool, PoolCache};
use dataplane::graph::Graph;
use dataplane::port::{mem, Port};
use dataplane::stage::{NodeStats, Stage};
use dataplane::stages::xconnect::Xconnect;
use dataplane::worker::{handoff_mesh, Worker, WorkerConfig};
use ipsec::spd::Prefix;
use ipsec::stage::{sa_owner, EspDecrypt, EspEncrypt};
use ipsec::{
    Action, Algorithm, Backend, Direction, DropReason, Ipsec, KeyMaterial, SaConfig, Selector,
};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

/// Marks the IPv4 header after the Ethernet header (what `ethernet-input` does).
struct SetL3;
impl Stage for SetL3 {
    fn name(&self) -> &'static str {
        "set-l3"
    }
    fn process(&mut self, b: &mut Batch, n: &mut NodeStats, o: &mut Out) {
        b.dispatch(n, o, |p, _| {
            p.meta.l3 = 14;
            Next::Keep
        });
    }
}

const SAS: u32 = 6;
const SPI0: u32 = 0x2000_0000;

/// SA k protects traffic to 10.1.k.0/24 with SPI `SPI0 + k`; outbound SAs in one
/// `Ipsec`, inbound in the other.
fn sads() -> (Ipsec, Ipsec) {
    let src = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let dst = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    let (mut tx, mut rx) = (Ipsec::new(), Ipsec::new());
    for k in 0..SAS {
        let km = KeyMaterial::new(Algorithm::Aes128Gcm16, &[0x40 + k as u8; 20]).unwrap();
        let mut cfg = SaConfig::tunnel(SPI0 + k, Direction::Outbound, src, dst);
        cfg.backend = Backend::Ring;
        cfg.esn = true;
        let id = tx.sad.add(cfg.clone(), &km, 0).unwrap();
        let sel = Selector::between(
            Prefix::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8),
            Prefix::new(IpAddr::V4(Ipv4Addr::new(10, 1, k as u8, 0)), 24),
        );
        tx.spd.push_outbound(sel, Action::Protect(id));
        cfg.direction = Direction::Inbound;
        rx.sad.add(cfg, &km, 0).unwrap();
    }
    (tx, rx)
}

fn udp(k: u32, i: u32) -> Vec<u8> {
    let mut f = vec![0u8; 80];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&66u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 1, k as u8, 7]);
    let c = dataplane::proto::checksum::internet(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&1000u16.to_be_bytes());
    f[36..38].copy_from_slice(&2000u16.to_be_bytes());
    f[38..40].copy_from_slice(&46u16.to_be_bytes());
    f[42..46].copy_from_slice(&i.to_be_bytes());
    f
}

struct Side {
    ws: Vec<Worker<mem::MemPort>>,
    /// peers[k] = (input peer, output peer) of worker k.
    peers: Vec<(mem::MemPort, mem::MemPort)>,
}

/// Two workers (or one) around `stage(k, n)`.
fn side(pool: &'static Pool, n: usize, stage: impl Fn(u16, u16) -> Box<dyn Stage>) -> Side {
    let mut ws = Vec::new();
    let mut peers = Vec::new();
    for (k, h) in handoff_mesh(n, 4096).into_iter().enumerate() {
        let (a, pa) = mem::pair(&format!("in{k}"), "peer-in", 4096).unwrap();
        let (b, pb) = mem::pair(&format!("out{k}"), "peer-out", 4096).unwrap();
        let mut g = Graph::new();
        g.push(Box::new(SetL3));
        g.push(stage(k as u16, n as u16));
        g.push(Box::new(Xconnect::new(vec![Some(1), Some(0)])));
        let w = Worker::new(vec![a, b], g, pool.cache(), WorkerConfig::default())
            .unwrap()
            .with_handoff(h);
        ws.push(w);
        peers.push((pa, pb));
    }
    Side { ws, peers }
}

impl Side {
    fn offer(&mut self, c: &mut PoolCache, w: usize, frames: &[Vec<u8>]) {
        let mut b = Batch::new();
        for f in frames {
            let mut p = c.alloc().unwrap();
            p.copy_from(f).unwrap();
            b.push(p).unwrap();
        }
        self.peers[w].0.tx_burst(c, &mut b);
        assert!(b.is_empty());
    }

    fn run(&mut self) {
        for t in 0..8 {
            for w in self.ws.iter_mut() {
                w.poll(1_000_000_000 + t);
            }
        }
    }

    /// What left every worker's output, worker by worker, in order.
    fn take(&mut self, c: &mut PoolCache) -> Vec<(usize, Vec<u8>)> {
        let mut got = Vec::new();
        for (k, (_, out)) in self.peers.iter_mut().enumerate() {
            let mut b = Batch::new();
            while out.rx_burst(c, &mut b) > 0 {
                b.drain(|p| {
                    got.push((k, p.data().to_vec()));
                    c.free(p);
                });
            }
        }
        got
    }
}

fn spi_seq(esp_frame: &[u8]) -> (u32, u32) {
    let e = &esp_frame[14 + 20..];
    (
        u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
        u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
    )
}

fn drops(w: &Worker<mem::MemPort>, r: DropReason) -> u64 {
    w.graph
        .nodes()
        .find(|n| n.name == "esp-decrypt")
        .map(|n| n.drops[r as usize])
        .unwrap_or(0)
}

#[test]
fn an_sa_is_owned_by_one_worker_and_the_receiver_accepts_every_packet() {
    let owners: Vec<u16> = (0..SAS).map(|k| sa_owner(SPI0 + k, 2)).collect();
    assert!(
        owners.contains(&0) && owners.contains(&1),
        "both workers own SAs: {owners:?}"
    );
    let pool = Pool::new(32768).unwrap();
    let mut c = pool.cache();
    let mut tx = side(pool, 2, |k, n| {
        Box::new(EspEncrypt::new(sads().0).for_worker(k, n))
    });
    // Every SA's traffic enters on both workers, interleaved, in rounds.
    const ROUNDS: u32 = 20;
    for r in 0..ROUNDS {
        for w in 0..2 {
            let frames: Vec<_> = (0..SAS).map(|k| udp(k, r * 2 + w as u32)).collect();
            tx.offer(&mut c, w, &frames);
        }
        tx.run();
    }
    let out = tx.take(&mut c);
    assert_eq!(out.len() as u32, ROUNDS * 2 * SAS, "every packet encrypted");
    // Each SA's packets leave its owner only, with strictly increasing sequence
    // numbers 1, 2, 3, ...
    let mut last: HashMap<u32, u32> = HashMap::new();
    for (w, f) in &out {
        let (spi, seq) = spi_seq(f);
        assert_eq!(sa_owner(spi, 2) as usize, *w, "SPI {spi:#x} left its owner");
        let prev = last.insert(spi, seq).unwrap_or(0);
        assert_eq!(seq, prev + 1, "SPI {spi:#x}: {seq} after {prev}");
    }
    assert_eq!(last.len() as u32, SAS);
    assert!(tx.ws.iter().all(|w| w.stats.handoff_received > 0));

    // A one-worker receiver in the order the packets left: anti-replay accepts all.
    let mut rx1 = side(pool, 1, |_, _| Box::new(EspDecrypt::new(sads().1)));
    let frames: Vec<_> = out.iter().map(|(_, f)| f.clone()).collect();
    for chunk in frames.chunks(64) {
        rx1.offer(&mut c, 0, chunk);
        rx1.run();
    }
    let clear = rx1.take(&mut c);
    assert_eq!(clear.len(), frames.len(), "receiver accepted every packet");
    assert_eq!(drops(&rx1.ws[0], DropReason::Replay), 0);

    // A two-worker receiver: every packet offered on both workers (the second copy
    // is a replay): each is decrypted once, by its SA's owner, and the copy is
    // caught by that one replay window.
    let mut rx2 = side(pool, 2, |k, n| {
        Box::new(EspDecrypt::new(sads().1).for_worker(k, n))
    });
    for chunk in frames.chunks(64) {
        rx2.offer(&mut c, 0, chunk);
        rx2.run();
        rx2.offer(&mut c, 1, chunk);
        rx2.run();
    }
    let clear = rx2.take(&mut c);
    assert_eq!(clear.len(), frames.len(), "each packet decrypted once");
    let replays: u64 = rx2.ws.iter().map(|w| drops(w, DropReason::Replay)).sum();
    assert_eq!(
        replays,
        frames.len() as u64,
        "every copy caught as a replay"
    );
    for (w, f) in &clear {
        // the inner packet's destination names its SA
        let k = u32::from(f[14 + 18]);
        assert_eq!(sa_owner(SPI0 + k, 2) as usize, *w, "decrypted by the owner");
    }
}
