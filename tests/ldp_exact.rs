//! Must show (issue 3): for d ≤ 8 and ε ∈ {1/2, 1, 2}, every mechanism's output
//! distribution, computed exactly, equals the one its paper defines.
//!
//! Method. Each encoder is a rejection loop over one *round* ([`Mechanism::round`]),
//! written against the [`Coins`] trait. We run the round under an enumerating `Coins`
//! that walks every combination of primitive outcomes, each weighted by its exact
//! probability as a rational function of w = e^{−ε/2}: uniform(n) → 1/n each,
//! Bernoulli(a/b) → a/b, Bernoulli(exp(−mε/2)) → w^m, Bernoulli(1/(1+e^{mε/2})) →
//! w^m/(1+w^m), the mixture coin Bernoulli((e^{mε/2} − 1)/(e^{mε/2} − 1 + D)) →
//! (1 − w^m)/(1 − w^m + D·w^m) (its own exactness: src/noise/mixture.rs, derivation and
//! frequency tests). The output law is P(y) = W(y)/Σ W (a rejection loop returns one round
//! conditioned on acceptance). We check W(y)·Z_paper = N_paper(y)·Σ W as polynomials
//! with integer coefficients: an identity in w, so it holds for every ε, in particular
//! the three required. The primitives themselves are exact by construction
//! (src/noise, with their own tests).

#![allow(clippy::unwrap_used, clippy::panic, clippy::cast_possible_truncation, reason = "tests")]

use confiance::Epsilon;
use confiance::ldp::{
    Domain, LdpReport, LdpValue, Mechanism, MechanismName, Params, Selection, hadamard_block, olh_hash,
};
use confiance::noise::{Coins, Mixture, Ratio};
use std::collections::BTreeMap;
use std::num::NonZeroU64;

/// A polynomial in w with integer coefficients, lowest degree first.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Poly(Vec<i128>);

impl Poly {
    fn c(x: i128) -> Self {
        Self(vec![x])
    }
    fn w_pow(m: usize) -> Self {
        let mut v = vec![0; m + 1];
        v[m] = 1;
        Self(v)
    }
    fn trim(mut self) -> Self {
        while self.0.len() > 1 && *self.0.last().unwrap() == 0 {
            self.0.pop();
        }
        self
    }
    fn add(&self, o: &Self) -> Self {
        let n = self.0.len().max(o.0.len());
        Self(
            (0..n)
                .map(|i| self.0.get(i).unwrap_or(&0).checked_add(*o.0.get(i).unwrap_or(&0)).unwrap())
                .collect(),
        )
        .trim()
    }
    fn sub(&self, o: &Self) -> Self {
        self.add(&o.mul(&Self::c(-1)))
    }
    fn mul(&self, o: &Self) -> Self {
        let mut v = vec![0i128; self.0.len() + o.0.len() - 1];
        for (i, a) in self.0.iter().enumerate() {
            for (j, b) in o.0.iter().enumerate() {
                v[i + j] = v[i + j].checked_add(a.checked_mul(*b).unwrap()).unwrap();
            }
        }
        Self(v).trim()
    }
    fn is_zero(&self) -> bool {
        self.0.iter().all(|x| *x == 0)
    }
}

/// A rational function num/den.
#[derive(Clone, Debug)]
struct Rf {
    num: Poly,
    den: Poly,
}

impl Rf {
    fn new(num: Poly, den: Poly) -> Self {
        Self { num, den }
    }
    fn one() -> Self {
        Self::new(Poly::c(1), Poly::c(1))
    }
    fn mul(&self, o: &Self) -> Self {
        Self::new(self.num.mul(&o.num), self.den.mul(&o.den))
    }
    fn add(&self, o: &Self) -> Self {
        if self.den == o.den {
            Self::new(self.num.add(&o.num), self.den.clone())
        } else {
            Self::new(self.num.mul(&o.den).add(&o.num.mul(&self.den)), self.den.mul(&o.den))
        }
    }
    fn same(&self, o: &Self) -> bool {
        self.num.mul(&o.den).sub(&o.num.mul(&self.den)).is_zero()
    }
    fn is_zero(&self) -> bool {
        self.num.is_zero()
    }
}

