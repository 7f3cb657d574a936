//! The privacy parameter ε as an exact, validated rational.
//!
//! docs/design.md#exact-sampling: no floating point on a privacy-critical path. ε is carried as a reduced
//! fraction `num/den` of 32-bit integers, so every probability derived from it can be
//! realised exactly by the samplers in [`crate::noise`].

use core::fmt;

/// The largest ε accepted. Above it the mechanisms report the truth with probability
/// indistinguishable from 1 and the guarantee means nothing; it also keeps `e^ε`
/// comfortably inside the integer ranges the exact samplers use.
pub const MAX_EPSILON: u32 = 32;

/// Why a value is not an acceptable ε.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EpsilonError {
    /// ε must be strictly positive.
    NotPositive,
    /// The denominator was zero.
    ZeroDenominator,
    /// ε is above [`MAX_EPSILON`].
    TooLarge,
    /// The text is not a plain decimal such as `0.5`, `1` or `1.25` (at most 9 decimals).
    Malformed,
}

impl fmt::Display for EpsilonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPositive => f.write_str("epsilon must be > 0"),
            Self::ZeroDenominator => f.write_str("epsilon has a zero denominator"),
            Self::TooLarge => write!(f, "epsilon must be <= {MAX_EPSILON}"),
            Self::Malformed => f.write_str("epsilon must be a decimal like 0.5 (at most 9 decimals)"),
        }
    }
}

impl core::error::Error for EpsilonError {}

/// ε, a reduced fraction `num/den` with `0 < ε <= MAX_EPSILON`.
///
/// ```
/// use confiance::Epsilon;
/// let e = Epsilon::from_ratio(2, 4)?;
/// assert_eq!((e.numerator(), e.denominator()), (1, 2));
/// assert_eq!("0.5".parse::<Epsilon>()?, e);
/// assert_eq!(e.to_string(), "0.5");
/// assert!(Epsilon::from_ratio(0, 1).is_err());
/// # Ok::<(), confiance::epsilon::EpsilonError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epsilon {
    num: u32,
    den: u32,
}

const fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

impl Epsilon {
    /// ε = 1.
    pub const ONE: Self = Self { num: 1, den: 1 };

    /// ε = `num / den`, reduced.
    ///
    /// # Errors
    /// [`EpsilonError::ZeroDenominator`], [`EpsilonError::NotPositive`] or
    /// [`EpsilonError::TooLarge`].
    pub const fn from_ratio(num: u32, den: u32) -> Result<Self, EpsilonError> {
        Self::from_ratio_u64(num as u64, den as u64)
    }

    const fn from_ratio_u64(num: u64, den: u64) -> Result<Self, EpsilonError> {
        if den == 0 {
            return Err(EpsilonError::ZeroDenominator);
        }
        if num == 0 {
            return Err(EpsilonError::NotPositive);
        }
        if num > (MAX_EPSILON as u64).saturating_mul(den) {
            return Err(EpsilonError::TooLarge);
        }
        let g = gcd(num, den);
        let (n, d) = (num / g, den / g);
        if n > u32::MAX as u64 || d > u32::MAX as u64 {
            return Err(EpsilonError::Malformed);
        }
        #[allow(clippy::cast_possible_truncation, reason = "both checked <= u32::MAX above")]
        Ok(Self { num: n as u32, den: d as u32 })
    }

    /// The numerator of the reduced fraction.
    #[must_use]
    pub const fn numerator(self) -> u32 {
        self.num
    }

    /// The denominator of the reduced fraction.
    #[must_use]
    pub const fn denominator(self) -> u32 {
        self.den
    }

    /// `self + other`, exactly, as used by the device's budget accounting.
    ///
    /// # Errors
    /// [`EpsilonError::TooLarge`] when the sum leaves the accepted range.
    pub const fn checked_add(self, other: Self) -> Result<Self, EpsilonError> {
        let num = self.num as u64 * other.den as u64 + other.num as u64 * self.den as u64;
        let den = self.den as u64 * other.den as u64;
        let g = gcd(num, den);
        Self::from_ratio_u64(num / g, den / g)
    }

    /// An approximation for display, plots and variance formulas on the aggregator;
    /// never used to draw noise.
    #[must_use]
    pub fn to_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }
}

