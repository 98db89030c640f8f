//! Sans-IO protocol code for a disaggregated BNG (BBF TR-459 control/user plane
//! separation): PFCP (3GPP TS 29.244) with the BBF vendor-specific information
//! elements, and GTP-U (3GPP TS 29.281) for the control packets a user plane
//! redirects to the control plane.
//!
//! - [`ie`]: PFCP information elements (TS 29.244 §8.1, §8.2), grouped IEs (§8.1.1,
//!   §7.5 tables), vendor-specific IEs with their Enterprise ID (§8.1.1) and the BBF
//!   TR-459 IEs (enterprise 3561)
//! - [`msg`]: the PFCP header (§7.2.2) and the node and session messages a BNG needs
//!   (§7.4, §7.5), with the mandatory-IE checks of §7.4/§7.5 and the error causes of
//!   §7.6 / §8.2.1
//! - [`node`]: a sans-IO PFCP node: sequence numbers and request/response matching with
//!   the T1/N1 retransmission timer (§6.4), association state (§6.2.6, §6.2.8),
//!   heartbeats with the Recovery Time Stamp and peer restart detection (§6.2.2,
//!   §19A of TS 23.007), refusal of session requests from unassociated peers (Cause
//!   72) and of malformed requests (Causes 66, 68, 69 with the Offending IE)
//! - [`gtpu`]: the GTP-U header (TS 29.281 §5), Echo Request/Response, Error
//!   Indication, End Marker and the G-PDU carrying a subscriber's Ethernet frame over
//!   UDP/IPv4 (the TR-459 control packet redirect)
//!
//! Nothing here does I/O or reads a clock: bytes and time go in, bytes and events come
//! out. The crate is `no_std` with `alloc` so the unikernel links it; every parser
//! returns an [`Error`] on any input and never panics.
#![no_std]

extern crate alloc;

pub mod gtpu;
pub mod ie;
pub mod msg;
pub mod node;
pub mod samples;

use core::fmt;

/// Why bytes could not be parsed or a value could not be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than a header or than a length field says, or an IE
    /// overruns its message or parent IE (TS 29.244 Cause 68 "Invalid length").
    InvalidLength,
    /// The version field is not 1 (PFCP §7.2.2, GTP-U §5.1).
    BadVersion(u8),
    /// A header field is inconsistent: the S flag does not match the message type,
    /// the GTP-U PT flag is 0, an extension header has length 0, ...
    BadHeader,
    /// A message type this crate does not handle.
    UnknownMessage(u8),
    /// The value of a known IE is shorter than its fixed part or holds a forbidden
    /// value (Cause 69 "Mandatory IE incorrect", Offending IE = `ie`).
    BadIe { ie: u16 },
    /// A mandatory IE is missing from a message or grouped IE (Cause 66, Offending IE
    /// = `ie`).
    MissingIe { ie: u16 },
    /// Grouped IEs nest deeper than [`ie::MAX_DEPTH`] (reported against the IE that
    /// went too deep).
    TooDeep { ie: u16 },
    /// Emitting: a message or IE would exceed its 16-bit length field, or a value does
    /// not fit its field.
    TooLong,
}

impl Error {
    /// The PFCP Cause (TS 29.244 §8.2.1) to answer a request that failed to parse
    /// with this error.
    pub const fn cause(self) -> u8 {
        match self {
            Error::InvalidLength | Error::TooLong => ie::cause::INVALID_LENGTH,
            Error::MissingIe { .. } => ie::cause::MANDATORY_IE_MISSING,
            Error::BadIe { .. } | Error::TooDeep { .. } => ie::cause::MANDATORY_IE_INCORRECT,
            Error::BadVersion(_) | Error::BadHeader | Error::UnknownMessage(_) => {
                ie::cause::REQUEST_REJECTED
            }
        }
    }

    /// The IE type to put in an Offending IE (§8.2.22), if the error names one.
    pub const fn offending_ie(self) -> Option<u16> {
        match self {
            Error::BadIe { ie } | Error::MissingIe { ie } | Error::TooDeep { ie } => Some(ie),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::InvalidLength => f.write_str("invalid length"),
            Error::BadVersion(v) => write!(f, "unsupported version {v}"),
            Error::BadHeader => f.write_str("inconsistent header"),
            Error::UnknownMessage(t) => write!(f, "unknown message type {t}"),
            Error::BadIe { ie } => write!(f, "incorrect IE {ie}"),
            Error::MissingIe { ie } => write!(f, "mandatory IE {ie} missing"),
            Error::TooDeep { ie } => write!(f, "grouped IE {ie} nested too deep"),
            Error::TooLong => f.write_str("value too long for its length field"),
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

/// Big-endian readers over a slice that return `None` when it is too short.
pub(crate) mod bytes {
    pub fn be16(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
    }
    pub fn be24(b: &[u8], at: usize) -> Option<u32> {
        let s = b.get(at..at + 3)?;
        Some(u32::from(s[0]) << 16 | u32::from(s[1]) << 8 | u32::from(s[2]))
    }
    pub fn be32(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }
    pub fn be40(b: &[u8], at: usize) -> Option<u64> {
        let s = b.get(at..at + 5)?;
        Some(s.iter().fold(0u64, |a, &x| a << 8 | u64::from(x)))
    }
    pub fn be64(b: &[u8], at: usize) -> Option<u64> {
        Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
    }
    pub fn arr<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
        b.get(at..at + N)?.try_into().ok()
    }
}
