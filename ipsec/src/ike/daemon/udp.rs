//! The daemon over UDP sockets: one pair per local address, port 500 and port 4500
//! (on 4500 IKE carries the non-ESP marker, RFC 3948 §2.2). For hosts whose kernel
//! (or another process) carries the ESP; a VNF with its own data path feeds the
//! daemon from its punt ring instead.

use super::{Daemon, Datagram, IKE_PORT, NATT_PORT};
use alloc::vec::Vec;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, Ordering};
use std::io;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// The daemon's sockets.
pub struct Sockets {
    socks: Vec<(SocketAddr, UdpSocket)>,
}

impl Sockets {
    /// Binds ports 500 and 4500 on every local address of `d`'s connections.
    pub fn bind(d: &Daemon) -> io::Result<Sockets> {
        let mut socks = Vec::new();
        for a in d.local_addrs() {
            for p in [IKE_PORT, NATT_PORT] {
                let at = SocketAddr::new(a, p);
                let s = UdpSocket::bind(at)
                    .map_err(|e| io::Error::new(e.kind(), alloc::format!("bind {at}: {e}")))?;
                s.set_nonblocking(true)?;
                socks.push((at, s));
            }
        }
        Ok(Sockets { socks })
    }

    /// Sends what the daemon has queued; a send error is logged and the datagram
    /// dropped (the session retransmits requests).
    pub fn send(&self, d: &mut Daemon) {
        for g in d.take_output() {
            match self.socks.iter().find(|(a, _)| *a == g.local) {
                Some((_, s)) => {
                    if let Err(e) = s.send_to(&g.data, g.peer) {
                        tracing::warn!("ike: send to {} failed: {e}", g.peer);
                    }
                }
                None => tracing::warn!("ike: no socket on {}", g.local),
            }
        }
    }

    /// Receives every waiting datagram into the daemon; returns how many.
    pub fn receive(&self, d: &mut Daemon, now: u64) -> usize {
        let mut buf = [0u8; 65536];
        let mut n = 0;
        for (local, s) in &self.socks {
            while let Ok((len, peer)) = s.recv_from(&mut buf) {
                n += 1;
                let data = buf.get(..len).unwrap_or(&[]).to_vec();
                d.handle(
                    &Datagram {
                        local: *local,
                        peer,
                        data,
                    },
                    now,
                );
            }
        }
        n
    }
}

/// Runs the daemon over its sockets until `stop` is set, then deletes its IKE SAs;
/// time is milliseconds since the call.
pub fn run(d: &mut Daemon, stop: &AtomicBool) -> io::Result<()> {
    let socks = Sockets::bind(d)?;
    let t0 = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = t0.elapsed().as_millis() as u64;
        let got = socks.receive(d, now);
        d.poll(now);
        socks.send(d);
        for l in d.take_log() {
            tracing::info!("ike: {l}");
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Going down: delete the IKE SAs (RFC 7296 §1.4.1), wait up to a second for
    // the answers.
    let now = t0.elapsed().as_millis() as u64;
    d.shutdown(now);
    socks.send(d);
    let end = Instant::now() + Duration::from_secs(1);
    while d.ike_sas() > 0 && Instant::now() < end {
        let now = t0.elapsed().as_millis() as u64;
        socks.receive(d, now);
        d.poll(now);
        socks.send(d);
        std::thread::sleep(Duration::from_millis(5));
    }
    for l in d.take_log() {
        tracing::info!("ike: {l}");
    }
    Ok(())
}
