//! The vBNG control plane of a disaggregated BNG (BBF TR-459 "BNG-CP"): the
//! monolithic [`ControlPlane`] unchanged, with its fast-path updates turned into PFCP
//! session messages (3GPP TS 29.244 §7.5, TR-459 §6.6 BBF IEs) to the user plane that
//! owns the session's access port, its frames sent to that user plane in GTP-U
//! (TS 29.281; TR-459 control packet redirect), and the user planes' redirected control packets fed to
//! it. See [`super`] for the mapping and the placement rule (user plane `n` = access
//! port `n`).

use super::{
    measurement_period, nat_ies, query_urr, report_counters, router_iid, Datagram, NatBinding,
    NatPlan, FAR_ACCESS, FAR_CORE, PDR_ADDR6, PDR_PD, PDR_UPLINK, PDR_V4, PDR_V6, QER_ID, URR_ID,
};
use crate::config::Placement;
use crate::control::cups::{HeldStop, LOST_SERVICE};
use crate::control::{ControlPlane, FibUpdate, SessionCounters};
use crate::pppoe::AccessKey;
use crate::radius::terminate_cause;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use pfcp::gtpu::{self, Tunnel};
use pfcp::ie::{
    apply_action, bbf, cause, interface, measurement_method, ohc, ohr, trigger, ty,
    BbfOuterHeaderCreation, FSeid, FTeid, Flags, GateStatus, Ie, IeList, MacAddress, Mbr, NodeId,
    OuterHeaderCreation, OuterHeaderRemoval, PppProtocol, SdfFilter, UeIpAddress, VlanTag,
};
use pfcp::msg::{Message, MsgType};
use pfcp::node::{self, Event, Node};

/// The control plane's settings.
#[derive(Debug, Clone)]
pub struct CpConfig {
    /// Our address (PFCP on port 8805, GTP-U on 2152).
    pub addr: Ipv4Addr,
    /// The user planes, by index (= the access port the control plane sees).
    pub ups: Vec<Ipv4Addr>,
    /// The PFCP node's settings (Node ID, Recovery Time Stamp, T1/N1, heartbeats).
    pub node: node::Config,
    /// Measurement Period of the sessions' URR (s): how often user planes report
    /// usage (0: only on deletion and query).
    pub measurement_period_s: u32,
    /// How long to wait before associating again with a user plane that is not
    /// associated (ms).
    pub associate_retry_ms: u64,
    /// The user planes' access port name (BBF Logical Port).
    pub logical_port: Vec<u8>,
    /// How a new line is placed on a user plane.
    pub placement: Placement,
    /// CGNAT (`[cgnat]`): the pool whose port blocks the control plane allocates,
    /// one binding per subscriber session, sent to the user plane in the core FAR.
    pub nat: Option<NatPlan>,
}

impl CpConfig {
    /// Node ID = our IPv4 address; 10 s Measurement Period; association retried
    /// every 5 s.
    pub fn new(addr: Ipv4Addr, ups: Vec<Ipv4Addr>, recovery_time_stamp: u32) -> CpConfig {
        let mut n = node::Config::new(NodeId::Ipv4(addr), recovery_time_stamp);
        n.association_ies = vec![Ie::CpFunctionFeatures(Flags::new(&[0]))];
        CpConfig {
            addr,
            ups,
            node: n,
            measurement_period_s: 10,
            associate_retry_ms: 5_000,
            logical_port: b"access0".to_vec(),
            placement: Placement::AccessPort,
            nat: None,
        }
    }
}

/// Counters of the control plane's PFCP/GTP-U side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpStats {
    /// Associations set up (a user plane came or came back).
    pub associations: u64,
    /// User planes lost (heartbeat loss, restart, release).
    pub ups_lost: u64,
    /// Sessions ended because their user plane was lost.
    pub sessions_lost: u64,
    /// Subscriber sessions established on a user plane.
    pub established: u64,
    /// Establishments refused or unanswered (the session is ended).
    pub establish_failed: u64,
    /// Modifications refused or unanswered.
    pub modify_failed: u64,
    /// Sessions deleted on a user plane (final usage report received).
    pub deleted: u64,
    /// Usage reports applied to the session counters.
    pub reports: u64,
    /// Table updates for a user plane that is not associated (dropped).
    pub no_up: u64,
    /// Frames redirected from user planes to the control plane.
    pub redirected_in: u64,
    /// Frames sent to user planes.
    pub redirected_out: u64,
    /// Frames for a user plane without a redirect tunnel (dropped).
    pub tx_dropped: u64,
    /// GTP-U packets dropped (malformed, unknown TEID or source).
    pub gtpu_dropped: u64,
    /// Our PFCP restarts ([`Cp::restart`]).
    pub restarts: u64,
    /// Sessions established again on their user plane after a restart (the audit).
    pub audited: u64,
    /// Accounting-Stops sent with the counters of the Session Deletion Response's
    /// final usage report.
    pub final_reports: u64,
    /// Placement by load: redirected copies of a line's frames from a user plane
    /// that does not serve the line (dropped).
    pub placement_dropped: u64,
    /// CGNAT bindings allocated and freed (a binding is freed when its session is
    /// gone from its user plane: deleted, refused, or the user plane lost).
    pub nat_allocated: u64,
    pub nat_freed: u64,
    /// Sessions set up without a binding: every port block of the pool was taken.
    pub nat_exhausted: u64,
}

#[derive(Debug, Clone, Default)]
struct UpState {
    associated: bool,
    associating: bool,
    retry_at: u64,
    /// The redirect session's SEID (ours) and the user plane's TEID for frames to it.
    redirect_seid: Option<u64>,
    teid_out: Option<u32>,
}

#[derive(Debug, Clone)]
struct Sess {
    idx: u32,
    up: usize,
    up_seid: Option<u64>,
    /// Modifications waiting for the establishment response.
    queued: Vec<Vec<Ie>>,
    delete: bool,
    ip: u32,
    rate: (u64, u64),
    mtu: u16,
    /// Its Accounting-Stop, held for the Deletion Response's final usage report.
    stop: Option<HeldStop>,
    /// The line and PPPoE session id (for the audit after a restart).
    key: AccessKey,
    sid: u16,
    /// Its downstream IPv6 PDRs (Create PDR IEs by PDR ID), for the audit.
    routes6: BTreeMap<u16, Ie>,
    /// Established again after our restart (the audit), not yet answered.
    audit: bool,
    /// Its CGNAT binding.
    nat: Option<NatBinding>,
}

