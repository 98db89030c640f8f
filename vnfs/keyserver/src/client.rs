//! The CPE side: a sans-IO [`Client`] that authenticates to the key server with
//! IKEv2 (an [`Initiator`], PSK) and turns the server's updates into
//! [`ClientEvent`]s, plus [`UdpClient`], a blocking driver over one UDP socket.
//!
//! Contract (README, "Client library"): after each `handle`/`poll`, take every event
//! with [`Client::poll_event`] and apply it (install, switch, delete SAs) **before**
//! sending the datagrams of [`Client::poll_transmit`]: the IKE answer among them is
//! the CPE's acknowledgement, on which the server moves a rotation forward.

use crate::prelude::*;
use crate::proto::{self, Install, Record, Update, ALL_EPOCHS};
use ipsec::crypto::{Algorithm, KeyMaterial};
use ipsec::ike::wire::Identification;
use ipsec::ike::{DownReason, Event, IkeConfig, IkeState, Initiator, Output, TrafficSelector};
use ipsec::sa::{Direction, SaConfig};
use ipsec::sad::{SaId, Sad};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How a CPE reaches its key server.
#[derive(Clone)]
pub struct ClientConfig {
    /// This CPE's identity (FQDN), as configured on the server.
    pub id: String,
    pub psk: Zeroizing<Vec<u8>>,
    /// The server's identity; checked when set.
    pub server_id: Option<String>,
    /// IKE retransmission: first timeout and tries (RFC 7296 §2.1).
    pub retransmit_ms: u64,
    pub retransmit_tries: u32,
    /// A liveness check (§1.4) after this long without a message from the server,
    /// to notice a server restart; 0: never.
    pub dpd_ms: u64,
    /// Wait this long before authenticating again after the IKE SA went down.
    pub reconnect_ms: u64,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("id", &self.id)
            .field("psk", &"<secret>")
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Defaults: 500 ms retransmissions (4 tries), DPD after 10 s, reconnect after 1 s.
    pub fn new(id: &str, psk: &[u8]) -> Self {
        ClientConfig {
            id: id.to_string(),
            psk: Zeroizing::new(psk.to_vec()),
            server_id: None,
            retransmit_ms: 500,
            retransmit_tries: 4,
            dpd_ms: 10_000,
            reconnect_ms: 1000,
        }
    }
}

/// The SAs of one tunnel (pair) for one key epoch, from this CPE's point of view:
/// ready for [`Sad::add`] like an IKE child SA.
pub struct TunnelKeys {
    /// Names the tunnel (the pair of CPEs); stable across rotations and restarts.
    pub pair: u64,
    /// Key generation of the pair; a rotation installs `epoch + 1`.
    pub epoch: u32,
    /// Send with this epoch at once. When false, keep sending with the previous
    /// epoch until [`ClientEvent::Activate`].
    pub active: bool,
    pub peer_id: String,
    pub local: IpAddr,
    pub peer: IpAddr,
    pub local_ts: TrafficSelector,
    pub remote_ts: TrafficSelector,
    pub inbound: SaConfig,
    pub outbound: SaConfig,
    inbound_key: KeyMaterial,
    outbound_key: KeyMaterial,
    /// Seconds: the server rotates well before the soft lifetime; at the hard one
    /// a CPE that lost its server stops using the keys.
    pub soft_s: u32,
    pub hard_s: u32,
}

impl fmt::Debug for TunnelKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelKeys")
            .field("pair", &self.pair)
            .field("epoch", &self.epoch)
            .field("active", &self.active)
            .field("peer_id", &self.peer_id)
            .field("inbound_spi", &self.inbound.spi)
            .field("outbound_spi", &self.outbound.spi)
            .field("keys", &"<secret>")
            .finish_non_exhaustive()
    }
}

