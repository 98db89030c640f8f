//! Address and prefix pools, one implementation for every family: IPv4 subscriber
//! addresses (IPCP, RFC 1332 §3.3; later DHCPv4 leases, RFC 2131 §4.3.1) and IPv6 /64
//! prefixes (one per PPP session for SLAAC, RFC 5072 §5), IPv6 addresses (DHCPv6
//! IA_NA, RFC 8415 §6.2) and IPv6 prefixes of a configured length ([`Prefix6`]:
//! DHCPv6 IA_PD, RFC 8415 §6.3), selected by name (RADIUS Framed-Pool, RFC 2869 §5.18;
//! Framed-IPv6-Pool, RFC 3162 §2.4) with fixed items overriding (Framed-IP-Address,
//! RFC 2865 §5.8; Framed-IPv6-Prefix, RFC 3162 §2.3).
//!
//! A family is a [`PoolItem`]: its items sit on a line of `u128` keys (an IPv4
//! address as its 32 bits, a /64 as its upper 64 bits) and it names the martian keys
//! that are never handed out ([`Prefix6`] keys carry the prefix length in their top
//! bits, so one line holds the prefixes of every length and a range holds one length). A [`Pool`] is one or more inclusive key ranges; its
//! items are numbered from 0 across the ranges in order. [`Pools`] are the named
//! pools of one family (the first is the default), the reserved items (the node's own
//! addresses) and the fixed items held outside every pool.
//!
//! Allocation is a bitmap scan from a cursor. The family says where a freed item goes
//! ([`PoolItem::REUSE_FREED_FIRST`]): IPv4 addresses rotate (a freed address comes
//! round again only after the rest of the pool has, so no address is handed to a new
//! subscriber the moment the last one left), /64 prefixes are handed out lowest free
//! first (a freed /64 is the next one out, which keeps the bitmap small). The bitmap
//! covers the first [`WINDOW`] items at most
//! and grows on demand: it doubles only when seven eighths of it are held, so a scan
//! finds a free bit within a few words and memory follows the items held, not the
//! pool's size (a /32 of /64s costs what its sessions use). Items outside the bitmap
//! (above [`WINDOW`], or not reached yet) can still be taken by name and are kept in
//! an ordered set. Nothing panics on any size up to a whole family (`0.0.0.0/0` is
//! refused as martian, as is `::/0`).
//!
//! No item is ever held twice: pools may not overlap (checked by [`Pools::new`]), a
//! fixed item outside every pool is tracked in its own set, and martian and reserved
//! items can neither be in a pool nor be taken.

use crate::addr::{Prefix6, Prefix64};
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use bitvec::prelude::*;
use core::fmt;
use core::marker::PhantomData;
use core::net::{Ipv4Addr, Ipv6Addr};

/// Items a pool's bitmap covers at most (2 MiB of bitmap): allocation hands out the
/// first `WINDOW` items of a larger pool; the rest can only be taken by name.
pub const WINDOW: u64 = 1 << 24;
/// Bits a bitmap starts with (or the pool's size when smaller).
const GROW_MIN: u64 = 1024;

/// An address family a pool hands out.
pub trait PoolItem: Copy + Eq + Ord + fmt::Debug + fmt::Display {
    /// What a pool of this family is called in messages (`pool`, `IPv6 pool`).
    const POOL: &'static str;
    /// What an item is called in messages, singular and plural.
    const NOUN: (&'static str, &'static str);
    /// Inclusive key ranges of items never handed out nor taken.
    const MARTIANS: &'static [(u128, u128)];
    /// The martian ranges as text, for messages.
    const MARTIAN_TEXT: &'static str;
    /// Most items one pool, and all pools of the family together, may hold.
    const MAX_ITEMS: u128;
    /// Hand out the lowest free item (a freed item is the next one out); else the
    /// cursor rotates and a freed item comes round after the rest of the pool.
    const REUSE_FREED_FIRST: bool;

    /// The item's position on the family's line.
    fn key(self) -> u128;

    /// The item at `key` (a key of the family's line).
    fn from_key(key: u128) -> Self;

    /// Whether the item may never be handed out.
    fn is_martian(self) -> bool {
        let k = self.key();
        Self::MARTIANS.iter().any(|&(a, b)| (a..=b).contains(&k))
    }

    /// An inclusive range as text, for messages.
    fn range_text(first: Self, last: Self) -> String {
        format!("{first}-{last}")
    }

    /// Whether `first` and `last` may bound one range (a family whose keys hold
    /// several kinds of item, such as [`Prefix6`] of several lengths, says no to a
    /// range that mixes them).
    fn same_kind(_first: Self, _last: Self) -> bool {
        true
    }
}

/// IPv4 addresses. Martians (RFC 1122 §3.2.1.3, RFC 6890): `0.0.0.0/8` ("this
/// network"), `127.0.0.0/8` (loopback), `224.0.0.0/4` (multicast) and `240.0.0.0/4`
/// (reserved, with the limited broadcast `255.255.255.255`). At most 2^24 addresses
/// (a /8) in all pools.
impl PoolItem for Ipv4Addr {
    const POOL: &'static str = "pool";
    const NOUN: (&'static str, &'static str) = ("address", "addresses");
    const MARTIANS: &'static [(u128, u128)] = &[
        (0, 0x00ff_ffff),
        (0x7f00_0000, 0x7fff_ffff),
        (0xe000_0000, 0xffff_ffff),
    ];
    const MARTIAN_TEXT: &'static str = "0/8, 127/8, 224/4, 240/4";
    const MAX_ITEMS: u128 = 1 << 24;
    const REUSE_FREED_FIRST: bool = false;

    fn key(self) -> u128 {
        u128::from(u32::from(self))
    }

    fn from_key(key: u128) -> Ipv4Addr {
        Ipv4Addr::from(key as u32)
    }
}

/// IPv6 /64 prefixes. Martians: `::/64` (unspecified, loopback, IPv4-mapped; RFC 4291
/// §2.5), link-local `fe80::/10` (§2.5.6) and multicast `ff00::/8` (§2.7). No limit
/// on the size: the bitmap follows the prefixes held.
impl PoolItem for Prefix64 {
    const POOL: &'static str = "IPv6 pool";
    const NOUN: (&'static str, &'static str) = ("prefix", "prefixes");
    const MARTIANS: &'static [(u128, u128)] = &[
        (0, 0),
        (0xfe80 << 48, (0xfec0 << 48) - 1),
        (0xff00 << 48, u64::MAX as u128),
    ];
    const MARTIAN_TEXT: &'static str = "::/64, fe80::/10, ff00::/8";
    const MAX_ITEMS: u128 = u128::MAX;
    const REUSE_FREED_FIRST: bool = true;

    fn key(self) -> u128 {
        u128::from(self.0)
    }

    fn from_key(key: u128) -> Prefix64 {
        Prefix64(key as u64)
    }

    /// The covering prefix when the range is one (`2001:db8:100::/40`).
    fn range_text(first: Self, last: Self) -> String {
        let Some(n) = last.0.checked_sub(first.0).map(|d| u128::from(d) + 1) else {
            return format!("{first} to {last}");
        };
        if n.is_power_of_two() && u128::from(first.0) % n == 0 {
            format!("{}/{}", first.network(), 64 - n.trailing_zeros())
        } else {
            format!("{first} to {last}")
        }
    }
}