impl PartialOrd for Epsilon {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Epsilon {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (u64::from(self.num) * u64::from(other.den)).cmp(&(u64::from(other.num) * u64::from(self.den)))
    }
}

impl core::str::FromStr for Epsilon {
    type Err = EpsilonError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits_ok(int) || !digits_ok(frac) || frac.len() > 9 || int.len() > 9 {
            return Err(EpsilonError::Malformed);
        }
        if s.contains('.') && frac.is_empty() {
            return Err(EpsilonError::Malformed);
        }
        let mut num: u64 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            num = num * 10 + u64::from(b - b'0');
        }
        let den = 10u64.pow(frac.len() as u32);
        Self::from_ratio_u64(num, den)
    }
}

impl fmt::Display for Epsilon {
    /// A finite decimal when the denominator allows one, otherwise `num/den`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = self.den;
        let (mut twos, mut fives) = (0u32, 0u32);
        while d.is_multiple_of(2) {
            d /= 2;
            twos += 1;
        }
        while d.is_multiple_of(5) {
            d /= 5;
            fives += 1;
        }
        let places = twos.max(fives);
        if d != 1 || places > 9 {
            return write!(f, "{}/{}", self.num, self.den);
        }
        let scale = 10u64.pow(places);
        let scaled = u64::from(self.num) * (scale / u64::from(self.den));
        let (int, frac) = (scaled / scale, scaled % scale);
        if places == 0 {
            write!(f, "{int}")
        } else {
            write!(f, "{int}.{frac:0width$}", width = places as usize)
        }
    }
}

impl fmt::Debug for Epsilon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epsilon({}/{})", self.num, self.den)
    }
}

impl serde::Serialize for Epsilon {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.num, self.den).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Epsilon {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (num, den) = <(u32, u32)>::deserialize(d)?;
        let e = Self::from_ratio(num, den).map_err(serde::de::Error::custom)?;
        if (e.num, e.den) != (num, den) {
            return Err(serde::de::Error::custom("epsilon fraction is not reduced"));
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn parses_and_prints_decimals() {
        for (s, n, d) in [("0.5", 1, 2), ("1", 1, 1), ("1.25", 5, 4), ("2.000", 2, 1), ("0.1", 1, 10)] {
            let e: Epsilon = s.parse().unwrap();
            assert_eq!((e.numerator(), e.denominator()), (n, d), "{s}");
        }
        assert_eq!(Epsilon::from_ratio(1, 3).unwrap().to_string(), "1/3");
        assert_eq!(Epsilon::from_ratio(5, 4).unwrap().to_string(), "1.25");
        assert_eq!(Epsilon::from_ratio(1, 8).unwrap().to_string(), "0.125");
    }

    #[test]
    fn rejects_bad_values() {
        for s in ["", ".5", "5.", "-1", "1e3", "0", "0.000", "33", "1.0000000001", "abc", "1..2"] {
            assert!(s.parse::<Epsilon>().is_err(), "{s:?} accepted");
        }
        assert_eq!(Epsilon::from_ratio(1, 0), Err(EpsilonError::ZeroDenominator));
        assert_eq!(Epsilon::from_ratio(33, 1), Err(EpsilonError::TooLarge));
        assert!(Epsilon::from_ratio(32, 1).is_ok());
    }

    #[test]
    fn orders_and_adds_exactly() {
        let half = Epsilon::from_ratio(1, 2).unwrap();
        let third = Epsilon::from_ratio(1, 3).unwrap();
        assert!(third < half);
        assert_eq!(half.checked_add(third).unwrap(), Epsilon::from_ratio(5, 6).unwrap());
        assert!(Epsilon::from_ratio(32, 1).unwrap().checked_add(half).is_err());
    }

    #[test]
    fn serde_rejects_unreduced() {
        let bytes = postcard::to_allocvec(&(2u32, 4u32)).unwrap();
        assert!(postcard::from_bytes::<Epsilon>(&bytes).is_err());
        let ok = postcard::to_allocvec(&Epsilon::from_ratio(1, 2).unwrap()).unwrap();
        assert_eq!(postcard::from_bytes::<Epsilon>(&ok).unwrap(), Epsilon::from_ratio(1, 2).unwrap());
    }
}
