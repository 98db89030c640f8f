//! What the namespace-lab tests (`lab_bng_netns*.rs`) share: their set-up checks and
//! reading the lab's JSON report.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Fails with the Debian package to install when `tool` is not on the path.
pub fn need(tool: &str, pkg: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "{tool} not found: apt-get install {pkg}");
}

/// What every namespace lab needs: root, `ip` and the `tools` (command, Debian
/// package), and the workspace `binaries` beside `testbed`. Returns the paths of
/// `testbed` and `vbng`.
pub fn lab_setup(tools: &[(&str, &str)], binaries: &[&str]) -> (PathBuf, PathBuf) {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the namespace lab needs root (scripts/test runs it as root)"
    );
    need("ip", "iproute2");
    for (tool, pkg) in tools {
        need(tool, pkg);
    }
    let testbed = PathBuf::from(env!("CARGO_BIN_EXE_testbed"));
    for b in binaries {
        let p = testbed.with_file_name(b);
        assert!(
            p.exists(),
            "{} not found: build the workspace binaries first (`cargo build -p vbng`; \
             `cargo test --workspace` builds them)",
            p.display()
        );
    }
    let vbng = testbed.with_file_name("vbng");
    (testbed, vbng)
}

/// The number at `path` in the report `v`.
pub fn u(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64()
        .unwrap_or_else(|| panic!("{path:?} missing or not a number in {v}"))
}
