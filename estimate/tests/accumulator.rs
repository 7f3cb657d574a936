//! Accumulator laws: validation leaves state unchanged, merge is associative and
//! commutative, storage round-trips and rejects corrupt bytes, fast decoders agree with
//! the naive ones.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use confiance::Epsilon;
use confiance::hazmat::{ChaCha20Rng, SeedableRng};
use confiance::ldp::{
    Domain, LdpReport, LdpValue, Mechanism, MechanismName, Params, Selection, hadamard_block, olh_hash,
};
use confiance_estimate::{Accumulator, EstimateError};
use proptest::prelude::*;

fn eps() -> Epsilon {
    Epsilon::from_ratio(1, 1).unwrap()
}

fn all_mechanisms() -> Vec<Mechanism> {
    let mut v: Vec<Mechanism> = [
        MechanismName::Grr,
        MechanismName::Oue,
        MechanismName::Sue,
        MechanismName::Olh,
        MechanismName::Hadamard,
    ]
    .iter()
    .map(|n| {
        Selection::new(Domain::Categorical { d: 11 }, eps(), *n).map(|s| s.for_period("test", 0)).unwrap()
    })
    .collect();
    v.push(
        Mechanism::from_parts(eps(), Params::HadamardBlocks { d: 11, blocks: 2, block_size: 8, key: 3 })
            .unwrap(),
    );
    for n in [MechanismName::Piecewise, MechanismName::Duchi] {
        v.push(
            Selection::new(Domain::Numeric { min: -5, max: 20 }, eps(), n)
                .map(|s| s.for_period("test", 0))
                .unwrap(),
        );
    }
    v
}

fn value_for(m: &Mechanism, i: u64) -> LdpValue {
    match m.domain() {
        Domain::Categorical { d } => LdpValue::Category((i % u64::from(d)) as u32),
        Domain::Numeric { min, max } => LdpValue::Numeric(min + (i % (max - min + 1) as u64) as i64),
    }
}

fn reports(m: &Mechanism, n: u64, seed: u64) -> Vec<LdpReport> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..n).map(|i| m.encode(value_for(m, i * 7 + seed), &mut rng).unwrap()).collect()
}

fn filled(m: &Mechanism, rs: &[LdpReport]) -> Accumulator {
    let mut a = Accumulator::new(m);
    for r in rs {
        a.add(r).unwrap();
    }
    a
}

#[test]
fn malformed_reports_are_typed_errors_and_change_nothing() {
    let ms = all_mechanisms();
    for m in &ms {
        let acc = filled(m, &reports(m, 50, 1));
        let mut bad: Vec<(LdpReport, EstimateError)> = vec![];
        // Another mechanism's report.
        let other = if matches!(m.params(), Params::Duchi { .. }) {
            LdpReport::Grr(0)
        } else {
            LdpReport::Duchi(true)
        };
        bad.push((other, EstimateError::WrongMechanism));
        match *m.params() {
            Params::Grr { d } => bad.push((LdpReport::Grr(d), EstimateError::OutOfRange)),
            Params::Hadamard { k, .. } => bad.push((LdpReport::Hadamard(k), EstimateError::OutOfRange)),
            Params::HadamardBlocks { blocks, block_size, .. } => {
                bad.push((LdpReport::Hadamard(blocks * block_size), EstimateError::OutOfRange))
            }
            Params::Olh { g, pool, .. } => {
                bad.push((LdpReport::Olh { seed: pool, value: 0 }, EstimateError::OutOfRange));
                bad.push((LdpReport::Olh { seed: 0, value: g }, EstimateError::OutOfRange));
            }
            Params::Oue { .. } => {
                bad.push((LdpReport::Oue(vec![0; 1]), EstimateError::BadLength));
                bad.push((LdpReport::Oue(vec![0; 3]), EstimateError::BadLength));
                bad.push((LdpReport::Oue(vec![0, 0b1000_0000]), EstimateError::BadLength)); // padding bit set
            }
            Params::Sue { .. } => bad.push((LdpReport::Sue(vec![0, 0b0000_1000]), EstimateError::BadLength)),
            Params::Piecewise { outputs, .. } => {
                bad.push((LdpReport::Piecewise(outputs), EstimateError::OutOfRange))
            }
            _ => {}
        }
        for (r, e) in bad {
            let mut a = acc.clone();
            assert_eq!(a.add(&r), Err(e.clone()), "{:?} {r:?}", m.name());
            assert_eq!(a, acc, "{:?}: state changed by a rejected report", m.name());
        }
    }
}

