//! What the DPDK interop tests (`memif_testpmd.rs`, `vhost_user_testpmd.rs`) share:
//! the skip check, a `dpdk-testpmd` child in interactive mode with its output
//! collected, the test frames and the probe that waits for a queue pair to forward.

#![allow(dead_code)]

use dataplane::batch::Batch;
use dataplane::buf::PoolCache;
use dataplane::port::Port;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why the test cannot run here (not root, no `dpdk-testpmd`; `install` names the
/// packages to install), or `None`.
pub fn skip_reason(install: &str) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("dpdk-testpmd").is_file()))
        .unwrap_or(false);
    if !found {
        return Some(format!(
            "dpdk-testpmd not installed (apt-get install {install})"
        ));
    }
    None
}

/// A running testpmd in interactive mode, its output collected line by line.
pub struct Testpmd {
    pub child: Child,
    /// `--file-prefix`: DPDK's run-time directory is /var/run/dpdk/PREFIX.
    pub prefix: String,
    stdin: ChildStdin,
    pub out: Arc<Mutex<Vec<String>>>,
}

impl Testpmd {
    /// Starts `dpdk-testpmd -i` with `vdev` and forwarding mode `fwd` (and `extra`
    /// arguments after `-i`), its run-time directory named `PREFIX TAG PID`. Output is
    /// line-buffered (coreutils' stdbuf), so start-up lines reach us at once.
    pub fn spawn_named(prefix: &str, tag: &str, vdev: &str, fwd: &str, extra: &[&str]) -> Testpmd {
        let prefix = format!("{prefix}{tag}{}", std::process::id());
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "dpdk-testpmd",
                "-l",
                "0,1",
                "--no-pci",
                "--no-huge",
                "-m",
                "512",
                &format!("--file-prefix={prefix}"),
                "--vdev",
                vdev,
                "--",
                "-i",
                &format!("--forward-mode={fwd}"),
                "--total-num-mbufs=8192",
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dpdk-testpmd");
        let out = Arc::new(Mutex::new(Vec::new()));
        for r in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let o = out.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(r).lines().map_while(Result::ok) {
                    o.lock().unwrap().push(l);
                }
            });
        }
        let stdin = child.stdin.take().unwrap();
        Testpmd {
            child,
            prefix,
            stdin,
            out,
        }
    }

    pub fn cmd(&mut self, c: &str) {
        let _ = writeln!(self.stdin, "{c}");
        let _ = self.stdin.flush();
    }

    pub fn text(&self) -> String {
        self.out.lock().unwrap().join("\n")
    }

    /// Sends `show`, stops and quits testpmd (calling `poll` meanwhile, e.g. when
    /// our side must answer its `GET_VRING_BASE`s) and returns all its output.
    pub fn quit_with(&mut self, show: &str, poll: &mut dyn FnMut()) -> Vec<String> {
        self.cmd(show);
        self.cmd("stop");
        self.cmd("quit");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            poll();
            std::thread::sleep(Duration::from_millis(1));
        }
        // let the reader threads drain the pipes
        std::thread::sleep(Duration::from_millis(200));
        let lines = self.out.lock().unwrap().clone();
        lines
    }
}

/// Port 0's RX/TX packets and bytes in testpmd's `show port stats all` output.
pub fn port0_stats(lines: &[String]) -> (u64, u64, u64, u64) {
    let from = lines
        .iter()
        .position(|l| l.contains("NIC statistics for port 0"))
        .unwrap_or_else(|| panic!("no port statistics from testpmd:\n{}", lines.join("\n")));
    let lines = &lines[from..];
    let field = |key: &str| -> u64 {
        lines
            .iter()
            .find_map(|l| {
                let i = l.find(key)?;
                l[i + key.len()..].split_whitespace().next()?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
    };
    (
        field("RX-packets:"),
        field("RX-bytes:"),
        field("TX-packets:"),
        field("TX-bytes:"),
    )
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        self.cmd("stop");
        self.cmd("quit");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.prefix));
    }
}

/// Test frame `i`: 60 to 1514 bytes, numbered at offset 14, a local experimental
/// EtherType.
pub fn frame(i: usize) -> Vec<u8> {
    let len = 60 + (i * 53) % 1455;
    let mut f: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xaa]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xbb]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f[14..18].copy_from_slice(&(i as u32).to_be_bytes());
    f
}

/// [`frame`] carrying the queue it is sent on.
pub fn frame_tagged(i: usize, q: u8) -> Vec<u8> {
    let mut f = frame(i);
    f[18] = q;
    f
}

/// Sends probes (EtherType 0x88b6) on queue `q`'s `port` until one comes back (30 s
/// at most): testpmd drops what arrives before its pair forwards. Between polls the
/// thread sleeps a little: on a two-core machine testpmd's own polling cores and
/// connection handling need the CPU more than a probe loop does.
pub fn probe_until_back(port: &mut dyn Port, c: &mut PoolCache, q: u8) {
    let t = Instant::now();
    loop {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "queue {q}: no probe came back"
        );
        let mut tx = Batch::new();
        let mut p = c.alloc().unwrap();
        let mut f = frame_tagged(0, q);
        f[12..14].copy_from_slice(&[0x88, 0xb6]);
        p.copy_from(&f).unwrap();
        tx.push(p).unwrap();
        port.tx_burst(c, &mut tx);
        tx.free_all(c);
        let w = Instant::now();
        while w.elapsed() < Duration::from_millis(50) {
            let mut rx = Batch::new();
            port.rx_burst(c, &mut rx);
            let back = rx
                .iter()
                .any(|p| p.data().get(12..14) == Some(&[0x88, 0xb6][..]));
            rx.free_all(c);
            if back {
                return;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}
