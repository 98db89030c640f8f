//! Drop reasons and errors of the ESP data path (RFC 4303 §3.4 lists the receive-side
//! checks: SA lookup, sequence number verification, integrity check, padding).

use core::fmt;

/// Why a packet was not passed on. Each reason has one counter in [`crate::Counters`]
/// and one string in [`DropReason::NAMES`] (the stage's error table, VPP-style).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// No SA for the SPI (inbound) or the policy names an SA that is gone (outbound).
    NoSa = 0,
    /// Sequence number already seen, or older than the replay window (RFC 4303 §3.4.3).
    Replay,
    /// Integrity check value did not verify (RFC 4303 §3.4.4).
    IcvFail,
    /// Padding length or padding bytes wrong after decryption (RFC 4303 §2.4).
    BadPadding,
    /// Inner packet does not match the SA's policy, or a clear packet matched a
    /// protect policy (RFC 4301 §5.2).
    PolicyMismatch,
    /// A policy said DISCARD, or no policy matched (RFC 4301 §4.4.1: default deny).
    PolicyDiscard,
    /// Packet too short, bad IP header, bad length fields, fragment.
    Malformed,
    /// The SA passed a hard lifetime limit (RFC 4301 §4.4.2.1).
    SaExpired,
    /// Sending would overflow the sequence number (RFC 4303 §3.3.3).
    SeqOverflow,
    /// Not enough headroom or tailroom in the buffer to encapsulate.
    NoRoom,
    /// Dummy packet (next header 59, RFC 4303 §2.6) received: discarded by design.
    Dummy,
    /// Crypto backend refused the operation (length limits).
    Crypto,
}

impl DropReason {
    /// Every reason, in discriminant order.
    pub const ALL: [DropReason; 12] = [
        DropReason::NoSa,
        DropReason::Replay,
        DropReason::IcvFail,
        DropReason::BadPadding,
        DropReason::PolicyMismatch,
        DropReason::PolicyDiscard,
        DropReason::Malformed,
        DropReason::SaExpired,
        DropReason::SeqOverflow,
        DropReason::NoRoom,
        DropReason::Dummy,
        DropReason::Crypto,
    ];

    /// Counter names, indexed by `reason as usize`.
    pub const NAMES: [&'static str; 12] = [
        "no SA",
        "replay",
        "ICV failure",
        "bad padding",
        "policy mismatch",
        "policy discard",
        "malformed",
        "SA expired",
        "sequence overflow",
        "no buffer room",
        "dummy packet",
        "crypto error",
    ];

    /// One-line descriptions, indexed like [`DropReason::NAMES`] (the stage's
    /// `error_help`).
    pub const HELP: [&'static str; 12] = [
        "no SA for the SPI, or the policy's SA is gone",
        "sequence number already seen or left of the replay window (RFC 4303 §3.4.3)",
        "integrity check value did not verify (RFC 4303 §3.4.4)",
        "pad length or padding bytes wrong after decryption (RFC 4303 §2.4)",
        "inner packet outside the SA's selectors, or clear traffic a policy protects (RFC 4301 §5.2)",
        "a DISCARD policy or no policy matched (RFC 4301 §4.4.1)",
        "too short, bad IP header or length fields, or a fragment",
        "the SA passed a hard lifetime limit (RFC 4301 §4.4.2.1)",
        "sending would wrap the sequence number (RFC 4303 §3.3.3)",
        "not enough headroom or tailroom to encapsulate",
        "dummy packet (next header 59) discarded by design (RFC 4303 §2.6)",
        "the crypto backend refused the operation",
    ];

    pub const COUNT: usize = Self::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        // The arrays are built from the same list; `index` is always in range.
        Self::NAMES.get(self.index()).copied().unwrap_or("?")
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl core::error::Error for DropReason {}

/// Errors of the control side: installing keys and SAs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Key length does not fit the algorithm (RFC 4106 §8.1: 16 or 32 key bytes plus a
    /// 4-byte salt).
    KeyLength { expected: usize, got: usize },
    /// The requested crypto backend was not compiled in.
    BackendMissing,
    /// An inbound SA with this SPI already exists.
    DuplicateSpi(u32),
    /// SPI values 0..=255 are reserved (RFC 4303 §2.1).
    ReservedSpi(u32),
    /// Replay window size must be a multiple of 64 between 64 and 65536.
    WindowSize(usize),
    /// Unknown SA id.
    UnknownSa,
    /// Tunnel endpoints must both be IPv4 or both IPv6.
    MixedFamily,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::KeyLength { expected, got } => {
                write!(
                    f,
                    "key material must be {expected} bytes (key + 4-byte salt), got {got}"
                )
            }
            Error::BackendMissing => f.write_str("crypto backend not compiled in"),
            Error::DuplicateSpi(s) => write!(f, "inbound SPI 0x{s:08x} already installed"),
            Error::ReservedSpi(s) => write!(f, "SPI {s} is reserved (1..=255 and 0)"),
            Error::WindowSize(w) => {
                write!(
                    f,
                    "replay window {w} must be a multiple of 64 in 64..=65536"
                )
            }
            Error::UnknownSa => f.write_str("unknown SA"),
            Error::MixedFamily => f.write_str("tunnel endpoints of different address families"),
        }
    }
}

impl core::error::Error for Error {}
