//! The counts representation: canonical bytes, version-1 blobs, in-place undo, and
//! decoders that read sparse and dense counts alike.

use super::*;
use confiance::Epsilon;
use confiance::hazmat::{ChaCha20Rng, SeedableRng};
use confiance::ldp::Selection;
use rand_core::Rng as _;

/// OLH at ε = 2 with a 32,768-entry pool: 262,144 cells, the fleet's largest partitions.
fn big_olh() -> Mechanism {
    Mechanism::olh_with_pool(64, Epsilon::from_ratio(2, 1).unwrap(), 32_768, 9).unwrap()
}

/// `n` uniform OLH reports (decoding cost and layout do not depend on their contents).
fn uniform(m: &Mechanism, n: usize, seed: u64) -> Vec<LdpReport> {
    let Params::Olh { g, pool, .. } = *m.params() else { unreachable!() };
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let x = rng.next_u64();
            LdpReport::Olh {
                seed: u32::try_from(x % u64::from(pool)).unwrap(),
                value: u32::try_from((x >> 32) % u64::from(g)).unwrap(),
            }
        })
        .collect()
}

fn filled(m: &Mechanism, rs: &[LdpReport]) -> Accumulator {
    let mut a = Accumulator::new(m);
    for r in rs {
        a.add(r).unwrap();
    }
    a
}

#[test]
fn few_reports_cost_few_bytes_and_shards_give_equal_bytes() {
    let m = big_olh();
    // 300 reports: sparse, a few bytes per report instead of ~262 KB of zeros.
    // 100,000 reports: past a quarter of the cells non-zero, so dense.
    for n in [300, 100_000] {
        let rs = uniform(&m, n, 1);
        let whole = filled(&m, &rs);
        let sparse = matches!(&whole.state, State::Counts(Counts::Sparse { .. }));
        assert_eq!(sparse, n == 300, "n = {n}");
        if sparse {
            assert!(whole.to_bytes().len() < 8 * n, "{} bytes", whole.to_bytes().len());
        }
        for cut in [0, 1, n / 3, n - 1] {
            let (mut a, b) = (filled(&m, &rs[..cut]), filled(&m, &rs[cut..]));
            let mut ba = b.clone();
            ba.merge(&a).unwrap();
            a.merge(&b).unwrap();
            assert_eq!(a.to_bytes(), whole.to_bytes(), "n = {n}, cut = {cut}");
            assert_eq!(ba.to_bytes(), whole.to_bytes(), "n = {n}, cut = {cut}, swapped");
            // Undo is exact, back across the sparse/dense switch too.
            ba.unmerge(&b).unwrap();
            assert_eq!(ba, filled(&m, &rs[..cut]));
        }
    }
}

/// Format version 1, as it was written: dense counts.
#[derive(Serialize)]
struct V1<'a> {
    version: u8,
    mechanism: &'a Mechanism,
    n: u64,
    state: V1State,
}

#[derive(Serialize)]
enum V1State {
    Counts(Vec<u64>),
    #[allow(dead_code, reason = "layout only: the variant index must match version 1")]
    Moments {
        sum: u128,
        sum_sq: u128,
    },
    Ones(u64),
}

#[test]
fn version_1_blobs_still_decode() {
    let m = big_olh();
    for n in [0, 50, 100_000] {
        let acc = filled(&m, &uniform(&m, n, 2));
        let State::Counts(c) = &acc.state else { unreachable!() };
        let old = V1 { version: 1, mechanism: &m, n: acc.n, state: V1State::Counts(c.to_dense()) };
        let decoded = Accumulator::from_bytes(&postcard::to_allocvec(&old).unwrap()).unwrap();
        assert_eq!(decoded, acc, "n = {n}");
        assert_eq!(decoded.to_bytes().first(), Some(&FORMAT_VERSION));
    }
    let duchi = Selection::new(
        confiance::ldp::Domain::Numeric { min: 0, max: 9 },
        Epsilon::from_ratio(1, 1).unwrap(),
        confiance::ldp::MechanismName::Duchi,
    )
    .map(|s| s.for_period("test", 0))
    .unwrap();
    let mut acc = Accumulator::new(&duchi);
    acc.add(&LdpReport::Duchi(true)).unwrap();
    let old = V1 { version: 1, mechanism: &duchi, n: 1, state: V1State::Ones(1) };
    assert_eq!(Accumulator::from_bytes(&postcard::to_allocvec(&old).unwrap()).unwrap(), acc);
    // A version-1 blob whose counts disagree with n is refused as before.
    let bad = V1 { version: 1, mechanism: &duchi, n: 1, state: V1State::Ones(2) };
    assert_eq!(Accumulator::from_bytes(&postcard::to_allocvec(&bad).unwrap()), Err(EstimateError::Corrupt));
}

