//! Fuzz target: the ISO 9660 reader on an arbitrary image. The input follows the
//! primary volume descriptor's 7-byte header at sector 16 (the volume descriptor
//! set), after 16 zeroed system-area sectors, and is zero-padded to whole sectors,
//! so short mutations already reach the descriptors and the directories they point
//! into.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unikernel_fuzz::iso9660::{open, read_file, user_data, SECTOR};

fuzz_target!(|data: &[u8]| {
    let mut img = vec![0u8; 16 * SECTOR];
    // A primary volume descriptor's first bytes (type 1, "CD001", version 1): the
    // rest of it, the descriptors after it and the directories come from the input.
    img.extend_from_slice(b"\x01CD001\x01");
    img.extend_from_slice(data);
    img.resize(img.len().div_ceil(SECTOR).max(17) * SECTOR, 0);
    let mut dev: &[u8] = &img;
    if let Ok(v) = open(&mut dev) {
        for p in ["openstack/latest/user_data", "user-data", "a/b/c/d/e/f/g/h/i", "/"] {
            let _ = read_file(&mut dev, &v, p);
        }
    }
    let _ = user_data(&mut dev);
});