/// Enumerates every combination of primitive outcomes of one round.
struct Enumerate {
    half_eps: Ratio,
    script: Vec<usize>,
    branching: Vec<usize>,
    pos: usize,
    weight: Rf,
}

impl Enumerate {
    fn choose(&mut self, n: usize) -> usize {
        if self.pos == self.script.len() {
            self.script.push(0);
            self.branching.push(n);
        }
        let c = self.script[self.pos];
        self.pos += 1;
        c
    }
    /// γ as a multiple m of ε/2.
    fn power(&self, g: Ratio) -> usize {
        let (a, b) = (u128::from(g.numerator()), u128::from(g.denominator()));
        let (h, k) = (u128::from(self.half_eps.numerator()), u128::from(self.half_eps.denominator()));
        // γ = m·h/k  ⇔  a·k = m·b·h
        assert_eq!((a * k) % (b * h), 0, "γ is not a multiple of ε/2");
        ((a * k) / (b * h)) as usize
    }
    /// Advance the odometer; false when every path has been visited.
    fn next(&mut self) -> bool {
        self.script.truncate(self.pos);
        self.branching.truncate(self.pos);
        while let Some(last) = self.script.last_mut() {
            if *last + 1 < *self.branching.last().unwrap() {
                *last += 1;
                return true;
            }
            self.script.pop();
            self.branching.pop();
        }
        false
    }
}

impl Coins for Enumerate {
    fn uniform(&mut self, n: NonZeroU64) -> u64 {
        let c = self.choose(n.get() as usize);
        self.weight = self.weight.mul(&Rf::new(Poly::c(1), Poly::c(i128::from(n.get()))));
        c as u64
    }
    fn bernoulli(&mut self, num: u64, den: NonZeroU64) -> bool {
        let yes = self.choose(2) == 0;
        let top = if yes { num } else { den.get() - num };
        self.weight = self.weight.mul(&Rf::new(Poly::c(i128::from(top)), Poly::c(i128::from(den.get()))));
        yes
    }
    fn bernoulli_exp_neg(&mut self, gamma: Ratio) -> bool {
        let m = self.power(gamma);
        let yes = self.choose(2) == 0;
        let w = if yes { Poly::w_pow(m) } else { Poly::c(1).sub(&Poly::w_pow(m)) };
        self.weight = self.weight.mul(&Rf::new(w, Poly::c(1)));
        yes
    }
    fn bernoulli_logistic(&mut self, gamma: Ratio) -> bool {
        let m = self.power(gamma);
        let yes = self.choose(2) == 0;
        let den = Poly::c(1).add(&Poly::w_pow(m));
        let num = if yes { Poly::w_pow(m) } else { Poly::c(1) };
        self.weight = self.weight.mul(&Rf::new(num, den));
        yes
    }
    fn bernoulli_mixture(&mut self, mix: &Mixture) -> bool {
        let m = self.power(mix.gamma());
        let yes = self.choose(2) == 0;
        let wm = Poly::w_pow(m);
        let keep = Poly::c(1).sub(&wm);
        let den = keep.add(&wm.mul(&Poly::c(i128::from(mix.weight()))));
        let num = if yes { keep } else { wm.mul(&Poly::c(i128::from(mix.weight()))) };
        self.weight = self.weight.mul(&Rf::new(num, den));
        yes
    }
}

