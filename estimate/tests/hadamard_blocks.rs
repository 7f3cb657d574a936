//! General-privacy HR's keyed category-to-block permutation (issue 22): when the heavy
//! categories align with the block count (0, 32, 64, … at ε = 4, B = 32), the old rule
//! `block = v mod B` put them all in one block, and their own MSE was 6.4× that of
//! the same categories elsewhere. With the keyed rotation (fresh each period) no
//! alignment is special: their MSE is that of the average placement.
//!
//! Population: d = 1024, n = 20 000, ε = 4 (B = 32 blocks of 64): 8 heavy categories
//! with 10% of the users each, the other 20% spread evenly. Placements: aligned
//! (0, 32, …, 224) and the average case (8 categories at fixed pseudo-random positions,
//! not a multiple of B apart). 150 repetitions each, a fresh period (key) per
//! repetition. The MSE of each placement is the mean over 150 × 8 squared errors; their
//! relative standard deviation is about √(2/1200) ≈ 4%, so the ratio's is under 6% and
//! 1.3 is more than 5 of them above 1. Measured: 0.950. With `v mod B` (checked by
//! restoring it in `ldp::hadamard_block`) the ratio is 6.39 (the heavy categories'
//! block holds 80% of the users instead of about 13%) and the test fails.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use confiance::Epsilon;
use confiance::hazmat::{ChaCha20Rng, SeedableRng};
use confiance::ldp::{Domain, LdpValue, MechanismName, Params, Selection};
use confiance_estimate::Accumulator;

const D: u32 = 1024;
const N: u32 = 20_000;
const REPS: u64 = 150;

/// The population: `heavy` categories hold 10% of the users each, the rest share 20%.
fn population(heavy: &[u32]) -> Vec<u32> {
    let mut values = Vec::with_capacity(N as usize);
    for h in heavy {
        values.extend(std::iter::repeat_n(*h, (N / 10) as usize));
    }
    let light: Vec<u32> = (0..D).filter(|v| !heavy.contains(v)).collect();
    let mut i = 0;
    while values.len() < N as usize {
        values.push(light[i % light.len()]);
        i += 1;
    }
    values
}

/// Mean squared error of the heavy categories' frequency estimates over the repetitions.
fn heavy_mse(sel: &Selection, heavy: &[u32], seed: u64) -> f64 {
    let values = population(heavy);
    let truth = |v: u32| values.iter().filter(|x| **x == v).count() as f64 / f64::from(N);
    let truths: Vec<f64> = heavy.iter().map(|h| truth(*h)).collect();
    let run = |rep: u64| {
        let m = sel.for_period("app.screen", rep * 3600);
        let mut acc = Accumulator::new(&m);
        let mut rng = ChaCha20Rng::seed_from_u64(seed + rep);
        for v in &values {
            acc.add(&m.encode(LdpValue::Category(*v), &mut rng).unwrap()).unwrap();
        }
        let est = acc.estimate();
        heavy.iter().zip(&truths).map(|(h, t)| (est.values[*h as usize].value - t).powi(2)).sum::<f64>()
    };
    let total: f64 = std::thread::scope(|s| {
        let a = s.spawn(|| (0..REPS).filter(|r| r % 2 == 0).map(run).sum::<f64>());
        let b = s.spawn(|| (0..REPS).filter(|r| r % 2 == 1).map(run).sum::<f64>());
        a.join().unwrap() + b.join().unwrap()
    });
    total / (REPS as f64 * heavy.len() as f64)
}

#[test]
fn aligned_heavy_categories_are_not_crowded_into_one_block() {
    let sel = Selection::new(
        Domain::Categorical { d: D },
        Epsilon::from_ratio(4, 1).unwrap(),
        MechanismName::HadamardBlocks,
    )
    .unwrap();
    assert_eq!(*sel.params(), Params::HadamardBlocks { d: D, blocks: 32, block_size: 64, key: 0 });
    let aligned: Vec<u32> = (0..8).map(|i| 32 * i).collect();
    let spread = [7u32, 101, 230, 389, 511, 642, 777, 1000];
    let mse_aligned = heavy_mse(&sel, &aligned, 0xa1_0000);
    let mse_spread = heavy_mse(&sel, &spread, 0xb2_0000);
    let ratio = mse_aligned / mse_spread;
    println!("MSE aligned {mse_aligned:.3e}, spread {mse_spread:.3e}, ratio {ratio:.3}");
    assert!(
        ratio < 1.3 && ratio > 1.0 / 1.3,
        "aligned {mse_aligned:.3e} vs spread {mse_spread:.3e}: {ratio:.3}"
    );
}
