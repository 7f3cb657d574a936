//! Typed durations after W3C DPV: `Temporal` (an ISO 8601 period), `UntilTime`,
//! `UntilEvent` and `Endless` — never free text.

use alloc::string::String;
use core::fmt;

use crate::Timestamp;
use crate::time::{civil_from_days, days_from_civil, days_in_month};

/// Why a text is not a duration or a period.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationError {
    /// Not an ISO 8601 period such as `P1Y2M10DT2H30M` or `P6W`.
    MalformedPeriod,
    /// A period of zero length (`P0D`): nothing can be held for no time.
    ZeroPeriod,
    /// A component of the period is too large to compute with.
    PeriodOverflow,
    /// `until:` is not followed by an RFC 3339 UTC instant.
    MalformedInstant,
    /// `event:` is not followed by a valid event name (`[a-z0-9][a-z0-9_.-]*`, at most 64 bytes).
    MalformedEvent,
    /// None of `P…`, `until:…`, `event:…` or `endless`.
    UnknownForm,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MalformedPeriod => "not an ISO 8601 period such as P30D or P1Y2M",
            Self::ZeroPeriod => "a period must be longer than zero",
            Self::PeriodOverflow => "period component too large",
            Self::MalformedInstant => "expected until:YYYY-MM-DDTHH:MM:SSZ",
            Self::MalformedEvent => "expected event:<name> with name [a-z0-9][a-z0-9_.-]*",
            Self::UnknownForm => {
                "expected an ISO 8601 period (P30D), until:<instant>, event:<name> or endless"
            }
        })
    }
}

impl core::error::Error for DurationError {}

/// An ISO 8601 period: calendar months (years count as 12) and exact seconds
/// (weeks, days, hours, minutes, seconds; a day is 86 400 s in UTC).
///
/// Calendar parts are added on the calendar: one month after 31 January is 28 or
/// 29 February (clamped to the month's end), as in `java.time` and `chrono`.
///
/// ```
/// use confiance::retention::Period;
/// use confiance::Timestamp;
/// let p: Period = "P1M".parse()?;
/// let jan31 = Timestamp::parse_rfc3339("2024-01-31T00:00:00Z").unwrap();
/// assert_eq!(p.add_to(jan31).to_rfc3339(), "2024-02-29T00:00:00Z");
/// assert_eq!("PT36H".parse::<Period>()?.fixed_secs(), Some(129_600));
/// # Ok::<(), confiance::retention::DurationError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    months: u32,
    secs: u64,
}

/// The longest period accepted: 1 000 years, far past any sane hold, and small enough
/// that no arithmetic on it can overflow.
const MAX_MONTHS: u64 = 12_000;
const MAX_SECS: u64 = 1_000 * 366 * 86_400;

impl Period {
    /// One hour.
    pub const HOUR: Self = Self { months: 0, secs: 3_600 };
    /// One day.
    pub const DAY: Self = Self { months: 0, secs: 86_400 };
    /// Thirty days.
    pub const DAYS_30: Self = Self { months: 0, secs: 30 * 86_400 };
    /// Ten years (120 calendar months).
    pub const YEARS_10: Self = Self { months: 120, secs: 0 };

    /// A period of whole seconds.
    ///
    /// # Errors
    /// [`DurationError::ZeroPeriod`] or [`DurationError::PeriodOverflow`].
    pub const fn from_secs(secs: u64) -> Result<Self, DurationError> {
        Self::new(0, secs)
    }

    /// A period of `months` calendar months plus `secs` seconds.
    ///
    /// # Errors
    /// [`DurationError::ZeroPeriod`] or [`DurationError::PeriodOverflow`].
    pub const fn new(months: u32, secs: u64) -> Result<Self, DurationError> {
        if months == 0 && secs == 0 {
            return Err(DurationError::ZeroPeriod);
        }
        if months as u64 > MAX_MONTHS || secs > MAX_SECS {
            return Err(DurationError::PeriodOverflow);
        }
        Ok(Self { months, secs })
    }

    /// Calendar months in the period (years count as 12).
    #[must_use]
    pub const fn months(self) -> u32 {
        self.months
    }

    /// Exact seconds in the period besides its months.
    #[must_use]
    pub const fn secs(self) -> u64 {
        self.secs
    }

    /// The period's length in seconds when it has no calendar part; `None` otherwise.
    #[must_use]
    pub const fn fixed_secs(self) -> Option<u64> {
        if self.months == 0 { Some(self.secs) } else { None }
    }

