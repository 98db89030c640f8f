//! Journal of unacknowledged accounting records (std only), so that a vbng restart
//! does not lose them (RFC 2866 §2: the client keeps trying until a server answers).
//!
//! The sans-IO client ([`crate::radius::Client`]) reports [`JournalOp`]s; they are
//! appended here (one `fsync` per batch) before the datagrams go out. The file is an
//! append-only log of entries, each
//!
//! ```text
//! | length u32 LE | check: first 8 octets of SHA-256(payload) | payload |
//! payload: op u8 (1 = add, 2 = remove) | record id u64 LE
//!          add only: event time, Unix ms u64 LE | attribute count u16 LE
//!                    | (type u8 | length u16 LE | value)*
//! ```
//!
//! When opened, the entries are read up to the first torn or corrupt one (a crash in
//! the middle of an append), the records added and not removed are returned to be
//! replayed ([`crate::control::ControlPlane::restore_acct`]) with their age (so
//! Acct-Delay-Time, §5.2, counts the downtime), and the file is rewritten with only
//! those (temporary file, `fsync`, rename, `fsync` of the directory). The same
//! compaction runs when the log has grown well past the live records.

use crate::radius::{JournalOp, Request, Service};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const OP_ADD: u8 = 1;
const OP_REMOVE: u8 = 2;
/// Largest payload accepted when reading (a RADIUS packet is at most 4096 octets).
const MAX_PAYLOAD: usize = 64 * 1024;

/// A record read back: (id, age ms, Accounting-Request).
pub type Restored = (u64, u64, Request);

/// The open journal.
#[derive(Debug)]
pub struct AcctJournal {
    path: PathBuf,
    file: File,
    /// Live records: id → encoded add payload.
    live: BTreeMap<u64, Vec<u8>>,
    /// Entries in the file.
    entries: usize,
    /// Octets of a torn or corrupt tail ignored when the file was opened.
    pub skipped_bytes: usize,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn check(payload: &[u8]) -> [u8; 8] {
    let h = Sha256::digest(payload);
    let mut c = [0u8; 8];
    c.copy_from_slice(h.get(..8).unwrap_or(&[0; 8]));
    c
}

fn entry(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&check(payload));
    out.extend_from_slice(payload);
}

fn add_payload(id: u64, event_ms: u64, req: &Request) -> Vec<u8> {
    let mut p = Vec::with_capacity(64 + req.attrs.iter().map(|(_, v)| v.len() + 3).sum::<usize>());
    p.push(OP_ADD);
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&event_ms.to_le_bytes());
    let attrs = &req.attrs[..req.attrs.len().min(usize::from(u16::MAX))];
    p.extend_from_slice(&(attrs.len() as u16).to_le_bytes());
    for (t, v) in attrs {
        let v = &v[..v.len().min(usize::from(u16::MAX))];
        p.push(*t);
        p.extend_from_slice(&(v.len() as u16).to_le_bytes());
        p.extend_from_slice(v);
    }
    p
}

/// Split `n` octets off the front of `b`.
fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (h, t) = b.split_at(n);
    *b = t;
    Some(h)
}

fn u64le(b: &mut &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(take(b, 8)?.try_into().ok()?))
}

fn u16le(b: &mut &[u8]) -> Option<u16> {
    Some(u16::from_le_bytes(take(b, 2)?.try_into().ok()?))
}

/// Decode an add payload: (id, event time Unix ms, request).
fn parse_add(mut b: &[u8]) -> Option<(u64, u64, Request)> {
    let b = &mut b;
    if take(b, 1)? != [OP_ADD] {
        return None;
    }
    let id = u64le(b)?;
    let event = u64le(b)?;
    let n = u16le(b)?;
    let mut attrs = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let t = *take(b, 1)?.first()?;
        let l = u16le(b)?;
        attrs.push((t, take(b, usize::from(l))?.to_vec()));
    }
    Some((
        id,
        event,
        Request {
            service: Service::Acct,
            attrs,
            password: None,
        },
    ))
}

/// Parse the log: live add payloads by id, entries read, octets of a bad tail.
fn parse_log(data: &[u8]) -> (BTreeMap<u64, Vec<u8>>, usize, usize) {
    let mut live = BTreeMap::new();
    let mut rest = data;
    let mut entries = 0;
    loop {
        let before = rest.len();
        let Some(len) = take(&mut rest, 4).and_then(|l| <[u8; 4]>::try_from(l).ok()) else {
            return (live, entries, before);
        };
        let len = u32::from_le_bytes(len) as usize;
        let ok = (9..=MAX_PAYLOAD).contains(&len);
        let (Some(sum), Some(payload)) = (
            take(&mut rest, 8),
            ok.then(|| take(&mut rest, len)).flatten(),
        ) else {
            return (live, entries, before);
        };
        if check(payload) != sum {
            return (live, entries, before);
        }
        let mut p = payload;
        let (Some(op), Some(id)) = (take(&mut p, 1), u64le(&mut p)) else {
            return (live, entries, before);
        };
        match op.first() {
            Some(&OP_ADD) if parse_add(payload).is_some() => {
                live.insert(id, payload.to_vec());
            }
            Some(&OP_REMOVE) => {
                live.remove(&id);
            }
            _ => return (live, entries, before),
        }
        entries += 1;
        if rest.is_empty() {
            return (live, entries, 0);
        }
    }
}

