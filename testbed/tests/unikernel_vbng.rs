//! The vBNG unikernel under QEMU (TCG): the image builds, boots to `vbng ready` with
//! two NICs, refuses what it cannot do (`[radius]` without a place for the host
//! stack, an accounting journal, too few NICs) with a one-line
//! reason, and terminates PPPoE subscribers: `image lab vbng` brings 10 sessions up
//! with the repository's subscriber emulator on the access NIC and passes UDP both
//! ways through the core NIC (QEMU UDP-socket netdevs; no root).
//!
//! A test binary of its own (not in `unikernel.rs`): the router and the vBNG share the
//! kernel crate's target directory, and cargo runs test binaries one after another.
//!
//! Needs: qemu-system-x86, qemu-utils, grub-pc-bin, xorriso. Missing tools fail the
//! tests with a message; nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn testbed() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_testbed"));
    c.current_dir(root());
    c
}

fn need(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(found, "`{tool}` is missing: apt-get install {package}");
}

/// One QEMU guest at a time (a small machine; the UDP ports do not collide).
fn qemu_lock() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

/// `testbed image build vbng` once per test process.
fn built() -> PathBuf {
    static B: OnceLock<Result<(), String>> = OnceLock::new();
    let r = B.get_or_init(|| {
        need("qemu-system-x86_64", "qemu-system-x86");
        need("qemu-img", "qemu-utils");
        need("grub-mkrescue", "grub-pc-bin");
        need("xorriso", "xorriso");
        let out = testbed()
            .args(["image", "build", "vbng"])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "image build failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = r {
        panic!("{e}");
    }
    root().join("target/images")
}

fn udp_nets(base: u16) -> Vec<String> {
    vec![
        "--net".into(),
        format!("udp:{}:{},mac=02:00:00:00:0a:01", base, base + 1),
        "--net".into(),
        format!("udp:{}:{},mac=02:00:00:00:0b:01", base + 2, base + 3),
    ]
}

fn run_image(args: &[&str], extra: &[String]) -> Output {
    let _g = qemu_lock();
    testbed()
        .args([
            "image",
            "run",
            "vbng",
            "--no-build",
            "--memory",
            "128M",
            "--timeout",
            "120",
        ])
        .args(args)
        .args(extra)
        .output()
        .expect("run testbed image run")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn image_builds_and_boots_to_ready_with_two_nics() {
    let dir = built();
    let elf = std::fs::read(dir.join("vbng.elf")).expect("vbng.elf");
    assert_eq!(&elf[..4], b"\x7fELF");
    assert!(
        elf.len() <= 2 << 20,
        "stripped vbng ELF is {} bytes (> 2 MiB)",
        elf.len()
    );
    let qcow2 = std::fs::read(dir.join("vbng.qcow2")).expect("vbng.qcow2");
    assert_eq!(&qcow2[..4], b"QFI\xfb", "not a qcow2 image");
    let o = run_image(&["--append", "exit=ready"], &udp_nets(17500));
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("vbng ready in"), "no ready line\n{t}");
    // The baked example: two local users, one pool.
    assert!(
        t.contains("(2 ports, 4096 session slots, 2 local users, 1 pools"),
        "{t}"
    );
}

#[test]
fn refuses_what_it_cannot_do_and_missing_nics_with_one_line() {
    built();
    let cfg = std::env::temp_dir().join(format!("uk-vbng-radius-{}.toml", std::process::id()));
    let radius = "[[pools]]\nname = \"p\"\nranges = [\"100.64.0.2-100.64.0.200\"]\n\n\
         [radius]\nauth = [{ addr = \"127.0.0.1:1812\", secret = \"testing123\" }]\n";
    // RADIUS with nowhere to put the host stack (no core_ip, no mgmt=), and an
    // accounting journal (no file system).
    for (extra, want) in [
        ("", "[radius] needs the host network stack: set core_ip"),
        (
            "acct_journal = \"/var/lib/vbng/acct.journal\"\n",
            "radius.acct_journal: the vbng unikernel has no file system",
        ),
    ] {
        std::fs::write(&cfg, format!("{radius}{extra}")).expect("write config");
        let o = run_image(
            &["--config", cfg.to_str().expect("utf-8")],
            &udp_nets(17510),
        );
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{t}");
        let line = t
            .lines()
            .find(|l| l.contains("FATAL: bad configuration"))
            .unwrap_or_else(|| panic!("no FATAL line\n{t}"));
        assert!(line.contains(want), "{line}");
    }
    let _ = std::fs::remove_file(&cfg);
    // Unknown keys are refused by path, as `vbng check` does.
    let o = run_image(&["--append", "config.no_such_key=1"], &udp_nets(17520));
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("no_such_key"), "{t}");
    // One NIC is not enough.
    let o = run_image(&[], &udp_nets(17530)[..2]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("the vBNG needs 2 virtio-net ports (0 access, 1 core) but the guest has 1"),
        "{t}"
    );
}

