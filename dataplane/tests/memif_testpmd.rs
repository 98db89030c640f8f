//! memif interop with DPDK: Debian's `dpdk-testpmd` with the `net_memif` driver
//! (`librte-net-memif23`) on one side, our [`MemifPort`] on the other, in both roles.
//! Our port sends N frames, testpmd forwards them back out of the same (only) port
//! (`io`: unchanged; `macswap`: source and destination MAC swapped), we receive them
//! all, and testpmd's port counters (`show port stats all`) agree with ours.
//!
//! Two more run two queue pairs (`--rxq=2 --txq=2` against our `queues=2` on two
//! worker threads), with testpmd as the server and as the client.
//!
//! A third test kills the testpmd server mid-run and starts another on the same
//! path: our slave reports the link down, counts what it could not send, reconnects
//! and exchanges the N frames with the new server.
//!
//! Skips (prints why and passes) when `dpdk-testpmd` or its memif driver is missing
//! or when not run as root (scripts/test runs as root; scripts/setup installs the
//! packages).

use dataplane::batch::Batch;
use dataplane::buf::Pool;
use dataplane::port::memif::{open_queues, Config, MemifPort, MemifQueue, Role};
use dataplane::port::{spec, Port, PortStats};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod testpmd_common;
use testpmd_common::{frame, frame_tagged, port0_stats, probe_until_back, Testpmd};

const N: usize = 2000;

fn skip_reason() -> Option<String> {
    testpmd_common::skip_reason("dpdk-dev librte-net-memif23")
}

impl Testpmd {
    fn spawn(tag: &str, vdev: &str, fwd: &str) -> Testpmd {
        Testpmd::spawn_with(tag, vdev, fwd, &[])
    }

    /// [`Self::spawn`] with more testpmd arguments (after `-i`).
    fn spawn_with(tag: &str, vdev: &str, fwd: &str, extra: &[&str]) -> Testpmd {
        Testpmd::spawn_named("dpmemif", tag, vdev, fwd, extra)
    }

    /// Port 0's RX/TX packets and bytes from `show port stats all`, read after testpmd
    /// quits (its stdout is a pipe, so it only flushes at exit).
    fn finish(&mut self) -> (u64, u64, u64, u64) {
        port0_stats(&self.quit_with("show port stats all", &mut || {}))
    }
}

/// Frames in flight at most: testpmd drops what it cannot put on a full ring, and
/// when this process is descheduled nobody drains the return ring; with fewer frames
/// in flight than either ring holds, nothing can be lost whoever runs when.
const WINDOW: usize = 256;

/// Sends N frames through `port` and collects what comes back (15 s at most).
fn exchange(port: &mut MemifPort) -> Vec<Vec<u8>> {
    let pool = Pool::new(4096).unwrap();
    let mut c = pool.cache();
    let mut got = Vec::new();
    let mut next = 0;
    let mut tx = Batch::new();
    let t = Instant::now();
    while got.len() < N && t.elapsed() < Duration::from_secs(15) {
        while next < N && tx.len() < 32 && next < got.len() + WINDOW {
            let mut p = c.alloc().unwrap();
            p.copy_from(&frame(next)).unwrap();
            tx.push(p).unwrap();
            next += 1;
        }
        port.tx_burst(&mut c, &mut tx);
        let mut rx = Batch::new();
        port.rx_burst(&mut c, &mut rx);
        for p in rx.iter() {
            got.push(p.data().to_vec());
        }
        rx.free_all(&mut c);
    }
    tx.free_all(&mut c);
    got
}

