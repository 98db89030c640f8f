//! Packet buffers: a preallocated pool of fixed-size buffers (DPDK mempool / VPP
//! buffer pool shape) and the owned packet handle [`Pkt`].
//!
//! Every buffer is [`BUF_SIZE`] bytes: [`HEADROOM`] bytes in front of the data so
//! VLAN, PPPoE, IP-in-IP and ESP encapsulation prepend without copying, then
//! [`DATA_ROOM`] bytes of data room. Pools are created at start-up and live for the
//! whole process (`&'static`), like DPDK mempools; after start-up the packet path never
//! calls the allocator: [`PoolCache`] recycles buffers through a preallocated stack and
//! refills/flushes in bulk from the pool's lock-free ring.

use alloc::alloc::{alloc_zeroed, Layout};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr::NonNull;
use crossbeam_queue::ArrayQueue;

/// Bytes reserved in front of the data of a fresh buffer.
pub const HEADROOM: usize = 256;
/// Bytes of data room after the headroom.
pub const DATA_ROOM: usize = 2048;
/// Total size of one buffer.
pub const BUF_SIZE: usize = HEADROOM + DATA_ROOM;
/// Buffers a [`PoolCache`] moves to/from the shared ring at once.
pub const CACHE_BULK: usize = 128;

/// Errors of buffer operations (never a panic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufError {
    /// Not enough headroom to prepend.
    NoHeadroom,
    /// Not enough tailroom to append.
    NoTailroom,
    /// Asked to remove more bytes than the packet holds.
    TooShort,
}

impl core::fmt::Display for BufError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BufError::NoHeadroom => "no headroom",
            BufError::NoTailroom => "no tailroom",
            BufError::TooShort => "packet too short",
        })
    }
}

/// Per-packet metadata carried beside the buffer (like `rte_mbuf` fields or VPP's
/// `vnet_buffer` opaque).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Port the packet arrived on.
    pub port: u16,
    /// Offset of the L3 header from the start of data (set by classify).
    pub l3: u16,
    /// Offset of the L4 header from the start of data (0 when unknown).
    pub l4: u16,
    /// Packet class set by classify (see `stages::classify::Class`).
    pub class: u8,
    /// Number of VLAN tags found by classify (0..=2).
    pub vlans: u8,
    /// Outer and inner VLAN id (0 when absent).
    pub vlan: [u16; 2],
    /// Symmetric flow hash (see [`crate::hash`]).
    pub hash: u32,
    /// Next-hop / adjacency index chosen by a lookup stage.
    pub nh: u32,
    /// Free for the VNF (session index, SA index, ...).
    pub user: u32,
    /// Receive timestamp in clock ticks (0 when not stamped).
    pub ts: u64,
    /// 0: not traced; otherwise the packet's trace number (recorded by every stage
    /// it passes, see [`crate::stage::Trace`]).
    pub trace: u32,
    /// Graph node a packet handed to another worker resumes at
    /// ([`crate::batch::Next::Handoff`]; set by the engine).
    pub resume: u16,
}

/// A pool of [`BUF_SIZE`]-byte buffers in one contiguous, zeroed allocation.
pub struct Pool {
    base: NonNull<u8>,
    n: u32,
    free: ArrayQueue<u32>,
}

// SAFETY: the pool's memory is only reached through `Pkt`s, each of which owns one
// buffer exclusively (an index is handed out by the free ring at most once until it is
// returned); the free ring itself is a lock-free MPMC queue.
unsafe impl Send for Pool {}
// SAFETY: see above; `&Pool` only exposes the thread-safe free ring.
unsafe impl Sync for Pool {}

impl core::fmt::Debug for Pool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pool")
            .field("buffers", &self.n)
            .field("free", &self.free.len())
            .finish()
    }
}

