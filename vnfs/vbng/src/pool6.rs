//! IPv6 prefix pools: [`dataplane::ippool`] over /64 prefixes, one per PPP session,
//! announced by Router Advertisement for SLAAC over PPP (RFC 5072 §5, RFC 4862). A
//! pool is a covering prefix of length 0..=64 (e.g. `2001:db8:100::/40` holds 2^24
//! /64s); RADIUS Framed-IPv6-Pool (RFC 3162 §2.4) selects one by name and
//! Framed-IPv6-Prefix (RFC 3162 §2.3) overrides. Pools may not overlap nor hold
//! martian /64s (`::/64`, `fe80::/10`, `ff00::/8`; RFC 4291 §2.5–2.7) or the /64s of
//! the BNG's own core addresses; a Framed-IPv6-Prefix outside every pool is held in a
//! set of its own. Memory follows the prefixes held, whatever the pool's size.

pub use dataplane::addr::Prefix64;
pub use dataplane::ippool::PoolError;

/// One IPv6 prefix pool.
pub type Pool6 = dataplane::ippool::Pool<Prefix64>;

/// The IPv6 prefix pools (the first is the default), the BNG's own /64s and the fixed
/// /64s held outside the pools.
pub type Pools6 = dataplane::ippool::Pools<Prefix64>;
