//! Helpers of the namespace labs that run the `vbng` binary against real clients
//! and servers (`ipoe_clients.rs`, `ipoe_relay_dnsmasq.rs`).
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

pub fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(st.success(), "{args:?} failed");
}

pub fn ns_sh(ns: &str, cmd: &str) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", cmd])
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

pub struct Lab {
    pub ns: Vec<String>,
    pub dir: std::path::PathBuf,
    pub children: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.ns {
            // dhclient may still run in the namespace: kill what is left there.
            let _ = Command::new("ip")
                .args(["netns", "pids", n])
                .output()
                .map(|o| {
                    for p in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                        let _ = Command::new("kill").args(["-9", p]).status();
                    }
                });
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn need(tools: &[&str]) {
    for t in tools {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "{t} not found (Debian udhcpc, isc-dhcp-client, busybox, curl)"
        );
    }
}

/// The value of a Prometheus sample line starting with `prefix`.
pub fn sample(m: &str, prefix: &str) -> Option<f64> {
    m.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}
