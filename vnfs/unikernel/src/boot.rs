//! Boot stub: 32-bit entry from a PVH loader (Xen PVH boot ABI, `XEN_ELFNOTE_PHYS32_ENTRY`,
//! xen/include/public/arch-x86/hvm/start_info.h) or, with the `multiboot` feature, a
//! Multiboot 1 loader (Multiboot Specification 0.6.96 §3.1, a.out kludge, flag bit 16).
//!
//! Both loaders enter in 32-bit protected mode with paging off (and .bss zeroed). The
//! stub records the TSC, identity-maps the first 4 GiB with 2 MiB pages (PAE/long-mode
//! tables), enables SSE (CR4.OSFXSR|OSXMMEXCPT, CR0.MP, !CR0.EM), sets EFER.LME,
//! turns on paging, loads a 64-bit GDT and calls [`crate::kernel_main`] with the
//! loader's `eax` (Multiboot magic) and `ebx` (info pointer).

use core::arch::global_asm;

/// Size of the boot stack (in .bss).
pub const STACK_SIZE: usize = 256 * 1024;

#[cfg(feature = "multiboot")]
global_asm!(
    r#"
    .section .multiboot, "a"
    .p2align 2
multiboot_header:
    .long 0x1BADB002
    .long 0x00010003
    .long -(0x1BADB002 + 0x00010003)
    .long multiboot_header
    .long __load_start
    .long __load_end
    .long __bss_end
    .long _start32
"#
);

global_asm!(
    r#"
    .section .note.Xen, "a"
    .p2align 2
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .p2align 2
    .quad _start32

    .section .text.boot, "ax"
    .code32
    .global _start32
_start32:
    cli
    cld
    mov edi, eax
    mov esi, ebx
    rdtsc
    mov ebp, eax
    mov ebx, edx
    mov edx, edi

    /* .bss is already zero: QEMU's PVH ELF loader fills p_memsz beyond p_filesz with
       zeroes, and Multiboot loaders clear load_end_addr..bss_end_addr (spec 3.1.3). */
    mov edi, edx
    mov dword ptr [BOOT_TSC], ebp
    mov dword ptr [BOOT_TSC + 4], ebx
    mov esp, offset BOOT_STACK + {stack_size}

    /* PML4[0] -> PDPT, PDPT[0..4] -> PD0..PD3, PDx -> 2 MiB pages */
    mov eax, offset BOOT_PDPT
    or eax, 3
    mov dword ptr [BOOT_PML4], eax
    mov eax, offset BOOT_PD
    or eax, 3
    xor ecx, ecx
boot_pdpt_loop:
    mov dword ptr [BOOT_PDPT + ecx * 8], eax
    add eax, 4096
    inc ecx
    cmp ecx, 4
    jne boot_pdpt_loop
    xor ecx, ecx
boot_pd_loop:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov dword ptr [BOOT_PD + ecx * 8], eax
    mov eax, ecx
    shr eax, 11
    mov dword ptr [BOOT_PD + ecx * 8 + 4], eax
    inc ecx
    cmp ecx, 2048
    jne boot_pd_loop

    mov eax, offset BOOT_PML4
    mov cr3, eax
    mov eax, cr4
    or eax, 0x620
    mov cr4, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    and eax, 0xFFFFFFF3
    or eax, 0x80000003
    mov cr0, eax
    lgdt [BOOT_GDT_PTR]
    push 0x08
    mov eax, offset boot_long_mode
    push eax
    retf

    .code64
boot_long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov esp, offset BOOT_STACK + {stack_size}
    xor ebp, ebp
    mov edi, edi
    mov esi, esi
    fninit
    call {main}
boot_halt:
    hlt
    jmp boot_halt

    .section .rodata.boot_gdt, "a"
    .p2align 4
BOOT_GDT:
    .quad 0
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
BOOT_GDT_PTR:
    .word 23
    .long BOOT_GDT

    .section .bss.boot, "aw", @nobits
    .p2align 12
BOOT_PML4:
    .skip 4096
    .global BOOT_PDPT
BOOT_PDPT:
    .skip 4096
BOOT_PD:
    .skip 4096 * 4
    .p2align 4
BOOT_STACK:
    .skip {stack_size}
    .global BOOT_TSC
BOOT_TSC:
    .skip 8
"#,
    stack_size = const STACK_SIZE,
    main = sym crate::kernel_main,
);

extern "C" {
    static BOOT_TSC: u64;
}

/// TSC value read by the first instructions of the boot stub.
pub fn boot_tsc() -> u64 {
    // SAFETY: written once by the boot stub before Rust runs; read-only afterwards.
    unsafe { core::ptr::addr_of!(BOOT_TSC).read_volatile() }
}

