//! The worker loop with two workers joined by the hand-off mesh allocates nothing
//! after start-up: software RSS spreading bursts, `nat44` handing packets to the
//! worker that owns their session (both directions, new sessions and hits), the
//! rings between the workers, transmit — counted by a global allocator.

use dataplane::batch::Batch;
use dataplane::buf::Pool;
use dataplane::graph::Graph;
use dataplane::port::{mem, Port};
use dataplane::stages::nat::{CgnatConfig, Nat44, NatConfig};
use dataplane::stages::xconnect::Xconnect;
use dataplane::worker::{handoff_mesh, Worker, WorkerConfig};

mod counting;
use counting::{allocs, watch};

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

fn udp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&46u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    let c = dataplane::proto::checksum::internet(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&sp.to_be_bytes());
    f[36..38].copy_from_slice(&dp.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    f
}

#[test]
fn two_workers_with_handoff_do_not_allocate() {
    let pool = Pool::new(16384).unwrap();
    let mut c = pool.cache();
    let cfg = NatConfig {
        inside_ports: vec![0],
        pool: vec!["198.51.100.0/30".into()],
        max_sessions: 4096,
        max_subscribers: 256,
        cgnat: Some(CgnatConfig {
            block_size: 64,
            blocks_per_subscriber: 4,
            sessions_per_subscriber: 1000,
            log: true,
        }),
        ..NatConfig::default()
    };
    let mut ws = Vec::new();
    let mut peers = Vec::new();
    for (k, h) in handoff_mesh(2, 1024).into_iter().enumerate() {
        let (a, pa) = mem::pair(&format!("in{k}"), "gen", 1024).unwrap();
        let (b, pb) = mem::pair(&format!("out{k}"), "remote", 1024).unwrap();
        let mut g = Graph::new();
        g.push(Box::new(Nat44::new_worker(&cfg, k as u16, 2).unwrap()));
        g.push(Box::new(Xconnect::new(vec![Some(1), Some(0)])));
        let w = Worker::new(
            vec![a, b],
            g,
            pool.cache(),
            WorkerConfig {
                soft_rss: true,
                ..WorkerConfig::default()
            },
        )
        .unwrap()
        .with_handoff(h);
        ws.push(w);
        peers.push([pa, pb]);
    }
    // Frames are built before counting: 64 hosts x 8 flows, then their replies
    // (the reply addresses come from the first round's output).
    let out_frames: Vec<Vec<u8>> = (0..512u32)
        .map(|i| {
            udp(
                [10, 0, (i / 8) as u8, 1],
                2000 + (i % 8) as u16,
                [192, 0, 2, 9],
                53,
            )
        })
        .collect();
    let mut b = Batch::new();
    let mut got: Vec<Vec<u8>> = Vec::with_capacity(4096);
    let mut now = 1_000_000_000u64;
    let mut round = |ws: &mut Vec<Worker<mem::MemPort>>,
                     peers: &mut Vec<[mem::MemPort; 2]>,
                     frames: &[Vec<u8>],
                     port: usize,
                     keep: bool,
                     got: &mut Vec<Vec<u8>>| {
        for (i, chunk) in frames.chunks(128).enumerate() {
            for f in chunk {
                let mut p = c.alloc().unwrap();
                p.copy_from(f).unwrap();
                b.push(p).unwrap();
            }
            peers[i % 2][port].tx_burst(&mut c, &mut b);
            b.free_all(&mut c);
            for _ in 0..4 {
                now += 1_000;
                for w in ws.iter_mut() {
                    w.poll(now);
                }
            }
            for pp in peers.iter_mut() {
                while pp[1 - port].rx_burst(&mut c, &mut b) > 0 {
                    b.drain(|p| {
                        if keep && got.len() < got.capacity() {
                            got.push(p.data().to_vec());
                        }
                        c.free(p);
                    });
                }
            }
        }
    };
    // warm-up: opens the sessions (tables are preallocated; nothing should
    // allocate here either, but only the steady state is asserted)
    round(&mut ws, &mut peers, &out_frames, 0, true, &mut got);
    assert_eq!(got.len(), out_frames.len(), "every packet translated");
    let replies: Vec<Vec<u8>> = got
        .iter()
        .map(|f| {
            let s = [f[26], f[27], f[28], f[29]];
            let sp = u16::from_be_bytes([f[34], f[35]]);
            udp([192, 0, 2, 9], 53, s, sp)
        })
        .collect();
    let mut sink = Vec::new();
    counting::reset();
    watch(true);
    for _ in 0..4 {
        round(&mut ws, &mut peers, &out_frames, 0, false, &mut sink);
        round(&mut ws, &mut peers, &replies, 1, false, &mut sink);
    }
    watch(false);
    let n = allocs();
    let handed: u64 = ws.iter().map(|w| w.stats.handed_off).sum();
    assert!(handed > 0, "hand-offs happened");
    let drops: u64 = ws
        .iter()
        .map(|w| w.graph.nodes().map(|n| n.dropped()).sum::<u64>() + w.stats.handoff_dropped)
        .sum();
    assert_eq!(drops, 0);
    assert_eq!(n, 0, "{n} allocations on the two workers' packet path");
}
