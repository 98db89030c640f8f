//! Kernel heap: `talc` over the RAM the loader reported above the kernel image, minus
//! loader data, with byte counters (current and peak) for the memory KPI.
//!
//! Large zeroed allocations (the packet pool: megabytes) skip the memset when they can:
//! under PVH, RAM that neither the firmware nor the loader touched is still zero (QEMU
//! gives the guest zero-filled RAM; qboot/SeaBIOS keep their data in E820-reserved
//! ranges and the PVH loader's data is excluded below). Such allocations are carved
//! from the top of the largest RAM range, a "fresh" zone that talc never writes to.
//! Clearing megabytes under TCG costs tens of milliseconds of boot time. With any other
//! loader (GRUB has used RAM for its own heap) the memset is always done.

use crate::bootinfo::{BootInfo, Loader, Region, MAPPED_TOP};
use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use talc::source::Manual;
use talc::TalcLock;

struct Counting {
    talc: TalcLock<spinning_top::RawSpinlock, Manual>,
    /// Fresh (still zero) zone: next free byte and end; empty when both are 0.
    fresh_start: AtomicUsize,
    fresh_next: AtomicUsize,
    fresh_end: AtomicUsize,
    used: AtomicUsize,
    peak: AtomicUsize,
    claimed: AtomicUsize,
}

