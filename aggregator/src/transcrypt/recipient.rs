//! The recipient: assembles its domain key from the transcryptors' shares and decrypts
//! transcrypted pseudonyms.

use core::fmt;

use confiance::ids::SubjectId;
use confiance::pseudonym::{Ciphertext, hazmat as eg};
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use super::{Domain, DomainCommitments, KeyShare, Step, TranscryptError, verify_chain};

/// A recipient's decryption key for one domain, `∏ x_i·k_i`, wiped on drop.
pub struct RecipientKey {
    sk: Scalar,
    pk: RistrettoPoint,
}

impl fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientKey").field("public", &self.pk.compress()).finish_non_exhaustive()
    }
}

impl Drop for RecipientKey {
    fn drop(&mut self) {
        self.sk.zeroize();
    }
}

impl RecipientKey {
    /// The product of the shares of every transcryptor of the chain.
    ///
    /// # Errors
    /// [`TranscryptError::EmptyChain`] for no shares.
    pub fn from_shares(shares: &[KeyShare]) -> Result<Self, TranscryptError> {
        if shares.is_empty() {
            return Err(TranscryptError::EmptyChain);
        }
        let sk = shares.iter().fold(Scalar::ONE, |acc, s| acc * s.0);
        Ok(Self { pk: RISTRETTO_BASEPOINT_TABLE * &sk, sk })
    }

    /// The domain public key, which every fully transcrypted ciphertext carries.
    #[must_use]
    pub const fn public_key(&self) -> &RistrettoPoint {
        &self.pk
    }

    /// Checks that `steps` took the device's ciphertext `input` (the one its signed
    /// [`TranscryptionRequest`](confiance::pseudonym::TranscryptionRequest) carries) through every
    /// transcryptor of `commitments` in order ([`verify_chain`]), for `domain`, and
    /// decrypts the result: the recipient's pseudonym of the device. This is how a
    /// recipient learns a pseudonym: anyone can encrypt a point to the public domain
    /// key, but only the chain can produce proofs from a device's request.
    ///
    /// # Errors
    /// Every error of [`verify_chain`]; [`TranscryptError::WrongKey`] when the chain's
    /// output is not under this key (another domain, or not the whole chain).
    ///
    /// # Example
    /// See [`Transcryptor`](super::Transcryptor).
    pub fn open(
        &self,
        input: &Ciphertext,
        domain: &Domain,
        steps: &[Step],
        commitments: &[DomainCommitments],
    ) -> Result<DomainPseudonym, TranscryptError> {
        let out = verify_chain(input, domain, steps, commitments)?;
        self.decrypt_unverified(&out)
    }

    /// Decrypts a ciphertext under this key **without checking where it came from**.
    /// Anyone can encrypt any point to the public domain key, so the result says
    /// nothing about a device unless the caller verified the chain that produced `ct`
    /// itself; use [`RecipientKey::open`], which does.
    ///
    /// # Errors
    /// [`TranscryptError::WrongKey`] when `ct` is not under this key (not transcrypted
    /// by the whole chain, or for another domain).
    pub fn decrypt_unverified(&self, ct: &Ciphertext) -> Result<DomainPseudonym, TranscryptError> {
        if !bool::from(ct.public_key().ct_eq(&self.pk)) {
            return Err(TranscryptError::WrongKey);
        }
        Ok(DomainPseudonym(eg::decrypt(ct, &self.sk).compress().to_bytes()))
    }
}

/// A device's pseudonym in one domain: the encoding of `(∏ s_i)·M`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainPseudonym(pub [u8; 32]);

impl DomainPseudonym {
    /// The raw bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<DomainPseudonym> for SubjectId {
    fn from(p: DomainPseudonym) -> Self {
        Self(p.0)
    }
}

impl fmt::Display for DomainPseudonym {
    /// Lower-case hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for DomainPseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DomainPseudonym({self})")
    }
}
