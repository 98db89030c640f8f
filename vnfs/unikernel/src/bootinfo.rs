//! What the loader tells us: command line, modules (config blobs) and the RAM map.
//!
//! PVH: `struct hvm_start_info` version 0/1 (Xen public/arch-x86/hvm/start_info.h;
//! magic 0x336ec578, module list of `hvm_modlist_entry`, memory map of
//! `hvm_memmap_table_entry`, E820 types). QEMU turns `-append` into the command line
//! and `-initrd` into module 0.
//! Multiboot 1: the boot information structure (Multiboot Specification 0.6.96 §3.3:
//! flags bit 2 cmdline, bit 3 modules, bit 6 mmap, bit 0 mem_lower/upper).

/// Multiboot 1 loader magic in `eax`.
const MULTIBOOT_MAGIC: u32 = 0x2BAD_B002;
/// PVH `hvm_start_info.magic`.
const PVH_MAGIC: u32 = 0x336E_C578;
/// Longest command line or module name we read.
const MAX_CMDLINE: usize = 4096;
/// Highest address identity-mapped by the boot stub.
pub const MAPPED_TOP: u64 = 4 << 30;

const MAX_REGIONS: usize = 16;

/// A physical address range `[start, start + len)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub len: u64,
}

impl Region {
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// Which boot protocol started us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loader {
    Pvh,
    Multiboot,
}

/// A small fixed-capacity list (no heap exists yet while this is filled).
#[derive(Clone, Copy, Debug, Default)]
pub struct Regions {
    items: [Region; MAX_REGIONS],
    n: usize,
}

impl Regions {
    fn push(&mut self, r: Region) {
        if r.len > 0 {
            if let Some(slot) = self.items.get_mut(self.n) {
                *slot = r;
                self.n += 1;
            }
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = &Region> {
        self.items.iter().take(self.n)
    }
    pub fn len(&self) -> usize {
        self.n
    }
}

/// Everything the platform needs from the loader.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    pub loader: Loader,
    /// Kernel command line (bytes, without the NUL).
    pub cmdline: &'static [u8],
    /// Modules (`-initrd`, GRUB `module`): config blobs.
    pub modules: Regions,
    /// Usable RAM (E820 type 1).
    pub ram: Regions,
    /// Loader data we must not allocate over (info block, cmdline, module list, modules, map).
    pub reserved: Regions,
}

/// The loader handed us something we cannot use.
#[derive(Debug)]
pub enum BootError {
    UnknownLoader { eax: u32, ebx: u32 },
    NoMemoryMap,
}

impl core::fmt::Display for BootError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::UnknownLoader { eax, ebx } => {
                write!(
                    f,
                    "unknown boot protocol (eax={eax:#x}, ebx={ebx:#x}); expected PVH or Multiboot 1"
                )
            }
            Self::NoMemoryMap => write!(f, "the loader gave no memory map"),
        }
    }
}

/// Read a `T` at physical address `addr` (identity-mapped).
///
/// # Safety
/// `addr..addr+size_of::<T>()` must be mapped memory written by the loader.
unsafe fn rd<T: Copy>(addr: u64) -> T {
    // SAFETY: per the caller; unaligned reads are fine on x86.
    unsafe { core::ptr::read_unaligned(addr as usize as *const T) }
}

/// A NUL-terminated string at `addr`, at most `MAX_CMDLINE` bytes.
///
/// # Safety
/// `addr` must be 0 or point at loader-written memory below `MAPPED_TOP`.
unsafe fn cstr(addr: u64) -> &'static [u8] {
    if addr == 0 || addr >= MAPPED_TOP - MAX_CMDLINE as u64 {
        return &[];
    }
    let mut n = 0usize;
    // SAFETY: per the caller; we stop at NUL or MAX_CMDLINE.
    while n < MAX_CMDLINE && unsafe { rd::<u8>(addr + n as u64) } != 0 {
        n += 1;
    }
    // SAFETY: the n bytes were just read and the loader does not modify them later.
    unsafe { core::slice::from_raw_parts(addr as usize as *const u8, n) }
}

/// Decode the loader's boot information.
///
/// # Safety
/// Must be called with the `eax`/`ebx` values the boot stub received.
pub unsafe fn parse(eax: u32, ebx: u32) -> Result<BootInfo, BootError> {
    let base = ebx as u64;
    // SAFETY: ebx points at the loader's info block in both protocols.
    // PVH first: qboot (microvm's firmware) enters PVH kernels with eax still holding
    // the Multiboot magic.
    if base != 0 && unsafe { rd::<u32>(base) } == PVH_MAGIC {
        unsafe { parse_pvh(base) }
    } else if eax == MULTIBOOT_MAGIC {
        unsafe { parse_multiboot(base) }
    } else {
        Err(BootError::UnknownLoader { eax, ebx })
    }
}