/// The control plane with its PFCP node and the user planes' state.
pub struct Cp {
    /// The control plane (PPPoE, PPP, AAA, pools, accounting), as in the monolithic
    /// vBNG.
    pub cp: ControlPlane,
    counters: Arc<SessionCounters>,
    cfg: CpConfig,
    node: Node,
    ups: Vec<UpState>,
    /// By our SEID.
    sess: BTreeMap<u64, Sess>,
    /// Session slot → our SEID of its live session.
    by_idx: BTreeMap<u32, u64>,
    /// Session requests in flight: sequence number → our SEID.
    inflight: BTreeMap<u32, u64>,
    next_seid: u64,
    gtpu_seq: u16,
    out: Vec<Datagram>,
    /// Placement by load: the user plane serving each line (MAC, S-VLAN, C-VLAN)
    /// and when the line was last heard through it.
    lines: BTreeMap<([u8; 6], u16, u16), (usize, u64)>,
    /// Lines per user plane (placement by load).
    line_count: Vec<usize>,
    next_line_gc: u64,
    /// CGNAT: which port blocks of the pool are bound (one bit per block, as
    /// [`NatPlan::binding`] numbers them).
    nat_used: Vec<u64>,
    /// Counters.
    pub stats: CpStats,
}

/// Placement by load: a line not heard for this long is forgotten (ms).
const LINE_IDLE_MS: u64 = 300_000;

