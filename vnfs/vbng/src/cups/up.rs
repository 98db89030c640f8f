//! A vBNG user plane (BBF TR-459 "BNG-UP"): the [`crate::vnf::build`] worker graph
//! without AAA, programmed over PFCP (3GPP TS 29.244 §7.5 session messages, TR-459
//! §6.6 BBF IEs) by the control plane ([`super::cp`]), with the subscribers' control
//! packets tunnelled to the control plane in GTP-U (TS 29.281 G-PDUs; TR-459's control packet redirect).
//!
//! PFCP sessions become the fast path's [`FibUpdate`]s (see the table in
//! [`super`]), applied through the same update queues ([`FibQueues`]) as in the
//! monolithic vBNG, so the worker registers [`crate::vnf::update_hook`] as usual.
//! Frames the worker punts from the access port are wrapped whole (VLAN tags
//! included: the access line identity) in a G-PDU to the control plane's TEID of the
//! redirect session ([`Up::punted`], [`Up::drain_punts`]); G-PDUs to our TEID are
//! unwrapped and injected on the access port ([`Up::take_inject`]).

use super::{
    nat_binding_of, raw, trigger_immediate, trigger_periodic, trigger_termination, usage_report,
    Datagram, NatBinding, NatPlan, FAR_CORE, MEASUREMENT_PERIOD, QUERY_URR, ROUTER_IID_IE,
};
use crate::config::Config;
use crate::control::{FibUpdate, SessionCounters};
use crate::pppoe::AccessKey;
use crate::vnf::{
    build_workers, BuildEnv, BuildError, FibQueues, NatBindQueue, NatOp, ACCESS_PORT,
};
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddr};
use dataplane::buf::PoolCache;
use dataplane::graph::Graph;
use dataplane::proto::ethernet::Vlans;
use dataplane::worker::PktRing;
use pfcp::gtpu::{self, Tunnel};
use pfcp::ie::{
    bbf, cause, interface, ohc, report_type, ty, FSeid, FTeid, Flags, Ie, IeList, NodeId,
};
use pfcp::msg::{Message, MsgType};
use pfcp::node::{self, Event, Node};

/// A user plane's settings.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// Our address (PFCP on port 8805, GTP-U on 2152).
    pub addr: Ipv4Addr,
    /// The PFCP node's settings (Node ID, Recovery Time Stamp, T1/N1, heartbeats,
    /// the UP Function Features we announce).
    pub node: node::Config,
    /// The TEID we choose for the redirect session's CP-function PDR.
    pub redirect_teid: u32,
    /// The only control plane whose session requests we serve (`None`: any
    /// associated one).
    pub cp: Option<Ipv4Addr>,
    /// How long the sessions of a control plane that restarted (new Recovery Time
    /// Stamp) or stopped answering heartbeats are kept forwarding, waiting for it to
    /// claim them again (its audit); unclaimed ones are then removed (ms).
    pub audit_ms: u64,
}

impl UpConfig {
    /// Node ID = our IPv4 address; announces BBF UP Function Features PPPoE.
    pub fn new(addr: Ipv4Addr, recovery_time_stamp: u32) -> UpConfig {
        let mut n = node::Config::new(NodeId::Ipv4(addr), recovery_time_stamp);
        n.association_ies = vec![
            Ie::UpFunctionFeatures(Flags::new(&[0, 0])),
            Ie::BbfUpFunctionFeatures(Flags::new(&[bbf::up_features::PPPOE, 0, 0, 0])),
        ];
        UpConfig {
            addr,
            node: n,
            redirect_teid: 1,
            cp: None,
            audit_ms: 60_000,
        }
    }

    /// A user plane's settings from its `[cups]` section (the `vbng-up` process and
    /// the `vbng-up` unikernel alike).
    pub fn from_section(s: &crate::config::CupsSection, recovery_time_stamp: u32) -> UpConfig {
        let mut c = UpConfig::new(s.addr, recovery_time_stamp);
        c.node.heartbeat_interval_ms = u64::from(s.heartbeat_s) * 1000;
        c.node.t1_ms = s.t1_ms;
        c.node.n1 = s.n1;
        c.cp = s.cp;
        c
    }
}

/// Counters of a user plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpStats {
    /// Subscriber sessions established.
    pub sessions_established: u64,
    /// Subscriber sessions deleted (by request or because the control plane went).
    pub sessions_deleted: u64,
    /// Session requests refused (no slot, no access line, unknown SEID).
    pub requests_refused: u64,
    /// Frames redirected to the control plane.
    pub redirected: u64,
    /// Frames from the control plane injected on the access port.
    pub injected: u64,
    /// Punted frames dropped: no redirect session yet, or not from the access port.
    pub punt_dropped: u64,
    /// GTP-U packets dropped: malformed, or to a TEID that is not ours.
    pub gtpu_dropped: u64,
    /// Usage reports sent (Session Report Requests).
    pub reports: u64,
    /// Our control plane restarted or was lost: its sessions kept for the audit.
    pub cp_restarts: u64,
    /// Sessions claimed again by a restarted control plane (kept in the fast path).
    pub adopted: u64,
    /// Sessions no control plane claimed within the audit window (removed).
    pub audit_removed: u64,
    /// CGNAT bindings installed in the `nat44` node and removed.
    pub nat_bound: u64,
    pub nat_unbound: u64,
    /// CGNAT bindings refused (outside the pool, not whole blocks, taken by
    /// another session, no subscriber room, or no `[cgnat]` here).
    pub nat_refused: u64,
}

/// What a downstream PDR routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    V4(u32),
    V6 { prefix: u64, iid: u64 },
    Pd { prefix: u64, len: u8 },
    Addr6 { addr: u128, iid: u64 },
}

#[derive(Debug, Clone)]
struct Sess {
    slot: u32,
    cp: SocketAddr,
    cp_seid: u64,
    key: AccessKey,
    sid: u16,
    rate: (u64, u64),
    mtu: u16,
    routes: BTreeMap<u16, Route>,
    created: u64,
    period_ms: u64,
    next_report: u64,
    seqn: u32,
    last: (u64, u64, u64, u64),
    /// Waiting to be claimed by a restarted control plane until then (ms).
    audit_by: Option<u64>,
    /// Its CGNAT binding (claimed in [`UpNat::owner`]) and the inside address it is
    /// installed for in the `nat44` node.
    nat: Option<NatBinding>,
    nat_applied: Option<(Ipv4Addr, NatBinding)>,
}

