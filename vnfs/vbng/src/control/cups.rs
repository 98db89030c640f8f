//! What the disaggregated vBNG's control plane ([`crate::cups::cp`], BBF TR-459
//! control/user plane separation) needs from the [`ControlPlane`] beyond the
//! monolithic contract: ending every session of a user plane that was lost (PFCP
//! heartbeat loss, TS 29.244 §6.2.2), and taking the
//! per-session counters from PFCP usage reports (TS 29.244 §5.2.2) instead of from an
//! in-process fast path.

use super::{ControlPlane, SessionCounters};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

/// Acct-Terminate-Cause "Lost Service" (RFC 2866 §5.10): the user plane carrying the
/// session is gone.
pub const LOST_SERVICE: u32 = 3;

impl ControlPlane {
    /// Ends every session on access `port` (a user plane that was lost): each gets
    /// its Accounting-Stop with `cause` (when accounting is on) and its table
    /// removals; no PADT is sent (the access line went with the user plane). Returns
    /// how many sessions ended.
    pub fn terminate_port(&mut self, port: u16, cause: u32, now: u64) -> usize {
        let idxs: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Some(e) if e.key.port == port => Some(i as u32),
                _ => None,
            })
            .collect();
        for &idx in &idxs {
            self.remove_with(idx, cause, false, now);
        }
        idxs.len()
    }
}

impl SessionCounters {
    /// Sets slot `idx` to absolute values (up octets, up packets, down octets, down
    /// packets), as a user plane's usage report counts them.
    pub fn set(&self, idx: u32, v: (u64, u64, u64, u64)) {
        let i = idx as usize * 4;
        if let Some(s) = self.v.get(i..i + 4) {
            s[0].store(v.0, Ordering::Relaxed);
            s[1].store(v.1, Ordering::Relaxed);
            s[2].store(v.2, Ordering::Relaxed);
            s[3].store(v.3, Ordering::Relaxed);
        }
    }
}