/// The exact output law of `m` on `value`: (accepted weight per output, total).
fn exact_law(m: &Mechanism, value: LdpValue) -> (BTreeMap<Vec<u8>, Rf>, Rf) {
    let eps = m.epsilon();
    let half_eps = Ratio::from(eps).half().unwrap();
    let mut e = Enumerate { half_eps, script: vec![], branching: vec![], pos: 0, weight: Rf::one() };
    let mut law: BTreeMap<Vec<u8>, Rf> = BTreeMap::new();
    let mut total: Option<Rf> = None;
    loop {
        e.pos = 0;
        e.weight = Rf::one();
        if let Some(report) = m.round(value, &mut e).unwrap() {
            let key = postcard::to_allocvec(&report).unwrap();
            let w = e.weight.clone();
            law.entry(key).and_modify(|x| *x = x.add(&w)).or_insert_with(|| w.clone());
            total = Some(match total {
                None => w,
                Some(t) => t.add(&w),
            });
        }
        if !e.next() {
            break;
        }
    }
    (law, total.unwrap())
}

fn eps_list() -> [Epsilon; 3] {
    [
        Epsilon::from_ratio(1, 2).unwrap(),
        Epsilon::from_ratio(1, 1).unwrap(),
        Epsilon::from_ratio(2, 1).unwrap(),
    ]
}

fn w2() -> Poly {
    Poly::w_pow(2)
}

/// Check the enumerated law against `paper(report) -> Rf` (zero where impossible), and
/// that every report the paper gives positive probability is reachable.
fn check(m: &Mechanism, value: LdpValue, support: &[LdpReport], paper: impl Fn(&LdpReport) -> Rf) {
    let (law, total) = exact_law(m, value);
    let mut seen = 0;
    for r in support {
        let key = postcard::to_allocvec(r).unwrap();
        let want = paper(r);
        match law.get(&key) {
            Some(w) => {
                // W(y)/total == want
                assert!(w.same(&total.mul(&want)), "{m:?} {value:?} {r:?}");
                seen += 1;
            }
            None => assert!(want.is_zero(), "{m:?} {value:?}: {r:?} unreachable"),
        }
    }
    assert_eq!(seen, law.len(), "{m:?}: the round produced reports outside the stated support");
}

fn frequency(name: MechanismName, d: u32, eps: Epsilon) -> Mechanism {
    Selection::new(Domain::Categorical { d }, eps, name).map(|s| s.for_period("test", 0)).unwrap()
}

#[test]
fn grr_is_wang_2017() {
    for eps in eps_list() {
        for d in 2..=8u32 {
            let m = frequency(MechanismName::Grr, d, eps);
            let z = Poly::c(1).add(&w2().mul(&Poly::c(i128::from(d) - 1))); // (e^ε + d − 1)·w²
            let support: Vec<_> = (0..d).map(LdpReport::Grr).collect();
            for v in 0..d {
                check(&m, LdpValue::Category(v), &support, |r| {
                    let LdpReport::Grr(y) = r else { unreachable!() };
                    // p = e^ε/(e^ε+d−1) = 1/z, q = 1/(e^ε+d−1) = w²/z
                    Rf::new(if *y == v { Poly::c(1) } else { w2() }, z.clone())
                });
            }
        }
    }
}

fn bit_vectors(d: u32) -> Vec<Vec<u8>> {
    (0u32..1 << d).map(|x| (0..d.div_ceil(8)).map(|i| (x >> (8 * i)) as u8).collect()).collect()
}

fn bit(bits: &[u8], i: u32) -> bool {
    bits[(i / 8) as usize] >> (i % 8) & 1 == 1
}

