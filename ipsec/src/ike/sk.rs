//! The Encrypted payload SK (RFC 7296 §3.14) with AES-GCM and a 16-octet ICV
//! (ENCR_AES_GCM_16, RFC 5282): body = 8-byte IV ‖ ciphertext ‖ 16-byte ICV; the
//! plaintext is the inner payload chain, padding and a pad-length byte (§3.14, no
//! padding needed for GCM, RFC 5282 §3); the nonce is the 4-byte salt from SK_e ‖ IV
//! (RFC 5282 §4); the AAD is the message from the IKE header through SK's generic
//! header (RFC 5282 §5.1). The header's length field covers the whole message before
//! sealing, so it is authenticated.

use super::wire::{self, Header, Message, ParseError, Payload, GENERIC_LEN, HEADER_LEN};
use crate::crypto::{GcmKey, ICV_LEN, IV_LEN};
use alloc::vec::Vec;
use core::fmt;

/// Why an Encrypted payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkError {
    /// The message has no Encrypted payload.
    Missing,
    /// Shorter than IV + pad-length byte + ICV.
    Short,
    /// The ICV did not verify (forged, corrupted, or the wrong key).
    Integrity,
    /// Pad length larger than the plaintext.
    Padding,
    /// The decrypted payload chain did not parse.
    Inner(ParseError),
}

impl fmt::Display for SkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkError::Missing => f.write_str("no encrypted payload"),
            SkError::Short => f.write_str("encrypted payload too short"),
            SkError::Integrity => f.write_str("integrity check failed"),
            SkError::Padding => f.write_str("bad pad length"),
            SkError::Inner(e) => write!(f, "inner payloads: {e}"),
        }
    }
}

impl core::error::Error for SkError {}

/// Builds a message whose only payload is SK around `inner`, sealed with `key` and
/// explicit IV `iv` (unique per key: the caller's counter).
pub fn seal(header: &Header, inner: &[Payload], key: &GcmKey, iv: u64) -> Vec<u8> {
    let mut pt = Vec::with_capacity(256);
    let first = wire::write_chain(inner, wire::payload_type::NONE, &mut pt);
    pt.push(0); // pad length: no padding
    let total = HEADER_LEN + GENERIC_LEN + IV_LEN + pt.len() + ICV_LEN;
    let mut h = *header;
    h.next_payload = wire::payload_type::SK;
    h.length = total as u32;
    let mut out = Vec::with_capacity(total);
    h.write(&mut out);
    out.push(first);
    out.push(0);
    let sk_len = u16::try_from(total - HEADER_LEN).unwrap_or(u16::MAX);
    out.extend_from_slice(&sk_len.to_be_bytes());
    let ivb = iv.to_be_bytes();
    let aad_len = out.len();
    out.extend_from_slice(&ivb);
    let ct_start = out.len();
    out.extend_from_slice(&pt);
    let (aad, rest) = out.split_at_mut(aad_len);
    let tag = rest
        .get_mut(IV_LEN..)
        .map(|ct| key.seal(&ivb, aad, ct))
        .unwrap_or(Err(crate::crypto::CryptoError));
    match tag {
        Ok(t) => out.extend_from_slice(&t),
        // Only reachable if the backend refused the lengths: send an undecryptable
        // message rather than plaintext.
        Err(_) => {
            out.truncate(ct_start);
            out.extend_from_slice(&[0; ICV_LEN + 1]);
        }
    }
    out
}

/// Verifies and decrypts the SK payload of `msg` (parsed from `datagram`) and parses
/// the inner payloads.
pub fn open(datagram: &[u8], msg: &Message, key: &GcmKey) -> Result<Vec<Payload>, SkError> {
    let sk = msg.sk.ok_or(SkError::Missing)?;
    let body_at = sk.offset + GENERIC_LEN;
    let aad = datagram.get(..body_at).ok_or(SkError::Short)?;
    let body = datagram.get(body_at..).ok_or(SkError::Short)?;
    if body.len() < IV_LEN + 1 + ICV_LEN {
        return Err(SkError::Short);
    }
    let (iv, ct) = body.split_at(IV_LEN);
    let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| SkError::Short)?;
    let mut buf = ct.to_vec();
    key.open(&iv, aad, &mut buf)
        .map_err(|_| SkError::Integrity)?;
    buf.truncate(buf.len() - ICV_LEN);
    let pad = usize::from(*buf.last().ok_or(SkError::Short)?);
    let inner_len = buf.len().checked_sub(1 + pad).ok_or(SkError::Padding)?;
    buf.truncate(inner_len);
    let mut payloads = Vec::new();
    wire::parse_chain(sk.first_payload, &buf, 0, false, &mut payloads).map_err(SkError::Inner)?;
    Ok(payloads)
}
