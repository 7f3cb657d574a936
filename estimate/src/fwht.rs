//! The fast Walsh–Hadamard transform.

/// In-place unnormalised Walsh–Hadamard transform (Sylvester ordering):
/// `out[i] = Σ_j (−1)^{popcount(i & j)} in[j]`, in `k log k` additions.
/// The length must be a power of two (others are left unchanged).
///
/// ```
/// use confiance_estimate::fwht;
/// let mut v = [1i64, 0, 0, 0];
/// fwht(&mut v);
/// assert_eq!(v, [1, 1, 1, 1]);
/// ```
pub fn fwht(v: &mut [i64]) {
    let n = v.len();
    if !n.is_power_of_two() {
        return;
    }
    let mut h = 1;
    while h < n {
        for block in v.chunks_exact_mut(2 * h) {
            let (a, b) = block.split_at_mut(h);
            for (x, y) in a.iter_mut().zip(b.iter_mut()) {
                let (s, t) = (*x + *y, *x - *y);
                *x = s;
                *y = t;
            }
        }
        h *= 2;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition() {
        let input: Vec<i64> = (0..32).map(|i| (i * 7919 % 31) - 15).collect();
        let mut fast = input.clone();
        fwht(&mut fast);
        for (i, f) in fast.iter().enumerate() {
            let slow: i64 = input
                .iter()
                .enumerate()
                .map(|(j, x)| if (i & j).count_ones() % 2 == 0 { *x } else { -x })
                .sum();
            assert_eq!(*f, slow, "row {i}");
        }
    }
}
