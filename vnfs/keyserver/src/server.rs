//! The key server, sans-IO: datagrams and time in, datagrams out. It wraps one
//! [`Responder`] (IKEv2, RFC 7296) with a PSK per CPE identity, and on each CPE's
//! IKE SA runs the distribution protocol of [`crate::proto`] (README, "Protocol"):
//! a full synchronisation after IKE_AUTH, then make-before-break rotations of each
//! pair's SAs and deletions on revocation. [`crate::udp::serve`] drives it over a
//! socket.
//!
//! CPE liveness (RFC 7296 §2.4, checks as in §1.4): a CPE whose IKE SA has carried
//! no answer for `liveness_interval_ms` gets an INFORMATIONAL request with no
//! payloads; every further interval in which its outstanding request (check or
//! update, retransmitted by the IKE window, §2.1) stays unanswered is a missed check.
//! After `liveness_misses` missed checks in a row the CPE is *down*: its IKE SA is
//! deleted and each online peer gets a DELETE of every epoch of their pair, as on a
//! revocation — but the pair and its keys stay. When the CPE authenticates again,
//! its synchronisation restates the pair and the peer gets the pair's INSTALL
//! records again. Synchronisations of other CPEs leave out the pairs with a down CPE.

use crate::config::{Config, Topology};
#[cfg(feature = "std")]
use crate::journal;
use crate::journal::{JEpoch, JPair, Snapshot};
use crate::keys::KeyArena;
use crate::prelude::*;
use crate::proto::{self, Install, Record, Update, ALL_EPOCHS};
use alloc::collections::{BTreeMap, BinaryHeap, VecDeque};
use core::cmp::Reverse;
use core::net::{IpAddr, SocketAddr};
use hashbrown::{HashMap, HashSet};
use ipsec::crypto::Algorithm;
use ipsec::ike::wire::{Identification, Notify};
use ipsec::ike::{Event, IkeConfig, Output, Responder, TrafficSelector};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// Largest notify body the server puts in one INFORMATIONAL request (keeps the
/// IKE message below common path MTUs).
pub const MAX_UPDATE: usize = 1100;

/// How often the IKE endpoint's timers run (retransmissions, half-open expiry): its
/// `poll` visits every SA, so it does not run on every round.
pub const IKE_TICK_MS: u64 = 20;

/// A datagram to send from the IKE socket.
#[derive(Debug)]
pub struct Transmit {
    pub to: SocketAddr,
    /// Already prefixed with the non-ESP marker when `natt`.
    pub data: Vec<u8>,
    /// Send from the NAT-T port (4500) socket.
    pub natt: bool,
}

/// Counters and gauges (also the metrics endpoint's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// CPEs configured and not revoked.
    pub cpes: u64,
    /// CPEs with an IKE SA now.
    pub online: u64,
    /// CPEs whose full synchronisation has been acknowledged since their IKE SA
    /// came up.
    pub served: u64,
    pub groups: u64,
    pub pairs: u64,
    /// Rotations completed (both ends switched and the old SAs deleted).
    pub rekeys: u64,
    /// Rotations in progress.
    pub rekeys_in_progress: u64,
    pub revocations: u64,
    /// Revocations whose deletes are not yet acknowledged by every online peer.
    pub revocations_pending: u64,
    /// Updates sent / acknowledged.
    pub updates_sent: u64,
    pub updates_acked: u64,
    pub auth_failures: u64,
    pub journal_writes: u64,
    pub journal_errors: u64,
    /// Liveness checks sent (empty INFORMATIONAL requests, RFC 7296 §1.4).
    pub liveness_checks: u64,
    /// Intervals a CPE's outstanding request (check or update) went unanswered.
    pub liveness_missed: u64,
    /// CPEs marked down after too many missed checks (counter).
    pub cpes_marked_down: u64,
    /// CPEs down now (gauge): marked down and not authenticated again.
    pub cpes_down: u64,
    /// DELETEs sent to the peers of CPEs marked down (one per pair).
    pub peer_drops: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Stable,
    /// The new epoch's SAs are being installed (inbound ready, outbound idle).
    Installing {
        a: bool,
        b: bool,
    },
    /// Both ends have them; both are told to send with the new epoch.
    Activating {
        a: bool,
        b: bool,
    },
    /// Both send with the new epoch; the old one is deleted at the deadline.
    Draining,
}

impl Phase {
    fn code(self) -> u8 {
        match self {
            Phase::Stable => 0,
            Phase::Installing { .. } => 1,
            Phase::Activating { .. } => 2,
            Phase::Draining => 3,
        }
    }
}

struct Epoch {
    epoch: u32,
    /// SPI of the SA from `a` to `b` (b's inbound) and back.
    spi_ab: u32,
    spi_ba: u32,
    /// key_ab ‖ key_ba in the arena.
    slot: u32,
}

struct Pair {
    id: u64,
    a: usize,
    b: usize,
    /// Oldest first; two during a rotation.
    epochs: Vec<Epoch>,
    phase: Phase,
    /// When the next rotation starts (Stable) or the old epoch goes (Draining).
    due: u64,
    /// One end is down (liveness): the other was told to drop the pair's SAs.
    suspended: bool,
    /// When the last rotation finished (none since start).
    rotated: Option<u64>,
}

impl Pair {
    fn side(&self, cpe: usize) -> Option<bool> {
        if cpe == self.a {
            Some(true)
        } else if cpe == self.b {
            Some(false)
        } else {
            None
        }
    }
    fn other(&self, cpe: usize) -> usize {
        if cpe == self.a {
            self.b
        } else {
            self.a
        }
    }
    /// The epoch both ends send with (or, installing, still send with).
    fn sending(&self) -> u32 {
        match self.phase {
            Phase::Installing { .. } => self.epochs.first().map_or(0, |e| e.epoch),
            _ => self.epochs.last().map_or(0, |e| e.epoch),
        }
    }
}

