//! Issue 19: the key server's management API. The YANG module passes `yanglint`
//! (strict) and `pyang`; what `GET` returns validates against it; the rekey interval
//! changes at run time (the tunnels rotate at the new pace while the CPEs keep
//! exchanging ESP), revocation works as a YANG action, as an RPC and still as
//! `POST /revoke`; invalid changes are refused whole with an RFC 8040 error body;
//! no key or PSK ever appears; the binary serves the API and `keyserver api` is its
//! client.
//!
//! Fails (does not skip) without `yanglint` (Debian libyang2-tools).

mod common;
use common::*;
use keyserver::config::Config;
use keyserver::mgmt::{Mgmt, YANG};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const YANG_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/yang/keyserver@2026-12-02.yang"
);

fn yanglint(kind: &str, data: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("ks-mgmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join(format!("{kind}-{}.json", data.len()));
    std::fs::write(&f, data).expect("write");
    let o = Command::new("yanglint")
        .args(["-t", kind])
        .arg(YANG_FILE)
        .arg(&f)
        .output()
        .expect("yanglint (Debian libyang2-tools; scripts/setup installs it)");
    let _ = std::fs::remove_file(&f);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn error_tag(body: &str) -> String {
    json_of(body)["ietf-restconf:errors"]["error"][0]["error-tag"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn the_module_passes_yanglint_and_pyang() {
    let o = Command::new("yanglint")
        .arg(YANG_FILE)
        .output()
        .expect("yanglint (Debian libyang2-tools)");
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let pyang = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/pyang");
    if std::path::Path::new(pyang).exists() {
        let o = Command::new(pyang).arg(YANG_FILE).output().expect("pyang");
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    } else {
        eprintln!("skipping pyang: {pyang} absent (scripts/setup makes it)");
    }
    assert!(YANG.contains("module keyserver"));
}

fn config() -> Config {
    let mut t = server_toml(3600.0, 0.25, None);
    t.push_str("[[group]]\nname = \"g\"\ntopology = \"full-mesh\"\n\n");
    for (k, id) in ["a", "b", "c"].iter().enumerate() {
        t.push_str(&cpe_toml(id, k + 1, &["g"]));
    }
    Config::from_toml(&t).expect("config")
}

#[test]
fn rekey_interval_and_revocation_at_run_time() {
    let cfg = config();
    let srv = ServerThread::start(&cfg);
    let mut m = Mgmt::new(&cfg);
    let mut call = |method: &str, path: &str, body: &str| {
        let mut s = srv.srv.lock().unwrap();
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        m.handle(&mut s, method, path, query, body.as_bytes())
    };
    let mut cpes = vec![
        Cpe::new("a", srv.addr),
        Cpe::new("b", srv.addr),
        Cpe::new("c", srv.addr),
    ];
    assert!(run_until(&mut cpes, 10.0, |c| c.iter().all(Cpe::synced)
        && srv.stats().served == 3));
    let st = json_of(&call("GET", "/restconf/data/keyserver:keyserver/state", "").body);
    let st = &st["keyserver:state"];
    assert_eq!(st["served"], 3, "{st}");
    assert_eq!(st["cpe"][0]["up"], true, "{st}");
    assert_eq!(st["cpe"][0]["tunnel"].as_array().map(Vec::len), Some(2));
    let gen0 = st["cpe"][0]["tunnel"][0]["sa-generation"].as_u64().unwrap();
    assert!(st["cpe"][0]["tunnel"][0]["seconds-since-rekey"].is_null());

    // Invalid changes, refused whole: an interval of 0; a new interval together
    // with a new CPE (not at run time); an unknown leaf.
    let zero = call(
        "PATCH",
        "/restconf/data/keyserver:keyserver/server",
        r#"{"keyserver:server":{"rekey-interval":0}}"#,
    );
    assert_eq!(zero.status, 400, "{}", zero.body);
    assert_eq!(error_tag(&zero.body), "invalid-value");
    let add = call(
        "PATCH",
        "/restconf/data/keyserver:keyserver",
        r#"{"keyserver:keyserver":{"server":{"rekey-interval":1},"cpe":[{"id":"d"}]}}"#,
    );
    assert_eq!(add.status, 501, "{}", add.body);
    assert_eq!(error_tag(&add.body), "operation-not-supported");
    let unknown = call(
        "PATCH",
        "/restconf/data/keyserver:keyserver/cpe=a",
        r#"{"keyserver:cpe":[{"id":"a","colour":"blue"}]}"#,
    );
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    let conf = json_of(
        &call(
            "GET",
            "/restconf/data/keyserver:keyserver?content=config",
            "",
        )
        .body,
    );
    assert_eq!(
        conf["keyserver:keyserver"]["server"]["rekey-interval"],
        3600
    );
    assert_eq!(srv.stats().rekeys, 0);

    // The interval to 1 s: the tunnels rotate within about a second, while a and b
    // keep exchanging ESP.
    let a = call(
        "PATCH",
        "/restconf/data/keyserver:keyserver/server",
        r#"{"keyserver:server":{"rekey-interval":1}}"#,
    );
    assert_eq!(a.status, 204, "{}", a.body);
    let pair = cpes[0].pair_with("b").expect("pair a-b");
    let t = Instant::now();
    let (mut sent, mut ok) = (0u64, 0u64);
    while srv.stats().rekeys < 3 {
        assert!(t.elapsed() < Duration::from_secs(15), "no rotation");
        let p = cpes[0]
            .encrypt(pair, Cpe::lan(1, 5), Cpe::lan(2, 6), 0)
            .expect("a sending SA");
        sent += 1;
        for c in cpes.iter_mut() {
            c.step(1);
        }
        if cpes[1].decrypt(&p) {
            ok += 1;
        }
    }
    assert_eq!(ok, sent, "ESP kept flowing across the rotations");
    let v = json_of(&call("GET", "/restconf/data/keyserver:keyserver", "").body);
    let t0 = &v["keyserver:keyserver"]["state"]["cpe"][0]["tunnel"][0];
    assert!(t0["sa-generation"].as_u64().unwrap() > gen0, "{t0}");
    assert!(
        !t0["seconds-since-rekey"].is_null() || t0["rekeying"] == true,
        "{t0}"
    );
    // Back to a long interval for the rest.
    let a = call(
        "PUT",
        "/restconf/data/keyserver:keyserver/server/rekey-interval",
        r#"{"keyserver:rekey-interval":3600}"#,
    );
    assert_eq!(a.status, 204, "{}", a.body);

    // Revocation as the YANG action: b's peers delete their SAs with it.
    let r = call(
        "POST",
        "/restconf/data/keyserver:keyserver/cpe=b/revoke",
        "",
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(run_until(&mut cpes, 10.0, |c| c[0]
        .pair_with("b")
        .is_none()
        && c[2].pair_with("b").is_none()));
    let again = call(
        "POST",
        "/restconf/data/keyserver:keyserver/cpe=b/revoke",
        "",
    );
    assert_eq!(again.status, 409, "{}", again.body);
    // As the RPC; an unknown CPE is a 404.
    let r = call(
        "POST",
        "/restconf/operations/keyserver:revoke",
        r#"{"keyserver:input":{"id":"nobody"}}"#,
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = call(
        "POST",
        "/restconf/operations/keyserver:revoke",
        r#"{"keyserver:input":{"id":"c"}}"#,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(run_until(&mut cpes, 10.0, |c| c[0]
        .pair_with("c")
        .is_none()));
    // Un-revoking is refused.
    let un = call(
        "PATCH",
        "/restconf/data/keyserver:keyserver/cpe=c",
        r#"{"keyserver:cpe":[{"id":"c","revoked":false}]}"#,
    );
    assert_eq!(un.status, 501, "{}", un.body);

    // The whole tree validates; config alone too; no PSK in it.
    let all = call("GET", "/restconf/data/keyserver:keyserver", "");
    let v = json_of(&all.body);
    assert_eq!(v["keyserver:keyserver"]["state"]["revocations"], "2");
    assert_eq!(v["keyserver:keyserver"]["cpe"][1]["revoked"], true);
    assert!(!all.body.contains("secret-of-"), "no PSK in the answer");
    let (ok, err) = yanglint("data", &all.body);
    assert!(ok, "{err}\n{}", all.body);
    let conf = call(
        "GET",
        "/restconf/data/keyserver:keyserver?content=config",
        "",
    );
    let (ok, err) = yanglint("config", &conf.body);
    assert!(ok, "{err}\n{}", conf.body);
    let mut broken = json_of(&conf.body);
    broken["keyserver:keyserver"]["server"]["rekey-interval"] = Value::from(0);
    assert!(!yanglint("config", &broken.to_string()).0);
}

#[test]
fn keyserver_binary_serves_the_api() {
    let dir = std::env::temp_dir().join(format!("ks-mgmt-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut t = server_toml(3600.0, 1.0, None).replace(
        "retransmit_ms",
        &format!("metrics = \"{addr}\"\nretransmit_ms"),
    );
    t.push_str("[[group]]\nname = \"g\"\ntopology = \"full-mesh\"\n\n");
    for (k, id) in ["a", "b", "c"].iter().enumerate() {
        t.push_str(&cpe_toml(id, k + 1, &["g"]));
    }
    let cfg_path = dir.join("ks.toml");
    std::fs::write(&cfg_path, t).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyserver"))
        .arg("run")
        .arg(&cfg_path)
        .args(["--seconds", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("keyserver");
    let api = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keyserver"))
            .arg("api")
            .args(args)
            .args(["--connect", &addr])
            .output()
            .expect("keyserver api")
    };
    let t0 = Instant::now();
    let mut got = api(&["GET", "/keyserver:keyserver/state"]);
    while !got.status.success() && t0.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
        got = api(&["GET", "/keyserver:keyserver/state"]);
    }
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let v: Value = serde_json::from_slice(&got.stdout).expect("json");
    assert_eq!(v["keyserver:state"]["cpes"], 3, "{v}");
    let r = api(&[
        "POST",
        "/restconf/operations/keyserver:revoke",
        "-d",
        r#"{"keyserver:input":{"id":"b"}}"#,
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // POST /revoke?id= still works.
    let (status, _) = dataplane::http::request(&addr, "POST", "/revoke?id=c", "text/plain", b"")
        .expect("POST /revoke");
    assert_eq!(status, 200);
    let t1 = Instant::now();
    loop {
        let g = api(&["GET", "/keyserver:keyserver/state/revocations"]);
        if String::from_utf8_lossy(&g.stdout).contains("\"2\"") {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(5),
            "revocations not seen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A refusal: exit 1, one line with the server's error-message.
    let bad = api(&[
        "PATCH",
        "/keyserver:keyserver/server",
        "-d",
        r#"{"keyserver:server":{"rekey-interval":0}}"#,
    ]);
    let err = String::from_utf8_lossy(&bad.stderr).to_string();
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("HTTP 400") && err.contains("rekey-interval"),
        "{err}"
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
