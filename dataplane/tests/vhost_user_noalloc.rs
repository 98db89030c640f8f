//! The vhost-user port's bursts never call the allocator once the link is up: a
//! counting global allocator watches the port exchange frames both ways with the
//! in-process frontend (`vhost_frontend`: single-descriptor and header-split chains,
//! call eventfds signalled, and the periodic look at the control socket every
//! `CTRL_EVERY` bursts). Only the port's calls are watched, not the frontend's.

mod vhost_frontend;

use dataplane::batch::Batch;
use dataplane::buf::Pool;
use dataplane::port::vhost_user::{Config, VhostUserPort, CTRL_EVERY};
use dataplane::port::Port;
use std::sync::atomic::{AtomicBool, Ordering};
use vhost_frontend::*;

mod counting;
use counting::{allocs, watch};

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

#[test]
fn vhost_user_bursts_do_not_allocate() {
    let path = std::env::temp_dir().join(format!("dp-vhost-noalloc-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let pool = Pool::new(2048).unwrap();
    let mut c = pool.cache();
    let mut port = VhostUserPort::open(
        &path,
        &Config {
            server: true,
            ..Config::default()
        },
    )
    .unwrap();
    let mut fe = Frontend::connect(&path);
    fe.setup(&mut port);
    let frames: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 60 + i * 20]).collect();
    let mut buf = vec![0u8; BUF];
    let mut b = Batch::new();
    let mut moved = 0u64;
    let mut back = 0u64;
    for round in 0..(4 * CTRL_EVERY as usize) {
        for (i, f) in frames.iter().enumerate() {
            if !fe.transmit(f, (round + i) % 2 == 0) {
                break;
            }
        }
        watch(true);
        moved += port.rx_burst(&mut c, &mut b) as u64;
        port.tx_burst(&mut c, &mut b);
        watch(false);
        b.free_all(&mut c);
        back += fe.receive(&mut buf, |_| {}) as u64;
    }
    assert_eq!(allocs(), 0, "allocations in bursts");
    assert!(
        moved > 10_000 && back == moved,
        "moved {moved}, back {back}"
    );
    assert!(port.is_up());
    assert!(port.counters().calls > 0);
    assert_eq!(port.counters().ctrl_errors, 0);
}

/// The virtio-user (frontend) port's bursts, against our vhost-user backend in the
/// same thread once both are up: neither side allocates, including the frontend's
/// periodic look at its socket.
#[test]
fn virtio_user_bursts_do_not_allocate() {
    use dataplane::port::virtio_user::{self, VirtioUserPort};
    use std::time::{Duration, Instant};
    let path = std::env::temp_dir().join(format!("dp-vuser-noalloc-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let pool = Pool::new(4096).unwrap();
    let mut c = pool.cache();
    let mut be = VhostUserPort::open(
        &path,
        &Config {
            server: true,
            ..Config::default()
        },
    )
    .unwrap();
    // the backend answers the frontend's setup from its own thread
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let h = std::thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            be.poll_control();
            std::thread::sleep(Duration::from_micros(200));
        }
        be
    });
    let cfg = virtio_user::Config {
        queue_size: 256,
        ..virtio_user::Config::default()
    };
    let mut fe = VirtioUserPort::open(&path, &cfg).unwrap();
    assert!(fe.wait_up(Duration::from_secs(5)), "{:?}", fe.last_error());
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let mut be = h.join().unwrap();
    let t = Instant::now();
    while !be.is_up() && t.elapsed() < Duration::from_secs(5) {
        be.poll_control();
    }
    assert!(be.is_up(), "{:?}", be.last_error());
    let mut out = Batch::new();
    let mut mid = Batch::new();
    let mut back = Batch::new();
    let (mut sent, mut got) = (0u64, 0u64);
    for _ in 0..4096 {
        for i in 0..32 {
            let mut p = c.alloc().unwrap();
            p.copy_from(&[i as u8; 64]).unwrap();
            out.push(p).unwrap();
        }
        watch(true);
        sent += fe.tx_burst(&mut c, &mut out) as u64;
        be.rx_burst(&mut c, &mut mid);
        be.tx_burst(&mut c, &mut mid);
        got += fe.rx_burst(&mut c, &mut back) as u64;
        watch(false);
        out.free_all(&mut c);
        mid.free_all(&mut c);
        back.free_all(&mut c);
    }
    assert_eq!(allocs(), 0, "allocations in bursts");
    assert!(sent > 10_000 && got > 10_000, "sent {sent}, got {got}");
    assert!(fe.is_up() && be.is_up());
    assert_eq!(fe.counters().ring_errors, 0);
}
