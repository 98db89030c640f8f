//! Network-namespace labs: namespaces, veth pairs, bridges and TAP devices, processes
//! started inside namespaces, all recorded in a process-wide registry so that
//! everything this process created is removed when the [`Lab`] guard drops, when a
//! command fails, and on Ctrl-C/SIGTERM (the handler tears down, then exits 130).
//!
//! Names carry a per-process prefix (`tb<pid>`) so concurrent labs never collide and
//! a leak is attributable. Plumbing goes through iproute2 (`ip netns`, `ip link`,
//! `ip addr`, `ip route`, `ip neigh`) and `sysctl` inside `ip netns exec`; sockets of
//! our own ports are opened inside a namespace with `setns(2)` on the calling thread.

use anyhow::{bail, Context};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once};

/// Something a lab created.
#[derive(Debug)]
enum Res {
    Netns(String),
    /// A link in the root namespace (links inside a lab namespace die with it).
    Link(String),
    Proc(Child),
}

static REGISTRY: Mutex<Vec<Res>> = Mutex::new(Vec::new());
static HANDLER: Once = Once::new();

/// Removes every registered resource, newest first (processes, then links, then
/// namespaces, as they were created). Safe to call more than once.
pub fn cleanup_all() {
    let mut items: Vec<Res> = match REGISTRY.lock() {
        Ok(mut g) => std::mem::take(&mut *g),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    while let Some(r) = items.pop() {
        match r {
            Res::Proc(mut c) => {
                // SIGINT first so VNFs stop cleanly and print their counters, then
                // make sure.
                // SAFETY: kill(2) on our own child's pid.
                unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGINT) };
                for _ in 0..50 {
                    if let Ok(Some(_)) = c.try_wait() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
            Res::Link(n) => {
                let _ = quiet(&["ip", "link", "del", &n]);
            }
            Res::Netns(n) => {
                let _ = quiet(&["ip", "netns", "del", &n]);
            }
        }
    }
}

fn quiet(args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
    let (cmd, rest) = args
        .split_first()
        .map(|(c, r)| (*c, r))
        .unwrap_or(("true", &[]));
    Command::new(cmd)
        .args(rest)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}

fn register(r: Res) {
    match REGISTRY.lock() {
        Ok(mut g) => g.push(r),
        Err(p) => p.into_inner().push(r),
    }
}

/// Installs the Ctrl-C/SIGTERM handler (once per process).
pub fn install_signal_handler() {
    HANDLER.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            eprintln!("testbed: interrupted, removing the lab");
            cleanup_all();
            std::process::exit(130);
        });
    });
}

