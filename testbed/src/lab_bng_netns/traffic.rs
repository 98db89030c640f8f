//! The lab's traffic phases: a closed loop (at most a window of frames in flight) over
//! the AF_PACKET ports of the subscriber and core namespaces, and the CGNAT watch of
//! the sources the core sees.

use super::*;

/// Watches upstream frames at the core (CGNAT): sources inside and outside the pool,
/// and the distinct translated flows.
pub struct CoreWatch {
    pool: Vec<(u32, u32)>,
    inside: AtomicU64,
    outside: AtomicU64,
    flows: Mutex<Vec<(u32, u16, Access)>>,
}

impl CoreWatch {
    pub(super) fn new(pool: Vec<(u32, u32)>) -> CoreWatch {
        CoreWatch {
            pool,
            inside: AtomicU64::new(0),
            outside: AtomicU64::new(0),
            flows: Mutex::new(Vec::new()),
        }
    }

    /// The distinct (source address, UDP source port, access type of the subscriber
    /// behind it) seen so far.
    pub(super) fn flows(&self) -> Vec<(u32, u16, Access)> {
        self.flows.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Counts the source of an IPv4 frame; returns it with the UDP/TCP source port.
    pub(super) fn see(&self, d: &[u8]) -> Option<(u32, u16)> {
        let a = d.get(26..30)?;
        let src = u32::from_be_bytes([a[0], a[1], a[2], a[3]]);
        if self.pool.iter().any(|&(lo, hi)| (lo..=hi).contains(&src)) {
            self.inside.fetch_add(1, Ordering::Relaxed);
        } else {
            self.outside.fetch_add(1, Ordering::Relaxed);
        }
        let ihl = usize::from(d.get(14)? & 0x0f) * 4;
        let p = d.get(14 + ihl..16 + ihl)?;
        Some((src, u16::from_be_bytes([p[0], p[1]])))
    }

    pub(super) fn report(&self, pool: String, m: &str) -> CgnatReport {
        let flows = self.flows();
        let mut addrs: Vec<u32> = flows.iter().map(|f| f.0).collect();
        addrs.sort_unstable();
        addrs.dedup();
        let node = |name: &str| metric(m, name, "node=\"nat44\"");
        let ctr = |name: &str, c: &str| metric(m, name, &format!("node=\"nat44\",counter=\"{c}\""));
        CgnatReport {
            pool,
            core_src_in_pool: self.inside.load(Ordering::Relaxed),
            core_src_outside_pool: self.outside.load(Ordering::Relaxed),
            core_flows: flows.len() as u64,
            core_addresses: addrs.len() as u64,
            nat: NatCounters {
                packets: node("dp_node_packets_total"),
                drops: node("dp_node_drops_total"),
                sessions: ctr("dp_node_level", "sessions-active"),
                sessions_created: ctr("dp_node_events_total", "sessions-created"),
                mappings: ctr("dp_node_level", "mappings-active"),
                subscribers: ctr("dp_node_level", "subscribers"),
                blocks: ctr("dp_node_level", "port-blocks-in-use"),
                icmp_errors_sent: ctr("dp_node_events_total", "icmp-errors-sent"),
            },
        }
    }
}

/// Which received frames are traffic of the phase.
#[derive(Clone, Copy)]
pub(super) enum Expect {
    /// IPv4 frames to the core peer's MAC.
    Core([u8; 6]),
    /// PPPoE session frames carrying IPv4, or IPoE frames (IPv4 over Ethernet), to
    /// an emulated subscriber (`02:5b:` MACs).
    Subscribers,
}

impl Expect {
    pub(super) fn matches(self, d: &[u8]) -> bool {
        match self {
            Expect::Core(mac) => {
                d.get(..6) == Some(&mac[..]) && d.get(12..14) == Some(&[0x08, 0x00][..])
            }
            Expect::Subscribers => {
                if d.get(..2) != Some(&[0x02, 0x5b][..]) {
                    return false;
                }
                // Up to two VLAN tags (TR-101 QinQ), then PPPoE session carrying IPv4
                // (PPP protocol 0x0021 after the 6-byte PPPoE header), or IPv4 that
                // is not DHCP (UDP from port 67).
                let Ok(l2) = walk_vlans(d) else {
                    return false;
                };
                let off = l2.l3_offset;
                match l2.ethertype {
                    EtherType::PPPOE_SESSION => d.get(off + 6..off + 8) == Some(&[0x00, 0x21][..]),
                    EtherType::IPV4 => {
                        let ihl = d.get(off).map_or(20, |b| usize::from(b & 0x0f) * 4);
                        !(d.get(off + 9) == Some(&17)
                            && d.get(off + ihl..off + ihl + 2) == Some(&[0, 67][..]))
                    }
                    _ => false,
                }
            }
        }
    }
}

/// Frames to offer, the access type of each, and how to tell the access type of a
/// received frame (`pktgen::subscribers::lab::{upstream_access, downstream_access}`).
pub(super) struct Stream<'a> {
    pub(super) templates: &'a [Vec<u8>],
    pub(super) kinds: &'a [Access],
    pub(super) classify: fn(&[u8]) -> Access,
}

