//! Records the git commit the crate is built from (`PKTGEN_GIT_COMMIT`, empty when
//! not built from a git checkout) for the reports' metadata.

use std::path::Path;
use std::process::Command;

fn git(dir: &str, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn watch(p: &Path) {
    // only files that exist: a missing one would re-run this script on every build
    if p.is_file() {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let commit = git(&dir, &["rev-parse", "HEAD"]).unwrap_or_default();
    println!("cargo:rustc-env=PKTGEN_GIT_COMMIT={commit}");
    if let Some(gd) = git(&dir, &["rev-parse", "--absolute-git-dir"]) {
        watch(&Path::new(&gd).join("HEAD"));
        if let (Some(common), Some(r)) = (
            git(
                &dir,
                &["rev-parse", "--path-format=absolute", "--git-common-dir"],
            ),
            git(&dir, &["symbolic-ref", "-q", "HEAD"]),
        ) {
            watch(&Path::new(&common).join(&r));
            watch(&Path::new(&common).join("packed-refs"));
        }
    }
}
