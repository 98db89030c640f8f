//! Wire formats, smoltcp-shaped: a checked zero-copy view per packet plus an owned
//! `Repr` where the program reasons about the contents. Parsing never panics; every
//! malformed input maps to an [`Error`].
//!
//! - [`eth`]: Ethernet II with 802.1Q / 802.1ad (QinQ) tags (IEEE 802.1Q §9, TR-101 §3)
//! - [`pppoe`]: PPPoE discovery and session stages (RFC 2516 §4–§5, RFC 4638)
//! - [`ppp`]: PPP framing and the LCP-family control packets and options (RFC 1661 §5–§6,
//!   RFC 1332, RFC 1877, RFC 5072), PAP (RFC 1334 §2.2), CHAP (RFC 1994 §4)
//! - [`radius`]: RADIUS packets and attributes (RFC 2865 §3–§5, RFC 2866, RFC 2869,
//!   RFC 3579 §3.2, RFC 5176)

pub mod eth;
pub mod ppp;
pub mod pppoe;
pub mod radius;

use core::fmt;

/// Why a packet could not be parsed or emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than a header or a length field says.
    Truncated,
    /// A field has a value the spec forbids (bad version, bad length, ...).
    Malformed,
    /// The output buffer is too small for what we want to emit.
    NoSpace,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated packet"),
            Error::Malformed => f.write_str("malformed packet"),
            Error::NoSpace => f.write_str("no space to emit"),
        }
    }
}

/// Result alias for the wire module.
pub type Result<T> = core::result::Result<T, Error>;

/// Big-endian u16 at `off`, or `Truncated`.
#[inline]
pub(crate) fn be16(b: &[u8], off: usize) -> Result<u16> {
    match b.get(off..off + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => Err(Error::Truncated),
    }
}

/// Big-endian u32 at `off`, or `Truncated`.
#[inline]
pub(crate) fn be32(b: &[u8], off: usize) -> Result<u32> {
    match b.get(off..off + 4) {
        Some(s) => Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]])),
        None => Err(Error::Truncated),
    }
}

/// A growable output for emitters that build control packets (control path only).
pub(crate) fn put16(v: &mut alloc::vec::Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_be_bytes());
}
