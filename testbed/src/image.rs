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

mod build;
pub use build::*;
pub mod scale;

/// The unikernel crate, relative to the workspace root.
const UNIKERNEL_DIR: &str = "vnfs/unikernel";
/// Rust target of the kernel (set in the crate's `.cargo/config.toml`).
const TARGET: &str = "x86_64-unknown-linux-gnu";
/// VNFs that have a unikernel build (the kernel crate's cargo feature of the same
/// name), with their shipped example config.
const VNFS: &[(&str, &str)] = &[
    ("router", "vnfs/router/examples/router.toml"),
    ("vbng", "vnfs/unikernel/examples/vbng.toml"),
    ("vbng-up", "vnfs/unikernel/examples/vbng-up.toml"),
    ("vcpe", "vnfs/vcpe/examples/vcpe-a.toml"),
    ("keyserver", "vnfs/unikernel/examples/keyserver.toml"),
];
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
        /// Output directory (default: target/images under the current directory,
        /// where `image run`, `image lab` and `image bench` look for images)
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
    /// a checking sink in netns B (tap port 1); reports the forwarding rate (root).
    /// `vbng`: PPPoE subscribers on the access NIC, UDP both ways through the core NIC,
    /// over QEMU UDP-socket netdevs (no root). `vcpe` (root): udhcpc gets a lease from
    /// the guest on its LAN, pings and a UDP stream cross a static-key tunnel to a
    /// `vcpe` process in another namespace
    Lab {
        vnf: String,
        /// Seconds of traffic (finite, 0 to 86400)
        #[arg(long, default_value_t = 3.0, value_parser = pktgen::parse_seconds)]
        seconds: f64,
        /// UDP payload bytes
        #[arg(long, default_value_t = 18)]
        size: usize,
        /// Offered load in packets/s (0: as fast as the generator goes; vbng: 1000 per
        /// direction; vcpe: 1000 LAN to LAN)
        #[arg(long, default_value_t = 0)]
        pps: u64,
        /// PPPoE subscribers (vbng)
        #[arg(long, default_value_t = 10)]
        sessions: u32,
        /// (vbng) Authenticate and account by RADIUS instead of local users: a server
        /// (FreeRADIUS) on the host's loopback, auth on PORT, accounting on PORT+1,
        /// reached by the guest through its management NIC (QEMU user networking);
        /// the subscribers are user0, user1, ... with the password uk-lab-secret
        #[arg(long, value_name = "PORT")]
        radius: Option<u16>,
        /// (vbng) The RADIUS shared secret with --radius
        #[arg(long, default_value = "testing123")]
        radius_secret: String,
        #[arg(long, value_enum, default_value_t = Machine::Microvm)]
        machine: Machine,
        #[arg(long, default_value = "128M")]
        memory: String,
        /// Use the image as built; do not rebuild first
        #[arg(long)]
        no_build: bool,
        /// router: attach the guest's two NICs to vhost-user sockets served by this
        /// process (QEMU is the vhost-user frontend, our ports the backends; the
        /// generator and sink run on them, as on an OVS-DPDK or VPP host; no root)
        #[arg(long)]
        vhost_user: bool,
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
    /// Write a config with a big side table: the router's TOML and a route file of
    /// COUNT BGP-like IPv4 prefixes, or the vBNG's TOML and a user file of COUNT
    /// users (DIR/<vnf>.toml; boot it with `image run <vnf> --config DIR/<vnf>.toml
    /// --config-drive config-2`)
    ScaleConfig {
        vnf: String,
        /// Prefixes (router) or users (vbng)
        #[arg(long)]
        count: usize,
        /// Output directory
        #[arg(long)]
        dir: PathBuf,
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
    /// A port: `tap:IFNAME[,mac=MAC]`, `udp:LOCALPORT:PEERPORT[,mac=MAC]` or
    /// `vhost-user:SOCKET[,mac=MAC]` (QEMU connects to a vhost-user backend listening
    /// on SOCKET, e.g. `pktgen --tx vhost-user:SOCKET,server`; guest RAM becomes a
    /// shared memfd) (repeatable, in port order)
    #[arg(long = "net")]
    nets: Vec<String>,
    /// A file for the guest's fw_cfg, `NAME=FILE` (e.g. `opt/vnf/users=users.txt`;
    /// repeatable)
    #[arg(long = "fw-cfg")]
    fw_cfg: Vec<String>,
    /// Record each port's traffic to DIR/port<N>.pcap (QEMU filter-dump)
    #[arg(long)]
    pcap_dir: Option<PathBuf>,
    /// Attach FILE as a read-only virtio-blk disk (e.g. a config drive ISO; repeatable)
    #[arg(long = "drive")]
    drives: Vec<PathBuf>,
    /// Hand --config to the guest on a config drive instead of a boot module: an ISO
    /// 9660 volume (built with xorriso) labelled `config-2` (OpenStack:
    /// openstack/latest/user_data) or `cidata` (NoCloud: user-data), as a virtio-blk disk
    #[arg(long, value_name = "KIND", value_parser = ["config-2", "cidata"])]
    config_drive: Option<String>,
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

    /// The virtio-blk device of this machine.
    pub fn blk_device(self) -> &'static str {
        match self {
            Machine::Microvm => "virtio-blk-device",
            Machine::Q35 | Machine::Pc => "virtio-blk-pci",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Accel {
    Auto,
    Kvm,
    Tcg,
}

impl Accel {
    /// The option's value as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
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
            let out = out.unwrap_or_else(images_dir);
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
        ImageCmd::ScaleConfig { vnf, count, dir } => {
            let w = scale::write(&vnf, count, &dir)?;
            println!(
                "{}: {count} entries in {} ({} bytes)",
                w.config.display(),
                w.side_file.display(),
                w.bytes
            );
            Ok(())
        }
        ImageCmd::Lab {
            vnf,
            seconds,
            size,
            pps,
            sessions,
            radius,
            radius_secret,
            machine,
            memory,
            no_build,
            vhost_user,
        } => {
            let o = lab::LabOpts {
                seconds,
                size,
                pps,
                sessions,
                radius,
                radius_secret,
                machine,
                memory,
                no_build,
            };
            if vhost_user {
                lab_vhost::run(&vnf, &o)
            } else {
                lab::run(&vnf, &o)
            }
        }
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

/// Where images are written and looked for: `target/images` under the current
/// directory (the workspace's own `target/images` when run from the workspace root,
/// as the README does); never a path fixed at compile time.
pub fn images_dir() -> PathBuf {
    PathBuf::from("target").join("images")
}

/// The workspace root (the directory holding `vnfs/unikernel`): the unikernel's
/// sources, which `image build` compiles (and its cargo target directory there).
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
    /// QEMU user networking (slirp: the guest is 10.0.2.15/24, the host 10.0.2.2,
    /// no root): `fwd` forwards host TCP ports on 127.0.0.1 to guest ports, `udp`
    /// host UDP ports (`HOSTPORT-GUESTPORT/udp`: the key server's IKE).
    User {
        fwd: Vec<(u16, u16)>,
        udp: Vec<(u16, u16)>,
        mac: String,
    },
    /// A vhost-user backend listening on a unix socket (QEMU `-netdev vhost-user`,
    /// QEMU the frontend and client); guest RAM is then a shared memfd the backend maps.
    VhostUser { path: PathBuf, mac: String },
}

/// The guest's address on a `user` port (QEMU's slirp default).
pub const USER_NET_GUEST: &str = "10.0.2.15";
/// The host as a `user` port's guest sees it.
pub const USER_NET_HOST: &str = "10.0.2.2";

impl NetSpec {
    /// Parse `tap:IFNAME[,mac=MAC]`, `udp:LOCAL:PEER[,mac=MAC]` or
    /// `user[:HOSTPORT-GUESTPORT[/udp]...][,mac=MAC]`; port `index` picks
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
        if let Some(path) = main.strip_prefix("vhost-user:") {
            // QEMU's option syntax: a comma in the path would start the next option
            if path.is_empty() || path.contains(',') {
                bail!("--net {s}: expected vhost-user:SOCKET (a path without commas)");
            }
            return Ok(NetSpec::VhostUser {
                path: path.into(),
                mac,
            });
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
            ["user", fwd @ ..] => {
                let (mut v, mut udp) = (Vec::new(), Vec::new());
                for f in fwd {
                    let (f, is_udp) = match f.strip_suffix("/udp") {
                        Some(f) => (f, true),
                        None => (*f, false),
                    };
                    let (h, g) = f
                        .split_once('-')
                        .ok_or_else(|| anyhow!("--net {s}: expected HOSTPORT-GUESTPORT, not `{f}`"))?;
                    let pair = (
                        h.parse().with_context(|| format!("--net {s}: bad port `{h}`"))?,
                        g.parse().with_context(|| format!("--net {s}: bad port `{g}`"))?,
                    );
                    if is_udp {
                        udp.push(pair);
                    } else {
                        v.push(pair);
                    }
                }
                Ok(NetSpec::User { fwd: v, udp, mac })
            }
            _ => bail!(
                "--net {s}: expected tap:IFNAME, udp:LOCALPORT:PEERPORT, user[:HOSTPORT-GUESTPORT[/udp]...] or vhost-user:SOCKET"
            ),
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
    /// Read-only virtio-blk disks (raw images: config drives).
    pub drives: Vec<PathBuf>,
    /// fw_cfg files (`-fw_cfg name=NAME,file=PATH`), e.g. the vBNG's host seed.
    pub fw_cfg: Vec<(String, PathBuf)>,
}

/// fw_cfg name of the seed the vBNG guest mixes into its random source.
pub const FWCFG_ENTROPY: &str = "opt/vnf/entropy";

/// Write 32 bytes from the host's /dev/urandom to `path` (mode 0600): the vBNG
/// guest's seed (fw_cfg `opt/vnf/entropy`) for CPUs without RDSEED/RDRAND (TCG).
pub fn write_host_seed(path: &Path) -> Result<()> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("read /dev/urandom")?;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(&seed)
        .with_context(|| format!("write {}", path.display()))
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
        // vhost-user backends map guest RAM: it must be a shared file (a memfd)
        let vhost = self
            .nets
            .iter()
            .any(|n| matches!(n, NetSpec::VhostUser { .. }));
        let machine = if vhost {
            c.arg("-object").arg(format!(
                "memory-backend-memfd,id=mem,size={},share=on",
                self.memory
            ));
            format!("{},memory-backend=mem", self.machine.qemu_name())
        } else {
            self.machine.qemu_name().to_string()
        };
        c.args(["-accel", accel, "-machine", &machine, "-m", &self.memory]);
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
        for (i, d) in self.drives.iter().enumerate() {
            let f = d.display().to_string();
            if f.contains(',') {
                bail!("--drive {f}: QEMU option syntax forbids commas in the path");
            }
            c.arg("-drive")
                .arg(format!("file={f},if=none,id=d{i},format=raw,readonly=on"));
            c.args([
                "-device",
                &format!("{},drive=d{i}", self.machine.blk_device()),
            ]);
        }
        for (name, file) in &self.fw_cfg {
            c.arg("-fw_cfg")
                .arg(format!("name={name},file={}", file.display()));
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
                NetSpec::User { fwd, udp, mac } => {
                    let mut d = format!("user,id=n{i},net=10.0.2.0/24");
                    for (h, g) in fwd {
                        d += &format!(",hostfwd=tcp:127.0.0.1:{h}-{USER_NET_GUEST}:{g}");
                    }
                    for (h, g) in udp {
                        d += &format!(",hostfwd=udp:127.0.0.1:{h}-{USER_NET_GUEST}:{g}");
                    }
                    (d, mac)
                }
                NetSpec::VhostUser { path, mac } => {
                    // QEMU connects (and reconnects every second) to the backend
                    c.arg("-chardev").arg(format!(
                        "socket,id=c{i},path={},reconnect=1",
                        path.display()
                    ));
                    (format!("vhost-user,id=n{i},chardev=c{i}"), mac)
                }
            };
            let dump = !matches!(n, NetSpec::VhostUser { .. });
            c.args(["-netdev", &netdev]);
            c.args([
                "-device",
                &format!("{},netdev=n{i},mac={mac}", self.machine.net_device()),
            ]);
            // (the vhost-user data path bypasses QEMU: nothing to dump)
            if let Some(d) = self.pcap_dir.as_ref().filter(|_| dump) {
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
    let dir = images_dir();
    let nets = o
        .nets
        .iter()
        .enumerate()
        .map(|(i, s)| NetSpec::parse(s, i))
        .collect::<Result<Vec<_>>>()?;
    let mut fw_cfg = Vec::new();
    for f in &o.fw_cfg {
        match f.split_once('=') {
            // QEMU's option syntax: a comma would start the next option.
            Some((name, file)) if !name.is_empty() && !file.is_empty() && !f.contains(',') => {
                fw_cfg.push((name.to_string(), PathBuf::from(file)))
            }
            _ => bail!("--fw-cfg {f}: expected NAME=FILE (no commas)"),
        }
    }
    if o.disk && (o.config.is_some() || !o.append.is_empty()) {
        bail!("--disk boots GRUB's own entry: --config and --append apply to the ELF only");
    }
    fw_cfg.extend(seed_for(vnf)?);
    let mut drives = o.drives.clone();
    let mut initrd = o.config.clone();
    if let Some(kind) = &o.config_drive {
        let Some(cfg) = &o.config else {
            bail!("--config-drive {kind}: needs --config FILE (the user data)");
        };
        let iso = std::env::temp_dir().join(format!("{}{kind}.iso", built_drive_prefix()));
        make_config_drive(kind, cfg, &iso)?;
        drives.push(iso);
        initrd = None;
    }
    Ok(Guest {
        machine: o.machine,
        memory: o.memory.clone(),
        accel: o.accel,
        kernel: dir.join(format!("{vnf}.elf")),
        disk: o.disk.then(|| dir.join(format!("{vnf}.qcow2"))),
        initrd,
        append: o.append.clone(),
        nets,
        pcap_dir: o.pcap_dir.clone(),
        drives,
        fw_cfg,
    })
}

/// Build a config drive at `out` whose user data is the file `user_data`: `kind`
/// `config-2` (OpenStack: `openstack/latest/user_data`, `meta_data.json`) or `cidata`
/// (cloud-init NoCloud: `user-data`, `meta-data`); ISO 9660 with Joliet and Rock
/// Ridge names, by xorriso (`-as mkisofs`, as genisoimage would).
pub fn make_config_drive(kind: &str, user_data: &Path, out: &Path) -> Result<()> {
    need_tool("xorriso", "xorriso")?;
    let data = std::fs::read(user_data).with_context(|| format!("read {}", user_data.display()))?;
    let dir = std::env::temp_dir().join(format!(
        "uk-drive-{}-{}",
        std::process::id(),
        out.file_name().and_then(|n| n.to_str()).unwrap_or("iso")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let w = |rel: &str, bytes: &[u8]| -> Result<()> {
        let p = dir.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
        }
        std::fs::write(&p, bytes).with_context(|| format!("write {}", p.display()))
    };
    // The files the config names (route file, user file), at the path it names.
    for (on_drive, host) in scale::side_files(user_data) {
        if on_drive.is_empty() || on_drive.split('/').any(|c| c == "..") {
            bail!(
                "{}: cannot put {on_drive:?} on a config drive",
                user_data.display()
            );
        }
        let p = dir.join(&on_drive);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
        }
        std::fs::copy(&host, &p).with_context(|| {
            format!(
                "{} names {}: copy it onto the config drive",
                user_data.display(),
                host.display()
            )
        })?;
    }
    match kind {
        "config-2" => {
            w("openstack/latest/user_data", &data)?;
            w(
                "openstack/latest/meta_data.json",
                b"{\"uuid\": \"00000000-0000-0000-0000-000000000001\", \"name\": \"vnf\"}\n",
            )?;
        }
        "cidata" => {
            w("user-data", &data)?;
            w("meta-data", b"instance-id: vnf-1\nlocal-hostname: vnf\n")?;
        }
        _ => bail!("config drive kind {kind}: expected config-2 or cidata"),
    }
    let o = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-J", "-r", "-V", kind, "-o"])
        .arg(out)
        .arg(&dir)
        .output()
        .context("run xorriso")?;
    let _ = std::fs::remove_dir_all(&dir);
    if !o.status.success() {
        bail!(
            "xorriso failed: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .next()
                .unwrap_or("")
        );
    }
    Ok(())
}

/// The vBNG's host seed for `image run` and `image bench`: a file in the temp
/// directory, removed by [`remove_seed`] when the guest is done.
fn seed_for(vnf: &str) -> Result<Option<(String, PathBuf)>> {
    if !matches!(vnf, "vbng" | "vbng-up" | "vcpe" | "keyserver") {
        return Ok(None);
    }
    let p = std::env::temp_dir().join(format!("uk-{vnf}-{}.seed", std::process::id()));
    write_host_seed(&p)?;
    Ok(Some((FWCFG_ENTROPY.to_string(), p)))
}

fn remove_seed(g: &Guest) {
    for (name, f) in &g.fw_cfg {
        if name == FWCFG_ENTROPY {
            let _ = std::fs::remove_file(f);
        }
    }
    // Config drives built for this run (`--config-drive`), never the user's `--drive`.
    let prefix = built_drive_prefix();
    for d in &g.drives {
        if d.parent() == Some(std::env::temp_dir().as_path())
            && d.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        {
            let _ = std::fs::remove_file(d);
        }
    }
}

/// File name prefix of the config drives this process builds in the temp directory.
fn built_drive_prefix() -> String {
    format!("uk-cfgdrive-{}-", std::process::id())
}

fn prepare(vnf: &str, o: &RunOpts) -> Result<Guest> {
    example_config(vnf)?;
    if !o.no_build {
        build(vnf, None, o.disk, &images_dir())?;
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
    let r = run_guest(vnf, o, &guest);
    remove_seed(&guest);
    r
}

fn run_guest(vnf: &str, o: &RunOpts, guest: &Guest) -> Result<i32> {
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
    let r = bench_guest(vnf, runs, &o, &guest);
    remove_seed(&guest);
    r
}

fn bench_guest(vnf: &str, runs: usize, o: &RunOpts, guest: &Guest) -> Result<()> {
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
        "image bench {vnf}: machine {} accel {} memory {} runs {}",
        o.machine.qemu_name(),
        o.accel.name(),
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
mod lab;
/// The vBNG's lab: PPPoE subscribers and core traffic over UDP-socket netdevs.
mod lab_vbng;
/// The vCPE's lab: udhcpc on its LAN, a tunnel to a `vcpe` process (root).
mod lab_vcpe;
mod lab_vhost;

#[cfg(test)]
mod tests;
