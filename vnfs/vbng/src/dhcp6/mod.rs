//! DHCPv6 server core for IPoE subscribers and for prefix delegation over PPPoE
//! (RFC 8415 §18.3), sans-IO: the caller hands in the DHCPv6 message of a datagram
//! received from a subscriber (with the caller's line key, the datagram's source
//! address and a millisecond clock) and gets back the reply to send and the binding
//! events the subscriber core acts on. Nothing here touches a socket; the messages
//! are [`dataplane::proto::dhcp6`], and [`wire`] takes datagrams apart and builds
//! them.
//!
//! - Every IA is a binding keyed by [`ClientKey`]: the caller's line key
//!   ([`LineKey`]: access VLANs, PPP session, ...), the client's DUID (§11), the IAID
//!   and the IA type (IA_NA or IA_PD).
//! - IA_NA (§6.2) gets one /128 from an address pool, IA_PD (§6.3) one prefix of the
//!   configured length from a prefix pool ([`dataplane::ippool`]); the caller can
//!   instead fix the address or prefix of a line ([`Server::assign`]: RADIUS
//!   Framed-IPv6-Address, RFC 6911 §3.1, and Delegated-IPv6-Prefix, RFC 4818).
//! - Solicit (§18.3.1) is answered with an Advertise holding the addresses and
//!   prefixes for `offer_hold_s`, or, when the client asks for Rapid Commit and the
//!   configuration allows it, with a Reply that binds at once. An IA the server cannot
//!   serve gets the status NoAddrsAvail or NoPrefixAvail (§18.3.1).
//! - Request (§18.3.2) binds; Renew and Rebind (§18.3.4, §18.3.5) extend the
//!   lifetimes of a binding, give addresses that are not the client's (or not ours)
//!   lifetimes 0, and answer NoBinding for an IA the server does not know; Release
//!   (§18.3.7) frees; Decline (§18.3.8) takes the address out of use for
//!   `decline_hold_s`; Confirm (§18.3.3) answers Success or NotOnLink;
//!   Information-request (§18.3.6) gets the configuration options.
//! - Messages are checked as §16 asks (Client Identifier present, Server Identifier
//!   absent or ours as the type requires); a Relay-forward (§19) from a relay agent
//!   is answered with a Relay-reply carrying the Interface-Id back (one relay level).
//! - Replies carry the Server and Client Identifiers, the IAs with T1/T2 and
//!   preferred/valid lifetimes (§7.7, §21.4, §21.21), the Preference (§21.8) in an
//!   Advertise, and, when the client's ORO (§21.7) asks, DNS servers (RFC 3646) and
//!   SOL_MAX_RT (§21.24).
//! - [`Server::poll`] expires offers, bindings (at the end of the valid lifetime) and
//!   the quarantine of declined addresses.
//! - Bounded: at most `max_bindings` IAs, `max_offers` offers, `max_ias_per_client` IAs
//!   of each type per client, a per-client token bucket against storms, and every
//!   dropped message counted by [`DropReason`].
//! - [`journal`] serialises the bindings so that a restart keeps them.
//!
//! Not yet wired to the fast path or the subscriber sessions; the Unicast option,
//! Reconfigure (§18.3.11) and IA_TA are not implemented.

pub mod config;
pub mod journal;
pub mod wire;

pub use config::{AddrPoolConfig, Dhcp6Config, PrefixPoolConfig};

use crate::config::ConfigError;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv6Addr;
use dataplane::addr::Prefix6;
use dataplane::ippool::Pools;
use dataplane::proto::dhcp6::{
    opt, status, Duid, Ia, IaAddr, IaPrefix, Message, MessageType, RelayMessage, Repr, Status,
    HOP_COUNT_LIMIT,
};
use dataplane::proto::Error as ProtoError;

/// The caller's key of the line a message arrived on (access VLANs and MAC, a PPP
/// session id, ...): opaque bytes, compared as such.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LineKey(pub Vec<u8>);

/// IA_NA or IA_PD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IaKind {
    /// Non-temporary addresses (§21.4).
    Na,
    /// Prefix delegation (§21.21).
    Pd,
}

impl IaKind {
    /// `IA_NA` or `IA_PD`.
    pub const fn as_str(self) -> &'static str {
        match self {
            IaKind::Na => "IA_NA",
            IaKind::Pd => "IA_PD",
        }
    }
}

/// Who a binding belongs to: one IA of one client on one line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientKey {
    /// The caller's line.
    pub line: LineKey,
    /// The client's DUID (Client Identifier).
    pub duid: Duid,
    /// IA_NA or IA_PD.
    pub kind: IaKind,
    /// The IAID.
    pub iaid: u32,
}

/// An address (IA_NA) or a delegated prefix (IA_PD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Assigned {
    /// A /128.
    Address(Ipv6Addr),
    /// A prefix.
    Prefix(Prefix6),
}

