//! `testbed compare nat` and `testbed compare io` run end to end on the veth topology
//! and print the side-by-side JSON; nothing is left behind. Needs root, iproute2,
//! nftables and dpdk-testpmd (Debian dpdk-dev + librte-net-af-xdp23); fails (does not
//! skip) without them.

use std::process::{Command, Stdio};

fn leftovers(prefix: &str) -> Vec<String> {
    let ns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("iproute2 required");
    String::from_utf8_lossy(&ns.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.to_string())
        .collect()
}

fn compare(which: &str, io: &str) -> serde_json::Value {
    let out = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "compare needs root"
    );
    let child = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args([
            "compare",
            which,
            "--duration",
            "0.5",
            "--rate",
            "20kpps",
            "--io",
            io,
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("tb{}", child.id() % 100_000);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "compare {which}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for k in ["ours_mpps", "theirs_mpps", "ratio"] {
        assert!(v[k].is_number(), "{k}: {v}");
    }
    v
}

#[test]
fn compare_nat_ours_and_nftables_forward_everything_at_low_rate() {
    let v = compare("nat", "afpacket");
    assert_eq!(v["plr_theirs"].as_f64().unwrap(), 0.0, "{v}");
    assert!(v["received_mpps_ours"].as_f64().unwrap() > 0.0, "{v}");
    // cycles per forwarded packet on both sides (Linux's from jiffies: coarse at this
    // rate, possibly 0)
    assert!(v["cycles_per_pkt_ours"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["cycles_per_pkt_theirs"].as_f64().unwrap() >= 0.0, "{v}");
}

#[test]
fn compare_forward_reports_cycles_per_packet_for_the_router_process_and_linux() {
    let v = compare("forward", "afpacket");
    assert!(v["received_mpps_ours"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["received_mpps_theirs"].as_f64().unwrap() > 0.0, "{v}");
    // the router's busy cycles come from its metrics file
    assert!(v["cycles_per_pkt_ours"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["cycles_per_pkt_theirs"].as_f64().unwrap() >= 0.0, "{v}");
}

#[test]
fn compare_io_against_testpmd() {
    let v = compare("io", "afxdp");
    assert!(v["received_mpps_ours"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["received_mpps_theirs"].as_f64().unwrap() > 0.0, "{v}");
}
