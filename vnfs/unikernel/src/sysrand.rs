//! `getrandom(2)` for code linked into the kernel that believes it runs on Linux.
//!
//! The kernel is built for `x86_64-unknown-linux-gnu` (see `.cargo/config.toml`),
//! so `ring`'s `SystemRandom` — the key server's IKE nonces, Diffie-Hellman
//! private keys, SPIs and tunnel keys — goes through the `getrandom` crate's Linux
//! backend: `syscall(SYS_getrandom, buf, len, flags)` from libc, with `errno` on
//! failure. The unikernel has neither libc nor system calls; it defines those
//! symbols here and answers `SYS_getrandom` (and nothing else: `ENOSYS`) from a
//! generator keyed once by [`crate::entropy::seed`] (RDSEED/RDRAND checked, the
//! host's fw_cfg seed, TSC jitter; SHA-256, FIPS 180-4).
//!
//! The generator: output block *i* of a request is SHA-256("out" ‖ K ‖ ctr+i);
//! after every request K ← SHA-256("next" ‖ K ‖ ctr), so an attacker who reads the
//! state later cannot recompute earlier output (backtracking resistance, the
//! property NIST SP 800-90A §8.6.4 asks of a DRBG's update step; this is not a
//! certified SP 800-90A implementation). The key never leaves this module and the
//! output blocks are wiped from the stack after use.

use core::ffi::{c_int, c_long};
use core::sync::atomic::{AtomicI32, Ordering};
use sha2::{Digest, Sha256};
use spinning_top::Spinlock;

/// `SYS_getrandom` on x86-64 (Linux `arch/x86/entry/syscalls/syscall_64.tbl`).
const SYS_GETRANDOM: c_long = 318;
/// `ENOSYS` (asm-generic/errno.h).
const ENOSYS: c_int = 38;

struct Drbg {
    key: [u8; 32],
    ctr: u64,
}

static STATE: Spinlock<Option<Drbg>> = Spinlock::new(None);
static ERRNO: AtomicI32 = AtomicI32::new(0);

/// Key the generator now (the app calls this at boot, so the sources are logged
/// there); returns the seed's sources. A draw before this keys it by itself.
pub fn init() -> crate::entropy::Sources {
    let (mut seed, src) = crate::entropy::seed();
    *STATE.lock() = Some(Drbg { key: seed, ctr: 0 });
    seed.fill(0);
    src
}

/// Fill `dest` from the generator.
pub fn fill(dest: &mut [u8]) {
    let mut g = STATE.lock();
    let d = g.get_or_insert_with(|| {
        let (seed, _) = crate::entropy::seed();
        Drbg { key: seed, ctr: 0 }
    });
    for chunk in dest.chunks_mut(32) {
        let mut h = Sha256::new();
        h.update(b"out");
        h.update(d.key);
        h.update(d.ctr.to_le_bytes());
        d.ctr = d.ctr.wrapping_add(1);
        let mut block: [u8; 32] = h.finalize().into();
        chunk.copy_from_slice(&block[..chunk.len()]);
        block.fill(0);
    }
    let mut h = Sha256::new();
    h.update(b"next");
    h.update(d.key);
    h.update(d.ctr.to_le_bytes());
    d.ctr = d.ctr.wrapping_add(1);
    d.key = h.finalize().into();
}

/// libc's `syscall(long number, ...)`: `SYS_getrandom` only. On x86-64 (System V
/// ABI §3.2.3) a variadic call passes its integer arguments in the same registers
/// as a fixed one, so the first three follow `number` here.
///
/// # Safety
/// For `SYS_getrandom`, `a1` must point to `a2` writable bytes (the contract of
/// getrandom(2)).
#[no_mangle]
pub unsafe extern "C" fn syscall(number: c_long, a1: usize, a2: usize, _a3: usize) -> c_long {
    if number != SYS_GETRANDOM {
        ERRNO.store(ENOSYS, Ordering::Relaxed);
        return -1;
    }
    let len = a2.min(isize::MAX as usize);
    if len > 0 {
        // SAFETY: the caller's buffer of `len` bytes (getrandom(2)).
        fill(unsafe { core::slice::from_raw_parts_mut(a1 as *mut u8, len) });
    }
    len as c_long
}

/// libc's per-thread `errno` (one CPU, one thread).
#[no_mangle]
pub extern "C" fn __errno_location() -> *mut c_int {
    ERRNO.as_ptr()
}
