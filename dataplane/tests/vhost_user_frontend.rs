//! The vhost-user port against an in-process frontend (`vhost_frontend`): frames
//! both ways in both socket roles, interrupts only when the driver wants them, and
//! hostile frontends — malformed or unsupported messages, a memory table that does
//! not match its fds or its files, rings outside the memory table, descriptors out
//! of bounds, descriptor loops, runaway indices — each counted, the connection
//! dropped, and the next frontend served.

mod vhost_frontend;

use dataplane::batch::Batch;
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::vhost_user::{Config, VhostUserPort};
use dataplane::port::Port;
use dataplane::proto::vhost_user::{self as wire, Out, Region, VringState};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use vhost_frontend::*;

fn sock(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("dp-vhost-{}-{tag}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn server(tag: &str) -> (PathBuf, VhostUserPort) {
    let path = sock(tag);
    let port = VhostUserPort::open(
        &path,
        &Config {
            server: true,
            ..Config::default()
        },
    )
    .unwrap();
    (path, port)
}

fn frame(i: usize) -> Vec<u8> {
    let len = 60 + (i * 37) % 1400;
    (0..len).map(|j| (i * 3 + j) as u8).collect()
}

/// `n` frames from the frontend to the port and back (the port echoes what it
/// receives); checks every byte.
fn echo(fe: &mut Frontend, port: &mut VhostUserPort, c: &mut PoolCache, n: usize) {
    let mut sent = 0;
    let mut back = 0;
    let mut buf = vec![0u8; BUF];
    let t = Instant::now();
    while back < n {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{back}/{n} back; {:?} {:?}",
            port.counters(),
            port.last_error()
        );
        while sent < n && sent < back + 64 && fe.transmit(&frame(sent), sent % 3 == 0) {
            sent += 1;
        }
        let mut b = Batch::new();
        port.rx_burst(c, &mut b);
        port.tx_burst(c, &mut b);
        assert!(b.is_empty());
        fe.receive(&mut buf, |f| {
            assert_eq!(f, &frame(back)[..], "frame {back}");
            back += 1;
        });
    }
}

#[test]
fn frames_both_ways_with_a_server_port() {
    let pool = Pool::new(1024).unwrap();
    let mut c = pool.cache();
    let (path, mut port) = server("srv");
    let mut fe = Frontend::connect(&path);
    fe.setup(&mut port);
    assert_eq!(port.counters().link_up, 1);
    assert_eq!(
        port.features(),
        wire::VIRTIO_F_VERSION_1 | wire::F_PROTOCOL_FEATURES
    );
    echo(&mut fe, &mut port, &mut c, 1000);
    let s = port.stats();
    assert_eq!((s.rx_packets, s.tx_packets), (1000, 1000));
    let bytes: u64 = (0..1000).map(|i| frame(i).len() as u64).sum();
    assert_eq!((s.rx_bytes, s.tx_bytes), (bytes, bytes));
    assert_eq!(s.rx_dropped + s.tx_dropped, 0);
    // The driver asked for interrupts (NO_INTERRUPT clear): calls were signalled.
    assert!(fe.calls(0) > 0 && fe.calls(1) > 0);
    assert!(port.counters().calls > 0);
    // Interrupts off: no more calls.
    fe.flags(Q0_AVAIL).store(1, Ordering::Release);
    fe.flags(Q1_AVAIL).store(1, Ordering::Release);
    let before = port.counters().calls;
    echo(&mut fe, &mut port, &mut c, 100);
    assert_eq!(port.counters().calls, before);
    assert_eq!((fe.calls(0), fe.calls(1)), (0, 0));
    // We poll: the used rings tell the driver not to kick.
    assert_eq!(fe.flags(Q1_USED).load(Ordering::Acquire), 1);
    // GET_VRING_BASE stops a ring and reports where it stopped.
    fe.send(
        &Out::request_state(wire::GET_VRING_BASE, 0, VringState { index: 1, num: 0 }),
        &[],
    );
    let (_, p) = fe.reply(&mut port).unwrap();
    assert_eq!(u32::from_le_bytes(p[4..8].try_into().unwrap()), 1100);
    assert!(!port.is_up());
    assert_eq!(port.counters().link_down, 1);
    assert_eq!(port.counters().ctrl_errors, 0);
}

