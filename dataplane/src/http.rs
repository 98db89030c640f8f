//! A small HTTP/1.x server for a VNF's management endpoints (`GET /metrics` in the
//! Prometheus text format, `/errors`, VNF-specific pages), served off the data-plane
//! threads (std).
//!
//! The server runs in its own thread and answers each connection in a thread of its
//! own, with read and write timeouts and a cap on concurrent connections, so a
//! scraper that connects and never sends, or never reads, ties up only its own
//! thread and never the data plane. Handlers read state that the data plane
//! *publishes* (a worker copies its counters into a [`Published`] slot with
//! `try_lock`, never waiting for a reader); nothing here runs on a worker thread.
//!
//! Requests are parsed with `httparse` (RFC 9112 §2–3 message syntax); the response
//! always carries `Content-Length` and `Connection: close`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use std::vec::Vec;

/// Most connections answered at once; more are closed without an answer.
pub const MAX_CONNECTIONS: usize = 32;
/// Largest request head or body read.
pub const MAX_REQUEST: usize = 64 * 1024;
/// How long a connection may take to send its request or read the response.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A request as the handler sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query string (after `?`), empty when none.
    pub query: String,
    pub body: Vec<u8>,
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    /// 200 with Prometheus text.
    pub fn metrics(body: String) -> Response {
        Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body,
        }
    }
    /// 200 with plain text.
    pub fn text(body: String) -> Response {
        Response {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
    /// 200 with JSON.
    pub fn json(body: String) -> Response {
        Response {
            status: 200,
            content_type: "application/json",
            body,
        }
    }
    /// An error status with a one-line text body.
    pub fn error(status: u16, msg: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: std::format!("{msg}\n"),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// What answers requests; runs on the server's connection threads.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A running server; stops when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    /// Connections refused because [`MAX_CONNECTIONS`] were busy.
    pub refused: Arc<AtomicUsize>,
}

impl HttpServer {
    /// Binds `addr` (`127.0.0.1:9100`, port 0 for any) and serves `handler`.
    pub fn spawn(addr: &str, handler: Handler) -> std::io::Result<HttpServer> {
        let l = TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        let local = l.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let busy = Arc::new(AtomicUsize::new(0));
        let (st, rf) = (stop.clone(), refused.clone());
        let handle = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((s, _)) => {
                            if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                                busy.fetch_sub(1, Ordering::AcqRel);
                                rf.fetch_add(1, Ordering::Relaxed);
                                drop(s);
                                continue;
                            }
                            let (h, b) = (handler.clone(), busy.clone());
                            let spawned = std::thread::Builder::new()
                                .name("http-conn".into())
                                .spawn(move || {
                                    serve_one(s, &h);
                                    b.fetch_sub(1, Ordering::AcqRel);
                                });
                            if spawned.is_err() {
                                busy.fetch_sub(1, Ordering::AcqRel);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })?;
        Ok(HttpServer {
            addr: local,
            stop,
            handle: Some(handle),
            refused,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve_one(mut s: TcpStream, h: &Handler) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
    let resp = match read_request(&mut s) {
        Ok(req) => h(&req),
        Err(r) => r,
    };
    let head = std::format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(resp.body.as_bytes());
    let _ = s.flush();
}

fn read_request(s: &mut TcpStream) -> Result<Request, Response> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = s
            .read(&mut chunk)
            .map_err(|_| Response::error(400, "request timed out"))?;
        if n == 0 {
            return Err(Response::error(400, "connection closed mid-request"));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        if buf.len() > MAX_REQUEST {
            return Err(Response::error(413, "request too large"));
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let method = req.method.unwrap_or("GET").to_string();
                let target = req.path.unwrap_or("/");
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p.to_string(), q.to_string()),
                    None => (target.to_string(), String::new()),
                };
                let mut len = 0usize;
                for hd in req.headers.iter() {
                    if hd.name.eq_ignore_ascii_case("content-length") {
                        len = std::str::from_utf8(hd.value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok())
                            .ok_or_else(|| Response::error(400, "bad Content-Length"))?;
                    }
                }
                if len > MAX_REQUEST {
                    return Err(Response::error(413, "request too large"));
                }
                let mut body: Vec<u8> = buf.get(head_len..).unwrap_or(&[]).to_vec();
                while body.len() < len {
                    let n = s
                        .read(&mut chunk)
                        .map_err(|_| Response::error(400, "request timed out"))?;
                    if n == 0 {
                        return Err(Response::error(400, "connection closed mid-body"));
                    }
                    body.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                }
                body.truncate(len);
                return Ok(Request {
                    method,
                    path,
                    query,
                    body,
                });
            }
            Ok(httparse::Status::Partial) => continue,
            Err(_) => return Err(Response::error(400, "malformed HTTP request")),
        }
    }
}

/// A value the data plane publishes for readers on other threads: the writer never
/// waits (`try_lock`; a busy slot just skips this update), readers clone it.
#[derive(Debug, Default)]
pub struct Published<T> {
    slot: Mutex<T>,
}

