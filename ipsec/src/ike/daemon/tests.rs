//! Config parsing, and two daemons wired back to back in memory with a fake clock:
//! establishment, retransmission after loss, retry after a timeout, rekey with the
//! grace period, delete, metrics.

use super::config::*;
use super::*;
use alloc::string::ToString;
use alloc::vec;
use std::sync::Mutex;

#[derive(Default)]
struct Log {
    installed: Vec<(u32, u32)>,
    removed: Vec<(u32, u32)>,
}

#[derive(Clone, Default)]
struct Rec(Arc<Mutex<Log>>);

impl SaSink for Rec {
    fn install(&mut self, c: &ChildSa) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .installed
            .push((c.inbound.spi, c.outbound.spi));
        Ok(())
    }
    fn remove(&mut self, i: u32, o: u32) {
        self.0.lock().unwrap().removed.push((i, o));
    }
}

const A: &str = r#"
retransmit_ms = 400
rekey_grace_s = 3
[connections.to-b]
local_addrs = "192.0.2.1"
remote_addrs = "192.0.2.2"
local_id = "a.example"
remote_id = "b.example"
psk = "0x00112233445566778899aabbccddeeff"
proposals = ["aes256gcm16-prfsha256-x25519"]
start_action = "start"
retry_s = 7
[connections.to-b.children.net]
local_ts = ["10.1.0.0/16"]
remote_ts = ["10.2.0.0/16"]
esp_proposals = ["aes128gcm16-x25519"]
rekey_time_s = 0
"#;

const B: &str = r#"
retransmit_ms = 400
rekey_grace_s = 3
[connections.from-a]
local_addrs = "192.0.2.2"
remote_addrs = "%any"
local_id = "b.example"
psk = "0x00112233445566778899aabbccddeeff"
[connections.from-a.children.net]
local_ts = ["10.2.0.0/16"]
remote_ts = ["10.1.0.0/16"]
rekey_time_s = 0
"#;

fn section(t: &str) -> IkeSection {
    toml::from_str(t).unwrap()
}

#[test]
fn config_parses_with_defaults_and_hides_the_psk() {
    let s = section(A);
    assert_eq!(s.retransmit_ms, 400);
    assert_eq!(s.retransmit_tries, 5);
    assert_eq!(s.keepalive_s, 20);
    let c = &s.connections["to-b"];
    assert_eq!(c.start_action, StartAction::Start);
    assert_eq!(c.psk.bytes().len(), 16);
    let dbg = alloc::format!("{s:?}");
    assert!(dbg.contains("<secret>") && !dbg.contains("112233"), "{dbg}");
    let conns = s.connections().unwrap();
    assert_eq!(conns[0].remote, Some("192.0.2.2".parse().unwrap()));
    let cfg = conns[0].ike_config();
    assert_eq!(cfg.ike_dh, vec![crate::ike::DhGroup::Curve25519]);
    assert_eq!(cfg.child_pfs, Some(crate::ike::DhGroup::Curve25519));
    assert_eq!(cfg.esp_encr, vec![crate::Algorithm::Aes128Gcm16]);
    assert!(cfg.child_lifetime.is_none());
    assert!(cfg.ike_lifetime.is_some(), "IKE rekey defaults to 4 h");
    let b = section(B).connections().unwrap();
    assert_eq!(b[0].remote, None);
    assert_eq!(b[0].start_action, StartAction::None);
    assert_eq!(b[0].ike_config().child_pfs, None);
}

