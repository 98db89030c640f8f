//! `nat44` fragments (RFC 4787 §11 REQ-14): virtual reassembly around the
//! [`super::frag`] tables: recording the first fragment's translation, applying it
//! to later fragments, holding fragments that come before their first and releasing
//! or expiring them (RFC 791 §3.2 reassembly timer).

use super::*;

impl Nat44 {
    #[inline]
    pub(super) fn frag_key(pre: &Pre) -> FragKey {
        FragKey {
            src: pre.flow.src,
            dst: pre.flow.dst,
            id: pre.ipid,
            proto: pre.flow.proto,
            inbound: matches!(pre.act, Act::Out2In | Act::FragOut2In),
        }
    }

    /// Rewrites the addresses of a non-first fragment to the recorded result and
    /// refreshes the session (outbound always, inbound when configured).
    pub(super) fn apply_frag(
        &mut self,
        b: &mut [u8],
        l3: usize,
        inbound: bool,
        res: &FragResult,
        now: u32,
    ) {
        if rd32(b, l3 + 12) != res.src {
            rewrite_addr(b, l3, false, res.src);
        }
        if rd32(b, l3 + 16) != res.dst {
            rewrite_addr(b, l3, true, res.dst);
        }
        let refresh = !inbound || self.inbound_refresh;
        if let Some(s) = self.sessions.get_mut(res.sess as usize) {
            if s.live && refresh {
                s.last = now;
            }
        }
    }

    /// A non-first fragment: translated from its datagram's entry, or held for the
    /// first fragment (kept in the batch for now, `hold_now` set), or dropped.
    #[cold]
    pub(super) fn fragment_rest(&mut self, p: &mut Pkt, pre: &Pre, now: u32) -> Next {
        let k = Self::frag_key(pre);
        if let Some(res) = self.frags.lookup(&k, now) {
            let Some(b) = p.data_mut().get_mut(..usize::from(pre.end)) else {
                return NatDrop::Malformed.into();
            };
            self.apply_frag(b, usize::from(pre.l3), k.inbound, &res, now);
            self.stats.frag_translated += 1;
            return Next::Keep;
        }
        // Fragments of the same datagram already promised a slot in this batch.
        let same = self
            .pending_keys
            .iter()
            .take(self.hold_pending)
            .filter(|q| **q == k)
            .count();
        if !self.held.admits(&k, self.hold_pending, same) {
            return NatDrop::FragHoldFull.into();
        }
        let Some(slot) = self.pending_keys.get_mut(self.hold_pending) else {
            return NatDrop::FragHoldFull.into();
        };
        *slot = k;
        self.hold_pending += 1;
        self.hold_now = true;
        Next::Keep
    }

    /// A fragment left `handle` kept at batch position `pos`: record a first
    /// fragment's result, or mark a non-first one for holding.
    #[cold]
    pub(super) fn fragment_kept(&mut self, p: &Pkt, pre: &Pre, now: u32, pos: usize) {
        if pre.frag == FRAG_FIRST {
            self.fragment_first(p, pre, now);
        } else if self.hold_now {
            self.hold_now = false;
            if let Some(w) = self.hold_mask.get_mut(pos / 64) {
                *w |= 1 << (pos % 64);
            }
        }
    }

    /// After a first fragment was translated: record the result for the rest of its
    /// datagram (the addresses it now carries, and its session).
    #[cold]
    pub(super) fn fragment_first(&mut self, p: &Pkt, pre: &Pre, now: u32) {
        let d = p.data();
        let l3 = usize::from(pre.l3);
        let res = FragResult {
            src: rd32(d, l3 + 12),
            dst: rd32(d, l3 + 16),
            sess: self.last_sess,
        };
        self.stats.frag_first += 1;
        match self.frags.record(&Self::frag_key(pre), res, now) {
            Record::New => {}
            Record::Replaced => self.stats.frag_duplicate_first += 1,
            Record::Full => self.stats.frag_table_full += 1,
        }
        if !self.held.is_empty() || self.hold_pending > 0 {
            self.release_due = true;
        }
    }

    /// Drops held fragments older than the lifetime (counted in `stats` now, as drops
    /// at the next batch).
    pub(super) fn expire_held(&mut self, now: u32, cache: &mut crate::buf::PoolCache) {
        if self.held.is_empty() {
            return;
        }
        let mut n = 0;
        self.held.expire(now, |h| {
            cache.free(h.pkt);
            n += 1;
        });
        self.stats.frag_expired += n;
        self.expired_uncounted += n;
    }

    /// After `dispatch`: moves the fragments marked for holding out of `batch` into
    /// the hold queue, then releases held fragments whose first fragment has been
    /// translated (appended to `batch`, in hold order, as far as it has room).
    #[cold]
    pub(super) fn after_batch(
        &mut self,
        batch: &mut Batch,
        node: &mut NodeStats,
        out: &mut Out,
        now: u32,
    ) {
        if self.hold_pending > 0 {
            let mask = self.hold_mask;
            let inside_ports = self.inside;
            let life_now = now;
            let mut i = 0usize;
            let scratch = &mut *self.scratch;
            let held = &mut self.held;
            let mut held_n = 0u64;
            batch.drain(|p| {
                let hold = mask.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0);
                i += 1;
                if !hold {
                    if let Err(p) = scratch.push(p) {
                        out.cache.free(p);
                    }
                    return;
                }
                let d = p.data();
                let Some(l3) = ipv4_offset(d) else {
                    node.count_drop(NatDrop::Malformed.code());
                    out.cache.free(p);
                    return;
                };
                let key = FragKey {
                    src: rd32(d, l3 + 12),
                    dst: rd32(d, l3 + 16),
                    id: rd16(d, l3 + 4),
                    proto: d.get(l3 + 9).copied().unwrap_or(0),
                    inbound: !(p.meta.port < 64 && inside_ports & (1 << p.meta.port) != 0),
                };
                let h = Held {
                    pkt: p,
                    key,
                    l3: l3 as u16,
                    since: life_now,
                };
                match held.push(h) {
                    Ok(()) => held_n += 1,
                    Err(h) => {
                        node.count_drop(NatDrop::FragHoldFull.code());
                        out.cache.free(h.pkt);
                    }
                }
            });
            batch.append(scratch);
            self.stats.frag_held += held_n;
            self.hold_mask = [0; BATCH_SIZE / 64];
            self.hold_pending = 0;
        }
        if self.release_due {
            self.release(batch, now);
        }
    }

    /// Translates and appends to `batch` the held fragments whose datagram has an
    /// entry now (those that do not fit stay held for the next batch).
    pub(super) fn release(&mut self, batch: &mut Batch, now: u32) {
        self.release_due = false;
        while let Some(h) = {
            let frags = &self.frags;
            self.held
                .take_first(|h| frags.lookup(&h.key, now).is_some())
        } {
            if batch.is_full() {
                self.release_due = true;
                if let Err(h) = self.held.push(h) {
                    h.pkt.pool().free(h.pkt);
                }
                return;
            }
            let Held {
                mut pkt, key, l3, ..
            } = h;
            if let Some(res) = self.frags.lookup(&key, now) {
                let b = pkt.data_mut();
                self.apply_frag(b, usize::from(l3), key.inbound, &res, now);
            }
            self.stats.frag_released += 1;
            if let Err(p) = batch.push(pkt) {
                p.pool().free(p);
            }
        }
    }
}
