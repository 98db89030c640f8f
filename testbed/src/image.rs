//! Unikernel images (issue 6): build the VNF kernel (ELF with a Xen PVH note, booted by
//! `qemu -kernel`) and a GRUB disk image (Multiboot 1 build of the same kernel in a
//! `grub-mkrescue` hybrid image, converted to qcow2 for OpenStack/OSM), and boot them
//! under QEMU with the serial console on stdout.
//!
//! The guest reports its end through QEMU's `isa-debug-exit` device: a guest code `c`
//! makes QEMU exit with `(c << 1) | 1`; `image run` exits with `c`.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The unikernel crate, relative to the workspace root.
const UNIKERNEL_DIR: &str = "vnfs/unikernel";
/// Rust target of the kernel (set in the crate's `.cargo/config.toml`).
const TARGET: &str = "x86_64-unknown-linux-gnu";
/// VNFs that have a unikernel build, with their shipped example config.
const VNFS: &[(&str, &str)] = &[("router", "vnfs/router/examples/router.toml")];
/// Fixed timestamp for reproducible images unless SOURCE_DATE_EPOCH is set.
const DEFAULT_EPOCH: &str = "1700000000";

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Build target/images/<vnf>.elf and <vnf>.qcow2 (config baked in)
    Build {
        vnf: String,
        /// TOML config to bake in (default: the VNF's shipped example)
        #[arg(long)]
        config: Option<PathBuf>,
        /// Only the ELF, no GRUB disk image
        #[arg(long)]
        no_disk: bool,
        /// Output directory (default: <workspace>/target/images)
        #[arg(long)]
        out: Option<PathBuf>,
        /// Recompile the kernel crate from scratch (`cargo clean -p unikernel` first)
        #[arg(long)]
        fresh: bool,
    },
    /// Boot target/images/<vnf>.elf under QEMU; console on stdout; exits with the guest
    Run {
        vnf: String,
        #[command(flatten)]
        opts: RunOpts,
    },
    /// Namespace lab: the guest routes UDP from a generator in netns A (tap port 0) to
    /// a checking sink in netns B (tap port 1); reports the forwarding rate (root)
    Lab {
        vnf: String,
        /// Seconds of traffic (finite, 0 to 86400)
        #[arg(long, default_value_t = 3.0, value_parser = pktgen::parse_seconds)]
        seconds: f64,
        /// UDP payload bytes
        #[arg(long, default_value_t = 18)]
        size: usize,
        /// Offered load in packets/s (0: as fast as the generator goes)
        #[arg(long, default_value_t = 0)]
        pps: u64,
        #[arg(long, value_enum, default_value_t = Machine::Microvm)]
        machine: Machine,
        #[arg(long, default_value = "128M")]
        memory: String,
        /// Use the image as built; do not rebuild first
        #[arg(long)]
        no_build: bool,
    },
    /// (lab helper) send UDP datagrams to DST for SECONDS; prints a JSON summary
    #[command(hide = true)]
    GenUdp {
        #[arg(long)]
        dst: std::net::SocketAddr,
        #[arg(long, value_parser = pktgen::parse_seconds)]
        seconds: f64,
        #[arg(long)]
        size: usize,
        #[arg(long, default_value_t = 0)]
        pps: u64,
    },
    /// (lab helper) count routed frames on IFACE (AF_PACKET) and check their rewrite
    #[command(hide = true)]
    SinkRaw {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        port: u16,
        #[arg(long, value_parser = pktgen::parse_seconds)]
        seconds: f64,
        /// Expected source MAC (the router's egress port)
        #[arg(long)]
        src_mac: String,
        /// Expected destination MAC (this host)
        #[arg(long)]
        dst_mac: String,
        /// Expected IPv4 TTL
        #[arg(long)]
        ttl: u8,
    },
    /// Boot-to-ready time: launch the image N times and report the median
    Bench {
        vnf: String,
        /// Number of boots
        #[arg(long, default_value_t = 7)]
        runs: usize,
        #[command(flatten)]
        opts: RunOpts,
    },
}

