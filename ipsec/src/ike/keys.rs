//! IKEv2 key material (RFC 7296 §2.13-§2.17, §2.23), all primitives from `ring`:
//!
//! * [`Prf`]: PRF_HMAC_SHA2_256 / _384 (RFC 4868) and prf+ (§2.13);
//! * [`DhGroup`] / [`DhPrivate`]: Curve25519 (group 31, RFC 8031) and NIST P-256
//!   (group 19, RFC 5903: KE data is x ‖ y, the shared secret is x) through `ring`;
//!   MODP-2048 (group 14, RFC 3526 §3) with `crypto-bigint`'s constant-time modular
//!   exponentiation, a 256-bit private exponent (RFC 3526 §8), peer values checked
//!   to lie in 2..=p-2 (NIST SP 800-56A §5.6.2.3.1), g^ir padded to 256 bytes
//!   (RFC 7296 §2.14);
//! * [`IkeKeys::derive`]: SKEYSEED and SK_d, SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr
//!   (§2.14; with an AEAD cipher SK_ai/SK_ar are empty, RFC 5282 §7);
//!   [`IkeKeys::derive_rekey`]: the same for a rekeyed IKE SA (§2.18);
//! * [`child_keymat`] / [`child_keymat_pfs`]: KEYMAT for a child SA (§2.17);
//! * [`psk_auth`]: AUTH for a pre-shared key (§2.15);
//! * [`nat_detection_hash`]: NAT_DETECTION_*_IP data (§2.23).
//!
//! Secrets are held in `Zeroizing` buffers and wiped on drop; none implements `Debug`.
//! Apart from the MODP arithmetic all primitives come from `ring`.

use crate::crypto::{Algorithm, Backend, GcmKey, KeyMaterial};
use crate::ike::wire::transform;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, SocketAddr};
use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Encoding, U2048, U256};
use ring::{agreement, digest, hmac, rand};
use zeroize::Zeroizing;

/// The 2048-bit MODP prime of RFC 3526 §3 (generator 2): 2^2048 - 2^1984 - 1 +
/// 2^64 * ([2^1918 pi] + 124476), a safe prime.
const MODP2048_P: U2048 = U2048::from_be_hex(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
));

/// Montgomery parameters of [`MODP2048_P`], computed at compile time (the prime is
/// odd, so `new` cannot fail).
const MODP2048_PARAMS: DynResidueParams<{ U2048::LIMBS }> = DynResidueParams::new(&MODP2048_P);

/// base^x mod p (RFC 3526 group 14), constant time in x.
fn modp2048_pow(base: &U2048, x: &U256) -> U2048 {
    DynResidue::new(base, MODP2048_PARAMS).pow(x).retrieve()
}

/// A secret byte string, wiped on drop.
pub type SecretBytes = Zeroizing<Vec<u8>>;

/// Key derivation or exchange failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// prf+ asked for more than 255 blocks (§2.13).
    TooLong,
    /// The peer's KE data is not a valid public value for the group.
    BadPublicValue,
    /// Group not implemented.
    UnsupportedGroup(u16),
    /// The system random generator failed.
    Random,
    /// The AES-GCM key could not be built.
    Cipher,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::TooLong => f.write_str("prf+ output longer than 255 blocks"),
            KeyError::BadPublicValue => f.write_str("invalid Diffie-Hellman public value"),
            KeyError::UnsupportedGroup(g) => write!(f, "Diffie-Hellman group {g} not supported"),
            KeyError::Random => f.write_str("random generator failed"),
            KeyError::Cipher => f.write_str("cipher key setup failed"),
        }
    }
}

impl core::error::Error for KeyError {}

/// Pseudo-random functions (§3.3.2 transform type 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prf {
    HmacSha256,
    HmacSha384,
}

impl Prf {
    pub fn id(self) -> u16 {
        match self {
            Prf::HmacSha256 => transform::PRF_HMAC_SHA2_256,
            Prf::HmacSha384 => transform::PRF_HMAC_SHA2_384,
        }
    }

