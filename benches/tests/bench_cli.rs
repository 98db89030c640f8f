//! The `bench` command line: the side-by-side scaling run (`--scaling`), `--order`.

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bench"))
}

#[test]
fn scaling_runs_both_layouts_and_reports_their_ratio() {
    let out = bench()
        .args([
            "l3fwd-small",
            "--workers",
            "2",
            "--cores",
            "0,1",
            "--seconds",
            "0.2",
            "--scaling",
            "2",
            "--json",
        ])
        .output()
        .expect("bench runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(v["schema"]["name"], "benches.bench-scaling");
    assert_eq!(v["workers"], 2);
    assert_eq!(v["passes"], 2);
    let one: Vec<f64> = serde_json::from_value(v["one_worker_mpps"].clone()).unwrap();
    let many: Vec<f64> = serde_json::from_value(v["n_workers_mpps"].clone()).unwrap();
    let pairs: Vec<f64> = serde_json::from_value(v["pairwise"].clone()).unwrap();
    assert_eq!((one.len(), many.len(), pairs.len()), (2, 2, 2));
    assert!(one.iter().chain(&many).all(|&m| m > 0.0), "{v}");
    for ((a, b), p) in one.iter().zip(&many).zip(&pairs) {
        assert!((b / a - p).abs() < 1e-9);
    }
    let (m1, mn) = (
        v["median_one_worker"].as_f64().unwrap(),
        v["median_n_workers"].as_f64().unwrap(),
    );
    assert!((m1 - (one[0] + one[1]) / 2.0).abs() < 1e-9);
    assert!((mn - (many[0] + many[1]) / 2.0).abs() < 1e-9);
    assert!((v["ratio"].as_f64().unwrap() - mn / m1).abs() < 1e-9);
    let indep: Vec<f64> = serde_json::from_value(v["independent_mpps"].clone()).unwrap();
    assert_eq!(indep.len(), 2);
    assert!(indep.iter().all(|&m| m > 0.0), "{v}");
    let mi = v["median_independent"].as_f64().unwrap();
    assert!((mi - (indep[0] + indep[1]) / 2.0).abs() < 1e-9);
    assert!((v["independent_ratio"].as_f64().unwrap() - mi / m1).abs() < 1e-9);
}

#[test]
fn scaling_needs_several_workers_and_says_so_on_one_line() {
    let out = bench()
        .args(["l3fwd-small", "--seconds", "0.1", "--scaling", "1"])
        .output()
        .expect("bench runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--workers N"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn order_is_for_the_vbng_scenarios_and_others_say_so_on_one_line() {
    let out = bench()
        .args(["l3fwd-small", "--seconds", "0.1", "--order", "shuffled"])
        .output()
        .expect("bench runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bng-up"), "{err}");
    assert!(out.stdout.is_empty());
}