impl core::fmt::Debug for Cp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cp")
            .field("addr", &self.cfg.addr)
            .field("ups", &self.cfg.ups)
            .field("sessions", &self.sess.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// The line of a frame: source MAC and VLAN ids (outer, inner; 0 = none).
fn line_of(frame: &[u8]) -> Option<([u8; 6], u16, u16)> {
    let mac: [u8; 6] = frame.get(6..12)?.try_into().ok()?;
    let l = dataplane::proto::ethernet::walk_vlans(frame).ok()?;
    let v = dataplane::proto::ethernet::Vlans::from(l.vlans);
    Some((mac, v.svlan, v.cvlan))
}

/// TEID of the redirect tunnel from user plane `n` to us.
pub fn teid_from_up(n: usize) -> u32 {
    0x100 + n as u32
}

impl Cp {
    /// Wraps `cp` (built with `counters`, which the usage reports now fill).
    pub fn new(mut cp: ControlPlane, counters: Arc<SessionCounters>, cfg: CpConfig) -> Cp {
        cp.hold_stops(true);
        let cfg_nat = cfg.nat.clone();
        Cp {
            cp,
            counters,
            node: Node::new(cfg.node.clone()),
            ups: vec![UpState::default(); cfg.ups.len()],
            line_count: vec![0; cfg.ups.len()],
            cfg,
            sess: BTreeMap::new(),
            by_idx: BTreeMap::new(),
            inflight: BTreeMap::new(),
            next_seid: 1,
            gtpu_seq: 0,
            out: Vec::new(),
            lines: BTreeMap::new(),
            next_line_gc: LINE_IDLE_MS,
            nat_used: vec![0; cfg_nat_words(&cfg_nat)],
            stats: CpStats::default(),
        }
    }

    /// The CGNAT pool whose blocks we allocate (`None` without `[cgnat]`).
    pub fn nat_plan(&self) -> Option<&NatPlan> {
        self.cfg.nat.as_ref()
    }

    /// The CGNAT binding of session slot `idx`'s live session.
    pub fn nat_binding(&self, idx: u32) -> Option<NatBinding> {
        self.sess.get(self.by_idx.get(&idx)?)?.nat
    }

    /// Every live session's CGNAT binding (session slot, binding, user plane).
    pub fn nat_bindings(&self) -> impl Iterator<Item = (u32, NatBinding, usize)> + '_ {
        self.by_idx
            .iter()
            .filter_map(|(idx, seid)| self.sess.get(seid).and_then(|s| Some((*idx, s.nat?, s.up))))
    }

    /// CGNAT bindings held (live sessions and sessions being deleted).
    pub fn nat_bound(&self) -> u64 {
        self.nat_used
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum()
    }

    /// Allocates a binding for session slot `idx`, deterministically first (RFC 7422
    /// style): slot k's block is block k div n of address k mod n (n addresses), so
    /// the binding is a function of the slot alone and the same after a control
    /// plane restart that keeps its slots; when that block is still held (a session
    /// being deleted) or the slot is beyond the pool, the next free block in that
    /// order.
    fn nat_alloc(&mut self, idx: u32) -> Option<NatBinding> {
        let plan = self.cfg.nat.as_ref()?;
        let total = plan.blocks();
        if total == 0 {
            return None;
        }
        let bpa = plan.blocks_per_addr as usize;
        let na = plan.addrs.len();
        // Slot k → address k mod n, block k div n (addresses filled evenly).
        let pos = |k: usize| (k % na) * bpa + (k / na) % bpa.max(1);
        let start = idx as usize % total;
        let free =
            |used: &[u64], i: usize| used.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) == 0);
        let i = (0..total)
            .map(|d| pos((start + d) % total))
            .find(|&i| free(&self.nat_used, i));
        let Some(i) = i else {
            self.stats.nat_exhausted += 1;
            return None;
        };
        let b = plan.binding(i)?;
        if let Some(w) = self.nat_used.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
        self.stats.nat_allocated += 1;
        Some(b)
    }

    /// Frees a binding (its session is gone from its user plane).
    fn nat_free(&mut self, b: Option<NatBinding>) {
        let (Some(b), Some(plan)) = (b, self.cfg.nat.as_ref()) else {
            return;
        };
        let Some(r) = plan.blocks_of(&b) else {
            return;
        };
        for i in r {
            if let Some(w) = self.nat_used.get_mut(i / 64) {
                *w &= !(1 << (i % 64));
            }
        }
        self.stats.nat_freed += 1;
    }

    /// Removes a session record, freeing its binding.
    fn drop_sess(&mut self, seid: u64) -> Option<Sess> {
        let s = self.sess.remove(&seid)?;
        self.nat_free(s.nat);
        Some(s)
    }

    fn up_addr(&self, n: usize) -> SocketAddr {
        SocketAddr::from((self.cfg.ups[n], pfcp::msg::PORT))
    }

    fn up_index(&self, peer: SocketAddr) -> Option<usize> {
        (0..self.cfg.ups.len()).find(|&n| self.up_addr(n) == peer)
    }

    /// Whether user plane `n` is associated and its redirect tunnel is up.
    pub fn up_ready(&self, n: usize) -> bool {
        self.ups
            .get(n)
            .is_some_and(|u| u.associated && u.teid_out.is_some())
    }

    /// The user planes' addresses (user plane `n` is access port `n`).
    pub fn up_addrs(&self) -> &[Ipv4Addr] {
        &self.cfg.ups
    }

    /// Whether the PFCP association with user plane `n` is up (TS 29.244 §6.2.6).
    pub fn up_associated(&self, n: usize) -> bool {
        self.ups.get(n).is_some_and(|u| u.associated)
    }

    /// PFCP sessions (subscribers) on user plane `n`.
    pub fn up_sessions(&self, n: usize) -> usize {
        self.sess.values().filter(|s| s.up == n).count()
    }

    /// PFCP requests sent and not yet answered.
    pub fn node_outstanding(&self) -> usize {
        self.node.outstanding()
    }

    /// The PFCP node's counters.
    pub fn node_stats(&self) -> node::Stats {
        self.node.stats()
    }

    /// Associates with every user plane.
    pub fn start(&mut self, now: u64) {
        for n in 0..self.ups.len() {
            self.associate(now, n);
        }
    }

    /// Our PFCP function restarted with the subscriber state kept (a control plane
    /// restarting from its checkpoint, or a standby taking over with it): a new
    /// PFCP node with a new Recovery Time Stamp (TS 29.244 §8.2.65, TS 23.007 §19A)
    /// associates again with every user plane, and each association is followed by
    /// the audit ([`Cp::audit`]). Sessions being deleted lose their deletion (their
    /// Stops go with the last reported counters; the user plane drops them when its
    /// audit window ends unclaimed); modifications not yet answered are re-sent as
    /// part of the audit's complete state.
    pub fn restart(&mut self, now: u64, recovery_time_stamp: u32) {
        self.cfg.node.recovery_time_stamp = recovery_time_stamp;
        self.node = Node::new(self.cfg.node.clone());
        for u in &mut self.ups {
            *u = UpState::default();
        }
        self.inflight.clear();
        // Sessions being deleted (no longer their slot's live session).
        let gone: Vec<u64> = self
            .sess
            .iter()
            .filter(|(k, s)| self.by_idx.get(&s.idx) != Some(k))
            .map(|(k, _)| *k)
            .collect();
        for seid in gone {
            if let Some(h) = self.drop_sess(seid).and_then(|s| s.stop) {
                self.cp.submit_stop(h, now);
            }
        }
        for s in self.sess.values_mut() {
            s.up_seid = None;
            s.queued.clear();
            s.audit = true;
        }
        self.stats.restarts += 1;
        self.start(now);
    }

    /// The audit of user plane `n` after our restart: each of its sessions we hold
    /// is established again with its whole current state (the user plane matches
    /// the line to the session it kept and keeps forwarding it).
    fn audit(&mut self, now: u64, n: usize) {
        let todo: Vec<u64> = self
            .sess
            .iter()
            .filter(|(_, s)| s.up == n && s.audit && s.up_seid.is_none())
            .map(|(k, _)| *k)
            .collect();
        for seid in todo {
            let Some(s) = self.sess.get(&seid) else {
                continue;
            };
            let mut ies = self.establish_ies(seid, s.key, s.sid, s.ip, s.rate, s.mtu, s.nat);
            ies.extend(s.routes6.values().cloned());
            self.send(
                now,
                n,
                MsgType::SessionEstablishmentRequest,
                Some(0),
                ies,
                seid,
            );
        }
    }

    fn associate(&mut self, now: u64, n: usize) {
        let peer = self.up_addr(n);
        let u = &mut self.ups[n];
        u.retry_at = now + self.cfg.associate_retry_ms;
        u.associating = self.node.associate(now, peer).is_ok();
    }

    /// A datagram received (PFCP to port 8805, or a GTP-U packet).
    pub fn input(&mut self, now: u64, d: &Datagram) {
        match d {
            Datagram::Pfcp { src, data, .. } => {
                self.node.handle(now, *src, data);
                self.events(now);
            }
            Datagram::Gtpu(p) => self.gtpu(now, p),
        }
    }

    fn gtpu(&mut self, now: u64, pkt: &[u8]) {
        let Ok(d) = gtpu::decap_frame(pkt) else {
            self.stats.gtpu_dropped += 1;
            return;
        };
        let n = (0..self.cfg.ups.len()).find(|&n| {
            teid_from_up(n) == d.tunnel.teid
                && self.cfg.ups[n] == d.tunnel.src
                && self.ups[n].associated
        });
        match n {
            Some(n) if d.tunnel.dst == self.cfg.addr => {
                if self.cfg.placement == Placement::Load && !self.place(now, n, d.frame) {
                    self.stats.placement_dropped += 1;
                    return;
                }
                self.stats.redirected_in += 1;
                self.cp.input(n as u16, d.frame, now);
            }
            _ => self.stats.gtpu_dropped += 1,
        }
    }

    /// Placement by load: whether user plane `n` serves the line of `frame`. A new
    /// line goes to the ready user plane with the fewest lines; the copies of its
    /// frames that the other user planes redirect are dropped.
    fn place(&mut self, now: u64, n: usize, frame: &[u8]) -> bool {
        let Some(line) = line_of(frame) else {
            return false;
        };
        if now >= self.next_line_gc {
            self.next_line_gc = now + LINE_IDLE_MS;
            let live: BTreeSet<([u8; 6], u16, u16)> = self
                .cp
                .sessions()
                .iter()
                .map(|s| (s.key.mac, s.key.vlans.svlan, s.key.vlans.cvlan))
                .collect();
            let counts = &mut self.line_count;
            self.lines.retain(|l, (u, seen)| {
                let keep = live.contains(l) || now.saturating_sub(*seen) < LINE_IDLE_MS;
                if !keep {
                    counts[*u] = counts[*u].saturating_sub(1);
                }
                keep
            });
        }
        if let Some((u, seen)) = self.lines.get_mut(&line) {
            if *u == n {
                *seen = now;
            }
            return *u == n;
        }
        let best = (0..self.ups.len())
            .filter(|&m| self.up_ready(m))
            .min_by_key(|&m| (self.line_count[m], m));
        match best {
            Some(m) => {
                self.lines.insert(line, (m, now));
                self.line_count[m] += 1;
                m == n
            }
            None => false,
        }
    }

    /// Timers: PFCP (retransmissions, heartbeats), association retries, the control
    /// plane's own; then its table updates become PFCP requests and its frames GTP-U
    /// packets.
    pub fn poll(&mut self, now: u64) {
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
        self.events(now);
        for n in 0..self.ups.len() {
            let u = &self.ups[n];
            if !u.associated && !u.associating && u.retry_at <= now {
                self.associate(now, n);
            }
        }
        self.cp.poll(now);
        self.sync(now);
    }

    /// Sends the control plane's pending table updates and frames (also done by
    /// [`Cp::poll`]).
    pub fn sync(&mut self, now: u64) {
        for u in self.cp.take_fib() {
            self.fib(now, u);
        }
        for (port, f) in self.cp.take_tx() {
            let n = usize::from(port);
            let tunnel = self.ups.get(n).and_then(|u| u.teid_out).map(|teid| Tunnel {
                src: self.cfg.addr,
                dst: self.cfg.ups[n],
                src_port: gtpu::PORT,
                teid,
            });
            let Some(t) = tunnel else {
                self.stats.tx_dropped += 1;
                continue;
            };
            self.gtpu_seq = self.gtpu_seq.wrapping_add(1);
            match gtpu::encap_frame(&t, Some(self.gtpu_seq), &f) {
                Ok(p) => {
                    self.stats.redirected_out += 1;
                    self.out.push(Datagram::Gtpu(p));
                }
                Err(_) => self.stats.tx_dropped += 1,
            }
        }
    }

    /// Asks the user plane for a session's usage now (Query URR); the answer
    /// updates its counters. Returns whether a request went out.
    pub fn query_usage(&mut self, idx: u32, now: u64) -> bool {
        let Some(&seid) = self.by_idx.get(&idx) else {
            return false;
        };
        self.modify(now, seid, vec![query_urr()]);
        true
    }

    /// Datagrams to send.
    pub fn take_datagrams(&mut self) -> Vec<Datagram> {
        let src = SocketAddr::from((self.cfg.addr, pfcp::msg::PORT));
        while let Some(t) = self.node.poll_transmit() {
            self.out.push(Datagram::Pfcp {
                src,
                dst: t.dst,
                data: t.data,
            });
        }
        core::mem::take(&mut self.out)
    }

    fn events(&mut self, now: u64) {
        while let Some(ev) = self.node.poll_event() {
            match ev {
                Event::Associated { peer, .. } => {
                    let Some(n) = self.up_index(peer) else {
                        continue;
                    };
                    self.stats.associations += 1;
                    self.ups[n].associated = true;
                    self.ups[n].associating = false;
                    self.establish_redirect(now, n);
                    self.audit(now, n);
                }
                Event::AssociationRefused { peer, .. } => {
                    if let Some(n) = self.up_index(peer) {
                        self.ups[n].associating = false;
                    }
                }
                Event::PeerLost { peer }
                | Event::PeerRestarted { peer, .. }
                | Event::AssociationReleased { peer } => {
                    if let Some(n) = self.up_index(peer) {
                        self.lost(now, n);
                    }
                }
                Event::Request { peer, msg } => self.request(now, peer, msg),
                Event::Response { peer, request, msg } => self.response(now, peer, request, msg),
                Event::Timeout { peer, seq, request } => {
                    if request == MsgType::AssociationSetupRequest {
                        if let Some(n) = self.up_index(peer) {
                            self.ups[n].associating = false;
                        }
                    }
                    if let Some(seid) = self.inflight.remove(&seq) {
                        self.failed(now, seid, request);
                    }
                }
            }
        }
    }

    /// User plane `n` is gone: its sessions end with Accounting-Stops.
    fn lost(&mut self, now: u64, n: usize) {
        if !self.ups[n].associated {
            return;
        }
        self.stats.ups_lost += 1;
        let u = &mut self.ups[n];
        *u = UpState {
            retry_at: now + self.cfg.associate_retry_ms,
            ..UpState::default()
        };
        let gone: Vec<u64> = self
            .sess
            .iter()
            .filter(|(_, s)| s.up == n)
            .map(|(k, _)| *k)
            .collect();
        for seid in gone {
            // Sessions being deleted there: no final report will come.
            if let Some(h) = self.drop_sess(seid).and_then(|s| s.stop) {
                self.cp.submit_stop(h, now);
            }
        }
        self.by_idx.retain(|_, seid| self.sess.contains_key(seid));
        self.inflight.retain(|_, seid| self.sess.contains_key(seid));
        let ended = self.cp.terminate_port(n as u16, LOST_SERVICE, now);
        self.stats.sessions_lost += ended as u64;
        // Their removals are for a user plane that is gone.
        for u in self.cp.take_fib() {
            self.fib(now, u);
        }
    }

    fn request(&mut self, now: u64, peer: SocketAddr, msg: Message) {
        let seid = msg.header.seid.unwrap_or(0);
        if msg.msg_type() != MsgType::SessionReportRequest {
            // Nothing else is a request to a control plane here.
            let _ = self.node.respond(
                now,
                peer,
                &msg.header,
                msg.header.seid,
                vec![Ie::Cause(cause::REQUEST_REJECTED)],
            );
            return;
        }
        let live = self.sess.get(&seid).filter(|s| {
            self.up_index(peer) == Some(s.up) && self.by_idx.get(&s.idx) == Some(&seid)
        });
        let (c, up_seid) = match live {
            Some(s) => {
                if let Some(v) = report_counters(&msg.ies) {
                    self.counters.set(s.idx, v);
                    self.stats.reports += 1;
                }
                (cause::REQUEST_ACCEPTED, s.up_seid.unwrap_or(0))
            }
            None => (cause::SESSION_CONTEXT_NOT_FOUND, 0),
        };
        let _ = self
            .node
            .respond(now, peer, &msg.header, Some(up_seid), vec![Ie::Cause(c)]);
    }

    fn response(&mut self, now: u64, peer: SocketAddr, request: MsgType, msg: Message) {
        self.inflight.remove(&msg.header.seq);
        let seid = msg.header.seid.unwrap_or(0);
        let accepted = msg.ies.cause().is_some_and(cause::is_accepted);
        let Some(n) = self.up_index(peer) else {
            return;
        };
        if self.ups[n].redirect_seid == Some(seid) {
            if request == MsgType::SessionEstablishmentRequest && accepted {
                self.ups[n].teid_out = msg.ies.all(ty::CREATED_PDR, None).find_map(|p| {
                    match p.children().find(ty::F_TEID) {
                        Some(Ie::FTeid(FTeid::Assigned { teid, .. })) => Some(*teid),
                        _ => None,
                    }
                });
            }
            return;
        }
        match request {
            MsgType::SessionEstablishmentRequest => {
                let up_seid = msg.ies.f_seid().map(|f| f.seid);
                let (Some(up_seid), true) = (up_seid, accepted) else {
                    return self.failed(now, seid, request);
                };
                let Some(s) = self.sess.get_mut(&seid) else {
                    return;
                };
                s.up_seid = Some(up_seid);
                if core::mem::take(&mut s.audit) {
                    self.stats.audited += 1;
                } else {
                    self.stats.established += 1;
                }
                let queued = core::mem::take(&mut s.queued);
                let delete = s.delete;
                for ies in queued {
                    self.modify(now, seid, ies);
                }
                if delete {
                    self.delete(now, seid);
                }
            }
            MsgType::SessionModificationRequest => {
                if !accepted {
                    return self.failed(now, seid, request);
                }
                if let (Some(v), Some(s)) = (report_counters(&msg.ies), self.sess.get(&seid)) {
                    if self.by_idx.get(&s.idx) == Some(&seid) {
                        self.counters.set(s.idx, v);
                        self.stats.reports += 1;
                    }
                }
            }
            MsgType::SessionDeletionRequest => {
                if let Some(s) = self.drop_sess(seid) {
                    self.stats.deleted += 1;
                    if let Some(mut h) = s.stop {
                        // TS 29.244 §7.5.7: the final count of the session.
                        if let Some(c) = report_counters(&msg.ies) {
                            h.set_counters(c);
                            self.stats.final_reports += 1;
                        }
                        self.cp.submit_stop(h, now);
                    }
                }
            }
            _ => {}
        }
    }

    /// A session request was refused or not answered.
    fn failed(&mut self, now: u64, seid: u64, request: MsgType) {
        match request {
            MsgType::SessionEstablishmentRequest => {
                self.stats.establish_failed += 1;
                if let Some(s) = self.drop_sess(seid) {
                    if self.by_idx.get(&s.idx) == Some(&seid) {
                        self.by_idx.remove(&s.idx);
                        // The session has no user plane state: it ends.
                        self.cp.terminate(s.idx, terminate_cause::NAS_REQUEST, now);
                        self.sync(now);
                    }
                }
            }
            MsgType::SessionModificationRequest => self.stats.modify_failed += 1,
            MsgType::SessionDeletionRequest => {
                // No final report: the Stop carries the last one's counters.
                if let Some(h) = self.drop_sess(seid).and_then(|s| s.stop) {
                    self.cp.submit_stop(h, now);
                }
            }
            _ => {}
        }
    }

    fn send(&mut self, now: u64, n: usize, t: MsgType, seid: Option<u64>, ies: Vec<Ie>, ours: u64) {
        let peer = self.up_addr(n);
        if let Ok(seq) = self.node.send_request(now, peer, t, seid, ies) {
            self.inflight.insert(seq, ours);
        }
    }

    fn f_seid(&self, seid: u64) -> Ie {
        Ie::FSeid(FSeid {
            seid,
            v4: Some(self.cfg.addr),
            v6: None,
        })
    }

    /// The redirect session of user plane `n` (TR-459 control packet redirect): PPPoE discovery and
    /// PPP control from the access to us in GTP-U, and our frames back.
    fn establish_redirect(&mut self, now: u64, n: usize) {
        let seid = self.next_seid;
        self.next_seid += 1;
        self.ups[n].redirect_seid = Some(seid);
        self.ups[n].teid_out = None;
        let from_access = |id: u16, ethertype: u16, ppp: bool| {
            let mut pdi = vec![
                Ie::SourceInterface(interface::ACCESS),
                Ie::group(ty::ETHERNET_PACKET_FILTER, vec![Ie::Ethertype(ethertype)]),
                Ie::BbfLogicalPort(self.cfg.logical_port.clone()),
            ];
            if ppp {
                pdi.push(Ie::BbfPppProtocol(PppProtocol {
                    control: true,
                    ..PppProtocol::default()
                }));
            }
            Ie::group(
                ty::CREATE_PDR,
                vec![
                    Ie::PdrId(id),
                    Ie::Precedence(10),
                    Ie::group(ty::PDI, pdi),
                    Ie::FarId(1),
                ],
            )
        };
        // IPoE control (TR-459 control packet redirect of DHCP, ARP and RS/ND):
        // an Ethertype and, for IP, an SDF filter (IPFilterRule, RFC 6733 §4.3).
        let ipoe = |id: u16, ethertype: u16, rule: Option<&str>| {
            let mut pdi = vec![
                Ie::SourceInterface(interface::ACCESS),
                Ie::group(ty::ETHERNET_PACKET_FILTER, vec![Ie::Ethertype(ethertype)]),
                Ie::BbfLogicalPort(self.cfg.logical_port.clone()),
            ];
            if let Some(r) = rule {
                pdi.push(Ie::SdfFilter(SdfFilter {
                    flow_description: Some(r.as_bytes().to_vec()),
                    ..SdfFilter::default()
                }));
            }
            Ie::group(
                ty::CREATE_PDR,
                vec![
                    Ie::PdrId(id),
                    Ie::Precedence(10),
                    Ie::group(ty::PDI, pdi),
                    Ie::FarId(1),
                ],
            )
        };
        let ies = vec![
            Ie::NodeId(self.cfg.node.node_id.clone()),
            self.f_seid(seid),
            from_access(1, 0x8863, false),
            from_access(2, 0x8864, true),
            ipoe(4, 0x0800, Some("permit out 17 from any 68 to any 67")),
            ipoe(5, 0x0806, None),
            ipoe(6, 0x86dd, Some("permit out 58 from any to any")),
            ipoe(7, 0x86dd, Some("permit out 17 from any 546 to any 547")),
            Ie::group(
                ty::CREATE_PDR,
                vec![
                    Ie::PdrId(3),
                    Ie::Precedence(10),
                    Ie::group(
                        ty::PDI,
                        vec![
                            Ie::SourceInterface(interface::CP_FUNCTION),
                            Ie::FTeid(FTeid::Choose {
                                v4: true,
                                v6: false,
                                choose_id: None,
                            }),
                        ],
                    ),
                    Ie::OuterHeaderRemoval(OuterHeaderRemoval {
                        description: ohr::GTPU_UDP_IPV4,
                        extension_header_deletion: None,
                    }),
                    Ie::FarId(2),
                ],
            ),
            Ie::group(
                ty::CREATE_FAR,
                vec![
                    Ie::FarId(1),
                    Ie::ApplyAction(Flags::new(&[apply_action::FORW])),
                    Ie::group(
                        ty::FORWARDING_PARAMETERS,
                        vec![
                            Ie::DestinationInterface(interface::CP_FUNCTION),
                            Ie::OuterHeaderCreation(OuterHeaderCreation {
                                description: ohc::GTPU_UDP_IPV4,
                                teid: Some(teid_from_up(n)),
                                v4: Some(self.cfg.addr),
                                v6: None,
                                port: None,
                                c_tag: None,
                                s_tag: None,
                            }),
                        ],
                    ),
                ],
            ),
            Ie::group(
                ty::CREATE_FAR,
                vec![
                    Ie::FarId(2),
                    Ie::ApplyAction(Flags::new(&[apply_action::FORW])),
                    Ie::group(
                        ty::FORWARDING_PARAMETERS,
                        vec![
                            Ie::DestinationInterface(interface::ACCESS),
                            Ie::BbfLogicalPort(self.cfg.logical_port.clone()),
                        ],
                    ),
                ],
            ),
        ];
        self.send(
            now,
            n,
            MsgType::SessionEstablishmentRequest,
            Some(0),
            ies,
            seid,
        );
    }

    fn modify(&mut self, now: u64, seid: u64, ies: Vec<Ie>) {
        let Some(s) = self.sess.get_mut(&seid) else {
            return;
        };
        match s.up_seid {
            Some(up_seid) => {
                let n = s.up;
                self.send(
                    now,
                    n,
                    MsgType::SessionModificationRequest,
                    Some(up_seid),
                    ies,
                    seid,
                );
            }
            None => s.queued.push(ies),
        }
    }

    fn delete(&mut self, now: u64, seid: u64) {
        let Some(s) = self.sess.get_mut(&seid) else {
            return;
        };
        match s.up_seid {
            Some(up_seid) => {
                let n = s.up;
                self.send(
                    now,
                    n,
                    MsgType::SessionDeletionRequest,
                    Some(up_seid),
                    vec![],
                    seid,
                );
            }
            None => s.delete = true,
        }
    }

    /// Sends one fast-path update as PFCP to the user plane owning the session
    /// (what [`Cp::sync`] does with the control plane's own updates; public for tools
    /// and tests).
    pub fn apply(&mut self, now: u64, u: FibUpdate) {
        self.fib(now, u);
    }

    /// One fast-path update of the control plane, as PFCP.
    fn fib(&mut self, now: u64, u: FibUpdate) {
        let idx = match &u {
            FibUpdate::Add { idx, .. }
            | FibUpdate::Remove { idx, .. }
            | FibUpdate::Down4 { idx, .. }
            | FibUpdate::Rate { idx, .. }
            | FibUpdate::Add6 { idx, .. }
            | FibUpdate::Remove6 { idx, .. }
            | FibUpdate::AddPd { idx, .. }
            | FibUpdate::RemovePd { idx, .. }
            | FibUpdate::AddAddr6 { idx, .. }
            | FibUpdate::RemoveAddr6 { idx, .. } => *idx,
        };
        let seid = self.by_idx.get(&idx).copied();
        match u {
            FibUpdate::Add {
                key,
                sid,
                ip,
                rate,
                mtu,
                ..
            } => match seid {
                None => self.establish(now, idx, key, sid, ip, rate, mtu),
                Some(seid) => {
                    let Some(s) = self.sess.get_mut(&seid) else {
                        return;
                    };
                    let mut ies = Vec::new();
                    if ip != 0 && ip != s.ip {
                        let t = if s.ip == 0 {
                            ty::CREATE_PDR
                        } else {
                            ty::UPDATE_PDR
                        };
                        ies.push(pdr_v4(t, ip));
                        s.ip = ip;
                    }
                    if mtu != s.mtu {
                        s.mtu = mtu;
                        ies.push(Ie::group(
                            ty::UPDATE_FAR,
                            vec![
                                Ie::FarId(FAR_ACCESS),
                                Ie::group(
                                    ty::UPDATE_FORWARDING_PARAMETERS,
                                    vec![
                                        Ie::DestinationInterface(interface::ACCESS),
                                        Ie::BbfMtu(mtu),
                                    ],
                                ),
                            ],
                        ));
                    }
                    if rate != s.rate {
                        s.rate = rate;
                        ies.push(update_qer(rate));
                    }
                    if !ies.is_empty() {
                        self.modify(now, seid, ies);
                    }
                }
            },
            FibUpdate::Remove { .. } => {
                // The Stop waits for the final usage report, if the session has a
                // user plane to send one.
                let mut held = self.cp.take_held_stop(idx);
                if let Some(seid) = seid {
                    self.by_idx.remove(&idx);
                    if let Some(s) = self.sess.get_mut(&seid) {
                        s.stop = held.take();
                    }
                    self.delete(now, seid);
                }
                if let Some(h) = held {
                    self.cp.submit_stop(h, now);
                }
            }
            FibUpdate::Down4 { .. } => {
                if let Some(s) = seid.and_then(|s| self.sess.get_mut(&s)) {
                    if s.ip != 0 {
                        s.ip = 0;
                        self.modify(now, seid.unwrap_or(0), vec![remove_pdr(PDR_V4)]);
                    }
                }
            }
            FibUpdate::Rate { rate, .. } => {
                if let Some(s) = seid.and_then(|s| self.sess.get_mut(&s)) {
                    s.rate = rate;
                    self.modify(now, seid.unwrap_or(0), vec![update_qer(rate)]);
                }
            }
            FibUpdate::Add6 {
                prefix, router_iid, ..
            } => {
                let ue = UeIpAddress {
                    destination: true,
                    v6: Some(Ipv6Addr::from(u128::from(prefix) << 64)),
                    v6_prefix_length: Some(64),
                    ..UeIpAddress::default()
                };
                self.routes(now, seid, PDR_V6, Some((ue, Some(router_iid))));
            }
            FibUpdate::Remove6 { .. } => self.routes(now, seid, PDR_V6, None),
            FibUpdate::AddPd { prefix, len, .. } => {
                let ue = UeIpAddress {
                    destination: true,
                    v6: Some(Ipv6Addr::from(u128::from(prefix) << 64)),
                    v6_prefix_delegation_bits: Some(64u8.saturating_sub(len)),
                    ..UeIpAddress::default()
                };
                self.routes(now, seid, PDR_PD, Some((ue, None)));
            }
            FibUpdate::RemovePd { .. } => self.routes(now, seid, PDR_PD, None),
            FibUpdate::AddAddr6 {
                addr, router_iid, ..
            } => {
                let ue = UeIpAddress {
                    destination: true,
                    v6: Some(Ipv6Addr::from(addr)),
                    ..UeIpAddress::default()
                };
                self.routes(now, seid, PDR_ADDR6, Some((ue, Some(router_iid))));
            }
            FibUpdate::RemoveAddr6 { .. } => self.routes(now, seid, PDR_ADDR6, None),
        }
    }

    /// Creates (`Some`) or removes (`None`) a downstream IPv6 PDR.
    fn routes(
        &mut self,
        now: u64,
        seid: Option<u64>,
        id: u16,
        add: Option<(UeIpAddress, Option<u64>)>,
    ) {
        let Some(seid) = seid else {
            self.stats.no_up += 1;
            return;
        };
        let ie = match add {
            Some((ue, iid)) => {
                let mut c = vec![
                    Ie::PdrId(id),
                    Ie::Precedence(100),
                    Ie::group(
                        ty::PDI,
                        vec![Ie::SourceInterface(interface::CORE), Ie::UeIpAddress(ue)],
                    ),
                    Ie::FarId(FAR_ACCESS),
                    Ie::UrrId(URR_ID),
                    Ie::QerId(QER_ID),
                ];
                if let Some(i) = iid {
                    c.push(router_iid(i));
                }
                Ie::group(ty::CREATE_PDR, c)
            }
            None => remove_pdr(id),
        };
        let adding = matches!(ie.key(), (ty::CREATE_PDR, None));
        if let Some(s) = self.sess.get_mut(&seid) {
            if adding {
                s.routes6.insert(id, ie.clone());
            } else {
                s.routes6.remove(&id);
            }
        }
        self.modify(now, seid, vec![ie]);
    }

    #[allow(clippy::too_many_arguments)]
    fn establish(
        &mut self,
        now: u64,
        idx: u32,
        key: AccessKey,
        sid: u16,
        ip: u32,
        rate: (u64, u64),
        mtu: u16,
    ) {
        let n = usize::from(key.port);
        if !self.ups.get(n).is_some_and(|u| u.associated) {
            self.stats.no_up += 1;
            return;
        }
        let seid = self.next_seid;
        self.next_seid += 1;
        let nat = self.nat_alloc(idx);
        let ies = self.establish_ies(seid, key, sid, ip, rate, mtu, nat);
        self.sess.insert(
            seid,
            Sess {
                idx,
                up: n,
                up_seid: None,
                queued: Vec::new(),
                delete: false,
                ip,
                rate,
                mtu,
                stop: None,
                key,
                sid,
                routes6: BTreeMap::new(),
                audit: false,
                nat,
            },
        );
        self.by_idx.insert(idx, seid);
        self.send(
            now,
            n,
            MsgType::SessionEstablishmentRequest,
            Some(0),
            ies,
            seid,
        );
    }

    /// The Session Establishment Request IEs of a subscriber session (with its
    /// CGNAT binding in the core FAR's Forwarding Parameters).
    #[allow(clippy::too_many_arguments)]
    fn establish_ies(
        &self,
        seid: u64,
        key: AccessKey,
        sid: u16,
        ip: u32,
        rate: (u64, u64),
        mtu: u16,
        nat: Option<NatBinding>,
    ) -> Vec<Ie> {
        let mut filter = vec![Ie::MacAddress(MacAddress {
            src: Some(key.mac),
            ..MacAddress::default()
        })];
        if key.vlans.cvlan != 0 {
            filter.push(Ie::CTag(VlanTag::vid(key.vlans.cvlan)));
        }
        if key.vlans.svlan != 0 {
            filter.push(Ie::STag(VlanTag::vid(key.vlans.svlan)));
        }
        // PPPoE session frames (RFC 2516), or IPoE (sid 0: IPv4 over Ethernet).
        let ipoe = sid == 0;
        filter.push(Ie::Ethertype(if ipoe { 0x0800 } else { 0x8864 }));
        let mut uplink_pdi = vec![
            Ie::SourceInterface(interface::ACCESS),
            Ie::group(ty::ETHERNET_PACKET_FILTER, filter),
            Ie::BbfLogicalPort(self.cfg.logical_port.clone()),
        ];
        if !ipoe {
            uplink_pdi.push(Ie::BbfPppoeSessionId(sid));
            uplink_pdi.push(Ie::BbfPppProtocol(PppProtocol {
                data: true,
                ..PppProtocol::default()
            }));
        }
        if ip != 0 {
            uplink_pdi.push(Ie::UeIpAddress(UeIpAddress {
                v4: Some(Ipv4Addr::from(ip)),
                ..UeIpAddress::default()
            }));
        }
        // §8.2.94/§8.2.95 octets 5–7: the VID flag, then the VID.
        let tag = |v: u16| (v != 0).then_some([0x04, (v >> 8) as u8 & 0x0f, v as u8]);
        let mut ohc_desc = 0;
        if key.vlans.cvlan != 0 {
            ohc_desc |= ohc::C_TAG;
        }
        if key.vlans.svlan != 0 {
            ohc_desc |= ohc::S_TAG;
        }
        let mut to_access = vec![Ie::DestinationInterface(interface::ACCESS)];
        if ohc_desc != 0 {
            to_access.push(Ie::OuterHeaderCreation(OuterHeaderCreation {
                description: ohc_desc,
                teid: None,
                v4: None,
                v6: None,
                port: None,
                c_tag: tag(key.vlans.cvlan),
                s_tag: tag(key.vlans.svlan),
            }));
        }
        if !ipoe {
            to_access.push(Ie::BbfOuterHeaderCreation(BbfOuterHeaderCreation {
                description: bbf::outer_header_creation::PPP,
                tunnel_id: 0,
                session_id: 0,
            }));
        }
        to_access.push(Ie::BbfMtu(mtu));
        let mut ies = vec![
            Ie::NodeId(self.cfg.node.node_id.clone()),
            self.f_seid(seid),
            Ie::group(
                ty::CREATE_PDR,
                vec![
                    Ie::PdrId(PDR_UPLINK),
                    Ie::Precedence(100),
                    Ie::group(ty::PDI, uplink_pdi),
                    Ie::BbfOuterHeaderRemoval(if ipoe {
                        bbf::outer_header_removal::ETHERNET
                    } else {
                        bbf::outer_header_removal::PPP_PPPOE_ETHERNET
                    }),
                    Ie::FarId(FAR_CORE),
                    Ie::UrrId(URR_ID),
                    Ie::QerId(QER_ID),
                ],
            ),
        ];
        if ip != 0 {
            ies.push(pdr_v4(ty::CREATE_PDR, ip));
        }
        let mut urr = vec![
            Ie::UrrId(URR_ID),
            Ie::MeasurementMethod(Flags::new(&[
                measurement_method::DURAT | measurement_method::VOLUM
            ])),
        ];
        if self.cfg.measurement_period_s > 0 {
            urr.push(Ie::ReportingTriggers(Flags::new(&[trigger::PERIO, 0])));
            urr.push(measurement_period(self.cfg.measurement_period_s));
        } else {
            urr.push(Ie::ReportingTriggers(Flags::new(&[0, 0])));
        }
        ies.extend([
            Ie::group(
                ty::CREATE_FAR,
                vec![
                    Ie::FarId(FAR_CORE),
                    Ie::ApplyAction(Flags::new(&[apply_action::FORW])),
                    Ie::group(ty::FORWARDING_PARAMETERS, {
                        let mut fp = vec![Ie::DestinationInterface(interface::CORE)];
                        if let Some(b) = &nat {
                            fp.extend(nat_ies(b));
                        }
                        fp
                    }),
                ],
            ),
            Ie::group(
                ty::CREATE_FAR,
                vec![
                    Ie::FarId(FAR_ACCESS),
                    Ie::ApplyAction(Flags::new(&[apply_action::FORW])),
                    Ie::group(ty::FORWARDING_PARAMETERS, to_access),
                ],
            ),
            Ie::group(ty::CREATE_URR, urr),
            Ie::group(
                ty::CREATE_QER,
                vec![
                    Ie::QerId(QER_ID),
                    Ie::GateStatus(GateStatus { ul: 0, dl: 0 }),
                    mbr(rate),
                ],
            ),
        ]);
        ies
    }
}