    pub fn from_id(id: u16) -> Option<Prf> {
        match id {
            transform::PRF_HMAC_SHA2_256 => Some(Prf::HmacSha256),
            transform::PRF_HMAC_SHA2_384 => Some(Prf::HmacSha384),
            _ => None,
        }
    }

    /// Output length, which is also the length of SK_d, SK_pi and SK_pr (§2.14).
    pub fn out_len(self) -> usize {
        match self {
            Prf::HmacSha256 => 32,
            Prf::HmacSha384 => 48,
        }
    }

    fn alg(self) -> hmac::Algorithm {
        match self {
            Prf::HmacSha256 => hmac::HMAC_SHA256,
            Prf::HmacSha384 => hmac::HMAC_SHA384,
        }
    }

    /// prf(key, the concatenation of `parts`).
    pub fn prf(self, key: &[u8], parts: &[&[u8]]) -> SecretBytes {
        let k = hmac::Key::new(self.alg(), key);
        let mut c = hmac::Context::with_key(&k);
        for p in parts {
            c.update(p);
        }
        Zeroizing::new(c.sign().as_ref().to_vec())
    }

    /// prf+(key, seed) truncated to `len` bytes (§2.13): T1 = prf(K, S ‖ 0x01),
    /// Tn = prf(K, Tn-1 ‖ S ‖ n), at most 255 blocks.
    pub fn prf_plus(self, key: &[u8], seed: &[&[u8]], len: usize) -> Result<SecretBytes, KeyError> {
        if len > 255 * self.out_len() {
            return Err(KeyError::TooLong);
        }
        let k = hmac::Key::new(self.alg(), key);
        let mut out = Zeroizing::new(Vec::with_capacity(len + self.out_len()));
        let mut prev: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::new());
        let mut n: u8 = 1;
        while out.len() < len {
            let mut c = hmac::Context::with_key(&k);
            c.update(&prev);
            for s in seed {
                c.update(s);
            }
            c.update(&[n]);
            prev = Zeroizing::new(c.sign().as_ref().to_vec());
            out.extend_from_slice(&prev);
            n = n.wrapping_add(1);
        }
        out.truncate(len);
        Ok(out)
    }

    /// Checks `tag == prf(key, parts...)` in constant time.
    pub fn verify(self, key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
        let k = hmac::Key::new(self.alg(), key);
        let mut msg = Vec::new();
        for p in parts {
            msg.extend_from_slice(p);
        }
        hmac::verify(&k, &msg, tag).is_ok()
    }
}

/// Diffie-Hellman groups (§3.3.2 transform type 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhGroup {
    /// 2048-bit MODP group (RFC 3526 §3), group 14.
    Modp2048,
    /// 256-bit random ECP group (RFC 5903), group 19.
    Ecp256,
    /// Curve25519 (RFC 8031), group 31.
    Curve25519,
}

impl DhGroup {
    pub fn id(self) -> u16 {
        match self {
            DhGroup::Modp2048 => transform::DH_MODP_2048,
            DhGroup::Ecp256 => transform::DH_ECP_256,
            DhGroup::Curve25519 => transform::DH_CURVE25519,
        }
    }

    pub fn from_id(id: u16) -> Option<DhGroup> {
        match id {
            transform::DH_MODP_2048 => Some(DhGroup::Modp2048),
            transform::DH_ECP_256 => Some(DhGroup::Ecp256),
            transform::DH_CURVE25519 => Some(DhGroup::Curve25519),
            _ => None,
        }
    }

    /// Length of the KE payload's data (and of g^ir for MODP).
    pub fn public_len(self) -> usize {
        match self {
            DhGroup::Modp2048 => 256,
            DhGroup::Ecp256 => 64,
            DhGroup::Curve25519 => 32,
        }
    }

    fn ecdh(self) -> Option<&'static agreement::Algorithm> {
        match self {
            DhGroup::Modp2048 => None,
            DhGroup::Ecp256 => Some(&agreement::ECDH_P256),
            DhGroup::Curve25519 => Some(&agreement::X25519),
        }
    }
}

enum Private {
    Ecdh(agreement::EphemeralPrivateKey),
    /// The MODP private exponent, wiped on drop.
    Modp(Zeroizing<U256>),
}

