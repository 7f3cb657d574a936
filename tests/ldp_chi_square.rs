//! Must show (issue 3): a chi-square goodness-of-fit test over 10^6 seeded draws per
//! mechanism does not reject the paper's distribution at p = 1e-6.
//!
//! Expected probabilities come from the papers' formulas in f64 (ample precision for
//! 10^6 draws). Critical values: the Wilson–Hilferty approximation of the chi-square
//! quantile, z = 4.7534 (upper 1e-6 normal quantile); for one degree of freedom the
//! exact value 23.928.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use confiance::Epsilon;
use confiance::hazmat::{ChaCha20Rng, SeedableRng};
use confiance::ldp::{
    Domain, LdpReport, LdpValue, Mechanism, MechanismName, Params, Selection, hadamard_block, olh_hash,
};

const DRAWS: u32 = 1_000_000;

fn critical(df: usize) -> f64 {
    if df == 1 {
        return 23.928;
    }
    let k = df as f64;
    let z = 4.753_424;
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

/// Draw `DRAWS` reports of `value`, bucket them with `cell`, compare to `expected`.
fn chi_square(
    m: &Mechanism,
    value: LdpValue,
    seed: u64,
    cells: usize,
    cell: impl Fn(&LdpReport) -> usize,
    p: impl Fn(usize) -> f64,
) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut counts = vec![0u64; cells];
    for _ in 0..DRAWS {
        counts[cell(&m.encode(value, &mut rng).unwrap())] += 1;
    }
    let total_p: f64 = (0..cells).map(&p).sum();
    assert!((total_p - 1.0).abs() < 1e-9, "expected law sums to {total_p}");
    let mut stat = 0.0;
    let mut df = 0usize;
    for (i, c) in counts.iter().enumerate() {
        let e = p(i) * f64::from(DRAWS);
        if e > 0.0 {
            stat += (*c as f64 - e).powi(2) / e;
            df += 1;
        } else {
            assert_eq!(*c, 0, "{m:?}: impossible cell {i} drawn");
        }
    }
    let crit = critical(df - 1);
    eprintln!("{:?}: chi2 = {stat:.1}, df = {}, critical(1e-6) = {crit:.1}", m.name(), df - 1);
    assert!(stat < crit, "{:?}: chi2 = {stat:.1} ≥ {crit:.1} (df {})", m.name(), df - 1);
}

fn e1() -> (Epsilon, f64) {
    (Epsilon::from_ratio(1, 1).unwrap(), 1f64.exp())
}

fn cat(name: MechanismName, d: u32) -> Mechanism {
    Selection::new(Domain::Categorical { d }, e1().0, name).map(|s| s.for_period("test", 0)).unwrap()
}

#[test]
fn grr() {
    let (_, e) = e1();
    let d = 8u32;
    let m = cat(MechanismName::Grr, d);
    let z = e + f64::from(d) - 1.0;
    chi_square(
        &m,
        LdpValue::Category(3),
        1,
        d as usize,
        |r| match r {
            LdpReport::Grr(y) => *y as usize,
            _ => unreachable!(),
        },
        |y| if y == 3 { e / z } else { 1.0 / z },
    );
}

fn unary_cell(r: &LdpReport) -> usize {
    match r {
        LdpReport::Oue(b) | LdpReport::Sue(b) => usize::from(b[0]),
        _ => unreachable!(),
    }
}

#[test]
fn oue() {
    let (_, e) = e1();
    let m = cat(MechanismName::Oue, 8);
    let q = 1.0 / (e + 1.0);
    chi_square(&m, LdpValue::Category(5), 2, 256, unary_cell, |x| {
        (0..8)
            .map(|i| {
                let one = x >> i & 1 == 1;
                let p1 = if i == 5 { 0.5 } else { q };
                if one { p1 } else { 1.0 - p1 }
            })
            .product()
    });
}

