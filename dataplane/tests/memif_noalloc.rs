//! The memif port's bursts never call the allocator once the link is up: a counting
//! global allocator watches a master and a slave in one process exchanging frames
//! both ways (single-descriptor and chained frames, a full ring that leaves frames in
//! the batch, and the periodic look at the control socket every `CTRL_EVERY` bursts),
//! for a zero-copy slave (received frames sent back out of it in place, shared-pool
//! buffers posted and given back) and for a copying one.

use dataplane::batch::Batch;
use dataplane::buf::Pool;
use dataplane::port::memif::{open_queues, Config, MemifPort, Role, CTRL_EVERY};
use dataplane::port::Port;
use std::time::{Duration, Instant};

mod counting;
use counting::{allocs, watch};

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

#[test]
fn memif_bursts_do_not_allocate() {
    bursts(false);
}

#[test]
fn memif_zero_copy_bursts_do_not_allocate() {
    bursts(true);
}

fn bursts(zero_copy: bool) {
    let path = std::env::temp_dir().join(format!(
        "dp-memif-noalloc-{}-{zero_copy}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let pool = Pool::new(2048).unwrap();
    let mut c = pool.cache();
    let mut m = MemifPort::open(
        &path,
        &Config {
            role: Role::Master,
            ..Config::default()
        },
    )
    .unwrap();
    // 1 KiB slave buffers: frames above that are chained.
    let mut s = MemifPort::open(
        &path,
        &Config {
            role: Role::Slave,
            log2_ring: 6,
            buf_size: 1024,
            zero_copy,
            ..Config::default()
        },
    )
    .unwrap();
    let t = Instant::now();
    while !(m.is_up() && s.is_up()) {
        assert!(t.elapsed() < Duration::from_secs(5), "link did not come up");
        m.poll_control();
        s.poll_control();
    }
    let frames: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 60 + i * 30]).collect();
    let mut tx = Batch::new();
    let mut rx = Batch::new();
    let mut moved = 0u64;
    watch(true);
    for round in 0..(4 * CTRL_EVERY as usize) {
        for f in &frames {
            let mut p = c.alloc().unwrap();
            p.copy_from(f).unwrap();
            let _ = tx.push(p);
        }
        if round % 2 == 0 {
            s.tx_burst(&mut c, &mut tx);
            moved += m.rx_burst(&mut c, &mut rx) as u64;
        } else {
            // master -> slave, and the slave sends what it got straight back
            m.tx_burst(&mut c, &mut tx);
            moved += s.rx_burst(&mut c, &mut rx) as u64;
            s.tx_burst(&mut c, &mut rx);
            rx.free_all(&mut c);
            moved += m.rx_burst(&mut c, &mut rx) as u64;
        }
        rx.free_all(&mut c);
        tx.free_all(&mut c);
    }
    watch(false);
    assert_eq!(allocs(), 0, "allocations in bursts");
    assert!(moved > 1000, "only {moved} frames moved");
    assert!(m.is_up() && s.is_up());
    assert_eq!(m.counters().ctrl_errors + s.counters().ctrl_errors, 0);
    assert_eq!(s.counters().zc_frames > 0, zero_copy);
}

/// The same for the queue ports of a two-pair link ([`open_queues`]): each pair's
/// bursts allocate nothing (the control threads are not watched: they only run
/// when a message comes or a link changes). A short warm-up runs first: a worker's
/// zero-copy buffer cache is made on its first burst.
#[test]
fn memif_queue_bursts_do_not_allocate() {
    for zero_copy in [false, true] {
        let path = std::env::temp_dir().join(format!(
            "dp-memif-noalloc-mq-{}-{zero_copy}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let pool = Pool::new(2048).unwrap();
        let mut c = pool.cache();
        let mut m = open_queues(
            &path,
            &Config {
                role: Role::Master,
                queues: 2,
                ..Config::default()
            },
        )
        .unwrap();
        let mut s = open_queues(
            &path,
            &Config {
                role: Role::Slave,
                log2_ring: 6,
                buf_size: 1024,
                zero_copy,
                queues: 2,
                ..Config::default()
            },
        )
        .unwrap();
        let t = Instant::now();
        while !(m.iter().chain(&s).all(|q| q.is_up())) {
            assert!(t.elapsed() < Duration::from_secs(5), "link did not come up");
            std::thread::sleep(Duration::from_millis(1));
        }
        let frames: Vec<Vec<u8>> = (0..32).map(|i| vec![i as u8; 60 + i * 60]).collect();
        let mut tx = Batch::new();
        let mut rx = Batch::new();
        let mut moved = 0u64;
        for round in 0..400 {
            if round == 20 {
                watch(true);
            }
            for (mq, sq) in m.iter_mut().zip(s.iter_mut()) {
                for f in &frames {
                    let mut p = c.alloc().unwrap();
                    p.copy_from(f).unwrap();
                    let _ = tx.push(p);
                }
                sq.tx_burst(&mut c, &mut tx);
                moved += mq.rx_burst(&mut c, &mut rx) as u64;
                mq.tx_burst(&mut c, &mut rx);
                moved += sq.rx_burst(&mut c, &mut rx) as u64;
                rx.free_all(&mut c);
                tx.free_all(&mut c);
            }
        }
        watch(false);
        assert_eq!(allocs(), 0, "allocations in queue bursts ({zero_copy})");
        assert!(moved > 1000, "only {moved} frames moved");
        for q in m.iter().chain(&s) {
            assert!(q.is_up());
            assert!(q.stats().rx_packets > 0, "{}", q.name());
            assert_eq!(q.counters().ctrl_errors, 0);
        }
    }
}
