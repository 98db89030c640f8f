//! The vCPE unikernel under QEMU: `image build vcpe` builds it (the `vcpe` crate's
//! composition, without `std`), it boots to `vcpe ready` with two NICs, refuses
//! what it cannot do (IKE tunnels, the key server link, one NIC) with a one-line
//! reason, and in `image lab vcpe` (root) BusyBox `udhcpc` gets a lease from its
//! LAN DHCP server and pings and a UDP stream cross a static-key ESP tunnel to a
//! `vcpe` Linux process.
//!
//! A test binary of its own: the VNF images share the kernel crate's target
//! directory, and cargo runs test binaries one after another. Skips (printing why)
//! when QEMU is missing, and the lab when not root or udhcpc/busybox are missing;
//! `scripts/test` runs it as root with the tools installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn testbed() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_testbed"));
    c.current_dir(root());
    c
}

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// One QEMU guest at a time (a small machine).
fn qemu_lock() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

/// `testbed image build vcpe --no-disk` once per test process; `None` (skip) without
/// QEMU.
fn built() -> Option<PathBuf> {
    if !have("qemu-system-x86_64") {
        eprintln!("skipped: qemu-system-x86_64 is not installed (scripts/setup installs it)");
        return None;
    }
    static B: OnceLock<Result<(), String>> = OnceLock::new();
    let r = B.get_or_init(|| {
        let out = testbed()
            .args(["image", "build", "vcpe", "--no-disk"])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "image build failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = r {
        panic!("{e}");
    }
    Some(root().join("target/images"))
}

fn udp_nets(base: u16, n: usize) -> Vec<String> {
    (0..n)
        .flat_map(|i| {
            let p = base + 2 * i as u16;
            [
                "--net".to_string(),
                format!("udp:{}:{},mac=02:c9:00:00:0{i}:01", p, p + 1),
            ]
        })
        .collect()
}

fn run_image(args: &[&str], extra: &[String]) -> Output {
    let _g = qemu_lock();
    testbed()
        .args([
            "image",
            "run",
            "vcpe",
            "--no-build",
            "--memory",
            "128M",
            "--timeout",
            "120",
        ])
        .args(args)
        .args(extra)
        .output()
        .expect("run testbed image run")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn fatal_line(o: &Output) -> String {
    let t = text(o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    t.lines()
        .find(|l| l.contains("FATAL: bad configuration"))
        .unwrap_or_else(|| panic!("no FATAL line\n{t}"))
        .to_string()
}

#[test]
fn image_builds_and_boots_to_ready_with_two_nics() {
    let Some(dir) = built() else { return };
    let elf = std::fs::read(dir.join("vcpe.elf")).expect("vcpe.elf");
    assert_eq!(&elf[..4], b"\x7fELF");
    assert!(
        elf.len() <= 2 << 20,
        "stripped vcpe ELF is {} bytes (> 2 MiB)",
        elf.len()
    );
    let o = run_image(&["--append", "exit=ready"], &udp_nets(17700, 2));
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    // The baked example (vnfs/vcpe/examples/vcpe-a.toml): one static tunnel.
    assert!(
        t.contains("vcpe ready in")
            && t.contains("lan 192.168.1.1/24, wan 198.51.100.2/24, 1 tunnels, dhcp on, nat on"),
        "no ready line\n{t}"
    );
}

#[test]
fn refuses_ike_keyserver_and_one_nic_with_one_line() {
    if built().is_none() {
        return;
    }
    let example = std::fs::read_to_string(root().join("vnfs/vcpe/examples/vcpe-a.toml"))
        .expect("vcpe-a.toml");
    let at = example.find("[tunnel.static]").expect("a static tunnel");
    let base = &example[..at];
    let cfg = std::env::temp_dir().join(format!("uk-vcpe-{}.toml", std::process::id()));
    for (tail, want) in [
        (
            "[tunnel.ike]\npsk = \"a long enough secret\"\n",
            "tunnel[0] (site-b).ike: IKEv2 needs the vcpe's std build",
        ),
        (
            "[tunnel.keyserver]\n\n[keyserver]\nserver = \"203.0.113.9:500\"\nid = \"a.example\"\npsk = \"a long random secret\"\n",
            "tunnel[0] (site-b).keyserver: the key server link needs the vcpe's std build",
        ),
    ] {
        std::fs::write(&cfg, format!("{base}{tail}")).expect("write config");
        let o = run_image(
            &["--config", cfg.to_str().expect("utf-8")],
            &udp_nets(17710, 2),
        );
        let line = fatal_line(&o);
        assert!(line.contains(want), "{line}");
        // The PSK is a secret: never on the console.
        assert!(!text(&o).contains("secret\""), "{}", text(&o));
    }
    let _ = std::fs::remove_file(&cfg);
    // `vcpe check`'s rules: an unknown key by path, a gateway off the WAN subnet.
    let o = run_image(
        &["--append", "config.nat.no_such_key=1"],
        &udp_nets(17720, 2),
    );
    assert!(fatal_line(&o).contains("nat.no_such_key"));
    let o = run_image(
        &["--append", "config.wan.gateway=\"10.9.9.9\""],
        &udp_nets(17720, 2),
    );
    assert!(fatal_line(&o).contains("wan.gateway: 10.9.9.9 is not another address"));
    // One NIC is not enough.
    let o = run_image(&[], &udp_nets(17730, 1));
    assert!(fatal_line(&o)
        .contains("the vCPE needs 2 virtio-net ports (0 LAN, 1 WAN) but the guest has 1"));
}

#[test]
fn lab_udhcpc_lease_and_tunnel_to_a_linux_vcpe() {
    if built().is_none() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: image lab vcpe needs root (namespaces, taps)");
        return;
    }
    for t in ["udhcpc", "busybox", "ip"] {
        if !have(t) {
            eprintln!("skipped: {t} is not installed (scripts/setup installs it)");
            return;
        }
    }
    let vcpe = PathBuf::from(env!("CARGO_BIN_EXE_testbed")).with_file_name("vcpe");
    assert!(
        vcpe.exists(),
        "{} not found: build it first (`cargo build -p vcpe`; `cargo test --workspace` does)",
        vcpe.display()
    );
    let _g = qemu_lock();
    let o = testbed()
        .args([
            "image",
            "lab",
            "vcpe",
            "--no-build",
            "--seconds",
            "2",
            "--pps",
            "300",
            "--size",
            "200",
        ])
        .output()
        .expect("run testbed image lab vcpe");
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let line = t
        .lines()
        .find_map(|l| l.strip_prefix("lab result: "))
        .unwrap_or_else(|| panic!("no result\n{t}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("lab result JSON");
    assert_eq!(v["schema"]["name"], "testbed.image.lab.vcpe", "{v}");
    // udhcpc's lease from the guest: in the pool, the guest as router.
    let a = v["lease_lan1"]["address"].as_str().expect("lease");
    let last: u8 = a
        .strip_prefix("192.168.1.")
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("lease {a} outside 192.168.1.0/24"));
    assert!((100..=199).contains(&last), "{v}");
    assert_eq!(v["lease_lan1"]["router"], "192.168.1.1", "{v}");
    assert_eq!(v["lease_lan1"]["prefix_len"], 24, "{v}");
    assert!(v["metrics_leases"].as_u64().unwrap_or(0) >= 1, "{v}");
    // Across the tunnel both ways, then the stream.
    assert!(v["ping_1_to_2"]["received"].as_u64().unwrap() > 0, "{v}");
    assert!(v["ping_2_to_1"]["received"].as_u64().unwrap() > 0, "{v}");
    let tr = &v["traffic"];
    let (tx, rx) = (tr["tx"].as_u64().unwrap(), tr["rx"].as_u64().unwrap());
    assert!(tx >= 300 && rx > 0 && rx <= tx, "{v}");
    let plr = tr["plr"].as_f64().unwrap();
    assert!((plr - (tx - rx) as f64 / tx as f64).abs() < 1e-9, "{v}");
    // The guest's own counters saw the stream on its LAN.
    assert!(v["guest_lan_rx"].as_u64().unwrap_or(0) >= rx, "{v}");
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains("uvl1"),
        "a lab namespace was left behind"
    );
}
