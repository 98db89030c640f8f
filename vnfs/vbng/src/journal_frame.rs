//! The framing the DHCPv4 lease journal and the DHCPv6 binding journal share:
//!
//! ```text
//! magic (8) | version u8 | count u32 | entries | SHA-256 of all before, first 8 octets
//! ```
//!
//! Integers are little-endian. [`Writer`] builds a journal, [`open`] checks one and
//! hands back its entry count and a [`Reader`] over the entries; each journal module
//! only says what an entry is.

use alloc::vec::Vec;
use sha2::{Digest, Sha256};

/// Octets of the check value.
pub const CHECK_LEN: usize = 8;

/// Why a journal's framing failed (each journal turns it into its own error, whose
/// text names the journal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Not a journal of this kind (another magic).
    BadMagic,
    /// A version this build does not read.
    UnsupportedVersion(u8),
    /// Cut short, or entries that do not fill the file.
    Truncated,
    /// The check value does not match (torn or corrupted write).
    Checksum,
}

/// The check value of `b`.
pub fn check(b: &[u8]) -> [u8; CHECK_LEN] {
    let h = Sha256::digest(b);
    let mut c = [0u8; CHECK_LEN];
    c.copy_from_slice(&h[..CHECK_LEN]);
    c
}

/// A journal being written: header first, entries appended to [`Writer::buf`], the
/// count and check value added by [`Writer::finish`].
pub struct Writer {
    /// The journal so far; append entries here.
    pub buf: Vec<u8>,
}

impl Writer {
    /// A journal with `magic` and `version`, room for `cap` octets.
    pub fn new(magic: &[u8; 8], version: u8, cap: usize) -> Writer {
        let mut buf = Vec::with_capacity(cap);
        buf.extend_from_slice(magic);
        buf.push(version);
        buf.extend_from_slice(&0u32.to_le_bytes());
        Writer { buf }
    }

    /// The finished journal of `count` entries.
    pub fn finish(mut self, count: u32) -> Vec<u8> {
        self.buf[9..13].copy_from_slice(&count.to_le_bytes());
        let c = check(&self.buf);
        self.buf.extend_from_slice(&c);
        self.buf
    }
}

/// Checks a journal's magic, check value and version; returns its entry count and a
/// reader over the entries.
pub fn open<'a>(
    b: &'a [u8],
    magic: &[u8; 8],
    version: u8,
) -> Result<(u32, Reader<'a>), FrameError> {
    if b.len() < magic.len() || &b[..magic.len()] != magic {
        return Err(FrameError::BadMagic);
    }
    if b.len() < magic.len() + 1 + 4 + CHECK_LEN {
        return Err(FrameError::Truncated);
    }
    let (body, c) = b.split_at(b.len() - CHECK_LEN);
    if check(body) != c {
        return Err(FrameError::Checksum);
    }
    let mut r = Reader(&body[magic.len()..]);
    let v = r.u8()?;
    if v != version {
        return Err(FrameError::UnsupportedVersion(v));
    }
    let n = r.u32()?;
    Ok((n, r))
}

/// Little-endian reads over a journal's entries; running short is `Truncated`.
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The next `n` octets.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, FrameError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64, FrameError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    /// Whether every octet was read (entries that do not fill the file are
    /// `Truncated`).
    pub fn end(&self) -> Result<(), FrameError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated)
        }
    }
}
