//! The IKE daemon (feature `daemon`): drives the sans-IO [`session`](super::session)
//! state machines of the configured connections ([`config`]) over datagrams, and
//! pushes the child SAs they negotiate into the data path through an [`SaSink`]
//! (for running workers: [`StageSink`], the `esp-*` stages' lock-free update queues).
//!
//! It is itself sans-IO, with a caller-supplied clock (milliseconds): datagrams go in
//! through [`Daemon::handle`], timers run in [`Daemon::poll`], datagrams to send come
//! out of [`Daemon::take_output`]. [`udp`] runs it over UDP sockets on ports 500 and
//! 4500; the router runs it over its worker's punt and inject rings.
//!
//! What it does (RFC 7296 unless said otherwise):
//! * `start_action = start` (or `trap`, treated alike): initiates the connection at
//!   start-up (§1.2) and again `retry_s` after an attempt that failed before the IKE
//!   SA was established; responds to peers of every connection (one [`Responder`]
//!   per connection, chosen by local and peer address);
//! * retransmission timers and the window of one are the session's (§2.1, §2.3); the
//!   daemon polls each session at its `next_timeout`;
//! * NAT traversal: on port 4500 IKE carries the non-ESP marker (RFC 3948 §2.2),
//!   1-byte keepalives are accepted and, behind a NAT, sent every `keepalive_s`
//!   (RFC 3948 §2.3, RFC 7296 §2.23);
//! * lifetimes: the session rekeys at the soft lifetime and deletes at the hard one
//!   (§2.8, §2.18); the daemon installs each new child SA at once (traffic moves to
//!   it), and keeps an SA a rekey replaced installed for `rekey_grace_s` after its
//!   Delete so packets in flight still decrypt (§2.8: the old SA is deleted by the
//!   rekey's initiator); SAs of a deleted or expired child or IKE SA are removed at
//!   once;
//! * metrics: `ike_sas`, `child_sas`, rekeys and failures by reason ([`Metrics`]).
//!
//! * dead peer detection: a liveness check (an empty INFORMATIONAL, §1.4) after
//!   `dpd_delay_s` without a message from the peer; unanswered, the session closes
//!   the IKE SA (`Timeout`), its SAs are removed, and with `dpd_action = restart`
//!   the connection is initiated again.
//!
//! Not done: trap policies that initiate on traffic, several children per
//! connection, IPv6 in the router's punt path, MOBIKE.

pub mod config;
pub mod udp;

use super::session::{ChildSa, DownReason, Event, IkeCounters, Initiator, Output, Responder};
use crate::sa::Sa;
use crate::stage::{SaQueue, SaUpdate};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use config::{Connection, DpdAction, IkeSection, StartAction};
use core::fmt::Write as _;
use core::net::{IpAddr, SocketAddr};
use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// IKE's port (RFC 7296 §2) and the NAT-T port (RFC 3948).
pub const IKE_PORT: u16 = 500;
pub const NATT_PORT: u16 = 4500;

/// One UDP datagram in or out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Local address and port (500, or 4500 with the non-ESP marker in `data`).
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub data: Vec<u8>,
}

/// Where negotiated child SAs go.
pub trait SaSink {
    /// Installs both directions of `child` (outbound: its traffic moves to it).
    fn install(&mut self, child: &ChildSa) -> Result<(), String>;
    /// Removes the SAs with these SPIs.
    fn remove(&mut self, inbound_spi: u32, outbound_spi: u32);
    /// Offers what could not be queued before (called every daemon round).
    fn flush(&mut self) {}
}

/// An [`SaSink`] over the update queues of running `esp-encrypt` / `esp-decrypt`
/// stages (one pair per worker). SAs are built here, off the data path; an update
/// a full queue cannot take waits in order in a backlog.
pub struct StageSink {
    queues: Vec<(SaQueue, SaQueue)>,
    backlog: VecDeque<(usize, bool, SaUpdate)>,
}

impl StageSink {
    /// Over `(encrypt, decrypt)` queue pairs, one per worker.
    pub fn new(queues: Vec<(SaQueue, SaQueue)>) -> Self {
        StageSink {
            queues,
            backlog: VecDeque::new(),
        }
    }

