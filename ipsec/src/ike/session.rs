//! Sans-IO IKEv2 state machines (RFC 7296): an [`Initiator`] for one IKE SA and a
//! [`Responder`] endpoint for many. Neither owns a socket or a clock: datagrams go in
//! through `handle(datagram, from, now)`, timers run through `poll(now)`, and both
//! return [`Output`]s (datagrams to send, [`Event`]s). `now` is a monotonic time in
//! milliseconds.
//!
//! Implemented:
//! * IKE_SA_INIT (§1.2): proposal selection (§2.7, §3.3.6), INVALID_KE_PAYLOAD and
//!   the retry with the responder's group (§1.2, §3.10.1), COOKIE once more than
//!   `half_open_limit` SAs are half open (§2.6);
//! * NAT traversal (§2.23): NAT_DETECTION_*_IP computed and checked; behind a NAT
//!   the initiator moves to port 4500, IKE messages there carry the non-ESP marker
//!   (RFC 3948 §2.2, `handle_natt` / `Output::Send { natt }`), both ends follow
//!   the peer's address after each authenticated message, and child SAs are
//!   UDP-encapsulated;
//! * IKE_AUTH (§1.2) with a pre-shared key (AUTH method 2, §2.15), one child SA with
//!   ESP AES-GCM-16 (RFC 4106 / RFC 5282), KEYMAT (§2.17), traffic selectors narrowed
//!   to the intersection (§2.9); the result is a [`ChildSa`] that installs into
//!   the [`Sad`];
//! * CREATE_CHILD_SA rekeying of the child SA from either end (§1.3.3, §2.8), the
//!   rekey's initiator deleting the old SA; with [`IkeConfig::child_pfs`] the request
//!   carries a KE payload and KEYMAT includes the new g^ir (PFS, §1.3.1, §2.17); a
//!   responder accepts a KE in any group it allows for the IKE SA;
//! * CREATE_CHILD_SA rekeying of the IKE SA from either end (§1.3.2, §2.18):
//!   SKEYSEED from the old SA's SK_d, the child SAs move to the new IKE SA (whose
//!   initiator is the rekey's initiator, so this end's role may change), and the
//!   rekey's initiator deletes the old IKE SA; requests that cross an IKE SA rekey
//!   get TEMPORARY_FAILURE (§2.25.1, §2.25.2);
//! * child and IKE SA lifetimes ([`IkeConfig::child_lifetime`],
//!   [`IkeConfig::ike_lifetime`]): `poll` starts a rekey at the soft lifetime (less a
//!   random jitter) and deletes the SA at the hard one;
//! * message IDs with a window of one (§2.3), retransmission with exponential
//!   back-off by the requester only and cached responses for retransmitted requests
//!   (§2.1), INFORMATIONAL deletes of child SAs and the IKE SA and empty liveness
//!   checks, answered and sent (`liveness`, §1.4, §3.11).
//!
//! Not implemented: additional child SAs (answered NO_ADDITIONAL_SAS),
//! simultaneous-rekey collision resolution by nonces (§2.8.1: crossing IKE SA rekeys
//! both fail with TEMPORARY_FAILURE and are retried by the caller; crossing child SA
//! rekeys leave two new child SAs), a retry after INVALID_KE_PAYLOAD on a rekey,
//! byte and packet lifetimes, certificates and EAP, groups other than 14, 19 and 31, NAT
//! keepalives (RFC 3948 §2.3), MOBIKE.
//!
//! Every received datagram that does not advance the exchange is dropped and counted
//! in [`IkeCounters`]; such drops never change an SA's state.

use super::keys::{self, DhGroup, DhPrivate, IkeKeys, KeyError, Prf, SecretBytes};
use super::sk::{self, SkError};
use super::ts;
use super::wire::{
    self, exchange, flags, notify, protocol, transform, Auth, Delete, Header, Identification,
    KeyExchange, Message, Notify, Payload, Proposal, TrafficSelector, Transform,
};
use crate::crypto::{Algorithm, GcmKey, KeyMaterial};
use crate::error::Error;
use crate::sa::{Direction, SaConfig, UdpEncap};
use crate::sad::{SaId, Sad};
use crate::spd::Selector;
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::net::SocketAddr;
use hashbrown::HashMap;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// What both roles are configured with.
pub struct IkeConfig {
    /// The pre-shared key (§2.15). Never printed.
    pub psk: SecretBytes,
    pub local_id: Identification,
    /// The peer's identity must equal this, when set.
    pub remote_id: Option<Identification>,
    /// IKE SA algorithms, most preferred first.
    pub ike_encr: Vec<Algorithm>,
    pub ike_prf: Vec<Prf>,
    pub ike_dh: Vec<DhGroup>,
    /// Child SA ciphers (ESP AES-GCM-16), most preferred first.
    pub esp_encr: Vec<Algorithm>,
    /// Offer / accept 64-bit extended sequence numbers.
    pub esn: bool,
    /// Traffic behind this end and behind the peer (§2.9). The initiator proposes
    /// them; the responder narrows the proposal to them.
    pub local_ts: TrafficSelector,
    pub remote_ts: TrafficSelector,
    /// First retransmission timeout; doubled for each retry (§2.1).
    pub retransmit_ms: u64,
    /// Retransmissions before the exchange (and the IKE SA) is given up.
    pub retransmit_tries: u32,
    /// Responder: demand a COOKIE once this many SAs are half open (§2.6).
    pub half_open_limit: usize,
    /// Responder: half-open and closed SAs are forgotten after this long. Either
    /// role: an IKE SA replaced by a rekey is closed after this long without the
    /// peer's Delete.
    pub half_open_timeout_ms: u64,
    /// PFS for child SA rekeys (§1.3.1): the Diffie-Hellman group of the KE payload
    /// this end sends in CREATE_CHILD_SA; as responder, PFS is then required.
    /// `None`: rekeys without KE, but a peer's KE in an allowed group is accepted.
    pub child_pfs: Option<DhGroup>,
    /// Child SA lifetimes, counted from the SA's creation; `None`: no expiry.
    pub child_lifetime: Option<Lifetime>,
    /// IKE SA lifetimes, counted from IKE_AUTH or the rekey that made the SA: `poll`
    /// rekeys the IKE SA at the soft one (§2.18) and deletes it at the hard one.
    pub ike_lifetime: Option<Lifetime>,
    /// Responder with many peers: the PSK of each initiator identity (IDi), used
    /// in place of `psk` for both AUTH payloads (§2.15). When not empty, an IDi
    /// missing here fails authentication. Keys: (ID type, ID data).
    pub peer_psks: PeerPsks,
}

/// Per-peer pre-shared keys, by (ID type, ID data) of the peer's identity.
pub type PeerPsks = alloc::collections::BTreeMap<(u8, Vec<u8>), SecretBytes>;

/// Soft and hard lifetimes of an SA, in milliseconds of `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    /// A rekey starts this long after creation, less a random part of `jitter_ms`
    /// (so that both ends do not start it at once, §2.8.1).
    pub soft_ms: u64,
    /// The SA is deleted this long after creation, rekeyed or not.
    pub hard_ms: u64,
    pub jitter_ms: u64,
}

impl Lifetime {
    /// (soft, hard) deadlines for an SA made now; soft less a random jitter, never
    /// after hard.
    fn deadlines(&self, ctx: &Ctx<'_>) -> (u64, u64) {
        let jitter = match self.jitter_ms {
            0 => 0,
            j => random_u64(ctx.rng).map_or(0, |r| r % j.saturating_add(1)),
        };
        let soft = self.soft_ms.saturating_sub(jitter).min(self.hard_ms);
        (
            ctx.now.saturating_add(soft),
            ctx.now.saturating_add(self.hard_ms),
        )
    }
}

impl fmt::Debug for IkeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IkeConfig")
            .field("local_id", &self.local_id)
            .field("remote_id", &self.remote_id)
            .field("psk", &"<secret>")
            .finish_non_exhaustive()
    }
}

impl IkeConfig {
    /// PSK authentication with the default algorithms (AES-GCM-16 256/128,
    /// HMAC-SHA2-256/384, Curve25519, P-256, MODP-2048) and timers (500 ms doubling, 5
    /// retries; cookies above 32 half-open SAs, which expire after 30 s).
    pub fn psk(
        psk: &[u8],
        local_id: Identification,
        local_ts: TrafficSelector,
        remote_ts: TrafficSelector,
    ) -> Self {
        IkeConfig {
            psk: Zeroizing::new(psk.to_vec()),
            local_id,
            remote_id: None,
            ike_encr: vec![Algorithm::Aes256Gcm16, Algorithm::Aes128Gcm16],
            ike_prf: vec![Prf::HmacSha256, Prf::HmacSha384],
            ike_dh: vec![DhGroup::Curve25519, DhGroup::Ecp256, DhGroup::Modp2048],
            esp_encr: vec![Algorithm::Aes256Gcm16, Algorithm::Aes128Gcm16],
            esn: false,
            local_ts,
            remote_ts,
            retransmit_ms: 500,
            retransmit_tries: 5,
            half_open_limit: 32,
            half_open_timeout_ms: 30_000,
            child_pfs: None,
            child_lifetime: None,
            ike_lifetime: None,
            peer_psks: PeerPsks::new(),
        }
    }
}

/// Something for the caller to do.
#[derive(Debug)]
pub enum Output {
    /// Send `data` as one UDP datagram to `to`: from the local IKE port (500), or
    /// with `natt` from port 4500, in which case `data` already starts with the
    /// four-byte non-ESP marker (RFC 3948 §2.2, RFC 7296 §2.23).
    Send {
        to: SocketAddr,
        data: Vec<u8>,
        natt: bool,
    },
    Event(Event),
}

/// Why an IKE SA ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownReason {
    DeletedByPeer,
    DeletedLocally,
    /// The PSK AUTH did not verify, or the peer said AUTHENTICATION_FAILED.
    AuthenticationFailed,
    /// No common IKE proposal (or no acceptable group).
    NoProposalChosen,
    /// A request went unanswered after every retransmission.
    Timeout,
    /// A half-open responder SA saw no IKE_AUTH in time.
    HalfOpenExpired,
    /// The peer answered with this error notify.
    PeerError(u16),
    /// The peer's messages were authentic but unusable (bad KE value, missing
    /// payloads, an SA we did not offer).
    ProtocolError,
    /// Replaced by a new IKE SA (§2.18; see [`Event::IkeSaRekeyed`]) and deleted.
    Rekeyed,
    /// Reached its hard lifetime ([`IkeConfig::ike_lifetime`]) and was deleted.
    Expired,
}

/// State changes.
#[derive(Debug)]
pub enum Event {
    IkeSaUp {
        spi_i: u64,
        spi_r: u64,
        /// NAT detection (§2.23): this end / the peer is behind a NAT.
        nat_local: bool,
        nat_remote: bool,
    },
    ChildSaUp(Box<ChildSa>),
    /// The IKE SA is up but the child SA was refused with this notify type.
    ChildSaFailed {
        notify: u16,
    },
    ChildSaDown {
        inbound_spi: u32,
        outbound_spi: u32,
    },
    IkeSaDown {
        spi_i: u64,
        spi_r: u64,
        reason: DownReason,
    },
    /// The IKE SA was rekeyed (§2.18): the child SAs now belong to the new IKE SA
    /// (`spi_i`, `spi_r`; SPIi is the rekey initiator's). The old one ends later
    /// with `IkeSaDown { reason: Rekeyed }`.
    IkeSaRekeyed {
        old_spi_i: u64,
        old_spi_r: u64,
        spi_i: u64,
        spi_r: u64,
    },
    /// Our IKE SA rekey was refused with this notify (or its answer was unusable:
    /// INVALID_SYNTAX); the old IKE SA stays.
    IkeSaRekeyFailed {
        notify: u16,
    },
    /// The peer sent an INFORMATIONAL request with notifies of the private-use
    /// status range (§3.10.1, [`notify::FIRST_PRIVATE_STATUS`] and above); these
    /// are they. The request is answered (empty) right after this event in the
    /// same output list, so a caller that acts on outputs in order has acted on
    /// the notifies before the peer sees the answer.
    PrivateRequest {
        spi_i: u64,
        spi_r: u64,
        notifies: Vec<Notify>,
    },
    /// Our [`Initiator::private_request`] / [`Responder::private_request`] was
    /// answered; the private-use notifies of the answer (often none).
    PrivateAnswered {
        spi_i: u64,
        spi_r: u64,
        notifies: Vec<Notify>,
    },
}

/// A negotiated ESP child SA: both directions, ready for [`Sad::add`].
pub struct ChildSa {
    pub ike_spi_i: u64,
    pub ike_spi_r: u64,
    pub inbound: SaConfig,
    pub outbound: SaConfig,
    inbound_key: KeyMaterial,
    outbound_key: KeyMaterial,
    /// The narrowed selectors: traffic behind this end and behind the peer.
    pub local_ts: TrafficSelector,
    pub remote_ts: TrafficSelector,
    /// A rekey (§2.8): the inbound SPI of the SA this one replaces. The old SA
    /// stays until its `ChildSaDown`; send with the newest outbound SA.
    pub rekey_of: Option<u32>,
}

impl fmt::Debug for ChildSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSa")
            .field("inbound_spi", &self.inbound.spi)
            .field("outbound_spi", &self.outbound.spi)
            .field("algorithm", &self.outbound.algorithm)
            .field("keys", &"<secret>")
            .finish_non_exhaustive()
    }
}

impl ChildSa {
    pub fn inbound_key(&self) -> &KeyMaterial {
        &self.inbound_key
    }

    pub fn outbound_key(&self) -> &KeyMaterial {
        &self.outbound_key
    }

    /// Outbound SPD selector: from our side's traffic to the peer's.
    pub fn outbound_selector(&self) -> Option<Selector> {
        ts::selector(&self.local_ts, &self.remote_ts)
    }