/// `start` forwarding and make sure it runs: testpmd first drains and frees whatever
/// waits in its receive queues (`flush_fwd_rx_queues`), and its output is buffered,
/// so there is no prompt to wait for. Probe frames go out until one comes back. Probes
/// count on both sides like any frame (testpmd's counters are not cleared: its
/// `clear port stats` races with the forwarding core's counter updates).
fn start(tp: &mut Testpmd, port: &mut MemifPort) {
    tp.cmd("start");
    let pool = Pool::new(256).unwrap();
    let mut c = pool.cache();
    let t = Instant::now();
    'probe: loop {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "testpmd never forwarded a probe ({:?})\n{}",
            port.last_error(),
            tp.text()
        );
        let mut tx = Batch::new();
        let mut p = c.alloc().unwrap();
        let mut f = frame(0);
        f[12..14].copy_from_slice(&[0x88, 0xb6]);
        p.copy_from(&f).unwrap();
        tx.push(p).unwrap();
        port.tx_burst(&mut c, &mut tx);
        tx.free_all(&mut c);
        let w = Instant::now();
        while w.elapsed() < Duration::from_millis(100) {
            let mut rx = Batch::new();
            port.rx_burst(&mut c, &mut rx);
            let back = rx
                .iter()
                .any(|p| p.data().get(12..14) == Some(&[0x88, 0xb6][..]));
            rx.free_all(&mut c);
            if back {
                break 'probe;
            }
        }
    }
    // Let stragglers (probes answered late) come back.
    let w = Instant::now();
    while w.elapsed() < Duration::from_millis(300) {
        let mut rx = Batch::new();
        port.rx_burst(&mut c, &mut rx);
        rx.free_all(&mut c);
    }
}

fn wait_up(port: &mut MemifPort, tp: &Testpmd) {
    let t = Instant::now();
    while !port.is_up() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "memif link with testpmd did not come up (ours: {:?})\n{}",
            port.last_error(),
            tp.text()
        );
        port.poll_control();
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Checks the N frames that came back and that testpmd's port counters equal ours
/// (probes included on both sides).
fn check(port: &MemifPort, tp: &mut Testpmd, got: &[Vec<u8>], macswap: bool) {
    check_since(port, &PortStats::default(), tp, got, macswap);
}

/// [`check`] with our counters taken relative to `base` (a testpmd started later).
fn check_since(
    port: &MemifPort,
    base: &PortStats,
    tp: &mut Testpmd,
    got: &[Vec<u8>],
    macswap: bool,
) {
    let (rxp, rxb, txp, txb) = tp.finish();
    let now = port.stats();
    let ours = PortStats {
        rx_packets: now.rx_packets - base.rx_packets,
        rx_bytes: now.rx_bytes - base.rx_bytes,
        rx_dropped: now.rx_dropped - base.rx_dropped,
        tx_packets: now.tx_packets - base.tx_packets,
        tx_bytes: now.tx_bytes - base.tx_bytes,
        tx_dropped: now.tx_dropped - base.tx_dropped,
    };
    eprintln!(
        "memif_testpmd: {} frames back; testpmd RX {rxp} pkts {rxb} B, TX {txp} pkts {txb} B; ours TX {} pkts {} B, RX {} pkts {} B",
        got.len(),
        ours.tx_packets,
        ours.tx_bytes,
        ours.rx_packets,
        ours.rx_bytes
    );
    assert_eq!(got.len(), N, "frames back from testpmd\n{}", tp.text());
    for (i, g) in got.iter().enumerate() {
        let mut want = frame(i);
        if macswap {
            let (d, s) = want.split_at_mut(6);
            d.swap_with_slice(&mut s[..6]);
        }
        assert_eq!(g, &want, "frame {i}");
    }
    assert_eq!((rxp, rxb), (ours.tx_packets, ours.tx_bytes));
    assert_eq!((txp, txb), (ours.rx_packets, ours.rx_bytes));
    assert!(ours.tx_packets > N as u64 && ours.rx_packets > N as u64);
    let why = format!("{:?}, last error {:?}", port.counters(), port.last_error());
    assert_eq!(ours.rx_dropped + ours.tx_dropped, 0, "{why}");
    assert_eq!(port.counters().ctrl_errors, 0, "{why}");
}

/// One testpmd at a time: each busy-polls a core, and this machine has two.
static SERIAL: Mutex<()> = Mutex::new(());

