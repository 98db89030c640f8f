//! `testbed lab run FILE`: a scenario with namespaces, veths, a TAP and a bridge, and
//! Linux forwarding as the DUT; at a low rate generator and sink agree exactly over
//! the real kernel path, and nothing the lab created is left afterwards. Needs root
//! and iproute2; fails (does not skip) without them.

use std::process::{Command, Stdio};

fn leftovers(prefix: &str) -> Vec<String> {
    let mut v = Vec::new();
    let ns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("iproute2 required");
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

#[test]
fn scenario_file_runs_exact_counts_and_cleans_up() {
    let out = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "netns tests need root"
    );
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/linux-forward.toml");
    let child = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["lab", "run", file, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("tb{}", child.id() % 100_000);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let tx = v["rx"]["tx"].as_u64().unwrap();
    assert!(tx >= 4000, "{v}");
    assert_eq!(v["rx"]["rx"].as_u64().unwrap(), tx, "{v}");
    assert_eq!(v["rx"]["lost"].as_u64().unwrap(), 0, "{v}");
    assert_eq!(v["rx"]["duplicates"].as_u64().unwrap(), 0, "{v}");
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
}
