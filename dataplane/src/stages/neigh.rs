//! Neighbour table shared by every worker: IPv4 (ARP, RFC 826) and IPv6 (ND,
//! RFC 4861) address → MAC bindings with ageing, read lock-free on the fast path.
//!
//! A fixed array of slots with open addressing (linear probing, bounded). Each slot
//! is a small seqlock: writers (any worker that learns from ARP/ND) take the slot by
//! moving its version from even to odd with a compare-and-swap, write, and release it
//! at the next even value; readers retry when the version changed under them. Keys are
//! IPv6 addresses as `u128`; IPv4 addresses use the IPv4-mapped form (::ffff:a.b.c.d).
//! Entries age (RFC 4861 §7.3.2's REACHABLE → STALE, the ARP cache timeout of
//! RFC 1122 §2.3.2.1): a stale entry keeps forwarding but is refreshed by a new
//! request; an incomplete entry (request sent, no answer) can be reused by another
//! address once its retry interval has passed.

use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr};
use core::sync::atomic::{AtomicU64, Ordering};

/// Probes before giving up (the table reports full).
const MAX_PROBE: usize = 16;
/// Most slots a table may have (2^22 ≈ 4 M bindings, 192 MiB of slots): a larger
/// request is refused by [`NeighTable::try_new`] and clamped by [`NeighTable::new`],
/// never rounded past the address space.
pub const MAX_NEIGHBORS: usize = 1 << 22;
const MAC_VALID: u64 = 1 << 63;

/// A neighbour table key.
#[inline]
pub fn key_v4(a: Ipv4Addr) -> u128 {
    u128::from(a.to_ipv6_mapped())
}

/// A neighbour table key.
#[inline]
pub fn key_v6(a: &Ipv6Addr) -> u128 {
    u128::from(*a)
}

struct Slot {
    /// Even: stable; odd: being written. 0 with key 0 means never used.
    version: AtomicU64,
    key_hi: AtomicU64,
    key_lo: AtomicU64,
    /// MAC in the low 48 bits, [`MAC_VALID`] when resolved.
    mac: AtomicU64,
    /// When the binding was last confirmed (ns).
    confirmed: AtomicU64,
    /// When a request was last sent for this address (ns).
    requested: AtomicU64,
}

impl Slot {
    fn new() -> Self {
        Slot {
            version: AtomicU64::new(0),
            key_hi: AtomicU64::new(0),
            key_lo: AtomicU64::new(0),
            mac: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            requested: AtomicU64::new(0),
        }
    }

    /// The slot's key if it holds one, read consistently.
    #[inline]
    fn key(&self) -> Option<(u128, u64)> {
        loop {
            let v = self.version.load(Ordering::Acquire);
            if v == 0 {
                return None;
            }
            if v & 1 == 1 {
                core::hint::spin_loop();
                continue;
            }
            let k = (u128::from(self.key_hi.load(Ordering::Acquire)) << 64)
                | u128::from(self.key_lo.load(Ordering::Acquire));
            if self.version.load(Ordering::Acquire) == v {
                return Some((k, v));
            }
        }
    }
}

/// What [`NeighTable::resolve`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolve {
    /// Forward to this MAC.
    Mac([u8; 6]),
    /// Forward to this MAC, and send a request now: the binding is past its reachable
    /// time (RFC 4861 §7.3.3 STALE → PROBE; the ARP cache refresh of RFC 1122
    /// §2.3.2.1). Returned once per retry interval; without an answer within three
    /// intervals [`NeighTable::age`] invalidates the binding.
    Refresh([u8; 6]),
    /// Unknown or incomplete: drop, and send a request now (rate limited).
    SendRequest,
    /// Unknown or incomplete; a request went out recently.
    Pending,
    /// No room to track the address.
    Full,
}

/// Counters of the table.
#[derive(Clone, Copy, Debug, Default)]
pub struct NeighStats {
    pub entries: usize,
    pub resolved: usize,
}

/// The shared neighbour table.
pub struct NeighTable {
    slots: Vec<Slot>,
    mask: usize,
    /// A binding older than this is stale (ns).
    pub reachable_ns: u64,
    /// Minimum time between requests for one address (ns).
    pub retry_ns: u64,
}

impl core::fmt::Debug for NeighTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NeighTable")
            .field("slots", &self.slots.len())
            .finish()
    }
}

