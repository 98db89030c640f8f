//! AES-GCM for ESP (RFC 4106): the key is 16 or 32 bytes followed by a 4-byte salt
//! (§8.1); the nonce is salt ‖ 8-byte explicit IV (§4); the ICV is the full 16-byte
//! GCM tag (§6). Two backends implement [`GcmBackend`]: `ring` (fast path) and the
//! RustCrypto `aes-gcm` crate (portable fallback). [`GcmKey`] dispatches between them
//! without dynamic calls.

#[cfg(feature = "ring")]
mod ring_backend;
#[cfg(feature = "rustcrypto")]
mod rustcrypto_backend;

#[cfg(feature = "ring")]
pub use ring_backend::RingGcm;
#[cfg(feature = "rustcrypto")]
pub use rustcrypto_backend::RustCryptoGcm;

use crate::error::Error;
use zeroize::Zeroize;

/// GCM tag / ESP ICV length used here (RFC 4106 §6: 16 octets is the MUST).
pub const ICV_LEN: usize = 16;
/// Salt length (RFC 4106 §4).
pub const SALT_LEN: usize = 4;
/// Explicit IV length carried in each packet (RFC 4106 §3.1).
pub const IV_LEN: usize = 8;

/// ESP-AES-GCM with a 16-octet ICV (IKEv2 transform ID 20), by key size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Aes128Gcm16,
    Aes256Gcm16,
}

impl Algorithm {
    pub fn key_len(self) -> usize {
        match self {
            Algorithm::Aes128Gcm16 => 16,
            Algorithm::Aes256Gcm16 => 32,
        }
    }

    /// Key material length: key plus salt (RFC 4106 §8.1).
    pub fn keymat_len(self) -> usize {
        self.key_len() + SALT_LEN
    }
}

/// Which implementation does the AES-GCM work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Ring,
    RustCrypto,
}

impl Backend {
    /// The fastest backend compiled in.
    pub const fn preferred() -> Backend {
        #[cfg(feature = "ring")]
        {
            Backend::Ring
        }
        #[cfg(not(feature = "ring"))]
        {
            Backend::RustCrypto
        }
    }
}

impl Backend {
    /// Every backend compiled into this build.
    pub const fn compiled() -> &'static [Backend] {
        #[cfg(all(feature = "ring", feature = "rustcrypto"))]
        {
            &[Backend::Ring, Backend::RustCrypto]
        }
        #[cfg(all(feature = "ring", not(feature = "rustcrypto")))]
        {
            &[Backend::Ring]
        }
        #[cfg(not(feature = "ring"))]
        {
            &[Backend::RustCrypto]
        }
    }
}

/// Integrity check failed, or the backend refused the lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CryptoError;

/// One AES-GCM key, ready to seal and open. Implementations keep the expanded key
/// inline (no heap), so a [`crate::secret::Secret`] can hold them in secret memory.
pub trait GcmBackend: Send + Sync {
    /// Encrypts `in_out` in place and returns the tag.
    fn seal(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; ICV_LEN], CryptoError>;

    /// Verifies and decrypts `ct_and_tag` (ciphertext followed by the 16-byte tag) in
    /// place. On success the first `len - 16` bytes are plaintext.
    fn open(&self, nonce: &[u8; 12], aad: &[u8], ct_and_tag: &mut [u8]) -> Result<(), CryptoError>;
}

/// Key bytes handed in by the control plane; zeroized when dropped.
pub struct KeyMaterial {
    bytes: [u8; 36],
    len: usize,
}

impl KeyMaterial {
    /// `bytes` is key ‖ salt, 20 or 36 bytes for `alg`.
    pub fn new(alg: Algorithm, bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != alg.keymat_len() {
            return Err(Error::KeyLength {
                expected: alg.keymat_len(),
                got: bytes.len(),
            });
        }
        let mut k = KeyMaterial {
            bytes: [0; 36],
            len: bytes.len(),
        };
        if let Some(dst) = k.bytes.get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        Ok(k)
    }

