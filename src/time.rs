//! Time as the whole crate sees it: UTC seconds since the Unix epoch.
//!
//! DESIGN.md §5: "Time is UTC seconds." Every instant in a receipt, a tag, a report or
//! a query is a [`Timestamp`]; arithmetic on it saturates rather than wrapping or
//! panicking, so a malicious or buggy clock cannot crash the device.

/// An instant: whole seconds since 1970-01-01T00:00:00Z (UTC).
///
/// ```
/// use confiance::Timestamp;
/// let t = Timestamp::from_secs(1_700_000_000);
/// assert_eq!(t.saturating_add_secs(u64::MAX), Timestamp::MAX);
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);
    /// The last representable instant; used as "never" for deadlines that do not end.
    pub const MAX: Self = Self(u64::MAX);

    /// An instant `secs` seconds after the Unix epoch.
    #[must_use]
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs)
    }

    /// Seconds since the Unix epoch.
    #[must_use]
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// `self + secs`, saturating at [`Timestamp::MAX`].
    #[must_use]
    pub const fn saturating_add_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// `self - secs`, saturating at the epoch.
    #[must_use]
    pub const fn saturating_sub_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_sub(secs))
    }

    /// The start of the bucket of width `width_secs` that holds `self`
    /// (a zero width leaves the instant as it is).
    ///
    /// ```
    /// use confiance::Timestamp;
    /// assert_eq!(Timestamp::from_secs(3_601).truncate(3_600), Timestamp::from_secs(3_600));
    /// ```
    #[must_use]
    pub const fn truncate(self, width_secs: u64) -> Self {
        if width_secs == 0 { self } else { Self(self.0 - self.0 % width_secs) }
    }
}

impl core::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}
