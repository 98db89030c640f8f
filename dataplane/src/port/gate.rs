//! The exclusion between a multi-queue shared-memory port's control owner and its
//! queue pairs' workers (vhost-user's `open_queues`, memif's `open_queues`), without
//! a lock.
//!
//! A Dekker-style handshake, sequentially consistent on both sides: a worker sets
//! its pair's `busy`, then reads `paused`, and touches the shared rings only when it
//! was clear ([`Gate::enter`]); the control owner sets `paused`, then waits until no
//! `busy` is set ([`Gate::pause`]), and only then changes what the workers read
//! (memory table, ring addresses, a link brought up or down). A worker never waits:
//! a paused pair moves nothing for that burst. A worker that finds a ring fault
//! reports it ([`Gate::report`]) and stays out until the control owner has handled
//! it ([`Gate::first_fault`], [`Gate::clear_faults`]).

use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// One queue pair's flags, on a cache line of its own (its worker writes `busy`
/// every burst).
#[repr(align(64))]
#[derive(Default)]
struct Slot {
    /// The worker is inside a burst on this pair's rings.
    busy: AtomicBool,
    /// A ring fault the worker found (the port's fault code, 0: none).
    fault: AtomicU8,
}

/// The flags a control owner shares with `n` queue pairs.
pub(crate) struct Gate {
    paused: AtomicBool,
    slots: Box<[Slot]>,
}

impl Gate {
    /// `n` pairs, none paused or faulted.
    pub(crate) fn new(n: usize) -> Gate {
        Gate {
            paused: AtomicBool::new(false),
            slots: (0..n).map(|_| Slot::default()).collect(),
        }
    }

    /// The number of pairs.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Pair `k`'s worker enters a burst: false (and nothing to leave) while the
    /// control owner holds the rings, after a fault it has not handled yet, or for
    /// a pair that does not exist.
    #[inline(always)]
    pub(crate) fn enter(&self, k: usize) -> bool {
        let Some(slot) = self.slots.get(k) else {
            return false;
        };
        slot.busy.store(true, Ordering::SeqCst);
        if self.paused.load(Ordering::SeqCst) || slot.fault.load(Ordering::Relaxed) != 0 {
            slot.busy.store(false, Ordering::Release);
            return false;
        }
        true
    }

    /// Pair `k`'s worker leaves its burst.
    #[inline(always)]
    pub(crate) fn leave(&self, k: usize) {
        if let Some(s) = self.slots.get(k) {
            s.busy.store(false, Ordering::Release);
        }
    }

    /// Pair `k`'s worker found ring fault `code` (non-zero): the pair stays out
    /// until the control owner clears it.
    pub(crate) fn report(&self, k: usize, code: u8) {
        if let Some(s) = self.slots.get(k) {
            s.fault.store(code, Ordering::Release);
        }
    }

    /// The first pair's unhandled fault code, if any.
    pub(crate) fn first_fault(&self) -> Option<u8> {
        self.slots
            .iter()
            .map(|s| s.fault.load(Ordering::Acquire))
            .find(|&f| f != 0)
    }

    /// Every fault handled (call while paused).
    pub(crate) fn clear_faults(&self) {
        for s in self.slots.iter() {
            s.fault.store(0, Ordering::Release);
        }
    }

    /// Stops every pair's worker from entering and waits until none is inside a
    /// burst (a burst's length at most; after a long wait, e.g. a worker preempted
    /// mid-burst on a shared core, the caller yields its core between checks).
    pub(crate) fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        for s in self.slots.iter() {
            let mut spins = 0u32;
            while s.busy.load(Ordering::SeqCst) {
                spins += 1;
                if spins < 1024 {
                    core::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }

    /// Lets the workers in again.
    pub(crate) fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_keeps_workers_out_and_faults_hold_their_pair() {
        let g = Gate::new(2);
        assert!(g.enter(0));
        g.leave(0);
        assert!(!g.enter(2), "no such pair");
        g.pause();
        assert!(!g.enter(0) && !g.enter(1));
        g.resume();
        g.report(1, 3);
        assert_eq!(g.first_fault(), Some(3));
        assert!(g.enter(0) && !g.enter(1));
        g.leave(0);
        g.clear_faults();
        assert_eq!(g.first_fault(), None);
        assert!(g.enter(1));
        g.leave(1);
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn pause_waits_for_a_worker_inside_its_burst() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        let g = Arc::new(Gate::new(1));
        let inside = Arc::new(AtomicUsize::new(0));
        assert!(g.enter(0));
        let (g2, in2) = (g.clone(), inside.clone());
        let t = std::thread::spawn(move || {
            g2.pause();
            // the worker has left by now
            in2.load(Ordering::SeqCst)
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        inside.store(1, Ordering::SeqCst);
        g.leave(0);
        assert_eq!(t.join().unwrap(), 1);
    }
}
