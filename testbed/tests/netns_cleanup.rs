//! netns labs remove every namespace, veth and process they created: after a normal
//! run, after an error in the middle of a run, and after Ctrl-C (SIGINT). Needs root
//! and iproute2; fails (does not skip) without them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn testbed() -> Command {
    Command::new(env!("CARGO_BIN_EXE_testbed"))
}

/// Namespaces and links whose names start with `prefix`.
fn leftovers(prefix: &str) -> Vec<String> {
    let mut v = Vec::new();
    let ns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list (iproute2 required)");
    for l in String::from_utf8_lossy(&ns.stdout).lines() {
        if l.starts_with(prefix) {
            v.push(l.to_string());
        }
    }
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    for l in String::from_utf8_lossy(&links.stdout).lines() {
        let n = l
            .split(':')
            .nth(1)
            .unwrap_or("")
            .trim()
            .split('@')
            .next()
            .unwrap_or("");
        if n.starts_with(prefix) {
            v.push(n.to_string());
        }
    }
    v
}

fn prefix_of(pid: u32) -> String {
    format!("tb{}", pid % 100_000)
}

/// Builds the router VNF binary next to the testbed binary (compare runs it).
fn router_bin() -> std::path::PathBuf {
    let st = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "vnf-router", "--bin", "router"])
        .status()
        .expect("cargo build router");
    assert!(st.success(), "building the router binary failed");
    let p = std::path::Path::new(env!("CARGO_BIN_EXE_testbed")).with_file_name("router");
    assert!(p.is_file(), "router binary not at {}", p.display());
    p
}

fn assert_root() {
    let out = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "netns tests need root"
    );
}

#[test]
fn compare_forward_leaves_nothing_behind() {
    assert_root();
    let router = router_bin();
    let child = testbed()
        .args([
            "compare",
            "forward",
            "--duration",
            "0.5",
            "--io",
            "afpacket",
            "--json",
            "--router-bin",
        ])
        .arg(&router)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for k in ["ours_mpps", "theirs_mpps", "ratio"] {
        assert!(v[k].is_number(), "{k}: {v}");
    }
    assert!(v["received_mpps_ours"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["received_mpps_theirs"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(leftovers(&prefix_of(pid)), Vec::<String>::new());
}

#[test]
fn error_mid_lab_still_cleans_up() {
    assert_root();
    // a router binary that does not exist fails after the topology is built
    let child = testbed()
        .args([
            "compare",
            "forward",
            "--duration",
            "0.2",
            "--io",
            "afpacket",
            "--router-bin",
            "/nonexistent/router",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("router"), "{err}");
    assert_eq!(leftovers(&prefix_of(pid)), Vec::<String>::new());
}

#[test]
fn ctrl_c_removes_the_lab() {
    assert_root();
    let router = router_bin();
    let mut child = testbed()
        .args([
            "compare",
            "forward",
            "--duration",
            "60",
            "--io",
            "afpacket",
            "--router-bin",
        ])
        .arg(&router)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = prefix_of(child.id());
    let t0 = Instant::now();
    while leftovers(&prefix).len() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(30), "lab never appeared");
        assert!(child.try_wait().unwrap().is_none(), "testbed exited early");
        std::thread::sleep(Duration::from_millis(50));
    }
    // let traffic start, then interrupt
    std::thread::sleep(Duration::from_millis(1500));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(130), "exit status after Ctrl-C");
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
}
