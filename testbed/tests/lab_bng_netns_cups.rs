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
//! without root, `ip` or `freeradius`. The second test runs the user plane as the
//! `vbng-up` unikernel guest instead (`--up-platform guest`, QEMU TCG). The third
//! runs each user plane process with two workers (`--workers 2`: two worker
//! threads per `vbng-up`, each with its socket of the veths' AF_PACKET fanout
//! groups, the control plane told of them): every subscriber comes up and the
//! traffic passes both ways without loss.

mod netns_lab;

use netns_lab::{lab_setup, u};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// One namespace lab at a time: the guest user plane's TCG CPU would otherwise take
/// the other lab's time and its zero-loss phases with it.
static LAB: Mutex<()> = Mutex::new(());

#[test]
fn cups_processes_in_namespaces_and_a_user_plane_killed() {
    let _lab = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let (testbed, vbng) = lab_setup(&[("freeradius", "freeradius")], &["vbng-cp", "vbng-up"]);
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

/// `testbed lab bng --netns --radius --cups --ups 1 --up-platform guest` (root): the
/// user plane is the `vbng-up` unikernel under QEMU (TCG) with its access, core and
/// control NICs on taps bridged into its namespace; `vbng-cp` (a process) associates
/// with it over PFCP on the control NIC, brings the subscribers up through the
/// guest's GTP-U redirect, programs their sessions, and FreeRADIUS accounts every
/// one; traffic passes both ways through the guest (not yet without loss under TCG:
/// most frames must arrive) and every session goes down with its PFCP session
/// deleted. The image is built first
/// (`testbed image build vbng-up --no-disk`). Fails (does not skip) without root,
/// `ip`, `freeradius` or QEMU.
#[test]
fn cups_guest_user_plane_in_a_namespace() {
    let _lab = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let (testbed, vbng) = lab_setup(
        &[
            ("freeradius", "freeradius"),
            ("qemu-system-x86_64", "qemu-system-x86"),
        ],
        &["vbng-cp"],
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let out = Command::new(&testbed)
        .current_dir(&root)
        .args(["image", "build", "vbng-up", "--no-disk"])
        .output()
        .expect("running testbed image build");
    assert!(
        out.status.success(),
        "testbed image build vbng-up failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let image = root.join("target/images/vbng-up.elf");
    let n = 10u64;
    let t0 = std::time::Instant::now();
    let out = Command::new(&testbed)
        .args(["lab", "bng", "--netns", "--radius", "--cups", "--ups", "1"])
        .args(["--up-platform", "guest", "--up-image"])
        .arg(&image)
        .args(["--sessions", &n.to_string(), "--packets", "1000"])
        .args(["--timeout", "60", "--json", "--vbng"])
        .arg(&vbng)
        .output()
        .expect("running testbed");
    let took = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "testbed lab bng --netns --cups --up-platform guest failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}\n{stderr}"));
    let s = r.to_string();
    eprintln!("guest user plane lab: {:.1} s", took.as_secs_f64());

    assert_eq!(u(&r, &["sessions_established"]), n, "{s}");
    assert_eq!(u(&r, &["upstream", "sent"]), 1000, "{s}");
    assert_eq!(u(&r, &["downstream", "sent"]), 1000, "{s}");
    // Traffic passes through the guest both ways, but not yet without loss: on the
    // loaded 2-core machine runs lost 0 to 256 of 1000 frames downstream and once 87
    // upstream (where — the guest's virtio rings under TCG or the taps — is not
    // pinned down yet; see vnfs/vbng/README.md). Most frames must arrive.
    let up = u(&r, &["upstream", "received"]);
    assert!((500..=1000).contains(&up), "upstream {up} of 1000: {s}");
    let down = u(&r, &["downstream", "received"]);
    assert!(
        (500..=1000).contains(&down),
        "downstream {down} of 1000: {s}"
    );
    assert_eq!(u(&r, &["lab_rx_dropped"]), 0, "{s}");
    assert_eq!(u(&r, &["sessions_after_teardown"]), 0, "{s}");
    // FreeRADIUS: every session authenticated and accounted, started and stopped.
    assert_eq!(u(&r, &["radius", "access_accepts"]), n, "{s}");
    assert_eq!(u(&r, &["radius", "acct_starts"]), n, "{s}");
    assert_eq!(u(&r, &["radius", "acct_stops"]), n, "{s}");

    // The guest associated, carried every session, and reported its boot.
    let c = &r["cups"];
    assert_eq!(c["ups"], 1, "{s}");
    assert!(u(c, &["cp", "associations"]) >= 1, "{s}");
    assert_eq!(u(c, &["cp", "established"]), n, "{s}");
    assert_eq!(u(c, &["cp", "deleted"]), n, "{s}");
    assert_eq!(u(c, &["cp", "ups_lost"]), 0, "{s}");
    assert!(u(c, &["cp", "redirected_in"]) > 0, "{s}");
    let per = c["per_up"].as_array().expect("per_up");
    assert_eq!(per.len(), 1, "{s}");
    assert_eq!(u(&per[0], &["sessions_after_setup"]), n, "{s}");
    assert!(per[0]["guest_ready_ms"].as_f64() > Some(0.0), "{s}");
    assert!(u(&per[0], &["guest_memory_used_kib"]) > 0, "{s}");
}

#[test]
fn cups_user_planes_with_two_workers() {
    let _lab = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let (testbed, vbng) = lab_setup(&[], &["vbng-cp", "vbng-up"]);
    let n = 40u64;
    let out = Command::new(&testbed)
        .args([
            "lab",
            "bng",
            "--netns",
            "--cups",
            "--ups",
            "2",
            "--workers",
            "2",
        ])
        .args(["--sessions", &n.to_string(), "--packets", "2000"])
        .args(["--timeout", "60", "--json", "--vbng"])
        .arg(&vbng)
        .output()
        .expect("running testbed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "testbed lab bng --netns --cups --workers 2 failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}\n{stderr}"));
    let s = r.to_string();
    assert_eq!(u(&r, &["sessions_established"]), n, "{s}");
    assert_eq!(u(&r, &["upstream", "received"]), 2000, "{s}");
    assert_eq!(u(&r, &["downstream", "received"]), 2000, "{s}");
    assert_eq!(r["plr"].as_f64(), Some(0.0), "{s}");
    assert_eq!(u(&r, &["sessions_after_teardown"]), 0, "{s}");
    let c = &r["cups"];
    assert_eq!(u(c, &["cp", "established"]), n, "{s}");
    let per = c["per_up"].as_array().expect("per_up");
    assert_eq!(per.len(), 2, "{s}");
    for p in per {
        assert_eq!(u(p, &["sessions_after_setup"]), n / 2, "{s}");
    }
}