/// IPv6 addresses (/128s, DHCPv6 IA_NA, RFC 8415 §6.2). Martians as for
/// [`Prefix64`]: `::/64`, `fe80::/10`, `ff00::/8`. Handed out rotating, as IPv4
/// addresses are.
impl PoolItem for Ipv6Addr {
    const POOL: &'static str = "IPv6 address pool";
    const NOUN: (&'static str, &'static str) = ("address", "addresses");
    const MARTIANS: &'static [(u128, u128)] = &V6_MARTIANS;
    const MARTIAN_TEXT: &'static str = "::/64, fe80::/10, ff00::/8";
    const MAX_ITEMS: u128 = u128::MAX;
    const REUSE_FREED_FIRST: bool = false;

    fn key(self) -> u128 {
        u128::from(self)
    }

    fn from_key(key: u128) -> Ipv6Addr {
        Ipv6Addr::from(key)
    }
}

/// The IPv6 martian address ranges: `::/64`, `fe80::/10`, `ff00::/8`.
const V6_MARTIANS: [(u128, u128); 3] = [
    (0, (1 << 64) - 1),
    (0xfe80 << 112, (0xfec0 << 112) - 1),
    (0xff00 << 112, u128::MAX),
];

/// Keys of [`Prefix6`]: the length in the top 8 bits, the prefix's index among those
/// of its length below.
const fn prefix6_key(len: u8, index: u128) -> u128 {
    ((len as u128) << 120) | index
}

/// The martian ranges of every [`Prefix6`] length: the prefixes overlapping
/// [`V6_MARTIANS`].
const PREFIX6_MARTIANS: [(u128, u128); 3 * (Prefix6::MAX_LEN as usize + 1)] = {
    let mut out = [(0u128, 0u128); 3 * (Prefix6::MAX_LEN as usize + 1)];
    let mut l = 0u32;
    while l <= Prefix6::MAX_LEN as u32 {
        let mut i = 0;
        while i < 3 {
            let (a, b) = V6_MARTIANS[i];
            let (x, y) = if l == 0 {
                (0, 0)
            } else {
                (a >> (128 - l), b >> (128 - l))
            };
            out[l as usize * 3 + i] = (prefix6_key(l as u8, x), prefix6_key(l as u8, y));
            i += 1;
        }
        l += 1;
    }
    out
};

/// IPv6 prefixes of a configured length (DHCPv6 IA_PD, RFC 8415 §6.3: /56s out of a
/// /40). A range holds prefixes of one length. Martians: the prefixes overlapping
/// `::/64`, `fe80::/10` or `ff00::/8`. Handed out lowest free first, as /64s are.
impl PoolItem for Prefix6 {
    const POOL: &'static str = "delegated prefix pool";
    const NOUN: (&'static str, &'static str) = ("prefix", "prefixes");
    const MARTIANS: &'static [(u128, u128)] = &PREFIX6_MARTIANS;
    const MARTIAN_TEXT: &'static str = "prefixes overlapping ::/64, fe80::/10, ff00::/8";
    const MAX_ITEMS: u128 = u128::MAX;
    const REUSE_FREED_FIRST: bool = true;

    fn key(self) -> u128 {
        prefix6_key(self.len(), self.index())
    }

    fn from_key(key: u128) -> Prefix6 {
        Prefix6::from_index((key >> 120) as u8, key & ((1 << 120) - 1))
    }

    /// The covering prefix when the range is one (`2001:db8:100::/40 in /56s`).
    fn range_text(first: Self, last: Self) -> String {
        let n = last.index().wrapping_sub(first.index()).wrapping_add(1);
        if first.len() == last.len()
            && n.is_power_of_two()
            && first.index().is_multiple_of(n)
            && u32::from(first.len()) >= n.trailing_zeros()
        {
            let outer = first.len() - n.trailing_zeros() as u8;
            format!("{}/{outer} in /{}s", first.network(), first.len())
        } else {
            format!("{first} to {last}")
        }
    }

    fn same_kind(first: Self, last: Self) -> bool {
        first.len() == last.len()
    }
}

/// Why an item could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// No pool of that name (or, for [`Pool::take`], not in this pool).
    NoSuchPool,
    /// The pool is exhausted.
    Exhausted,
    /// The item is already in use.
    InUse,
    /// The item may not be handed out (martian or reserved).
    Invalid,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolError::NoSuchPool => "no such pool",
            PoolError::Exhausted => "pool exhausted",
            PoolError::InUse => "already in use",
            PoolError::Invalid => "martian or reserved",
        })
    }
}

/// Why pools could not be built. `Display` is one line naming the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolConfigError<A> {
    /// A pool without ranges.
    NoRanges { pool: String },
    /// A range whose first item is above its last (or, for [`Prefix6`], whose
    /// bounds differ in length).
    Inverted { pool: String, range: (A, A) },
    /// A range holding martian items.
    Martian { pool: String, range: (A, A) },
    /// A pool above [`PoolItem::MAX_ITEMS`].
    TooLarge { pool: String, size: u128 },
    /// Two ranges of one pool overlap.
    RangesOverlap { pool: String, a: (A, A), b: (A, A) },
    /// Two pools of one name.
    DuplicateName { pool: String },
    /// A pool holding a reserved item.
    Reserved { pool: String, item: A },
    /// Two pools overlap.
    PoolsOverlap {
        a: String,
        a_range: (A, A),
        b: String,
        b_range: (A, A),
    },
    /// All pools together above [`PoolItem::MAX_ITEMS`].
    TotalTooLarge { total: u128 },
}