    /// Installs both SAs; returns (inbound, outbound). `now` in seconds, as the SAD
    /// counts lifetimes.
    pub fn install(&self, sad: &mut Sad, now: u64) -> Result<(SaId, SaId), Error> {
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

/// Drops and other happenings, per endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IkeCounters {
    pub received: u64,
    pub sent: u64,
    /// Our requests sent again after a timeout.
    pub retransmits: u64,
    /// Retransmitted requests answered from the response cache.
    pub retransmits_answered: u64,
    /// Datagrams that did not parse (truncated, bad lengths, bad version...).
    pub parse_errors: u64,
    /// Encrypted payloads whose ICV did not verify (forged or corrupted).
    pub integrity_failures: u64,
    /// No IKE SA with these SPIs.
    pub unknown_spi: u64,
    /// Message ID outside the window: replays, stale responses.
    pub bad_message_id: u64,
    /// Well-formed but not expected in this state (wrong flags, wrong peer).
    pub unexpected: u64,
    /// Well-formed, unacceptable content (missing payloads, bad proposals).
    pub invalid: u64,
    pub cookies_sent: u64,
    pub invalid_ke_sent: u64,
    pub no_proposal_chosen: u64,
    pub auth_failures: u64,
    pub half_open_expired: u64,
}

/// Where an IKE SA is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IkeState {
    /// Initiator, not started.
    Idle,
    InitSent,
    AuthSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    HalfOpen,
    Established,
    /// Our Delete of the IKE SA is outstanding.
    Deleting,
    /// Replaced by a new IKE SA (§2.18), waiting for the rekey initiator's Delete.
    Rekeyed,
    Closed,
}

/// A local request could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The IKE SA is not established (or unknown).
    NotEstablished,
    /// A request is outstanding (window size 1, §2.3).
    Busy,
    /// There is no child SA to delete or rekey.
    NoChild,
    /// The system random generator failed.
    Random,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestError::NotEstablished => "IKE SA not established",
            RequestError::Busy => "a request is already outstanding",
            RequestError::NoChild => "no child SA",
            RequestError::Random => "random generator failed",
        })
    }
}

impl core::error::Error for RequestError {}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ReqKind {
    Init,
    Auth,
    /// Delete of the child SA with this inbound SPI.
    DeleteChild(u32),
    DeleteIke,
    /// CREATE_CHILD_SA rekeying the child SA with inbound SPI `old`, with our
    /// nonce and the inbound SPI we proposed.
    RekeyChild {
        old: u32,
        ni: Vec<u8>,
        spi: u32,
    },
    /// CREATE_CHILD_SA rekeying the IKE SA, with our nonce and new IKE SPI.
    RekeyIke {
        ni: Vec<u8>,
        spi: u64,
    },
    /// An empty INFORMATIONAL request: a liveness check (§1.4, dead peer detection).
    Liveness,
    /// An INFORMATIONAL request with private-use notifies.
    Private,
}

struct Pending {
    msg_id: u32,
    exchange: u8,
    kind: ReqKind,
    data: Vec<u8>,
    tries: u32,
    next_at: u64,
}

struct Cached {
    msg_id: u32,
    request: Vec<u8>,
    response: Vec<u8>,
}

#[derive(Clone, Copy)]
struct ChildRef {
    inbound_spi: u32,
    outbound_spi: u32,
    local_ts: TrafficSelector,
    remote_ts: TrafficSelector,
    /// When `poll` starts a rekey / deletes it (`u64::MAX`: never).
    rekey_at: u64,
    expire_at: u64,
}

/// The negotiated parameters of a new child SA.
struct ChildChoice {
    alg: Algorithm,
    esn: bool,
    inbound_spi: u32,
    outbound_spi: u32,
    local_ts: TrafficSelector,
    remote_ts: TrafficSelector,
}

/// The exchange that creates a child SA: its nonces (Ni from the exchange's
/// initiator), whether this end sent the request (KEYMAT order, §2.17), and the
/// inbound SPI of the SA it rekeys.
#[derive(Clone, Copy)]
struct Creation<'a> {
    ni: &'a [u8],
    nr: &'a [u8],
    we_initiated: bool,
    rekey_of: Option<u32>,
    /// g^ir of the exchange's KE payloads (PFS, §2.17).
    shared: Option<&'a [u8]>,
}

/// Per-call context: configuration, randomness, counters, the output list.
struct Ctx<'a> {
    cfg: &'a IkeConfig,
    rng: &'a SystemRandom,
    counters: &'a mut IkeCounters,
    out: &'a mut Vec<Output>,
    now: u64,
}

impl Ctx<'_> {
    fn send(&mut self, to: SocketAddr, data: &[u8], natt: bool) {
        self.counters.sent += 1;
        self.out.push(datagram(to, data, natt));
    }

    fn event(&mut self, e: Event) {
        self.out.push(Output::Event(e));
    }
}

/// The private-use status notifies (§3.10.1) of a message, in order.
fn private_notifies(pl: &[Payload]) -> Vec<Notify> {
    pl.iter()
        .filter_map(|p| match p {
            Payload::Notify(n) if n.kind >= notify::FIRST_PRIVATE_STATUS => Some(n.clone()),
            _ => None,
        })
        .collect()
}

/// The non-ESP marker that starts IKE messages on port 4500 (RFC 3948 §2.2).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

fn datagram(to: SocketAddr, data: &[u8], natt: bool) -> Output {
    let mut d = Vec::with_capacity(data.len() + 4);
    if natt {
        d.extend_from_slice(&NON_ESP_MARKER);
    }
    d.extend_from_slice(data);
    Output::Send { to, data: d, natt }
}

/// Strips the non-ESP marker of a datagram received on port 4500; `None` for ESP
/// and NAT keepalives.
fn strip_marker(d: &[u8]) -> Option<&[u8]> {
    match d.split_first_chunk::<4>() {
        Some((m, rest)) if *m == NON_ESP_MARKER => Some(rest),
        _ => None,
    }
}

fn random_u64(rng: &SystemRandom) -> Result<u64, KeyError> {
    let mut b = [0u8; 8];
    rng.fill(&mut b).map_err(|_| KeyError::Random)?;
    Ok(u64::from_be_bytes(b))
}

/// A non-zero SPI (IKE) or one above the reserved range (ESP, RFC 4303 §2.1).
fn random_spi64(rng: &SystemRandom) -> Result<u64, KeyError> {
    loop {
        let s = random_u64(rng)?;
        if s != 0 {
            return Ok(s);
        }
    }
}

fn random_spi32(rng: &SystemRandom) -> Result<u32, KeyError> {
    loop {
        let s = (random_u64(rng)? >> 32) as u32;
        if s >= 256 {
            return Ok(s);
        }
    }
}

fn nonce(rng: &SystemRandom) -> Result<Vec<u8>, KeyError> {
    let mut n = vec![0u8; 32];
    rng.fill(&mut n).map_err(|_| KeyError::Random)?;
    Ok(n)
}

fn encr_transform(a: Algorithm) -> Transform {
    Transform::with_key_len(
        transform::ENCR,
        transform::ENCR_AES_GCM_16,
        (a.key_len() * 8) as u16,
    )
}

fn encr_alg(t: &Transform) -> Option<Algorithm> {
    if t.kind != transform::ENCR || t.id != transform::ENCR_AES_GCM_16 {
        return None;
    }
    match t.key_len()? {
        128 => Some(Algorithm::Aes128Gcm16),
        256 => Some(Algorithm::Aes256Gcm16),
        _ => None,
    }
}

/// Transform types a proposal of `proto` may carry; INTEG only as NONE (AEAD,
/// RFC 5282 §8). A proposal with anything else is skipped (§3.3.6).
fn proposal_usable(p: &Proposal, proto: u8) -> bool {
    p.transforms.iter().all(|t| match t.kind {
        transform::ENCR => true,
        transform::PRF | transform::DH => proto == protocol::IKE || t.kind == transform::DH,
        transform::INTEG => t.id == transform::INTEG_NONE,
        transform::ESN => proto == protocol::ESP,
        _ => false,
    })
}

fn offers(p: &Proposal, kind: u8, id: u16) -> bool {
    p.transforms.iter().any(|t| t.kind == kind && t.id == id)
}

#[derive(Clone, Copy)]
struct IkeSuite {
    encr: Algorithm,
    prf: Prf,
    dh: DhGroup,
}

/// Responder's choice among the initiator's IKE proposals: the first usable proposal,
/// within it our preferred cipher and PRF, and the KE payload's group if acceptable
/// (saving an INVALID_KE_PAYLOAD round trip), else our preferred group. In
/// IKE_SA_INIT proposals carry no SPI; in an IKE SA rekey (`rekey`) they carry the
/// sender's new 8-byte SPI (§3.3.1).
fn select_ike(
    props: &[Proposal],
    cfg: &IkeConfig,
    ke_group: u16,
    rekey: bool,
) -> Option<(u8, IkeSuite)> {
    for p in props {
        if p.protocol != protocol::IKE
            || !ike_spi_ok(&p.spi, rekey)
            || !proposal_usable(p, protocol::IKE)
        {
            continue;
        }
        let encr = cfg
            .ike_encr
            .iter()
            .copied()
            .find(|a| p.transforms.iter().any(|t| encr_alg(t) == Some(*a)));
        let prf = cfg
            .ike_prf
            .iter()
            .copied()
            .find(|f| offers(p, transform::PRF, f.id()));
        let dh = DhGroup::from_id(ke_group)
            .filter(|g| cfg.ike_dh.contains(g) && offers(p, transform::DH, ke_group))
            .or_else(|| {
                cfg.ike_dh
                    .iter()
                    .copied()
                    .find(|g| offers(p, transform::DH, g.id()))
            });
        if let (Some(encr), Some(prf), Some(dh)) = (encr, prf, dh) {
            return Some((p.num, IkeSuite { encr, prf, dh }));
        }
    }
    None
}

/// No SPI in IKE_SA_INIT; a non-zero 8-byte SPI in an IKE SA rekey.
fn ike_spi_ok(spi: &[u8], rekey: bool) -> bool {
    if rekey {
        spi64(spi).is_some()
    } else {
        spi.is_empty()
    }
}

fn spi64(b: &[u8]) -> Option<u64> {
    let s = u64::from_be_bytes(b.try_into().ok()?);
    (s != 0).then_some(s)
}

fn ike_proposal(cfg: &IkeConfig) -> Proposal {
    let mut transforms: Vec<Transform> = cfg.ike_encr.iter().map(|a| encr_transform(*a)).collect();
    transforms.extend(
        cfg.ike_prf
            .iter()
            .map(|p| Transform::new(transform::PRF, p.id())),
    );
    transforms.extend(
        cfg.ike_dh
            .iter()
            .map(|g| Transform::new(transform::DH, g.id())),
    );
    Proposal {
        num: 1,
        protocol: protocol::IKE,
        spi: Vec::new(),
        transforms,
    }
}

/// Our ESP proposal; with `pfs` (a rekey with KE) its DH transform.
fn esp_proposal(cfg: &IkeConfig, spi: u32, pfs: Option<DhGroup>) -> Proposal {
    let mut transforms: Vec<Transform> = cfg.esp_encr.iter().map(|a| encr_transform(*a)).collect();
    if let Some(g) = pfs {
        transforms.push(Transform::new(transform::DH, g.id()));
    }
    if cfg.esn {
        transforms.push(Transform::new(transform::ESN, transform::ESN_YES));
    }
    transforms.push(Transform::new(transform::ESN, transform::ESN_NO));
    Proposal {
        num: 1,
        protocol: protocol::ESP,
        spi: spi.to_be_bytes().to_vec(),
        transforms,
    }
}

fn spi32(b: &[u8]) -> Option<u32> {
    let s = u32::from_be_bytes(b.try_into().ok()?);
    (s >= 256).then_some(s)
}

/// Responder's choice of a child SA proposal.
struct EspChoice {
    num: u8,
    peer_spi: u32,
    alg: Algorithm,
    esn: bool,
    /// The PFS group (§1.3.1), only in CREATE_CHILD_SA.
    dh: Option<DhGroup>,
}

/// The PFS group for an ESP proposal in CREATE_CHILD_SA: the KE payload's group when
/// offered and allowed (ours or an IKE group), else ours, else an IKE group offered;
/// `Some(None)` without PFS (no DH transform, or NONE offered, and PFS not required
/// by us); `None` when the proposal is unacceptable.
fn select_pfs(p: &Proposal, cfg: &IkeConfig, ke_group: Option<u16>) -> Option<Option<DhGroup>> {
    let allowed = |g: &DhGroup| cfg.child_pfs == Some(*g) || cfg.ike_dh.contains(g);
    let offered = |g: &DhGroup| offers(p, transform::DH, g.id());
    let from_ke = ke_group
        .and_then(DhGroup::from_id)
        .filter(|g| allowed(g) && offered(g));
    let pick = from_ke
        .or(cfg.child_pfs.filter(offered))
        .or_else(|| cfg.ike_dh.iter().copied().find(offered));
    let none_ok = !p
        .transforms
        .iter()
        .any(|t| t.kind == transform::DH && t.id != transform::DH_NONE);
    let none_ok = none_ok || offers(p, transform::DH, transform::DH_NONE);
    match pick {
        Some(g) => Some(Some(g)),
        None if none_ok && cfg.child_pfs.is_none() => Some(None),
        None => None,
    }
}

/// Responder's child SA choice. `ke_group`: in CREATE_CHILD_SA, `Some` with the KE
/// payload's group if there is one (`Some(None)` without); `None` in IKE_AUTH, where
/// DH transforms are ignored (§1.2).
fn select_esp(
    props: &[Proposal],
    cfg: &IkeConfig,
    ke_group: Option<Option<u16>>,
) -> Option<EspChoice> {
    for p in props {
        if p.protocol != protocol::ESP || !proposal_usable(p, protocol::ESP) {
            continue;
        }
        let Some(spi) = spi32(&p.spi) else { continue };
        let encr = cfg
            .esp_encr
            .iter()
            .copied()
            .find(|a| p.transforms.iter().any(|t| encr_alg(t) == Some(*a)));
        let has_esn = p.transforms.iter().any(|t| t.kind == transform::ESN);
        // ESP proposals carry an ESN transform (§3.3.3); without one, no ESN.
        let esn = if !has_esn {
            Some(false)
        } else if cfg.esn && offers(p, transform::ESN, transform::ESN_YES) {
            Some(true)
        } else if offers(p, transform::ESN, transform::ESN_NO) {
            Some(false)
        } else {
            None
        };
        let dh = match ke_group {
            Some(ke) => select_pfs(p, cfg, ke),
            None => Some(None),
        };
        if let (Some(alg), Some(esn), Some(dh)) = (encr, esn, dh) {
            return Some(EspChoice {
                num: p.num,
                peer_spi: spi,
                alg,
                esn,
                dh,
            });
        }
    }
    None
}

