//! The `keyserver` binary is killed (SIGKILL) while its CPEs are rotating keys and
//! restarted from its journal: every CPE authenticates again and is served, every
//! tunnel keeps working with consistent keys, no ESP packet fails, and rotations go
//! on. Also `keyserver check`.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const IDS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

fn write_config(dir: &std::path::Path, listen: &str) -> std::path::PathBuf {
    let mut t = server_toml(0.4, 0.05, Some(&dir.join("state")));
    t = t.replace("127.0.0.1:0", listen);
    t.push_str("[[group]]\nname = \"g\"\ntopology = \"full-mesh\"\n\n");
    for (k, id) in IDS.iter().enumerate() {
        t.push_str(&cpe_toml(id, k + 1, &["g"]));
    }
    let p = dir.join("keyserver.toml");
    std::fs::write(&p, t).unwrap();
    p
}

fn spawn(cfg: &std::path::Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyserver"))
        .arg("run")
        .arg(cfg)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("keyserver: listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

/// ESP both ways over every tunnel; the number of packets that failed.
fn exchange(cpes: &mut [Cpe]) -> (u64, u64) {
    let (mut sent, mut failed) = (0, 0);
    for x in 0..cpes.len() {
        for y in 0..cpes.len() {
            if x == y {
                continue;
            }
            let Some(pair) = cpes[x].pair_with(IDS[y]) else {
                continue;
            };
            let Some(p) = cpes[x].encrypt(pair, Cpe::lan(x + 1, 1), Cpe::lan(y + 1, 1), 0) else {
                continue;
            };
            sent += 1;
            if !cpes[y].decrypt(&p) {
                failed += 1;
            }
        }
    }
    (sent, failed)
}

#[test]
fn kill_and_restart_under_rekeying_loses_no_cpe() {
    let dir = std::env::temp_dir().join(format!("ks-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = write_config(&dir, "127.0.0.1:0");
    let (mut child, addr) = spawn(&cfg);
    let mut cpes: Vec<Cpe> = IDS.iter().map(|id| Cpe::new(id, addr)).collect();
    assert!(run_until(&mut cpes, 10.0, |c| c.iter().all(Cpe::synced)));
    // Under load: rotations every 0.4 s per tunnel, ESP all the time.
    let (mut sent, mut failed) = (0, 0);
    let rotations = |c: &[Cpe]| c.iter().map(|x| x.sas.len()).sum::<usize>();
    let t = Instant::now();
    let mut saw_rotation = false;
    while t.elapsed() < Duration::from_millis(1500) {
        for c in cpes.iter_mut() {
            c.step(1);
        }
        saw_rotation |= rotations(&cpes) > 2 * 15;
        let (s, f) = exchange(&mut cpes);
        sent += s;
        failed += f;
    }
    assert!(saw_rotation, "no rotation under way before the kill");
    child.kill().unwrap();
    child.wait().unwrap();
    // The CPEs' tunnels keep working while the server is down.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(300) {
        for c in cpes.iter_mut() {
            c.step(1);
        }
        let (s, f) = exchange(&mut cpes);
        sent += s;
        failed += f;
    }
    let cfg = write_config(&dir, &addr.to_string());
    let (mut child, addr2) = spawn(&cfg);
    assert_eq!(addr, addr2);
    let synced_before: Vec<usize> = cpes.iter().map(|c| c.synced).collect();
    let t = Instant::now();
    let mut all_back = false;
    while t.elapsed() < Duration::from_secs(15) {
        for c in cpes.iter_mut() {
            c.step(1);
        }
        let (s, f) = exchange(&mut cpes);
        sent += s;
        failed += f;
        if cpes
            .iter()
            .zip(&synced_before)
            .all(|(c, b)| c.synced > *b && c.synced())
        {
            all_back = true;
            break;
        }
    }
    assert!(all_back, "not every CPE was served again after the restart");
    // Rotations go on after the restart, still without loss.
    let epochs_before: usize = cpes
        .iter()
        .map(|c| c.sending.values().sum::<u32>() as usize)
        .sum();
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1500) {
        for c in cpes.iter_mut() {
            c.step(1);
        }
        let (s, f) = exchange(&mut cpes);
        sent += s;
        failed += f;
    }
    let epochs_after: usize = cpes
        .iter()
        .map(|c| c.sending.values().sum::<u32>() as usize)
        .sum();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        epochs_after > epochs_before,
        "no rotation after the restart"
    );
    assert!(cpes.iter().all(|c| c.peers.len() == IDS.len() - 1));
    assert_eq!(failed, 0, "{failed} of {sent} ESP packets failed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_validates() {
    let dir = std::env::temp_dir().join(format!("ks-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = write_config(&dir, "127.0.0.1:0");
    let out = Command::new(env!("CARGO_BIN_EXE_keyserver"))
        .args(["check".as_ref(), cfg.as_os_str()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(so.contains("ok (6 CPEs, 1 groups)"), "{so}");
    assert!(!so.contains("secret-of"));
    std::fs::write(&cfg, "[server]\nlisten = \"nonsense\"\nid = \"x\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keyserver"))
        .args(["check".as_ref(), cfg.as_os_str()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let se = String::from_utf8_lossy(&out.stderr);
    assert_eq!(se.lines().count(), 1, "{se}");
    assert!(se.contains("server.listen"), "{se}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn metrics_and_revoke_over_http() {
    let dir = std::env::temp_dir().join(format!("ks-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = write_config(&dir, "127.0.0.1:0");
    let t = std::fs::read_to_string(&cfg).unwrap().replacen(
        "[server]\n",
        "[server]\nmetrics = \"127.0.0.1:0\"\n",
        1,
    );
    std::fs::write(&cfg, t).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyserver"))
        .arg("run")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr: SocketAddr = first
        .strip_prefix("keyserver: listening on ")
        .unwrap()
        .parse()
        .unwrap();
    let second = lines.next().unwrap().unwrap();
    let http = second
        .strip_prefix("keyserver: metrics on http://")
        .and_then(|s| s.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("{second:?}"))
        .to_string();
    let mut cpes: Vec<Cpe> = ["a", "b"].iter().map(|id| Cpe::new(id, addr)).collect();
    assert!(run_until(&mut cpes, 10.0, |c| c.iter().all(Cpe::synced)));
    let served = |want: &str| {
        let t = Instant::now();
        loop {
            let m = dataplane::http::get(&http, "/metrics").unwrap();
            if m.contains(want) || t.elapsed() > Duration::from_secs(5) {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let m = served("keyserver_cpes_served 2\n");
    assert!(m.contains("keyserver_cpes 6\n"), "{m}");
    assert!(m.contains("keyserver_cpes_served 2\n"), "{m}");
    assert!(m.contains("keyserver_pairs 15\n"), "{m}");
    assert!(!m.contains("secret-of"));
    let (st, body) =
        dataplane::http::request(&http, "POST", "/revoke?id=a", "text/plain", b"").unwrap();
    assert_eq!(st, 200, "{body}");
    let ab = cpes[1].pair_with("a").unwrap();
    assert!(run_until(&mut cpes, 3.0, |c| c[1]
        .deletes_all
        .contains(&ab)));
    let m = served("keyserver_revocations_total 1\n");
    assert!(m.contains("keyserver_revocations_total 1\n"), "{m}");
    assert!(m.contains("keyserver_cpes 5\n"), "{m}");
    let (st, _) = dataplane::http::request(&http, "POST", "/revoke", "text/plain", b"").unwrap();
    assert_eq!(st, 400);
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
