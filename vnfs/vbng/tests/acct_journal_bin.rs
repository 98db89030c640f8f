//! The `vbng` binary with `radius.acct_journal` (RFC 2866 §2: accounting survives a
//! restart): a journal left by a previous run holds an unacknowledged Stop; the binary
//! replays it at start to the accounting server (a UDP socket of this test on
//! loopback) with Acct-Delay-Time counting the time since the record was made, the
//! test acknowledges it, and the journal is empty when the binary exits. Ports are
//! pcap files (no subscriber traffic).

use dataplane::proto::radius::{attr, code, verify_request_md5, Builder, Packet};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vbng::acct_journal::AcctJournal;
use vbng::radius::{self, AcctRecord, AcctStatus, JournalOp, LineInfo};

#[test]
fn binary_replays_journaled_stop_after_restart() {
    let dir = std::env::temp_dir().join(format!("vbng-acct-journal-bin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let journal = dir.join("acct.journal");
    // What the previous run left: one Stop, made 7 s before it stopped.
    let rec = AcctRecord {
        session_id: "00c0ffee00000007".into(),
        user: b"alice".to_vec(),
        terminate_cause: Some(radius::terminate_cause::USER_REQUEST),
        ..Default::default()
    };
    let stop = radius::accounting_request(&LineInfo::default(), AcctStatus::Stop, &rec);
    {
        let (mut j, r) = AcctJournal::open(&journal).expect("journal");
        assert!(r.is_empty());
        j.write(&[JournalOp::Add {
            id: 5,
            age_ms: 7_000,
            req: stop,
        }])
        .expect("write");
    }
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    server
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let acct = server.local_addr().expect("addr");
    let cfg = dir.join("vbng.toml");
    std::fs::write(
        &cfg,
        format!(
            "[radius]\nauth = [{{ addr = \"127.0.0.1:9\", secret = \"s\" }}]\nacct = [{{ addr = \"{acct}\", secret = \"s\" }}]\ntimeout_ms = 300\nacct_journal = \"{}\"\n",
            journal.display()
        ),
    )
    .expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_vbng"))
        .arg("run")
        .arg("-c")
        .arg(&cfg)
        .arg("--access")
        .arg(format!("pcap::{}", dir.join("access.pcap").display()))
        .arg("--core")
        .arg(format!("pcap::{}", dir.join("core.pcap").display()))
        .args(["--max-sessions", "64", "--duration", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vbng");
    let mut buf = [0u8; 4096];
    let t = Instant::now();
    let (n, from) = loop {
        if let Ok(x) = server.recv_from(&mut buf) {
            break x;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no Accounting-Request"
        );
    };
    let p = Packet::new_checked(&buf[..n]).expect("packet");
    assert_eq!(p.code(), code::ACCOUNTING_REQUEST);
    assert!(verify_request_md5(&p, b"s"));
    assert_eq!(
        p.attr(attr::ACCT_SESSION_ID),
        Some(&b"00c0ffee00000007"[..])
    );
    assert_eq!(p.attr_u32(attr::ACCT_STATUS_TYPE), Some(2));
    let delay = p.attr_u32(attr::ACCT_DELAY_TIME).expect("Acct-Delay-Time");
    assert!((7..30).contains(&delay), "Acct-Delay-Time {delay}");
    let resp = Builder::new(code::ACCOUNTING_RESPONSE, p.id(), [0; 16])
        .finish_response(b"s", &p.authenticator())
        .expect("response");
    server.send_to(&resp, from).expect("send");
    let out = child.wait_with_output().expect("vbng");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("1 unacknowledged accounting records replayed"),
        "{err}"
    );
    let (_, left) = AcctJournal::open(&journal).expect("journal");
    assert!(left.is_empty(), "acknowledged record still journaled");
    let _ = std::fs::remove_dir_all(&dir);
}
