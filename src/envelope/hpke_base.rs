//! RFC 9180 single-shot base mode (§6.1 `SealBase` / `OpenBase`) for our suites:
//! DHKEM(X25519, HKDF-SHA256) (§4.1, §7.1), HKDF-SHA256 (§4, §5.1) and the AEAD of an
//! [`AeadId`], composed from curve25519-dalek, hkdf and chacha20poly1305 (aes-gcm with
//! the `aes` feature). No primitive is implemented here, only the RFC's labelled
//! derivations.
//!
//! Why not the `hpke` crate: its sender derives the ephemeral public key twice and its
//! receiver recomputes `pk(skR)` on every open, so sealing costs two fixed-base
//! multiplications and opening one fixed-base plus one variable-base. Here sealing costs
//! one of each and opening one variable-base multiplication, the floor of docs/design.md#cost-floor.
//! The RFC 9180 vectors (`tests/vectors/rfc9180*.json`) and cross-checks against the
//! `hpke` crate in both directions prove the composition.
//!
//! [`seal_base`] and [`open_base`] take any `info` and `aad` (what the vectors need);
//! envelopes use them with [`INFO`](super::INFO) and the frame header as `aad`.

use super::keys::{KDF_ID, KEM_ID};
use super::{AeadId, ENC_LEN, EnvelopeError, HEADER_LEN, Header, PublicKey, SecretKey, TAG_LEN};
use alloc::vec::Vec;
use curve25519_dalek::montgomery::MontgomeryPoint;
use rand_core::CryptoRng;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// `Nn`: 12 for both AEADs.
const NONCE_LEN: usize = 12;
/// Largest `Nk` (ChaCha20-Poly1305).
const MAX_KEY_LEN: usize = 32;

/// `suite_id` of the KEM: `"KEM" ‖ I2OSP(kem_id, 2)` (RFC 9180 §4.1).
const KEM_SUITE: [u8; 5] = [b'K', b'E', b'M', (KEM_ID >> 8) as u8, KEM_ID as u8];

/// `suite_id` of the whole suite: `"HPKE" ‖ kem_id ‖ kdf_id ‖ aead_id` (RFC 9180 §5.1).
fn hpke_suite(aead: AeadId) -> [u8; 10] {
    let [k0, k1] = KEM_ID.to_be_bytes();
    let [d0, d1] = KDF_ID.to_be_bytes();
    let [a0, a1] = aead.to_u16().to_be_bytes();
    [b'H', b'P', b'K', b'E', k0, k1, d0, d1, a0, a1]
}

/// `LabeledExtract(salt, label, ikm)` = HKDF-Extract(salt, "HPKE-v1" ‖ suite_id ‖ label ‖ ikm).
fn labeled_extract(
    suite: &[u8],
    salt: &[u8],
    label: &[u8],
    ikm: &[u8],
) -> (Zeroizing<[u8; 32]>, hkdf::Hkdf<Sha256>) {
    let mut ex = hkdf::HkdfExtract::<Sha256>::new(Some(salt));
    for part in [b"HPKE-v1".as_slice(), suite, label, ikm] {
        ex.input_ikm(part);
    }
    let (prk, hkdf) = ex.finalize();
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&prk);
    (out, hkdf)
}

/// `LabeledExpand(prk, label, info, L)` = HKDF-Expand(prk, I2OSP(L, 2) ‖ "HPKE-v1" ‖
/// suite_id ‖ label ‖ info, L), for `L = out.len()` ≤ 32.
fn labeled_expand(prk: &hkdf::Hkdf<Sha256>, suite: &[u8], label: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let len = u16::try_from(out.len()).unwrap_or(u16::MAX).to_be_bytes();
    let mut parts: [&[u8]; 6] = [&len, b"HPKE-v1", suite, label, &[], &[]];
    for (slot, part) in parts.iter_mut().skip(4).zip(info) {
        *slot = part;
    }
    // L ≤ 32 ≤ 255 · HashLen: expansion cannot fail.
    let _ = prk.expand_multi_info(&parts, out);
}

