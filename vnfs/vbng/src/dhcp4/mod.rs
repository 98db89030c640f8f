//! DHCPv4 server core for IPoE subscribers (RFC 2131 §4.3), sans-IO: the caller hands
//! in the DHCP payload of a frame received on an access line (with the line's VLANs and
//! a millisecond clock) and gets back the reply to send, where to send it (RFC 2131
//! §4.1) and the lease events the subscriber core acts on. Nothing here touches a
//! socket; the messages are [`dataplane::proto::dhcp4`].
//!
//! - Clients are keyed by [`ClientKey`]: the access VLANs, `chaddr` and the client
//!   identifier (option 61) when the client sends one (RFC 2131 §4.2, RFC 6842).
//! - DHCPDISCOVER (§4.3.1) offers the client's bound or offered address, else the
//!   requested address (option 50) when it is free in the pool, else the next free
//!   one ([`dataplane::ippool`]); the offer is held for `offer_hold_s`.
//! - DHCPREQUEST (§4.3.2) in SELECTING (server identifier present: ours binds the
//!   offered address, another server's releases our offer), INIT-REBOOT (requested
//!   address, no `ciaddr`: ACK if it is the client's, NAK if the client's record or the
//!   subnet says otherwise, silence without a record), RENEWING/REBINDING (`ciaddr`:
//!   ACK extends the lease, NAK if the address belongs to someone else or is not
//!   ours; an address of our pools that is free is bound again, so that clients keep
//!   their address across a restart without a journal).
//! - DHCPDECLINE (§4.3.3) takes the address out of use for `decline_hold_s`;
//!   DHCPRELEASE (§4.3.4) frees it; DHCPINFORM (§4.3.5) is answered with a DHCPACK
//!   without lease.
//! - Replies carry the message type, server identifier, lease time with T1/T2 (RFC 2131
//!   §4.4.5), the echoed client identifier (RFC 6842) and relay agent information
//!   (RFC 3046 §2.2), plus only the parameters the client asked for (option 55):
//!   subnet mask, router, DNS servers, MTU, classless static routes (RFC 3442; a
//!   client without a parameter list gets mask, router and DNS servers).
//! - [`Server::poll`] expires offers, leases and the quarantine of declined addresses.
//! - Bounded: at most `max_leases` leases and `max_offers` offers, a per-client token
//!   bucket against storms, and every dropped message counted by [`DropReason`].
//! - [`journal`] serialises the leases so that a restart keeps them.
//!
//! Not yet wired to the fast path or the subscriber sessions (see the crate README).

pub mod config;
pub mod journal;
pub mod wire;

pub use config::{Dhcp4Config, RouteConfig};

use crate::config::ConfigError;
use crate::pool::{PoolError, Pools};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use dataplane::proto::dhcp4::{
    opt, ClasslessRoute, MessageType, Packet, Repr, FLAG_BROADCAST, MIN_MAX_MESSAGE_SIZE,
};
use dataplane::proto::ethernet::Vlans;
use dataplane::proto::Error as ProtoError;

/// Who a lease belongs to (RFC 2131 §4.2: client identifier if present, else
/// `chaddr`; here always with the access line's VLANs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientKey {
    /// The access line's VLANs.
    pub vlans: Vlans,
    /// `chaddr` (Ethernet).
    pub mac: [u8; 6],
    /// Option 61 (type octet and identifier), when sent.
    pub client_id: Option<Vec<u8>>,
}

/// A lease as the subscriber core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub addr: Ipv4Addr,
    /// Lease time granted, seconds.
    pub lease_s: u32,
    /// When it expires, on the caller's millisecond clock.
    pub expires_ms: u64,
}

/// What the subscriber core acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new lease (DHCPACK to SELECTING or INIT-REBOOT, or a renewal adopted after a
    /// restart): install the subscriber.
    LeaseBound { client: ClientKey, lease: Lease },
    /// An existing lease extended.
    LeaseRenewed { client: ClientKey, lease: Lease },
    /// The client released its address (RFC 2131 §4.3.4).
    LeaseReleased { client: ClientKey, addr: Ipv4Addr },
    /// The lease ran out ([`Server::poll`]).
    LeaseExpired { client: ClientKey, addr: Ipv4Addr },
    /// The client declined the address (RFC 2131 §4.3.3); it is quarantined.
    LeaseDeclined { client: ClientKey, addr: Ipv4Addr },
}

