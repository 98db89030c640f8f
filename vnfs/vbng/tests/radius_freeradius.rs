//! Interop with FreeRADIUS 3.2 (Debian `freeradius`, `freeradius-utils`): a server is
//! started per test on loopback with a generated config; the vBNG control plane talks
//! to it over UDP while emulated subscribers (in-process) run PPPoE/PPP against it.
//! Covers PAP/CHAP accept and reject, reply attributes applied, accounting Start /
//! Interim-Update / Stop recorded in the server's detail file, CoA changing a rate and
//! Disconnect tearing a session down with PADT (sent by `radclient`), failover
//! when the first server is down, and IPv6 (RFC 3162): Framed-IPv6-Prefix and
//! Framed-IPv6-Pool applied (the /64 announced by RA, the subscriber's SLAAC address in
//! it) and Framed-IPv6-Prefix in accounting; Delegated-IPv6-Prefix (RFC 4818) served
//! by the DHCPv6 server as the session's IA_PD and in accounting. Fails (does not
//! skip) when the tools are missing.

use dataplane::proto::ethernet::Vlans;
use pktgen::subscribers::client::{ClientParams, ClientPhase, Subscriber};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vbng::config::{Config, Pool6Config, PoolConfig, RadiusConfig, ServerConfig};
use vbng::control::{ControlPlane, FibUpdate, SessionCounters};
use vbng::fsm::Timers;
use vbng::lcp::AuthProto;
use vbng::radius_io::RadiusIo;
use vbng::rng::Rng;

const SECRET: &str = "testing123";

fn need(tool: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "{tool} not found: install the Debian packages freeradius and freeradius-utils (scripts/test does)");
}

fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let p = a.local_addr().expect("addr").port();
        if p < 65000 && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair");
}

