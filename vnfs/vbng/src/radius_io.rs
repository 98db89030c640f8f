//! UDP transport for the RADIUS client and the dynamic-authorization (CoA/DM, RFC 5176
//! §2.2: port 3799) listener (std only). Non-blocking sockets pumped by the caller's
//! loop; one socket per client channel (each carries 256 identifiers). With an
//! accounting journal ([`crate::acct_journal`]) the control plane's journal operations
//! are written (and synced) before any datagram goes out.

use crate::acct_journal::AcctJournal;
use crate::control::ControlPlane;
use std::io;
use std::net::{SocketAddr, UdpSocket};

/// The sockets of one control plane.
#[derive(Debug)]
pub struct RadiusIo {
    channels: Vec<UdpSocket>,
    coa: Option<UdpSocket>,
    buf: Vec<u8>,
    journal: Option<AcctJournal>,
}

impl RadiusIo {
    /// Bind `channels` client sockets on `local` (port 0 = ephemeral) and, if given,
    /// the CoA/DM listener.
    pub fn bind(local: SocketAddr, channels: u8, coa: Option<SocketAddr>) -> io::Result<RadiusIo> {
        let mut v = Vec::new();
        for _ in 0..channels.max(1) {
            let s = UdpSocket::bind(SocketAddr::new(local.ip(), 0))?;
            s.set_nonblocking(true)?;
            v.push(s);
        }
        let coa = match coa {
            Some(a) => {
                let s = UdpSocket::bind(a)?;
                s.set_nonblocking(true)?;
                Some(s)
            }
            None => None,
        };
        Ok(RadiusIo {
            channels: v,
            coa,
            buf: vec![0; 4096],
            journal: None,
        })
    }

    /// Write accounting journal operations to `j` from now on.
    pub fn set_journal(&mut self, j: AcctJournal) {
        self.journal = Some(j);
    }

    /// The journal, if any.
    pub fn journal(&self) -> Option<&AcctJournal> {
        self.journal.as_ref()
    }

    /// Write what the control plane has for the journal and print its notices.
    pub fn flush(&mut self, cp: &mut ControlPlane) {
        for n in cp.take_notices() {
            tracing::warn!("radius: {n}");
        }
        let ops = cp.take_acct_journal();
        if let Some(j) = self.journal.as_mut() {
            if let Err(e) = j.write(&ops) {
                // The records stay queued in memory; only their durability is lost.
                tracing::error!(
                    ops = ops.len(),
                    "radius: accounting journal write failed ({} ops): {e}",
                    ops.len()
                );
            }
        }
    }

    /// The CoA listener's address.
    pub fn coa_addr(&self) -> Option<SocketAddr> {
        self.coa.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// Send what the control plane queued, receive what arrived, answer CoA/DM.
    /// Returns the number of datagrams handled.
    pub fn pump(&mut self, cp: &mut ControlPlane, now: u64) -> usize {
        let mut n = 0;
        self.flush(cp);
        for t in cp.take_radius_tx() {
            if let Some(s) = self.channels.get(usize::from(t.channel)) {
                // A failed send is handled like a lost datagram: the client retransmits.
                let _ = s.send_to(&t.bytes, t.to);
                n += 1;
            }
        }
        for (i, s) in self.channels.iter().enumerate() {
            while let Ok((len, from)) = s.recv_from(&mut self.buf) {
                if let Some(b) = self.buf.get(..len) {
                    cp.radius_input(i as u8, from, b, now);
                }
                n += 1;
            }
        }
        if let Some(s) = &self.coa {
            while let Ok((len, from)) = s.recv_from(&mut self.buf) {
                if let Some(resp) = self.buf.get(..len).and_then(|b| cp.dynauth(b, now)) {
                    let _ = s.send_to(&resp, from);
                }
                n += 1;
            }
        }
        // Responses may have produced new requests (accounting Start after accept).
        self.flush(cp);
        for t in cp.take_radius_tx() {
            if let Some(s) = self.channels.get(usize::from(t.channel)) {
                let _ = s.send_to(&t.bytes, t.to);
                n += 1;
            }
        }
        n
    }
}
