//! AES-GCM through `ring` (BoringSSL's AES-NI/VAES + PCLMULQDQ assembly).

use super::{Algorithm, CryptoError, GcmBackend, ICV_LEN};
use crate::error::Error;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};

/// A `ring` AES-GCM key. `LessSafeKey` because ESP supplies its own unique nonces
/// (salt ‖ 64-bit sequence number, RFC 4106 §3.1).
pub struct RingGcm(LessSafeKey);

impl RingGcm {
    pub fn new(alg: Algorithm, key: &[u8]) -> Result<Self, Error> {
        let a = match alg {
            Algorithm::Aes128Gcm16 => &AES_128_GCM,
            Algorithm::Aes256Gcm16 => &AES_256_GCM,
        };
        let k = UnboundKey::new(a, key).map_err(|_| Error::KeyLength {
            expected: alg.keymat_len(),
            got: key.len() + 4,
        })?;
        Ok(RingGcm(LessSafeKey::new(k)))
    }
}

impl GcmBackend for RingGcm {
    #[inline]
    fn seal(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; ICV_LEN], CryptoError> {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                in_out,
            )
            .map_err(|_| CryptoError)?;
        let mut t = [0u8; ICV_LEN];
        t.copy_from_slice(tag.as_ref());
        Ok(t)
    }

    #[inline]
    fn open(&self, nonce: &[u8; 12], aad: &[u8], ct_and_tag: &mut [u8]) -> Result<(), CryptoError> {
        self.0
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                ct_and_tag,
            )
            .map(|_| ())
            .map_err(|_| CryptoError)
    }
}
