//! A pre-shared key (RFC 7296 §2.15) as configurations give it: text, or `0x` and
//! hex. `no_std`; with the `serde` feature it deserializes from a TOML string.

#[cfg(feature = "serde")]
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
#[cfg(feature = "serde")]
use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

/// A pre-shared key. Deliberately neither `Display` nor a revealing `Debug`: it
/// prints as `<secret>`; the bytes are wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk(Zeroizing<Vec<u8>>);

impl Psk {
    pub fn new(b: &[u8]) -> Self {
        Psk(Zeroizing::new(b.to_vec()))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[cfg(feature = "serde")]
impl<'de> Deserialize<'de> for Psk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        if let Some(h) = s.strip_prefix("0x") {
            if h.len() % 2 != 0 || h.is_empty() {
                return Err(serde::de::Error::custom("psk: odd or empty hex after 0x"));
            }
            let mut v = Zeroizing::new(Vec::with_capacity(h.len() / 2));
            for i in (0..h.len()).step_by(2) {
                let b = h
                    .get(i..i + 2)
                    .and_then(|x| u8::from_str_radix(x, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("psk: bad hex after 0x"))?;
                v.push(b);
            }
            return Ok(Psk(v));
        }
        if s.is_empty() {
            return Err(serde::de::Error::custom("psk: empty"));
        }
        Ok(Psk(Zeroizing::new(s.as_bytes().to_vec())))
    }
}