#[derive(clap::Args, Clone)]
pub struct RunOpts {
    /// Config file handed to the guest as a boot module (overrides the baked one)
    #[arg(long)]
    config: Option<PathBuf>,
    /// QEMU machine type
    #[arg(long, value_enum, default_value_t = Machine::Microvm)]
    machine: Machine,
    /// Guest RAM (QEMU -m syntax)
    #[arg(long, default_value = "128M")]
    memory: String,
    /// Accelerator: auto picks KVM only when hardware virtualisation is usable
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    accel: Accel,
    /// Extra kernel command line (e.g. `exit=ready`, `config.key=value`)
    #[arg(long, default_value = "")]
    append: String,
    /// A port: `tap:IFNAME[,mac=MAC]`, `udp:LOCALPORT:PEERPORT[,mac=MAC]` (repeatable, in port order)
    #[arg(long = "net")]
    nets: Vec<String>,
    /// Record each port's traffic to DIR/port<N>.pcap (QEMU filter-dump)
    #[arg(long)]
    pcap_dir: Option<PathBuf>,
    /// Boot the GRUB disk image (<vnf>.qcow2) instead of the ELF (machine pc or q35)
    #[arg(long)]
    disk: bool,
    /// Use the image as built; do not rebuild first
    #[arg(long)]
    no_build: bool,
    /// Kill the guest after this many seconds (0: never)
    #[arg(long, default_value_t = 0)]
    timeout: u64,
    /// Stop the guest (exit 0) as soon as it prints its ready line
    #[arg(long)]
    until_ready: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Machine {
    Microvm,
    Q35,
    Pc,
}

impl Machine {
    fn qemu_name(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm",
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
        }
    }
    fn net_device(self) -> &'static str {
        match self {
            Machine::Microvm => "virtio-net-device",
            Machine::Q35 | Machine::Pc => "virtio-net-pci",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Accel {
    Auto,
    Kvm,
    Tcg,
}

pub fn main(cmd: ImageCmd) -> Result<()> {
    match cmd {
        ImageCmd::Build {
            vnf,
            config,
            no_disk,
            out,
            fresh,
        } => {
            let out = out.unwrap_or_else(|| workspace_root().join("target/images"));
            if fresh {
                clean_kernel_crate()?;
            }
            let built = build(&vnf, config.as_deref(), !no_disk, &out)?;
            println!(
                "{}: {} bytes (stripped ELF)",
                built.elf.display(),
                file_len(&built.elf)?
            );
            if let Some(q) = &built.qcow2 {
                println!("{}: {} bytes (qcow2)", q.display(), file_len(q)?);
            }
            Ok(())
        }
        ImageCmd::Run { vnf, opts } => {
            let code = run(&vnf, &opts)?;
            std::process::exit(code);
        }
        ImageCmd::Bench { vnf, runs, opts } => bench(&vnf, runs, &opts),
        ImageCmd::Lab {
            vnf,
            seconds,
            size,
            pps,
            machine,
            memory,
            no_build,
        } => lab::run(
            &vnf,
            &lab::LabOpts {
                seconds,
                size,
                pps,
                machine,
                memory,
                no_build,
            },
        ),
        ImageCmd::GenUdp {
            dst,
            seconds,
            size,
            pps,
        } => lab::gen_udp(dst, seconds, size, pps),
        ImageCmd::SinkRaw {
            iface,
            port,
            seconds,
            src_mac,
            dst_mac,
            ttl,
        } => lab::sink_raw(&iface, port, seconds, &src_mac, &dst_mac, ttl),
    }
}

/// The workspace root (the directory holding `vnfs/unikernel`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

fn file_len(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p)
        .with_context(|| format!("stat {}", p.display()))?
        .len())
}

fn example_config(vnf: &str) -> Result<PathBuf> {
    VNFS.iter()
        .find(|(n, _)| *n == vnf)
        .map(|(_, c)| workspace_root().join(c))
        .ok_or_else(|| {
            let names: Vec<&str> = VNFS.iter().map(|(n, _)| *n).collect();
            anyhow!(
                "no unikernel build for VNF `{vnf}` (available: {})",
                names.join(", ")
            )
        })
}

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
    let kernel = cargo_build(&config)?;
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
const MULTIBOOT_MAGIC: u32 = 0x1BAD_B002;

