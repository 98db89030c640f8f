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

/// Asks the CPU to bring the cache line at `p` into its caches (a hint that never
/// faults, whatever the address; a no-op off x86_64). Stages prefetch the state a
/// packet a few places later in the batch will need (`Batch::dispatch_ahead`).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint that never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch(p as *const i8, core::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