/// Load an IDT whose 32 exception vectors report the fault on the console and exit.
pub fn install_idt() {
    // SAFETY: the table is written once here before `lidt`, with handler addresses
    // from `exception_stubs`; interrupts stay disabled so only CPU exceptions use it.
    unsafe {
        let stubs = core::ptr::addr_of!(EXC_STUBS) as u64;
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for (v, e) in idt.iter_mut().enumerate() {
            let (h, ist) = if v == 14 {
                (core::ptr::addr_of!(PF_ENTRY) as u64, 1u64)
            } else {
                (stubs + (v as u64) * 16, 0)
            };
            e[0] = (h & 0xFFFF) | (0x08 << 16) | (ist << 32) | (0x8E00 << 32) | ((h >> 16) & 0xFFFF) << 48;
            e[1] = h >> 32;
        }
        load_tss();
        let ptr = IdtPtr {
            limit: (core::mem::size_of::<[[u64; 2]; 32]>() - 1) as u16,
            base: idt.as_ptr() as u64,
        };
        core::arch::asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack));
    }
}

extern "C" {
    static PF_ENTRY: u8;
}

/// Task-state segment (SDM Vol. 3A §7.7): only IST1 is used, for the page-fault stack.
#[repr(C, packed)]
struct Tss {
    _r0: u32,
    rsp: [u64; 3],
    _r1: u64,
    ist: [u64; 7],
    _r2: u64,
    _r3: u16,
    iomap: u16,
}

static mut TSS: Tss = Tss {
    _r0: 0,
    rsp: [0; 3],
    _r1: 0,
    ist: [0; 7],
    _r2: 0,
    _r3: 0,
    iomap: 104,
};
/// The runtime GDT: null, 64-bit code (0x08), data (0x10), TSS (0x18, two slots).
static mut GDT: [u64; 5] = [0, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF, 0, 0];

#[repr(C, align(16))]
struct IstStack([u8; 16384]);
static mut PF_STACK: IstStack = IstStack([0; 16384]);

static FAULT_READY: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// True once the page-fault handler has its own stack (see `sparse`).
pub fn fault_handler_ready() -> bool {
    FAULT_READY.load(core::sync::atomic::Ordering::Relaxed)
}

/// Load a GDT with a TSS whose IST1 is the page-fault stack.
///
/// # Safety
/// Called once at boot, single CPU, interrupts disabled.
unsafe fn load_tss() {
    // SAFETY: per the caller; the statics are only written here.
    unsafe {
        let tss = core::ptr::addr_of_mut!(TSS);
        let top = (core::ptr::addr_of!(PF_STACK) as u64 + 16384) & !15;
        (*tss).ist[0] = top;
        let base = tss as u64;
        let limit = (core::mem::size_of::<Tss>() - 1) as u64;
        let gdt = &mut *core::ptr::addr_of_mut!(GDT);
        gdt[3] = (limit & 0xFFFF)
            | ((base & 0xFF_FFFF) << 16)
            | (0x89 << 40)
            | (((limit >> 16) & 0xF) << 48)
            | (((base >> 24) & 0xFF) << 56);
        gdt[4] = base >> 32;
        let ptr = IdtPtr {
            limit: (core::mem::size_of::<[u64; 5]>() - 1) as u16,
            base: gdt.as_ptr() as u64,
        };
        // Same code/data descriptors as the boot GDT, so CS/SS stay valid.
        core::arch::asm!("lgdt [{}]", "mov ax, 0x18", "ltr ax", in(reg) &ptr, out("ax") _, options(nostack));
        // CR0.WP: read-only pages also bind the kernel (the zero-page mappings rely on it).
        core::arch::asm!("mov {0}, cr0", "or {0}, 0x10000", "mov cr0, {0}", out(reg) _, options(nostack));
    }
    FAULT_READY.store(true, core::sync::atomic::Ordering::Relaxed);
}

#[repr(C, packed)]
struct IdtPtr {
    limit: u16,
    base: u64,
}

static mut IDT: [[u64; 2]; 32] = [[0; 2]; 32];

extern "C" {
    static EXC_STUBS: u8;
}

// 32 stubs of 16 bytes each: push the vector, jump to the common handler, which passes
// (vector, pointer to the interrupted stack frame) to Rust.
global_asm!(
    r#"
    .section .text.exc, "ax"
    .p2align 4
    .global EXC_STUBS
EXC_STUBS:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .p2align 4
    push \v
    jmp exc_common
    .endr
    .global exc_common
exc_common:
    pop rdi
    mov rsi, rsp
    and rsp, -16
    call {handler}
exc_halt:
    hlt
    jmp exc_halt
"#,
    handler = sym exception,
);

extern "C" fn exception(vector: u64, frame: *const u64) -> ! {
    // Vectors 8, 10-14, 17, 21, 29, 30 push an error code before RIP.
    let has_err = matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30);
    // SAFETY: `frame` points at the CPU-pushed interrupt frame (5 or 6 qwords).
    let (err, rip) = unsafe {
        if has_err {
            (frame.read(), frame.add(1).read())
        } else {
            (0, frame.read())
        }
    };
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
    crate::println!("FATAL: CPU exception {vector} at rip={rip:#x} error={err:#x} cr2={cr2:#x}");
    crate::arch::exit(crate::arch::EXIT_FAULT)
}
