//! Rust side of the peer benchmark. Usage:
//!   confiance-peers freq <grr|oue|olh|hadamard|hadamard_blocks|auto> <d> <eps> <n> <seed>
//!     → one JSON line: mse, encode_s, decode_s (same Zipf data as peers.py), the
//!       theoretical MSE on these counts (theory_mse) and the mechanism's parameters.
//!       `seed` seeds the encoder's ChaCha20 and, for OLH, names the seed pool
//!       (`pool_key = seed`), so repetitions draw fresh public hash functions as
//!       pure-LDP's FastLH does with its seeded `np.random`.
//!   confiance-peers encode <mech> <d> <eps> <seconds> <seed>
//!     → one JSON line: ns per report, encoding values (i·7919) mod d for at least
//!       `seconds` (and at least 50 reports) with a ChaCha20 seeded by `seed`
//!   confiance-peers samplers <count>
//!     → JSON lines: ns per discrete Laplace / Gaussian sample, ours and OpenDP's

use confiance::Epsilon;
use confiance::hazmat::{ChaCha20Rng, SeedableRng};
use confiance::ldp::{Domain, LdpValue, Mechanism, MechanismName, Selection, Params};
use confiance::noise::{Ratio, discrete_gaussian, discrete_laplace};
use confiance_aggregator::estimate::Accumulator;
use confiance_aggregator::estimate::theory::{
    count_variance, hadamard_blocks_count_variance, olh_count_variances, olh_heavy_set,
};
use std::hint::black_box;
use std::time::Instant;

/// Zipf(1.1) counts over d values summing to n: floor(n·f_v), remainder to value 0.
/// peers.py computes the same counts.
fn zipf_counts(d: usize, n: usize) -> Vec<usize> {
    let w: Vec<f64> = (1..=d).map(|i| (i as f64).powf(-1.1)).collect();
    let total: f64 = w.iter().sum();
    let mut c: Vec<usize> = w.iter().map(|x| (x / total * n as f64).floor() as usize).collect();
    let short = n - c.iter().sum::<usize>();
    c[0] += short;
    c
}

fn mechanism_name(s: &str) -> MechanismName {
    match s {
        "grr" => MechanismName::Grr,
        "oue" => MechanismName::Oue,
        "sue" => MechanismName::Sue,
        "olh" => MechanismName::Olh,
        "hadamard" => MechanismName::Hadamard,
        "hadamard_blocks" => MechanismName::HadamardBlocks,
        "auto" => MechanismName::Auto,
        other => panic!("unknown mechanism {other}"),
    }
}

/// Encode time per report, time-bounded (the same loop shape as peers.py's pure-LDP side).
fn encode(args: &[String]) {
    let name = mechanism_name(&args[0]);
    let d: u32 = args[1].parse().unwrap();
    let eps: Epsilon = args[2].parse().unwrap();
    let seconds: f64 = args[3].parse().unwrap();
    let seed: u64 = args[4].parse().unwrap();
    let m = Selection::new(Domain::Categorical { d }, eps, name).map(|s| s.for_period("peers", 0)).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (mut count, mut i) = (0u64, 0u64);
    let t = Instant::now();
    loop {
        for _ in 0..50 {
            let v = (i * 7919 % u64::from(d)) as u32;
            black_box(m.encode(LdpValue::Category(v), &mut rng).unwrap());
            i += 1;
        }
        count += 50;
        if t.elapsed().as_secs_f64() >= seconds {
            break;
        }
    }
    let ns = t.elapsed().as_secs_f64() * 1e9 / count as f64;
    println!(
        "{{\"impl\":\"confiance\",\"mode\":\"encode\",\"mechanism\":\"{}\",\"d\":{d},\"eps\":\"{eps}\",\"seed\":{seed},\"count\":{count},\"ns\":{ns}}}",
        args[0]
    );
}

