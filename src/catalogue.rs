//! The catalogue: a versioned, hashed description of what may be collected, for which
//! purposes, by whom, and for how long (docs/design.md#catalogue).
//!
//! Build one with [`Catalogue::builder`] on any target, or load it from TOML with
//! [`Catalogue::from_toml_str`] (feature `std`). Either way it is validated as a whole;
//! a [`Catalogue`] value is always valid. Its [`digest`](Catalogue::digest) — SHA-256 of
//! a canonical encoding — travels in every envelope so device and aggregator agree on
//! meaning: it changes with any change of meaning and never with the order of tables
//! or the whitespace of the TOML.
//!
//! ```
//! use confiance::catalogue::*;
//! use confiance::ids::*;
//!
//! let catalogue = Catalogue::builder("demo", 1)
//!     .purpose(PurposeId::new("improvement")?, Purpose::new("Improve the product", LegalBasis::Consent))
//!     .recipient(RecipientId::new("acme")?, Recipient::new("Acme", Role::Controller, "FR"))
//!     .metric(
//!         MetricId::new("heating.on")?,
//!         Metric::new("Whether heating ran this hour", MetricKind::Boolean, CategoryId::new("usage")?)
//!             .ldp("1".parse()?, confiance::ldp::MechanismName::Auto)
//!             .purposes([PurposeId::new("improvement")?])
//!             .recipients([RecipientId::new("acme")?])
//!             .max_hold("P1Y".parse()?),
//!     )
//!     .build()?;
//! assert_eq!(catalogue.metrics().count(), 1);
//! assert_eq!(catalogue.digest().as_bytes().len(), 32);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod model;
#[cfg(feature = "std")]
mod toml;
mod validate;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use sha2::{Digest as _, Sha256};

pub use error::CatalogueError;
pub use model::{
    Budget, DEFAULT_TOKENS_PER_PERIOD, Enrollment, LegalBasis, Limits, MAX_CATEGORICAL_LABELS,
    MAX_CERTIFIERS, MAX_ITEMS, MAX_TOKENS_PER_PERIOD, Metric, MetricKind, Privacy, Purpose, Recipient, Role,
    Sensitivity,
};

use crate::ids::{CategoryId, CertifierPublicKey, MetricId, PurposeId, RecipientId};

/// Domain-separation prefix of the catalogue digest.
const DIGEST_DOMAIN: &[u8] = b"confiance/catalogue/v1\0";

/// SHA-256 of a catalogue's canonical encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct CatalogueDigest(pub [u8; 32]);

impl CatalogueDigest {
    /// The 32 bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl core::fmt::Display for CatalogueDigest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl core::fmt::Debug for CatalogueDigest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "CatalogueDigest({self})")
    }
}

/// The content of a catalogue, in canonical order (maps sorted by id).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Content {
    name: String,
    version: u32,
    limits: Limits,
    purposes: BTreeMap<PurposeId, Purpose>,
    recipients: BTreeMap<RecipientId, Recipient>,
    metrics: BTreeMap<MetricId, Metric>,
}

/// A validated catalogue. See the [module documentation](self).
#[derive(Clone, PartialEq, Eq)]
pub struct Catalogue {
    content: Content,
    /// Who may enroll. Kept apart from `content`: its canonical bytes follow the
    /// content's only when it names a certifier, so a catalogue with open enrollment
    /// keeps the bytes and digest it had before enrollment could be restricted.
    enrollment: Enrollment,
    digest: CatalogueDigest,
}

impl core::fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Catalogue")
            .field("name", &self.content.name)
            .field("version", &self.content.version)
            .field("digest", &self.digest)
            .field("metrics", &self.content.metrics.len())
            .field("certifiers", &self.enrollment.certifiers.len())
            .finish_non_exhaustive()
    }
}

impl Catalogue {
    /// Starts a catalogue named `name` (an id-like label) at `version`.
    pub fn builder(name: &str, version: u32) -> CatalogueBuilder {
        CatalogueBuilder {
            content: Content {
                name: String::from(name),
                version,
                limits: Limits::default(),
                purposes: BTreeMap::new(),
                recipients: BTreeMap::new(),
                metrics: BTreeMap::new(),
            },
            enrollment: Enrollment::default(),
            duplicate: None,
        }
    }

