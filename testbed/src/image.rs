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
const VNFS: &[(&str, &str)] = &[("router", "vnfs/unikernel/config/router.toml")];
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
    },
    /// Boot target/images/<vnf>.elf under QEMU; console on stdout; exits with the guest
    Run {
        vnf: String,
        #[command(flatten)]
        opts: RunOpts,
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
    #[arg(long, default_value = "32M")]
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
        ImageCmd::Build { vnf, config, no_disk, out } => {
            let out = out.unwrap_or_else(|| workspace_root().join("target/images"));
            let built = build(&vnf, config.as_deref(), !no_disk, &out)?;
            println!("{}: {} bytes (stripped ELF)", built.elf.display(), file_len(&built.elf)?);
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
    }
}

/// The workspace root (the directory holding `vnfs/unikernel`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

fn file_len(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p).with_context(|| format!("stat {}", p.display()))?.len())
}

fn example_config(vnf: &str) -> Result<PathBuf> {
    VNFS.iter().find(|(n, _)| *n == vnf).map(|(_, c)| workspace_root().join(c)).ok_or_else(|| {
        let names: Vec<&str> = VNFS.iter().map(|(n, _)| *n).collect();
        anyhow!("no unikernel build for VNF `{vnf}` (available: {})", names.join(", "))
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
        Some(c) => c.canonicalize().with_context(|| format!("config {}", c.display()))?,
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
    let word = |o: usize| elf.get(o..o + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
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
    std::fs::copy(from, to).with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
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
        format!("--remap-path-prefix={}=/src/vnfs/unikernel/target", target_dir.display()),
    ];
    // Joined with the crate's own target rustflags (cargo concatenates config arrays).
    let flags_toml = format!(
        "target.{TARGET}.rustflags=[{}]",
        remaps.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(",")
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&dir)
        .args(["build", "--release", "--bin", "unikernel", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--config")
        .arg(&flags_toml);
    cmd.args(["--features", "multiboot"]);
    for v in ["CARGO_TARGET_DIR", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_BUILD_RUSTFLAGS"] {
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
    let out = Command::new("grub-mkrescue")
        .env("SOURCE_DATE_EPOCH", &epoch)
        .args(["--fonts=", "--locales=", "--themes="])
        .arg("--install-modules=multiboot normal serial terminal configfile iso9660 biosdisk part_msdos")
        .arg("-o")
        .arg(&iso)
        .arg(&tree)
        .output()
        .context("run grub-mkrescue")?;
    if !out.status.success() {
        bail!("grub-mkrescue failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let _ = std::fs::remove_file(qcow2);
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&iso)
        .arg(qcow2)
        .output()
        .context("run qemu-img")?;
    if !out.status.success() {
        bail!("qemu-img convert failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
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
    let module = Path::new("/sys/module/kvm_intel").exists() || Path::new("/sys/module/kvm_amd").exists();
    let dev = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
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
            ["tap", ifname] if !ifname.is_empty() => Ok(NetSpec::Tap { ifname: ifname.to_string(), mac }),
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
        c.args(["-accel", accel, "-machine", self.machine.qemu_name(), "-m", &self.memory]);
        c.args(["-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot"]);
        c.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4"]);
        if accel == "kvm" {
            c.args(["-cpu", "host"]);
        }
        match &self.disk {
            Some(d) => {
                if self.machine == Machine::Microvm {
                    bail!("the GRUB disk image needs a BIOS machine: use --machine pc or q35");
                }
                c.arg("-drive").arg(format!("file={},format=qcow2,if=ide,snapshot=on", d.display()));
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
                NetSpec::Tap { ifname, mac } => {
                    (format!("tap,id=n{i},ifname={ifname},script=no,downscript=no"), mac)
                }
                NetSpec::Udp { local, peer, mac } => {
                    (format!("socket,id=n{i},udp=127.0.0.1:{peer},localaddr=127.0.0.1:{local}"), mac)
                }
            };
            c.args(["-netdev", &netdev]);
            c.args(["-device", &format!("{},netdev=n{i},mac={mac}", self.machine.net_device())]);
            if let Some(d) = &self.pcap_dir {
                let f = d.join(format!("port{i}.pcap"));
                c.arg("-object").arg(format!("filter-dump,id=f{i},netdev=n{i},file={}", f.display()));
            }
        }
        Ok(c)
    }
}

fn guest_for(vnf: &str, o: &RunOpts) -> Result<Guest> {
    let dir = workspace_root().join("target/images");
    let nets = o.nets.iter().enumerate().map(|(i, s)| NetSpec::parse(s, i)).collect::<Result<Vec<_>>>()?;
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
    let mut child = guest.command()?.stdin(Stdio::null()).spawn().context("start qemu-system-x86_64")?;
    let st = if o.timeout > 0 {
        wait_timeout(&mut child, Duration::from_secs(o.timeout))?
    } else {
        Some(child.wait().context("wait for QEMU")?)
    };
    match st {
        Some(st) => guest_code(st),
        None => {
            eprintln!("image run: guest still running after {} s; stopped", o.timeout);
            Ok(124)
        }
    }
}

fn wait_timeout(child: &mut Child, t: Duration) -> Result<Option<ExitStatus>> {
    let end = Instant::now() + t;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Some(st));
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
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
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no QEMU stdout"))?;
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
    writeln!(w, "image bench {vnf}: machine {} accel {:?} memory {} runs {}", o.machine.qemu_name(), o.accel, o.memory, host.len())?;
    writeln!(w, "  QEMU launch -> ready line: median {hm:.1} ms (runs: {:.1?})", host)?;
    writeln!(w, "  guest entry -> ready:      median {gm:.3} ms (runs: {:.3?})", inside)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netspec_parses_tap_and_udp() {
        assert_eq!(
            NetSpec::parse("tap:uk0", 0).unwrap(),
            NetSpec::Tap { ifname: "uk0".into(), mac: "02:00:00:00:00:01".into() }
        );
        assert_eq!(
            NetSpec::parse("udp:5000:5001,mac=02:aa:00:00:00:01", 3).unwrap(),
            NetSpec::Udp { local: 5000, peer: 5001, mac: "02:aa:00:00:00:01".into() }
        );
        assert!(NetSpec::parse("udp:x:1", 0).is_err());
        assert!(NetSpec::parse("vde:sw", 0).is_err());
        assert!(NetSpec::parse("tap:uk0,speed=10", 0).is_err());
    }

    #[test]
    fn ready_line_and_median() {
        assert_eq!(parse_ready_ms("router ready in 3.512 ms (2 ports, heap peak 10 KiB)"), Some(3.512));
        assert_eq!(parse_ready_ms("router starting"), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn multiboot_header_is_found_and_neutralised() {
        let mut elf = vec![0u8; 4096];
        let flags = 0x0001_0003u32;
        let hdr = [MULTIBOOT_MAGIC, flags, 0u32.wrapping_sub(MULTIBOOT_MAGIC.wrapping_add(flags))];
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
    fn unknown_vnf_is_an_error() {
        let e = example_config("toaster").unwrap_err().to_string();
        assert!(e.contains("router"), "{e}");
    }
}