impl Sess {
    fn ip(&self) -> u32 {
        self.routes
            .values()
            .find_map(|r| match r {
                Route::V4(ip) => Some(*ip),
                _ => None,
            })
            .unwrap_or(0)
    }

    fn add(&self) -> FibUpdate {
        FibUpdate::Add {
            idx: self.slot,
            key: self.key,
            sid: self.sid,
            ip: self.ip(),
            rate: self.rate,
            mtu: self.mtu,
        }
    }

    fn route_add(&self, r: Route) -> Option<FibUpdate> {
        let idx = self.slot;
        Some(match r {
            Route::V4(_) => self.add(),
            Route::V6 { prefix, iid } => FibUpdate::Add6 {
                idx,
                prefix,
                router_iid: iid,
            },
            Route::Pd { prefix, len } => FibUpdate::AddPd { idx, prefix, len },
            Route::Addr6 { addr, iid } => FibUpdate::AddAddr6 {
                idx,
                addr,
                router_iid: iid,
            },
        })
    }

    fn route_remove(&self, r: Route) -> FibUpdate {
        let idx = self.slot;
        match r {
            Route::V4(ip) => FibUpdate::Down4 { idx, ip },
            Route::V6 { prefix, .. } => FibUpdate::Remove6 { idx, prefix },
            Route::Pd { prefix, .. } => FibUpdate::RemovePd { idx, prefix },
            Route::Addr6 { addr, .. } => FibUpdate::RemoveAddr6 { idx, addr },
        }
    }
}

#[derive(Debug, Clone)]
struct Redirect {
    cp: SocketAddr,
    cp_seid: u64,
    /// Our SEID of it.
    seid: u64,
    /// To the control plane (its TEID and address).
    to_cp: Tunnel,
}

/// A user plane: the PFCP node, the fast path's update queues and session table,
/// the redirect tunnel.
pub struct Up {
    cfg: UpConfig,
    node: Node,
    fib: FibQueues,
    counters: Arc<SessionCounters>,
    /// By our SEID.
    sessions: BTreeMap<u64, Sess>,
    /// The sessions by access line (MAC, VLANs, PPPoE session id) and our SEID: a
    /// Session Establishment Request for a line we already hold (a restarted control
    /// plane's audit) is found without a scan of every session. An entry whose
    /// session is gone is stale; lookups check the session.
    by_line: BTreeSet<([u8; 6], Vlans, u16, u64)>,
    free: Vec<u32>,
    gen: u32,
    redirect: Option<Redirect>,
    out: Vec<Datagram>,
    inject: Vec<(u16, Vec<u8>)>,
    gtpu_seq: u16,
    /// Periodic usage reports due: (when, our SEID); an entry whose session moved
    /// its report is stale and skipped.
    due: BTreeSet<(u64, u64)>,
    /// The earliest audit deadline (`u64::MAX`: none).
    next_audit: u64,
    /// CGNAT (`[cgnat]`): the bindings the control plane gave, towards `nat44`.
    nat: Option<UpNat>,
    /// Counters.
    pub stats: UpStats,
}

/// A user plane's CGNAT side: the pool (to check the bindings it is given), the
/// blocks claimed by its sessions, and the queue to the `nat44` node.
struct UpNat {
    plan: NatPlan,
    q: Arc<NatBindQueue>,
    /// Operations the full queue could not take yet (offered again by `poll`).
    backlog: VecDeque<NatOp>,
    /// Block (as [`NatPlan::binding`] numbers them) → our SEID of its session.
    owner: BTreeMap<usize, u64>,
    /// Sessions holding a binding.
    claimed: usize,
}

/// Why a binding was refused: the PFCP Cause (TS 29.244 §8.2.1) and the IE.
type NatRefusal = (u8, u16);

impl UpNat {
    fn push(&mut self, op: NatOp) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(op);
        } else if let Err(op) = self.q.push(op) {
            self.backlog.push_back(op);
        }
    }

    fn flush(&mut self) {
        while let Some(op) = self.backlog.pop_front() {
            if let Err(op) = self.q.push(op) {
                self.backlog.push_front(op);
                break;
            }
        }
    }

    /// Checks and claims `b` for session `seid` (TS 29.244 §7.6: a binding outside
    /// the pool, not whole blocks, or held by another session fails the rule, Cause
    /// 73; no subscriber room, Cause 75).
    fn claim(&mut self, seid: u64, b: &NatBinding) -> Result<(), NatRefusal> {
        let range = self.plan.blocks_of(b).ok_or((
            cause::RULE_CREATION_MODIFICATION_FAILURE,
            bbf::NAT_EXTERNAL_PORT_RANGE,
        ))?;
        if range
            .clone()
            .any(|i| self.owner.get(&i).is_some_and(|o| *o != seid))
        {
            return Err((
                cause::RULE_CREATION_MODIFICATION_FAILURE,
                bbf::NAT_EXTERNAL_PORT_RANGE,
            ));
        }
        let mine = range.clone().any(|i| self.owner.contains_key(&i));
        if !mine && self.claimed >= self.plan.max_subscribers as usize {
            return Err((cause::NO_RESOURCES_AVAILABLE, bbf::NAT_PORT_BLOCK));
        }
        if !mine {
            self.claimed += 1;
        }
        for i in range {
            self.owner.insert(i, seid);
        }
        Ok(())
    }

    fn release(&mut self, seid: u64, b: &NatBinding) {
        let Some(range) = self.plan.blocks_of(b) else {
            return;
        };
        let mut had = false;
        for i in range {
            if self.owner.get(&i) == Some(&seid) {
                self.owner.remove(&i);
                had = true;
            }
        }
        if had {
            self.claimed = self.claimed.saturating_sub(1);
        }
    }
}