/// Words of the binding bitmap of a pool.
fn cfg_nat_words(p: &Option<NatPlan>) -> usize {
    p.as_ref().map_or(0, |p| p.blocks().div_ceil(64))
}

/// MBR from a rate in bit/s (0 = unlimited is sent as 0 kbps).
fn mbr(rate: (u64, u64)) -> Ie {
    Ie::Mbr(Mbr {
        ul_kbps: rate.0.div_ceil(1000),
        dl_kbps: rate.1.div_ceil(1000),
    })
}

fn update_qer(rate: (u64, u64)) -> Ie {
    Ie::group(ty::UPDATE_QER, vec![Ie::QerId(QER_ID), mbr(rate)])
}

fn remove_pdr(id: u16) -> Ie {
    Ie::group(ty::REMOVE_PDR, vec![Ie::PdrId(id)])
}

/// The downstream PDR of the subscriber's IPv4 address.
fn pdr_v4(t: u16, ip: u32) -> Ie {
    Ie::group(
        t,
        vec![
            Ie::PdrId(PDR_V4),
            Ie::Precedence(100),
            Ie::group(
                ty::PDI,
                vec![
                    Ie::SourceInterface(interface::CORE),
                    Ie::UeIpAddress(UeIpAddress {
                        destination: true,
                        v4: Some(Ipv4Addr::from(ip)),
                        ..UeIpAddress::default()
                    }),
                ],
            ),
            Ie::FarId(FAR_ACCESS),
            Ie::UrrId(URR_ID),
            Ie::QerId(QER_ID),
        ],
    )
}
