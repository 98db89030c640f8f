//! The VNF's own host network stack: `smoltcp` (IPv4, ARP, UDP, TCP; RFC 791, 826,
//! 768, 9293) on one virtio-net port, for the VNF's control and management traffic
//! (RADIUS, HTTP metrics), next to the fast path on the same port.
//!
//! ```text
//!  port rx ──> divert (classify) ─┬─ not ours ──────────────> worker graph (fast path)
//!                                 ├─ TCP/UDP to our address ─> stack rx ring ─> smoltcp
//!                                 └─ ARP reply to our address: a copy to each
//!  smoltcp ─> pool buffer (meta.port) ─> worker inject ring ─> port tx
//! ```
//!
//! On a port of its own (`mgmt=` names a port the VNF does not forward on) every
//! frame goes to the stack. On a shared port only TCP, and UDP other than DHCP
//! (67/68, the vBNG's relay), addressed to the stack's IPv4 address (unfragmented);
//! ARP replies for it are copied to both (the fast path learns its neighbours from
//! them as well); ARP requests and ICMP stay with the fast path, which answers them
//! for the same address. Frames move in pool buffers: the divert allocates nothing.
//!
//! On top: [`HttpServer`], a minimal HTTP/1.1 server (RFC 9112: request line and
//! head, a `Content-Length` body of at most [`MAX_BODY`] bytes, `Connection: close`)
//! for `/metrics` and the RESTCONF API, and UDP sockets ([`HostStack::udp_open`])
//! for the vBNG's RADIUS client.

use crate::hostwire::{body_length, classify, parse_request, BodyError, Verdict};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use dataplane::buf::{Pkt, PoolCache};
use dataplane::worker::PktRing;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};

/// Where the stack lives: the port, its IPv4 address and prefix, a default gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    pub port: u16,
    pub addr: [u8; 4],
    pub prefix: u8,
    pub gateway: Option<[u8; 4]>,
}

impl NetConfig {
    /// Parse the value `PORT:ADDR/LEN[:GATEWAY]` of the command-line word `key=`
    /// (`mgmt`, or the key server's `core`).
    pub fn parse(key: &str, v: &str) -> Result<NetConfig, String> {
        let usage = || alloc::format!("expected {key}=PORT:ADDR/LEN[:GATEWAY]");
        let mut it = v.split(':');
        let port = it.next().and_then(|p| p.parse::<u16>().ok()).ok_or_else(usage)?;
        let (a, l) = it.next().and_then(|c| c.split_once('/')).ok_or_else(usage)?;
        let addr = parse_v4(a).ok_or_else(|| alloc::format!("`{a}` is not an IPv4 address"))?;
        let prefix = l
            .parse::<u8>()
            .ok()
            .filter(|&l| (1..=32).contains(&l))
            .ok_or_else(|| alloc::format!("`{l}` is not a prefix length (1-32)"))?;
        let gateway = match it.next() {
            Some(g) => Some(parse_v4(g).ok_or_else(|| alloc::format!("`{g}` is not an IPv4 address"))?),
            None => None,
        };
        if it.next().is_some() {
            return Err(usage());
        }
        Ok(NetConfig {
            port,
            addr,
            prefix,
            gateway,
        })
    }
}

/// Dotted-quad IPv4.
pub fn parse_v4(s: &str) -> Option<[u8; 4]> {
    let a: core::net::Ipv4Addr = s.parse().ok()?;
    Some(a.octets())
}

/// The divert's end on a port: frames for the stack go onto `ring`.
pub struct Tap {
    pub ring: PktRing,
    pub addr: [u8; 4],
    /// The port is the stack's alone.
    pub exclusive: bool,
    /// Frames (and copies) handed to the stack.
    pub diverted: u64,
    /// Frames for the stack lost to a full ring or an empty pool.
    pub dropped: u64,
}

