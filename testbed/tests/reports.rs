//! Issue 19 items 2 and 3: every lab's `--json` report is one JSON object with the
//! report header (`schema`, `command`, `started`, `machine`, `commit`) and no Rust
//! `Debug` text; a failed run exits non-zero with a one-line reason on stderr
//! (sessions not established, loss above `--max-plr`); the BNG lab's per-session
//! JSON lines, latency, flow verification, LCP echo counts and live progress.
//! The in-memory labs only: no root needed.

use std::process::{Command, Output};

fn testbed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run testbed")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 output")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Text that only Rust's `Debug` formatting produces: struct dumps
/// (`Name { field: … }`), `Some(…)`/`None`, quoted string lists.
fn debug_text(s: &str) -> Option<&'static str> {
    ["Some(", "None", "{ ", " }", "[\"", "Ok(", "Err("]
        .into_iter()
        .find(|&pat| s.contains(pat))
}

/// Every string in the JSON, checked for `Debug` text.
fn assert_no_debug(v: &serde_json::Value, path: &str) {
    match v {
        serde_json::Value::String(s) => {
            if let Some(p) = debug_text(s) {
                panic!("Debug text {p:?} at {path}: {s}");
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                assert_no_debug(x, &format!("{path}[{i}]"));
            }
        }
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                assert_no_debug(x, &format!("{path}.{k}"));
            }
        }
        _ => {}
    }
}

/// One JSON object with the report header named `schema`.
fn report(s: &str, schema: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}): {s}"));
    assert_eq!(v["schema"]["name"], schema, "{s}");
    assert!(v["schema"]["version"].as_u64() >= Some(1), "{s}");
    assert!(v["command"].as_str().unwrap().contains(" lab "), "{s}");
    let started = v["started"].as_str().unwrap();
    assert!(
        started.len() == 20 && started.ends_with('Z') && started.as_bytes()[10] == b'T',
        "started is RFC 3339 UTC: {started}"
    );
    let m = &v["machine"];
    assert!(m["cores"].as_u64() >= Some(1), "{s}");
    assert!(m["host"].is_string() && m["cpu_model"].is_string(), "{s}");
    assert!(v.get("commit").is_some(), "{s}");
    assert_no_debug(&v, "$");
    v
}

/// The traffic block both labs share.
fn traffic_block(v: &serde_json::Value) -> &serde_json::Value {
    let t = &v["traffic"];
    for k in [
        "tx",
        "rx",
        "lost",
        "plr",
        "duration_s",
        "offered_mpps",
        "received_mpps",
        "flows",
        "dut_mpps_per_core",
    ] {
        assert!(t[k].is_number(), "traffic.{k} missing: {v}");
    }
    for k in [
        "latency_p50_us",
        "latency_p99_us",
        "latency_max_us",
        "flows_verified",
    ] {
        assert!(t.get(k).is_some(), "traffic.{k} missing: {v}");
    }
    t
}

#[test]
fn lab_bng_with_no_setup_time_exits_non_zero() {
    let o = testbed(&["lab", "bng", "--sessions", "100", "--timeout", "0"]);
    assert!(!o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "no report of a run that did not run");
    assert!(stderr(&o).contains("--timeout"), "{}", stderr(&o));
}