// SAFETY: delegates to talc; the counters do not affect allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let mut p = unsafe { self.talc.alloc(layout) };
        if p.is_null() && self.grow(layout) {
            // SAFETY: forwarded contract.
            p = unsafe { self.talc.alloc(layout) };
        }
        if !p.is_null() {
            let u = self.used.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            self.peak.fetch_max(u, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= crate::sparse::SPARSE_MIN {
            if let Some(p) = crate::sparse::alloc(layout) {
                return p;
            }
        }
        if layout.size() >= FRESH_MIN {
            if let Some(p) = self.fresh_alloc(layout) {
                let u = self.used.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
                self.peak.fetch_max(u, Ordering::Relaxed);
                return p;
            }
        }
        // SAFETY: forwarded contract.
        let p = unsafe { self.alloc(layout) };
        if !p.is_null() {
            // SAFETY: p points at layout.size() writable bytes just allocated.
            unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if crate::sparse::contains(ptr) {
            // Demand-zero tables: pages back to the window's free list.
            crate::sparse::free(ptr, layout.size());
            return;
        }
        self.used.fetch_sub(layout.size(), Ordering::Relaxed);
        let a = ptr as usize;
        if a >= self.fresh_start.load(Ordering::Relaxed) && a < self.fresh_end.load(Ordering::Relaxed) {
            // Fresh-zone blocks (start-up pools) are never reused.
            return;
        }
        // SAFETY: forwarded contract.
        unsafe { self.talc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if crate::sparse::contains(ptr) {
            // A demand-zero block is not talc's: move it.
            let Ok(l) = Layout::from_size_align(new_size, layout.align()) else {
                return core::ptr::null_mut();
            };
            // SAFETY: forwarded contract; both blocks hold at least the copied bytes.
            unsafe {
                let p = self.alloc(l);
                if !p.is_null() {
                    core::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                return p;
            }
        }
        // SAFETY: forwarded contract.
        let mut p = unsafe { self.talc.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if let Ok(l) = Layout::from_size_align(new_size, layout.align()) {
                if self.grow(l) {
                    // SAFETY: forwarded contract.
                    p = unsafe { self.talc.realloc(ptr, layout, new_size) };
                }
            }
        }
        if !p.is_null() {
            self.used.fetch_sub(layout.size(), Ordering::Relaxed);
            let u = self.used.fetch_add(new_size, Ordering::Relaxed) + new_size;
            self.peak.fetch_max(u, Ordering::Relaxed);
        }
        p
    }
}

impl Counting {
    /// Move a piece of the fresh zone into talc so `layout` fits; false when the
    /// zone is exhausted.
    fn grow(&self, layout: Layout) -> bool {
        let want = (layout.size().saturating_add(layout.align()).saturating_add(64 * 1024)).max(GROW_MIN);
        let want = (want + 0xfff) & !0xfff;
        let next = self.fresh_next.load(Ordering::Relaxed);
        let end = self.fresh_end.load(Ordering::Relaxed);
        if next == 0 || next >= end {
            return false;
        }
        let take = want.min(end - next);
        self.fresh_next.store(next + take, Ordering::Relaxed);
        // SAFETY: the range comes from the fresh zone (RAM owned by nobody else) and is
        // never handed out by `fresh_alloc` again.
        unsafe { self.talc.lock().claim(next as *mut u8, take) }.is_some()
    }

    /// Bump-allocate from the fresh zone (single CPU: no contention).
    fn fresh_alloc(&self, layout: Layout) -> Option<*mut u8> {
        let next = self.fresh_next.load(Ordering::Relaxed);
        let start = next.checked_add(layout.align() - 1)? & !(layout.align() - 1);
        let end = start.checked_add(layout.size())?;
        if next == 0 || end > self.fresh_end.load(Ordering::Relaxed) {
            return None;
        }
        self.fresh_next.store(end, Ordering::Relaxed);
        Some(start as *mut u8)
    }
}

/// Smallest zeroed allocation served from the fresh zone.
const FRESH_MIN: usize = 256 * 1024;
/// Part of the largest RAM range claimed by talc up front; the rest is the fresh zone,
/// from which talc grows on demand and large zeroed blocks are carved.
const TALC_INITIAL: u64 = 4 << 20;
/// Smallest piece talc takes from the fresh zone when it grows.
const GROW_MIN: usize = 1 << 20;

#[global_allocator]
static HEAP: Counting = Counting {
    talc: TalcLock::new(Manual),
    fresh_start: AtomicUsize::new(0),
    fresh_next: AtomicUsize::new(0),
    fresh_end: AtomicUsize::new(0),
    used: AtomicUsize::new(0),
    peak: AtomicUsize::new(0),
    claimed: AtomicUsize::new(0),
};

extern "C" {
    static __kernel_end: u8;
}

/// End of the loaded kernel image (.bss included).
pub fn kernel_end() -> u64 {
    core::ptr::addr_of!(__kernel_end) as u64
}

/// Smallest piece of RAM worth claiming.
const MIN_CLAIM: u64 = 64 * 1024;

/// Claim every RAM range above the kernel and below 4 GiB that holds no loader data.
/// Returns the bytes claimed.
pub fn init(info: &BootInfo) -> usize {
    let mut pieces = [Region::default(); 32];
    let mut n = 0;
    free_pieces(info, |r| {
        if let Some(slot) = pieces.get_mut(n) {
            *slot = r;
            n += 1;
        }
    });
    let pieces = pieces.get(..n).unwrap_or_default();
    let largest = pieces.iter().enumerate().max_by_key(|(_, r)| r.len).map(|(i, _)| i);
    for (i, r) in pieces.iter().enumerate() {
        if Some(i) == largest && info.loader == Loader::Pvh {
            // Keep the top part untouched (still zero) for large zeroed allocations.
            let split = (r.start + TALC_INITIAL.min(r.len)) & !0xfff;
            let fresh = r.end() - split;
            claim(Region {
                start: r.start,
                len: split - r.start,
            });
            HEAP.fresh_start.store(split as usize, Ordering::Relaxed);
            HEAP.fresh_next.store(split as usize, Ordering::Relaxed);
            HEAP.fresh_end.store(r.end() as usize, Ordering::Relaxed);
            HEAP.claimed.fetch_add(fresh as usize, Ordering::Relaxed);
        } else {
            claim(*r);
        }
    }
    claimed()
}

/// Call `f` with every RAM range above the kernel and below 4 GiB free of loader data.
fn free_pieces(info: &BootInfo, mut f: impl FnMut(Region)) {
    let floor = (kernel_end() + 0xfff) & !0xfff;
    for r in info.ram.iter() {
        let mut start = r.start.max(floor);
        let end = r.end().min(MAPPED_TOP);
        // Walk the range, skipping reserved pieces in address order.
        while start < end {
            let next_res = info
                .reserved
                .iter()
                .filter(|x| x.len > 0 && x.end() > start && x.start < end)
                .min_by_key(|x| x.start)
                .copied();
            let (piece_end, resume) = match next_res {
                Some(x) if x.start <= start => (start, x.end()),
                Some(x) => (x.start, x.end()),
                None => (end, end),
            };
            f(Region {
                start,
                len: piece_end.saturating_sub(start),
            });
            start = (resume + 0xfff) & !0xfff;
        }
    }
}

fn claim(r: Region) {
    let start = (r.start + 0xfff) & !0xfff;
    let end = r.end() & !0xfff;
    if end <= start || end - start < MIN_CLAIM {
        return;
    }
    let size = (end - start) as usize;
    // SAFETY: the range is RAM from the loader's map, above the kernel image, below
    // the identity-mapped limit, and disjoint from all loader data.
    if unsafe { HEAP.talc.lock().claim(start as usize as *mut u8, size) }.is_some() {
        HEAP.claimed.fetch_add(size, Ordering::Relaxed);
    }
}

/// Bytes handed to the allocator.
pub fn claimed() -> usize {
    HEAP.claimed.load(Ordering::Relaxed)
}

/// Bytes allocated now (demand-zero pages written so far included: they are cut
/// from heap chunks; the window's untouched pages are not).
pub fn used() -> usize {
    HEAP.used.load(Ordering::Relaxed)
}

/// Most bytes ever allocated at once.
pub fn peak() -> usize {
    HEAP.peak.load(Ordering::Relaxed)
}