impl Tap {
    /// Divert `pkt` if it is the stack's; gives it back when the fast path should have it.
    pub fn divert(&mut self, pkt: Pkt, cache: &mut PoolCache) -> Option<Pkt> {
        match classify(pkt.data(), self.addr, self.exclusive) {
            Verdict::Pass => Some(pkt),
            Verdict::Stack => {
                match self.ring.push(pkt) {
                    Ok(()) => self.diverted += 1,
                    Err(p) => {
                        self.dropped += 1;
                        cache.free(p);
                    }
                }
                None
            }
            Verdict::Both => {
                match cache.alloc() {
                    Some(mut c) => {
                        if c.copy_from(pkt.data()).is_ok() {
                            match self.ring.push(c) {
                                Ok(()) => self.diverted += 1,
                                Err(c) => {
                                    self.dropped += 1;
                                    cache.free(c);
                                }
                            }
                        } else {
                            self.dropped += 1;
                            cache.free(c);
                        }
                    }
                    None => self.dropped += 1,
                }
                Some(pkt)
            }
        }
    }
}

/// The stack's device: frames in from the divert ring, out onto the inject ring.
struct RingDev {
    rx: PktRing,
    tx: PktRing,
    port: u16,
    cache: RefCell<PoolCache>,
    /// Where a frame goes when no buffer is left (then dropped).
    scratch: RefCell<Vec<u8>>,
    tx_dropped: core::cell::Cell<u64>,
}

struct Rx<'a> {
    pkt: Pkt,
    cache: &'a RefCell<PoolCache>,
}

struct Tx<'a> {
    dev: &'a RingDev,
}

impl smoltcp::phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(self.pkt.data());
        self.cache.borrow_mut().free(self.pkt);
        r
    }
}

impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let d = self.dev;
        let pkt = d.cache.borrow_mut().alloc();
        match pkt {
            Some(mut p) => {
                if p.set_len(len).is_ok() {
                    let r = f(p.data_mut());
                    p.meta.port = d.port;
                    if let Err(p) = d.tx.push(p) {
                        d.tx_dropped.set(d.tx_dropped.get() + 1);
                        d.cache.borrow_mut().free(p);
                    }
                    return r;
                }
                d.cache.borrow_mut().free(p);
                d.tx_dropped.set(d.tx_dropped.get() + 1);
                let mut s = d.scratch.borrow_mut();
                if s.len() < len {
                    s.resize(len, 0);
                }
                f(&mut s[..len])
            }
            None => {
                d.tx_dropped.set(d.tx_dropped.get() + 1);
                let mut s = d.scratch.borrow_mut();
                if s.len() < len {
                    s.resize(len, 0);
                }
                f(&mut s[..len])
            }
        }
    }
}

impl Device for RingDev {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _t: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let pkt = self.rx.pop()?;
        Some((
            Rx {
                pkt,
                cache: &self.cache,
            },
            Tx { dev: self },
        ))
    }

    fn transmit(&mut self, _t: Instant) -> Option<Tx<'_>> {
        if self.tx.is_full() {
            return None;
        }
        Some(Tx { dev: self })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c.max_burst_size = Some(32);
        c
    }
}

/// The host stack on one port.
pub struct HostStack {
    iface: Interface,
    dev: RingDev,
    sockets: SocketSet<'static>,
    pub net: NetConfig,
    t0: u64,
}

