//! `testbed compare dpdk --json` end to end, short: dpdk-testpmd and our DUTs over
//! vhost-user and memif rings, every workload. Each line parses, names its ring and
//! workload, carries the figures, and the generator's, the DUT's and the sink's
//! counters agree on both sides. Needs root and dpdk-testpmd with its net_vhost and
//! net_memif drivers (Debian `dpdk`); skips with the reason only when testpmd is not
//! installed.

use std::collections::BTreeSet;
use std::process::Command;

fn testpmd_installed() -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("dpdk-testpmd").is_file()))
        .unwrap_or(false)
}

#[test]
fn compare_dpdk_prints_one_agreeing_line_per_ring_and_workload() {
    if !testpmd_installed() {
        eprintln!("compare_dpdk: skipped: dpdk-testpmd not installed (apt-get install dpdk)");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "compare dpdk needs root");
    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args([
            "compare",
            "dpdk",
            "--duration",
            "0.3",
            "--trials",
            "2",
            "--warmup",
            "0.1",
            "--rate",
            "20kpps",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "compare dpdk: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = BTreeSet::new();
    for l in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
        assert_eq!(v["compare"], "dpdk", "{v}");
        let ring = v["ring"].as_str().unwrap().to_string();
        let wl = v["workload"].as_str().unwrap().to_string();
        assert!(["vhost-user", "memif"].contains(&ring.as_str()), "{v}");
        assert!(["io", "l3", "nat44"].contains(&wl.as_str()), "{v}");
        for k in [
            "ours_mpps",
            "theirs_mpps",
            "ratio",
            "offered_mpps",
            "plr_ours",
            "plr_theirs",
        ] {
            assert!(v[k].is_number(), "{k}: {v}");
        }
        assert!(v["ours_mpps"].as_f64().unwrap() > 0.0, "{v}");
        assert!(v["theirs_mpps"].as_f64().unwrap() > 0.0, "{v}");
        for k in ["limited_ours", "limited_theirs"] {
            assert!(
                ["generator", "DUT", "ring"].contains(&v[k].as_str().unwrap()),
                "{k}: {v}"
            );
        }
        assert_eq!(v["counters_agree"], true, "{v}");
        assert_eq!(v["trials"], 2, "{v}");
        assert_eq!(
            v["ours_mpps_trials"].as_array().map(Vec::len),
            Some(2),
            "{v}"
        );
        for side in ["ours", "theirs"] {
            let c = &v["counters"][side];
            assert_eq!(c["gen_tx"], c["dut_rx"], "{side}: {v}");
            assert_eq!(c["dut_tx"], c["sink_rx"], "{side}: {v}");
            // every emitted frame is accounted for: on a ring, or refused by it
            assert_eq!(
                c["emitted"].as_u64().unwrap(),
                c["gen_tx"].as_u64().unwrap() + c["refused"].as_u64().unwrap(),
                "{side}: {v}"
            );
        }
        assert!(
            seen.insert((ring, wl)),
            "a (ring, workload) twice: {stdout}"
        );
    }
    assert_eq!(seen.len(), 6, "{stdout}");
}
