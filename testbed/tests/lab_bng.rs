//! `testbed lab bng` (the in-memory BNG lab) end to end: dual stack with CGNAT and
//! policers, every subscriber up, no loss, the NAT counters in the JSON, and the graph
//! that ran is the one the `vbng` binary composes from the same config written as a
//! TOML file (`Config::from_toml` as `vbng run -c` loads it, then `vbng::vnf::build`).

use pktgen::subscribers::lab::{lab_config, LabConfig};
use std::process::Command;
use vbng::config::Config;
use vbng::lcp::AuthProto;
use vbng::rng::Rng;
use vbng::vnf::{build, BuildEnv};

fn testbed(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(args)
        .output()
        .expect("run testbed");
    assert!(
        out.status.success(),
        "testbed {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn lab_bng_runs_the_binarys_vbng_with_cgnat_and_dual_stack() {
    let s = testbed(&[
        "lab",
        "bng",
        "--json",
        "--sessions",
        "60",
        "--packets",
        "6000",
        "--auth",
        "chap",
        "--ipv6",
        "--cgnat",
        "203.0.113.0/28",
        "--rate",
        "1G/1G",
    ]);
    let v: serde_json::Value = serde_json::from_str(s.trim()).expect("one JSON object");
    for k in [
        "setup_rate_per_s",
        "setup_p99_ms",
        "throughput_mpps",
        "plr",
        "ipv6_plr",
    ] {
        assert!(v[k].is_number(), "{k} missing in {s}");
    }
    assert_eq!(v["sessions_established"], 60, "{s}");
    assert_eq!(v["ipv6_sessions"], 60, "{s}");
    assert_eq!(v["plr"].as_f64(), Some(0.0), "{s}");
    assert_eq!(v["ipv6_plr"].as_f64(), Some(0.0), "{s}");
    assert_eq!(v["sessions_after_teardown"], 0, "{s}");
    let nat = &v["nat"];
    assert_eq!(nat["pool"], "203.0.113.0/28", "{s}");
    assert_eq!(nat["sessions"], 60, "{s}");
    assert_eq!(nat["blocks"], 60, "{s}");
    assert_eq!(nat["drops"], 0, "{s}");
    assert!(
        nat["counters"]["sessions-created"].as_u64() >= Some(60),
        "{s}"
    );

    // The same options as the lab's LabConfig; their vBNG config as a file.
    let lc = LabConfig {
        sessions: 60,
        packets: 6000,
        auth: AuthProto::Chap,
        ipv6: true,
        cgnat: Some("203.0.113.0/28".parse().unwrap()),
        rate: (1_000_000_000, 1_000_000_000),
        ..LabConfig::default()
    };
    let text = toml::to_string(&lab_config(&lc)).expect("config as TOML");
    assert!(text.contains("[cgnat]"), "{text}");
    let file = Config::from_toml(&text).expect("the binary accepts the lab's config");
    let bin = build(
        &file,
        &BuildEnv::new([2, 0, 0, 0, 0, 2], 60, Rng::from_seed([5; 32])),
    )
    .expect("the binary's composition");
    let graph = bin.graph.describe();
    assert!(graph.contains("bng-upstream -> nat44\n"), "{graph}");
    assert_eq!(v["bng_graph"].as_str(), Some(graph.as_str()), "{s}");
}

#[test]
fn lab_bng_human_output_names_the_nat() {
    let s = testbed(&[
        "lab",
        "bng",
        "--sessions",
        "20",
        "--packets",
        "2000",
        "--cgnat",
        "203.0.113.0/30",
    ]);
    assert!(s.contains("sessions established   20 / 20"), "{s}");
    assert!(s.contains("CGNAT 203.0.113.0/30"), "{s}");
    assert!(s.contains("20 sessions"), "{s}");
}

/// A lab that asked for more subscribers than came up failed: non-zero exit, a
/// one-line reason, the report still printed; nonsense sizes are refused.
#[test]
fn lab_bng_fails_when_sessions_are_missing() {
    // One setup per second, a 1 s timeout: at most a couple of the 40 come up.
    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args([
            "lab",
            "bng",
            "--json",
            "--sessions",
            "40",
            "--setup-rate",
            "1",
            "--timeout",
            "1",
            "--packets",
            "100",
        ])
        .output()
        .expect("run testbed");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("of 40 sessions came up"), "{err}");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the JSON report");
    assert!(j["sessions_established"].as_u64().unwrap() < 40, "{j}");
    assert!(j["bng_control"]["sessions_created"].is_u64(), "{j}");
    for bad in [["--sessions", "0"], ["--timeout", "0"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
            .args(["lab", "bng"])
            .args(bad)
            .output()
            .expect("run testbed");
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

/// `--access ipoe` and `--access mixed`: the subscribers come up by DHCPv4 against
/// the vBNG's `[ipoe]` (half of them PPPoE with `mixed`), traffic runs over them
/// both ways with no loss, and the JSON has the whole-run fields plus `per_access`.
#[test]
fn lab_bng_ipoe_and_mixed_access() {
    for (access, ipoe, pppoe) in [("ipoe", 200, 0), ("mixed", 100, 100)] {
        let s = testbed(&[
            "lab",
            "bng",
            "--json",
            "--access",
            access,
            "--sessions",
            "200",
            "--packets",
            "20000",
        ]);
        let v: serde_json::Value = serde_json::from_str(s.trim()).expect("one JSON object");
        assert_eq!(v["sessions_established"], 200, "{s}");
        assert_eq!(v["plr"].as_f64(), Some(0.0), "{s}");
        assert_eq!(v["upstream"]["received"], 20000, "{s}");
        assert_eq!(v["downstream"]["received"], 20000, "{s}");
        assert_eq!(v["sessions_after_teardown"], 0, "{s}");
        assert_eq!(v["access"], access, "{s}");
        let per = &v["per_access"];
        let i = &per["ipoe"];
        assert_eq!(i["sessions_established"], ipoe, "{s}");
        assert!(i["setup_rate_per_s"].as_f64() > Some(0.0), "{s}");
        assert_eq!(i["plr"].as_f64(), Some(0.0), "{s}");
        assert!(i["throughput_mpps"].as_f64() > Some(0.0), "{s}");
        if pppoe > 0 {
            let p = &per["pppoe"];
            assert_eq!(p["sessions_established"], pppoe, "{s}");
            assert_eq!(p["plr"].as_f64(), Some(0.0), "{s}");
            let up = |a: &serde_json::Value| a["upstream"]["received"].as_u64().unwrap();
            assert_eq!(up(p) + up(i), 20000, "{s}");
        } else {
            assert!(per.get("pppoe").is_none(), "{s}");
        }
        // The vBNG ran its DHCP server and installed IPoE sessions.
        assert_eq!(v["bng_control"]["sessions_created"], 200, "{s}");
    }
    // Unknown access types are refused with the accepted ones named.
    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["lab", "bng", "--access", "l2tp"])
        .output()
        .expect("run testbed");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pppoe, ipoe or mixed"), "{err}");
}

/// The lab's `[ipoe]` config is one the `vbng` binary reads: the TOML parses,
/// validates and composes the same graph (with the IPoE fast path).
#[test]
fn lab_ipoe_config_is_a_vbng_config_file() {
    let lc = LabConfig {
        sessions: 10,
        access: pktgen::subscribers::AccessPlan::Mixed,
        ..LabConfig::default()
    };
    let vc = lab_config(&lc);
    let text = toml::to_string(&vc).expect("config as TOML");
    assert!(text.contains("[ipoe]"), "{text}");
    assert!(
        text.contains("02:5b:00:00:00:01"),
        "an IPoE user by MAC: {text}"
    );
    assert!(text.contains("\"user0\""), "a PPPoE user: {text}");
    let file = Config::from_toml(&text).expect("the binary accepts the lab's config");
    file.validate().expect("valid");
    let env = || BuildEnv::new([2, 0, 0, 0, 0, 2], 10, Rng::from_seed([5; 32]));
    let bin = build(&file, &env()).expect("the binary's composition");
    let lab = build(&vc, &env()).expect("the lab's composition");
    assert_eq!(bin.graph.describe(), lab.graph.describe());
    assert!(bin.control.cp.ipoe_enabled());
}

/// `--workers 2`: every session up, no loss either way, with CGNAT, while the last
/// 100 subscribers keep tearing down and setting up their sessions during the
/// traffic phases (`--churn`); both workers carry traffic and hand packets of the
/// other's subscribers over without losing one. (The 10000-session run of issue 14
/// is `testbed lab bng --workers 2 --sessions 10000 --churn 1000` in release: see
/// benches/RESULTS.md.)
#[test]
fn lab_bng_two_workers_churn_without_loss() {
    let s = testbed(&[
        "lab",
        "bng",
        "--json",
        "--sessions",
        "600",
        "--duration",
        "0.5",
        "--workers",
        "2",
        "--churn",
        "100",
        "--cgnat",
        "203.0.113.0/28",
    ]);
    let v: serde_json::Value = serde_json::from_str(s.trim()).expect("one JSON object");
    assert_eq!(v["sessions_established"], 600, "{s}");
    assert_eq!(v["workers"], 2, "{s}");
    assert_eq!(v["upstream"]["plr"].as_f64(), Some(0.0), "{s}");
    assert_eq!(v["downstream"]["plr"].as_f64(), Some(0.0), "{s}");
    assert!(v["upstream"]["sent"].as_u64() > Some(1000), "{s}");
    assert!(v["downstream"]["sent"].as_u64() > Some(1000), "{s}");
    assert_eq!(v["sessions_after_teardown"], 0, "{s}");
    // The churn really ran: sessions came up again during the traffic phases (one
    // churning subscriber goes down or up per millisecond of traffic: some 500
    // re-setups in the two half-second phases; at least 50 even on a slow machine).
    let up = v["bng_control"]["sessions_up"].as_u64().unwrap_or(0);
    assert!(up > 600 + 50, "sessions_up {up}: {s}");
    let per = v["per_worker"].as_array().expect("per_worker");
    assert_eq!(per.len(), 2, "{s}");
    let mut handed = 0;
    for w in per {
        assert!(w["traffic_packets"].as_u64() > Some(0), "{s}");
        assert_eq!(w["handoff_dropped"], 0, "{s}");
        handed += w["handed_off"].as_u64().unwrap_or(0);
    }
    assert!(handed > 0, "{s}");
    assert_eq!(v["nat"]["drops"], 0, "{s}");
}
