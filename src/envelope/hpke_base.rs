//! RFC 9180 single-shot base mode (§6.1 `SealBase` / `OpenBase`) for our suites, on the
//! `hpke` crate: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, and the AEAD of an [`AeadId`].
//!
//! [`seal_base`] and [`open_base`] take any `info` and `aad`, which is what the RFC 9180
//! test vectors need (`tests/vectors/rfc9180*.json`); envelopes use them with
//! [`INFO`](super::INFO) and the frame header as `aad`.

use super::keys::Kem;
use super::{AeadId, ENC_LEN, EnvelopeError, HEADER_LEN, Header, PublicKey, SecretKey, TAG_LEN};
use alloc::vec::Vec;
use hpke::aead::{Aead, AeadTag};
use hpke::inout::InOutBuf;
use hpke::kdf::HkdfSha256;
use hpke::{Deserializable as _, OpModeR, OpModeS, Serializable as _};
use rand_core::CryptoRng;

/// Runs `$body` with `$a` bound to the `hpke` AEAD type of `$aead`.
macro_rules! with_aead {
    ($aead:expr, $a:ident => $body:expr) => {
        match $aead {
            AeadId::ChaCha20Poly1305 => {
                type $a = hpke::aead::ChaCha20Poly1305;
                $body
            }
            #[cfg(feature = "aes")]
            AeadId::Aes128Gcm => {
                type $a = hpke::aead::AesGcm128;
                $body
            }
            #[allow(unreachable_patterns, reason = "reachable exactly when the `aes` feature is off")]
            other => Err(EnvelopeError::UnsupportedAead(other.to_u16())),
        }
    };
}

/// Encapsulates to `pk` and seals `buf` in place with `aad`; returns `enc` and the tag.
fn seal_detached<A: Aead, R: CryptoRng + ?Sized>(
    pk: &PublicKey,
    info: &[u8],
    aad_before_enc: &[u8],
    buf: &mut [u8],
    rng: &mut R,
    enc_in_aad: bool,
) -> Result<([u8; ENC_LEN], [u8; TAG_LEN]), EnvelopeError> {
    let pk = pk.to_hpke()?;
    let (enc, mut ctx) =
        hpke::setup_sender_with_rng::<A, HkdfSha256, Kem>(&OpModeS::Base, &pk, info, &mut &mut *rng)
            .map_err(|_| EnvelopeError::InvalidPublicKey)?;
    let mut enc_bytes = [0u8; ENC_LEN];
    enc_bytes.copy_from_slice(&enc.to_bytes());
    let tag = if enc_in_aad {
        // The frame's AAD is the whole header, `enc` included: prefix ‖ enc.
        let mut aad = [0u8; HEADER_LEN];
        let (prefix, enc_slot) = aad.split_at_mut(HEADER_LEN - ENC_LEN);
        if prefix.len() != aad_before_enc.len() {
            return Err(EnvelopeError::Seal);
        }
        prefix.copy_from_slice(aad_before_enc);
        enc_slot.copy_from_slice(&enc_bytes);
        ctx.seal_inout_detached(InOutBuf::from(buf), &aad)
    } else {
        ctx.seal_inout_detached(InOutBuf::from(buf), aad_before_enc)
    }
    .map_err(|_| EnvelopeError::Seal)?;
    let mut tag_bytes = [0u8; TAG_LEN];
    tag_bytes.copy_from_slice(&tag.to_bytes());
    Ok((enc_bytes, tag_bytes))
}

/// Decapsulates `enc` with `sk` and opens `body` (ciphertext ‖ tag); returns the plaintext.
fn open_detached<A: Aead>(
    sk: &SecretKey,
    enc: &[u8],
    info: &[u8],
    aad: &[u8],
    body: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let split = body.len().checked_sub(TAG_LEN).ok_or(EnvelopeError::Open)?;
    let (ct, tag) = body.split_at_checked(split).ok_or(EnvelopeError::Open)?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| EnvelopeError::Open)?;
    let tag = AeadTag::<A>::from_bytes(tag).map_err(|_| EnvelopeError::Open)?;
    let mut ctx = hpke::setup_receiver::<A, HkdfSha256, Kem>(&OpModeR::Base, sk.hpke(), &enc, info)
        .map_err(|_| EnvelopeError::Open)?;
    let mut out = ct.to_vec();
    ctx.open_inout_detached(InOutBuf::from(&mut out[..]), aad, &tag).map_err(|_| EnvelopeError::Open)?;
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
    with_aead!(aead, A => {
        let mut out = Vec::with_capacity(plaintext.len().saturating_add(TAG_LEN));
        out.extend_from_slice(plaintext);
        let (enc, tag) = seal_detached::<A, R>(pk, info, aad, &mut out, rng, false)?;
        out.extend_from_slice(&tag);
        Ok((enc, out))
    })
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
    with_aead!(aead, A => open_detached::<A>(sk, enc, info, aad, ct))
}

/// Seals a whole frame: header prefix, `enc`, then ciphertext ‖ tag, in one allocation.
pub(crate) fn seal_frame<R: CryptoRng + ?Sized>(
    aead: AeadId,
    pk: &PublicKey,
    header: &Header,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, EnvelopeError> {
    with_aead!(aead, A => {
        let mut out = Vec::with_capacity(plaintext.len().saturating_add(super::OVERHEAD));
        header.write_prefix(&mut out);
        out.extend_from_slice(&[0u8; ENC_LEN]);
        out.extend_from_slice(plaintext);
        let (prefix, body) = out.split_at_mut(HEADER_LEN);
        let (prefix, enc_slot) = prefix.split_at_mut(HEADER_LEN - ENC_LEN);
        let (enc, tag) = seal_detached::<A, R>(pk, super::INFO, prefix, body, rng, true)?;
        enc_slot.copy_from_slice(&enc);
        out.extend_from_slice(&tag);
        Ok(out)
    })
}

/// Opens a frame's body with the header as AAD.
pub(crate) fn open_in_place(
    aead: AeadId,
    sk: &SecretKey,
    enc: &[u8],
    aad: &[u8],
    body: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    with_aead!(aead, A => open_detached::<A>(sk, enc, super::INFO, aad, body))
}
