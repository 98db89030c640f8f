//! A VNF booted as its own kernel: PVH (or Multiboot) entry, identity paging, SSE,
//! heap, serial console, calibrated TSC clock, PCI/virtio-mmio discovery and
//! virtio-net ports polled by the VNF pipeline. See `boot` for the entry protocol and
//! `config` for how the VNF configuration reaches the guest. One VNF per image, chosen
//! by a cargo feature: `router` (default, `app`), `vbng` (`vbng_app`), `vbng-up`
//! (`vbng_up_app`: a user plane of the disaggregated vBNG), `vcpe` (`vcpe_app`) or
//! `keyserver` (`keyserver_app`).
#![no_std]
#![no_main]

extern crate alloc;

#[cfg(all(feature = "router", feature = "vbng"))]
compile_error!("one VNF per image: build with `--no-default-features --features vbng` for the vBNG");
#[cfg(all(feature = "vcpe", any(feature = "router", feature = "vbng")))]
compile_error!("one VNF per image: build with `--no-default-features --features vcpe` for the vCPE");
#[cfg(all(feature = "vbng-up", any(feature = "router", feature = "vbng", feature = "vcpe")))]
compile_error!("one VNF per image: build with `--no-default-features --features vbng-up` for the vBNG user plane");
#[cfg(all(
    feature = "keyserver",
    any(feature = "router", feature = "vbng", feature = "vcpe", feature = "vbng-up")
))]
compile_error!("one VNF per image: build with `--no-default-features --features keyserver` for the key server");
#[cfg(not(any(
    feature = "router",
    feature = "vbng",
    feature = "vbng-up",
    feature = "vcpe",
    feature = "keyserver"
)))]
compile_error!("no VNF: enable the `router`, the `vbng`, the `vbng-up`, the `vcpe` or the `keyserver` feature");

#[cfg(feature = "router")]
mod app;
mod arch;
mod boot;
mod bootinfo;
mod clock;
mod common;
mod config;
mod configdrive;
mod entropy;
mod fwcfg;
mod heap;
mod hoststack;
mod hostwire;
mod iso9660;
#[cfg(feature = "keyserver")]
mod keyserver_app;
mod mem;
mod net;
mod pci;
#[cfg(feature = "vbng-up")]
mod rtc;
mod serial;
mod sparse;
#[cfg(feature = "keyserver")]
mod sysrand;
#[cfg(feature = "vbng")]
mod vbng_app;
#[cfg(feature = "vbng-up")]
mod vbng_up_app;
#[cfg(feature = "vcpe")]
mod vcpe_app;
mod virtio;

use core::fmt;

/// The configuration baked in at build time (`UNIKERNEL_CONFIG`, see build.rs).
static BAKED_CONFIG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/config.toml"));

/// Name of the VNF this image runs (printed in the `<vnf> ready` line).
#[cfg(feature = "router")]
pub const VNF: &str = "router";
/// Name of the VNF this image runs (printed in the `<vnf> ready` line).
#[cfg(all(feature = "vbng", not(feature = "router")))]
pub const VNF: &str = "vbng";
/// Name of the VNF this image runs (printed in the `<vnf> ready` line).
#[cfg(all(feature = "vcpe", not(any(feature = "router", feature = "vbng"))))]
pub const VNF: &str = "vcpe";
/// Name of the VNF this image runs (printed in the `<vnf> ready` line).
#[cfg(all(
    feature = "vbng-up",
    not(any(feature = "router", feature = "vbng", feature = "vcpe"))
))]
pub const VNF: &str = "vbng-up";
/// Name of the VNF this image runs (printed in the `<vnf> ready` line).
#[cfg(all(
    feature = "keyserver",
    not(any(feature = "router", feature = "vbng", feature = "vcpe"))
))]
pub const VNF: &str = "keyserver";

/// fw_cfg file name of a config blob (`-fw_cfg name=opt/vnf/config,file=...`).
const FWCFG_CONFIG: &str = "opt/vnf/config";

/// Report a fatal condition on the console and exit with `code`.
pub fn fatal(code: u32, msg: fmt::Arguments) -> ! {
    println!("FATAL: {msg}");
    arch::exit(code)
}

