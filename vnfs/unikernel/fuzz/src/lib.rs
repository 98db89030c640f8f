//! The unikernel's platform-free parsers, compiled for the host from the kernel's
//! own sources (the kernel is a `no_std` binary, not a library): the ISO 9660
//! config-drive reader and the host stack's wire decisions. Run the targets with
//! `scripts/fuzz`.

extern crate alloc;

#[path = "../../src/iso9660.rs"]
pub mod iso9660;

#[path = "../../src/hostwire.rs"]
pub mod hostwire;
