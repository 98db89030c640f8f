//! SD-WAN key server VNF (issue 17): CPEs authenticate with IKEv2 (RFC 7296, PSK per
//! CPE) and receive, over their IKE SA, the ESP keys of the CPE-to-CPE tunnels of
//! their site groups (hub-and-spoke or full mesh), rotated make-before-break and
//! withdrawn on revocation. A group key management design in the spirit of RFC 6407
//! (GDOI) and G-IKEv2, carried in INFORMATIONAL exchanges with a private-use notify
//! (RFC 7296 §3.10.1); the README documents the protocol.
//!
//! * [`config`]: the TOML configuration;
//! * [`proto`]: the update messages (codec, fuzzed);
//! * [`server`]: the sans-IO server; [`udp`]: its socket driver;
//! * [`client`]: the CPE library (sans-IO [`client::Client`], [`client::UdpClient`]);
//! * [`journal`]: the state snapshot written atomically; [`keys`]: key storage in
//!   `memfd_secret(2)` memory;
//! * [`metrics`]: Prometheus text of [`server::Stats`].
//!
//! `no_std` + `alloc` without the `std` feature (default on): the configuration,
//! the update codec, the sans-IO [`server::Server`] (datagrams and a millisecond
//! clock in, datagrams out), the key arena (heap memory, zeroized when freed), the
//! journal's snapshot codec and the metrics text — what the key server unikernel
//! (`vnfs/unikernel --features keyserver`) runs. `std` adds the journal file,
//! `memfd_secret(2)` key memory, the UDP socket driver ([`udp`]), the management
//! API ([`mgmt`]), the CPE library ([`client`]) and the binary.
#![no_std]

#[macro_use]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

/// What `std`'s prelude would give every module (the crate is `no_std`).
mod prelude {
    pub use alloc::borrow::ToOwned;
    pub use alloc::boxed::Box;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec::Vec;
}

#[cfg(feature = "std")]
pub mod client;
pub mod config;
pub mod journal;
pub mod keys;
pub mod metrics;
#[cfg(feature = "std")]
pub mod mgmt;
pub mod proto;
pub mod server;
#[cfg(feature = "std")]
pub mod udp;

#[cfg(feature = "std")]
pub use client::{Client, ClientConfig, ClientEvent, TunnelKeys, UdpClient};
pub use config::Config;
pub use server::{Server, Stats};
