//! IKEv2 (RFC 7296), sans-IO, `no_std` + `alloc`: the foundation for keying the ESP
//! SAs of this crate.
//!
//! * [`wire`]: message codec (§3: header, payload chain, SA/KE/ID/AUTH/Nonce/Notify/
//!   Delete/Vendor/TS payloads), strict and panic-free;
//! * [`sk`]: the Encrypted payload (§3.14) with AES-GCM-16 (RFC 5282);
//! * [`ts`]: traffic selector narrowing (§2.9) and the mapping to SPD selectors;
//! * [`keys`] (feature `ring`): prf / prf+ (§2.13), SKEYSEED and the IKE SA keys
//!   (§2.14), child SA KEYMAT (§2.17), PSK AUTH (§2.15), NAT detection (§2.23),
//!   Diffie-Hellman groups 14 (RFC 3526), 19 (RFC 5903) and 31 (RFC 8031);
//! * [`session`] (feature `ring`): the [`Initiator`] and [`Responder`] state machines
//!   (IKE_SA_INIT, IKE_AUTH with PSK and one ESP child SA, INFORMATIONAL deletes,
//!   retransmissions, cookies), producing [`ChildSa`]s for the [`Sad`](crate::Sad).
//!
//! * [`psk`]: the pre-shared key type of the configurations (wiped on drop, never
//!   printed; `serde` feature: from TOML text or `0x` hex);
//! * [`daemon`] (feature `daemon`): connections from a swanctl-like config, their
//!   sessions driven over datagrams with timers, child SAs pushed into running
//!   `esp-*` stages, metrics.
//!
//! See `session` for what is not implemented yet.

#[cfg(feature = "daemon")]
pub mod daemon;
#[cfg(feature = "ring")]
pub mod keys;
pub mod psk;
#[cfg(feature = "ring")]
pub mod session;
pub mod sk;
pub mod ts;
pub mod wire;

#[cfg(feature = "ring")]
pub use keys::{DhGroup, KeyError, Prf};
#[cfg(feature = "ring")]
pub use session::{
    ChildSa, DownReason, Event, IkeConfig, IkeCounters, IkeState, Initiator, Lifetime, Output,
    PeerPsks, RequestError, Responder, NON_ESP_MARKER,
};
pub use wire::{Identification, Message, ParseError, Payload, TrafficSelector};