fn freq(args: &[String]) {
    let name: MechanismName = match args[0].as_str() {
        "grr" => MechanismName::Grr,
        "oue" => MechanismName::Oue,
        "olh" => MechanismName::Olh,
        "hadamard" => MechanismName::Hadamard,
        "hadamard_blocks" => MechanismName::HadamardBlocks,
        "auto" => MechanismName::Auto,
        other => panic!("unknown mechanism {other}"),
    };
    let d: u32 = args[1].parse().unwrap();
    let eps: Epsilon = args[2].parse().unwrap();
    let n: usize = args[3].parse().unwrap();
    let seed: u64 = args[4].parse().unwrap();
    let m = confiance::hazmat::keyed(&Selection::new(Domain::Categorical { d }, eps, name).unwrap(), seed);
    let counts = zipf_counts(d as usize, n);
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut reports = Vec::with_capacity(n);
    let t = Instant::now();
    for (v, c) in counts.iter().enumerate() {
        for _ in 0..*c {
            reports.push(m.encode(LdpValue::Category(v as u32), &mut rng).unwrap());
        }
    }
    let encode_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut acc = Accumulator::new(&m);
    for r in &reports {
        acc.add(r).unwrap();
    }
    let est = acc.estimate();
    let decode_s = t.elapsed().as_secs_f64();
    let mse: f64 =
        est.values.iter().zip(&counts).map(|(p, c)| (p.value - *c as f64 / n as f64).powi(2)).sum::<f64>()
            / f64::from(d);
    let (theory_mse, params) = theory(&m, &counts);
    println!(
        "{{\"impl\":\"confiance\",\"mechanism\":\"{:?}\",\"d\":{d},\"eps\":\"{eps}\",\"n\":{n},\"seed\":{seed},\"mse\":{mse:e},\"theory_mse\":{theory_mse:e},\"params\":\"{params}\",\"encode_s\":{encode_s},\"decode_s\":{decode_s}}}",
        m.name()
    );
}

/// The expected MSE of `m` on exactly these counts, mean over categories of Var[f̂_v], from
/// the aggregator's theory module: Wang et al. 2017 (Theorem 2, with the n_v term) for
/// GRR, OUE, OLH and one-block HR; for OLH plus the collision-correction term where the
/// aggregator corrects (16·d ≤ g·P and Σ n_x(n_x − 1) > Σ Var ĉ_x, judged here on the true
/// counts; docs/privacy.md §3, an approximation) and the seed-pool term otherwise; the
/// block formula for general-privacy HR (category v in block v mod B). Also the
/// parameters, for the table.
fn theory(m: &Mechanism, counts: &[usize]) -> (f64, String) {
    let c: Vec<f64> = counts.iter().map(|x| *x as f64).collect();
    let n: f64 = c.iter().sum();
    let d = c.len();
    let mut heavy_len = 0;
    let var: f64 = match *m.params() {
        Params::HadamardBlocks { blocks, .. } => {
            let b = blocks as usize;
            let mut block = vec![0.0; b];
            c.iter().enumerate().for_each(|(v, x)| block[v % b] += x);
            c.iter().enumerate().map(|(v, x)| hadamard_blocks_count_variance(m, n, block[v % b], *x)).sum()
        }
        Params::Olh { .. } => {
            // The heavy set the estimator converges to, from the true counts.
            let mut heavy = Vec::new();
            loop {
                let next = olh_heavy_set(m, n, &c, false, &heavy);
                if next == heavy {
                    break;
                }
                heavy = next;
            }
            heavy_len = heavy.len();
            olh_count_variances(m, n, &c, &heavy, false).iter().sum()
        }
        _ => c.iter().map(|x| count_variance(m, n, *x)).sum(),
    };
    let params = match *m.params() {
        Params::Olh { g, pool, pool_key, .. } => {
            format!("g={g} pool={pool} pool_key={pool_key} heavy={heavy_len}")
        }
        Params::HadamardBlocks { blocks, block_size, .. } => format!("B={blocks} b={block_size}"),
        _ => String::new(),
    };
    (var / (n * n) / d as f64, params)
}

fn time_ns(count: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..count {
        f();
    }
    t.elapsed().as_secs_f64() * 1e9 / f64::from(count)
}

fn samplers(args: &[String]) {
    let count: u32 = args[0].parse().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for scale in [1u64, 10, 1000] {
        let lap = time_ns(count, || {
            black_box(discrete_laplace(&mut rng, Ratio::new(scale, 1).unwrap()).unwrap());
        });
        let gau = time_ns(count, || {
            black_box(discrete_gaussian(&mut rng, scale * scale, 1).unwrap());
        });
        println!("{{\"impl\":\"confiance\",\"scale\":{scale},\"laplace_ns\":{lap},\"gaussian_ns\":{gau}}}");
        #[cfg(feature = "opendp")]
        {
            use dashu::rational::RBig;
            let s = RBig::from(scale);
            let lap = time_ns(count, || {
                black_box(opendp::traits::samplers::sample_discrete_laplace(s.clone()).unwrap());
            });
            let gau = time_ns(count, || {
                black_box(opendp::traits::samplers::sample_discrete_gaussian(s.clone()).unwrap());
            });
            println!(
                "{{\"impl\":\"opendp-rust\",\"scale\":{scale},\"laplace_ns\":{lap},\"gaussian_ns\":{gau}}}"
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("freq") => freq(&args[1..]),
        Some("samplers") => samplers(&args[1..]),
        Some("encode") => encode(&args[1..]),
        _ => eprintln!("usage: confiance-peers freq <mech> <d> <eps> <n> <seed> | samplers <count>"),
    }
}
