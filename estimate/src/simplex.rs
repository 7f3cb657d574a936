//! Euclidean projection onto the probability simplex.

/// The closest point (in L2) of the probability simplex to `v`: non-negative entries
/// summing to one. Sort-based algorithm of Duchi, Shalev-Shwartz, Singer, Chandra
/// (ICML 2008), O(d log d).
///
/// **Caveat — poisoning.** Projection is not linear: it clips every category below a
/// data-dependent threshold to zero and shifts the rest. A few fabricated reports
/// that push some categories down move that threshold and so change *every* other
/// estimate, and a poisoned category that survives the clipping gains mass taken from
/// honest ones. Raw unbiased estimates bound each fake report's influence on each
/// category; projected ones do not. Use it for display, never for decisions under
/// attack (docs/privacy.md).
///
/// ```
/// use confiance_estimate::project_simplex;
/// let p = project_simplex(&[0.7, 0.5, -0.2]);
/// assert!((p[0] - 0.6).abs() < 1e-12 && (p[1] - 0.4).abs() < 1e-12 && p[2] == 0.0);
/// ```
#[must_use]
pub fn project_simplex(v: &[f64]) -> Vec<f64> {
    if v.is_empty() {
        return Vec::new();
    }
    let mut u: Vec<f64> = v.to_vec();
    u.sort_by(|a, b| b.total_cmp(a));
    let mut cumulative = 0.0;
    let mut theta = 0.0;
    for (i, x) in u.iter().enumerate() {
        cumulative += x;
        #[allow(clippy::cast_precision_loss, reason = "i + 1 <= 2^24 categories")]
        let t = (cumulative - 1.0) / (i + 1) as f64;
        if x - t > 0.0 {
            theta = t;
        }
    }
    v.iter().map(|x| (x - theta).max(0.0)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn projects_onto_the_simplex() {
        let p = project_simplex(&[0.2, 0.3, 0.5]);
        assert_eq!(p, vec![0.2, 0.3, 0.5], "already on the simplex");
        let p = project_simplex(&[2.0, -1.0, 0.1, 0.3]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p.iter().all(|x| *x >= 0.0));
        assert_eq!(p[1], 0.0);
        assert!(project_simplex(&[]).is_empty());
    }
}