/// Rewrite the `listen { }` blocks of a virtual server: IPv4 loopback, `port` for auth
/// and `port + 1` for acct; IPv6 listeners removed.
fn rewrite_listeners(text: &str, port: u16) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("\nlisten {") {
        out.push_str(&rest[..i + 1]);
        let block_start = i + 1;
        let bytes = rest.as_bytes();
        let mut depth = 0i32;
        let mut end = block_start;
        let mut comment = false;
        for (k, &b) in bytes.iter().enumerate().skip(block_start) {
            if b == b'#' {
                comment = true;
            } else if b == b'\n' {
                comment = false;
            } else if comment {
                continue;
            } else if b == b'{' {
                depth += 1;
            } else if b == b'}' {
                depth -= 1;
                if depth == 0 {
                    end = k + 1;
                    break;
                }
            }
        }
        let block = &rest[block_start..end];
        let active: String = block
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        if !active.contains("ipv6addr") {
            let p = if active.contains("type = acct") {
                port + 1
            } else {
                port
            };
            let b = block
                .replace("ipaddr = *", "ipaddr = 127.0.0.1")
                .replace("port = 0", &format!("port = {p}"));
            out.push_str(&b);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

struct FreeRadius {
    dir: PathBuf,
    child: Option<Child>,
    port: u16,
    log: Arc<Mutex<String>>,
}

/// Make FreeRADIUS put a Message-Authenticator in every Access-Accept/-Reject/
/// -Challenge (RFC 3579 §3.2; 3.2.5 and later do it by default as the BlastRADIUS fix,
/// the 3.2.1 in Debian 12 only when asked): the vBNG requires it by default.
fn reply_message_authenticator(site: &str) -> String {
    let add = "\n\tupdate reply {\n\t\t&Message-Authenticator := 0x00\n\t}\n";
    let mut out = site.replacen("\npost-auth {\n", &format!("\npost-auth {{\n{add}"), 1);
    for k in ["Post-Auth-Type REJECT {\n", "Post-Auth-Type Challenge {\n"] {
        out = out.replacen(k, &format!("{k}{add}"), 1);
    }
    out
}

impl FreeRadius {
    fn start(users: &str) -> FreeRadius {
        FreeRadius::start_with(users, true)
    }

    /// `reply_msg_auth`: configure Message-Authenticator in Access replies.
    fn start_with(users: &str, reply_msg_auth: bool) -> FreeRadius {
        need("freeradius");
        let n = std::process::id();
        let uniq = format!(
            "{n}-{}",
            Instant::now().elapsed().as_nanos() ^ (free_port_pair() as u128)
        );
        let dir = PathBuf::from(format!("/tmp/vbng-freeradius-{uniq}"));
        let _ = std::fs::remove_dir_all(&dir);
        let st = Command::new("cp")
            .args(["-a", "/etc/freeradius/3.0"])
            .arg(&dir)
            .status()
            .expect("cp");
        assert!(st.success(), "copying /etc/freeradius/3.0 failed");
        // Client: our NAS on loopback, Message-Authenticator required (RFC 3579 / BlastRADIUS).
        std::fs::write(
            dir.join("clients.conf"),
            format!("client vbng {{\n\tipaddr = 127.0.0.1\n\tsecret = {SECRET}\n\trequire_message_authenticator = yes\n}}\n"),
        )
        .expect("clients.conf");
        let auth = dir.join("mods-config/files/authorize");
        let old = std::fs::read_to_string(&auth).expect("authorize");
        std::fs::write(&auth, format!("{users}\n{old}")).expect("write authorize");
        let conf = dir.join("radiusd.conf");
        let mut c = std::fs::read_to_string(&conf).expect("radiusd.conf");
        let d = dir.display();
        c = c.replace("logdir = /var/log/freeradius", &format!("logdir = {d}/log"));
        c = c.replace(
            "run_dir = ${localstatedir}/run/${name}",
            &format!("run_dir = {d}/run"),
        );
        c = c.replace("reject_delay = 1", "reject_delay = 0");
        std::fs::write(&conf, c).expect("write radiusd.conf");
        // Listen on loopback on our ports; drop IPv6 listeners and inner-tunnel's fixed port.
        let port = free_port_pair();
        let site = dir.join("sites-enabled/default");
        let text = std::fs::read_to_string(&site).expect("sites-enabled/default");
        let mut text = rewrite_listeners(&text, port);
        if reply_msg_auth {
            text = reply_message_authenticator(&text);
        }
        std::fs::write(&site, text).expect("write site");
        let _ = std::fs::remove_file(dir.join("sites-enabled/inner-tunnel"));
        std::fs::create_dir_all(dir.join("log/radacct")).expect("logdir");
        std::fs::create_dir_all(dir.join("run")).expect("rundir");
        let st = Command::new("chown")
            .args(["-R", "freerad:freerad"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(st.success(), "chown to freerad failed (tests run as root)");
        let mut fr = FreeRadius {
            dir,
            child: None,
            port,
            log: Arc::new(Mutex::new(String::new())),
        };
        fr.spawn();
        fr
    }

    /// Start the server (again) on the same directory and ports; waits until ready.
    fn spawn(&mut self) {
        if let Ok(mut l) = self.log.lock() {
            l.clear();
        }
        let dir = &self.dir;
        let mut child = Command::new("freeradius")
            .args(if std::env::var_os("VBNG_FREERADIUS_DEBUG").is_some() {
                &["-X", "-d"][..]
            } else {
                &["-f", "-l", "stdout", "-d"][..]
            })
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn freeradius");
        let log = self.log.clone();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        let t0 = Instant::now();
        loop {
            if log
                .lock()
                .map(|l| l.contains("Ready to process requests"))
                .unwrap_or(false)
            {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "freeradius exited ({st}):\n{}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "freeradius not ready:\n{}",
                log.lock().map(|l| l.clone()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Kill the server (an outage).
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn auth_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    fn acct_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port + 1)
    }

    fn detail(&self) -> String {
        let mut s = String::new();
        fn walk(p: &Path, s: &mut String) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p, s);
                    } else if let Ok(t) = std::fs::read_to_string(&p) {
                        s.push_str(&t);
                    }
                }
            }
        }
        walk(&self.dir.join("log/radacct"), &mut s);
        s
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            if let Ok(l) = self.log.lock() {
                eprintln!("freeradius log:\n{l}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const USERS: &str = r#"alice	Cleartext-Password := "alice-pw"
	Framed-IP-Address = 100.64.7.7,
	Mikrotik-Rate-Limit = "1M/2M",
	Session-Timeout = 3600,
	Idle-Timeout = 600,
	Class = "gold-class"

carol	Cleartext-Password := "carol-pw"
	Framed-Pool = "gold",
	WISPr-Bandwidth-Max-Up = 3000000,
	WISPr-Bandwidth-Max-Down = 9000000
"#;

struct Lab {
    cp: ControlPlane,
    io: RadiusIo,
    subs: Vec<Subscriber>,
    t0: Instant,
    fib: Vec<FibUpdate>,
    to_subs: Vec<Vec<u8>>,
    /// Subscribers added from now on negotiate IPv6CP.
    ipv6cp: bool,
}

fn config(auth: AuthProto, servers: &[String], acct: &[String]) -> Config {
    Config {
        auth,
        auth_fallback: None,
        pools: vec![
            PoolConfig {
                name: "default".into(),
                ranges: vec!["100.64.0.10-100.64.0.200".parse().unwrap()],
            },
            PoolConfig {
                name: "gold".into(),
                ranges: vec!["100.65.0.0/24".parse().unwrap()],
            },
        ],
        radius: Some(RadiusConfig {
            auth: servers
                .iter()
                .map(|a| ServerConfig {
                    addr: a.parse().expect("server address"),
                    secret: SECRET.into(),
                })
                .collect(),
            acct: acct
                .iter()
                .map(|a| ServerConfig {
                    addr: a.parse().expect("server address"),
                    secret: SECRET.into(),
                })
                .collect(),
            timeout_ms: 200,
            tries: 2,
            nas_ip: Ipv4Addr::LOCALHOST,
            interim_s: 0,
            coa_listen: Some("127.0.0.1:0".parse().unwrap()),
            coa_secret: "coa-secret".into(),
            local_fallback: false,
            ..RadiusConfig::default()
        }),
        ..Config::default()
    }
}

impl Lab {
    fn new(cfg: &Config) -> Lab {
        let cp = ControlPlane::new(cfg, 256, SessionCounters::new(256), Rng::from_os())
            .expect("control plane");
        let io = RadiusIo::bind(
            "127.0.0.1:0".parse().expect("addr"),
            2,
            Some("127.0.0.1:0".parse().expect("addr")),
        )
        .expect("bind");
        Lab {
            cp,
            io,
            subs: Vec::new(),
            t0: Instant::now(),
            fib: Vec::new(),
            to_subs: Vec::new(),
            ipv6cp: false,
        }
    }

    fn now(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    fn add(&mut self, user: &str, pw: &str, auth: AuthProto) -> usize {
        let i = self.subs.len() as u8 + 1;
        let mut s = Subscriber::new(ClientParams {
            mac: [2, 0, 0, 0, 0x10, i],
            vlans: Vlans {
                svlan: 100,
                cvlan: u16::from(i),
            },
            user: user.as_bytes().to_vec(),
            password: pw.as_bytes().to_vec(),
            accept_auth: [Some(auth), None],
            service_name: Vec::new(),
            host_uniq: Some(vec![i; 4]),
            max_payload: None,
            timers: Timers::default(),
            ipv6cp: self.ipv6cp,
            magic: 0x4242_0000 | u32::from(i),
            discovery_tries: 3,
        });
        let now = self.now();
        let mut out = Vec::new();
        s.start(now, &mut out);
        for f in out {
            self.cp.input(0, &f, now);
        }
        self.subs.push(s);
        self.subs.len() - 1
    }

    fn step(&mut self) {
        let now = self.now();
        self.io.pump(&mut self.cp, now);
        self.cp.poll(now);
        self.fib.extend(self.cp.take_fib());
        let mut up = Vec::new();
        for (_, f) in self.cp.take_tx() {
            self.to_subs.push(f.clone());
            for s in self
                .subs
                .iter_mut()
                .filter(|s| f.get(..6) == Some(&s.params().mac[..]))
            {
                s.input(&f, now, &mut up);
            }
        }
        for s in self.subs.iter_mut() {
            s.poll(now, &mut up);
        }
        for f in up {
            self.cp.input(0, &f, now);
        }
        self.io.pump(&mut self.cp, now);
        std::thread::sleep(Duration::from_millis(1));
    }

    fn run_until(&mut self, what: &str, secs: u64, mut f: impl FnMut(&Lab) -> bool) {
        let t = Instant::now();
        while !f(self) {
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}; sessions: {:?}; stats: {:?}",
                self.cp.sessions(),
                self.cp.stats
            );
            self.step();
        }
    }

    fn settled(&self) -> bool {
        self.subs
            .iter()
            .all(|s| s.phase == ClientPhase::Up || s.failed.is_some())
    }
}

#[test]
fn pap_and_chap_accept_reject_with_reply_attributes() {
    let fr = FreeRadius::start(USERS);
    for auth in [AuthProto::Pap, AuthProto::Chap] {
        let mut lab = Lab::new(&config(auth, &[fr.auth_addr()], &[]));
        let a = lab.add("alice", "alice-pw", auth);
        let c = lab.add("carol", "carol-pw", auth);
        let bad = lab.add("alice", "wrong", auth);
        let unknown = lab.add("mallory", "x", auth);
        lab.run_until("all subscribers settled", 15, |l| l.settled());
        assert_eq!(lab.subs[a].phase, ClientPhase::Up, "{auth:?}");
        assert_eq!(lab.subs[a].ip, u32::from(Ipv4Addr::new(100, 64, 7, 7)));
        assert_eq!(lab.subs[c].phase, ClientPhase::Up);
        assert_eq!(
            lab.subs[c].ip >> 8,
            u32::from(Ipv4Addr::new(100, 65, 0, 0)) >> 8,
            "Framed-Pool gold"
        );
        assert_eq!(lab.subs[bad].failed, Some(ClientPhase::Auth));
        assert_eq!(lab.subs[unknown].failed, Some(ClientPhase::Auth));
        assert_eq!(lab.cp.stats.auth_accept, 2);
        assert_eq!(lab.cp.stats.auth_reject, 2);
        // Rejected by the server, not timed out for a reply dropped (Message-Authenticator).
        assert_eq!(lab.cp.stats.aaa_timeout, 0);
        let st = lab.cp.radius_stats().expect("radius");
        assert_eq!(
            st.missing_message_authenticator + st.bad_message_authenticator,
            0
        );
        let rates: Vec<(u64, u64)> = lab
            .fib
            .iter()
            .filter_map(|u| {
                if let FibUpdate::Add { rate, .. } = u {
                    Some(*rate)
                } else {
                    None
                }
            })
            .collect();
        assert!(
            rates.contains(&(1_000_000, 2_000_000)),
            "Mikrotik-Rate-Limit applied: {rates:?}"
        );
        assert!(
            rates.contains(&(3_000_000, 9_000_000)),
            "WISPr bandwidth applied: {rates:?}"
        );
    }
}

#[test]
fn accounting_start_interim_stop_recorded() {
    let fr = FreeRadius::start(USERS);
    let mut lab = Lab::new(&config(
        AuthProto::Pap,
        &[fr.auth_addr()],
        &[fr.acct_addr()],
    ));
    let a = lab.add("alice", "alice-pw", AuthProto::Pap);
    lab.run_until("alice up", 15, |l| l.subs[a].phase == ClientPhase::Up);
    let info = lab.cp.sessions().into_iter().next().expect("one session");
    lab.run_until("Start recorded", 10, |_| {
        fr.detail().contains("Acct-Status-Type = Start")
    });
    let now = lab.now();
    lab.cp.interim_all(now);
    lab.run_until("Interim recorded", 10, |_| {
        fr.detail().contains("Acct-Status-Type = Interim-Update")
    });
    let mut out = Vec::new();
    lab.subs[a].terminate(&mut out);
    let now = lab.now();
    for f in out {
        lab.cp.input(0, &f, now);
    }
    lab.run_until("Stop recorded", 10, |_| {
        fr.detail().contains("Acct-Status-Type = Stop")
    });
    let d = fr.detail();
    assert!(
        d.contains(&format!("Acct-Session-Id = \"{}\"", info.acct_id)),
        "{d}"
    );
    assert!(d.contains("Acct-Input-Gigawords = 0"), "{d}");
    assert!(d.contains("Acct-Terminate-Cause = User-Request"), "{d}");
    assert!(d.contains("Framed-IP-Address = 100.64.7.7"), "{d}");
    assert!(
        d.contains("Calling-Station-Id = \"02:00:00:00:10:01/100/1\""),
        "{d}"
    );
    assert!(d.contains("Class = 0x676f6c642d636c617373"), "{d}");
    assert_eq!(lab.cp.session_count(), 0);
}

const USERS6: &str = r#"dave	Cleartext-Password := "dave-pw"
	Framed-IPv6-Prefix = 2001:db8:200:7::/64

erin	Cleartext-Password := "erin-pw"
	Framed-IPv6-Pool = "v6gold"
"#;

#[test]
fn framed_ipv6_prefix_and_pool_applied_and_accounted() {
    let fr = FreeRadius::start(USERS6);
    let mut cfg = config(AuthProto::Pap, &[fr.auth_addr()], &[fr.acct_addr()]);
    cfg.ipv6cp = true;
    cfg.pools6 = vec![
        Pool6Config {
            name: "default".into(),
            prefix: "2001:db8:100::/40".parse().unwrap(),
        },
        Pool6Config {
            name: "v6gold".into(),
            prefix: "2001:db8:300::/48".parse().unwrap(),
        },
    ];
    let mut lab = Lab::new(&cfg);
    lab.ipv6cp = true;
    let d = lab.add("dave", "dave-pw", AuthProto::Pap);
    let e = lab.add("erin", "erin-pw", AuthProto::Pap);
    lab.run_until("SLAAC addresses from the RAs", 15, |l| {
        l.subs.iter().all(|s| s.ipv6 != 0)
    });
    assert_eq!(
        (lab.subs[d].ipv6 >> 64) as u64,
        0x2001_0db8_0200_0007,
        "Framed-IPv6-Prefix"
    );
    assert_eq!(
        (lab.subs[e].ipv6 >> 80) as u64,
        0x2001_0db8_0300,
        "Framed-IPv6-Pool v6gold"
    );
    for s in &lab.subs {
        let p = (s.ipv6 >> 64) as u64;
        assert!(
            lab.fib
                .iter()
                .any(|u| matches!(u, FibUpdate::Add6 { prefix, .. } if *prefix == p)),
            "{:?}",
            lab.fib
        );
    }
    lab.run_until("Start with Framed-IPv6-Prefix recorded", 10, |_| {
        fr.detail()
            .contains("Framed-IPv6-Prefix = 2001:db8:200:7::/64")
    });
    let mut out = Vec::new();
    lab.subs[d].terminate(&mut out);
    let now = lab.now();
    for f in out {
        lab.cp.input(0, &f, now);
    }
    lab.run_until("Stop recorded", 10, |_| {
        fr.detail().contains("Acct-Status-Type = Stop")
    });
    assert!(lab.fib.iter().any(|u| matches!(
        u,
        FibUpdate::Remove6 {
            prefix: 0x2001_0db8_0200_0007,
            ..
        }
    )));
}

fn radclient(addr: SocketAddr, kind: &str, secret: &str, attrs: &str) -> Child {
    need("radclient");
    let mut c = Command::new("radclient")
        .args(["-r", "1", "-t", "3", "-x"])
        .arg(addr.to_string())
        .args([kind, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn radclient");
    if let Some(mut i) = c.stdin.take() {
        use std::io::Write;
        let _ = writeln!(i, "{attrs}");
    }
    c
}

/// Run the lab until radclient exits; (exit success, stdout).
fn wait_child(lab: &mut Lab, mut c: Child) -> (bool, String) {
    let t = Instant::now();
    loop {
        if let Ok(Some(st)) = c.try_wait() {
            let mut s = String::new();
            if let Some(mut o) = c.stdout.take() {
                use std::io::Read;
                let _ = o.read_to_string(&mut s);
            }
            return (st.success(), s);
        }
        assert!(t.elapsed() < Duration::from_secs(15), "radclient hung");
        lab.step();
    }
}

#[test]
fn coa_changes_rate_and_disconnect_sends_padt() {
    let fr = FreeRadius::start(USERS);
    let mut lab = Lab::new(&config(AuthProto::Chap, &[fr.auth_addr()], &[]));
    let a = lab.add("alice", "alice-pw", AuthProto::Chap);
    lab.run_until("alice up", 15, |l| l.subs[a].phase == ClientPhase::Up);
    let info = lab.cp.sessions().into_iter().next().expect("session");
    let coa = lab.io.coa_addr().expect("coa addr");
    // Wrong secret: dropped, radclient gets no answer and fails.
    let (ok, _) = wait_child(
        &mut lab,
        radclient(
            coa,
            "coa",
            "wrong",
            &format!(
                "Acct-Session-Id = \"{}\", Mikrotik-Rate-Limit = \"5M/20M\"",
                info.acct_id
            ),
        ),
    );
    assert!(!ok, "a CoA with a bad authenticator must not be answered");
    assert_eq!(lab.cp.sessions()[0].rate, (1_000_000, 2_000_000));
    let (_, out) = wait_child(
        &mut lab,
        radclient(
            coa,
            "coa",
            "coa-secret",
            &format!(
                "Acct-Session-Id = \"{}\", Mikrotik-Rate-Limit = \"5M/20M\"",
                info.acct_id
            ),
        ),
    );
    assert!(out.contains("CoA-ACK"), "{out}");
    assert!(
        lab.fib.contains(&FibUpdate::Rate {
            idx: info.idx,
            rate: (5_000_000, 20_000_000)
        }),
        "{:?}",
        lab.fib
    );
    assert_eq!(lab.cp.sessions()[0].rate, (5_000_000, 20_000_000));
    // Unknown session: NAK with Error-Cause 503.
    let (_, out) = wait_child(
        &mut lab,
        radclient(
            coa,
            "disconnect",
            "coa-secret",
            "Acct-Session-Id = \"nope\"",
        ),
    );
    assert!(out.contains("Disconnect-NAK"), "{out}");
    lab.to_subs.clear();
    let (_, out) = wait_child(
        &mut lab,
        radclient(
            coa,
            "disconnect",
            "coa-secret",
            "User-Name = \"alice\", Framed-IP-Address = 100.64.7.7",
        ),
    );
    assert!(out.contains("Disconnect-ACK"), "{out}");
    assert_eq!(lab.cp.session_count(), 0);
    assert!(
        lab.to_subs
            .iter()
            .any(|f| f.get(20..22) == Some(&[0x88, 0x63][..]) && f.get(23) == Some(&0xa7)),
        "PADT sent"
    );
    assert_eq!(lab.subs[a].phase, ClientPhase::Down);
}

#[test]
fn server_down_retries_then_fails_over() {
    let fr = FreeRadius::start(USERS);
    // The first server is a bound socket that never answers.
    let dead = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dead_addr = dead.local_addr().expect("addr").to_string();
    let mut lab = Lab::new(&config(
        AuthProto::Pap,
        &[dead_addr.clone(), fr.auth_addr()],
        &[],
    ));
    let a = lab.add("alice", "alice-pw", AuthProto::Pap);
    lab.run_until("alice up via the second server", 20, |l| {
        l.subs[a].phase == ClientPhase::Up
    });
    let st = lab.cp.radius_stats().expect("radius");
    assert!(st.retransmits >= 1, "{st:?}");
    assert_eq!(st.failovers, 1, "{st:?}");
    let mut buf = [0u8; 4096];
    dead.set_nonblocking(true).expect("nb");
    let mut seen = 0;
    while dead.recv_from(&mut buf).is_ok() {
        seen += 1;
    }
    assert_eq!(seen, 2, "two tries on the dead server");
    // All servers down: the subscriber is rejected after the retries, others unaffected.
    let mut lab = Lab::new(&config(AuthProto::Pap, &[dead_addr], &[]));
    let b = lab.add("alice", "alice-pw", AuthProto::Pap);
    lab.run_until("reject after timeout", 20, |l| l.subs[b].failed.is_some());
    assert_eq!(lab.cp.stats.aaa_timeout, 1);
}

#[test]
fn access_accept_without_message_authenticator_dropped() {
    // A server that does not sign its replies (FreeRADIUS 3.2.1 as shipped).
    let fr = FreeRadius::start_with(USERS, false);
    let mut lab = Lab::new(&config(AuthProto::Pap, &[fr.auth_addr()], &[]));
    let a = lab.add("alice", "alice-pw", AuthProto::Pap);
    lab.run_until("alice rejected after the timeout", 20, |l| {
        l.subs[a].failed.is_some()
    });
    let st = lab.cp.radius_stats().expect("radius");
    assert!(st.missing_message_authenticator >= 2, "{st:?}");
    assert_eq!(lab.cp.stats.auth_accept, 0);
    // The same server with `require_message_authenticator = false` is accepted.
    let mut cfg = config(AuthProto::Pap, &[fr.auth_addr()], &[]);
    if let Some(r) = cfg.radius.as_mut() {
        r.require_message_authenticator = false;
    }
    let mut lab = Lab::new(&cfg);
    let a = lab.add("alice", "alice-pw", AuthProto::Pap);
    lab.run_until("alice up", 15, |l| l.subs[a].phase == ClientPhase::Up);
}

/// Acct-Session-Ids of the detail records with `Acct-Status-Type = status`, and the
/// largest Acct-Delay-Time seen in them.
fn detail_sessions(detail: &str, status: &str) -> (std::collections::HashSet<String>, u32) {
    let mut ids = std::collections::HashSet::new();
    let mut max_delay = 0;
    for rec in detail.split("\n\n") {
        if !rec.contains(&format!("Acct-Status-Type = {status}\n")) {
            continue;
        }
        for l in rec.lines() {
            let l = l.trim();
            if let Some(v) = l.strip_prefix("Acct-Session-Id = ") {
                ids.insert(v.trim_matches('"').to_string());
            } else if let Some(v) = l.strip_prefix("Acct-Delay-Time = ") {
                max_delay = max_delay.max(v.parse().unwrap_or(0));
            }
        }
    }
    (ids, max_delay)
}

/// Issue 20: FreeRADIUS killed at the start of teardown and started again 5 s later
/// on the same port. Every Accounting-Stop (and Start) must reach its detail file:
/// the in-flight ones are retried past `tries`, with Acct-Delay-Time counting the wait.
/// The accounting journal is on and empty at the end.
#[test]
fn accounting_survives_server_outage_during_teardown() {
    const N: usize = 2000;
    let mut fr = FreeRadius::start("bulk\tCleartext-Password := \"bulk-pw\"\n");
    let journal_dir = fr.dir.with_extension("journal");
    let _ = std::fs::remove_dir_all(&journal_dir);
    std::fs::create_dir_all(&journal_dir).expect("journal dir");
    let journal = journal_dir.join("acct.journal");
    let mut cfg = config(AuthProto::Pap, &[fr.auth_addr()], &[fr.acct_addr()]);
    cfg.pools = vec![PoolConfig {
        name: "default".into(),
        ranges: vec!["100.64.0.2-100.64.15.254".parse().unwrap()],
    }];
    if let Some(r) = cfg.radius.as_mut() {
        r.timeout_ms = 300;
        r.tries = 3;
        r.acct_retry_max_s = 1;
        r.acct_journal = Some(journal.display().to_string());
    }
    let slots = N as u32 + 64;
    let mut cp = ControlPlane::new(
        &cfg,
        slots,
        SessionCounters::new(slots as usize),
        Rng::from_os(),
    )
    .expect("control plane");
    let mut io = RadiusIo::bind("127.0.0.1:0".parse().expect("addr"), 4, None).expect("bind");
    let (j, replay) = vbng::acct_journal::AcctJournal::open(&journal).expect("journal");
    assert!(replay.is_empty());
    io.set_journal(j);
    let mut subs: Vec<Subscriber> = Vec::with_capacity(N);
    let mut by_mac = std::collections::HashMap::new();
    let t0 = Instant::now();
    let now = |t0: &Instant| t0.elapsed().as_millis() as u64;
    let step = |cp: &mut ControlPlane,
                io: &mut RadiusIo,
                subs: &mut Vec<Subscriber>,
                by_mac: &std::collections::HashMap<[u8; 6], usize>,
                up: Vec<Vec<u8>>| {
        let now = now(&t0);
        for f in up {
            cp.input(0, &f, now);
        }
        let mut work = io.pump(cp, now);
        cp.poll(now);
        let mut up = Vec::new();
        for (_, f) in cp.take_tx() {
            work += 1;
            let Some(mac) = f.get(..6).and_then(|m| <[u8; 6]>::try_from(m).ok()) else {
                continue;
            };
            if let Some(s) = by_mac.get(&mac).and_then(|&i| subs.get_mut(i)) {
                s.input(&f, now, &mut up);
            }
        }
        for s in subs.iter_mut() {
            s.poll(now, &mut up);
        }
        work += up.len();
        for f in up {
            cp.input(0, &f, now);
        }
        work += io.pump(cp, now);
        if work == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    // Setup in waves of 200 subscribers.
    for w in 0..N / 200 {
        let mut up = Vec::new();
        for k in 0..200 {
            let i = w * 200 + k;
            let mac = [2, 0, 0, 0x20, (i >> 8) as u8, i as u8];
            let mut s = Subscriber::new(ClientParams {
                mac,
                vlans: Vlans {
                    svlan: 200 + (i / 4000) as u16,
                    cvlan: (i % 4000) as u16 + 1,
                },
                user: b"bulk".to_vec(),
                password: b"bulk-pw".to_vec(),
                accept_auth: [Some(AuthProto::Pap), None],
                service_name: Vec::new(),
                host_uniq: Some((i as u32).to_be_bytes().to_vec()),
                max_payload: None,
                timers: Timers::default(),
                ipv6cp: false,
                magic: 0x5151_0000 | i as u32,
                discovery_tries: 5,
            });
            s.start(now(&t0), &mut up);
            by_mac.insert(mac, subs.len());
            subs.push(s);
        }
        let t = Instant::now();
        step(&mut cp, &mut io, &mut subs, &by_mac, up);
        while t.elapsed() < Duration::from_millis(100) {
            step(&mut cp, &mut io, &mut subs, &by_mac, Vec::new());
        }
    }
    let t = Instant::now();
    while subs.iter().any(|s| s.phase != ClientPhase::Up) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "setup: {} of {N} up; failed {}; {:?}; {:?}",
            subs.iter().filter(|s| s.phase == ClientPhase::Up).count(),
            subs.iter().filter(|s| s.failed.is_some()).count(),
            cp.stats,
            cp.radius_stats()
        );
        step(&mut cp, &mut io, &mut subs, &by_mac, Vec::new());
    }
    let setup_s = t0.elapsed().as_secs_f32();
    let t = Instant::now();
    let mut last = Instant::now();
    loop {
        step(&mut cp, &mut io, &mut subs, &by_mac, Vec::new());
        if last.elapsed() > Duration::from_millis(300) {
            last = Instant::now();
            if detail_sessions(&fr.detail(), "Start").0.len() == N {
                break;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "Starts recorded: {}; {:?}",
            detail_sessions(&fr.detail(), "Start").0.len(),
            cp.radius_stats()
        );
    }
    // Teardown with the server gone.
    fr.kill();
    let killed = Instant::now();
    let mut up = Vec::new();
    for s in subs.iter_mut() {
        s.terminate(&mut up);
    }
    step(&mut cp, &mut io, &mut subs, &by_mac, up);
    while killed.elapsed() < Duration::from_secs(5) {
        step(&mut cp, &mut io, &mut subs, &by_mac, Vec::new());
    }
    assert_eq!(cp.session_count(), 0, "sessions gone, their Stops queued");
    let st = cp.radius_stats().expect("radius");
    assert!(st.acct_retry_rounds > 0, "{st:?}");
    assert!(
        io.journal().map_or(0, |j| j.live()) >= N,
        "Stops journaled: {:?}",
        io.journal().map(|j| j.live())
    );
    fr.spawn();
    let restarted = Instant::now();
    let t = Instant::now();
    let mut last = Instant::now();
    let (stops, max_delay) = loop {
        step(&mut cp, &mut io, &mut subs, &by_mac, Vec::new());
        if last.elapsed() > Duration::from_millis(300) {
            last = Instant::now();
            let d = detail_sessions(&fr.detail(), "Stop");
            if d.0.len() == N {
                break d;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "Stops recorded: {} of {N}; {:?}",
                d.0.len(),
                cp.radius_stats()
            );
        }
    };
    let starts = detail_sessions(&fr.detail(), "Start").0;
    assert_eq!(starts, stops, "a Stop for every Start");
    assert!(
        max_delay >= 4,
        "Acct-Delay-Time counts the outage: {max_delay}"
    );
    // Everything acknowledged: nothing left queued or in the journal.
    let t = Instant::now();
    while cp.radius_stats().map(|s| s.acct_acked) < Some(2 * N as u64) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{:?}",
            cp.radius_stats()
        );
        step(&mut cp, &mut io, &mut subs, &by_mac, Vec::new());
    }
    let st = cp.radius_stats().expect("radius");
    assert_eq!((st.acct_overflow, st.acct_given_up), (0, 0), "{st:?}");
    assert_eq!(io.journal().map(|j| j.live()), Some(0));
    eprintln!(
        "{N} sessions up in {setup_s:.1} s; all Stops recorded and acknowledged {:.1} s after the restart; {st:?}",
        restarted.elapsed().as_secs_f32()
    );
    let _ = std::fs::remove_dir_all(&journal_dir);
}

const USERS_PD: &str = r#"frank	Cleartext-Password := "frank-pw"
	Delegated-IPv6-Prefix = 2001:db8:8000:4200::/56
"#;

/// RFC 4818: FreeRADIUS's Delegated-IPv6-Prefix is the prefix the PPPoE subscriber's
/// DHCPv6 IA_PD gets (not the pool's next one), and it is in the accounting Stop.
#[test]
fn delegated_ipv6_prefix_served_by_dhcp6_and_accounted() {
    use dataplane::proto::dhcp6::{Duid, Ia, Message, MessageType, Repr};
    let fr = FreeRadius::start(USERS_PD);
    let mut cfg = config(AuthProto::Pap, &[fr.auth_addr()], &[fr.acct_addr()]);
    cfg.ipv6cp = true;
    cfg.pools6 = vec![Pool6Config {
        name: "default".into(),
        prefix: "2001:db8:100::/40".parse().unwrap(),
    }];
    cfg.dhcp6 = Some(vbng::dhcp6::Dhcp6Config {
        prefix_pools: vec![vbng::dhcp6::PrefixPoolConfig {
            name: "pd".into(),
            prefix: "2001:db8:8000::/40".parse().unwrap(),
            len: 56,
        }],
        ..Default::default()
    });
    let mut lab = Lab::new(&cfg);
    lab.ipv6cp = true;
    let f = lab.add("frank", "frank-pw", AuthProto::Pap);
    lab.run_until("SLAAC address from the RA", 15, |l| l.subs[f].ipv6 != 0);
    // The CPE's Solicit (IA_PD, Rapid Commit) inside the session, from its
    // link-local address to All_DHCP_Relay_Agents_and_Servers.
    let solicit = Message {
        client_id: Some(Duid::ll([2, 0, 0, 0, 0x10, 1])),
        ia_pd: vec![Ia::new(9, 0, 0)],
        rapid_commit: true,
        elapsed_time: Some(0),
        ..Message::new(MessageType::Solicit, 0x0042_4242)
    };
    let mut m = Vec::new();
    Repr::Message(solicit).emit(&mut m).expect("emit");
    let src: Ipv6Addr = "fe80::1234".parse().unwrap();
    let dst: Ipv6Addr = "ff02::1:2".parse().unwrap();
    let mut udp = vec![0x02, 0x22, 0x02, 0x23];
    udp.extend_from_slice(&((8 + m.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&m);
    dataplane::proto::udp::Packet::new_unchecked(&mut udp[..])
        .fill_checksum(&dataplane::proto::checksum::PseudoHeader::V6 { src, dst });
    let mut ppp = vec![0x00, 0x57, 0x60, 0, 0, 0];
    ppp.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    ppp.extend_from_slice(&[17, 1]);
    ppp.extend_from_slice(&src.octets());
    ppp.extend_from_slice(&dst.octets());
    ppp.extend_from_slice(&udp);
    let frame = lab.subs[f].session_frame(&ppp);
    lab.to_subs.clear();
    let now = lab.now();
    lab.cp.input(0, &frame, now);
    lab.step();
    let reply = lab
        .to_subs
        .iter()
        .find_map(|fr| {
            let at = fr.windows(2).position(|w| w == [0x00, 0x57])?;
            let ip = fr.get(at + 2..)?;
            (ip.get(6) == Some(&17)).then(|| Repr::parse_bytes(ip.get(48..)?).ok())?
        })
        .expect("a DHCPv6 Reply in the session");
    let Repr::Message(reply) = reply else {
        panic!("not a Reply")
    };
    let p = &reply.ia_pd[0].items[0];
    assert_eq!(
        (p.prefix, p.len),
        ("2001:db8:8000:4200::".parse::<Ipv6Addr>().unwrap(), 56),
        "the RADIUS prefix, not the pool's first"
    );
    assert_eq!(lab.cp.stats.dhcp6_fixed_refused, 0);
    let mut out = Vec::new();
    lab.subs[f].terminate(&mut out);
    let now = lab.now();
    for fr in out {
        lab.cp.input(0, &fr, now);
    }
    lab.run_until("Stop with Delegated-IPv6-Prefix recorded", 10, |_| {
        let d = fr.detail();
        d.contains("Acct-Status-Type = Stop")
            && d.contains("Delegated-IPv6-Prefix = 2001:db8:8000:4200::/56")
    });
}