#[test]
fn pppoe_sessions_and_traffic_both_ways() {
    built();
    let _g = qemu_lock();
    let o = testbed()
        .args([
            "image",
            "lab",
            "vbng",
            "--no-build",
            "--sessions",
            "10",
            "--seconds",
            "3",
            "--pps",
            "300",
        ])
        .output()
        .expect("run testbed image lab vbng");
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let line = t
        .lines()
        .find_map(|l| l.strip_prefix("lab result: "))
        .unwrap_or_else(|| panic!("no result\n{t}"));
    let r: serde_json::Value = serde_json::from_str(line).expect("lab result JSON");
    assert_eq!(
        r["schema"]["name"], "testbed.image.lab.vbng",
        "report header\n{t}"
    );
    assert!(
        r["machine"].is_object() && r["qemu_machine"].is_string(),
        "{t}"
    );
    assert_eq!(r["established"].as_u64(), Some(10), "sessions up\n{t}");
    for dir in ["upstream", "downstream"] {
        let sent = r[dir]["sent"].as_u64().expect("sent");
        let got = r[dir]["received"].as_u64().expect("received");
        assert!(sent >= 800, "{dir}: only {sent} sent\n{t}");
        assert!(
            got * 100 >= sent * 95,
            "{dir}: {got} of {sent} came through\n{t}"
        );
        assert_eq!(r[dir]["bad"].as_u64(), Some(0), "{dir}: bad frames\n{t}");
    }
    // The guest's counters agree: it received what was sent to it and sent on what
    // came through.
    let c = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k}\n{t}"));
    let (up, down) = (&r["upstream"], &r["downstream"]);
    assert!(
        c("guest_port0_rx") >= up["sent"].as_u64().unwrap_or(u64::MAX),
        "{t}"
    );
    assert!(
        c("guest_port1_tx") >= up["received"].as_u64().unwrap_or(u64::MAX),
        "{t}"
    );
    assert!(
        c("guest_port1_rx") >= down["sent"].as_u64().unwrap_or(u64::MAX),
        "{t}"
    );
    assert!(
        c("guest_port0_tx") >= down["received"].as_u64().unwrap_or(u64::MAX),
        "{t}"
    );
    // `/metrics` from the guest's host stack (management NIC, QEMU user networking)
    // with the Linux vBNG's families, scraped while the ten sessions were up.
    assert!(
        r["metrics_families"].as_u64().unwrap_or(0) >= 20,
        "too few metric families scraped\n{t}"
    );
    assert_eq!(r["metrics"]["vbng_sessions"].as_f64(), Some(10.0), "{t}");
    assert_eq!(
        r["metrics"]["vbng_auth_total{result=\"accept\"}"].as_f64(),
        Some(10.0),
        "{t}"
    );
    // The guest's RESTCONF API (the Linux vBNG's `vbng::mgmt`): hostile and invalid
    // requests get their RFC 8040 errors (and the guest keeps answering), then the
    // package's drain RPC drains it and the state says so.
    let api = &r["api"];
    for (k, status, tag) in [
        ("drain-enable-not-boolean", 400, "invalid-value"),
        ("drain-not-json", 400, "malformed-message"),
        ("drain-get", 405, "operation-not-supported"),
        ("state-put", 405, "operation-not-supported"),
        ("rate-not-a-number", 400, "invalid-value"),
        ("body-too-large", 413, "too-big"),
        ("chunked", 411, "malformed-message"),
        ("bad-length", 400, "malformed-message"),
    ] {
        assert_eq!(api["refused"][k]["status"], status, "{k}\n{t}");
        assert_eq!(api["refused"][k]["error-tag"], tag, "{k}\n{t}");
    }
    assert_eq!(api["drain"]["vbng:output"]["draining"], true, "{t}");
    assert_eq!(api["drain"]["vbng:output"]["sessions"], 10, "{t}");
    assert_eq!(api["state-after-drain"]["draining"], true, "{t}");
    assert_eq!(api["state-after-drain"]["sessions-listed"], 10, "{t}");
    // The guest's own session table lists the ten users up.
    for i in 0..10 {
        assert!(
            t.contains(&format!("user{i} ")),
            "user{i} not in the session table\n{t}"
        );
    }
    assert_eq!(r["guest_exit"].as_u64(), Some(0), "{t}");
}