/// Entry from the boot stub: `eax`/`ebx` as the loader left them.
extern "C" fn kernel_main(eax: u32, ebx: u32) -> ! {
    serial::init();
    boot::install_idt();
    // SAFETY: eax/ebx are the loader's registers, passed through by the stub.
    let info = match unsafe { bootinfo::parse(eax, ebx) } {
        Ok(i) => i,
        Err(e) => fatal(arch::EXIT_PLATFORM, format_args!("boot: {e}")),
    };
    let (hz, src) = match clock::init() {
        Ok(x) => x,
        Err(_) => fatal(
            arch::EXIT_PLATFORM,
            format_args!("clock: no PIT and no hypervisor TSC leaf"),
        ),
    };
    let heap = heap::init(&info);
    if heap == 0 {
        fatal(
            arch::EXIT_PLATFORM,
            format_args!("memory: no RAM above the kernel image"),
        );
    }
    let cmdline = match core::str::from_utf8(info.cmdline) {
        Ok(s) => s.trim(),
        Err(_) => fatal(
            arch::EXIT_CONFIG,
            format_args!("bad configuration: kernel command line is not UTF-8"),
        ),
    };
    let opts = match config::parse_cmdline(cmdline) {
        Ok(o) => o,
        Err(e) => fatal(arch::EXIT_CONFIG, format_args!("bad configuration: {e}")),
    };
    serial::init_log(opts.log);
    log::info!(
        "{VNF} unikernel: {} boot, TSC {}.{:03} MHz ({src}), heap {} KiB, cmdline `{cmdline}`",
        match info.loader {
            bootinfo::Loader::Pvh => "PVH",
            bootinfo::Loader::Multiboot => "Multiboot",
        },
        hz / 1_000_000,
        hz / 1000 % 1000,
        heap / 1024
    );
    if let Some(ms) = opts.selftest_clock_ms {
        clock_selftest(ms);
    }
    log::debug!("config: loading");
    let table = match load_config(&info, &opts) {
        Ok(t) => t,
        Err(e) => fatal(arch::EXIT_CONFIG, format_args!("bad configuration: {e}")),
    };
    #[cfg(feature = "router")]
    app::run(table, &opts);
    #[cfg(all(feature = "vbng", not(feature = "router")))]
    vbng_app::run(table, &opts);
    #[cfg(all(feature = "vcpe", not(any(feature = "router", feature = "vbng"))))]
    vcpe_app::run(table, &opts);
    #[cfg(all(
        feature = "vbng-up",
        not(any(feature = "router", feature = "vbng", feature = "vcpe"))
    ))]
    vbng_up_app::run(table, &opts);
    #[cfg(all(
        feature = "keyserver",
        not(any(feature = "router", feature = "vbng", feature = "vcpe"))
    ))]
    keyserver_app::run(table, &opts);
}

/// Pick the config source (module, config drive, fw_cfg, baked) and apply
/// command-line overrides.
fn load_config(info: &bootinfo::BootInfo, opts: &config::Options) -> Result<toml::Table, config::ConfigError> {
    let mut table = if let Some(m) = info.modules.iter().next() {
        // SAFETY: `m` is a loader module, excluded from the heap.
        let bytes = unsafe { bootinfo::module_bytes(m) };
        log::info!("config: boot module ({} bytes)", bytes.len());
        config::parse_toml(bytes, "boot module")?
    } else if let Some(r) = configdrive::read() {
        let (kind, bytes) = r.map_err(config::ConfigError::Invalid)?;
        // The text holds the configuration's secrets (PSKs, RADIUS and ESP keys):
        // wiped once parsed.
        let bytes = zeroize::Zeroizing::new(bytes);
        config::parse_toml(
            &bytes,
            match kind {
                iso9660::DriveKind::ConfigDrive => "config drive openstack/latest/user_data",
                iso9660::DriveKind::NoCloud => "NoCloud drive user-data",
            },
        )?
    } else if let Some(bytes) = fwcfg::read_file(FWCFG_CONFIG) {
        let bytes = zeroize::Zeroizing::new(bytes);
        log::info!("config: fw_cfg {FWCFG_CONFIG} ({} bytes)", bytes.len());
        config::parse_toml(&bytes, "fw_cfg")?
    } else {
        log::debug!("config: baked into the image ({} bytes)", BAKED_CONFIG.len());
        config::parse_toml(BAKED_CONFIG, "the image")?
    };
    for (path, value) in &opts.overrides {
        config::apply_override(&mut table, path, value)?;
        log::info!("config: override {path} = {value}");
    }
    Ok(table)
}

/// Print two marks `ms` apart by the guest clock, then exit; a host test compares the
/// interval with its own wall clock.
fn clock_selftest(ms: u64) -> ! {
    let t0 = clock::now_ns();
    println!("clock-selftest start t={t0}ns");
    clock::spin_ns(ms * 1_000_000);
    let t1 = clock::now_ns();
    println!("clock-selftest end t={t1}ns elapsed={}ms", (t1 - t0) / 1_000_000);
    arch::exit(arch::EXIT_OK)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("PANIC: {info}");
    println!(
        "heap: {} KiB claimed, peak use {} KiB (an allocation failure means the guest needs more RAM)",
        heap::claimed() / 1024,
        heap::peak() / 1024
    );
    arch::exit(arch::EXIT_FAULT)
}
