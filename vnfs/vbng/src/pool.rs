//! IPv4 address pools for subscribers: [`dataplane::ippool`] over IPv4 addresses
//! (RFC 2869 §5.18 Framed-Pool selects one by name; RFC 2865 §5.8 Framed-IP-Address
//! overrides). Pools may not overlap nor hold martians (RFC 1122 §3.2.1.3, RFC 6890)
//! or the BNG's own addresses (the gateway announced in IPCP, the core address and
//! gateway); a fixed address outside every pool is held in a set of its own, so no
//! address is ever held by two sessions. A RADIUS address that cannot be honoured
//! rejects the session (RFC 6929 §2.8 treats an invalid attribute like a reject).

use core::net::Ipv4Addr;
pub use dataplane::ippool::PoolError;

/// One IPv4 pool.
pub type Pool = dataplane::ippool::Pool<Ipv4Addr>;

/// The IPv4 pools (the first is the default), the BNG's own addresses and the fixed
/// addresses held outside the pools.
pub type Pools = dataplane::ippool::Pools<Ipv4Addr>;

/// A free address of pool `name` (the first pool: `None`) that steers to worker
/// `w` of `n` ([`crate::steer::addr_owner`]) while that share of the pool has one,
/// else any free one of the pool. The flag is true when the share had none (what
/// the address, if any, comes from is the rest of the pool).
pub fn alloc_in_share(
    pools: &mut Pools,
    name: Option<&str>,
    n: u16,
    w: u16,
) -> (Result<Ipv4Addr, PoolError>, bool) {
    let mine = move |a: Ipv4Addr| crate::steer::addr_owner(u32::from(a), n) == w;
    match pools.alloc_where(name, &mine) {
        Err(PoolError::Exhausted) => (pools.alloc(name), true),
        r => (r, false),
    }
}
