//! `testbed lab keyserver` end to end: a small run serves every CPE, rotates keys,
//! revokes a hub, and reports the contract fields with the report header; a run that
//! cannot serve every CPE exits 1 with a one-line reason after its report.

use std::process::Command;

fn lab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["lab", "keyserver"])
        .args(args)
        .output()
        .expect("run testbed")
}

#[test]
fn small_lab_reports_every_field() {
    let o = lab(&[
        "--cpes",
        "40",
        "--group-size",
        "5",
        "--rekey-s",
        "0.5",
        "--measure-s",
        "1.5",
        "--json",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["schema"]["name"], "testbed.lab.keyserver");
    for k in ["command", "started", "machine", "commit"] {
        assert!(v.get(k).is_some(), "{k} missing in {out}");
    }
    assert_eq!(v["cpes_served"], 40);
    assert_eq!(v["groups"], 8);
    // Hub-spoke groups of 5: 4 tunnels each.
    assert_eq!(v["pairs"], 32);
    assert!(v["distribution_seconds"].as_f64().unwrap() > 0.0);
    assert!(v["rekeys_per_s"].as_f64().unwrap() > 0.0, "{out}");
    assert!(v["revocation_seconds"].as_f64().unwrap() >= 0.0, "{out}");
    assert_eq!(v["revoked_peers"], 4, "{out}");
    assert_eq!(v["auth_failures"], 0);
}

#[test]
fn unserved_cpes_fail_with_one_line() {
    let o = lab(&["--cpes", "30", "--timeout", "0.001"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("CPEs served"), "{err}");
    // The report comes first.
    assert!(String::from_utf8_lossy(&o.stdout).contains("CPEs served"));
}