    fn from_content(content: Content, enrollment: Enrollment) -> Result<Self, CatalogueError> {
        validate::validate(&content)?;
        validate::enrollment(&enrollment)?;
        let digest = digest_of(&encode(&content, &enrollment)?);
        Ok(Self { content, enrollment, digest })
    }

    /// The catalogue's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.content.name
    }

    /// The catalogue's version.
    #[must_use]
    pub const fn version(&self) -> u32 {
        self.content.version
    }

    /// SHA-256 of the canonical encoding (see [`Catalogue::canonical_bytes`]).
    #[must_use]
    pub const fn digest(&self) -> CatalogueDigest {
        self.digest
    }

    /// Catalogue-wide limits.
    #[must_use]
    pub const fn limits(&self) -> &Limits {
        &self.content.limits
    }

    /// Who may enroll: the certifiers whose device certificates the aggregator requires
    /// (none: enrollment is open).
    /// ```
    /// use confiance::catalogue::Catalogue;
    /// let catalogue = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml"))?;
    /// assert!(catalogue.enrollment().is_open()); // the sample names no certifier
    /// # Ok::<(), confiance::catalogue::CatalogueError>(())
    /// ```
    #[must_use]
    pub const fn enrollment(&self) -> &Enrollment {
        &self.enrollment
    }

    /// The trusted certifiers' public keys, sorted (empty: enrollment is open).
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// let catalogue = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml"))?;
    /// assert!(catalogue.certifiers().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn certifiers(&self) -> &[CertifierPublicKey] {
        &self.enrollment.certifiers
    }

    /// The canonical encoding: postcard of the content with every map sorted by id,
    /// durations in canonical ISO 8601 form and ε as a reduced fraction, then — only when
    /// it names certifiers — postcard of the enrollment (the sorted certifier keys). Its
    /// SHA-256, after the prefix `confiance/catalogue/v1\0`, is the digest.
    #[must_use]
    pub fn canonical_bytes(&self) -> Vec<u8> {
        encode(&self.content, &self.enrollment).unwrap_or_default()
    }

    /// Decodes a canonical encoding made by [`Catalogue::canonical_bytes`] and validates it.
    ///
    /// # Errors
    /// [`CatalogueError::Malformed`] for bytes that do not decode, trailing bytes or a
    /// non-canonical encoding, or the validation error of the content.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, CatalogueError> {
        if bytes.len() > MAX_CANONICAL_BYTES {
            return Err(CatalogueError::TooLarge { bytes: bytes.len() });
        }
        let (content, rest) =
            postcard::take_from_bytes::<Content>(bytes).map_err(|_| CatalogueError::Malformed)?;
        let enrollment = if rest.is_empty() {
            Enrollment::default()
        } else {
            let (enrollment, rest) =
                postcard::take_from_bytes::<Enrollment>(rest).map_err(|_| CatalogueError::Malformed)?;
            // Open enrollment is written as nothing at all, never as an empty list.
            if !rest.is_empty() || enrollment.is_open() {
                return Err(CatalogueError::Malformed);
            }
            enrollment
        };
        // One catalogue, one byte string: maps out of order, non-canonical durations or
        // varints decode to the same content but are not its canonical encoding.
        if encode(&content, &enrollment)? != bytes {
            return Err(CatalogueError::Malformed);
        }
        Self::from_content(content, enrollment)
    }

    /// A purpose by id.
    #[must_use]
    pub fn purpose(&self, id: &PurposeId) -> Option<&Purpose> {
        self.content.purposes.get(id)
    }

    /// A recipient by id.
    #[must_use]
    pub fn recipient(&self, id: &RecipientId) -> Option<&Recipient> {
        self.content.recipients.get(id)
    }

    /// A metric by id.
    #[must_use]
    pub fn metric(&self, id: &MetricId) -> Option<&Metric> {
        self.content.metrics.get(id)
    }

    /// Every purpose, by id.
    pub fn purposes(&self) -> impl Iterator<Item = (&PurposeId, &Purpose)> {
        self.content.purposes.iter()
    }

    /// Every recipient, by id.
    pub fn recipients(&self) -> impl Iterator<Item = (&RecipientId, &Recipient)> {
        self.content.recipients.iter()
    }

    /// Every metric, by id.
    pub fn metrics(&self) -> impl Iterator<Item = (&MetricId, &Metric)> {
        self.content.metrics.iter()
    }

    /// The metrics of a data category.
    pub fn metrics_in<'a>(&'a self, category: &'a CategoryId) -> impl Iterator<Item = &'a MetricId> + 'a {
        self.content.metrics.iter().filter(move |(_, m)| &m.category == category).map(|(id, _)| id)
    }

    /// Whether the catalogue lets `recipient` receive `metric` for `purpose`.
    #[must_use]
    pub fn allows(&self, metric: &MetricId, purpose: &PurposeId, recipient: &RecipientId) -> bool {
        self.metric(metric).is_some_and(|m| m.purposes.contains(purpose) && m.recipients.contains(recipient))
    }
}

