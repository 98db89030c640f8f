//! `testbed lab vcpe --json` (root): two `vcpe` processes in namespaces, BusyBox
//! `udhcpc` gets a lease on each LAN, pings cross the static-key tunnel both ways,
//! tshark decrypts the WAN capture with the run's keys, and a UDP stream crosses
//! from LAN to LAN. Skips (with the reason printed) when not root or a tool is
//! missing; `scripts/test` runs it as root with the tools installed.

use std::path::PathBuf;
use std::process::Command;

fn missing(tool: &str) -> bool {
    !Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn two_sites_lease_ping_decrypt_and_stream() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the namespace lab needs root");
        return;
    }
    for t in ["ip", "udhcpc", "tshark", "busybox"] {
        if missing(t) {
            eprintln!("skipped: {t} is not installed (scripts/setup installs it)");
            return;
        }
    }
    let testbed = PathBuf::from(env!("CARGO_BIN_EXE_testbed"));
    let vcpe = testbed.with_file_name("vcpe");
    assert!(
        vcpe.exists(),
        "{} not found: build it first (`cargo build -p vcpe`; `cargo test --workspace` does)",
        vcpe.display()
    );
    let out = Command::new(&testbed)
        .args([
            "lab",
            "vcpe",
            "--json",
            "--seconds",
            "1",
            "--rate",
            "1000",
            "--size",
            "800",
        ])
        .arg("--vcpe")
        .arg(&vcpe)
        .output()
        .expect("run testbed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "testbed lab vcpe failed: {stderr}");
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(v["schema"]["name"], "testbed.lab.vcpe");
    let l1 = v["lease_lan1"]["address"].as_str().unwrap();
    let l2 = v["lease_lan2"]["address"].as_str().unwrap();
    assert!(
        l1.starts_with("192.168.1.") && l2.starts_with("192.168.2."),
        "{v}"
    );
    assert!(v["ping_1_to_2"]["received"].as_u64().unwrap() > 0, "{v}");
    assert!(v["ping_2_to_1"]["received"].as_u64().unwrap() > 0, "{v}");
    assert!(v["tshark"]["decrypted_icmp"].as_u64().unwrap() > 0, "{v}");
    let t = &v["traffic"];
    assert!(t["tx"].as_u64().unwrap() > 500, "{v}");
    // debug builds of two vCPEs on a shared machine: loss is reported, not judged
    let (tx, rx) = (t["tx"].as_u64().unwrap(), t["rx"].as_u64().unwrap());
    assert!(rx > 0 && rx <= tx, "{v}");
    let plr = t["plr"].as_f64().unwrap();
    assert!((plr - (tx - rx) as f64 / tx as f64).abs() < 1e-9, "{v}");
    assert!(v["throughput_mbps"].as_f64().unwrap() > 0.0, "{v}");
    // nothing left behind
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains("vcl1"),
        "a lab namespace was left behind"
    );
}
