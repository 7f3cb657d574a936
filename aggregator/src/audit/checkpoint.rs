//! Signed checkpoints: "log `origin` has `size` leaves with root `root`", Ed25519-signed,
//! as C2SP signed notes in the C2SP tlog-checkpoint format (see the [module docs](super)).

use core::fmt;
use core::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use confiance::Timestamp;
use ed25519_dalek::ed25519::signature::Signer as _;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AuditError;
use super::merkle::Hash;

/// The longest origin, in bytes.
pub const MAX_ORIGIN_LEN: usize = 255;

/// The longest checkpoint text [`SignedCheckpoint::from_text`] reads, in bytes, and the
/// most signature lines: bounds for untrusted input (a checkpoint with a few witness
/// cosignatures is well under both).
pub const MAX_CHECKPOINT_LEN: usize = 16 * 1024;
/// See [`MAX_CHECKPOINT_LEN`].
pub const MAX_NOTE_SIGNATURES: usize = 64;

/// The Ed25519 algorithm byte of a signed-note key id (C2SP signed-note).
const ALG_ED25519: u8 = 0x01;

pub(crate) fn check_origin(origin: &str) -> Result<(), AuditError> {
    // The origin is also the signed-note key name: no space and no `+` (the name's
    // separator in a verifier key `name+keyid+key`).
    let ok = !origin.is_empty()
        && origin.len() <= MAX_ORIGIN_LEN
        && origin.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'+');
    if ok { Ok(()) } else { Err(AuditError::BadOrigin) }
}

/// The C2SP signed-note key id of an Ed25519 key named `name`: the first 4 bytes of
/// `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`.
///
/// ```
/// use confiance_aggregator::audit::note_key_id;
/// use ed25519_dalek::SigningKey;
/// // The key of the golang.org/x/mod/sumdb/note example ("PeterNeumann+c74f20a3+…").
/// let seed = [0x81, 0x0a, 0x14, 0x02, 0xd5, 0x14, 0x6c, 0x8d, 0x84, 0xf2, 0x44, 0x33, 0x30, 0xf5, 0x40, 0x80,
///             0xeb, 0xf9, 0x8e, 0xe1, 0x7d, 0x9c, 0x74, 0xf6, 0x25, 0x2f, 0xc5, 0xd5, 0xc7, 0x28, 0x31, 0x73];
/// let key = SigningKey::from_bytes(&seed).verifying_key();
/// assert_eq!(note_key_id("PeterNeumann", &key), [0xc7, 0x4f, 0x20, 0xa3]);
/// ```
#[must_use]
pub fn note_key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0a, ALG_ED25519]);
    h.update(key.as_bytes());
    let d: [u8; 32] = h.finalize().into();
    [d[0], d[1], d[2], d[3]]
}

/// One signature line of a C2SP signed note: `— <name> <base64(key id ‖ signature)>`.
/// Lines of other signers (witness cosignatures, other algorithms) are kept as read and
/// ignored by a [`Verifier`](super::Verifier) that does not know their key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key id (4 bytes).
    pub key_id: [u8; 4],
    /// The signature bytes (64 for Ed25519).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line, with its final `\n`.
    #[must_use]
    pub fn to_line(&self) -> String {
        let mut blob = Vec::with_capacity(4 + self.signature.len());
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(&self.signature);
        format!("\u{2014} {} {}\n", self.name, B64.encode(blob))
    }

    /// Parses one line (without its `\n`).
    fn from_line(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("\u{2014} ")?;
        let (name, b64) = rest.split_once(' ')?;
        if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
            return None;
        }
        let blob = B64.decode(b64).ok()?;
        if blob.len() < 5 {
            return None;
        }
        let (id, sig) = blob.split_at(4);
        Some(Self { name: name.to_owned(), key_id: id.try_into().ok()?, signature: sig.to_vec() })
    }

    /// Whether this is `name`'s Ed25519 signature of `text` under `key`.
    fn verifies(&self, name: &str, key: &VerifyingKey, text: &str) -> bool {
        self.name == name
            && self.key_id == note_key_id(name, key)
            && Signature::from_slice(&self.signature)
                .is_ok_and(|sig| key.verify_strict(text.as_bytes(), &sig).is_ok())
    }
}

