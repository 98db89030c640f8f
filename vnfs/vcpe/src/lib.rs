//! The vCPE VNF (issue 17): a customer-premises router on the packet engine.
//!
//! - LAN: address and prefix, ARP (RFC 826), the DHCPv4 server (RFC 2131; the
//!   vBNG's `vbng::dhcp4` core) — see [`control`].
//! - WAN: address, default gateway; NAT44 from the LAN to the WAN address
//!   (RFC 4787/5382/5508 behaviour, `dataplane::stages::nat`) and the stateful
//!   firewall (`dataplane::stages::firewall`, RFC 9293 §3.3.2 connection states)
//!   letting only return traffic in — see [`vnf`].
//! - Static and connected routes (`dataplane::stages::ip4`, RFC 1812).
//! - IPsec site-to-site tunnels (ESP tunnel mode, RFC 4303, AES-GCM RFC 4106) with
//!   static SAs or the vCPE's own IKEv2 (RFC 7296, PSK): traffic to a remote subnet
//!   is encrypted and not NATed; ESP from the peer is decrypted to the LAN.
//! - Or tunnel keys from the SD-WAN key server (`vnfs/keyserver`): [`keylink`].
//!
//! [`vnf::build`] turns a [`Config`] into the worker's graph and the control plane
//! ([`vnf::build_workers`]: one graph per worker, `engine.workers`, joined by the
//! engine's hand-off mesh);
//! the `vcpe` binary, `bench vcpe`, `testbed lab vcpe` and the unikernel image
//! (`vnfs/unikernel --features vcpe`) call it.
//!
//! The configuration, the graph, the static-key tunnels and the DHCP server are
//! `no_std` + `alloc`; the `std` feature (default) adds port specs, the IKE daemon,
//! the key server link, the control-plane thread and the binary. Without it, a
//! `[tunnel.ike]`, `[tunnel.keyserver]` or `[keyserver]` is refused by
//! [`control::ControlPlane::new`] with one line.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod config;
pub mod control;
#[cfg(feature = "std")]
pub mod keylink;
#[cfg(feature = "std")]
pub mod mgmt;
pub mod nodes;
pub mod vnf;

pub use config::{Config, ConfigError};