#[test]
fn config_errors_name_the_key() {
    let bad = [
        (A.replace("x25519\"]\nstart", "x448\"]\nstart"), "proposals"),
        (A.replace("\"10.1.0.0/16\"", "\"10.1.0.0/33\""), "local_ts"),
        (A.replace("\"192.0.2.2\"", "\"%any\""), "start_action"),
        (A.replace("\"192.0.2.1\"", "\"gw\""), "local_addrs"),
        (
            A.replace("aes128gcm16-x25519", "aes128gcm16-modp2048"),
            "esp_proposals",
        ),
        (
            A.replace("rekey_time_s = 0", "rekey_time_s = 100\nlife_time_s = 50"),
            "rekey_time_s",
        ),
        (
            B.replace("local_id", "dpd_action = \"restart\"\nlocal_id"),
            "dpd_action",
        ),
        (
            alloc::format!("{A}[connections.to-b.children.two]\nlocal_ts=[\"1.0.0.0/8\"]\nremote_ts=[\"2.0.0.0/8\"]\n"),
            "children",
        ),
    ];
    for (t, key) in bad {
        let e = section(&t).connections().unwrap_err();
        assert!(e.contains(key), "{key}: {e}");
    }
    // unknown keys and bad PSKs are refused by the parser
    assert!(toml::from_str::<IkeSection>(&A.replace("retry_s", "retry_sec")).is_err());
    assert!(toml::from_str::<IkeSection>(&A.replace("0x0011", "0x011")).is_err());
    let e = toml::from_str::<IkeSection>(&A.replace("0x0011", "0xzz11"))
        .unwrap_err()
        .message()
        .to_string();
    assert!(
        !e.contains("2233"),
        "the message does not echo the secret: {e}"
    );
}

struct Pair {
    a: Daemon,
    b: Daemon,
    sa: Rec,
    sb: Rec,
    now: u64,
    /// Drop the next n datagrams from A.
    lose_a: usize,
    sent_a: usize,
    /// Drop everything from B.
    cut_b: bool,
    /// A behind a NAT: its 192.0.2.1:P appears to B as 203.0.113.1:P+1000.
    nat: bool,
}

impl Pair {
    fn new() -> Pair {
        let (sa, sb) = (Rec::default(), Rec::default());
        Pair {
            a: Daemon::new(&section(A), Box::new(sa.clone())).unwrap(),
            b: Daemon::new(&section(B), Box::new(sb.clone())).unwrap(),
            sa,
            sb,
            now: 0,
            lose_a: 0,
            sent_a: 0,
            cut_b: false,
            nat: false,
        }
    }

    fn with(a: &str, b: &str) -> Pair {
        let mut p = Pair::new();
        p.a = Daemon::new(&section(a), Box::new(p.sa.clone())).unwrap();
        p.b = Daemon::new(&section(b), Box::new(p.sb.clone())).unwrap();
        p
    }

    /// Runs both for `ms`, in 10 ms steps.
    fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.a.poll(self.now);
            self.b.poll(self.now);
            for _ in 0..4 {
                for d in self.a.take_output() {
                    self.sent_a += 1;
                    if self.lose_a > 0 {
                        self.lose_a -= 1;
                        continue;
                    }
                    assert_eq!(d.peer.ip(), "192.0.2.2".parse::<IpAddr>().unwrap());
                    let from = if self.nat {
                        SocketAddr::new("203.0.113.1".parse().unwrap(), d.local.port() + 1000)
                    } else {
                        d.local
                    };
                    self.b.handle(
                        &Datagram {
                            local: d.peer,
                            peer: from,
                            data: d.data,
                        },
                        self.now,
                    );
                }
                for d in self.b.take_output() {
                    if self.cut_b {
                        continue;
                    }
                    let to = if self.nat {
                        SocketAddr::new("192.0.2.1".parse().unwrap(), d.peer.port() - 1000)
                    } else {
                        d.peer
                    };
                    self.a.handle(
                        &Datagram {
                            local: to,
                            peer: d.local,
                            data: d.data,
                        },
                        self.now,
                    );
                }
            }
            self.now += 10;
        }
    }
}

fn m(d: &Daemon) -> Arc<Metrics> {
    d.metrics()
}

#[test]
fn establishes_after_a_lost_request_with_the_sessions_retransmit_timer() {
    let mut p = Pair::new();
    p.lose_a = 1; // the first IKE_SA_INIT is lost
    p.run(300);
    assert_eq!(p.sent_a, 1, "nothing before the 400 ms timer");
    assert!(p.sa.0.lock().unwrap().installed.is_empty());
    p.run(200);
    assert_eq!(
        m(&p.a).session[2].load(Ordering::Relaxed),
        1,
        "one retransmit"
    );
    let ia = p.sa.0.lock().unwrap().installed.clone();
    let ib = p.sb.0.lock().unwrap().installed.clone();
    assert_eq!(ia.len(), 1);
    assert_eq!(ib, vec![(ia[0].1, ia[0].0)], "B's inbound is A's outbound");
    for d in [&p.a, &p.b] {
        assert_eq!(m(d).ike_sas.load(Ordering::Relaxed), 1);
        assert_eq!(m(d).child_sas.load(Ordering::Relaxed), 1);
    }
    let text = m(&p.a).prometheus();
    assert!(
        text.contains("\nike_sas 1\n") && text.contains("\nchild_sas 1\n"),
        "{text}"
    );
    assert!(text.contains("ike_failures_total{reason=\"timeout\"} 0"));
    assert!(text.contains("ike_retransmits_total 1"));
    assert_eq!(p.a.children("to-b"), ia);
}