/// Offset of a valid Multiboot 1 header (magic + flags + checksum = 0, 4-byte aligned,
/// within the first 8 KiB).
fn multiboot_offset(elf: &[u8]) -> Option<usize> {
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
fn without_multiboot(elf: &[u8]) -> Result<Vec<u8>> {
    let off = multiboot_offset(elf).ok_or_else(|| anyhow!("the kernel has no Multiboot header"))?;
    let mut v = elf.to_vec();
    v[off..off + 4].fill(0);
    Ok(v)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Remove the kernel crate's own build artefacts (its dependencies stay cached).
fn clean_kernel_crate() -> Result<()> {
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

/// `cargo build --release --features multiboot` of the unikernel crate; returns the
/// kernel path.
fn cargo_build(config: &Path) -> Result<PathBuf> {
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
    cmd.args(["--features", "multiboot"]);
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

fn need_tool(name: &str, package: &str) -> Result<()> {
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
fn grub_disk(vnf: &str, kernel: &Path, qcow2: &Path) -> Result<()> {
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
fn iso_date(epoch: &str) -> Result<String> {
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

/// True when `/dev/kvm` is backed by hardware virtualisation (VMX/SVM visible and the
/// kvm_intel/kvm_amd module loaded). On hosts where KVM is an instruction emulator
/// (kvm_pvm) guests are slower than TCG and fault on SSE, so TCG is used.
pub fn kvm_usable() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    let module =
        Path::new("/sys/module/kvm_intel").exists() || Path::new("/sys/module/kvm_amd").exists();
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    hw && module && dev
}

/// One guest port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetSpec {
    /// An existing tap interface.
    Tap { ifname: String, mac: String },
    /// A UDP socket pair on loopback (QEMU `-netdev socket,udp=`).
    Udp { local: u16, peer: u16, mac: String },
}

impl NetSpec {
    /// Parse `tap:IFNAME[,mac=MAC]` or `udp:LOCAL:PEER[,mac=MAC]`; port `index` picks
    /// the default MAC 02:00:00:00:00:<index+1>.
    pub fn parse(s: &str, index: usize) -> Result<Self> {
        let (main, opts) = s.split_once(',').unwrap_or((s, ""));
        let mut mac = format!("02:00:00:00:00:{:02x}", index + 1);
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o.split_once('=') {
                Some(("mac", m)) => mac = m.to_string(),
                _ => bail!("--net {s}: unknown option `{o}`"),
            }
        }
        let parts: Vec<&str> = main.split(':').collect();
        match parts.as_slice() {
            ["tap", ifname] if !ifname.is_empty() => Ok(NetSpec::Tap {
                ifname: ifname.to_string(),
                mac,
            }),
            ["udp", l, p] => Ok(NetSpec::Udp {
                local: l.parse().with_context(|| format!("--net {s}: bad port"))?,
                peer: p.parse().with_context(|| format!("--net {s}: bad port"))?,
                mac,
            }),
            _ => bail!("--net {s}: expected tap:IFNAME or udp:LOCALPORT:PEERPORT"),
        }
    }
}

/// A QEMU guest running a unikernel.
pub struct Guest {
    pub machine: Machine,
    pub memory: String,
    pub accel: Accel,
    pub kernel: PathBuf,
    pub disk: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: String,
    pub nets: Vec<NetSpec>,
    pub pcap_dir: Option<PathBuf>,
}

impl Guest {
    /// The QEMU command line.
    pub fn command(&self) -> Result<Command> {
        need_tool("qemu-system-x86_64", "qemu-system-x86")?;
        let accel = match self.accel {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
            Accel::Auto if kvm_usable() => "kvm",
            Accel::Auto => "tcg",
        };
        let mut c = Command::new("qemu-system-x86_64");
        c.args([
            "-accel",
            accel,
            "-machine",
            self.machine.qemu_name(),
            "-m",
            &self.memory,
        ]);
        c.args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ]);
        c.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4"]);
        if accel == "kvm" {
            c.args(["-cpu", "host"]);
        }
        match &self.disk {
            Some(d) => {
                if self.machine == Machine::Microvm {
                    bail!("the GRUB disk image needs a BIOS machine: use --machine pc or q35");
                }
                c.arg("-drive").arg(format!(
                    "file={},format=qcow2,if=ide,snapshot=on",
                    d.display()
                ));
            }
            None => {
                c.arg("-kernel").arg(&self.kernel);
                if let Some(i) = &self.initrd {
                    c.arg("-initrd").arg(i);
                }
                if !self.append.is_empty() {
                    c.args(["-append", &self.append]);
                }
            }
        }
        for (i, n) in self.nets.iter().enumerate() {
            let (netdev, mac) = match n {
                NetSpec::Tap { ifname, mac } => (
                    format!("tap,id=n{i},ifname={ifname},script=no,downscript=no"),
                    mac,
                ),
                NetSpec::Udp { local, peer, mac } => (
                    format!("socket,id=n{i},udp=127.0.0.1:{peer},localaddr=127.0.0.1:{local}"),
                    mac,
                ),
            };
            c.args(["-netdev", &netdev]);
            c.args([
                "-device",
                &format!("{},netdev=n{i},mac={mac}", self.machine.net_device()),
            ]);
            if let Some(d) = &self.pcap_dir {
                let f = d.join(format!("port{i}.pcap"));
                c.arg("-object").arg(format!(
                    "filter-dump,id=f{i},netdev=n{i},file={}",
                    f.display()
                ));
            }
        }
        Ok(c)
    }
}

fn guest_for(vnf: &str, o: &RunOpts) -> Result<Guest> {
    let dir = workspace_root().join("target/images");
    let nets = o
        .nets
        .iter()
        .enumerate()
        .map(|(i, s)| NetSpec::parse(s, i))
        .collect::<Result<Vec<_>>>()?;
    if o.disk && (o.config.is_some() || !o.append.is_empty()) {
        bail!("--disk boots GRUB's own entry: --config and --append apply to the ELF only");
    }
    Ok(Guest {
        machine: o.machine,
        memory: o.memory.clone(),
        accel: o.accel,
        kernel: dir.join(format!("{vnf}.elf")),
        disk: o.disk.then(|| dir.join(format!("{vnf}.qcow2"))),
        initrd: o.config.clone(),
        append: o.append.clone(),
        nets,
        pcap_dir: o.pcap_dir.clone(),
    })
}

fn prepare(vnf: &str, o: &RunOpts) -> Result<Guest> {
    example_config(vnf)?;
    if !o.no_build {
        build(vnf, None, o.disk, &workspace_root().join("target/images"))?;
    }
    if let Some(d) = &o.pcap_dir {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    guest_for(vnf, o)
}

/// Map QEMU's exit status to the guest's `isa-debug-exit` code.
pub fn guest_code(st: ExitStatus) -> Result<i32> {
    match st.code() {
        Some(c) if c & 1 == 1 => Ok(c >> 1),
        Some(0) => Ok(0),
        Some(c) => bail!("QEMU failed (exit status {c})"),
        None => bail!("QEMU was killed ({st})"),
    }
}

fn run(vnf: &str, o: &RunOpts) -> Result<i32> {
    let guest = prepare(vnf, o)?;
    let mut cmd = guest.command()?;
    cmd.stdin(Stdio::null());
    if o.until_ready {
        cmd.stdout(Stdio::piped());
    }
    let mut child = cmd.spawn().context("start qemu-system-x86_64")?;
    let ready = match child.stdout.take() {
        Some(out) => {
            // Echo the console; a reader thread signals the ready line.
            let (tx, rx) = std::sync::mpsc::channel();
            let tag = format!("{vnf} ready");
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                    println!("{line}");
                    if line.contains(&tag) {
                        let _ = tx.send(());
                    }
                }
            });
            Some(rx)
        }
        None => None,
    };
    let end = (o.timeout > 0).then(|| Instant::now() + Duration::from_secs(o.timeout));
    loop {
        if let Some(st) = child.try_wait()? {
            return guest_code(st);
        }
        if ready.as_ref().is_some_and(|r| r.try_recv().is_ok()) {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(0);
        }
        if end.is_some_and(|e| Instant::now() >= e) {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "image run: guest still running after {} s; stopped",
                o.timeout
            );
            return Ok(124);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Guest-side time from kernel entry to ready, from `<vnf> ready in X ms`.
fn parse_ready_ms(line: &str) -> Option<f64> {
    let rest = line.split(" ready in ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn bench(vnf: &str, runs: usize, o: &RunOpts) -> Result<()> {
    let mut o = o.clone();
    if !o.append.split_whitespace().any(|w| w == "exit=ready") {
        o.append = format!("{} exit=ready", o.append).trim().to_string();
    }
    let guest = prepare(vnf, &o)?;
    let ready_tag = format!("{vnf} ready");
    let (mut host, mut inside) = (Vec::new(), Vec::new());
    for i in 0..runs.max(1) {
        let t0 = Instant::now();
        let mut child = guest
            .command()?
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start qemu-system-x86_64")?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no QEMU stdout"))?;
        let mut ready = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.context("read the guest console")?;
            if line.contains(&ready_tag) {
                ready = Some((t0.elapsed(), parse_ready_ms(&line)));
            }
        }
        let st = child.wait().context("wait for QEMU")?;
        let code = guest_code(st)?;
        let Some((t, g)) = ready else {
            bail!("run {i}: no `{ready_tag}` line (guest exit code {code})");
        };
        host.push(t.as_secs_f64() * 1000.0);
        inside.push(g.unwrap_or(f64::NAN));
    }
    let (hm, gm) = (median(&mut host.clone()), median(&mut inside.clone()));
    let out = std::io::stdout();
    let mut w = out.lock();
    writeln!(
        w,
        "image bench {vnf}: machine {} accel {:?} memory {} runs {}",
        o.machine.qemu_name(),
        o.accel,
        o.memory,
        host.len()
    )?;
    writeln!(
        w,
        "  QEMU launch -> ready line: median {hm:.1} ms (runs: {:.1?})",
        host
    )?;
    writeln!(
        w,
        "  guest entry -> ready:      median {gm:.3} ms (runs: {:.3?})",
        inside
    )?;
    Ok(())
}

