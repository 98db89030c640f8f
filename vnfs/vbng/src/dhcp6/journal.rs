//! The binding journal: the bound IAs of a [`Server`] as bytes, so that a restart
//! keeps every subscriber's address and delegated prefix (RFC 8415 §18.3 expects a
//! server to remember its bindings; §4.2 "binding"). Offers and quarantined addresses
//! are not kept.
//!
//! The caller writes the bytes atomically
//! ([`save_atomic`](crate::dhcp4::journal::save_atomic) with `std`) and hands them
//! back to [`Server::load_journal`] at start-up, which takes the addresses and
//! prefixes from the pools again (or holds them as fixed items when they lie outside
//! every pool: a RADIUS-assigned prefix) and drops bindings that expired while the
//! server was down. Expiry is stored on the wall clock (Unix milliseconds).
//!
//! ```text
//! "VBNGDHC6" | version 1 | count u32 | entries | SHA-256 of all before, first 8 octets
//! entry: line length u16 | line | DUID length u16 | DUID | kind u8 (0 IA_NA, 1 IA_PD)
//!        | IAID u32 | address or prefix (16) | length u8 | preferred s u32
//!        | valid s u32 | expiry (Unix ms) u64
//! ```
//! Integers are little-endian.

use super::{Assigned, ClientKey, IaKind, Lease, LineKey, Server, State};
use crate::journal_frame::{open, FrameError, Writer};
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv6Addr;
use dataplane::addr::Prefix6;
use dataplane::proto::dhcp6::Duid;

const MAGIC: &[u8; 8] = b"VBNGDHC6";
const VERSION: u8 = 1;

/// Why a journal could not be loaded. Nothing is restored from a journal that fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalError {
    /// Not a DHCPv6 binding journal.
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
            JournalError::BadMagic => f.write_str("not a DHCPv6 binding journal"),
            JournalError::UnsupportedVersion(v) => {
                write!(f, "DHCPv6 binding journal version {v} is not supported")
            }
            JournalError::Truncated => f.write_str("DHCPv6 binding journal is truncated"),
            JournalError::Checksum => f.write_str("DHCPv6 binding journal fails its check"),
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
    /// Bindings made again (install these subscribers' addresses and routes).
    pub leases: Vec<(ClientKey, Lease)>,
    /// Bindings that had expired.
    pub expired: usize,
    /// Bindings that could not be made again (a bad DUID or length, the address or
    /// prefix already held or martian, the IA twice, `max_bindings`).
    pub refused: usize,
}

/// One decoded entry; `None` fields make the entry refused, not the journal.
struct Entry {
    key: Option<ClientKey>,
    assigned: Option<Assigned>,
    preferred_s: u32,
    valid_s: u32,
    expires_unix_ms: u64,
}

fn decode(b: &[u8]) -> Result<Vec<Entry>, JournalError> {
    let (n, mut r) = open(b, MAGIC, VERSION)?;
    let mut out = Vec::new();
    for _ in 0..n {
        let line_len = usize::from(r.u16()?);
        let line = LineKey(r.take(line_len)?.to_vec());
        let duid_len = usize::from(r.u16()?);
        let duid = Duid::from_bytes(r.take(duid_len)?).ok();
        let kind = match r.u8()? {
            0 => Some(IaKind::Na),
            1 => Some(IaKind::Pd),
            _ => None,
        };
        let iaid = r.u32()?;
        let mut a = [0u8; 16];
        a.copy_from_slice(r.take(16)?);
        let addr = Ipv6Addr::from(a);
        let len = r.u8()?;
        let assigned = match (kind, len) {
            (Some(IaKind::Na), 128) => Some(Assigned::Address(addr)),
            (Some(IaKind::Pd), 1..=64) => Prefix6::new(addr, len).map(Assigned::Prefix),
            _ => None,
        };
        let preferred_s = r.u32()?;
        let valid_s = r.u32()?;
        let expires_unix_ms = r.u64()?;
        let key = match (duid, kind) {
            (Some(duid), Some(kind)) => Some(ClientKey {
                line,
                duid,
                kind,
                iaid,
            }),
            _ => None,
        };
        out.push(Entry {
            key,
            assigned,
            preferred_s,
            valid_s,
            expires_unix_ms,
        });
    }
    r.end()?;
    Ok(out)
}

impl Server {
    /// The bound IAs as a journal. `now_ms` is the server's clock, `unix_ms` the wall
    /// clock at the same moment.
    pub fn save_journal(&self, now_ms: u64, unix_ms: u64) -> Vec<u8> {
        let mut w = Writer::new(MAGIC, VERSION, 64 + self.binding_count() * 80);
        let b = &mut w.buf;
        let mut n = 0u32;
        for (k, l) in self.leases() {
            let (Ok(line_len), Ok(duid_len)) = (
                u16::try_from(k.line.0.len()),
                u16::try_from(k.duid.as_bytes().len()),
            ) else {
                continue;
            };
            b.extend_from_slice(&line_len.to_le_bytes());
            b.extend_from_slice(&k.line.0);
            b.extend_from_slice(&duid_len.to_le_bytes());
            b.extend_from_slice(k.duid.as_bytes());
            b.push(match k.kind {
                IaKind::Na => 0,
                IaKind::Pd => 1,
            });
            b.extend_from_slice(&k.iaid.to_le_bytes());
            b.extend_from_slice(&l.assigned.addr().octets());
            b.push(l.assigned.len());
            b.extend_from_slice(&l.preferred_s.to_le_bytes());
            b.extend_from_slice(&l.valid_s.to_le_bytes());
            let left = l.expires_ms.saturating_sub(now_ms);
            b.extend_from_slice(&unix_ms.saturating_add(left).to_le_bytes());
            n += 1;
        }
        w.finish(n)
    }

