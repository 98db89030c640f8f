//! The counting global allocator of the no-allocation tests: a thread counts its
//! allocations (and reallocations) only while it watches (`watch(true)`), so
//! libtest's threads, a test's unwatched set-up and a parallel test's work never
//! count against the code under test. The count itself is per thread too: a test
//! that runs beside another (libtest runs a file's tests in parallel) reads only
//! its own allocations. Each test file installs it with
//! `#[global_allocator] static GLOBAL: counting::Counting = counting::Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};

/// Forwards to the system allocator, counting the calls of watching threads.
pub struct Counting;

thread_local! {
    static WATCH: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    static COUNT: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

/// Allocations the calling thread made while it watched.
pub fn allocs() -> u64 {
    COUNT.with(|c| c.get())
}

/// Sets the calling thread's count back to zero.
#[allow(dead_code)]
pub fn reset() {
    COUNT.with(|c| c.set(0));
}

/// Starts or stops counting the calling thread's allocations.
pub fn watch(on: bool) {
    WATCH.with(|w| w.set(on));
}

fn count() {
    if WATCH.try_with(|w| w.get()).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: forwards to the system allocator unchanged, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}