#[test]
fn sue() {
    let (_, e) = e1();
    let m = cat(MechanismName::Sue, 8);
    let keep = e.sqrt() / (e.sqrt() + 1.0);
    chi_square(&m, LdpValue::Category(0), 3, 256, unary_cell, |x| {
        (0..8).map(|i| if (x >> i & 1 == 1) == (i == 0) { keep } else { 1.0 - keep }).product()
    });
}

/// Positions of a d = 130 report (three 64-lane words, the last one partial): both sides
/// of each word boundary, the last position, and the own position 64. The lanes are drawn
/// 64 at a time (`noise::bernoulli_logistic_lanes`); their joint law must be the product
/// of the per-position laws.
const WIDE: [usize; 8] = [0, 62, 63, 64, 65, 127, 128, 129];

fn wide_cell(positions: &'static [usize]) -> impl Fn(&LdpReport) -> usize {
    move |r| match r {
        LdpReport::Oue(b) | LdpReport::Sue(b) => {
            assert_eq!(b.len(), 17, "130 bits are 17 bytes");
            positions.iter().enumerate().map(|(j, i)| usize::from(b[i / 8] >> (i % 8) & 1) << j).sum()
        }
        _ => unreachable!(),
    }
}

/// SUE at ε = 1 flips at γ = 1/2 (the logistic lane construction); OUE at ε = 3/2 takes the
/// alternating one (γ ≥ 4/3), on six positions so that every cell expects ≥ 100 draws.
#[test]
fn unary_across_words() {
    let (_, e) = e1();
    let keep = e.sqrt() / (e.sqrt() + 1.0);
    chi_square(&cat(MechanismName::Sue, 130), LdpValue::Category(64), 13, 256, wide_cell(&WIDE), |x| {
        (0..8).map(|j| if (x >> j & 1 == 1) == (WIDE[j] == 64) { keep } else { 1.0 - keep }).product()
    });
    const SIX: [usize; 6] = [62, 63, 64, 65, 128, 129];
    let eps = Epsilon::from_ratio(3, 2).unwrap();
    let m = Selection::new(Domain::Categorical { d: 130 }, eps, MechanismName::Oue)
        .map(|s| s.for_period("test", 0))
        .unwrap();
    let q = 1.0 / (1.5f64.exp() + 1.0);
    chi_square(&m, LdpValue::Category(64), 12, 64, wide_cell(&SIX), |x| {
        (0..6)
            .map(|j| {
                let p1 = if SIX[j] == 64 { 0.5 } else { q };
                if x >> j & 1 == 1 { p1 } else { 1.0 - p1 }
            })
            .product()
    });
}

/// GRR over two values flips with one lane of the bit-sliced logistic sampler: at ε = 1
/// (logistic construction) and ε = 4 (alternating), P(keep) = e^ε/(e^ε + 1).
#[test]
fn grr_two_values() {
    for (n, seed) in [(1u32, 14u64), (4, 15)] {
        let e = f64::from(n).exp();
        let m = Selection::new(
            Domain::Categorical { d: 2 },
            Epsilon::from_ratio(n, 1).unwrap(),
            MechanismName::Grr,
        )
        .map(|s| s.for_period("test", 0))
        .unwrap();
        let cell = |r: &LdpReport| match r {
            LdpReport::Grr(y) => *y as usize,
            _ => unreachable!(),
        };
        chi_square(&m, LdpValue::Category(1), seed, 2, cell, |y| {
            if y == 1 { e / (e + 1.0) } else { 1.0 / (e + 1.0) }
        });
    }
}

#[test]
fn olh() {
    let (eps, e) = e1();
    let m = Mechanism::olh_with_pool(8, eps, 64, 99).unwrap();
    let Params::Olh { g, pool, pool_key, .. } = *m.params() else { unreachable!() };
    let z = e + f64::from(g) - 1.0;
    chi_square(
        &m,
        LdpValue::Category(6),
        4,
        (g * pool) as usize,
        |r| match r {
            LdpReport::Olh { seed, value } => (seed * g + value) as usize,
            _ => unreachable!(),
        },
        |c| {
            let (seed, y) = (c as u32 / g, c as u32 % g);
            let hit = y == olh_hash(pool_key, seed, 6, g);
            (if hit { e / z } else { 1.0 / z }) / f64::from(pool)
        },
    );
}

