//! The disaggregated vBNG's two binaries (issue 21): `vbng-cp check` and `vbng-up
//! check` accept their configs and refuse bad `[cups]` sections with one line and
//! exit status 1; the monolithic `vbng` refuses a `[cups]` section; and the two
//! processes, on their own loopback addresses, associate over PFCP (UDP 8805), the
//! control plane sets up the user plane's redirect session, and a PPPoE PADI the
//! user plane reads on its access port (a pcap port) reaches the control plane in
//! GTP-U (UDP 2152) and its PADO comes back out of the user plane's access port.
//! `vbng-up` takes `workers`/`cores` (`--workers`, `--cores`) as `vbng` does and
//! refuses, with one line, a core list of the wrong length, several workers on
//! single-queue ports, and several workers with CGNAT.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("run binary")
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vbng-cups-bin-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A loopback /24 of our own (127.a.b.0): fixed PFCP/GTP-U ports, unique addresses.
fn net(salt: u8) -> String {
    let p = std::process::id();
    format!("127.{}.{}", (p >> 8) as u8 | 1, (p as u8) ^ salt)
}

const CP: &str = env!("CARGO_BIN_EXE_vbng-cp");
const UP: &str = env!("CARGO_BIN_EXE_vbng-up");

fn write(d: &Path, name: &str, text: &str) -> String {
    let p = d.join(name);
    std::fs::write(&p, text).expect("write config");
    p.to_str().expect("utf-8 path").to_string()
}

fn one_line_failure(o: &Output, want: &str) {
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(e.contains(want), "want {want:?} in {e}");
}

#[test]
fn check_accepts_and_refuses() {
    let d = tmpdir("check");
    let cp = write(
        &d,
        "cp.toml",
        "[cups]\naddr = \"127.0.0.1\"\nups = [\"127.0.0.2\", \"127.0.0.3\"]\nplacement = \"load\"\n",
    );
    let o = run(CP, &["check", "-c", &cp]);
    assert!(o.status.success(), "{o:?}");
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.starts_with("ok:") && s.contains("2 user planes"), "{s}");
    let up = write(
        &d,
        "up.toml",
        "[cups]\naddr = \"127.0.0.2\"\ncp = \"127.0.0.1\"\n",
    );
    let o = run(UP, &["check", "-c", &up]);
    assert!(o.status.success(), "{o:?}");
    // A user plane config is not a control plane config and the other way round.
    one_line_failure(&run(CP, &["check", "-c", &up]), "ups");
    one_line_failure(&run(UP, &["check", "-c", &cp]), "cp");
    for (name, text, want) in [
        ("none.toml", "", "no [cups] section"),
        (
            "dup.toml",
            "[cups]\naddr = \"127.0.0.1\"\nups = [\"127.0.0.2\", \"127.0.0.2\"]\n",
            "duplicate",
        ),
        (
            "own.toml",
            "[cups]\naddr = \"127.0.0.1\"\nups = [\"127.0.0.1\"]\n",
            "own address",
        ),
        ("noaddr.toml", "[cups]\nups = [\"127.0.0.2\"]\n", "addr"),
        (
            "hb.toml",
            "[cups]\naddr = \"127.0.0.1\"\nups = [\"127.0.0.2\"]\nheartbeat_s = 0\n",
            "heartbeat_s",
        ),
        (
            "t1.toml",
            "[cups]\naddr = \"127.0.0.1\"\nups = [\"127.0.0.2\"]\nt1_ms = 5\n",
            "t1_ms",
        ),
        (
            "place.toml",
            "[cups]\naddr = \"127.0.0.1\"\nups = [\"127.0.0.2\"]\nplacement = \"random\"\n",
            "placement",
        ),
        (
            "unknown.toml",
            "[cups]\naddr = \"127.0.0.1\"\nups = [\"127.0.0.2\"]\nbogus = 1\n",
            "bogus",
        ),
    ] {
        let p = write(&d, name, text);
        one_line_failure(&run(CP, &["check", "-c", &p]), want);
    }
    // The monolithic vbng refuses [cups].
    let o = run(env!("CARGO_BIN_EXE_vbng"), &["check", "-c", &cp]);
    one_line_failure(&o, "vbng-cp");
    let _ = std::fs::remove_dir_all(&d);
}

/// A PADI (RFC 2516 §5.1) from `mac` on C-VLAN 10, with a Service-Name tag.
fn padi(mac: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a, 0x88, 0x63]);
    f.extend_from_slice(&[0x11, 0x09, 0x00, 0x00, 0x00, 0x04, 0x01, 0x01, 0x00, 0x00]);
    f
}

