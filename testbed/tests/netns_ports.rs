//! The Linux ports of `dataplane` over a veth pair (and a TAP device) in a private
//! network namespace: AF_PACKET (TPACKET_V3), AF_XDP and TAP move pktgen frames with
//! exact counts, no loss, no reordering. Needs root; fails (does not skip) without.

use dataplane::batch::Batch;
use dataplane::buf::Pool;
use dataplane::port::{spec, Port};
use pktgen::profile::{Scalar, StreamSpec};
use pktgen::{Receiver, Stream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        let out = Command::new("id").arg("-u").output().expect("id");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "0",
            "port tests need root"
        );
        let n = format!("tbp{}{tag}", std::process::id() % 100_000);
        let st = Command::new("ip")
            .args(["netns", "add", &n])
            .status()
            .expect("iproute2 required");
        assert!(st.success(), "ip netns add {n}");
        Ns(n)
    }
    fn ip(&self, args: &[&str]) {
        let st = Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ip -n {} {args:?}", self.0);
    }
    /// Moves this thread into the namespace for the rest of the test.
    fn enter(&self) {
        let f = std::fs::File::open(format!("/run/netns/{}", self.0)).unwrap();
        // SAFETY: setns on a valid netns descriptor, affecting only this thread.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn veth(ns: &Ns) {
    ns.ip(&["link", "add", "a0", "type", "veth", "peer", "name", "a1"]);
    ns.ip(&["link", "set", "a0", "up"]);
    ns.ip(&["link", "set", "a1", "up"]);
    ns.ip(&["link", "set", "lo", "up"]);
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
        ])
        .status();
}

/// Sends `n` signed frames from `a` and counts them on `b`.
fn exchange(a: &mut dyn Port, b: &mut dyn Port, n: u64) -> pktgen::rx::RxResult {
    let pool = Pool::new(8192).unwrap();
    let mut c = pool.cache();
    let mut s = StreamSpec::udp("ports");
    s.size = pktgen::profile::SizeSpec::Named("imix".into());
    s.rate = Scalar::Str("50kpps".into());
    s.count = Some(n);
    let mut g = pktgen::Generator::new(vec![Stream::new(0, &s).unwrap()]);
    let mut rcv = Receiver::new();
    let mut out = Batch::new();
    let mut inb = Batch::new();
    let t0 = pktgen::sig::now_ns();
    g.start(t0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let now = pktgen::sig::now_ns();
        if !g.done() {
            g.fill(&mut c, &mut out, now);
            // a port may take a burst partly: retry the rest (no loss on purpose here)
            while !out.is_empty() && Instant::now() < deadline {
                a.tx_burst(&mut c, &mut out);
            }
        }
        if b.rx_burst(&mut c, &mut inb) > 0 {
            rcv.on_batch(&inb, pktgen::sig::now_ns());
            inb.free_all(&mut c);
        }
        if g.done() && rcv.received() >= n {
            break;
        }
    }
    rcv.result(&g.sent_per_stream())
}

fn check(r: &pktgen::rx::RxResult, n: u64) {
    assert_eq!(r.tx, n);
    assert_eq!(r.rx, n, "{r:?}");
    assert_eq!((r.lost, r.reordered, r.duplicates), (0, 0, 0), "{r:?}");
}

#[test]
fn afpacket_tpacket_v3_over_veth() {
    let ns = Ns::new("p");
    veth(&ns);
    ns.enter();
    let mut a = spec::open_str("afpacket:a0").unwrap();
    let mut b = spec::open_str("afpacket:a1").unwrap();
    assert!(a.mac().is_some());
    let r = exchange(a.as_mut(), b.as_mut(), 5000);
    check(&r, 5000);
    assert_eq!(a.stats().tx_packets, 5000);
}

#[test]
fn afxdp_over_veth() {
    let ns = Ns::new("x");
    veth(&ns);
    ns.enter();
    let mut a = dataplane::port::afxdp::XdpPort::open("a0", 0, &Default::default()).unwrap();
    // veth has native (driver-mode) XDP; it has no zero-copy, so copy mode
    assert!(a.native(), "native XDP on veth");
    assert!(!a.zerocopy());
    let mut b = spec::open_str("afxdp:a1:0").unwrap();
    let r = exchange(&mut a, b.as_mut(), 5000);
    check(&r, 5000);
}

#[test]
fn tap_port_both_directions() {
    let ns = Ns::new("t");
    ns.ip(&["link", "set", "lo", "up"]);
    ns.enter();
    let mut t = spec::open_str("tap:tbtap0").unwrap();
    let _ = Command::new("sysctl")
        .args(["-qw", "net.ipv6.conf.all.disable_ipv6=1"])
        .status();
    // the kernel side of the TAP device, through AF_PACKET
    let mut k = spec::open_str("afpacket:tbtap0").unwrap();
    let r = exchange(t.as_mut(), k.as_mut(), 2000);
    check(&r, 2000);
    let r = exchange(k.as_mut(), t.as_mut(), 2000);
    check(&r, 2000);
}
