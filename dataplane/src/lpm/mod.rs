//! Longest-prefix-match tables: DIR-24-8 for IPv4, a compressed multibit trie for IPv6.
//!
//! * [`ipv4::Lpm4`] is DIR-24-8 as described by Gupta, Lin and McKeown, "Routing
//!   Lookups in Hardware at Memory Access Speeds" (IEEE INFOCOM 1998), in the layout
//!   DPDK's `rte_lpm` uses: a 2^24-entry `tbl24` plus 256-entry `tbl8` groups for
//!   prefixes longer than /24. One memory access answers every prefix up to /24, two
//!   answer the rest.
//! * [`ipv6::Lpm6`] is a 16-8-8-…-8 multibit trie (the stride plan of DPDK's
//!   `rte_lpm6`) whose 8-bit nodes are stored compressed as runs indexed by a 256-bit
//!   bitmap and a popcount (the leaf-vector idea of Asai and Ohara, "Poptrie",
//!   SIGCOMM 2015), so a 200k-prefix table costs tens of MiB instead of hundreds.
//! * [`gen`] generates route tables whose prefix-length mix follows the public BGP
//!   tables, and [`routes`] parses route files (`PREFIX/LEN NEXTHOP`).
//!
//! Longest-prefix-match semantics are those of RFC 1812 §5.2.4.3 (IPv4) and
//! RFC 4291 §2.5 / RFC 8200 forwarding (IPv6): among all routes whose prefix covers the
//! destination, the longest one wins. Both tables keep a rules store per prefix
//! length, so deleting a route restores exactly the next covering route.
//!
//! Updates take `&mut self` and lookups `&self`: the control plane builds or updates
//! a table and hands it to the workers (per-core copies or an epoch swap, see
//! DESIGN.md "Control/data split").

pub mod gen;
pub mod ipv4;
pub mod ipv6;
pub mod routes;

use core::fmt;

/// A next-hop index: an index into the router's adjacency (next-hop) table.
///
/// Width: 24 bits (0 ..= [`MAX_NEXT_HOP`]), the width DPDK's `rte_lpm` uses; the other
/// bits of a DIR-24-8 entry hold the valid/extended flags and the prefix length.
pub type NextHop = u32;

/// The largest next-hop index a table accepts (2^24 - 1).
pub const MAX_NEXT_HOP: NextHop = (1 << 24) - 1;

/// Why a table update was refused. The table is unchanged after any error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LpmError {
    /// The prefix length is longer than the address (32 for IPv4, 128 for IPv6).
    InvalidPrefixLength(u8),
    /// The next-hop index does not fit in 24 bits.
    NextHopTooLarge(NextHop),
    /// No route with this exact prefix and length exists.
    NotFound,
    /// All tbl8 groups (IPv4) or trie nodes (IPv6) are in use; raise the configured
    /// count. The payload is the configured count.
    TableFull(u32),
    /// The configuration asks for more groups/nodes than an entry can index.
    InvalidConfig,
}

impl fmt::Display for LpmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPrefixLength(l) => write!(f, "invalid prefix length /{l}"),
            Self::NextHopTooLarge(nh) => {
                write!(
                    f,
                    "next hop {nh} does not fit in 24 bits (max {MAX_NEXT_HOP})"
                )
            }
            Self::NotFound => f.write_str("no such route"),
            Self::TableFull(n) => write!(
                f,
                "LPM table full: all {n} extension groups/nodes in use (raise the configured count)"
            ),
            Self::InvalidConfig => f.write_str("invalid LPM configuration"),
        }
    }
}

impl core::error::Error for LpmError {}

/// Prefetch the cache line holding `p` into all cache levels. A hint only: it never
/// faults and has no effect on architectures without an implementation here.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint; it does not dereference the pointer in the Rust
    // sense and never faults, whatever address it is given. SSE is baseline on x86_64.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
