//! AF_XDP with UMEM chunks as engine buffers, over a veth pair in a private network
//! namespace (copy mode: veth has no zero-copy). Checks that
//!
//! * a received frame is the very UMEM chunk the kernel wrote (the packet belongs to
//!   the port's UMEM pool: no copy on our side), with the bytes sent;
//! * a packet of the port's own UMEM is sent from its chunk (no copy), one of another
//!   pool is copied once (`tx_copies`);
//! * no chunk leaks when packets are dropped or forwarded to the other port: far more
//!   frames pass than either UMEM holds;
//! * the bursts allocate nothing (counting allocator, watched during the exchange).
//!
//! Needs root and iproute2 (scripts/test runs as root); skips with the reason
//! printed otherwise.

use dataplane::batch::Batch;
use dataplane::buf::Pool;
use dataplane::port::afxdp::{Config, XdpPort};
use dataplane::port::Port;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

mod counting;
use counting::{allocs, watch};

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

struct Ns(String);

impl Ns {
    fn new() -> Option<Ns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("afxdp_umem: skipped: not root");
            return None;
        }
        let n = format!("dpxdp{}", std::process::id());
        match Command::new("ip").args(["netns", "add", &n]).status() {
            Ok(s) if s.success() => Some(Ns(n)),
            Ok(_) => panic!("ip netns add {n} failed"),
            Err(_) => {
                eprintln!("afxdp_umem: skipped: iproute2 (ip) not installed");
                None
            }
        }
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
    /// Moves this thread into the namespace.
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

const ETHERTYPE: [u8; 2] = [0x88, 0xb5]; // IEEE local experimental

fn frame_len(i: u32) -> usize {
    60 + (i as usize * 13) % 1400
}

/// Writes frame `i` (broadcast, our ethertype, the sequence number, a pattern) into
/// `f`, which is `frame_len(i)` bytes long.
fn fill(f: &mut [u8], i: u32) {
    f[..6].fill(0xff);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&ETHERTYPE);
    f[14..18].copy_from_slice(&i.to_be_bytes());
    for (j, b) in f[18..].iter_mut().enumerate() {
        *b = (i as usize + j) as u8;
    }
}

/// `d` is frame `i` apart from its sequence number field (checked without
/// allocating: the exchange runs under the counting allocator).
fn same(d: &[u8], i: u32) -> bool {
    d.len() == frame_len(i)
        && d[18..]
            .iter()
            .enumerate()
            .all(|(j, b)| *b == (i as usize + j) as u8)
}

fn seq(d: &[u8]) -> Option<u32> {
    (d.len() >= 18 && d[12..14] == ETHERTYPE)
        .then(|| u32::from_be_bytes([d[14], d[15], d[16], d[17]]))
}

#[test]
fn umem_chunks_are_engine_buffers() {
    let Some(ns) = Ns::new() else { return };
    ns.ip(&["link", "add", "x0", "type", "veth", "peer", "name", "x1"]);
    for i in ["x0", "x1", "lo"] {
        ns.ip(&["link", "set", i, "up"]);
    }
    let _ = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .args(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
        .status();
    ns.enter();
    // Small UMEMs: 1024 chunks each, far fewer than the frames that pass.
    let cfg = Config {
        frames: 1024,
        ring: 256,
        ..Config::default()
    };
    let mut a = XdpPort::open("x0", 0, &cfg).expect("AF_XDP on x0");
    let mut b = XdpPort::open("x1", 0, &cfg).expect("AF_XDP on x1");
    assert!(!a.zerocopy() && !b.zerocopy(), "veth binds in copy mode");
    let heap = Pool::new(1024).unwrap();
    let mut c = heap.cache();

    // 1. a sends heap packets to b: copied into a's UMEM once each; b receives them
    //    in its own chunks. 2. b sends them back out of b from the same chunks (no
    //    copy); a receives them in its chunks. 3. a hands every even one to b (another
    //    port: copied into b's UMEM), marked, and drops the odd ones; a receives the
    //    marked frames and drops them.
    const N: u32 = 3000;
    const MARK: u32 = 1 << 30;
    let (mut next, mut at_b, mut back_at_a, mut fwd_at_a) = (0u32, 0u32, 0u32, 0u32);
    let (mut in_place, mut bad) = (0u32, 0u32);
    let (mut tx, mut rx, mut out, mut fwd) =
        (Batch::new(), Batch::new(), Batch::new(), Batch::new());
    let t = Instant::now();
    watch(true);
    while (at_b < N || back_at_a < N || fwd_at_a < N / 2) && t.elapsed() < Duration::from_secs(20) {
        // at most 64 frames on the way (veth's and the XSK rings' sizes)
        while next < N && tx.len() < 32 && next - back_at_a < 64 {
            let mut p = c.alloc().unwrap();
            let _ = p.append(frame_len(next)).map(|f| fill(f, next));
            let _ = tx.push(p);
            next += 1;
        }
        a.tx_burst(&mut c, &mut tx);
        b.rx_burst(&mut c, &mut rx);
        rx.retain(|p| {
            // anything not ours is dropped
            let s = seq(p.data()).filter(|s| *s < MARK)?;
            if core::ptr::eq(p.pool(), b.pool()) {
                in_place += 1;
            }
            at_b += 1;
            if !same(p.data(), s) {
                bad += 1;
            }
            Some(p)
        });
        b.tx_burst(&mut c, &mut rx);
        b.tx_burst(&mut c, &mut fwd);
        a.rx_burst(&mut c, &mut out);
        out.retain(|mut p| {
            let s = seq(p.data())?;
            if core::ptr::eq(p.pool(), a.pool()) {
                in_place += 1;
            }
            if s >= MARK {
                fwd_at_a += 1;
                if !same(p.data(), s - MARK) {
                    bad += 1;
                }
                c.free(p);
                return None;
            }
            back_at_a += 1;
            if !same(p.data(), s) {
                bad += 1;
            }
            if s % 2 == 1 {
                c.free(p);
                return None;
            }
            p.data_mut()[14..18].copy_from_slice(&(s + MARK).to_be_bytes());
            Some(p)
        });
        fwd.append(&mut out);
        out.free_all(&mut c);
    }
    watch(false);
    let allocs = allocs();
    eprintln!(
        "afxdp_umem: a->b {at_b}, b->a {back_at_a}, forwarded {fwd_at_a}, in place {in_place}, \
         copies a {} b {}, rx drops a {} b {}",
        a.tx_copies(),
        b.tx_copies(),
        a.stats().rx_dropped,
        b.stats().rx_dropped
    );
    assert_eq!(at_b, N, "a -> b");
    assert_eq!(back_at_a, N, "b -> a (sent from b's own chunks)");
    assert_eq!(fwd_at_a, N / 2, "a's chunks forwarded through b");
    assert_eq!(bad, 0, "frames changed on the way");
    assert_eq!(
        in_place,
        2 * N + N / 2,
        "every frame received into the port's UMEM"
    );
    assert_eq!(
        a.tx_copies(),
        u64::from(N),
        "heap packets are copied into a's UMEM"
    );
    assert_eq!(b.tx_copies(), u64::from(N / 2), "b copies only a's packets");
    assert_eq!(allocs, 0, "allocations in the bursts");
}
