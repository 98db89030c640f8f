//! x86-64 primitives: port I/O, TSC, CPUID, halting, and QEMU's `isa-debug-exit`
//! device (QEMU hw/misc/debugexit.c: a write of `v` to port 0xf4 makes QEMU exit
//! with status `(v << 1) | 1`).

use core::arch::asm;

/// Exit code: the VNF stopped normally (QEMU exits with 1).
pub const EXIT_OK: u32 = 0;
/// Exit code: bad configuration (QEMU exits with 5).
pub const EXIT_CONFIG: u32 = 2;
/// Exit code: a device or platform failure (QEMU exits with 7).
pub const EXIT_PLATFORM: u32 = 3;
/// Exit code: CPU exception or panic (QEMU exits with 9).
pub const EXIT_FAULT: u32 = 4;

/// I/O port of the `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4,iosize=4`).
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Write a byte to an I/O port.
#[inline]
pub fn outb(port: u16, v: u8) {
    // SAFETY: port I/O has no memory effects; the kernel owns all devices.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags)) }
}

/// Read a byte from an I/O port.
#[inline]
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: see `outb`.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Write a 16-bit word to an I/O port.
#[inline]
pub fn outw(port: u16, v: u16) {
    // SAFETY: see `outb`.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags)) }
}

/// Write a 32-bit word to an I/O port.
#[inline]
pub fn outl(port: u16, v: u32) {
    // SAFETY: see `outb`.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags)) }
}

/// Read a 32-bit word from an I/O port.
#[inline]
pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: see `outb`.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Read the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is unprivileged and has no side effects (CR4.TSD is clear).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// CPUID leaf `leaf`, sub-leaf 0: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Stop the guest: signal `code` through `isa-debug-exit`, then halt forever if the
/// device is absent (for example on OpenStack).
pub fn exit(code: u32) -> ! {
    crate::serial::flush();
    outl(DEBUG_EXIT_PORT, code);
    loop {
        // SAFETY: interrupts are disabled, so HLT parks the CPU for good.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) }
    }
}
