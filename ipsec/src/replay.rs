//! Anti-replay (RFC 4303 §3.4.3) with 64-bit Extended Sequence Numbers (§2.2.1,
//! §3.3.3, Appendix A). The window is a ring of `W` bits (`bitvec`) indexed by
//! `seq mod W`; `top` is the highest sequence number that passed the ICV.
//!
//! Receive order (RFC 4303 §3.4.3): [`ReplayWindow::check`] before the ICV (cheap
//! rejection, and it yields the inferred 64-bit number the ICV needs for ESN),
//! [`ReplayWindow::update`] only after the ICV verified.

use crate::error::{DropReason, Error};
use bitvec::prelude::*;

/// Default window: 1024 packets (RFC 4303 asks for at least 32, default 64; high-rate
/// links with multi-queue reordering need more).
pub const DEFAULT_WINDOW: usize = 1024;

/// One inbound SA's replay state.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    bits: BitVec<u64, Lsb0>,
    size: u64,
    top: u64,
    esn: bool,
}

impl ReplayWindow {
    /// `size` must be a multiple of 64 in 64..=65536.
    pub fn new(size: usize, esn: bool) -> Result<Self, Error> {
        if !(64..=65536).contains(&size) || size & 63 != 0 {
            return Err(Error::WindowSize(size));
        }
        Ok(ReplayWindow {
            bits: bitvec![u64, Lsb0; 0; size],
            size: size as u64,
            top: 0,
            esn,
        })
    }

    pub fn size(&self) -> usize {
        self.size as usize
    }

    /// Highest sequence number accepted so far (0: none).
    pub fn top(&self) -> u64 {
        self.top
    }

    pub fn esn(&self) -> bool {
        self.esn
    }

    /// Full sequence number for the 32 bits on the wire. Without ESN the high half is 0.
    /// With ESN this is RFC 4303 Appendix A2.2: pick the high half `Th`, `Th + 1` or
    /// `Th - 1` so that the result falls in or above the window. `None` when the only
    /// candidate lies before sequence number 1 (cannot be valid).
    pub fn infer(&self, seq_lo: u32) -> Option<u64> {
        if !self.esn {
            return Some(u64::from(seq_lo));
        }
        let w = self.size as u32; // size ≤ 65536 fits
        let tl = self.top as u32;
        let th = self.top >> 32;
        let seqh = if tl >= w - 1 {
            // Case A: the window lies within one 2^32 subspace.
            if seq_lo >= tl - (w - 1) {
                th
            } else {
                th.checked_add(1)?
            }
        } else {
            // Case B: the window spans two subspaces.
            if seq_lo >= tl.wrapping_sub(w - 1) {
                th.checked_sub(1)?
            } else {
                th
            }
        };
        Some((seqh << 32) | u64::from(seq_lo))
    }

    /// Pre-ICV check: the inferred 64-bit sequence number, or `Replay` when it is a
    /// duplicate, older than the window, or zero.
    pub fn check(&self, seq_lo: u32) -> Result<u64, DropReason> {
        let seq = self.infer(seq_lo).ok_or(DropReason::Replay)?;
        if seq == 0 {
            return Err(DropReason::Replay);
        }
        if seq > self.top {
            return Ok(seq);
        }
        if self.top - seq >= self.size {
            return Err(DropReason::Replay);
        }
        if self.bit(seq) {
            return Err(DropReason::Replay);
        }
        Ok(seq)
    }

    /// Marks `seq` as received (after the ICV verified). Re-checks, so a caller that
    /// skipped [`check`](Self::check) still cannot mark a stale number.
    pub fn update(&mut self, seq: u64) -> Result<(), DropReason> {
        if seq == 0 {
            return Err(DropReason::Replay);
        }
        if seq > self.top {
            let diff = seq - self.top;
            if diff >= self.size {
                self.bits.fill(false);
            } else {
                // Clear the slots of top+1 ..= seq-1 (numbers never seen).
                let start = ((self.top + 1) % self.size) as usize;
                let count = (diff - 1) as usize;
                self.clear_ring(start, count);
            }
            self.top = seq;
            self.set_bit(seq);
            return Ok(());
        }
        if self.top - seq >= self.size || self.bit(seq) {
            return Err(DropReason::Replay);
        }
        self.set_bit(seq);
        Ok(())
    }

    fn clear_ring(&mut self, start: usize, count: usize) {
        let size = self.size as usize;
        let first = count.min(size - start);
        if let Some(s) = self.bits.get_mut(start..start + first) {
            s.fill(false);
        }
        if let Some(s) = self.bits.get_mut(..count - first) {
            s.fill(false);
        }
    }

    fn bit(&self, seq: u64) -> bool {
        self.bits
            .get((seq % self.size) as usize)
            .map(|b| *b)
            .unwrap_or(true)
    }

