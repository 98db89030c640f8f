//! Link the kernel with its own linker script and bake the VNF configuration in.
//!
//! `UNIKERNEL_CONFIG` names the TOML file to embed (when unset, the VNF's shipped
//! example: the router's `vnfs/router/examples/router.toml`, the vBNG's
//! `examples/vbng.toml` of this crate, the vBNG user plane's `examples/vbng-up.toml`, the vCPE's `vnfs/vcpe/examples/vcpe-a.toml`, the key server's `examples/keyserver.toml`); it is copied to `$OUT_DIR/config.toml` and
//! `include_bytes!`-ed.

use std::{env, fs, path::PathBuf};

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let ld = dir.join("link.ld");
    println!("cargo:rerun-if-changed={}", ld.display());
    println!("cargo:rerun-if-env-changed=UNIKERNEL_CONFIG");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--build-id=none",
        "-Wl,-z,max-page-size=0x1000",
        "-Wl,--gc-sections",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rustc-link-arg-bins=-T{}", ld.display());

    let cfg = match env::var_os("UNIKERNEL_CONFIG") {
        Some(p) => PathBuf::from(p),
        None if env::var_os("CARGO_FEATURE_VBNG").is_some() => dir.join("examples/vbng.toml"),
        None if env::var_os("CARGO_FEATURE_VBNG_UP").is_some() => dir.join("examples/vbng-up.toml"),
        None if env::var_os("CARGO_FEATURE_VCPE").is_some() => dir.join("../vcpe/examples/vcpe-a.toml"),
        None if env::var_os("CARGO_FEATURE_KEYSERVER").is_some() => dir.join("examples/keyserver.toml"),
        None => dir.join("../router/examples/router.toml"),
    };
    println!("cargo:rerun-if-changed={}", cfg.display());
    let bytes = fs::read(&cfg).unwrap_or_else(|e| panic!("UNIKERNEL_CONFIG {}: {e}", cfg.display()));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("config.toml"), bytes).expect("write OUT_DIR/config.toml");
}
