//! `keyserver`: the SD-WAN key server VNF.
//!
//! ```text
//! keyserver check CONFIG            validate the configuration, print one line
//! keyserver run CONFIG [--seconds N]  serve (until killed, or for N seconds)
//! keyserver api METHOD PATH [-d JSON|@FILE] [--connect ADDR]
//!                                   the management API's client
//! ```
//!
//! `run` prints `keyserver: listening on ADDR` once bound, and with `server.metrics`
//! set serves `GET /metrics`, `POST /revoke?id=CPE` and the management API
//! (`/restconf`, RFC 8040; the model is `yang/keyserver@2026-12-02.yang`, see
//! `keyserver::mgmt`) there. `api` prints the answer and exits 1 with the server's
//! error-message when it refused. Exit status: 0 done, 1 failed (one line on
//! stderr), 2 bad usage.

use keyserver::config::Config;
use keyserver::udp::UdpServer;
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: keyserver check CONFIG | keyserver run CONFIG [--seconds N] | \
                     keyserver api METHOD PATH [-d JSON|@FILE] [--connect ADDR (127.0.0.1:9100)]";

/// A management API request handed to the server's thread, with where to answer.
type MgmtRequest = (
    dataplane::http::Request,
    mpsc::Sender<dataplane::restconf::Answer>,
);

/// `keyserver api METHOD PATH [-d DATA] [--connect ADDR]`.
fn api(args: &[String]) -> ExitCode {
    let (Some(method), Some(path)) = (args.first(), args.get(1)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let (mut data, mut connect) = (None, "127.0.0.1:9100".to_string());
    let mut rest = args[2..].iter();
    while let Some(a) = rest.next() {
        match (a.as_str(), rest.next()) {
            ("-d" | "--data", Some(d)) => data = Some(d.clone()),
            ("--connect", Some(c)) => connect = c.clone(),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    match dataplane::http::restconf_call(&connect, method, path, data.as_deref()) {
        Ok(a) => {
            if !a.is_empty() {
                println!("{a}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keyserver: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("api") {
        return api(&args[1..]);
    }
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
    let (mtx, mrx) = mpsc::channel::<MgmtRequest>();
    let mut mgmt = keyserver::mgmt::Mgmt::new(cfg);
    let _http = match cfg.server.metrics {
        None => None,
        Some(m) => {
            let st = stats.clone();
            let tx = std::sync::Mutex::new(tx);
            let mtx = std::sync::Mutex::new(mtx);
            let h: dataplane::http::Handler = Arc::new(move |r| {
                use dataplane::http::Response;
                if r.path == "/restconf" || r.path.starts_with("/restconf/") {
                    // Answered on the server's thread, between two rounds.
                    let (atx, arx) = mpsc::channel();
                    if !matches!(mtx.lock().map(|t| t.send((r.clone(), atx))), Ok(Ok(()))) {
                        return Response::error(503, "server stopping");
                    }
                    return match arx.recv_timeout(Duration::from_secs(5)) {
                        Ok(a) => {
                            let yang = r.path.starts_with("/restconf/yang/") && a.status == 200;
                            Response {
                                status: a.status,
                                content_type: if yang {
                                    "application/yang"
                                } else {
                                    keyserver::mgmt::MEDIA
                                },
                                body: a.body,
                            }
                        }
                        Err(_) => Response::error(503, "server busy"),
                    };
                }
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
        while let Ok((r, reply)) = mrx.try_recv() {
            let a = mgmt.handle(&mut srv, &r.method, &r.path, &r.query, &r.body);
            let _ = reply.send(a);
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
