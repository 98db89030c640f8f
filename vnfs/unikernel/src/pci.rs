//! PCI configuration space through the legacy I/O mechanism #1 (PCI Local Bus
//! Specification 3.0 §3.2.2.3.2: address at 0xCF8, data at 0xCFC).

use crate::arch::{inl, outl};
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

const ADDR: u16 = 0xcf8;
const DATA: u16 = 0xcfc;

/// Port-I/O configuration access (bus 0..255, 256-byte config space).
pub struct PortCam;

fn address(df: DeviceFunction, offset: u8) -> u32 {
    0x8000_0000 | (df.bus as u32) << 16 | (df.device as u32) << 11 | (df.function as u32) << 8 | (offset as u32 & 0xfc)
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        outl(ADDR, address(df, offset));
        inl(DATA)
    }
    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        outl(ADDR, address(df, offset));
        outl(DATA, data);
    }
    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// Whether a PCI host bridge answers at 00:00.0.
pub fn present() -> bool {
    let df = DeviceFunction {
        bus: 0,
        device: 0,
        function: 0,
    };
    let v = PortCam.read_word(df, 0);
    v != 0xffff_ffff && v != 0
}