unsafe fn parse_pvh(si: u64) -> Result<BootInfo, BootError> {
    // SAFETY (whole function): fields of `hvm_start_info` and the tables it points to.
    unsafe {
        let version: u32 = rd(si + 4);
        let nr_modules: u32 = rd(si + 12);
        let modlist: u64 = rd(si + 16);
        let cmdline_pa: u64 = rd(si + 24);
        let mut info = BootInfo {
            loader: Loader::Pvh,
            cmdline: cstr(cmdline_pa),
            modules: Regions::default(),
            ram: Regions::default(),
            reserved: Regions::default(),
        };
        info.reserved.push(Region { start: si, len: 56 });
        info.reserved.push(Region {
            start: cmdline_pa,
            len: info.cmdline.len() as u64 + 1,
        });
        let nr_modules = nr_modules.min(MAX_REGIONS as u32) as u64;
        if modlist != 0 && nr_modules > 0 {
            info.reserved.push(Region {
                start: modlist,
                len: 32 * nr_modules,
            });
            for i in 0..nr_modules {
                let e = modlist + 32 * i;
                let m = Region {
                    start: rd(e),
                    len: rd(e + 8),
                };
                if m.end() <= MAPPED_TOP {
                    info.modules.push(m);
                    info.reserved.push(m);
                }
            }
        }
        if version >= 1 {
            let memmap: u64 = rd(si + 40);
            let entries: u32 = rd(si + 48);
            info.reserved.push(Region {
                start: memmap,
                len: 24 * entries as u64,
            });
            for i in 0..entries.min(64) as u64 {
                let e = memmap + 24 * i;
                let ty: u32 = rd(e + 16);
                if ty == 1 {
                    info.ram.push(Region {
                        start: rd(e),
                        len: rd(e + 8),
                    });
                }
            }
        }
        if info.ram.len() == 0 {
            e820_from_fwcfg(&mut info.ram);
        }
        if info.ram.len() == 0 {
            return Err(BootError::NoMemoryMap);
        }
        Ok(info)
    }
}

/// Version-0 start_info (qboot on microvm) has no memory map: read QEMU's E820 table
/// from fw_cfg `etc/e820` (packed `{u64 addr, u64 len, u32 type}` entries).
fn e820_from_fwcfg(ram: &mut Regions) {
    let mut buf = [0u8; 20 * 32];
    let Some(n) = crate::fwcfg::read_file_into("etc/e820", &mut buf) else {
        return;
    };
    for e in buf.get(..n).unwrap_or(&[]).chunks_exact(20) {
        let q = |o: usize| e.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
        let t = e.get(16..20).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
        if let (Some(start), Some(len), Some(1)) = (q(0), q(8), t) {
            ram.push(Region { start, len });
        }
    }
}

unsafe fn parse_multiboot(mbi: u64) -> Result<BootInfo, BootError> {
    // SAFETY (whole function): fields of the Multiboot information structure.
    unsafe {
        let flags: u32 = rd(mbi);
        let mut info = BootInfo {
            loader: Loader::Multiboot,
            cmdline: &[],
            modules: Regions::default(),
            ram: Regions::default(),
            reserved: Regions::default(),
        };
        info.reserved.push(Region { start: mbi, len: 120 });
        if flags & (1 << 2) != 0 {
            let pa = rd::<u32>(mbi + 16) as u64;
            info.cmdline = cstr(pa);
            info.reserved.push(Region {
                start: pa,
                len: info.cmdline.len() as u64 + 1,
            });
        }
        if flags & (1 << 3) != 0 {
            let count = (rd::<u32>(mbi + 20) as u64).min(MAX_REGIONS as u64);
            let addr = rd::<u32>(mbi + 24) as u64;
            info.reserved.push(Region {
                start: addr,
                len: 16 * count,
            });
            for i in 0..count {
                let e = addr + 16 * i;
                let start = rd::<u32>(e) as u64;
                let end = rd::<u32>(e + 4) as u64;
                let m = Region {
                    start,
                    len: end.saturating_sub(start),
                };
                info.modules.push(m);
                info.reserved.push(m);
                let name = rd::<u32>(e + 8) as u64;
                info.reserved.push(Region {
                    start: name,
                    len: cstr(name).len() as u64 + 1,
                });
            }
        }
        if flags & (1 << 6) != 0 {
            let len = rd::<u32>(mbi + 44) as u64;
            let addr = rd::<u32>(mbi + 48) as u64;
            info.reserved.push(Region { start: addr, len });
            let mut off = 0u64;
            while off + 24 <= len {
                let size = rd::<u32>(addr + off) as u64;
                let start: u64 = rd(addr + off + 4);
                let l: u64 = rd(addr + off + 12);
                let ty: u32 = rd(addr + off + 20);
                if ty == 1 {
                    info.ram.push(Region { start, len: l });
                }
                off += size + 4;
            }
        } else if flags & 1 != 0 {
            let upper_kb = rd::<u32>(mbi + 8) as u64;
            info.ram.push(Region {
                start: 1 << 20,
                len: upper_kb * 1024,
            });
        }
        if info.ram.len() == 0 {
            return Err(BootError::NoMemoryMap);
        }
        Ok(info)
    }
}

/// The module's bytes.
///
/// # Safety
/// `m` must come from `BootInfo::modules` (loader memory, never allocated over).
pub unsafe fn module_bytes(m: &Region) -> &'static [u8] {
    // SAFETY: per the caller.
    unsafe { core::slice::from_raw_parts(m.start as usize as *const u8, m.len as usize) }
}
