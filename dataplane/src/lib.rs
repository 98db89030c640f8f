//! The packet engine: preallocated buffers, batches of up to 256 packets, ports,
//! zero-copy protocol views, stages (VPP-style graph nodes with drop-reason counters
//! and packet trace) and, with `std`, a pinned run-to-completion runner.
//!
//! Everything that touches packets is `#![no_std]` + `alloc` so the same code links
//! into the unikernel; the `std` feature adds Linux ports, threads and pinning.
#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod addr;
pub mod batch;
pub mod buf;
pub mod graph;
pub mod hash;
#[cfg(feature = "std")]
pub mod http;
pub mod ippool;
pub mod lpm;
pub mod metrics;
pub mod mgmt_fanout;
pub mod port;
pub mod proto;
#[cfg(feature = "restconf")]
pub mod restconf;
#[cfg(feature = "std")]
pub mod runner;
pub mod stage;
pub mod stages;
pub mod worker;
