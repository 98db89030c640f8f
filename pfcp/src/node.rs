//! A sans-IO PFCP node (TS 29.244 §6): datagrams and the time go in
//! ([`Node::handle`], [`Node::handle_timeout`]), datagrams to send and events come out
//! ([`Node::poll_transmit`], [`Node::poll_event`]). The caller owns the socket and the
//! clock (milliseconds of any monotonic origin).
//!
//! What it does for the application:
//!
//! - **Bundles** (§7.2.1A): the messages of a datagram with the FO flag are handled
//!   one after the other.
//! - **Sequence numbers and retransmission** (§6.4, TS 23.007): each request gets a
//!   fresh 24-bit sequence number; a request without a response is sent again every
//!   T1 up to N1 times, then reported as [`Event::Timeout`]. A response is matched to
//!   its request by peer, sequence number and type; unmatched responses are dropped
//!   and counted. A retransmitted request (same peer and sequence number) is answered
//!   with the response already sent, without reprocessing.
//! - **Association** (§6.2.6–§6.2.8): Association Setup Requests are accepted (Cause
//!   1 with our Node ID, Recovery Time Stamp and the configured feature IEs);
//!   [`Node::associate`] sets one up towards a peer; Association Release Requests are
//!   accepted. A session related request, an Association Update Request or a Node
//!   Report Request from a peer without an association is answered with Cause 72 "No
//!   established PFCP Association" (§6.2.6.1) and not passed on.
//! - **Heartbeats and restart detection** (§6.2.2, §6.2.3, TS 23.007 §19A): Heartbeat
//!   Requests are answered with our Recovery Time Stamp; associated peers are sent a
//!   Heartbeat Request every heartbeat interval; a peer whose Recovery Time Stamp
//!   changes is reported as [`Event::PeerRestarted`]; a peer that does not answer a
//!   heartbeat after N1 retransmissions loses its association ([`Event::PeerLost`]).
//! - **Malformed requests** (§7.6): a request that fails to parse is answered with
//!   the response type's Cause — 68 "Invalid length" (message or IE lengths), 66
//!   "Mandatory IE missing" or 69 "Mandatory IE incorrect" with the Offending IE
//!   (§8.2.22) — when that response carries a Cause; otherwise (Heartbeat) it is
//!   dropped. A message with another version gets a Version Not Supported Response
//!   (§7.4.4.7). Unknown message types and malformed responses are dropped and
//!   counted ([`Stats`]).
//!
//! Everything else — session requests, Association Update and Node Report Requests
//! from associated peers — is handed to the application as [`Event::Request`], which
//! answers with [`Node::respond`].

use crate::ie::{cause, ty, Ie, IeList, NodeId};
use crate::msg::{Header, Message, MsgType, RawHeader, MAX_SEQ};
use crate::{Error, Result};
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec;
use alloc::vec::Vec;
use core::net::SocketAddr;

/// Default T1: time to wait for a response before retransmitting (ms).
pub const DEFAULT_T1_MS: u64 = 3_000;
/// Default N1: retransmissions before giving up.
pub const DEFAULT_N1: u32 = 3;
/// Default heartbeat interval (ms).
pub const DEFAULT_HEARTBEAT_MS: u64 = 10_000;

/// How a node identifies itself and times its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub node_id: NodeId,
    /// Our Recovery Time Stamp (§8.2.65: NTP seconds of our start).
    pub recovery_time_stamp: u32,
    pub t1_ms: u64,
    pub n1: u32,
    /// 0: send no heartbeats.
    pub heartbeat_interval_ms: u64,
    /// Extra IEs for Association Setup Requests and Responses (UP/CP Function
    /// Features, BBF UP Function Features, ...).
    pub association_ies: Vec<Ie>,
}

