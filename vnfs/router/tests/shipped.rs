//! What ships with the router works as shipped: every example configuration passes
//! `router --check`, and the router command of the workspace README runs to its end on
//! its own (exit 0 within a timeout) from the workspace root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn workspace_root() -> PathBuf {
    crate_dir()
        .parent()
        .and_then(Path::parent)
        .expect("vnfs/router lies two levels below the workspace root")
        .to_path_buf()
}

#[test]
fn every_example_config_passes_check() {
    let dir = crate_dir().join("examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("examples dir") {
        let p = e.expect("dir entry").path();
        if p.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        n += 1;
        // from another directory: the check must not depend on the working directory
        let out = Command::new(env!("CARGO_BIN_EXE_router"))
            .arg("--config")
            .arg(&p)
            .arg("--check")
            .current_dir(std::env::temp_dir())
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run router");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("ok: "), "{}: {stdout}", p.display());
    }
    assert!(
        n >= 2,
        "router.toml and router-nat.toml at least, found {n}"
    );
}

#[test]
fn check_refuses_a_bad_config_in_one_line() {
    let d = std::env::temp_dir().join(format!("router-check-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let f = d.join("bad.toml");
    std::fs::write(
        &f,
        "[[interface]]\nname = \"a\"\nport = \"mem:a\"\nbogus = 1\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_router"))
        .arg("--config")
        .arg(&f)
        .arg("--check")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("router: ") && err.contains("bad.toml"),
        "{err}"
    );
    assert!(
        !err.contains("Caused by") && !err.contains("Error {"),
        "{err}"
    );
}

/// The arguments after `--` of the README's `--bin router` command, without the
/// optional `[...]` parts.
fn readme_router_args() -> Vec<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README");
    let line = readme
        .lines()
        .find(|l| l.contains("--bin router --"))
        .expect("the README shows the router command");
    let cmd = line
        .split('`')
        .find(|c| c.contains("--bin router --"))
        .expect("the command in backticks");
    let args = cmd.split_once(" -- ").expect("cargo run ... -- ARGS").1;
    let mut out = Vec::new();
    let mut depth = 0;
    for w in args.split_whitespace() {
        let opens = w.starts_with('[');
        if opens {
            depth += 1;
        }
        if depth == 0 {
            out.push(w.to_string());
        }
        if w.ends_with(']') && depth > 0 {
            depth -= 1;
        }
    }
    out
}

#[test]
fn readme_router_command_ends_on_its_own() {
    let args = readme_router_args();
    assert!(args.iter().any(|a| a == "--config"), "{args:?}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_router"))
        .args(&args)
        .current_dir(workspace_root())
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run router");
    let t0 = Instant::now();
    let limit = Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`router {}` (README) still running after {limit:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "`router {}`: {status}", args.join(" "));
}