/// What an acknowledged update confirms.
#[derive(Clone, Copy, Debug)]
enum Ack {
    Installed { pair: u64, epoch: u32 },
    Activated { pair: u64, epoch: u32 },
    Deleted { pair: u64 },
    Synced,
}

struct Cpe {
    id: String,
    address: IpAddr,
    subnet: (IpAddr, u8),
    revoked: bool,
    /// Local SPI of its IKE SA.
    ike: Option<u64>,
    served: bool,
    outbox: VecDeque<(Record, u8)>,
    inflight: Option<Vec<Ack>>,
    seq: u64,
    pairs: Vec<u64>,
    /// Liveness: when the next check goes out or the next miss is counted.
    live_due: u64,
    /// Missed checks in a row.
    missed: u32,
    /// A liveness check of ours is outstanding.
    probing: bool,
    /// Marked down (liveness) and not authenticated since.
    down: bool,
}

/// A CPE as the management API shows it ([`Server::views`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpeView {
    pub id: String,
    pub revoked: bool,
    /// Its IKE SA is up.
    pub online: bool,
    /// Synchronised on its current IKE SA.
    pub served: bool,
    pub tunnels: Vec<TunnelView>,
}

/// One tunnel of a CPE: its SA generation (the epoch both ends send with) and its
/// rotation times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelView {
    pub peer: String,
    pub generation: u32,
    pub rekeying: bool,
    pub since_rekey_ms: Option<u64>,
    pub next_rekey_ms: Option<u64>,
}

/// A finished revocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    pub id: String,
    /// From `revoke` until every online peer acknowledged the deletes (ms).
    pub took_ms: u64,
}

struct Revocation {
    id: String,
    started: u64,
    /// (peer, pair) deletes not yet acknowledged.
    waiting: HashSet<(usize, u64)>,
}

/// Why the server could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for StartError {}

/// The key server.
pub struct Server {
    responder: Responder,
    algorithm: Algorithm,
    rekey_ms: u64,
    overlap_ms: u64,
    cpes: Vec<Cpe>,
    by_id: HashMap<String, usize>,
    by_spi: HashMap<u64, usize>,
    pairs: HashMap<u64, Pair>,
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    keys: KeyArena,
    spis: HashSet<u32>,
    rng: SystemRandom,
    journal: Option<crate::config::JournalPath>,
    dirty: bool,
    out: Vec<Transmit>,
    stats: Stats,
    revocations: Vec<Revocation>,
    revoked_done: Vec<Revoked>,
    ready: Vec<usize>,
    groups: usize,
    /// IKE SAs to delete once their outstanding request is answered.
    kill: Vec<u64>,
    /// When the IKE endpoint's timers last ran.
    last_ike_poll: u64,
    liveness_ms: u64,
    liveness_misses: u32,
    /// When the liveness sweep last ran.
    last_sweep: u64,
    /// CPEs marked down since the last [`Server::take_down`], with the misses.
    down_done: Vec<String>,
}

/// How often the liveness sweep visits the online CPEs (ms).
pub const LIVENESS_SWEEP_MS: u64 = 50;

