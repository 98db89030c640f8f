//! Virtual reassembly of IPv4 fragments for NAT44 (RFC 4787 §11 REQ-14: a NAT MUST
//! support receiving in-order and out-of-order fragments; the VPP "virtual
//! reassembly" approach: translate every fragment, never rebuild the datagram).
//!
//! The first fragment (offset 0, MF set) carries the transport header and is
//! translated like an unfragmented packet; the L4 checksum lives in it, and the
//! RFC 1624 incremental update it gets covers the whole datagram because the checksum
//! is over the reassembled payload and only the pseudo-header address and the port
//! change. Its result — the addresses the datagram leaves with (new source in2out, new
//! destination out2in, both for a hairpinned one) and the session index — is recorded
//! in [`FragTable`] under the *pre-translation* key (source, destination, protocol,
//! IP identification, direction), the fields RFC 791 §3.2 uses to tell the fragments of
//! one datagram apart. Non-first fragments carry no transport header: they look the
//! key up and only get their addresses and the IPv4 header checksum rewritten.
//!
//! A non-first fragment that arrives before its first fragment is held in
//! [`HoldQueue`] (bounded: [`HOLD_SLOTS`] packets in all, [`HOLD_PER_DATAGRAM`] per
//! datagram) and released when the first fragment has been translated, or dropped and
//! counted when [`LIFETIME_MS`] passes or the queue is full.
//!
//! Lifetime: entries and held fragments live 2 s. RFC 791's reassembly timer (an
//! initial setting of 15 s suggested; RFC 1122 §3.3.2: 60 s to 120 s) is for a host
//! that must rebuild the datagram; a translator that forwards each piece as it comes only needs
//! to cover the spread of one datagram's fragments in flight, which is normally
//! micro- to milliseconds since they are sent back to back. A short lifetime also
//! limits the damage of IP identification reuse (RFC 4963 §2: at high rates the
//! 16-bit identification of one source/destination/protocol wraps within seconds, and
//! a stale entry would translate a new datagram's fragments with an old result) and
//! bounds the time a flood of orphan fragments can occupy the queue. RFC 6146 §3.4
//! (NAT64) makes the same trade-off: bounded resources for out-of-order fragments and
//! a short wait (its FRAGMENT_MIN constant, 2 s).
//!
//! RFC 1858 (fragment attacks on filters): a first fragment too short to hold the
//! whole transport header (20 bytes TCP, 8 UDP/ICMP) is dropped and counted (the
//! "tiny fragment" attack), as is a TCP fragment at offset 8 bytes (offset field 1),
//! which could overwrite the TCP flags of the first one (§3.2 "overlapping fragment").
//!
//! Limits, by design: an entry keeps translating its datagram's fragments for its
//! whole lifetime even if the session expires meanwhile (at most 2 s); a flood of
//! orphan non-first fragments to a pool address can fill the hold queue, which then
//! costs out-of-order datagrams their early fragments (counted) while in-order
//! fragments, the normal case, are unaffected; fragments of ICMP errors are not
//! translated.
//!
//! Everything here is preallocated in [`FragTable::new`] / [`HoldQueue::new`]; the
//! packet path allocates nothing and takes no lock.

use crate::buf::Pkt;
use ::alloc::boxed::Box;
use ::alloc::vec::Vec;

/// Lifetime of a fragment-table entry and of a held fragment.
pub const LIFETIME_MS: u64 = 2000;
/// Ways per set of the fragment table.
pub const WAYS: usize = 4;
/// Sets of the fragment table (entries = `WAYS * SETS`).
pub const SETS: usize = 1024;
/// Fragments held waiting for their first fragment (per stage instance).
pub const HOLD_SLOTS: usize = 64;
/// Fragments of one datagram that may be held.
pub const HOLD_PER_DATAGRAM: usize = 16;

/// What identifies the fragments of one datagram (before translation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragKey {
    pub src: u32,
    pub dst: u32,
    pub id: u16,
    pub proto: u8,
    /// Outside→inside.
    pub inbound: bool,
}

impl FragKey {
    #[inline]
    fn hash(&self) -> u64 {
        super::table::hash(
            (u64::from(self.src) << 32) | u64::from(self.dst),
            (u64::from(self.id) << 16) | (u64::from(self.proto) << 8) | u64::from(self.inbound),
        )
    }
}

/// The translation of one datagram, recorded from its first fragment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragResult {
    /// Source and destination addresses after translation.
    pub src: u32,
    pub dst: u32,
    /// Session the first fragment used (refreshed by the later fragments).
    pub sess: u32,
}

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    key: FragKey,
    res: FragResult,
    born: u32,
    live: bool,
}

/// Outcome of [`FragTable::record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    New,
    /// The key was there already (a duplicate first fragment or a reused
    /// identification): the result was replaced.
    Replaced,
    /// Every way of the set is live: not recorded.
    Full,
}

/// A set-associative table of datagram translations (fixed size, no allocation after
/// [`FragTable::new`], expiry by age on lookup and insert).
pub struct FragTable {
    e: Box<[Entry]>,
    life: u32,
}

impl core::fmt::Debug for FragTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FragTable")
            .field("entries", &self.e.len())
            .finish()
    }
}