    /// `start + self` on the UTC calendar, saturating at [`Timestamp::MAX`].
    #[must_use]
    pub fn add_to(self, start: Timestamp) -> Timestamp {
        let s = start.as_secs();
        let mut t = s;
        if self.months > 0 {
            let Ok(days) = i64::try_from(s / 86_400) else { return Timestamp::MAX };
            let (y, m, d) = civil_from_days(days);
            let total = y * 12 + i64::from(m) - 1 + i64::from(self.months);
            let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
            let nd = d.min(days_in_month(ny, nm));
            let Ok(nd_days) = u64::try_from(days_from_civil(ny, nm, nd)) else { return Timestamp::MAX };
            t = nd_days.saturating_mul(86_400).saturating_add(s % 86_400);
        }
        Timestamp::from_secs(t.saturating_add(self.secs))
    }
}

impl core::str::FromStr for Period {
    type Err = DurationError;

    /// `PnYnMnWnDTnHnMnS` with integer components, any subset, in that order.
    fn from_str(s: &str) -> Result<Self, DurationError> {
        let rest = s.strip_prefix('P').ok_or(DurationError::MalformedPeriod)?;
        if rest.is_empty() || rest.ends_with('T') {
            return Err(DurationError::MalformedPeriod);
        }
        let (mut months, mut secs) = (0u64, 0u64);
        let mut in_time = false;
        let mut rank = 0u8; // components must come in order, each at most once
        let mut num: Option<u64> = None;
        for c in rest.chars() {
            if let Some(d) = c.to_digit(10) {
                let n = num.unwrap_or(0).checked_mul(10).and_then(|n| n.checked_add(u64::from(d)));
                num = Some(n.ok_or(DurationError::PeriodOverflow)?);
                continue;
            }
            if c == 'T' {
                if in_time || num.is_some() {
                    return Err(DurationError::MalformedPeriod);
                }
                in_time = true;
                continue;
            }
            let n = num.take().ok_or(DurationError::MalformedPeriod)?;
            let (r, mul_months, mul_secs) = match (in_time, c) {
                (false, 'Y') => (1, 12, 0),
                (false, 'M') => (2, 1, 0),
                (false, 'W') => (3, 0, 7 * 86_400),
                (false, 'D') => (4, 0, 86_400),
                (true, 'H') => (5, 0, 3_600),
                (true, 'M') => (6, 0, 60),
                (true, 'S') => (7, 0, 1),
                _ => return Err(DurationError::MalformedPeriod),
            };
            if r <= rank {
                return Err(DurationError::MalformedPeriod);
            }
            rank = r;
            let add_m = n.checked_mul(mul_months).ok_or(DurationError::PeriodOverflow)?;
            let add_s = n.checked_mul(mul_secs).ok_or(DurationError::PeriodOverflow)?;
            months = months.checked_add(add_m).ok_or(DurationError::PeriodOverflow)?;
            secs = secs.checked_add(add_s).ok_or(DurationError::PeriodOverflow)?;
        }
        if num.is_some() {
            return Err(DurationError::MalformedPeriod);
        }
        let months = u32::try_from(months).map_err(|_| DurationError::PeriodOverflow)?;
        Self::new(months, secs)
    }
}

impl fmt::Display for Period {
    /// Canonical form: years and months, then days, hours, minutes and seconds (no weeks).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P")?;
        let (y, m) = (self.months / 12, self.months % 12);
        if y > 0 {
            write!(f, "{y}Y")?;
        }
        if m > 0 {
            write!(f, "{m}M")?;
        }
        let (d, rem) = (self.secs / 86_400, self.secs % 86_400);
        if d > 0 {
            write!(f, "{d}D")?;
        }
        if rem > 0 {
            f.write_str("T")?;
            let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
            if h > 0 {
                write!(f, "{h}H")?;
            }
            if mi > 0 {
                write!(f, "{mi}M")?;
            }
            if s > 0 {
                write!(f, "{s}S")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Period({self})")
    }
}

/// A named event that ends a hold, such as `warranty-end` or `account-closed`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventName(String);

impl EventName {
    /// Validates an event name (`[a-z0-9][a-z0-9_.-]*`, at most 64 bytes).
    ///
    /// # Errors
    /// [`DurationError::MalformedEvent`].
    pub fn new(s: &str) -> Result<Self, DurationError> {
        crate::ids::MetricId::new(s).map_err(|_| DurationError::MalformedEvent)?;
        Ok(Self(String::from(s)))
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventName({:?})", self.0)
    }
}

/// How long something lasts, typed after W3C DPV's duration kinds.
///
/// Written in catalogues and receipts as `P30D` (an ISO 8601 period),
/// `until:2027-01-01T00:00:00Z`, `event:warranty-end` or `endless`.
///
/// ```
/// use confiance::retention::Duration;
/// use confiance::Timestamp;
/// let d: Duration = "P30D".parse()?;
/// let t = Timestamp::from_secs(0);
/// assert_eq!(d.deadline_from(t).at, Timestamp::from_secs(30 * 86_400));
/// let e: Duration = "event:warranty-end".parse()?;
/// assert_eq!(e.deadline_from(t).at, Timestamp::MAX);
/// assert_eq!(e.to_string(), "event:warranty-end");
/// # Ok::<(), confiance::retention::DurationError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Duration {
    /// A fixed period after the start (`dpv:TemporalDuration`).
    Temporal(Period),
    /// Until a fixed instant (`dpv:UntilTimeDuration`).
    UntilTime(Timestamp),
    /// Until a named event happens (`dpv:UntilEventDuration`).
    UntilEvent(EventName),
    /// No end (`dpv:EndlessDuration`).
    Endless,
}

