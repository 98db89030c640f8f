//! Demand-zero memory for large zeroed tables (the engine's 64 MiB DIR-24-8 `tbl24`):
//! a virtual window above the identity map whose 4 KiB pages all map one shared zero
//! page read-only. Reads see zeroes; the first write to a page takes a page fault
//! (Intel SDM Vol. 3A §4.7, error code P=1 W=1), which maps a fresh zeroed page there
//! and restarts the instruction. A table that is mostly empty costs only the pages it
//! writes, so guest RAM follows what the VNF uses, not what it reserves.
//!
//! A freed block gives its written pages back (zeroed, to a free list the fault
//! handler takes from first) and is remapped to the zero page; its range is kept in a
//! few slots and handed out again to an allocation of the same size and alignment.
//! A table replaced at run time (a router's FIB after a route change) thus reuses
//! the old one's window and pages: repeated changes do not grow the guest's memory.
//!
//! The fault handler runs on its own stack (TSS IST1, SDM §6.14.5) so the interrupted
//! code's red zone survives, and saves all caller-saved and SSE state (FXSAVE).

use core::alloc::Layout;
use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Start of the window: right above the 4 GiB identity map (PML4[0], PDPT[4..]).
const WINDOW: usize = 4 << 30;
/// Window size: PDPT entries 4..12 (8 GiB), each a page directory made on demand.
const WINDOW_LEN: usize = 8 << 30;
/// Zeroed allocations at least this large use the window.
pub const SPARSE_MIN: usize = 1 << 20;

const P: u64 = 1;
const W: u64 = 2;

static NEXT: AtomicUsize = AtomicUsize::new(WINDOW);
static ZERO_PAGE: AtomicUsize = AtomicUsize::new(0);
static PAGES: AtomicUsize = AtomicUsize::new(0);
/// Non-zero while allocations must stay identity-mapped (device-visible memory).
static SUSPENDED: AtomicUsize = AtomicUsize::new(0);

/// Run `f` with the window off: everything it allocates is identity-mapped, so
/// physical = virtual holds for DMA (packet pools, virtqueues).
pub fn dma_safe<T>(f: impl FnOnce() -> T) -> T {
    SUSPENDED.fetch_add(1, Ordering::Relaxed);
    let r = f();
    SUSPENDED.fetch_sub(1, Ordering::Relaxed);
    r
}

extern "C" {
    static mut BOOT_PDPT: [u64; 512];
}

/// Pages are cut from zeroed chunks: one 4 KiB-aligned heap block per page would
/// cost the allocator about a page of padding each.
const CHUNK_PAGES: usize = 64;
static CHUNK_NEXT: AtomicUsize = AtomicUsize::new(0);
static CHUNK_LEFT: AtomicUsize = AtomicUsize::new(0);

/// Pages freed blocks gave back (zeroed): a list linked through each page's first word.
static FREE_PAGES: AtomicUsize = AtomicUsize::new(0);

/// Freed window ranges (start, length; 0 when empty), reused by size.
const FREE_SLOTS: usize = 8;
static FREE_START: [AtomicUsize; FREE_SLOTS] = [const { AtomicUsize::new(0) }; FREE_SLOTS];
static FREE_LEN: [AtomicUsize; FREE_SLOTS] = [const { AtomicUsize::new(0) }; FREE_SLOTS];

/// A zeroed, identity-mapped 4 KiB page: one a freed block gave back, else cut from
/// a chunk (page tables are never freed).
fn page() -> Option<*mut u64> {
    let f = FREE_PAGES.load(Ordering::Relaxed);
    if f != 0 {
        // SAFETY: `f` heads the free list of whole identity-mapped pages of ours; its
        // first word links the next one and is cleared before the page is handed out.
        unsafe {
            let p = f as *mut usize;
            FREE_PAGES.store(*p, Ordering::Relaxed);
            *p = 0;
        }
        return Some(f as *mut u64);
    }
    if CHUNK_LEFT.load(Ordering::Relaxed) == 0 {
        let l = Layout::from_size_align(CHUNK_PAGES * 4096, 4096).ok()?;
        // SAFETY: non-zero size; identity-mapped because page tables and pages must be.
        let p = dma_safe(|| unsafe { alloc::alloc::alloc_zeroed(l) });
        if p.is_null() {
            return None;
        }
        CHUNK_NEXT.store(p as usize, Ordering::Relaxed);
        CHUNK_LEFT.store(CHUNK_PAGES, Ordering::Relaxed);
    }
    let p = CHUNK_NEXT.fetch_add(4096, Ordering::Relaxed);
    CHUNK_LEFT.fetch_sub(1, Ordering::Relaxed);
    Some(p as *mut u64)
}

/// Pages materialised by writes so far.
pub fn pages() -> usize {
    PAGES.load(Ordering::Relaxed)
}

