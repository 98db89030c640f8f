//! IPoE against DHCP clients we did not write (root): the `vbng` binary runs in a
//! namespace with its access port on AF_PACKET towards a CPE namespace and its core
//! port towards a core namespace (Linux, 198.51.100.254/24, the core gateway).
//!
//! Two CPE namespaces hang off a Linux bridge (the access node) whose uplink is the
//! BNG's access port (this kernel has no 802.1Q module, so the lines are untagged;
//! the VLAN and QinQ keys are covered by the in-memory tests):
//! * busybox `udhcpc` in the first gets a lease from the `[ipoe]` pool with our
//!   gateway as router, configures it, and pings the core through the BNG;
//! * ISC `dhclient -4` in the second gets another lease;
//! * `/metrics` shows both sessions and the DHCP counters; a DHCPRELEASE from
//!   dhclient ends its session.
//!
//! Fails (does not skip) without root, `ip`, `udhcpc`, `dhclient`, `ping` or `curl` (the ping is busybox's).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common_netns;

use common_netns::{need, ns_sh, sample, sh, Lab};

#[test]
fn udhcpc_and_dhclient_get_leases_and_reach_the_core() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the namespace lab needs root (scripts/test runs it as root)"
    );
    need(&["ip", "udhcpc", "dhclient", "busybox", "curl", "ethtool"]);
    let id = std::process::id() % 100_000;
    let ns: Vec<String> = ["cpe", "bng", "core", "sw", "cpe2"]
        .iter()
        .map(|n| format!("ipoe-{n}-{id}"))
        .collect();
    let dir = std::env::temp_dir().join(format!("vbng-ipoe-{id}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut lab = Lab {
        ns: ns.clone(),
        dir: dir.clone(),
        children: Vec::new(),
    };
    for x in &ns {
        sh(&["ip", "netns", "add", x]);
    }
    // cpe:ec <-> sw:s1, cpe2:ed <-> sw:s2, sw:s3 <-> bng:ea (access, bridged in sw),
    // bng:eb <-> core:ek (core).
    let v = |p: &str| format!("{p}{id}");
    let (ec, ed, ea, eb, ek) = (v("ec"), v("ed"), v("ea"), v("eb"), v("ek"));
    let (s1, s2, s3) = (v("s1"), v("s2"), v("s3"));
    for (a, b) in [(&ec, &s1), (&ed, &s2), (&s3, &ea), (&eb, &ek)] {
        sh(&["ip", "link", "add", a, "type", "veth", "peer", "name", b]);
    }
    for (l, n) in [
        (&ec, &ns[0]),
        (&ed, &ns[4]),
        (&s1, &ns[3]),
        (&s2, &ns[3]),
        (&s3, &ns[3]),
        (&ea, &ns[1]),
        (&eb, &ns[1]),
        (&ek, &ns[2]),
    ] {
        sh(&["ip", "link", "set", l, "netns", n]);
        sh(&["ip", "-n", n, "link", "set", l, "up"]);
        sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
    }
    // Datagrams from the clients' own sockets (the unicast DHCPRELEASE) would leave
    // a veth with the UDP checksum left to an offload that never happens.
    for (n, l) in [(&ns[0], &ec), (&ns[4], &ed)] {
        let _ = ns_sh(n, &format!("ethtool -K {l} tx off"));
    }
    sh(&["ip", "-n", &ns[3], "link", "add", "br0", "type", "bridge"]);
    for s in [&s1, &s2, &s3] {
        sh(&["ip", "-n", &ns[3], "link", "set", s, "master", "br0"]);
    }
    sh(&["ip", "-n", &ns[3], "link", "set", "br0", "up"]);
    sh(&[
        "ip",
        "-n",
        &ns[2],
        "addr",
        "add",
        "198.51.100.254/24",
        "dev",
        &ek,
    ]);
    // The core routes the IPoE subnet back through the BNG.
    sh(&[
        "ip",
        "-n",
        &ns[2],
        "route",
        "add",
        "100.72.0.0/16",
        "via",
        "198.51.100.1",
    ]);
    let vlan = ec.clone();
    let cfg = "name = \"vbng\"\nmac = \"02:00:00:00:b0:01\"\n\
               core_ip = \"198.51.100.1/24\"\ncore_gateway = \"198.51.100.254\"\n\
               listen = \"127.0.0.1:9182\"\n\
               [ipoe]\nauthorize = false\nlease_journal = \"LEASES\"\n\
               [ipoe.dhcp]\ngateway = \"100.72.0.1/16\"\ndns = [\"192.0.2.53\"]\n\
               mtu = 1500\nlease_time_s = 600\n\
               [[ipoe.dhcp.pools]]\nname = \"ipoe\"\nranges = [\"100.72.1.10-100.72.1.50\"]\n";
    let cfg_path = dir.join("vbng.toml");
    let leases = dir.join("leases");
    let cfg = cfg.replace("LEASES", &leases.display().to_string());
    std::fs::write(&cfg_path, cfg).expect("config");
    let check = Command::new(env!("CARGO_BIN_EXE_vbng"))
        .arg("check")
        .arg("-c")
        .arg(&cfg_path)
        .output()
        .expect("vbng check");
    assert!(
        check.status.success(),
        "vbng check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let start_bng = |logname: &str| {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns[1],
                env!("CARGO_BIN_EXE_vbng"),
                "run",
                "-c",
            ])
            .arg(&cfg_path)
            .args([
                "--access",
                &format!("afpacket:{ea}"),
                "--core",
                &format!("afpacket:{eb}"),
                "--max-sessions",
                "16",
                "--duration",
                "90",
            ])
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join(logname))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            )
            .spawn()
            .expect("vbng")
    };
    let bng = start_bng("vbng.log");
    lab.children.push(bng);
    let log = || std::fs::read_to_string(dir.join("vbng.log")).unwrap_or_default();
    std::thread::sleep(Duration::from_secs(2));

    // busybox udhcpc (facts: -f foreground, -q exit once bound, -n exit on failure,
    // -t/-T/-A retries; the script gets $1 = bound/leasefail and $ip, $router ...).
    let out = dir.join("udhcpc.out");
    let script = dir.join("udhcpc.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  bound|renew)\n    \
             ip addr add \"$ip/${{mask:-16}}\" dev \"$interface\"\n    \
             ip route replace default via \"$router\" dev \"$interface\"\n    \
             echo \"$1 $ip $router $subnet $dns $mtu\" > {o} ;;\n  \
             leasefail|nak) echo \"$1\" > {o} ;;\nesac\nexit 0\n",
            o = out.display()
        ),
    )
    .expect("script");
    sh(&["chmod", "+x", &script.display().to_string()]);
    let u = ns_sh(
        &ns[0],
        &format!(
            "udhcpc -f -i {vlan} -s {} -t 3 -T 1 -A 1 -n -q",
            script.display()
        ),
    );
    let got = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        got.starts_with("bound 100.72.1."),
        "udhcpc: {got:?}\n{}\n{}\nvbng log:\n{}",
        String::from_utf8_lossy(&u.stdout),
        String::from_utf8_lossy(&u.stderr),
        log()
    );
    let f: Vec<&str> = got.split_whitespace().collect();
    assert_eq!(f[2], "100.72.0.1", "router option: {got}");
    assert_eq!(f[3], "255.255.0.0", "subnet mask: {got}");
    assert_eq!(f[4], "192.0.2.53", "DNS: {got}");
    let ping = ns_sh(&ns[0], "busybox ping -c 3 -W 2 198.51.100.254");
    assert!(
        ping.status.success(),
        "udhcpc client cannot reach the core: {}\nvbng log:\n{}",
        String::from_utf8_lossy(&ping.stdout),
        log()
    );

    // ISC dhclient in the second CPE.
    let dout = dir.join("dhclient.out");
    let dscript = dir.join("dhclient.sh");
    std::fs::write(
        &dscript,
        format!(
            "#!/bin/sh\ncase \"$reason\" in\n  BOUND|RENEW|REBOOT)\n    \
             ip addr replace \"$new_ip_address/16\" dev \"$interface\"\n    \
             echo \"$reason $new_ip_address $new_routers $new_subnet_mask\" > {o} ;;\n  \
             FAIL|TIMEOUT) echo \"$reason\" > {o} ;;\nesac\nexit 0\n",
            o = dout.display()
        ),
    )
    .expect("script");
    sh(&["chmod", "+x", &dscript.display().to_string()]);
    let d = Command::new("ip")
        .args([
            "netns", "exec", &ns[4], "timeout", "20", "dhclient", "-d", "-v", "-4", "-1",
        ])
        .arg("-sf")
        .arg(&dscript)
        .arg("-lf")
        .arg(dir.join("dhclient.leases"))
        .arg("-pf")
        .arg(dir.join("dhclient.pid"))
        .arg(&ed)
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.join("dhclient.log"))
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
        )
        .spawn()
        .expect("dhclient");
    lab.children.push(d);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut dgot = String::new();
    while Instant::now() < deadline {
        dgot = std::fs::read_to_string(&dout).unwrap_or_default();
        if !dgot.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        dgot.starts_with("BOUND 100.72.1.") && dgot.contains(" 100.72.0.1 "),
        "dhclient: {dgot:?}\n{}\nvbng log:\n{}",
        std::fs::read_to_string(dir.join("dhclient.log")).unwrap_or_default(),
        log()
    );
    let dip = dgot.split_whitespace().nth(1).unwrap_or("").to_string();
    assert_ne!(
        Some(dip.as_str()),
        f.get(1).copied(),
        "two clients, two leases"
    );

    let metrics = || {
        ns_sh(&ns[1], "curl -s -m 2 http://127.0.0.1:9182/metrics")
            .stdout
            .iter()
            .map(|&b| b as char)
            .collect::<String>()
    };
    let m = metrics();
    assert_eq!(sample(&m, "vbng_sessions "), Some(2.0), "{m}");
    assert_eq!(sample(&m, "vbng_ipoe_sessions "), Some(2.0), "{m}");
    assert!(
        sample(
            &m,
            "vbng_dhcp4_messages_total{direction=\"tx\",type=\"DHCPACK\"}"
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{m}"
    );

    // dhclient releases its lease (-r: DHCPRELEASE, RFC 2131 §4.4.6): its session
    // ends.
    let r = Command::new("ip")
        .args([
            "netns", "exec", &ns[4], "timeout", "10", "dhclient", "-r", "-4",
        ])
        .arg("-sf")
        .arg(&dscript)
        .arg("-lf")
        .arg(dir.join("dhclient.leases"))
        .arg("-pf")
        .arg(dir.join("dhclient.pid"))
        .arg(&ed)
        .output()
        .expect("dhclient -r");
    assert!(
        r.status.success(),
        "dhclient -r: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut m = metrics();
    while Instant::now() < deadline && sample(&m, "vbng_ipoe_sessions ") != Some(1.0) {
        std::thread::sleep(Duration::from_millis(300));
        m = metrics();
    }
    assert_eq!(sample(&m, "vbng_ipoe_sessions "), Some(1.0), "{m}");

    // The BNG dies (SIGKILL, no goodbye) after the journal has caught up, and a new
    // one starts from the same configuration: the udhcpc subscriber forwards again
    // without any DHCP exchange (RFC 2131 §4.3.1: a server remembers its bindings).
    std::thread::sleep(runtime_journal_wait());
    assert!(leases.exists(), "no lease journal written");
    for c in lab.children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    lab.children.clear();
    lab.children.push(start_bng("vbng2.log"));
    std::thread::sleep(Duration::from_secs(2));
    let ping = ns_sh(&ns[0], "busybox ping -c 3 -W 2 198.51.100.254");
    assert!(
        ping.status.success(),
        "after the restart the udhcpc client cannot reach the core: {}\nvbng log:\n{}",
        String::from_utf8_lossy(&ping.stdout),
        std::fs::read_to_string(dir.join("vbng2.log")).unwrap_or_default()
    );
    let log2 = std::fs::read_to_string(dir.join("vbng2.log")).unwrap_or_default();
    assert!(log2.contains("1 leases restored"), "{log2}");
    let m = metrics();
    assert_eq!(sample(&m, "vbng_ipoe_sessions "), Some(1.0), "{m}");
    assert_eq!(
        sample(
            &m,
            "vbng_dhcp4_messages_total{direction=\"rx\",type=\"DHCPREQUEST\"}"
        ),
        Some(0.0),
        "forwarding came back without DHCP: {m}"
    );
}

/// Longer than the runtime's journal interval (one second).
fn runtime_journal_wait() -> Duration {
    Duration::from_millis(1500)
}