/// When something ends: at `at` (saturated to [`Timestamp::MAX`] for "never"), or earlier
/// if `event` happens first.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Deadline {
    /// The latest instant at which it ends; [`Timestamp::MAX`] when only an event (or
    /// nothing) ends it.
    pub at: Timestamp,
    /// An event that ends it earlier, if it happens before `at`.
    pub event: Option<EventName>,
}

impl Deadline {
    /// A deadline that never comes.
    pub const NEVER: Self = Self { at: Timestamp::MAX, event: None };

    /// The earlier of two deadlines. When both name an event, the one of `self` is kept
    /// and the other's instant bound still applies; catalogue validation forbids
    /// event-bound maximum holds, so two events never meet in practice.
    #[must_use]
    pub fn min(self, other: Self) -> Self {
        Self { at: self.at.min(other.at), event: self.event.or(other.event) }
    }

    /// The instant it ends given when (if ever) its event happened.
    #[must_use]
    pub fn resolve(&self, event_at: Option<Timestamp>) -> Timestamp {
        match (&self.event, event_at) {
            (Some(_), Some(e)) => self.at.min(e),
            _ => self.at,
        }
    }
}

impl Duration {
    /// When something that starts at `start` and lasts `self` ends.
    #[must_use]
    pub fn deadline_from(&self, start: Timestamp) -> Deadline {
        match self {
            Self::Temporal(p) => Deadline { at: p.add_to(start), event: None },
            Self::UntilTime(t) => Deadline { at: *t, event: None },
            Self::UntilEvent(e) => Deadline { at: Timestamp::MAX, event: Some(e.clone()) },
            Self::Endless => Deadline::NEVER,
        }
    }

    /// Whether `self` never ends later than `limit`, whatever the start instant.
    ///
    /// Calendar periods are compared on every start day of a 400-year Gregorian cycle's
    /// worth of month shapes (each day of a leap and a common year, and a century year),
    /// so `P12M` is within `P1Y` and `P31D` is not within `P1M`.
    /// An event-bound duration is within any limit only together with that limit's own
    /// bound: `UntilEvent` is within `limit` only if `limit` is `Endless` or the same event.
    #[must_use]
    pub fn is_within(&self, limit: &Self) -> bool {
        match (self, limit) {
            (_, Self::Endless) => true,
            (Self::Endless, _) => false,
            (Self::UntilEvent(a), Self::UntilEvent(b)) => a == b,
            (Self::UntilEvent(_), _) => false,
            (_, Self::UntilEvent(_)) => false,
            (Self::UntilTime(a), Self::UntilTime(b)) => a <= b,
            (Self::UntilTime(_), Self::Temporal(_)) => false,
            // A period always ends before a fixed instant only if it does so from every
            // start up to that instant; a start later than the instant breaks it.
            (Self::Temporal(_), Self::UntilTime(_)) => false,
            (Self::Temporal(a), Self::Temporal(b)) => period_within(*a, *b),
        }
    }
}

/// Bounds on the length of a period in seconds, whatever its start: `k` months last at
/// least `⌊k/12⌋·365 + (k mod 12)·28` days and at most `k·31` days.
fn length_bounds(p: Period) -> (u64, u64) {
    let m = u64::from(p.months);
    let min = ((m / 12) * 365 + (m % 12) * 28) * 86_400 + p.secs;
    let max = m * 31 * 86_400 + p.secs;
    (min, max)
}

fn period_within(a: Period, b: Period) -> bool {
    if a.months <= b.months && a.secs <= b.secs {
        return true;
    }
    let ((_, a_max), (b_min, b_max)) = (length_bounds(a), length_bounds(b));
    let (a_min, _) = length_bounds(a);
    if a_max <= b_min {
        return true;
    }
    if a_min > b_max {
        return false;
    }
    // Every day of 2099 (common), 2100 (common century) and 2104 (leap) and the
    // months around them cover every month-length sequence a period can span.
    let start = days_from_civil(2098, 1, 1);
    let end = days_from_civil(2106, 1, 1);
    (start..end).all(|day| {
        let t = Timestamp::from_secs(u64::try_from(day).unwrap_or(0) * 86_400);
        a.add_to(t) <= b.add_to(t)
    })
}

