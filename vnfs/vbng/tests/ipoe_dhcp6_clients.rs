//! IPv6 IPoE subscribers against ISC `dhclient -6` (root): the `vbng` binary runs in
//! a namespace with its access port (AF_PACKET) towards a CPE namespace and its core
//! port towards a core namespace (Linux, `2001:db8:ffff::254/64`, the IPv6 core
//! gateway, which routes the subscriber pools back through the BNG).
//!
//! With `[ipoe] dhcp6 = true` the CPE's `dhclient -6 -N -P` (one Solicit asking for
//! an address, IA_NA, and a prefix, IA_PD) starts an IPv6-only IPoE session, gets
//! an address from the `[dhcp6]` address pool and a /56 from its prefix pool; the
//! kernel's default route comes from our Router Advertisement (sent when the
//! binding is made, no prefix information, our link-local address as the router);
//! busybox `ping6` reaches the core from the IA_NA address and from an address of
//! the delegated prefix, both ways through the BNG; `/metrics` shows the session;
//! `dhclient -6 -r` releases both and the session ends.
//!
//! Fails (does not skip) without root, `ip`, `dhclient`, `busybox` or `curl`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common_netns;

use common_netns::{need, ns_sh, sample, sh, Lab};

/// Polls `f` every 200 ms for up to `secs` seconds; the last value.
fn wait<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn dhclient6_gets_address_and_prefix_over_ipoe_and_reaches_the_core() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the namespace lab needs root (scripts/test runs it as root)"
    );
    need(&["ip", "dhclient", "busybox", "curl", "ethtool"]);
    let id = std::process::id() % 100_000;
    let ns: Vec<String> = ["cpe", "bng", "core"]
        .iter()
        .map(|n| format!("ipoe6-{n}-{id}"))
        .collect();
    let dir = std::env::temp_dir().join(format!("vbng-ipoe6-{id}"));
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
    let v = |p: &str| format!("{p}{id}");
    let (ec, ea, eb, ek) = (v("c6"), v("a6"), v("b6"), v("k6"));
    for (a, b) in [(&ec, &ea), (&eb, &ek)] {
        sh(&["ip", "link", "add", a, "type", "veth", "peer", "name", b]);
    }
    // The BNG's ports are ours (AF_PACKET): no kernel IPv6 on them. The CPE and the
    // core skip duplicate address detection so the lab needs no waiting.
    for (l, n) in [(&ec, &ns[0]), (&ea, &ns[1]), (&eb, &ns[1]), (&ek, &ns[2])] {
        sh(&["ip", "link", "set", l, "netns", n]);
        let knob = if n == &ns[1] {
            "disable_ipv6=1"
        } else {
            "accept_dad=0"
        };
        let _ = ns_sh(n, &format!("sysctl -qw net.ipv6.conf.{l}.{knob}"));
        sh(&["ip", "-n", n, "link", "set", l, "up"]);
        sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
    }
    // The CPE takes its default route from our RA.
    let _ = ns_sh(
        &ns[0],
        &format!("sysctl -qw net.ipv6.conf.{ec}.accept_ra=1"),
    );
    let _ = ns_sh(&ns[0], &format!("ethtool -K {ec} tx off"));
    let _ = ns_sh(&ns[2], &format!("ethtool -K {ek} tx off"));
    sh(&[
        "ip",
        "-n",
        &ns[2],
        "addr",
        "add",
        "2001:db8:ffff::254/64",
        "dev",
        &ek,
        "nodad",
    ]);
    for pool in ["2001:db8:100::/64", "2001:db8:200::/40"] {
        sh(&[
            "ip",
            "-n",
            &ns[2],
            "-6",
            "route",
            "add",
            pool,
            "via",
            "2001:db8:ffff::1",
        ]);
    }
    let cfg = "name = \"vbng\"\nmac = \"02:00:00:00:b6:01\"\n\
               core_ip = \"198.51.100.1/24\"\ncore_gateway = \"198.51.100.254\"\n\
               core_ip6 = \"2001:db8:ffff::1\"\ncore_gateway6 = \"2001:db8:ffff::254\"\n\
               listen = \"127.0.0.1:9186\"\nra_managed = true\nra_other = true\n\
               [ipoe]\nauthorize = false\ndhcp6 = true\n\
               [ipoe.dhcp]\ngateway = \"100.72.0.1/16\"\n\
               [[ipoe.dhcp.pools]]\nname = \"ipoe\"\nranges = [\"100.72.1.10-100.72.1.50\"]\n\
               [dhcp6]\ndns = [\"2001:db8::53\"]\n\
               [[dhcp6.address_pools]]\nname = \"na\"\n\
               first = \"2001:db8:100::1000\"\nlast = \"2001:db8:100::1fff\"\n\
               [[dhcp6.prefix_pools]]\nname = \"pd\"\nprefix = \"2001:db8:200::/40\"\nlen = 56\n";
    let cfg_path = dir.join("vbng.toml");
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
    let bng = Command::new("ip")
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
            std::fs::File::create(dir.join("vbng.log"))
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
        )
        .spawn()
        .expect("vbng");
    lab.children.push(bng);
    let log = || std::fs::read_to_string(dir.join("vbng.log")).unwrap_or_default();
    std::thread::sleep(Duration::from_secs(2));

    let out = dir.join("dhclient6.out");
    let script = dir.join("dhclient6.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$reason\" in\n  BOUND6|RENEW6|REBIND6)\n    \
             [ -n \"$new_ip6_address\" ] && ip -6 addr replace \"$new_ip6_address/128\" dev \"$interface\" nodad\n    \
             echo \"$reason $new_ip6_address $new_ip6_prefix $new_dhcp6_name_servers\" >> {o} ;;\n  \
             RELEASE6|EXPIRE6|STOP6) echo \"$reason $old_ip6_address $old_ip6_prefix\" >> {o} ;;\n\
             esac\nexit 0\n",
            o = out.display()
        ),
    )
    .expect("script");
    sh(&["chmod", "+x", &script.display().to_string()]);
    let dhclient = |extra: &[&str], log: &str| {
        Command::new("ip")
            .args(["netns", "exec", &ns[0], "dhclient", "-6", "-N", "-P"])
            .args(extra)
            .arg("-sf")
            .arg(&script)
            .arg("-lf")
            .arg(dir.join("dhclient6.leases"))
            .arg("-pf")
            .arg(dir.join("dhclient6.pid"))
            .arg(&ec)
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join(log))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            )
            .spawn()
            .expect("dhclient")
    };
    lab.children
        .push(dhclient(&["-d", "-v", "-1"], "dhclient6.log"));
    // dhclient runs its script once per IA: the address and the prefix may come in
    // one BOUND6 or in two.
    let bound = wait(30, || {
        let t = std::fs::read_to_string(&out).unwrap_or_default();
        let mut addr = None;
        let mut prefix = None;
        let mut dns = None;
        for l in t.lines().filter(|l| l.starts_with("BOUND6 ")) {
            for w in l.split_whitespace().skip(1) {
                if w.contains('/') {
                    prefix = Some(w.to_string());
                } else if w.starts_with("2001:db8:100:") {
                    addr = Some(w.to_string());
                } else {
                    dns = Some(w.to_string());
                }
            }
        }
        Some((addr?, prefix?, dns, t))
    })
    .unwrap_or_else(|| {
        panic!(
            "dhclient -6 did not bind an address and a prefix: {}\n{}\nvbng log:\n{}",
            std::fs::read_to_string(&out).unwrap_or_default(),
            std::fs::read_to_string(dir.join("dhclient6.log")).unwrap_or_default(),
            log()
        )
    });
    let (addr, prefix, dns, bound) = (bound.0.as_str(), bound.1.as_str(), bound.2, bound.3);
    assert!(
        addr.starts_with("2001:db8:100::1"),
        "IA_NA from the pool: {bound}"
    );
    assert!(
        prefix.starts_with("2001:db8:2") && prefix.ends_with("/56"),
        "IA_PD /56 from the pool: {bound}"
    );
    assert_eq!(
        dns.as_deref(),
        Some("2001:db8::53"),
        "DNS (option 23): {bound}"
    );

    // The RA we sent when the binding was made gives the CPE its default route.
    let route = wait(15, || {
        let r = ns_sh(&ns[0], "ip -6 route show default");
        let t = String::from_utf8_lossy(&r.stdout).to_string();
        t.contains("via fe80::").then_some(t)
    })
    .unwrap_or_else(|| panic!("no default route from our RA\nvbng log:\n{}", log()));
    assert!(
        route.contains("via fe80::ff:fe00:b601") || route.contains("via fe80::ff:fe00:b601 "),
        "the router is our access link-local address: {route}"
    );

    let ping = ns_sh(
        &ns[0],
        &format!("busybox ping6 -c 3 -W 2 -I {addr} 2001:db8:ffff::254"),
    );
    assert!(
        ping.status.success(),
        "IA_NA address cannot reach the core: {}{}\nvbng log:\n{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr),
        log()
    );
    // An address of the delegated prefix (the CPE's LAN) reaches the core too.
    let lan = format!("{}1", prefix.trim_end_matches("/56"));
    sh(&["ip", "-n", &ns[0], "-6", "addr", "add", &lan, "dev", "lo"]);
    let ping = ns_sh(
        &ns[0],
        &format!("busybox ping6 -c 3 -W 2 -I {lan} 2001:db8:ffff::254"),
    );
    assert!(
        ping.status.success(),
        "delegated prefix cannot reach the core: {}{}\nvbng log:\n{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr),
        log()
    );
    // A source outside both is spoofed: dropped, counted.
    sh(&[
        "ip",
        "-n",
        &ns[0],
        "-6",
        "addr",
        "add",
        "2001:db8:999::1",
        "dev",
        "lo",
    ]);
    let spoof = ns_sh(
        &ns[0],
        "busybox ping6 -c 2 -W 1 -I 2001:db8:999::1 2001:db8:ffff::254",
    );
    assert!(!spoof.status.success(), "a spoofed source got through");

    let metrics = || {
        let o = Command::new("curl")
            .args(["-s", "http://127.0.0.1:9186/metrics"])
            .output()
            .expect("curl");
        let o = if o.stdout.is_empty() {
            ns_sh(&ns[1], "curl -s http://127.0.0.1:9186/metrics")
        } else {
            o
        };
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let m = metrics();
    assert_eq!(
        sample(&m, "vbng_ipoe_sessions "),
        Some(1.0),
        "one IPoE session (IPv6 only)\n{m}"
    );
    assert!(
        m.lines().any(|l| l.starts_with("dp_node_drops_total{")
            && l.contains("reason=\"spoofed-source\"")
            && !l.ends_with(" 0")),
        "spoofed source counted\n{m}"
    );

    // Release both: the session (no DHCPv4 lease) ends.
    for c in lab.children.iter_mut().skip(1) {
        let _ = c.kill();
        let _ = c.wait();
    }
    let mut r = dhclient(&["-r", "-d", "-v"], "dhclient6-release.log");
    let _ = wait(15, || r.try_wait().ok().flatten());
    let _ = r.kill();
    let ended = wait(10, || {
        let m = metrics();
        (sample(&m, "vbng_ipoe_sessions ") == Some(0.0)).then_some(m)
    });
    assert!(
        ended.is_some(),
        "the session did not end after dhclient -6 -r\n{}\n{}\nvbng log:\n{}",
        metrics(),
        std::fs::read_to_string(dir.join("dhclient6-release.log")).unwrap_or_default(),
        log()
    );
}