    fn send(&mut self, w: usize, enc: bool, u: SaUpdate) {
        if !self.backlog.is_empty() {
            self.backlog.push_back((w, enc, u));
            return;
        }
        let Some((e, d)) = self.queues.get(w) else {
            return;
        };
        let q = if enc { e } else { d };
        if let Err(u) = q.push(u) {
            self.backlog.push_back((w, enc, u));
        }
    }

    /// Updates waiting for room in a queue.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }
}

impl SaSink for StageSink {
    fn install(&mut self, child: &ChildSa) -> Result<(), String> {
        let selector = child
            .outbound_selector()
            .ok_or_else(|| String::from("traffic selectors are not one prefix each"))?;
        for w in 0..self.queues.len() {
            let i = Sa::new(child.inbound.clone(), child.inbound_key(), 0)
                .map_err(|e| format!("inbound SA: {e}"))?;
            let o = Sa::new(child.outbound.clone(), child.outbound_key(), 0)
                .map_err(|e| format!("outbound SA: {e}"))?;
            self.send(w, false, SaUpdate::AddInbound(Box::new(i)));
            self.send(
                w,
                true,
                SaUpdate::AddOutbound {
                    sa: Box::new(o),
                    selector,
                },
            );
        }
        Ok(())
    }

    fn remove(&mut self, inbound_spi: u32, outbound_spi: u32) {
        for w in 0..self.queues.len() {
            self.send(w, true, SaUpdate::RemoveOutbound(outbound_spi));
            self.send(w, false, SaUpdate::RemoveInbound(inbound_spi));
        }
    }

    fn flush(&mut self) {
        while let Some((w, enc, u)) = self.backlog.pop_front() {
            let Some((e, d)) = self.queues.get(w) else {
                continue;
            };
            let q = if enc { e } else { d };
            if let Err(u) = q.push(u) {
                self.backlog.push_front((w, enc, u));
                return;
            }
        }
    }
}

/// Why an attempt or an SA failed, as counted in `ike_failures_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    AuthenticationFailed,
    NoProposalChosen,
    PeerError,
    ProtocolError,
    HalfOpenExpired,
    /// The peer refused the child SA (the IKE SA stays).
    ChildRefused,
    /// A negotiated child SA could not be installed.
    InstallFailed,
    /// A rekey of the IKE SA was refused.
    IkeRekeyRefused,
}

impl Failure {
    pub const ALL: [Failure; 9] = [
        Failure::Timeout,
        Failure::AuthenticationFailed,
        Failure::NoProposalChosen,
        Failure::PeerError,
        Failure::ProtocolError,
        Failure::HalfOpenExpired,
        Failure::ChildRefused,
        Failure::InstallFailed,
        Failure::IkeRekeyRefused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::AuthenticationFailed => "authentication_failed",
            Failure::NoProposalChosen => "no_proposal_chosen",
            Failure::PeerError => "peer_error",
            Failure::ProtocolError => "protocol_error",
            Failure::HalfOpenExpired => "half_open_expired",
            Failure::ChildRefused => "child_refused",
            Failure::InstallFailed => "install_failed",
            Failure::IkeRekeyRefused => "ike_rekey_refused",
        }
    }

    fn of(r: DownReason) -> Option<Failure> {
        Some(match r {
            DownReason::Timeout => Failure::Timeout,
            DownReason::AuthenticationFailed => Failure::AuthenticationFailed,
            DownReason::NoProposalChosen => Failure::NoProposalChosen,
            DownReason::PeerError(_) => Failure::PeerError,
            DownReason::ProtocolError => Failure::ProtocolError,
            DownReason::HalfOpenExpired => Failure::HalfOpenExpired,
            DownReason::DeletedByPeer
            | DownReason::DeletedLocally
            | DownReason::Rekeyed
            | DownReason::Expired => return None,
        })
    }
}

