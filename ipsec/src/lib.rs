//! IPsec data path: ESP (RFC 4303) with AES-GCM (RFC 4106) in tunnel and transport
//! mode, UDP encapsulation for NAT traversal (RFC 3948), the Security Association
//! Database and Security Policy Database (RFC 4301 §4.4), anti-replay with 64-bit
//! Extended Sequence Numbers (RFC 4303 §3.4.3, Appendix A), SA lifetimes with a rekey
//! callback, and key material kept in `memfd_secret(2)` memory and zeroized on drop.
//!
//! `no_std` + `alloc`; the `std` feature adds secret memory and logs. Crypto backends:
//! `ring` (default, fast path) and `rustcrypto` (portable fallback), both usable at once.
//!
//! [`Ipsec`] ties SAD, SPD and counters together: [`Ipsec::outbound`] applies the SPD
//! and encrypts, [`Ipsec::inbound`] decrypts and checks the policy. Both work in place
//! on any [`Buf`] (the engine's packet buffers implement it in the `stage` module).
//!
//! [`ike`] is the IKEv2 (RFC 7296) control plane: codec, key derivation and sans-IO
//! initiator/responder state machines that produce child SAs for the SAD (key
//! derivation and the state machines need the `ring` feature), and, with the
//! `daemon` feature (std), an IKE daemon that runs configured connections and
//! installs their SAs into running `esp-*` stages through the stages' update queues
//! (`stage::SaUpdate`).
#![no_std]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

#[cfg(not(any(feature = "ring", feature = "rustcrypto")))]
compile_error!("enable at least one crypto backend: feature `ring` or `rustcrypto`");

pub mod buf;
pub mod crypto;
pub mod error;
pub mod esp;
pub mod ike;
pub mod ip;
pub mod replay;
pub mod sa;
pub mod sad;
pub mod secret;
pub mod spd;
#[cfg(feature = "engine")]
pub mod stage;
#[doc(hidden)]
pub mod testutil;

#[cfg(test)]
mod tests;

pub use buf::{Buf, HeadroomBuf};
pub use crypto::{Algorithm, Backend, KeyMaterial};
pub use error::{DropReason, Error};
pub use ip::Flow;
pub use replay::ReplayWindow;
pub use sa::{
    Direction, ExpiryCause, ExpiryKind, Lifetime, LifetimeEvent, Limits, Mode, Sa, SaConfig,
    UdpEncap, NATT_PORT,
};
pub use sad::{RekeyCallback, SaId, Sad};
pub use spd::{Action, Policy, PortRange, Prefix, Selector, Spd};

use esp::Class;

/// Packet and drop counters of one [`Ipsec`] instance (per worker).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub encrypted: u64,
    pub decrypted: u64,
    pub bypassed: u64,
    /// IKE packets and NAT keepalives on the NAT-T port, for the control plane.
    pub punted: u64,
    /// Indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
}

impl Counters {
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops.get(r.index()).copied().unwrap_or(0)
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    #[inline]
    fn count_drop(&mut self, r: DropReason) {
        if let Some(c) = self.drops.get_mut(r.index()) {
            *c += 1;
        }
    }
}

/// Result of outbound processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outbound {
    /// Encrypted with this SA; the buffer now holds the ESP packet.
    Protected(SaId),
    /// Policy said BYPASS: the buffer is unchanged.
    Bypass,
}

/// Result of inbound processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Decrypted by this SA; the buffer holds the inner packet (tunnel mode) or the
    /// restored packet (transport mode).
    Decrypted { sa: SaId, next_header: u8 },
    /// Clear packet allowed by a BYPASS policy; unchanged.
    Bypass,
    /// IKE or NAT keepalive on the NAT-T port: hand to the control plane.
    Punt,
}

/// SAD + SPD + counters: the state one worker's ESP stages use.
pub struct Ipsec {
    pub sad: Sad,
    pub spd: Spd,
    pub counters: Counters,
    /// UDP port of encapsulated ESP (RFC 3948): 4500.
    pub natt_port: u16,
}

impl Default for Ipsec {
    fn default() -> Self {
        Self::new()
    }
}

impl Ipsec {
    pub fn new() -> Self {
        Ipsec {
            sad: Sad::new(),
            spd: Spd::new(),
            counters: Counters::default(),
            natt_port: NATT_PORT,
        }
    }

    /// Outbound (RFC 4301 §5.1): SPD lookup on the packet, then encrypt with the SA
    /// the matching policy names. `now` is a monotonic time in seconds (lifetimes).
    pub fn outbound<B: Buf + ?Sized>(
        &mut self,
        buf: &mut B,
        now: u64,
    ) -> Result<Outbound, DropReason> {
        let r = self.outbound_inner(buf, now);
        match r {
            Ok(Outbound::Protected(_)) => self.counters.encrypted += 1,
            Ok(Outbound::Bypass) => self.counters.bypassed += 1,
            Err(e) => self.counters.count_drop(e),
        }
        r
    }

