//! AES-GCM through RustCrypto `aes-gcm` (portable; uses AES-NI/CLMUL when the CPU has
//! them, constant-time bitsliced code otherwise).

use super::{Algorithm, CryptoError, GcmBackend, ICV_LEN};
use crate::error::Error;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce, Tag};

// Lives inside a `Secret` page and is never moved: no point boxing the larger one.
#[allow(clippy::large_enum_variant)]
enum Inner {
    A128(Aes128Gcm),
    A256(Aes256Gcm),
}

/// A RustCrypto AES-GCM key (zeroized on drop through the crate's `zeroize` feature).
pub struct RustCryptoGcm(Inner);

impl RustCryptoGcm {
    pub fn new(alg: Algorithm, key: &[u8]) -> Result<Self, Error> {
        let err = |_| Error::KeyLength {
            expected: alg.keymat_len(),
            got: key.len() + 4,
        };
        Ok(RustCryptoGcm(match alg {
            Algorithm::Aes128Gcm16 => Inner::A128(Aes128Gcm::new_from_slice(key).map_err(err)?),
            Algorithm::Aes256Gcm16 => Inner::A256(Aes256Gcm::new_from_slice(key).map_err(err)?),
        }))
    }
}

impl GcmBackend for RustCryptoGcm {
    fn seal(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; ICV_LEN], CryptoError> {
        let n = Nonce::from_slice(nonce);
        let tag = match &self.0 {
            Inner::A128(c) => c.encrypt_in_place_detached(n, aad, in_out),
            Inner::A256(c) => c.encrypt_in_place_detached(n, aad, in_out),
        }
        .map_err(|_| CryptoError)?;
        let mut t = [0u8; ICV_LEN];
        t.copy_from_slice(tag.as_slice());
        Ok(t)
    }

    fn open(&self, nonce: &[u8; 12], aad: &[u8], ct_and_tag: &mut [u8]) -> Result<(), CryptoError> {
        let n = Nonce::from_slice(nonce);
        let split = ct_and_tag.len().checked_sub(ICV_LEN).ok_or(CryptoError)?;
        let (ct, tag) = ct_and_tag.split_at_mut(split);
        let tag = Tag::from_slice(tag);
        match &self.0 {
            Inner::A128(c) => c.decrypt_in_place_detached(n, aad, ct, tag),
            Inner::A256(c) => c.decrypt_in_place_detached(n, aad, ct, tag),
        }
        .map_err(|_| CryptoError)
    }
}