#[inline]
fn alive(born: u32, now: u32, life: u32) -> bool {
    now.wrapping_sub(born) <= life
}

impl FragTable {
    /// A table of `WAYS * SETS` entries whose entries live `life` time units.
    pub fn new(life: u32) -> Self {
        FragTable {
            e: ::alloc::vec![Entry::default(); WAYS * SETS].into_boxed_slice(),
            life,
        }
    }

    #[inline]
    fn set(&self, k: &FragKey) -> usize {
        (k.hash() as usize & (SETS - 1)) * WAYS
    }

    /// The live result for `k`.
    pub fn lookup(&self, k: &FragKey, now: u32) -> Option<FragResult> {
        let base = self.set(k);
        self.e
            .get(base..base + WAYS)?
            .iter()
            .find(|e| e.live && e.key == *k && alive(e.born, now, self.life))
            .map(|e| e.res)
    }

    /// Records `res` for `k` (replacing an entry of the same key, else taking a free
    /// or expired way).
    pub fn record(&mut self, k: &FragKey, res: FragResult, now: u32) -> Record {
        let base = self.set(k);
        let life = self.life;
        let Some(ways) = self.e.get_mut(base..base + WAYS) else {
            return Record::Full;
        };
        if let Some(e) = ways.iter_mut().find(|e| e.live && e.key == *k) {
            let was = alive(e.born, now, life);
            e.res = res;
            e.born = now;
            return if was { Record::Replaced } else { Record::New };
        }
        match ways
            .iter_mut()
            .find(|e| !e.live || !alive(e.born, now, life))
        {
            Some(e) => {
                *e = Entry {
                    key: *k,
                    res,
                    born: now,
                    live: true,
                };
                Record::New
            }
            None => Record::Full,
        }
    }

    /// Bytes of the table.
    pub fn memory(&self) -> usize {
        self.e.len() * core::mem::size_of::<Entry>()
    }

    /// Live entries (tests, control plane).
    pub fn len(&self, now: u32) -> usize {
        self.e
            .iter()
            .filter(|e| e.live && alive(e.born, now, self.life))
            .count()
    }

    /// True when no entry is live.
    pub fn is_empty(&self, now: u32) -> bool {
        self.len(now) == 0
    }
}

/// A non-first fragment waiting for its first fragment.
#[derive(Debug)]
pub struct Held {
    pub pkt: Pkt,
    pub key: FragKey,
    /// Offset of the IPv4 header in the packet.
    pub l3: u16,
    pub since: u32,
}

/// The bounded queue of held fragments.
pub struct HoldQueue {
    slots: Box<[Option<Held>]>,
    n: usize,
    life: u32,
}

impl core::fmt::Debug for HoldQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HoldQueue").field("held", &self.n).finish()
    }
}

impl HoldQueue {
    pub fn new(life: u32) -> Self {
        let mut v = Vec::with_capacity(HOLD_SLOTS);
        v.resize_with(HOLD_SLOTS, || None);
        HoldQueue {
            slots: v.into_boxed_slice(),
            n: 0,
            life,
        }
    }

    /// Fragments held.
    #[inline]
    pub fn len(&self) -> usize {
        self.n
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Whether one more fragment of `k` may be held, given `pending` more already
    /// promised a slot in this batch (`pending_same` of them of the same datagram).
    pub fn admits(&self, k: &FragKey, pending: usize, pending_same: usize) -> bool {
        if self.n + pending >= HOLD_SLOTS {
            return false;
        }
        let same = self.slots.iter().flatten().filter(|h| h.key == *k).count();
        same + pending_same < HOLD_PER_DATAGRAM
    }

    /// Holds `h`; gives it back when there is no free slot.
    pub fn push(&mut self, h: Held) -> Result<(), Held> {
        match self.slots.iter_mut().find(|s| s.is_none()) {
            Some(s) => {
                *s = Some(h);
                self.n += 1;
                Ok(())
            }
            None => Err(h),
        }
    }

    /// Takes out every held fragment for which `f` returns true (in slot order).
    pub fn take_if(&mut self, mut f: impl FnMut(&Held) -> bool, mut g: impl FnMut(Held)) {
        for s in self.slots.iter_mut() {
            if s.as_ref().is_some_and(&mut f) {
                if let Some(h) = s.take() {
                    self.n -= 1;
                    g(h);
                }
            }
        }
    }

    /// Takes out the first held fragment (in slot order) for which `f` returns true.
    pub fn take_first(&mut self, mut f: impl FnMut(&Held) -> bool) -> Option<Held> {
        let s = self
            .slots
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(&mut f))?;
        let h = s.take()?;
        self.n -= 1;
        Some(h)
    }

    /// Takes out the fragments held longer than the lifetime.
    pub fn expire(&mut self, now: u32, g: impl FnMut(Held)) {
        let life = self.life;
        self.take_if(|h| !alive(h.since, now, life), g);
    }
}

impl Drop for HoldQueue {
    fn drop(&mut self) {
        // Return held buffers to their pool (never leak on shutdown).
        for s in self.slots.iter_mut() {
            if let Some(h) = s.take() {
                h.pkt.pool().free(h.pkt);
            }
        }
    }
}