#[inline(always)]
fn mac_u64(m: [u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

#[inline(always)]
fn u64_mac(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

#[inline(always)]
fn hash(k: u128) -> usize {
    let x = (k as u64) ^ ((k >> 64) as u64).rotate_left(23);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize
}

impl NeighTable {
    /// A table of at least `capacity` slots (rounded up to a power of two, at least
    /// 16, at most [`MAX_NEIGHBORS`]: a larger request is clamped), with a reachable
    /// time of 300 s and a retry interval of 1 s.
    pub fn new(capacity: usize) -> Self {
        let n = capacity.clamp(16, MAX_NEIGHBORS).next_power_of_two();
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            slots.push(Slot::new());
        }
        NeighTable {
            slots,
            mask: n - 1,
            reachable_ns: 300_000_000_000,
            retry_ns: 1_000_000_000,
        }
    }

    /// Like [`NeighTable::new`], but a `capacity` above [`MAX_NEIGHBORS`] is an error
    /// (returned before anything is allocated) instead of being clamped.
    pub fn try_new(capacity: usize) -> Result<Self, usize> {
        if capacity > MAX_NEIGHBORS {
            return Err(MAX_NEIGHBORS);
        }
        Ok(Self::new(capacity))
    }

    fn slot(&self, i: usize) -> &Slot {
        // mask keeps i in range; `get` keeps the compiler honest without a panic path
        match self.slots.get(i & self.mask) {
            Some(s) => s,
            None => &self.slots[0],
        }
    }

    /// Finds the slot holding `key`.
    #[inline]
    fn find(&self, key: u128) -> Option<&Slot> {
        let h = hash(key);
        for i in 0..MAX_PROBE {
            let s = self.slot(h + i);
            match s.key() {
                None => return None,
                Some((k, _)) if k == key => return Some(s),
                Some(_) => {}
            }
        }
        None
    }

    /// Finds or claims a slot for `key`. A claimed slot starts unresolved. An
    /// incomplete slot whose last request is older than the retry interval may be
    /// taken over when the probe window is full.
    fn find_or_claim(&self, key: u128, now: u64) -> Option<&Slot> {
        let h = hash(key);
        let mut victim: Option<(&Slot, u64)> = None;
        for i in 0..MAX_PROBE {
            let s = self.slot(h + i);
            match s.key() {
                Some((k, _)) if k == key => return Some(s),
                Some((_, v)) => {
                    let unresolved = s.mac.load(Ordering::Relaxed) & MAC_VALID == 0;
                    let old =
                        now.saturating_sub(s.requested.load(Ordering::Relaxed)) > self.retry_ns;
                    if victim.is_none() && unresolved && old {
                        victim = Some((s, v));
                    }
                }
                None => {
                    if s.version
                        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        self.write_key(s, key, 2);
                        return Some(s);
                    }
                    // Someone else claimed it: look again at this slot.
                    if let Some((k, _)) = s.key() {
                        if k == key {
                            return Some(s);
                        }
                    }
                }
            }
        }
        let (s, v) = victim?;
        if s.version
            .compare_exchange(v, v + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.write_key(s, key, v + 2);
            return Some(s);
        }
        None
    }

    fn write_key(&self, s: &Slot, key: u128, release_version: u64) {
        s.mac.store(0, Ordering::Relaxed);
        s.confirmed.store(0, Ordering::Relaxed);
        s.requested.store(0, Ordering::Relaxed);
        s.key_hi.store((key >> 64) as u64, Ordering::Release);
        s.key_lo.store(key as u64, Ordering::Release);
        s.version.store(release_version, Ordering::Release);
    }

    /// Records a binding heard from the wire (ARP/ND). Returns false when the table
    /// has no room.
    pub fn learn(&self, key: u128, mac: [u8; 6], now: u64) -> bool {
        match self.find_or_claim(key, now) {
            Some(s) => {
                s.mac.store(mac_u64(mac) | MAC_VALID, Ordering::Release);
                s.confirmed.store(now, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Refreshes a binding only if the address is already known (RFC 826's "merge"
    /// step: learn from requests only for addresses in the table).
    pub fn refresh(&self, key: u128, mac: [u8; 6], now: u64) -> bool {
        match self.find(key) {
            Some(s) => {
                s.mac.store(mac_u64(mac) | MAC_VALID, Ordering::Release);
                s.confirmed.store(now, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// The MAC bound to `key`, if resolved.
    #[inline]
    pub fn lookup(&self, key: u128) -> Option<[u8; 6]> {
        let s = self.find(key)?;
        let m = s.mac.load(Ordering::Acquire);
        (m & MAC_VALID != 0).then(|| u64_mac(m))
    }

    /// Resolves `key` for forwarding at time `now`: the MAC if known (a stale entry
    /// still forwards and asks for a refresh at most once per retry interval),
    /// otherwise whether to send a request.
    #[inline]
    pub fn resolve(&self, key: u128, now: u64) -> Resolve {
        if let Some(s) = self.find(key) {
            let m = s.mac.load(Ordering::Acquire);
            if m & MAC_VALID != 0 {
                let conf = s.confirmed.load(Ordering::Relaxed);
                if now.saturating_sub(conf) > self.reachable_ns && self.claim_request(s, now) {
                    // stale: keep forwarding, and have the caller ask again
                    return Resolve::Refresh(u64_mac(m));
                }
                return Resolve::Mac(u64_mac(m));
            }
            return if self.claim_request(s, now) {
                Resolve::SendRequest
            } else {
                Resolve::Pending
            };
        }
        match self.find_or_claim(key, now) {
            Some(s) => {
                if self.claim_request(s, now) {
                    Resolve::SendRequest
                } else {
                    Resolve::Pending
                }
            }
            None => Resolve::Full,
        }
    }

    /// True (once per retry interval) when the caller should send a request.
    fn claim_request(&self, s: &Slot, now: u64) -> bool {
        let last = s.requested.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.retry_ns {
            return false;
        }
        s.requested
            .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Whether an entry for `key` was asked for recently and is still unresolved:
    /// stale bindings past the reachable time that were not confirmed within three
    /// retry intervals of a refresh request are invalidated here (called from a
    /// stage's `tick`). Returns the number of bindings invalidated.
    pub fn age(&self, now: u64) -> usize {
        self.age_slots(now, 0, self.slots.len()).0
    }

    /// Slots one [`NeighTable::age_step`] looks at: a full pass takes at most 512
    /// steps (at least 32 slots per step), so with the engine's 1 ms tick a table of
    /// any size is swept about twice a second, well inside the seconds-scale
    /// deadlines, without streaming the whole table through the cache every tick.
    pub fn age_chunk(&self) -> usize {
        (self.slots.len() / 512).max(32)
    }

    /// One incremental step of [`NeighTable::age`]: looks at [`NeighTable::age_chunk`]
    /// slots from `cursor` (wrapping) and returns the number invalidated and the
    /// cursor for the next step.
    pub fn age_step(&self, now: u64, cursor: usize) -> (usize, usize) {
        let start = cursor & self.mask;
        let (n, end) = self.age_slots(now, start, self.age_chunk());
        (n, end & self.mask)
    }

    fn age_slots(&self, now: u64, start: usize, count: usize) -> (usize, usize) {
        let mut n = 0;
        let end = start.saturating_add(count).min(self.slots.len());
        for s in self.slots.get(start..end).unwrap_or(&[]) {
            let m = s.mac.load(Ordering::Relaxed);
            if m & MAC_VALID == 0 {
                continue;
            }
            let conf = s.confirmed.load(Ordering::Relaxed);
            let req = s.requested.load(Ordering::Relaxed);
            if now.saturating_sub(conf) > self.reachable_ns
                && req > conf
                && now.saturating_sub(req) > 3 * self.retry_ns
            {
                s.mac.store(m & !MAC_VALID, Ordering::Release);
                n += 1;
            }
        }
        (n, end)
    }

    /// Entries in use and entries resolved.
    pub fn stats(&self) -> NeighStats {
        let mut st = NeighStats::default();
        for s in &self.slots {
            if s.key().is_some() {
                st.entries += 1;
                if s.mac.load(Ordering::Relaxed) & MAC_VALID != 0 {
                    st.resolved += 1;
                }
            }
        }
        st
    }

    /// Resolved bindings (for `show neighbours`).
    pub fn dump(&self) -> Vec<(u128, [u8; 6], u64)> {
        let mut v = Vec::new();
        for s in &self.slots {
            if let Some((k, _)) = s.key() {
                let m = s.mac.load(Ordering::Relaxed);
                if m & MAC_VALID != 0 {
                    v.push((k, u64_mac(m), s.confirmed.load(Ordering::Relaxed)));
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn learn_lookup_resolve() {
        let t = NeighTable::new(64);
        let k = key_v4(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(t.lookup(k), None);
        assert_eq!(t.resolve(k, S), Resolve::SendRequest);
        assert_eq!(t.resolve(k, S + 1), Resolve::Pending, "rate limited");
        assert_eq!(
            t.resolve(k, 3 * S),
            Resolve::SendRequest,
            "retry after interval"
        );
        assert!(t.learn(k, [2, 0, 0, 0, 0, 1], 3 * S));
        assert_eq!(t.resolve(k, 4 * S), Resolve::Mac([2, 0, 0, 0, 0, 1]));
        assert_eq!(t.stats().resolved, 1);
    }

    #[test]
    fn incremental_aging_sweeps_the_whole_table() {
        let mut t = NeighTable::new(4096);
        t.reachable_ns = 10 * S;
        let keys: Vec<u128> = (1..=200u32)
            .map(|i| key_v4(Ipv4Addr::from(0x0a00_0000 + i)))
            .collect();
        for &k in &keys {
            t.learn(k, [2, 0, 0, 0, 0, 9], S);
            assert_eq!(t.resolve(k, 20 * S), Resolve::Refresh([2, 0, 0, 0, 0, 9]));
        }
        let chunk = t.age_chunk();
        assert!((32..4096).contains(&chunk), "one step looks at a slice");
        let (n, c) = t.age_step(30 * S, 0);
        assert_eq!(c, chunk, "the cursor moves by one chunk");
        let steps = 4096 / chunk;
        let mut total = n;
        let mut cursor = c;
        for _ in 1..steps {
            let (n, c) = t.age_step(30 * S, cursor);
            total += n;
            cursor = c;
        }
        assert_eq!(cursor, 0, "a full pass wraps to the start");
        assert_eq!(
            total,
            keys.len(),
            "every stale binding invalidated in one pass"
        );
        assert!(keys.iter().all(|&k| t.lookup(k).is_none()));
    }

    #[test]
    fn stale_entries_refresh_then_age_out() {
        let mut t = NeighTable::new(16);
        t.reachable_ns = 10 * S;
        let k = key_v6(&Ipv6Addr::LOCALHOST);
        t.learn(k, [2, 1, 2, 3, 4, 5], S);
        // stale but forwarding: the caller is told to send a refresh request, once
        // per retry interval
        assert_eq!(t.resolve(k, 20 * S), Resolve::Refresh([2, 1, 2, 3, 4, 5]));
        assert_eq!(t.resolve(k, 20 * S + 1), Resolve::Mac([2, 1, 2, 3, 4, 5]));
        assert_eq!(t.age(21 * S), 0, "request just sent");
        assert_eq!(t.age(30 * S), 1, "no answer in 3 retries: invalidated");
        assert_eq!(t.lookup(k), None);
        // an answer to the refresh keeps the binding
        t.learn(k, [2, 1, 2, 3, 4, 5], 31 * S);
        assert_eq!(t.resolve(k, 45 * S), Resolve::Refresh([2, 1, 2, 3, 4, 5]));
        t.learn(k, [2, 1, 2, 3, 4, 5], 46 * S);
        assert_eq!(t.age(60 * S), 0, "confirmed after the refresh");
        assert_eq!(t.lookup(k), Some([2, 1, 2, 3, 4, 5]));
    }

    #[test]
    fn full_table_reports_full_and_keeps_entries() {
        let t = NeighTable::new(16);
        let mut learned = 0;
        for i in 0..200u32 {
            if t.learn(key_v4(Ipv4Addr::from(i + 1)), [2, 0, 0, 0, 0, i as u8], S) {
                learned += 1;
            }
        }
        assert!(learned <= 16);
        assert_eq!(t.stats().entries, learned);
        // every learned entry is still there
        let mut found = 0;
        for i in 0..200u32 {
            if t.lookup(key_v4(Ipv4Addr::from(i + 1))).is_some() {
                found += 1;
            }
        }
        assert_eq!(found, learned);
    }

    #[test]
    fn huge_capacities_are_refused_or_clamped_not_wrapped() {
        // next_power_of_two of these used to wrap to 0 (panic) or overflow the
        // allocation size.
        for c in [usize::MAX, 1 << 62, 1 << 40, MAX_NEIGHBORS + 1] {
            assert_eq!(NeighTable::try_new(c).err(), Some(MAX_NEIGHBORS), "{c}");
        }
        assert_eq!(NeighTable::try_new(0).unwrap().slots.len(), 16);
        assert_eq!(NeighTable::try_new(1000).unwrap().slots.len(), 1024);
    }

    #[test]
    fn concurrent_learners_agree() {
        extern crate std;
        let t = alloc::sync::Arc::new(NeighTable::new(4096));
        let hs: Vec<_> = (0..4u8)
            .map(|w| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u32 {
                        t.learn(key_v4(Ipv4Addr::from(i)), [2, w, 0, 0, 0, 1], S);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        for i in 0..1000u32 {
            assert!(t.lookup(key_v4(Ipv4Addr::from(i))).is_some(), "{i}");
        }
        assert_eq!(t.stats().entries, 1000);
    }
}