#[test]
fn lab_bng_sessions_not_established_fails_after_its_report() {
    // 10 setups per second for 1 s: far fewer than 100 sessions come up.
    let o = testbed(&[
        "lab",
        "bng",
        "--json",
        "--sessions",
        "100",
        "--setup-rate",
        "10",
        "--timeout",
        "1",
        "--packets",
        "1000",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("testbed: lab failed: only ") && err.contains("of 100 sessions came up"),
        "{err}"
    );
    let v = report(&stdout(&o), "testbed.lab.bng");
    assert!(v["sessions_established"].as_u64() < Some(100));
}

#[test]
fn lab_bng_json_report_has_the_header_the_shared_block_and_no_debug_text() {
    let path = std::env::temp_dir().join(format!("lab-bng-per-session-{}", std::process::id()));
    let p = path.to_str().unwrap();
    let o = testbed(&[
        "lab",
        "bng",
        "--json",
        "--access",
        "mixed",
        "--sessions",
        "40",
        "--packets",
        "4000",
        "--per-session",
        p,
        "--max-plr",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = report(&stdout(&o), "testbed.lab.bng");
    let t = traffic_block(&v);
    assert_eq!(t["tx"], 8000, "{v}");
    assert_eq!(t["rx"], 8000, "{v}");
    assert_eq!(t["plr"].as_f64(), Some(0.0));
    // One stream per subscriber and direction, each one's first and last packet seen.
    assert_eq!(t["flows"], 80, "{v}");
    assert_eq!(t["flows_verified"], 80, "{v}");
    let (p50, p99, max) = (
        t["latency_p50_us"].as_f64().unwrap(),
        t["latency_p99_us"].as_f64().unwrap(),
        t["latency_max_us"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{t}");
    for phase in ["upstream", "downstream"] {
        assert_eq!(v[phase]["flows_verified"], 40, "{v}");
        assert!(v[phase]["latency_p99_us"].is_number(), "{v}");
    }
    assert!(v["lcp_echo"]["requests_received"].is_number(), "{v}");
    // The per-session file: one JSON object per subscriber.
    let text = std::fs::read_to_string(&path).expect("per-session file");
    let _ = std::fs::remove_file(&path);
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 40, "{text}");
    let mut access = std::collections::BTreeMap::new();
    for r in &rows {
        *access
            .entry(r["access"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
        assert_eq!(r["tx_up"], 100, "{r}");
        assert_eq!(r["rx_up"], 100, "{r}");
        assert_eq!(r["tx_down"], 100, "{r}");
        assert_eq!(r["rx_down"], 100, "{r}");
        assert_eq!(r["loss"].as_f64(), Some(0.0), "{r}");
        assert_eq!(r["flows_verified"], 2, "{r}");
        let a: std::net::Ipv4Addr = r["address"].as_str().unwrap().parse().expect("address");
        assert!(!a.is_unspecified(), "{r}");
        assert_eq!(
            r["session_id"].is_null(),
            r["access"] == "ipoe",
            "PPPoE rows carry their session id: {r}"
        );
        assert_no_debug(r, "per-session");
    }
    assert_eq!(access.get("pppoe"), Some(&20));
    assert_eq!(access.get("ipoe"), Some(&20));
}

#[test]
fn lab_bng_loss_above_max_plr_fails_with_one_line() {
    // 1 Mbit/s down per subscriber: the policer drops most of the downstream phase.
    let o = testbed(&[
        "lab",
        "bng",
        "--json",
        "--sessions",
        "10",
        "--packets",
        "20000",
        "--frame",
        "1000",
        "--rate",
        "0/1M",
        "--max-plr",
        "0.01",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("above --max-plr 0.01"), "{err}");
    let v = report(&stdout(&o), "testbed.lab.bng");
    assert!(v["traffic"]["plr"].as_f64() > Some(0.01), "{v}");
    assert!(v["downstream"]["flows_verified"].as_u64() < Some(10), "{v}");
}

#[test]
fn lab_bng_by_duration_with_lcp_echo_and_live_progress() {
    let o = testbed(&[
        "lab",
        "bng",
        "--sessions",
        "10",
        "--duration",
        "2.3",
        "--no-downstream",
        "--lcp-echo-interval",
        "1",
        "--progress",
    ]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{err}");
    // Live lines on stderr (not a terminal here, so one per line).
    assert!(
        err.lines().any(|l| l.starts_with("upstream: 2 s,")),
        "{err}"
    );
    // Echo-Requests every second for every session, each answered.
    let echo = out
        .lines()
        .find(|l| l.starts_with("LCP echo"))
        .unwrap_or_else(|| panic!("no LCP echo line: {out}"));
    let n: Vec<u64> = echo
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(n.len() >= 2 && n[0] >= 10 && n[0] == n[1], "{echo}");
    assert!(out.contains("flows verified         10 / 10"), "{out}");
    if let Some(p) = debug_text(&out) {
        panic!("Debug text {p:?} in the human report: {out}");
    }
}

#[test]
fn lab_router_json_report_has_the_header_and_the_shared_block() {
    let o = testbed(&[
        "lab",
        "router",
        "--json",
        "--duration",
        "0.3",
        "--rate",
        "20kpps",
        "--max-plr",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = report(&stdout(&o), "testbed.lab.router");
    let t = traffic_block(&v);
    assert_eq!(t["tx"], v["tx"]);
    assert_eq!(t["rx"], v["rx"]);
    assert!(t["latency_p99_us"].as_f64() > Some(0.0), "{t}");
    assert!(
        t["flows_verified"].is_null(),
        "the router lab does not verify flows"
    );
}