#[test]
fn unanswered_initiator_times_out_then_retries_after_retry_s() {
    let mut p = Pair::new();
    p.lose_a = usize::MAX;
    // 400 ms doubling, 5 retries: 400+800+1600+3200+6400+12800 = 25.2 s to give up.
    p.run(25_000);
    assert_eq!(m(&p.a).failure(Failure::Timeout), 0);
    assert_eq!(p.sent_a, 6);
    p.run(400);
    assert_eq!(m(&p.a).failure(Failure::Timeout), 1);
    assert_eq!(m(&p.a).initiated.load(Ordering::Relaxed), 1);
    p.run(6_700);
    assert_eq!(m(&p.a).initiated.load(Ordering::Relaxed), 1, "retry_s = 7");
    p.lose_a = 0;
    p.run(400);
    assert_eq!(m(&p.a).initiated.load(Ordering::Relaxed), 2);
    assert_eq!(m(&p.a).child_sas.load(Ordering::Relaxed), 1);
    assert!(m(&p.a)
        .prometheus()
        .contains("ike_failures_total{reason=\"timeout\"} 1"));
}

#[test]
fn rekey_installs_the_new_sa_and_retires_the_old_after_the_grace() {
    let mut p = Pair::new();
    p.run(200);
    let old = p.sa.0.lock().unwrap().installed[0];
    p.a.rekey_child("to-b", p.now).unwrap();
    p.run(100);
    let la = p.sa.0.lock().unwrap();
    assert_eq!(la.installed.len(), 2, "new SA installed");
    assert!(la.removed.is_empty(), "old SA kept for the grace period");
    drop(la);
    assert_eq!(m(&p.a).child_rekeys.load(Ordering::Relaxed), 1);
    assert_eq!(m(&p.b).child_rekeys.load(Ordering::Relaxed), 1);
    assert_eq!(m(&p.a).child_sas.load(Ordering::Relaxed), 2);
    p.run(3_000);
    assert_eq!(p.sa.0.lock().unwrap().removed, vec![old]);
    assert_eq!(p.sb.0.lock().unwrap().removed, vec![(old.1, old.0)]);
    assert_eq!(m(&p.a).child_sas.load(Ordering::Relaxed), 1);
    assert_eq!(m(&p.b).child_sas.load(Ordering::Relaxed), 1);
    // The peer deletes: both sides remove at once, no retry (it was established).
    p.b.delete("from-a", p.now).unwrap();
    p.run(100);
    for (d, s) in [(&p.a, &p.sa), (&p.b, &p.sb)] {
        assert_eq!(m(d).ike_sas.load(Ordering::Relaxed), 0);
        assert_eq!(m(d).child_sas.load(Ordering::Relaxed), 0);
        assert_eq!(s.0.lock().unwrap().removed.len(), 2);
    }
    p.run(10_000);
    assert_eq!(m(&p.a).initiated.load(Ordering::Relaxed), 1);
}

#[test]
fn nat_keepalives_are_counted_not_parsed() {
    let mut p = Pair::new();
    let d = Datagram {
        local: "192.0.2.2:4500".parse().unwrap(),
        peer: "192.0.2.1:4500".parse().unwrap(),
        data: vec![0xff],
    };
    p.b.handle(&d, 0);
    assert_eq!(m(&p.b).keepalives_received.load(Ordering::Relaxed), 1);
    // garbage from an unknown address is counted, not fatal
    let g = Datagram {
        local: "192.0.2.9:500".parse().unwrap(),
        peer: "192.0.2.1:500".parse().unwrap(),
        data: vec![1, 2, 3],
    };
    p.b.handle(&g, 0);
    assert_eq!(m(&p.b).unmatched.load(Ordering::Relaxed), 1);
    let t = Datagram {
        local: "192.0.2.2:500".parse().unwrap(),
        ..g
    };
    p.b.handle(&t, 0);
    p.b.poll(0);
    assert_eq!(m(&p.b).session[3].load(Ordering::Relaxed), 1, "parse error");
}