impl Pool {
    /// Allocates `n` buffers (at start-up) and leaks the pool so packets can refer to
    /// it for the life of the process. Returns `None` when the memory is unavailable.
    pub fn new(n: u32) -> Option<&'static Pool> {
        let n = n.max(1);
        let size = (n as usize).checked_mul(BUF_SIZE)?;
        let layout = Layout::from_size_align(size, 4096).ok()?;
        // SAFETY: layout has non-zero size.
        let base = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        let free = ArrayQueue::new(n as usize);
        for i in 0..n {
            // Capacity is n, so every push succeeds.
            let _ = free.push(i);
        }
        Some(Box::leak(Box::new(Pool { base, n, free })))
    }

    /// A pool over memory the caller provides instead of the allocator: `n` buffers
    /// of [`BUF_SIZE`] bytes from `base` — a shared-memory region a peer maps (memif
    /// zero-copy) or an AF_XDP UMEM, so the buffers a device or peer fills are engine
    /// packets without a copy. Returns `None` when `n` is 0.
    ///
    /// # Safety
    ///
    /// `base` must be aligned to 64 bytes and point to `n * BUF_SIZE` readable and
    /// writable bytes that stay mapped for the rest of the process and that nothing
    /// but this pool's packets (and the peer the memory is shared with, under its
    /// ring protocol) reads or writes.
    pub unsafe fn from_raw(base: NonNull<u8>, n: u32) -> Option<&'static Pool> {
        if n == 0 || !(base.as_ptr() as usize).is_multiple_of(64) {
            return None;
        }
        let free = ArrayQueue::new(n as usize);
        for i in 0..n {
            let _ = free.push(i);
        }
        Some(Box::leak(Box::new(Pool { base, n, free })))
    }

    /// Start of the pool's memory (buffer `i` is at `i * BUF_SIZE`).
    #[inline(always)]
    pub fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Number of buffers in the pool.
    pub fn capacity(&self) -> u32 {
        self.n
    }

    /// Buffers currently in the shared ring (not counting per-worker caches).
    pub fn available(&self) -> usize {
        self.free.len()
    }

    #[inline(always)]
    fn pkt(&'static self, idx: u32) -> Pkt {
        Pkt {
            pool: self,
            idx,
            off: HEADROOM as u16,
            len: 0,
            meta: Meta::default(),
        }
    }

    /// Takes one buffer from the shared ring (slow path; workers use [`PoolCache`]).
    pub fn alloc(&'static self) -> Option<Pkt> {
        self.free.pop().map(|i| self.pkt(i))
    }

    /// Returns a packet's buffer to its pool.
    pub fn free(&self, pkt: Pkt) {
        // The ring has room for every buffer, so this cannot fail for a buffer that
        // came from this pool; a foreign packet goes back to its own pool.
        let _ = pkt.pool.free.push(pkt.idx);
    }

    /// A per-worker cache over this pool. Allocates its stack now (start-up).
    pub fn cache(&'static self) -> PoolCache {
        PoolCache {
            pool: self,
            stack: Vec::with_capacity(CACHE_BULK * 4),
        }
    }

    /// Start of buffer `idx`.
    #[inline(always)]
    fn buf_ptr(&self, idx: u32) -> *mut u8 {
        // SAFETY: idx < n (only indices from the ring exist), so the offset stays in
        // the allocation.
        unsafe { self.base.as_ptr().add(idx as usize * BUF_SIZE) }
    }

    /// True when `pkt` belongs to this pool.
    #[inline]
    pub fn owns(&self, pkt: &Pkt) -> bool {
        core::ptr::eq(pkt.pool, self)
    }
}

/// A worker's private stack of free buffers over a [`Pool`]. Allocation and free are
/// a push/pop on a preallocated `Vec`; the shared ring is touched once per
/// [`CACHE_BULK`] buffers.
pub struct PoolCache {
    pool: &'static Pool,
    stack: Vec<u32>,
}

impl core::fmt::Debug for PoolCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PoolCache")
            .field("cached", &self.stack.len())
            .finish()
    }
}

