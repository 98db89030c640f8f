//! Unikernel images under QEMU (TCG): build (size, reproducibility), boot on microvm,
//! q35 and pc, the clock against the host's wall clock, bad configuration, the GRUB
//! disk image, and routing between two network namespaces through tap ports (root).
//!
//! Needs: qemu-system-x86, qemu-utils, grub-pc-bin, xorriso, iproute2 (and root for the
//! lab). Missing tools fail the tests with a message; nothing is skipped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// From the workspace root: images go to (and are looked for in) `target/images`
/// under the current directory.
fn testbed() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_testbed"));
    c.current_dir(root());
    c
}

fn need(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(found, "`{tool}` is missing: apt-get install {package}");
}

/// One QEMU guest at a time: the clock check and boot times stay meaningful on a
/// small machine, and the UDP ports below do not collide.
fn qemu_lock() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

/// `testbed image build router` once per test process.
fn built() -> PathBuf {
    static B: OnceLock<Result<(), String>> = OnceLock::new();
    let r = B.get_or_init(|| {
        need("qemu-system-x86_64", "qemu-system-x86");
        need("qemu-img", "qemu-utils");
        need("grub-mkrescue", "grub-pc-bin");
        need("xorriso", "xorriso");
        let out = testbed()
            .args(["image", "build", "router"])
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
    root().join("target/images")
}

/// Two UDP-socket ports on loopback (nothing listens: the guest just needs NICs).
fn udp_nets(base: u16) -> Vec<String> {
    vec![
        "--net".into(),
        format!("udp:{}:{},mac=02:00:00:00:01:01", base, base + 1),
        "--net".into(),
        format!("udp:{}:{},mac=02:00:00:00:02:01", base + 2, base + 3),
    ]
}

fn run_image(args: &[&str], extra: &[String]) -> Output {
    let _g = qemu_lock();
    testbed()
        .args([
            "image",
            "run",
            "router",
            "--no-build",
            "--memory",
            "128M",
            "--timeout",
            "300",
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

#[test]
fn image_is_small_and_reproducible() {
    let dir = built();
    let elf = std::fs::read(dir.join("router.elf")).expect("router.elf");
    assert!(
        elf.len() <= 1 << 20,
        "stripped router ELF is {} bytes (> 1 MiB)",
        elf.len()
    );
    assert_eq!(&elf[..4], b"\x7fELF");
    let qcow2 = std::fs::read(dir.join("router.qcow2")).expect("router.qcow2");
    assert_eq!(&qcow2[..4], b"QFI\xfb", "not a qcow2 image");
    // Recompile the kernel crate from scratch into another directory: same bytes.
    let other = std::env::temp_dir().join(format!("uk-repro-{}", std::process::id()));
    // The rebuild is CPU-heavy: keep it away from the timing-sensitive guests.
    let _g = qemu_lock();
    let out = testbed()
        .args(["image", "build", "router", "--fresh", "--out"])
        .arg(&other)
        .output()
        .expect("run testbed image build");
    assert!(out.status.success(), "{}", text(&out));
    let again = std::fs::read(other.join("router.elf")).expect("second router.elf");
    let qcow2_again = std::fs::read(other.join("router.qcow2")).expect("second router.qcow2");
    let _ = std::fs::remove_dir_all(&other);
    assert!(
        qcow2_again == qcow2,
        "two GRUB disk images of the same kernel differ"
    );
    assert!(
        again == elf,
        "two builds of the same tree and config differ ({} vs {} bytes)",
        elf.len(),
        again.len()
    );
}

#[test]
fn boots_to_ready_on_microvm_q35_and_pc() {
    built();
    for (i, m) in ["microvm", "q35", "pc"].iter().enumerate() {
        let o = run_image(
            &["--machine", m, "--append", "exit=ready"],
            &udp_nets(17100 + 10 * i as u16),
        );
        let t = text(&o);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{m}: guest exit code {:?}\n{t}",
            o.status.code()
        );
        assert!(t.contains("router ready in"), "{m}: no ready line\n{t}");
        assert!(t.contains("(2 ports"), "{m}: ports not up\n{t}");
    }
}

#[test]
fn guest_clock_agrees_with_host_wall_clock() {
    built();
    let _g = qemu_lock();
    let mut child = testbed()
        .args([
            "image",
            "run",
            "router",
            "--no-build",
            "--timeout",
            "60",
            "--append",
            "selftest=clock:2000",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start testbed image run");
    let stdout = child.stdout.take().expect("stdout");
    let (mut start, mut end, mut guest_ms) = (None, None, None);
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if line.contains("clock-selftest start") {
            start = Some(Instant::now());
        }
        if line.contains("clock-selftest end") {
            end = Some(Instant::now());
            guest_ms = line
                .split("elapsed=")
                .nth(1)
                .and_then(|r| r.trim_end_matches("ms").trim().parse::<u64>().ok());
        }
    }
    let st = child.wait().expect("wait");
    assert!(st.success(), "guest exit {st}");
    let (Some(a), Some(b)) = (start, end) else {
        panic!("no clock-selftest lines")
    };
    let host_ms = b.duration_since(a).as_secs_f64() * 1000.0;
    // The guest spins until its clock passes 2000 ms; a descheduled vCPU may overshoot.
    let g = guest_ms.unwrap_or_else(|| panic!("no elapsed= in the end line"));
    assert!(
        (2000..3000).contains(&g),
        "guest measured {g} ms for a 2000 ms spin"
    );
    let err = (host_ms - g as f64).abs() / g as f64;
    assert!(
        err < 0.05,
        "guest {g} ms took {host_ms:.1} ms of host time ({:.1}% off)",
        err * 100.0
    );
}

#[test]
fn bad_configuration_is_reported_with_a_clean_exit() {
    built();
    // A bad value through a command-line override.
    let o = run_image(
        &["--append", "config.interface.0.ipv4=[\"300.0.0.1/24\"]"],
        &udp_nets(17200),
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("FATAL: bad configuration") && t.contains("interface"),
        "{t}"
    );
    // A config blob that is not TOML.
    let junk = std::env::temp_dir().join(format!("uk-junk-{}.toml", std::process::id()));
    std::fs::write(&junk, "[[interface]\nname = \n").expect("write junk config");
    let o = run_image(
        &["--config", junk.to_str().expect("utf-8 path")],
        &udp_nets(17210),
    );
    let _ = std::fs::remove_file(&junk);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("boot module is not valid TOML"), "{t}");
    // An unparsable platform option.
    let o = run_image(&["--append", "stats=often"], &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("`stats=often`"), "{t}");
    // More interfaces than NICs.
    let o = run_image(&[], &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("2 interfaces configured but the guest has 0 virtio-net ports"),
        "{t}"
    );
}

#[test]
fn grub_disk_image_boots_to_ready() {
    built();
    let o = run_image(
        &["--disk", "--machine", "pc", "--until-ready"],
        &udp_nets(17300),
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("router ready in"),
        "no ready line from the GRUB-booted disk:\n{t}"
    );
    assert!(
        t.contains("Multiboot boot"),
        "not booted through Multiboot:\n{t}"
    );
}

#[test]
fn routes_udp_between_namespaces_through_taps() {
    built();
    // SAFETY: getuid has no preconditions.
    assert_eq!(
        unsafe { libc::getuid() },
        0,
        "this test needs root (network namespaces and tap devices)"
    );
    need("ip", "iproute2");
    let _g = qemu_lock();
    let o = testbed()
        .args([
            "image",
            "lab",
            "router",
            "--no-build",
            "--seconds",
            "2",
            "--pps",
            "2000",
        ])
        .output()
        .expect("run testbed image lab");
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let line = t
        .lines()
        .find_map(|l| l.strip_prefix("lab result: "))
        .unwrap_or_else(|| panic!("no result\n{t}"));
    let r: serde_json::Value = serde_json::from_str(line).expect("lab result JSON");
    let good = r["sink"]["good"].as_u64().expect("sink.good");
    let sent = r["generator"]["sent"].as_u64().expect("generator.sent");
    assert!(
        good > 0 && good * 10 >= sent * 9,
        "routed {good} of {sent}\n{t}"
    );
    for k in ["bad_mac", "bad_ttl", "bad_checksum"] {
        assert_eq!(r["sink"][k].as_u64(), Some(0), "{k}\n{t}");
    }
    let rx0 = r["guest_port0_rx"]
        .as_u64()
        .expect("guest port 0 rx counter");
    let tx1 = r["guest_port1_tx"]
        .as_u64()
        .expect("guest port 1 tx counter");
    assert!(
        rx0 >= sent * 9 / 10 && tx1 >= good,
        "guest counters rx0={rx0} tx1={tx1}, sent {sent}, received {good}\n{t}"
    );
}

/// The router guest with both NICs on vhost-user: QEMU is the frontend, the testbed's
/// own vhost-user ports the backends (server sockets), as on an OVS-DPDK or VPP host.
/// No root needed.
#[test]
fn routes_udp_over_vhost_user_nics_served_by_our_process() {
    built();
    let _g = qemu_lock();
    let o = testbed()
        .args([
            "image",
            "lab",
            "router",
            "--vhost-user",
            "--no-build",
            "--seconds",
            "2",
            "--pps",
            "1000",
        ])
        .output()
        .expect("run testbed image lab --vhost-user");
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let line = t
        .lines()
        .find_map(|l| l.strip_prefix("lab result: "))
        .unwrap_or_else(|| panic!("no result\n{t}"));
    let r: serde_json::Value = serde_json::from_str(line).expect("lab result JSON");
    assert_eq!(r["nics"], "vhost-user", "{t}");
    let sent = r["sent"].as_u64().expect("sent");
    let good = r["good"].as_u64().expect("good");
    assert!(sent >= 1000, "sent {sent}\n{t}");
    assert!(
        good > 0 && good * 10 >= sent * 9,
        "routed {good} of {sent}\n{t}"
    );
    assert_eq!(r["bad_rewrite"].as_u64(), Some(0), "{t}");
    let rx0 = r["guest_port0_rx"].as_u64().expect("guest port 0 rx");
    let tx1 = r["guest_port1_tx"].as_u64().expect("guest port 1 tx");
    assert!(
        rx0 >= good && tx1 >= good,
        "guest counters rx0={rx0} tx1={tx1}, received {good}\n{t}"
    );
}
