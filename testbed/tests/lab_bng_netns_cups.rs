//! `testbed lab bng --netns --cups --ups 2 --radius --kill-up 1` end to end (root,
//! issue 21): the disaggregated vBNG as processes — `vbng-cp` in its namespace with
//! FreeRADIUS, two `vbng-up`s in namespaces of their own, PFCP and GTP-U over veths —
//! brings every emulated subscriber up across both user planes (placement by access
//! port: half each), passes traffic both ways without loss, and reports the same
//! KPIs as the monolithic namespace lab (setup rate and latency, throughput, PLR,
//! FreeRADIUS accounting, memory). Then user plane 1's process is killed: the
//! control plane clears exactly its sessions, FreeRADIUS gets one Lost-Service
//! Accounting-Stop for each, user plane 0's sessions stay and its subscribers'
//! traffic still passes without loss; the rest go down with PADT. With `--cgnat`
//! the control plane allocates every subscriber's port block and sends it over PFCP
//! (BBF TR-459 NAT IEs): the core sees only pool addresses. Fails (does not skip)
//! without root, `ip` or `freeradius`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn need(tool: &str, pkg: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "{tool} not found: apt-get install {pkg}");
}

fn u(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64()
        .unwrap_or_else(|| panic!("{path:?} missing or not a number in {v}"))
}

#[test]
fn cups_processes_in_namespaces_and_a_user_plane_killed() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the namespace lab needs root (scripts/test runs it as root)"
    );
    need("ip", "iproute2");
    need("freeradius", "freeradius");
    let testbed = PathBuf::from(env!("CARGO_BIN_EXE_testbed"));
    let vbng = testbed.with_file_name("vbng");
    for b in ["vbng-cp", "vbng-up"] {
        let p = testbed.with_file_name(b);
        assert!(
            p.exists(),
            "{} not found: build the workspace binaries first (`cargo build -p vbng`)",
            p.display()
        );
    }
    let n = 40u64;
    let out = Command::new(&testbed)
        .args(["lab", "bng", "--netns", "--radius", "--cups", "--ups", "2"])
        .args(["--sessions", &n.to_string(), "--packets", "4000"])
        .args(["--kill-up", "1", "--access", "mixed"])
        .args(["--cgnat", "203.0.113.0/28"])
        .args(["--timeout", "60", "--json", "--vbng"])
        .arg(&vbng)
        .output()
        .expect("running testbed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "testbed lab bng --netns --cups failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}\n{stderr}"));
    let s = r.to_string();

    // The monolithic namespace lab's KPIs.
    assert_eq!(r["schema"]["name"], "testbed.lab.bng.netns", "{s}");
    assert_eq!(u(&r, &["sessions_established"]), n, "{s}");
    assert!(r["setup_rate_per_s"].as_f64() > Some(0.0), "{s}");
    assert!(r["setup_p99_ms"].as_f64() > Some(0.0), "{s}");
    assert_eq!(u(&r, &["upstream", "received"]), 4000, "{s}");
    assert_eq!(u(&r, &["downstream", "received"]), 4000, "{s}");
    assert_eq!(r["plr"].as_f64(), Some(0.0), "{s}");
    assert!(r["rss_peak_kib"].as_u64() > Some(0), "{s}");
    assert_eq!(u(&r, &["sessions_after_teardown"]), 0, "{s}");
    assert_eq!(u(&r, &["bng", "sessions_up"]), n, "{s}");
    // FreeRADIUS: every session authenticated and accounted, started and stopped.
    assert_eq!(u(&r, &["radius", "access_accepts"]), n, "{s}");
    assert_eq!(u(&r, &["radius", "acct_starts"]), n, "{s}");
    assert_eq!(u(&r, &["radius", "acct_stops"]), n, "{s}");
    assert_eq!(r["per_access"]["ipoe"]["sessions_established"], 20, "{s}");

    // Both user planes associated and each had half the sessions.
    let c = &r["cups"];
    assert_eq!(c["ups"], 2, "{s}");
    assert!(u(c, &["cp", "associations"]) >= 2, "{s}");
    assert_eq!(u(c, &["cp", "established"]), n, "{s}");
    assert!(c["cp_rss_peak_kib"].as_u64() > Some(0), "{s}");
    assert_eq!(c["no_route"], 0, "{s}");
    let per = c["per_up"].as_array().expect("per_up");
    assert_eq!(per.len(), 2, "{s}");
    for p in per {
        assert_eq!(u(p, &["sessions_after_setup"]), n / 2, "{s}");
        assert!(p["rss_peak_kib"].as_u64() > Some(0), "{s}");
    }
    assert_eq!(per[1]["killed"], true, "{s}");

    // The kill: exactly user plane 1's sessions cleared, with Lost-Service Stops;
    // user plane 0 untouched and still forwarding.
    let k = &c["kill"];
    assert_eq!(u(k, &["up"]), 1, "{s}");
    assert_eq!(u(k, &["sessions_on_up"]), n / 2, "{s}");
    assert_eq!(u(k, &["sessions_cleared"]), n / 2, "{s}");
    assert_eq!(u(k, &["acct_stops_lost_service"]), n / 2, "{s}");
    assert_eq!(u(k, &["other_sessions_before"]), n / 2, "{s}");
    assert_eq!(u(k, &["other_sessions_after"]), n / 2, "{s}");
    assert_eq!(u(k, &["upstream_after", "sent"]), 4000, "{s}");
    assert_eq!(u(k, &["upstream_after", "received"]), 4000, "{s}");
    assert_eq!(u(c, &["cp", "ups_lost"]), 1, "{s}");
    assert_eq!(u(c, &["cp", "sessions_lost"]), n / 2, "{s}");
    // The survivors went down with PADT/RELEASE: their PFCP sessions deleted.
    assert_eq!(u(c, &["cp", "deleted"]), n / 2, "{s}");

    // CGNAT over PFCP: one binding per session from the control plane, every one
    // freed (deleted or lost with its user plane); the core saw only the pool.
    assert_eq!(u(c, &["cp", "nat_allocated"]), n, "{s}");
    assert_eq!(u(c, &["cp", "nat_freed"]), n, "{s}");
    assert_eq!(u(c, &["cp", "nat_exhausted"]), 0, "{s}");
    let g = &r["cgnat"];
    assert_eq!(u(g, &["core_src_outside_pool"]), 0, "{s}");
    assert!(u(g, &["core_src_in_pool"]) >= 4000, "{s}");
    assert_eq!(u(g, &["core_flows"]), n, "{s}");
}
