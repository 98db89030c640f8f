//! The `vcpe` binary: `check` passes the examples and refuses a bad file with one
//! line and exit status 1; `run` over in-memory ports serves `/metrics` whose text
//! names the vCPE's nodes and counters, and `promtool check metrics` accepts it
//! (when Debian's `prometheus` package is installed).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_vcpe");

fn scratch(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vcpe-bin-{}-{name}", std::process::id()))
}

#[test]
fn check_accepts_the_examples_and_refuses_a_bad_file_in_one_line() {
    for f in ["examples/vcpe-a.toml", "examples/vcpe-b.toml"] {
        let out = Command::new(BIN).args(["check", f]).output().unwrap();
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && s.starts_with("ok: "), "{s}");
        assert!(!s.contains("0123456789abcdef"), "a key was printed: {s}");
    }
    let bad = scratch("bad.toml");
    std::fs::write(
        &bad,
        include_str!("../examples/vcpe-a.toml").replace("spi_out = 0x1001", "spi_out = 3"),
    )
    .unwrap();
    let out = Command::new(BIN).arg("check").arg(&bad).output().unwrap();
    std::fs::remove_file(&bad).ok();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(e.contains("static.spi_out"), "{e}");
}

fn get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut b = String::new();
    s.read_to_string(&mut b).ok()?;
    b.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

#[test]
fn run_serves_metrics_that_promtool_accepts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let id = std::process::id();
    let cfg = scratch("mem.toml");
    std::fs::write(
        &cfg,
        include_str!("../examples/vcpe-a.toml")
            .replace("afpacket:lan0", &format!("mem:vcl{id}"))
            .replace("afpacket:wan0", &format!("mem:vcw{id}")),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("run")
        .arg(&cfg)
        .args(["--seconds", "20", "--listen", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let mut m = None;
    while m.is_none() && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
        m = get(&addr, "/metrics");
    }
    let errors = get(&addr, "/errors");
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_file(&cfg).ok();
    let m = m.expect("/metrics answered");
    for want in [
        "vcpe_dhcp_leases",
        "node=\"vcpe-select\"",
        "node=\"vcpe-tunnel-check\"",
        "reason=\"no-sa\"",
        "node=\"esp-encrypt\"",
        "node=\"nat44\"",
    ] {
        assert!(m.contains(want), "{want} missing:\n{m}");
    }
    assert!(errors.is_some());
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!("promtool not installed: the format check is skipped");
        return;
    }
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_takes_workers_and_refuses_bad_ones_in_one_line() {
    let a = include_str!("../examples/vcpe-a.toml");
    let with = |engine: &str, extra: &str| format!("[engine]\n{engine}\n{a}{extra}");
    let ok = scratch("workers-ok.toml");
    std::fs::write(&ok, with("workers = 2\ncores = [0, 1]", "")).unwrap();
    let out = Command::new(BIN).arg("check").arg(&ok).output().unwrap();
    std::fs::remove_file(&ok).ok();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && s.contains(", 2 workers"), "{s}");
    for (engine, extra, want) in [
        ("workers = 0", "", "engine.workers: 0 is not in 1..=256"),
        ("workers = 257", "", "engine.workers: 257 is not in 1..=256"),
        (
            "workers = 2\ncores = [1, 2, 3]",
            "",
            "engine.cores: 3 cores for 2 workers",
        ),
        (
            "workers = 4",
            "port_min = 2000\nport_max = 2511\n",
            "engine.workers: 4 workers need a block of outside ports each",
        ),
    ] {
        let bad = scratch("workers-bad.toml");
        // `extra` goes into the [nat] section (right after its header).
        let text = with(engine, "").replace("[nat]\n", &format!("[nat]\n{extra}"));
        std::fs::write(&bad, text).unwrap();
        let out = Command::new(BIN).arg("check").arg(&bad).output().unwrap();
        std::fs::remove_file(&bad).ok();
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
        assert!(e.contains(want), "{want}: {e}");
    }
    // Several workers need a queue per worker: an in-memory port has one.
    let one_queue = scratch("workers-mem.toml");
    let id = std::process::id();
    std::fs::write(
        &one_queue,
        with("workers = 2", "")
            .replace("afpacket:lan0", &format!("mem:vwl{id}"))
            .replace("afpacket:wan0", &format!("mem:vww{id}")),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("run")
        .arg(&one_queue)
        .args(["--seconds", "1"])
        .output()
        .unwrap();
    std::fs::remove_file(&one_queue).ok();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(
        e.contains("lan.port") && e.contains("2 workers need"),
        "{e}"
    );
}