    /// The key ‖ salt bytes, for an explicit opt-in key log only (the vCPE's
    /// `--esp-sa-log`, the lab's decryption with tshark): never print them.
    pub fn expose_for_key_log(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    fn split(&self) -> (&[u8], [u8; SALT_LEN]) {
        let all = self.bytes.get(..self.len).unwrap_or(&[]);
        let (key, salt) = all.split_at(all.len().saturating_sub(SALT_LEN));
        let mut s = [0u8; SALT_LEN];
        if salt.len() == SALT_LEN {
            s.copy_from_slice(salt);
        }
        (key, s)
    }
}

impl Drop for KeyMaterial {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for KeyMaterial {}

// Lives inside a `Secret` page and is never moved: no point boxing the larger one.
#[allow(clippy::large_enum_variant)]
enum Imp {
    #[cfg(feature = "ring")]
    Ring(RingGcm),
    #[cfg(feature = "rustcrypto")]
    RustCrypto(RustCryptoGcm),
}

/// An SA's AES-GCM state: the expanded key and the salt.
pub struct GcmKey {
    imp: Imp,
    salt: [u8; SALT_LEN],
    alg: Algorithm,
    backend: Backend,
}

impl GcmKey {
    pub fn new(backend: Backend, alg: Algorithm, km: &KeyMaterial) -> Result<Self, Error> {
        let (key, salt) = km.split();
        if key.len() != alg.key_len() {
            return Err(Error::KeyLength {
                expected: alg.keymat_len(),
                got: km.len,
            });
        }
        let imp = match backend {
            #[cfg(feature = "ring")]
            Backend::Ring => Imp::Ring(RingGcm::new(alg, key)?),
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto => Imp::RustCrypto(RustCryptoGcm::new(alg, key)?),
            #[allow(unreachable_patterns)]
            _ => return Err(Error::BackendMissing),
        };
        Ok(GcmKey {
            imp,
            salt,
            alg,
            backend,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Nonce = salt ‖ explicit IV (RFC 4106 §4).
    #[inline]
    pub fn nonce(&self, iv: &[u8; IV_LEN]) -> [u8; 12] {
        let mut n = [0u8; 12];
        let (s, i) = n.split_at_mut(SALT_LEN);
        s.copy_from_slice(&self.salt);
        i.copy_from_slice(iv);
        n
    }

    #[inline]
    pub fn seal(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; ICV_LEN], CryptoError> {
        let nonce = self.nonce(iv);
        match &self.imp {
            #[cfg(feature = "ring")]
            Imp::Ring(k) => k.seal(&nonce, aad, in_out),
            #[cfg(feature = "rustcrypto")]
            Imp::RustCrypto(k) => k.seal(&nonce, aad, in_out),
        }
    }

    #[inline]
    pub fn open(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        ct_and_tag: &mut [u8],
    ) -> Result<(), CryptoError> {
        let nonce = self.nonce(iv);
        match &self.imp {
            #[cfg(feature = "ring")]
            Imp::Ring(k) => k.open(&nonce, aad, ct_and_tag),
            #[cfg(feature = "rustcrypto")]
            Imp::RustCrypto(k) => k.open(&nonce, aad, ct_and_tag),
        }
    }
}

impl Drop for GcmKey {
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    pub(crate) fn unhex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    struct Vector {
        key: &'static str,
        iv: &'static str,
        aad: &'static str,
        pt: &'static str,
        ct: &'static str,
        tag: &'static str,
    }

    const P: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                     1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
    const K: &str = "feffe9928665731c6d6a8f9467308308";
    const K256: &str = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
    const AAD: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";

    /// Test cases 2, 3, 4, 15, 16 of the GCM specification (McGrew & Viega), the
    /// vectors RFC 4106 §1 refers to. Cross-checked with Python `cryptography`.
    fn vectors() -> [Vector; 5] {
        [
            Vector {
                key: "00000000000000000000000000000000",
                iv: "000000000000000000000000",
                aad: "",
                pt: "00000000000000000000000000000000",
                ct: "0388dace60b6a392f328c2b971b2fe78",
                tag: "ab6e47d42cec13bdf53a67b21257bddf",
            },
            Vector {
                key: K,
                iv: "cafebabefacedbaddecaf888",
                aad: "",
                pt: P,
                ct: "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
                     21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
                tag: "4d5c2af327cd64a62cf35abd2ba6fab4",
            },
            Vector {
                key: K,
                iv: "cafebabefacedbaddecaf888",
                aad: AAD,
                pt: &P[..120],
                ct: "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
                     21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
                tag: "5bc94fbc3221a5db94fae95ae7121a47",
            },
            Vector {
                key: K256,
                iv: "cafebabefacedbaddecaf888",
                aad: "",
                pt: P,
                ct: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                     8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
                tag: "b094dac5d93471bdec1a502270e3cc6c",
            },
            Vector {
                key: K256,
                iv: "cafebabefacedbaddecaf888",
                aad: AAD,
                pt: &P[..120],
                ct: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                     8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                tag: "76fc6ece0f4e1768cddf8853bb2d551b",
            },
        ]
    }

    fn key_for(backend: Backend, key_hex: &str, iv_hex: &str) -> (GcmKey, [u8; IV_LEN]) {
        let key = unhex(key_hex);
        let iv = unhex(iv_hex);
        let alg = if key.len() == 16 {
            Algorithm::Aes128Gcm16
        } else {
            Algorithm::Aes256Gcm16
        };
        // Split the 12-byte GCM IV into RFC 4106 salt (4) and explicit IV (8).
        let mut km = key.clone();
        km.extend_from_slice(&iv[..4]);
        let k = GcmKey::new(backend, alg, &KeyMaterial::new(alg, &km).unwrap()).unwrap();
        (k, iv[4..].try_into().unwrap())
    }

    #[test]
    fn gcm_spec_vectors_every_backend() {
        let backends = Backend::compiled();
        assert!(!backends.is_empty());
        for &b in backends {
            for v in vectors() {
                let (k, iv) = key_for(b, v.key, v.iv);
                let mut buf = unhex(v.pt);
                let tag = k.seal(&iv, &unhex(v.aad), &mut buf).unwrap();
                assert_eq!(buf, unhex(v.ct), "{b:?} ciphertext");
                assert_eq!(tag.to_vec(), unhex(v.tag), "{b:?} tag");
                buf.extend_from_slice(&tag);
                k.open(&iv, &unhex(v.aad), &mut buf).unwrap();
                assert_eq!(&buf[..buf.len() - 16], &unhex(v.pt)[..], "{b:?} open");
                // A flipped tag bit fails.
                let mut bad = unhex(v.ct);
                bad.extend_from_slice(&tag);
                let last = bad.len() - 1;
                bad[last] ^= 1;
                assert_eq!(k.open(&iv, &unhex(v.aad), &mut bad), Err(CryptoError));
            }
        }
    }

    #[test]
    fn key_length_checked() {
        assert!(matches!(
            KeyMaterial::new(Algorithm::Aes128Gcm16, &[0; 16]),
            Err(Error::KeyLength {
                expected: 20,
                got: 16
            })
        ));
        assert!(KeyMaterial::new(Algorithm::Aes256Gcm16, &[0; 36]).is_ok());
    }
}