impl Assigned {
    /// The address or the prefix's network address.
    pub fn addr(&self) -> Ipv6Addr {
        match self {
            Assigned::Address(a) => *a,
            Assigned::Prefix(p) => p.network(),
        }
    }
    /// 128 for an address, the prefix length for a prefix.
    pub fn len(&self) -> u8 {
        match self {
            Assigned::Address(_) => 128,
            Assigned::Prefix(p) => p.len(),
        }
    }
    /// Whether this is `::/0` (never handed out).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// IA_NA for an address, IA_PD for a prefix.
    pub fn ia_kind(&self) -> IaKind {
        match self {
            Assigned::Address(_) => IaKind::Na,
            Assigned::Prefix(_) => IaKind::Pd,
        }
    }
}

/// `2001:db8::1/128` or `2001:db8:100::/56`.
impl fmt::Display for Assigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len())
    }
}

/// A binding as the subscriber core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The address or prefix.
    pub assigned: Assigned,
    /// Preferred lifetime granted, seconds.
    pub preferred_s: u32,
    /// Valid lifetime granted, seconds.
    pub valid_s: u32,
    /// When the valid lifetime ends, on the caller's millisecond clock.
    pub expires_ms: u64,
}

/// What the subscriber core acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new binding (Request, Solicit with Rapid Commit): install the address or
    /// route the prefix.
    Bound { client: ClientKey, lease: Lease },
    /// A binding's lifetimes extended (Renew, Rebind, a repeated Request).
    Renewed { client: ClientKey, lease: Lease },
    /// The client released it (§18.3.7).
    Released {
        client: ClientKey,
        assigned: Assigned,
    },
    /// The valid lifetime ran out ([`Server::poll`]).
    Expired {
        client: ClientKey,
        assigned: Assigned,
    },
    /// The client declined the address (§18.3.8); it is quarantined.
    Declined {
        client: ClientKey,
        assigned: Assigned,
    },
}

/// A reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The DHCPv6 message (UDP payload), source port 547.
    pub message: Vec<u8>,
    /// The destination address: the request's source (the client's link-local
    /// address, or the relay agent's address).
    pub dst: Ipv6Addr,
    /// The destination port: 546 to a client, 547 to a relay agent (§7.2).
    pub dst_port: u16,
    /// On which line.
    pub line: LineKey,
    /// The message type (Advertise or Reply; Relay-reply when relayed, with the
    /// inner type in `inner_kind`).
    pub kind: MessageType,
    /// The type of the message to the client (Advertise or Reply).
    pub inner_kind: MessageType,
}

/// What one message produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handled {
    /// The reply, if any.
    pub reply: Option<Reply>,
    /// The binding events, one per IA that changed.
    pub events: Vec<Event>,
}

/// Why a message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Not a DHCPv6 message, or an option with a bad length or value.
    Malformed,
    /// An unknown or server-only message type, a relay message nested more than once
    /// or past the hop limit.
    Unsupported,
    /// Options that do not fit the message type (§16): no Client Identifier, a
    /// Server Identifier where none may be, none where one must be.
    Inconsistent,
    /// The Server Identifier is another server's (§16).
    OtherServer,
    /// The client sent more than its rate allows.
    RateLimited,
    /// The rate limiter tracks `max_rate_clients` already.
    RateTableFull,
    /// A Confirm without addresses (§18.3.3: no reply).
    NothingToConfirm,
    /// The reply could not be built (too large).
    ReplyTooLarge,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 8] = [
        DropReason::Malformed,
        DropReason::Unsupported,
        DropReason::Inconsistent,
        DropReason::OtherServer,
        DropReason::RateLimited,
        DropReason::RateTableFull,
        DropReason::NothingToConfirm,
        DropReason::ReplyTooLarge,
    ];

    /// A metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Unsupported => "unsupported",
            DropReason::Inconsistent => "inconsistent",
            DropReason::OtherServer => "other_server",
            DropReason::RateLimited => "rate_limited",
            DropReason::RateTableFull => "rate_table_full",
            DropReason::NothingToConfirm => "nothing_to_confirm",
            DropReason::ReplyTooLarge => "reply_too_large",
        }
    }
}

/// Counters: messages received and sent by type, drops by reason, binding events and
/// the status codes sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    rx: [u64; 13],
    tx: [u64; 13],
    drops: [u64; DropReason::ALL.len()],
    /// Bindings made.
    pub bound: u64,
    /// Bindings extended.
    pub renewed: u64,
    /// Bindings released.
    pub released: u64,
    /// Bindings expired.
    pub expired: u64,
    /// Addresses declined.
    pub declined: u64,
    /// Offers that timed out.
    pub offers_expired: u64,
    /// IA_NAs answered NoAddrsAvail.
    pub no_addrs_avail: u64,
    /// IA_PDs answered NoPrefixAvail.
    pub no_prefix_avail: u64,
    /// IAs answered NoBinding.
    pub no_binding: u64,
    /// Confirms answered NotOnLink.
    pub not_on_link: u64,
}