impl TunnelKeys {
    fn from_install(i: &Install) -> Option<TunnelKeys> {
        let inbound_key = KeyMaterial::new(i.algorithm, &i.key_in).ok()?;
        let outbound_key = KeyMaterial::new(i.algorithm, &i.key_out).ok()?;
        let mut inbound = SaConfig::tunnel(i.spi_in, Direction::Inbound, i.peer, i.local);
        let mut outbound = SaConfig::tunnel(i.spi_out, Direction::Outbound, i.local, i.peer);
        inbound.algorithm = i.algorithm;
        outbound.algorithm = i.algorithm;
        inbound.selector = ipsec::ike::ts::selector(&i.remote_ts, &i.local_ts);
        Some(TunnelKeys {
            pair: i.pair,
            epoch: i.epoch,
            active: i.active,
            peer_id: i.peer_id.clone(),
            local: i.local,
            peer: i.peer,
            local_ts: i.local_ts,
            remote_ts: i.remote_ts,
            inbound,
            outbound,
            inbound_key,
            outbound_key,
            soft_s: i.soft_s,
            hard_s: i.hard_s,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.outbound.algorithm
    }

    pub fn inbound_key(&self) -> &KeyMaterial {
        &self.inbound_key
    }

    pub fn outbound_key(&self) -> &KeyMaterial {
        &self.outbound_key
    }

    /// Outbound SPD selector: from our LAN to the peer's.
    pub fn outbound_selector(&self) -> Option<ipsec::spd::Selector> {
        ipsec::ike::ts::selector(&self.local_ts, &self.remote_ts)
    }

    /// Installs both SAs; returns (inbound, outbound). `now` in seconds.
    pub fn install(&self, sad: &mut Sad, now: u64) -> Result<(SaId, SaId), ipsec::Error> {
        let i = sad.add(self.inbound.clone(), &self.inbound_key, now)?;
        match sad.add(self.outbound.clone(), &self.outbound_key, now) {
            Ok(o) => Ok((i, o)),
            Err(e) => {
                sad.remove(i);
                Err(e)
            }
        }
    }
}

/// What the CPE must do.
#[derive(Debug)]
pub enum ClientEvent {
    /// Authenticated: the IKE SA with the key server is up.
    Connected,
    /// Install this epoch's SAs of a tunnel (inbound at once; outbound as the
    /// sending SA if `active`). Re-sent unchanged after a reconnection: installing
    /// an (pair, epoch) already installed is a no-op.
    Install(Box<TunnelKeys>),
    /// Send the pair's traffic with this epoch's outbound SA from now on; keep the
    /// older inbound SA until its `Delete`.
    Activate { pair: u64, epoch: u32 },
    /// Remove the pair's SAs of `epoch`, or of every epoch when `None` (the peer
    /// was revoked or the tunnel is gone).
    Delete { pair: u64, epoch: Option<u32> },
    /// The server restated the CPE's whole state; what it did not restate was
    /// deleted just before with `Delete` events.
    Synced,
    /// The IKE SA is down; the client authenticates again by itself.
    Disconnected(DownReason),
}

/// Drops and happenings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCounters {
    pub updates: u64,
    /// Updates that did not parse (answered, but their records ignored).
    pub bad_updates: u64,
    pub connects: u64,
    pub disconnects: u64,
}

/// The sans-IO client.
pub struct Client {
    cfg: ClientConfig,
    local: SocketAddr,
    server: SocketAddr,
    ike: Option<Initiator>,
    /// When to authenticate again (`ike` is `None`).
    reconnect_at: u64,
    last_rx: u64,
    events: VecDeque<ClientEvent>,
    tx: VecDeque<(SocketAddr, Vec<u8>)>,
    /// (pair, epoch) installed.
    have: HashSet<(u64, u32)>,
    /// Restated since the last sync began.
    restated: Option<HashSet<(u64, u32)>>,
    /// The sending epoch per pair.
    active: HashMap<u64, u32>,
    connected: bool,
    synced: bool,
    counters: ClientCounters,
}

impl Client {
    pub fn new(cfg: ClientConfig, local: SocketAddr, server: SocketAddr) -> Client {
        Client {
            cfg,
            local,
            server,
            ike: None,
            reconnect_at: 0,
            last_rx: 0,
            events: VecDeque::new(),
            tx: VecDeque::new(),
            have: HashSet::new(),
            restated: None,
            active: HashMap::new(),
            connected: false,
            synced: false,
            counters: ClientCounters::default(),
        }
    }

    fn ike_config(&self) -> IkeConfig {
        let any: TrafficSelector = TrafficSelector {
            ip_proto: 0,
            start_port: 0,
            end_port: 65535,
            start_addr: if self.local.is_ipv4() {
                IpAddr::from([0u8; 4])
            } else {
                IpAddr::from([0u8; 16])
            },
            end_addr: if self.local.is_ipv4() {
                IpAddr::from([255u8; 4])
            } else {
                IpAddr::from([255u8; 16])
            },
        };
        let mut c = IkeConfig::psk(&self.cfg.psk, Identification::fqdn(&self.cfg.id), any, any);
        c.remote_id = self.cfg.server_id.as_deref().map(Identification::fqdn);
        c.retransmit_ms = self.cfg.retransmit_ms;
        c.retransmit_tries = self.cfg.retransmit_tries;
        // One DH group: no INVALID_KE round trip with our server.
        c.ike_dh = vec![ipsec::ike::DhGroup::Curve25519];
        c
    }

