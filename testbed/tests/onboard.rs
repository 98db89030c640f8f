//! `testbed onboard` (issue 18 item 5) on the router CSAR and the vBNG OSM package:
//! validated, the unikernel image booted under QEMU (TCG) to its ready line with
//! its day-0 over fw_cfg, the VNF process instantiated in a namespace, the package's
//! health check passing, every monitoring parameter of the package scraped from the
//! running VNF (so the package names metrics the VNF really exports), the vBNG
//! drained through its RESTCONF RPC, everything terminated. A package whose KPI
//! names a metric the VNF does not export fails with a one-line reason.
//!
//! Needs root (namespaces), QEMU, curl, the validators' venv and the workspace
//! binaries (`descriptors`, `router`, `vbng` next to `testbed`; `cargo test
//! --workspace` builds them); fails, does not skip, when they are missing.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn bin(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_testbed")).with_file_name(name);
    assert!(
        p.is_file(),
        "{} not found: cargo build -p descriptors -p vnf-router -p vbng (`cargo test --workspace` builds them)",
        p.display()
    );
    p
}

fn need(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(found, "`{tool}` is missing: apt-get install {package}");
}

/// One onboarding at a time (one QEMU guest, one set of namespaces per process).
fn lock() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

fn setup() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "onboard needs root (scripts/test runs it as root)"
    );
    need("ip", "iproute2");
    need("curl", "curl");
    need("qemu-system-x86_64", "qemu-system-x86");
    if std::env::var_os("VNF_VENV").is_none() && !root().join(".venv").is_dir() {
        panic!("no validators venv: scripts/setup creates .venv (or set VNF_VENV)");
    }
}

