//! Building images: the kernel ELF (Xen PVH note, `qemu -kernel`), its Multiboot 1
//! variant and the GRUB `grub-mkrescue` disk converted to qcow2, with a
//! reproducible ISO date (SOURCE_DATE_EPOCH).

use super::*;

/// Paths of a finished build.
pub struct Built {
    pub elf: PathBuf,
    pub qcow2: Option<PathBuf>,
}

/// Build the kernel for `vnf` with `config` baked in (reproducibly), into `out`.
pub fn build(vnf: &str, config: Option<&Path>, disk: bool, out: &Path) -> Result<Built> {
    let example = example_config(vnf)?;
    let config = match config {
        Some(c) => c
            .canonicalize()
            .with_context(|| format!("config {}", c.display()))?,
        None => example,
    };
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let elf = out.join(format!("{vnf}.elf"));
    // One build with the Multiboot header (for GRUB); the `-kernel` image gets the
    // header neutralised so QEMU takes the PVH entry (it tries Multiboot first).
    let kernel = cargo_build(vnf, &config)?;
    let mb = std::fs::read(&kernel).with_context(|| format!("read {}", kernel.display()))?;
    let pvh = without_multiboot(&mb)?;
    std::fs::write(&elf, pvh).with_context(|| format!("write {}", elf.display()))?;
    let qcow2 = if disk {
        let q = out.join(format!("{vnf}.qcow2"));
        grub_disk(vnf, &kernel, &q)?;
        Some(q)
    } else {
        None
    };
    Ok(Built { elf, qcow2 })
}

/// Multiboot 1 header magic (Multiboot Specification 0.6.96 §3.1.1).
pub(super) const MULTIBOOT_MAGIC: u32 = 0x1BAD_B002;

/// Offset of a valid Multiboot 1 header (magic + flags + checksum = 0, 4-byte aligned,
/// within the first 8 KiB).
pub(super) fn multiboot_offset(elf: &[u8]) -> Option<usize> {
    let word = |o: usize| {
        elf.get(o..o + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    (0..8192usize.min(elf.len())).step_by(4).find(|&o| {
        matches!((word(o), word(o + 4), word(o + 8)), (Some(m), Some(f), Some(c))
            if m == MULTIBOOT_MAGIC && m.wrapping_add(f).wrapping_add(c) == 0)
    })
}

/// A copy of the kernel whose Multiboot header no loader recognises (magic zeroed).
pub(super) fn without_multiboot(elf: &[u8]) -> Result<Vec<u8>> {
    let off = multiboot_offset(elf).ok_or_else(|| anyhow!("the kernel has no Multiboot header"))?;
    let mut v = elf.to_vec();
    v[off..off + 4].fill(0);
    Ok(v)
}

pub(super) fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Remove the kernel crate's own build artefacts (its dependencies stay cached).
pub(super) fn clean_kernel_crate() -> Result<()> {
    let dir = workspace_root().join(UNIKERNEL_DIR);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(&dir)
        .args([
            "clean",
            "--release",
            "-p",
            "unikernel",
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(dir.join("target"))
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .context("run cargo clean")?;
    if !st.success() {
        bail!("cargo clean -p unikernel failed ({st})");
    }
    Ok(())
}

/// `cargo build --release --features multiboot` of the unikernel crate with the VNF's
/// feature (`router` is the default one; others build with `--no-default-features`);
/// returns the kernel path.
pub(super) fn cargo_build(vnf: &str, config: &Path) -> Result<PathBuf> {
    let root = workspace_root();
    let dir = root.join(UNIKERNEL_DIR);
    let target_dir = dir.join("target");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    // Fixed paths in panic locations and debug info: the build must not depend on
    // where the tree or the registry live (the last matching prefix wins).
    let remaps = [
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
        format!("--remap-path-prefix={}=/src", root.display()),
        format!(
            "--remap-path-prefix={}=/src/vnfs/unikernel/target",
            target_dir.display()
        ),
    ];
    // Joined with the crate's own target rustflags (cargo concatenates config arrays).
    let flags_toml = format!(
        "target.{TARGET}.rustflags=[{}]",
        remaps
            .iter()
            .map(|f| format!("{f:?}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&dir)
        .args([
            "build",
            "--release",
            "--bin",
            "unikernel",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--config")
        .arg(&flags_toml);
    if vnf == "router" {
        cmd.args(["--features", "multiboot"]);
    } else {
        cmd.args(["--no-default-features", "--features"])
            .arg(format!("multiboot,{vnf}"));
    }
    for v in [
        "CARGO_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("UNIKERNEL_CONFIG", config);
    if std::env::var_os("SOURCE_DATE_EPOCH").is_none() {
        cmd.env("SOURCE_DATE_EPOCH", DEFAULT_EPOCH);
    }
    let st = cmd.status().context("run cargo for the unikernel")?;
    if !st.success() {
        bail!("unikernel build failed ({st})");
    }
    Ok(target_dir.join(TARGET).join("release/unikernel"))
}

pub(super) fn need_tool(name: &str, package: &str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        bail!("`{name}` not found: install the Debian package `{package}`")
    }
}

/// GRUB (i386-pc, Multiboot 1) hybrid disk image with the kernel, as qcow2.
pub(super) fn grub_disk(vnf: &str, kernel: &Path, qcow2: &Path) -> Result<()> {
    need_tool("grub-mkrescue", "grub-pc-bin and grub-common")?;
    need_tool("xorriso", "xorriso")?;
    need_tool("qemu-img", "qemu-utils")?;
    let work = qcow2.with_extension("grub.d");
    let _ = std::fs::remove_dir_all(&work);
    let tree = work.join("tree");
    std::fs::create_dir_all(tree.join("boot/grub")).context("create the GRUB tree")?;
    copy(kernel, &tree.join(format!("boot/{vnf}.elf")))?;
    let cfg = format!(
        "serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n\
         set timeout=0\nset default=0\n\
         menuentry \"{vnf}\" {{\n  multiboot /boot/{vnf}.elf\n  boot\n}}\n"
    );
    std::fs::write(tree.join("boot/grub/grub.cfg"), cfg).context("write grub.cfg")?;
    let iso = work.join(format!("{vnf}.img"));
    let epoch = std::env::var("SOURCE_DATE_EPOCH").unwrap_or_else(|_| DEFAULT_EPOCH.to_string());
    let date = iso_date(&epoch)?;
    let out = Command::new("grub-mkrescue")
        .env("SOURCE_DATE_EPOCH", &epoch)
        .args(["--fonts=", "--locales=", "--themes="])
        .arg("--install-modules=multiboot normal serial terminal configfile iso9660 biosdisk part_msdos")
        .arg("-o")
        .arg(&iso)
        .arg(&tree)
        // xorriso: fixed volume UUID and file dates, so the image is reproducible.
        .arg("--")
        .args(["uuid", "c", "m", "f", "all_file_dates"].iter().flat_map(|k| ["-volume_date", k, &date]))
        .output()
        .context("run grub-mkrescue")?;
    if !out.status.success() {
        bail!(
            "grub-mkrescue failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_file(qcow2);
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&iso)
        .arg(qcow2)
        .output()
        .context("run qemu-img")?;
    if !out.status.success() {
        bail!(
            "qemu-img convert failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// SOURCE_DATE_EPOCH as xorriso's `YYYYMMDDhhmmsscc` (UTC).
pub(super) fn iso_date(epoch: &str) -> Result<String> {
    let secs: i64 = epoch
        .trim()
        .parse()
        .context("SOURCE_DATE_EPOCH is not a number")?;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Ok(format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}