#[test]
fn oue_and_sue_are_wang_2017() {
    for eps in eps_list() {
        for d in 2..=8u32 {
            let oue = frequency(MechanismName::Oue, d, eps);
            let sue = frequency(MechanismName::Sue, d, eps);
            let vectors = bit_vectors(d);
            let oue_support: Vec<_> = vectors.iter().cloned().map(LdpReport::Oue).collect();
            let sue_support: Vec<_> = vectors.iter().cloned().map(LdpReport::Sue).collect();
            for v in 0..d {
                // OUE: P(1 at v) = 1/2; P(1 elsewhere) = q = 1/(e^ε+1) = w²/(1+w²).
                check(&oue, LdpValue::Category(v), &oue_support, |r| {
                    let LdpReport::Oue(b) = r else { unreachable!() };
                    (0..d).fold(Rf::one(), |acc, i| {
                        let f = if i == v {
                            Rf::new(Poly::c(1), Poly::c(2))
                        } else if bit(b, i) {
                            Rf::new(w2(), Poly::c(1).add(&w2()))
                        } else {
                            Rf::new(Poly::c(1), Poly::c(1).add(&w2()))
                        };
                        acc.mul(&f)
                    })
                });
                // SUE: keep each bit with p = e^{ε/2}/(e^{ε/2}+1) = 1/(1+w).
                check(&sue, LdpValue::Category(v), &sue_support, |r| {
                    let LdpReport::Sue(b) = r else { unreachable!() };
                    let w = Poly::w_pow(1);
                    (0..d).fold(Rf::one(), |acc, i| {
                        let kept = bit(b, i) == (i == v);
                        acc.mul(&Rf::new(if kept { Poly::c(1) } else { w.clone() }, Poly::c(1).add(&w)))
                    })
                });
            }
        }
    }
}

#[test]
fn olh_is_wang_2017_over_the_pool() {
    for eps in eps_list() {
        for d in [2u32, 5, 8] {
            let m = Mechanism::olh_with_pool(d, eps, 4, 0xfeed).unwrap();
            let Params::Olh { g, pool, pool_key, .. } = *m.params() else { unreachable!() };
            let z = Poly::c(1).add(&w2().mul(&Poly::c(i128::from(g) - 1)));
            let support: Vec<_> =
                (0..pool).flat_map(|s| (0..g).map(move |y| LdpReport::Olh { seed: s, value: y })).collect();
            for v in 0..d {
                check(&m, LdpValue::Category(v), &support, |r| {
                    let LdpReport::Olh { seed, value } = r else { unreachable!() };
                    // (1/pool) · (p if y = h_seed(v) else q), p = e^ε/(e^ε+g−1), q = 1/(e^ε+g−1).
                    let hit = *value == olh_hash(pool_key, *seed, v, g);
                    Rf::new(if hit { Poly::c(1) } else { w2() }, z.mul(&Poly::c(i128::from(pool))))
                });
            }
        }
    }
}

#[test]
fn hadamard_is_acharya_sun_zhang_2019() {
    for eps in eps_list() {
        for d in 2..=8u32 {
            let m = frequency(MechanismName::Hadamard, d, eps);
            let Params::Hadamard { k, .. } = *m.params() else { unreachable!() };
            let support: Vec<_> = (0..k).map(LdpReport::Hadamard).collect();
            for v in 0..d {
                check(&m, LdpValue::Category(v), &support, |r| {
                    let LdpReport::Hadamard(j) = r else { unreachable!() };
                    // C_v = {j : H[v+1][j] = +1}, |C_v| = k/2. P(j) = (2/k)·e^ε/(e^ε+1) inside,
                    // (2/k)·1/(e^ε+1) outside.
                    let inside = ((v + 1) & j).count_ones() % 2 == 0;
                    let den = Poly::c(i128::from(k)).mul(&Poly::c(1).add(&w2()));
                    Rf::new(if inside { Poly::c(2) } else { w2().mul(&Poly::c(2)) }, den)
                });
            }
        }
    }
}

