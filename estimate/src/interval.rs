//! Normal intervals at any confidence level.

use super::EstimateError;

/// A two-sided confidence level in (0, 1), e.g. 0.95.
///
/// ```
/// use confiance_estimate::Level;
/// let l = Level::new(0.99)?;
/// assert!((l.z() - 2.575_829_303_548_901).abs() < 1e-14);
/// assert!(Level::new(1.0).is_err() && Level::new(0.0).is_err() && Level::new(f64::NAN).is_err());
/// # Ok::<(), confiance_estimate::EstimateError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Level(f64);

impl Level {
    /// The 95% level of [`crate::PointEstimate::ci95_low`] and `ci95_high`.
    pub const P95: Self = Self(0.95);

    /// A level strictly between 0 and 1.
    ///
    /// # Errors
    /// [`EstimateError::BadLevel`] for anything else (NaN included).
    pub fn new(level: f64) -> Result<Self, EstimateError> {
        if level > 0.0 && level < 1.0 { Ok(Self(level)) } else { Err(EstimateError::BadLevel) }
    }

    /// The level.
    #[must_use]
    pub const fn get(self) -> f64 {
        self.0
    }

    /// The half-width of the interval in standard errors: the `(1 + level)/2` quantile
    /// of the standard normal distribution ([`normal_quantile`]).
    #[must_use]
    pub fn z(self) -> f64 {
        normal_quantile(0.5 + self.0 / 2.0)
    }
}

/// The `p` quantile of the standard normal distribution, `p` in (0, 1) (NaN outside):
/// Wichura's algorithm AS 241 (PPND16, Applied Statistics 37, 1988), relative error
/// about 1e-16.
///
/// ```
/// use confiance_estimate::normal_quantile;
/// assert!((normal_quantile(0.975) - 1.959_963_984_540_054).abs() < 1e-15);
/// assert_eq!(normal_quantile(0.5), 0.0);
/// assert!((normal_quantile(1e-10) + 6.361_340_902_404_056).abs() < 1e-12);
/// ```
#[must_use]
#[allow(clippy::excessive_precision, clippy::unreadable_literal, reason = "AS 241's published coefficients")]
pub fn normal_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        let num = ((((((2509.0809287301226727 * r + 33430.575583588128105) * r + 67265.770927008700853)
            * r
            + 45921.953931549871457)
            * r
            + 13731.693765509461125)
            * r
            + 1971.5909503065514427)
            * r
            + 133.14166789178437745)
            * r
            + 3.387132872796366608;
        let den = ((((((5226.495278852545925 * r + 28729.085735721942674) * r + 39307.89580009271061) * r
            + 21213.794301586595867)
            * r
            + 5394.1960214247511077)
            * r
            + 687.1870074920579083)
            * r
            + 42.313330701600911252)
            * r
            + 1.0;
        return q * num / den;
    }
    let r = if q < 0.0 { p } else { 1.0 - p };
    let r = (-r.ln()).sqrt();
    let x = if r <= 5.0 {
        let r = r - 1.6;
        let num = ((((((7.7454501427834140764e-4 * r + 0.0227238449892691845833) * r
            + 0.24178072517745061177)
            * r
            + 1.27045825245236838258)
            * r
            + 3.64784832476320460504)
            * r
            + 5.7694972214606914055)
            * r
            + 4.6303378461565452959)
            * r
            + 1.42343711074968357734;
        let den = ((((((1.05075007164441684324e-9 * r + 5.475938084995344946e-4) * r
            + 0.0151986665636164571966)
            * r
            + 0.14810397642748007459)
            * r
            + 0.68976733498510000455)
            * r
            + 1.6763848301838038494)
            * r
            + 2.05319162663775882187)
            * r
            + 1.0;
        num / den
    } else {
        let r = r - 5.0;
        let num = ((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r
            + 0.0012426609473880784386)
            * r
            + 0.026532189526576123093)
            * r
            + 0.29656057182850489123)
            * r
            + 1.7848265399172913358)
            * r
            + 5.4637849111641143699)
            * r
            + 6.6579046435011037772;
        let den = ((((((2.04426310338993978564e-15 * r + 1.4215117583164458887e-7) * r
            + 1.8463183175100546818e-5)
            * r
            + 7.868691311456132591e-4)
            * r
            + 0.0148753612908506148525)
            * r
            + 0.13692988092273580531)
            * r
            + 0.59983220655588793769)
            * r
            + 1.0;
        num / den
    };
    if q < 0.0 { -x } else { x }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    /// Known quantiles (Φ(1) and the usual 95/97.5/99.5% points; the others from an
    /// independent implementation, Python's `statistics.NormalDist`) and symmetry.
    #[test]
    fn quantiles_match_tables() {
        for (p, z) in [
            (0.975, 1.959_963_984_540_054),
            (0.995, 2.575_829_303_548_901),
            (0.95, 1.644_853_626_951_472_2),
            (0.841_344_746_068_542_9, 1.0),
            (0.999_999_999, 5.997_807_019_601_638),
            (0.6, 0.253_347_103_135_799_7),
        ] {
            assert!(
                (normal_quantile(p) - z).abs() <= 1e-14 * z.abs().max(1.0),
                "{p}: {}",
                normal_quantile(p)
            );
            assert!((normal_quantile(1.0 - p) + z).abs() <= 1e-9, "{p}");
        }
        assert!(
            normal_quantile(0.0).is_nan() && normal_quantile(1.0).is_nan() && normal_quantile(-1.0).is_nan()
        );
        assert!((Level::P95.z() - 1.959_963_984_540_054).abs() < 1e-15);
    }
}