/// Where a reply goes (RFC 2131 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To the relay agent at `giaddr`, UDP port 67.
    Relay(Ipv4Addr),
    /// IP and Ethernet broadcast, UDP port 68.
    Broadcast,
    /// Unicast to `ip` at `mac` (the client's `chaddr`), UDP port 68; the caller must
    /// not ARP for `ip` (the client may not answer yet).
    Unicast { ip: Ipv4Addr, mac: [u8; 6] },
}

/// A reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The DHCP message (UDP payload), source port 67, source address the server
    /// identifier.
    pub message: Vec<u8>,
    /// Where to.
    pub dst: Destination,
    /// On which access line.
    pub vlans: Vlans,
    /// DHCPOFFER, DHCPACK or DHCPNAK.
    pub kind: MessageType,
}

/// What one message produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handled {
    /// The reply, if any.
    pub reply: Option<Reply>,
    /// The lease event, if any.
    pub event: Option<Event>,
}

/// Why a message was dropped (or answered with silence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Not a DHCP message, or an option with a bad length or value.
    Malformed,
    /// A BOOTREPLY, a hardware type other than Ethernet, no or an unknown or
    /// server-only message type.
    Unsupported,
    /// Fields that do not fit the message type (RFC 2131 Table 5), e.g. a
    /// DHCPREQUEST with neither requested address nor `ciaddr`.
    Inconsistent,
    /// The client sent more than its rate allows.
    RateLimited,
    /// The rate limiter tracks `max_rate_clients` already.
    RateTableFull,
    /// No free address in the pool.
    PoolExhausted,
    /// `max_offers` offers outstanding.
    OffersFull,
    /// `max_leases` leases bound.
    LeasesFull,
    /// Meant for another server (server identifier not ours).
    OtherServer,
    /// No record of the client where RFC 2131 asks for silence (INIT-REBOOT,
    /// RELEASE or DECLINE of an address the client does not hold).
    UnknownClient,
    /// The reply would exceed the client's maximum message size.
    ReplyTooLarge,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 11] = [
        DropReason::Malformed,
        DropReason::Unsupported,
        DropReason::Inconsistent,
        DropReason::RateLimited,
        DropReason::RateTableFull,
        DropReason::PoolExhausted,
        DropReason::OffersFull,
        DropReason::LeasesFull,
        DropReason::OtherServer,
        DropReason::UnknownClient,
        DropReason::ReplyTooLarge,
    ];

    /// A metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Unsupported => "unsupported",
            DropReason::Inconsistent => "inconsistent",
            DropReason::RateLimited => "rate_limited",
            DropReason::RateTableFull => "rate_table_full",
            DropReason::PoolExhausted => "pool_exhausted",
            DropReason::OffersFull => "offers_full",
            DropReason::LeasesFull => "leases_full",
            DropReason::OtherServer => "other_server",
            DropReason::UnknownClient => "unknown_client",
            DropReason::ReplyTooLarge => "reply_too_large",
        }
    }
}

/// Counters: messages received and sent by type, drops by reason, lease events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    rx: [u64; 8],
    tx: [u64; 8],
    drops: [u64; DropReason::ALL.len()],
    /// Leases bound.
    pub bound: u64,
    /// Leases renewed.
    pub renewed: u64,
    /// Leases released.
    pub released: u64,
    /// Leases expired.
    pub expired: u64,
    /// Addresses declined.
    pub declined: u64,
    /// Offers that timed out.
    pub offers_expired: u64,
}

impl Stats {
    /// Messages of type `t` received (counted before any drop but parse errors).
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
        MESSAGE_TYPES.iter().map(|&t| (t.as_str(), self.rx(t)))
    }
    /// `(label, count)` of every message type sent.
    pub fn tx_by_type(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        MESSAGE_TYPES.iter().map(|&t| (t.as_str(), self.tx(t)))
    }
    /// `(label, count)` of every drop reason.
    pub fn drops_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r.as_str(), self.drops(r)))
    }
}

const MESSAGE_TYPES: [MessageType; 8] = [
    MessageType::Discover,
    MessageType::Offer,
    MessageType::Request,
    MessageType::Decline,
    MessageType::Ack,
    MessageType::Nak,
    MessageType::Release,
    MessageType::Inform,
];

/// State of one client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Offered, held until `until`.
    Offered { until: u64 },
    /// Bound until `until` (a bound client that discovers again keeps its binding).
    Bound { until: u64, lease_s: u32 },
}

#[derive(Debug, Clone)]
struct Binding {
    addr: Ipv4Addr,
    state: State,
}