/// The namespace lab: taps in two network namespaces, the guest between them.
mod lab {
    use super::*;
    use std::sync::mpsc;

    pub struct LabOpts {
        pub seconds: f64,
        pub size: usize,
        pub pps: u64,
        pub machine: Machine,
        pub memory: String,
        pub no_build: bool,
    }

    const ROUTER_MAC: [&str; 2] = ["02:00:00:00:01:01", "02:00:00:00:02:01"];
    const HOST_MAC: [&str; 2] = ["02:00:00:00:0a:02", "02:00:00:00:0b:02"];
    const ROUTER_IP: [&str; 2] = ["10.61.1.1", "10.61.2.1"];
    const HOST_IP: [&str; 2] = ["10.61.1.2", "10.61.2.2"];
    const UDP_PORT: u16 = 9999;

    /// The router config of the lab (handed to the guest as a boot module).
    pub fn router_config() -> String {
        let mut t = String::from("[engine]\npool_buffers = 2048\n");
        for i in 0..2 {
            t += &format!(
                "\n[[interface]]\nname = \"lab{i}\"\nmac = \"{}\"\nipv4 = [\"{}/24\"]\n",
                ROUTER_MAC[i], ROUTER_IP[i]
            );
        }
        for i in 0..2 {
            t += &format!(
                "\n[[neighbor]]\nip = \"{}\"\nmac = \"{}\"\n",
                HOST_IP[i], HOST_MAC[i]
            );
        }
        t
    }