impl Config {
    /// A configuration with the default T1, N1 and heartbeat interval.
    pub fn new(node_id: NodeId, recovery_time_stamp: u32) -> Config {
        Config {
            node_id,
            recovery_time_stamp,
            t1_ms: DEFAULT_T1_MS,
            n1: DEFAULT_N1,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_MS,
            association_ies: Vec::new(),
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dst: SocketAddr,
    pub data: Vec<u8>,
}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An association is up (we accepted a peer's request, or the peer accepted ours).
    Associated {
        peer: SocketAddr,
        node_id: NodeId,
        recovery_time_stamp: u32,
        /// The peer's other IEs (features, ...).
        ies: Vec<Ie>,
    },
    /// The peer refused our Association Setup Request.
    AssociationRefused { peer: SocketAddr, cause: u8 },
    /// The association was released (by the peer's request or our own).
    AssociationReleased { peer: SocketAddr },
    /// The peer's Recovery Time Stamp changed: it restarted and lost its state.
    PeerRestarted {
        peer: SocketAddr,
        old: u32,
        new: u32,
    },
    /// The peer did not answer a heartbeat; its association is gone.
    PeerLost { peer: SocketAddr },
    /// A request for the application, to answer with [`Node::respond`].
    Request { peer: SocketAddr, msg: Message },
    /// The response to one of our requests.
    Response {
        peer: SocketAddr,
        request: MsgType,
        msg: Message,
    },
    /// One of our requests got no response after N1 retransmissions.
    Timeout {
        peer: SocketAddr,
        seq: u32,
        request: MsgType,
    },
}

/// Counters of what the node did not pass on (`rx` counts messages, bundled ones
/// one by one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub rx: u64,
    pub tx: u64,
    pub retransmits: u64,
    /// Retransmitted requests answered from the response cache (or dropped while the
    /// application still works on the first copy).
    pub duplicate_requests: u64,
    /// Requests answered with an error cause because they did not parse.
    pub malformed_requests: u64,
    /// Responses and other messages dropped because they did not parse.
    pub malformed_dropped: u64,
    /// Responses that match no outstanding request.
    pub unmatched_responses: u64,
    /// Requests refused with Cause 72 (no association).
    pub unassociated_rejected: u64,
    /// Messages with another version, answered with Version Not Supported.
    pub version_not_supported: u64,
    pub timeouts: u64,
}

#[derive(Debug, Clone)]
struct Peer {
    associated: bool,
    recovery_time_stamp: Option<u32>,
    next_heartbeat_ms: u64,
}

#[derive(Debug, Clone)]
struct Pending {
    peer: SocketAddr,
    msg_type: MsgType,
    data: Vec<u8>,
    deadline_ms: u64,
    retries: u32,
}

/// The sans-IO PFCP node.
#[derive(Debug, Clone)]
pub struct Node {
    cfg: Config,
    peers: BTreeMap<SocketAddr, Peer>,
    pending: BTreeMap<u32, Pending>,
    /// The pending requests by retransmission deadline (deadline, sequence number):
    /// the next T1 expiry without a scan of every pending request.
    deadlines: BTreeSet<(u64, u32)>,
    /// Pending Heartbeat Requests per peer (at most one is sent at a time).
    heartbeats: BTreeSet<SocketAddr>,
    /// Responses already sent, by (peer, request sequence number), with expiry.
    answered: BTreeMap<(SocketAddr, u32), (Vec<u8>, u64)>,
    /// The cached answers in the order they expire (expiry, peer, sequence number);
    /// an entry no longer matching `answered` is stale and skipped.
    expiry: VecDeque<(u64, SocketAddr, u32)>,
    /// Requests handed to the application and not yet answered.
    in_progress: BTreeSet<(SocketAddr, u32)>,
    next_seq: u32,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl Node {
    pub fn new(cfg: Config) -> Node {
        Node {
            cfg,
            peers: BTreeMap::new(),
            pending: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            heartbeats: BTreeSet::new(),
            answered: BTreeMap::new(),
            expiry: VecDeque::new(),
            in_progress: BTreeSet::new(),
            next_seq: 1,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether `peer` has an association with us.
    pub fn is_associated(&self, peer: SocketAddr) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.associated)
    }

    /// The associated peers.
    pub fn associated_peers(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| p.associated)
            .map(|(a, _)| *a)
    }