impl HostStack {
    /// A stack with `mac` and `net` over the divert ring `rx` and the worker's inject
    /// ring `tx`, with buffers from `cache`; `seed` randomises TCP sequence numbers
    /// and ephemeral ports.
    pub fn new(mac: [u8; 6], net: NetConfig, rx: PktRing, tx: PktRing, cache: PoolCache, seed: u64) -> HostStack {
        let mut dev = RingDev {
            rx,
            tx,
            port: net.port,
            cache: RefCell::new(cache),
            scratch: RefCell::new(vec![0; 1514]),
            tx_dropped: core::cell::Cell::new(0),
        };
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        cfg.random_seed = seed;
        let t0 = crate::clock::now_ns() / 1_000_000;
        let mut iface = Interface::new(cfg, &mut dev, Instant::from_millis(0));
        let a = net.addr;
        iface.update_ip_addrs(|v| {
            let _ = v.push(IpCidr::new(
                IpAddress::Ipv4(Ipv4Address::new(a[0], a[1], a[2], a[3])),
                net.prefix,
            ));
        });
        if let Some(g) = net.gateway {
            let _ = iface
                .routes_mut()
                .add_default_ipv4_route(Ipv4Address::new(g[0], g[1], g[2], g[3]));
        }
        HostStack {
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            net,
            t0,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_millis((crate::clock::now_ns() / 1_000_000).saturating_sub(self.t0) as i64)
    }

    /// Run the stack: frames in, timers, frames out. Returns whether anything changed.
    pub fn poll(&mut self) -> bool {
        let now = self.now();
        self.iface.poll(now, &mut self.dev, &mut self.sockets) != smoltcp::iface::PollResult::None
    }

    /// Frames wait for the stack.
    #[cfg_attr(feature = "keyserver", allow(dead_code))]
    pub fn pending(&self) -> bool {
        !self.dev.rx.is_empty()
    }

    /// The stack's counter line for the console.
    pub fn print_stats(&self, t_ms: u64, http: Option<&HttpServer>) {
        crate::println!(
            "stats t={t_ms}ms host stack: port {} tx dropped {} (no buffer, inject ring full), http requests {} malformed {}",
            self.net.port,
            self.dev.tx_dropped.get(),
            http.map_or(0, |h| h.served),
            http.map_or(0, |h| h.bad)
        );
    }

    // The router has no UDP client yet (the vBNG's RADIUS uses these).
    #[cfg_attr(not(any(feature = "vbng", feature = "vbng-up")), allow(dead_code))]
    /// A UDP socket bound to `port` (`0`: an ephemeral port from `seed`).
    pub fn udp_open(&mut self, port: u16, seed: u64) -> Result<(SocketHandle, u16), String> {
        // Room for a burst of requests (a thousand subscribers authenticating at
        // once over four channels) before the stack drains them.
        let mut s = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; UDP_PACKETS], vec![0; UDP_BYTES]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; UDP_PACKETS], vec![0; UDP_BYTES]),
        );
        let port = if port == 0 { 49152 + (seed % 16384) as u16 } else { port };
        s.bind(port).map_err(|e| alloc::format!("udp port {port}: {e}"))?;
        Ok((self.sockets.add(s), port))
    }

    #[cfg_attr(not(any(feature = "vbng", feature = "vbng-up")), allow(dead_code))]
    /// Queue a datagram; `false` when the socket's buffer is full or the address is
    /// not IPv4 (a lost datagram: the caller retransmits).
    pub fn udp_send(&mut self, h: SocketHandle, to: core::net::SocketAddr, data: &[u8]) -> bool {
        let core::net::SocketAddr::V4(v4) = to else {
            return false;
        };
        let o = v4.ip().octets();
        let ep = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(o[0], o[1], o[2], o[3])), v4.port());
        self.sockets.get_mut::<udp::Socket>(h).send_slice(data, ep).is_ok()
    }

    #[cfg_attr(not(any(feature = "vbng", feature = "vbng-up")), allow(dead_code))]
    /// Hand every datagram waiting on `h` to `f(from, bytes)`.
    pub fn udp_recv(&mut self, h: SocketHandle, mut f: impl FnMut(core::net::SocketAddr, &[u8])) -> usize {
        let s = self.sockets.get_mut::<udp::Socket>(h);
        let mut n = 0;
        while let Ok((data, meta)) = s.recv() {
            let IpAddress::Ipv4(a) = meta.endpoint.addr;
            let o = a.octets();
            let from = core::net::SocketAddr::new(
                core::net::IpAddr::V4(core::net::Ipv4Addr::new(o[0], o[1], o[2], o[3])),
                meta.endpoint.port,
            );
            f(from, data);
            n += 1;
        }
        n
    }
}