#[test]
fn hadamard() {
    let (_, e) = e1();
    let m = cat(MechanismName::Hadamard, 8);
    let Params::Hadamard { k, .. } = *m.params() else { unreachable!() };
    chi_square(
        &m,
        LdpValue::Category(2),
        5,
        k as usize,
        |r| match r {
            LdpReport::Hadamard(j) => *j as usize,
            _ => unreachable!(),
        },
        |j| {
            let inside = (3 & j).count_ones() % 2 == 0;
            2.0 / f64::from(k) * if inside { e / (e + 1.0) } else { 1.0 / (e + 1.0) }
        },
    );
}

/// General-privacy HR with 2 blocks of 8 (d = 8, ε = 1): 16 outputs, value 5 is row 3
/// of block `hadamard_block(key, 2, 5)`.
#[test]
fn hadamard_blocks() {
    let (eps, e) = e1();
    let key = 0x5eed_b10c;
    let m =
        Mechanism::from_parts(eps, Params::HadamardBlocks { d: 8, blocks: 2, block_size: 8, key }).unwrap();
    let block = hadamard_block(key, 2, 5) as usize;
    let z = 3.0 + e;
    chi_square(
        &m,
        LdpValue::Category(5),
        8,
        16,
        |r| match r {
            LdpReport::Hadamard(o) => *o as usize,
            _ => unreachable!(),
        },
        |o| {
            let inside = o / 8 == block && (3 & (o % 8)).count_ones() % 2 == 0;
            2.0 / 8.0 * if inside { e / z } else { 1.0 / z }
        },
    );
}

#[test]
fn piecewise() {
    let (eps, e) = e1();
    let m = Selection::new(Domain::Numeric { min: 0, max: 10 }, eps, MechanismName::Piecewise)
        .map(|s| s.for_period("test", 0))
        .unwrap();
    let Params::Piecewise { step, window, outputs, .. } = *m.params() else { unreachable!() };
    let s = 7 * step;
    let z = window as f64 * e + (outputs - window) as f64;
    chi_square(
        &m,
        LdpValue::Numeric(7),
        6,
        outputs as usize,
        |r| match r {
            LdpReport::Piecewise(y) => *y as usize,
            _ => unreachable!(),
        },
        |y| if (s..s + window).contains(&(y as u64)) { e / z } else { 1.0 / z },
    );
}

#[test]
fn duchi() {
    let (eps, e) = e1();
    let m = Selection::new(Domain::Numeric { min: 0, max: 10 }, eps, MechanismName::Duchi)
        .map(|s| s.for_period("test", 0))
        .unwrap();
    let t = 2.0 * 3.0 / 10.0 - 1.0;
    let plus = 0.5 + t * (e - 1.0) / (2.0 * (e + 1.0));
    chi_square(
        &m,
        LdpValue::Numeric(3),
        7,
        2,
        |r| match r {
            LdpReport::Duchi(b) => usize::from(*b),
            _ => unreachable!(),
        },
        |c| if c == 1 { plus } else { 1.0 - plus },
    );
}

/// Power check: the same test rejects a GRR whose keep probability is off by 1%.
#[test]
fn detects_a_small_bias() {
    let (_, e) = e1();
    let m = cat(MechanismName::Grr, 8);
    let z = e + 7.0;
    let p_wrong = e / z * 1.01;
    let result = std::panic::catch_unwind(|| {
        chi_square(
            &m,
            LdpValue::Category(3),
            1,
            8,
            |r| match r {
                LdpReport::Grr(y) => *y as usize,
                _ => unreachable!(),
            },
            |y| if y == 3 { p_wrong } else { (1.0 - p_wrong) / 7.0 },
        );
    });
    assert!(result.is_err());
}