/// Signs `text` (which must end in `\n`) as a C2SP signed note by the Ed25519 key `key`
/// named `name`: `text ‖ "\n" ‖ "— " ‖ name ‖ " " ‖ base64(key id ‖ signature) ‖ "\n"`,
/// the signature over `text` exactly.
///
/// ```
/// use confiance_aggregator::audit::{open_note, sign_note};
/// use ed25519_dalek::SigningKey;
/// let key = SigningKey::from_bytes(&[7; 32]);
/// let note = sign_note("hello\n", "example.org/log", &key)?;
/// assert_eq!(open_note(&note, "example.org/log", &key.verifying_key())?, "hello\n");
/// # Ok::<(), confiance_aggregator::audit::AuditError>(())
/// ```
///
/// # Errors
/// [`AuditError::MalformedCheckpoint`] when `text` is empty, does not end in `\n` or
/// contains a blank line; [`AuditError::BadOrigin`] for a name a note cannot carry.
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> Result<String, AuditError> {
    check_origin(name)?;
    if !text.ends_with('\n') || text.starts_with('\n') || text.contains("\n\n") {
        return Err(AuditError::MalformedCheckpoint);
    }
    let sig = NoteSignature {
        name: name.to_owned(),
        key_id: note_key_id(name, &key.verifying_key()),
        signature: key.sign(text.as_bytes()).to_bytes().to_vec(),
    };
    Ok(format!("{text}\n{}", sig.to_line()))
}

/// Splits a signed note into its text (with its final `\n`) and its signature lines.
fn split_note(note: &str) -> Option<(&str, Vec<NoteSignature>)> {
    if note.len() > MAX_CHECKPOINT_LEN || !note.ends_with('\n') {
        return None;
    }
    let at = note.rfind("\n\n")?;
    let (text, sigs) = (&note[..=at], &note[at + 2..]);
    let lines: Vec<&str> = sigs.strip_suffix('\n')?.split('\n').collect();
    if lines.is_empty() || lines.len() > MAX_NOTE_SIGNATURES {
        return None;
    }
    let sigs = lines.into_iter().map(NoteSignature::from_line).collect::<Option<Vec<_>>>()?;
    Some((text, sigs))
}

/// Verifies a C2SP signed note: among its signature lines, the one of `name` with the
/// key id of `key` must verify (strict Ed25519) over the text; lines of other keys are
/// ignored. Returns the text.
///
/// # Errors
/// [`AuditError::MalformedCheckpoint`] when the note is not a signed note;
/// [`AuditError::BadSignature`] when no signature of `key` verifies.
pub fn open_note<'n>(note: &'n str, name: &str, key: &VerifyingKey) -> Result<&'n str, AuditError> {
    let (text, sigs) = split_note(note).ok_or(AuditError::MalformedCheckpoint)?;
    if sigs.iter().any(|s| s.verifies(name, key, text)) { Ok(text) } else { Err(AuditError::BadSignature) }
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

    /// The signed note text (C2SP tlog-checkpoint): origin, decimal size, base64 root,
    /// and one extension line `time <decimal UTC seconds>`, each ending in `\n`.
    #[must_use]
    pub fn body(&self) -> String {
        let mut s = String::with_capacity(self.origin.len() + 80);
        let _ = write!(
            s,
            "{}\n{}\n{}\ntime {}\n",
            self.origin,
            self.size,
            B64.encode(self.root),
            self.timestamp.as_secs()
        );
        s
    }

    /// Parses a body made by [`Checkpoint::body`] (exactly, and nothing else).
    fn from_body(text: &str) -> Option<Self> {
        let mut lines = text.strip_suffix('\n')?.split('\n');
        let origin = lines.next()?;
        check_origin(origin).ok()?;
        let size = lines.next()?.parse::<u64>().ok()?;
        let root: Hash = B64.decode(lines.next()?).ok()?.try_into().ok()?;
        let secs = lines.next()?.strip_prefix("time ")?.parse::<u64>().ok()?;
        if lines.next().is_some() {
            return None;
        }
        let c = Self { origin: origin.to_owned(), size, root, timestamp: Timestamp::from_secs(secs) };
        // Canonical only: `+1`, `01` or a second spelling of the root do not round-trip.
        (c.body() == text).then_some(c)
    }
}