    /// Requests still waiting for a response.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] next has work to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        let retrans = self.deadlines.first().map(|d| d.0);
        let hb = self
            .peers
            .values()
            .filter(|p| p.associated && self.cfg.heartbeat_interval_ms > 0)
            .map(|p| p.next_heartbeat_ms);
        let cache = self.expiry.front().map(|e| e.0);
        retrans.into_iter().chain(hb).chain(cache).min()
    }

    /// Sends an Association Setup Request to `peer`.
    pub fn associate(&mut self, now: u64, peer: SocketAddr) -> Result<u32> {
        let mut ies = vec![
            Ie::NodeId(self.cfg.node_id.clone()),
            Ie::RecoveryTimeStamp(self.cfg.recovery_time_stamp),
        ];
        ies.extend(self.cfg.association_ies.iter().cloned());
        self.send_request(now, peer, MsgType::AssociationSetupRequest, None, ies)
    }

    /// Sends an Association Release Request to `peer`; the association ends when the
    /// response arrives.
    pub fn release(&mut self, now: u64, peer: SocketAddr) -> Result<u32> {
        let ies = vec![Ie::NodeId(self.cfg.node_id.clone())];
        self.send_request(now, peer, MsgType::AssociationReleaseRequest, None, ies)
    }

    /// Sends a request (`seid` for session requests: the peer's SEID, 0 for a Session
    /// Establishment Request) and returns its sequence number.
    pub fn send_request(
        &mut self,
        now: u64,
        peer: SocketAddr,
        msg_type: MsgType,
        seid: Option<u64>,
        ies: Vec<Ie>,
    ) -> Result<u32> {
        if !msg_type.is_request() {
            return Err(Error::BadHeader);
        }
        let seq = self.alloc_seq();
        let data = Message::new(msg_type, seid, seq, ies).to_bytes()?;
        let deadline_ms = now.saturating_add(self.cfg.t1_ms);
        self.track(
            seq,
            Pending {
                peer,
                msg_type,
                data: data.clone(),
                deadline_ms,
                retries: 0,
            },
        );
        self.transmit(peer, data);
        Ok(seq)
    }

    /// Answers a request the application got as [`Event::Request`]: `ies` is the
    /// response's IEs, `seid` the SEID for a session response (the peer's F-SEID).
    pub fn respond(
        &mut self,
        now: u64,
        peer: SocketAddr,
        request: &Header,
        seid: Option<u64>,
        ies: Vec<Ie>,
    ) -> Result<()> {
        let t = request.msg_type.response().ok_or(Error::BadHeader)?;
        let data = Message::new(t, seid, request.seq, ies).to_bytes()?;
        self.in_progress.remove(&(peer, request.seq));
        self.send_response(now, peer, request.seq, data);
        Ok(())
    }

    /// Feeds one received datagram from `peer`. Messages bundled with the FO flag
    /// (§7.2.1A) are handled one after the other.
    pub fn handle(&mut self, now: u64, peer: SocketAddr, data: &[u8]) {
        let mut rest = data;
        loop {
            let (one, more) = match Header::parse(rest) {
                Ok((h, total)) if h.follow_on && total < rest.len() => rest.split_at(total),
                _ => (rest, &[][..]),
            };
            self.handle_one(now, peer, one);
            if more.is_empty() {
                return;
            }
            rest = more;
        }
    }

    fn handle_one(&mut self, now: u64, peer: SocketAddr, data: &[u8]) {
        self.stats.rx += 1;
        let Some(raw) = RawHeader::peek(data) else {
            self.stats.malformed_dropped += 1;
            return;
        };
        if raw.version != crate::msg::VERSION {
            self.stats.version_not_supported += 1;
            let m = Message::new(MsgType::VersionNotSupportedResponse, None, raw.seq, vec![]);
            if let Ok(b) = m.to_bytes() {
                self.transmit(peer, b);
            }
            return;
        }
        let Some(t) = MsgType::from_u8(raw.msg_type) else {
            self.stats.malformed_dropped += 1;
            return;
        };
        if t.is_request() {
            self.handle_request(now, peer, t, raw, data);
        } else {
            self.handle_response(now, peer, t, raw, data);
        }
    }