fn sync_dir(path: &Path) {
    // Make the rename durable; not every platform can open a directory.
    if let Some(d) = path.parent() {
        let d = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        };
        if let Ok(f) = File::open(d) {
            let _ = f.sync_all();
        }
    }
}

impl AcctJournal {
    /// Open (or create) the journal at `path`; returns it and the records to replay,
    /// oldest first.
    pub fn open(path: &Path) -> io::Result<(AcctJournal, Vec<Restored>)> {
        let mut data = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut data)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let (live, _, skipped) = parse_log(&data);
        let now = unix_ms();
        let restored = live
            .values()
            .filter_map(|p| parse_add(p))
            .map(|(id, event, req)| (id, now.saturating_sub(event), req))
            .collect();
        let mut j = AcctJournal {
            path: path.to_path_buf(),
            file: Self::rewrite(path, &live)?,
            entries: live.len(),
            live,
            skipped_bytes: skipped,
        };
        j.file.flush()?;
        Ok((j, restored))
    }

    /// Write the live records to `path` atomically and open it for appending.
    fn rewrite(path: &Path, live: &BTreeMap<u64, Vec<u8>>) -> io::Result<File> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut buf = Vec::new();
        for p in live.values() {
            entry(p, &mut buf);
        }
        {
            let mut o = OpenOptions::new();
            o.write(true).create(true).truncate(true);
            // User names, addresses and Class values: readable by vbng's user only.
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            let mut f = o.open(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        sync_dir(path);
        OpenOptions::new().append(true).open(path)
    }

    /// Records not yet acknowledged.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Append `ops` and `fsync` once; compact when the log is much longer than the
    /// live set.
    pub fn write(&mut self, ops: &[JournalOp]) -> io::Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let now = unix_ms();
        let mut buf = Vec::new();
        for op in ops {
            match op {
                JournalOp::Add { id, age_ms, req } => {
                    let p = add_payload(*id, now.saturating_sub(*age_ms), req);
                    entry(&p, &mut buf);
                    self.live.insert(*id, p);
                }
                JournalOp::Remove { id } => {
                    let mut p = vec![OP_REMOVE];
                    p.extend_from_slice(&id.to_le_bytes());
                    entry(&p, &mut buf);
                    self.live.remove(id);
                }
            }
            self.entries += 1;
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        if self.entries > 4096 && self.entries > 4 * self.live.len() {
            self.file = Self::rewrite(&self.path, &self.live)?;
            self.entries = self.live.len();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::proto::radius::attr;

    fn req(sid: &str) -> Request {
        Request {
            service: Service::Acct,
            attrs: vec![
                (attr::ACCT_STATUS_TYPE, 2u32.to_be_bytes().to_vec()),
                (attr::ACCT_SESSION_ID, sid.as_bytes().to_vec()),
                (attr::ACCT_DELAY_TIME, 0u32.to_be_bytes().to_vec()),
            ],
            password: None,
        }
    }

    #[test]
    fn log_roundtrip_compaction_and_torn_tail() {
        let dir = std::env::temp_dir().join(format!("vbng-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("acct.journal");
        let (mut j, r) = AcctJournal::open(&path).unwrap();
        assert!(r.is_empty());
        j.write(&[
            JournalOp::Add {
                id: 1,
                age_ms: 0,
                req: req("a"),
            },
            JournalOp::Add {
                id: 2,
                age_ms: 5_000,
                req: req("b"),
            },
            JournalOp::Add {
                id: 3,
                age_ms: 0,
                req: req("c"),
            },
            JournalOp::Remove { id: 1 },
        ])
        .unwrap();
        drop(j);
        // A torn append after the last good entry is ignored.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let (j, r) = AcctJournal::open(&path).unwrap();
        assert_eq!(j.skipped_bytes, 7);
        assert_eq!(j.live(), 2);
        let ids: Vec<u64> = r.iter().map(|x| x.0).collect();
        assert_eq!(ids, [2, 3]);
        assert_eq!(r[0].2, req("b"));
        assert!(r[0].1 >= 5_000, "age kept: {}", r[0].1);
        // Compacted: exactly the two live entries remain.
        let data = std::fs::read(&path).unwrap();
        let (live, entries, bad) = parse_log(&data);
        assert_eq!((live.len(), entries, bad), (2, 2, 0));
        // A flipped bit in an entry stops the replay there.
        let mut data = data;
        let last = data.len() - 1;
        data[last] ^= 1;
        let (live, _, bad) = parse_log(&data);
        assert_eq!(live.len(), 1);
        assert!(bad > 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
