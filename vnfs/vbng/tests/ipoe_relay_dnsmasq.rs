//! The vBNG as a DHCP relay agent (RFC 2131 §4.1, RFC 1542, RFC 3046 option 82) in
//! front of an external server we did not write (root): `vbng` runs in a namespace
//! with `[ipoe.relay]`, dnsmasq is the DHCP server in the core namespace (also the
//! core gateway, 198.51.100.254). BusyBox `udhcpc` in the CPE namespace gets a lease
//! from dnsmasq's range through the relay and pings the core; dnsmasq's
//! `--dhcp-script` sees the circuit id and remote id we inserted; the client never
//! sees option 82 (udhcpc would pass it to its script as `$opt82`).
//!
//! Fails (does not skip) without root, `ip`, `udhcpc`, `dnsmasq`, `busybox`, `curl`
//! or `ethtool`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common_netns;

use common_netns::{need, ns_sh, sample, sh, Lab};

#[test]
fn udhcpc_gets_a_lease_from_dnsmasq_through_the_relay() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the namespace lab needs root (scripts/test runs it as root)"
    );
    need(&["ip", "udhcpc", "dnsmasq", "busybox", "curl", "ethtool"]);
    let id = std::process::id() % 100_000;
    let ns: Vec<String> = ["cpe", "bng", "core"]
        .iter()
        .map(|n| format!("rly-{n}-{id}"))
        .collect();
    let dir = std::env::temp_dir().join(format!("vbng-relay-{id}"));
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
    let (rc, ra, rb, rk) = (v("rc"), v("ra"), v("rb"), v("rk"));
    for (a, b) in [(&rc, &ra), (&rb, &rk)] {
        sh(&["ip", "link", "add", a, "type", "veth", "peer", "name", b]);
    }
    for (l, n) in [(&rc, &ns[0]), (&ra, &ns[1]), (&rb, &ns[1]), (&rk, &ns[2])] {
        sh(&["ip", "link", "set", l, "netns", n]);
        sh(&["ip", "-n", n, "link", "set", l, "up"]);
        sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
    }
    // Datagrams from local sockets (dnsmasq's replies, the client's pings) would
    // leave a veth with their checksum left to an offload that never happens.
    for (n, l) in [(&ns[0], &rc), (&ns[2], &rk)] {
        let _ = ns_sh(n, &format!("ethtool -K {l} tx off"));
    }
    sh(&[
        "ip",
        "-n",
        &ns[2],
        "addr",
        "add",
        "198.51.100.254/24",
        "dev",
        &rk,
    ]);
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
    // dnsmasq: DHCP only (port=0), a range on the relay's subnet, a script that
    // records what the relay agent told it.
    let seen = dir.join("dnsmasq.seen");
    let dscript = dir.join("dnsmasq.sh");
    std::fs::write(
        &dscript,
        format!(
            "#!/bin/sh\n[ \"$1\" = add ] || [ \"$1\" = old ] || exit 0\n\
             echo \"$1 $3 circuit=$DNSMASQ_CIRCUIT_ID remote=$DNSMASQ_REMOTE_ID\" >> {}\n",
            seen.display()
        ),
    )
    .expect("script");
    sh(&["chmod", "+x", &dscript.display().to_string()]);
    let dns = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns[2],
            "dnsmasq",
            "--no-daemon",
            "--port=0",
        ])
        .arg("--conf-file=/dev/null")
        .arg(format!("--interface={rk}"))
        .arg("--bind-interfaces")
        .arg("--dhcp-range=100.72.1.100,100.72.1.150,255.255.0.0,10m")
        .arg("--dhcp-option=option:router,100.72.0.1")
        .arg(format!("--dhcp-script={}", dscript.display()))
        .arg(format!(
            "--dhcp-leasefile={}",
            dir.join("dnsmasq.leases").display()
        ))
        .arg("--user=root")
        .arg("--log-dhcp")
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.join("dnsmasq.log"))
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
        )
        .spawn()
        .expect("dnsmasq");
    lab.children.push(dns);
    let cfg = "name = \"vbng\"\nmac = \"02:00:00:00:b0:01\"\n\
               core_ip = \"198.51.100.1/24\"\ncore_gateway = \"198.51.100.254\"\n\
               listen = \"127.0.0.1:9183\"\n\
               [ipoe]\nauthorize = false\n\
               [ipoe.dhcp]\ngateway = \"100.72.0.1/16\"\n\
               [[ipoe.dhcp.pools]]\nname = \"unused-in-relay-mode\"\nranges = [\"100.72.200.1-100.72.200.9\"]\n\
               [ipoe.relay]\nservers = [\"198.51.100.254\"]\n";
    let cfg_path = dir.join("vbng.toml");
    std::fs::write(&cfg_path, cfg).expect("config");
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
            &format!("afpacket:{ra}"),
            "--core",
            &format!("afpacket:{rb}"),
            "--max-sessions",
            "16",
            "--duration",
            "60",
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
    let log = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    std::thread::sleep(Duration::from_secs(2));

    let out = dir.join("udhcpc.out");
    let script = dir.join("udhcpc.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  bound|renew)\n    \
             ip addr add \"$ip/${{mask:-16}}\" dev \"$interface\"\n    \
             ip route replace default via \"$router\" dev \"$interface\"\n    \
             echo \"$1 $ip $router opt82=$opt82\" > {o} ;;\n  \
             leasefail|nak) echo \"$1\" > {o} ;;\nesac\nexit 0\n",
            o = out.display()
        ),
    )
    .expect("script");
    sh(&["chmod", "+x", &script.display().to_string()]);
    let u = ns_sh(
        &ns[0],
        &format!(
            "udhcpc -f -i {rc} -s {} -t 5 -T 1 -A 1 -n -q -O 82",
            script.display()
        ),
    );
    let got = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        got.starts_with("bound 100.72.1."),
        "udhcpc: {got:?}\n{}\nvbng log:\n{}\ndnsmasq log:\n{}",
        String::from_utf8_lossy(&u.stderr),
        log("vbng.log"),
        log("dnsmasq.log")
    );
    let f: Vec<&str> = got.split_whitespace().collect();
    assert_eq!(f[2], "100.72.0.1", "router: {got}");
    assert_eq!(
        f.get(3).copied(),
        Some("opt82="),
        "option 82 reached the client: {got}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut s = String::new();
    while Instant::now() < deadline && s.is_empty() {
        s = std::fs::read_to_string(&seen).unwrap_or_default();
        std::thread::sleep(Duration::from_millis(200));
    }
    // dnsmasq passes printable sub-options as text: our circuit id names the
    // access line, our remote id the client's MAC.
    let mac = ns_sh(&ns[0], &format!("cat /sys/class/net/{rc}/address")).stdout;
    let mac = String::from_utf8_lossy(&mac).trim().to_string();
    assert!(
        s.contains(&format!("circuit=access0:0.0 remote={mac}")),
        "dnsmasq saw: {s:?} (client {mac})\n{}",
        log("dnsmasq.log")
    );
    let ping = ns_sh(&ns[0], "busybox ping -c 3 -W 2 198.51.100.254");
    assert!(
        ping.status.success(),
        "the relayed client cannot reach the core: {}\nvbng log:\n{}",
        String::from_utf8_lossy(&ping.stdout),
        log("vbng.log")
    );
    let m = ns_sh(&ns[1], "curl -s -m 2 http://127.0.0.1:9183/metrics").stdout;
    let m = String::from_utf8_lossy(&m);
    assert_eq!(sample(&m, "vbng_ipoe_sessions "), Some(1.0), "{m}");
    assert!(
        sample(&m, "vbng_dhcp4_relay_total{direction=\"to_client\"}").unwrap_or(0.0) >= 2.0,
        "{m}"
    );
}