/// RFC 9180 §7.1.3 `DeriveKeyPair(ikm)` for X25519: the clamped secret scalar and `pk`.
pub(crate) fn derive_keypair(ikm: &[u8]) -> (Zeroizing<[u8; 32]>, [u8; 32]) {
    let (_, dkp_prk) = labeled_extract(&KEM_SUITE, b"", b"dkp_prk", ikm);
    let mut sk = Zeroizing::new([0u8; 32]);
    labeled_expand(&dkp_prk, &KEM_SUITE, b"sk", &[], &mut sk[..]);
    *sk = curve25519_dalek::scalar::clamp_integer(*sk);
    let pk = MontgomeryPoint::mul_base_clamped(*sk).to_bytes();
    (sk, pk)
}

/// `DH(sk, pk)`, refusing the all-zero output of a low-order `pk` (RFC 9180 §7.1.4).
fn dh(sk: &[u8; 32], pk: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
    let shared = Zeroizing::new(x25519(sk, pk));
    if bool::from(shared.ct_eq(&[0u8; 32])) { None } else { Some(shared) }
}

/// The function `X25519(k, u)` of RFC 7748 §5: the u-coordinate of `clamp(k)·P` for a
/// point `P` with u-coordinate `u` (on the curve or its twist; bit 255 of `u` ignored).
///
/// curve25519-dalek computes it with a Montgomery ladder on its serial field arithmetic.
/// Where dalek's AVX2 back end runs (x86-64 with AVX2, detected at run time, with the
/// `std` feature) the same value comes about 8 % faster from the Edwards form: `u` maps
/// to the Edwards point `P` (or `-P`: either sign gives the same u-coordinate of its
/// multiple), `clamp(k)·P` is dalek's constant-time variable-base multiplication, which
/// the AVX2 back end vectorises, and the result maps back to its u-coordinate
/// (docs/benchmarks.md, "One-report envelopes on one core"). A `u` with no Edwards point
/// (a point of the twist, or `u = −1`) takes the ladder. Both paths are constant-time
/// in `k`; which one runs depends only on the CPU and on the public `u`. Tested equal
/// to the ladder on the RFC 7748 vectors, the twist, low-order points and
/// non-canonical `u` (`tests::x25519_from_the_edwards_form_is_the_ladders`).
fn x25519(k: &[u8; 32], u: &[u8; 32]) -> [u8; 32] {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2")
        && let Some(p) = MontgomeryPoint(*u).to_edwards(0)
    {
        return p.mul_clamped(*k).to_montgomery().to_bytes();
    }
    MontgomeryPoint(*u).mul_clamped(*k).to_bytes()
}

/// The first half of `LabeledExtract("", "eae_prk", dh)`: HKDF-Extract keyed with the
/// empty salt (the HMAC key's two pad blocks compressed) after `"HPKE-v1" ‖ suite_id ‖
/// "eae_prk"`. Nothing in it depends on a key or an envelope, so the receiver keeps one
/// in its [`SecretKey`] and clones it per open instead of compressing the two pad blocks
/// again (2 of the 21 SHA-256 blocks of an open).
#[derive(Clone)]
pub(crate) struct EaeExtract(hkdf::HkdfExtract<Sha256>);

impl EaeExtract {
    pub(crate) fn new() -> Self {
        let mut ex = hkdf::HkdfExtract::<Sha256>::new(Some(b""));
        for part in [b"HPKE-v1".as_slice(), &KEM_SUITE, b"eae_prk"] {
            ex.input_ikm(part);
        }
        Self(ex)
    }
}

