//! The lease journal: the bound leases of a [`Server`] as bytes, so that a restart
//! keeps every subscriber's address (RFC 2131 §4.3.1 and §4.3.2 expect a server to
//! remember its bindings). Offers and quarantined addresses are not kept.
//!
//! The caller writes the bytes atomically ([`save_atomic`] with `std`: temporary file,
//! `fsync`, rename, `fsync` of the directory) and hands them back to
//! [`Server::load_journal`] at start-up, which re-reserves the addresses in the pools
//! and drops leases that expired while the server was down. Expiry is stored on the
//! wall clock (Unix milliseconds), since the server's own clock is monotonic and
//! restarts with the process.
//!
//! ```text
//! "VBNGDHC4" | version 1 | count u32 | entries | SHA-256 of all before, first 8 octets
//! entry: svlan u16 | cvlan u16 | mac (6) | client-id length u16 | client-id
//!        | address (4) | lease seconds u32 | expiry (Unix ms) u64
//! ```
//! Integers are little-endian.

use super::{ClientKey, Lease, Server};
use crate::journal_frame::{open, FrameError, Writer};
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;
use dataplane::proto::ethernet::Vlans;

const MAGIC: &[u8; 8] = b"VBNGDHC4";
const VERSION: u8 = 1;

/// Why a journal could not be loaded. Nothing is restored from a journal that fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalError {
    /// Not a lease journal.
    BadMagic,
    /// A version this build does not read.
    UnsupportedVersion(u8),
    /// Cut short, or entries that do not fill the file.
    Truncated,
    /// The check value does not match (torn or corrupted write).
    Checksum,
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::BadMagic => f.write_str("not a DHCPv4 lease journal"),
            JournalError::UnsupportedVersion(v) => {
                write!(f, "DHCPv4 lease journal version {v} is not supported")
            }
            JournalError::Truncated => f.write_str("DHCPv4 lease journal is truncated"),
            JournalError::Checksum => f.write_str("DHCPv4 lease journal fails its check"),
        }
    }
}

impl From<FrameError> for JournalError {
    fn from(e: FrameError) -> JournalError {
        match e {
            FrameError::BadMagic => JournalError::BadMagic,
            FrameError::UnsupportedVersion(v) => JournalError::UnsupportedVersion(v),
            FrameError::Truncated => JournalError::Truncated,
            FrameError::Checksum => JournalError::Checksum,
        }
    }
}

/// What [`Server::load_journal`] restored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Leases bound again (install these subscribers).
    pub leases: Vec<(ClientKey, Lease)>,
    /// Leases that had expired.
    pub expired: usize,
    /// Leases that could not be bound again (address no longer in a pool or already
    /// held, client twice, `max_leases`).
    pub refused: usize,
}

/// Decodes a journal into `(client, address, lease seconds, expiry in Unix ms)`.
fn decode(b: &[u8]) -> Result<Vec<(ClientKey, Ipv4Addr, u32, u64)>, JournalError> {
    let (n, mut r) = open(b, MAGIC, VERSION)?;
    let mut out = Vec::new();
    for _ in 0..n {
        let svlan = r.u16()?;
        let cvlan = r.u16()?;
        let mut mac = [0u8; 6];
        mac.copy_from_slice(r.take(6)?);
        let cid_len = usize::from(r.u16()?);
        let cid = r.take(cid_len)?;
        let a = r.take(4)?;
        let addr = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
        let lease_s = r.u32()?;
        let expires = r.u64()?;
        let key = ClientKey {
            vlans: Vlans { svlan, cvlan },
            mac,
            client_id: (cid_len > 0).then(|| cid.to_vec()),
        };
        out.push((key, addr, lease_s, expires));
    }
    r.end()?;
    Ok(out)
}

impl Server {
    /// The bound leases as a journal. `now_ms` is the server's clock, `unix_ms` the
    /// wall clock at the same moment.
    pub fn save_journal(&self, now_ms: u64, unix_ms: u64) -> Vec<u8> {
        let mut w = Writer::new(MAGIC, VERSION, 64 + self.lease_count() * 40);
        let b = &mut w.buf;
        let mut n = 0u32;
        for (k, l) in self.leases() {
            // Option 61 is at most 255 octets per instance but may be split (RFC 3396);
            // an identifier too long for the journal is not kept.
            let Ok(cid_len) = u16::try_from(k.client_id.as_ref().map_or(0, Vec::len)) else {
                continue;
            };
            b.extend_from_slice(&k.vlans.svlan.to_le_bytes());
            b.extend_from_slice(&k.vlans.cvlan.to_le_bytes());
            b.extend_from_slice(&k.mac);
            b.extend_from_slice(&cid_len.to_le_bytes());
            b.extend_from_slice(k.client_id.as_deref().unwrap_or(&[]));
            b.extend_from_slice(&l.addr.octets());
            b.extend_from_slice(&l.lease_s.to_le_bytes());
            let left = l.expires_ms.saturating_sub(now_ms);
            b.extend_from_slice(&unix_ms.saturating_add(left).to_le_bytes());
            n += 1;
        }
        w.finish(n)
    }

    /// Restores the leases of a journal: each one not yet expired at `unix_ms` is
    /// bound again (its address taken from the pools) with the time it had left, on
    /// the server's clock `now_ms`. A journal that fails its checks restores nothing.
    pub fn load_journal(
        &mut self,
        bytes: &[u8],
        now_ms: u64,
        unix_ms: u64,
    ) -> Result<Restored, JournalError> {
        let entries = decode(bytes)?;
        let mut out = Restored::default();
        for (key, addr, lease_s, expires) in entries {
            let Some(left) = expires.checked_sub(unix_ms).filter(|&l| l > 0) else {
                out.expired += 1;
                continue;
            };
            let lease = Lease {
                addr,
                lease_s,
                expires_ms: now_ms.saturating_add(left),
            };
            if self.restore(key.clone(), lease) {
                out.leases.push((key, lease));
            } else {
                out.refused += 1;
            }
        }
        Ok(out)
    }
}

/// Writes `bytes` to `path` atomically: a temporary file next to it (mode 0600: the
/// journal names subscribers), `fsync`, rename over `path`, `fsync` of the directory.
#[cfg(feature = "std")]
pub fn save_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut f = o.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(d) = path.parent() {
        let d = if d.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            d
        };
        // Not every platform can open a directory for fsync.
        if let Ok(f) = std::fs::File::open(d) {
            let _ = f.sync_all();
        }
    }
    Ok(())
}