/// A [`Checkpoint`] with its signatures: a C2SP signed note whose text is the
/// checkpoint [`body`](Checkpoint::body). It serializes (serde) as its text form.
///
/// Obtain one from [`CheckpointSigner::sign`] or [`SignedCheckpoint::from_text`]; check it
/// with [`Verifier::verify_checkpoint`](super::Verifier::verify_checkpoint).
#[derive(Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    signatures: Vec<NoteSignature>,
}

impl SignedCheckpoint {
    /// The signed statement (not yet verified unless it came from a verifier).
    #[must_use]
    pub const fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The signature lines, in order: the log's first, then any added (cosignatures).
    #[must_use]
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// The text form: the body, a blank line, the signature lines (see the
    /// [module docs](super)).
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut s = self.checkpoint.body();
        s.push('\n');
        for sig in &self.signatures {
            s.push_str(&sig.to_line());
        }
        s
    }

    /// Parses the text form. Only the exact canonical rendering is accepted (decimal
    /// without sign or leading zeros, canonical padded base64, one `time` extension
    /// line); signature lines of other keys are kept. This does **not** check any
    /// signature.
    ///
    /// # Errors
    /// [`AuditError::MalformedCheckpoint`]; [`AuditError::BadOrigin`].
    pub fn from_text(text: &str) -> Result<Self, AuditError> {
        let bad = AuditError::MalformedCheckpoint;
        let (body, signatures) = split_note(text).ok_or(bad)?;
        if let Some(origin) = body.split('\n').next() {
            check_origin(origin)?;
        }
        let checkpoint = Checkpoint::from_body(body).ok_or(AuditError::MalformedCheckpoint)?;
        let parsed = Self { checkpoint, signatures };
        if parsed.to_text() != text {
            return Err(AuditError::MalformedCheckpoint);
        }
        Ok(parsed)
    }

    /// Whether the log key `key` signed it (a line named after the origin, with the
    /// key's id, verifying over the body).
    pub(crate) fn verifies(&self, key: &VerifyingKey) -> bool {
        let body = self.checkpoint.body();
        self.signatures.iter().any(|s| s.verifies(&self.checkpoint.origin, key, &body))
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
        let key_id = note_key_id(origin, &key.verifying_key());
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

    /// The signed-note verifier key: `<origin>+<key id, 8 hex digits>+base64(0x01 ‖
    /// public key)`, what a C2SP signed-note verifier (Go's `note.NewVerifier`) takes.
    ///
    /// ```
    /// use confiance_aggregator::audit::CheckpointSigner;
    /// let s = CheckpointSigner::from_secret_bytes("example.org/audit", &[4; 32])?;
    /// assert!(s.verifier_key().starts_with("example.org/audit+"));
    /// # Ok::<(), confiance_aggregator::audit::AuditError>(())
    /// ```
    #[must_use]
    pub fn verifier_key(&self) -> String {
        let mut key = Vec::with_capacity(33);
        key.push(ALG_ED25519);
        key.extend_from_slice(self.key.verifying_key().as_bytes());
        let id: String = self.key_id.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}+{id}+{}", self.origin, B64.encode(key))
    }

    /// Signs "this log had `size` leaves with root `root` at `timestamp`".
    #[must_use]
    pub fn sign(&self, size: u64, root: Hash, timestamp: Timestamp) -> SignedCheckpoint {
        let checkpoint = Checkpoint { origin: self.origin.clone(), size, root, timestamp };
        let signature = NoteSignature {
            name: self.origin.clone(),
            key_id: self.key_id,
            signature: self.key.sign(checkpoint.body().as_bytes()).to_bytes().to_vec(),
        };
        SignedCheckpoint { checkpoint, signatures: vec![signature] }
    }
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner").field("origin", &self.origin).finish_non_exhaustive()
    }
}