impl<T: Clone> Published<T> {
    pub fn new(v: T) -> Arc<Self> {
        Arc::new(Published {
            slot: Mutex::new(v),
        })
    }

    /// Replaces the value unless a reader holds it right now; returns whether it did.
    pub fn try_publish(&self, f: impl FnOnce(&mut T)) -> bool {
        match self.slot.try_lock() {
            Ok(mut g) => {
                f(&mut g);
                true
            }
            Err(_) => false,
        }
    }

    /// A copy of the latest value.
    pub fn get(&self) -> Option<T> {
        self.slot.lock().ok().map(|g| g.clone())
    }
}

/// A one-shot HTTP request (for CLIs: `vbng api`, tests): `(status, body)`; a body
/// is sent with `content_type`. Errors (connection, no HTTP answer) are one line.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| std::format!("connecting to {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
    let mut req = std::format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: {content_type}\r\n"
    );
    if !body.is_empty() {
        req += &std::format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    req += "\r\n";
    s.write_all(req.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| std::format!("sending to {addr}: {e}"))?;
    let mut r = Vec::new();
    s.read_to_end(&mut r)
        .map_err(|e| std::format!("reading from {addr}: {e}"))?;
    let r = String::from_utf8_lossy(&r).into_owned();
    let (head, body) = r
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::format!("{addr}: no HTTP response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::format!("{addr}: no HTTP status"))?;
    Ok((status, body.to_string()))
}

/// A one-shot HTTP GET (for CLIs: `vbng show`, tests), body only; errors are one
/// line.
pub fn get(addr: &str, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| std::format!("connecting to {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| std::format!("sending to {addr}: {e}"))?;
    let mut r = Vec::new();
    s.read_to_end(&mut r)
        .map_err(|e| std::format!("reading from {addr}: {e}"))?;
    let r = String::from_utf8_lossy(&r).into_owned();
    let (head, body) = r
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::format!("{addr}: no HTTP response"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(std::format!(
            "{addr}{path}: HTTP {status}: {}",
            body.lines().next().unwrap_or("")
        ));
    }
    Ok(body.to_string())
}

/// The client of a VNF's management API (`vcpe api`, `keyserver api`): `method` on
/// `path` (below `/restconf/data` unless it starts with `/restconf`) with the body
/// `data` (JSON, or `@FILE`). The answer's body, or one line with the server's
/// RFC 8040 `error-message` when it refused (status ≥ 400).
pub fn restconf_call(
    connect: &str,
    method: &str,
    path: &str,
    data: Option<&str>,
) -> Result<String, String> {
    let method = method.to_ascii_uppercase();
    if !matches!(method.as_str(), "GET" | "PUT" | "PATCH" | "POST" | "DELETE") {
        return Err(std::format!(
            "method {method}: GET, PUT, PATCH, POST or DELETE"
        ));
    }
    let body = match data {
        Some(d) => match d.strip_prefix('@') {
            Some(f) => std::fs::read(f).map_err(|e| std::format!("reading {f}: {e}"))?,
            None => d.as_bytes().to_vec(),
        },
        None => Vec::new(),
    };
    let path = if path.starts_with("/restconf") {
        path.to_string()
    } else {
        std::format!("/restconf/data/{}", path.trim_start_matches('/'))
    };
    let (status, answer) = request(connect, &method, &path, crate::restconf::MEDIA, &body)?;
    if status >= 400 {
        let msg = serde_json::from_str::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| {
                v.pointer("/ietf-restconf:errors/error/0/error-message")
                    .and_then(|m| m.as_str().map(str::to_string))
            })
            .unwrap_or_else(|| answer.lines().next().unwrap_or("").to_string());
        return Err(std::format!("{method} {path}: HTTP {status}: {msg}"));
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_clients_do_not_block_others() {
        let h: Handler = Arc::new(|r: &Request| match r.path.as_str() {
            "/metrics" => Response::metrics("x_total 1\n".into()),
            _ => Response::error(404, "try /metrics"),
        });
        let srv = HttpServer::spawn("127.0.0.1:0", h).unwrap();
        let a = srv.addr().to_string();
        // connects and never sends; sends half a request
        let _silent = TcpStream::connect(&a).unwrap();
        let mut half = TcpStream::connect(&a).unwrap();
        half.write_all(b"GET /metr").unwrap();
        for _ in 0..3 {
            assert_eq!(get(&a, "/metrics").unwrap(), "x_total 1\n");
        }
        let e = get(&a, "/nope").unwrap_err();
        assert!(e.contains("404") && e.contains("try /metrics"), "{e}");
        // garbage gets a 400, not a crash
        let mut g = TcpStream::connect(&a).unwrap();
        g.write_all(b"\x00\x01 junk\r\n\r\n").unwrap();
        let mut r = String::new();
        let _ = g.read_to_string(&mut r);
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    }

    #[test]
    fn published_never_blocks_the_writer() {
        let p = Published::new(1u64);
        let g = p.slot.lock().unwrap();
        assert!(!p.try_publish(|v| *v = 2));
        drop(g);
        assert!(p.try_publish(|v| *v = 3));
        assert_eq!(p.get(), Some(3));
    }
}