/// Offer `packets` frames from the stream's templates (round robin) on `tx` with at
/// most [`WINDOW`] in flight, counting on `rx` (in a second thread) the frames
/// `expect` matches; in all and per access type.
pub(super) fn traffic(
    tx: &mut dyn Port,
    rx: &mut dyn Port,
    pool: &'static Pool,
    stream: Stream<'_>,
    packets: u64,
    expect: Expect,
    watch: Option<&CoreWatch>,
) -> (TrafficReport, Vec<(Access, TrafficReport)>) {
    let templates = stream.templates;
    let classify = stream.classify;
    let slot = |a: Access| usize::from(a == Access::Ipoe);
    // Per access type (PPPoE, IPoE): sent, bytes; received (atomic, rx thread).
    let mut sent_by = [[0u64; 2]; 2];
    let received_by = [AtomicU64::new(0), AtomicU64::new(0)];
    let received = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let mut sent = 0u64;
    let mut bytes = 0u64;
    let mut wall = 0.0;
    std::thread::scope(|s| {
        let (received, stop, received_by) = (&received, &stop, &received_by);
        let mut rcache = pool.cache();
        let want = templates.len();
        s.spawn(move || {
            let mut b = Batch::new();
            let mut idle = 0u32;
            let mut seen = std::collections::HashSet::new();
            loop {
                let k = rx.rx_burst(&mut rcache, &mut b);
                if k == 0 {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    idle += 1;
                    if idle > 64 {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    continue;
                }
                idle = 0;
                let mut c = 0;
                let mut by = [0u64; 2];
                for p in b.iter() {
                    if expect.matches(p.data()) {
                        c += 1;
                        let a = classify(p.data());
                        by[slot(a)] += 1;
                        if let Some(w) = watch {
                            if let Some(f) = w.see(p.data()) {
                                if seen.len() < want && seen.insert(f) {
                                    if let Ok(mut v) = w.flows.lock() {
                                        v.push((f.0, f.1, a));
                                    }
                                }
                            }
                        }
                    }
                }
                for (r, n) in received_by.iter().zip(by) {
                    r.fetch_add(n, Ordering::Relaxed);
                }
                received.fetch_add(c, Ordering::Release);
                b.free_all(&mut rcache);
            }
        });
        let mut cache = pool.cache();
        let start = Instant::now();
        let mut k = 0usize;
        let mut last_rx = (0u64, Instant::now());
        let mut b = Batch::new();
        while sent < packets && !templates.is_empty() {
            let r = received.load(Ordering::Acquire);
            if r != last_rx.0 {
                last_rx = (r, Instant::now());
            }
            let room = WINDOW.saturating_sub(sent.saturating_sub(r));
            if room == 0 {
                if last_rx.1.elapsed() > Duration::from_secs(2) {
                    // Nothing arrives any more: the rest of the window is lost.
                    break;
                }
                std::hint::spin_loop();
                continue;
            }
            let burst = room.min(256).min(packets - sent) as usize;
            let k0 = k;
            for _ in 0..burst {
                let Some(f) = templates.get(k % templates.len()) else {
                    break;
                };
                let Some(mut p) = cache.alloc() else { break };
                if p.copy_from(f).is_err() || b.push(p).is_err() {
                    break;
                }
                k += 1;
                bytes += f.len() as u64;
            }
            let n = tx.tx_burst(&mut cache, &mut b);
            sent += n as u64;
            // Unsent frames are offered again in the next round.
            for p in b.iter() {
                bytes -= p.len() as u64;
            }
            k -= b.len();
            for t in k0..k {
                let i = t % templates.len();
                let a = slot(stream.kinds.get(i).copied().unwrap_or(Access::Pppoe));
                sent_by[a][0] += 1;
                sent_by[a][1] += templates.get(i).map_or(0, |f| f.len() as u64);
            }
            b.free_all(&mut cache);
        }
        // Drain: until nothing more arrives for 300 ms.
        let mut last = (received.load(Ordering::Acquire), Instant::now());
        while last.1.elapsed() < Duration::from_millis(300)
            && received.load(Ordering::Acquire) < sent
        {
            let r = received.load(Ordering::Acquire);
            if r != last.0 {
                last = (r, Instant::now());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        wall = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Release);
    });
    let received = received.load(Ordering::Acquire);
    let report = |sent: u64, received: u64, bytes: u64| TrafficReport {
        sent,
        received,
        plr: if sent > 0 {
            (sent - received.min(sent)) as f64 / sent as f64
        } else {
            0.0
        },
        throughput_mpps: if wall > 0.0 {
            received as f64 / wall / 1e6
        } else {
            0.0
        },
        bng_mpps_per_core: 0.0,
        bng_ns_per_packet: 0.0,
        mean_frame: if sent > 0 {
            bytes as f64 / sent as f64
        } else {
            0.0
        },
        duration_s: wall,
        // No per-packet stamps across the namespaces: no latency, no verified flows.
        ..TrafficReport::default()
    };
    let mut per = Vec::new();
    for (a, k) in [(Access::Pppoe, 0), (Access::Ipoe, 1)] {
        let r = received_by[k].load(Ordering::Acquire);
        if sent_by[k][0] > 0 || r > 0 {
            per.push((a, report(sent_by[k][0], r, sent_by[k][1])));
        }
    }
    (report(sent, received, bytes), per)
}