impl Stats {
    /// Messages of type `t` received (counted before any drop but parse errors;
    /// a relayed message counts as Relay-forward and as its inner type).
    pub fn rx(&self, t: MessageType) -> u64 {
        self.rx[t as usize - 1]
    }
    /// Messages of type `t` sent.
    pub fn tx(&self, t: MessageType) -> u64 {
        self.tx[t as usize - 1]
    }
    /// Drops for `r`.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    /// `(label, count)` of every message type received, for metrics.
    pub fn rx_by_type(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        MessageType::ALL.iter().map(|&t| (t.as_str(), self.rx(t)))
    }
    /// `(label, count)` of every message type sent.
    pub fn tx_by_type(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        MessageType::ALL.iter().map(|&t| (t.as_str(), self.tx(t)))
    }
    /// `(label, count)` of every drop reason.
    pub fn drops_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r.as_str(), self.drops(r)))
    }
}

/// A line's fixed address and prefix (RADIUS Framed-IPv6-Address, RFC 6911 §3.1;
/// Delegated-IPv6-Prefix, RFC 4818), used instead of the pools for that line's first
/// IA_NA and IA_PD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fixed {
    /// The IA_NA address.
    pub addr: Option<Ipv6Addr>,
    /// The IA_PD prefix.
    pub prefix: Option<Prefix6>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Offered in an Advertise, held until `until`.
    Offered { until: u64 },
    /// Bound until `until` (end of the valid lifetime).
    Bound {
        until: u64,
        preferred_s: u32,
        valid_s: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct Binding {
    assigned: Assigned,
    state: State,
}

impl Binding {
    fn until(&self) -> u64 {
        match self.state {
            State::Offered { until } | State::Bound { until, .. } => until,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    milli: u64,
    at: u64,
}

/// What a message is (after §16 validation).
struct Ctx {
    line: LineKey,
    duid: Option<Duid>,
}

/// The DHCPv6 server.
#[derive(Debug, Clone)]
pub struct Server {
    cfg: Dhcp6Config,
    duid: Duid,
    addrs: Pools<Ipv6Addr>,
    prefixes: Pools<Prefix6>,
    bindings: BTreeMap<ClientKey, Binding>,
    by_item: BTreeMap<Assigned, ClientKey>,
    /// `(deadline, item)` of every offer, binding and quarantined address.
    timers: BTreeSet<(u64, Assigned)>,
    quarantine: BTreeMap<Assigned, u64>,
    fixed: BTreeMap<LineKey, Fixed>,
    rate: BTreeMap<(LineKey, Option<Duid>), Bucket>,
    offers: usize,
    stats: Stats,
}

const MS: u64 = 1000;

impl Server {
    /// A server with its own pools built from `cfg` (validated first), identified by
    /// `duid` (e.g. [`Duid::ll`] of the access port's MAC address, §11.4).
    pub fn new(cfg: Dhcp6Config, duid: Duid) -> Result<Server, ConfigError> {
        cfg.validate()?;
        Ok(Server {
            addrs: cfg.build_address_pools()?,
            prefixes: cfg.build_prefix_pools()?,
            cfg,
            duid,
            bindings: BTreeMap::new(),
            by_item: BTreeMap::new(),
            timers: BTreeSet::new(),
            quarantine: BTreeMap::new(),
            fixed: BTreeMap::new(),
            rate: BTreeMap::new(),
            offers: 0,
            stats: Stats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Dhcp6Config {
        &self.cfg
    }
    /// The server's DUID.
    pub fn duid(&self) -> &Duid {
        &self.duid
    }
    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// The IA_NA address pools.
    pub fn address_pools(&self) -> &Pools<Ipv6Addr> {
        &self.addrs
    }
    /// The IA_PD prefix pools.
    pub fn prefix_pools(&self) -> &Pools<Prefix6> {
        &self.prefixes
    }
    /// Bound IAs.
    pub fn binding_count(&self) -> usize {
        self.bindings.len() - self.offers
    }
    /// Outstanding offers.
    pub fn offer_count(&self) -> usize {
        self.offers
    }
    /// Addresses in quarantine after a Decline.
    pub fn quarantined(&self) -> usize {
        self.quarantine.len()
    }
    /// The bound lease of an IA.
    pub fn lease(&self, client: &ClientKey) -> Option<Lease> {
        lease_of(self.bindings.get(client)?)
    }
    /// Every bound lease.
    pub fn leases(&self) -> impl Iterator<Item = (&ClientKey, Lease)> + '_ {
        self.bindings
            .iter()
            .filter_map(|(k, b)| Some((k, lease_of(b)?)))
    }
    /// Who holds an address or prefix (offered or bound).
    pub fn holder(&self, a: Assigned) -> Option<&ClientKey> {
        self.by_item.get(&a)
    }

    /// Fixes the address and/or prefix a line's clients get (RADIUS attributes after
    /// authentication), replacing an earlier assignment. Bindings already made are
    /// kept. Fails with [`dataplane::ippool::PoolError::Invalid`] for a martian
    /// address or a prefix longer than /64 or martian. At most `max_bindings` lines.
    pub fn assign(
        &mut self,
        line: LineKey,
        fixed: Fixed,
    ) -> Result<(), dataplane::ippool::PoolError> {
        use dataplane::ippool::PoolError;
        if fixed.addr.is_some_and(|a| !config::assignable_addr(a))
            || fixed
                .prefix
                .is_some_and(|p| p.len() > 64 || !self.prefixes.assignable(p))
        {
            return Err(PoolError::Invalid);
        }
        if !self.fixed.contains_key(&line) && self.fixed.len() >= self.cfg.max_bindings as usize {
            return Err(PoolError::Exhausted);
        }
        self.fixed.insert(line, fixed);
        Ok(())
    }

    /// Forgets a line's fixed assignment (the session ended).
    pub fn unassign(&mut self, line: &LineKey) {
        self.fixed.remove(line);
    }

    /// Ends a binding or offer from the operator's side (subscriber cleared): the
    /// address or prefix goes back to the pool and no event is produced. The client
    /// learns of it at its next Renew (NoBinding). Returns what it held.
    pub fn revoke(&mut self, client: &ClientKey) -> Option<Assigned> {
        self.unbind(client, true).map(|b| b.assigned)
    }

    fn drop(&mut self, r: DropReason) -> Handled {
        self.stats.drops[r as usize] += 1;
        Handled::default()
    }

    /// Handles one DHCPv6 message (the UDP payload of a datagram to port 547) from
    /// `src` (the client's link-local address, or a relay agent's address) received
    /// on `line` at `now` (milliseconds, monotonic).
    pub fn handle(&mut self, now: u64, line: &LineKey, src: Ipv6Addr, msg: &[u8]) -> Handled {
        let repr = match Repr::parse_bytes(msg) {
            Ok(r) => r,
            Err(ProtoError::Unsupported) => return self.drop(DropReason::Unsupported),
            Err(_) => return self.drop(DropReason::Malformed),
        };
        self.stats.rx[repr.message_type() as usize - 1] += 1;
        match repr {
            Repr::Message(m) => match self.message(now, line, &m) {
                Ok((reply, events)) => {
                    let kind = reply.msg_type;
                    let mut message = Vec::with_capacity(256);
                    if Repr::Message(reply).emit(&mut message).is_err() {
                        return self.drop(DropReason::ReplyTooLarge);
                    }
                    self.stats.tx[kind as usize - 1] += 1;
                    Handled {
                        reply: Some(Reply {
                            message,
                            dst: src,
                            dst_port: dataplane::proto::dhcp6::CLIENT_PORT,
                            line: line.clone(),
                            kind,
                            inner_kind: kind,
                        }),
                        events,
                    }
                }
                Err(r) => self.drop(r),
            },
            Repr::Relay(r) => self.relayed(now, line, src, r),
        }
    }

    /// A Relay-forward (§19): the relayed client message is answered inside a
    /// Relay-reply to the relay agent, with the Interface-Id echoed (§19.3).
    fn relayed(&mut self, now: u64, line: &LineKey, src: Ipv6Addr, r: RelayMessage) -> Handled {
        if r.msg_type != MessageType::RelayForw || r.hop_count > HOP_COUNT_LIMIT {
            return self.drop(DropReason::Unsupported);
        }
        let m = match r.inner() {
            Ok(Repr::Message(m)) => m,
            Ok(Repr::Relay(_)) | Err(ProtoError::Unsupported) => {
                return self.drop(DropReason::Unsupported)
            }
            Err(_) => return self.drop(DropReason::Malformed),
        };
        self.stats.rx[m.msg_type as usize - 1] += 1;
        let (reply, events) = match self.message(now, line, &m) {
            Ok(x) => x,
            Err(e) => return self.drop(e),
        };
        let inner_kind = reply.msg_type;
        let mut inner = Vec::with_capacity(256);
        if Repr::Message(reply).emit(&mut inner).is_err() {
            return self.drop(DropReason::ReplyTooLarge);
        }
        let wrapped = Repr::Relay(RelayMessage {
            msg_type: MessageType::RelayRepl,
            hop_count: r.hop_count,
            link_address: r.link_address,
            peer_address: r.peer_address,
            relay_message: inner,
            interface_id: r.interface_id,
            other: Vec::new(),
        });
        let mut message = Vec::with_capacity(320);
        if wrapped.emit(&mut message).is_err() {
            return self.drop(DropReason::ReplyTooLarge);
        }
        self.stats.tx[inner_kind as usize - 1] += 1;
        self.stats.tx[MessageType::RelayRepl as usize - 1] += 1;
        Handled {
            reply: Some(Reply {
                message,
                dst: src,
                dst_port: dataplane::proto::dhcp6::SERVER_PORT,
                line: line.clone(),
                kind: MessageType::RelayRepl,
                inner_kind,
            }),
            events,
        }
    }

    /// §16 validation, rate limit, then the §18.3 handling of one client message.
    fn message(
        &mut self,
        now: u64,
        line: &LineKey,
        m: &Message,
    ) -> Result<(Message, Vec<Event>), DropReason> {
        use MessageType as T;
        // §16: which messages need a Client Identifier, and the Server Identifier
        // each may or must carry.
        let (need_client, sid) = match m.msg_type {
            T::Solicit | T::Rebind | T::Confirm => (true, Some(false)),
            T::Request | T::Renew | T::Release | T::Decline => (true, Some(true)),
            T::InformationRequest => (false, None),
            _ => return Err(DropReason::Unsupported),
        };
        if need_client && m.client_id.is_none() {
            return Err(DropReason::Inconsistent);
        }
        match (sid, &m.server_id) {
            (Some(false), Some(_)) | (Some(true), None) => return Err(DropReason::Inconsistent),
            (_, Some(s)) if *s != self.duid => return Err(DropReason::OtherServer),
            _ => {}
        }
        if !self.rate_ok(now, line, &m.client_id) {
            return Err(
                if self.rate.contains_key(&(line.clone(), m.client_id.clone())) {
                    DropReason::RateLimited
                } else {
                    DropReason::RateTableFull
                },
            );
        }
        let ctx = Ctx {
            line: line.clone(),
            duid: m.client_id.clone(),
        };
        let mut events = Vec::new();
        let reply = match m.msg_type {
            T::Solicit if m.rapid_commit && self.cfg.rapid_commit => {
                let mut r = self.reply_base(m, T::Reply);
                r.rapid_commit = true;
                self.assign_ias(now, &ctx, m, &mut r, &mut events, true);
                r
            }
            T::Solicit => {
                let mut r = self.reply_base(m, T::Advertise);
                r.preference = self.cfg.preference;
                self.assign_ias(now, &ctx, m, &mut r, &mut events, false);
                r
            }
            T::Request => {
                let mut r = self.reply_base(m, T::Reply);
                self.assign_ias(now, &ctx, m, &mut r, &mut events, true);
                r
            }
            T::Renew | T::Rebind => {
                let mut r = self.reply_base(m, T::Reply);
                self.extend_ias(now, &ctx, m, &mut r, &mut events);
                r
            }
            T::Release | T::Decline => {
                let mut r = self.reply_base(m, T::Reply);
                self.end_ias(now, &ctx, m, &mut r, &mut events);
                r
            }
            T::Confirm => self.confirm(m)?,
            _ => self.reply_base(m, T::Reply),
        };
        Ok((reply, events))
    }

    /// Reply header: same transaction id, our Server Identifier, the client's Client
    /// Identifier, and the options the ORO asks for.
    fn reply_base(&self, m: &Message, t: MessageType) -> Message {
        let mut r = Message::new(t, m.transaction_id);
        r.server_id = Some(self.duid.clone());
        r.client_id = m.client_id.clone();
        if m.requests(opt::DNS_SERVERS) {
            r.dns_servers = self.cfg.dns.clone();
        }
        if m.requests(opt::SOL_MAX_RT) {
            r.sol_max_rt = self.cfg.sol_max_rt_s;
        }
        r
    }

    fn key(ctx: &Ctx, kind: IaKind, iaid: u32) -> Option<ClientKey> {
        Some(ClientKey {
            line: ctx.line.clone(),
            duid: ctx.duid.clone()?,
            kind,
            iaid,
        })
    }

    /// IAs of one kind held by the client of `key`, but `key`'s own.
    fn ias_of_client(&self, key: &ClientKey) -> usize {
        let lo = ClientKey {
            iaid: 0,
            ..key.clone()
        };
        let hi = ClientKey {
            iaid: u32::MAX,
            ..key.clone()
        };
        self.bindings
            .range(lo..=hi)
            .filter(|(k, _)| k.iaid != key.iaid)
            .count()
    }

    // --- Solicit and Request (§18.3.1, §18.3.2) -------------------------------------

    fn assign_ias(
        &mut self,
        now: u64,
        ctx: &Ctx,
        m: &Message,
        r: &mut Message,
        events: &mut Vec<Event>,
        bind: bool,
    ) {
        let (t1, t2) = self.cfg.t1_t2();
        for ia in &m.ia_na {
            let hint = ia.items.first().map(|a| Assigned::Address(a.addr));
            let Some(key) = Self::key(ctx, IaKind::Na, ia.iaid) else {
                continue;
            };
            let mut out = Ia::new(ia.iaid, t1, t2);
            match self.get_or_alloc(now, &key, hint, bind, events) {
                Some(l) => out.items.push(self.ia_addr(l)),
                None => {
                    self.stats.no_addrs_avail += 1;
                    out = Ia::new(ia.iaid, 0, 0);
                    out.status = Some(Status::new(
                        status::NO_ADDRS_AVAIL,
                        "no addresses available",
                    ));
                }
            }
            r.ia_na.push(out);
        }
        for ia in &m.ia_pd {
            let hint = ia
                .items
                .first()
                .and_then(|p| Prefix6::new(p.prefix, p.len))
                .map(Assigned::Prefix);
            let Some(key) = Self::key(ctx, IaKind::Pd, ia.iaid) else {
                continue;
            };
            let mut out = Ia::new(ia.iaid, t1, t2);
            match self.get_or_alloc(now, &key, hint, bind, events) {
                Some(l) => out.items.push(self.ia_prefix(l)),
                None => {
                    self.stats.no_prefix_avail += 1;
                    out = Ia::new(ia.iaid, 0, 0);
                    out.status = Some(Status::new(
                        status::NO_PREFIX_AVAIL,
                        "no prefixes available",
                    ));
                }
            }
            r.ia_pd.push(out);
        }
    }

    /// The IA's existing binding or offer, else a new item (the line's fixed one,
    /// else the client's hint when free in our pools, else the next free one).
    /// With `bind`, the result is bound (an event is pushed); else it is offered.
    fn get_or_alloc(
        &mut self,
        now: u64,
        key: &ClientKey,
        hint: Option<Assigned>,
        bind: bool,
        events: &mut Vec<Event>,
    ) -> Option<Assigned> {
        let item = match self.bindings.get(key).copied() {
            Some(b) => b.assigned,
            None => {
                if self.bindings.len() >= self.cfg.max_bindings as usize
                    || self.ias_of_client(key) >= self.cfg.max_ias_per_client as usize
                    || (!bind && self.offers >= self.cfg.max_offers as usize)
                {
                    return None;
                }
                let a = self.alloc(key, hint)?;
                self.set_binding(
                    key,
                    a,
                    State::Offered {
                        until: now + u64::from(self.cfg.offer_hold_s) * MS,
                    },
                );
                a
            }
        };
        if bind {
            events.push(self.bind(now, key, item));
        } else if let Some(b) = self.bindings.get(key).copied() {
            if let State::Offered { .. } = b.state {
                self.set_binding(
                    key,
                    item,
                    State::Offered {
                        until: now + u64::from(self.cfg.offer_hold_s) * MS,
                    },
                );
            }
        }
        Some(item)
    }

    fn alloc(&mut self, key: &ClientKey, hint: Option<Assigned>) -> Option<Assigned> {
        let fixed = self.fixed.get(&key.line).copied().unwrap_or_default();
        match key.kind {
            IaKind::Na => {
                if let Some(a) = fixed.addr {
                    return self.addrs.take(a).ok().map(|_| Assigned::Address(a));
                }
                if let Some(Assigned::Address(h)) = hint {
                    if self.addrs.contains(h)
                        && !self.quarantine.contains_key(&Assigned::Address(h))
                        && self.addrs.take(h).is_ok()
                    {
                        return Some(Assigned::Address(h));
                    }
                }
                self.addrs.alloc(None).ok().map(Assigned::Address)
            }
            IaKind::Pd => {
                if let Some(p) = fixed.prefix {
                    return self.prefixes.take(p).ok().map(|_| Assigned::Prefix(p));
                }
                if let Some(Assigned::Prefix(h)) = hint {
                    if self.prefixes.contains(h) && self.prefixes.take(h).is_ok() {
                        return Some(Assigned::Prefix(h));
                    }
                }
                self.prefixes.alloc(None).ok().map(Assigned::Prefix)
            }
        }
    }

    fn free_item(&mut self, a: Assigned) {
        match a {
            Assigned::Address(x) => self.addrs.free(x),
            Assigned::Prefix(p) => self.prefixes.free(p),
        }
    }

    fn set_binding(&mut self, key: &ClientKey, assigned: Assigned, state: State) {
        let b = Binding { assigned, state };
        match self.bindings.insert(key.clone(), b) {
            Some(old) => {
                self.timers.remove(&(old.until(), old.assigned));
                if matches!(old.state, State::Offered { .. }) {
                    self.offers -= 1;
                }
            }
            None => {
                self.by_item.insert(assigned, key.clone());
            }
        }
        if matches!(state, State::Offered { .. }) {
            self.offers += 1;
        }
        self.timers.insert((b.until(), assigned));
    }

    /// Removes a binding; with `free`, the item goes back to its pool.
    fn unbind(&mut self, key: &ClientKey, free: bool) -> Option<Binding> {
        let b = self.bindings.remove(key)?;
        self.by_item.remove(&b.assigned);
        self.timers.remove(&(b.until(), b.assigned));
        if matches!(b.state, State::Offered { .. }) {
            self.offers -= 1;
        }
        if free {
            self.free_item(b.assigned);
        }
        Some(b)
    }

    fn bind(&mut self, now: u64, key: &ClientKey, a: Assigned) -> Event {
        let renewed = matches!(
            self.bindings.get(key),
            Some(Binding {
                state: State::Bound { .. },
                ..
            })
        );
        let (p, v) = (self.cfg.preferred_lifetime_s, self.cfg.valid_lifetime_s);
        let until = now + u64::from(v) * MS;
        self.set_binding(
            key,
            a,
            State::Bound {
                until,
                preferred_s: p,
                valid_s: v,
            },
        );
        let lease = Lease {
            assigned: a,
            preferred_s: p,
            valid_s: v,
            expires_ms: until,
        };
        if renewed {
            self.stats.renewed += 1;
            Event::Renewed {
                client: key.clone(),
                lease,
            }
        } else {
            self.stats.bound += 1;
            Event::Bound {
                client: key.clone(),
                lease,
            }
        }
    }

    fn ia_addr(&self, a: Assigned) -> IaAddr {
        IaAddr {
            addr: a.addr(),
            preferred: self.cfg.preferred_lifetime_s,
            valid: self.cfg.valid_lifetime_s,
            status: None,
            other: Vec::new(),
        }
    }

    fn ia_prefix(&self, a: Assigned) -> IaPrefix {
        IaPrefix {
            preferred: self.cfg.preferred_lifetime_s,
            valid: self.cfg.valid_lifetime_s,
            len: a.len(),
            prefix: a.addr(),
            status: None,
            other: Vec::new(),
        }
    }

    // --- Renew and Rebind (§18.3.4, §18.3.5) ----------------------------------------

    fn extend_ias(
        &mut self,
        now: u64,
        ctx: &Ctx,
        m: &Message,
        r: &mut Message,
        events: &mut Vec<Event>,
    ) {
        let (t1, t2) = self.cfg.t1_t2();
        for ia in &m.ia_na {
            let Some(key) = Self::key(ctx, IaKind::Na, ia.iaid) else {
                continue;
            };
            let asked: Vec<Assigned> = ia.items.iter().map(|a| Assigned::Address(a.addr)).collect();
            match self.extend(now, &key, events) {
                Some(l) => {
                    let mut out = Ia::new(ia.iaid, t1, t2);
                    out.items.push(self.ia_addr(l));
                    // §18.3.4: addresses the client has that are not its binding.
                    for a in asked.into_iter().filter(|a| *a != l) {
                        out.items.push(IaAddr {
                            preferred: 0,
                            valid: 0,
                            ..self.ia_addr(a)
                        });
                    }
                    r.ia_na.push(out);
                }
                None => {
                    self.stats.no_binding += 1;
                    let mut out = Ia::new(ia.iaid, 0, 0);
                    out.status = Some(Status::new(status::NO_BINDING, "no binding"));
                    r.ia_na.push(out);
                }
            }
        }
        for ia in &m.ia_pd {
            let Some(key) = Self::key(ctx, IaKind::Pd, ia.iaid) else {
                continue;
            };
            let asked: Vec<Assigned> = ia
                .items
                .iter()
                .filter_map(|p| Prefix6::new(p.prefix, p.len).map(Assigned::Prefix))
                .collect();
            match self.extend(now, &key, events) {
                Some(l) => {
                    let mut out = Ia::new(ia.iaid, t1, t2);
                    out.items.push(self.ia_prefix(l));
                    for a in asked.into_iter().filter(|a| *a != l) {
                        out.items.push(IaPrefix {
                            preferred: 0,
                            valid: 0,
                            ..self.ia_prefix(a)
                        });
                    }
                    r.ia_pd.push(out);
                }
                None => {
                    self.stats.no_binding += 1;
                    let mut out = Ia::new(ia.iaid, 0, 0);
                    out.status = Some(Status::new(status::NO_BINDING, "no binding"));
                    r.ia_pd.push(out);
                }
            }
        }
    }

    /// Extends a bound IA; `None` if it is not bound.
    fn extend(&mut self, now: u64, key: &ClientKey, events: &mut Vec<Event>) -> Option<Assigned> {
        match self.bindings.get(key).copied() {
            Some(Binding {
                assigned,
                state: State::Bound { .. },
            }) => {
                events.push(self.bind(now, key, assigned));
                Some(assigned)
            }
            _ => None,
        }
    }

    // --- Release and Decline (§18.3.7, §18.3.8) -------------------------------------

    fn end_ias(
        &mut self,
        now: u64,
        ctx: &Ctx,
        m: &Message,
        r: &mut Message,
        events: &mut Vec<Event>,
    ) {
        let decline = m.msg_type == MessageType::Decline;
        let na = m.ia_na.iter().map(|ia| {
            (
                IaKind::Na,
                ia.iaid,
                ia.items
                    .iter()
                    .map(|a| Assigned::Address(a.addr))
                    .collect::<Vec<_>>(),
            )
        });
        let pd = m.ia_pd.iter().map(|ia| {
            (
                IaKind::Pd,
                ia.iaid,
                ia.items
                    .iter()
                    .filter_map(|p| Prefix6::new(p.prefix, p.len).map(Assigned::Prefix))
                    .collect::<Vec<_>>(),
            )
        });
        let all: Vec<_> = na.chain(pd).collect();
        for (kind, iaid, items) in all {
            let Some(key) = Self::key(ctx, kind, iaid) else {
                continue;
            };
            let held = match self.bindings.get(&key) {
                Some(b)
                    if matches!(b.state, State::Bound { .. }) && items.contains(&b.assigned) =>
                {
                    Some(b.assigned)
                }
                _ => None,
            };
            match held {
                // §18.3.8: only addresses are declined; a prefix in a Decline is
                // released.
                Some(a) if decline && kind == IaKind::Na => {
                    self.unbind(&key, false);
                    let until = now + u64::from(self.cfg.decline_hold_s) * MS;
                    self.quarantine.insert(a, until);
                    self.timers.insert((until, a));
                    self.stats.declined += 1;
                    events.push(Event::Declined {
                        client: key,
                        assigned: a,
                    });
                }
                Some(a) => {
                    self.unbind(&key, true);
                    self.stats.released += 1;
                    events.push(Event::Released {
                        client: key,
                        assigned: a,
                    });
                }
                None => {
                    // §18.3.7: an IA without binding is returned with NoBinding.
                    self.stats.no_binding += 1;
                    let st = Some(Status::new(status::NO_BINDING, "no binding"));
                    match kind {
                        IaKind::Na => r.ia_na.push(Ia {
                            status: st,
                            ..Ia::new(iaid, 0, 0)
                        }),
                        IaKind::Pd => r.ia_pd.push(Ia {
                            status: st,
                            ..Ia::new(iaid, 0, 0)
                        }),
                    }
                }
            }
        }
        let what = if decline { "declined" } else { "released" };
        r.status = Some(Status::new(status::SUCCESS, what));
    }

    // --- Confirm (§18.3.3) ----------------------------------------------------------

    fn confirm(&mut self, m: &Message) -> Result<Message, DropReason> {
        let addrs: Vec<Ipv6Addr> = m
            .ia_na
            .iter()
            .flat_map(|ia| ia.items.iter().map(|a| a.addr))
            .collect();
        if addrs.is_empty() {
            return Err(DropReason::NothingToConfirm);
        }
        let on_link = addrs
            .iter()
            .all(|&a| self.addrs.contains(a) || self.by_item.contains_key(&Assigned::Address(a)));
        let mut r = self.reply_base(m, MessageType::Reply);
        r.status = Some(if on_link {
            Status::new(status::SUCCESS, "all addresses on link")
        } else {
            self.stats.not_on_link += 1;
            Status::new(status::NOT_ON_LINK, "not on link")
        });
        Ok(r)
    }

    // --- rate limit and timers ------------------------------------------------------

    /// Token bucket per (line, DUID): `rate_burst` messages, refilled at
    /// `rate_per_min`.
    fn rate_ok(&mut self, now: u64, line: &LineKey, duid: &Option<Duid>) -> bool {
        let cap = u64::from(self.cfg.rate_burst) * 1000;
        let per_min = u64::from(self.cfg.rate_per_min);
        let k = (line.clone(), duid.clone());
        let b = match self.rate.get_mut(&k) {
            Some(b) => b,
            None => {
                if self.rate.len() >= self.cfg.max_rate_clients as usize {
                    return false;
                }
                self.rate.entry(k).or_insert(Bucket {
                    milli: cap,
                    at: now,
                })
            }
        };
        let refill = now.saturating_sub(b.at).saturating_mul(per_min) / 60;
        b.milli = b.milli.saturating_add(refill).min(cap);
        b.at = now;
        if b.milli < 1000 {
            return false;
        }
        b.milli -= 1000;
        true
    }

    /// Expires offers, bindings and quarantined addresses whose time has come;
    /// returns the [`Event::Expired`] events. Also forgets rate-limiter entries whose
    /// bucket has refilled (idle clients).
    pub fn poll(&mut self, now: u64) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(&(t, item)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            if self.quarantine.get(&item) == Some(&t) {
                self.quarantine.remove(&item);
                self.free_item(item);
                continue;
            }
            let Some(key) = self.by_item.get(&item).cloned() else {
                continue;
            };
            let Some(b) = self.bindings.get(&key).copied() else {
                continue;
            };
            if b.until() != t {
                continue;
            }
            self.unbind(&key, true);
            match b.state {
                State::Offered { .. } => self.stats.offers_expired += 1,
                State::Bound { .. } => {
                    self.stats.expired += 1;
                    events.push(Event::Expired {
                        client: key,
                        assigned: item,
                    });
                }
            }
        }
        let cap = u64::from(self.cfg.rate_burst) * 1000;
        let per_min = u64::from(self.cfg.rate_per_min);
        self.rate.retain(|_, b| {
            let refill = now.saturating_sub(b.at).saturating_mul(per_min) / 60;
            b.milli.saturating_add(refill) < cap
        });
        events
    }

    /// The earliest deadline [`Server::poll`] acts on, for the caller's timer.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.first().map(|&(t, _)| t)
    }
}

fn lease_of(b: &Binding) -> Option<Lease> {
    match b.state {
        State::Bound {
            until,
            preferred_s,
            valid_s,
        } => Some(Lease {
            assigned: b.assigned,
            preferred_s,
            valid_s,
            expires_ms: until,
        }),
        State::Offered { .. } => None,
    }
}

#[cfg(test)]
mod tests;