    fn outbound_inner<B: Buf + ?Sized>(
        &mut self,
        buf: &mut B,
        now: u64,
    ) -> Result<Outbound, DropReason> {
        let ip = ip::parse(buf.data())?;
        let flow = Flow::from_info(&ip, buf.data());
        match self.spd.lookup_outbound(&flow) {
            Action::Bypass => Ok(Outbound::Bypass),
            Action::Discard => Err(DropReason::PolicyDiscard),
            Action::Protect(id) => {
                let (sa, mut ev) = self.sad.sa_and_events(id).ok_or(DropReason::NoSa)?;
                if sa.cfg.direction != sa::Direction::Outbound {
                    return Err(DropReason::NoSa);
                }
                esp::encapsulate_parsed(sa, id, buf, &ip, now, &mut ev)?;
                Ok(Outbound::Protected(id))
            }
        }
    }

    /// The SPI of the SA [`Ipsec::outbound`] would protect this packet with (`None`:
    /// bypassed, discarded, not IP, or no such SA). For steering a packet to the
    /// worker that owns the SA before its sequence number is taken.
    pub fn outbound_spi(&self, data: &[u8]) -> Option<u32> {
        let ip = ip::parse(data).ok()?;
        let flow = Flow::from_info(&ip, data);
        match self.spd.lookup_outbound(&flow) {
            Action::Protect(id) => self.sad.get(id).map(|sa| sa.cfg.spi),
            _ => None,
        }
    }

    /// The SPI of an ESP packet (plain or UDP-encapsulated; `None` otherwise). For
    /// steering it to the worker that owns the SA before the replay check.
    pub fn inbound_spi(&self, data: &[u8]) -> Option<u32> {
        match esp::classify(data, self.natt_port) {
            Ok(Class::Esp(p)) => Some(p.spi),
            _ => None,
        }
    }

    /// Encrypts with a given outbound SA, skipping the SPD (the caller already chose,
    /// e.g. a route-based tunnel). Not counted in [`Counters`].
    #[inline]
    pub fn encrypt_with<B: Buf + ?Sized>(
        &mut self,
        id: SaId,
        buf: &mut B,
        now: u64,
    ) -> Result<(), DropReason> {
        let (sa, mut ev) = self.sad.sa_and_events(id).ok_or(DropReason::NoSa)?;
        if sa.cfg.direction != sa::Direction::Outbound {
            return Err(DropReason::NoSa);
        }
        esp::encapsulate(sa, id, buf, now, &mut ev)
    }

    /// Inbound (RFC 4301 §5.2): ESP packets are looked up by SPI, checked against
    /// replay, decrypted, and the inner packet checked against the SA's selector;
    /// clear packets go through the inbound SPD.
    pub fn inbound<B: Buf + ?Sized>(
        &mut self,
        buf: &mut B,
        now: u64,
    ) -> Result<Inbound, DropReason> {
        let r = self.inbound_inner(buf, now);
        match r {
            Ok(Inbound::Decrypted { .. }) => self.counters.decrypted += 1,
            Ok(Inbound::Bypass) => self.counters.bypassed += 1,
            Ok(Inbound::Punt) => self.counters.punted += 1,
            Err(e) => self.counters.count_drop(e),
        }
        r
    }

    fn inbound_inner<B: Buf + ?Sized>(
        &mut self,
        buf: &mut B,
        now: u64,
    ) -> Result<Inbound, DropReason> {
        match esp::classify(buf.data(), self.natt_port)? {
            Class::Esp(pkt) => {
                let id = self.sad.lookup_inbound(pkt.spi).ok_or(DropReason::NoSa)?;
                let (sa, mut ev) = self.sad.sa_and_events(id).ok_or(DropReason::NoSa)?;
                let nh = esp::decapsulate(sa, id, buf, &pkt, now, &mut ev)?;
                if let Some(sel) = sa.cfg.selector {
                    let flow = Flow::of(buf.data())?;
                    if !sel.matches(&flow) {
                        return Err(DropReason::PolicyMismatch);
                    }
                }
                Ok(Inbound::Decrypted {
                    sa: id,
                    next_header: nh,
                })
            }
            Class::Ike | Class::NatKeepalive => Ok(Inbound::Punt),
            Class::Other(ip) => {
                let flow = Flow::from_info(&ip, buf.data());
                match self.spd.lookup_inbound(&flow) {
                    Action::Bypass => Ok(Inbound::Bypass),
                    Action::Discard => Err(DropReason::PolicyDiscard),
                    Action::Protect(_) => Err(DropReason::PolicyMismatch),
                }
            }
        }
    }
}