/// The daemon's metrics: atomics, so a metrics thread reads them without a lock.
#[derive(Default)]
pub struct Metrics {
    pub ike_sas: AtomicU64,
    pub child_sas: AtomicU64,
    pub ike_rekeys: AtomicU64,
    pub child_rekeys: AtomicU64,
    pub initiated: AtomicU64,
    /// Liveness checks sent (DPD, RFC 7296 §1.4).
    pub dpd_checks: AtomicU64,
    pub keepalives_sent: AtomicU64,
    pub keepalives_received: AtomicU64,
    /// Datagrams no connection takes (unknown local/peer address).
    pub unmatched: AtomicU64,
    pub failures: [AtomicU64; 9],
    /// Sum of the sessions' [`IkeCounters`]: received, sent, retransmits,
    /// parse_errors, integrity_failures, unknown_spi, bad_message_id, cookies_sent.
    pub session: [AtomicU64; 8],
}

const SESSION_NAMES: [(&str, &str); 8] = [
    ("ike_messages_received_total", "IKE messages received"),
    ("ike_messages_sent_total", "IKE messages sent"),
    (
        "ike_retransmits_total",
        "requests sent again after a timeout (RFC 7296 §2.1)",
    ),
    ("ike_parse_errors_total", "datagrams that did not parse"),
    (
        "ike_integrity_failures_total",
        "Encrypted payloads whose ICV did not verify",
    ),
    ("ike_unknown_spi_total", "messages for no known IKE SA"),
    (
        "ike_bad_message_id_total",
        "replays and stale messages (RFC 7296 §2.3)",
    ),
    (
        "ike_cookies_sent_total",
        "COOKIE challenges sent (RFC 7296 §2.6)",
    ),
];

impl Metrics {
    pub fn failure(&self, f: Failure) -> u64 {
        Failure::ALL
            .iter()
            .position(|x| *x == f)
            .and_then(|i| self.failures.get(i))
            .map_or(0, |a| a.load(Ordering::Relaxed))
    }