impl Binding {
    fn until(&self) -> u64 {
        match self.state {
            State::Offered { until } | State::Bound { until, .. } => until,
        }
    }
}

/// Per-client token bucket, in thousandths of a message.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    milli: u64,
    at: u64,
}

/// What AAA fixed for a line's clients (RADIUS Framed-IP-Address, RFC 2865 §5.8, and
/// Framed-Pool, RFC 2869 §5.18): used for new offers instead of the pools' choice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fixed {
    /// The address (in the subnet, not the gateway or broadcast; it need not lie in
    /// a pool).
    pub addr: Option<Ipv4Addr>,
    /// The pool to allocate from.
    pub pool: Option<String>,
}

/// Why [`Server::assign`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignError {
    /// The address is outside the subnet, the gateway, its broadcast, or martian.
    BadAddress,
    /// No pool of that name.
    NoSuchPool,
    /// `max_leases` lines have a fixed assignment already.
    TooMany,
}

/// The DHCPv4 server.
#[derive(Debug, Clone)]
pub struct Server {
    cfg: Dhcp4Config,
    pools: Pools,
    server_id: Ipv4Addr,
    netmask: Ipv4Addr,
    routes: Vec<ClasslessRoute>,
    clients: BTreeMap<ClientKey, Binding>,
    by_addr: BTreeMap<Ipv4Addr, ClientKey>,
    /// `(deadline, address)` of every offer, lease and quarantined address.
    timers: BTreeSet<(u64, Ipv4Addr)>,
    /// Declined addresses, held out of the pool until the deadline.
    quarantine: BTreeMap<Ipv4Addr, u64>,
    rate: BTreeMap<(Vlans, [u8; 6]), Bucket>,
    offers: usize,
    leases: usize,
    stats: Stats,
    /// Per line (VLANs, MAC): what AAA fixed.
    fixed: BTreeMap<(Vlans, [u8; 6]), Fixed>,
    /// `(workers, worker)`: a new offer's address comes, while one is free, from
    /// the share of its pool that steers to `worker` ([`Server::set_share`]).
    share: Option<(u16, u16)>,
}

const MS: u64 = 1000;

impl Server {
    /// A server with its own pools built from `cfg` (validated first).
    pub fn new(cfg: Dhcp4Config) -> Result<Server, ConfigError> {
        cfg.validate()?;
        let pools = cfg.build_pools()?;
        Ok(Server {
            server_id: cfg.server_id(),
            netmask: cfg.netmask(),
            routes: cfg.routes(),
            cfg,
            pools,
            clients: BTreeMap::new(),
            by_addr: BTreeMap::new(),
            timers: BTreeSet::new(),
            quarantine: BTreeMap::new(),
            rate: BTreeMap::new(),
            offers: 0,
            leases: 0,
            stats: Stats::default(),
            fixed: BTreeMap::new(),
            share: None,
        })
    }

    /// Fixes the address or pool the clients of line (`vlans`, `mac`) get from
    /// their next DISCOVER on (RADIUS attributes after authentication); a binding
    /// already made is kept.
    pub fn assign(&mut self, vlans: Vlans, mac: [u8; 6], f: Fixed) -> Result<(), AssignError> {
        if let Some(a) = f.addr {
            let mask = u32::from(self.netmask);
            let (net, gw) = (
                u32::from(self.cfg.gateway.addr) & mask,
                self.cfg.gateway.addr,
            );
            let x = u32::from(a);
            if x & mask != net
                || a == gw
                || x == net
                || x == net | !mask
                || !self.pools.assignable(a)
            {
                return Err(AssignError::BadAddress);
            }
        }
        if let Some(p) = &f.pool {
            if !self.pools.iter().any(|q| q.name() == p.as_str()) {
                return Err(AssignError::NoSuchPool);
            }
        }
        let line = (vlans, mac);
        if !self.fixed.contains_key(&line) && self.fixed.len() >= self.cfg.max_leases as usize {
            return Err(AssignError::TooMany);
        }
        self.fixed.insert(line, f);
        Ok(())
    }

    /// Forgets what AAA fixed for a line (its session ended).
    pub fn unassign(&mut self, vlans: Vlans, mac: [u8; 6]) {
        self.fixed.remove(&(vlans, mac));
    }