    /// Starts (or restarts) authentication now.
    pub fn connect(&mut self, now: u64) {
        let mut i = Initiator::new(self.ike_config(), self.local, self.server, now);
        match i.start(now) {
            Ok(out) => {
                self.last_rx = now;
                self.outputs(out, now);
                self.ike = Some(i);
            }
            Err(_) => self.reconnect_at = now + self.cfg.reconnect_ms,
        }
    }

    /// The IKE SPI this client chose (SPIi): demultiplexes many clients on one
    /// socket (IKE header octets 0..8).
    pub fn spi_i(&self) -> Option<u64> {
        self.ike.as_ref().map(|i| i.spis().0)
    }

    /// The server's address (where datagrams go).
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Points the client at another server address (takes effect at the next
    /// authentication).
    pub fn set_server(&mut self, server: SocketAddr) {
        self.server = server;
    }

    /// One datagram from the server. From port 4500 — where the IKE stack moves
    /// when it detects a NAT (RFC 7296 §2.23) — IKE messages carry the non-ESP
    /// marker (RFC 3948 §2.2), which is stripped here.
    pub fn handle(&mut self, data: &[u8], from: SocketAddr, now: u64) {
        let Some(i) = self.ike.as_mut() else { return };
        let out = if from.port() == ipsec::sa::NATT_PORT {
            i.handle_natt(data, from, now)
        } else {
            i.handle(data, from, now)
        };
        if !out.is_empty() {
            self.last_rx = now;
        }
        self.outputs(out, now);
    }

    /// Timers: retransmissions, liveness checks, reconnection.
    pub fn poll(&mut self, now: u64) {
        match self.ike.as_mut() {
            None => {
                if now >= self.reconnect_at {
                    self.connect(now);
                }
            }
            Some(i) => {
                let mut out = i.poll(now);
                if self.cfg.dpd_ms > 0
                    && i.state() == IkeState::Established
                    && !i.busy()
                    && now.saturating_sub(self.last_rx) >= self.cfg.dpd_ms
                {
                    if let Ok(o) = i.liveness(now) {
                        out.extend(o);
                        self.last_rx = now;
                    }
                }
                self.outputs(out, now);
            }
        }
    }

    /// When `poll` next has work (ms).
    pub fn next_timeout(&self) -> u64 {
        match &self.ike {
            None => self.reconnect_at,
            Some(i) => {
                let dpd = if self.cfg.dpd_ms > 0 {
                    self.last_rx + self.cfg.dpd_ms
                } else {
                    u64::MAX
                };
                i.next_timeout().unwrap_or(u64::MAX).min(dpd)
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// The next datagram to send: (to, data).
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.tx.pop_front()
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Connected and the server's last full restatement has been applied.
    pub fn is_synced(&self) -> bool {
        self.connected && self.synced
    }

    /// (pair, epoch) of every installed SA pair.
    pub fn installed(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.have.iter().copied()
    }

    /// The epoch a pair sends with.
    pub fn sending_epoch(&self, pair: u64) -> Option<u32> {
        self.active.get(&pair).copied()
    }

    pub fn counters(&self) -> ClientCounters {
        self.counters
    }

    fn outputs(&mut self, out: Vec<Output>, now: u64) {
        for o in out {
            match o {
                // The server speaks on one port; NAT-T framing is the initiator's
                // business when it moved to 4500 (then `data` has the marker).
                Output::Send { to, data, .. } => self.tx.push_back((to, data)),
                Output::Event(e) => self.event(e, now),
            }
        }
    }

    fn event(&mut self, e: Event, now: u64) {
        match e {
            Event::IkeSaUp { .. } => {
                self.connected = true;
                self.synced = false;
                self.counters.connects += 1;
                self.events.push_back(ClientEvent::Connected);
            }
            Event::IkeSaDown { reason, .. } => {
                self.ike = None;
                if self.connected {
                    self.counters.disconnects += 1;
                }
                self.connected = false;
                self.synced = false;
                self.restated = None;
                self.reconnect_at = now + self.cfg.reconnect_ms;
                self.events.push_back(ClientEvent::Disconnected(reason));
            }
            Event::PrivateRequest { notifies, .. } => {
                for mut n in notifies {
                    if n.kind == proto::KS_UPDATE {
                        match Update::parse(&n.data) {
                            Ok(u) => {
                                self.counters.updates += 1;
                                self.apply(u);
                            }
                            Err(_) => self.counters.bad_updates += 1,
                        }
                    }
                    zeroize::Zeroize::zeroize(&mut n.data);
                }
            }
            _ => {}
        }
    }

    fn delete(&mut self, pair: u64, epoch: u32) {
        if self.have.remove(&(pair, epoch)) {
            if self.active.get(&pair) == Some(&epoch) {
                self.active.remove(&pair);
            }
            self.events.push_back(ClientEvent::Delete {
                pair,
                epoch: Some(epoch),
            });
        }
    }

    fn apply(&mut self, u: Update) {
        if u.flags & proto::FLAG_SYNC_BEGIN != 0 {
            self.restated = Some(HashSet::new());
        }
        for r in u.records {
            match r {
                Record::Install(i) => {
                    let key = (i.pair, i.epoch);
                    if let Some(s) = self.restated.as_mut() {
                        s.insert(key);
                    }
                    let new = !self.have.contains(&key);
                    let activates = i.active && self.active.get(&i.pair) != Some(&i.epoch);
                    if new {
                        if let Some(t) = TunnelKeys::from_install(&i) {
                            self.have.insert(key);
                            if i.active {
                                self.active.insert(i.pair, i.epoch);
                            }
                            self.events.push_back(ClientEvent::Install(Box::new(t)));
                        }
                    } else if activates {
                        self.active.insert(i.pair, i.epoch);
                        self.events.push_back(ClientEvent::Activate {
                            pair: i.pair,
                            epoch: i.epoch,
                        });
                    }
                }
                Record::Activate { pair, epoch } => {
                    if self.have.contains(&(pair, epoch)) && self.active.get(&pair) != Some(&epoch)
                    {
                        self.active.insert(pair, epoch);
                        self.events.push_back(ClientEvent::Activate { pair, epoch });
                    }
                }
                Record::Delete { pair, epoch } if epoch == ALL_EPOCHS => {
                    let had = self.have.iter().any(|(p, _)| *p == pair);
                    self.have.retain(|(p, _)| *p != pair);
                    self.active.remove(&pair);
                    if had {
                        self.events
                            .push_back(ClientEvent::Delete { pair, epoch: None });
                    }
                }
                Record::Delete { pair, epoch } => self.delete(pair, epoch),
            }
        }
        if u.flags & proto::FLAG_SYNC_END != 0 {
            if let Some(keep) = self.restated.take() {
                let gone: Vec<(u64, u32)> = self
                    .have
                    .iter()
                    .filter(|k| !keep.contains(k))
                    .copied()
                    .collect();
                for (p, e) in gone {
                    self.delete(p, e);
                }
            }
            self.synced = true;
            self.events.push_back(ClientEvent::Synced);
        }
    }
}

/// A [`Client`] on its own UDP socket, driven by blocking calls.
pub struct UdpClient {
    pub client: Client,
    sock: UdpSocket,
    start: Instant,
    buf: Vec<u8>,
}

impl UdpClient {
    /// Binds `bind` (port 0 for any) and starts authenticating to `server`.
    pub fn connect(
        cfg: ClientConfig,
        bind: SocketAddr,
        server: SocketAddr,
    ) -> std::io::Result<UdpClient> {
        let sock = UdpSocket::bind(bind)?;
        let local = sock.local_addr()?;
        let mut c = UdpClient {
            client: Client::new(cfg, local, server),
            sock,
            start: Instant::now(),
            buf: vec![0u8; 65536],
        };
        c.client.connect(0);
        c.flush()?;
        Ok(c)
    }

    /// Milliseconds since the client started (its clock).
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn flush(&mut self) -> std::io::Result<()> {
        while let Some((to, d)) = self.client.poll_transmit() {
            self.sock.send_to(&d, to)?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for traffic, runs the timers, and hands each event to
    /// `apply` before the answers (the acknowledgements) are sent.
    pub fn run_once(
        &mut self,
        timeout: Duration,
        mut apply: impl FnMut(ClientEvent),
    ) -> std::io::Result<()> {
        let now = self.now();
        let wait = self.client.next_timeout().saturating_sub(now).max(1);
        let wait = Duration::from_millis(wait)
            .min(timeout)
            .max(Duration::from_millis(1));
        self.sock.set_read_timeout(Some(wait))?;
        match self.sock.recv_from(&mut self.buf) {
            Ok((n, from)) => {
                let now = self.now();
                let d = self.buf[..n].to_vec();
                self.client.handle(&d, from, now);
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e),
        }
        let now = self.now();
        self.client.poll(now);
        while let Some(e) = self.client.poll_event() {
            apply(e);
        }
        self.flush()
    }
}