/// Brings a session's `nat44` binding in line with its binding and IPv4 address
/// (bound only while both exist).
fn nat_sync(nat: &mut Option<UpNat>, stats: &mut UpStats, s: &mut Sess) {
    let Some(n) = nat.as_mut() else {
        return;
    };
    let ip = s.ip();
    let want = s.nat.filter(|_| ip != 0).map(|b| (Ipv4Addr::from(ip), b));
    if want == s.nat_applied {
        return;
    }
    if let Some((inside, _)) = s.nat_applied.take() {
        n.push(NatOp::Unbind { inside });
        stats.nat_unbound += 1;
    }
    if let Some((inside, b)) = want {
        n.push(NatOp::Bind {
            inside,
            outside: b.outside,
            port_first: b.port_first,
            port_last: b.port_last,
        });
        stats.nat_bound += 1;
    }
    s.nat_applied = want;
}

/// The binding the FARs of a request ask for (`Create FAR` or `Update FAR` with its
/// Forwarding Parameters): `None` when none asks for NAT.
fn far_nat(fars: &[&Ie]) -> Option<Result<NatBinding, NatRefusal>> {
    fars.iter().find_map(|f| {
        let c = f.children();
        let fp = c
            .find(ty::FORWARDING_PARAMETERS)
            .or_else(|| c.find(ty::UPDATE_FORWARDING_PARAMETERS))?;
        nat_binding_of(fp.children())
    })
}

