//! The C memory primitives the compiler emits calls to (`memcpy`, `memmove`, `memset`,
//! `memcmp`, `bcmp`), which no libc provides here, and the unwinding symbols that the
//! prebuilt `core` references even with `panic = "abort"`.

use core::arch::asm;

// Under QEMU's TCG every iteration of a `rep` string instruction is a separate trip
// through the translated block (~20 ns), so bulk moves use an SSE loop of 64 bytes per
// iteration; `rep movsb`/`rep stosb` only handle the sub-64-byte tail.

#[no_mangle]
unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    let blocks = n / 64;
    // SAFETY: the caller guarantees non-overlapping valid ranges of n bytes; the loop
    // copies blocks*64 bytes with unaligned SSE moves, the tail with `rep movsb`
    // (DF is clear by ABI).
    unsafe {
        asm!(
            "test {b}, {b}",
            "jz 3f",
            "2:",
            "movdqu xmm0, [rsi]",
            "movdqu xmm1, [rsi + 16]",
            "movdqu xmm2, [rsi + 32]",
            "movdqu xmm3, [rsi + 48]",
            "movdqu [rdi], xmm0",
            "movdqu [rdi + 16], xmm1",
            "movdqu [rdi + 32], xmm2",
            "movdqu [rdi + 48], xmm3",
            "add rsi, 64",
            "add rdi, 64",
            "dec {b}",
            "jnz 2b",
            "3:",
            "rep movsb",
            b = inout(reg) blocks => _,
            inout("rcx") n % 64 => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            options(nostack),
        );
    }
    dst
}

#[no_mangle]
unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: a forward copy is correct when dst is below src (each block is read
        // before it is overwritten) or when the ranges do not overlap.
        unsafe { memcpy(dst, src, n) }
    } else {
        // SAFETY: copy backwards with DF set, then clear it again.
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rcx") n => _, inout("rdi") dst.add(n).wrapping_sub(1) => _,
                 inout("rsi") src.add(n).wrapping_sub(1) => _, options(nostack));
        }
        dst
    }
}

#[no_mangle]
unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    let blocks = n / 64;
    let pattern = (c as u8 as u64) * 0x0101_0101_0101_0101;
    // SAFETY: the caller guarantees dst..dst+n is writable; blocks*64 bytes are set
    // with unaligned SSE stores, the tail with `rep stosb` (DF is clear by ABI).
    unsafe {
        asm!(
            "movq xmm0, {p}",
            "punpcklqdq xmm0, xmm0",
            "test {b}, {b}",
            "jz 3f",
            "2:",
            "movdqu [rdi], xmm0",
            "movdqu [rdi + 16], xmm0",
            "movdqu [rdi + 32], xmm0",
            "movdqu [rdi + 48], xmm0",
            "add rdi, 64",
            "dec {b}",
            "jnz 2b",
            "3:",
            "rep stosb",
            p = in(reg) pattern,
            b = inout(reg) blocks => _,
            inout("rcx") n % 64 => _,
            inout("rdi") dst => _,
            in("al") c as u8,
            out("xmm0") _,
            options(nostack),
        );
    }
    dst
}

#[no_mangle]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: the caller guarantees both ranges hold n readable bytes.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

#[no_mangle]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

#[no_mangle]
extern "C" fn rust_eh_personality() {}

#[no_mangle]
extern "C" fn _Unwind_Resume() -> ! {
    crate::arch::exit(crate::arch::EXIT_FAULT)
}