    /// The configuration.
    pub fn config(&self) -> &Dhcp4Config {
        &self.cfg
    }
    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// The pools (for the caller's memory and usage reports).
    pub fn pools(&self) -> &Pools {
        &self.pools
    }
    /// Bound leases.
    pub fn lease_count(&self) -> usize {
        self.leases
    }
    /// Outstanding offers.
    pub fn offer_count(&self) -> usize {
        self.offers
    }
    /// Addresses in quarantine after a DHCPDECLINE.
    pub fn quarantined(&self) -> usize {
        self.quarantine.len()
    }
    /// The bound lease of a client.
    pub fn lease(&self, client: &ClientKey) -> Option<Lease> {
        let b = self.clients.get(client)?;
        match b.state {
            State::Bound { until, lease_s } => Some(Lease {
                addr: b.addr,
                lease_s,
                expires_ms: until,
            }),
            State::Offered { .. } => None,
        }
    }
    /// Every bound lease.
    pub fn leases(&self) -> impl Iterator<Item = (&ClientKey, Lease)> + '_ {
        self.clients.iter().filter_map(|(k, b)| match b.state {
            State::Bound { until, lease_s } => Some((
                k,
                Lease {
                    addr: b.addr,
                    lease_s,
                    expires_ms: until,
                },
            )),
            State::Offered { .. } => None,
        })
    }
    /// Who holds `addr` (offered or bound).
    pub fn holder(&self, addr: Ipv4Addr) -> Option<&ClientKey> {
        self.by_addr.get(&addr)
    }

    /// Ends a client's lease or offer from the operator's side (subscriber cleared,
    /// policy refused the lease): the address goes back to the pool and no event is
    /// produced. At its next renewal the client gets a NAK if the address went to
    /// another client meanwhile; if it is still free, the renewal binds it again (the
    /// server adopts RENEWING clients of its pools, which keeps addresses across a
    /// restart without a journal). RFC 2131 has no message for the server to revoke a
    /// lease (RFC 3203 FORCERENEW is not implemented). Returns the address it held.
    pub fn revoke(&mut self, client: &ClientKey) -> Option<Ipv4Addr> {
        self.unbind(client, true).map(|b| b.addr)
    }

    fn drop(&mut self, r: DropReason) -> Handled {
        self.stats.drops[r as usize] += 1;
        Handled::default()
    }

    /// Handles one DHCP message (the UDP payload of a datagram to port 67) received on
    /// the access line `vlans` at `now` (milliseconds, monotonic).
    pub fn handle(&mut self, now: u64, vlans: Vlans, msg: &[u8]) -> Handled {
        let req = match Packet::new_checked(msg).and_then(|p| Repr::parse(&p)) {
            Ok(r) => r,
            Err(ProtoError::Unsupported) => return self.drop(DropReason::Unsupported),
            Err(_) => return self.drop(DropReason::Malformed),
        };
        let Some(mt) = req.message_type else {
            return self.drop(DropReason::Unsupported);
        };
        self.stats.rx[mt as usize - 1] += 1;
        let Some(mac) = req.client_mac() else {
            return self.drop(DropReason::Unsupported);
        };
        if req.op != dataplane::proto::dhcp4::op::BOOTREQUEST {
            return self.drop(DropReason::Unsupported);
        }
        if !self.rate_ok(now, vlans, mac) {
            return self.drop(if self.rate.contains_key(&(vlans, mac)) {
                DropReason::RateLimited
            } else {
                DropReason::RateTableFull
            });
        }
        let key = ClientKey {
            vlans,
            mac,
            client_id: req.client_id.clone(),
        };
        let out = match mt {
            MessageType::Discover => self.discover(now, key, &req),
            MessageType::Request => self.request(now, key, &req),
            MessageType::Decline => self.decline(now, key, &req),
            MessageType::Release => self.release(key, &req),
            MessageType::Inform => self.inform(key, &req),
            MessageType::Offer | MessageType::Ack | MessageType::Nak => {
                Err(DropReason::Unsupported)
            }
        };
        match out {
            Ok(h) => {
                if let Some(r) = &h.reply {
                    self.stats.tx[r.kind as usize - 1] += 1;
                }
                h
            }
            Err(r) => self.drop(r),
        }
    }

    /// Token bucket per (VLANs, MAC): `rate_burst` messages, refilled at
    /// `rate_per_min`. A new client when the table is full is refused.
    fn rate_ok(&mut self, now: u64, vlans: Vlans, mac: [u8; 6]) -> bool {
        let cap = u64::from(self.cfg.rate_burst) * 1000;
        let per_min = u64::from(self.cfg.rate_per_min);
        let full = self.rate.len() >= self.cfg.max_rate_clients as usize;
        let b = match self.rate.get_mut(&(vlans, mac)) {
            Some(b) => b,
            None if full => return false,
            None => self.rate.entry((vlans, mac)).or_insert(Bucket {
                milli: cap,
                at: now,
            }),
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

    // --- state changes -------------------------------------------------------------

    /// Sets the client's binding (the address already taken in the pools); an
    /// earlier binding to another address is given back.
    fn set_binding(&mut self, key: &ClientKey, addr: Ipv4Addr, state: State) {
        if let Some(old) = self.clients.get(key).cloned() {
            self.timers.remove(&(old.until(), old.addr));
            match old.state {
                State::Offered { .. } => self.offers -= 1,
                State::Bound { .. } => self.leases -= 1,
            }
            if old.addr != addr {
                self.by_addr.remove(&old.addr);
                self.pools.free(old.addr);
            }
        }
        let b = Binding { addr, state };
        self.timers.insert((b.until(), addr));
        match state {
            State::Offered { .. } => self.offers += 1,
            State::Bound { .. } => self.leases += 1,
        }
        self.by_addr.insert(addr, key.clone());
        self.clients.insert(key.clone(), b);
    }

    /// Removes the client's binding; `free` returns the address to the pool.
    fn unbind(&mut self, key: &ClientKey, free: bool) -> Option<Binding> {
        let b = self.clients.remove(key)?;
        self.timers.remove(&(b.until(), b.addr));
        self.by_addr.remove(&b.addr);
        match b.state {
            State::Offered { .. } => self.offers -= 1,
            State::Bound { .. } => self.leases -= 1,
        }
        if free {
            self.pools.free(b.addr);
        }
        Some(b)
    }

    /// Whether `addr` is one the server may hand out: in a pool of ours.
    fn ours(&self, addr: Ipv4Addr) -> bool {
        self.pools.contains(addr) && self.pools.assignable(addr)
    }

    fn bind(&mut self, now: u64, key: &ClientKey, addr: Ipv4Addr) -> (Lease, bool) {
        let lease_s = self.cfg.lease_time_s;
        let until = now + u64::from(lease_s) * MS;
        let was_bound = matches!(
            self.clients.get(key),
            Some(Binding {
                state: State::Bound { .. },
                addr: a
            }) if *a == addr
        );
        self.set_binding(key, addr, State::Bound { until, lease_s });
        let lease = Lease {
            addr,
            lease_s,
            expires_ms: until,
        };
        if was_bound {
            self.stats.renewed += 1;
        } else {
            self.stats.bound += 1;
        }
        (lease, was_bound)
    }

    fn lease_event(&self, key: ClientKey, lease: Lease, renewed: bool) -> Event {
        if renewed {
            Event::LeaseRenewed { client: key, lease }
        } else {
            Event::LeaseBound { client: key, lease }
        }
    }

    /// For the messages handled until the next call: a new offer's address from
    /// a pool is taken from the share that steers to worker `w` of `n`
    /// ([`crate::steer::addr_owner`]) while that share has a free address, else
    /// from the whole pool. The vBNG's control plane sets it to the worker whose
    /// session slots hold the client's session, so that the session's owner (the
    /// worker of its address) is the one whose tables it sits in. `None`: any.
    pub fn set_share(&mut self, share: Option<(u16, u16)>) {
        self.share = share.filter(|&(n, w)| n > 1 && w < n);
    }

    /// A free address of pool `name` (the first pool: `None`) of `pools`, from
    /// the share [`Server::set_share`] asked for when it has one.
    fn alloc_in(
        pools: &mut Pools,
        share: Option<(u16, u16)>,
        name: Option<&str>,
    ) -> Result<Ipv4Addr, PoolError> {
        match share {
            Some((n, w)) => crate::pool::alloc_in_share(pools, name, n, w).0,
            None => pools.alloc(name),
        }
    }

    // --- RFC 2131 §4.3.1 -----------------------------------------------------------

    fn discover(&mut self, now: u64, key: ClientKey, req: &Repr) -> Result<Handled, DropReason> {
        let addr = match self.clients.get(&key).cloned() {
            Some(b) => {
                if let State::Offered { .. } = b.state {
                    self.set_binding(
                        &key,
                        b.addr,
                        State::Offered {
                            until: now + u64::from(self.cfg.offer_hold_s) * MS,
                        },
                    );
                }
                b.addr
            }
            None => {
                if self.leases >= self.cfg.max_leases as usize {
                    return Err(DropReason::LeasesFull);
                }
                if self.offers >= self.cfg.max_offers as usize {
                    return Err(DropReason::OffersFull);
                }
                let fixed = self.fixed.get(&(key.vlans, key.mac)).cloned();
                let addr = match fixed {
                    // AAA's address: nobody else may hold it.
                    Some(Fixed { addr: Some(a), .. }) => {
                        if self.by_addr.contains_key(&a) || self.pools.take(a).is_err() {
                            return Err(DropReason::PoolExhausted);
                        }
                        a
                    }
                    // AAA's pool.
                    Some(Fixed {
                        addr: None,
                        pool: Some(p),
                    }) => Self::alloc_in(&mut self.pools, self.share, Some(&p))
                        .map_err(|_| DropReason::PoolExhausted)?,
                    _ => {
                        let want = req
                            .requested_ip
                            .filter(|&a| self.ours(a) && self.pools.take(a).is_ok());
                        match want {
                            Some(a) => a,
                            None => Self::alloc_in(
                                &mut self.pools,
                                self.share,
                                self.cfg.pool.as_deref(),
                            )
                            .map_err(|_| DropReason::PoolExhausted)?,
                        }
                    }
                };
                let reply = match self.reply(req, &key, MessageType::Offer, addr, true) {
                    Ok(r) => r,
                    Err(e) => {
                        self.pools.free(addr);
                        return Err(e);
                    }
                };
                self.set_binding(
                    &key,
                    addr,
                    State::Offered {
                        until: now + u64::from(self.cfg.offer_hold_s) * MS,
                    },
                );
                return Ok(Handled {
                    reply: Some(reply),
                    event: None,
                });
            }
        };
        let reply = self.reply(req, &key, MessageType::Offer, addr, true)?;
        Ok(Handled {
            reply: Some(reply),
            event: None,
        })
    }

    // --- RFC 2131 §4.3.2 -----------------------------------------------------------

    fn request(&mut self, now: u64, key: ClientKey, req: &Repr) -> Result<Handled, DropReason> {
        let current = self.clients.get(&key).map(|b| b.addr);
        if let Some(sid) = req.server_id {
            // SELECTING.
            let (Some(want), true) = (req.requested_ip, req.ciaddr.is_unspecified()) else {
                return Err(DropReason::Inconsistent);
            };
            if sid != self.server_id {
                // The client chose another server: our offer is void.
                if let Some(Binding {
                    state: State::Offered { .. },
                    ..
                }) = self.clients.get(&key)
                {
                    self.unbind(&key, true);
                }
                return Err(DropReason::OtherServer);
            }
            return match current {
                Some(a) if a == want => Ok(self.ack(now, key, req, a)),
                Some(_) => self.nak(req, &key),
                // The offer timed out: bind the address if it is still free.
                None => self.adopt(now, key, req, want),
            };
        }
        if let Some(want) = req.requested_ip.filter(|_| req.ciaddr.is_unspecified()) {
            // INIT-REBOOT: NAK if the address is wrong for the client or the network,
            // silence without a record.
            return match current {
                Some(a) if a == want => Ok(self.ack(now, key, req, a)),
                Some(_) => self.nak(req, &key),
                None if !self.ours(want) => self.nak(req, &key),
                None => Err(DropReason::UnknownClient),
            };
        }
        if req.ciaddr.is_unspecified() {
            return Err(DropReason::Inconsistent);
        }
        // RENEWING (unicast) or REBINDING (broadcast).
        let have = req.ciaddr;
        match current {
            Some(a) if a == have => Ok(self.ack(now, key, req, a)),
            Some(_) => self.nak(req, &key),
            None if !self.ours(have) => self.nak(req, &key),
            None => self.adopt(now, key, req, have),
        }
    }

    /// Binds `addr` for a client we have no record of, if it is free; NAK otherwise.
    fn adopt(
        &mut self,
        now: u64,
        key: ClientKey,
        req: &Repr,
        addr: Ipv4Addr,
    ) -> Result<Handled, DropReason> {
        if !self.ours(addr) || self.by_addr.contains_key(&addr) {
            return self.nak(req, &key);
        }
        if self.leases >= self.cfg.max_leases as usize {
            return Err(DropReason::LeasesFull);
        }
        if self.pools.take(addr).is_err() {
            return self.nak(req, &key);
        }
        let h = self.ack(now, key, req, addr);
        if h.reply.is_none() {
            // No binding was made: give the address back.
            self.pools.free(addr);
        }
        Ok(h)
    }

    fn ack(&mut self, now: u64, key: ClientKey, req: &Repr, addr: Ipv4Addr) -> Handled {
        let from_offer = matches!(
            self.clients.get(&key),
            Some(Binding {
                state: State::Offered { .. },
                ..
            })
        );
        if from_offer && self.leases >= self.cfg.max_leases as usize {
            self.unbind(&key, true);
            return self.drop(DropReason::LeasesFull);
        }
        // Build the reply before binding so that a failure leaves nothing half done.
        let reply = match self.reply(req, &key, MessageType::Ack, addr, true) {
            Ok(r) => r,
            Err(r) => return self.drop(r),
        };
        let (lease, renewed) = self.bind(now, &key, addr);
        Handled {
            reply: Some(reply),
            event: Some(self.lease_event(key, lease, renewed)),
        }
    }

    fn nak(&mut self, req: &Repr, key: &ClientKey) -> Result<Handled, DropReason> {
        let mut r = self.base(req, MessageType::Nak);
        r.ciaddr = Ipv4Addr::UNSPECIFIED;
        r.message = Some(b"requested address not available".to_vec());
        r.client_id = key.client_id.clone();
        // RFC 2131 §4.1: a NAK goes to the relay, else it is broadcast; §4.3.2: with
        // the broadcast bit set, so that a relay agent broadcasts it to the client.
        let dst = if req.giaddr.is_unspecified() {
            Destination::Broadcast
        } else {
            Destination::Relay(req.giaddr)
        };
        r.flags |= FLAG_BROADCAST;
        let reply = self.finish(req, key, r, dst, MessageType::Nak)?;
        Ok(Handled {
            reply: Some(reply),
            event: None,
        })
    }

    // --- RFC 2131 §4.3.3, §4.3.4 ---------------------------------------------------

    fn decline(&mut self, now: u64, key: ClientKey, req: &Repr) -> Result<Handled, DropReason> {
        let (Some(sid), Some(addr)) = (req.server_id, req.requested_ip) else {
            return Err(DropReason::Inconsistent);
        };
        if sid != self.server_id {
            return Err(DropReason::OtherServer);
        }
        if self.clients.get(&key).map(|b| b.addr) != Some(addr) {
            return Err(DropReason::UnknownClient);
        }
        self.unbind(&key, false);
        let until = now + u64::from(self.cfg.decline_hold_s) * MS;
        self.quarantine.insert(addr, until);
        self.timers.insert((until, addr));
        self.stats.declined += 1;
        Ok(Handled {
            reply: None,
            event: Some(Event::LeaseDeclined { client: key, addr }),
        })
    }

    fn release(&mut self, key: ClientKey, req: &Repr) -> Result<Handled, DropReason> {
        if req.server_id.is_some_and(|s| s != self.server_id) {
            return Err(DropReason::OtherServer);
        }
        match self.clients.get(&key) {
            Some(Binding {
                addr,
                state: State::Bound { .. },
            }) if *addr == req.ciaddr => {}
            _ => return Err(DropReason::UnknownClient),
        }
        let addr = req.ciaddr;
        self.unbind(&key, true);
        self.stats.released += 1;
        Ok(Handled {
            reply: None,
            event: Some(Event::LeaseReleased { client: key, addr }),
        })
    }

    // --- RFC 2131 §4.3.5 -----------------------------------------------------------

    fn inform(&mut self, key: ClientKey, req: &Repr) -> Result<Handled, DropReason> {
        if req.ciaddr.is_unspecified() {
            return Err(DropReason::Inconsistent);
        }
        let reply = self.reply(req, &key, MessageType::Ack, Ipv4Addr::UNSPECIFIED, false)?;
        Ok(Handled {
            reply: Some(reply),
            event: None,
        })
    }

    // --- replies -------------------------------------------------------------------

    /// The header of a reply to `req` (RFC 2131 Table 3).
    fn base(&self, req: &Repr, mt: MessageType) -> Repr {
        Repr {
            op: dataplane::proto::dhcp4::op::BOOTREPLY,
            htype: req.htype,
            hlen: req.hlen,
            hops: 0,
            xid: req.xid,
            secs: 0,
            flags: req.flags,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: req.giaddr,
            chaddr: req.chaddr,
            message_type: Some(mt),
            server_id: Some(self.server_id),
            ..Repr::default()
        }
    }

    /// An OFFER or ACK for `addr` (unspecified and without lease for an INFORM ACK).
    fn reply(
        &self,
        req: &Repr,
        key: &ClientKey,
        mt: MessageType,
        addr: Ipv4Addr,
        with_lease: bool,
    ) -> Result<Reply, DropReason> {
        let mut r = self.base(req, mt);
        r.yiaddr = addr;
        if mt == MessageType::Ack {
            r.ciaddr = req.ciaddr;
        }
        if with_lease {
            let (t1, t2) = self.cfg.t1_t2();
            r.lease_time = Some(self.cfg.lease_time_s);
            r.renewal_time = Some(t1);
            r.rebinding_time = Some(t2);
        }
        let asked = |c: u8| match &req.parameter_request_list {
            Some(l) => l.contains(&c),
            None => matches!(c, opt::SUBNET_MASK | opt::ROUTER | opt::DNS),
        };
        if asked(opt::SUBNET_MASK) {
            r.subnet_mask = Some(self.netmask);
        }
        if asked(opt::ROUTER) {
            r.routers = alloc::vec![self.cfg.gateway.addr];
        }
        if asked(opt::DNS) {
            r.dns_servers = self.cfg.dns.clone();
        }
        if asked(opt::MTU) {
            r.mtu = self.cfg.mtu;
        }
        if asked(opt::CLASSLESS_ROUTES) && !self.routes.is_empty() {
            r.classless_routes = Some(self.routes.clone());
        }
        r.client_id = key.client_id.clone();
        let dst = destination(req, addr, mt == MessageType::Ack && !with_lease);
        self.finish(req, key, r, dst, mt)
    }

    /// Echoes option 82 to a relay (RFC 3046 §2.2), emits, checks the size.
    fn finish(
        &self,
        req: &Repr,
        key: &ClientKey,
        mut r: Repr,
        dst: Destination,
        kind: MessageType,
    ) -> Result<Reply, DropReason> {
        if !req.giaddr.is_unspecified() {
            r.relay_agent_info = req.relay_agent_info.clone();
        }
        let mut message = Vec::with_capacity(400);
        r.emit(&mut message).map_err(|_| DropReason::Malformed)?;
        let max = req
            .max_message_size
            .unwrap_or(MIN_MAX_MESSAGE_SIZE)
            .max(MIN_MAX_MESSAGE_SIZE);
        // The limit counts the IP and UDP headers (RFC 2132 §9.10).
        if message.len() + 28 > usize::from(max) {
            return Err(DropReason::ReplyTooLarge);
        }
        Ok(Reply {
            message,
            dst,
            vlans: key.vlans,
            kind,
        })
    }

    // --- timers --------------------------------------------------------------------

    /// Expires offers, leases and quarantined addresses whose time has come; returns
    /// the [`Event::LeaseExpired`] events. Also forgets rate-limiter entries whose
    /// bucket has refilled (idle clients).
    pub fn poll(&mut self, now: u64) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(&(t, addr)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            if self.quarantine.get(&addr) == Some(&t) {
                self.quarantine.remove(&addr);
                self.pools.free(addr);
                continue;
            }
            let Some(key) = self.by_addr.get(&addr).cloned() else {
                continue;
            };
            let Some(b) = self.clients.get(&key).cloned() else {
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
                    events.push(Event::LeaseExpired { client: key, addr });
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

    /// Binds a restored lease (journal): takes the address from the pools. `false`
    /// when it cannot be had (not ours, in use, limits).
    fn restore(&mut self, key: ClientKey, lease: Lease) -> bool {
        if self.clients.contains_key(&key)
            || self.leases >= self.cfg.max_leases as usize
            || !self.ours(lease.addr)
            || self.pools.take(lease.addr).is_err()
        {
            return false;
        }
        self.set_binding(
            &key,
            lease.addr,
            State::Bound {
                until: lease.expires_ms,
                lease_s: lease.lease_s,
            },
        );
        true
    }
}

/// RFC 2131 §4.1: to the relay when `giaddr` is set; else unicast to `ciaddr` when
/// set (and always for an INFORM ACK); else broadcast when the client asks; else
/// unicast to `yiaddr` at `chaddr`.
fn destination(req: &Repr, yiaddr: Ipv4Addr, inform: bool) -> Destination {
    let mac = req.client_mac().unwrap_or([0xff; 6]);
    if !req.giaddr.is_unspecified() {
        Destination::Relay(req.giaddr)
    } else if !req.ciaddr.is_unspecified() || inform {
        Destination::Unicast {
            ip: req.ciaddr,
            mac,
        }
    } else if req.flags & FLAG_BROADCAST != 0 || yiaddr.is_unspecified() {
        Destination::Broadcast
    } else {
        Destination::Unicast { ip: yiaddr, mac }
    }
}

#[cfg(test)]
mod tests;