/// An HTTP response from a handler.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    /// 200 with Prometheus text (the content type the Linux VNFs use).
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
    /// 200 with a RESTCONF JSON body (RFC 8040 §3.2, `application/yang-data+json`).
    // The key server app's RESTCONF state.
    #[cfg(feature = "keyserver")]
    pub fn yang_json(body: String) -> Response {
        Response {
            status: 200,
            content_type: "application/yang-data+json",
            body,
        }
    }
    /// A RESTCONF answer (RFC 8040): JSON errors and data as
    /// `application/yang-data+json`, the schema resource as `application/yang`.
    #[cfg(any(feature = "vbng", feature = "router"))]
    pub fn restconf(status: u16, body: String, yang: bool) -> Response {
        Response {
            status,
            content_type: if yang {
                "application/yang"
            } else {
                "application/yang-data+json"
            },
            body,
        }
    }
    /// An RFC 8040 §7.1 error body (`error-type` protocol) with `status`.
    pub fn restconf_error(status: u16, tag: &str, msg: &str) -> Response {
        let mut m = String::with_capacity(msg.len());
        for ch in msg.chars() {
            match ch {
                '"' => m.push_str("\\\""),
                '\\' => m.push_str("\\\\"),
                ch if (ch as u32) < 0x20 => m.push(' '),
                ch => m.push(ch),
            }
        }
        Response {
            status,
            content_type: "application/yang-data+json",
            body: alloc::format!(
                "{{\"ietf-restconf:errors\":{{\"error\":[{{\"error-type\":\"protocol\",\"error-tag\":\"{tag}\",\"error-message\":\"{m}\"}}]}}}}"
            ),
        }
    }
    /// An error page.
    pub fn error(status: u16, msg: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: alloc::format!("{msg}\n"),
        }
    }
}

/// Largest request head.
const MAX_HEAD: usize = 8 * 1024;
/// Largest request body (a RESTCONF change; larger ones get 413 and an RFC 8040
/// error).
pub const MAX_BODY: usize = 64 * 1024;
/// Connections answered at once.
const CONNECTIONS: usize = 4;
/// A connection that sends nothing (or reads nothing) is closed after this.
const IO_TIMEOUT_MS: u64 = 5000;

struct Conn {
    h: SocketHandle,
    req: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    answered: bool,
}

/// A minimal HTTP/1.1 server on the host stack: one request per connection (any
/// method, a body by `Content-Length` up to [`MAX_BODY`]), answered with
/// `Content-Length` and `Connection: close`. A head over 8 KiB, a chunked or
/// oversized body, or a malformed request line is answered with an error and
/// counted in `bad`.
pub struct HttpServer {
    port: u16,
    conns: Vec<Conn>,
    /// Requests answered.
    pub served: u64,
    /// Connections closed for a malformed or oversized request.
    pub bad: u64,
}

