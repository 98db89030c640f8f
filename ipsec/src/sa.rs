//! One Security Association (RFC 4301 §4.4.2): SPI, mode, keys, sequence counter or
//! replay window, lifetimes. Outbound SAs carry the sequence counter (RFC 4303
//! §3.3.3), inbound SAs the replay window (§3.4.3).

use crate::crypto::{Algorithm, Backend, GcmKey, KeyMaterial};
use crate::error::{DropReason, Error};
use crate::replay::{ReplayWindow, DEFAULT_WINDOW};
use crate::secret::{Secret, Storage};
use crate::spd::Selector;
use core::net::IpAddr;

/// IANA port for UDP-encapsulated ESP (RFC 3948 §2.1, RFC 7296 §2.23).
pub const NATT_PORT: u16 = 4500;

/// Without ESN, ask for a rekey this many packets before the 32-bit counter runs out.
const SEQ32_SOFT_MARGIN: u64 = 1 << 28;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// ESP mode (RFC 4303 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// New outer IP header from `src` to `dst` (both IPv4 or both IPv6); the inner
    /// packet may be either family.
    Tunnel { src: IpAddr, dst: IpAddr },
    /// ESP inserted after the packet's own IP header.
    Transport,
}

/// UDP encapsulation for NAT traversal (RFC 3948 §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpEncap {
    pub sport: u16,
    pub dport: u16,
}

impl Default for UdpEncap {
    fn default() -> Self {
        UdpEncap {
            sport: NATT_PORT,
            dport: NATT_PORT,
        }
    }
}

/// One set of lifetime limits; `None` means no limit (RFC 4301 §4.4.2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub bytes: Option<u64>,
    pub packets: Option<u64>,
    pub seconds: Option<u64>,
}

/// Soft limits ask for a rekey; hard limits end the SA.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifetime {
    pub soft: Limits,
    pub hard: Limits,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryKind {
    Soft,
    Hard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryCause {
    Bytes,
    Packets,
    Seconds,
    /// The outbound sequence counter is close to (soft) or at (hard) its end.
    SequenceNumber,
}

/// What the rekey callback is told. Each SA reports at most one soft and one hard
/// event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifetimeEvent {
    pub sa: crate::sad::SaId,
    pub spi: u32,
    pub direction: Direction,
    pub kind: ExpiryKind,
    pub cause: ExpiryCause,
}

/// Everything needed to install an SA, except the keys.
#[derive(Clone, Debug)]
pub struct SaConfig {
    pub spi: u32,
    pub direction: Direction,
    pub mode: Mode,
    pub encap: Option<UdpEncap>,
    pub algorithm: Algorithm,
    pub backend: Backend,
    /// 64-bit Extended Sequence Numbers (RFC 4303 §2.2.1).
    pub esn: bool,
    /// Inbound only: replay window size in packets (multiple of 64).
    pub replay_window: usize,
    pub lifetime: Lifetime,
    /// Tunnel mode, outbound: pad the inner packet with zeros up to this length (TFC,
    /// RFC 4303 §2.4). Off by default.
    pub tfc_pad_to: Option<u16>,
    /// Inbound: decrypted packets must match this selector (RFC 4301 §5.2 step 4).
    pub selector: Option<Selector>,
    /// TTL / hop limit of the outer header (tunnel mode).
    pub ttl: u8,
}

impl SaConfig {
    /// A tunnel-mode AES-128-GCM SA with the defaults: no ESN, window 1024, no
    /// lifetimes, no UDP encapsulation, no TFC padding, the fastest backend.
    pub fn tunnel(spi: u32, direction: Direction, src: IpAddr, dst: IpAddr) -> Self {
        Self::new(spi, direction, Mode::Tunnel { src, dst })
    }

    pub fn transport(spi: u32, direction: Direction) -> Self {
        Self::new(spi, direction, Mode::Transport)
    }

    fn new(spi: u32, direction: Direction, mode: Mode) -> Self {
        SaConfig {
            spi,
            direction,
            mode,
            encap: None,
            algorithm: Algorithm::Aes128Gcm16,
            backend: Backend::preferred(),
            esn: false,
            replay_window: DEFAULT_WINDOW,
            lifetime: Lifetime::default(),
            tfc_pad_to: None,
            selector: None,
            ttl: 64,
        }
    }
}

/// Per-SA counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaStats {
    pub packets: u64,
    /// Plaintext payload bytes (what lifetimes count).
    pub bytes: u64,
}

/// An installed SA.
pub struct Sa {
    pub(crate) cfg: SaConfig,
    pub(crate) key: Secret<GcmKey>,
    /// Outbound: last sequence number sent (0 before the first packet).
    pub(crate) seq: u64,
    pub(crate) replay: Option<ReplayWindow>,
    pub(crate) stats: SaStats,
    pub(crate) created: u64,
    pub(crate) soft_fired: bool,
    pub(crate) hard_fired: bool,
    pub(crate) ip_id: u16,
}