    fn handle_response(
        &mut self,
        now: u64,
        peer: SocketAddr,
        t: MsgType,
        raw: RawHeader,
        data: &[u8],
    ) {
        let matches = self.pending.get(&raw.seq).is_some_and(|p| {
            p.peer == peer
                && (p.msg_type.response() == Some(t) || t == MsgType::VersionNotSupportedResponse)
        });
        if !matches {
            self.stats.unmatched_responses += 1;
            return;
        }
        let msg = match parse_one(data) {
            Ok(m) => m,
            Err(_) => {
                // Keep the request: its retransmission may get a good answer.
                self.stats.malformed_dropped += 1;
                return;
            }
        };
        let Some(p) = self.untrack(raw.seq) else {
            return;
        };
        match t {
            MsgType::AssociationSetupResponse => {
                let accepted = msg.ies.cause().is_some_and(cause::is_accepted);
                if accepted {
                    self.set_associated(now, peer, &msg.ies);
                } else {
                    self.events.push_back(Event::AssociationRefused {
                        peer,
                        cause: msg.ies.cause().unwrap_or(0),
                    });
                }
            }
            MsgType::AssociationReleaseResponse => {
                let had = self.peers.remove(&peer);
                if had.is_some() {
                    self.events.push_back(Event::AssociationReleased { peer });
                }
            }
            MsgType::HeartbeatResponse => {
                if let Some(rts) = msg.ies.recovery_time_stamp() {
                    self.check_restart(peer, rts);
                }
                return;
            }
            _ => {}
        }
        self.events.push_back(Event::Response {
            peer,
            request: p.msg_type,
            msg,
        });
    }

