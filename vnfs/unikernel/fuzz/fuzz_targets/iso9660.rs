//! Fuzz target: the ISO 9660 reader on an arbitrary image. The input starts at
//! sector 16 (the volume descriptor set), after 16 zeroed system-area sectors, so
//! mutations reach the descriptors and the directories they point into.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unikernel_fuzz::iso9660::{open, read_file, user_data, SECTOR};

fuzz_target!(|data: &[u8]| {
    let mut img = vec![0u8; 16 * SECTOR];
    img.extend_from_slice(data);
    let mut dev: &[u8] = &img;
    if let Ok(v) = open(&mut dev) {
        for p in ["openstack/latest/user_data", "user-data", "a/b/c/d/e/f/g/h/i", "/"] {
            let _ = read_file(&mut dev, &v, p);
        }
    }
    let _ = user_data(&mut dev);
});