/// Runs a command, failing with its stderr.
pub fn sh(args: &[&str]) -> anyhow::Result<String> {
    let (cmd, rest) = args.split_first().context("empty command")?;
    let out = Command::new(cmd)
        .args(rest)
        .output()
        .with_context(|| format!("cannot run {cmd} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A lab: creates namespaces and links under a unique prefix and removes everything
/// it (and every other lab of this process) created when dropped.
pub struct Lab {
    prefix: String,
}

impl Lab {
    /// A new lab; `tag` (≤ 3 chars) distinguishes labs of one process.
    pub fn new(tag: &str) -> anyhow::Result<Lab> {
        install_signal_handler();
        if !std::path::Path::new("/proc/self/ns/net").exists() {
            bail!("network namespaces are not available");
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("netns labs need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)");
        }
        sh(&["ip", "-V"]).context("iproute2 (`ip`) is required: apt-get install iproute2")?;
        let t: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(3)
            .collect();
        Ok(Lab {
            prefix: format!("tb{}{}", std::process::id() % 100_000, t),
        })
    }

    /// The prefix of every name this lab creates.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A name under the lab prefix (interface names stay within 15 bytes).
    pub fn name(&self, base: &str) -> String {
        let mut n = format!("{}{}", self.prefix, base);
        n.truncate(15);
        n
    }

    /// Creates namespace `base` (loopback up) and returns its full name.
    pub fn netns(&self, base: &str) -> anyhow::Result<String> {
        let n = self.name(base);
        sh(&["ip", "netns", "add", &n])?;
        register(Res::Netns(n.clone()));
        sh(&["ip", "-n", &n, "link", "set", "lo", "up"])?;
        Ok(n)
    }

    /// Creates a veth pair `a` (in namespace `ns_a`) — `b` (in `ns_b`), both up.
    /// Names are taken as given (they live inside lab namespaces).
    pub fn veth(&self, ns_a: &str, a: &str, ns_b: &str, b: &str) -> anyhow::Result<()> {
        let tmp_a = self.name(&format!("x{a}"));
        let tmp_b = self.name(&format!("y{b}"));
        sh(&[
            "ip", "link", "add", &tmp_a, "type", "veth", "peer", "name", &tmp_b,
        ])?;
        register(Res::Link(tmp_a.clone()));
        sh(&["ip", "link", "set", &tmp_a, "netns", ns_a, "name", a])?;
        sh(&["ip", "link", "set", &tmp_b, "netns", ns_b, "name", b])?;
        sh(&["ip", "-n", ns_a, "link", "set", a, "up"])?;
        sh(&["ip", "-n", ns_b, "link", "set", b, "up"])?;
        Ok(())
    }

    /// Creates a bridge in `ns` and enslaves `ports`.
    pub fn bridge(&self, ns: &str, name: &str, ports: &[&str]) -> anyhow::Result<()> {
        sh(&["ip", "-n", ns, "link", "add", name, "type", "bridge"])?;
        for p in ports {
            sh(&["ip", "-n", ns, "link", "set", p, "master", name])?;
        }
        sh(&["ip", "-n", ns, "link", "set", name, "up"])?;
        Ok(())
    }

    /// Creates a persistent TAP device in `ns`, up.
    pub fn tap(&self, ns: &str, name: &str) -> anyhow::Result<()> {
        sh(&["ip", "-n", ns, "tuntap", "add", "dev", name, "mode", "tap"])?;
        sh(&["ip", "-n", ns, "link", "set", name, "up"])?;
        Ok(())
    }

    /// Runs `cmd` inside `ns` and waits for it.
    pub fn exec(&self, ns: &str, cmd: &[&str]) -> anyhow::Result<String> {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(cmd);
        sh(&v)
    }

    /// Starts `cmd` inside `ns`; it is stopped when the lab is removed. Output goes to
    /// `log` (a file) when given.
    pub fn spawn(
        &self,
        ns: &str,
        cmd: &[&str],
        log: Option<&std::path::Path>,
    ) -> anyhow::Result<u32> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(cmd).stdin(Stdio::null());
        match log {
            Some(p) => {
                let f = std::fs::File::create(p)?;
                c.stdout(f.try_clone()?).stderr(f);
            }
            None => {
                c.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = c
            .spawn()
            .with_context(|| format!("starting `{}` in {ns}", cmd.join(" ")))?;
        let id = child.id();
        register(Res::Proc(child));
        Ok(id)
    }

    /// MAC address of `dev` in `ns`.
    pub fn mac(&self, ns: &str, dev: &str) -> anyhow::Result<String> {
        let out = self.exec(ns, &["cat", &format!("/sys/class/net/{dev}/address")])?;
        Ok(out.trim().to_string())
    }
}

/// Runs `f` with the calling thread inside named namespace `ns`, then switches back.
pub fn in_netns<T>(ns: &str, f: impl FnOnce() -> T) -> anyhow::Result<T> {
    let orig = std::fs::File::open("/proc/thread-self/ns/net").context("open own netns")?;
    let target = std::fs::File::open(format!("/run/netns/{ns}"))
        .with_context(|| format!("netns {ns} not found"))?;
    // SAFETY: setns on valid namespace descriptors for this thread only.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns({ns}): {}", std::io::Error::last_os_error());
    }
    let r = f();
    // SAFETY: as above, back to the original namespace.
    if unsafe { libc::setns(orig.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns(back): {}", std::io::Error::last_os_error());
    }
    Ok(r)
}

impl Drop for Lab {
    fn drop(&mut self) {
        cleanup_all();
    }
}