fn test_config(role: Role, id: u32) -> Config {
    Config {
        role,
        id,
        // testpmd answers from its interrupt thread; on a loaded machine give it time.
        handshake_timeout: Duration::from_secs(10),
        ..Config::default()
    }
}

fn sock(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("dp-memif-tp-{}-{tag}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn vdev(role: &str, path: &Path, id: u32) -> String {
    format!(
        "net_memif0,role={role},socket={},socket-abstract=no,id={id}",
        path.display()
    )
}

/// testpmd is the memif server (master); our port connects as the slave.
/// (Zero-copy slave: testpmd fills and drains our engine buffers in the shared
/// region directly.)
#[test]
fn testpmd_server_our_slave() {
    server_our_slave(true);
}

/// The same with a copying slave (`memif:PATH,copy`).
#[test]
fn testpmd_server_our_copying_slave() {
    server_our_slave(false);
}

fn server_our_slave(zero_copy: bool) {
    if let Some(why) = skip_reason() {
        eprintln!("memif_testpmd: skipped: {why}");
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let path = sock(if zero_copy { "server" } else { "server-copy" });
    let mut tp = Testpmd::spawn("s", &vdev("server", &path, 3), "io");
    let t = Instant::now();
    while !path.exists() {
        if t.elapsed() > Duration::from_secs(10) {
            let text = tp.text();
            if text.contains("net_memif") && text.contains("not found") {
                eprintln!("memif_testpmd: skipped: no net_memif driver (librte-net-memif23)");
                return;
            }
            panic!("testpmd did not create {}:\n{text}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cfg = Config {
        zero_copy,
        ..test_config(Role::Slave, 3)
    };
    let mut port = MemifPort::open(&path, &cfg).unwrap();
    wait_up(&mut port, &tp);
    start(&mut tp, &mut port);
    let got = exchange(&mut port);
    check(&port, &mut tp, &got, false);
    // Zero-copy: every frame came back in a shared buffer testpmd wrote into.
    let zc = port.counters().zc_frames;
    if zero_copy {
        assert!(zc >= N as u64, "{zc} frames received in place");
    } else {
        assert_eq!(zc, 0);
    }
}

/// Our port is the memif master; testpmd connects as the client (slave) and owns
/// the memory.
#[test]
fn testpmd_client_our_master() {
    if let Some(why) = skip_reason() {
        eprintln!("memif_testpmd: skipped: {why}");
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let path = sock("client");
    let cfg = test_config(Role::Master, 7);
    let mut port = MemifPort::open(&path, &cfg).unwrap();
    let mut tp = Testpmd::spawn("c", &vdev("client", &path, 7), "macswap");
    wait_up(&mut port, &tp);
    start(&mut tp, &mut port);
    let got = exchange(&mut port);
    check(&port, &mut tp, &got, true);
}

/// The testpmd server is killed mid-run (no DISCONNECT: its socket just closes): our
/// slave reports the link down, counts the frames it could not send, and reconnects
/// to the next testpmd on the same path, which then gets all N frames back and forth.
#[test]
fn testpmd_server_killed_and_restarted() {
    if let Some(why) = skip_reason() {
        eprintln!("memif_testpmd: skipped: {why}");
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let path = sock("restart");
    let mut tp = Testpmd::spawn("r1", &vdev("server", &path, 0), "io");
    let t = Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no socket\n{}",
            tp.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut port = MemifPort::open(&path, &test_config(Role::Slave, 0)).unwrap();
    wait_up(&mut port, &tp);
    start(&mut tp, &mut port);
    let _ = tp.child.kill();
    let _ = tp.child.wait();
    let pool = Pool::new(256).unwrap();
    let mut c = pool.cache();
    let t = Instant::now();
    while port.is_up() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "link stayed up after the kill"
        );
        port.poll_control();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(port.counters().link_down, 1);
    eprintln!(
        "memif_testpmd: link down after the kill: {}",
        port.last_error().unwrap_or("")
    );
    let mut tx = Batch::new();
    let mut p = c.alloc().unwrap();
    p.copy_from(&frame(1)).unwrap();
    tx.push(p).unwrap();
    port.tx_burst(&mut c, &mut tx);
    assert!(tx.is_empty());
    assert_eq!(port.counters().down_tx_drops, 1);
    // The killed server left its socket file behind; DPDK will not bind over it.
    let _ = std::fs::remove_file(&path);
    drop(tp);
    let mut tp = Testpmd::spawn("r2", &vdev("server", &path, 0), "io");
    wait_up(&mut port, &tp);
    assert_eq!(port.counters().link_up, 2);
    let base = port.stats();
    start(&mut tp, &mut port);
    let got = exchange(&mut port);
    check_since(&port, &base, &mut tp, &got, false);
}

/// Multi-queue, testpmd the server: testpmd's `net_memif` with two queue pairs
/// (`--rxq=2 --txq=2`, `io`: its receive queue k is forwarded to its transmit queue
/// k) and our zero-copy slave with `queues=2` opened for two workers
/// ([`spec::open_workers`]): one `memif::MemifQueue` per worker thread, the control socket
/// on the link's own thread. Each worker sends N frames tagged with its queue on
/// its ring pair and must get exactly its own N back; testpmd's per-queue counters
/// (`show port xstats 0`) equal each worker's port counters.
#[test]
fn testpmd_server_two_queues_two_workers() {
    two_queues(true);
}

/// The same with our master (`memif:PATH,master,queues=2`) and testpmd the client
/// asking for two ring pairs.
#[test]
fn testpmd_client_two_queues_two_workers() {
    two_queues(false);
}

fn two_queues(testpmd_server: bool) {
    if let Some(why) = skip_reason() {
        eprintln!("memif_testpmd: skipped: {why}");
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (tag, role, ours) = if testpmd_server {
        ("mqs", "server", "")
    } else {
        ("mqc", "client", ",master")
    };
    let path = sock(tag);
    let spec = format!("memif:{},id=4{ours},queues=2", path.display());
    let open = || spec::open_workers(&spec.parse().unwrap(), 2).unwrap();
    let (mut tp, ports) = if testpmd_server {
        let Some(tp) = spawn_two_queue_server(tag, &path) else {
            return;
        };
        (tp, open())
    } else {
        let ports = open();
        (
            Testpmd::spawn_with(tag, &vdev(role, &path, 4), "io", &TWO_QUEUES),
            ports,
        )
    };
    tp.cmd("start");
    let results = on_workers(ports);
    check_queues(&mut tp, &results, &[PortStats::default(); 2]);
}

/// testpmd's arguments for two queue pairs.
const TWO_QUEUES: [&str; 2] = ["--rxq=2", "--txq=2"];

/// A two-queue testpmd memif server on `path` (interface id 4), once its socket
/// exists; `None` (test skipped) without the memif driver.
fn spawn_two_queue_server(tag: &str, path: &Path) -> Option<Testpmd> {
    let tp = Testpmd::spawn_with(tag, &vdev("server", path, 4), "io", &TWO_QUEUES);
    let t = Instant::now();
    while !path.exists() {
        let text = tp.text();
        if text.contains("net_memif") && text.contains("not found") {
            eprintln!("memif_testpmd: skipped: no net_memif driver (librte-net-memif23)");
            return None;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "testpmd did not create {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(tp)
}

/// What one worker brought back: the frames, its port's counters and name, the
/// frames it dropped before its pair came up, and the port.
type WorkerResult<P> = (Vec<Vec<u8>>, PortStats, String, u64, P);

/// Runs [`exchange_tagged`] on every port at once, port k on a thread of its own
/// with tag k.
fn on_workers<P: Port + Send + 'static>(ports: Vec<P>) -> Vec<WorkerResult<P>> {
    let workers: Vec<_> = ports
        .into_iter()
        .enumerate()
        .map(|(k, mut port)| {
            std::thread::spawn(move || {
                let (got, before) = exchange_tagged(&mut port, k as u8);
                (got, port.stats(), port.name().to_string(), before, port)
            })
        })
        .collect();
    workers.into_iter().map(|w| w.join().unwrap()).collect()
}

/// Quits testpmd and checks each worker's frames (exactly its own N, in order) and
/// that testpmd's per-queue counters (`show port xstats 0`) equal the worker's port
/// counters since `base`.
fn check_queues<P>(tp: &mut Testpmd, results: &[WorkerResult<P>], base: &[PortStats]) {
    tp.cmd("show port xstats 0");
    tp.cmd("stop");
    tp.cmd("quit");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = tp.child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let lines: Vec<String> = tp.out.lock().unwrap().clone();
    let xstat = |key: &str| -> u64 {
        lines
            .iter()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no {key} in testpmd's xstats:\n{}", lines.join("\n")))
    };
    for (k, (got, now, name, before, _)) in results.iter().enumerate() {
        let b = &base[k];
        let ours = PortStats {
            rx_packets: now.rx_packets - b.rx_packets,
            rx_bytes: now.rx_bytes - b.rx_bytes,
            rx_dropped: now.rx_dropped - b.rx_dropped,
            tx_packets: now.tx_packets - b.tx_packets,
            tx_bytes: now.tx_bytes - b.tx_bytes,
            tx_dropped: now.tx_dropped - b.tx_dropped,
        };
        let (rxp, rxb) = (
            xstat(&format!("rx_q{k}_packets")),
            xstat(&format!("rx_q{k}_bytes")),
        );
        let (txp, txb) = (
            xstat(&format!("tx_q{k}_packets")),
            xstat(&format!("tx_q{k}_bytes")),
        );
        eprintln!(
            "memif_testpmd: {name}: {} frames back; testpmd rxq{k} {rxp} pkts {rxb} B, txq{k} {txp} pkts {txb} B; ours TX {} pkts {} B, RX {} pkts {} B",
            got.len(),
            ours.tx_packets,
            ours.tx_bytes,
            ours.rx_packets,
            ours.rx_bytes
        );
        assert_eq!(got.len(), N, "queue {k}: frames back\n{}", lines.join("\n"));
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g, &frame_tagged(i, k as u8), "queue {k} frame {i}");
        }
        assert_eq!((rxp, rxb), (ours.tx_packets, ours.tx_bytes), "queue {k}");
        assert_eq!((txp, txb), (ours.rx_packets, ours.rx_bytes), "queue {k}");
        // Probes sent before the pair came up are dropped (and counted); none after.
        assert_eq!(ours.rx_dropped, 0, "queue {k}");
        assert_eq!(*before, b.tx_dropped + ours.tx_dropped, "queue {k}");
    }
}

/// Two queue pairs on two worker threads, the testpmd server killed while both
/// workers keep sending: both queues report the link down and count what they
/// could not send; the slave reconnects to the next testpmd on the path, both
/// pairs come back and carry their N frames each.
#[test]
fn testpmd_two_queue_server_killed_and_restarted() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    if let Some(why) = skip_reason() {
        eprintln!("memif_testpmd: skipped: {why}");
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let path = sock("mq-restart");
    let Some(mut tp) = spawn_two_queue_server("mqr1", &path) else {
        return;
    };
    let cfg = Config {
        queues: 2,
        ..test_config(Role::Slave, 4)
    };
    let qs = open_queues(&path, &cfg).unwrap();
    let t = Instant::now();
    while !qs.iter().all(|q| q.is_up()) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no link\n{}",
            tp.text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    tp.cmd("start");
    // Both workers keep sending and receiving through the kill.
    let stop = Arc::new(AtomicBool::new(false));
    // Frames each worker got back: the kill comes once both pairs forward.
    let back: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let workers: Vec<_> = qs
        .into_iter()
        .map(|mut q| {
            let (stop, back) = (stop.clone(), back.clone());
            std::thread::spawn(move || {
                let pool = Pool::new(512).unwrap();
                let mut c = pool.cache();
                let mut tx = Batch::new();
                while !stop.load(Ordering::Relaxed) {
                    while tx.len() < 4 {
                        let mut p = c.alloc().unwrap();
                        p.copy_from(&frame_tagged(0, q.queue() as u8)).unwrap();
                        tx.push(p).unwrap();
                    }
                    q.tx_burst(&mut c, &mut tx);
                    let mut rx = Batch::new();
                    let n = q.rx_burst(&mut c, &mut rx);
                    back[q.queue()].fetch_add(n as u64, Ordering::Relaxed);
                    rx.free_all(&mut c);
                    std::thread::sleep(Duration::from_micros(200));
                }
                tx.free_all(&mut c);
                q
            })
        })
        .collect();
    let t = Instant::now();
    while back.iter().any(|b| b.load(Ordering::Relaxed) == 0) {
        if t.elapsed() > Duration::from_secs(10) {
            stop.store(true, Ordering::Relaxed);
            panic!("testpmd forwarded nothing on a pair\n{}", tp.text());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = tp.child.kill();
    let _ = tp.child.wait();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let qs: Vec<MemifQueue> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let t = Instant::now();
    while qs.iter().any(|q| q.is_up()) {
        assert!(t.elapsed() < Duration::from_secs(5), "link stayed up");
        std::thread::sleep(Duration::from_millis(5));
    }
    for q in &qs {
        let c = q.counters();
        assert_eq!((c.link_up, c.link_down), (1, 1), "queue {}", q.queue());
        assert!(c.down_tx_drops > 0, "queue {}: drops while down", q.queue());
        assert!(
            q.stats().rx_packets > 0,
            "queue {}: traffic before",
            q.queue()
        );
    }
    let _ = std::fs::remove_file(&path);
    drop(tp);
    let Some(mut tp) = spawn_two_queue_server("mqr2", &path) else {
        return;
    };
    let t = Instant::now();
    while !qs.iter().all(|q| q.is_up()) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no relink\n{}",
            tp.text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(qs[1].counters().link_up, 2);
    let base: Vec<PortStats> = qs.iter().map(|q| q.stats()).collect();
    tp.cmd("start");
    let results = on_workers(qs);
    // `before` counts since the port opened: drops of the first run included.
    check_queues(&mut tp, &results, &base);
}

/// [`exchange`] on any port with tagged frames; waits (10 s at most) for the pair
/// to come up and probes it first (testpmd drops what arrives before it forwards).
/// Also returns the frames the port dropped before a probe came back (sent while
/// the link was still down).
fn exchange_tagged(port: &mut dyn Port, q: u8) -> (Vec<Vec<u8>>, u64) {
    let pool = Pool::new(4096).unwrap();
    let mut c = pool.cache();
    probe_until_back(port, &mut c, q);
    let before = port.stats().tx_dropped;
    let w = Instant::now();
    while w.elapsed() < Duration::from_millis(300) {
        let mut rx = Batch::new();
        port.rx_burst(&mut c, &mut rx);
        rx.free_all(&mut c);
    }
    let mut got = Vec::new();
    let mut next = 0;
    let mut tx = Batch::new();
    let t = Instant::now();
    while got.len() < N && t.elapsed() < Duration::from_secs(15) {
        while next < N && tx.len() < 32 && next < got.len() + WINDOW {
            let mut p = c.alloc().unwrap();
            p.copy_from(&frame_tagged(next, q)).unwrap();
            tx.push(p).unwrap();
            next += 1;
        }
        port.tx_burst(&mut c, &mut tx);
        let mut rx = Batch::new();
        port.rx_burst(&mut c, &mut rx);
        for p in rx.iter() {
            got.push(p.data().to_vec());
        }
        rx.free_all(&mut c);
    }
    tx.free_all(&mut c);
    (got, before)
}
