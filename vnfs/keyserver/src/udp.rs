//! The key server on a UDP socket: rounds of (receive a batch, run timers, write
//! the journal if keys changed, send), so that no key leaves before it is on disk.

use crate::config::Config;
use crate::prelude::*;
use crate::server::{Server, StartError, Stats};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Datagrams handled per round before timers run and answers go out.
const BATCH: usize = 256;
/// At most one journal write per this interval: a round whose state changed less
/// than this after the last write holds its datagrams (new keys included) until the
/// next write, so that rotations at a high rate do not cost an fsync per round.
pub const JOURNAL_EVERY: Duration = Duration::from_millis(100);

pub struct UdpServer {
    pub server: Server,
    sock: UdpSocket,
    /// The NAT-T socket (port 4500), when configured.
    natt: Option<UdpSocket>,
    start: Instant,
    buf: Vec<u8>,
    /// Journal write failures (the server keeps running; see `last_error`).
    pub last_error: Option<String>,
    last_journal: Option<Instant>,
}

impl UdpServer {
    /// Binds `cfg.server.listen` and restores the journal.
    pub fn bind(cfg: &Config) -> Result<UdpServer, StartError> {
        let sock = UdpSocket::bind(cfg.server.listen)
            .map_err(|e| StartError(format!("bind {}: {e}", cfg.server.listen)))?;
        let local = sock
            .local_addr()
            .map_err(|e| StartError(format!("socket: {e}")))?;
        sock.set_nonblocking(true)
            .map_err(|e| StartError(format!("socket: {e}")))?;
        let natt = match cfg.server.listen_natt {
            None => None,
            Some(a) => {
                let s = UdpSocket::bind(a).map_err(|e| StartError(format!("bind {a}: {e}")))?;
                s.set_nonblocking(true)
                    .map_err(|e| StartError(format!("socket: {e}")))?;
                Some(s)
            }
        };
        let mut server = Server::new(cfg, local, 0)?;
        server.flush_journal().map_err(StartError)?;
        Ok(UdpServer {
            server,
            sock,
            natt,
            start: Instant::now(),
            buf: vec![0u8; 65536],
            last_error: None,
            last_journal: None,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Milliseconds since start (the server's clock).
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// One round: waits up to `timeout` for the first datagram.
    pub fn run_once(&mut self, timeout: Duration) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let now = self.now();
        let wait = self
            .server
            .next_timeout()
            .map_or(timeout, |t| Duration::from_millis(t.saturating_sub(now)))
            .min(timeout);
        let mut fds = vec![libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(n) = &self.natt {
            fds.push(libc::pollfd {
                fd: n.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let rc = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                wait.as_millis().min(i32::MAX as u128) as i32,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        for natt in [false, true] {
            let sock = if natt {
                match &self.natt {
                    Some(s) => s,
                    None => break,
                }
            } else {
                &self.sock
            };
            for _ in 0..BATCH {
                match sock.recv_from(&mut self.buf) {
                    Ok((n, from)) => {
                        let now = self.start.elapsed().as_millis() as u64;
                        self.server.handle(&self.buf[..n], from, natt, now);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        self.server.poll(self.now());
        self.finish_round()
    }

    /// Writes the journal (if needed) and sends what the round produced.
    pub fn finish_round(&mut self) -> io::Result<()> {
        if self.server.journal_dirty() {
            if self
                .last_journal
                .is_some_and(|t| t.elapsed() < JOURNAL_EVERY)
            {
                // Held until the next write (a later round, within JOURNAL_EVERY).
                return Ok(());
            }
            self.last_journal = Some(Instant::now());
        }
        if let Err(e) = self.server.flush_journal() {
            // Keys not on disk are not sent: they go in a later round.
            self.last_error = Some(e);
            return Ok(());
        }
        for t in self.server.take_transmits() {
            let sock = match (&self.natt, t.natt) {
                (Some(n), true) => n,
                _ => &self.sock,
            };
            match sock.send_to(&t.data, t.to) {
                Ok(_) => {}
                // A CPE gone away (ICMP port unreachable): retransmissions time out.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Revokes a CPE now (see [`Server::revoke`]).
    pub fn revoke(&mut self, id: &str) -> Result<(), String> {
        let now = self.now();
        self.server.revoke(id, now)?;
        self.finish_round().map_err(|e| e.to_string())
    }

    pub fn stats(&self) -> Stats {
        self.server.stats()
    }

    /// Runs until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        while !stop.load(Ordering::Relaxed) {
            self.run_once(Duration::from_millis(100))?;
        }
        Ok(())
    }
}