#[test]
fn user_file_comes_over_fw_cfg() {
    built();
    let dir = std::env::temp_dir().join(format!("uk-vbng-users-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let users = dir.join("users.txt");
    std::fs::write(
        &users,
        "# lab users\ncarol pw1\ndave pw2 100.64.0.77 1M/2M\n",
    )
    .expect("users");
    let cfg = dir.join("vbng.toml");
    std::fs::write(
        &cfg,
        "user_file = \"users.txt\"\n[[pools]]\nname = \"p\"\nranges = [\"100.64.0.2-100.64.0.200\"]\n\
         [[users]]\nname = \"erin\"\npassword = \"pw3\"\n",
    )
    .expect("config");
    let fw = format!("opt/vnf/users={}", users.display());
    let o = run_image(
        &[
            "--config",
            cfg.to_str().expect("utf-8"),
            "--fw-cfg",
            &fw,
            "--append",
            "exit=ready sessions=100",
        ],
        &udp_nets(17540),
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("(2 ports, 100 session slots, 3 local users"),
        "{t}"
    );
    // Without the file: a one-line reason.
    let o = run_image(
        &["--config", cfg.to_str().expect("utf-8")],
        &udp_nets(17550),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains(
            "user_file = \"users.txt\": put the file on the config drive at that path or pass it as fw_cfg opt/vnf/users"
        ),
        "{t}"
    );
}

/// A FreeRADIUS 3 server (Debian `freeradius`) on loopback with a generated config
/// (a copy of /etc/freeradius/3.0): auth on `port`, accounting on `port + 1`, every
/// user's password `uk-lab-secret` (the lab's), Message-Authenticator in every
/// Access reply (the vBNG requires it, RFC 3579 §3.2), accounting to detail files.
struct FreeRadius {
    dir: PathBuf,
    child: std::process::Child,
    port: u16,
}

impl FreeRadius {
    fn start() -> FreeRadius {
        need("freeradius", "freeradius");
        let port = (0..200)
            .find_map(|_| {
                let a = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
                let p = a.local_addr().ok()?.port();
                (p < 65000 && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()).then_some(p)
            })
            .expect("a free UDP port pair");
        let dir = std::env::temp_dir().join(format!("uk-freeradius-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let st = Command::new("cp")
            .args(["-a", "/etc/freeradius/3.0"])
            .arg(&dir)
            .status()
            .expect("cp");
        assert!(st.success(), "copying /etc/freeradius/3.0 failed");
        let w = |f: &str, t: String| std::fs::write(dir.join(f), t).expect(f);
        let r = |f: &str| std::fs::read_to_string(dir.join(f)).expect(f);
        w(
            "clients.conf",
            "client lab {\n\tipaddr = 127.0.0.1\n\tsecret = testing123\n\trequire_message_authenticator = yes\n}\n".into(),
        );
        let auth = "mods-config/files/authorize";
        w(
            auth,
            format!(
                "DEFAULT Cleartext-Password := \"uk-lab-secret\"\n{}",
                r(auth)
            ),
        );
        let d = dir.display();
        w(
            "radiusd.conf",
            r("radiusd.conf")
                .replace("logdir = /var/log/freeradius", &format!("logdir = {d}/log"))
                .replace(
                    "run_dir = ${localstatedir}/run/${name}",
                    &format!("run_dir = {d}/run"),
                )
                .replace("reject_delay = 1", "reject_delay = 0"),
        );
        // The default site's listeners: IPv4 loopback on our ports, no IPv6.
        let site = r("sites-enabled/default");
        let mut out = String::new();
        let mut rest = site.as_str();
        while let Some(i) = rest.find("\nlisten {") {
            out.push_str(&rest[..=i]);
            let start = i + 1;
            let (mut depth, mut end, mut comment) = (0i32, start, false);
            for (k, b) in rest.bytes().enumerate().skip(start) {
                match b {
                    b'#' => comment = true,
                    b'\n' => comment = false,
                    _ if comment => {}
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = k + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let block = &rest[start..end];
            let active: String = block
                .lines()
                .map(|l| l.split('#').next().unwrap_or(""))
                .collect();
            if !active.contains("ipv6addr") {
                let p = if active.contains("type = acct") {
                    port + 1
                } else {
                    port
                };
                out.push_str(
                    &block
                        .replace("ipaddr = *", "ipaddr = 127.0.0.1")
                        .replace("port = 0", &format!("port = {p}")),
                );
            }
            rest = &rest[end..];
        }
        out.push_str(rest);
        let add = "\n\tupdate reply {\n\t\t&Message-Authenticator := 0x00\n\t}\n";
        w(
            "sites-enabled/default",
            out.replacen("\npost-auth {\n", &format!("\npost-auth {{\n{add}"), 1),
        );
        let _ = std::fs::remove_file(dir.join("sites-enabled/inner-tunnel"));
        std::fs::create_dir_all(dir.join("log/radacct")).expect("logdir");
        std::fs::create_dir_all(dir.join("run")).expect("rundir");
        let st = Command::new("chown")
            .args(["-R", "freerad:freerad"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(
            st.success(),
            "chown to freerad failed (the test runs as root)"
        );
        let log = dir.join("server.log");
        let child = Command::new("freeradius")
            .args(["-f", "-l"])
            .arg(&log)
            .arg("-d")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn freeradius");
        let mut fr = FreeRadius { dir, child, port };
        let t0 = std::time::Instant::now();
        loop {
            let l = std::fs::read_to_string(&log).unwrap_or_default();
            if l.contains("Ready to process requests") {
                return fr;
            }
            if let Ok(Some(st)) = fr.child.try_wait() {
                panic!("freeradius exited ({st}):\n{l}");
            }
            assert!(t0.elapsed().as_secs() < 20, "freeradius not ready:\n{l}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Every accounting detail file's text.
    fn detail(&self) -> String {
        fn walk(p: &Path, s: &mut String) {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, s);
                } else if let Ok(t) = std::fs::read_to_string(&p) {
                    s.push_str(&t);
                }
            }
        }
        let mut s = String::new();
        walk(&self.dir.join("log/radacct"), &mut s);
        s
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "freeradius log:\n{}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Issue 18's first acceptance item at test scale: the vBNG unikernel's RADIUS
/// client over its host network stack against FreeRADIUS. `image lab vbng --radius`
/// brings 50 PPPoE subscribers up (CHAP, authenticated by FreeRADIUS through the
/// guest's management NIC), passes traffic both ways, and every session's
/// Accounting-Start reaches the server's detail file; the guest's `/metrics` agree.
#[test]
fn radius_sessions_with_freeradius_over_the_host_stack() {
    built();
    let fr = FreeRadius::start();
    let _g = qemu_lock();
    let n = 50;
    let o = testbed()
        .args([
            "image",
            "lab",
            "vbng",
            "--no-build",
            "--sessions",
            &n.to_string(),
            "--seconds",
            "2",
            "--pps",
            "300",
            "--radius",
            &fr.port.to_string(),
        ])
        .output()
        .expect("run testbed image lab vbng --radius");
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let line = t
        .lines()
        .find_map(|l| l.strip_prefix("lab result: "))
        .unwrap_or_else(|| panic!("no result\n{t}"));
    let r: serde_json::Value = serde_json::from_str(line).expect("lab result JSON");
    assert_eq!(r["aaa"], "radius", "{t}");
    assert_eq!(r["established"].as_u64(), Some(n), "sessions up\n{t}");
    for dir in ["upstream", "downstream"] {
        let sent = r[dir]["sent"].as_u64().expect("sent");
        let got = r[dir]["received"].as_u64().expect("received");
        assert!(sent >= 500, "{dir}: only {sent} sent\n{t}");
        assert_eq!(got, sent, "{dir}: {got} of {sent} came through\n{t}");
        assert_eq!(r[dir]["bad"].as_u64(), Some(0), "{dir}: bad frames\n{t}");
    }
    let m = &r["metrics"];
    assert_eq!(
        m["vbng_auth_total{result=\"accept\"}"].as_f64(),
        Some(n as f64),
        "{t}"
    );
    assert!(
        m["vbng_radius_total{kind=\"requests\"}"]
            .as_f64()
            .unwrap_or(0.0)
            >= 2.0 * n as f64,
        "access and accounting requests\n{t}"
    );
    // Accounting-Start of every session at the server (RFC 2866 §5.1), naming the user.
    let detail = fr.detail();
    let starts = detail.matches("Acct-Status-Type = Start").count();
    assert_eq!(starts as u64, n, "Accounting-Start records\n{detail}");
    for i in 0..n {
        assert!(
            detail.contains(&format!("User-Name = \"user{i}\"")),
            "user{i} not accounted\n{detail}"
        );
    }
    assert_eq!(r["guest_exit"].as_u64(), Some(0), "{t}");
}