/// `ExtractAndExpand(dh, enc ‖ pkRm)` (RFC 9180 §4.1), the extract continued from `eae`.
fn shared_secret(eae: &EaeExtract, dh: &[u8; 32], enc: &[u8; 32], pk_r: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut ex = eae.0.clone();
    ex.input_ikm(dh);
    let (_, eae_prk) = ex.finalize();
    let mut ss = Zeroizing::new([0u8; 32]);
    labeled_expand(&eae_prk, &KEM_SUITE, b"shared_secret", &[enc, pk_r], &mut ss[..]);
    ss
}

/// `psk_id_hash = LabeledExtract("", "psk_id_hash", "")` and
/// `info_hash = LabeledExtract("", "info_hash", INFO)` of the ChaCha20-Poly1305 suite.
const CHACHA_HASHES: ([u8; 32], [u8; 32]) = (
    [
        67, 29, 246, 205, 149, 225, 31, 244, 157, 112, 19, 86, 59, 175, 127, 17, 88, 140, 117, 166, 97, 30,
        226, 164, 64, 74, 73, 48, 106, 228, 207, 197,
    ],
    [
        97, 136, 151, 220, 81, 234, 207, 101, 27, 80, 216, 198, 238, 35, 75, 15, 80, 118, 156, 215, 181, 169,
        42, 38, 7, 142, 220, 33, 174, 67, 137, 253,
    ],
);
/// The same for the AES-128-GCM suite.
const AES_HASHES: ([u8; 32], [u8; 32]) = (
    [
        114, 86, 17, 201, 217, 140, 7, 192, 63, 96, 9, 92, 211, 45, 64, 13, 131, 71, 212, 94, 214, 112, 151,
        187, 173, 80, 252, 86, 218, 116, 45, 7,
    ],
    [
        223, 225, 92, 80, 33, 13, 18, 129, 121, 30, 50, 240, 62, 51, 157, 184, 235, 129, 237, 192, 208, 77,
        225, 209, 234, 150, 9, 153, 37, 119, 202, 127,
    ],
);

/// The key schedule's `psk_id_hash` and `info_hash` for envelopes (`info` =
/// [`INFO`](super::INFO), base mode): constants of the suite, kept here instead of two
/// HKDF-Extracts per seal and per open (a test recomputes them). `None` for another
/// `info` (the RFC 9180 vectors), which computes them.
fn envelope_hashes(aead: AeadId, info: &[u8]) -> Option<([u8; 32], [u8; 32])> {
    if info != super::INFO {
        return None;
    }
    Some(match aead {
        AeadId::ChaCha20Poly1305 => CHACHA_HASHES,
        AeadId::Aes128Gcm => AES_HASHES,
    })
}

/// The AEAD key and base nonce of `KeySchedule(mode_base, shared_secret, info, "", "")`
/// (RFC 9180 §5.1). The exporter secret is not derived: envelopes export nothing.
struct Context {
    aead: AeadId,
    key: Zeroizing<[u8; MAX_KEY_LEN]>,
    nonce: [u8; NONCE_LEN],
}

impl Context {
    fn new(aead: AeadId, shared_secret: &[u8; 32], info: &[u8]) -> Self {
        let suite = hpke_suite(aead);
        let (psk_id_hash, info_hash) = envelope_hashes(aead, info).unwrap_or_else(|| {
            let (psk_id_hash, _) = labeled_extract(&suite, b"", b"psk_id_hash", b"");
            let (info_hash, _) = labeled_extract(&suite, b"", b"info_hash", info);
            (*psk_id_hash, *info_hash)
        });
        let (_, secret) = labeled_extract(&suite, shared_secret, b"secret", b"");
        let context: [&[u8]; 3] = [&[0x00], &psk_id_hash[..], &info_hash[..]];
        let mut ksc = [0u8; 65];
        let mut at = 0;
        for part in context {
            if let Some(dst) = ksc.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
            at += part.len();
        }
        let nk = match aead {
            AeadId::Aes128Gcm => 16,
            AeadId::ChaCha20Poly1305 => 32,
        };
        let mut key = Zeroizing::new([0u8; MAX_KEY_LEN]);
        labeled_expand(&secret, &suite, b"key", &[&ksc], key.get_mut(..nk).unwrap_or_default());
        let mut nonce = [0u8; NONCE_LEN];
        labeled_expand(&secret, &suite, b"base_nonce", &[&ksc], &mut nonce);
        Self { aead, key, nonce }
    }

