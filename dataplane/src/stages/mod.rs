//! Stages (graph nodes) of the engine. Each declares its drop reasons and works on
//! batches; see [`crate::stage`].
//!
//! Router stages: [`classify`] (`ethernet-input`), [`arp`] (`arp-input`, RFC 826),
//! [`nd`] (`ip6-nd`, RFC 4861), [`ip4`] (`ip4-input`, `ip4-lookup`, `ip4-rewrite`:
//! RFC 1812), [`ip6`] (`ip6-input`, `ip6-lookup`, `ip6-rewrite`: RFC 8200, RFC 4443),
//! sharing the interface/FIB/neighbour state of [`l3`].

pub mod arp;
pub mod classify;
pub mod firewall;
pub mod frag4;
pub mod ip4;
pub mod ip6;
pub mod l3;
pub mod nat;
pub mod neigh;
pub mod qos;
pub mod xconnect;