/// [`Params`] as versions 1 and 2 wrote them: general-privacy HR without a key.
#[derive(Serialize)]
#[allow(dead_code, reason = "layout only: the variant indices must match version 2")]
enum ParamsV2 {
    Grr { d: u32 },
    Oue { d: u32 },
    Sue { d: u32 },
    Olh { d: u32, g: u32, pool: u32, pool_key: u64 },
    Hadamard { d: u32, k: u32 },
    Piecewise { min: i64, max: i64, step: u64, window: u64, outputs: u64 },
    Duchi { min: i64, max: i64 },
    HadamardBlocks { d: u32, blocks: u32, block_size: u32 },
}

/// Format version 2, as it was written.
#[derive(Serialize)]
struct V2<'a> {
    version: u8,
    mechanism: (Epsilon, ParamsV2),
    n: u64,
    state: &'a State,
}

/// Version-2 blobs decode into version 3, except general-privacy HR: its reports used
/// the unkeyed layout (category v in block v mod B), which no decoder reads any more.
#[test]
fn version_2_blobs_decode_except_unkeyed_hadamard_blocks() {
    let e = Epsilon::from_ratio(1, 1).unwrap();
    let grr = Mechanism::from_parts(e, Params::Grr { d: 6 }).unwrap();
    let acc = filled(&grr, &(0..500u32).map(|i| LdpReport::Grr(i % 6)).collect::<Vec<_>>());
    let old = V2 { version: 2, mechanism: (e, ParamsV2::Grr { d: 6 }), n: acc.n, state: &acc.state };
    let decoded = Accumulator::from_bytes(&postcard::to_allocvec(&old).unwrap()).unwrap();
    assert_eq!(decoded, acc);
    assert_eq!(decoded.to_bytes().first(), Some(&3));
    let hr =
        Mechanism::from_parts(e, Params::HadamardBlocks { d: 6, blocks: 2, block_size: 4, key: 0 }).unwrap();
    let acc = filled(&hr, &(0..500u32).map(|i| LdpReport::Hadamard(i % 8)).collect::<Vec<_>>());
    let old = V2 {
        version: 2,
        mechanism: (e, ParamsV2::HadamardBlocks { d: 6, blocks: 2, block_size: 4 }),
        n: acc.n,
        state: &acc.state,
    };
    assert_eq!(Accumulator::from_bytes(&postcard::to_allocvec(&old).unwrap()), Err(EstimateError::Corrupt));
}

#[test]
fn non_canonical_version_3_blobs_are_refused() {
    let m = big_olh();
    let mut acc = filled(&m, &uniform(&m, 10, 3));
    let State::Counts(c) = &acc.state else { unreachable!() };
    acc.state = State::Counts(Counts::Dense(c.to_dense()));
    assert_eq!(Accumulator::from_bytes(&acc.to_bytes()), Err(EstimateError::Corrupt));
}

#[test]
fn decoders_read_sparse_and_dense_alike() {
    for name in [
        confiance::ldp::MechanismName::Olh,
        confiance::ldp::MechanismName::Hadamard,
        confiance::ldp::MechanismName::Grr,
    ] {
        let m = Selection::new(
            confiance::ldp::Domain::Categorical { d: 300 },
            Epsilon::from_ratio(1, 1).unwrap(),
            name,
        )
        .map(|s| s.for_period("test", 0))
        .unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let mut acc = Accumulator::new(&m);
        for i in 0..20u32 {
            acc.add(&m.encode(confiance::ldp::LdpValue::Category(i % 7), &mut rng).unwrap()).unwrap();
        }
        let State::Counts(c) = &acc.state else { unreachable!() };
        assert!(matches!(c, Counts::Sparse { .. }), "{name:?}");
        let mut dense = acc.clone();
        dense.state = State::Counts(Counts::Dense(c.to_dense()));
        assert_eq!(acc.support_counts(), dense.support_counts(), "{name:?}");
        assert_eq!(acc.estimate(), dense.estimate(), "{name:?}");
    }
}