    fn fail(&self, f: Failure) {
        if let Some(a) = Failure::ALL
            .iter()
            .position(|x| *x == f)
            .and_then(|i| self.failures.get(i))
        {
            a.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        let mut s = String::new();
        let g = |s: &mut String, n: &str, h: &str, t: &str, v: u64| {
            let _ = write!(s, "# HELP {n} {h}\n# TYPE {n} {t}\n{n} {v}\n");
        };
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        g(
            &mut s,
            "ike_sas",
            "established IKE SAs",
            "gauge",
            ld(&self.ike_sas),
        );
        g(
            &mut s,
            "child_sas",
            "installed child SAs (pairs)",
            "gauge",
            ld(&self.child_sas),
        );
        let _ = write!(
            s,
            "# HELP ike_rekeys_total completed rekeys (RFC 7296 §2.8, §2.18)\n# TYPE ike_rekeys_total counter\nike_rekeys_total{{sa=\"ike\"}} {}\nike_rekeys_total{{sa=\"child\"}} {}\n",
            ld(&self.ike_rekeys),
            ld(&self.child_rekeys)
        );
        let _ = write!(
            s,
            "# HELP ike_failures_total failed exchanges and SAs by reason\n# TYPE ike_failures_total counter\n"
        );
        for (f, a) in Failure::ALL.iter().zip(self.failures.iter()) {
            let _ = writeln!(s, "ike_failures_total{{reason=\"{}\"}} {}", f.name(), ld(a));
        }
        g(
            &mut s,
            "ike_initiated_total",
            "IKE SAs this end started",
            "counter",
            ld(&self.initiated),
        );
        g(
            &mut s,
            "ike_dpd_checks_total",
            "liveness checks sent (RFC 7296 §1.4)",
            "counter",
            ld(&self.dpd_checks),
        );
        g(
            &mut s,
            "ike_nat_keepalives_sent_total",
            "NAT-T keepalives sent (RFC 3948 §2.3)",
            "counter",
            ld(&self.keepalives_sent),
        );
        g(
            &mut s,
            "ike_nat_keepalives_received_total",
            "NAT-T keepalives received",
            "counter",
            ld(&self.keepalives_received),
        );
        g(
            &mut s,
            "ike_unmatched_total",
            "datagrams no connection takes",
            "counter",
            ld(&self.unmatched),
        );
        for ((n, h), a) in SESSION_NAMES.iter().zip(self.session.iter()) {
            g(&mut s, n, h, "counter", ld(a));
        }
        s
    }
}

/// A child SA as the daemon tracks it.
struct Child {
    inbound: u32,
    outbound: u32,
    /// Replaced by a rekey: removed `rekey_grace` after its Delete.
    replaced: bool,
}

struct Conn {
    c: Connection,
    responder: Responder,
    initiator: Option<Initiator>,
    /// When to initiate (again).
    start_at: Option<u64>,
    /// IKE SAs (SPIi, SPIr) up on this connection.
    ike: Vec<(u64, u64)>,
    /// Whether the initiator's current attempt reached IKE_AUTH.
    established: bool,
    children: Vec<Child>,
    /// Behind a NAT: where to send keepalives, and when next.
    keepalive: Option<(SocketAddr, u64)>,
    /// The peer's address on port 4500 after NAT-T moved there.
    natt_peer: Option<SocketAddr>,
    /// When the last datagram from the peer arrived (or the last liveness check
    /// went out), for DPD.
    last_rx: u64,
}

/// The daemon: connections, their sessions, the SA sink, metrics.
pub struct Daemon {
    conns: Vec<Conn>,
    sink: Box<dyn SaSink + Send>,
    metrics: Arc<Metrics>,
    out: Vec<Datagram>,
    /// (remove at, inbound, outbound): SAs retired after a rekey's grace.
    retire: Vec<(u64, u32, u32)>,
    grace_ms: u64,
    keepalive_ms: u64,
    log: Vec<String>,
    /// Session counters of initiators that were replaced (kept in the totals).
    base: [u64; 8],
}

fn sum(a: &mut IkeCounters, b: &IkeCounters) {
    a.received += b.received;
    a.sent += b.sent;
    a.retransmits += b.retransmits;
    a.parse_errors += b.parse_errors;
    a.integrity_failures += b.integrity_failures;
    a.unknown_spi += b.unknown_spi;
    a.bad_message_id += b.bad_message_id;
    a.cookies_sent += b.cookies_sent;
}

impl Daemon {
    /// A daemon for `section` (checked) installing SAs through `sink`; connections
    /// with `start_action = start` initiate at the first `poll`.
    pub fn new(section: &IkeSection, sink: Box<dyn SaSink + Send>) -> Result<Daemon, String> {
        let mut conns = Vec::new();
        for c in section.connections()? {
            let local = SocketAddr::new(c.local, IKE_PORT);
            let responder = Responder::new(c.ike_config(), local)
                .map_err(|e| format!("connections.{}: {e:?}", c.name))?;
            let start_at = (c.start_action != StartAction::None).then_some(0);
            conns.push(Conn {
                c,
                responder,
                initiator: None,
                start_at,
                ike: Vec::new(),
                established: false,
                children: Vec::new(),
                keepalive: None,
                natt_peer: None,
                last_rx: 0,
            });
        }
        Ok(Daemon {
            conns,
            sink,
            metrics: Arc::new(Metrics::default()),
            out: Vec::new(),
            retire: Vec::new(),
            grace_ms: section.rekey_grace_s.saturating_mul(1000),
            keepalive_ms: section.keepalive_s.saturating_mul(1000),
            log: Vec::new(),
            base: [0; 8],
        })
    }

    /// The metrics (shared with a metrics thread).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The local addresses of the connections (where IKE must be received).
    pub fn local_addrs(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = Vec::new();
        for c in &self.conns {
            if !v.contains(&c.c.local) {
                v.push(c.c.local);
            }
        }
        v
    }

    /// Datagrams to send.
    pub fn take_output(&mut self) -> Vec<Datagram> {
        core::mem::take(&mut self.out)
    }

    /// Log lines (state changes) since the last call.
    pub fn take_log(&mut self) -> Vec<String> {
        core::mem::take(&mut self.log)
    }