#[test]
fn processes_associate_and_redirect_discovery() {
    use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
    let d = tmpdir("run");
    let n = net(0x5a);
    let (cpa, upa) = (format!("{n}.1"), format!("{n}.2"));
    let cp_cfg = write(
        &d,
        "cp.toml",
        &format!("[cups]\naddr = \"{cpa}\"\nups = [\"{upa}\"]\nheartbeat_s = 1\n"),
    );
    let up_cfg = write(
        &d,
        "up.toml",
        &format!("[cups]\naddr = \"{upa}\"\ncp = \"{cpa}\"\nheartbeat_s = 1\n"),
    );
    let input = d.join("in.pcap");
    {
        let mut w = PcapWriter::new(std::fs::File::create(&input).expect("pcap")).expect("header");
        let f = padi([2, 0x5b, 0, 0, 0, 1]);
        w.write_packet(&PcapPacket::new(
            std::time::Duration::ZERO,
            f.len() as u32,
            &f,
        ))
        .expect("write");
    }
    let out = d.join("out.pcap");
    let core = d.join("core.pcap");
    // The user plane first (its sockets bound), then the control plane.
    let up = Command::new(UP)
        .args([
            "run",
            "-c",
            &up_cfg,
            "--access",
            &format!("pcap:{}:{}", input.display(), out.display()),
            "--core",
            &format!("pcap::{}", core.display()),
            "--max-sessions",
            "64",
            "--wait-cp",
            "4",
            "--duration",
            "5",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start vbng-up");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let cp = Command::new(CP)
        .args([
            "run",
            "-c",
            &cp_cfg,
            "--duration",
            "4",
            "--max-sessions",
            "64",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start vbng-cp");
    let up = up.wait_with_output().expect("vbng-up ends");
    let cpo = cp.wait_with_output().expect("vbng-cp ends");
    let (ue, ce) = (
        String::from_utf8_lossy(&up.stderr).into_owned(),
        String::from_utf8_lossy(&cpo.stderr).into_owned(),
    );
    assert!(up.status.success(), "vbng-up: {ue}");
    assert!(cpo.status.success(), "vbng-cp: {ce}");
    assert!(ce.contains("1 associations"), "vbng-cp: {ce}");
    assert!(
        ue.contains("1 frames redirected, 1 injected"),
        "vbng-up: {ue}"
    );
    let mut r = PcapReader::new(std::fs::File::open(&out).expect("out pcap")).expect("header");
    let mut pado = 0;
    while let Some(p) = r.next_packet() {
        let p = p.expect("packet");
        let f = &p.data;
        // To the subscriber, C-VLAN 10 kept, PPPoE discovery code PADO (0x07).
        if f[..6] == [2, 0x5b, 0, 0, 0, 1]
            && f[12..16] == [0x81, 0, 0, 0x0a]
            && f[16..18] == [0x88, 0x63]
            && f[19] == 0x07
        {
            pado += 1;
        }
    }
    assert_eq!(pado, 1, "vbng-up: {ue}\nvbng-cp: {ce}");
    let _ = std::fs::remove_dir_all(&d);
}

/// GET `path` from `addr`: (status, body), or `None` when nothing answers yet.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    let status = r.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, r.split_once("\r\n\r\n")?.1.to_string()))
}

/// `vbng-cp --listen`: before its user plane runs, `/metrics` and `/cups` show it not
/// associated; once `vbng-up` runs, associated and ready, with the subscriber core's
/// `vbng_*` series as `vbng` serves them; `/restconf` answers with the vbng YANG
/// module's data; when the user plane's process is killed, heartbeats fail (T1 100
/// ms, N1 1) and the association is reported down with the loss counted.
#[test]
fn control_plane_listen_serves_metrics_and_user_planes() {
    let d = tmpdir("listen");
    let n = net(0xa5);
    let (cpa, upa) = (format!("{n}.1"), format!("{n}.2"));
    let timers = "heartbeat_s = 1\nt1_ms = 100\nn1 = 1\n";
    let cp_cfg = write(
        &d,
        "cp.toml",
        &format!("[cups]\naddr = \"{cpa}\"\nups = [\"{upa}\"]\n{timers}"),
    );
    let up_cfg = write(
        &d,
        "up.toml",
        &format!("[cups]\naddr = \"{upa}\"\ncp = \"{cpa}\"\n{timers}"),
    );
    let http = format!("{cpa}:9180");
    let mut cp = Command::new(CP)
        .args([
            "run",
            "-c",
            &cp_cfg,
            "--duration",
            "20",
            "--max-sessions",
            "64",
        ])
        .args(["--listen", &http])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start vbng-cp");
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let t0 = std::time::Instant::now();
        while !f() {
            assert!(t0.elapsed().as_secs() < 10, "timed out waiting for {what}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait("vbng-cp's /metrics", &|| get(&http, "/metrics").is_some());
    let (st, m) = get(&http, "/metrics").expect("metrics");
    assert_eq!(st, 200);
    assert!(m.contains("\nvbng_sessions 0\n"), "{m}");
    assert!(
        m.contains(&format!(
            "vbng_cups_up_associated{{up=\"0\",addr=\"{upa}\"}} 0"
        )),
        "{m}"
    );
    let (st, c) = get(&http, "/cups").expect("cups");
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&c).expect("JSON");
    assert_eq!(v["user-planes"][0]["associated"], false, "{c}");
    assert_eq!(v["user-planes"][0]["address"], upa.as_str(), "{c}");

    let mut up = Command::new(UP)
        .args([
            "run",
            "-c",
            &up_cfg,
            "--max-sessions",
            "64",
            "--duration",
            "20",
        ])
        .args(["--access", &format!("pcap::{}", d.join("a.pcap").display())])
        .args(["--core", &format!("pcap::{}", d.join("c.pcap").display())])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start vbng-up");
    wait("the user plane to be ready", &|| {
        get(&http, "/metrics").is_some_and(|(_, m)| {
            m.contains(&format!("vbng_cups_up_ready{{up=\"0\",addr=\"{upa}\"}} 1"))
        })
    });
    let (_, c) = get(&http, "/cups").expect("cups");
    let v: serde_json::Value = serde_json::from_str(&c).expect("JSON");
    assert_eq!(v["user-planes"][0]["associated"], true, "{c}");
    assert_eq!(v["user-planes"][0]["ready"], true, "{c}");
    assert_eq!(v["user-planes"][0]["sessions"], 0, "{c}");
    assert_eq!(v["associations"], 1, "{c}");
    let (st, r) = get(&http, "/restconf/data/vbng:vbng").expect("restconf");
    assert_eq!(st, 200, "{r}");
    let rv: serde_json::Value = serde_json::from_str(&r).expect("RESTCONF JSON");
    assert!(rv.get("vbng:vbng").is_some(), "{r}");
    assert_eq!(get(&http, "/nothing").map(|a| a.0), Some(404));

    // The user plane dies: the association goes down, the loss is counted.
    up.kill().expect("kill vbng-up");
    let _ = up.wait();
    wait("the association to go down", &|| {
        get(&http, "/metrics").is_some_and(|(_, m)| {
            m.contains(&format!(
                "vbng_cups_up_associated{{up=\"0\",addr=\"{upa}\"}} 0"
            )) && m.contains("vbng_cups_events_total{event=\"ups_lost\"} 1")
        })
    });
    let _ = cp.kill();
    let _ = cp.wait();
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn user_plane_workers_refusals() {
    let d = tmpdir("workers");
    let up = write(
        &d,
        "up.toml",
        "workers = 2\ncores = [0, 1]\n[cups]\naddr = \"127.0.0.2\"\ncp = \"127.0.0.1\"\n",
    );
    let o = run(UP, &["check", "-c", &up]);
    assert!(o.status.success(), "{o:?}");
    let nat = write(
        &d,
        "nat.toml",
        "workers = 2\n[cgnat]\npool = [\"198.51.100.0/30\"]\n[cups]\naddr = \"127.0.0.2\"\ncp = \"127.0.0.1\"\n",
    );
    one_line_failure(&run(UP, &["check", "-c", &nat]), "with CGNAT");
    let pcap = |n: &str| format!("pcap::{}", d.join(n).display());
    let (a, c) = (pcap("a.pcap"), pcap("c.pcap"));
    let base = [
        "run",
        "-c",
        &up,
        "--access",
        &a,
        "--core",
        &c,
        "--duration",
        "1",
    ];
    // The config's two cores for one worker.
    let o = run(UP, &[&base[..], &["--workers", "1"]].concat());
    one_line_failure(&o, "cores: one core per worker (1 workers, 2 cores)");
    // Two workers on pcap ports (one queue each).
    let o = run(UP, &base);
    one_line_failure(&o, "workers = 2 needs afxdp or afpacket ports");
    let o = run(
        UP,
        &[&base[..], &["--workers", "3", "--cores", "0,1,1"]].concat(),
    );
    one_line_failure(&o, "workers = 3 needs afxdp or afpacket ports");
    let o = run(
        UP,
        &[&base[..], &["--workers", "2", "--cores", "1"]].concat(),
    );
    one_line_failure(&o, "cores: one core per worker (2 workers, 1 cores)");
    let _ = std::fs::remove_dir_all(&d);
}
