//! `testbed lab vcpe --json` (root): two `vcpe` processes in namespaces, BusyBox
//! `udhcpc` gets a lease on each LAN, pings cross the tunnel both ways, a UDP stream
//! crosses from LAN to LAN, and tshark decrypts the WAN capture — with the keys our
//! key server issued (default mode: a `keyserver` process, keys rotated during the
//! run, the vCPEs' opt-in SA export) or with the run's static keys. Skips (with the
//! reason printed) when not root or a tool is missing; `scripts/test` runs it as
//! root with the tools installed.

use std::path::PathBuf;
use std::process::Command;

fn missing(tool: &str) -> bool {
    !Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs `testbed lab vcpe --json ARGS…`; `None` when skipped.
fn lab(args: &[&str]) -> Option<serde_json::Value> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the namespace lab needs root");
        return None;
    }
    for t in ["ip", "udhcpc", "tshark", "busybox"] {
        if missing(t) {
            eprintln!("skipped: {t} is not installed (scripts/setup installs it)");
            return None;
        }
    }
    let testbed = PathBuf::from(env!("CARGO_BIN_EXE_testbed"));
    let mut cmd = Command::new(&testbed);
    cmd.args(["lab", "vcpe", "--json"]).args(args);
    for bin in ["vcpe", "keyserver"] {
        let p = testbed.with_file_name(bin);
        assert!(
            p.exists(),
            "{} not found: build it first (`cargo build -p {bin}`; `cargo test --workspace` does)",
            p.display()
        );
        cmd.arg(format!("--{bin}")).arg(&p);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run testbed");
    // the lab's names: "tb" + pid % 100000 + "vc" (testbed/src/netns.rs)
    let prefix = format!("tb{}vc", child.id() % 100_000);
    let out = child.wait_with_output().expect("run testbed");
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
    // every ESP frame on the WAN decrypted, to ICMP and the UDP stream, none
    // malformed
    let ts = &v["tshark"];
    assert!(ts["decrypted_icmp"].as_u64().unwrap() > 0, "{v}");
    assert!(ts["decrypted_udp"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(ts["undecrypted"], 0, "{v}");
    assert_eq!(ts["malformed"], 0, "{v}");
    assert_eq!(
        ts["esp_frames"].as_u64().unwrap(),
        ts["decrypted_icmp"].as_u64().unwrap() + ts["decrypted_udp"].as_u64().unwrap(),
        "{v}"
    );
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
        !String::from_utf8_lossy(&ns.stdout)
            .lines()
            .any(|l| l.starts_with(&prefix)),
        "a lab namespace ({prefix}…) was left behind"
    );
    Some(v)
}

#[test]
fn keyserver_keys_lease_ping_decrypt_two_generations() {
    let Some(v) = lab(&[
        "--seconds",
        "1.5",
        "--rate",
        "1000",
        "--size",
        "800",
        "--rekey-interval",
        "0.5",
    ]) else {
        return;
    };
    assert_eq!(v["keys"], "keyserver", "{v}");
    let k = &v["keyserver"];
    assert_eq!(k["cpes_served"], 2, "{v}");
    assert!(k["rekeys"].as_u64().unwrap() >= 1, "{v}");
    // the SAs of at least two key generations, each decrypting
    let ts = &v["tshark"];
    assert!(ts["epochs_decrypted"].as_array().unwrap().len() >= 2, "{v}");
    assert!(ts["spis_decrypted"].as_u64().unwrap() >= 3, "{v}");
    assert!(k["sas_exported"].as_u64().unwrap() >= 4, "{v}");
}

#[test]
fn static_keys_lease_ping_decrypt_and_stream() {
    let Some(v) = lab(&[
        "--keys",
        "static",
        "--seconds",
        "1",
        "--rate",
        "1000",
        "--size",
        "800",
    ]) else {
        return;
    };
    assert_eq!(v["keys"], "static", "{v}");
    assert!(v.get("keyserver").is_none(), "{v}");
    assert_eq!(v["tshark"]["spis_decrypted"], 2, "{v}");
}
