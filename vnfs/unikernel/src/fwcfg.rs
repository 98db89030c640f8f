//! QEMU firmware configuration device, I/O-port interface (QEMU docs/specs/fw_cfg.rst:
//! selector 0x510, data 0x511, signature key 0x0000 = "QEMU", file directory key 0x0019
//! of big-endian `FWCfgFile` entries). Used to read a config blob passed with
//! `-fw_cfg name=opt/vnf/config,file=router.toml`.

use crate::arch::{inb, outw};
use alloc::vec::Vec;

const SELECTOR: u16 = 0x510;
const DATA: u16 = 0x511;
const KEY_SIGNATURE: u16 = 0x0000;
const KEY_FILE_DIR: u16 = 0x0019;
/// Largest blob we accept.
const MAX_FILE: u32 = 16 << 20;

fn select(key: u16) {
    outw(SELECTOR, key);
}

fn read_into(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        *b = inb(DATA);
    }
}

fn present() -> bool {
    select(KEY_SIGNATURE);
    let mut sig = [0u8; 4];
    read_into(&mut sig);
    &sig == b"QEMU"
}

/// Find fw_cfg file `name`: (selector key, size).
fn find(name: &str) -> Option<(u16, u32)> {
    if !present() {
        return None;
    }
    select(KEY_FILE_DIR);
    let mut n = [0u8; 4];
    read_into(&mut n);
    let count = u32::from_be_bytes(n).min(4096);
    for _ in 0..count {
        let mut e = [0u8; 64];
        read_into(&mut e);
        let size = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        let key = u16::from_be_bytes([e[4], e[5]]);
        let raw = &e[8..];
        let len = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        if raw.get(..len) == Some(name.as_bytes()) {
            return Some((key, size));
        }
    }
    None
}

/// Read fw_cfg file `name` into `buf` without allocating; returns the bytes read.
pub fn read_file_into(name: &str, buf: &mut [u8]) -> Option<usize> {
    let (key, size) = find(name)?;
    let n = (size as usize).min(buf.len());
    select(key);
    read_into(buf.get_mut(..n)?);
    Some(n)
}

/// The contents of fw_cfg file `name`, if the device and the file exist.
pub fn read_file(name: &str) -> Option<Vec<u8>> {
    let (key, size) = find(name)?;
    if size > MAX_FILE {
        log::warn!("fw_cfg {name}: {size} bytes is too large; ignored");
        return None;
    }
    let mut data = alloc::vec![0u8; size as usize];
    select(key);
    read_into(&mut data);
    Some(data)
}
