//! AF_PACKET receive-ring overruns are counted, not lost silently (root): in a
//! namespace this test creates, one port floods a veth peer whose port has a small
//! ring and is not read; afterwards every frame is either received or counted in
//! `rx_dropped` (the kernel's `PACKET_STATISTICS` drops, packet(7)).

use dataplane::batch::Batch;
use dataplane::buf::Pool;
use dataplane::port::afpacket::{AfPacketPort, Config};
use dataplane::port::Port;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (Debian iproute2)"));
    assert!(st.success(), "{args:?} failed");
}

struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn ring_overruns_are_counted() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "needs root for a network namespace (scripts/test runs as root)"
    );
    let id = std::process::id() % 100_000;
    let ns = Ns(format!("afpd-{id}"));
    sh(&["ip", "netns", "add", &ns.0]);
    // No IPv6 on the veths: the kernel's own ND/MLD frames would add to the count.
    sh(&[
        "ip",
        "netns",
        "exec",
        &ns.0,
        "sysctl",
        "-q",
        "-w",
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ]);
    let (a, b) = (format!("afa{id}"), format!("afb{id}"));
    sh(&[
        "ip", "-n", &ns.0, "link", "add", &a, "type", "veth", "peer", "name", &b,
    ]);
    sh(&["ip", "-n", &ns.0, "link", "set", &a, "up"]);
    sh(&["ip", "-n", &ns.0, "link", "set", &b, "up"]);
    let path = format!("/var/run/netns/{}", ns.0);
    let r = std::thread::spawn(move || -> Result<(u64, u64, u64), String> {
        let f = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        // SAFETY: setns on a valid namespace fd affects only this thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err("setns failed".into());
        }
        let tx_cfg = Config {
            qdisc_bypass: false,
            ..Config::default()
        };
        // Two 4 KiB blocks: a few dozen frames fit, the rest overrun.
        let rx_cfg = Config {
            block_size: 4096,
            rx_blocks: 2,
            retire_ms: 1000,
            ..Config::default()
        };
        let mut tx = AfPacketPort::open(&a, &tx_cfg).map_err(|e| e.to_string())?;
        let mut rx = AfPacketPort::open(&b, &rx_cfg).map_err(|e| e.to_string())?;
        let pool = Pool::new(4096).ok_or("pool")?;
        let mut cache = pool.cache();
        let mut frame = vec![0u8; 60];
        frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xbb]);
        frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xaa]);
        frame[12..14].copy_from_slice(&[0x88, 0xb5]); // IEEE local experimental
        let mut sent = 0u64;
        let t0 = Instant::now();
        while sent < 5000 && t0.elapsed() < Duration::from_secs(20) {
            let mut b = Batch::new();
            for _ in 0..64 {
                let Some(mut p) = cache.alloc() else { break };
                if p.copy_from(&frame).is_err() {
                    cache.free(p);
                    continue;
                }
                if let Err(p) = b.push(p) {
                    cache.free(p);
                }
            }
            let before = tx.stats().tx_packets;
            tx.tx_burst(&mut cache, &mut b);
            b.free_all(&mut cache);
            sent += tx.stats().tx_packets - before;
        }
        std::thread::sleep(Duration::from_millis(200));
        // Now drain what the small ring kept.
        let t1 = Instant::now();
        let mut got = 0u64;
        while t1.elapsed() < Duration::from_secs(3) {
            let mut b = Batch::new();
            let n = rx.rx_burst(&mut cache, &mut b);
            got += n as u64;
            b.free_all(&mut cache);
            if n == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let drops = rx.kernel_drops();
        Ok((sent, got, drops))
    })
    .join()
    .expect("test thread");
    let (sent, got, drops) = r.expect("namespace test");
    assert!(sent >= 1000, "sent only {sent}");
    assert!(drops > 0, "a 2-block ring kept all {sent} frames?");
    assert_eq!(
        got + drops,
        sent,
        "received {got} + dropped {drops} must account for every frame sent"
    );
}