/// General-privacy HR for every valid number of blocks B ∈ {1, 2, 4, 8} (as built by
/// hand with the smallest block size, under two permutation keys) and the B that
/// `Selection::new` picks; category v's block is `hadamard_block(key, B, v)`.
#[test]
fn hadamard_blocks_is_acharya_sun_zhang_2019_general() {
    for eps in eps_list() {
        for d in 2..=8u32 {
            let mut mechanisms: Vec<Mechanism> = [1u32, 2, 4, 8]
                .iter()
                .filter(|b| **b <= d)
                .flat_map(|&blocks| {
                    let block_size = (d.div_ceil(blocks) + 1).next_power_of_two();
                    [0, 0x5eed_b10c_u64].map(|key| {
                        Mechanism::from_parts(eps, Params::HadamardBlocks { d, blocks, block_size, key })
                            .unwrap()
                    })
                })
                .collect();
            mechanisms.push(frequency(MechanismName::HadamardBlocks, d, eps));
            for m in mechanisms {
                let Params::HadamardBlocks { blocks, block_size, key, .. } = *m.params() else {
                    unreachable!()
                };
                let outputs = blocks * block_size;
                let support: Vec<_> = (0..outputs).map(LdpReport::Hadamard).collect();
                // Z·w² = 1 + (2B − 1)w²; P(o) = 2e^ε/(bZ) on v's half of its block, 2/(bZ) elsewhere.
                let den = Poly::c(i128::from(block_size))
                    .mul(&Poly::c(1).add(&w2().mul(&Poly::c(2 * i128::from(blocks) - 1))));
                for v in 0..d {
                    let (block, row) = (hadamard_block(key, blocks, v), v / blocks + 1);
                    check(&m, LdpValue::Category(v), &support, |r| {
                        let LdpReport::Hadamard(o) = r else { unreachable!() };
                        let inside =
                            o / block_size == block && (row & (o % block_size)).count_ones() % 2 == 0;
                        Rf::new(if inside { Poly::c(2) } else { w2().mul(&Poly::c(2)) }, den.clone())
                    });
                }
            }
        }
    }
}

#[test]
fn piecewise_is_the_documented_discretisation() {
    for eps in eps_list() {
        // A small grid by hand, and the grid `select` builds for [0, 2].
        let small = Mechanism::from_parts(
            eps,
            Params::Piecewise { min: -2, max: 2, step: 3, window: 5, outputs: 17 },
        )
        .unwrap();
        let selected = Selection::new(Domain::Numeric { min: 0, max: 2 }, eps, MechanismName::Piecewise)
            .map(|s| s.for_period("test", 0))
            .unwrap();
        for m in [small, selected] {
            let Params::Piecewise { min, max, step, window, outputs } = *m.params() else { unreachable!() };
            let support: Vec<_> = (0..outputs).map(LdpReport::Piecewise).collect();
            let z = Poly::c(i128::from(window)).add(&w2().mul(&Poly::c(i128::from(outputs - window))));
            for x in min..=max {
                let s = x.abs_diff(min) * step;
                // P(y) = e^ε/Z inside [s, s+W), 1/Z outside, Z = W e^ε + (N − W).
                check(&m, LdpValue::Numeric(x), &support, |r| {
                    let LdpReport::Piecewise(y) = r else { unreachable!() };
                    let inside = (s..s + window).contains(y);
                    Rf::new(if inside { Poly::c(1) } else { w2() }, z.clone())
                });
            }
        }
    }
}

#[test]
fn duchi_is_duchi_jordan_wainwright_2018() {
    for eps in eps_list() {
        let (min, max) = (-3i64, 4i64);
        let m = Selection::new(Domain::Numeric { min, max }, eps, MechanismName::Duchi)
            .map(|s| s.for_period("test", 0))
            .unwrap();
        let r = i128::from(max - min);
        for x in min..=max {
            // t = 2(x−min)/R − 1; P(+B) = 1/2 + t(e^ε−1)/(2(e^ε+1))
            //   = [R(1+w²) + (2(x−min) − R)(1−w²)] / (2R(1+w²)).
            let tnum = 2 * i128::from(x - min) - r;
            let plus = Poly::c(r).mul(&Poly::c(1).add(&w2())).add(&Poly::c(tnum).mul(&Poly::c(1).sub(&w2())));
            let den = Poly::c(2 * r).mul(&Poly::c(1).add(&w2()));
            check(&m, LdpValue::Numeric(x), &[LdpReport::Duchi(true), LdpReport::Duchi(false)], |rep| {
                let LdpReport::Duchi(positive) = rep else { unreachable!() };
                if *positive {
                    Rf::new(plus.clone(), den.clone())
                } else {
                    Rf::new(den.sub(&plus), den.clone())
                }
            });
        }
    }
}

