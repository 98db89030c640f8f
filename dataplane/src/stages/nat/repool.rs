//! Changing the outside pool of a running `nat44` (issue 19): a graceful drain, the
//! way carrier-grade NATs change a pool under live subscribers.
//!
//! Semantics (RFC 6888 §3 REQ-2 and RFC 4787 §4.1 REQ-2 keep holding throughout):
//! - An address **added** to the pool takes new subscribers at once.
//! - An address **removed** from the pool is *draining*: no new subscriber is paired
//!   with it, but the subscribers already paired with it keep it — their existing
//!   mappings and sessions keep their bindings (inbound packets still translate) and,
//!   because all mappings of one subscriber must share one outside address (paired
//!   pooling), their new mappings use it too — until their last mapping expires or
//!   is closed. From then on the subscriber is paired again, from the new pool. An
//!   address with no block left is dropped at the next pool change.
//! - An address in both pools is untouched (blocks, ports, owners).
//! - Nothing else changes: ports, block size, limits and timeouts are start-up
//!   settings.
//!
//! The change is built off the data path ([`PoolChange::new`] allocates every new
//! address's bitmaps and the vectors the merge fills) and applied on the worker
//! between two bursts by [`Nat44::apply_pool_change`], which moves entries between
//! those vectors and allocates nothing; what the stage no longer needs goes back in
//! the same [`PoolChange`] to be freed off the worker.

use super::alloc::{geometry, OutsideAddr};
use super::*;

/// A new outside pool for one worker's `nat44`, prepared off the data path.
pub struct PoolChange {
    /// The new pool's addresses, sorted, each once.
    addrs: Vec<u32>,
    /// An empty address for each of `addrs`, taken when the stage has none.
    fresh: Vec<Option<OutsideAddr>>,
    /// Filled by the merge (capacity for every address that may still be held).
    merged: Vec<OutsideAddr>,
    /// What the stage no longer holds (drained addresses, the old vector).
    spare: Vec<OutsideAddr>,
    old: Vec<OutsideAddr>,
    port_min: u16,
    block_size: u16,
    blocks_per_addr: u32,
    icmp_src: u32,
    /// Set by [`Nat44::apply_pool_change`].
    applied: Option<Result<(), &'static str>>,
}

impl PoolChange {
    /// The change to `cfg.pool` for a stage built from a config with the same ports
    /// and blocks; `held` bounds how many addresses the stage holds now (its pool and
    /// those of earlier pools still draining).
    pub fn new(cfg: &NatConfig, held: usize) -> Result<PoolChange, ConfigError> {
        cfg.validate()?;
        let mut addrs = Vec::new();
        for (lo, hi) in cfg.pool_ranges()? {
            addrs.extend(lo..=hi);
        }
        addrs.sort_unstable();
        addrs.dedup();
        let Some(&first) = addrs.first() else {
            return Err(ConfigError::EmptyPool);
        };
        let span = u32::from(cfg.port_max) - u32::from(cfg.port_min) + 1;
        let bs = match cfg.cgnat {
            Some(c) => c.block_size,
            None => 256u16.min(span as u16),
        };
        let (bpa, nports) = geometry(cfg.port_min, cfg.port_max, bs);
        let fresh = addrs
            .iter()
            .map(|&a| Some(OutsideAddr::new(a, bpa, nports)))
            .collect();
        Ok(PoolChange {
            fresh,
            merged: Vec::with_capacity(addrs.len() + held),
            spare: Vec::with_capacity(held),
            old: Vec::new(),
            port_min: cfg.port_min,
            block_size: bs.max(1),
            blocks_per_addr: bpa,
            icmp_src: cfg.icmp_source.map(u32::from).unwrap_or(first),
            addrs,
            applied: None,
        })
    }

    /// What the stage answered: `None` before it took the change.
    pub fn outcome(&self) -> Option<Result<(), &'static str>> {
        self.applied
    }
}

impl Nat44 {
    /// The outside addresses with, for each, whether it is draining and the port
    /// blocks in use on it.
    pub fn pool_addresses(&self) -> impl Iterator<Item = (Ipv4Addr, bool, u32)> + '_ {
        self.pool
            .addrs
            .iter()
            .map(|o| (Ipv4Addr::from(o.addr), o.draining, o.nblocks))
    }

    /// Addresses removed from the pool that still hold port blocks.
    pub fn draining_addresses(&self) -> usize {
        self.pool
            .addrs
            .iter()
            .filter(|o| o.draining && o.nblocks > 0)
            .count()
    }

    /// Takes the new pool of `ch` (see the module docs); allocates nothing. Refused
    /// (nothing changed, the reason in [`PoolChange::outcome`]) when the port
    /// geometry differs or the prepared room is too small.
    pub fn apply_pool_change(&mut self, ch: &mut PoolChange) {
        if (ch.port_min, ch.block_size, ch.blocks_per_addr)
            != (
                self.pool.port_min,
                self.pool.block_size,
                self.pool.blocks_per_addr,
            )
        {
            ch.applied = Some(Err("the port range or block size differs"));
            return;
        }
        // Room check first, so a refusal changes nothing.
        let kept_old = self
            .pool
            .addrs
            .iter()
            .filter(|o| o.nblocks > 0 && ch.addrs.binary_search(&o.addr).is_err())
            .count();
        let n_old = self.pool.addrs.len();
        // Every old entry and every fresh one ends in `merged` or `spare`.
        if ch.merged.capacity() < ch.addrs.len() + kept_old
            || ch.spare.capacity() < n_old - kept_old
        {
            ch.applied = Some(Err("more addresses are still draining than prepared for"));
            return;
        }
        // Subscribers name their address by index: hold the address meanwhile.
        for s in self.pool.subs.iter_mut().filter(|s| s.live) {
            s.addr = self.pool.addrs.get(s.addr as usize).map_or(0, |o| o.addr);
        }
        core::mem::swap(&mut self.pool.addrs, &mut ch.old);
        let mut merged = core::mem::take(&mut ch.merged);
        let mut old = ch.old.drain(..).peekable();
        let mut j = 0usize;
        loop {
            let next_new = ch.addrs.get(j).copied();
            let next_old = old.peek().map(|o| o.addr);
            match (next_old, next_new) {
                (None, None) => break,
                (Some(a), Some(b)) if a == b => {
                    if let Some(mut o) = old.next() {
                        o.draining = false;
                        merged.push(o);
                    }
                    j += 1;
                }
                (Some(a), b) if b.is_none_or(|b| a < b) => {
                    if let Some(mut o) = old.next() {
                        if o.nblocks > 0 {
                            o.draining = true;
                            merged.push(o);
                        } else {
                            ch.spare.push(o);
                        }
                    }
                }
                _ => {
                    if let Some(o) = ch.fresh.get_mut(j).and_then(Option::take) {
                        merged.push(o);
                    }
                    j += 1;
                }
            }
        }
        drop(old);
        for o in ch.fresh.iter_mut().filter_map(Option::take) {
            ch.spare.push(o);
        }
        for s in self.pool.subs.iter_mut().filter(|s| s.live) {
            let a = s.addr;
            s.addr = merged.binary_search_by_key(&a, |o| o.addr).unwrap_or(0) as u32;
        }
        self.pool_lo = merged.first().map_or(0, |o| o.addr);
        self.pool_hi = merged.last().map_or(0, |o| o.addr);
        self.pool_dense = (self.pool_hi - self.pool_lo) as usize + 1 == merged.len();
        self.icmp_src = ch.icmp_src;
        self.pool.addrs = merged;
        ch.applied = Some(Ok(()));
    }
}