impl core::fmt::Debug for Up {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Up")
            .field("addr", &self.cfg.addr)
            .field("sessions", &self.sessions.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// A built user plane: the PFCP side and the worker graph with its counters.
pub struct UpParts {
    pub up: Up,
    /// Run with `dataplane::worker::Worker` and [`crate::vnf::update_hook`], punt and
    /// inject rings, as the monolithic vBNG. With several workers
    /// ([`Up::build_workers`]) this is worker 0's graph.
    pub graph: Graph,
    /// The graphs of workers 1.. (empty with one worker): run each on a worker of
    /// its own, the workers joined by a hand-off mesh
    /// (`dataplane::worker::handoff_mesh`), as [`crate::runtime::start_workers`]
    /// runs the monolithic vBNG's.
    pub more_graphs: Vec<Graph>,
    pub stats: crate::vnf::Stats,
}

impl Up {
    /// Builds the fast path from `cfg` and `env` (as [`crate::vnf::build`]; the
    /// access MAC is the configured one, the same as the control plane's) and the
    /// PFCP side from `up`. The built control plane is dropped: no AAA here.
    pub fn build(cfg: &Config, env: &BuildEnv, up: UpConfig) -> Result<UpParts, BuildError> {
        Up::build_workers(cfg, env, up, 1)
    }

    /// [`Up::build`] for `workers` workers (1 to [`crate::config::MAX_WORKERS`],
    /// [`crate::vnf::build_workers`]): every session's [`FibUpdate`]s go to every
    /// worker's update queues (each with its own backlog: a worker slow to take its
    /// updates holds up none of the others), each worker counts its packets in its
    /// own block of the session counters and the usage reports read their sum
    /// ([`SessionCounters::get`]). A subscriber's traffic belongs to one worker
    /// (`fastpath::session_owner`: by its IPv4 address once it has one); what
    /// arrives on another is handed over. With `[cgnat]` one worker only: the
    /// control plane allocates the port blocks from the whole pool, while each
    /// worker's `nat44` holds a slice of it (refused with a one-line reason).
    pub fn build_workers(
        cfg: &Config,
        env: &BuildEnv,
        up: UpConfig,
        workers: u16,
    ) -> Result<UpParts, BuildError> {
        let n = env.max_sessions;
        let workers = workers.clamp(1, crate::config::MAX_WORKERS);
        if workers > 1 && cfg.nat_config(n)?.is_some() {
            return Err(BuildError(alloc::format!(
                "workers = {workers} with [cgnat]: a user plane with CGNAT runs one worker (the control plane's port blocks are not split by worker)"
            )));
        }
        // CGNAT: the control plane allocates the port blocks; `nat44` takes them
        // from our queue and allocates none on the fast path.
        let plan = cfg.nat_config(n)?.as_ref().and_then(NatPlan::new);
        let nat = plan.map(|plan| UpNat {
            q: Arc::new(NatBindQueue::new((2 * n as usize).max(1024))),
            plan,
            backlog: VecDeque::new(),
            owner: BTreeMap::new(),
            claimed: 0,
        });
        let env = match &nat {
            Some(u) => env.clone().with_nat_bindings(u.q.clone()),
            None => env.clone(),
        };
        let (v, more_graphs) = build_workers(cfg, &env, workers)?;
        let up = Up {
            node: Node::new(up.node.clone()),
            cfg: up,
            fib: v.control.fib,
            counters: v.stats.sessions.clone(),
            sessions: BTreeMap::new(),
            by_line: BTreeSet::new(),
            free: (0..n).rev().collect(),
            gen: 0,
            redirect: None,
            out: Vec::new(),
            inject: Vec::new(),
            gtpu_seq: 0,
            due: BTreeSet::new(),
            next_audit: u64::MAX,
            nat,
            stats: UpStats::default(),
        };
        Ok(UpParts {
            up,
            graph: v.graph,
            more_graphs,
            stats: v.stats,
        })
    }

    /// Our PFCP address.
    pub fn pfcp_addr(&self) -> SocketAddr {
        SocketAddr::from((self.cfg.addr, pfcp::msg::PORT))
    }

    /// Subscriber sessions installed.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The fast path's update queues (what the PFCP sessions became).
    pub fn fib(&self) -> &FibQueues {
        &self.fib
    }

    /// Whether the control plane's redirect session is established.
    pub fn has_redirect(&self) -> bool {
        self.redirect.is_some()
    }

    /// The PFCP node's counters.
    pub fn node_stats(&self) -> node::Stats {
        self.node.stats()
    }

    /// A datagram received (PFCP to port 8805, or a GTP-U packet).
    pub fn input(&mut self, now: u64, d: &Datagram) {
        match d {
            Datagram::Pfcp { src, data, .. } => {
                self.node.handle(now, *src, data);
                self.events(now);
            }
            Datagram::Gtpu(p) => self.gtpu(p),
        }
    }

    fn gtpu(&mut self, pkt: &[u8]) {
        match gtpu::decap_frame(pkt) {
            Ok(d) if d.tunnel.teid == self.cfg.redirect_teid && d.tunnel.dst == self.cfg.addr => {
                self.stats.injected += 1;
                self.inject.push((ACCESS_PORT, d.frame.to_vec()));
            }
            _ => self.stats.gtpu_dropped += 1,
        }
    }

    /// A frame the worker punted on `port`: redirected to the control plane.
    pub fn punted(&mut self, port: u16, frame: &[u8]) {
        let Some(r) = self.redirect.as_ref().filter(|_| port == ACCESS_PORT) else {
            self.stats.punt_dropped += 1;
            return;
        };
        self.gtpu_seq = self.gtpu_seq.wrapping_add(1);
        match gtpu::encap_frame(&r.to_cp, Some(self.gtpu_seq), frame) {
            Ok(p) => {
                self.stats.redirected += 1;
                self.out.push(Datagram::Gtpu(p));
            }
            Err(_) => self.stats.punt_dropped += 1,
        }
    }

    /// Redirects every packet waiting in a worker's punt `ring` and frees it into
    /// `cache`; returns how many.
    pub fn drain_punts(&mut self, ring: &PktRing, cache: &mut PoolCache) -> usize {
        let mut n = 0;
        while let Some(p) = ring.pop() {
            self.punted(p.meta.port, p.data());
            cache.free(p);
            n += 1;
        }
        n
    }

    /// Timers (PFCP retransmissions and heartbeats, periodic usage reports) and the
    /// fast path's update backlog.
    pub fn poll(&mut self, now: u64) {
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
        self.events(now);
        while let Some(&(t, seid)) = self.due.first() {
            if t > now {
                break;
            }
            self.due.pop_first();
            if self
                .sessions
                .get(&seid)
                .is_some_and(|s| s.period_ms > 0 && s.next_report == t)
            {
                self.report(now, seid);
            }
        }
        if self.next_audit <= now {
            let unclaimed: Vec<u64> = self
                .sessions
                .iter()
                .filter(|(_, s)| s.audit_by.is_some_and(|t| t <= now))
                .map(|(k, _)| *k)
                .collect();
            for seid in unclaimed {
                self.remove(seid);
                self.stats.audit_removed += 1;
            }
            self.next_audit = self
                .sessions
                .values()
                .filter_map(|s| s.audit_by)
                .min()
                .unwrap_or(u64::MAX);
        }
        self.fib.flush();
        if let Some(n) = self.nat.as_mut() {
            n.flush();
        }
    }

    /// CGNAT bindings held by sessions (`None` without `[cgnat]`).
    pub fn nat_claimed(&self) -> Option<usize> {
        self.nat.as_ref().map(|n| n.claimed)
    }

    fn report(&mut self, now: u64, seid: u64) {
        let c = match self.sessions.get(&seid) {
            Some(s) => self.counters.get(s.slot),
            None => return,
        };
        let Some(s) = self.sessions.get_mut(&seid) else {
            return;
        };
        s.next_report = now + s.period_ms;
        self.due.insert((s.next_report, seid));
        if c == s.last {
            return;
        }
        s.last = c;
        s.seqn = s.seqn.wrapping_add(1);
        let ies = vec![
            Ie::ReportType(Flags::new(&[report_type::USAR])),
            usage_report(
                ty::USAGE_REPORT_SRR,
                s.seqn,
                trigger_periodic(),
                c,
                (now.saturating_sub(s.created) / 1000) as u32,
            ),
        ];
        let (cp, cp_seid) = (s.cp, s.cp_seid);
        if self
            .node
            .send_request(now, cp, MsgType::SessionReportRequest, Some(cp_seid), ies)
            .is_ok()
        {
            self.stats.reports += 1;
        }
    }

    /// Datagrams to send.
    pub fn take_datagrams(&mut self) -> Vec<Datagram> {
        let src = self.pfcp_addr();
        while let Some(t) = self.node.poll_transmit() {
            self.out.push(Datagram::Pfcp {
                src,
                dst: t.dst,
                data: t.data,
            });
        }
        core::mem::take(&mut self.out)
    }

    /// Frames from the control plane for the access port (port, frame), for an
    /// [`crate::vnf::Injector`].
    pub fn take_inject(&mut self) -> Vec<(u16, Vec<u8>)> {
        core::mem::take(&mut self.inject)
    }

    fn push(&mut self, u: FibUpdate) {
        self.fib.push(u);
    }

    fn events(&mut self, now: u64) {
        while let Some(ev) = self.node.poll_event() {
            match ev {
                Event::Request { peer, msg } => self.request(now, peer, msg),
                Event::PeerLost { peer } | Event::PeerRestarted { peer, .. } => {
                    self.retain_peer(now, peer)
                }
                Event::AssociationReleased { peer } => self.clear_peer(peer),
                Event::Response { msg, .. }
                    if msg.msg_type() == MsgType::SessionReportResponse
                        && msg.ies.cause() == Some(cause::SESSION_CONTEXT_NOT_FOUND) =>
                {
                    // The control plane no longer knows the session (§7.5.9).
                    if let Some(seid) = msg.header.seid.filter(|s| self.sessions.contains_key(s)) {
                        self.remove(seid);
                    }
                }
                _ => {}
            }
        }
    }

    /// The control plane at `peer` restarted or stopped answering: its sessions keep
    /// forwarding for [`UpConfig::audit_ms`], for it to claim them again
    /// (TS 23.007 §19A leaves what to keep to the node; TR-459 keeps subscribers'
    /// traffic through a control plane restart); its redirect session is gone.
    fn retain_peer(&mut self, now: u64, peer: SocketAddr) {
        self.stats.cp_restarts += 1;
        let by = now.saturating_add(self.cfg.audit_ms);
        for s in self.sessions.values_mut().filter(|s| s.cp == peer) {
            s.audit_by = Some(by);
            s.period_ms = 0;
            s.next_report = u64::MAX;
        }
        if self.sessions.values().any(|s| s.audit_by.is_some()) {
            self.next_audit = self.next_audit.min(by);
        }
        if self.redirect.as_ref().is_some_and(|r| r.cp == peer) {
            self.redirect = None;
        }
    }

    /// The control plane at `peer` is gone: every session it made goes.
    fn clear_peer(&mut self, peer: SocketAddr) {
        let seids: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.cp == peer)
            .map(|(k, _)| *k)
            .collect();
        for s in seids {
            self.remove(s);
        }
        if self.redirect.as_ref().is_some_and(|r| r.cp == peer) {
            self.redirect = None;
        }
    }

    /// Removes a session from the fast path; returns its final counters.
    fn remove(&mut self, seid: u64) -> Option<((u64, u64, u64, u64), Sess)> {
        let mut s = self.sessions.remove(&seid)?;
        self.by_line.remove(&(s.key.mac, s.key.vlans, s.sid, seid));
        let b = s.nat.take();
        nat_sync(&mut self.nat, &mut self.stats, &mut s);
        if let (Some(b), Some(n)) = (b, self.nat.as_mut()) {
            n.release(seid, &b);
        }
        for r in s.routes.values() {
            if !matches!(r, Route::V4(_)) {
                self.push(s.route_remove(*r));
            }
        }
        self.push(FibUpdate::Remove {
            idx: s.slot,
            key: s.key,
            sid: s.sid,
            ip: s.ip(),
        });
        let c = self.counters.get(s.slot);
        self.free.push(s.slot);
        self.stats.sessions_deleted += 1;
        Some((c, s))
    }

    fn respond(&mut self, now: u64, peer: SocketAddr, msg: &Message, seid: u64, ies: Vec<Ie>) {
        // Only fails for a message type without a response: never for requests.
        let _ = self.node.respond(now, peer, &msg.header, Some(seid), ies);
    }

    fn refuse(&mut self, now: u64, peer: SocketAddr, msg: &Message, seid: u64, c: u8, ie: u16) {
        self.stats.requests_refused += 1;
        let mut ies = vec![Ie::Cause(c)];
        if msg.msg_type() == MsgType::SessionEstablishmentRequest {
            ies.insert(0, Ie::NodeId(self.cfg.node.node_id.clone()));
        }
        if ie != 0 {
            ies.push(Ie::OffendingIe(ie));
        }
        self.respond(now, peer, msg, seid, ies);
    }

    /// Refuses a request for its CGNAT binding: Cause 73 "Rule creation/modification
    /// failure" with the Failed Rule ID of the core FAR (TS 29.244 §7.5.3, §8.2.80),
    /// or Cause 67/69/75; the Offending IE names the NAT IE.
    fn refuse_nat(&mut self, now: u64, peer: SocketAddr, msg: &Message, seid: u64, r: NatRefusal) {
        self.stats.nat_refused += 1;
        self.stats.requests_refused += 1;
        let (c, ie) = r;
        let mut ies = vec![Ie::Cause(c)];
        if msg.msg_type() == MsgType::SessionEstablishmentRequest {
            ies.insert(0, Ie::NodeId(self.cfg.node.node_id.clone()));
        }
        ies.push(Ie::OffendingIe(ie));
        if c == cause::RULE_CREATION_MODIFICATION_FAILURE {
            let mut v = vec![FAILED_RULE_FAR];
            v.extend_from_slice(&FAR_CORE.to_be_bytes());
            ies.push(Ie::Unknown(pfcp::ie::RawIe {
                ty: FAILED_RULE_ID,
                enterprise: None,
                data: v,
            }));
        }
        self.respond(now, peer, msg, seid, ies);
    }

    fn request(&mut self, now: u64, peer: SocketAddr, msg: Message) {
        let foreign = match (self.cfg.cp, peer) {
            (Some(cp), SocketAddr::V4(p)) => *p.ip() != cp,
            (Some(_), SocketAddr::V6(_)) => true,
            (None, _) => false,
        };
        if foreign {
            self.stats.requests_refused += 1;
            let _ = self.node.respond(
                now,
                peer,
                &msg.header,
                msg.header.seid,
                vec![Ie::Cause(cause::REQUEST_REJECTED)],
            );
            return;
        }
        match msg.msg_type() {
            MsgType::SessionEstablishmentRequest => self.establish(now, peer, msg),
            MsgType::SessionModificationRequest => self.modify(now, peer, msg),
            MsgType::SessionDeletionRequest => self.delete(now, peer, msg),
            // Nothing else is a request to a user plane: refused (§7.6).
            _ => {
                let _ = self.node.respond(
                    now,
                    peer,
                    &msg.header,
                    msg.header.seid,
                    vec![Ie::Cause(cause::REQUEST_REJECTED)],
                );
            }
        }
    }

    fn establish(&mut self, now: u64, peer: SocketAddr, msg: Message) {
        let Some(FSeid { seid: cp_seid, .. }) = msg.ies.f_seid().cloned() else {
            return self.refuse(now, peer, &msg, 0, cause::MANDATORY_IE_MISSING, ty::F_SEID);
        };
        let fars: Vec<&Ie> = msg.ies.all(ty::CREATE_FAR, None).collect();
        let to_cp = fars.iter().find_map(|f| {
            let fp = f.children().find(ty::FORWARDING_PARAMETERS)?.children();
            if !matches!(
                fp.find(ty::DESTINATION_INTERFACE),
                Some(Ie::DestinationInterface(interface::CP_FUNCTION))
            ) {
                return None;
            }
            match fp.find(ty::OUTER_HEADER_CREATION)? {
                Ie::OuterHeaderCreation(o) if o.description & ohc::GTPU_UDP_IPV4 != 0 => {
                    Some((o.teid?, o.v4?))
                }
                _ => None,
            }
        });
        self.gen = self.gen.wrapping_add(1);
        if let Some((teid, cp_ip)) = to_cp {
            // The redirect session (TR-459 control packet redirect): our TEID for the CP-function PDRs.
            let our_seid = u64::from(self.gen) << 32;
            self.redirect = Some(Redirect {
                cp: peer,
                cp_seid,
                seid: our_seid,
                to_cp: Tunnel {
                    src: self.cfg.addr,
                    dst: cp_ip,
                    src_port: gtpu::PORT,
                    teid,
                },
            });
            let mut ies = vec![
                Ie::NodeId(self.cfg.node.node_id.clone()),
                Ie::Cause(cause::REQUEST_ACCEPTED),
                Ie::FSeid(FSeid {
                    seid: our_seid,
                    v4: Some(self.cfg.addr),
                    v6: None,
                }),
            ];
            for p in msg.ies.all(ty::CREATE_PDR, None) {
                let c = p.children();
                let (Some(Ie::PdrId(id)), Some(pdi)) = (c.find(ty::PDR_ID), c.find(ty::PDI)) else {
                    continue;
                };
                if let Some(Ie::FTeid(FTeid::Choose { .. })) = pdi.children().find(ty::F_TEID) {
                    ies.push(Ie::group(
                        ty::CREATED_PDR,
                        vec![
                            Ie::PdrId(*id),
                            Ie::FTeid(FTeid::Assigned {
                                teid: self.cfg.redirect_teid,
                                v4: Some(self.cfg.addr),
                                v6: None,
                            }),
                        ],
                    ));
                }
            }
            return self.respond(now, peer, &msg, cp_seid, ies);
        }
        // A subscriber: the access line from the uplink PDR.
        let mut line = None;
        for p in msg.ies.all(ty::CREATE_PDR, None) {
            if let Some(l) = access_line(p.children()) {
                line = Some(l);
            }
        }
        let Some((mac, vlans, sid)) = line else {
            return self.refuse(
                now,
                peer,
                &msg,
                cp_seid,
                cause::MANDATORY_IE_INCORRECT,
                ty::CREATE_PDR,
            );
        };
        // A restarted control plane claiming a session we kept (its audit).
        let sessions = &self.sessions;
        let kept = self
            .by_line
            .range((mac, vlans, sid, 0)..=(mac, vlans, sid, u64::MAX))
            .map(|e| e.3)
            .find(|seid| {
                sessions.get(seid).is_some_and(|s| {
                    s.cp == peer && s.key.mac == mac && s.key.vlans == vlans && s.sid == sid
                })
            });
        if let Some(seid) = kept {
            return self.adopt(now, peer, &msg, seid, cp_seid);
        }
        let nat = match (far_nat(&fars), self.nat.is_some()) {
            (None, _) => None,
            (Some(Err(r)), _) => return self.refuse_nat(now, peer, &msg, cp_seid, r),
            (Some(Ok(_)), false) => {
                // No `[cgnat]` here: the rule cannot be created.
                let r = (cause::RULE_CREATION_MODIFICATION_FAILURE, bbf::APPLY_ACTION);
                return self.refuse_nat(now, peer, &msg, cp_seid, r);
            }
            (Some(Ok(b)), true) => Some(b),
        };
        let Some(slot) = self.free.pop() else {
            return self.refuse(now, peer, &msg, cp_seid, cause::NO_RESOURCES_AVAILABLE, 0);
        };
        let our_seid = (u64::from(self.gen) << 32) | u64::from(slot + 1);
        if let (Some(b), Some(n)) = (&nat, self.nat.as_mut()) {
            if let Err(r) = n.claim(our_seid, b) {
                self.free.push(slot);
                return self.refuse_nat(now, peer, &msg, cp_seid, r);
            }
        }
        let mut s = Sess {
            slot,
            cp: peer,
            cp_seid,
            key: AccessKey {
                port: ACCESS_PORT,
                mac,
                vlans,
            },
            sid,
            rate: (0, 0),
            mtu: 1492,
            routes: BTreeMap::new(),
            created: now,
            period_ms: 0,
            next_report: u64::MAX,
            seqn: 0,
            last: (0, 0, 0, 0),
            audit_by: None,
            nat,
            nat_applied: None,
        };
        for p in msg.ies.all(ty::CREATE_PDR, None) {
            if let Some((id, r)) = downstream(p.children()) {
                s.routes.insert(id, r);
            }
        }
        for f in fars {
            if let Some(m) = far_mtu(f.children()) {
                s.mtu = m;
            }
        }
        for q in msg.ies.all(ty::CREATE_QER, None) {
            if let Some(r) = qer_rate(q.children()) {
                s.rate = r;
            }
        }
        for u in msg.ies.all(ty::CREATE_URR, None) {
            if let Some(p) = raw(u.children(), MEASUREMENT_PERIOD, None)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
            {
                s.period_ms = u64::from(u32::from_be_bytes(p)) * 1000;
                s.next_report = now + s.period_ms;
            }
        }
        self.counters.reset(slot);
        self.push(s.add());
        for r in s.routes.values() {
            if !matches!(r, Route::V4(_)) {
                if let Some(u) = s.route_add(*r) {
                    self.push(u);
                }
            }
        }
        if s.period_ms > 0 {
            self.due.insert((s.next_report, our_seid));
        }
        nat_sync(&mut self.nat, &mut self.stats, &mut s);
        self.by_line.insert((mac, vlans, sid, our_seid));
        self.sessions.insert(our_seid, s);
        self.stats.sessions_established += 1;
        let ies = vec![
            Ie::NodeId(self.cfg.node.node_id.clone()),
            Ie::Cause(cause::REQUEST_ACCEPTED),
            Ie::FSeid(FSeid {
                seid: our_seid,
                v4: Some(self.cfg.addr),
                v6: None,
            }),
        ];
        self.respond(now, peer, &msg, cp_seid, ies);
    }

    /// Session Establishment for a session we kept: it is the control plane's again
    /// (its new SEID), the fast path keeps forwarding it; what changed (routes, rate,
    /// MTU) is applied.
    fn adopt(&mut self, now: u64, peer: SocketAddr, msg: &Message, seid: u64, cp_seid: u64) {
        let Some(mut s) = self.sessions.remove(&seid) else {
            return;
        };
        s.cp_seid = cp_seid;
        s.audit_by = None;
        let mut routes = BTreeMap::new();
        for p in msg.ies.all(ty::CREATE_PDR, None) {
            if let Some((id, r)) = downstream(p.children()) {
                routes.insert(id, r);
            }
        }
        let mut ups = Vec::new();
        let mut readd = false;
        for (id, r) in &s.routes {
            if routes.get(id) != Some(r) {
                ups.push(s.route_remove(*r));
            }
        }
        for (id, r) in &routes {
            if s.routes.get(id) != Some(r) {
                if matches!(r, Route::V4(_)) {
                    readd = true;
                } else if let Some(u) = s.route_add(*r) {
                    ups.push(u);
                }
            }
        }
        s.routes = routes;
        for f in msg.ies.all(ty::CREATE_FAR, None) {
            if let Some(m) = far_mtu(f.children()).filter(|m| *m != s.mtu) {
                s.mtu = m;
                readd = true;
            }
        }
        for q in msg.ies.all(ty::CREATE_QER, None) {
            if let Some(r) = qer_rate(q.children()).filter(|r| *r != s.rate) {
                s.rate = r;
                ups.push(FibUpdate::Rate {
                    idx: s.slot,
                    rate: r,
                });
            }
        }
        if readd {
            ups.push(s.add());
        }
        for u in msg.ies.all(ty::CREATE_URR, None) {
            if let Some(p) = raw(u.children(), MEASUREMENT_PERIOD, None)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
            {
                s.period_ms = u64::from(u32::from_be_bytes(p)) * 1000;
                s.next_report = now + s.period_ms;
            }
        }
        for u in ups {
            self.push(u);
        }
        if s.period_ms > 0 {
            self.due.insert((s.next_report, seid));
        }
        // The restarted control plane's binding (the same one when its allocation
        // kept the slot's; a different one replaces ours when it is free).
        let fars: Vec<&Ie> = msg.ies.all(ty::CREATE_FAR, None).collect();
        if let (Some(Ok(b)), Some(n)) = (far_nat(&fars), self.nat.as_mut()) {
            if s.nat != Some(b) {
                let old = s.nat;
                if let Some(o) = &old {
                    n.release(seid, o);
                }
                if n.claim(seid, &b).is_ok() {
                    s.nat = Some(b);
                } else {
                    self.stats.nat_refused += 1;
                    if let Some(o) = &old {
                        let _ = n.claim(seid, o);
                    }
                }
            }
        }
        nat_sync(&mut self.nat, &mut self.stats, &mut s);
        self.sessions.insert(seid, s);
        self.stats.adopted += 1;
        let ies = vec![
            Ie::NodeId(self.cfg.node.node_id.clone()),
            Ie::Cause(cause::REQUEST_ACCEPTED),
            Ie::FSeid(FSeid {
                seid,
                v4: Some(self.cfg.addr),
                v6: None,
            }),
        ];
        self.respond(now, peer, msg, cp_seid, ies);
    }

    fn modify(&mut self, now: u64, peer: SocketAddr, msg: Message) {
        let seid = msg.header.seid.unwrap_or(0);
        // A control plane that does not own the session gets Cause 65 and the
        // session stays as it is (checked before it is taken out of the map).
        if self.sessions.get(&seid).is_none_or(|s| s.cp != peer) {
            return self.unknown(now, peer, &msg, seid);
        }
        let Some(mut s) = self.sessions.remove(&seid) else {
            return self.unknown(now, peer, &msg, seid);
        };
        // A new binding (Update FAR, Update Forwarding Parameters): checked before
        // anything changes; refused, the session stays as it was.
        let fars: Vec<&Ie> = msg.ies.all(ty::UPDATE_FAR, None).collect();
        match (far_nat(&fars), self.nat.as_mut()) {
            (None, _) => {}
            (Some(Err(r)), _) => {
                let cp_seid = s.cp_seid;
                self.sessions.insert(seid, s);
                return self.refuse_nat(now, peer, &msg, cp_seid, r);
            }
            (Some(Ok(_)), None) => {
                let cp_seid = s.cp_seid;
                self.sessions.insert(seid, s);
                let r = (cause::RULE_CREATION_MODIFICATION_FAILURE, bbf::APPLY_ACTION);
                return self.refuse_nat(now, peer, &msg, cp_seid, r);
            }
            (Some(Ok(b)), Some(n)) => {
                if s.nat != Some(b) {
                    if let Some(o) = s.nat {
                        n.release(seid, &o);
                    }
                    if let Err(r) = n.claim(seid, &b) {
                        if let Some(o) = s.nat {
                            let _ = n.claim(seid, &o);
                        }
                        let cp_seid = s.cp_seid;
                        self.sessions.insert(seid, s);
                        return self.refuse_nat(now, peer, &msg, cp_seid, r);
                    }
                    s.nat = Some(b);
                }
            }
        }
        let mut ups = Vec::new();
        let mut readd = false;
        for p in msg.ies.all(ty::REMOVE_PDR, None) {
            if let Some(Ie::PdrId(id)) = p.children().find(ty::PDR_ID) {
                if let Some(r) = s.routes.remove(id) {
                    ups.push(s.route_remove(r));
                }
            }
        }
        for p in msg
            .ies
            .all(ty::CREATE_PDR, None)
            .chain(msg.ies.all(ty::UPDATE_PDR, None))
        {
            if let Some((id, r)) = downstream(p.children()) {
                if let Some(old) = s.routes.insert(id, r).filter(|o| *o != r) {
                    ups.push(s.route_remove(old));
                }
                if matches!(r, Route::V4(_)) {
                    readd = true;
                } else if let Some(u) = s.route_add(r) {
                    ups.push(u);
                }
            }
        }
        for f in msg.ies.all(ty::UPDATE_FAR, None) {
            let m = f
                .children()
                .find(ty::UPDATE_FORWARDING_PARAMETERS)
                .and_then(|fp| {
                    match fp.children().all(bbf::MTU, Some(bbf::ENTERPRISE_ID)).next() {
                        Some(Ie::BbfMtu(m)) => Some(*m),
                        _ => None,
                    }
                });
            if let Some(m) = m.filter(|m| *m != s.mtu) {
                s.mtu = m;
                readd = true;
            }
        }
        for q in msg.ies.all(ty::UPDATE_QER, None) {
            if let Some(r) = qer_rate(q.children()) {
                s.rate = r;
                ups.push(FibUpdate::Rate {
                    idx: s.slot,
                    rate: r,
                });
            }
        }
        if readd {
            ups.push(s.add());
        }
        for u in ups {
            self.push(u);
        }
        nat_sync(&mut self.nat, &mut self.stats, &mut s);
        let mut ies = vec![Ie::Cause(cause::REQUEST_ACCEPTED)];
        if raw(&msg.ies, QUERY_URR, None).is_some() {
            let c = self.counters.get(s.slot);
            s.seqn = s.seqn.wrapping_add(1);
            ies.push(usage_report(
                ty::USAGE_REPORT_SMR,
                s.seqn,
                trigger_immediate(),
                c,
                (now.saturating_sub(s.created) / 1000) as u32,
            ));
        }
        let cp_seid = s.cp_seid;
        self.sessions.insert(seid, s);
        self.respond(now, peer, &msg, cp_seid, ies);
    }

    fn delete(&mut self, now: u64, peer: SocketAddr, msg: Message) {
        let seid = msg.header.seid.unwrap_or(0);
        if self
            .redirect
            .as_ref()
            .is_some_and(|r| r.cp == peer && r.seid == seid)
        {
            let cp_seid = self.redirect.take().map_or(0, |r| r.cp_seid);
            return self.respond(
                now,
                peer,
                &msg,
                cp_seid,
                vec![Ie::Cause(cause::REQUEST_ACCEPTED)],
            );
        }
        if self.sessions.get(&seid).is_none_or(|s| s.cp != peer) {
            return self.unknown(now, peer, &msg, seid);
        }
        let Some((c, s)) = self.remove(seid) else {
            return;
        };
        let ies = vec![
            Ie::Cause(cause::REQUEST_ACCEPTED),
            usage_report(
                ty::USAGE_REPORT_SDR,
                s.seqn.wrapping_add(1),
                trigger_termination(),
                c,
                (now.saturating_sub(s.created) / 1000) as u32,
            ),
        ];
        self.respond(now, peer, &msg, s.cp_seid, ies);
    }

    /// Cause 65 "Session context not found" (§7.5.4/§7.5.6), to SEID 0.
    fn unknown(&mut self, now: u64, peer: SocketAddr, msg: &Message, _seid: u64) {
        self.refuse(now, peer, msg, 0, cause::SESSION_CONTEXT_NOT_FOUND, 0);
    }
}

/// Failed Rule ID (TS 29.244 §8.2.80, IE type 114): not decoded by `pfcp`, sent
/// raw; Rule ID Type 1 is a FAR (its FAR ID follows, 4 octets).
pub const FAILED_RULE_ID: u16 = 114;
const FAILED_RULE_FAR: u8 = 1;

/// The access line of an uplink PDR: (MAC, VLANs, PPPoE session id).
fn access_line(pdr: &[Ie]) -> Option<([u8; 6], Vlans, u16)> {
    let pdi = pdr.find(ty::PDI)?.children();
    if !matches!(
        pdi.find(ty::SOURCE_INTERFACE),
        Some(Ie::SourceInterface(interface::ACCESS))
    ) {
        return None;
    }
    let epf = pdi.find(ty::ETHERNET_PACKET_FILTER)?.children();
    let mac = match epf.find(ty::MAC_ADDRESS)? {
        Ie::MacAddress(m) => m.src?,
        _ => return None,
    };
    let vid = |t| match epf.find(t) {
        Some(Ie::CTag(v) | Ie::STag(v)) => v.vid.unwrap_or(0),
        _ => 0,
    };
    let vlans = Vlans {
        svlan: vid(ty::S_TAG),
        cvlan: vid(ty::C_TAG),
    };
    // PPPoE: the session id; IPoE (Ethertype IPv4, no PPPoE session): 0.
    let sid = match pdi
        .all(bbf::PPPOE_SESSION_ID, Some(bbf::ENTERPRISE_ID))
        .next()
    {
        Some(Ie::BbfPppoeSessionId(s)) if *s != 0 => *s,
        None if matches!(epf.find(ty::ETHERTYPE), Some(Ie::Ethertype(0x0800))) => 0,
        _ => return None,
    };
    Some((mac, vlans, sid))
}

/// A downstream PDR (Source Interface Core): its id and what it routes.
fn downstream(pdr: &[Ie]) -> Option<(u16, Route)> {
    let id = match pdr.find(ty::PDR_ID)? {
        Ie::PdrId(i) => *i,
        _ => return None,
    };
    let pdi = pdr.find(ty::PDI)?.children();
    if !matches!(
        pdi.find(ty::SOURCE_INTERFACE),
        Some(Ie::SourceInterface(interface::CORE))
    ) {
        return None;
    }
    let Ie::UeIpAddress(ue) = pdi.find(ty::UE_IP_ADDRESS)? else {
        return None;
    };
    let iid = raw(pdr, ROUTER_IID_IE.0, Some(ROUTER_IID_IE.1))
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes);
    let r = match (ue.v4, ue.v6) {
        (Some(v4), _) => Route::V4(u32::from(v4)),
        (None, Some(v6)) => {
            let a = u128::from(v6);
            match (ue.v6_prefix_delegation_bits, ue.v6_prefix_length) {
                (Some(bits), _) if bits <= 64 => Route::Pd {
                    prefix: (a >> 64) as u64,
                    len: 64 - bits,
                },
                (None, Some(64)) => Route::V6 {
                    prefix: (a >> 64) as u64,
                    iid,
                },
                (None, None) => Route::Addr6 { addr: a, iid },
                _ => return None,
            }
        }
        (None, None) => return None,
    };
    Some((id, r))
}

/// The BBF MTU of a FAR towards the access.
fn far_mtu(far: &[Ie]) -> Option<u16> {
    let fp = far.find(ty::FORWARDING_PARAMETERS)?.children();
    match fp.all(bbf::MTU, Some(bbf::ENTERPRISE_ID)).next()? {
        Ie::BbfMtu(m) => Some(*m),
        _ => None,
    }
}

/// A QER's MBR as the fast path's rate (bit/s; 0 = unlimited).
fn qer_rate(qer: &[Ie]) -> Option<(u64, u64)> {
    match qer.find(ty::MBR)? {
        Ie::Mbr(m) => Some((
            m.ul_kbps.saturating_mul(1000),
            m.dl_kbps.saturating_mul(1000),
        )),
        _ => None,
    }
}
