//! The NAT's flow index: a preallocated, bucketised open-addressing hash table.
//!
//! Each 64-byte bucket holds 7 entries of (32-bit signature, 32-bit value) plus a
//! `spill` count: how many entries whose home is this bucket or an earlier one were
//! placed further on because this bucket was full. A lookup stops at the first bucket
//! with `spill == 0`, so deletion needs no tombstones: removing an entry found `k`
//! buckets past its home decrements `spill` of the `k` buckets it skipped. Keys are not
//! stored here: the caller checks a candidate value against its own arrays (sessions,
//! mappings, subscribers), so one table serves every key kind. Nothing allocates after
//! [`FlowTable::new`].

use alloc::vec::Vec;

/// The empty value.
pub const NONE: u32 = u32::MAX;
const WAYS: usize = 7;
/// Longest probe sequence an insert may take before reporting the table full.
const MAX_PROBE: usize = 32;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    sig: [u32; WAYS],
    spill: u32,
    val: [u32; WAYS],
    _pad: u32,
}

const EMPTY_BUCKET: Bucket = Bucket {
    sig: [0; WAYS],
    spill: 0,
    val: [NONE; WAYS],
    _pad: 0,
};

/// A hash table of `u32` values addressed by 64-bit hashes.
pub struct FlowTable {
    buckets: Vec<Bucket>,
    mask: usize,
    len: usize,
}

impl core::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlowTable")
            .field("buckets", &self.buckets.len())
            .field("len", &self.len)
            .finish()
    }
}