    /// `Seal(aad, pt)` at sequence number 0 (nonce = base_nonce), in place.
    fn seal(&self, aad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], EnvelopeError> {
        use chacha20poly1305::{AeadInOut as _, KeyInit as _};
        let nonce = chacha20poly1305::Nonce::from(self.nonce);
        let tag = match self.aead {
            AeadId::ChaCha20Poly1305 => chacha20poly1305::ChaCha20Poly1305::new_from_slice(&self.key[..])
                .map_err(|_| EnvelopeError::Seal)?
                .encrypt_inout_detached(&nonce, aad, buf.into()),
            #[cfg(feature = "aes")]
            AeadId::Aes128Gcm => aes_gcm::Aes128Gcm::new_from_slice(self.key.get(..16).unwrap_or_default())
                .map_err(|_| EnvelopeError::Seal)?
                .encrypt_inout_detached(&nonce, aad, buf.into()),
            #[cfg(not(feature = "aes"))]
            AeadId::Aes128Gcm => return Err(EnvelopeError::UnsupportedAead(self.aead.to_u16())),
        }
        .map_err(|_| EnvelopeError::Seal)?;
        Ok(tag.into())
    }

    /// `Open(aad, ct)` at sequence number 0, in place.
    fn open(&self, aad: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), EnvelopeError> {
        use chacha20poly1305::{AeadInOut as _, KeyInit as _};
        let nonce = chacha20poly1305::Nonce::from(self.nonce);
        let tag = chacha20poly1305::Tag::from(*tag);
        match self.aead {
            AeadId::ChaCha20Poly1305 => chacha20poly1305::ChaCha20Poly1305::new_from_slice(&self.key[..])
                .map_err(|_| EnvelopeError::Open)?
                .decrypt_inout_detached(&nonce, aad, buf.into(), &tag),
            #[cfg(feature = "aes")]
            AeadId::Aes128Gcm => aes_gcm::Aes128Gcm::new_from_slice(self.key.get(..16).unwrap_or_default())
                .map_err(|_| EnvelopeError::Open)?
                .decrypt_inout_detached(&nonce, aad, buf.into(), &tag),
            #[cfg(not(feature = "aes"))]
            AeadId::Aes128Gcm => return Err(EnvelopeError::UnsupportedAead(self.aead.to_u16())),
        }
        .map_err(|_| EnvelopeError::Open)
    }
}

fn check_supported(aead: AeadId) -> Result<(), EnvelopeError> {
    if aead.is_supported() { Ok(()) } else { Err(EnvelopeError::UnsupportedAead(aead.to_u16())) }
}

/// `SetupBaseS(pkR, info)`: `Encap` with an ephemeral key `DeriveKeyPair(32 bytes of rng)`.
fn setup_sender<R: CryptoRng + ?Sized>(
    aead: AeadId,
    pk: &PublicKey,
    info: &[u8],
    rng: &mut R,
) -> Result<([u8; ENC_LEN], Context), EnvelopeError> {
    check_supported(aead)?;
    let mut ikm = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut ikm[..]);
    let (sk_e, enc) = derive_keypair(&ikm[..]);
    let dh = dh(&sk_e, &pk.0).ok_or(EnvelopeError::InvalidPublicKey)?;
    let ss = shared_secret(&EaeExtract::new(), &dh, &enc, &pk.0);
    Ok((enc, Context::new(aead, &ss, info)))
}

