//! The DHCPv4 server core against real clients (root): a veth pair joins two network
//! namespaces of this test; in one, a small server loop (test code: an AF_PACKET
//! socket, `vbng::dhcp4::wire` to take frames apart and build replies) feeds
//! `vbng::dhcp4::Server`; in the other, BusyBox `udhcpc` and then ISC `dhclient` each
//! obtain a lease. Their scripts record the address, router, subnet mask, DNS servers,
//! MTU and classless static routes (RFC 3442) they were given; the test checks them against the configuration and the
//! server's LeaseBound events. Traffic stays on the veth; the namespaces (and with
//! them the veth) are removed at the end, on failure too. Fails (does not skip)
//! without root, `ip`, `busybox` or `dhclient` (Debian iproute2, busybox,
//! isc-dhcp-client; `scripts/setup` installs them).

use dataplane::addr::{Net4, Range4};
use dataplane::proto::ethernet::MacAddr;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vbng::config::PoolConfig;
use vbng::dhcp4::{wire, Dhcp4Config, Event, RouteConfig, Server};

const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0xd4, 1];

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(st.success(), "{args:?} failed");
}

struct Lab {
    ns: [String; 2],
    dir: std::path::PathBuf,
    children: Vec<Child>,
    stop: Arc<AtomicBool>,
    server: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.server.take() {
            let _ = t.join();
        }
        for n in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn have(t: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {t}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// An AF_PACKET socket bound to `ifname` (in the calling thread's namespace) with a
/// 100 ms receive timeout.
fn packet_socket(ifname: &str) -> Result<i32, String> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call; the fd is closed by the caller.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    if fd < 0 {
        return Err("AF_PACKET socket".into());
    }
    let name = std::ffi::CString::new(ifname).map_err(|e| e.to_string())?;
    // SAFETY: `name` is a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(format!("no interface {ifname}"));
    }
    // SAFETY: sockaddr_ll is plain old data; zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is valid for its size during the call.
    let r = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err("bind AF_PACKET".into());
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: `tv` outlives the call; the length matches its type.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    Ok(fd)
}

/// The server loop: in namespace `ns`, on `ifname`, until `stop`.
fn serve(
    ns: &str,
    ifname: &str,
    mut server: Server,
    stop: &AtomicBool,
    events: &Mutex<Vec<Event>>,
) -> Result<(), String> {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).map_err(|e| e.to_string())?;
    // SAFETY: setns on a valid namespace fd affects only this thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err("setns failed".into());
    }
    let fd = packet_socket(ifname)?;
    let sid = server.config().server_id();
    let t0 = Instant::now();
    let mut buf = vec![0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: sockaddr_ll is plain old data.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut flen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `buf` and `from` are valid for writes of their lengths.
        let n = unsafe {
            libc::recvfrom(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut flen,
            )
        };
        let now = t0.elapsed().as_millis() as u64;
        events
            .lock()
            .map_err(|e| e.to_string())?
            .extend(server.poll(now));
        if n <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
            continue;
        }
        let Ok(rq) = wire::decap(&buf[..n as usize]) else {
            continue;
        };
        let h = server.handle(now, rq.vlans, rq.message);
        if let Some(e) = h.event {
            events.lock().map_err(|e| e.to_string())?.push(e);
        }
        if let Some(reply) = h.reply {
            let frame = wire::encap(&reply, MacAddr(SERVER_MAC), sid, None);
            // SAFETY: `frame` is valid for reads of its length; the socket is bound.
            unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), 0) };
        }
    }
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd) };
    Ok(())
}