impl HttpServer {
    /// Listen on `port` of `stack`'s address.
    pub fn new(stack: &mut HostStack, port: u16) -> HttpServer {
        let mut conns = Vec::new();
        for _ in 0..CONNECTIONS {
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 4096]),
                tcp::SocketBuffer::new(vec![0; 64 * 1024]),
            );
            s.set_timeout(Some(Duration::from_millis(IO_TIMEOUT_MS)));
            let _ = s.listen(port);
            conns.push(Conn {
                h: stack.sockets.add(s),
                req: Vec::new(),
                out: Vec::new(),
                sent: 0,
                answered: false,
            });
        }
        HttpServer {
            port,
            conns,
            served: 0,
            bad: 0,
        }
    }

    /// Serve what the connections have: `handler(method, path, query, body)`
    /// answers a complete request. Returns whether anything was done.
    pub fn poll(
        &mut self,
        stack: &mut HostStack,
        mut handler: impl FnMut(&str, &str, &str, &[u8]) -> Response,
    ) -> bool {
        let mut work = false;
        for c in self.conns.iter_mut() {
            let s = stack.sockets.get_mut::<tcp::Socket>(c.h);
            if !s.is_open() {
                // Closed (answered, reset or timed out): listen again.
                c.req.clear();
                c.out.clear();
                c.sent = 0;
                c.answered = false;
                let _ = s.listen(self.port);
                continue;
            }
            if !c.answered && s.can_recv() {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.recv_slice(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    work = true;
                    c.req.extend_from_slice(&buf[..n]);
                    if c.req.len() > MAX_HEAD + MAX_BODY {
                        break;
                    }
                }
                let resp = match parse_request(&c.req) {
                    Ok(Some((m, p, q))) => {
                        let head = c.req.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |e| e + 4);
                        match body_length(&c.req, MAX_BODY) {
                            Ok(n) if c.req.len() >= head + n => Some(handler(m, p, q, &c.req[head..head + n])),
                            // The rest of the body has not arrived yet.
                            Ok(_) => None,
                            Err(e) => {
                                self.bad += 1;
                                Some(match e {
                                    BodyError::Chunked => Response::restconf_error(
                                        411,
                                        "malformed-message",
                                        "send the body with a Content-Length (no Transfer-Encoding)",
                                    ),
                                    BodyError::BadLength => {
                                        Response::restconf_error(400, "malformed-message", "bad Content-Length")
                                    }
                                    BodyError::TooLarge => Response::restconf_error(
                                        413,
                                        "too-big",
                                        &alloc::format!("request body larger than {MAX_BODY} bytes"),
                                    ),
                                })
                            }
                        }
                    }
                    Ok(None) if c.req.len() > MAX_HEAD => {
                        self.bad += 1;
                        Some(Response::error(431, "request head too large"))
                    }
                    Ok(None) => None,
                    Err(_) => {
                        self.bad += 1;
                        Some(Response::error(400, "malformed request"))
                    }
                };
                if let Some(r) = resp {
                    c.out = render(&r);
                    c.answered = true;
                    self.served += 1;
                }
            }
            if c.answered && c.sent < c.out.len() && s.can_send() {
                if let Ok(n) = s.send_slice(&c.out[c.sent..]) {
                    c.sent += n;
                    work |= n > 0;
                }
                if c.sent == c.out.len() {
                    s.close();
                    c.out = Vec::new();
                }
            }
        }
        work
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
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "Error",
    }
}

fn render(r: &Response) -> Vec<u8> {
    let mut v = alloc::format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    )
    .into_bytes();
    v.extend_from_slice(r.body.as_bytes());
    v
}

/// Put a host stack on `port` (with `mac`, the VNF's address on that port): divert
/// its frames there, send through `inject`.
pub fn attach(
    port: &mut crate::net::VirtioPort,
    mac: [u8; 6],
    net: NetConfig,
    exclusive: bool,
    inject: PktRing,
    cache: PoolCache,
) -> HostStack {
    let rx = dataplane::worker::ring(STACK_RING);
    port.set_tap(Tap {
        ring: rx.clone(),
        addr: net.addr,
        exclusive,
        diverted: 0,
        dropped: 0,
    });
    let (seed, src) = crate::entropy::seed();
    if !src.strong() {
        log::warn!(
            "host stack: TCP sequence numbers and ephemeral ports seeded from {} only",
            src.describe()
        );
    }
    let mut s8 = [0u8; 8];
    s8.copy_from_slice(&seed[..8]);
    let a = net.addr;
    log::info!(
        "host stack: port {} {}.{}.{}.{}/{}{}{}",
        net.port,
        a[0],
        a[1],
        a[2],
        a[3],
        net.prefix,
        match net.gateway {
            Some(g) => alloc::format!(" via {}.{}.{}.{}", g[0], g[1], g[2], g[3]),
            None => String::new(),
        },
        if exclusive {
            " (port of its own)"
        } else {
            " (shared with the fast path)"
        }
    );
    HostStack::new(mac, net, rx, inject, cache, u64::from_le_bytes(s8))
}

/// Datagrams and bytes a UDP socket buffers per direction.
const UDP_PACKETS: usize = 512;
const UDP_BYTES: usize = 128 * 1024;

/// Frames waiting for the stack, at most.
const STACK_RING: usize = 256;
