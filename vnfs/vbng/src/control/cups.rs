//! What the disaggregated vBNG's control plane ([`crate::cups::cp`], BBF TR-459
//! control/user plane separation) needs from the [`ControlPlane`] beyond the
//! monolithic contract: ending every session of a user plane that was lost (PFCP
//! heartbeat loss, TS 29.244 §6.2.2), and taking the
//! per-session counters from PFCP usage reports (TS 29.244 §5.2.2) instead of from an
//! in-process fast path.

use super::ControlPlane;
use crate::radius::{self, AcctIpv6, AcctRecord, AcctStatus, LineInfo};
use alloc::vec::Vec;

/// Acct-Terminate-Cause "Lost Service" (RFC 2866 §5.10): the user plane carrying the
/// session is gone.
pub const LOST_SERVICE: u32 = 3;

/// An Accounting-Stop held until the user plane's final usage report (TS 29.244
/// §7.5.7: the Usage Report of the Session Deletion Response): everything of the
/// Stop but the counters, which [`HeldStop::set_counters`] fills in.
#[derive(Debug, Clone)]
pub struct HeldStop {
    line: LineInfo,
    rec: AcctRecord,
    v6: AcctIpv6,
}

impl HeldStop {
    /// The final counters (up octets, up packets, down octets, down packets).
    pub fn set_counters(&mut self, c: (u64, u64, u64, u64)) {
        self.rec.in_octets = c.0;
        self.rec.in_packets = c.1;
        self.rec.out_octets = c.2;
        self.rec.out_packets = c.3;
    }

    /// The counters the Stop carries now (the last usage report's until
    /// [`HeldStop::set_counters`]).
    pub fn counters(&self) -> (u64, u64, u64, u64) {
        let r = &self.rec;
        (r.in_octets, r.in_packets, r.out_octets, r.out_packets)
    }

    /// Acct-Session-Id.
    pub fn session_id(&self) -> &str {
        &self.rec.session_id
    }
}

impl ControlPlane {
    /// Disaggregated: from now on the Accounting-Stop of an installed session is not
    /// sent when the session ends but held ([`ControlPlane::take_held_stop`]) until
    /// its user plane's final usage report arrives ([`ControlPlane::submit_stop`]).
    pub fn hold_stops(&mut self, on: bool) {
        self.hold_stops = on;
    }

    pub(super) fn hold_stop(&mut self, idx: u32, cause: u32, now: u64) {
        let Some((line, rec)) = self.record(idx, Some(cause), now) else {
            return;
        };
        let v6 = match self.slots.get(idx as usize) {
            Some(Some(e)) => AcctIpv6 {
                framed_prefix: (e.prefix6 != 0).then(|| (u128::from(e.prefix6) << 64, 64)),
                delegated_prefix: e.pd.as_ref().map(|(p, l, _)| (u128::from(*p) << 64, *l)),
                address: e.addr6.as_ref().map(|(a, _)| *a),
            },
            _ => AcctIpv6::default(),
        };
        self.held.push_back((idx, HeldStop { line, rec, v6 }));
    }

    /// The held Stop of slot `idx`'s session that ended (the oldest, should the slot
    /// have ended twice since), taken when its table removal is handled.
    pub fn take_held_stop(&mut self, idx: u32) -> Option<HeldStop> {
        let at = self.held.iter().position(|(i, _)| *i == idx)?;
        self.held.remove(at).map(|(_, s)| s)
    }

    /// Sends a held Stop.
    pub fn submit_stop(&mut self, s: HeldStop, now: u64) {
        let req = radius::accounting_request_ipv6(&s.line, AcctStatus::Stop, &s.rec, &s.v6);
        if let Some(r) = self.radius.as_mut() {
            r.submit_acct(req, now);
        }
    }

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
