//! `testbed lab router` end to end: the in-memory lab runs without root, generator and
//! sink agree exactly at a low rate, and the RFC 2544 search converges and writes its
//! report with the plots.

use std::process::Command;

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
fn lab_router_low_rate_counts_agree_exactly() {
    let s = testbed(&[
        "lab",
        "router",
        "--json",
        "--duration",
        "0.5",
        "--rate",
        "20kpps",
    ]);
    let v: serde_json::Value = serde_json::from_str(s.trim()).expect("one JSON object");
    for k in ["offered_mpps", "received_mpps", "plr", "latency_p99_us"] {
        assert!(v[k].is_number(), "{k} missing in {s}");
    }
    let tx = v["tx"].as_u64().unwrap();
    assert!(tx > 1000, "{s}");
    assert_eq!(v["rx"].as_u64().unwrap(), tx, "{s}");
    assert_eq!(v["lost"].as_u64().unwrap(), 0, "{s}");
    assert_eq!(v["reordered"].as_u64().unwrap(), 0, "{s}");
    assert_eq!(v["dut_drops"].as_u64().unwrap(), 0, "{s}");
    assert!(v["latency_p99_us"].as_f64().unwrap() > 0.0);
}

#[test]
fn lab_router_imix_human_output() {
    let s = testbed(&[
        "lab",
        "router",
        "--duration",
        "0.3",
        "--size",
        "imix",
        "--rate",
        "10kpps",
    ]);
    assert!(
        s.contains("offered") && s.contains("received") && s.contains("latency"),
        "{s}"
    );
}

#[test]
fn lab_router_rfc2544_converges_and_reports_plots() {
    let dir = std::env::temp_dir().join(format!("lab-rfc2544-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    // 20 Mpps is far above what one shared core forwards through generator, router
    // and sink: the search must come down
    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args([
            "lab",
            "router",
            "--rfc2544",
            d,
            "--sizes",
            "64,1518",
            "--trial",
            "0.2",
            "--max-mpps",
            "20",
            "--json",
        ])
        .output()
        .expect("run testbed");
    let s = String::from_utf8(out.stdout).expect("utf-8 output");
    let v: serde_json::Value = serde_json::from_str(s.trim()).expect("one JSON object");
    // exit 0 when every frame size has a DUT throughput, 3 when some search ended
    // generator-limited (a single shared core may top out before the router loses)
    let gen_limited = v["generator_limited"].as_bool().unwrap();
    assert_eq!(
        out.status.code(),
        Some(if gen_limited { 3 } else { 0 }),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        let sum = &r["summary"];
        let trials = r["trials"].as_array().unwrap();
        assert!(trials.len() >= 3, "binary search ran: {}", trials.len());
        if sum["generator_limited"].as_bool().unwrap() {
            // no DUT figure, a one-line verdict, and no trial lost frames above the
            // loss threshold at the upper bound
            assert!(
                sum["throughput"].is_null() && r["throughput_pps"].is_null(),
                "{r}"
            );
            assert_eq!(sum["limited_by"], "generator");
            let text = sum["text"].as_str().unwrap();
            // "... the DUT's throughput is above what this generator can offer", or,
            // when the DUT lost frames higher up, "... the DUT lost frames at ..."
            assert!(
                text.contains("generator-limited at")
                    && (text.contains("above what this generator can offer")
                        || text.contains("the DUT lost frames at")),
                "{text}"
            );
            assert!(trials.iter().any(|t| t["limited_by"] == "generator"));
        } else {
            let thr = r["throughput_offered_pps"].as_f64().unwrap();
            assert!(
                thr > 0.0 && thr < 20e6,
                "search converged below the maximum: {r}"
            );
            assert_eq!(sum["limited_by"], "dut", "{r}");
            assert!(sum["throughput"].as_f64().unwrap() > 0.0);
            assert!(trials.iter().any(|t| t["limited_by"] == "dut"));
        }
        // every trial says which side limited it
        for t in trials {
            assert!(["dut", "generator", "none"].contains(&t["limited_by"].as_str().unwrap()));
        }
        assert!(r["latency"]["latency"]["samples"].as_u64().unwrap() > 0);
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 4, "four plots inline");
    for f in [
        "throughput.svg",
        "throughput-gbps.svg",
        "latency.svg",
        "plr.svg",
        "report.json",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    // the run's metadata
    for k in [
        "command line",
        "start time",
        "machine",
        "git commit",
        "--rfc2544",
    ] {
        assert!(html.contains(k), "{k} missing from the report");
    }
    assert!(v["meta"]["cores"].as_u64().unwrap() >= 1);
    assert!(v["meta"]["start_time"].as_str().unwrap().ends_with('Z'));
    // latency on log axes
    let lat = std::fs::read_to_string(dir.join("latency.svg")).unwrap();
    assert!(lat.contains("log scale"), "latency axes are logarithmic");
    let lat = std::fs::read_to_string(dir.join("latency.svg")).unwrap();
    assert!(lat.contains("<polyline"), "latency plot has data");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lab_router_failure_is_one_line_and_exit_1() {
    for args in [
        &["lab", "router", "--config", "/nonexistent/router.toml"][..],
        &[
            "lab",
            "router",
            "--rfc2544",
            "/tmp/x",
            "--config",
            "/nonexistent/router.toml",
        ][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run testbed");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(
            err.starts_with("testbed: reading /nonexistent/router.toml"),
            "{err}"
        );
        assert!(!err.contains("Caused by") && !err.contains("Os {"), "{err}");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("--help")
        .output()
        .expect("run testbed");
    let s = String::from_utf8_lossy(&help.stdout);
    assert!(
        s.contains("Exit status") && s.contains("generator-limited"),
        "{s}"
    );
}

/// `--workers 2`: the flows spread over both workers (the in-memory NIC's
/// symmetric RSS), every packet arrives, nothing is dropped; the report says how
/// many workers ran and what each received.
#[test]
fn lab_router_two_workers_share_the_flows_without_loss() {
    let s = testbed(&[
        "lab",
        "router",
        "--json",
        "--workers",
        "2",
        "--duration",
        "0.5",
        "--rate",
        "20kpps",
    ]);
    let v: serde_json::Value = serde_json::from_str(s.trim()).expect("one JSON object");
    assert_eq!(v["workers"].as_u64(), Some(2), "{s}");
    let tx = v["tx"].as_u64().unwrap();
    assert!(tx > 1000, "{s}");
    assert_eq!(v["rx"].as_u64().unwrap(), tx, "{s}");
    assert_eq!(v["lost"].as_u64().unwrap(), 0, "{s}");
    assert_eq!(v["dut_drops"].as_u64().unwrap(), 0, "{s}");
    let per: Vec<u64> = v["per_worker_packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(per.len(), 2, "{s}");
    assert_eq!(per.iter().sum::<u64>(), tx, "{s}");
    assert!(
        per.iter().all(|&p| p > tx / 10),
        "both workers busy: {per:?}"
    );
}