/// Stable pair identifier: FNV-1a (64) of the two identities in order.
pub fn pair_id(a: &str, b: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.bytes().chain([0u8]).chain(b.bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn any_ts(v4: bool) -> TrafficSelector {
    let (s, e): (IpAddr, IpAddr) = if v4 {
        ([0u8; 4].into(), [255u8; 4].into())
    } else {
        ([0u8; 16].into(), [255u8; 16].into())
    };
    TrafficSelector {
        ip_proto: 0,
        start_port: 0,
        end_port: 65535,
        start_addr: s,
        end_addr: e,
    }
}

/// The traffic selector of a prefix.
pub fn prefix_ts(p: (IpAddr, u8)) -> TrafficSelector {
    let (start, end) = match p.0 {
        IpAddr::V4(a) => {
            let m = if p.1 == 0 { 0 } else { u32::MAX << (32 - p.1) };
            let s = u32::from(a) & m;
            (
                IpAddr::from(s.to_be_bytes()),
                IpAddr::from((s | !m).to_be_bytes()),
            )
        }
        IpAddr::V6(a) => {
            let m = if p.1 == 0 {
                0
            } else {
                u128::MAX << (128 - p.1)
            };
            let s = u128::from(a) & m;
            (
                IpAddr::from(s.to_be_bytes()),
                IpAddr::from((s | !m).to_be_bytes()),
            )
        }
    };
    TrafficSelector {
        ip_proto: 0,
        start_port: 0,
        end_port: 65535,
        start_addr: start,
        end_addr: end,
    }
}

impl Server {
    /// Builds the server from its configuration, restoring the journal's state
    /// when there is one. `local`: the bound IKE socket's address.
    pub fn new(cfg: &Config, local: SocketAddr, now: u64) -> Result<Server, StartError> {
        let s = &cfg.server;
        let v4 = local.is_ipv4();
        let mut ike = IkeConfig::psk(
            b"unused: per-CPE keys",
            Identification::fqdn(&s.id),
            any_ts(v4),
            any_ts(v4),
        );
        ike.retransmit_ms = s.retransmit_ms;
        ike.retransmit_tries = s.retransmit_tries;
        ike.half_open_limit = 4096;
        let mut responder =
            Responder::new(ike, local).map_err(|_| StartError("random generator failed".into()))?;
        #[cfg(feature = "std")]
        let snap = match &s.journal {
            Some(p) => journal::load(p).map_err(StartError)?,
            None => None,
        };
        // No file system: a restart starts from the configuration (new keys; the
        // CPEs' liveness checks notice and they authenticate again).
        #[cfg(not(feature = "std"))]
        let snap: Option<Snapshot> = match &s.journal {
            Some(_) => {
                return Err(StartError(
                    "server.journal: this build has no file system (the std build keeps one)"
                        .into(),
                ))
            }
            None => None,
        };
        let journal_revoked: HashSet<String> = snap
            .as_ref()
            .map(|s| s.revoked.iter().cloned().collect())
            .unwrap_or_default();
        let mut cpes = Vec::new();
        let mut by_id = HashMap::new();
        for c in &cfg.cpes {
            let revoked = c.revoked || journal_revoked.contains(&c.id);
            if !revoked {
                responder.peer_psks_mut().insert(
                    (ipsec::ike::wire::id_type::FQDN, c.id.as_bytes().to_vec()),
                    Zeroizing::new(c.psk.to_vec()),
                );
            }
            by_id.insert(c.id.clone(), cpes.len());
            cpes.push(Cpe {
                id: c.id.clone(),
                address: c.address,
                subnet: c.subnet,
                revoked,
                ike: None,
                served: false,
                outbox: VecDeque::new(),
                inflight: None,
                seq: 0,
                pairs: Vec::new(),
                live_due: u64::MAX,
                missed: 0,
                probing: false,
                down: false,
            });
        }
        let mut srv = Server {
            responder,
            algorithm: s.algorithm,
            rekey_ms: s.rekey_interval_ms,
            overlap_ms: s.overlap_ms,
            cpes,
            by_id,
            by_spi: HashMap::new(),
            pairs: HashMap::new(),
            heap: BinaryHeap::new(),
            keys: KeyArena::new(),
            spis: HashSet::new(),
            rng: SystemRandom::new(),
            journal: s.journal.clone(),
            dirty: true,
            out: Vec::new(),
            stats: Stats::default(),
            revocations: Vec::new(),
            revoked_done: Vec::new(),
            ready: Vec::new(),
            groups: cfg.groups.len(),
            kill: Vec::new(),
            last_ike_poll: now,
            liveness_ms: s.liveness_interval_ms,
            liveness_misses: s.liveness_misses,
            last_sweep: now,
            down_done: Vec::new(),
        };
        srv.stats.revocations = srv.cpes.iter().filter(|c| c.revoked).count() as u64;
        // The pairs the topology asks for.
        let mut wanted: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
        for g in &cfg.groups {
            let members: Vec<usize> = cfg
                .cpes
                .iter()
                .enumerate()
                .filter(|(k, c)| c.groups.contains(&g.name) && !srv.cpes[*k].revoked)
                .map(|(k, _)| k)
                .collect();
            let hub = |k: usize| g.hubs.contains(&cfg.cpes[k].id);
            for (i, &x) in members.iter().enumerate() {
                for &y in &members[i + 1..] {
                    let link = match g.topology {
                        Topology::FullMesh => true,
                        Topology::HubSpoke => hub(x) || hub(y),
                    };
                    if link {
                        let (a, b) = if cfg.cpes[x].id < cfg.cpes[y].id {
                            (x, y)
                        } else {
                            (y, x)
                        };
                        wanted.insert(pair_id(&srv.cpes[a].id, &srv.cpes[b].id), (a, b));
                    }
                }
            }
        }
        // Restore journaled pairs that are still wanted, with their keys.
        if let Some(snap) = snap {
            for jp in snap.pairs {
                let id = pair_id(&jp.a, &jp.b);
                if !wanted.contains_key(&id) || jp.epochs.is_empty() {
                    continue;
                }
                let (a, b) = wanted[&id];
                let ok = jp.epochs.iter().all(|e| {
                    proto::alg_code(srv.algorithm) == e.alg
                        && e.keys.len() == 2 * srv.algorithm.keymat_len()
                });
                if !ok {
                    continue;
                }
                let mut epochs = Vec::new();
                for e in &jp.epochs {
                    srv.spis.insert(e.spi_ab);
                    srv.spis.insert(e.spi_ba);
                    epochs.push(Epoch {
                        epoch: e.epoch,
                        spi_ab: e.spi_ab,
                        spi_ba: e.spi_ba,
                        slot: srv.keys.alloc(&e.keys),
                    });
                }
                let phase = match (jp.phase, epochs.len()) {
                    (1, 2) => Phase::Installing { a: false, b: false },
                    (2, 2) => Phase::Activating { a: false, b: false },
                    (3, 2) => Phase::Draining,
                    _ => {
                        while epochs.len() > 1 {
                            let e = epochs.remove(0);
                            srv.drop_epoch(e);
                        }
                        Phase::Stable
                    }
                };
                srv.add_pair(id, a, b, epochs, phase, now);
            }
        }
        for (id, (a, b)) in wanted {
            if srv.pairs.contains_key(&id) {
                continue;
            }
            let e = srv
                .new_epoch(0)
                .ok_or_else(|| StartError("random generator failed".into()))?;
            srv.add_pair(id, a, b, vec![e], Phase::Stable, now);
        }
        Ok(srv)
    }

    fn add_pair(
        &mut self,
        id: u64,
        a: usize,
        b: usize,
        epochs: Vec<Epoch>,
        phase: Phase,
        now: u64,
    ) {
        // Spread the first rotations over one interval.
        let due = match phase {
            Phase::Stable => now + self.rekey_ms / 2 + self.random_u64() % (self.rekey_ms / 2 + 1),
            Phase::Draining => now + self.overlap_ms,
            _ => u64::MAX,
        };
        self.cpes[a].pairs.push(id);
        self.cpes[b].pairs.push(id);
        if due != u64::MAX {
            self.heap.push(Reverse((due, id)));
        }
        self.pairs.insert(
            id,
            Pair {
                id,
                a,
                b,
                epochs,
                phase,
                due,
                suspended: false,
                rotated: None,
            },
        );
    }

    fn random_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        let _ = self.rng.fill(&mut b);
        u64::from_be_bytes(b)
    }

    fn new_spi(&mut self) -> Option<u32> {
        for _ in 0..64 {
            let mut b = [0u8; 4];
            self.rng.fill(&mut b).ok()?;
            let s = u32::from_be_bytes(b);
            if s >= 256 && self.spis.insert(s) {
                return Some(s);
            }
        }
        None
    }

    fn new_epoch(&mut self, epoch: u32) -> Option<Epoch> {
        let n = 2 * self.algorithm.keymat_len();
        let mut k = Zeroizing::new(vec![0u8; n]);
        self.rng.fill(&mut k).ok()?;
        let spi_ab = self.new_spi()?;
        let spi_ba = self.new_spi()?;
        Some(Epoch {
            epoch,
            spi_ab,
            spi_ba,
            slot: self.keys.alloc(&k),
        })
    }

    fn drop_epoch(&mut self, e: Epoch) {
        self.spis.remove(&e.spi_ab);
        self.spis.remove(&e.spi_ba);
        self.keys.free(e.slot);
    }

    /// The Install record of `pair`'s epoch `e` for `cpe`.
    fn install_record(&self, p: &Pair, e: &Epoch, cpe: usize, active: bool) -> Record {
        let n = self.algorithm.keymat_len();
        let slot = self.keys.get(e.slot);
        let (kab, kba) = (&slot[..n], &slot[n..2 * n]);
        let is_a = cpe == p.a;
        let me = &self.cpes[cpe];
        let peer = &self.cpes[p.other(cpe)];
        let (spi_in, spi_out, key_in, key_out) = if is_a {
            (e.spi_ba, e.spi_ab, kba, kab)
        } else {
            (e.spi_ab, e.spi_ba, kab, kba)
        };
        let soft_s = (self.rekey_ms * 3 / 2 / 1000).min(u64::from(u32::MAX)) as u32;
        Record::Install(Box::new(Install {
            pair: p.id,
            epoch: e.epoch,
            active,
            algorithm: self.algorithm,
            spi_in,
            spi_out,
            key_in: Zeroizing::new(key_in.to_vec()),
            key_out: Zeroizing::new(key_out.to_vec()),
            soft_s,
            hard_s: soft_s.saturating_mul(2),
            local: me.address,
            peer: peer.address,
            local_ts: prefix_ts(me.subnet),
            remote_ts: prefix_ts(peer.subnet),
            peer_id: peer.id.clone(),
        }))
    }

    fn queue(&mut self, cpe: usize, r: Record, flags: u8) {
        let c = &mut self.cpes[cpe];
        if c.ike.is_none() {
            return;
        }
        c.outbox.push_back((r, flags));
        if c.inflight.is_none() {
            self.ready.push(cpe);
        }
    }

    /// One datagram from the IKE socket (`natt`: the NAT-T port's).
    pub fn handle(&mut self, data: &[u8], from: SocketAddr, natt: bool, now: u64) {
        let out = if natt {
            self.responder.handle_natt(data, from, now)
        } else {
            self.responder.handle(data, from, now)
        };
        self.outputs(out, now);
        self.pump(now);
    }

    /// Timers: IKE retransmissions, rotations, overlap ends.
    pub fn poll(&mut self, now: u64) {
        if now >= self.last_ike_poll + IKE_TICK_MS {
            self.last_ike_poll = now;
            let out = self.responder.poll(now);
            self.outputs(out, now);
        }
        for spi in core::mem::take(&mut self.kill) {
            self.kill_ike(spi, now);
        }
        if self.liveness_ms > 0 && now >= self.last_sweep + LIVENESS_SWEEP_MS {
            self.last_sweep = now;
            self.liveness(now);
        }
        while let Some(&Reverse((t, id))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            let Some(p) = self.pairs.get(&id) else {
                continue;
            };
            if p.due != t {
                continue;
            }
            match p.phase {
                Phase::Stable => self.start_rotation(id, now),
                Phase::Draining => self.finish_rotation(id, now),
                _ => {}
            }
        }
        self.pump(now);
    }

    /// When `poll` next has work (ms), at the latest.
    pub fn next_timeout(&self) -> Option<u64> {
        let h = self.heap.peek().map_or(u64::MAX, |Reverse((t, _))| *t);
        let mut t = h.min(self.last_ike_poll + IKE_TICK_MS);
        if self.liveness_ms > 0 {
            t = t.min(self.last_sweep + LIVENESS_SWEEP_MS);
        }
        Some(t)
    }

    /// The liveness sweep: checks to silent CPEs, misses counted, CPEs marked down.
    fn liveness(&mut self, now: u64) {
        for k in 0..self.cpes.len() {
            let c = &self.cpes[k];
            let Some(spi) = c.ike else { continue };
            if now < c.live_due {
                continue;
            }
            let outstanding = c.probing || c.inflight.is_some() || self.responder.busy(spi);
            if outstanding {
                self.stats.liveness_missed += 1;
                let c = &mut self.cpes[k];
                c.missed += 1;
                if c.missed >= self.liveness_misses {
                    self.mark_down(k, now);
                } else {
                    c.live_due = now + self.liveness_ms;
                }
                continue;
            }
            // An INFORMATIONAL request with no payloads (§1.4); its answer comes as
            // PrivateAnswered without notifies.
            match self.responder.private_request(spi, Vec::new(), now) {
                Ok(out) => {
                    self.stats.liveness_checks += 1;
                    let c = &mut self.cpes[k];
                    c.probing = true;
                    c.live_due = now + self.liveness_ms;
                    self.outputs(out, now);
                }
                Err(_) => {
                    // Not established (any more): its IkeSaDown follows; look again
                    // next interval.
                    self.cpes[k].live_due = now + self.liveness_ms;
                }
            }
        }
    }

    /// An answer (or a new IKE SA) from CPE `k`: it is alive.
    fn heard(&mut self, k: usize, now: u64) {
        let c = &mut self.cpes[k];
        c.missed = 0;
        c.probing = false;
        c.live_due = if self.liveness_ms > 0 {
            now + self.liveness_ms
        } else {
            u64::MAX
        };
    }

    /// CPE `k` missed too many liveness checks: its IKE SA goes and its peers drop
    /// their SAs with it (DELETE of every epoch), as on a revocation; the pairs and
    /// their keys stay for its return.
    fn mark_down(&mut self, k: usize, now: u64) {
        self.stats.cpes_marked_down += 1;
        self.cpes[k].down = true;
        self.down_done.push(self.cpes[k].id.clone());
        if let Some(spi) = self.cpes[k].ike {
            self.by_spi.remove(&spi);
            self.kill_ike(spi, now);
        }
        self.offline(k, now);
        self.cpes[k].probing = false;
        self.cpes[k].missed = 0;
        self.cpes[k].live_due = u64::MAX;
        for pid in self.cpes[k].pairs.clone() {
            let Some(p) = self.pairs.get_mut(&pid) else {
                continue;
            };
            if p.suspended {
                continue;
            }
            p.suspended = true;
            let o = p.other(k);
            if self.online(o) {
                self.stats.peer_drops += 1;
                self.queue(
                    o,
                    Record::Delete {
                        pair: pid,
                        epoch: ALL_EPOCHS,
                    },
                    0,
                );
            }
        }
        self.pump(now);
    }

    /// CPE `k` is back (IKE_AUTH): the peers of its suspended pairs get the pairs'
    /// keys again.
    fn resume(&mut self, k: usize) {
        self.cpes[k].down = false;
        for pid in self.cpes[k].pairs.clone() {
            let Some(p) = self.pairs.get(&pid) else {
                continue;
            };
            if !p.suspended {
                continue;
            }
            let o = p.other(k);
            if self.cpes[o].down {
                continue;
            }
            let sending = p.sending();
            let recs: Vec<Record> = p
                .epochs
                .iter()
                .map(|e| self.install_record(p, e, o, e.epoch == sending))
                .collect();
            if let Some(p) = self.pairs.get_mut(&pid) {
                p.suspended = false;
            }
            if self.online(o) {
                for r in recs {
                    self.queue(o, r, 0);
                }
            }
        }
    }

    /// CPEs marked down (liveness) since the last call.
    pub fn take_down(&mut self) -> Vec<String> {
        core::mem::take(&mut self.down_done)
    }

    fn online(&self, k: usize) -> bool {
        self.cpes[k].ike.is_some()
    }

    fn start_rotation(&mut self, id: u64, now: u64) {
        let Some(p) = self.pairs.get(&id) else { return };
        let (a, b) = (p.a, p.b);
        if !(self.online(a) && self.online(b) && self.cpes[a].served && self.cpes[b].served) {
            // Rotate once both ends are there to take the new keys.
            let due = now + (self.rekey_ms / 10).max(100);
            if let Some(p) = self.pairs.get_mut(&id) {
                p.due = due;
            }
            self.heap.push(Reverse((due, id)));
            return;
        }
        let next = p.epochs.last().map_or(0, |e| e.epoch.wrapping_add(1));
        let Some(e) = self.new_epoch(next) else {
            return;
        };
        let Some(p) = self.pairs.get_mut(&id) else {
            return;
        };
        p.epochs.push(e);
        p.phase = Phase::Installing { a: false, b: false };
        p.due = u64::MAX;
        self.dirty = true;
        self.stats.rekeys_in_progress += 1;
        let Some((p, e)) = self
            .pairs
            .get(&id)
            .and_then(|p| p.epochs.last().map(|e| (p, e)))
        else {
            return;
        };
        let ra = self.install_record(p, e, a, false);
        let rb = self.install_record(p, e, b, false);
        self.queue(a, ra, 0);
        self.queue(b, rb, 0);
    }

    fn finish_rotation(&mut self, id: u64, now: u64) {
        let Some(p) = self.pairs.get_mut(&id) else {
            return;
        };
        if p.epochs.len() < 2 {
            p.phase = Phase::Stable;
            return;
        }
        let old = p.epochs.remove(0);
        p.phase = Phase::Stable;
        p.due = now + self.rekey_ms;
        p.rotated = Some(now);
        let (a, b, due, epoch) = (p.a, p.b, p.due, old.epoch);
        self.heap.push(Reverse((due, id)));
        self.drop_epoch(old);
        self.dirty = true;
        self.stats.rekeys += 1;
        self.stats.rekeys_in_progress = self.stats.rekeys_in_progress.saturating_sub(1);
        self.queue(a, Record::Delete { pair: id, epoch }, 0);
        self.queue(b, Record::Delete { pair: id, epoch }, 0);
    }

    fn outputs(&mut self, out: Vec<Output>, now: u64) {
        for o in out {
            match o {
                Output::Send { to, data, natt } => self.out.push(Transmit { to, data, natt }),
                Output::Event(e) => self.event(e, now),
            }
        }
    }

    fn event(&mut self, e: Event, now: u64) {
        match e {
            Event::IkeSaUp { spi_r, .. } => {
                let Some(id) = self.responder.peer_id(spi_r) else {
                    return;
                };
                let Ok(name) = core::str::from_utf8(&id.data) else {
                    return;
                };
                let Some(&k) = self.by_id.get(name) else {
                    return;
                };
                if self.cpes[k].revoked {
                    return self.kill_ike(spi_r, now);
                }
                if let Some(old) = self.cpes[k].ike.take() {
                    // A new IKE SA replaces the CPE's old one (it restarted).
                    self.by_spi.remove(&old);
                    self.kill_ike(old, now);
                }
                self.cpes[k].ike = Some(spi_r);
                self.cpes[k].inflight = None;
                self.by_spi.insert(spi_r, k);
                self.heard(k, now);
                self.sync(k);
                self.resume(k);
            }
            Event::IkeSaDown { spi_i, spi_r, .. } => {
                for s in [spi_r, spi_i] {
                    if let Some(k) = self.by_spi.remove(&s) {
                        if self.cpes[k].ike == Some(s) {
                            self.offline(k, now);
                        }
                    }
                }
            }
            Event::IkeSaRekeyed {
                old_spi_i,
                old_spi_r,
                spi_i,
                spi_r,
            } => {
                let k = self
                    .by_spi
                    .remove(&old_spi_r)
                    .or_else(|| self.by_spi.remove(&old_spi_i));
                if let Some(k) = k {
                    let new = if self.responder.state(spi_r).is_some() {
                        spi_r
                    } else {
                        spi_i
                    };
                    self.cpes[k].ike = Some(new);
                    self.by_spi.insert(new, k);
                    // An update in flight on the old SA is lost: restate all.
                    self.cpes[k].inflight = None;
                    self.sync(k);
                }
            }
            Event::PrivateAnswered { spi_i, spi_r, .. } => {
                let k = self
                    .by_spi
                    .get(&spi_r)
                    .or_else(|| self.by_spi.get(&spi_i))
                    .copied();
                if let Some(k) = k {
                    let probe = self.cpes[k].probing;
                    self.heard(k, now);
                    if probe {
                        // The answer to a liveness check.
                        if !self.cpes[k].outbox.is_empty() {
                            self.ready.push(k);
                        }
                    } else if let Some(acks) = self.cpes[k].inflight.take() {
                        self.stats.updates_acked += 1;
                        for a in acks {
                            self.ack(k, a, now);
                        }
                        if !self.cpes[k].outbox.is_empty() {
                            self.ready.push(k);
                        }
                    }
                }
            }
            Event::ChildSaUp(_)
            | Event::ChildSaDown { .. }
            | Event::ChildSaFailed { .. }
            | Event::IkeSaRekeyFailed { .. }
            | Event::PrivateRequest { .. } => {}
        }
    }

    /// Deletes an IKE SA (§1.4.1), now or once its outstanding request is done.
    fn kill_ike(&mut self, spi: u64, now: u64) {
        match self.responder.delete_ike(spi, now) {
            Ok(out) => self.outputs(out, now),
            Err(ipsec::ike::RequestError::Busy) => self.kill.push(spi),
            Err(_) => {}
        }
    }

    fn offline(&mut self, k: usize, now: u64) {
        let c = &mut self.cpes[k];
        c.ike = None;
        c.served = false;
        c.outbox.clear();
        c.inflight = None;
        // A peer gone offline learns of revocations in its next synchronisation
        // (the revoked pairs are not restated, so it deletes them).
        let mut i = 0;
        while i < self.revocations.len() {
            self.revocations[i].waiting.retain(|(x, _)| *x != k);
            if self.revocations[i].waiting.is_empty() {
                let r = self.revocations.remove(i);
                self.revoked_done.push(Revoked {
                    id: r.id,
                    took_ms: now.saturating_sub(r.started),
                });
            } else {
                i += 1;
            }
        }
    }

    /// Restates everything `k` should hold.
    fn sync(&mut self, k: usize) {
        self.cpes[k].outbox.clear();
        self.cpes[k].served = false;
        let ids = self.cpes[k].pairs.clone();
        let mut recs = Vec::new();
        for id in ids {
            let Some(p) = self.pairs.get(&id) else {
                continue;
            };
            // A pair whose other end is down is not restated (so dropped).
            if p.suspended && self.cpes[p.other(k)].down {
                continue;
            }
            let sending = p.sending();
            for e in &p.epochs {
                recs.push(self.install_record(p, e, k, e.epoch == sending));
            }
        }
        let n = recs.len();
        if n == 0 {
            self.queue(
                k,
                Record::Delete {
                    pair: 0,
                    epoch: ALL_EPOCHS,
                },
                proto::FLAG_SYNC_BEGIN | proto::FLAG_SYNC_END,
            );
            return;
        }
        for (i, r) in recs.into_iter().enumerate() {
            let mut f = 0;
            if i == 0 {
                f |= proto::FLAG_SYNC_BEGIN;
            }
            if i + 1 == n {
                f |= proto::FLAG_SYNC_END;
            }
            self.queue(k, r, f);
        }
    }

    /// Sends the next update to each CPE that has records queued and none in flight.
    fn pump(&mut self, now: u64) {
        while let Some(k) = self.ready.pop() {
            let c = &mut self.cpes[k];
            let Some(spi) = c.ike else { continue };
            if c.inflight.is_some() || c.outbox.is_empty() || self.responder.busy(spi) {
                continue;
            }
            let mut u = Update {
                flags: 0,
                seq: c.seq,
                records: Vec::new(),
            };
            let mut size = 12;
            let mut acks = Vec::new();
            while let Some((r, f)) = c.outbox.front() {
                let (len, f) = (r.encoded_len(), *f);
                if !u.records.is_empty() && size + len > MAX_UPDATE {
                    break;
                }
                // A sync's end goes alone in the update that ends it, not before.
                if f & proto::FLAG_SYNC_BEGIN != 0 && !u.records.is_empty() {
                    break;
                }
                size += len;
                let Some((r, _)) = c.outbox.pop_front() else {
                    break;
                };
                u.flags |= f;
                match &r {
                    Record::Install(i) => {
                        acks.push(Ack::Installed {
                            pair: i.pair,
                            epoch: i.epoch,
                        });
                        if i.active {
                            acks.push(Ack::Activated {
                                pair: i.pair,
                                epoch: i.epoch,
                            });
                        }
                    }
                    Record::Activate { pair, epoch } => acks.push(Ack::Activated {
                        pair: *pair,
                        epoch: *epoch,
                    }),
                    Record::Delete { pair, epoch } if *epoch == ALL_EPOCHS => {
                        acks.push(Ack::Deleted { pair: *pair })
                    }
                    Record::Delete { .. } => {}
                }
                // The delete-all of pair 0 only marks an empty sync: no instruction.
                let empty_sync_marker =
                    matches!(r, Record::Delete { pair: 0, epoch } if epoch == ALL_EPOCHS);
                if !empty_sync_marker {
                    u.records.push(r);
                }
                if f & proto::FLAG_SYNC_END != 0 {
                    acks.push(Ack::Synced);
                    break;
                }
            }
            c.seq += 1;
            let body = u.encode();
            let n = Notify::new(proto::KS_UPDATE, body.to_vec());
            match self.responder.private_request(spi, vec![n], now) {
                Ok(out) => {
                    self.stats.updates_sent += 1;
                    self.cpes[k].inflight = Some(acks);
                    self.outputs(out, now);
                }
                Err(_) => {
                    // Not established any more: its IkeSaDown follows.
                }
            }
        }
    }

    fn ack(&mut self, k: usize, a: Ack, now: u64) {
        match a {
            Ack::Synced => self.cpes[k].served = true,
            Ack::Deleted { pair } => {
                let mut done = Vec::new();
                for (i, r) in self.revocations.iter_mut().enumerate() {
                    if r.waiting.remove(&(k, pair)) && r.waiting.is_empty() {
                        done.push(i);
                    }
                }
                for i in done.into_iter().rev() {
                    let r = self.revocations.remove(i);
                    self.revoked_done.push(Revoked {
                        id: r.id,
                        took_ms: now.saturating_sub(r.started),
                    });
                }
            }
            Ack::Installed { pair, epoch } => {
                let Some(p) = self.pairs.get_mut(&pair) else {
                    return;
                };
                if p.epochs.last().map(|e| e.epoch) != Some(epoch) {
                    return;
                }
                let side = p.side(k);
                if let (Phase::Installing { a, b }, Some(is_a)) = (&mut p.phase, side) {
                    if is_a {
                        *a = true;
                    } else {
                        *b = true;
                    }
                    if *a && *b {
                        p.phase = Phase::Activating { a: false, b: false };
                        let (x, y) = (p.a, p.b);
                        self.queue(x, Record::Activate { pair, epoch }, 0);
                        self.queue(y, Record::Activate { pair, epoch }, 0);
                    }
                }
            }
            Ack::Activated { pair, epoch } => {
                let overlap = self.overlap_ms;
                let Some(p) = self.pairs.get_mut(&pair) else {
                    return;
                };
                if p.epochs.last().map(|e| e.epoch) != Some(epoch) {
                    return;
                }
                let side = p.side(k);
                if let (Phase::Activating { a, b }, Some(is_a)) = (&mut p.phase, side) {
                    if is_a {
                        *a = true;
                    } else {
                        *b = true;
                    }
                    if *a && *b {
                        p.phase = Phase::Draining;
                        p.due = now + overlap;
                        self.heap.push(Reverse((p.due, pair)));
                    }
                }
            }
        }
    }

    /// Revokes a CPE: it cannot authenticate any more, its IKE SA is deleted, its
    /// pairs are removed and its peers are told to delete their SAs with it now.
    pub fn revoke(&mut self, id: &str, now: u64) -> Result<(), String> {
        let &k = self.by_id.get(id).ok_or_else(|| format!("no CPE {id:?}"))?;
        if self.cpes[k].revoked {
            return Err(format!("CPE {id} is already revoked"));
        }
        self.cpes[k].revoked = true;
        self.stats.revocations += 1;
        self.responder
            .peer_psks_mut()
            .remove(&(ipsec::ike::wire::id_type::FQDN, id.as_bytes().to_vec()));
        if let Some(spi) = self.cpes[k].ike {
            self.by_spi.remove(&spi);
            self.kill_ike(spi, now);
        }
        self.offline(k, now);
        let mut rev = Revocation {
            id: id.to_string(),
            started: now,
            waiting: HashSet::new(),
        };
        for pid in core::mem::take(&mut self.cpes[k].pairs) {
            let Some(mut p) = self.pairs.remove(&pid) else {
                continue;
            };
            let o = p.other(k);
            self.cpes[o].pairs.retain(|x| *x != pid);
            if p.phase != Phase::Stable {
                self.stats.rekeys_in_progress = self.stats.rekeys_in_progress.saturating_sub(1);
            }
            for e in p.epochs.drain(..) {
                self.drop_epoch(e);
            }
            if self.online(o) {
                rev.waiting.insert((o, pid));
                self.queue(
                    o,
                    Record::Delete {
                        pair: pid,
                        epoch: ALL_EPOCHS,
                    },
                    0,
                );
            }
        }
        self.dirty = true;
        if rev.waiting.is_empty() {
            self.revoked_done.push(Revoked {
                id: rev.id,
                took_ms: 0,
            });
        } else {
            self.revocations.push(rev);
        }
        self.pump(now);
        Ok(())
    }

    /// Revocations finished since the last call.
    pub fn take_revoked(&mut self) -> Vec<Revoked> {
        core::mem::take(&mut self.revoked_done)
    }

    /// Datagrams to send (write the journal first: [`Server::flush_journal`]).
    pub fn take_transmits(&mut self) -> Vec<Transmit> {
        core::mem::take(&mut self.out)
    }

    /// Whether new key material awaits the journal.
    pub fn journal_dirty(&self) -> bool {
        self.dirty && self.journal.is_some()
    }

    /// Writes the journal if the state changed. Call before sending the transmits
    /// of the same round, so that no key leaves before it is on disk.
    #[cfg(feature = "std")]
    pub fn flush_journal(&mut self) -> Result<(), String> {
        if !self.dirty {
            return Ok(());
        }
        let Some(path) = self.journal.clone() else {
            self.dirty = false;
            return Ok(());
        };
        let snap = self.snapshot();
        match journal::write_atomic(&path, &snap.encode()) {
            Ok(()) => {
                self.dirty = false;
                self.stats.journal_writes += 1;
                Ok(())
            }
            Err(e) => {
                self.stats.journal_errors += 1;
                Err(format!("{}: {e}", path.display()))
            }
        }
    }

    /// The state as the journal keeps it (keys included: zeroized when dropped).
    pub fn snapshot(&self) -> Snapshot {
        let n = 2 * self.algorithm.keymat_len();
        let mut pairs: Vec<&Pair> = self.pairs.values().collect();
        pairs.sort_by_key(|p| p.id);
        Snapshot {
            revoked: self
                .cpes
                .iter()
                .filter(|c| c.revoked)
                .map(|c| c.id.clone())
                .collect(),
            pairs: pairs
                .into_iter()
                .map(|p| JPair {
                    a: self.cpes[p.a].id.clone(),
                    b: self.cpes[p.b].id.clone(),
                    phase: p.phase.code(),
                    epochs: p
                        .epochs
                        .iter()
                        .map(|e| JEpoch {
                            epoch: e.epoch,
                            spi_ab: e.spi_ab,
                            spi_ba: e.spi_ba,
                            alg: proto::alg_code(self.algorithm),
                            keys: Zeroizing::new(self.keys.get(e.slot)[..n].to_vec()),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.cpes = self.cpes.iter().filter(|c| !c.revoked).count() as u64;
        s.online = self.cpes.iter().filter(|c| c.ike.is_some()).count() as u64;
        s.served = self.cpes.iter().filter(|c| c.served).count() as u64;
        s.groups = self.groups as u64;
        s.pairs = self.pairs.len() as u64;
        s.revocations_pending = self.revocations.len() as u64;
        s.cpes_down = self.cpes.iter().filter(|c| c.down && !c.revoked).count() as u64;
        s.auth_failures = self.responder.counters().auth_failures;
        s
    }

    /// The CPEs and their tunnels as the management API shows them (no key).
    pub fn views(&self, now: u64) -> Vec<CpeView> {
        self.cpes
            .iter()
            .enumerate()
            .map(|(k, c)| CpeView {
                id: c.id.clone(),
                revoked: c.revoked,
                online: c.ike.is_some(),
                served: c.served,
                tunnels: c
                    .pairs
                    .iter()
                    .filter_map(|pid| self.pairs.get(pid))
                    .map(|p| TunnelView {
                        peer: self.cpes[p.other(k)].id.clone(),
                        generation: p.sending(),
                        rekeying: p.phase != Phase::Stable,
                        since_rekey_ms: p.rotated.map(|t| now.saturating_sub(t)),
                        next_rekey_ms: (p.phase == Phase::Stable)
                            .then(|| p.due.saturating_sub(now)),
                    })
                    .collect(),
            })
            .collect()
    }

    /// The rotation interval (ms).
    pub fn rekey_interval_ms(&self) -> u64 {
        self.rekey_ms
    }

    /// Changes the rotation interval at run time: longer than the overlap; a tunnel
    /// whose next rotation is further away than the new interval is due after it.
    pub fn set_rekey_interval(&mut self, ms: u64, now: u64) -> Result<(), String> {
        if ms <= self.overlap_ms {
            return Err(format!(
                "the rekey interval must be longer than the overlap ({} ms)",
                self.overlap_ms
            ));
        }
        self.rekey_ms = ms;
        for p in self.pairs.values_mut() {
            if p.phase == Phase::Stable && p.due > now + ms {
                p.due = now + ms;
                self.heap.push(Reverse((p.due, p.id)));
            }
        }
        Ok(())
    }

    /// Whether CPE `id` is served (synchronised on its current IKE SA).
    pub fn is_served(&self, id: &str) -> bool {
        self.by_id.get(id).is_some_and(|&k| self.cpes[k].served)
    }

    /// Whether the pair keys live in `memfd_secret(2)` memory.
    pub fn keys_in_secret_memory(&self) -> bool {
        self.keys.in_secret_memory()
    }

    /// The IKE endpoint's counters (drops by reason).
    pub fn ike_counters(&self) -> ipsec::ike::IkeCounters {
        self.responder.counters()
    }
}