impl PoolCache {
    /// The pool behind this cache.
    pub fn pool(&self) -> &'static Pool {
        self.pool
    }

    /// Buffers held by this cache.
    pub fn cached(&self) -> usize {
        self.stack.len()
    }

    /// A fresh packet (data empty, headroom [`HEADROOM`]), or `None` when the pool is
    /// exhausted.
    #[inline]
    pub fn alloc(&mut self) -> Option<Pkt> {
        if self.stack.is_empty() {
            self.refill();
        }
        self.stack.pop().map(|i| self.pool.pkt(i))
    }

    #[cold]
    fn refill(&mut self) {
        for _ in 0..CACHE_BULK {
            match self.pool.free.pop() {
                Some(i) => self.stack.push(i),
                None => break,
            }
        }
    }

    /// Frees a packet into the cache (or into its own pool if it is foreign).
    #[inline]
    pub fn free(&mut self, pkt: Pkt) {
        if !core::ptr::eq(pkt.pool, self.pool) {
            pkt.pool.free(pkt);
            return;
        }
        if self.stack.len() == self.stack.capacity() {
            self.flush(CACHE_BULK);
        }
        self.stack.push(pkt.idx);
    }

    #[cold]
    fn flush(&mut self, n: usize) {
        for _ in 0..n {
            if let Some(i) = self.stack.pop() {
                let _ = self.pool.free.push(i);
            }
        }
    }
}

impl Drop for PoolCache {
    fn drop(&mut self) {
        let n = self.stack.len();
        self.flush(n);
    }
}

/// An owned packet: one buffer of a [`Pool`] plus the data window and metadata.
///
/// A `Pkt` is freed only through [`PoolCache::free`] or [`Pool::free`]; dropping it
/// without freeing leaks the buffer (it is not unsafe, just lost to the pool).
#[must_use = "a packet must be sent, punted or freed"]
pub struct Pkt {
    pool: &'static Pool,
    idx: u32,
    off: u16,
    len: u16,
    /// Metadata carried with the packet.
    pub meta: Meta,
}

// SAFETY: a Pkt owns its buffer exclusively; moving it to another thread moves that
// ownership.
unsafe impl Send for Pkt {}

impl core::fmt::Debug for Pkt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pkt")
            .field("idx", &self.idx)
            .field("off", &self.off)
            .field("len", &self.len)
            .field("meta", &self.meta)
            .finish()
    }
}

impl Pkt {
    /// Index of the buffer in its pool.
    #[inline(always)]
    pub fn index(&self) -> u32 {
        self.idx
    }

