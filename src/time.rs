//! Time as the whole crate sees it: UTC seconds since the Unix epoch (docs/design.md#time).
//!
//! Every instant in a receipt, a tag, a report or a query is a [`Timestamp`]; arithmetic
//! on it saturates rather than wrapping or panicking, so a malicious or buggy clock cannot
//! crash the device.

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

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
#[must_use]
pub(crate) const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
#[must_use]
pub(crate) const fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days in `month` of `year` (Gregorian).
#[must_use]
pub(crate) const fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Why a text is not an RFC 3339 UTC instant.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeParseError {
    /// Not of the form `YYYY-MM-DDTHH:MM:SSZ` (or a bare `YYYY-MM-DD`), or a field out of range.
    Malformed,
    /// Before 1970-01-01T00:00:00Z.
    BeforeEpoch,
}

impl core::fmt::Display for TimeParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Malformed => f.write_str("expected an instant like 2027-01-31T00:00:00Z"),
            Self::BeforeEpoch => f.write_str("instant is before 1970-01-01T00:00:00Z"),
        }
    }
}

impl core::error::Error for TimeParseError {}

impl Timestamp {
    /// Parses `YYYY-MM-DDTHH:MM:SSZ` (UTC only, no fractions) or a bare date `YYYY-MM-DD`
    /// (midnight UTC).
    ///
    /// ```
    /// use confiance::Timestamp;
    /// let t = Timestamp::parse_rfc3339("2027-01-31T12:00:00Z")?;
    /// assert_eq!(t.to_rfc3339(), "2027-01-31T12:00:00Z");
    /// assert_eq!(Timestamp::parse_rfc3339("1970-01-02")?, Timestamp::from_secs(86_400));
    /// # Ok::<(), confiance::time::TimeParseError>(())
    /// ```
    ///
    /// # Errors
    /// [`TimeParseError`] when the text is not such an instant.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimeParseError> {
        let b = s.as_bytes();
        let num = |r: core::ops::Range<usize>| -> Result<u32, TimeParseError> {
            let part = b.get(r).ok_or(TimeParseError::Malformed)?;
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return Err(TimeParseError::Malformed);
            }
            Ok(part.iter().fold(0u32, |a, c| a * 10 + u32::from(c - b'0')))
        };
        let sep =
            |i: usize, c: u8| if b.get(i) == Some(&c) { Ok(()) } else { Err(TimeParseError::Malformed) };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        sep(4, b'-')?;
        sep(7, b'-')?;
        let (h, mi, se) = if b.len() == 10 {
            (0, 0, 0)
        } else {
            if b.len() != 20 {
                return Err(TimeParseError::Malformed);
            }
            sep(10, b'T')?;
            sep(13, b':')?;
            sep(16, b':')?;
            sep(19, b'Z')?;
            (num(11..13)?, num(14..16)?, num(17..19)?)
        };
        if !(1..=12).contains(&mo)
            || d == 0
            || d > days_in_month(i64::from(y), mo)
            || h > 23
            || mi > 59
            || se > 59
        {
            return Err(TimeParseError::Malformed);
        }
        let days = days_from_civil(i64::from(y), mo, d);
        let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + se);
        u64::try_from(secs).map(Self).map_err(|_| TimeParseError::BeforeEpoch)
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`; [`Timestamp::MAX`] prints as `never`.
    #[must_use]
    pub fn to_rfc3339(self) -> alloc::string::String {
        if self == Self::MAX {
            return alloc::string::String::from("never");
        }
        let days = (self.0 / 86_400) as i64;
        let rem = self.0 % 86_400;
        let (y, m, d) = civil_from_days(days);
        alloc::format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for z in (-800_000i64..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
            assert!(d >= 1 && d <= days_in_month(y, m));
        }
    }

    #[test]
    fn rfc3339_known_answers() {
        assert_eq!(Timestamp::parse_rfc3339("2000-03-01T00:00:00Z").unwrap().as_secs(), 951_868_800);
        assert_eq!(Timestamp::parse_rfc3339("2024-02-29T23:59:59Z").unwrap().as_secs(), 1_709_251_199);
        for bad in
            ["2023-02-29", "2024-13-01", "2024-01-01T24:00:00Z", "2024-01-01T00:00:00", "1969-12-31", "x"]
        {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
        assert_eq!(Timestamp::from_secs(1_709_251_199).to_rfc3339(), "2024-02-29T23:59:59Z");
    }
}