/// `testbed image build VNF` once per VNF per test process.
fn image(vnf: &'static str) {
    static B: OnceLock<Mutex<Vec<&'static str>>> = OnceLock::new();
    let done = B.get_or_init(|| Mutex::new(Vec::new()));
    let mut d = done.lock().unwrap_or_else(|e| e.into_inner());
    if d.contains(&vnf) {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .current_dir(root())
        .args(["image", "build", vnf])
        .output()
        .expect("testbed image build");
    assert!(
        out.status.success(),
        "image build {vnf}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.push(vnf);
}

fn package(vnf: &str, format: &str, out: &Path) {
    let o = Command::new(bin("descriptors"))
        .current_dir(root())
        .args(["package", vnf, "--format", format, "--force", "-o"])
        .arg(out)
        .output()
        .expect("descriptors package");
    assert!(
        o.status.success(),
        "package {vnf} {format}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn onboard(pkg: &Path) -> (bool, Value, String) {
    onboard_with(pkg, &[])
}

fn onboard_with(pkg: &Path, extra: &[&str]) -> (bool, Value, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .current_dir(root())
        .arg("onboard")
        .arg(pkg)
        .arg("--json")
        .args(extra)
        .output()
        .expect("testbed onboard");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.success(), v, err)
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("onboard-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp");
    d
}

fn check_report(v: &Value, vnf: &str, platform: &str, kpis: &[&str]) {
    assert_eq!(v["schema"]["name"], "testbed.onboard", "{v}");
    assert_eq!(v["vnf"], vnf, "{v}");
    assert_eq!(v["validated"], true, "{v}");
    assert_eq!(v["platform"], platform, "{v}");
    assert_eq!(v["image_boot"]["booted"], true, "{v}");
    assert!(
        v["image_boot"]["ready_line"]
            .as_str()
            .is_some_and(|l| l.contains(&format!("{vnf} ready"))),
        "{v}"
    );
    assert_eq!(v["day2"]["get-state"], "ok", "{v}");
    assert!(
        v["image_boot"]["day0_line"]
            .as_str()
            .is_some_and(|l| l.contains("config: fw_cfg opt/vnf/config")),
        "{v}"
    );
    for k in ["instantiated", "healthy", "terminated"] {
        assert_eq!(v[k], true, "{k}: {v}");
    }
    let got = v["kpis"].as_object().expect("kpis");
    for k in kpis {
        assert!(got.get(*k).is_some_and(Value::is_number), "{k}: {v}");
    }
}

#[test]
fn router_csar_onboards() {
    setup();
    let _g = lock();
    image("router");
    let d = tmp("router");
    let csar = d.join("router.csar");
    package("router", "csar", &csar);
    let (ok, v, err) = onboard(&csar);
    assert!(ok, "{err}");
    // The guest itself: health check, KPIs and get-state over its NIC.
    check_report(
        &v,
        "router",
        "guest",
        &[
            "rx-packets",
            "tx-packets",
            "rx-bytes",
            "tx-bytes",
            "drops",
            "idle-loops",
        ],
    );
    assert_eq!(v["format"], "csar");
    // The RESTCONF state the health check read: the router's two interfaces.
    assert_eq!(v["state"]["router:state"]["interface"][0]["name"], "access");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn vbng_osm_package_onboards_and_drains_and_a_false_kpi_fails() {
    setup();
    let _g = lock();
    image("vbng");
    let d = tmp("vbng");
    let out = d.join("osm");
    package("vbng", "osm", &out);
    let (ok, v, err) = onboard(&out.join("vbng_vnf.tar.gz"));
    assert!(ok, "{err}");
    check_report(
        &v,
        "vbng",
        "process",
        &["sessions", "draining", "rx-packets", "drops"],
    );
    assert_eq!(v["format"], "osm");
    let drain: Value = serde_json::from_str(v["drain"].as_str().expect("drain output"))
        .expect("drain output is the RPC's JSON");
    assert_eq!(drain["vbng:output"]["draining"], true, "{v}");

    // A monitoring parameter naming a metric the vBNG does not export: the package
    // still validates (checksums refreshed), onboarding fails naming the metric.
    let pkg = out.join("vbng_vnf");
    let kf = pkg.join("monitoring/vbng-kpis.yaml");
    let old = std::fs::read(&kf).expect("kpi file");
    let new = String::from_utf8(old.clone()).unwrap().replacen(
        "metric: vbng_sessions\n",
        "metric: vbng_sessions_bogus\n",
        1,
    );
    assert_ne!(new.as_bytes(), &old[..]);
    std::fs::write(&kf, &new).unwrap();
    let md5 = |b: &[u8]| {
        let o = Command::new("md5sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b)?;
                c.wait_with_output()
            })
            .expect("md5sum");
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let sums = pkg.join("checksums.txt");
    let s = std::fs::read_to_string(&sums)
        .unwrap()
        .replace(&md5(&old), &md5(new.as_bytes()));
    std::fs::write(&sums, s).unwrap();
    let (ok, _, err) = onboard(&pkg);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("vbng_sessions_bogus") && err.contains("does not export"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// The vBNG CSAR with `--platform guest`: the booted image itself answers the
/// package's health check (RESTCONF state GET and `/metrics` over its core NIC, a tap
/// in the namespace), its KPIs and `get-state`; the package's drain calls the
/// guest's `vbng:drain` RPC, whose answer the report carries.
#[test]
fn vbng_csar_onboards_on_the_guest() {
    setup();
    let _g = lock();
    image("vbng");
    let d = tmp("vbng-guest");
    let csar = d.join("vbng.csar");
    package("vbng", "csar", &csar);
    let (ok, v, err) = onboard_with(&csar, &["--platform", "guest"]);
    assert!(ok, "{err}");
    check_report(
        &v,
        "vbng",
        "guest",
        &["sessions", "draining", "rx-packets", "drops"],
    );
    assert_eq!(v["state"]["vbng:state"]["draining"], false, "{v}");
    let drain: Value = serde_json::from_str(v["drain"].as_str().expect("drain output"))
        .expect("drain output is the RPC's JSON");
    assert_eq!(drain["vbng:output"]["draining"], true, "{v}");
    assert_eq!(drain["vbng:output"]["sessions"], 0, "{v}");
    let _ = std::fs::remove_dir_all(&d);
}
