//! Free session slots, grouped by worker.
//!
//! Each fast-path worker keeps its sessions' state (lookup entry, policers) and
//! counts their traffic in arrays indexed by the session's slot. A worker only
//! touches the slots of the sessions it owns ([`crate::steer`]); if those were
//! spread at random over the whole table, every worker would walk all of it, one
//! slot in `workers`, and the CPU's prefetchers could not follow. So the slots are
//! cut into blocks of [`BLOCK`] consecutive slots, block `b` kept for worker
//! `b % workers`, and a session whose owner is known when it is created (PPPoE:
//! from its session id) takes a slot of its owner's blocks: each worker's sessions
//! sit together, as in VPP's per-thread session pools.
//!
//! This is only about where a session lives in memory, never about who owns it
//! (the owner is stored with the session): when a worker's blocks are full, its
//! session takes a slot of another worker's (the group with the most free slots),
//! so the table holds `max_sessions` sessions whatever their spread. Every group's
//! stack is allocated once, for all of the slots of its blocks, so freeing never
//! allocates.

use alloc::vec::Vec;

/// Consecutive slots kept for one worker (64 slots: a few 4 KiB pages of a
/// worker's session table and counters).
pub const BLOCK: u32 = 64;

/// The free slots of a session table, by the worker whose blocks they are in.
#[derive(Debug, Clone)]
pub struct FreeSlots {
    /// Per worker, its free slots; the lowest on top.
    groups: Vec<Vec<u32>>,
    /// Slots in the table.
    slots: u32,
}

impl FreeSlots {
    /// All `slots` slots free, grouped for `workers` workers.
    pub fn new(slots: u32, workers: u16) -> FreeSlots {
        let mut f = FreeSlots {
            groups: Vec::new(),
            slots,
        };
        f.regroup(workers, (0..slots).collect());
        f
    }

    /// The worker whose blocks slot `idx` is in.
    #[inline]
    pub fn group_of(&self, idx: u32) -> u16 {
        let n = self.groups.len().max(1) as u32;
        ((idx / BLOCK) % n) as u16
    }

    /// Regroup the free slots for `workers` workers (set-up time: allocates).
    pub fn set_workers(&mut self, workers: u16) {
        let workers = workers.max(1);
        if usize::from(workers) == self.groups.len() {
            return;
        }
        let free: Vec<u32> = self.groups.iter().flatten().copied().collect();
        self.regroup(workers, free);
    }

    fn regroup(&mut self, workers: u16, mut free: Vec<u32>) {
        let n = u32::from(workers.max(1));
        let blocks = self.slots.div_ceil(BLOCK);
        self.groups = (0..n)
            .map(|g| {
                // Slots in this group's blocks: full blocks, and the last one cut.
                let cap = (0..blocks)
                    .filter(|b| b % n == g)
                    .map(|b| (self.slots - b * BLOCK).min(BLOCK) as usize)
                    .sum();
                Vec::with_capacity(cap)
            })
            .collect();
        free.sort_unstable_by(|a, b| b.cmp(a));
        for idx in free {
            let g = usize::from(self.group_of(idx));
            self.groups[g].push(idx);
        }
    }

    /// A free slot for a session of worker `w`: one of its blocks when one is
    /// free, else one of the group with the most free slots; `None` when the
    /// table is full.
    pub fn pop_for(&mut self, w: u16) -> Option<u32> {
        if let Some(idx) = self.groups.get_mut(usize::from(w)).and_then(Vec::pop) {
            return Some(idx);
        }
        self.pop()
    }

    /// A free slot of the group with the most free slots (a session whose owner
    /// is not known yet); `None` when the table is full.
    pub fn pop(&mut self) -> Option<u32> {
        self.groups.iter_mut().max_by_key(|g| g.len())?.pop()
    }

    /// Slot `idx` is free again.
    pub fn push(&mut self, idx: u32) {
        if idx >= self.slots {
            return;
        }
        let g = usize::from(self.group_of(idx));
        if let Some(s) = self.groups.get_mut(g) {
            s.push(idx);
        }
    }

    /// Whether every slot is taken.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(Vec::is_empty)
    }

    /// Free slots.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.groups.iter().map(Vec::len).sum()
    }

    /// Slots the stacks hold without reallocating.
    pub fn capacity(&self) -> usize {
        self.groups.iter().map(Vec::capacity).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_hands_out_slots_in_order() {
        let mut f = FreeSlots::new(200, 1);
        let got: Vec<u32> = (0..200).map(|_| f.pop_for(0).unwrap()).collect();
        assert_eq!(got, (0..200).collect::<Vec<_>>());
        assert!(f.pop().is_none() && f.is_empty());
    }

    #[test]
    fn each_worker_fills_its_own_blocks_first() {
        let mut f = FreeSlots::new(4 * BLOCK + 10, 2);
        for i in 0..BLOCK {
            assert_eq!(f.pop_for(0), Some(i));
            assert_eq!(f.pop_for(1), Some(BLOCK + i));
        }
        assert_eq!(f.pop_for(0), Some(2 * BLOCK));
        assert_eq!(f.pop_for(1), Some(3 * BLOCK));
        for idx in 0..4 * BLOCK + 10 {
            assert_eq!(f.group_of(idx), ((idx / BLOCK) % 2) as u16);
        }
    }

    #[test]
    fn a_full_group_borrows_and_the_table_still_fills_up() {
        let n = 3 * BLOCK + 7;
        let mut f = FreeSlots::new(n, 2);
        let cap = f.capacity();
        let mut got: Vec<u32> = (0..n).map(|_| f.pop_for(1).unwrap()).collect();
        assert!(f.pop_for(0).is_none() && f.pop_for(1).is_none());
        got.sort_unstable();
        assert_eq!(got, (0..n).collect::<Vec<_>>(), "every slot once");
        // Freed slots go back to their own group, without reallocating.
        for idx in (0..n).rev() {
            f.push(idx);
        }
        assert_eq!(f.len(), n as usize);
        assert_eq!(f.capacity(), cap);
        assert_eq!(f.pop_for(1), Some(BLOCK));
        f.push(n + 5); // not a slot: ignored
        assert_eq!(f.len(), n as usize - 1);
    }

    #[test]
    fn regrouping_keeps_the_free_slots() {
        let mut f = FreeSlots::new(5 * BLOCK, 1);
        let a = f.pop().unwrap();
        let b = f.pop().unwrap();
        f.set_workers(3);
        assert_eq!(f.len(), 5 * BLOCK as usize - 2);
        assert_eq!(f.pop_for(2), Some(2 * BLOCK));
        assert_eq!(f.pop_for(0), Some(2));
        // Freed slots are taken again first (last freed, first taken).
        f.push(b);
        f.push(a);
        assert_eq!(f.pop_for(0), Some(a));
        assert_eq!(f.pop_for(0), Some(b));
    }
}