impl<A: PoolItem> fmt::Display for PoolConfigError<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, (noun, nouns)) = (A::POOL, A::NOUN);
        let r = |&(a, b): &(A, A)| A::range_text(a, b);
        match self {
            PoolConfigError::NoRanges { pool } => write!(f, "{kind} {pool:?}: no ranges"),
            PoolConfigError::Inverted { pool, range } if !A::same_kind(range.0, range.1) => {
                write!(f, "{kind} {pool:?}: range {} mixes lengths", r(range))
            }
            PoolConfigError::Inverted { pool, range } => {
                write!(f, "{kind} {pool:?}: inverted range {}", r(range))
            }
            PoolConfigError::Martian { pool, range } => write!(
                f,
                "{kind} {pool:?}: range {} holds martian {nouns} ({})",
                r(range),
                A::MARTIAN_TEXT
            ),
            PoolConfigError::TooLarge { pool, size } => write!(
                f,
                "{kind} {pool:?}: {size} {nouns}, more than the limit of {}",
                A::MAX_ITEMS
            ),
            PoolConfigError::RangesOverlap { pool, a, b } => {
                write!(f, "{kind} {pool:?}: ranges {} and {} overlap", r(a), r(b))
            }
            PoolConfigError::DuplicateName { pool } => write!(f, "duplicate {kind} name {pool:?}"),
            PoolConfigError::Reserved { pool, item } => {
                write!(f, "{kind} {pool:?} holds the reserved {noun} {item}")
            }
            PoolConfigError::PoolsOverlap {
                a,
                a_range,
                b,
                b_range,
            } => write!(
                f,
                "{kind}s {a:?} ({}) and {b:?} ({}) overlap",
                r(a_range),
                r(b_range)
            ),
            PoolConfigError::TotalTooLarge { total } => write!(
                f,
                "{kind}s hold {total} {nouns} in all, more than the limit of {}",
                A::MAX_ITEMS
            ),
        }
    }
}

/// One pool: inclusive ranges of one family, a bitmap of the items held (see the
/// module docs) and the items held outside it.
#[derive(Clone)]
pub struct Pool<A> {
    name: String,
    /// Inclusive key ranges, in the order given.
    ranges: Vec<(u128, u128)>,
    /// Items in all ranges.
    size: u128,
    /// Items the bitmap may cover: `min(size, WINDOW)`.
    window: u64,
    /// Held items among the first `bits.len()`.
    bits: BitVec<u64, Lsb0>,
    /// Set bits in `bits`.
    held_bits: u64,
    /// Held item indexes at or above `bits.len()`.
    sparse: BTreeSet<u128>,
    /// Held item indexes at or above `window`.
    beyond: u64,
    /// Where the next allocation scan starts (with [`PoolItem::REUSE_FREED_FIRST`]
    /// every item below it is held).
    cursor: u64,
    /// Items held.
    in_use: u64,
    _item: PhantomData<A>,
}

impl<A> fmt::Debug for Pool<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("in_use", &self.in_use)
            .finish_non_exhaustive()
    }
}

/// An inclusive key range tagged with its place in the configuration.
type Tagged<T> = ((u128, u128), T);

/// Two overlapping ranges, in the order of their tags.
fn first_overlap<T: Copy + Ord>(mut v: Vec<Tagged<T>>) -> Option<(Tagged<T>, Tagged<T>)> {
    v.sort_by_key(|&(r, _)| r);
    v.windows(2).find_map(|w| match w {
        [x, y] if y.0 .0 <= x.0 .1 => Some(if x.1 <= y.1 { (*x, *y) } else { (*y, *x) }),
        _ => None,
    })
}

fn items<A: PoolItem>((a, b): (u128, u128)) -> (A, A) {
    (A::from_key(a), A::from_key(b))
}

