//! Identifiers shared by the catalogue, consent, tags, reports and the aggregator.
//!
//! Catalogue ids (`MetricId`, `PurposeId`, `RecipientId`, `CategoryId`) are short
//! ASCII names — `[a-z0-9]` first, then `[a-z0-9_.-]`, at most [`MAX_ID_LEN`] bytes — so
//! they are stable in TOML, URLs, SQL and logs. Subjects and receipts are identified by
//! 32-byte values that carry no meaning of their own.

use alloc::string::String;
use core::fmt;

/// The longest catalogue id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid catalogue id.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdError {
    /// The id is empty.
    Empty,
    /// The id is longer than [`MAX_ID_LEN`] bytes.
    TooLong,
    /// The id has a character outside `[a-z0-9_.-]` or does not start with `[a-z0-9]`.
    BadCharacter,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("id is empty"),
            Self::TooLong => write!(f, "id is longer than {MAX_ID_LEN} bytes"),
            Self::BadCharacter => f.write_str("id must match [a-z0-9][a-z0-9_.-]*"),
        }
    }
}

impl core::error::Error for IdError {}

fn validate(s: &str) -> Result<(), IdError> {
    let b = s.as_bytes();
    let Some(first) = b.first() else { return Err(IdError::Empty) };
    if b.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    let tail_ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-');
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) || !b.iter().all(tail_ok) {
        return Err(IdError::BadCharacter);
    }
    Ok(())
}

macro_rules! catalogue_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `s` as an id.
            ///
            /// # Errors
            /// [`IdError`] when `s` is empty, too long or has a forbidden character.
            pub fn new(s: &str) -> Result<Self, IdError> {
                validate(s)?;
                Ok(Self(String::from(s)))
            }

            /// The id as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl core::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                validate(&s).map_err(serde::de::Error::custom)?;
                Ok(Self(s))
            }
        }
    };
}

catalogue_id!(
    /// A metric in the catalogue, such as `thermostat.setpoint`.
    ///
    /// ```
    /// use confiance::ids::MetricId;
    /// assert!(MetricId::new("thermostat.setpoint").is_ok());
    /// assert!(MetricId::new("Bad Id").is_err());
    /// ```
    MetricId
);
catalogue_id!(
    /// A purpose of processing, such as `product-improvement`.
    ///
    /// ```
    /// use confiance::ids::PurposeId;
    /// assert_eq!(PurposeId::new("service")?.as_str(), "service");
    /// # Ok::<(), confiance::ids::IdError>(())
    /// ```
    PurposeId
);
catalogue_id!(
    /// A recipient of data (a brand, a partner, a lab), such as `acme-thermo`.
    ///
    /// ```
    /// use confiance::ids::RecipientId;
    /// assert!(RecipientId::new("acme-thermo").is_ok());
    /// ```
    RecipientId
);
catalogue_id!(
    /// A data category (after W3C DPV), such as `usage` or `location`.
    ///
    /// ```
    /// use confiance::ids::CategoryId;
    /// assert!(CategoryId::new("usage").is_ok());
    /// ```
    CategoryId
);

macro_rules! bytes_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw bytes.
            #[must_use]
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            /// Lower-case hex.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in &self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }
    };
}

bytes_id!(
    /// A data subject, self-certifying: the SHA-256 of [`SUBJECT_ID_DOMAIN`] and the
    /// subject's Ed25519 public key ([`SubjectId::of_key`]). Whoever holds the subject
    /// key (the owner's phone app, or a single-device subject's device) speaks for the
    /// subject; nobody else can. Never sent with anonymous reports.
    ///
    /// ```
    /// use confiance::ids::{SubjectId, SubjectPublicKey};
    /// assert_eq!(SubjectId([0xab; 32]).to_string().len(), 64);
    /// let s = SubjectId::of_key(&SubjectPublicKey([1; 32]));
    /// assert_ne!(s, SubjectId::of_key(&SubjectPublicKey([2; 32])));
    /// ```
    SubjectId
);
bytes_id!(
    /// A subject's Ed25519 public key: it names the subject ([`SubjectId::of_key`]) and
    /// verifies the subject's delegations, revocations, receipts and withdrawals.
    ///
    /// ```
    /// use confiance::ids::SubjectPublicKey;
    /// assert_eq!(SubjectPublicKey([0; 32]).as_bytes().len(), 32);
    /// ```
    SubjectPublicKey
);
bytes_id!(
    /// A device's Ed25519 public key: a subject delegates it
    /// ([`SignedDelegation`](crate::consent::SignedDelegation)), and it verifies what
    /// the device signs on the subject's behalf.
    ///
    /// ```
    /// use confiance::ids::DevicePublicKey;
    /// assert_eq!(DevicePublicKey([0; 32]).to_string().len(), 64);
    /// ```
    DevicePublicKey
);
bytes_id!(
    /// The id of a delegation or a revocation: the SHA-256 of a domain label
    /// (`confiance/delegation-id/v2\0` or `confiance/revocation-id/v2\0`) and its
    /// signed wire bytes.
    ///
    /// ```
    /// use confiance::ids::DelegationId;
    /// assert!(DelegationId([0; 32]).to_string().starts_with("0000"));
    /// ```
    DelegationId
);

/// The domain label hashed before a subject's public key to make its [`SubjectId`].
pub const SUBJECT_ID_DOMAIN: &[u8] = b"confiance/subject-id/v1\0";

impl SubjectId {
    /// The subject named by `key`: SHA-256(`confiance/subject-id/v1\0` ‖ key).
    #[must_use]
    pub fn of_key(key: &SubjectPublicKey) -> Self {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(SUBJECT_ID_DOMAIN);
        h.update(key.0);
        Self(h.finalize().into())
    }
}

impl DevicePublicKey {
    /// The same 32 bytes read as a subject key (a single-device subject whose device
    /// holds the subject key).
    #[must_use]
    pub const fn as_subject_key(&self) -> SubjectPublicKey {
        SubjectPublicKey(self.0)
    }
}

impl SubjectPublicKey {
    /// The same 32 bytes read as a device key (the subject key signing for itself).
    #[must_use]
    pub const fn as_device_key(&self) -> DevicePublicKey {
        DevicePublicKey(self.0)
    }
}
bytes_id!(
    /// A certifier's Ed25519 public key: a manufacturer's key that signs
    /// [`DeviceCertificate`](crate::consent::DeviceCertificate)s. The catalogue names
    /// the certifiers a deployment trusts (`[enrollment] certifiers`).
    ///
    /// ```
    /// use confiance::ids::CertifierPublicKey;
    /// assert_eq!(CertifierPublicKey([0; 32]).to_string().len(), 64);
    /// ```
    CertifierPublicKey
);
bytes_id!(
    /// The id of a device certificate: the SHA-256 of `confiance/device-certificate-id/v1\0`
    /// and its signed wire bytes.
    ///
    /// ```
    /// use confiance::ids::CertificateId;
    /// assert!(CertificateId([0; 32]).to_string().starts_with("0000"));
    /// ```
    CertificateId
);
bytes_id!(
    /// A consent receipt's id: the SHA-256 of its canonical encoding.
    ///
    /// ```
    /// use confiance::ids::ReceiptId;
    /// assert!(ReceiptId([0; 32]).to_string().starts_with("0000"));
    /// ```
    ReceiptId
);
