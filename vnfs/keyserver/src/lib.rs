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

pub mod client;
pub mod config;
pub mod journal;
pub mod keys;
pub mod metrics;
pub mod mgmt;
pub mod proto;
pub mod server;
pub mod udp;

pub use client::{Client, ClientConfig, ClientEvent, TunnelKeys, UdpClient};
pub use config::Config;
pub use server::{Server, Stats};
