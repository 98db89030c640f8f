//! virtio-net (and virtio-blk) discovery (virtio 1.2 §4.1 PCI transport, §4.2.2 MMIO transport) and the
//! `virtio-drivers` HAL for an identity-mapped kernel.
//!
//! With a PCI host bridge (q35, pc) the bus is scanned for virtio-net functions
//! (vendor 0x1af4, device 0x1000 or 0x1041) whose BARs the firmware assigned; bus
//! mastering and memory decoding are switched on. Without PCI (`-machine microvm`) the
//! 24 virtio-mmio slots at 0xfeb00000 + i·0x200 are probed for magic "virt" and
//! device id 1.

use crate::bootinfo::MAPPED_TOP;
use crate::pci::{self, PortCam};
use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::pci::bus::{Command, PciRoot};
use virtio_drivers::transport::pci::{virtio_device_type, PciTransport};
use virtio_drivers::transport::{DeviceType, SomeTransport, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// HAL for identity-mapped memory: DMA buffers come from the heap, physical = virtual.
pub struct IdentityHal;

// SAFETY: memory is identity-mapped and coherent (x86), so physical addresses equal
// virtual ones; DMA allocations are zeroed, page-aligned and live until dma_dealloc.
unsafe impl Hal for IdentityHal {
    fn dma_alloc(pages: usize, _dir: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let size = pages.max(1) * PAGE_SIZE;
        let Ok(layout) = Layout::from_size_align(size, PAGE_SIZE) else {
            crate::fatal(crate::arch::EXIT_PLATFORM, format_args!("virtio: bad DMA size {size}"));
        };
        // SAFETY: layout has non-zero size.
        let p = crate::sparse::dma_safe(|| unsafe { alloc::alloc::alloc_zeroed(layout) });
        match NonNull::new(p) {
            Some(nn) => (p as usize as PhysAddr, nn),
            None => crate::fatal(
                crate::arch::EXIT_PLATFORM,
                format_args!("virtio: out of memory for {pages} DMA pages"),
            ),
        }
    }
    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let size = pages.max(1) * PAGE_SIZE;
        if let Ok(layout) = Layout::from_size_align(size, PAGE_SIZE) {
            // SAFETY: allocated by dma_alloc with the same layout.
            unsafe { alloc::alloc::dealloc(vaddr.as_ptr(), layout) };
        }
        0
    }
    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        match NonNull::new(paddr as usize as *mut u8) {
            Some(p) => p,
            None => crate::fatal(crate::arch::EXIT_PLATFORM, format_args!("virtio: MMIO at address 0")),
        }
    }
    unsafe fn share(buffer: NonNull<[u8]>, _dir: BufferDirection) -> PhysAddr {
        buffer.cast::<u8>().as_ptr() as usize as PhysAddr
    }
    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _dir: BufferDirection) {}
}

/// A discovered virtio-net device, ready for `VirtIONetRaw::new`.
pub struct Found {
    pub transport: SomeTransport<'static>,
    /// Where it was found (for the log): "pci 00:03.0" or "mmio 0xfeb00e00".
    pub location: alloc::string::String,
}

const MMIO_BASE: u64 = 0xfeb0_0000;
const MMIO_SLOT: u64 = 0x200;
const MMIO_SLOTS: u64 = 24;

/// Find every virtio-net device, in bus order.
pub fn discover() -> Vec<Found> {
    discover_kind(DeviceType::Network)
}

/// Find every virtio device of type `kind` (network, block), in bus order.
pub fn discover_kind(kind: DeviceType) -> Vec<Found> {
    if pci::present() {
        discover_pci(kind)
    } else {
        discover_mmio(kind)
    }
}

fn discover_pci(kind: DeviceType) -> Vec<Found> {
    let mut out = Vec::new();
    let mut root = PciRoot::new(PortCam);
    let mut found = Vec::new();
    for (df, info) in root.enumerate_bus(0) {
        if virtio_device_type(&info) == Some(kind) {
            found.push(df);
        }
    }
    for df in found {
        let (_, cmd) = root.get_status_command(df);
        root.set_command(
            df,
            cmd | Command::MEMORY_SPACE | Command::BUS_MASTER | Command::IO_SPACE,
        );
        if let Ok(bars) = root.bars(df) {
            for bar in bars.iter().flatten() {
                if let Some((addr, size)) = bar.memory_address_size() {
                    if addr.saturating_add(size) > MAPPED_TOP {
                        log::warn!("pci {df}: BAR at {addr:#x} is above 4 GiB; skipped");
                    }
                }
            }
        }
        match PciTransport::new::<IdentityHal, _>(&mut root, df) {
            Ok(t) => out.push(Found {
                transport: t.into(),
                location: alloc::format!("pci {df}"),
            }),
            Err(e) => log::warn!("pci {df}: not usable as virtio: {e}"),
        }
    }
    out
}

fn discover_mmio(kind: DeviceType) -> Vec<Found> {
    let want = kind as u32;
    let mut out = Vec::new();
    // QEMU fills the slots from the top: scanning downwards gives command-line order.
    for i in (0..MMIO_SLOTS).rev() {
        let addr = MMIO_BASE + i * MMIO_SLOT;
        // SAFETY: microvm's virtio-mmio window; reading magic/device id has no side effects.
        let (magic, dev) = unsafe {
            let p = addr as usize as *const u32;
            (p.read_volatile(), p.add(2).read_volatile())
        };
        if magic != 0x7472_6976 || dev != want {
            continue;
        }
        let Some(hdr) = NonNull::new(addr as usize as *mut VirtIOHeader) else {
            continue;
        };
        // SAFETY: a virtio-mmio register block of MMIO_SLOT bytes lives at `addr` for the
        // life of the guest and is used by this transport only.
        match unsafe { MmioTransport::new(hdr, MMIO_SLOT as usize) } {
            Ok(t) if t.device_type() == kind => out.push(Found {
                transport: t.into(),
                location: alloc::format!("mmio {addr:#x}"),
            }),
            Ok(_) => {}
            Err(e) => log::warn!("mmio {addr:#x}: {e}"),
        }
    }
    out
}
