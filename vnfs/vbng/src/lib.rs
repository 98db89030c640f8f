//! vBNG: PPPoE subscriber termination (RFC 2516) with PPP (RFC 1661, 1334, 1994, 1332,
//! 1877, 5072) and RADIUS AAA (RFC 2865, 2866, 3162, 3579, 5176), IPv4 address pools and
//! IPv6 prefix pools with Router Advertisements for SLAAC over PPP (RFC 4861, 5072 §5,
//! 8106), and the fast path (PPPoE decap/encap of IPv4 and IPv6, anti-spoofing,
//! per-subscriber policer, routing to the core with ARP for the core gateway, the BNG's
//! own ICMP errors and echo replies, TCP MSS clamping).
//!
//! The protocol logic is `no_std` + `alloc`; sockets, threads and the binary sit behind
//! the `std` feature.
#![cfg_attr(not(feature = "std"), no_std)]
// Safe Rust only: the fuzz targets rely on it (see `fuzz/asan_options/`).
#![forbid(unsafe_code)]

extern crate alloc;

pub mod access;
#[cfg(feature = "std")]
pub mod acct_journal;
pub mod auth;
pub mod config;
pub mod control;
pub mod corelink;
pub mod cups;
pub mod dhcp4;
pub mod dhcp6;
pub mod fastpath;
pub mod fsm;
pub mod icmp;
pub mod ipcp;
pub mod journal_frame;
pub mod lcp;
pub mod metrics;
#[cfg(feature = "mgmt")]
pub mod mgmt;
pub mod mss;
pub mod nd;
pub mod pool;
pub mod pool6;
pub mod pppoe;
pub mod radius;
#[cfg(feature = "std")]
pub mod radius_io;
pub mod rng;
#[cfg(feature = "std")]
pub mod runtime;
pub mod session;
pub mod steer;
pub mod vnf;