impl Sa {
    /// Builds the SA; the expanded key goes into secret memory where available.
    pub fn new(cfg: SaConfig, km: &KeyMaterial, now: u64) -> Result<Sa, Error> {
        if cfg.spi < 256 {
            return Err(Error::ReservedSpi(cfg.spi));
        }
        if let Mode::Tunnel { src, dst } = cfg.mode {
            if src.is_ipv4() != dst.is_ipv4() {
                return Err(Error::MixedFamily);
            }
        }
        let replay = match cfg.direction {
            Direction::Inbound => Some(ReplayWindow::new(cfg.replay_window, cfg.esn)?),
            Direction::Outbound => None,
        };
        let key = Secret::new(GcmKey::new(cfg.backend, cfg.algorithm, km)?);
        Ok(Sa {
            cfg,
            key,
            seq: 0,
            replay,
            stats: SaStats::default(),
            created: now,
            soft_fired: false,
            hard_fired: false,
            ip_id: 0,
        })
    }

    pub fn config(&self) -> &SaConfig {
        &self.cfg
    }

    pub fn spi(&self) -> u32 {
        self.cfg.spi
    }

    pub fn stats(&self) -> SaStats {
        self.stats
    }

    /// Where the expanded key lives (secret memory or heap).
    pub fn key_storage(&self) -> Storage {
        self.key.storage()
    }

    /// Last sequence number sent (outbound).
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// Starts the outbound counter after `seq` (tests and SA migration only: sequence
    /// numbers must never repeat under one key).
    pub fn set_last_seq(&mut self, seq: u64) {
        self.seq = self.seq.max(seq);
    }

    pub fn replay_window(&self) -> Option<&ReplayWindow> {
        self.replay.as_ref()
    }

    pub fn is_expired(&self) -> bool {
        self.hard_fired
    }

    fn limit_hit(l: &Limits, stats: &SaStats, age: u64) -> Option<ExpiryCause> {
        if l.packets.is_some_and(|p| stats.packets >= p) {
            Some(ExpiryCause::Packets)
        } else if l.bytes.is_some_and(|b| stats.bytes >= b) {
            Some(ExpiryCause::Bytes)
        } else if l.seconds.is_some_and(|s| age >= s) {
            Some(ExpiryCause::Seconds)
        } else {
            None
        }
    }

    fn event(&self, id: crate::sad::SaId, kind: ExpiryKind, cause: ExpiryCause) -> LifetimeEvent {
        LifetimeEvent {
            sa: id,
            spi: self.cfg.spi,
            direction: self.cfg.direction,
            kind,
            cause,
        }
    }

    /// Before a packet: may this SA still be used? Reports the hard event the first
    /// time a hard limit is found reached.
    pub(crate) fn check_hard(
        &mut self,
        id: crate::sad::SaId,
        now: u64,
        events: &mut impl FnMut(LifetimeEvent),
    ) -> Result<(), DropReason> {
        if self.hard_fired {
            return Err(DropReason::SaExpired);
        }
        let age = now.saturating_sub(self.created);
        if let Some(cause) = Self::limit_hit(&self.cfg.lifetime.hard, &self.stats, age) {
            self.hard_fired = true;
            events(self.event(id, ExpiryKind::Hard, cause));
            return Err(DropReason::SaExpired);
        }
        Ok(())
    }

    /// After a packet went through: count it, report the soft event once.
    pub(crate) fn account(
        &mut self,
        id: crate::sad::SaId,
        bytes: usize,
        now: u64,
        events: &mut impl FnMut(LifetimeEvent),
    ) {
        self.stats.packets += 1;
        self.stats.bytes += bytes as u64;
        if !self.soft_fired {
            let age = now.saturating_sub(self.created);
            let cause = Self::limit_hit(&self.cfg.lifetime.soft, &self.stats, age).or_else(|| {
                let soft_at = if self.cfg.esn {
                    u64::MAX - (1 << 32)
                } else {
                    (1 << 32) - SEQ32_SOFT_MARGIN
                };
                (self.cfg.direction == Direction::Outbound && self.seq >= soft_at)
                    .then_some(ExpiryCause::SequenceNumber)
            });
            if let Some(cause) = cause {
                self.soft_fired = true;
                events(self.event(id, ExpiryKind::Soft, cause));
            }
        }
    }

    /// Time-only check for idle SAs (from [`crate::Sad::tick`]).
    pub(crate) fn tick(
        &mut self,
        id: crate::sad::SaId,
        now: u64,
        events: &mut impl FnMut(LifetimeEvent),
    ) {
        let age = now.saturating_sub(self.created);
        if !self.soft_fired && self.cfg.lifetime.soft.seconds.is_some_and(|s| age >= s) {
            self.soft_fired = true;
            events(self.event(id, ExpiryKind::Soft, ExpiryCause::Seconds));
        }
        if !self.hard_fired && self.cfg.lifetime.hard.seconds.is_some_and(|s| age >= s) {
            self.hard_fired = true;
            events(self.event(id, ExpiryKind::Hard, ExpiryCause::Seconds));
        }
    }

    /// Next outbound sequence number. Without ESN the counter must not cycle past
    /// 2^32 - 1, with ESN not past 2^64 - 1 (RFC 4303 §3.3.3): the SA is then spent.
    pub(crate) fn next_seq(
        &mut self,
        id: crate::sad::SaId,
        events: &mut impl FnMut(LifetimeEvent),
    ) -> Result<u64, DropReason> {
        let max = if self.cfg.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        if self.seq >= max {
            if !self.hard_fired {
                self.hard_fired = true;
                events(self.event(id, ExpiryKind::Hard, ExpiryCause::SequenceNumber));
            }
            return Err(DropReason::SeqOverflow);
        }
        self.seq += 1;
        Ok(self.seq)
    }
}