    /// The pool this packet's buffer belongs to.
    #[inline(always)]
    pub fn pool(&self) -> &'static Pool {
        self.pool
    }

    /// Data length in bytes.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when the packet holds no data.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes free in front of the data.
    #[inline(always)]
    pub fn headroom(&self) -> usize {
        self.off as usize
    }

    /// Bytes free after the data.
    #[inline(always)]
    pub fn tailroom(&self) -> usize {
        BUF_SIZE - self.off as usize - self.len as usize
    }

    /// Raw pointer to the first data byte (for ports that hand buffers to devices).
    #[inline(always)]
    pub fn data_ptr(&self) -> *mut u8 {
        // SAFETY: off <= BUF_SIZE, inside the buffer.
        unsafe { self.pool.buf_ptr(self.idx).add(self.off as usize) }
    }

    /// The packet data.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        // SAFETY: the buffer is owned exclusively by this Pkt and off+len <= BUF_SIZE
        // is an invariant of every method that changes them.
        unsafe { core::slice::from_raw_parts(self.data_ptr(), self.len as usize) }
    }

    /// The packet data, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` gives exclusive access.
        unsafe { core::slice::from_raw_parts_mut(self.data_ptr(), self.len as usize) }
    }

    /// The whole buffer with the current data window as (offset, length) — for
    /// receive paths that fill a buffer and then set the window.
    #[inline]
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        // SAFETY: exclusive ownership of the whole BUF_SIZE buffer.
        unsafe { core::slice::from_raw_parts_mut(self.pool.buf_ptr(self.idx), BUF_SIZE) }
    }

    /// Grows the data by `n` bytes at the front and returns them (zero-copy
    /// encapsulation).
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        if n > self.off as usize {
            return Err(BufError::NoHeadroom);
        }
        self.off -= n as u16;
        self.len += n as u16;
        Ok(&mut self.data_mut()[..n])
    }

    /// Removes `n` bytes from the front (decapsulation).
    #[inline]
    pub fn strip(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.len as usize {
            return Err(BufError::TooShort);
        }
        self.off += n as u16;
        self.len -= n as u16;
        Ok(())
    }

    /// Removes `n` bytes from the end.
    #[inline]
    pub fn trim(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.len as usize {
            return Err(BufError::TooShort);
        }
        self.len -= n as u16;
        Ok(())
    }

    /// Grows the data by `n` bytes at the end and returns them.
    #[inline]
    pub fn append(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        if n > self.tailroom() {
            return Err(BufError::NoTailroom);
        }
        let old = self.len as usize;
        self.len += n as u16;
        Ok(&mut self.data_mut()[old..])
    }

    /// Sets the data length (keeping the front); fails past the buffer end.
    #[inline]
    pub fn set_len(&mut self, n: usize) -> Result<(), BufError> {
        if self.off as usize + n > BUF_SIZE {
            return Err(BufError::NoTailroom);
        }
        self.len = n as u16;
        Ok(())
    }

    /// Moves the data window to start at `off` with length `len` within the buffer.
    #[inline]
    pub fn set_window(&mut self, off: usize, len: usize) -> Result<(), BufError> {
        if off.checked_add(len).is_none_or(|end| end > BUF_SIZE) {
            return Err(BufError::NoTailroom);
        }
        self.off = off as u16;
        self.len = len as u16;
        Ok(())
    }

    /// Empties the packet: default headroom, no data, default metadata.
    #[inline]
    pub fn reset(&mut self) {
        self.off = HEADROOM as u16;
        self.len = 0;
        self.meta = Meta::default();
    }

    /// Replaces the data with a copy of `bytes` (at the default headroom).
    #[inline]
    pub fn copy_from(&mut self, bytes: &[u8]) -> Result<(), BufError> {
        if bytes.len() > DATA_ROOM {
            return Err(BufError::NoTailroom);
        }
        self.off = HEADROOM as u16;
        self.len = bytes.len() as u16;
        self.data_mut().copy_from_slice(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_roundtrip() {
        let pool = Pool::new(300).unwrap();
        let mut c = pool.cache();
        let mut v = Vec::new();
        while let Some(p) = c.alloc() {
            v.push(p);
        }
        assert_eq!(v.len(), 300);
        let mut idx: Vec<u32> = v.iter().map(|p| p.index()).collect();
        idx.sort();
        idx.dedup();
        assert_eq!(idx.len(), 300, "each buffer handed out once");
        for p in v {
            c.free(p);
        }
        drop(c);
        assert_eq!(pool.available(), 300);
    }

    #[test]
    fn prepend_strip_trim_append() {
        let pool = Pool::new(4).unwrap();
        let mut c = pool.cache();
        let mut p = c.alloc().unwrap();
        p.copy_from(&[1, 2, 3, 4]).unwrap();
        assert_eq!(p.headroom(), HEADROOM);
        p.prepend(2).unwrap().copy_from_slice(&[9, 8]);
        assert_eq!(p.data(), &[9, 8, 1, 2, 3, 4]);
        p.strip(3).unwrap();
        assert_eq!(p.data(), &[2, 3, 4]);
        p.trim(1).unwrap();
        assert_eq!(p.data(), &[2, 3]);
        p.append(1).unwrap()[0] = 7;
        assert_eq!(p.data(), &[2, 3, 7]);
        assert_eq!(p.strip(4), Err(BufError::TooShort));
        assert_eq!(p.prepend(HEADROOM + 10), Err(BufError::NoHeadroom));
        assert_eq!(p.append(BUF_SIZE), Err(BufError::NoTailroom));
        assert!(p.copy_from(&[0; DATA_ROOM + 1]).is_err());
        c.free(p);
    }

    #[test]
    fn foreign_packet_returns_to_its_pool() {
        let a = Pool::new(2).unwrap();
        let b = Pool::new(2).unwrap();
        let mut ca = a.cache();
        let mut cb = b.cache();
        let p = cb.alloc().unwrap();
        ca.free(p);
        drop(cb);
        assert_eq!(b.available(), 2);
        assert_eq!(ca.cached(), 0);
    }
}