/// The most canonical bytes a catalogue may have (a bound for untrusted input).
pub const MAX_CANONICAL_BYTES: usize = 4 << 20;

/// The canonical bytes: the content, then the enrollment if it names a certifier.
fn encode(content: &Content, enrollment: &Enrollment) -> Result<Vec<u8>, CatalogueError> {
    let mut bytes = postcard::to_allocvec(content).map_err(|_| CatalogueError::Malformed)?;
    if !enrollment.is_open() {
        bytes.extend(postcard::to_allocvec(enrollment).map_err(|_| CatalogueError::Malformed)?);
    }
    Ok(bytes)
}

fn digest_of(canonical: &[u8]) -> CatalogueDigest {
    let mut h = Sha256::new();
    h.update(DIGEST_DOMAIN);
    h.update(canonical);
    CatalogueDigest(h.finalize().into())
}

/// Builds a [`Catalogue`]; nothing is checked until [`CatalogueBuilder::build`], which
/// checks everything.
#[derive(Clone, Debug)]
#[must_use]
pub struct CatalogueBuilder {
    content: Content,
    enrollment: Enrollment,
    duplicate: Option<(&'static str, String)>,
}

impl CatalogueBuilder {
    /// Sets the catalogue-wide limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.content.limits = limits;
        self
    }

    /// Sets who may enroll (by default: anyone).
    ///
    /// ```
    /// use confiance::catalogue::{Catalogue, Enrollment};
    /// use confiance::consent::CertifierKey;
    /// let maker = CertifierKey::from_bytes(&[7; 32]).public_key();
    /// let open = Catalogue::builder("demo", 1).build()?;
    /// let closed = Catalogue::builder("demo", 1).enrollment(Enrollment::certified_by([maker])).build()?;
    /// assert_eq!(closed.certifiers(), &[maker]);
    /// assert_ne!(open.digest(), closed.digest());
    /// # Ok::<(), confiance::catalogue::CatalogueError>(())
    /// ```
    pub fn enrollment(mut self, enrollment: Enrollment) -> Self {
        self.enrollment = enrollment;
        self
    }

    /// Adds a purpose.
    pub fn purpose(mut self, id: PurposeId, purpose: Purpose) -> Self {
        let key = String::from(id.as_str());
        if self.content.purposes.insert(id, purpose).is_some() {
            self.duplicate.get_or_insert(("purpose", key));
        }
        self
    }

    /// Adds a recipient.
    pub fn recipient(mut self, id: RecipientId, recipient: Recipient) -> Self {
        let key = String::from(id.as_str());
        if self.content.recipients.insert(id, recipient).is_some() {
            self.duplicate.get_or_insert(("recipient", key));
        }
        self
    }

    /// Adds a metric.
    pub fn metric(mut self, id: MetricId, metric: Metric) -> Self {
        let key = String::from(id.as_str());
        if self.content.metrics.insert(id, metric).is_some() {
            self.duplicate.get_or_insert(("metric", key));
        }
        self
    }

    /// Validates and seals the catalogue.
    ///
    /// # Errors
    /// The first [`CatalogueError`] found, naming the offending item.
    pub fn build(self) -> Result<Catalogue, CatalogueError> {
        if let Some((kind, id)) = self.duplicate {
            return Err(CatalogueError::DuplicateId { kind, id });
        }
        Catalogue::from_content(self.content, self.enrollment)
    }
}
