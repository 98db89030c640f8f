//! The state journal: one snapshot file, replaced atomically (write `PATH.tmp`,
//! fsync it, rename it over `PATH`, fsync the directory), so a crash at any point
//! leaves either the old or the new snapshot, never a mix. The snapshot ends with the
//! first 16 octets of its SHA-256, checked on load.
//!
//! ```text
//! magic "KSJRNL01" | body length u32 | body | SHA-256(magic..body)[..16]
//! body  = revoked count u32 | (id)* | pair count u32 | pair*
//! pair  = id_a | id_b | phase u8 | epoch count u8 | epoch*
//! epoch = epoch u32 | spi_ab u32 | spi_ba u32 | alg u8 | keys (2 × keymat_len)
//! id    = length u8 | UTF-8
//! ```
//!
//! The file holds key material: it is created with mode 0600, and the buffers that
//! build and read it are zeroized.

use crate::prelude::*;
#[cfg(feature = "std")]
use std::fs;
#[cfg(feature = "std")]
use std::io::{self, Write};
#[cfg(feature = "std")]
use std::os::unix::fs::OpenOptionsExt;
#[cfg(feature = "std")]
use std::path::Path;
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"KSJRNL01";
const CHECK: usize = 16;

/// One epoch of a pair as journaled.
pub struct JEpoch {
    pub epoch: u32,
    pub spi_ab: u32,
    pub spi_ba: u32,
    pub alg: u8,
    /// key_ab ‖ key_ba.
    pub keys: Zeroizing<Vec<u8>>,
}

/// One pair as journaled (`a` < `b` by id).
pub struct JPair {
    pub a: String,
    pub b: String,
    pub phase: u8,
    pub epochs: Vec<JEpoch>,
}

/// The journaled state.
#[derive(Default)]
pub struct Snapshot {
    pub revoked: Vec<String>,
    pub pairs: Vec<JPair>,
}

fn put_id(o: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let n = b.len().min(255);
    o.push(n as u8);
    o.extend_from_slice(&b[..n]);
}

impl Snapshot {
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut o = Zeroizing::new(Vec::with_capacity(64 + self.pairs.len() * 120));
        o.extend_from_slice(MAGIC);
        o.extend_from_slice(&[0; 4]);
        o.extend_from_slice(&(self.revoked.len() as u32).to_be_bytes());
        for r in &self.revoked {
            put_id(&mut o, r);
        }
        o.extend_from_slice(&(self.pairs.len() as u32).to_be_bytes());
        for p in &self.pairs {
            put_id(&mut o, &p.a);
            put_id(&mut o, &p.b);
            o.push(p.phase);
            o.push(p.epochs.len() as u8);
            for e in &p.epochs {
                o.extend_from_slice(&e.epoch.to_be_bytes());
                o.extend_from_slice(&e.spi_ab.to_be_bytes());
                o.extend_from_slice(&e.spi_ba.to_be_bytes());
                o.push(e.alg);
                o.push(e.keys.len() as u8);
                o.extend_from_slice(&e.keys);
            }
        }
        let body = (o.len() - 12) as u32;
        o[8..12].copy_from_slice(&body.to_be_bytes());
        let d = ring::digest::digest(&ring::digest::SHA256, &o);
        o.extend_from_slice(&d.as_ref()[..CHECK]);
        o
    }

    /// Checks and decodes a snapshot; never panics.
    pub fn decode(b: &[u8]) -> Result<Snapshot, String> {
        if b.len() < 12 + CHECK || &b[..8] != MAGIC {
            return Err("not a key server journal".into());
        }
        let (data, check) = b.split_at(b.len() - CHECK);
        let d = ring::digest::digest(&ring::digest::SHA256, data);
        if &d.as_ref()[..CHECK] != check {
            return Err("journal checksum mismatch".into());
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&data[8..12]);
        if u32::from_be_bytes(len) as usize != data.len() - 12 {
            return Err("journal length mismatch".into());
        }
        let mut r = R(&data[12..]);
        let t = "truncated journal";
        let mut s = Snapshot::default();
        let n = r.u32().ok_or(t)?;
        for _ in 0..n {
            s.revoked.push(r.id().ok_or(t)?);
        }
        let n = r.u32().ok_or(t)?;
        for _ in 0..n {
            let a = r.id().ok_or(t)?;
            let b = r.id().ok_or(t)?;
            let phase = r.u8().ok_or(t)?;
            let ne = r.u8().ok_or(t)?;
            let mut epochs = Vec::new();
            for _ in 0..ne {
                let epoch = r.u32().ok_or(t)?;
                let spi_ab = r.u32().ok_or(t)?;
                let spi_ba = r.u32().ok_or(t)?;
                let alg = r.u8().ok_or(t)?;
                let kl = r.u8().ok_or(t)?;
                let keys = Zeroizing::new(r.take(kl as usize).ok_or(t)?.to_vec());
                epochs.push(JEpoch {
                    epoch,
                    spi_ab,
                    spi_ba,
                    alg,
                    keys,
                });
            }
            s.pairs.push(JPair {
                a,
                b,
                phase,
                epochs,
            });
        }
        if !r.0.is_empty() {
            return Err("trailing bytes in journal".into());
        }
        Ok(s)
    }
}

struct R<'a>(&'a [u8]);

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Some(u32::from_be_bytes(a))
    }
    fn id(&mut self) -> Option<String> {
        let n = self.u8()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// Replaces the file at `path` with `data` atomically (see the module docs).
#[cfg(feature = "std")]
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}

/// Loads the snapshot at `path`; `Ok(None)` when there is none yet.
#[cfg(feature = "std")]
pub fn load(path: &Path) -> Result<Option<Snapshot>, String> {
    match fs::read(path) {
        Ok(b) => {
            let b = Zeroizing::new(b);
            Snapshot::decode(&b)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            revoked: vec!["bad".into()],
            pairs: vec![JPair {
                a: "a".into(),
                b: "b".into(),
                phase: 1,
                epochs: vec![JEpoch {
                    epoch: 2,
                    spi_ab: 0x1234,
                    spi_ba: 0x5678,
                    alg: 2,
                    keys: Zeroizing::new(vec![5; 72]),
                }],
            }],
        }
    }

    #[test]
    fn round_trip_and_corruption() {
        let b = sample().encode();
        let s = Snapshot::decode(&b).unwrap();
        assert_eq!(s.revoked, vec!["bad".to_string()]);
        assert_eq!(s.pairs[0].epochs[0].spi_ba, 0x5678);
        assert_eq!(*s.pairs[0].epochs[0].keys, vec![5; 72]);
        for i in 0..b.len() {
            let mut c = b.to_vec();
            c[i] ^= 1;
            assert!(Snapshot::decode(&c).is_err(), "flip at {i}");
        }
        for n in 0..b.len() {
            assert!(Snapshot::decode(&b[..n]).is_err());
        }
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = std::env::temp_dir().join(format!("ks-journal-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state");
        assert!(load(&p).unwrap().is_none());
        write_atomic(&p, &sample().encode()).unwrap();
        write_atomic(&p, &Snapshot::default().encode()).unwrap();
        let s = load(&p).unwrap().unwrap();
        assert!(s.pairs.is_empty());
        assert!(!dir.join("state.tmp").exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