/// `SetupBaseR(enc, skR, info)`: `Decap` with the cached `pkRm` and extract state.
fn setup_receiver(aead: AeadId, sk: &SecretKey, enc: &[u8], info: &[u8]) -> Result<Context, EnvelopeError> {
    check_supported(aead)?;
    let enc: &[u8; ENC_LEN] = enc.try_into().map_err(|_| EnvelopeError::Open)?;
    let dh = dh(sk.scalar(), enc).ok_or(EnvelopeError::Open)?;
    let ss = shared_secret(sk.eae_extract(), &dh, enc, &sk.public_key().0);
    Ok(Context::new(aead, &ss, info))
}

/// Splits `body` = ciphertext ‖ tag and opens it into a fresh buffer.
fn open_body(ctx: &Context, aad: &[u8], body: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let split = body.len().checked_sub(TAG_LEN).ok_or(EnvelopeError::Open)?;
    let (ct, tag) = body.split_at_checked(split).ok_or(EnvelopeError::Open)?;
    let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| EnvelopeError::Open)?;
    let mut out = ct.to_vec();
    ctx.open(aad, &mut out, tag)?;
    Ok(out)
}

/// RFC 9180 §6.1 `SealBase(pkR, info, aad, pt)`: returns `(enc, ct)` where `ct` is the
/// ciphertext followed by the 16-byte tag. The ephemeral key is
/// `DeriveKeyPair(32 bytes from rng)`, so an RNG replaying a vector's `ikmE` reproduces it.
///
/// # Errors
/// [`EnvelopeError::UnsupportedAead`], [`EnvelopeError::InvalidPublicKey`].
///
/// ```
/// use confiance::envelope::{AeadId, SecretKey, hpke_base};
/// let mut rng = confiance::rng::OsRng::new();
/// let sk = SecretKey::generate(&mut rng);
/// let (enc, ct) = hpke_base::seal_base(AeadId::ChaCha20Poly1305, &sk.public_key(), b"info", b"aad", b"hi", &mut rng)?;
/// assert_eq!(hpke_base::open_base(AeadId::ChaCha20Poly1305, &sk, &enc, b"info", b"aad", &ct)?, b"hi");
/// # Ok::<(), confiance::envelope::EnvelopeError>(())
/// ```
pub fn seal_base<R: CryptoRng + ?Sized>(
    aead: AeadId,
    pk: &PublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut R,
) -> Result<([u8; ENC_LEN], Vec<u8>), EnvelopeError> {
    let (enc, ctx) = setup_sender(aead, pk, info, rng)?;
    let mut out = Vec::with_capacity(plaintext.len().saturating_add(TAG_LEN));
    out.extend_from_slice(plaintext);
    let tag = ctx.seal(aad, &mut out)?;
    out.extend_from_slice(&tag);
    Ok((enc, out))
}

/// RFC 9180 §6.1 `OpenBase(enc, skR, info, aad, ct)` with `ct` = ciphertext ‖ tag.
///
/// # Errors
/// [`EnvelopeError::Open`] (opaque) on any decapsulation or AEAD failure;
/// [`EnvelopeError::UnsupportedAead`].
pub fn open_base(
    aead: AeadId,
    sk: &SecretKey,
    enc: &[u8],
    info: &[u8],
    aad: &[u8],
    ct: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let ctx = setup_receiver(aead, sk, enc, info)?;
    open_body(&ctx, aad, ct)
}