/// First non-empty intersection of a proposed selector list with our own selector.
fn narrow(proposed: &[TrafficSelector], ours: &TrafficSelector) -> Option<TrafficSelector> {
    proposed
        .iter()
        .find_map(|t| t.intersect(ours))
        .filter(|t| t.prefix().is_some())
}

fn find<'a, T>(payloads: &'a [Payload], f: impl Fn(&'a Payload) -> Option<T>) -> Option<T> {
    payloads.iter().find_map(f)
}

/// Source of a received datagram.
#[derive(Clone, Copy)]
struct Src {
    from: SocketAddr,
    /// Arrived on port 4500 (marker stripped).
    natt: bool,
}

/// One IKE SA, either role.
struct IkeSa {
    initiator: bool,
    state: IkeState,
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
    ni: Vec<u8>,
    nr: Vec<u8>,
    dh: Option<DhPrivate>,
    keys: Option<IkeKeys>,
    enc_out: Option<GcmKey>,
    enc_in: Option<GcmKey>,
    init_req: Vec<u8>,
    init_resp: Vec<u8>,
    iv: u64,
    next_id: u32,
    pending: Option<Pending>,
    peer_next: u32,
    cached: Option<Cached>,
    /// Child SAs: one, two while a rekey overlaps (§2.8).
    children: Vec<ChildRef>,
    child_spi: u32,
    cookie: Option<Vec<u8>>,
    init_retries: u8,
    nat_local: bool,
    nat_remote: bool,
    /// IKE runs on port 4500 with the non-ESP marker (§2.23).
    natt: bool,
    /// The peer's address when the SA was created (responder's INIT index).
    init_from: SocketAddr,
    /// When it became half open, rekeyed or closed (expiry).
    since: u64,
    /// The negotiated IKE suite (its group is the one a rekey proposes).
    suite: Option<IkeSuite>,
    /// Our private value for an outstanding rekey with a KE payload.
    dh_rekey: Option<DhPrivate>,
    /// The IKE SA a rekey just made, for the endpoint to take over.
    successor: Option<Box<IkeSa>>,
    /// Replaced by a rekey: it ends with `DownReason::Rekeyed`.
    rekeyed: bool,
    /// Reached its hard lifetime: it ends with `DownReason::Expired`.
    expired: bool,
    /// IKE SA lifetime: when `poll` starts a rekey / deletes it (`u64::MAX`: never).
    ike_rekey_at: u64,
    ike_expire_at: u64,
    /// Inbound SPIs of child SAs that reached their hard lifetime, to be named in a
    /// Delete once no request is outstanding.
    owed_deletes: Vec<u32>,
    /// The peer's authenticated identity (responder: its IDi), which also picks
    /// its PSK from [`IkeConfig::peer_psks`].
    peer_id: Option<Identification>,
}

impl IkeSa {
    fn new(initiator: bool, local: SocketAddr, remote: SocketAddr, now: u64) -> Self {
        IkeSa {
            initiator,
            state: IkeState::Idle,
            spi_i: 0,
            spi_r: 0,
            local,
            remote,
            ni: Vec::new(),
            nr: Vec::new(),
            dh: None,
            keys: None,
            enc_out: None,
            enc_in: None,
            init_req: Vec::new(),
            init_resp: Vec::new(),
            iv: 0,
            next_id: 0,
            pending: None,
            peer_next: 0,
            cached: None,
            children: Vec::new(),
            child_spi: 0,
            cookie: None,
            init_retries: 0,
            nat_local: false,
            nat_remote: false,
            natt: false,
            init_from: remote,
            since: now,
            suite: None,
            dh_rekey: None,
            successor: None,
            rekeyed: false,
            expired: false,
            ike_rekey_at: u64::MAX,
            ike_expire_at: u64::MAX,
            owed_deletes: Vec::new(),
            peer_id: None,
        }
    }

