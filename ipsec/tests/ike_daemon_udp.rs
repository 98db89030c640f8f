//! Two IKE daemons over real UDP sockets (`ike::daemon::udp`): one on 127.0.0.1
//! initiating (`start_action = start`), one on 127.0.0.2 responding, ports 500 and
//! 4500 each; both install the child SA (into a recording sink); the initiator
//! going down deletes the IKE SA, which the responder then drops too. Root only (ports below 1024): skipped with a message otherwise, or when
//! the ports are taken.
#![cfg(feature = "daemon")]

use ipsec::ike::daemon::config::IkeSection;
use ipsec::ike::daemon::{udp, Daemon, SaSink};
use ipsec::ike::ChildSa;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
struct Rec(Arc<Mutex<Vec<(u32, u32)>>>);

impl SaSink for Rec {
    fn install(&mut self, c: &ChildSa) -> Result<(), String> {
        self.0.lock().unwrap().push((c.inbound.spi, c.outbound.spi));
        Ok(())
    }
    fn remove(&mut self, _: u32, _: u32) {}
}

fn conf(local: &str, remote: &str, start: &str, lts: &str, rts: &str) -> IkeSection {
    toml::from_str(&format!(
        r#"
retransmit_ms = 200
[connections.c]
local_addrs = "{local}"
remote_addrs = "{remote}"
local_id = "{local}"
psk = "udp-test-psk-0123456789"
start_action = "{start}"
[connections.c.children.net]
local_ts = ["{lts}"]
remote_ts = ["{rts}"]
"#
    ))
    .unwrap()
}

#[test]
fn two_daemons_over_udp_sockets() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("ike_daemon_udp: skipped: needs root (UDP port 500)");
        return;
    }
    let (ra, rb) = (Rec::default(), Rec::default());
    let mut a = Daemon::new(
        &conf(
            "127.0.0.1",
            "127.0.0.2",
            "start",
            "10.1.0.0/16",
            "10.2.0.0/16",
        ),
        Box::new(ra.clone()),
    )
    .unwrap();
    let mut b = Daemon::new(
        &conf("127.0.0.2", "%any", "none", "10.2.0.0/16", "10.1.0.0/16"),
        Box::new(rb.clone()),
    )
    .unwrap();
    for d in [&a, &b] {
        if let Err(e) = udp::Sockets::bind(d) {
            eprintln!("ike_daemon_udp: skipped: {e}");
            return;
        }
    }
    let (ma, mb) = (a.metrics(), b.metrics());
    let stop = Arc::new(AtomicBool::new(false));
    let ta_stop = Arc::new(AtomicBool::new(false));
    let (s1, s2) = (ta_stop.clone(), stop.clone());
    // the responder first, so the initiator's first request finds it
    let tb = std::thread::spawn(move || udp::run(&mut b, &s2));
    std::thread::sleep(Duration::from_millis(100));
    let ta = std::thread::spawn(move || udp::run(&mut a, &s1));
    let t = Instant::now();
    while ma.child_sas.load(Ordering::Relaxed) < 1 || mb.child_sas.load(Ordering::Relaxed) < 1 {
        assert!(t.elapsed() < Duration::from_secs(10), "no child SA");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A going down deletes the IKE SA at both ends.
    ta_stop.store(true, Ordering::Relaxed);
    ta.join().unwrap().unwrap();
    let t = Instant::now();
    while mb.ike_sas.load(Ordering::Relaxed) > 0 || mb.child_sas.load(Ordering::Relaxed) > 0 {
        assert!(t.elapsed() < Duration::from_secs(5), "B still has SAs");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ma.ike_sas.load(Ordering::Relaxed), 0);
    stop.store(true, Ordering::Relaxed);
    tb.join().unwrap().unwrap();
    let (ia, ib) = (ra.0.lock().unwrap().clone(), rb.0.lock().unwrap().clone());
    assert_eq!(ia.len(), 1);
    assert_eq!(ib, vec![(ia[0].1, ia[0].0)]);
    assert_eq!(ma.failure(ipsec::ike::daemon::Failure::Timeout), 0);
}
