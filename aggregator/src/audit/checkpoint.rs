//! Signed checkpoints: "log `origin` has `size` leaves with root `root`", Ed25519-signed.
//! The text format is in the [module docs](super).

use core::fmt;
use core::fmt::Write as _;

use confiance::Timestamp;
use ed25519_dalek::ed25519::signature::Signer as _;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AuditError;
use super::merkle::Hash;

/// The longest origin, in bytes.
pub const MAX_ORIGIN_LEN: usize = 255;

pub(crate) fn check_origin(origin: &str) -> Result<(), AuditError> {
    let ok = !origin.is_empty()
        && origin.len() <= MAX_ORIGIN_LEN
        && origin.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if ok { Ok(()) } else { Err(AuditError::BadOrigin) }
}

/// The signed-note key id: the first 4 bytes of `SHA-256(origin || 0x0A || 0x01 || key)`.
pub(crate) fn key_id(origin: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(origin.as_bytes());
    h.update([0x0a, 0x01]);
    h.update(key.as_bytes());
    let d: [u8; 32] = h.finalize().into();
    [d[0], d[1], d[2], d[3]]
}

/// The statement a checkpoint signs: the log `origin` had `size` leaves with root `root`
/// at `timestamp`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    timestamp: Timestamp,
}

impl Checkpoint {
    /// The log's origin (its name).
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The tree size.
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// The root hash, `MTH(D[0:size])`.
    #[must_use]
    pub const fn root(&self) -> &Hash {
        &self.root
    }

    /// When the checkpoint was made.
    #[must_use]
    pub const fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The signed body: four lines, each ending in `\n`.
    #[must_use]
    pub fn body(&self) -> String {
        let mut s = String::with_capacity(self.origin.len() + 110);
        let _ = write!(s, "{}\n{}\n", self.origin, self.size);
        push_hex(&mut s, &self.root);
        let _ = write!(s, "\ntime {}\n", self.timestamp.as_secs());
        s
    }
}

/// A [`Checkpoint`] with its Ed25519 signature. It serializes (serde) as its text form.
///
/// Obtain one from [`CheckpointSigner::sign`] or [`SignedCheckpoint::from_text`]; check it
/// with [`Verifier::verify_checkpoint`](super::Verifier::verify_checkpoint).
#[derive(Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    key_id: [u8; 4],
    signature: [u8; 64],
}

impl SignedCheckpoint {
    /// The signed statement (not yet verified unless it came from a verifier).
    #[must_use]
    pub const fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    pub(crate) const fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    pub(crate) fn signature(&self) -> Signature {
        Signature::from_bytes(&self.signature)
    }

    /// The text form (see the [module docs](super)).
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut s = self.checkpoint.body();
        let _ = write!(s, "\n\u{2014} {} ", self.checkpoint.origin);
        push_hex(&mut s, &self.key_id);
        push_hex(&mut s, &self.signature);
        s.push('\n');
        s
    }

    /// Parses the text form. Only the exact canonical rendering is accepted (no extra
    /// lines or spaces, decimal without sign or leading zeros, lower-case hex). This does
    /// **not** check the signature.
    ///
    /// # Errors
    /// [`AuditError::MalformedCheckpoint`]; [`AuditError::BadOrigin`].
    pub fn from_text(text: &str) -> Result<Self, AuditError> {
        let bad = || AuditError::MalformedCheckpoint;
        let mut lines = text.split('\n');
        let origin = lines.next().ok_or_else(bad)?;
        check_origin(origin)?;
        let size = lines.next().and_then(|l| l.parse::<u64>().ok()).ok_or_else(bad)?;
        let root: Hash = lines.next().and_then(parse_hex).ok_or_else(bad)?;
        let secs = lines
            .next()
            .and_then(|l| l.strip_prefix("time "))
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(bad)?;
        let _blank = lines.next().ok_or_else(bad)?;
        let sig_line = lines.next().ok_or_else(bad)?;
        let sig_hex = sig_line.rsplit(' ').next().ok_or_else(bad)?;
        let sig: [u8; 68] = parse_hex(sig_hex).ok_or_else(bad)?;
        let (key_id, signature) = sig.split_at(4);
        let parsed = Self {
            checkpoint: Checkpoint {
                origin: origin.to_owned(),
                size,
                root,
                timestamp: Timestamp::from_secs(secs),
            },
            key_id: key_id.try_into().map_err(|_| bad())?,
            signature: signature.try_into().map_err(|_| bad())?,
        };
        // Canonical form only: whatever the lenient field parsers let through, this rejects.
        if parsed.to_text() != text {
            return Err(bad());
        }
        Ok(parsed)
    }
}

impl fmt::Debug for SignedCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedCheckpoint").field("checkpoint", &self.checkpoint).finish_non_exhaustive()
    }
}

impl Serialize for SignedCheckpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_text())
    }
}

impl<'de> Deserialize<'de> for SignedCheckpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_text(&text).map_err(serde::de::Error::custom)
    }
}

/// The log's checkpoint signing key (Ed25519, RFC 8032) and origin. The secret key is
/// wiped on drop and never printed.
///
/// ```
/// use confiance::Timestamp;
/// use confiance_aggregator::audit::{CheckpointSigner, Verifier, merkle::empty_root};
/// let signer = CheckpointSigner::generate("example.org/audit", &mut confiance::rng::OsRng::new())?;
/// let cp = signer.sign(0, empty_root(), Timestamp::from_secs(0));
/// let verifier = Verifier::new("example.org/audit", signer.verifying_key())?;
/// assert!(verifier.verify_checkpoint(&cp).is_ok());
/// assert_eq!(format!("{signer:?}"), r#"CheckpointSigner { origin: "example.org/audit", .. }"#);
/// # Ok::<(), confiance_aggregator::audit::AuditError>(())
/// ```
pub struct CheckpointSigner {
    origin: String,
    key: SigningKey,
    key_id: [u8; 4],
}

impl CheckpointSigner {
    /// A signer for `origin` with `key` (taken by value; wiped when the signer drops).
    ///
    /// # Errors
    /// [`AuditError::BadOrigin`].
    pub fn new(origin: &str, key: SigningKey) -> Result<Self, AuditError> {
        check_origin(origin)?;
        let key_id = key_id(origin, &key.verifying_key());
        Ok(Self { origin: origin.to_owned(), key, key_id })
    }

    /// A signer from a 32-byte Ed25519 secret key (the caller wipes its copy).
    ///
    /// # Errors
    /// [`AuditError::BadOrigin`].
    pub fn from_secret_bytes(origin: &str, secret: &[u8; 32]) -> Result<Self, AuditError> {
        Self::new(origin, SigningKey::from_bytes(secret))
    }

    /// A signer with a fresh key from `rng`.
    ///
    /// # Errors
    /// [`AuditError::BadOrigin`].
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(origin: &str, rng: &mut R) -> Result<Self, AuditError> {
        Self::new(origin, SigningKey::generate(rng))
    }

    /// The public key auditors need.
    #[must_use]
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The log's origin.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Signs "this log had `size` leaves with root `root` at `timestamp`".
    #[must_use]
    pub fn sign(&self, size: u64, root: Hash, timestamp: Timestamp) -> SignedCheckpoint {
        let checkpoint = Checkpoint { origin: self.origin.clone(), size, root, timestamp };
        let signature = self.key.sign(checkpoint.body().as_bytes()).to_bytes();
        SignedCheckpoint { checkpoint, key_id: self.key_id, signature }
    }
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner").field("origin", &self.origin).finish_non_exhaustive()
    }
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
}

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}