/// The check itself must be able to fail: a GRR with the wrong p is caught.
#[test]
fn a_wrong_law_is_detected() {
    let m = frequency(MechanismName::Grr, 4, Epsilon::from_ratio(1, 1).unwrap());
    let (law, total) = exact_law(&m, LdpValue::Category(0));
    let key = postcard::to_allocvec(&LdpReport::Grr(0)).unwrap();
    // Claim p = e^ε/(e^ε + d) instead of e^ε/(e^ε + d − 1).
    let wrong = Rf::new(Poly::c(1), Poly::c(1).add(&w2().mul(&Poly::c(4))));
    assert!(!law[&key].same(&total.mul(&wrong)));
}

/// Coins that answer every primitive with a fixed outcome and every 64-lane draw with the
/// next word of a script: checks where the unary encoders put each drawn bit.
struct Scripted {
    words: Vec<u64>,
    lanes: Vec<u32>,
}

impl Coins for Scripted {
    fn uniform(&mut self, _: NonZeroU64) -> u64 {
        0
    }
    fn bernoulli(&mut self, _: u64, _: NonZeroU64) -> bool {
        true
    }
    fn bernoulli_exp_neg(&mut self, _: Ratio) -> bool {
        true
    }
    fn bernoulli_logistic(&mut self, _: Ratio) -> bool {
        unreachable!("the unary encoders draw their noise 64 lanes at a time")
    }
    fn bernoulli_mixture(&mut self, _: &Mixture) -> bool {
        true
    }
    fn bernoulli_logistic_lanes(&mut self, _: Ratio, lanes: u32) -> u64 {
        self.lanes.push(lanes);
        let w = self.words.remove(0);
        if lanes == 64 { w } else { w & ((1 << lanes) - 1) }
    }
}

/// Beyond d = 8 the law is not enumerable, but the encoders only arrange independent
/// lanes (each exact by `noise::bernoulli_logistic_lanes`' own tests): for d across word
/// boundaries and the own position in every word, the report is exactly the drawn noise
/// words in little-endian byte order, ⌈d/8⌉ bytes, with only the own bit replaced (OUE:
/// the fair coin, here 1; SUE: the noise bit inverted), and the same draws for every value.
#[test]
fn unary_reports_are_the_drawn_lanes() {
    let eps = Epsilon::from_ratio(1, 1).unwrap();
    for d in [9u32, 63, 64, 65, 127, 130, 1024] {
        let words: Vec<u64> = (0..u64::from(d).div_ceil(64))
            .map(|i| 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i + 1).rotate_left(i as u32))
            .collect();
        let noise_bit = |i: u32| words[(i / 64) as usize] >> (i % 64) & 1 == 1;
        for name in [MechanismName::Oue, MechanismName::Sue] {
            let m = frequency(name, d, eps);
            let mut draws = None;
            for x in [0, 1, d / 2, 63.min(d - 1), 64.min(d - 1), d - 1] {
                let mut coins = Scripted { words: words.clone(), lanes: vec![] };
                let report = m.round(LdpValue::Category(x), &mut coins).unwrap().unwrap();
                let (LdpReport::Oue(bits) | LdpReport::Sue(bits)) = &report else { unreachable!() };
                assert_eq!(bits.len(), d.div_ceil(8) as usize, "{name:?} d={d}");
                for i in 0..d.div_ceil(8) * 8 {
                    let want = if i >= d {
                        false
                    } else if i != x {
                        noise_bit(i)
                    } else if name == MechanismName::Oue {
                        true
                    } else {
                        !noise_bit(i)
                    };
                    assert_eq!(bit(bits, i), want, "{name:?} d={d} x={x} bit {i}");
                }
                assert!(coins.words.is_empty());
                assert_eq!(
                    *draws.get_or_insert_with(|| coins.lanes.clone()),
                    coins.lanes,
                    "draws depend on x"
                );
            }
        }
    }
}
