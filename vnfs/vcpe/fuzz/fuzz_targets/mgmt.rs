//! Fuzz target: arbitrary management API requests (`vcpe::mgmt`) against the vCPE of
//! site A (no worker attached: a change that passes every check is applied to the
//! configuration, and state reports come back empty). The first byte picks the
//! method; the rest is `PATH \0 QUERY \0 BODY`. Nothing may panic, and every answer is
//! a status in 200..=599 with an RFC 8040 error body on a refusal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};

fn mgmt() -> &'static Mutex<vcpe::mgmt::Mgmt> {
    static M: OnceLock<Mutex<vcpe::mgmt::Mgmt>> = OnceLock::new();
    M.get_or_init(|| {
        let cfg = vcpe::Config::from_toml(include_str!("../../examples/vcpe-a.toml"))
            .expect("example config");
        let v = vcpe::vnf::Vcpe::new(&cfg, &[]).expect("build");
        Mutex::new(vcpe::mgmt::Mgmt::new(&v, Vec::new(), None, None))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = ["GET", "PUT", "PATCH", "POST", "DELETE", "HEAD"][usize::from(m) % 6];
    let mut parts = rest.splitn(3, |b| *b == 0);
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default();
    let path = format!("/restconf/data/vcpe:vcpe{path}");
    let Ok(mut g) = mgmt().lock() else {
        return;
    };
    let a = g.handle(method, &path, &query, body, &[]);
    assert!((200..600).contains(&a.status));
    if a.status >= 400 {
        assert!(a.body.contains("ietf-restconf:errors"), "{}", a.body);
    }
});
