//! The `pktgen` binary's verdicts and exit status: an RFC 2544 search over an
//! in-memory loopback (which never loses a frame) asked for far more than any
//! generator offers ends generator-limited: no DUT throughput, exit 3; a failed run
//! exits 1 with one line; `--help` documents the exit status.

use std::process::{Command, Output};

fn pktgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pktgen"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run pktgen")
}

#[test]
fn loopback_search_beyond_the_generator_is_generator_limited() {
    let dir = std::env::temp_dir().join(format!("pktgen-cli-{}", std::process::id()));
    let out = pktgen(&[
        "rfc2544",
        "--tx",
        "mem:loop",
        "--rx",
        "mem:loop",
        "--sizes",
        "64",
        "--max-rate",
        "1000Mpps",
        "--duration",
        "0.05",
        "--json",
        "--out",
        dir.to_str().expect("utf-8 temp dir"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("pktgen: generator-limited"), "{err}");
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(v["generator_limited"], true);
    let r = &v["results"][0];
    assert!(r["summary"]["throughput"].is_null(), "{r}");
    assert!(r["throughput_pps"].is_null(), "{r}");
    assert_eq!(r["summary"]["generator_limited"], true);
    assert_eq!(r["summary"]["limited_by"], "generator");
    let text = r["summary"]["text"].as_str().expect("text");
    assert!(
        text.starts_with("64 B: generator-limited at ")
            && text.ends_with("Mpps: the DUT's throughput is above what this generator can offer"),
        "{text}"
    );
    // a loopback loses nothing: no trial may be blamed on the DUT
    for t in r["trials"].as_array().expect("trials") {
        assert_eq!(t["lost"], 0, "{t}");
        assert_ne!(t["limited_by"], "dut", "{t}");
    }
    assert!(dir.join("report.html").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_run_exits_1_with_one_line() {
    let out = pktgen(&["rfc2544", "--tx", "bogus", "--rx", "mem:x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("pktgen: ") && err.contains("bogus"),
        "{err}"
    );
    assert!(
        !err.contains("Error:") && !err.contains("Caused by"),
        "{err}"
    );
}

#[test]
fn help_documents_the_exit_status() {
    let out = pktgen(&["--help"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        s.contains("Exit status") && s.contains("3 (rfc2544)"),
        "{s}"
    );
}

/// `run --json` over a loopback: one JSON object with the report header; the same
/// run towards a port nothing comes back from fails with one line after its report.
#[test]
fn run_report_has_the_header_and_nothing_received_fails() {
    let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/udp64.toml");
    let ok = pktgen(&[
        "run",
        "--profile",
        profile,
        "--tx",
        "mem:runloop",
        "--rx",
        "mem:runloop",
        "--duration",
        "0.2",
        "--json",
        "--max-plr",
        "0",
    ]);
    let err = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("one JSON object");
    assert_eq!(v["schema"]["name"], "pktgen.run", "{v}");
    assert!(
        v["started"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{v}"
    );
    assert!(v["machine"]["cores"].as_u64() >= Some(1), "{v}");
    assert!(
        v["command"].as_str().is_some_and(|c| c.contains(" run ")),
        "{v}"
    );
    assert!(v["rx"]["rx"].as_u64() > Some(0), "{v}");

    let lost = pktgen(&[
        "run",
        "--profile",
        profile,
        "--tx",
        "mem:runsend",
        "--rx",
        "mem:runnothing",
        "--duration",
        "0.2",
        "--json",
    ]);
    let err = String::from_utf8_lossy(&lost.stderr);
    assert_eq!(lost.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("pktgen: run failed: none of the "), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&lost.stdout).expect("the report first");
    assert_eq!(v["rx"]["rx"], 0, "{v}");
}
