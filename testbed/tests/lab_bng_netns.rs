//! `testbed lab bng --netns --radius --hostile` end to end (root): 10,000 emulated
//! PPPoE subscribers come up through the `vbng` binary in a namespace lab against
//! FreeRADIUS, pass traffic both ways without loss, and go down with PADT; the
//! server-side records (FreeRADIUS's log and accounting detail files) show every
//! Access-Accept and Accounting Start/Stop; the hostile subscriber never comes up;
//! tshark finds no malformed frame and no warning among our frames in the access-link
//! capture (the traffic's zero UDP payload is decoded as data). Fails (does not skip)
//! without root, `ip`, `tshark` or `freeradius`. `LAB_BNG_NETNS_SESSIONS` overrides
//! the subscriber count.

mod netns_lab;

use netns_lab::{lab_setup, u};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn tshark(cap: &Path, extra: &[&str], filter: &str) -> Vec<String> {
    let o = Command::new("tshark")
        .arg("-r")
        .arg(cap)
        .args(extra)
        .args(["-Y", filter])
        .output()
        .expect("running tshark -r");
    assert!(
        o.status.success(),
        "tshark -r {filter:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn tshark_fields(cap: &Path, filter: &str, fields: &[&str]) -> Vec<String> {
    let mut c = Command::new("tshark");
    c.arg("-r").arg(cap).args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        c.args(["-e", f]);
    }
    let o = c.output().expect("running tshark -r");
    assert!(
        o.status.success(),
        "tshark -r {filter:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.split('\t').count() == fields.len())
        .map(str::to_string)
        .collect()
}

#[test]
fn ten_thousand_subscribers_with_freeradius_in_a_namespace_lab() {
    let (testbed, vbng) = lab_setup(
        &[("tshark", "tshark"), ("freeradius", "freeradius")],
        &["vbng"],
    );
    let n: u64 = std::env::var("LAB_BNG_NETNS_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let cap = std::env::temp_dir().join(format!("lab-bng-netns-{}.pcap", std::process::id()));
    let t0 = Instant::now();
    let out = Command::new(&testbed)
        .args([
            "lab",
            "bng",
            "--netns",
            "--radius",
            "--hostile",
            "--auth",
            "chap",
        ])
        .args(["--sessions", &n.to_string(), "--packets", "20000"])
        .args(["--timeout", "120", "--json", "--vbng"])
        .arg(&vbng)
        .arg("--capture")
        .arg(&cap)
        .output()
        .expect("running testbed");
    let wall = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "testbed lab bng --netns failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}\n{stderr}"));
    eprintln!(
        "{n} sessions: {:.0}/s, p99 {} ms, upstream {} Mpps, lab {:.1} s",
        r["setup_rate_per_s"].as_f64().unwrap_or(0.0),
        r["setup_p99_ms"],
        r["throughput_mpps"],
        wall.as_secs_f64()
    );

    // Every subscriber came up, nothing failed.
    assert_eq!(
        u(&r, &["sessions_established"]),
        n,
        "failures by phase: {}\nBNG: {}",
        r["setup"]["failed_by_phase"],
        r["bng_errors"]
    );
    assert_eq!(r["setup"]["failed_by_phase"], serde_json::json!({}));
    assert_eq!(u(&r, &["bng", "sessions_up"]), n, "the BNG's own count");
    // The hostile subscriber did not get up, and failed at authentication.
    assert_eq!(
        r["hostile"]["came_up"],
        serde_json::json!(false),
        "{}",
        r["hostile"]
    );
    assert_eq!(
        r["hostile"]["failed_in"],
        serde_json::json!("auth"),
        "{}",
        r["hostile"]
    );
    assert!(
        u(&r, &["hostile", "garbage_frames"]) > 0,
        "{}",
        r["hostile"]
    );
    assert!(
        u(&r, &["bng", "padi_rate_limited"]) > 0,
        "the PADI flood was limited"
    );
    // What FreeRADIUS recorded: one accept per subscriber, the hostile reject, and a
    // Start and a Stop per session.
    assert_eq!(u(&r, &["radius", "access_accepts"]), n, "{}", r["radius"]);
    assert!(u(&r, &["radius", "access_rejects"]) >= 1, "{}", r["radius"]);
    assert_eq!(u(&r, &["radius", "acct_starts"]), n, "{}", r["radius"]);
    assert_eq!(u(&r, &["radius", "acct_stops"]), n, "{}", r["radius"]);
    // Traffic both ways without loss; every session went down with PADT.
    assert_eq!(u(&r, &["upstream", "sent"]), 20_000);
    assert_eq!(
        u(&r, &["upstream", "received"]),
        20_000,
        "{}",
        r["bng_errors"]
    );
    assert_eq!(
        u(&r, &["downstream", "received"]),
        20_000,
        "{}",
        r["bng_errors"]
    );
    assert_eq!(r["plr"].as_f64(), Some(0.0));
    assert_eq!(u(&r, &["sessions_after_teardown"]), 0);

    // The capture: every subscriber's handshake is in it, and tshark flags none of
    // our frames (the hostile subscriber's garbage is left out on purpose).
    // One pass for the handshake census (tshark is slow on 300k frames in CI).
    let hostile = "02:5c:00:00:00:00";
    let (mut pads, mut padt, mut ipcp_ack) = (0u64, 0u64, 0u64);
    for l in tshark_fields(
        &cap,
        "pppoed || (ipcp && ppp.code == 2)",
        &["eth.src", "eth.dst", "pppoe.code"],
    ) {
        let f: Vec<&str> = l.split('\t').collect();
        let (src, dst, code) = (f[0], f[1], f[2]);
        if src == hostile || dst == hostile {
            continue;
        }
        match code {
            "0x65" => pads += 1,
            "0xa7" if dst == "02:00:00:00:b0:01" => padt += 1,
            "0x00" => ipcp_ack += 1,
            _ => {}
        }
    }
    // The traffic's UDP payload is zeros: decoded by port number (1024 + i → 5001) it
    // would "malform" whatever protocol owns the port, so it is read as data.
    let decode_as = format!("udp.port==1024-{},data", 1024 + n);
    let bad = tshark(
        &cap,
        &["-d", &decode_as],
        "(_ws.malformed || _ws.expert.severity >= warning) && !(eth.addr == 02:5c:00:00:00:00)",
    );
    let _ = std::fs::remove_file(&cap);
    assert!(pads >= n, "PADS frames in the capture: {pads}");
    assert_eq!(padt, n, "PADT frames from the subscribers");
    assert!(
        ipcp_ack >= 2 * n,
        "IPCP Configure-Acks both ways: {ipcp_ack}"
    );
    assert!(
        bad.is_empty(),
        "tshark flags {} of our frames:\n{}",
        bad.len(),
        bad.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(
        wall.as_secs() < 150,
        "the lab took {:.0} s (budget 150 s)",
        wall.as_secs_f64()
    );
}

/// `--access ipoe` against FreeRADIUS (users by MAC) and `--access mixed` against the
/// local user file (root): every IPoE subscriber gets its lease from the `vbng`
/// binary's DHCP server, traffic passes both ways without loss, the JSON has
/// `per_access`, and DHCPRELEASE ends every session (FreeRADIUS: one Accept, Start
/// and Stop each).
#[test]
fn ipoe_and_mixed_subscribers_in_a_namespace_lab() {
    let (testbed, vbng) = lab_setup(&[("freeradius", "freeradius")], &["vbng"]);
    let n = 300u64;
    for (access, radius) in [("ipoe", true), ("mixed", false)] {
        let mut c = Command::new(&testbed);
        c.args(["lab", "bng", "--netns", "--access", access])
            .args(["--sessions", &n.to_string(), "--packets", "20000"])
            .args(["--timeout", "60", "--json", "--vbng"])
            .arg(&vbng);
        if radius {
            c.arg("--radius");
        }
        let out = c.output().expect("running testbed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "testbed lab bng --netns --access {access} failed ({}):\n{stderr}\n{stdout}",
            out.status
        );
        let r: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}\n{stderr}"));
        assert_eq!(u(&r, &["sessions_established"]), n, "{access}: {r}");
        assert_eq!(r["setup"]["failed_by_phase"], serde_json::json!({}));
        assert_eq!(u(&r, &["bng", "sessions_up"]), n, "the BNG's own count");
        assert_eq!(r["plr"].as_f64(), Some(0.0), "{access}: {r}");
        assert_eq!(u(&r, &["upstream", "received"]), 20_000);
        assert_eq!(u(&r, &["downstream", "received"]), 20_000);
        assert_eq!(u(&r, &["sessions_after_teardown"]), 0, "released");
        let ipoe = if access == "mixed" { n / 2 } else { n };
        assert_eq!(u(&r, &["per_access", "ipoe", "sessions_established"]), ipoe);
        assert_eq!(r["per_access"]["ipoe"]["plr"].as_f64(), Some(0.0));
        let shares: u64 = ["pppoe", "ipoe"]
            .iter()
            .filter_map(|a| r["per_access"][a]["upstream"]["received"].as_u64())
            .sum();
        assert_eq!(shares, 20_000, "{}", r["per_access"]);
        if radius {
            for k in ["access_accepts", "acct_starts", "acct_stops"] {
                assert_eq!(u(&r, &["radius", k]), n, "{k}: {}", r["radius"]);
            }
        }
    }
}