/// Seals a whole frame: header prefix, `enc`, then ciphertext ‖ tag, in one allocation.
pub(crate) fn seal_frame<R: CryptoRng + ?Sized>(
    aead: AeadId,
    pk: &PublicKey,
    header: &Header,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, EnvelopeError> {
    let (enc, ctx) = setup_sender(aead, pk, super::INFO, rng)?;
    let mut out = Vec::with_capacity(plaintext.len().saturating_add(super::OVERHEAD));
    header.write_prefix(&mut out);
    out.extend_from_slice(&enc);
    out.extend_from_slice(plaintext);
    let (aad, body) = out.split_at_mut_checked(HEADER_LEN).ok_or(EnvelopeError::Seal)?;
    let tag = ctx.seal(aad, body)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Opens a frame's body with the header as AAD.
pub(crate) fn open_in_place(
    aead: AeadId,
    sk: &SecretKey,
    enc: &[u8],
    aad: &[u8],
    body: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let ctx = setup_receiver(aead, sk, enc, super::INFO)?;
    open_body(&ctx, aad, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks(2)) {
            *o = u8::from_str_radix(core::str::from_utf8(pair).unwrap_or("zz"), 16).unwrap_or(0);
        }
        out
    }

    /// The Edwards path of [`x25519`] (taken on x86-64 with AVX2) against dalek's ladder:
    /// RFC 7748 §5.2's vectors (the second `u` has bit 255 set), its iterated vector
    /// (1 and 1 000 rounds), points of the twist, every low-order `u` of the curve,
    /// `u = −1`, and non-canonical `u ≥ p`.
    #[test]
    fn x25519_from_the_edwards_form_is_the_ladders() {
        let ladder = |k: &[u8; 32], u: &[u8; 32]| MontgomeryPoint(*u).mul_clamped(*k).to_bytes();
        for (k, u, out) in [
            (
                "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
                "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
                "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
            ),
            (
                "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
                "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
                "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
            ),
        ] {
            let (k, u) = (hex32(k), hex32(u));
            assert_eq!(x25519(&k, &u), ladder(&k, &u));
            assert_eq!(x25519(&k, &u), hex32(out));
        }
        // RFC 7748 §5.2, iterated: k = u = 9, then (k, u) = (X25519(k, u), k).
        let (mut k, mut u) = ([0u8; 32], [0u8; 32]);
        k[0] = 9;
        u[0] = 9;
        for round in 1..=1_000 {
            let next = x25519(&k, &u);
            assert_eq!(next, ladder(&k, &u));
            u = k;
            k = next;
            if round == 1 {
                assert_eq!(k, hex32("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"));
            }
        }
        assert_eq!(k, hex32("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"));
        // Many u: counting ones (about half on the twist), each with bit 255 set as
        // well, the low-order points (0, 1, the two of order 8, p − 1 = −1 ...),
        // and u ≥ p (p, p + 1, 2^255 − 1).
        let mut us: Vec<[u8; 32]> = Vec::new();
        for i in 0u8..=255 {
            let mut u = [0u8; 32];
            u[0] = i;
            u[7] = i.wrapping_mul(37);
            u[19] = i.wrapping_mul(101);
            us.push(u);
            u[31] |= 0x80;
            us.push(u);
        }
        for low in [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        ] {
            us.push(hex32(low));
        }
        let mut twist = 0;
        for (j, u) in us.iter().enumerate() {
            twist += usize::from(MontgomeryPoint(*u).to_edwards(0).is_none());
            let mut k = [0u8; 32];
            k[0] = u8::try_from(j % 251).unwrap_or(0);
            k[13] = 0x5a;
            k[31] = 0x41;
            assert_eq!(x25519(&k, u), ladder(&k, u), "u = {u:02x?}");
        }
        // Both paths were exercised (where the Edwards one runs at all).
        assert!(twist > 50 && twist < us.len() - 50, "{twist} of {} on the twist", us.len());
    }

    #[test]
    fn kept_envelope_hashes_are_the_labeled_extracts() {
        for aead in [AeadId::ChaCha20Poly1305, AeadId::Aes128Gcm] {
            let suite = hpke_suite(aead);
            let (psk_id_hash, _) = labeled_extract(&suite, b"", b"psk_id_hash", b"");
            let (info_hash, _) = labeled_extract(&suite, b"", b"info_hash", super::super::INFO);
            assert_eq!(
                envelope_hashes(aead, super::super::INFO),
                Some((*psk_id_hash, *info_hash)),
                "{aead:?}"
            );
            // Any other info is computed, not looked up.
            assert_eq!(envelope_hashes(aead, b"confiance/v2"), None);
        }
    }
}
