//! Every example configuration shipped with the vBNG (`*.example.toml` in the crate,
//! `examples/*.toml`) passes `vbng check` as shipped, from another working directory
//! (files it names, such as `user_file`, ship next to it).

use std::path::PathBuf;
use std::process::Command;

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut v = Vec::new();
    for d in [dir.clone(), dir.join("examples")] {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let in_examples = d.ends_with("examples") && name.ends_with(".toml");
            if in_examples || name.ends_with(".example.toml") {
                v.push(p);
            }
        }
    }
    v
}

#[test]
fn every_shipped_example_passes_check() {
    let ex = examples();
    assert!(!ex.is_empty(), "vbng.example.toml at least");
    for p in ex {
        let out = Command::new(env!("CARGO_BIN_EXE_vbng"))
            .arg("check")
            .arg("-c")
            .arg(&p)
            .current_dir(std::env::temp_dir())
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("run vbng");
        assert!(
            out.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("ok:"),
            "{}",
            p.display()
        );
    }
}