#[test]
fn dead_peer_detection_clears_or_restarts() {
    let a = A.replace(
        "retry_s = 7",
        "retry_s = 7\ndpd_delay_s = 10\ndpd_action = \"restart\"",
    );
    let b = B.replace("psk =", "dpd_delay_s = 10\npsk =");
    let mut p = Pair::with(&a, &b);
    p.run(200);
    assert_eq!(m(&p.a).child_sas.load(Ordering::Relaxed), 1);
    // A live peer answers: checks go out both ways every 10 s of silence, nothing fails.
    p.run(25_000);
    assert!(m(&p.a).dpd_checks.load(Ordering::Relaxed) >= 2);
    assert!(m(&p.b).dpd_checks.load(Ordering::Relaxed) >= 2);
    assert_eq!(m(&p.a).ike_sas.load(Ordering::Relaxed), 1);
    assert_eq!(m(&p.a).failure(Failure::Timeout), 0);
    // B goes silent: A's next check (at most 10 s later) is never answered (400 ms
    // doubling, 5 retries: 25.2 s), A clears its SAs and, with dpd_action =
    // restart, initiates again 7 s later.
    p.cut_b = true;
    p.run(43_000);
    assert_eq!(m(&p.a).failure(Failure::Timeout), 1);
    assert_eq!(m(&p.a).ike_sas.load(Ordering::Relaxed), 0);
    assert_eq!(m(&p.a).child_sas.load(Ordering::Relaxed), 0);
    assert_eq!(p.sa.0.lock().unwrap().removed.len(), 1);
    assert_eq!(m(&p.a).initiated.load(Ordering::Relaxed), 2, "restarted");
    // B's own checks to A went unanswered as well (its answers were dropped).
    assert_eq!(m(&p.b).failure(Failure::Timeout), 1);
    p.cut_b = false;
    p.run(30_000);
    assert_eq!(m(&p.a).child_sas.load(Ordering::Relaxed), 1, "back up");
    assert!(m(&p.a).prometheus().contains("ike_dpd_checks_total"));
}

#[test]
fn behind_a_nat_the_initiator_moves_to_4500_and_sends_keepalives() {
    let mut p = Pair::new();
    p.nat = true;
    p.run(300);
    let log = p.a.take_log().join("\n");
    assert!(log.contains("established (this end behind a NAT)"), "{log}");
    assert_eq!(m(&p.a).child_sas.load(Ordering::Relaxed), 1);
    // 20 s keepalive interval (RFC 3948 §2.3), from port 4500
    p.run(45_000);
    let sent = m(&p.a).keepalives_sent.load(Ordering::Relaxed);
    assert_eq!(sent, 2, "at 20 s and 40 s");
    assert_eq!(m(&p.b).keepalives_received.load(Ordering::Relaxed), sent);
    assert_eq!(
        m(&p.b).keepalives_sent.load(Ordering::Relaxed),
        0,
        "B is not behind a NAT"
    );
    assert_eq!(m(&p.a).ike_sas.load(Ordering::Relaxed), 1);
}

#[test]
fn hard_child_lifetime_removes_the_sa_when_the_rekey_goes_unanswered() {
    let a = A.replace("rekey_time_s = 0", "rekey_time_s = 2\nlife_time_s = 4");
    let mut p = Pair::with(&a, B);
    p.run(200);
    assert_eq!(m(&p.a).child_sas.load(Ordering::Relaxed), 1);
    p.lose_a = usize::MAX;
    p.cut_b = true;
    p.run(3_500);
    assert_eq!(
        m(&p.a).child_sas.load(Ordering::Relaxed),
        1,
        "rekey outstanding"
    );
    p.run(1_000);
    assert_eq!(
        m(&p.a).child_sas.load(Ordering::Relaxed),
        0,
        "hard lifetime"
    );
    assert_eq!(p.sa.0.lock().unwrap().removed.len(), 1);
    assert_eq!(m(&p.a).child_rekeys.load(Ordering::Relaxed), 0);
}