impl<A: PoolItem> Pool<A> {
    /// A pool of inclusive ranges. Refused: no range, an inverted range, a range
    /// holding martians, ranges that overlap, more than [`PoolItem::MAX_ITEMS`].
    /// Nothing is allocated for the items yet (the bitmap grows on demand).
    pub fn new(name: &str, ranges: &[(A, A)]) -> Result<Pool<A>, PoolConfigError<A>> {
        let pool = || String::from(name);
        if ranges.is_empty() {
            return Err(PoolConfigError::NoRanges { pool: pool() });
        }
        let mut size = 0u128;
        let mut keys = Vec::with_capacity(ranges.len());
        for &(a, b) in ranges {
            let (lo, hi) = (a.key(), b.key());
            if lo > hi || !A::same_kind(a, b) {
                return Err(PoolConfigError::Inverted {
                    pool: pool(),
                    range: (a, b),
                });
            }
            if A::MARTIANS.iter().any(|&(x, y)| x <= hi && lo <= y) {
                return Err(PoolConfigError::Martian {
                    pool: pool(),
                    range: (a, b),
                });
            }
            size = size.saturating_add(hi - lo).saturating_add(1);
            keys.push((lo, hi));
        }
        if size > A::MAX_ITEMS {
            return Err(PoolConfigError::TooLarge { pool: pool(), size });
        }
        if let Some((x, y)) = first_overlap(keys.iter().copied().zip(0usize..).collect()) {
            return Err(PoolConfigError::RangesOverlap {
                pool: pool(),
                a: items(x.0),
                b: items(y.0),
            });
        }
        Ok(Pool {
            name: pool(),
            ranges: keys,
            size,
            window: size.min(u128::from(WINDOW)) as u64,
            bits: BitVec::new(),
            held_bits: 0,
            sparse: BTreeSet::new(),
            beyond: 0,
            cursor: 0,
            in_use: 0,
            _item: PhantomData,
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The inclusive ranges, in the order given.
    pub fn ranges(&self) -> impl Iterator<Item = (A, A)> + '_ {
        self.ranges.iter().map(|&r| items(r))
    }

    /// Items held.
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    /// Items in the pool.
    pub fn size(&self) -> u128 {
        self.size
    }

    /// (items held outside the bitmap, bitmap bits): what the pool's memory grows
    /// with.
    pub fn footprint(&self) -> (usize, usize) {
        (self.sparse.len(), self.bits.len())
    }

    fn index_of(&self, item: A) -> Option<u128> {
        let k = item.key();
        let mut base = 0u128;
        for &(a, b) in &self.ranges {
            if (a..=b).contains(&k) {
                return Some(base.saturating_add(k - a));
            }
            base = base.saturating_add(b - a).saturating_add(1);
        }
        None
    }

    fn item_at(&self, mut idx: u128) -> Option<A> {
        for &(a, b) in &self.ranges {
            let n = (b - a).saturating_add(1);
            if idx < n {
                return Some(A::from_key(a + idx));
            }
            idx -= n;
        }
        None
    }

    /// Whether `item` belongs to this pool.
    pub fn contains(&self, item: A) -> bool {
        self.index_of(item).is_some()
    }

    /// Extend the bitmap (doubling, from [`GROW_MIN`], up to the window), moving the
    /// held items it now covers out of the sparse set.
    fn grow(&mut self) {
        let old = self.bits.len() as u64;
        let new = (old * 2).max(GROW_MIN).min(self.window);
        if new <= old {
            return;
        }
        self.bits.resize(new as usize, false);
        let moved: Vec<u128> = self
            .sparse
            .range(u128::from(old)..u128::from(new))
            .copied()
            .collect();
        for i in moved {
            self.sparse.remove(&i);
            self.bits.set(i as usize, true);
            self.held_bits += 1;
        }
    }

    /// The first free bit at or after the cursor, else from the start.
    fn scan(&self) -> Option<u64> {
        let c = (self.cursor as usize).min(self.bits.len());
        let after = self
            .bits
            .get(c..)
            .and_then(|s| s.first_zero())
            .map(|i| i + c);
        after
            .or_else(|| self.bits.get(..c).and_then(|s| s.first_zero()))
            .map(|i| i as u64)
    }

    /// Hand out a free item.
    pub fn alloc(&mut self) -> Result<A, PoolError> {
        if self.in_use - self.beyond >= self.window {
            return Err(PoolError::Exhausted);
        }
        loop {
            let len = self.bits.len() as u64;
            if len < self.window && (len == 0 || self.held_bits * 8 >= len * 7) {
                self.grow();
            }
            if let Some(i) = self.scan() {
                let item = self.item_at(u128::from(i)).ok_or(PoolError::Exhausted)?;
                self.bits.set(i as usize, true);
                self.held_bits += 1;
                self.in_use += 1;
                self.cursor = i + 1;
                return Ok(item);
            }
            if self.bits.len() as u64 >= self.window {
                return Err(PoolError::Exhausted);
            }
            self.grow();
        }
    }

    /// The first free bit at or after the cursor, else from the start, whose item
    /// satisfies `pred`.
    fn scan_where(&self, pred: &dyn Fn(A) -> bool) -> Option<u64> {
        let c = (self.cursor as usize).min(self.bits.len());
        let ok = |i: usize| self.item_at(i as u128).is_some_and(pred);
        let after = self
            .bits
            .get(c..)
            .and_then(|s| s.iter_zeros().map(|i| i + c).find(|&i| ok(i)));
        after
            .or_else(|| {
                self.bits
                    .get(..c)
                    .and_then(|s| s.iter_zeros().find(|&i| ok(i)))
            })
            .map(|i| i as u64)
    }

    /// Hand out a free item that satisfies `pred` (a worker's share of the pool:
    /// the items that steer to it); [`PoolError::Exhausted`] when no free item in
    /// the window does. Scans the free items from the cursor, so with a share of
    /// one item in `k` it looks at about `k` of them.
    pub fn alloc_where(&mut self, pred: &dyn Fn(A) -> bool) -> Result<A, PoolError> {
        if self.in_use - self.beyond >= self.window {
            return Err(PoolError::Exhausted);
        }
        loop {
            let len = self.bits.len() as u64;
            if len < self.window && (len == 0 || self.held_bits * 8 >= len * 7) {
                self.grow();
            }
            if let Some(i) = self.scan_where(pred) {
                let item = self.item_at(u128::from(i)).ok_or(PoolError::Exhausted)?;
                self.bits.set(i as usize, true);
                self.held_bits += 1;
                self.in_use += 1;
                self.cursor = i + 1;
                return Ok(item);
            }
            if self.bits.len() as u64 >= self.window {
                return Err(PoolError::Exhausted);
            }
            self.grow();
        }
    }

    /// Take a specific item (a RADIUS Framed-IP-Address inside this pool).
    /// [`PoolError::NoSuchPool`] if it is not in the pool.
    pub fn take(&mut self, item: A) -> Result<(), PoolError> {
        let i = self.index_of(item).ok_or(PoolError::NoSuchPool)?;
        match usize::try_from(i).ok().filter(|&i| i < self.bits.len()) {
            Some(b) => {
                if self.bits[b] {
                    return Err(PoolError::InUse);
                }
                self.bits.set(b, true);
                self.held_bits += 1;
            }
            None => {
                if !self.sparse.insert(i) {
                    return Err(PoolError::InUse);
                }
                if i >= u128::from(self.window) {
                    self.beyond += 1;
                }
            }
        }
        self.in_use += 1;
        Ok(())
    }

    /// Return an item; items outside the pool or already free are ignored.
    pub fn free(&mut self, item: A) {
        let Some(i) = self.index_of(item) else {
            return;
        };
        match usize::try_from(i).ok().filter(|&i| i < self.bits.len()) {
            Some(b) => {
                if !self.bits[b] {
                    return;
                }
                self.bits.set(b, false);
                self.held_bits -= 1;
                if A::REUSE_FREED_FIRST {
                    self.cursor = self.cursor.min(b as u64);
                }
            }
            None => {
                if !self.sparse.remove(&i) {
                    return;
                }
                if i >= u128::from(self.window) {
                    self.beyond -= 1;
                }
            }
        }
        self.in_use -= 1;
    }
}

/// The named pools of one family (the first is the default), the reserved items
/// (never handed out nor taken) and the fixed items held outside every pool.
#[derive(Debug, Clone)]
pub struct Pools<A> {
    pools: Vec<Pool<A>>,
    reserved: Vec<A>,
    statics: BTreeSet<A>,
}

impl<A> Default for Pools<A> {
    fn default() -> Self {
        Pools {
            pools: Vec::new(),
            reserved: Vec::new(),
            statics: BTreeSet::new(),
        }
    }
}

impl<A: PoolItem> Pools<A> {
    /// From a list of pools (the first is the default) and the reserved items (the
    /// node's own addresses). Refused: more than [`PoolItem::MAX_ITEMS`] in all,
    /// duplicate names, a pool holding a reserved item, pools that overlap.
    pub fn new(pools: Vec<Pool<A>>, reserved: &[A]) -> Result<Pools<A>, PoolConfigError<A>> {
        let total = pools.iter().fold(0u128, |t, p| t.saturating_add(p.size));
        if total > A::MAX_ITEMS {
            return Err(PoolConfigError::TotalTooLarge { total });
        }
        for (i, p) in pools.iter().enumerate() {
            if pools.iter().take(i).any(|q| q.name == p.name) {
                return Err(PoolConfigError::DuplicateName {
                    pool: p.name.clone(),
                });
            }
            if let Some(&item) = reserved.iter().find(|r| p.contains(**r)) {
                return Err(PoolConfigError::Reserved {
                    pool: p.name.clone(),
                    item,
                });
            }
        }
        let all = pools
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.ranges.iter().map(move |&r| (r, i)))
            .collect();
        if let Some((x, y)) = first_overlap(all) {
            let name = |i: usize| pools.get(i).map_or_else(String::new, |p| p.name.clone());
            return Err(PoolConfigError::PoolsOverlap {
                a: name(x.1),
                a_range: items(x.0),
                b: name(y.1),
                b_range: items(y.0),
            });
        }
        Ok(Pools {
            pools,
            reserved: reserved.to_vec(),
            statics: BTreeSet::new(),
        })
    }

    /// Hand out an item of the pool `name` (or of the default pool).
    pub fn alloc(&mut self, name: Option<&str>) -> Result<A, PoolError> {
        let p = match name {
            Some(n) => self
                .pools
                .iter_mut()
                .find(|p| p.name == n)
                .ok_or(PoolError::NoSuchPool)?,
            None => self.pools.first_mut().ok_or(PoolError::NoSuchPool)?,
        };
        p.alloc()
    }

    /// [`Pools::alloc`] restricted to the items that satisfy `pred`
    /// ([`Pool::alloc_where`]).
    pub fn alloc_where(
        &mut self,
        name: Option<&str>,
        pred: &dyn Fn(A) -> bool,
    ) -> Result<A, PoolError> {
        let p = match name {
            Some(n) => self
                .pools
                .iter_mut()
                .find(|p| p.name == n)
                .ok_or(PoolError::NoSuchPool)?,
            None => self.pools.first_mut().ok_or(PoolError::NoSuchPool)?,
        };
        p.alloc_where(pred)
    }

    /// Whether `item` may be handed out at all (not martian, not reserved).
    pub fn assignable(&self, item: A) -> bool {
        !item.is_martian() && !self.reserved.contains(&item)
    }

    /// Take a specific item: in its pool if one holds it, else in the set of fixed
    /// items. Martian and reserved items are [`PoolError::Invalid`]; an item already
    /// held is [`PoolError::InUse`].
    pub fn take(&mut self, item: A) -> Result<(), PoolError> {
        if !self.assignable(item) {
            return Err(PoolError::Invalid);
        }
        match self.pools.iter_mut().find(|p| p.contains(item)) {
            Some(p) => p.take(item),
            None if self.statics.insert(item) => Ok(()),
            None => Err(PoolError::InUse),
        }
    }

    /// Return an item to whichever pool (or the fixed set) holds it.
    pub fn free(&mut self, item: A) {
        match self.pools.iter_mut().find(|p| p.contains(item)) {
            Some(p) => p.free(item),
            None => {
                self.statics.remove(&item);
            }
        }
    }

    /// Whether `item` lies in some pool.
    pub fn contains(&self, item: A) -> bool {
        self.pools.iter().any(|p| p.contains(item))
    }

    /// Fixed items held outside every pool.
    pub fn statics_in_use(&self) -> usize {
        self.statics.len()
    }

    /// (fixed items outside the pools, items held outside the pools' bitmaps): the
    /// entries that grow with what is taken by name (for memory reports).
    pub fn footprint(&self) -> (usize, usize) {
        let sparse = self.pools.iter().map(|p| p.footprint().0).sum();
        (self.statics.len(), sparse)
    }

    /// Whether no pool is configured.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// The pools.
    pub fn iter(&self) -> impl Iterator<Item = &Pool<A>> {
        self.pools.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn p6(s: &str) -> (Prefix64, Prefix64) {
        let n: crate::addr::Net6 = s.parse().unwrap();
        let len = n.len.min(64);
        let lo = Prefix64::of(n.network()).0;
        let span = if len == 0 {
            u64::MAX
        } else {
            (1u64 << (64 - len)) - 1
        };
        (Prefix64(lo), Prefix64(lo | span))
    }

    fn pool6(name: &str, s: &str) -> Pool<Prefix64> {
        Pool::new(name, &[p6(s)]).unwrap()
    }

    fn pd(s: &str, len: u8) -> (Prefix6, Prefix6) {
        Prefix6::split(s.parse().unwrap(), len).unwrap()
    }

    #[test]
    fn delegated_prefixes_of_a_length() {
        let r = pd("2001:db8:100::/40", 56);
        assert_eq!(r.0.to_string(), "2001:db8:100::/56");
        assert_eq!(r.1.to_string(), "2001:db8:1ff:ff00::/56");
        let mut p = Pool::new("pd", &[r]).unwrap();
        assert_eq!(p.size(), 1 << 16);
        let a = p.alloc().unwrap();
        let b = p.alloc().unwrap();
        assert_eq!(a.to_string(), "2001:db8:100::/56");
        assert_eq!(b.to_string(), "2001:db8:100:100::/56");
        assert_eq!(Prefix6::from_key(b.key()), b);
        p.free(a);
        assert_eq!(p.alloc(), Ok(a), "lowest free first");
        assert_eq!(p.take(b), Err(PoolError::InUse));
        let other = Prefix6::new("2001:db8:100:200::".parse().unwrap(), 56).unwrap();
        assert_eq!(p.take(other), Ok(()));
        // A /60 is another item than the /56 it lies in.
        let p60 = Prefix6::new("2001:db8:100::".parse().unwrap(), 60).unwrap();
        assert!(!p.contains(p60));
        assert_eq!(
            PoolConfigError::<Prefix6>::Inverted {
                pool: "x".into(),
                range: r
            }
            .to_string(),
            "delegated prefix pool \"x\": inverted range 2001:db8:100::/40 in /56s"
        );
        // One length per range; martians refused at every length.
        let mixed = (r.0, pd("2001:db8:100::/40", 60).1);
        assert!(matches!(
            Pool::new("m", &[mixed]),
            Err(PoolConfigError::Inverted { .. })
        ));
        assert!(Pool::new("m", &[mixed])
            .unwrap_err()
            .to_string()
            .contains("mixes lengths"));
        for bad in [
            ("fe80::/10", 56),
            ("::/32", 48),
            ("f000::/4", 8),
            ("ff00::/8", 64),
        ] {
            assert!(
                matches!(
                    Pool::new("m", &[pd(bad.0, bad.1)]),
                    Err(PoolConfigError::Martian { .. })
                ),
                "{bad:?}"
            );
        }
        let mut all = Pools::new(vec![p], &[]).unwrap();
        let fe80 = Prefix6::new("fe80::".parse().unwrap(), 64).unwrap();
        assert_eq!(all.take(fe80), Err(PoolError::Invalid));
        // A fixed prefix outside the pools (RADIUS Delegated-IPv6-Prefix).
        let fixed = Prefix6::new("2001:db8:ff00::".parse().unwrap(), 48).unwrap();
        assert_eq!(all.take(fixed), Ok(()));
        assert_eq!(all.take(fixed), Err(PoolError::InUse));
        assert_eq!(all.statics_in_use(), 1);
        assert_eq!(Prefix6::new(Ipv6Addr::UNSPECIFIED, 121), None);
    }

    #[test]
    fn ipv6_addresses() {
        let x = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let mut p = Pool::new("na", &[(x("2001:db8::100"), x("2001:db8::1ff"))]).unwrap();
        assert_eq!(p.size(), 256);
        assert_eq!(p.alloc(), Ok(x("2001:db8::100")));
        assert_eq!(p.alloc(), Ok(x("2001:db8::101")));
        p.free(x("2001:db8::100"));
        assert_eq!(p.alloc(), Ok(x("2001:db8::102")), "rotating");
        assert!(matches!(
            Pool::new("ll", &[(x("fe80::1"), x("fe80::2"))]),
            Err(PoolConfigError::Martian { .. })
        ));
    }

    #[test]
    fn alloc_free_exhaust() {
        let mut p = Pool::new(
            "a",
            &[
                (a("10.0.0.10"), a("10.0.0.12")),
                (a("10.0.1.0"), a("10.0.1.0")),
            ],
        )
        .unwrap();
        assert_eq!(p.size(), 4);
        let got: Vec<Ipv4Addr> = (0..4).map(|_| p.alloc().unwrap()).collect();
        assert_eq!(
            got,
            [
                a("10.0.0.10"),
                a("10.0.0.11"),
                a("10.0.0.12"),
                a("10.0.1.0")
            ]
        );
        assert_eq!(p.alloc(), Err(PoolError::Exhausted));
        p.free(a("10.0.0.11"));
        p.free(a("10.0.0.11"));
        p.free(a("10.9.9.9"));
        assert_eq!(p.in_use(), 3);
        assert_eq!(p.alloc(), Ok(a("10.0.0.11")));
        assert_eq!(p.take(a("10.0.0.12")), Err(PoolError::InUse));
        assert_eq!(p.take(a("10.0.2.0")), Err(PoolError::NoSuchPool));
    }

    #[test]
    fn alloc_where_hands_out_only_the_share_asked_for() {
        let mut p = Pool::new("a", &[(a("10.0.0.0"), a("10.0.3.255"))]).unwrap();
        let odd = |x: Ipv4Addr| x.octets()[3] % 2 == 1;
        let mut got = BTreeSet::new();
        for _ in 0..512 {
            let x = p.alloc_where(&odd).unwrap();
            assert!(odd(x) && got.insert(x), "{x}");
        }
        // Every odd address is out; the even half is still there, one by one.
        assert_eq!(p.alloc_where(&odd), Err(PoolError::Exhausted));
        assert_eq!(p.in_use(), 512);
        let e = p.alloc().unwrap();
        assert!(!odd(e));
        p.free(a("10.0.2.7"));
        assert_eq!(p.alloc_where(&odd), Ok(a("10.0.2.7")));
        let mut ps = Pools::new(alloc::vec![p], &[]).unwrap();
        assert_eq!(ps.alloc_where(Some("x"), &odd), Err(PoolError::NoSuchPool));
        assert_eq!(ps.alloc_where(None, &odd), Err(PoolError::Exhausted));
        assert!(ps.alloc_where(None, &|x| !odd(x)).is_ok());
    }

    /// A freed address comes round again only after the rest of the pool has.
    #[test]
    fn freed_addresses_are_reused_last() {
        let mut p = Pool::new("a", &[(a("10.0.0.0"), a("10.0.0.255"))]).unwrap();
        let first = p.alloc().unwrap();
        p.free(first);
        let next: Vec<Ipv4Addr> = (0..255).map(|_| p.alloc().unwrap()).collect();
        assert!(!next.contains(&first));
        assert_eq!(p.alloc(), Ok(first));
        assert_eq!(p.alloc(), Err(PoolError::Exhausted));
    }

    #[test]
    fn named_pools() {
        let mut ps = Pools::new(
            vec![
                Pool::new("default", &[(a("10.0.0.1"), a("10.0.3.232"))]).unwrap(),
                Pool::new("gold", &[(a("10.1.0.0"), a("10.1.0.1"))]).unwrap(),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(ps.alloc(Some("gold")), Ok(a("10.1.0.0")));
        assert_eq!(ps.alloc(Some("nope")), Err(PoolError::NoSuchPool));
        assert_eq!(ps.alloc(None), Ok(a("10.0.0.1")));
        assert_eq!(ps.take(a("10.0.0.7")), Ok(()));
        assert_ne!(ps.alloc(None), Ok(a("10.0.0.7")));
        assert_eq!(ps.iter().next().unwrap().in_use(), 3);
        assert!(Pools::<Ipv4Addr>::default().is_empty());
    }

    /// Issue 20 item 2: an address outside every pool was not tracked, so two sessions
    /// could both hold 8.8.4.4; martians and our own addresses were accepted.
    #[test]
    fn fixed_addresses_outside_pools_are_held_once_and_martians_refused() {
        let gw = a("100.64.0.1");
        let mut ps = Pools::new(
            vec![Pool::new("d", &[(a("100.64.0.2"), a("100.64.0.9"))]).unwrap()],
            &[gw, a("198.51.100.1")],
        )
        .unwrap();
        assert_eq!(ps.take(a("8.8.4.4")), Ok(()));
        assert_eq!(ps.take(a("8.8.4.4")), Err(PoolError::InUse));
        assert_eq!(ps.statics_in_use(), 1);
        ps.free(a("8.8.4.4"));
        assert_eq!(ps.take(a("8.8.4.4")), Ok(()));
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "198.51.100.1",
        ] {
            assert_eq!(ps.take(a(bad)), Err(PoolError::Invalid), "{bad}");
        }
        assert_eq!(ps.take(a("100.64.0.5")), Ok(()));
        assert_eq!(ps.take(a("100.64.0.5")), Err(PoolError::InUse));
    }

    /// Issue 20 item 2: overlapping pools handed out one address twice, a pool could
    /// hold the gateway, and `0.0.0.0/0` overflowed the size computation.
    #[test]
    fn overlapping_huge_martian_or_gateway_pools_are_refused() {
        let r30 = (a("10.0.0.0"), a("10.0.0.3"));
        let r31 = (a("10.0.0.2"), a("10.0.0.3"));
        let p = |n: &str, r: &[(Ipv4Addr, Ipv4Addr)]| Pool::new(n, r).unwrap();
        let e = Pools::new(vec![p("a", &[r30]), p("b", &[r30])], &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pools \"a\" (10.0.0.0-10.0.0.3) and \"b\" (10.0.0.0-10.0.0.3) overlap"
        );
        assert!(Pools::new(vec![p("a", &[r30]), p("b", &[r31])], &[]).is_err());
        let e = Pool::new("a", &[r30, r31]).unwrap_err();
        assert!(e.to_string().contains("overlap"), "{e}");
        let e = Pools::new(
            vec![p("a", &[r30]), p("a", &[(a("10.0.1.0"), a("10.0.1.0"))])],
            &[],
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "duplicate pool name \"a\"");
        let e = Pools::new(vec![p("a", &[r30])], &[a("10.0.0.1")]).unwrap_err();
        assert_eq!(
            e,
            PoolConfigError::Reserved {
                pool: "a".into(),
                item: a("10.0.0.1")
            }
        );
        let e = Pool::new("all", &[(a("0.0.0.0"), a("255.255.255.255"))]).unwrap_err();
        assert!(e.to_string().contains("martian"), "{e}");
        let e = Pool::new("big", &[(a("10.0.0.0"), a("11.255.255.255"))]).unwrap_err();
        assert!(e.to_string().contains("limit of 16777216"), "{e}");
        let e = Pool::new("inv", &[(a("10.0.0.9"), a("10.0.0.1"))]).unwrap_err();
        assert!(e.to_string().contains("inverted"), "{e}");
        assert!(Pool::new("lo", &[(a("126.255.255.0"), a("127.0.0.5"))]).is_err());
        assert!(Pool::new("mc", &[(a("223.255.255.0"), a("224.0.0.0"))]).is_err());
        assert!(Pool::<Ipv4Addr>::new("empty", &[]).is_err());
        let big = |n: &str, r| Pool::new(n, &[r]).unwrap();
        let e = Pools::new(
            vec![
                big("x", (a("10.0.0.0"), a("10.255.255.255"))),
                big("y", (a("11.0.0.0"), a("11.0.0.0"))),
            ],
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("in all"), "{e}");
        // Adjacent is fine; a /8 is the most one pool holds.
        let ok = Pools::new(
            vec![p("a", &[r30]), p("b", &[(a("10.0.0.4"), a("10.0.0.7"))])],
            &[],
        );
        assert!(ok.is_ok());
        let mut slash8 = Pool::new("slash8", &[(a("10.0.0.0"), a("10.255.255.255"))]).unwrap();
        assert_eq!(slash8.size(), 1 << 24);
        assert_eq!(slash8.footprint(), (0, 0), "nothing allocated up front");
        assert_eq!(slash8.take(a("10.255.255.255")), Ok(()));
        assert_eq!(slash8.alloc(), Ok(a("10.0.0.0")));
        assert_eq!(slash8.footprint(), (1, GROW_MIN as usize));
        // Every address of two adjacent pools is handed out exactly once.
        let mut ps = ok.unwrap();
        let mut got: Vec<Ipv4Addr> = (0..4).map(|_| ps.alloc(Some("a")).unwrap()).collect();
        got.extend((0..4).map(|_| ps.alloc(Some("b")).unwrap()));
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), 8);
    }

    /// The bitmap grows with the items held, items taken beyond it move into it when
    /// it reaches them, and every item of a pool larger than the first growth step is
    /// handed out exactly once.
    #[test]
    fn bitmap_grows_on_demand_and_absorbs_taken_items() {
        let mut p = Pool::new("a", &[(a("10.0.0.0"), a("10.0.15.255"))]).unwrap();
        let taken = [a("10.0.4.1"), a("10.0.15.255")];
        for t in taken {
            p.take(t).unwrap();
        }
        assert_eq!(p.footprint(), (2, 0));
        let mut got = BTreeSet::new();
        while let Ok(x) = p.alloc() {
            assert!(got.insert(x), "{x} twice");
        }
        assert_eq!(got.len(), 4096 - 2);
        assert!(taken.iter().all(|t| !got.contains(t)));
        assert_eq!(p.footprint(), (0, 4096));
        assert_eq!(p.take(a("10.0.4.1")), Err(PoolError::InUse));
        p.free(a("10.0.4.1"));
        assert_eq!(p.alloc(), Ok(a("10.0.4.1")));
    }

    #[test]
    fn prefix_pools() {
        // A /62 holds four /64s.
        let (b, _) = p6("2001:db8:0:4::/62");
        let mut p = pool6("v6", "2001:db8:0:4::/62");
        let at = |i: u64| Prefix64(b.0 + i);
        assert_eq!(p.size(), 4);
        assert_eq!(p.take(at(2)), Ok(()));
        assert_eq!(p.take(at(2)), Err(PoolError::InUse));
        assert_eq!(p.take(at(4)), Err(PoolError::NoSuchPool));
        let got: Vec<Prefix64> = (0..3).map(|_| p.alloc().unwrap()).collect();
        assert_eq!(got, [at(0), at(1), at(3)]);
        assert_eq!(p.alloc(), Err(PoolError::Exhausted));
        assert_eq!(p.in_use(), 4);
        p.free(at(1));
        p.free(at(1));
        p.free(at(99));
        assert_eq!(p.in_use(), 3);
        assert_eq!(p.alloc(), Ok(at(1)));
        assert_eq!(p.alloc(), Err(PoolError::Exhausted));
        // A freed /64 is the next one out.
        let mut p = pool6("v6", "2001:db8::/48");
        let x: Vec<Prefix64> = (0..3).map(|_| p.alloc().unwrap()).collect();
        p.free(x[1]);
        p.free(x[0]);
        assert_eq!(p.alloc(), Ok(x[0]));
        assert_eq!(p.alloc(), Ok(x[1]));
        assert_eq!(p.alloc(), Ok(Prefix64(x[2].0 + 1)));
        // Freed then taken by name: not handed out twice.
        let mut p = pool6("v6", "2001:db8::/62");
        let x = p.alloc().unwrap();
        p.free(x);
        p.take(x).unwrap();
        assert_ne!(p.alloc().unwrap(), x);
    }

    /// A pool of 2^32 /64s (or 2^64) costs the memory of the prefixes held; the ones
    /// above the bitmap's window can still be taken, once.
    #[test]
    fn huge_prefix_pools_cost_memory_per_prefix_held() {
        let mut p = pool6("big", "2001:db8::/32");
        assert_eq!(p.size(), 1 << 32);
        for _ in 0..1000 {
            p.alloc().unwrap();
        }
        assert_eq!(p.in_use(), 1000);
        assert!(p.footprint().1 <= 2048, "{:?}", p.footprint());
        let top = Prefix64(0x2001_0db8_ffff_ffff);
        assert_eq!(p.take(top), Ok(()));
        assert_eq!(p.take(top), Err(PoolError::InUse));
        p.free(top);
        assert_eq!(p.footprint().0, 0);
        let mut all = Pool::new("all", &[(Prefix64(1 << 62), Prefix64((1 << 63) - 1))]).unwrap();
        assert_eq!(all.size(), 1 << 62);
        assert_eq!(all.alloc(), Ok(Prefix64(1 << 62)));
        assert!(Pool::new("zero", &[p6("::/63")]).is_err());
        assert!(Pool::new("everything", &[p6("::/0")]).is_err());
    }

    #[test]
    fn named_prefix_pools() {
        let mut ps = Pools::new(
            vec![
                pool6("default", "2001:db8:100::/40"),
                pool6("gold", "2001:db8:200::/63"),
            ],
            &[],
        )
        .unwrap();
        let gold = p6("2001:db8:200::/63").0;
        assert_eq!(ps.alloc(Some("gold")), Ok(gold));
        assert_eq!(ps.alloc(Some("nope")), Err(PoolError::NoSuchPool));
        assert_eq!(ps.alloc(None), Ok(p6("2001:db8:100::/40").0));
        assert_eq!(ps.take(Prefix64(gold.0 + 1)), Ok(()));
        assert_eq!(ps.alloc(Some("gold")), Err(PoolError::Exhausted));
        let outside = Prefix64(0x3fff_0000_0000_0001);
        assert_eq!(ps.take(outside), Ok(()));
        assert_eq!(ps.take(outside), Err(PoolError::InUse));
        ps.free(Prefix64(gold.0 + 1));
        assert_eq!(ps.alloc(Some("gold")), Ok(Prefix64(gold.0 + 1)));
        assert!(!ps.is_empty());
    }

    /// Issue 20 item 2 (IPv6): a Framed-IPv6-Prefix outside every pool was not
    /// tracked, martian prefixes were accepted, and overlapping pools were not refused.
    #[test]
    fn fixed_prefixes_tracked_martians_and_overlaps_refused() {
        let ours = Prefix64(0x2001_0db8_ffff_0000);
        let mut ps = Pools::new(vec![pool6("v6", "2001:db8:100::/48")], &[ours]).unwrap();
        let outside = Prefix64(0x2001_0db8_0900_0001);
        assert_eq!(ps.take(outside), Ok(()));
        assert_eq!(ps.take(outside), Err(PoolError::InUse));
        ps.free(outside);
        assert_eq!(ps.take(outside), Ok(()));
        assert_eq!(ps.statics_in_use(), 1);
        for bad in [0, 0xfe80 << 48, 0xfebf_ffff_ffff_ffff, 0xff02 << 48, ours.0] {
            assert_eq!(ps.take(Prefix64(bad)), Err(PoolError::Invalid), "{bad:x}");
        }
        let e = Pools::new(
            vec![pool6("a", "2001:db8::/48"), pool6("b", "2001:db8::/56")],
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "IPv6 pools \"a\" (2001:db8::/48) and \"b\" (2001:db8::/56) overlap"
        );
        assert!(Pools::new(
            vec![pool6("a", "2001:db8::/48"), pool6("a", "2001:db9::/48")],
            &[]
        )
        .is_err());
        for m in ["fe80::/64", "ff00::/8", "::/63"] {
            let e = Pool::new("m", &[p6(m)]).unwrap_err();
            assert!(e.to_string().contains("martian prefixes (::/64"), "{e}");
        }
        assert!(Pools::new(vec![pool6("own", "2001:db8:ffff::/48")], &[ours]).is_err());
        assert!(Pools::new(
            vec![pool6("a", "2001:db8::/48"), pool6("b", "2001:db8:1::/48")],
            &[]
        )
        .is_ok());
    }

    /// Issue 20 item 10: a prefix taken by Framed-IPv6-Prefix and freed again, over
    /// and over, piled up entries.
    #[test]
    fn take_free_churn_keeps_memory_bounded() {
        let mut p = pool6("v6", "2001:db8::/48");
        let x = p.alloc().unwrap();
        let y = p.alloc().unwrap();
        p.free(x);
        let far = Prefix64(0x2001_0db8_0000_9999);
        for _ in 0..10_000 {
            p.take(x).unwrap();
            p.free(x);
            p.take(far).unwrap();
            p.free(far);
        }
        assert_eq!(p.footprint(), (0, GROW_MIN as usize));
        assert_eq!(p.in_use(), 1);
        assert_eq!(p.alloc(), Ok(x));
        assert_ne!(p.alloc(), Ok(y));
    }

    /// Against a model: random allocations, takes and frees on a pool of two ranges
    /// (larger than the bitmap's first size, so it grows; small enough to run out)
    /// never hand out a held item, count what is held, and are exhausted only when
    /// every item is held.
    fn model_check<A: PoolItem>(ranges: &[(A, A)], ops: &[(u8, u16)]) {
        let mut p = Pool::new("m", ranges).unwrap();
        let size = p.size() as u64;
        let all: Vec<A> = (0..size)
            .map(|i| p.item_at(u128::from(i)).unwrap())
            .collect();
        let mut held = BTreeSet::new();
        for &(op, x) in ops {
            let item = all[usize::from(x) % all.len()];
            match op % 4 {
                0 | 1 => match p.alloc() {
                    Ok(a) => assert!(held.insert(a), "{a} handed out while held"),
                    Err(e) => {
                        assert_eq!(e, PoolError::Exhausted);
                        assert_eq!(held.len() as u64, size);
                    }
                },
                2 => assert_eq!(p.take(item).is_ok(), held.insert(item)),
                _ => {
                    p.free(item);
                    held.remove(&item);
                }
            }
            assert_eq!(p.in_use(), held.len() as u64);
        }
    }

    proptest::proptest! {
        #[test]
        fn pool_matches_a_model(ops in proptest::collection::vec((0u8..4, 0u16..2000), 0..3000)) {
            let v4 = [(a("10.0.0.0"), a("10.0.4.255")), (a("10.1.0.0"), a("10.1.0.99"))];
            model_check(&v4, &ops);
            let b = 0x2001_0db8_0000_0000u64;
            let v6 = [(Prefix64(b), Prefix64(b + 1199)), (Prefix64(b + 5000), Prefix64(b + 5099))];
            model_check(&v6, &ops);
        }
    }
}