impl core::str::FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, DurationError> {
        if s == "endless" {
            Ok(Self::Endless)
        } else if let Some(t) = s.strip_prefix("until:") {
            Timestamp::parse_rfc3339(t).map(Self::UntilTime).map_err(|_| DurationError::MalformedInstant)
        } else if let Some(e) = s.strip_prefix("event:") {
            EventName::new(e).map(Self::UntilEvent)
        } else if s.starts_with('P') {
            s.parse().map(Self::Temporal)
        } else {
            Err(DurationError::UnknownForm)
        }
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Temporal(p) => write!(f, "{p}"),
            Self::UntilTime(t) => write!(f, "until:{}", t.to_rfc3339()),
            Self::UntilEvent(e) => write!(f, "event:{}", e.as_str()),
            Self::Endless => f.write_str("endless"),
        }
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Duration({self})")
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <alloc::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_str!(Period);
serde_via_str!(Duration);

impl serde::Serialize for EventName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for EventName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <alloc::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn periods_parse_and_print_canonically() {
        for (s, canon) in [
            ("P1Y", "P1Y"),
            ("P12M", "P1Y"),
            ("P1Y2M10DT2H30M", "P1Y2M10DT2H30M"),
            ("P2W", "P14D"),
            ("PT36H", "P1DT12H"),
            ("PT90S", "PT1M30S"),
        ] {
            assert_eq!(s.parse::<Period>().unwrap().to_string(), canon, "{s}");
        }
        for bad in
            ["", "P", "PT", "P1", "1D", "P1D2D", "P1M1Y", "PT1D", "P1H", "P-1D", "P0D", "P1.5D", "P1DT"]
        {
            assert!(bad.parse::<Period>().is_err(), "{bad:?} accepted");
        }
        assert_eq!("P99999999999999999999D".parse::<Period>(), Err(DurationError::PeriodOverflow));
    }

    #[test]
    fn calendar_addition_clamps_to_month_end() {
        let p1m: Period = "P1M".parse().unwrap();
        assert_eq!(p1m.add_to(ts("2023-01-31T10:00:00Z")), ts("2023-02-28T10:00:00Z"));
        assert_eq!(p1m.add_to(ts("2024-01-31T10:00:00Z")), ts("2024-02-29T10:00:00Z"));
        let p1y: Period = "P1Y".parse().unwrap();
        assert_eq!(p1y.add_to(ts("2024-02-29T00:00:00Z")), ts("2025-02-28T00:00:00Z"));
        let p: Period = "P1MT1H".parse().unwrap();
        assert_eq!(p.add_to(ts("2024-12-15T23:30:00Z")), ts("2025-01-16T00:30:00Z"));
    }

    #[test]
    fn within_compares_on_the_calendar() {
        let d = |s: &str| s.parse::<Duration>().unwrap();
        assert!(d("P12M").is_within(&d("P1Y")));
        assert!(d("P28D").is_within(&d("P1M")));
        assert!(!d("P29D").is_within(&d("P1M")));
        assert!(!d("P31D").is_within(&d("P1M")));
        assert!(d("P365D").is_within(&d("P1Y")));
        assert!(!d("P366D").is_within(&d("P1Y")));
        assert!(d("P5Y").is_within(&d("endless")));
        assert!(!d("endless").is_within(&d("P5Y")));
        assert!(!d("event:sold").is_within(&d("P5Y")));
        assert!(d("until:2027-01-01").is_within(&d("until:2028-01-01")));
    }

    #[test]
    fn durations_round_trip_text() {
        for s in ["P30D", "until:2027-01-01T00:00:00Z", "event:warranty-end", "endless"] {
            assert_eq!(s.parse::<Duration>().unwrap().to_string(), s);
        }
        for bad in ["forever", "until:tomorrow", "event:Bad Name", "30 days"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad}");
        }
    }

    #[test]
    fn deadlines_combine() {
        let a = Deadline { at: Timestamp::from_secs(100), event: None };
        let b = Deadline { at: Timestamp::MAX, event: Some(EventName::new("sold").unwrap()) };
        let m = a.clone().min(b);
        assert_eq!(m.at, Timestamp::from_secs(100));
        assert_eq!(m.resolve(Some(Timestamp::from_secs(50))), Timestamp::from_secs(50));
        assert_eq!(m.resolve(None), Timestamp::from_secs(100));
        assert_eq!(a.resolve(Some(Timestamp::from_secs(50))), Timestamp::from_secs(100));
    }
}
