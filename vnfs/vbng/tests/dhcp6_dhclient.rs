//! The DHCPv6 server core against a real client (root): a veth pair joins two network
//! namespaces of this test; in one, a small server loop (test code: an AF_PACKET
//! socket, `vbng::dhcp6::wire` to take frames apart and build replies) feeds
//! `vbng::dhcp6::Server`; in the other, ISC `dhclient -6` obtains an address (IA_NA,
//! `-N`, then releases it with `dhclient -r`) and a delegated prefix (IA_PD, `-P`)
//! through the four-message exchange (Solicit, Advertise, Request, Reply; RFC 8415
//! §18). Its script records the reason,
//! the address or prefix and the DNS servers it was given; the test checks them
//! against the pools and the server's Bound events. Traffic stays on the veth; the
//! namespaces (and with them the veth) are removed at the end, on failure too. Fails
//! (does not skip) without root, `ip` or `dhclient` (Debian iproute2,
//! isc-dhcp-client; `scripts/setup` installs them).

use dataplane::addr::Prefix6;
use dataplane::proto::dhcp6::Duid;
use dataplane::proto::ethernet::MacAddr;
use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vbng::dhcp6::{
    wire, AddrPoolConfig, Assigned, Dhcp6Config, Event, LineKey, PrefixPoolConfig, Server,
};

const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0xd6, 1];

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

/// The server loop: in namespace `ns`, on `ifname`, until `stop`. The line key is
/// the client's MAC address and VLANs.
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
        let mut key = rq.src_mac.0.to_vec();
        key.extend_from_slice(&rq.vlans.svlan.to_be_bytes());
        key.extend_from_slice(&rq.vlans.cvlan.to_be_bytes());
        let h = server.handle(now, &LineKey(key), rq.request.src, rq.request.message);
        events.lock().map_err(|e| e.to_string())?.extend(h.events);
        if let Some(reply) = h.reply {
            let frame = wire::encap(&reply, MacAddr(SERVER_MAC), rq.src_mac, rq.vlans)
                .map_err(|e| e.to_string())?;
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

/// Runs `dhclient -6` with `mode` (`-N` or `-P`) in namespace `ns` on `ifname` until
/// its script reports BOUND6; returns the script's BOUND6 line.
fn dhclient(lab: &mut Lab, ns: &str, ifname: &str, mode: &str) -> String {
    let tag = mode.trim_start_matches('-');
    let out = lab.dir.join(format!("dhclient{tag}.out"));
    let script = lab.dir.join(format!("dhclient{tag}.sh"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$reason $new_ip6_address/$new_ip6_prefixlen $new_ip6_prefix|$new_dhcp6_name_servers\" >> {}\nexit 0\n",
            out.display()
        ),
    )
    .expect("script");
    sh(&["chmod", "755", script.to_str().unwrap()]);
    let log = lab.dir.join(format!("dhclient{tag}.log"));
    let child = Command::new("ip")
        .args([
            "netns", "exec", ns, "dhclient", "-d", "-v", "-6", mode, "-1", "-sf",
        ])
        .arg(&script)
        .arg("-lf")
        .arg(lab.dir.join(format!("dhclient{tag}.leases")))
        .arg("-pf")
        .arg(lab.dir.join(format!("dhclient{tag}.pid")))
        .arg(ifname)
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(&log)
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
        )
        .spawn()
        .expect("dhclient");
    lab.children.push(child);
    let got = wait_for(&out, "BOUND6 ", 30);
    let l = std::fs::read_to_string(&log).unwrap_or_default();
    let line = got
        .lines()
        .find(|l| l.starts_with("BOUND6 "))
        .unwrap_or_else(|| panic!("dhclient {mode} did not bind: {got}\n{l}"))
        .to_string();
    for c in lab.children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    lab.children.clear();
    line
}