    /// One datagram received on `d.local` (port 500, or 4500 with the non-ESP
    /// marker; a 1-byte 0xFF there is a NAT keepalive) from `d.peer`.
    pub fn handle(&mut self, d: &Datagram, now: u64) {
        let natt = d.local.port() == NATT_PORT;
        if natt && d.data == [0xff] {
            self.metrics
                .keepalives_received
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let body = if natt {
            d.data.get(4..).unwrap_or(&[])
        } else {
            &d.data[..]
        };
        // IKE header: SPIi, SPIr (RFC 7296 §3.1).
        let spi = |r: core::ops::Range<usize>| {
            body.get(r)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes)
        };
        let (spi_i, spi_r) = (spi(0..8), spi(8..16));
        let Some(k) = self
            .conns
            .iter()
            .position(|c| c.c.matches(d.local.ip(), d.peer.ip()))
        else {
            self.metrics.unmatched.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let conn = &mut self.conns[k];
        if natt {
            conn.natt_peer = Some(d.peer);
        }
        conn.last_rx = now;
        let ours = |c: &Conn| {
            let Some(i) = &c.initiator else {
                return false;
            };
            let (a, b) = i.spis();
            let known =
                |x: u64| x != 0 && (x == a || x == b || c.ike.iter().any(|s| s.0 == x || s.1 == x));
            known(spi_i) || known(spi_r)
        };
        let mine = ours(conn);
        let outs = if let (true, Some(i)) = (mine, conn.initiator.as_mut()) {
            if natt {
                i.handle_natt(&d.data, d.peer, now)
            } else {
                i.handle(&d.data, d.peer, now)
            }
        } else if natt {
            conn.responder.handle_natt(&d.data, d.peer, now)
        } else {
            conn.responder.handle(&d.data, d.peer, now)
        };
        self.outputs(k, outs, now);
    }

    /// Timers due at `now`: initiations, the sessions' retransmissions and
    /// lifetimes, retired SAs, NAT keepalives.
    pub fn poll(&mut self, now: u64) {
        for k in 0..self.conns.len() {
            let conn = &mut self.conns[k];
            if conn.start_at.is_some_and(|t| t <= now) {
                conn.start_at = None;
                let cfg = conn.c.ike_config();
                let local = SocketAddr::new(conn.c.local, IKE_PORT);
                let Some(remote) = conn.c.remote else {
                    continue;
                };
                let mut i = Initiator::new(cfg, local, SocketAddr::new(remote, IKE_PORT), now);
                let r = i.start(now);
                let old = conn.initiator.replace(i);
                conn.established = false;
                conn.natt_peer = None;
                // counters of a replaced initiator stay in the totals
                if let Some(old) = old {
                    let mut v = [0u64; 8];
                    counters_array(&old.counters(), &mut v);
                    for (a, x) in self.base.iter_mut().zip(v) {
                        *a += x;
                    }
                }
                self.metrics.initiated.fetch_add(1, Ordering::Relaxed);
                self.log
                    .push(format!("{}: initiating to {remote}", self.conns[k].c.name));
                match r {
                    Ok(outs) => self.outputs(k, outs, now),
                    Err(e) => {
                        self.log
                            .push(format!("{}: cannot start: {e:?}", self.conns[k].c.name));
                        self.conns[k].start_at = Some(now + self.conns[k].c.retry_ms);
                    }
                }
            }
            let conn = &mut self.conns[k];
            let mut outs = Vec::new();
            if conn.c.dpd_ms > 0
                && !conn.ike.is_empty()
                && now.saturating_sub(conn.last_rx) >= conn.c.dpd_ms
            {
                conn.last_rx = now;
                let r = match conn.initiator.as_mut() {
                    Some(i) if conn.established => i.liveness(now),
                    _ => match conn.ike.last() {
                        Some(&(_, spi_r)) => conn.responder.liveness(spi_r, now),
                        None => Ok(Vec::new()),
                    },
                };
                // Busy: a request is outstanding, which checks liveness as well.
                if let Ok(o) = r {
                    outs.extend(o);
                    self.metrics.dpd_checks.fetch_add(1, Ordering::Relaxed);
                }
            }
            outs.extend(conn.responder.poll(now));
            if let Some(i) = conn.initiator.as_mut() {
                if i.next_timeout().is_some_and(|t| t <= now) {
                    outs.extend(i.poll(now));
                }
            }
            self.outputs(k, outs, now);
            let conn = &mut self.conns[k];
            if let Some((to, at)) = conn.keepalive {
                if at <= now && self.keepalive_ms > 0 {
                    self.out.push(Datagram {
                        local: SocketAddr::new(conn.c.local, NATT_PORT),
                        peer: to,
                        data: alloc::vec![0xff],
                    });
                    conn.keepalive = Some((to, now + self.keepalive_ms));
                    self.metrics.keepalives_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let mut i = 0;
        while i < self.retire.len() {
            if self.retire[i].0 <= now {
                let (_, a, b) = self.retire.swap_remove(i);
                self.sink.remove(a, b);
                self.metrics.child_sas.fetch_sub(1, Ordering::Relaxed);
            } else {
                i += 1;
            }
        }
        self.sink.flush();
        self.publish_counters();
    }

    fn publish_counters(&mut self) {
        let mut t = IkeCounters::default();
        for c in &self.conns {
            sum(&mut t, &c.responder.counters());
            if let Some(i) = &c.initiator {
                sum(&mut t, &i.counters());
            }
        }
        let mut v = [0u64; 8];
        counters_array(&t, &mut v);
        for ((a, x), b) in self.metrics.session.iter().zip(v).zip(self.base) {
            a.store(x + b, Ordering::Relaxed);
        }
    }

    /// When `poll` next has work (ms), if ever.
    pub fn next_timeout(&self) -> Option<u64> {
        let mut t: Option<u64> = None;
        let mut m = |x: Option<u64>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for c in &self.conns {
            m(c.start_at);
            m(c.responder.next_timeout());
            m(c.initiator.as_ref().and_then(|i| i.next_timeout()));
            m(c.keepalive.map(|k| k.1));
        }
        for r in &self.retire {
            m(Some(r.0));
        }
        t
    }

    /// Asks the session of connection `name` to rekey its child SA (as initiator:
    /// our initiator's; as responder: the newest established IKE SA's).
    pub fn rekey_child(&mut self, name: &str, now: u64) -> Result<(), String> {
        let k = self.conn_index(name)?;
        let conn = &mut self.conns[k];
        let r = match conn.initiator.as_mut() {
            Some(i) if conn.established => i.rekey_child(now),
            _ => match conn.ike.last() {
                Some(&(_, spi_r)) => conn.responder.rekey_child(spi_r, now),
                None => return Err(format!("{name}: no IKE SA")),
            },
        };
        let outs = r.map_err(|e| format!("{name}: {e}"))?;
        self.outputs(k, outs, now);
        Ok(())
    }

    /// Deletes the IKE SA (and its child SAs) of connection `name` (§1.4.1).
    pub fn delete(&mut self, name: &str, now: u64) -> Result<(), String> {
        let k = self.conn_index(name)?;
        let conn = &mut self.conns[k];
        conn.start_at = None;
        let r = match conn.initiator.as_mut() {
            Some(i) if conn.established => i.delete_ike(now),
            _ => match conn.ike.last() {
                Some(&(_, spi_r)) => conn.responder.delete_ike(spi_r, now),
                None => return Err(format!("{name}: no IKE SA")),
            },
        };
        let outs = r.map_err(|e| format!("{name}: {e}"))?;
        self.outputs(k, outs, now);
        Ok(())
    }

    /// Deletes every established IKE SA (with its child SAs) and stops initiating:
    /// for a daemon going down (swanctl's behaviour on shutdown). Keep calling
    /// `handle`/`poll` until [`Daemon::ike_sas`] is 0 or a deadline passes.
    pub fn shutdown(&mut self, now: u64) {
        for k in 0..self.conns.len() {
            let conn = &mut self.conns[k];
            conn.start_at = None;
            let mut outs = Vec::new();
            let mut errs = Vec::new();
            if let Some(i) = conn.initiator.as_mut() {
                if conn.established {
                    match i.delete_ike(now) {
                        Ok(o) => outs.extend(o),
                        Err(e) => errs.push(e),
                    }
                }
            }
            let spis: Vec<u64> = conn.ike.iter().map(|s| s.1).collect();
            for spi_r in spis {
                // SAs of our initiator are not the responder's: NotEstablished there.
                if let Ok(o) = conn.responder.delete_ike(spi_r, now) {
                    outs.extend(o);
                }
            }
            for e in errs {
                self.log.push(format!(
                    "{}: cannot delete the IKE SA: {e}",
                    self.conns[k].c.name
                ));
            }
            self.outputs(k, outs, now);
        }
    }

    /// Established IKE SAs.
    pub fn ike_sas(&self) -> usize {
        self.conns.iter().map(|c| c.ike.len()).sum()
    }

    fn conn_index(&self, name: &str) -> Result<usize, String> {
        self.conns
            .iter()
            .position(|c| c.c.name == name)
            .ok_or_else(|| format!("no connection {name:?}"))
    }

    /// Child SAs installed on connection `name` (inbound, outbound SPI).
    pub fn children(&self, name: &str) -> Vec<(u32, u32)> {
        self.conns
            .iter()
            .filter(|c| c.c.name == name)
            .flat_map(|c| c.children.iter().map(|x| (x.inbound, x.outbound)))
            .collect()
    }

    fn outputs(&mut self, k: usize, outs: Vec<Output>, now: u64) {
        for o in outs {
            match o {
                Output::Send { to, data, natt } => {
                    let local = &self.conns[k].c.local;
                    self.out.push(Datagram {
                        local: SocketAddr::new(*local, if natt { NATT_PORT } else { IKE_PORT }),
                        peer: to,
                        data,
                    });
                }
                Output::Event(e) => self.event(k, e, now),
            }
        }
    }

    fn event(&mut self, k: usize, e: Event, now: u64) {
        let m = &self.metrics;
        let conn = &mut self.conns[k];
        let name = conn.c.name.clone();
        match e {
            Event::IkeSaUp {
                spi_i,
                spi_r,
                nat_local,
                nat_remote,
            } => {
                conn.ike.push((spi_i, spi_r));
                if conn
                    .initiator
                    .as_ref()
                    .is_some_and(|i| i.spis() == (spi_i, spi_r))
                {
                    conn.established = true;
                }
                if nat_local {
                    if let Some(p) = conn.natt_peer {
                        conn.keepalive = Some((p, now + self.keepalive_ms));
                    }
                }
                m.ike_sas.fetch_add(1, Ordering::Relaxed);
                let nat = match (nat_local, nat_remote) {
                    (false, false) => "",
                    (true, false) => " (this end behind a NAT)",
                    (false, true) => " (the peer behind a NAT)",
                    (true, true) => " (both ends behind NATs)",
                };
                self.log.push(format!(
                    "{name}: IKE SA {spi_i:016x}_i {spi_r:016x}_r established{nat}"
                ));
            }
            Event::IkeSaRekeyed {
                old_spi_i,
                old_spi_r,
                spi_i,
                spi_r,
            } => {
                // The old SA ends later with IkeSaDown(Rekeyed); count the new one now.
                conn.ike.push((spi_i, spi_r));
                m.ike_sas.fetch_add(1, Ordering::Relaxed);
                m.ike_rekeys.fetch_add(1, Ordering::Relaxed);
                self.log.push(format!(
                    "{name}: IKE SA {old_spi_i:016x}_i {old_spi_r:016x}_r rekeyed to {spi_i:016x}_i {spi_r:016x}_r"
                ));
            }
            Event::IkeSaDown {
                spi_i,
                spi_r,
                reason,
            } => {
                let was_up = conn.ike.contains(&(spi_i, spi_r));
                conn.ike.retain(|s| *s != (spi_i, spi_r));
                if was_up {
                    m.ike_sas.fetch_sub(1, Ordering::Relaxed);
                }
                if let Some(f) = Failure::of(reason) {
                    m.fail(f);
                }
                let ours = conn
                    .initiator
                    .as_ref()
                    .is_some_and(|i| i.spis() == (spi_i, spi_r));
                if ours
                    && !conn.established
                    && conn.c.start_action != StartAction::None
                    && Failure::of(reason).is_some()
                {
                    // Retry an attempt that never got up (start_action = start).
                    conn.start_at = Some(now + conn.c.retry_ms);
                }
                if was_up
                    && reason == DownReason::Timeout
                    && conn.c.dpd_action == DpdAction::Restart
                    && conn.ike.is_empty()
                    && conn.c.remote.is_some()
                {
                    // The peer is dead (DPD or any unanswered request): start over.
                    conn.start_at = Some(now + conn.c.retry_ms);
                }
                if conn.ike.is_empty() {
                    conn.keepalive = None;
                }
                self.log.push(format!(
                    "{name}: IKE SA {spi_i:016x}_i {spi_r:016x}_r down: {}",
                    reason_text(reason)
                ));
            }
            Event::ChildSaUp(c) => {
                if let Some(old) = c.rekey_of {
                    if let Some(x) = conn.children.iter_mut().find(|x| x.inbound == old) {
                        x.replaced = true;
                    }
                    m.child_rekeys.fetch_add(1, Ordering::Relaxed);
                }
                match self.sink.install(&c) {
                    Ok(()) => {
                        conn.children.push(Child {
                            inbound: c.inbound.spi,
                            outbound: c.outbound.spi,
                            replaced: false,
                        });
                        m.child_sas.fetch_add(1, Ordering::Relaxed);
                        self.log.push(format!(
                            "{name}: child SA {:08x}_i {:08x}_o installed",
                            c.inbound.spi, c.outbound.spi
                        ));
                    }
                    Err(e) => {
                        m.fail(Failure::InstallFailed);
                        self.log
                            .push(format!("{name}: child SA not installed: {e}"));
                    }
                }
            }
            Event::ChildSaFailed { notify } => {
                m.fail(Failure::ChildRefused);
                self.log
                    .push(format!("{name}: child SA refused (notify {notify})"));
            }
            Event::ChildSaDown {
                inbound_spi,
                outbound_spi,
            } => {
                let Some(pos) = conn.children.iter().position(|x| x.inbound == inbound_spi) else {
                    return;
                };
                let x = conn.children.remove(pos);
                if x.replaced && self.grace_ms > 0 {
                    self.retire
                        .push((now + self.grace_ms, inbound_spi, outbound_spi));
                } else {
                    self.sink.remove(inbound_spi, outbound_spi);
                    m.child_sas.fetch_sub(1, Ordering::Relaxed);
                }
                self.log.push(format!(
                    "{name}: child SA {inbound_spi:08x}_i {outbound_spi:08x}_o deleted"
                ));
            }
            Event::IkeSaRekeyFailed { notify } => {
                m.fail(Failure::IkeRekeyRefused);
                self.log
                    .push(format!("{name}: IKE SA rekey refused (notify {notify})"));
            }
            // Private-use notifies are an application's business (the key server);
            // a plain IKE daemon has none to send and answers them empty.
            Event::PrivateRequest { .. } | Event::PrivateAnswered { .. } => {}
        }
    }
}

/// A down reason in words (log lines).
pub fn reason_text(r: DownReason) -> String {
    match r {
        DownReason::DeletedByPeer => "deleted by the peer".into(),
        DownReason::DeletedLocally => "deleted locally".into(),
        DownReason::AuthenticationFailed => "authentication failed".into(),
        DownReason::NoProposalChosen => "no proposal chosen".into(),
        DownReason::Timeout => "peer not answering (retransmissions exhausted)".into(),
        DownReason::HalfOpenExpired => "half-open SA expired".into(),
        DownReason::PeerError(n) => format!("peer sent error notify {n}"),
        DownReason::ProtocolError => "protocol error".into(),
        DownReason::Rekeyed => "replaced by a rekey".into(),
        DownReason::Expired => "hard lifetime reached".into(),
    }
}

fn counters_array(c: &IkeCounters, v: &mut [u64; 8]) {
    *v = [
        c.received,
        c.sent,
        c.retransmits,
        c.parse_errors,
        c.integrity_failures,
        c.unknown_spi,
        c.bad_message_id,
        c.cookies_sent,
    ];
}

#[cfg(test)]
mod tests;
