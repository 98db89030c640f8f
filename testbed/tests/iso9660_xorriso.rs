//! The unikernel's ISO 9660 config-drive reader (`vnfs/unikernel/src/iso9660.rs`,
//! compiled here from the kernel's own source) against volumes xorriso writes
//! (`xorriso -as mkisofs`, the genisoimage command line OpenStack and cloud-init
//! use): OpenStack `config-2` with Joliet and Rock Ridge, NoCloud `cidata` with Rock
//! Ridge only, a nested multi-sector file, a volume with another label, and a
//! truncated image. No QEMU; needs xorriso (scripts/setup installs it).

extern crate alloc;

// Formatted by the unikernel's rustfmt.toml (max_width 120), not the workspace's.
#[rustfmt::skip]
#[path = "../../vnfs/unikernel/src/iso9660.rs"]
#[allow(dead_code)]
mod iso9660;

use iso9660::{open, read_file, user_data, DriveKind, IsoError};
use std::path::{Path, PathBuf};
use std::process::Command;

fn need_xorriso() {
    let ok = Command::new("xorriso")
        .arg("-version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "xorriso is missing: apt-get install xorriso (scripts/setup does)"
    );
}

struct Tmp(PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Build an ISO from `files` (relative path, contents) with `label` and the
/// mkisofs `flags`; returns the image.
fn iso(name: &str, label: &str, flags: &[&str], files: &[(&str, &[u8])]) -> Vec<u8> {
    need_xorriso();
    let t = Tmp(std::env::temp_dir().join(format!("uk-iso-{}-{name}", std::process::id())));
    let src = t.0.join("src");
    for (p, data) in files {
        let f = src.join(p);
        std::fs::create_dir_all(f.parent().unwrap_or(Path::new("."))).expect("mkdir");
        std::fs::write(&f, data).expect("write");
    }
    let out = t.0.join("out.iso");
    let o = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet"])
        .args(flags)
        .args(["-V", label, "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .expect("run xorriso");
    assert!(
        o.status.success(),
        "xorriso: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(&out).expect("read the image")
}

#[test]
fn openstack_config_drive_with_joliet_and_rock_ridge() {
    let toml = b"name = \"vnf\"\n[[pools]]\nname = \"p\"\n";
    let img = iso(
        "config2",
        "config-2",
        &["-J", "-r"],
        &[
            ("openstack/latest/user_data", toml),
            ("openstack/latest/meta_data.json", b"{\"uuid\": \"x\"}"),
            ("openstack/2012-08-10/user_data", b"old"),
        ],
    );
    let mut dev: &[u8] = &img;
    let v = open(&mut dev).expect("open");
    assert_eq!(v.label, "config-2");
    let (kind, data) = user_data(&mut dev).expect("read").expect("a config drive");
    assert_eq!(kind, DriveKind::ConfigDrive);
    assert_eq!(data, toml);
    // Case-insensitive, other files, directories are not files.
    assert_eq!(
        read_file(&mut dev, &v, "OpenStack/2012-08-10/USER_DATA").expect("old"),
        b"old"
    );
    assert_eq!(
        read_file(&mut dev, &v, "openstack/latest"),
        Err(IsoError::NotFound)
    );
    assert_eq!(
        read_file(&mut dev, &v, "openstack/none/user_data"),
        Err(IsoError::NotFound)
    );
}

#[test]
fn nocloud_cidata_with_rock_ridge_names_only() {
    // 300 KiB of user data: many sectors, read through one extent.
    let big: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
    let img = iso(
        "cidata",
        "cidata",
        &["-r"],
        &[("user-data", &big), ("meta-data", b"instance-id: x\n")],
    );
    let mut dev: &[u8] = &img;
    let (kind, data) = user_data(&mut dev).expect("read").expect("a NoCloud seed");
    assert_eq!(kind, DriveKind::NoCloud);
    assert_eq!(data, big);
}

#[test]
fn other_labels_and_broken_images_are_refused_without_panic() {
    let img = iso("other", "DATA", &["-J", "-r"], &[("user-data", b"x")]);
    let mut dev: &[u8] = &img;
    assert_eq!(user_data(&mut dev), Ok(None));
    // Not ISO 9660 at all.
    let zeros = vec![0u8; 40 * 2048];
    let mut dev: &[u8] = &zeros;
    assert_eq!(user_data(&mut dev).err(), Some(IsoError::NotIso));
    // Every truncation of a real drive: an error or the data, never a panic.
    let img = iso("trunc", "cidata", &["-J", "-r"], &[("user-data", b"abc")]);
    for cut in (0..img.len()).step_by(512) {
        let mut dev: &[u8] = &img[..cut];
        match user_data(&mut dev) {
            Ok(Some((_, d))) => assert_eq!(d, b"abc"),
            Ok(None) => panic!("cut at {cut}: lost the label"),
            Err(_) => {}
        }
    }
}
