//! Memory for key material. [`Secret<T>`] owns one `T` (an expanded AES-GCM key) and
//! wipes its bytes when dropped (`zeroize`'s volatile writes, after `T`'s own drop).
//!
//! On Linux with the `std` feature the value lives in a `memfd_secret(2)` mapping:
//! pages that are removed from the kernel's direct map, so neither other processes nor
//! the kernel itself (short of changing page tables) can read them, and they are never
//! swapped. When the kernel refuses (`ENOSYS` before 5.14, `secretmem.enable=0`,
//! `RLIMIT_MEMLOCK` exhausted) the value falls back to the heap and a warning says so
//! in the log, once. Elsewhere (unikernel, no `std`) the heap is used.
//!
//! Cost: one page of secret memory per SA (the kernel counts it as locked memory).

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::AtomicBool;
#[cfg(all(feature = "std", target_os = "linux"))]
use core::sync::atomic::Ordering;
use zeroize::Zeroize;

/// Where a [`Secret`] keeps its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// A `memfd_secret(2)` mapping of `len` bytes.
    SecretMem { len: usize },
    /// The global allocator (wiped on drop).
    Heap,
}

static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// An owned `T` in secret memory (or the heap as a logged fallback); zeroized on drop.
pub struct Secret<T> {
    ptr: NonNull<T>,
    storage: Storage,
}

// SAFETY: `Secret<T>` owns its `T` exclusively, like `Box<T>`.
unsafe impl<T: Send> Send for Secret<T> {}
// SAFETY: shared access only hands out `&T`, like `Box<T>`.
unsafe impl<T: Sync> Sync for Secret<T> {}

impl<T> Secret<T> {
    /// Moves `value` into secret memory when the kernel offers it, else onto the heap.
    pub fn new(value: T) -> Self {
        #[cfg(all(feature = "std", target_os = "linux"))]
        {
            match linux::map::<T>() {
                Ok((ptr, len)) => {
                    // SAFETY: `ptr` is a fresh, writable, page-aligned mapping of at
                    // least `size_of::<T>()` bytes (checked in `map`).
                    unsafe { ptr.as_ptr().write(value) };
                    return Secret {
                        ptr,
                        storage: Storage::SecretMem { len },
                    };
                }
                Err(errno) => {
                    if !FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            errno,
                            "memfd_secret(2) unavailable (errno {errno}); IPsec keys are kept \
                             on the heap (zeroized on drop) instead of in secret memory"
                        );
                    }
                }
            }
        }
        Self::on_heap(value)
    }

    /// Keeps `value` on the heap (wiped on drop) without trying secret memory.
    pub fn on_heap(value: T) -> Self {
        let layout = Layout::new::<T>();
        let ptr = if layout.size() == 0 {
            NonNull::dangling()
        } else {
            // SAFETY: layout has non-zero size.
            let raw = unsafe { alloc::alloc::alloc(layout) } as *mut T;
            match NonNull::new(raw) {
                Some(p) => p,
                None => alloc::alloc::handle_alloc_error(layout),
            }
        };
        // SAFETY: `ptr` is valid for writes of `T` and properly aligned.
        unsafe { ptr.as_ptr().write(value) };
        let _ = &FALLBACK_LOGGED;
        Secret {
            ptr,
            storage: Storage::Heap,
        }
    }

    pub fn storage(&self) -> Storage {
        self.storage
    }
}

impl<T> core::ops::Deref for Secret<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` holds an initialised `T` for the life of `self`.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> core::ops::DerefMut for Secret<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: `ptr` holds an initialised `T`, and `&mut self` is exclusive.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for Secret<T> {
    fn drop(&mut self) {
        let size = core::mem::size_of::<T>();
        // SAFETY: the `T` is initialised and dropped exactly once, here.
        unsafe { core::ptr::drop_in_place(self.ptr.as_ptr()) };
        if size > 0 {
            // SAFETY: the bytes of the (now dropped) `T` are still our memory.
            let bytes =
                unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr() as *mut u8, size) };
            bytes.zeroize();
        }
        match self.storage {
            Storage::Heap => {
                if size > 0 {
                    // SAFETY: allocated in `on_heap` with this very layout.
                    unsafe {
                        alloc::alloc::dealloc(self.ptr.as_ptr() as *mut u8, Layout::new::<T>())
                    };
                }
            }
            #[cfg(all(feature = "std", target_os = "linux"))]
            Storage::SecretMem { len } => linux::unmap(self.ptr.as_ptr() as *mut u8, len),
            #[cfg(not(all(feature = "std", target_os = "linux")))]
            Storage::SecretMem { .. } => {}
        }
    }
}

/// True when `memfd_secret(2)` works in this process (tries one page).
pub fn secretmem_available() -> bool {
    #[cfg(all(feature = "std", target_os = "linux"))]
    {
        if let Ok((p, len)) = linux::map::<u64>() {
            linux::unmap(p.as_ptr() as *mut u8, len);
            return true;
        }
    }
    false
}

#[cfg(all(feature = "std", target_os = "linux"))]
mod linux {
    use core::ptr::NonNull;

    /// Maps enough `memfd_secret` pages for a `T`; returns the errno on failure.
    pub(super) fn map<T>() -> Result<(NonNull<T>, usize), i32> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = usize::try_from(page)
            .ok()
            .filter(|p| *p > 0)
            .ok_or(libc::EINVAL)?;
        if core::mem::align_of::<T>() > page {
            return Err(libc::EINVAL);
        }
        let len = core::mem::size_of::<T>().max(1).div_ceil(page) * page;
        // SAFETY: plain syscall with an integer flag argument.
        let fd = unsafe { libc::syscall(libc::SYS_memfd_secret, libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(errno());
        }
        let fd = fd as libc::c_int;
        let off = libc::off_t::try_from(len).map_err(|_| libc::EINVAL)?;
        // SAFETY: `fd` is a file descriptor we own.
        if unsafe { libc::ftruncate(fd, off) } != 0 {
            let e = errno();
            // SAFETY: closing our own descriptor.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        // SAFETY: a new shared mapping of our own fd; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        let e = errno();
        // SAFETY: the mapping keeps the memory alive; the descriptor is no longer needed.
        unsafe { libc::close(fd) };
        if p == libc::MAP_FAILED {
            return Err(e);
        }
        NonNull::new(p as *mut T)
            .map(|p| (p, len))
            .ok_or(libc::ENOMEM)
    }

    pub(super) fn unmap(p: *mut u8, len: usize) {
        // SAFETY: `p`/`len` are exactly a mapping made by `map` and not used after this.
        unsafe { libc::munmap(p as *mut libc::c_void, len) };
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_round_trips_and_drops() {
        use alloc::rc::Rc;
        let marker = Rc::new(());
        {
            let s = Secret::new((Rc::clone(&marker), [7u8; 40]));
            assert_eq!(s.1, [7u8; 40]);
            assert_eq!(Rc::strong_count(&marker), 2);
        }
        assert_eq!(Rc::strong_count(&marker), 1, "inner value dropped");
        let h = Secret::on_heap([1u32; 8]);
        assert_eq!(h.storage(), Storage::Heap);
        assert_eq!(*h, [1u32; 8]);
    }

    #[cfg(all(feature = "std", target_os = "linux"))]
    #[test]
    fn storage_matches_kernel_support() {
        let s = Secret::new([0xa5u8; 64]);
        let want = secretmem_available();
        assert_eq!(matches!(s.storage(), Storage::SecretMem { .. }), want);
        std::println!("memfd_secret available: {want}; storage {:?}", s.storage());
    }
}
