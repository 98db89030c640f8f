//! `keyserver`: the SD-WAN key server VNF.
//!
//! ```text
//! keyserver check CONFIG            validate the configuration, print one line
//! keyserver run CONFIG [--seconds N]  serve (until killed, or for N seconds)
//! ```
//!
//! `run` prints `keyserver: listening on ADDR` once bound, and with `server.metrics`
//! set serves `GET /metrics` and `POST /revoke?id=CPE` there. Exit status: 0 done,
//! 1 failed (one line on stderr), 2 bad usage.

use keyserver::config::Config;
use keyserver::udp::UdpServer;
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: keyserver check CONFIG | keyserver run CONFIG [--seconds N]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, path) = match (args.first(), args.get(1)) {
        (Some(c), Some(p)) => (c.as_str(), p.as_str()),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut seconds = None;
    let mut rest = args[2..].iter();
    while let Some(a) = rest.next() {
        match (a.as_str(), rest.next().map(|s| s.parse::<f64>())) {
            ("--seconds", Some(Ok(s))) if s > 0.0 => seconds = Some(Duration::from_secs_f64(s)),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let cfg = match Config::load(Path::new(path)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keyserver: {e}");
            return ExitCode::from(1);
        }
    };
    match cmd {
        "check" => {
            println!(
                "keyserver: {path}: ok ({} CPEs, {} groups)",
                cfg.cpes.len(),
                cfg.groups.len()
            );
            ExitCode::SUCCESS
        }
        "run" => match run(&cfg, seconds) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("keyserver: {e}");
                ExitCode::from(1)
            }
        },
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(cfg: &Config, seconds: Option<Duration>) -> Result<(), String> {
    let mut srv = UdpServer::bind(cfg).map_err(|e| e.to_string())?;
    let addr = srv.local_addr().map_err(|e| e.to_string())?;
    println!("keyserver: listening on {addr}");
    let stats = dataplane::http::Published::new(srv.stats());
    let (tx, rx) = mpsc::channel::<String>();
    let _http = match cfg.server.metrics {
        None => None,
        Some(m) => {
            let st = stats.clone();
            let tx = std::sync::Mutex::new(tx);
            let h: dataplane::http::Handler = Arc::new(move |r| {
                use dataplane::http::Response;
                match (r.method.as_str(), r.path.as_str()) {
                    ("GET", "/metrics") => {
                        Response::metrics(keyserver::metrics::render(&st.get().unwrap_or_default()))
                    }
                    ("POST", "/revoke") => {
                        let id = r.query.strip_prefix("id=").unwrap_or("");
                        if id.is_empty() {
                            return Response::error(400, "revoke needs ?id=CPE");
                        }
                        match tx.lock().map(|t| t.send(id.to_string())) {
                            Ok(Ok(())) => Response::text(format!("revoking {id}\n")),
                            _ => Response::error(503, "server stopping"),
                        }
                    }
                    _ => Response::error(404, "not found"),
                }
            });
            let s = dataplane::http::HttpServer::spawn(&m.to_string(), h)
                .map_err(|e| format!("metrics {m}: {e}"))?;
            println!("keyserver: metrics on http://{}/metrics", s.addr());
            Some(s)
        }
    };
    let start = Instant::now();
    let mut last_err = None;
    loop {
        if seconds.is_some_and(|s| start.elapsed() >= s) {
            return Ok(());
        }
        srv.run_once(Duration::from_millis(100))
            .map_err(|e| format!("socket: {e}"))?;
        while let Ok(id) = rx.try_recv() {
            if let Err(e) = srv.revoke(&id) {
                eprintln!("keyserver: revoke: {e}");
            }
        }
        for r in srv.server.take_revoked() {
            println!(
                "keyserver: {} revoked, peers acknowledged in {} ms",
                r.id, r.took_ms
            );
        }
        for id in srv.server.take_down() {
            println!("keyserver: {id} down (liveness checks unanswered), its peers told to drop their SAs");
        }
        if srv.last_error != last_err {
            if let Some(e) = &srv.last_error {
                eprintln!("keyserver: journal: {e}");
            }
            last_err = srv.last_error.clone();
        }
        let s = srv.stats();
        stats.try_publish(|v| *v = s);
    }
}