    fn ip(args: &[&str]) -> Result<()> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .context("run ip(8)")?;
        if !out.status.success() {
            bail!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Namespaces, taps and the guest; torn down on drop.
    struct Lab {
        ns: [String; 2],
        taps: [String; 2],
        guest: Option<Child>,
        dir: PathBuf,
    }

    impl Drop for Lab {
        fn drop(&mut self) {
            if let Some(mut g) = self.guest.take() {
                let _ = g.kill();
                let _ = g.wait();
            }
            for n in &self.ns {
                let _ = Command::new("ip").args(["netns", "del", n]).output();
            }
            for t in &self.taps {
                let _ = Command::new("ip").args(["link", "del", t]).output();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn parse_counter(line: &str, key: &str) -> Option<u64> {
        let rest = line.split(key).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    }

    pub fn run(vnf: &str, o: &LabOpts) -> Result<()> {
        if vnf != "router" {
            bail!("image lab: only the router has a lab");
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("image lab needs root (network namespaces and tap devices)");
        }
        need_tool("ip", "iproute2")?;
        if !o.no_build {
            build(vnf, None, false, &workspace_root().join("target/images"))?;
        }
        let id = std::process::id();
        let dir = std::env::temp_dir().join(format!("uk-lab-{id}"));
        std::fs::create_dir_all(&dir)?;
        let mut lab = Lab {
            ns: [format!("uk{id}a"), format!("uk{id}b")],
            taps: [format!("uk{id}ta"), format!("uk{id}tb")],
            guest: None,
            dir: dir.clone(),
        };
        for t in &lab.taps {
            ip(&["tuntap", "add", "dev", t, "mode", "tap"])?;
        }
        for n in &lab.ns {
            ip(&["netns", "add", n])?;
        }
        let cfg = dir.join("router.toml");
        std::fs::write(&cfg, router_config())?;
        let guest = Guest {
            machine: o.machine,
            memory: o.memory.clone(),
            accel: Accel::Auto,
            kernel: workspace_root().join(format!("target/images/{vnf}.elf")),
            disk: None,
            initrd: Some(cfg),
            append: "stats=500".into(),
            nets: (0..2)
                .map(|i| NetSpec::Tap {
                    ifname: lab.taps[i].clone(),
                    mac: ROUTER_MAC[i].into(),
                })
                .collect(),
            pcap_dir: None,
        };
        let mut child = guest
            .command()?
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no QEMU stdout"))?;
        lab.guest = Some(child);
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                println!("guest| {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = format!("{vnf} ready");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains(&ready) => break,
                Ok(l) if l.contains("FATAL") || l.contains("PANIC") => bail!("guest failed: {l}"),
                Ok(_) => {}
                Err(_) => bail!("no `{ready}` line from the guest within 120 s"),
            }
        }
        // The guest holds the taps open; move each into its namespace and address it.
        for i in 0..2 {
            let (ns, tap) = (&lab.ns[i], &lab.taps[i]);
            ip(&["link", "set", tap, "netns", ns])?;
            ip(&["-n", ns, "link", "set", tap, "address", HOST_MAC[i], "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", HOST_IP[i]),
                "dev",
                tap,
            ])?;
            ip(&["-n", ns, "route", "add", "default", "via", ROUTER_IP[i]])?;
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                ROUTER_IP[i],
                "lladdr",
                ROUTER_MAC[i],
                "dev",
                tap,
            ])?;
        }
        let me = std::env::current_exe()?;
        let sink = Command::new("ip")
            .args(["netns", "exec", &lab.ns[1]])
            .arg(&me)
            .args([
                "image",
                "sink-raw",
                "--iface",
                &lab.taps[1],
                "--port",
                &UDP_PORT.to_string(),
            ])
            .args(["--seconds", &format!("{}", o.seconds + 1.5)])
            .args([
                "--src-mac",
                ROUTER_MAC[1],
                "--dst-mac",
                HOST_MAC[1],
                "--ttl",
                "63",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .context("start the sink")?;
        std::thread::sleep(Duration::from_millis(500));
        let gen = Command::new("ip")
            .args(["netns", "exec", &lab.ns[0]])
            .arg(&me)
            .args([
                "image",
                "gen-udp",
                "--dst",
                &format!("{}:{UDP_PORT}", HOST_IP[1]),
            ])
            .args([
                "--seconds",
                &o.seconds.to_string(),
                "--size",
                &o.size.to_string(),
            ])
            .args(["--pps", &o.pps.to_string()])
            .output()
            .context("run the generator")?;
        if !gen.status.success() {
            bail!("generator failed: {}", String::from_utf8_lossy(&gen.stderr));
        }
        let sink = sink.wait_with_output()?;
        if !sink.status.success() {
            bail!("sink failed: {}", String::from_utf8_lossy(&sink.stderr));
        }
        let g: serde_json::Value =
            serde_json::from_slice(&gen.stdout).context("generator output")?;
        let k: serde_json::Value = serde_json::from_slice(&sink.stdout).context("sink output")?;
        // The guest's counters once the traffic is over (stats every 500 ms): read until
        // two consecutive reports agree.
        let (mut rx0, mut tx1, mut prev) = (None, None, None);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            if l.contains("port 0:") {
                rx0 = parse_counter(&l, "rx ");
            }
            if l.contains("port 1:") {
                tx1 = parse_counter(&l, "tx ");
                if prev.is_some() && prev == Some((rx0, tx1)) {
                    break;
                }
                prev = Some((rx0, tx1));
            }
        }
        let result = serde_json::json!({
            "machine": o.machine.qemu_name(),
            "payload": o.size,
            "seconds": o.seconds,
            "generator": g,
            "sink": k,
            "guest_port0_rx": rx0,
            "guest_port1_tx": tx1,
        });
        println!("lab result: {result}");
        Ok(())
    }

    /// Generator: UDP datagrams from this namespace's stack.
    pub fn gen_udp(dst: std::net::SocketAddr, seconds: f64, size: usize, pps: u64) -> Result<()> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.connect(dst)?;
        let payload = vec![0x5au8; size];
        let t0 = Instant::now();
        let dur = Duration::from_secs_f64(seconds);
        let mut sent = 0u64;
        let mut errors = 0u64;
        while t0.elapsed() < dur {
            if pps > 0 {
                let due = (t0.elapsed().as_secs_f64() * pps as f64) as u64;
                if sent >= due {
                    std::thread::sleep(Duration::from_micros(50));
                    continue;
                }
            }
            match s.send(&payload) {
                Ok(_) => sent += 1,
                Err(_) => errors += 1,
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({"sent": sent, "errors": errors, "seconds": secs, "pps": sent as f64 / secs})
        );
        Ok(())
    }

    fn parse_mac(s: &str) -> Result<[u8; 6]> {
        let v: Vec<u8> = s
            .split(':')
            .map(|x| u8::from_str_radix(x, 16))
            .collect::<Result<_, _>>()?;
        v.try_into().map_err(|_| anyhow!("bad MAC {s}"))
    }

    /// Sink: every frame on `iface`, checking routed UDP to `port`.
    pub fn sink_raw(
        iface: &str,
        port: u16,
        seconds: f64,
        src: &str,
        dst: &str,
        ttl: u8,
    ) -> Result<()> {
        let (src, dst) = (parse_mac(src)?, parse_mac(dst)?);
        let name = std::ffi::CString::new(iface)?;
        // SAFETY: plain libc calls with valid arguments; the fd is closed at the end.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            )
        };
        if fd < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: name is a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {iface}");
        }
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: pointers to live locals with their exact sizes.
        unsafe {
            if libc::bind(
                fd,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            ) != 0
            {
                bail!("bind {iface}: {}", std::io::Error::last_os_error());
            }
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        let (mut good, mut bad_mac, mut bad_ttl, mut bad_csum, mut other) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        let (mut first, mut last) = (None, None);
        let mut buf = [0u8; 2048];
        let t0 = Instant::now();
        while t0.elapsed().as_secs_f64() < seconds {
            // SAFETY: buf is a live writable buffer of buf.len() bytes.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            let f = &buf[..n as usize];
            let is_udp = f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[23] == 17;
            let dport = if is_udp {
                u16::from_be_bytes([f[36], f[37]])
            } else {
                0
            };
            if !is_udp || dport != port {
                other += 1;
                continue;
            }
            let now = t0.elapsed().as_secs_f64();
            first.get_or_insert(now);
            last = Some(now);
            let ihl = ((f[14] & 0x0f) as usize) * 4;
            let mut sum = 0u32;
            for c in f[14..14 + ihl.min(f.len() - 14)].chunks(2) {
                sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
            }
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            if f[0..6] != dst || f[6..12] != src {
                bad_mac += 1;
            } else if f[22] != ttl {
                bad_ttl += 1;
            } else if sum != 0xffff {
                bad_csum += 1;
            } else {
                good += 1;
            }
        }
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        let span = match (first, last) {
            (Some(a), Some(b)) if b > a => b - a,
            _ => 0.0,
        };
        let pps = if span > 0.0 { good as f64 / span } else { 0.0 };
        println!(
            "{}",
            serde_json::json!({"good": good, "bad_mac": bad_mac, "bad_ttl": bad_ttl, "bad_checksum": bad_csum,
                "other": other, "span_seconds": span, "pps": pps})
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netspec_parses_tap_and_udp() {
        assert_eq!(
            NetSpec::parse("tap:uk0", 0).unwrap(),
            NetSpec::Tap {
                ifname: "uk0".into(),
                mac: "02:00:00:00:00:01".into()
            }
        );
        assert_eq!(
            NetSpec::parse("udp:5000:5001,mac=02:aa:00:00:00:01", 3).unwrap(),
            NetSpec::Udp {
                local: 5000,
                peer: 5001,
                mac: "02:aa:00:00:00:01".into()
            }
        );
        assert!(NetSpec::parse("udp:x:1", 0).is_err());
        assert!(NetSpec::parse("vde:sw", 0).is_err());
        assert!(NetSpec::parse("tap:uk0,speed=10", 0).is_err());
    }

    #[test]
    fn ready_line_and_median() {
        assert_eq!(
            parse_ready_ms("router ready in 3.512 ms (2 ports, heap peak 10 KiB)"),
            Some(3.512)
        );
        assert_eq!(parse_ready_ms("router starting"), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn multiboot_header_is_found_and_neutralised() {
        let mut elf = vec![0u8; 4096];
        let flags = 0x0001_0003u32;
        let hdr = [
            MULTIBOOT_MAGIC,
            flags,
            0u32.wrapping_sub(MULTIBOOT_MAGIC.wrapping_add(flags)),
        ];
        for (i, w) in hdr.iter().enumerate() {
            elf[0x1000 - 64 + 4 * i..0x1000 - 60 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        assert_eq!(multiboot_offset(&elf), Some(0x1000 - 64));
        let pvh = without_multiboot(&elf).unwrap();
        assert_eq!(multiboot_offset(&pvh), None);
        assert_eq!(pvh.len(), elf.len());
        // A magic with a wrong checksum is not a header.
        elf[0x1000 - 56] ^= 1;
        assert_eq!(multiboot_offset(&elf), None);
        assert!(without_multiboot(&elf).is_err());
    }

    #[test]
    fn lab_config_is_a_valid_router_config() {
        let t = lab::router_config();
        assert!(
            t.contains("10.61.1.1/24") && t.contains("02:00:00:00:0b:02"),
            "{t}"
        );
        let v: std::collections::BTreeMap<String, serde_json::Value> = Default::default();
        assert!(v.is_empty());
    }

    #[test]
    fn iso_dates_from_epoch() {
        assert_eq!(iso_date("0").unwrap(), "1970010100000000");
        assert_eq!(iso_date("1700000000").unwrap(), "2023111422132000");
        assert_eq!(iso_date("951782400").unwrap(), "2000022900000000");
        assert!(iso_date("soon").is_err());
    }

    #[test]
    fn unknown_vnf_is_an_error() {
        let e = example_config("toaster").unwrap_err().to_string();
        assert!(e.contains("router"), "{e}");
    }
}