/// Reserve `layout` in the window, every page mapped to the zero page. `None` when the
/// window or the memory for page tables runs out (the caller falls back).
pub fn alloc(layout: Layout) -> Option<*mut u8> {
    if !crate::boot::fault_handler_ready() || SUSPENDED.load(Ordering::Relaxed) != 0 {
        return None;
    }
    let zero = match ZERO_PAGE.load(Ordering::Relaxed) {
        0 => {
            let z = page()? as usize;
            ZERO_PAGE.store(z, Ordering::Relaxed);
            z
        }
        z => z,
    };
    let align = layout.align().max(4096);
    let len = (layout.size() + 0xfff) & !0xfff;
    // A freed range of the same size: every page already maps the zero page.
    for i in 0..FREE_SLOTS {
        let st = FREE_START[i].load(Ordering::Relaxed);
        if st != 0 && FREE_LEN[i].load(Ordering::Relaxed) == len && st.is_multiple_of(align) {
            FREE_START[i].store(0, Ordering::Relaxed);
            FREE_LEN[i].store(0, Ordering::Relaxed);
            return Some(st as *mut u8);
        }
    }
    let start = NEXT.load(Ordering::Relaxed).checked_add(align - 1)? & !(align - 1);
    let end = start.checked_add((layout.size() + 0xfff) & !0xfff)?;
    if end > WINDOW + WINDOW_LEN {
        return None;
    }
    let mut va = start;
    while va < end {
        let pte = pte_slot(va, true)?;
        // SAFETY: `pte` points into a page table of ours.
        unsafe { *pte = zero as u64 | P };
        va += 4096;
    }
    NEXT.store(end, Ordering::Relaxed);
    // SAFETY: reloading CR3 flushes the TLB after the new mappings.
    unsafe { asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack)) };
    Some(start as *mut u8)
}

/// Frees the block at `p` of `size` bytes (from [`alloc`]): each page written since
/// goes back zeroed to the free list and its PTE to the zero page; the range is kept
/// for reuse (when every slot is taken, it stays reserved: the window is large).
pub fn free(p: *mut u8, size: usize) {
    let start = p as usize;
    let len = (size + 0xfff) & !0xfff;
    let zero = ZERO_PAGE.load(Ordering::Relaxed) as u64;
    let mut va = start;
    while va < start + len {
        if let Some(pte) = pte_slot(va, false) {
            // SAFETY: `pte` is ours; a written page is ours alone (identity-mapped),
            // zeroed here and linked into the free list through its first word.
            unsafe {
                let e = *pte;
                let phys = e & 0x000f_ffff_ffff_f000;
                if e & P != 0 && phys != zero {
                    *pte = zero | P;
                    core::ptr::write_bytes(phys as usize as *mut u8, 0, 4096);
                    *(phys as usize as *mut usize) = FREE_PAGES.load(Ordering::Relaxed);
                    FREE_PAGES.store(phys as usize, Ordering::Relaxed);
                    PAGES.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        va += 4096;
    }
    // SAFETY: reloading CR3 flushes the TLB: no stale writable translation stays.
    unsafe { asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack)) };
    for i in 0..FREE_SLOTS {
        if FREE_START[i].load(Ordering::Relaxed) == 0 {
            FREE_START[i].store(start, Ordering::Relaxed);
            FREE_LEN[i].store(len, Ordering::Relaxed);
            return;
        }
    }
}

/// True when `p` lies in the window.
pub fn contains(p: *mut u8) -> bool {
    (WINDOW..WINDOW + WINDOW_LEN).contains(&(p as usize))
}

/// The PTE for `va`, creating the page directory and page table when `create`.
fn pte_slot(va: usize, create: bool) -> Option<*mut u64> {
    let pdpt_i = va >> 30;
    let pd_i = (va >> 21) & 511;
    let pt_i = (va >> 12) & 511;
    // SAFETY: BOOT_PDPT is the boot stub's PDPT (identity-mapped, only we write it);
    // entries 4.. are unused by the identity map.
    unsafe {
        let pdpt = &mut *core::ptr::addr_of_mut!(BOOT_PDPT);
        let e = pdpt.get_mut(pdpt_i)?;
        if *e & P == 0 {
            if !create {
                return None;
            }
            *e = page()? as u64 | P | W;
        }
        let pd = (*e & !0xfff) as usize as *mut u64;
        let pde = pd.add(pd_i);
        if *pde & P == 0 {
            if !create {
                return None;
            }
            *pde = page()? as u64 | P | W;
        }
        let pt = (*pde & !0xfff) as usize as *mut u64;
        Some(pt.add(pt_i))
    }
}

/// Page-fault service: a write to a zero-page mapping of the window gets its own page.
/// Returns false for any other fault (reported as fatal by the caller).
extern "C" fn on_page_fault(cr2: u64, err: u64) -> u64 {
    let va = cr2 as usize;
    if !contains(va as *mut u8) || err & (P | W) != (P | W) {
        return 0;
    }
    let Some(pte) = pte_slot(va, false) else { return 0 };
    let Some(fresh) = page() else {
        crate::fatal(
            crate::arch::EXIT_PLATFORM,
            format_args!(
                "memory: out of RAM for a demand-zero page at {va:#x} ({} pages in use, heap {} KiB); give the guest more RAM",
                pages(),
                crate::heap::claimed() / 1024
            ),
        )
    };
    // SAFETY: `pte` is ours; invlpg drops the stale read-only translation.
    unsafe {
        *pte = fresh as u64 | P | W;
        asm!("invlpg [{}]", in(reg) va, options(nostack));
    }
    PAGES.fetch_add(1, Ordering::Relaxed);
    1
}

// #PF entry on IST1: save caller-saved registers and SSE state, ask Rust, then either
// return to the faulting instruction or fall into the fatal exception path.
global_asm!(
    r#"
    .section .text.pf, "ax"
    .global PF_ENTRY
PF_ENTRY:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    sub rsp, 520
    fxsave [rsp]
    mov rdi, cr2
    mov rsi, [rsp + 520 + 72]
    call {handler}
    fxrstor [rsp]
    add rsp, 520
    test rax, rax
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    jz pf_fatal
    add rsp, 8
    iretq
pf_fatal:
    push 14
    jmp exc_common
"#,
    handler = sym on_page_fault,
);