/// An ephemeral private value and its public value in KE-payload form.
pub struct DhPrivate {
    group: DhGroup,
    key: Private,
    public: Vec<u8>,
}

impl DhPrivate {
    pub fn generate(group: DhGroup, rng: &dyn rand::SecureRandom) -> Result<Self, KeyError> {
        let Some(alg) = group.ecdh() else {
            let mut x = Zeroizing::new([0u8; 32]);
            rng.fill(&mut x[..]).map_err(|_| KeyError::Random)?;
            return Self::modp(Zeroizing::new(U256::from_be_slice(&x[..])));
        };
        let key =
            agreement::EphemeralPrivateKey::generate(alg, rng).map_err(|_| KeyError::Random)?;
        let pk = key.compute_public_key().map_err(|_| KeyError::Random)?;
        let pk = pk.as_ref();
        // ring gives P-256 points uncompressed (0x04 ‖ x ‖ y); IKE carries x ‖ y.
        let public = match group {
            DhGroup::Ecp256 => pk.get(1..).unwrap_or(&[]).to_vec(),
            _ => pk.to_vec(),
        };
        Ok(DhPrivate {
            group,
            key: Private::Ecdh(key),
            public,
        })
    }

    /// Group 14 with private exponent `x`: public value 2^x mod p.
    fn modp(x: Zeroizing<U256>) -> Result<Self, KeyError> {
        if *x == U256::ZERO {
            return Err(KeyError::Random);
        }
        let y = modp2048_pow(&U2048::from_u8(2), &x);
        Ok(DhPrivate {
            group: DhGroup::Modp2048,
            key: Private::Modp(x),
            public: y.to_be_bytes().to_vec(),
        })
    }

    pub fn group(&self) -> DhGroup {
        self.group
    }

    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// g^ir from the peer's KE data. Consumes the private value.
    pub fn agree(self, peer: &[u8]) -> Result<SecretBytes, KeyError> {
        if peer.len() != self.group.public_len() {
            return Err(KeyError::BadPublicValue);
        }
        let alg = match (self.key, self.group.ecdh()) {
            (Private::Ecdh(k), Some(alg)) => (k, alg),
            (Private::Modp(x), _) => {
                let y = U2048::from_be_slice(peer);
                let p_minus_1 = MODP2048_P.wrapping_sub(&U2048::ONE);
                if y <= U2048::ONE || y >= p_minus_1 {
                    return Err(KeyError::BadPublicValue);
                }
                let z = modp2048_pow(&y, &x);
                if z == U2048::ONE {
                    return Err(KeyError::BadPublicValue);
                }
                let mut zb = z.to_be_bytes();
                let out = Zeroizing::new(zb.to_vec());
                zeroize::Zeroize::zeroize(&mut zb);
                return Ok(out);
            }
            (Private::Ecdh(_), None) => return Err(KeyError::BadPublicValue),
        };
        let (key, alg) = alg;
        let mut p = Vec::with_capacity(65);
        if self.group == DhGroup::Ecp256 {
            p.push(0x04);
        }
        p.extend_from_slice(peer);
        let peer = agreement::UnparsedPublicKey::new(alg, p);
        agreement::agree_ephemeral(key, &peer, |s| Zeroizing::new(s.to_vec()))
            .map_err(|_| KeyError::BadPublicValue)
    }
}

/// SKEYSEED = prf(Ni ‖ Nr, g^ir) (§2.14).
pub fn skeyseed(prf: Prf, ni: &[u8], nr: &[u8], shared: &[u8]) -> SecretBytes {
    let mut k = Zeroizing::new(Vec::with_capacity(ni.len() + nr.len()));
    k.extend_from_slice(ni);
    k.extend_from_slice(nr);
    prf.prf(&k, &[shared])
}