    /// The PSK for this SA's AUTH payloads: the peer's own one when the
    /// configuration has per-peer keys (empty when its identity is unknown, which
    /// fails verification), else the one PSK.
    fn psk<'c>(&self, ctx: &Ctx<'c>) -> &'c [u8] {
        if ctx.cfg.peer_psks.is_empty() {
            return &ctx.cfg.psk;
        }
        self.peer_id
            .as_ref()
            .and_then(|id| ctx.cfg.peer_psks.get(&(id.id_type, id.data.clone())))
            .map_or(&[][..], |k| k.as_slice())
    }

    /// Soft and hard lifetime of the IKE SA from now (`IkeConfig::ike_lifetime`).
    fn start_ike_lifetime(&mut self, ctx: &Ctx<'_>) {
        if let Some(l) = ctx.cfg.ike_lifetime {
            let (soft, hard) = l.deadlines(ctx);
            self.ike_rekey_at = soft;
            self.ike_expire_at = hard;
        }
    }

    /// This end's SPI: how the endpoint finds the SA.
    fn local_spi(&self) -> u64 {
        if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }

    /// The peer's SPI.
    fn peer_spi(&self) -> u64 {
        if self.initiator {
            self.spi_r
        } else {
            self.spi_i
        }
    }

    fn my_flags(&self) -> u8 {
        if self.initiator {
            flags::INITIATOR
        } else {
            0
        }
    }

    fn close(&mut self, ctx: &mut Ctx<'_>, reason: DownReason) {
        if self.state == IkeState::Closed {
            return;
        }
        let reason = if self.rekeyed {
            DownReason::Rekeyed
        } else if self.expired {
            DownReason::Expired
        } else {
            reason
        };
        self.dh_rekey = None;
        self.owed_deletes.clear();
        for c in core::mem::take(&mut self.children) {
            ctx.event(Event::ChildSaDown {
                inbound_spi: c.inbound_spi,
                outbound_spi: c.outbound_spi,
            });
        }
        self.state = IkeState::Closed;
        self.pending = None;
        // The keys go now (wiped on drop); a closed responder SA only answers
        // retransmissions from its response cache until it is forgotten.
        self.dh = None;
        self.keys = None;
        self.enc_in = None;
        self.enc_out = None;
        self.since = ctx.now;
        ctx.event(Event::IkeSaDown {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            reason,
        });
    }

    fn seal(&mut self, h: &Header, inner: &[Payload]) -> Option<Vec<u8>> {
        self.iv += 1;
        self.enc_out
            .as_ref()
            .map(|k| sk::seal(h, inner, k, self.iv))
    }

    fn send_request(&mut self, ctx: &mut Ctx<'_>, exch: u8, kind: ReqKind, inner: &[Payload]) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let h = Header::new(self.spi_i, self.spi_r, exch, self.my_flags(), id);
        let Some(data) = self.seal(&h, inner) else {
            return;
        };
        ctx.send(self.remote, &data, self.natt);
        self.pending = Some(Pending {
            msg_id: id,
            exchange: exch,
            kind,
            data,
            tries: 0,
            next_at: ctx.now.saturating_add(ctx.cfg.retransmit_ms),
        });
    }

    fn respond(&mut self, ctx: &mut Ctx<'_>, req: &Header, request: &[u8], inner: &[Payload]) {
        let h = Header::new(
            self.spi_i,
            self.spi_r,
            req.exchange,
            self.my_flags() | flags::RESPONSE,
            req.message_id,
        );
        let Some(data) = self.seal(&h, inner) else {
            return;
        };
        ctx.send(self.remote, &data, self.natt);
        self.cached = Some(Cached {
            msg_id: req.message_id,
            request: request.to_vec(),
            response: data,
        });
    }

    // ---- initiator: IKE_SA_INIT ----

    fn start(&mut self, ctx: &mut Ctx<'_>) -> Result<(), KeyError> {
        self.spi_i = random_spi64(ctx.rng)?;
        self.ni = nonce(ctx.rng)?;
        self.child_spi = random_spi32(ctx.rng)?;
        let g = ctx
            .cfg
            .ike_dh
            .first()
            .copied()
            .ok_or(KeyError::UnsupportedGroup(0))?;
        self.dh = Some(DhPrivate::generate(g, ctx.rng)?);
        self.send_init(ctx);
        Ok(())
    }

    fn send_init(&mut self, ctx: &mut Ctx<'_>) {
        let Some(dh) = &self.dh else { return };
        let mut p = Vec::with_capacity(6);
        if let Some(c) = &self.cookie {
            p.push(Payload::Notify(Notify::new(notify::COOKIE, c.clone())));
        }
        p.push(Payload::Sa(vec![ike_proposal(ctx.cfg)]));
        p.push(Payload::Ke(KeyExchange {
            group: dh.group().id(),
            data: dh.public().to_vec(),
        }));
        p.push(Payload::Nonce(self.ni.clone()));
        p.push(Payload::Notify(Notify::new(
            notify::NAT_DETECTION_SOURCE_IP,
            keys::nat_detection_hash(self.spi_i, 0, self.local).to_vec(),
        )));
        p.push(Payload::Notify(Notify::new(
            notify::NAT_DETECTION_DESTINATION_IP,
            keys::nat_detection_hash(self.spi_i, 0, self.remote).to_vec(),
        )));
        let h = Header::new(self.spi_i, 0, exchange::IKE_SA_INIT, flags::INITIATOR, 0);
        let data = wire::encode(&h, &p);
        self.init_req.clone_from(&data);
        self.state = IkeState::InitSent;
        self.next_id = 1;
        ctx.send(self.remote, &data, self.natt);
        self.pending = Some(Pending {
            msg_id: 0,
            exchange: exchange::IKE_SA_INIT,
            kind: ReqKind::Init,
            data,
            tries: 0,
            next_at: ctx.now.saturating_add(ctx.cfg.retransmit_ms),
        });
    }

    fn on_init_response(&mut self, ctx: &mut Ctx<'_>, data: &[u8], msg: &Message) {
        if self.state != IkeState::InitSent {
            ctx.counters.unexpected += 1;
            return;
        }
        let pl = &msg.payloads;
        if let Some(c) = msg.notify(notify::COOKIE) {
            // §2.6: retry with the cookie first, same SPIi, message ID 0.
            if self.init_retries >= 3 || c.data.is_empty() || c.data.len() > 64 {
                ctx.counters.invalid += 1;
                return;
            }
            self.init_retries += 1;
            self.cookie = Some(c.data.clone());
            self.send_init(ctx);
            return;
        }
        if let Some(n) = msg.notify(notify::INVALID_KE_PAYLOAD) {
            let want = match n.data.as_slice() {
                [a, b] => u16::from_be_bytes([*a, *b]),
                _ => {
                    ctx.counters.invalid += 1;
                    return;
                }
            };
            let cur = self.dh.as_ref().map(|d| d.group().id());
            match DhGroup::from_id(want).filter(|g| ctx.cfg.ike_dh.contains(g)) {
                Some(g) if Some(want) != cur && self.init_retries < 3 => {
                    self.init_retries += 1;
                    match DhPrivate::generate(g, ctx.rng) {
                        Ok(d) => self.dh = Some(d),
                        Err(_) => return self.close(ctx, DownReason::ProtocolError),
                    }
                    self.send_init(ctx);
                }
                _ => self.close(ctx, DownReason::NoProposalChosen),
            }
            return;
        }
        if let Some(n) = find(pl, |p| match p {
            Payload::Notify(n) if n.is_error() => Some(n.kind),
            _ => None,
        }) {
            let reason = if n == notify::NO_PROPOSAL_CHOSEN {
                DownReason::NoProposalChosen
            } else {
                DownReason::PeerError(n)
            };
            return self.close(ctx, reason);
        }
        let sa = find(pl, |p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        });
        let ke = find(pl, |p| match p {
            Payload::Ke(k) => Some(k),
            _ => None,
        });
        let nr = find(pl, |p| match p {
            Payload::Nonce(n) => Some(n),
            _ => None,
        });
        let (Some(sa), Some(ke), Some(nr), Some(dh)) = (sa, ke, nr, self.dh.as_ref()) else {
            ctx.counters.invalid += 1;
            return;
        };
        let Some(suite) = check_ike_choice(sa, ctx.cfg, dh.group(), false) else {
            ctx.counters.invalid += 1;
            return;
        };
        if ke.group != dh.group().id() || msg.header.spi_r == 0 {
            ctx.counters.invalid += 1;
            return;
        }
        let Some(dh) = self.dh.take() else { return };
        let shared = match dh.agree(&ke.data) {
            Ok(s) => s,
            Err(_) => return self.close(ctx, DownReason::ProtocolError),
        };
        self.spi_r = msg.header.spi_r;
        self.nr = nr.clone();
        self.init_resp = data.to_vec();
        if self.install_keys(&suite, &shared).is_err() {
            return self.close(ctx, DownReason::ProtocolError);
        }
        self.check_nat(pl);
        if self.nat_local || self.nat_remote {
            // §2.23: behind a NAT, continue on port 4500.
            self.natt = true;
            if self.remote.port() == 500 {
                self.remote.set_port(crate::sa::NATT_PORT);
            }
        }
        self.pending = None;
        self.send_auth(ctx);
    }

    fn install_keys(&mut self, s: &IkeSuite, shared: &[u8]) -> Result<(), KeyError> {
        let k = IkeKeys::derive(
            s.prf, s.encr, &self.ni, &self.nr, shared, self.spi_i, self.spi_r,
        )?;
        self.enc_out = Some(k.cipher(self.initiator)?);
        self.enc_in = Some(k.cipher(!self.initiator)?);
        self.keys = Some(k);
        self.suite = Some(*s);
        Ok(())
    }

    /// §2.23: the peer's SOURCE hash is over its address as it sent it, the
    /// DESTINATION hash over ours as it addressed us.
    fn check_nat(&mut self, pl: &[Payload]) {
        let spi_r = if self.initiator { self.spi_r } else { 0 };
        let src = keys::nat_detection_hash(self.spi_i, spi_r, self.remote);
        let dst = keys::nat_detection_hash(self.spi_i, spi_r, self.local);
        let mut saw_src = false;
        let mut src_ok = false;
        for p in pl {
            if let Payload::Notify(n) = p {
                if n.kind == notify::NAT_DETECTION_SOURCE_IP {
                    saw_src = true;
                    src_ok |= n.data == src;
                } else if n.kind == notify::NAT_DETECTION_DESTINATION_IP {
                    self.nat_local = n.data != dst;
                }
            }
        }
        self.nat_remote = saw_src && !src_ok;
    }

    // ---- IKE_AUTH ----

    fn auth_value(&self, ctx: &Ctx<'_>, id: &Identification, as_initiator: bool) -> SecretBytes {
        let Some(k) = &self.keys else {
            return Zeroizing::new(Vec::new());
        };
        let (first, nonce, skp) = if as_initiator {
            (&self.init_req, &self.nr, &k.sk_pi)
        } else {
            (&self.init_resp, &self.ni, &k.sk_pr)
        };
        let signed = keys::signed_octets(k.prf, first, nonce, skp, &id.body());
        keys::psk_auth(k.prf, self.psk(ctx), &signed)
    }

    fn auth_ok(&mut self, ctx: &Ctx<'_>, id: &Identification, auth: &Auth) -> bool {
        if auth.method != wire::auth_method::SHARED_KEY_MIC
            || ctx.cfg.remote_id.as_ref().is_some_and(|r| r != id)
        {
            return false;
        }
        self.peer_id = Some(id.clone());
        let psk = self.psk(ctx);
        if psk.is_empty() {
            return false;
        }
        let Some(k) = &self.keys else { return false };
        let (first, nonce, skp) = if self.initiator {
            (&self.init_resp, &self.ni, &k.sk_pr)
        } else {
            (&self.init_req, &self.nr, &k.sk_pi)
        };
        let signed = keys::signed_octets(k.prf, first, nonce, skp, &id.body());
        keys::psk_auth_verify(k.prf, psk, &signed, &auth.data)
    }

    fn send_auth(&mut self, ctx: &mut Ctx<'_>) {
        let id = ctx.cfg.local_id.clone();
        let auth = self.auth_value(ctx, &id, true);
        let inner = [
            Payload::IdI(id),
            Payload::Auth(Auth {
                method: wire::auth_method::SHARED_KEY_MIC,
                data: auth.to_vec(),
            }),
            Payload::Sa(vec![esp_proposal(ctx.cfg, self.child_spi, None)]),
            Payload::TsI(vec![ctx.cfg.local_ts]),
            Payload::TsR(vec![ctx.cfg.remote_ts]),
        ];
        self.state = IkeState::AuthSent;
        self.send_request(ctx, exchange::IKE_AUTH, ReqKind::Auth, &inner);
    }

    fn child_sa(&self, c: &ChildChoice, x: &Creation<'_>) -> Result<ChildSa, KeyError> {
        let k = self.keys.as_ref().ok_or(KeyError::Cipher)?;
        let shared = x.shared.unwrap_or(&[]);
        let (i2r, r2i) = keys::child_keymat_pfs(k.prf, &k.sk_d, shared, x.ni, x.nr, c.alg)?;
        let (inbound_key, outbound_key) = if x.we_initiated {
            (r2i, i2r)
        } else {
            (i2r, r2i)
        };
        let (l, r) = (self.local.ip(), self.remote.ip());
        let mut inbound = SaConfig::tunnel(c.inbound_spi, Direction::Inbound, r, l);
        let mut outbound = SaConfig::tunnel(c.outbound_spi, Direction::Outbound, l, r);
        for s in [&mut inbound, &mut outbound] {
            s.algorithm = c.alg;
            s.esn = c.esn;
        }
        if self.nat_local || self.nat_remote {
            // §2.23: ESP in UDP (RFC 3948) between port 4500 here and the peer's
            // NAT-T port.
            let peer = if self.natt {
                self.remote.port()
            } else {
                crate::sa::NATT_PORT
            };
            let here = crate::sa::NATT_PORT;
            inbound.encap = Some(UdpEncap {
                sport: peer,
                dport: here,
            });
            outbound.encap = Some(UdpEncap {
                sport: here,
                dport: peer,
            });
        }
        inbound.selector = ts::selector(&c.remote_ts, &c.local_ts);
        Ok(ChildSa {
            ike_spi_i: self.spi_i,
            ike_spi_r: self.spi_r,
            inbound,
            outbound,
            inbound_key,
            outbound_key,
            local_ts: c.local_ts,
            remote_ts: c.remote_ts,
            rekey_of: x.rekey_of,
        })
    }

    fn child_up(&mut self, ctx: &mut Ctx<'_>, c: ChildSa) {
        let (rekey_at, expire_at) = ctx
            .cfg
            .child_lifetime
            .map_or((u64::MAX, u64::MAX), |l| l.deadlines(ctx));
        self.children.push(ChildRef {
            inbound_spi: c.inbound.spi,
            outbound_spi: c.outbound.spi,
            local_ts: c.local_ts,
            remote_ts: c.remote_ts,
            rekey_at,
            expire_at,
        });
        ctx.event(Event::ChildSaUp(Box::new(c)));
    }

    fn child_down(&mut self, ctx: &mut Ctx<'_>, inbound_spi: u32) -> Option<ChildRef> {
        let k = self
            .children
            .iter()
            .position(|c| c.inbound_spi == inbound_spi)?;
        let c = self.children.remove(k);
        ctx.event(Event::ChildSaDown {
            inbound_spi: c.inbound_spi,
            outbound_spi: c.outbound_spi,
        });
        Some(c)
    }

    /// Responder side of a child SA offer (IKE_AUTH or CREATE_CHILD_SA): the first
    /// acceptable proposal and the selectors narrowed to ours (§2.9). Returns the
    /// reply payloads (SA, TSi, TSr; in CREATE_CHILD_SA with PFS also our KE after
    /// the SA) and the SA, or the error notify to send. `create_child`: the offer
    /// came in CREATE_CHILD_SA, where a KE payload means PFS.
    fn answer_child(
        &self,
        ctx: &mut Ctx<'_>,
        pl: &[Payload],
        x: &Creation<'_>,
        create_child: bool,
    ) -> Result<(Vec<Payload>, ChildSa), Notify> {
        let fail = |n: u16| Notify::new(n, Vec::new());
        let sa = find(pl, |p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        });
        let tsi = find(pl, |p| match p {
            Payload::TsI(t) => Some(t),
            _ => None,
        });
        let tsr = find(pl, |p| match p {
            Payload::TsR(t) => Some(t),
            _ => None,
        });
        let ke = find(pl, |p| match p {
            Payload::Ke(k) => Some(k),
            _ => None,
        });
        let ke_group = create_child.then_some(ke.map(|k| k.group));
        let Some(choice) = sa.and_then(|s| select_esp(s, ctx.cfg, ke_group)) else {
            ctx.counters.no_proposal_chosen += 1;
            return Err(fail(notify::NO_PROPOSAL_CHOSEN));
        };
        let EspChoice {
            num,
            peer_spi,
            alg,
            esn,
            dh,
        } = choice;
        // PFS: the KE payload must be of the chosen group (§1.3.1, §1.2).
        let pfs = match (dh, ke) {
            (None, _) => None,
            (Some(g), Some(k)) if k.group == g.id() => {
                let d =
                    DhPrivate::generate(g, ctx.rng).map_err(|_| fail(notify::TEMPORARY_FAILURE))?;
                let public = d.public().to_vec();
                let shared = d.agree(&k.data).map_err(|_| {
                    ctx.counters.invalid += 1;
                    fail(notify::INVALID_SYNTAX)
                })?;
                Some((g, public, shared))
            }
            (Some(g), _) => {
                ctx.counters.invalid_ke_sent += 1;
                return Err(Notify::new(
                    notify::INVALID_KE_PAYLOAD,
                    g.id().to_be_bytes().to_vec(),
                ));
            }
        };
        let narrowed = match (tsi, tsr) {
            (Some(i), Some(r)) => narrow(i, &ctx.cfg.remote_ts).zip(narrow(r, &ctx.cfg.local_ts)),
            _ => None,
        };
        let Some((ti, tr)) = narrowed else {
            return Err(fail(notify::TS_UNACCEPTABLE));
        };
        let my = random_spi32(ctx.rng).map_err(|_| fail(notify::TEMPORARY_FAILURE))?;
        let choice = ChildChoice {
            alg,
            esn,
            inbound_spi: my,
            outbound_spi: peer_spi,
            local_ts: tr,
            remote_ts: ti,
        };
        let x = Creation {
            shared: pfs.as_ref().map(|p| p.2.as_slice()),
            ..*x
        };
        let c = self
            .child_sa(&choice, &x)
            .map_err(|_| fail(notify::TEMPORARY_FAILURE))?;
        let mut transforms = vec![encr_transform(alg)];
        if let Some((g, _, _)) = &pfs {
            transforms.push(Transform::new(transform::DH, g.id()));
        }
        let offered_esn = sa.is_some_and(|s| {
            s.iter()
                .any(|p| p.num == num && p.transforms.iter().any(|t| t.kind == transform::ESN))
        });
        if offered_esn {
            let id = if esn {
                transform::ESN_YES
            } else {
                transform::ESN_NO
            };
            transforms.push(Transform::new(transform::ESN, id));
        }
        let mut reply = vec![Payload::Sa(vec![Proposal {
            num,
            protocol: protocol::ESP,
            spi: my.to_be_bytes().to_vec(),
            transforms,
        }])];
        if let Some((g, public, _)) = pfs {
            reply.push(Payload::Ke(KeyExchange {
                group: g.id(),
                data: public,
            }));
        }
        reply.push(Payload::TsI(vec![ti]));
        reply.push(Payload::TsR(vec![tr]));
        Ok((reply, c))
    }

    fn on_auth_request(&mut self, ctx: &mut Ctx<'_>, req: &Header, data: &[u8], pl: &[Payload]) {
        if self.state != IkeState::HalfOpen {
            ctx.counters.unexpected += 1;
            let n = Payload::Notify(Notify::new(notify::INVALID_SYNTAX, Vec::new()));
            return self.respond(ctx, req, data, &[n]);
        }
        let idi = find(pl, |p| match p {
            Payload::IdI(i) => Some(i),
            _ => None,
        });
        let auth = find(pl, |p| match p {
            Payload::Auth(a) => Some(a),
            _ => None,
        });
        let ok = match (idi, auth) {
            (Some(i), Some(a)) => self.auth_ok(ctx, i, a),
            _ => false,
        };
        if !ok {
            ctx.counters.auth_failures += 1;
            let n = Payload::Notify(Notify::new(notify::AUTHENTICATION_FAILED, Vec::new()));
            self.respond(ctx, req, data, &[n]);
            return self.close(ctx, DownReason::AuthenticationFailed);
        }
        let idr = ctx.cfg.local_id.clone();
        let my_auth = self.auth_value(ctx, &idr, false);
        let mut inner = vec![
            Payload::IdR(idr),
            Payload::Auth(Auth {
                method: wire::auth_method::SHARED_KEY_MIC,
                data: my_auth.to_vec(),
            }),
        ];
        let x = Creation {
            ni: &self.ni,
            nr: &self.nr,
            we_initiated: false,
            rekey_of: None,
            shared: None,
        };
        let child = match self.answer_child(ctx, pl, &x, false) {
            Ok((reply, c)) => {
                inner.extend(reply);
                Ok(c)
            }
            Err(n) => {
                let kind = n.kind;
                inner.push(Payload::Notify(n));
                Err(kind)
            }
        };
        self.respond(ctx, req, data, &inner);
        self.state = IkeState::Established;
        self.start_ike_lifetime(ctx);
        ctx.event(Event::IkeSaUp {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            nat_local: self.nat_local,
            nat_remote: self.nat_remote,
        });
        match child {
            Ok(c) => self.child_up(ctx, c),
            Err(notify) => ctx.event(Event::ChildSaFailed { notify }),
        }
    }

    fn on_auth_response(&mut self, ctx: &mut Ctx<'_>, pl: &[Payload]) {
        if wire::find_notify(pl, notify::AUTHENTICATION_FAILED).is_some() {
            return self.close(ctx, DownReason::AuthenticationFailed);
        }
        let idr = find(pl, |p| match p {
            Payload::IdR(i) => Some(i),
            _ => None,
        });
        let auth = find(pl, |p| match p {
            Payload::Auth(a) => Some(a),
            _ => None,
        });
        let (Some(idr), Some(auth)) = (idr, auth) else {
            ctx.counters.invalid += 1;
            return self.close(ctx, DownReason::ProtocolError);
        };
        if !self.auth_ok(ctx, idr, auth) {
            ctx.counters.auth_failures += 1;
            return self.close(ctx, DownReason::AuthenticationFailed);
        }
        self.state = IkeState::Established;
        self.start_ike_lifetime(ctx);
        ctx.event(Event::IkeSaUp {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            nat_local: self.nat_local,
            nat_remote: self.nat_remote,
        });
        if let Some(n) = find(pl, |p| match p {
            Payload::Notify(n) if n.is_error() => Some(n.kind),
            _ => None,
        }) {
            return ctx.event(Event::ChildSaFailed { notify: n });
        }
        let x = Creation {
            ni: &self.ni,
            nr: &self.nr,
            we_initiated: true,
            rekey_of: None,
            shared: None,
        };
        match self.check_child_choice(ctx, pl, self.child_spi, &x, None) {
            Some(c) => self.child_up(ctx, c),
            None => {
                ctx.counters.invalid += 1;
                ctx.event(Event::ChildSaFailed {
                    notify: notify::NO_PROPOSAL_CHOSEN,
                });
            }
        }
    }

    /// The peer's answer to our child SA offer must be one of our offers (with our
    /// SPI `my_spi` inbound) and its selectors subsets of ours; with PFS
    /// (`want_dh`) it names our KE payload's group.
    fn check_child_choice(
        &self,
        ctx: &Ctx<'_>,
        pl: &[Payload],
        my_spi: u32,
        x: &Creation<'_>,
        want_dh: Option<DhGroup>,
    ) -> Option<ChildSa> {
        let sa = find(pl, |p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        })?;
        let [p] = sa.as_slice() else { return None };
        if p.protocol != protocol::ESP || !proposal_usable(p, protocol::ESP) {
            return None;
        }
        let peer_spi = spi32(&p.spi)?;
        let mut alg = None;
        let mut esn = None;
        let mut dh = None;
        for t in &p.transforms {
            match t.kind {
                transform::ENCR => {
                    let a = encr_alg(t).filter(|a| ctx.cfg.esp_encr.contains(a))?;
                    if alg.replace(a).is_some() {
                        return None;
                    }
                }
                transform::ESN => {
                    let e = match t.id {
                        transform::ESN_NO => false,
                        transform::ESN_YES if ctx.cfg.esn => true,
                        _ => return None,
                    };
                    if esn.replace(e).is_some() {
                        return None;
                    }
                }
                transform::DH => match want_dh {
                    Some(g) if t.id == g.id() && dh.replace(t.id).is_none() => {}
                    Some(_) => return None,
                    None => {}
                },
                _ => {}
            }
        }
        if want_dh.is_some() && dh.is_none() {
            return None;
        }
        let tsi = find(pl, |p| match p {
            Payload::TsI(t) => Some(t),
            _ => None,
        })?;
        let tsr = find(pl, |p| match p {
            Payload::TsR(t) => Some(t),
            _ => None,
        })?;
        let ([ti], [tr]) = (tsi.as_slice(), tsr.as_slice()) else {
            return None;
        };
        if !ti.is_subset_of(&ctx.cfg.local_ts) || !tr.is_subset_of(&ctx.cfg.remote_ts) {
            return None;
        }
        let choice = ChildChoice {
            alg: alg?,
            esn: esn.unwrap_or(false),
            inbound_spi: my_spi,
            outbound_spi: peer_spi,
            local_ts: *ti,
            remote_ts: *tr,
        };
        self.child_sa(&choice, x).ok()
    }

    // ---- CREATE_CHILD_SA: rekeying the child SA (§1.3.3, §2.8) ----

    fn can_request(&self) -> Result<(), RequestError> {
        if self.state != IkeState::Established {
            return Err(RequestError::NotEstablished);
        }
        if self.pending.is_some() {
            return Err(RequestError::Busy);
        }
        Ok(())
    }

    /// Rekey of the newest child SA.
    fn rekey_child(&mut self, ctx: &mut Ctx<'_>) -> Result<(), RequestError> {
        self.can_request()?;
        let old = *self.children.last().ok_or(RequestError::NoChild)?;
        self.rekey_child_of(ctx, old)
    }

    fn rekey_child_of(&mut self, ctx: &mut Ctx<'_>, old: ChildRef) -> Result<(), RequestError> {
        self.can_request()?;
        let ni = nonce(ctx.rng).map_err(|_| RequestError::Random)?;
        let spi = random_spi32(ctx.rng).map_err(|_| RequestError::Random)?;
        let pfs = match ctx.cfg.child_pfs {
            Some(g) => Some(DhPrivate::generate(g, ctx.rng).map_err(|_| RequestError::Random)?),
            None => None,
        };
        let mut inner = vec![
            Payload::Notify(Notify {
                protocol: protocol::ESP,
                spi: old.inbound_spi.to_be_bytes().to_vec(),
                kind: notify::REKEY_SA,
                data: Vec::new(),
            }),
            Payload::Sa(vec![esp_proposal(ctx.cfg, spi, ctx.cfg.child_pfs)]),
            Payload::Nonce(ni.clone()),
        ];
        if let Some(d) = &pfs {
            inner.push(Payload::Ke(KeyExchange {
                group: d.group().id(),
                data: d.public().to_vec(),
            }));
        }
        inner.push(Payload::TsI(vec![old.local_ts]));
        inner.push(Payload::TsR(vec![old.remote_ts]));
        if let Some(c) = self
            .children
            .iter_mut()
            .find(|c| c.inbound_spi == old.inbound_spi)
        {
            c.rekey_at = u64::MAX;
        }
        self.dh_rekey = pfs;
        let kind = ReqKind::RekeyChild {
            old: old.inbound_spi,
            ni,
            spi,
        };
        self.send_request(ctx, exchange::CREATE_CHILD_SA, kind, &inner);
        Ok(())
    }

    /// The peer's CREATE_CHILD_SA request: a child SA rekey (REKEY_SA, with or
    /// without PFS) or an IKE SA rekey (an IKE proposal) is answered; a new
    /// additional child SA is refused.
    fn on_create_child_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        h: &Header,
        data: &[u8],
        pl: &[Payload],
    ) {
        let refuse = |n: u16| vec![Payload::Notify(Notify::new(n, Vec::new()))];
        let rekey = wire::find_notify(pl, notify::REKEY_SA);
        let ike_offer = find(pl, |p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        })
        .is_some_and(|s| s.iter().any(|p| p.protocol == protocol::IKE));
        if rekey.is_none() && ike_offer {
            return self.on_ike_rekey_request(ctx, h, data, pl);
        }
        let Some(rekey) = rekey else {
            return self.respond(ctx, h, data, &refuse(notify::NO_ADDITIONAL_SAS));
        };
        // §2.25.1: not while we rekey the IKE SA.
        if matches!(
            self.pending.as_ref().map(|p| &p.kind),
            Some(ReqKind::RekeyIke { .. })
        ) {
            return self.respond(ctx, h, data, &refuse(notify::TEMPORARY_FAILURE));
        }
        // The notify names the SPI the peer receives on: our outbound SPI.
        let old = (rekey.protocol == protocol::ESP)
            .then(|| spi32(&rekey.spi))
            .flatten()
            .and_then(|s| self.children.iter().find(|c| c.outbound_spi == s).copied());
        let Some(old) = old else {
            let n = Notify {
                protocol: rekey.protocol,
                spi: rekey.spi.clone(),
                kind: notify::CHILD_SA_NOT_FOUND,
                data: Vec::new(),
            };
            return self.respond(ctx, h, data, &[Payload::Notify(n)]);
        };
        let ni = find(pl, |p| match p {
            Payload::Nonce(n) => Some(n),
            _ => None,
        });
        let Some(ni) = ni else {
            ctx.counters.invalid += 1;
            return self.respond(ctx, h, data, &refuse(notify::INVALID_SYNTAX));
        };
        let nr = match nonce(ctx.rng) {
            Ok(n) => n,
            Err(_) => return self.respond(ctx, h, data, &refuse(notify::TEMPORARY_FAILURE)),
        };
        let x = Creation {
            ni,
            nr: &nr,
            we_initiated: false,
            rekey_of: Some(old.inbound_spi),
            shared: None,
        };
        match self.answer_child(ctx, pl, &x, true) {
            Ok((mut reply, c)) => {
                reply.insert(1, Payload::Nonce(nr.clone()));
                self.respond(ctx, h, data, &reply);
                self.child_up(ctx, c);
            }
            Err(n) => self.respond(ctx, h, data, &[Payload::Notify(n)]),
        }
    }

    fn on_rekey_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        pl: &[Payload],
        old: u32,
        ni: &[u8],
        spi: u32,
    ) {
        let dh = self.dh_rekey.take();
        if let Some(n) = find(pl, |p| match p {
            Payload::Notify(n) if n.is_error() => Some(n.kind),
            _ => None,
        }) {
            self.rekey_later(ctx, old);
            return ctx.event(Event::ChildSaFailed { notify: n });
        }
        let nr = find(pl, |p| match p {
            Payload::Nonce(n) => Some(n),
            _ => None,
        });
        let still_there = self.children.iter().any(|c| c.inbound_spi == old);
        // PFS: the peer's KE in our group (§1.3.1).
        let group = dh.as_ref().map(DhPrivate::group);
        let shared = match dh {
            None => Some(None),
            Some(d) => find(pl, |p| match p {
                Payload::Ke(k) if k.group == d.group().id() => Some(k),
                _ => None,
            })
            .and_then(|k| d.agree(&k.data).ok())
            .map(Some),
        };
        let made = match (nr, shared) {
            (Some(nr), Some(shared)) if still_there => {
                let x = Creation {
                    ni,
                    nr,
                    we_initiated: true,
                    rekey_of: Some(old),
                    shared: shared.as_ref().map(|s| s.as_slice()),
                };
                self.check_child_choice(ctx, pl, spi, &x, group)
            }
            _ => None,
        };
        let Some(c) = made else {
            ctx.counters.invalid += 1;
            self.rekey_later(ctx, old);
            return ctx.event(Event::ChildSaFailed {
                notify: notify::NO_PROPOSAL_CHOSEN,
            });
        };
        self.child_up(ctx, c);
        // §2.8: the rekey's initiator deletes the old SA.
        let d = Payload::Delete(Delete {
            protocol: protocol::ESP,
            spis: vec![old],
        });
        self.send_request(
            ctx,
            exchange::INFORMATIONAL,
            ReqKind::DeleteChild(old),
            &[d],
        );
    }

    /// After a failed rekey of an IKE SA with a lifetime: try again halfway to its
    /// hard expiry (at least a second later).
    fn ike_rekey_later(&mut self, ctx: &Ctx<'_>) {
        if self.ike_expire_at != u64::MAX {
            let wait = (self.ike_expire_at.saturating_sub(ctx.now) / 2).max(1000);
            self.ike_rekey_at = ctx.now.saturating_add(wait);
        }
    }

    /// After a failed rekey of a child SA with a lifetime: try again halfway to its
    /// hard expiry (at least a second later).
    fn rekey_later(&mut self, ctx: &Ctx<'_>, old: u32) {
        if let Some(c) = self.children.iter_mut().find(|c| c.inbound_spi == old) {
            if c.expire_at != u64::MAX {
                let wait = (c.expire_at.saturating_sub(ctx.now) / 2).max(1000);
                c.rekey_at = ctx.now.saturating_add(wait);
            }
        }
    }

    // ---- CREATE_CHILD_SA: rekeying the IKE SA (§1.3.2, §2.18) ----

    fn rekey_ike(&mut self, ctx: &mut Ctx<'_>) -> Result<(), RequestError> {
        self.can_request()?;
        let g = self.suite.ok_or(RequestError::NotEstablished)?.dh;
        let spi = random_spi64(ctx.rng).map_err(|_| RequestError::Random)?;
        let ni = nonce(ctx.rng).map_err(|_| RequestError::Random)?;
        let d = DhPrivate::generate(g, ctx.rng).map_err(|_| RequestError::Random)?;
        let mut prop = ike_proposal(ctx.cfg);
        prop.spi = spi.to_be_bytes().to_vec();
        let inner = [
            Payload::Sa(vec![prop]),
            Payload::Nonce(ni.clone()),
            Payload::Ke(KeyExchange {
                group: g.id(),
                data: d.public().to_vec(),
            }),
        ];
        self.dh_rekey = Some(d);
        self.send_request(
            ctx,
            exchange::CREATE_CHILD_SA,
            ReqKind::RekeyIke { ni, spi },
            &inner,
        );
        Ok(())
    }

    /// The new IKE SA of a rekey: this SA's addresses and NAT state, fresh message
    /// IDs (§2.18), the child SAs moved over.
    fn successor_of(
        &mut self,
        ctx: &mut Ctx<'_>,
        initiator: bool,
        spi_i: u64,
        spi_r: u64,
        keys: IkeKeys,
        suite: IkeSuite,
    ) -> Result<IkeSa, KeyError> {
        let mut n = IkeSa::new(initiator, self.local, self.remote, ctx.now);
        n.peer_id = self.peer_id.clone();
        n.spi_i = spi_i;
        n.spi_r = spi_r;
        n.enc_out = Some(keys.cipher(initiator)?);
        n.enc_in = Some(keys.cipher(!initiator)?);
        n.keys = Some(keys);
        n.suite = Some(suite);
        n.natt = self.natt;
        n.nat_local = self.nat_local;
        n.nat_remote = self.nat_remote;
        n.state = IkeState::Established;
        n.start_ike_lifetime(ctx);
        n.children = core::mem::take(&mut self.children);
        n.owed_deletes = core::mem::take(&mut self.owed_deletes);
        n.child_spi = self.child_spi;
        ctx.event(Event::IkeSaRekeyed {
            old_spi_i: self.spi_i,
            old_spi_r: self.spi_r,
            spi_i,
            spi_r,
        });
        self.rekeyed = true;
        self.since = ctx.now;
        Ok(n)
    }

    fn on_ike_rekey_request(&mut self, ctx: &mut Ctx<'_>, h: &Header, data: &[u8], pl: &[Payload]) {
        let refuse = |n: Notify| vec![Payload::Notify(n)];
        let fail = |n: u16| Notify::new(n, Vec::new());
        // §2.25.2: not while one of our own exchanges is outstanding (that includes a
        // crossing IKE SA rekey: both fail, to be retried).
        if self.pending.is_some() {
            return self.respond(ctx, h, data, &refuse(fail(notify::TEMPORARY_FAILURE)));
        }
        let sa = find(pl, |p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        });
        let ke = find(pl, |p| match p {
            Payload::Ke(k) => Some(k),
            _ => None,
        });
        let ni = find(pl, |p| match p {
            Payload::Nonce(n) => Some(n),
            _ => None,
        });
        let (Some(sa), Some(ke), Some(ni), Some(old)) = (sa, ke, ni, self.keys.as_ref()) else {
            ctx.counters.invalid += 1;
            return self.respond(ctx, h, data, &refuse(fail(notify::INVALID_SYNTAX)));
        };
        let old_prf = old.prf;
        let Some((num, suite)) = select_ike(sa, ctx.cfg, ke.group, true) else {
            ctx.counters.no_proposal_chosen += 1;
            return self.respond(ctx, h, data, &refuse(fail(notify::NO_PROPOSAL_CHOSEN)));
        };
        if ke.group != suite.dh.id() {
            ctx.counters.invalid_ke_sent += 1;
            let n = Notify::new(
                notify::INVALID_KE_PAYLOAD,
                suite.dh.id().to_be_bytes().to_vec(),
            );
            return self.respond(ctx, h, data, &refuse(n));
        }
        let peer_spi = sa
            .iter()
            .find(|p| p.num == num && p.protocol == protocol::IKE)
            .and_then(|p| spi64(&p.spi));
        let made = (|| -> Result<_, KeyError> {
            let peer_spi = peer_spi.ok_or(KeyError::BadPublicValue)?;
            let mut my_spi = random_spi64(ctx.rng)?;
            while my_spi == self.local_spi() {
                my_spi = random_spi64(ctx.rng)?;
            }
            let nr = nonce(ctx.rng)?;
            let d = DhPrivate::generate(suite.dh, ctx.rng)?;
            let public = d.public().to_vec();
            let shared = d.agree(&ke.data)?;
            let sk_d = self.keys.as_ref().map(|k| &k.sk_d[..]).unwrap_or(&[]);
            let keys = IkeKeys::derive_rekey(
                old_prf, sk_d, suite.prf, suite.encr, ni, &nr, &shared, peer_spi, my_spi,
            )?;
            Ok((peer_spi, my_spi, nr, public, keys))
        })();
        let (peer_spi, my_spi, nr, public, keys) = match made {
            Ok(m) => m,
            Err(_) => {
                ctx.counters.invalid += 1;
                return self.respond(ctx, h, data, &refuse(fail(notify::INVALID_SYNTAX)));
            }
        };
        let reply = [
            Payload::Sa(vec![Proposal {
                num,
                protocol: protocol::IKE,
                spi: my_spi.to_be_bytes().to_vec(),
                transforms: vec![
                    encr_transform(suite.encr),
                    Transform::new(transform::PRF, suite.prf.id()),
                    Transform::new(transform::DH, suite.dh.id()),
                ],
            }]),
            Payload::Nonce(nr),
            Payload::Ke(KeyExchange {
                group: suite.dh.id(),
                data: public,
            }),
        ];
        // The new SA's initiator is the rekey's initiator: the peer (§2.18).
        match self.successor_of(ctx, false, peer_spi, my_spi, keys, suite) {
            Ok(n) => {
                self.respond(ctx, h, data, &reply);
                self.state = IkeState::Rekeyed;
                self.successor = Some(Box::new(n));
            }
            Err(_) => self.respond(ctx, h, data, &refuse(fail(notify::TEMPORARY_FAILURE))),
        }
    }

    fn on_ike_rekey_response(&mut self, ctx: &mut Ctx<'_>, pl: &[Payload], ni: &[u8], spi: u64) {
        let dh = self.dh_rekey.take();
        if let Some(n) = find(pl, |p| match p {
            Payload::Notify(n) if n.is_error() => Some(n.kind),
            _ => None,
        }) {
            self.ike_rekey_later(ctx);
            return ctx.event(Event::IkeSaRekeyFailed { notify: n });
        }
        let sa = find(pl, |p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        });
        let ke = find(pl, |p| match p {
            Payload::Ke(k) => Some(k),
            _ => None,
        });
        let nr = find(pl, |p| match p {
            Payload::Nonce(n) => Some(n),
            _ => None,
        });
        let made = (|| {
            let (sa, ke, nr, d) = (sa?, ke?, nr?, dh?);
            let suite = check_ike_choice(sa, ctx.cfg, d.group(), true)?;
            let peer_spi = sa.first().and_then(|p| spi64(&p.spi))?;
            if ke.group != d.group().id() || peer_spi == self.peer_spi() {
                return None;
            }
            let old = self.keys.as_ref()?;
            let shared = d.agree(&ke.data).ok()?;
            let keys = IkeKeys::derive_rekey(
                old.prf, &old.sk_d, suite.prf, suite.encr, ni, nr, &shared, spi, peer_spi,
            )
            .ok()?;
            Some((peer_spi, keys, suite))
        })();
        let Some((peer_spi, keys, suite)) = made else {
            ctx.counters.invalid += 1;
            self.ike_rekey_later(ctx);
            return ctx.event(Event::IkeSaRekeyFailed {
                notify: notify::INVALID_SYNTAX,
            });
        };
        match self.successor_of(ctx, true, spi, peer_spi, keys, suite) {
            Ok(n) => self.successor = Some(Box::new(n)),
            Err(_) => {
                return ctx.event(Event::IkeSaRekeyFailed {
                    notify: notify::TEMPORARY_FAILURE,
                });
            }
        }
        // §2.18: the rekey's initiator deletes the old IKE SA.
        let d = Payload::Delete(Delete {
            protocol: protocol::IKE,
            spis: Vec::new(),
        });
        self.state = IkeState::Deleting;
        self.send_request(ctx, exchange::INFORMATIONAL, ReqKind::DeleteIke, &[d]);
    }

    // ---- common: requests and responses on an SA with keys ----

    /// `src` is where the datagram came from and whether it arrived on port 4500.
    fn on_message(&mut self, ctx: &mut Ctx<'_>, data: &[u8], msg: &Message, src: Src) {
        if msg.header.from_initiator() == self.initiator {
            ctx.counters.unexpected += 1;
            return;
        }
        if msg.header.is_response() {
            self.on_response(ctx, data, msg, src);
        } else {
            self.on_request(ctx, data, msg, src);
        }
    }

    /// After an authenticated message: follow the peer to its new address and to
    /// port 4500 (§2.23: a NAT may change the mapping; the initiator floats).
    fn follow(&mut self, src: Src) {
        if src.natt && !self.natt {
            self.natt = true;
        }
        if src.from != self.remote && (self.natt || self.nat_local || self.nat_remote) {
            self.remote = src.from;
        }
    }

    fn decrypt(&self, ctx: &mut Ctx<'_>, data: &[u8], msg: &Message) -> Option<Vec<Payload>> {
        let k = self.enc_in.as_ref()?;
        match sk::open(data, msg, k) {
            Ok(p) => Some(p),
            Err(SkError::Integrity) => {
                ctx.counters.integrity_failures += 1;
                None
            }
            Err(_) => {
                ctx.counters.parse_errors += 1;
                None
            }
        }
    }

    fn on_response(&mut self, ctx: &mut Ctx<'_>, data: &[u8], msg: &Message, src: Src) {
        let Some(p) = &self.pending else {
            ctx.counters.bad_message_id += 1;
            return;
        };
        if p.msg_id != msg.header.message_id {
            ctx.counters.bad_message_id += 1;
            return;
        }
        if p.exchange != msg.header.exchange {
            ctx.counters.unexpected += 1;
            return;
        }
        let kind = p.kind.clone();
        if kind == ReqKind::Init {
            return self.on_init_response(ctx, data, msg);
        }
        let Some(pl) = self.decrypt(ctx, data, msg) else {
            return;
        };
        self.follow(src);
        self.pending = None;
        match kind {
            ReqKind::Auth => self.on_auth_response(ctx, &pl),
            ReqKind::DeleteChild(spi) => {
                self.child_down(ctx, spi);
            }
            ReqKind::DeleteIke => self.close(ctx, DownReason::DeletedLocally),
            ReqKind::Liveness => {}
            ReqKind::Private => {
                let notifies = private_notifies(&pl);
                ctx.event(Event::PrivateAnswered {
                    spi_i: self.spi_i,
                    spi_r: self.spi_r,
                    notifies,
                });
            }
            ReqKind::RekeyChild { old, ni, spi } => self.on_rekey_response(ctx, &pl, old, &ni, spi),
            ReqKind::RekeyIke { ni, spi } => self.on_ike_rekey_response(ctx, &pl, &ni, spi),
            ReqKind::Init => {}
        }
    }

    fn on_request(&mut self, ctx: &mut Ctx<'_>, data: &[u8], msg: &Message, src: Src) {
        let h = &msg.header;
        // Requests come once the SA has keys: IKE_AUTH to a half-open responder,
        // anything after IKE_AUTH (§1.2); a closed SA only answers retransmissions.
        if matches!(
            self.state,
            IkeState::Idle | IkeState::InitSent | IkeState::AuthSent
        ) {
            ctx.counters.unexpected += 1;
            return;
        }
        if h.message_id != self.peer_next {
            // §2.1: a retransmitted request gets the same response again.
            match &self.cached {
                Some(c) if c.msg_id == h.message_id && c.request == data => {
                    ctx.counters.retransmits_answered += 1;
                    let resp = c.response.clone();
                    ctx.send(self.remote, &resp, self.natt);
                }
                _ => ctx.counters.bad_message_id += 1,
            }
            return;
        }
        if self.state == IkeState::Closed {
            ctx.counters.unexpected += 1;
            return;
        }
        let Some(pl) = self.decrypt(ctx, data, msg) else {
            return;
        };
        self.follow(src);
        self.peer_next = self.peer_next.wrapping_add(1);
        match h.exchange {
            exchange::IKE_AUTH if !self.initiator => self.on_auth_request(ctx, h, data, &pl),
            exchange::INFORMATIONAL if self.state != IkeState::HalfOpen => {
                self.on_informational(ctx, h, data, &pl)
            }
            exchange::CREATE_CHILD_SA if self.state == IkeState::Established => {
                self.on_create_child_request(ctx, h, data, &pl)
            }
            exchange::CREATE_CHILD_SA if self.state == IkeState::Rekeyed => {
                // The child SAs have moved to the new IKE SA.
                let n = Payload::Notify(Notify::new(notify::TEMPORARY_FAILURE, Vec::new()));
                self.respond(ctx, h, data, &[n]);
            }
            _ => {
                ctx.counters.unexpected += 1;
                let n = Payload::Notify(Notify::new(notify::INVALID_SYNTAX, Vec::new()));
                self.respond(ctx, h, data, &[n]);
            }
        }
    }

    fn on_informational(&mut self, ctx: &mut Ctx<'_>, h: &Header, data: &[u8], pl: &[Payload]) {
        let mut reply = Vec::new();
        let mut delete_ike = false;
        for p in pl {
            let Payload::Delete(d) = p else { continue };
            match d.protocol {
                protocol::IKE => delete_ike = true,
                protocol::ESP => {
                    // The peer names its inbound SPIs, our outbound ones; we answer
                    // with our inbound SPIs of the same SAs (§1.4.1).
                    let mut ours = Vec::new();
                    for spi in &d.spis {
                        let c = self.children.iter().find(|c| c.outbound_spi == *spi);
                        if let Some(inb) = c.map(|c| c.inbound_spi) {
                            self.child_down(ctx, inb);
                            ours.push(inb);
                        }
                    }
                    if !ours.is_empty() {
                        reply.push(Payload::Delete(Delete {
                            protocol: protocol::ESP,
                            spis: ours,
                        }));
                    }
                }
                _ => {}
            }
        }
        let notifies = private_notifies(pl);
        if !notifies.is_empty() {
            ctx.event(Event::PrivateRequest {
                spi_i: self.spi_i,
                spi_r: self.spi_r,
                notifies,
            });
        }
        if delete_ike {
            // §1.4.1: the response to an IKE SA delete is empty.
            self.respond(ctx, h, data, &[]);
            return self.close(ctx, DownReason::DeletedByPeer);
        }
        self.respond(ctx, h, data, &reply);
    }

    fn delete_child(&mut self, ctx: &mut Ctx<'_>) -> Result<(), RequestError> {
        self.can_request()?;
        let c = *self.children.last().ok_or(RequestError::NoChild)?;
        let d = Payload::Delete(Delete {
            protocol: protocol::ESP,
            spis: vec![c.inbound_spi],
        });
        let kind = ReqKind::DeleteChild(c.inbound_spi);
        self.send_request(ctx, exchange::INFORMATIONAL, kind, &[d]);
        Ok(())
    }

    fn private_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        notifies: Vec<Notify>,
    ) -> Result<(), RequestError> {
        self.can_request()?;
        let inner: Vec<Payload> = notifies.into_iter().map(Payload::Notify).collect();
        self.send_request(ctx, exchange::INFORMATIONAL, ReqKind::Private, &inner);
        Ok(())
    }

    fn liveness(&mut self, ctx: &mut Ctx<'_>) -> Result<(), RequestError> {
        self.can_request()?;
        self.send_request(ctx, exchange::INFORMATIONAL, ReqKind::Liveness, &[]);
        Ok(())
    }

    fn delete_ike(&mut self, ctx: &mut Ctx<'_>) -> Result<(), RequestError> {
        self.can_request()?;
        let d = Payload::Delete(Delete {
            protocol: protocol::IKE,
            spis: Vec::new(),
        });
        self.state = IkeState::Deleting;
        self.send_request(ctx, exchange::INFORMATIONAL, ReqKind::DeleteIke, &[d]);
        Ok(())
    }

    fn poll(&mut self, ctx: &mut Ctx<'_>) {
        self.retransmit(ctx);
        if self.state == IkeState::Rekeyed
            && ctx.now.saturating_sub(self.since) >= ctx.cfg.half_open_timeout_ms
        {
            // The rekey's initiator never deleted the old SA.
            return self.close(ctx, DownReason::Rekeyed);
        }
        if self.state == IkeState::Established {
            self.lifetimes(ctx);
        }
    }

    /// Child SA lifetimes: at the hard one the SA goes at once (the peer is told
    /// with a Delete when no request is outstanding); at the soft one a rekey starts
    /// when no request is outstanding.
    fn lifetimes(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        if self.ike_expire_at <= now {
            // Hard IKE SA lifetime: Delete it (with its child SAs), or, with a
            // request outstanding, close it here at once.
            self.expired = true;
            self.ike_expire_at = u64::MAX;
            if self.delete_ike(ctx).is_err() {
                self.close(ctx, DownReason::Expired);
            }
            return;
        }
        while let Some(c) = self.children.iter().find(|c| c.expire_at <= now).copied() {
            self.child_down(ctx, c.inbound_spi);
            self.owed_deletes.push(c.inbound_spi);
        }
        if self.pending.is_some() {
            return;
        }
        if self.ike_rekey_at <= now {
            self.ike_rekey_at = u64::MAX;
            if self.rekey_ike(ctx).is_err() {
                self.ike_rekey_later(ctx);
            }
            return;
        }
        if !self.owed_deletes.is_empty() {
            let spis = core::mem::take(&mut self.owed_deletes);
            let kind = ReqKind::DeleteChild(spis[0]);
            let d = Payload::Delete(Delete {
                protocol: protocol::ESP,
                spis,
            });
            return self.send_request(ctx, exchange::INFORMATIONAL, kind, &[d]);
        }
        if let Some(c) = self.children.iter().find(|c| c.rekey_at <= now).copied() {
            if self.rekey_child_of(ctx, c).is_err() {
                self.rekey_later(ctx, c.inbound_spi);
            }
        }
    }

    fn retransmit(&mut self, ctx: &mut Ctx<'_>) {
        let Some(p) = &mut self.pending else { return };
        if ctx.now < p.next_at {
            return;
        }
        if p.tries >= ctx.cfg.retransmit_tries {
            let reason = if p.kind == ReqKind::DeleteIke {
                DownReason::DeletedLocally
            } else {
                DownReason::Timeout
            };
            return self.close(ctx, reason);
        }
        p.tries += 1;
        let back = ctx
            .cfg
            .retransmit_ms
            .saturating_mul(1u64 << p.tries.min(16));
        p.next_at = ctx.now.saturating_add(back);
        let data = p.data.clone();
        ctx.counters.retransmits += 1;
        ctx.send(self.remote, &data, self.natt);
    }

    fn next_timeout(&self, cfg: &IkeConfig) -> Option<u64> {
        let mut t = self.pending.as_ref().map(|p| p.next_at);
        let mut at = |x: u64| {
            if x != u64::MAX {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        match self.state {
            IkeState::Rekeyed => at(self.since.saturating_add(cfg.half_open_timeout_ms)),
            IkeState::Established => {
                at(self.ike_expire_at);
                if self.pending.is_none() {
                    at(self.ike_rekey_at);
                }
                for c in &self.children {
                    at(c.expire_at);
                    // Rekeys and owed deletes wait for the outstanding request.
                    if self.pending.is_none() {
                        at(c.rekey_at);
                    }
                }
                if self.pending.is_none() && !self.owed_deletes.is_empty() {
                    at(0);
                }
            }
            _ => {}
        }
        t
    }
}

/// Initiator's check of the responder's IKE choice: one proposal, one transform of
/// each type, each one we offered, the group of our KE payload.
fn check_ike_choice(
    sa: &[Proposal],
    cfg: &IkeConfig,
    group: DhGroup,
    rekey: bool,
) -> Option<IkeSuite> {
    let [p] = sa else { return None };
    if p.protocol != protocol::IKE
        || !ike_spi_ok(&p.spi, rekey)
        || !proposal_usable(p, protocol::IKE)
    {
        return None;
    }
    let (mut encr, mut prf, mut dh) = (None, None, None);
    for t in &p.transforms {
        match t.kind {
            transform::ENCR => {
                let a = encr_alg(t).filter(|a| cfg.ike_encr.contains(a))?;
                if encr.replace(a).is_some() {
                    return None;
                }
            }
            transform::PRF => {
                let f = Prf::from_id(t.id).filter(|f| cfg.ike_prf.contains(f))?;
                if prf.replace(f).is_some() {
                    return None;
                }
            }
            transform::DH => {
                if t.id != group.id() {
                    return None;
                }
                if dh.replace(group).is_some() {
                    return None;
                }
            }
            _ => {}
        }
    }
    Some(IkeSuite {
        encr: encr?,
        prf: prf?,
        dh: dh?,
    })
}

/// The initiator of one IKE SA and its child SA. After an IKE SA rekey (§2.18) the
/// new IKE SA is the current one (this end is its responder when the peer started
/// the rekey); the old one is kept until its Delete completes.
pub struct Initiator {
    cfg: IkeConfig,
    rng: SystemRandom,
    sa: IkeSa,
    /// The IKE SA a rekey replaced, until it is closed.
    old: Option<IkeSa>,
    counters: IkeCounters,
}

impl Initiator {
    /// An initiator from `local` to the responder at `remote` (usually port 500).
    pub fn new(cfg: IkeConfig, local: SocketAddr, remote: SocketAddr, now: u64) -> Self {
        Initiator {
            cfg,
            rng: SystemRandom::new(),
            sa: IkeSa::new(true, local, remote, now),
            old: None,
            counters: IkeCounters::default(),
        }
    }

    fn run<R>(
        &mut self,
        now: u64,
        f: impl FnOnce(&mut IkeSa, &mut Ctx<'_>) -> R,
    ) -> (R, Vec<Output>) {
        self.run_on(false, now, f)
            .unwrap_or_else(|| unreachable!("the current SA always exists"))
    }

    /// Runs `f` on the current SA, or on the replaced one (`None` if there is none),
    /// then adopts the SA a rekey made.
    fn run_on<R>(
        &mut self,
        old: bool,
        now: u64,
        f: impl FnOnce(&mut IkeSa, &mut Ctx<'_>) -> R,
    ) -> Option<(R, Vec<Output>)> {
        let mut out = Vec::new();
        let mut ctx = Ctx {
            cfg: &self.cfg,
            rng: &self.rng,
            counters: &mut self.counters,
            out: &mut out,
            now,
        };
        let sa = if old {
            self.old.as_mut()?
        } else {
            &mut self.sa
        };
        let r = f(sa, &mut ctx);
        // A replaced SA refuses rekeys, so only the current one has a successor.
        if let Some(n) = sa.successor.take().filter(|_| !old) {
            // A second rekey before the first old SA's Delete completed: that one
            // is given up (its child SAs have moved on already).
            if let Some(o) = &mut self.old {
                o.close(&mut ctx, DownReason::Rekeyed);
            }
            let prev = core::mem::replace(&mut self.sa, *n);
            self.old = Some(prev);
        }
        if self
            .old
            .as_ref()
            .is_some_and(|o| o.state == IkeState::Closed)
        {
            self.old = None;
        }
        Some((r, out))
    }

    /// Sends IKE_SA_INIT.
    pub fn start(&mut self, now: u64) -> Result<Vec<Output>, KeyError> {
        if self.sa.state != IkeState::Idle {
            return Ok(Vec::new());
        }
        let (r, out) = self.run(now, |sa, ctx| sa.start(ctx));
        r.map(|()| out)
    }

    /// One datagram received on the IKE port (500).
    pub fn handle(&mut self, data: &[u8], from: SocketAddr, now: u64) -> Vec<Output> {
        self.handle_src(data, Src { from, natt: false }, now)
    }

    /// One datagram received on port 4500: IKE messages start with the non-ESP
    /// marker (RFC 3948 §2.2); anything else (ESP, keepalives) is not for IKE and
    /// is counted as unexpected.
    pub fn handle_natt(&mut self, data: &[u8], from: SocketAddr, now: u64) -> Vec<Output> {
        match strip_marker(data) {
            Some(d) => self.handle_src(d, Src { from, natt: true }, now),
            None => {
                self.counters.received += 1;
                self.counters.unexpected += 1;
                Vec::new()
            }
        }
    }

    fn handle_src(&mut self, data: &[u8], src: Src, now: u64) -> Vec<Output> {
        self.counters.received += 1;
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(_) => {
                self.counters.parse_errors += 1;
                return Vec::new();
            }
        };
        let h = &msg.header;
        let cur = &self.sa;
        let on_old = match &self.old {
            Some(o) if h.spi_i == o.spi_i && h.spi_r == o.spi_r => true,
            _ => {
                let spi_ok = h.spi_i == cur.spi_i
                    && cur.spi_i != 0
                    && (cur.spi_r == 0 || h.spi_r == cur.spi_r);
                if !spi_ok {
                    self.counters.unknown_spi += 1;
                    return Vec::new();
                }
                false
            }
        };
        let sa = match (&self.old, on_old) {
            (Some(o), true) => o,
            _ => cur,
        };
        if src.from != sa.remote && !(sa.nat_local || sa.nat_remote) {
            self.counters.unexpected += 1;
            return Vec::new();
        }
        self.run_on(on_old, now, |sa, ctx| sa.on_message(ctx, data, &msg, src))
            .map(|r| r.1)
            .unwrap_or_default()
    }

    /// Retransmissions, timeouts and lifetimes due at `now`.
    pub fn poll(&mut self, now: u64) -> Vec<Output> {
        let mut out = self
            .run_on(true, now, |sa, ctx| sa.poll(ctx))
            .map(|r| r.1)
            .unwrap_or_default();
        out.extend(self.run(now, |sa, ctx| sa.poll(ctx)).1);
        out
    }

    /// When `poll` next has work, if ever.
    pub fn next_timeout(&self) -> Option<u64> {
        let old = self.old.as_ref().and_then(|o| o.next_timeout(&self.cfg));
        match (self.sa.next_timeout(&self.cfg), old) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// An empty INFORMATIONAL request, a liveness check (§1.4): unanswered after the
    /// retransmissions, the IKE SA closes with [`DownReason::Timeout`].
    pub fn liveness(&mut self, now: u64) -> Result<Vec<Output>, RequestError> {
        let (r, out) = self.run(now, |sa, ctx| sa.liveness(ctx));
        r.map(|()| out)
    }

    /// An INFORMATIONAL request carrying `notifies` (of the private-use status
    /// range, §3.10.1) inside the Encrypted payload; its answer comes as
    /// [`Event::PrivateAnswered`].
    pub fn private_request(
        &mut self,
        notifies: Vec<Notify>,
        now: u64,
    ) -> Result<Vec<Output>, RequestError> {
        let (r, out) = self.run(now, |sa, ctx| sa.private_request(ctx, notifies));
        r.map(|()| out)
    }

    /// INFORMATIONAL Delete of the child SA (§1.4.1).
    pub fn delete_child(&mut self, now: u64) -> Result<Vec<Output>, RequestError> {
        let (r, out) = self.run(now, |sa, ctx| sa.delete_child(ctx));
        r.map(|()| out)
    }

    /// CREATE_CHILD_SA rekey of the (newest) child SA (§1.3.3, with PFS when
    /// [`IkeConfig::child_pfs`] is set); the old SA is deleted once the new one is up.
    pub fn rekey_child(&mut self, now: u64) -> Result<Vec<Output>, RequestError> {
        let (r, out) = self.run(now, |sa, ctx| sa.rekey_child(ctx));
        r.map(|()| out)
    }

    /// CREATE_CHILD_SA rekey of the IKE SA (§2.18); when it completes
    /// ([`Event::IkeSaRekeyed`]) the child SAs belong to the new IKE SA and the old
    /// one is deleted.
    pub fn rekey_ike(&mut self, now: u64) -> Result<Vec<Output>, RequestError> {
        let (r, out) = self.run(now, |sa, ctx| sa.rekey_ike(ctx));
        r.map(|()| out)
    }

    /// INFORMATIONAL Delete of the IKE SA (and with it the child SA).
    pub fn delete_ike(&mut self, now: u64) -> Result<Vec<Output>, RequestError> {
        let (r, out) = self.run(now, |sa, ctx| sa.delete_ike(ctx));
        r.map(|()| out)
    }

    pub fn state(&self) -> IkeState {
        self.sa.state
    }

    /// (SPIi, SPIr) of the current IKE SA; SPIr is 0 until the responder answered.
    /// Whether a request of ours is outstanding (window of one, §2.3).
    pub fn busy(&self) -> bool {
        self.sa.pending.is_some()
    }

    pub fn spis(&self) -> (u64, u64) {
        (self.sa.spi_i, self.sa.spi_r)
    }

    /// The peer's SPI of the current IKE SA: SPIr, or SPIi after a rekey the peer
    /// started (the key of the SA in a [`Responder`] peer).
    pub fn peer_spi(&self) -> u64 {
        self.sa.peer_spi()
    }

    pub fn counters(&self) -> IkeCounters {
        self.counters
    }
}

/// A responder endpoint: every IKE SA initiated towards one local address.
///
/// Per-SA methods take the SA's local SPI: its SPIr, or, for an IKE SA this end
/// made by rekeying (§2.18: the rekey's initiator is the new SA's initiator), its
/// SPIi. [`Event::IkeSaRekeyed`] and [`Initiator::peer_spi`] tell which.
pub struct Responder {
    cfg: IkeConfig,
    local: SocketAddr,
    rng: SystemRandom,
    sas: HashMap<u64, IkeSa>,
    /// (SPIi, peer) of each SA, to recognise retransmitted IKE_SA_INIT requests.
    by_init: HashMap<(u64, SocketAddr), u64>,
    cookie_secret: SecretBytes,
    counters: IkeCounters,
    /// SAs in [`IkeState::HalfOpen`] (the §2.6 cookie threshold), kept current.
    half_open: usize,
}

impl Responder {
    pub fn new(cfg: IkeConfig, local: SocketAddr) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let mut secret = Zeroizing::new(vec![0u8; 32]);
        rng.fill(&mut secret).map_err(|_| KeyError::Random)?;
        Ok(Responder {
            cfg,
            local,
            rng,
            sas: HashMap::new(),
            by_init: HashMap::new(),
            cookie_secret: secret,
            counters: IkeCounters::default(),
            half_open: 0,
        })
    }

    fn ctx_run<R>(
        &mut self,
        spi_r: u64,
        now: u64,
        f: impl FnOnce(&mut IkeSa, &mut Ctx<'_>) -> R,
    ) -> Option<(R, Vec<Output>)> {
        let sa = self.sas.get_mut(&spi_r)?;
        let mut out = Vec::new();
        let mut ctx = Ctx {
            cfg: &self.cfg,
            rng: &self.rng,
            counters: &mut self.counters,
            out: &mut out,
            now,
        };
        let was_half_open = sa.state == IkeState::HalfOpen;
        let r = f(sa, &mut ctx);
        // Only an SA's own exchanges leave HalfOpen; none enters it here.
        if was_half_open && sa.state != IkeState::HalfOpen {
            self.half_open = self.half_open.saturating_sub(1);
        }
        if let Some(n) = sa.successor.take() {
            // A rekey made a new IKE SA (§2.18). Its SPI is fresh from 2^64; should
            // it be taken, the new SA is not kept and the peer's requests on it fail.
            let k = n.local_spi();
            self.sas.entry(k).or_insert(*n);
        }
        Some((r, out))
    }

    /// One datagram received on the IKE port (500) from `from`.
    pub fn handle(&mut self, data: &[u8], from: SocketAddr, now: u64) -> Vec<Output> {
        self.handle_src(data, Src { from, natt: false }, now)
    }

    /// One datagram received on port 4500: IKE messages start with the non-ESP
    /// marker (RFC 3948 §2.2); anything else (ESP, keepalives) is not for IKE and
    /// is counted as unexpected.
    pub fn handle_natt(&mut self, data: &[u8], from: SocketAddr, now: u64) -> Vec<Output> {
        match strip_marker(data) {
            Some(d) => self.handle_src(d, Src { from, natt: true }, now),
            None => {
                self.counters.received += 1;
                self.counters.unexpected += 1;
                Vec::new()
            }
        }
    }

    fn handle_src(&mut self, data: &[u8], src: Src, now: u64) -> Vec<Output> {
        let from = src.from;
        self.counters.received += 1;
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(_) => {
                self.counters.parse_errors += 1;
                return Vec::new();
            }
        };
        let h = msg.header;
        if h.exchange == exchange::IKE_SA_INIT && h.spi_r == 0 {
            if h.is_response() || !h.from_initiator() || h.message_id != 0 {
                self.counters.unexpected += 1;
                return Vec::new();
            }
            return self.on_init(data, &msg, src, now);
        }
        // SAs are found by this end's SPI: SPIr, or SPIi of an SA this end
        // initiated by rekeying (§2.18).
        let ours = if h.from_initiator() { h.spi_r } else { h.spi_i };
        let Some(sa) = self.sas.get(&ours) else {
            self.counters.unknown_spi += 1;
            return Vec::new();
        };
        if sa.spi_i != h.spi_i || sa.spi_r != h.spi_r {
            self.counters.unknown_spi += 1;
            return Vec::new();
        }
        // Behind a NAT the peer's address may change (checked after decryption);
        // otherwise it must not.
        if sa.remote != from && !(src.natt || sa.nat_local || sa.nat_remote) {
            self.counters.unexpected += 1;
            return Vec::new();
        }
        self.ctx_run(ours, now, |sa, ctx| sa.on_message(ctx, data, &msg, src))
            .map(|r| r.1)
            .unwrap_or_default()
    }

    /// COOKIE = version ‖ prf(secret, Ni ‖ IPi ‖ port ‖ SPIi) (§2.6).
    fn cookie(&self, ni: &[u8], from: SocketAddr, spi_i: u64) -> Vec<u8> {
        let mac = Prf::HmacSha256.prf(
            &self.cookie_secret,
            &[
                ni,
                &ip_bytes(from),
                &from.port().to_be_bytes(),
                &spi_i.to_be_bytes(),
            ],
        );
        let mut c = vec![1u8];
        c.extend_from_slice(&mac);
        c
    }

    fn stateless(&mut self, spi_i: u64, to: Src, n: Notify) -> Vec<Output> {
        let h = Header::new(spi_i, 0, exchange::IKE_SA_INIT, flags::RESPONSE, 0);
        self.counters.sent += 1;
        vec![datagram(
            to.from,
            &wire::encode(&h, &[Payload::Notify(n)]),
            to.natt,
        )]
    }

    fn on_init(&mut self, data: &[u8], msg: &Message, src: Src, now: u64) -> Vec<Output> {
        let h = msg.header;
        let from = src.from;
        if let Some(spi_r) = self.by_init.get(&(h.spi_i, from)).copied() {
            // A retransmission gets the same response; anything else is dropped.
            if let Some(sa) = self.sas.get(&spi_r) {
                if sa.init_req == data {
                    self.counters.retransmits_answered += 1;
                    self.counters.sent += 1;
                    return vec![datagram(from, &sa.init_resp, sa.natt)];
                }
            }
            self.counters.unexpected += 1;
            return Vec::new();
        }
        let pl = &msg.payloads;
        let sa = find(pl, |p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        });
        let ke = find(pl, |p| match p {
            Payload::Ke(k) => Some(k),
            _ => None,
        });
        let ni = find(pl, |p| match p {
            Payload::Nonce(n) => Some(n),
            _ => None,
        });
        let (Some(sa), Some(ke), Some(ni)) = (sa, ke, ni) else {
            self.counters.invalid += 1;
            return self.stateless(
                h.spi_i,
                src,
                Notify::new(notify::INVALID_SYNTAX, Vec::new()),
            );
        };
        // §2.6: cookies once too many SAs are half open.
        if self.half_open >= self.cfg.half_open_limit {
            let want = self.cookie(ni, from, h.spi_i);
            let got = msg.notify(notify::COOKIE).map(|n| n.data.as_slice());
            let valid = got.is_some_and(|g| {
                g.len() == want.len()
                    && g.first() == Some(&1)
                    && Prf::HmacSha256.verify(
                        &self.cookie_secret,
                        &[
                            ni,
                            &ip_bytes(from),
                            &from.port().to_be_bytes(),
                            &h.spi_i.to_be_bytes(),
                        ],
                        g.get(1..).unwrap_or(&[]),
                    )
            });
            if !valid {
                self.counters.cookies_sent += 1;
                return self.stateless(h.spi_i, src, Notify::new(notify::COOKIE, want));
            }
        }
        let Some((num, suite)) = select_ike(sa, &self.cfg, ke.group, false) else {
            self.counters.no_proposal_chosen += 1;
            return self.stateless(
                h.spi_i,
                src,
                Notify::new(notify::NO_PROPOSAL_CHOSEN, Vec::new()),
            );
        };
        if ke.group != suite.dh.id() {
            self.counters.invalid_ke_sent += 1;
            return self.stateless(
                h.spi_i,
                src,
                Notify::new(
                    notify::INVALID_KE_PAYLOAD,
                    suite.dh.id().to_be_bytes().to_vec(),
                ),
            );
        }
        match self.new_sa(data, msg, ni, ke, num, suite, src, now) {
            Ok(out) => out,
            Err(KeyError::BadPublicValue) => {
                self.counters.invalid += 1;
                self.stateless(
                    h.spi_i,
                    src,
                    Notify::new(notify::INVALID_SYNTAX, Vec::new()),
                )
            }
            Err(_) => {
                self.counters.invalid += 1;
                Vec::new()
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new_sa(
        &mut self,
        data: &[u8],
        msg: &Message,
        ni: &[u8],
        ke: &KeyExchange,
        num: u8,
        suite: IkeSuite,
        src: Src,
        now: u64,
    ) -> Result<Vec<Output>, KeyError> {
        let from = src.from;
        let here = if src.natt {
            SocketAddr::new(self.local.ip(), crate::sa::NATT_PORT)
        } else {
            self.local
        };
        let mut spi_r = random_spi64(&self.rng)?;
        while self.sas.contains_key(&spi_r) {
            spi_r = random_spi64(&self.rng)?;
        }
        let mut sa = IkeSa::new(false, here, from, now);
        sa.natt = src.natt;
        sa.spi_i = msg.header.spi_i;
        sa.spi_r = spi_r;
        sa.ni = ni.to_vec();
        sa.nr = nonce(&self.rng)?;
        let dh = DhPrivate::generate(suite.dh, &self.rng)?;
        let public = dh.public().to_vec();
        let shared = dh.agree(&ke.data)?;
        sa.install_keys(&suite, &shared)?;
        sa.check_nat(&msg.payloads);
        let reply = [
            Payload::Sa(vec![Proposal {
                num,
                protocol: protocol::IKE,
                spi: Vec::new(),
                transforms: vec![
                    encr_transform(suite.encr),
                    Transform::new(transform::PRF, suite.prf.id()),
                    Transform::new(transform::DH, suite.dh.id()),
                ],
            }]),
            Payload::Ke(KeyExchange {
                group: suite.dh.id(),
                data: public,
            }),
            Payload::Nonce(sa.nr.clone()),
            Payload::Notify(Notify::new(
                notify::NAT_DETECTION_SOURCE_IP,
                keys::nat_detection_hash(sa.spi_i, spi_r, here).to_vec(),
            )),
            Payload::Notify(Notify::new(
                notify::NAT_DETECTION_DESTINATION_IP,
                keys::nat_detection_hash(sa.spi_i, spi_r, from).to_vec(),
            )),
        ];
        let h = Header::new(sa.spi_i, spi_r, exchange::IKE_SA_INIT, flags::RESPONSE, 0);
        let resp = wire::encode(&h, &reply);
        sa.init_req = data.to_vec();
        sa.init_resp = resp.clone();
        sa.state = IkeState::HalfOpen;
        sa.peer_next = 1;
        sa.next_id = 0;
        self.by_init.insert((sa.spi_i, from), spi_r);
        self.sas.insert(spi_r, sa);
        self.half_open += 1;
        self.counters.sent += 1;
        Ok(vec![datagram(from, &resp, src.natt)])
    }

    /// Retransmissions, timeouts, and expiry of half-open and closed SAs.
    pub fn poll(&mut self, now: u64) -> Vec<Output> {
        let mut out = Vec::new();
        let keys: Vec<u64> = self.sas.keys().copied().collect();
        for k in keys {
            if let Some((_, o)) = self.ctx_run(k, now, |sa, ctx| {
                sa.poll(ctx);
                if sa.state == IkeState::HalfOpen
                    && now.saturating_sub(sa.since) >= ctx.cfg.half_open_timeout_ms
                {
                    ctx.counters.half_open_expired += 1;
                    sa.close(ctx, DownReason::HalfOpenExpired);
                }
            }) {
                out.extend(o);
            }
        }
        let timeout = self.cfg.half_open_timeout_ms;
        let by_init = &mut self.by_init;
        self.sas.retain(|k, sa| {
            let keep = sa.state != IkeState::Closed || now.saturating_sub(sa.since) < timeout;
            let key = (sa.spi_i, sa.init_from);
            if !keep && by_init.get(&key) == Some(k) {
                by_init.remove(&key);
            }
            keep
        });
        out
    }

    /// When `poll` next has work, if ever.
    pub fn next_timeout(&self) -> Option<u64> {
        let t = self.cfg.half_open_timeout_ms;
        self.sas
            .values()
            .filter_map(|sa| match sa.state {
                IkeState::HalfOpen | IkeState::Closed => Some(
                    sa.since
                        .saturating_add(t)
                        .min(sa.next_timeout(&self.cfg).unwrap_or(u64::MAX)),
                ),
                _ => sa.next_timeout(&self.cfg),
            })
            .min()
    }

    /// A liveness check (§1.4) on the IKE SA with local SPI `spi_r`.
    pub fn liveness(&mut self, spi_r: u64, now: u64) -> Result<Vec<Output>, RequestError> {
        let (r, out) = self
            .ctx_run(spi_r, now, |sa, ctx| sa.liveness(ctx))
            .ok_or(RequestError::NotEstablished)?;
        r.map(|()| out)
    }

    /// An INFORMATIONAL request with private-use `notifies` (§3.10.1) on the IKE SA
    /// with local SPI `spi_r`; its answer comes as [`Event::PrivateAnswered`].
    pub fn private_request(
        &mut self,
        spi_r: u64,
        notifies: Vec<Notify>,
        now: u64,
    ) -> Result<Vec<Output>, RequestError> {
        let (r, out) = self
            .ctx_run(spi_r, now, |sa, ctx| sa.private_request(ctx, notifies))
            .ok_or(RequestError::NotEstablished)?;
        r.map(|()| out)
    }

    /// The authenticated identity (IDi) of the peer of the IKE SA with local SPI
    /// `spi_r`, once its IKE_AUTH verified.
    pub fn peer_id(&self, spi_r: u64) -> Option<&Identification> {
        self.sas
            .get(&spi_r)
            .filter(|s| s.state != IkeState::HalfOpen)
            .and_then(|s| s.peer_id.as_ref())
    }

    /// Whether a request of ours is outstanding on that IKE SA (window of one,
    /// §2.3): a new request would be refused with [`RequestError::Busy`].
    pub fn busy(&self, spi_r: u64) -> bool {
        self.sas.get(&spi_r).is_some_and(|s| s.pending.is_some())
    }

    /// The per-peer PSKs ([`IkeConfig::peer_psks`]), to add or revoke peers while
    /// running; established SAs are not affected.
    pub fn peer_psks_mut(&mut self) -> &mut PeerPsks {
        &mut self.cfg.peer_psks
    }

    /// INFORMATIONAL Delete of the child SA of the IKE SA with local SPI `spi_r`.
    pub fn delete_child(&mut self, spi_r: u64, now: u64) -> Result<Vec<Output>, RequestError> {
        let (r, out) = self
            .ctx_run(spi_r, now, |sa, ctx| sa.delete_child(ctx))
            .ok_or(RequestError::NotEstablished)?;
        r.map(|()| out)
    }

    /// CREATE_CHILD_SA rekey of the (newest) child SA of the IKE SA with local SPI
    /// `spi_r` (§1.3.3, with PFS when [`IkeConfig::child_pfs`] is set); the old
    /// SA is deleted once the new one is up.
    pub fn rekey_child(&mut self, spi_r: u64, now: u64) -> Result<Vec<Output>, RequestError> {
        let (r, out) = self
            .ctx_run(spi_r, now, |sa, ctx| sa.rekey_child(ctx))
            .ok_or(RequestError::NotEstablished)?;
        r.map(|()| out)
    }

    /// CREATE_CHILD_SA rekey of the IKE SA with local SPI `spi` (§2.18). When it
    /// completes ([`Event::IkeSaRekeyed`]), the new SA is found under this end's new
    /// SPI, which is its SPIi: this end is the new SA's initiator.
    pub fn rekey_ike(&mut self, spi: u64, now: u64) -> Result<Vec<Output>, RequestError> {
        let (r, out) = self
            .ctx_run(spi, now, |sa, ctx| sa.rekey_ike(ctx))
            .ok_or(RequestError::NotEstablished)?;
        r.map(|()| out)
    }

    /// INFORMATIONAL Delete of the IKE SA with local SPI `spi_r`.
    pub fn delete_ike(&mut self, spi_r: u64, now: u64) -> Result<Vec<Output>, RequestError> {
        let (r, out) = self
            .ctx_run(spi_r, now, |sa, ctx| sa.delete_ike(ctx))
            .ok_or(RequestError::NotEstablished)?;
        r.map(|()| out)
    }

    pub fn state(&self, spi_r: u64) -> Option<IkeState> {
        self.sas.get(&spi_r).map(|s| s.state)
    }

    /// Local SPIs (SPIr, or SPIi for an SA this end made by rekeying) of the IKE SAs
    /// in `state`.
    pub fn sas_in(&self, state: IkeState) -> Vec<u64> {
        self.sas
            .iter()
            .filter(|(_, s)| s.state == state)
            .map(|(k, _)| *k)
            .collect()
    }

    /// SAs waiting for IKE_AUTH.
    pub fn half_open(&self) -> usize {
        self.half_open
    }

    pub fn counters(&self) -> IkeCounters {
        self.counters
    }
}

fn ip_bytes(a: SocketAddr) -> Vec<u8> {
    match a.ip() {
        core::net::IpAddr::V4(v) => v.octets().to_vec(),
        core::net::IpAddr::V6(v) => v.octets().to_vec(),
    }
}