/// Mixes a 128-bit key into a 64-bit hash (low bits pick the bucket, high 32 bits are
/// the signature).
#[inline(always)]
pub fn hash(k1: u64, k2: u64) -> u64 {
    let mut x = k1 ^ k2.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31);
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl FlowTable {
    /// A table for at least `entries` values at a load factor of at most ~57 %.
    pub fn new(entries: usize) -> Self {
        let nb = (entries / 4).max(8).next_power_of_two();
        FlowTable {
            buckets: huge_vec(nb, EMPTY_BUCKET),
            mask: nb - 1,
            len: 0,
        }
    }

    /// Values stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of memory held.
    pub fn memory(&self) -> usize {
        self.buckets.len() * core::mem::size_of::<Bucket>()
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        for b in self.buckets.iter_mut() {
            *b = EMPTY_BUCKET;
        }
        self.len = 0;
    }

    /// Starts loading the home bucket of `h` into the cache.
    #[inline(always)]
    pub fn prefetch(&self, h: u64) {
        if let Some(b) = self.buckets.get(h as usize & self.mask) {
            prefetch(b as *const Bucket as *const u8);
        }
    }

    /// The first value in the home bucket of `h` whose signature matches (a hint for
    /// prefetching; [`FlowTable::find`] gives the answer).
    #[inline(always)]
    pub fn first_candidate(&self, h: u64) -> u32 {
        let sig = (h >> 32) as u32;
        if let Some(b) = self.buckets.get(h as usize & self.mask) {
            for i in 0..WAYS {
                if b.sig[i] == sig && b.val[i] != NONE {
                    return b.val[i];
                }
            }
        }
        NONE
    }

    /// The value stored under `h` for which `eq` holds.
    #[inline]
    pub fn find(&self, h: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let sig = (h >> 32) as u32;
        let mut i = h as usize & self.mask;
        for _ in 0..=MAX_PROBE {
            let b = self.buckets.get(i)?;
            for w in 0..WAYS {
                let v = b.val[w];
                if b.sig[w] == sig && v != NONE && eq(v) {
                    return Some(v);
                }
            }
            if b.spill == 0 {
                return None;
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Stores `val` under `h`; `false` when no bucket within the probe limit has room.
    #[inline]
    pub fn insert(&mut self, h: u64, val: u32) -> bool {
        let sig = (h >> 32) as u32;
        let home = h as usize & self.mask;
        let mut i = home;
        for k in 0..MAX_PROBE {
            let Some(b) = self.buckets.get_mut(i) else {
                return false;
            };
            if let Some(w) = b.val.iter().position(|v| *v == NONE) {
                b.val[w] = val;
                b.sig[w] = sig;
                // Mark the buckets skipped over.
                let mut j = home;
                for _ in 0..k {
                    if let Some(s) = self.buckets.get_mut(j) {
                        s.spill += 1;
                    }
                    j = (j + 1) & self.mask;
                }
                self.len += 1;
                return true;
            }
            i = (i + 1) & self.mask;
        }
        false
    }

    /// Removes the entry `val` stored under `h`; `false` when it is not there.
    #[inline]
    pub fn remove(&mut self, h: u64, val: u32) -> bool {
        let sig = (h >> 32) as u32;
        let home = h as usize & self.mask;
        let mut i = home;
        for k in 0..=MAX_PROBE {
            let Some(b) = self.buckets.get_mut(i) else {
                return false;
            };
            if let Some(w) = (0..WAYS).find(|&w| b.val[w] == val && b.sig[w] == sig) {
                b.val[w] = NONE;
                let mut j = home;
                for _ in 0..k {
                    if let Some(s) = self.buckets.get_mut(j) {
                        s.spill = s.spill.saturating_sub(1);
                    }
                    j = (j + 1) & self.mask;
                }
                self.len -= 1;
                return true;
            }
            if b.spill == 0 {
                return false;
            }
            i = (i + 1) & self.mask;
        }
        false
    }
}

/// A vector of `n` copies of `x` whose memory the kernel is asked to back with
/// transparent huge pages before it is first touched (Linux `madvise(MADV_HUGEPAGE)`
/// with `std`): large flow tables are read at random, and 2 MiB pages keep the TLB
/// from missing on nearly every lookup. Elsewhere a plain vector.
pub fn huge_vec<T: Clone>(n: usize, x: T) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    #[cfg(all(feature = "std", target_os = "linux"))]
    {
        const HUGE: usize = 2 << 20;
        let bytes = n * core::mem::size_of::<T>();
        if bytes >= HUGE {
            let start = v.as_mut_ptr() as usize;
            let lo = start.next_multiple_of(HUGE);
            let hi = (start + bytes) & !(HUGE - 1);
            if hi > lo {
                // SAFETY: [lo, hi) lies inside the vector's own untouched allocation;
                // MADV_HUGEPAGE only changes how the kernel backs it.
                unsafe {
                    libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE);
                }
            }
        }
    }
    v.resize(n, x);
    v
}

/// Offset of the IPv4 header of an Ethernet frame (untagged fast path, else up to two
/// VLAN tags), or `None` for anything that is not IPv4.
#[inline(always)]
pub fn ipv4_offset(frame: &[u8]) -> Option<usize> {
    match frame.get(12..14) {
        Some([0x08, 0x00]) => Some(crate::proto::ethernet::HEADER_LEN),
        Some([0x81 | 0x88 | 0x91, _]) => {
            let l2 = crate::proto::ethernet::walk_vlans(frame).ok()?;
            (l2.ethertype == crate::proto::EtherType::IPV4).then_some(l2.l3_offset)
        }
        _ => None,
    }
}

pub use crate::prefetch;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_remove_with_spill() {
        // 8 buckets: force overflow by giving all keys the same home bucket.
        let mut t = FlowTable::new(32);
        let h = |i: u64| (i << 40) | 3; // home bucket 3, distinct signatures
        for i in 0..20u64 {
            assert!(t.insert(h(i), i as u32));
        }
        assert_eq!(t.len(), 20);
        for i in 0..20u64 {
            assert_eq!(t.find(h(i), |v| v == i as u32), Some(i as u32));
        }
        assert_eq!(t.find(h(99), |_| true), None);
        // Remove an early one: later (spilled) keys stay reachable.
        assert!(t.remove(h(0), 0));
        assert!(!t.remove(h(0), 0));
        for i in 1..20u64 {
            assert_eq!(t.find(h(i), |v| v == i as u32), Some(i as u32), "{i}");
        }
        for i in 1..20u64 {
            assert!(t.remove(h(i), i as u32));
        }
        assert!(t.is_empty());
        assert!(t.buckets.iter().all(|b| b.spill == 0));
    }

    #[test]
    fn random_keys_fill_to_capacity() {
        let n = 100_000usize;
        let mut t = FlowTable::new(n);
        for i in 0..n as u64 {
            assert!(t.insert(hash(i, 7), i as u32), "insert {i}");
        }
        for i in (0..n as u64).step_by(3) {
            assert!(t.remove(hash(i, 7), i as u32));
        }
        for i in 0..n as u64 {
            let f = t.find(hash(i, 7), |v| v == i as u32);
            assert_eq!(f.is_some(), i % 3 != 0);
        }
    }
}