/// The seven IKE SA keys (§2.14). With AES-GCM, SK_ai and SK_ar are empty and SK_ei /
/// SK_er are key ‖ 4-byte salt (RFC 5282 §7).
pub struct IkeKeys {
    pub prf: Prf,
    pub encr: Algorithm,
    pub sk_d: SecretBytes,
    pub sk_ai: SecretBytes,
    pub sk_ar: SecretBytes,
    pub sk_ei: SecretBytes,
    pub sk_er: SecretBytes,
    pub sk_pi: SecretBytes,
    pub sk_pr: SecretBytes,
}

impl fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IkeKeys { .. }")
    }
}

impl IkeKeys {
    /// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
    ///     = prf+(SKEYSEED, Ni ‖ Nr ‖ SPIi ‖ SPIr).
    pub fn derive(
        prf: Prf,
        encr: Algorithm,
        ni: &[u8],
        nr: &[u8],
        shared: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<IkeKeys, KeyError> {
        let seed = skeyseed(prf, ni, nr, shared);
        Self::from_seed(prf, encr, &seed, ni, nr, spi_i, spi_r)
    }

    /// The keys of a new IKE SA made by a CREATE_CHILD_SA rekey (§2.18):
    /// SKEYSEED = prf(SK_d (old), g^ir (new) ‖ Ni ‖ Nr) with the old SA's PRF, then
    /// prf+ as in §2.14 with the new SA's PRF, the exchange's nonces and the new SPIs
    /// (SPIi from the rekey's initiator).
    #[allow(clippy::too_many_arguments)]
    pub fn derive_rekey(
        old_prf: Prf,
        old_sk_d: &[u8],
        prf: Prf,
        encr: Algorithm,
        ni: &[u8],
        nr: &[u8],
        shared: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<IkeKeys, KeyError> {
        let seed = old_prf.prf(old_sk_d, &[shared, ni, nr]);
        Self::from_seed(prf, encr, &seed, ni, nr, spi_i, spi_r)
    }

    fn from_seed(
        prf: Prf,
        encr: Algorithm,
        seed: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<IkeKeys, KeyError> {
        let p = prf.out_len();
        let e = encr.keymat_len();
        let total = 3 * p + 2 * e;
        let km = prf.prf_plus(
            seed,
            &[ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()],
            total,
        )?;
        let mut at = 0;
        let mut next = |n: usize| {
            let s = Zeroizing::new(km.get(at..at + n).unwrap_or(&[]).to_vec());
            at += n;
            s
        };
        Ok(IkeKeys {
            prf,
            encr,
            sk_d: next(p),
            sk_ai: next(0),
            sk_ar: next(0),
            sk_ei: next(e),
            sk_er: next(e),
            sk_pi: next(p),
            sk_pr: next(p),
        })
    }

    /// The AES-GCM key for SK payloads sent by the initiator (`true`) or responder.
    pub fn cipher(&self, initiator: bool) -> Result<GcmKey, KeyError> {
        let raw = if initiator { &self.sk_ei } else { &self.sk_er };
        let km = KeyMaterial::new(self.encr, raw).map_err(|_| KeyError::Cipher)?;
        GcmKey::new(Backend::preferred(), self.encr, &km).map_err(|_| KeyError::Cipher)
    }
}

/// KEYMAT = prf+(SK_d, Ni ‖ Nr) for one ESP AES-GCM child SA without PFS (§2.17):
/// the initiator-to-responder key ‖ salt first, then responder-to-initiator.
pub fn child_keymat(
    prf: Prf,
    sk_d: &[u8],
    ni: &[u8],
    nr: &[u8],
    alg: Algorithm,
) -> Result<(KeyMaterial, KeyMaterial), KeyError> {
    child_keymat_pfs(prf, sk_d, &[], ni, nr, alg)
}

/// KEYMAT = prf+(SK_d, g^ir (new) ‖ Ni ‖ Nr) for a child SA made by a
/// CREATE_CHILD_SA exchange with a KE payload (PFS, §2.17); an empty `shared` is
/// [`child_keymat`].
pub fn child_keymat_pfs(
    prf: Prf,
    sk_d: &[u8],
    shared: &[u8],
    ni: &[u8],
    nr: &[u8],
    alg: Algorithm,
) -> Result<(KeyMaterial, KeyMaterial), KeyError> {
    let n = alg.keymat_len();
    let km = prf.prf_plus(sk_d, &[shared, ni, nr], 2 * n)?;
    let (a, b) = km.split_at(n);
    let i2r = KeyMaterial::new(alg, a).map_err(|_| KeyError::Cipher)?;
    let r2i = KeyMaterial::new(alg, b).map_err(|_| KeyError::Cipher)?;
    Ok((i2r, r2i))
}

/// The key pad of §2.15.
pub const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// The octets an AUTH payload signs (§2.15): the sender's whole first message,
/// the peer's nonce, and prf(SK_px, RestOfIDPayload).
pub fn signed_octets(
    prf: Prf,
    first_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
) -> Vec<u8> {
    let mac = prf.prf(sk_p, &[id_body]);
    let mut v = Vec::with_capacity(first_message.len() + peer_nonce.len() + mac.len());
    v.extend_from_slice(first_message);
    v.extend_from_slice(peer_nonce);
    v.extend_from_slice(&mac);
    v
}

/// AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), SignedOctets) (§2.15).
pub fn psk_auth(prf: Prf, psk: &[u8], signed: &[u8]) -> SecretBytes {
    let k = prf.prf(psk, &[KEY_PAD]);
    prf.prf(&k, &[signed])
}

/// Constant-time check of a received PSK AUTH value.
pub fn psk_auth_verify(prf: Prf, psk: &[u8], signed: &[u8], auth: &[u8]) -> bool {
    let k = prf.prf(psk, &[KEY_PAD]);
    prf.verify(&k, &[signed], auth)
}

/// SHA-1(SPIi ‖ SPIr ‖ IP ‖ port) (§2.23).
pub fn nat_detection_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> [u8; 20] {
    let mut c = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    c.update(&spi_i.to_be_bytes());
    c.update(&spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => c.update(&a.octets()),
        IpAddr::V6(a) => c.update(&a.octets()),
    }
    c.update(&addr.port().to_be_bytes());
    let mut h = [0u8; 20];
    h.copy_from_slice(c.finish().as_ref());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(b: &[u8]) -> alloc::string::String {
        use core::fmt::Write;
        let d = digest::digest(&digest::SHA256, b);
        let mut s = alloc::string::String::new();
        for x in d.as_ref() {
            let _ = write!(s, "{x:02x}");
        }
        s
    }

    fn exponent(first: u8) -> Zeroizing<U256> {
        let x: Vec<u8> = (first..first + 32).collect();
        Zeroizing::new(U256::from_be_slice(&x))
    }

    /// Vectors from `tests/ike_kdf_vectors.py` (Python integers, the prime from its
    /// RFC 3526 formula).
    #[test]
    fn modp2048_matches_independent_vectors() {
        assert_eq!(
            sha256_hex(&MODP2048_P.to_be_bytes()),
            "d66436f79bbd6b2e38c0ffbd079be904d2641415e2e67140e09448be9a60890e"
        );
        let a = DhPrivate::modp(exponent(0x01)).unwrap();
        let b = DhPrivate::modp(exponent(0x21)).unwrap();
        assert_eq!(
            sha256_hex(a.public()),
            "0b9cb9036d2a594a7e3b43169bdf47ee9c7b64a2292203f1bb137b0b648d7e3c"
        );
        assert_eq!(
            sha256_hex(b.public()),
            "25c675eaff92beae8b23106e4b21891c8ead2866b08bfbfc07aec55c0b240c64"
        );
        let bp = b.public().to_vec();
        let z1 = a.agree(&bp).unwrap();
        assert_eq!(z1.len(), 256);
        assert_eq!(
            sha256_hex(&z1),
            "34b0ca644513fd183880d688087619047e47ccf9fa7a287d4735a5125097db9a"
        );
    }

    /// §2.18 and §2.17 spelled out with `prf` / `prf_plus` directly.
    #[test]
    fn rekey_and_pfs_derivations_follow_the_rfc_formulas() {
        let (ni, nr) = ([1u8; 32], [2u8; 32]);
        let (sk_d, gir) = ([3u8; 32], [4u8; 32]);
        let (spi_i, spi_r) = (0x0a0b_0c0d_0e0f_1011u64, 0x2122_2324_2526_2728u64);
        // Old PRF SHA-256, new PRF SHA-384: SKEYSEED uses the old one.
        let k = IkeKeys::derive_rekey(
            Prf::HmacSha256,
            &sk_d,
            Prf::HmacSha384,
            Algorithm::Aes128Gcm16,
            &ni,
            &nr,
            &gir,
            spi_i,
            spi_r,
        )
        .unwrap();
        let mut data = gir.to_vec();
        data.extend_from_slice(&ni);
        data.extend_from_slice(&nr);
        let seed = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &sk_d), &data);
        let mut s = ni.to_vec();
        s.extend_from_slice(&nr);
        s.extend_from_slice(&spi_i.to_be_bytes());
        s.extend_from_slice(&spi_r.to_be_bytes());
        let km = Prf::HmacSha384
            .prf_plus(seed.as_ref(), &[&s], 3 * 48 + 2 * 20)
            .unwrap();
        assert_eq!(*k.sk_d, km[..48]);
        assert_eq!(*k.sk_ei, km[48..68]);
        assert_eq!(*k.sk_er, km[68..88]);
        assert_eq!(*k.sk_pi, km[88..136]);
        assert_eq!(*k.sk_pr, km[136..184]);
        // Child KEYMAT with PFS: g^ir in front of the nonces; without, the nonces.
        let alg = Algorithm::Aes128Gcm16;
        let (a, _) = child_keymat_pfs(Prf::HmacSha256, &sk_d, &gir, &ni, &nr, alg).unwrap();
        let (b, _) = child_keymat(Prf::HmacSha256, &sk_d, &ni, &nr, alg).unwrap();
        let want = Prf::HmacSha256.prf_plus(&sk_d, &[&data], 40).unwrap();
        let plain = Prf::HmacSha256.prf_plus(&sk_d, &[&ni, &nr], 40).unwrap();
        let same = |km: &KeyMaterial, raw: &[u8]| {
            let x = GcmKey::new(Backend::preferred(), alg, km).unwrap();
            let y = KeyMaterial::new(alg, raw).unwrap();
            let y = GcmKey::new(Backend::preferred(), alg, &y).unwrap();
            let (mut p, mut q) = ([9u8; 16], [9u8; 16]);
            x.seal(&[0; 8], b"", &mut p).unwrap() == y.seal(&[0; 8], b"", &mut q).unwrap() && p == q
        };
        assert!(same(&a, &want[..20]));
        assert!(same(&b, &plain[..20]));
        assert!(!same(&a, &plain[..20]));
    }

    #[test]
    fn every_group_agrees_and_checks_peer_values() {
        let rng = rand::SystemRandom::new();
        for g in [DhGroup::Modp2048, DhGroup::Ecp256, DhGroup::Curve25519] {
            let a = DhPrivate::generate(g, &rng).unwrap();
            let b = DhPrivate::generate(g, &rng).unwrap();
            assert_eq!(a.public().len(), g.public_len());
            let (ap, bp) = (a.public().to_vec(), b.public().to_vec());
            assert_eq!(*a.agree(&bp).unwrap(), *b.agree(&ap).unwrap(), "{g:?}");
            let c = DhPrivate::generate(g, &rng).unwrap();
            assert_eq!(c.agree(&bp[1..]).err(), Some(KeyError::BadPublicValue));
        }
        // MODP: 0, 1, p-1, p and above are refused (SP 800-56A §5.6.2.3.1).
        let p = MODP2048_P.to_be_bytes();
        let p_minus_1 = MODP2048_P.wrapping_sub(&U2048::ONE).to_be_bytes();
        let mut one = [0u8; 256];
        one[255] = 1;
        for bad in [[0u8; 256], one, p_minus_1, p, [0xff; 256]] {
            let d = DhPrivate::generate(DhGroup::Modp2048, &rng).unwrap();
            assert_eq!(d.agree(&bad).err(), Some(KeyError::BadPublicValue));
        }
    }
}
