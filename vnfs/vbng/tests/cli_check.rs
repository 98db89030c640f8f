//! `vbng check` and `vbng run` argument limits through the binary (issue 20): a refused
//! config exits non-zero with one line naming the reason; the shipped example passes
//! from any working directory (its `user_file` is read next to it).

use std::path::PathBuf;
use std::process::{Command, Output};

fn vbng(args: &[&str], cwd: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vbng"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("run vbng")
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vbng-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn example_config_checks_from_another_directory() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vbng.example.toml");
    let d = tmpdir("example");
    let out = vbng(&["check", "-c", example.to_str().expect("utf-8 path")], &d);
    let _ = std::fs::remove_dir_all(&d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.starts_with("ok:") && s.contains("local users"), "{s}");
}

#[test]
fn bad_configs_exit_non_zero_with_one_line() {
    let d = tmpdir("bad");
    let pool = "[[pools]]\nname = \"d\"\nranges = [\"100.64.0.0/24\"]\n";
    let cases = [
        ("gateway.toml", pool.to_string(), "100.64.0.1"),
        (
            "overlap.toml",
            "[[pools]]\nname = \"a\"\nranges = [\"10.0.0.0/30\"]\n[[pools]]\nname = \"b\"\nranges = [\"10.0.0.2/31\"]\n".to_string(),
            "overlap",
        ),
        ("padi.toml", "padi_per_port = 0\n".to_string(), "padi_per_port"),
        ("listen.toml", "listen = \"nope\"\n".to_string(), "listen"),
        ("syntax.toml", "bogus = 1\n".to_string(), "line 1"),
        (
            "users.toml",
            "user_file = \"users-dup.txt\"\n".to_string(),
            "duplicate user name",
        ),
    ];
    std::fs::write(d.join("users-dup.txt"), "a x\na y\n").expect("write");
    for (name, text, want) in &cases {
        std::fs::write(d.join(name), text).expect("write");
        let out = vbng(&["check", "-c", name], &d);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} accepted");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert!(
            err.starts_with(&format!("vbng: {name}")) && err.contains(want),
            "{name}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn max_sessions_outside_its_limit_is_refused() {
    let d = tmpdir("max");
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vbng.example.toml");
    for n in ["0", "4294967295", "1048577"] {
        let out = vbng(
            &[
                "run",
                "-c",
                example.to_str().expect("utf-8 path"),
                "--access",
                "mem:cli-a",
                "--core",
                "mem:cli-c",
                "--duration",
                "1",
                "--max-sessions",
                n,
            ],
            &d,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--max-sessions {n} accepted");
        assert!(err.contains("1..=1048576"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&d);
}
