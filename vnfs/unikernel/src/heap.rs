//! Kernel heap: `talc` over the RAM the loader reported above the kernel image, minus
//! loader data, with byte counters (current and peak) for the memory KPI.

use crate::bootinfo::{BootInfo, Region, MAPPED_TOP};
use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use talc::source::Manual;
use talc::TalcLock;

struct Counting {
    talc: TalcLock<spinning_top::RawSpinlock, Manual>,
    used: AtomicUsize,
    peak: AtomicUsize,
    claimed: AtomicUsize,
}

// SAFETY: delegates to talc; the counters do not affect allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { self.talc.alloc(layout) };
        if !p.is_null() {
            let u = self.used.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            self.peak.fetch_max(u, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.used.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { self.talc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { self.talc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            self.used.fetch_sub(layout.size(), Ordering::Relaxed);
            let u = self.used.fetch_add(new_size, Ordering::Relaxed) + new_size;
            self.peak.fetch_max(u, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static HEAP: Counting = Counting {
    talc: TalcLock::new(Manual),
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
            claim(Region {
                start,
                len: piece_end.saturating_sub(start),
            });
            start = (resume + 0xfff) & !0xfff;
        }
    }
    claimed()
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

/// Bytes currently allocated.
pub fn used() -> usize {
    HEAP.used.load(Ordering::Relaxed)
}

/// Most bytes ever allocated at once.
pub fn peak() -> usize {
    HEAP.peak.load(Ordering::Relaxed)
}