#[test]
fn frames_both_ways_with_a_client_port_that_reconnects() {
    let pool = Pool::new(1024).unwrap();
    let mut c = pool.cache();
    let path = sock("cli");
    let l = UnixListener::bind(&path).unwrap();
    let mut port = VhostUserPort::open(
        &path,
        &Config {
            server: false,
            retry: Duration::from_millis(5),
            ..Config::default()
        },
    )
    .unwrap();
    port.poll_control();
    let (s, _) = l.accept().unwrap();
    let mut fe = Frontend::new(s);
    fe.setup(&mut port);
    echo(&mut fe, &mut port, &mut c, 300);
    // The frontend goes away: link down, transmit dropped and counted.
    drop(fe);
    let t = Instant::now();
    while port.is_up() {
        assert!(t.elapsed() < Duration::from_secs(2));
        port.poll_control();
    }
    assert_eq!(port.counters().link_down, 1);
    let mut b = Batch::new();
    let mut p = c.alloc().unwrap();
    p.copy_from(&frame(1)).unwrap();
    b.push(p).unwrap();
    port.tx_burst(&mut c, &mut b);
    assert!(b.is_empty());
    assert_eq!(port.counters().down_tx_drops, 1);
    assert_eq!(port.stats().tx_dropped, 1);
    // It comes back: the port reconnects and is served again.
    std::thread::sleep(Duration::from_millis(10));
    port.poll_control();
    let (s, _) = l.accept().unwrap();
    let mut fe = Frontend::new(s);
    fe.setup(&mut port);
    assert_eq!(port.counters().link_up, 2);
    echo(&mut fe, &mut port, &mut c, 300);
    assert_eq!(port.counters().ctrl_errors, 0);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_second_frontend_is_refused_while_one_is_connected() {
    let (path, mut port) = server("second");
    let mut fe = Frontend::connect(&path);
    fe.setup(&mut port);
    let mut other = Frontend::connect(&path);
    assert!(other.closed(&mut port));
    assert!(port.is_up());
    drop(fe);
}

/// Connects a frontend, lets `hostile` misbehave, and checks that the port counted
/// it (`ctrl` control errors or `desc` bad descriptors or `ring` ring errors),
/// dropped the connection, and then serves a well-behaved frontend.
fn survives(
    port: &mut VhostUserPort,
    path: &std::path::Path,
    c: &mut PoolCache,
    what: &str,
    hostile: impl FnOnce(&mut Frontend, &mut VhostUserPort, &mut PoolCache),
) {
    let before = port.counters();
    let mut fe = Frontend::connect(path);
    hostile(&mut fe, port, c);
    assert!(fe.closed(port), "{what}: connection not dropped");
    let after = port.counters();
    let counted = (after.ctrl_errors - before.ctrl_errors)
        + (after.bad_desc - before.bad_desc)
        + (after.ring_errors - before.ring_errors);
    assert_eq!(counted, 1, "{what}: {after:?}");
    assert!(!port.is_up());
    eprintln!("{what}: {}", port.last_error().unwrap_or(""));
    let mut good = Frontend::connect(path);
    good.setup(port);
    echo(&mut good, port, c, 20);
}

fn rx_tx(port: &mut VhostUserPort, c: &mut PoolCache) {
    for _ in 0..2 {
        let mut b = Batch::new();
        port.rx_burst(c, &mut b);
        b.free_all(c);
        let mut p = c.alloc().unwrap();
        p.copy_from(&frame(0)).unwrap();
        b.push(p).unwrap();
        port.tx_burst(c, &mut b);
        b.free_all(c);
    }
}

#[test]
fn hostile_control_messages() {
    let pool = Pool::new(1024).unwrap();
    let mut c = pool.cache();
    let (path, mut port) = server("hostile-ctrl");
    survives(&mut port, &path, &mut c, "bad version", |fe, _, _| {
        let mut b = Out::request(wire::GET_FEATURES, 0).bytes().to_vec();
        b[4] = 2;
        fe.send_raw(&b);
    });
    survives(&mut port, &path, &mut c, "huge payload", |fe, _, _| {
        let mut b = Out::request(wire::GET_FEATURES, 0).bytes().to_vec();
        b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        fe.send_raw(&b);
    });
    survives(&mut port, &path, &mut c, "short payload", |fe, _, _| {
        let mut b = Out::request_u64(wire::SET_FEATURES, 0, 0).bytes().to_vec();
        b[8] = 3;
        b.truncate(wire::HDR_LEN + 3);
        fe.send_raw(&b);
    });
    survives(
        &mut port,
        &path,
        &mut c,
        "features not offered",
        |fe, _, _| {
            fe.send(&Out::request_u64(wire::SET_FEATURES, 0, 1 << 15), &[]);
        },
    );
    survives(
        &mut port,
        &path,
        &mut c,
        "unsupported request",
        |fe, _, _| {
            fe.send(&Out::request_u64(wire::SET_LOG_BASE, 0, 0), &[]);
        },
    );
    survives(&mut port, &path, &mut c, "unknown request", |fe, _, _| {
        fe.send(&Out::request(999, 0), &[]);
    });
    survives(&mut port, &path, &mut c, "second queue pair", |fe, _, _| {
        fe.send(
            &Out::request_state(wire::SET_VRING_NUM, 0, VringState { index: 2, num: 256 }),
            &[],
        );
    });
    survives(
        &mut port,
        &path,
        &mut c,
        "ring size not a power of 2",
        |fe, _, _| {
            fe.send(
                &Out::request_state(wire::SET_VRING_NUM, 0, VringState { index: 0, num: 100 }),
                &[],
            );
        },
    );
    survives(&mut port, &path, &mut c, "kick without fd", |fe, _, _| {
        fe.send(&Out::request_u64(wire::SET_VRING_KICK, 0, 0), &[]);
    });
    survives(
        &mut port,
        &path,
        &mut c,
        "memory table without fds",
        |fe, _, _| {
            fe.send(&Out::request_mem(0, &[Frontend::region()]), &[]);
        },
    );
    survives(
        &mut port,
        &path,
        &mut c,
        "memory table beyond its file",
        |fe, p, _| {
            let mut r = Frontend::region();
            r.memory_size = 1 << 30;
            // NEED_REPLY with REPLY_ACK: the port acks with a failure status, then closes.
            fe.send(
                &Out::request_u64(wire::SET_PROTOCOL_FEATURES, 0, wire::PROTOCOL_F_REPLY_ACK),
                &[],
            );
            let ack = fe.acked(p, &Out::request_mem(0, &[r]), &[fe.memfd.as_raw_fd()]);
            assert_eq!(ack, Some(1));
        },
    );
    survives(&mut port, &path, &mut c, "region wraps", |fe, _, _| {
        let r = Region {
            guest_phys_addr: u64::MAX - 10,
            ..Frontend::region()
        };
        fe.send(&Out::request_mem(0, &[r]), &[fe.memfd.as_raw_fd()]);
    });
    survives(
        &mut port,
        &path,
        &mut c,
        "ring outside the memory table",
        |fe, p, _| {
            fe.negotiate(p);
            let mut a = Frontend::addr(1);
            a.used = UADDR + MEM as u64 - 100;
            fe.ring(p, 1, &a);
        },
    );
    survives(
        &mut port,
        &path,
        &mut c,
        "descriptor table before the table",
        |fe, p, _| {
            fe.negotiate(p);
            let mut a = Frontend::addr(0);
            a.desc = UADDR - 16;
            fe.ring(p, 0, &a);
        },
    );
    assert_eq!(port.counters().ctrl_errors, 14);
    assert_eq!(port.counters().link_up, 14);
}

#[test]
fn hostile_rings() {
    let pool = Pool::new(1024).unwrap();
    let mut c = pool.cache();
    let (path, mut port) = server("hostile-ring");
    survives(
        &mut port,
        &path,
        &mut c,
        "tx descriptor out of bounds",
        |fe, p, c| {
            fe.setup(p);
            fe.write_desc(Q1_DESC, 0, GPA + MEM as u64 - 10, 100, 0, 0);
            fe.avail_ring(Q1_AVAIL, 0, 0);
            fe.idx(Q1_AVAIL).store(1, Ordering::Release);
            rx_tx(p, c);
        },
    );
    survives(
        &mut port,
        &path,
        &mut c,
        "descriptor below guest memory",
        |fe, p, c| {
            fe.setup(p);
            fe.write_desc(Q1_DESC, 0, GPA - 4096, 100, 0, 0);
            fe.avail_ring(Q1_AVAIL, 0, 0);
            fe.idx(Q1_AVAIL).store(1, Ordering::Release);
            rx_tx(p, c);
        },
    );
    survives(
        &mut port,
        &path,
        &mut c,
        "rx descriptor out of bounds",
        |fe, p, c| {
            fe.setup(p);
            fe.write_desc(Q0_DESC, 0, u64::MAX - 8, 2048, 2, 0);
            rx_tx(p, c);
        },
    );
    survives(
        &mut port,
        &path,
        &mut c,
        "rx descriptor read-only",
        |fe, p, c| {
            fe.setup(p);
            fe.write_desc(Q0_DESC, 0, GPA + RX_BUFS as u64, 2048, 0, 0);
            rx_tx(p, c);
        },
    );
    survives(&mut port, &path, &mut c, "descriptor loop", |fe, p, c| {
        fe.setup(p);
        fe.write_desc(Q1_DESC, 0, GPA + TX_BUFS as u64, 16, 1, 1);
        fe.write_desc(Q1_DESC, 1, GPA + TX_BUFS as u64, 16, 1, 0);
        fe.avail_ring(Q1_AVAIL, 0, 0);
        fe.idx(Q1_AVAIL).store(1, Ordering::Release);
        rx_tx(p, c);
    });
    survives(&mut port, &path, &mut c, "next out of range", |fe, p, c| {
        fe.setup(p);
        fe.write_desc(Q1_DESC, 0, GPA + TX_BUFS as u64, 16, 1, NUM);
        fe.avail_ring(Q1_AVAIL, 0, 0);
        fe.idx(Q1_AVAIL).store(1, Ordering::Release);
        rx_tx(p, c);
    });
    survives(
        &mut port,
        &path,
        &mut c,
        "indirect descriptor",
        |fe, p, c| {
            fe.setup(p);
            fe.write_desc(Q1_DESC, 0, GPA + TX_BUFS as u64, 16, 4, 0);
            fe.avail_ring(Q1_AVAIL, 0, 0);
            fe.idx(Q1_AVAIL).store(1, Ordering::Release);
            rx_tx(p, c);
        },
    );
    survives(&mut port, &path, &mut c, "head out of range", |fe, p, c| {
        fe.setup(p);
        fe.avail_ring(Q1_AVAIL, 0, NUM + 3);
        fe.idx(Q1_AVAIL).store(1, Ordering::Release);
        rx_tx(p, c);
    });
    survives(
        &mut port,
        &path,
        &mut c,
        "avail index runaway",
        |fe, p, c| {
            fe.setup(p);
            fe.idx(Q1_AVAIL).store(NUM + 1, Ordering::Release);
            rx_tx(p, c);
        },
    );
    let k = port.counters();
    assert_eq!(
        (k.bad_desc, k.ring_errors, k.ctrl_errors),
        (7, 2, 0),
        "{k:?}"
    );
    // Each hostile frontend's link went down, and each good one's when it left.
    assert_eq!(k.link_down, 9 + 8);
}

#[test]
fn frames_too_long_for_the_receive_chain_are_dropped_and_counted() {
    let pool = Pool::new(64).unwrap();
    let mut c = pool.cache();
    let (path, mut port) = server("short");
    let mut fe = Frontend::connect(&path);
    fe.setup(&mut port);
    // Shrink receive buffer 0 to 100 bytes: a 200-byte frame does not fit.
    fe.write_desc(Q0_DESC, 0, GPA + RX_BUFS as u64, 100, 2, 0);
    let mut b = Batch::new();
    let mut p = c.alloc().unwrap();
    p.copy_from(&[7; 200]).unwrap();
    b.push(p).unwrap();
    port.tx_burst(&mut c, &mut b);
    assert!(b.is_empty());
    assert_eq!(port.counters().tx_too_long, 1);
    assert_eq!(port.stats().tx_dropped, 1);
    assert!(port.is_up());
    // The buffer came back empty (length 0), and the next frame goes through.
    let mut buf = vec![0u8; BUF];
    let mut got = 0;
    fe.receive(&mut buf, |_| got += 1);
    assert_eq!(got, 0);
    let mut p = c.alloc().unwrap();
    p.copy_from(&[8; 200]).unwrap();
    b.push(p).unwrap();
    port.tx_burst(&mut c, &mut b);
    fe.receive(&mut buf, |f| {
        assert_eq!(f, &[8; 200][..]);
        got += 1
    });
    assert_eq!(got, 1);
}