fn wait_for(path: &std::path::Path, needle: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        if s.contains(needle) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn udhcpc_and_dhclient_get_leases() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the DHCP client test needs root (scripts/test runs it as root)"
    );
    for t in ["ip", "busybox", "dhclient"] {
        assert!(
            have(t),
            "{t} not found (Debian iproute2 / busybox / isc-dhcp-client; scripts/setup installs them)"
        );
    }
    let id = std::process::id() % 100_000;
    let ns = [format!("vbdhc-{id}"), format!("vbdhs-{id}")];
    let dir = std::env::temp_dir().join(format!("vbng-dhcp4-{id}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let stop = Arc::new(AtomicBool::new(false));
    let mut lab = Lab {
        ns: ns.clone(),
        dir: dir.clone(),
        children: Vec::new(),
        stop: stop.clone(),
        server: None,
    };
    let (vc, vs) = (format!("dhc{id}"), format!("dhs{id}"));
    for x in &ns {
        sh(&["ip", "netns", "add", x]);
    }
    sh(&[
        "ip", "link", "add", &vc, "type", "veth", "peer", "name", &vs,
    ]);
    sh(&["ip", "link", "set", &vc, "netns", &ns[0]]);
    sh(&["ip", "link", "set", &vs, "netns", &ns[1]]);
    sh(&[
        "ip",
        "-n",
        &ns[1],
        "link",
        "set",
        &vs,
        "address",
        "02:00:00:00:d4:01",
    ]);
    for (x, v) in [(&ns[0], &vc), (&ns[1], &vs)] {
        sh(&["ip", "-n", x, "link", "set", v, "up"]);
        sh(&["ip", "-n", x, "link", "set", "lo", "up"]);
    }
    // Full checksums on the client's frames (a renewal over a UDP socket would
    // otherwise leave the checksum to an offload a veth never does).
    let _ = Command::new("ip")
        .args(["netns", "exec", &ns[0], "ethtool", "-K", &vc, "tx", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();

    let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let cfg = Dhcp4Config {
        gateway: Net4 {
            addr: a("100.64.7.1"),
            len: 24,
        },
        pools: vec![PoolConfig {
            name: "default".into(),
            ranges: vec![Range4::new(a("100.64.7.100"), a("100.64.7.199")).unwrap()],
        }],
        dns: vec![a("192.0.2.53")],
        mtu: Some(1492),
        lease_time_s: 600,
        classless_routes: vec![RouteConfig {
            prefix: Net4 {
                addr: a("10.0.0.0"),
                len: 8,
            },
            via: a("100.64.7.1"),
        }],
        ..Dhcp4Config::default()
    };
    let pool = cfg.pools[0].ranges[0];
    let server = Server::new(cfg).expect("server");
    let events = Arc::new(Mutex::new(Vec::new()));
    let (ns1, vs1, ev1, stop1) = (ns[1].clone(), vs.clone(), events.clone(), stop.clone());
    lab.server = Some(std::thread::spawn(move || {
        serve(&ns1, &vs1, server, &stop1, &ev1)
    }));
    std::thread::sleep(Duration::from_millis(300));

    // BusyBox udhcpc.
    let out = dir.join("udhcpc.out");
    let script = dir.join("udhcpc.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1 $ip $router $subnet $dns $mtu|$staticroutes\" >> {}\nexit 0\n",
            out.display()
        ),
    )
    .expect("script");
    sh(&["chmod", "755", script.to_str().unwrap()]);
    let o = Command::new("ip")
        .args([
            "netns", "exec", &ns[0], "busybox", "udhcpc", "-f", "-i", &vc, "-s",
        ])
        .arg(&script)
        .args([
            "-t",
            "3",
            "-T",
            "1",
            "-A",
            "1",
            "-n",
            "-q",
            "-O",
            "mtu",
            "-O",
            "staticroutes",
        ])
        .output()
        .expect("udhcpc");
    let got = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        o.status.success(),
        "udhcpc failed: {}\n{}\nscript: {got}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let bound = got
        .lines()
        .find(|l| l.starts_with("bound "))
        .unwrap_or_else(|| panic!("udhcpc did not bind: {got}"));
    let (head, routes) = bound.split_once('|').unwrap_or((bound, ""));
    let f: Vec<&str> = head.split_whitespace().collect();
    assert_eq!(f.len(), 6, "{bound}");
    // RFC 3442: the configured route and the default route via the gateway.
    assert_eq!(
        routes.trim(),
        "10.0.0.0/8 100.64.7.1 0.0.0.0/0 100.64.7.1",
        "{bound}"
    );
    let ip1 = a(f[1]);
    assert!(pool.contains(ip1), "{bound}");
    assert_eq!(
        &f[2..],
        ["100.64.7.1", "255.255.255.0", "192.0.2.53", "1492"],
        "{bound}"
    );

    // ISC dhclient, one attempt, in the foreground; stopped once bound.
    let out2 = dir.join("dhclient.out");
    let script2 = dir.join("dhclient.sh");
    std::fs::write(
        &script2,
        format!(
            "#!/bin/sh\necho \"$reason $new_ip_address $new_routers $new_subnet_mask $new_domain_name_servers $new_interface_mtu|$new_rfc3442_classless_static_routes\" >> {}\nexit 0\n",
            out2.display()
        ),
    )
    .expect("script");
    sh(&["chmod", "755", script2.to_str().unwrap()]);
    let child = Command::new("ip")
        .args([
            "netns", "exec", &ns[0], "dhclient", "-d", "-v", "-4", "-1", "-sf",
        ])
        .arg(&script2)
        .arg("-lf")
        .arg(dir.join("dhclient.leases"))
        .arg("-pf")
        .arg(dir.join("dhclient.pid"))
        .arg(&vc)
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.join("dhclient.log"))
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
        )
        .spawn()
        .expect("dhclient");
    lab.children.push(child);
    let got2 = wait_for(&out2, "BOUND ", 20);
    let log = std::fs::read_to_string(dir.join("dhclient.log")).unwrap_or_default();
    let bound2 = got2
        .lines()
        .find(|l| l.starts_with("BOUND "))
        .unwrap_or_else(|| panic!("dhclient did not bind: {got2}\n{log}"));
    let (head2, routes2) = bound2.split_once('|').unwrap_or((bound2, ""));
    let f2: Vec<&str> = head2.split_whitespace().collect();
    assert_eq!(f2.len(), 6, "{bound2}");
    assert_eq!(routes2.trim(), "8 10 100 64 7 1 0 100 64 7 1", "{bound2}");
    let ip2 = a(f2[1]);
    assert!(pool.contains(ip2), "{bound2}");
    assert_eq!(
        &f2[2..],
        ["100.64.7.1", "255.255.255.0", "192.0.2.53", "1492"],
        "{bound2}"
    );

    for c in lab.children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    lab.children.clear();
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = lab.server.take() {
        t.join().expect("server thread").expect("server loop");
    }
    let ev = events.lock().unwrap().clone();
    let bound: Vec<Ipv4Addr> = ev
        .iter()
        .filter_map(|e| match e {
            Event::LeaseBound { lease, .. } => Some(lease.addr),
            _ => None,
        })
        .collect();
    assert!(bound.contains(&ip1), "{bound:?}");
    assert!(bound.contains(&ip2), "{bound:?}");
}