    /// Restores the bindings of a journal: each one not yet expired at `unix_ms` is
    /// bound again with the time it had left, on the server's clock `now_ms`. A
    /// journal that fails its checks restores nothing.
    pub fn load_journal(
        &mut self,
        bytes: &[u8],
        now_ms: u64,
        unix_ms: u64,
    ) -> Result<Restored, JournalError> {
        let entries = decode(bytes)?;
        let mut out = Restored::default();
        for e in entries {
            let Some(left) = e.expires_unix_ms.checked_sub(unix_ms).filter(|&l| l > 0) else {
                out.expired += 1;
                continue;
            };
            let (Some(key), Some(assigned)) = (e.key, e.assigned) else {
                out.refused += 1;
                continue;
            };
            let lease = Lease {
                assigned,
                preferred_s: e.preferred_s,
                valid_s: e.valid_s,
                expires_ms: now_ms.saturating_add(left),
            };
            if self.restore(&key, lease) {
                out.leases.push((key, lease));
            } else {
                out.refused += 1;
            }
        }
        Ok(out)
    }

    fn restore(&mut self, key: &ClientKey, lease: Lease) -> bool {
        if self.bindings.contains_key(key)
            || self.bindings.len() >= self.cfg.max_bindings as usize
            || lease.assigned.ia_kind() != key.kind
        {
            return false;
        }
        let taken = match lease.assigned {
            Assigned::Address(a) => super::config::assignable_addr(a) && self.addrs.take(a).is_ok(),
            Assigned::Prefix(p) => self.prefixes.take(p).is_ok(),
        };
        if !taken {
            return false;
        }
        self.set_binding(
            key,
            lease.assigned,
            State::Bound {
                until: lease.expires_ms,
                preferred_s: lease.preferred_s,
                valid_s: lease.valid_s,
            },
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp6::tests::{bind, server};
    use crate::journal_frame::{check, CHECK_LEN};

    #[test]
    fn bindings_survive_a_restart() {
        let mut s = server();
        let (addr, pfx) = bind(&mut s, 0, 9);
        bind(&mut s, 0, 8);
        let j = s.save_journal(1000, 1_700_000_000_000);
        let mut s2 = server();
        let r = s2.load_journal(&j, 50, 1_700_000_100_000).unwrap();
        assert_eq!((r.leases.len(), r.expired, r.refused), (4, 0, 0));
        assert_eq!(s2.binding_count(), 4);
        let got: Vec<Assigned> = r.leases.iter().map(|(_, l)| l.assigned).collect();
        assert!(got.contains(&Assigned::Address(addr)));
        assert!(got.contains(&Assigned::Prefix(pfx)));
        // Expiry carried over: 7200 s from t=10 ms, saved at 1000 ms, loaded 100 s
        // later at 50 ms.
        let l = r.leases[0].1;
        assert_eq!(l.expires_ms, 50 + (10 + 7_200_000 - 1000) - 100_000);
        // The pools hold them: a new client gets something else.
        let (a3, p3) = bind(&mut s2, 60, 7);
        assert!(!got.contains(&Assigned::Address(a3)));
        assert!(!got.contains(&Assigned::Prefix(p3)));
        // Loading again refuses what is held; after expiry nothing comes back.
        assert_eq!(
            s2.load_journal(&j, 70, 1_700_000_100_000).unwrap().refused,
            4
        );
        let r = server().load_journal(&j, 0, 1_800_000_000_000).unwrap();
        assert_eq!((r.leases.len(), r.expired), (0, 4));
    }

    #[test]
    fn damaged_journals_restore_nothing() {
        let mut s = server();
        bind(&mut s, 0, 9);
        let j = s.save_journal(0, 1_000);
        let mut t = server();
        assert_eq!(t.load_journal(b"nope", 0, 0), Err(JournalError::BadMagic));
        assert_eq!(
            t.load_journal(&j[..j.len() - 1], 0, 0),
            Err(JournalError::Checksum)
        );
        let mut bad = j.clone();
        bad[20] ^= 1;
        assert_eq!(t.load_journal(&bad, 0, 0), Err(JournalError::Checksum));
        let mut v2 = j.clone();
        v2[8] = 2;
        let n = v2.len() - CHECK_LEN;
        let c = check(&v2[..n]);
        v2[n..].copy_from_slice(&c);
        assert_eq!(
            t.load_journal(&v2, 0, 0),
            Err(JournalError::UnsupportedVersion(2))
        );
        assert_eq!(t.binding_count(), 0);
        assert_eq!(
            JournalError::Checksum.to_string(),
            "DHCPv6 binding journal fails its check"
        );
    }
}