    fn handle_request(
        &mut self,
        now: u64,
        peer: SocketAddr,
        t: MsgType,
        raw: RawHeader,
        data: &[u8],
    ) {
        let key = (peer, raw.seq);
        if t == MsgType::AssociationSetupRequest && self.answered.contains_key(&key) {
            // A restarted peer numbers its requests from the start again (TS 23.007
            // §19A): an Association Setup Request with a new Recovery Time Stamp is
            // a new request, not a retransmission of the one cached under its number.
            let known = self.peers.get(&peer).and_then(|p| p.recovery_time_stamp);
            let rts = parse_one(data)
                .ok()
                .and_then(|m| m.ies.recovery_time_stamp());
            if rts.is_some() && known.is_some() && rts != known {
                self.forget_requests(peer);
            }
        }
        if let Some((resp, _)) = self.answered.get(&key) {
            let resp = resp.clone();
            self.stats.duplicate_requests += 1;
            self.transmit(peer, resp);
            return;
        }
        if self.in_progress.contains(&key) {
            self.stats.duplicate_requests += 1;
            return;
        }
        let msg = match parse_one(data) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed_requests += 1;
                self.reject(now, peer, t, raw.seq, e.cause(), e.offending_ie());
                return;
            }
        };
        let needs_association = t.is_session()
            || matches!(
                t,
                MsgType::AssociationUpdateRequest | MsgType::NodeReportRequest
            );
        if needs_association && !self.is_associated(peer) {
            self.stats.unassociated_rejected += 1;
            self.reject(
                now,
                peer,
                t,
                raw.seq,
                cause::NO_ESTABLISHED_PFCP_ASSOCIATION,
                None,
            );
            return;
        }
        match t {
            MsgType::HeartbeatRequest => {
                if let Some(rts) = msg.ies.recovery_time_stamp() {
                    self.check_restart(peer, rts);
                }
                let ies = vec![Ie::RecoveryTimeStamp(self.cfg.recovery_time_stamp)];
                self.respond_now(now, peer, &msg.header, ies);
            }
            MsgType::AssociationSetupRequest => {
                let mut ies = vec![
                    Ie::NodeId(self.cfg.node_id.clone()),
                    Ie::Cause(cause::REQUEST_ACCEPTED),
                    Ie::RecoveryTimeStamp(self.cfg.recovery_time_stamp),
                ];
                ies.extend(self.cfg.association_ies.iter().cloned());
                self.respond_now(now, peer, &msg.header, ies);
                self.set_associated(now, peer, &msg.ies);
            }
            MsgType::AssociationReleaseRequest => {
                let ies = vec![
                    Ie::NodeId(self.cfg.node_id.clone()),
                    Ie::Cause(cause::REQUEST_ACCEPTED),
                ];
                self.respond_now(now, peer, &msg.header, ies);
                if self.peers.remove(&peer).is_some() {
                    self.events.push_back(Event::AssociationReleased { peer });
                }
            }
            _ => {
                self.in_progress.insert(key);
                self.events.push_back(Event::Request { peer, msg });
            }
        }
    }

    /// Answers request `t`/`seq` with an error cause, when its response has a Cause.
    fn reject(
        &mut self,
        now: u64,
        peer: SocketAddr,
        t: MsgType,
        seq: u32,
        c: u8,
        offending: Option<u16>,
    ) {
        let Some(rt) = t.response() else { return };
        let mandatory = rt.mandatory();
        if !mandatory.contains(&ty::CAUSE) {
            return;
        }
        let mut ies = Vec::new();
        if mandatory.contains(&ty::NODE_ID) {
            ies.push(Ie::NodeId(self.cfg.node_id.clone()));
        }
        ies.push(Ie::Cause(c));
        if mandatory.contains(&ty::RECOVERY_TIME_STAMP) {
            ies.push(Ie::RecoveryTimeStamp(self.cfg.recovery_time_stamp));
        }
        if let Some(o) = offending {
            ies.push(Ie::OffendingIe(o));
        }
        // The request's SEID may be unusable; §7.2.2.4.2 answers with SEID 0.
        let seid = rt.is_session().then_some(0);
        if let Ok(data) = Message::new(rt, seid, seq, ies).to_bytes() {
            self.send_response(now, peer, seq, data);
        }
    }

    fn respond_now(&mut self, now: u64, peer: SocketAddr, req: &Header, ies: Vec<Ie>) {
        if let Some(rt) = req.msg_type.response() {
            let seid = rt.is_session().then_some(0);
            if let Ok(data) = Message::new(rt, seid, req.seq, ies).to_bytes() {
                self.send_response(now, peer, req.seq, data);
            }
        }
    }

    fn send_response(&mut self, now: u64, peer: SocketAddr, seq: u32, data: Vec<u8>) {
        let keep = self.cfg.t1_ms.saturating_mul(u64::from(self.cfg.n1) + 1);
        let exp = now.saturating_add(keep);
        self.answered.insert((peer, seq), (data.clone(), exp));
        self.expiry.push_back((exp, peer, seq));
        self.transmit(peer, data);
    }

    fn set_associated(&mut self, now: u64, peer: SocketAddr, ies: &[Ie]) {
        let rts = ies.recovery_time_stamp().unwrap_or(0);
        self.check_restart(peer, rts);
        let p = self.peers.entry(peer).or_insert(Peer {
            associated: false,
            recovery_time_stamp: None,
            next_heartbeat_ms: 0,
        });
        p.associated = true;
        p.recovery_time_stamp = Some(rts);
        p.next_heartbeat_ms = now.saturating_add(self.cfg.heartbeat_interval_ms);
        let node_id = ies
            .node_id()
            .cloned()
            .unwrap_or(NodeId::Ipv4(core::net::Ipv4Addr::UNSPECIFIED));
        let rest = ies
            .iter()
            .filter(|i| !matches!(i, Ie::NodeId(_) | Ie::RecoveryTimeStamp(_) | Ie::Cause(_)))
            .cloned()
            .collect();
        self.events.push_back(Event::Associated {
            peer,
            node_id,
            recovery_time_stamp: rts,
            ies: rest,
        });
    }

    /// Drops the cached answers and pending requests of `peer`.
    fn forget_requests(&mut self, peer: SocketAddr) {
        self.answered.retain(|(a, _), _| *a != peer);
        self.in_progress.retain(|(a, _)| *a != peer);
    }

    fn check_restart(&mut self, peer: SocketAddr, rts: u32) {
        if let Some(p) = self.peers.get_mut(&peer) {
            match p.recovery_time_stamp {
                Some(old) if old != rts => {
                    p.recovery_time_stamp = Some(rts);
                    // Its sequence numbers start over: the cached answers to its
                    // old requests must not answer its new ones.
                    self.forget_requests(peer);
                    self.events.push_back(Event::PeerRestarted {
                        peer,
                        old,
                        new: rts,
                    });
                }
                _ => p.recovery_time_stamp = Some(rts),
            }
        }
    }

    /// Retransmits, times out, sends heartbeats and expires the response cache.
    pub fn handle_timeout(&mut self, now: u64) {
        // The requests whose T1 ran out, in deadline order (§6.4: N1 retransmissions,
        // then the request has failed).
        while let Some(&(deadline, seq)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(p) = self.pending.get_mut(&seq) else {
                continue;
            };
            if p.retries < self.cfg.n1 {
                p.retries += 1;
                p.deadline_ms = now.saturating_add(self.cfg.t1_ms);
                let (peer, data) = (p.peer, p.data.clone());
                self.deadlines.insert((p.deadline_ms, seq));
                self.stats.retransmits += 1;
                self.transmit(peer, data);
                continue;
            }
            let Some(p) = self.untrack(seq) else {
                continue;
            };
            self.stats.timeouts += 1;
            self.events.push_back(Event::Timeout {
                peer: p.peer,
                seq,
                request: p.msg_type,
            });
            if p.msg_type == MsgType::HeartbeatRequest
                && self.peers.remove(&p.peer).is_some_and(|x| x.associated)
            {
                self.events.push_back(Event::PeerLost { peer: p.peer });
            }
        }
        if self.cfg.heartbeat_interval_ms > 0 {
            let due: Vec<SocketAddr> = self
                .peers
                .iter()
                .filter(|(_, p)| p.associated && p.next_heartbeat_ms <= now)
                .map(|(a, _)| *a)
                .collect();
            for peer in due {
                let busy = self.heartbeats.contains(&peer);
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.next_heartbeat_ms = now.saturating_add(self.cfg.heartbeat_interval_ms);
                }
                if !busy {
                    let ies = vec![Ie::RecoveryTimeStamp(self.cfg.recovery_time_stamp)];
                    let _ = self.send_request(now, peer, MsgType::HeartbeatRequest, None, ies);
                }
            }
        }
        while let Some(&(exp, peer, seq)) = self.expiry.front() {
            if exp > now {
                break;
            }
            self.expiry.pop_front();
            if self
                .answered
                .get(&(peer, seq))
                .is_some_and(|(_, e)| *e == exp)
            {
                self.answered.remove(&(peer, seq));
            }
        }
    }

    /// Adds a request to the pending ones (and its deadline to [`Node::deadlines`]).
    fn track(&mut self, seq: u32, p: Pending) {
        self.untrack(seq);
        self.deadlines.insert((p.deadline_ms, seq));
        if p.msg_type == MsgType::HeartbeatRequest {
            self.heartbeats.insert(p.peer);
        }
        self.pending.insert(seq, p);
    }

    /// Removes a pending request (answered or failed).
    fn untrack(&mut self, seq: u32) -> Option<Pending> {
        let p = self.pending.remove(&seq)?;
        self.deadlines.remove(&(p.deadline_ms, seq));
        if p.msg_type == MsgType::HeartbeatRequest {
            self.heartbeats.remove(&p.peer);
        }
        Some(p)
    }

    fn alloc_seq(&mut self) -> u32 {
        loop {
            let s = self.next_seq;
            self.next_seq = if s >= MAX_SEQ { 1 } else { s + 1 };
            if !self.pending.contains_key(&s) {
                return s;
            }
        }
    }

    fn transmit(&mut self, dst: SocketAddr, data: Vec<u8>) {
        self.stats.tx += 1;
        self.out.push_back(Transmit { dst, data });
    }
}

/// Parses exactly one message filling `b` (its FO flag, if any, was acted on by
/// [`Node::handle`]).
fn parse_one(b: &[u8]) -> Result<Message> {
    let (m, used) = Message::parse(b)?;
    if used != b.len() {
        return Err(Error::InvalidLength);
    }
    Ok(m)
}