    fn set_bit(&mut self, seq: u64) {
        let i = (seq % self.size) as usize;
        if let Some(mut b) = self.bits.get_mut(i) {
            *b = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeSet;
    use proptest::prelude::*;

    fn accept(w: &mut ReplayWindow, lo: u32) -> Result<u64, DropReason> {
        let s = w.check(lo)?;
        w.update(s)?;
        Ok(s)
    }

    #[test]
    fn in_order_duplicates_and_old() {
        let mut w = ReplayWindow::new(64, false).unwrap();
        assert_eq!(accept(&mut w, 0), Err(DropReason::Replay));
        for s in 1..=200u32 {
            assert_eq!(accept(&mut w, s), Ok(u64::from(s)));
        }
        assert_eq!(accept(&mut w, 200), Err(DropReason::Replay));
        assert_eq!(
            accept(&mut w, 150),
            Err(DropReason::Replay),
            "seen, in window"
        );
        assert_eq!(
            accept(&mut w, 136),
            Err(DropReason::Replay),
            "older than window"
        );
        assert_eq!(accept(&mut w, 300), Ok(300));
        assert_eq!(accept(&mut w, 250), Ok(250), "gap inside window is fresh");
        assert_eq!(accept(&mut w, 237), Ok(237), "oldest slot of window");
        assert_eq!(accept(&mut w, 236), Err(DropReason::Replay));
    }

    #[test]
    fn bad_sizes() {
        assert_eq!(
            ReplayWindow::new(32, true).unwrap_err(),
            Error::WindowSize(32)
        );
        assert_eq!(
            ReplayWindow::new(100, true).unwrap_err(),
            Error::WindowSize(100)
        );
        assert_eq!(
            ReplayWindow::new(DEFAULT_WINDOW, true).unwrap().size(),
            1024
        );
    }

    #[test]
    fn esn_crosses_the_32_bit_boundary() {
        let mut w = ReplayWindow::new(1024, true).unwrap();
        let near = (1u64 << 32) - 10;
        // Jump straight to just below 2^32: fresh numbers are inferred in subspace 0.
        w.update(near).unwrap();
        assert_eq!(w.infer((near + 5) as u32), Some(near + 5));
        // Low half wrapped to small values: Th + 1 (case A).
        assert_eq!(accept(&mut w, 3), Ok((1u64 << 32) | 3));
        // Now Tl = 3 < W - 1 (case B): a number just below 2^32 maps to Th - 1.
        assert_eq!(accept(&mut w, (near + 2) as u32), Ok(near + 2));
        assert_eq!(accept(&mut w, (near + 2) as u32), Err(DropReason::Replay));
        assert_eq!(accept(&mut w, 3), Err(DropReason::Replay));
        assert_eq!(accept(&mut w, 4), Ok((1u64 << 32) | 4));
    }

    #[test]
    fn esn_start_of_space_cannot_go_negative() {
        let w = ReplayWindow::new(64, true).unwrap();
        // top = 0: a huge low half would be in subspace -1, which does not exist.
        assert_eq!(w.infer(u32::MAX), None);
        assert_eq!(w.check(u32::MAX), Err(DropReason::Replay));
        assert_eq!(w.check(1), Ok(1));
    }

    #[test]
    fn without_esn_high_half_is_zero() {
        let mut w = ReplayWindow::new(64, false).unwrap();
        assert_eq!(accept(&mut w, u32::MAX), Ok(u64::from(u32::MAX)));
        assert_eq!(accept(&mut w, 1), Err(DropReason::Replay));
    }

    proptest! {
        /// The bitmap behaves like the obvious model (set of seen numbers + top).
        #[test]
        fn matches_model(size_words in 1usize..4, ops in proptest::collection::vec(0u64..600, 1..400)) {
            let size = size_words * 64;
            let mut w = ReplayWindow::new(size, false).unwrap();
            let mut seen = BTreeSet::new();
            let mut top = 0u64;
            for s in ops {
                let model_ok = s != 0 && !seen.contains(&s) && (s > top || top - s < size as u64);
                let got = w.check(s as u32).and_then(|x| w.update(x).map(|_| x));
                prop_assert_eq!(got.is_ok(), model_ok, "seq {} top {}", s, top);
                if model_ok {
                    seen.insert(s);
                    top = top.max(s);
                }
            }
        }

        /// ESN inference recovers the true 64-bit number for any packet inside or
        /// ahead of the window (by less than 2^31), across wraps.
        #[test]
        fn esn_inference(top in 1u64..(1u64 << 40), back in 0u64..1024, ahead in 1u64..(1u64 << 31)) {
            let mut w = ReplayWindow::new(1024, true).unwrap();
            w.update(top).unwrap();
            if back < top {
                let s = top - back;
                prop_assert_eq!(w.infer(s as u32), Some(s));
            }
            let s = top + ahead;
            prop_assert_eq!(w.infer(s as u32), Some(s));
        }
    }
}