#[test]
fn merge_refuses_other_configurations() {
    let ms = all_mechanisms();
    for (i, a) in ms.iter().enumerate() {
        for (j, b) in ms.iter().enumerate() {
            let mut x = filled(a, &reports(a, 5, 2));
            let before = x.clone();
            let y = Accumulator::new(b);
            if i == j {
                x.merge(&y).unwrap();
                assert_eq!(x, before, "merging an empty accumulator is the identity");
            } else {
                assert_eq!(x.merge(&y), Err(EstimateError::MismatchedConfig));
                assert_eq!(x, before);
            }
        }
    }
    // Same mechanism, different pool key: a typed error of its own.
    let a = Mechanism::olh_with_pool(8, eps(), 16, 1).unwrap();
    let b = Mechanism::olh_with_pool(8, eps(), 16, 2).unwrap();
    assert_eq!(Accumulator::new(&a).merge(&Accumulator::new(&b)), Err(EstimateError::MismatchedKey));
}

/// Every public parameter a decoder shares with its encoder is part of the accumulator's
/// identity: an accumulator refuses to merge (or unmerge) one that differs in any of them,
/// with `MismatchedKey` when only the key differs and `MismatchedConfig` otherwise, and
/// changes nothing. Reports that cannot come from its parameters are refused too.
#[test]
fn every_parameter_mismatch_is_refused() {
    let e1 = Epsilon::from_ratio(1, 1).unwrap();
    let e2 = Epsilon::from_ratio(2, 1).unwrap();
    let olh =
        |eps, d, g, pool, pool_key| Mechanism::from_parts(eps, Params::Olh { d, g, pool, pool_key }).unwrap();
    let hr = |eps, d, blocks, block_size, key| {
        Mechanism::from_parts(eps, Params::HadamardBlocks { d, blocks, block_size, key }).unwrap()
    };
    let base_olh = olh(e2, 8, 8, 16, 1);
    let base_hr = hr(e2, 16, 4, 8, 1);
    let cases = [
        (base_olh, olh(e1, 8, 8, 16, 1), EstimateError::MismatchedConfig), // ε
        (base_olh, olh(e2, 9, 8, 16, 1), EstimateError::MismatchedConfig), // d
        (base_olh, olh(e2, 8, 4, 16, 1), EstimateError::MismatchedConfig), // g
        (base_olh, olh(e2, 8, 8, 32, 1), EstimateError::MismatchedConfig), // pool
        (base_olh, olh(e2, 8, 8, 16, 2), EstimateError::MismatchedKey),    // pool key
        (base_hr, hr(e1, 16, 4, 8, 1), EstimateError::MismatchedConfig),   // ε
        (base_hr, hr(e2, 16, 2, 16, 1), EstimateError::MismatchedConfig),  // blocks
        (base_hr, hr(e2, 16, 4, 16, 1), EstimateError::MismatchedConfig),  // block size
        (base_hr, hr(e2, 16, 4, 8, 2), EstimateError::MismatchedKey),      // permutation key
        (base_hr, base_olh, EstimateError::MismatchedConfig),              // mechanism
    ];
    for (a, b, want) in cases {
        let mut x = filled(&a, &reports(&a, 50, 3));
        let y = filled(&b, &reports(&b, 20, 4));
        let before = x.clone();
        assert_eq!(x.merge(&y), Err(want.clone()), "{a:?} vs {b:?}");
        assert_eq!(x.unmerge(&y), Err(want), "{a:?} vs {b:?}");
        assert_eq!(x, before);
    }
    // The period's selection: the same metric and period agree, any other differs by key.
    let s = Selection::new(
        Domain::Categorical { d: 64 },
        Epsilon::from_ratio(4, 1).unwrap(),
        MechanismName::HadamardBlocks,
    )
    .unwrap();
    let mut x = Accumulator::new(&s.for_period("app.screen", 0));
    x.merge(&Accumulator::new(&s.for_period("app.screen", 0))).unwrap();
    for other in [s.for_period("app.screen", 3600), s.for_period("app.screens", 0)] {
        assert_eq!(x.merge(&Accumulator::new(&other)), Err(EstimateError::MismatchedKey));
    }
    // Reports outside the parameters (another g, pool or output count) are refused.
    let mut x = Accumulator::new(&base_olh);
    assert_eq!(x.add(&LdpReport::Olh { seed: 16, value: 0 }), Err(EstimateError::OutOfRange));
    assert_eq!(x.add(&LdpReport::Olh { seed: 0, value: 8 }), Err(EstimateError::OutOfRange));
    let mut x = Accumulator::new(&base_hr);
    assert_eq!(x.add(&LdpReport::Hadamard(32)), Err(EstimateError::OutOfRange));
    assert_eq!(x.add(&LdpReport::Grr(0)), Err(EstimateError::WrongMechanism));
    assert_eq!(x.count(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn merge_is_associative_and_commutative(which in 0usize..7, n in 0u64..120, cut1 in 0u64..120, cut2 in 0u64..120, seed in any::<u64>()) {
        let m = all_mechanisms()[which];
        let rs = reports(&m, n, seed);
        let (c1, c2) = (cut1.min(n) as usize, cut2.min(n) as usize);
        let (lo, hi) = (c1.min(c2), c1.max(c2));
        let (a, b, c) = (filled(&m, &rs[..lo]), filled(&m, &rs[lo..hi]), filled(&m, &rs[hi..]));
        let whole = filled(&m, &rs);
        let mut left = a.clone();
        left.merge(&b).unwrap();
        left.merge(&c).unwrap();
        let mut bc = b.clone();
        bc.merge(&c).unwrap();
        let mut right = a.clone();
        right.merge(&bc).unwrap();
        let mut swapped = c.clone();
        swapped.merge(&b).unwrap();
        swapped.merge(&a).unwrap();
        prop_assert_eq!(&left, &whole);
        prop_assert_eq!(&right, &whole);
        prop_assert_eq!(&swapped, &whole);
        prop_assert_eq!(whole.count(), n);
    }

    #[test]
    fn storage_round_trips(which in 0usize..7, n in 0u64..60, seed in any::<u64>()) {
        let m = all_mechanisms()[which];
        let a = filled(&m, &reports(&m, n, seed));
        let bytes = a.to_bytes();
        prop_assert_eq!(Accumulator::from_bytes(&bytes).unwrap(), a.clone());
        // Truncation and trailing bytes are refused.
        prop_assert_eq!(Accumulator::from_bytes(&bytes[..bytes.len() - 1]), Err(EstimateError::Corrupt));
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert_eq!(Accumulator::from_bytes(&longer), Err(EstimateError::Corrupt));
    }
}

#[test]
fn inconsistent_stored_state_is_refused() {
    // A GRR accumulator whose count disagrees with its cells: bump n (the varint right
    // after the mechanism) by re-encoding a forged struct with the same layout.
    let m = Selection::new(Domain::Categorical { d: 4 }, eps(), MechanismName::Grr)
        .map(|s| s.for_period("test", 0))
        .unwrap();
    let a = filled(&m, &reports(&m, 10, 3));
    let bytes = a.to_bytes();
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Forged {
        version: u8,
        mechanism: Mechanism,
        n: u64,
        state: ForgedState,
    }
    #[derive(serde::Serialize, serde::Deserialize)]
    enum ForgedState {
        Counts(Vec<u64>),
    }
    let mut f: Forged = postcard::from_bytes(&bytes).unwrap();
    f.n += 1;
    assert_eq!(Accumulator::from_bytes(&postcard::to_allocvec(&f).unwrap()), Err(EstimateError::Corrupt));
    f.n -= 1;
    f.state = ForgedState::Counts(vec![0; 5]);
    assert_eq!(Accumulator::from_bytes(&postcard::to_allocvec(&f).unwrap()), Err(EstimateError::Corrupt));
    f.version = 9;
    assert_eq!(Accumulator::from_bytes(&postcard::to_allocvec(&f).unwrap()), Err(EstimateError::Corrupt));
    // A huge declared vector length without the bytes behind it does not allocate it.
    let mut huge = postcard::to_allocvec(&(1u8, m, 0u64)).unwrap();
    huge.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert_eq!(Accumulator::from_bytes(&huge), Err(EstimateError::Corrupt));
    assert_eq!(
        Accumulator::from_bytes(&vec![0u8; confiance_estimate::MAX_STORED_BYTES + 1]),
        Err(EstimateError::Corrupt)
    );
}

#[test]
fn fast_decoders_match_naive_decoding() {
    let d = 37u32;
    // Hadamard: support of v = reports whose column has H[v+1][j] = +1.
    let m = Selection::new(Domain::Categorical { d }, eps(), MechanismName::Hadamard)
        .map(|s| s.for_period("test", 0))
        .unwrap();
    let rs = reports(&m, 3000, 4);
    let fast = filled(&m, &rs).support_counts().unwrap();
    for v in 0..d {
        let naive = rs
            .iter()
            .filter(|r| matches!(r, LdpReport::Hadamard(j) if ((v + 1) & j).count_ones() % 2 == 0))
            .count();
        assert_eq!(fast[v as usize], naive as f64, "HR v={v}");
    }
    // OLH: support of v = reports whose value equals h_seed(v), O(n·d) naively.
    let m = Mechanism::olh_with_pool(d, eps(), 64, 77).unwrap();
    let Params::Olh { g, pool_key, .. } = *m.params() else { unreachable!() };
    let rs = reports(&m, 3000, 5);
    let fast = filled(&m, &rs).support_counts().unwrap();
    for v in 0..d {
        let naive = rs
            .iter()
            .filter(
                |r| matches!(r, LdpReport::Olh { seed, value } if *value == olh_hash(pool_key, *seed, v, g)),
            )
            .count();
        assert_eq!(fast[v as usize], naive as f64, "OLH v={v}");
    }
    // General-privacy HR, 4 blocks: support of v = reports in block
    // hadamard_block(key, 4, v) whose column has H[v/4 + 1][column] = +1.
    let key = 0xb10c_5eed;
    let m =
        Mechanism::from_parts(eps(), Params::HadamardBlocks { d, blocks: 4, block_size: 16, key }).unwrap();
    let rs = reports(&m, 3000, 6);
    let fast = filled(&m, &rs).support_counts().unwrap();
    for v in 0..d {
        let (block, row) = (hadamard_block(key, 4, v), v / 4 + 1);
        let naive = rs
            .iter()
            .filter(|r| {
                matches!(r, LdpReport::Hadamard(o) if o / 16 == block && (row & (o % 16)).count_ones() % 2 == 0)
            })
            .count();
        assert_eq!(fast[v as usize], naive as f64, "HR blocks v={v}");
    }
}

#[test]
fn empty_and_projected_estimates() {
    let m = Selection::new(Domain::Categorical { d: 4 }, eps(), MechanismName::Grr)
        .map(|s| s.for_period("test", 0))
        .unwrap();
    let e = Accumulator::new(&m).estimate();
    assert_eq!(e.n, 0);
    assert!(e.values.iter().all(|p| p.variance.is_infinite()));
    let acc = filled(&m, &reports(&m, 2000, 6));
    let est = acc.estimate();
    let p = est.projected().unwrap();
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9 && p.iter().all(|x| *x >= 0.0));
    let num = Selection::new(Domain::Numeric { min: 0, max: 9 }, eps(), MechanismName::Duchi)
        .map(|s| s.for_period("test", 0))
        .unwrap();
    assert!(filled(&num, &reports(&num, 10, 7)).estimate().projected().is_none());
}