#[test]
fn dhclient_gets_address_and_delegated_prefix() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the DHCPv6 client test needs root (scripts/test runs it as root)"
    );
    for t in ["ip", "dhclient"] {
        assert!(
            have(t),
            "{t} not found (Debian iproute2 / isc-dhcp-client; scripts/setup installs them)"
        );
    }
    let id = std::process::id() % 100_000;
    let ns = [format!("vb6c-{id}"), format!("vb6s-{id}")];
    let dir = std::env::temp_dir().join(format!("vbng-dhcp6-{id}"));
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
    let (vc, vs) = (format!("d6c{id}"), format!("d6s{id}"));
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
        "02:00:00:00:d6:01",
    ]);
    sh(&[
        "ip",
        "-n",
        &ns[0],
        "link",
        "set",
        &vc,
        "address",
        "02:00:00:00:d6:09",
    ]);
    // The server side is the test's AF_PACKET loop: no kernel IPv6 there. The client
    // gets its link-local address at once (no duplicate address detection), as
    // dhclient -6 needs it to bind port 546.
    sh(&[
        "ip",
        "netns",
        "exec",
        &ns[1],
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{vs}.disable_ipv6=1"),
    ]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &ns[0],
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{vc}.accept_dad=0"),
    ]);
    for (x, v) in [(&ns[0], &vc), (&ns[1], &vs)] {
        sh(&["ip", "-n", x, "link", "set", v, "up"]);
        sh(&["ip", "-n", x, "link", "set", "lo", "up"]);
    }
    sh(&["ip", "-n", &ns[1], "link", "set", &vs, "promisc", "on"]);
    // Full checksums on the client's datagrams (a veth never fills in an offloaded
    // one).
    let _ = Command::new("ip")
        .args(["netns", "exec", &ns[0], "ethtool", "-K", &vc, "tx", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = Command::new("ip")
            .args([
                "-n", &ns[0], "-6", "addr", "show", "dev", &vc, "scope", "link",
            ])
            .output()
            .expect("ip addr");
        let s = String::from_utf8_lossy(&o.stdout).into_owned();
        if s.contains("fe80::") && !s.contains("tentative") {
            break;
        }
        assert!(Instant::now() < deadline, "no link-local address: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    let cfg = Dhcp6Config {
        address_pools: vec![AddrPoolConfig {
            name: "na".into(),
            first: a("2001:db8:7::100"),
            last: a("2001:db8:7::1ff"),
        }],
        prefix_pools: vec![PrefixPoolConfig {
            name: "pd".into(),
            prefix: "2001:db8:100::/40".parse().unwrap(),
            len: 56,
        }],
        dns: vec![a("2001:db8::53")],
        preferred_lifetime_s: 600,
        valid_lifetime_s: 1200,
        ..Dhcp6Config::default()
    };
    let server = Server::new(cfg, Duid::ll(SERVER_MAC)).expect("server");
    let events = Arc::new(Mutex::new(Vec::new()));
    let (ns1, vs1, ev1, stop1) = (ns[1].clone(), vs.clone(), events.clone(), stop.clone());
    lab.server = Some(std::thread::spawn(move || {
        serve(&ns1, &vs1, server, &stop1, &ev1)
    }));
    std::thread::sleep(Duration::from_millis(300));

    // IA_NA.
    let na = dhclient(&mut lab, &ns[0], &vc, "-N");
    let (head, dns) = na.split_once('|').unwrap_or((&na, ""));
    let f: Vec<&str> = head.split_whitespace().collect();
    let (addr, len) = f[1].split_once('/').expect("address/len");
    let addr = a(addr);
    assert!(
        (a("2001:db8:7::100")..=a("2001:db8:7::1ff")).contains(&addr),
        "{na}"
    );
    assert_eq!(len, "128", "{na}");
    assert_eq!(dns.trim(), "2001:db8::53", "{na}");

    // dhclient -r releases the address from its lease file (RFC 8415 §18.2.7).
    let o = Command::new("ip")
        .args(["netns", "exec", &ns[0], "dhclient", "-6", "-r", "-N", "-sf"])
        .arg(lab.dir.join("dhclientN.sh"))
        .arg("-lf")
        .arg(lab.dir.join("dhclientN.leases"))
        .arg("-pf")
        .arg(lab.dir.join("dhclientN.pid"))
        .arg(&vc)
        .output()
        .expect("dhclient -r");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !events.lock().unwrap().iter().any(
        |e| matches!(e, Event::Released { assigned, .. } if *assigned == Assigned::Address(addr)),
    ) {
        assert!(
            Instant::now() < deadline,
            "no Released event after dhclient -r: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // IA_PD.
    let pd = dhclient(&mut lab, &ns[0], &vc, "-P");
    let (head, _) = pd.split_once('|').unwrap_or((&pd, ""));
    let prefix = head
        .split_whitespace()
        .find(|w| w.ends_with("/56"))
        .unwrap_or_else(|| panic!("no /56 in {pd}"));
    let (p, _) = prefix.split_once('/').unwrap();
    let p = Prefix6::new(a(p), 56).unwrap();
    let outer: dataplane::addr::Net6 = "2001:db8:100::/40".parse().unwrap();
    assert!(outer.contains(&p.network()), "{pd}");

    eprintln!("dhclient -6 -N: {na}\ndhclient -6 -P: {pd}");
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = lab.server.take() {
        t.join().expect("server thread").expect("server loop");
    }
    let ev = events.lock().unwrap().clone();
    let bound: Vec<Assigned> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Bound { lease, .. } => Some(lease.assigned),
            _ => None,
        })
        .collect();
    assert!(bound.contains(&Assigned::Address(addr)), "{bound:?}");
    assert!(bound.contains(&Assigned::Prefix(p)), "{bound:?}");
}
