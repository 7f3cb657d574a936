//! Unlinkability evidence for 10⁴ devices, two recipients and two epochs.
//!
//! What is tested, precisely, for each pair of scopes (A, B) that differ in the recipient
//! or in the epoch, with `A_d`, `B_d` device `d`'s pseudonyms:
//! 1. no two of the 4·10⁴ pseudonyms are equal;
//! 2. no fixed translation links the scopes: the 10⁴ XOR differences `A_d ⊕ B_d` are all
//!    distinct, and so are the differences `B_d − A_d` mod 2²⁵⁶ (scoped) or `B_d − A_d`
//!    in the group (polymorphic) — so no constant `c` gives `B = A ⊕ c` or `B = A + c`,
//!    even for two devices;
//! 3. no bit of `B` follows the same bit of `A`: for each of the 256 positions, the share
//!    of devices where the bits agree is within 0.5 ± 0.025 (five standard errors
//!    `0.5/√10⁴`; a fixed bitwise relation would give 0 or 1) — except bits 0 and 255 of
//!    Ristretto255 encodings, which are zero for every point;
//! 4. bits 1–4 of `A` and of `B` are independent: χ² over the 16 × 16 table is below
//!    225 + 6·√450 ≈ 352 (225 degrees of freedom; a functional relation gives ≈ 10⁴·15).
//!
//! Seeds are fixed, so the outcome is deterministic. Statistics cannot prove
//! unlinkability: that rests on HKDF-SHA256 being a PRF (scoped) and on DDH in
//! Ristretto255 (polymorphic). In particular domain-B polymorphic pseudonyms *are* a
//! fixed function of domain-A ones — `B = (s_B/s_A)·A` — with a factor that only the
//! transcryptors together know; [`polymorphic_relation_exists_but_is_secret`] shows it.

use std::collections::HashSet;

use confiance::ids::RecipientId;
use confiance::pseudonym::{DeviceSecret, Epoch};
use confiance_aggregator::transcrypt::{
    Domain, DomainPseudonym, DomainTranscryptor, RecipientKey, Transcryptor, TranscryptorId,
    TranscryptorSecret, hazmat, system_public_key, transcrypt_chain, verify_chain,
};

#[path = "support/stand_in.rs"]
mod stand_in;
use curve25519_dalek::ristretto::CompressedRistretto;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use stand_in::{Device, StandIn, query};

const DEVICES: usize = 10_000;
/// Bits of a Ristretto255 encoding that are zero for every point.
const ENCODING_FIXED_BITS: [usize; 2] = [0, 255];

fn devices(seed: u8) -> Vec<DeviceSecret> {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    (0..DEVICES).map(|_| DeviceSecret::generate(&mut rng)).collect()
}

fn xor(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    core::array::from_fn(|i| a[i] ^ b[i])
}

/// `b − a` mod 2²⁵⁶, little-endian.
fn sub_mod(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in 0..32 {
        let d = i16::from(b[i]) - i16::from(a[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = d.rem_euclid(256) as u8;
    }
    out
}

fn bit(x: &[u8; 32], i: usize) -> bool {
    x[i / 8] >> (i % 8) & 1 == 1
}

/// Checks 2–4 of the module doc for one pair of scopes; `group_diff` gives the extra
/// difference to check (mod 2²⁵⁶ or in the group).
fn assert_no_fixed_relation(
    a: &[[u8; 32]],
    b: &[[u8; 32]],
    fixed_bits: &[usize],
    group_diff: impl Fn(&[u8; 32], &[u8; 32]) -> [u8; 32],
) {
    assert_eq!(a.len(), b.len());
    let n = a.len();
    let xors: HashSet<[u8; 32]> = a.iter().zip(b).map(|(x, y)| xor(x, y)).collect();
    assert_eq!(xors.len(), n, "some XOR difference repeats");
    let diffs: HashSet<[u8; 32]> = a.iter().zip(b).map(|(x, y)| group_diff(x, y)).collect();
    assert_eq!(diffs.len(), n, "some difference repeats");

    let tol = 5.0 * 0.5 / (n as f64).sqrt();
    for i in (0..256).filter(|i| !fixed_bits.contains(i)) {
        let agree = a.iter().zip(b).filter(|(x, y)| bit(x, i) == bit(y, i)).count() as f64 / n as f64;
        assert!((agree - 0.5).abs() < tol, "bit {i}: agreement {agree}");
    }

    let mut table = [[0u32; 16]; 16];
    for (x, y) in a.iter().zip(b) {
        table[usize::from(x[0] >> 1 & 15)][usize::from(y[0] >> 1 & 15)] += 1;
    }
    let rows: Vec<f64> = table.iter().map(|r| f64::from(r.iter().sum::<u32>())).collect();
    let cols: Vec<f64> = (0..16).map(|j| f64::from(table.iter().map(|r| r[j]).sum::<u32>())).collect();
    let mut chi2 = 0.0;
    for i in 0..16 {
        for j in 0..16 {
            let expected = rows[i] * cols[j] / n as f64;
            chi2 += (f64::from(table[i][j]) - expected).powi(2) / expected;
        }
    }
    assert!(chi2 < 225.0 + 6.0 * 450f64.sqrt(), "chi2 {chi2}");
}

#[test]
fn scoped_pseudonyms_are_unlinkable_across_recipients_and_epochs() {
    let devs = devices(1);
    let (ra, rb) = (RecipientId::new("acme-thermo").unwrap(), RecipientId::new("other-brand").unwrap());
    let scopes = [(&ra, Epoch(0)), (&ra, Epoch(1)), (&rb, Epoch(0)), (&rb, Epoch(1))];
    let p: Vec<Vec<[u8; 32]>> =
        scopes.iter().map(|(r, e)| devs.iter().map(|d| d.scoped(r, *e).0).collect()).collect();

    let all: HashSet<[u8; 32]> = p.iter().flatten().copied().collect();
    assert_eq!(all.len(), 4 * DEVICES, "collision");

    // Across recipients (same epoch), across epochs (same recipient), and across both.
    for (i, j) in [(0, 2), (1, 3), (0, 1), (2, 3), (0, 3)] {
        assert_no_fixed_relation(&p[i], &p[j], &[], sub_mod);
    }
}

/// The pipeline a recipient sees: the device signs a request, the chain transcrypts it
/// (with proofs, gated by a stand-in ledger that allows it), the recipient decrypts.
struct Pipeline {
    pk: confiance::pseudonym::SystemPublicKey,
    domains: Vec<(Vec<DomainTranscryptor>, RecipientKey)>,
    ledger: StandIn,
}

impl Pipeline {
    fn new(n: usize, domains: &[Domain]) -> Self {
        let ts: Vec<Transcryptor> = (0..n)
            .map(|i| {
                Transcryptor::new(
                    TranscryptorId(i as u32),
                    TranscryptorSecret::from_bytes([0xa0 + i as u8; 32]),
                )
            })
            .collect();
        let refs: Vec<&Transcryptor> = ts.iter().collect();
        let (pk, _) = system_public_key(&refs, &mut ChaCha20Rng::from_seed([0; 32])).unwrap();
        let domains = domains
            .iter()
            .map(|d| {
                let dts: Vec<DomainTranscryptor> = ts.iter().map(|t| t.for_domain(d)).collect();
                let shares: Vec<_> = dts.iter().map(DomainTranscryptor::recipient_key_share).collect();
                (dts, RecipientKey::from_shares(&shares).unwrap())
            })
            .collect();
        Self { pk, domains, ledger: StandIn::default() }
    }

    /// `device`'s pseudonym in domain `domain`, from a fresh signed request; and the
    /// request's ciphertext and the chain's output.
    fn pseudonym(
        &mut self,
        domain: usize,
        device: &Device,
        rng: &mut ChaCha20Rng,
    ) -> (DomainPseudonym, confiance::pseudonym::Ciphertext, confiance::pseudonym::Ciphertext) {
        let (dts, key) = &self.domains[domain];
        let d = dts[0].domain();
        let request = self.ledger.request(device, &self.pk, d.recipient(), d.epoch(), rng);
        let refs: Vec<&DomainTranscryptor> = dts.iter().collect();
        let steps =
            transcrypt_chain(&refs, &request, &self.ledger, &query(device, d.recipient()), rng).unwrap();
        let out = steps.last().unwrap().output;
        (key.decrypt_unverified(&out).unwrap(), *request.ciphertext(), out)
    }

    /// The same pseudonym by the algebra alone (`hazmat::transcrypt_with` with fresh
    /// randomness, no request to sign or check): for the 10⁴-device statistics, which
    /// are about the algebra; the checks are exercised by the other tests.
    fn pseudonym_by_algebra(&self, domain: usize, device: &Device, rng: &mut ChaCha20Rng) -> DomainPseudonym {
        use curve25519_dalek::Scalar;
        let (dts, key) = &self.domains[domain];
        let mut ct = device.secret.polymorphic(&self.pk, rng);
        for dt in dts {
            let nonces = [Scalar::random(rng), Scalar::random(rng), Scalar::random(rng)];
            ct = hazmat::transcrypt_with(dt, &ct, &Scalar::random(rng), &nonces).output;
        }
        key.decrypt_unverified(&ct).unwrap()
    }
}

#[test]
fn polymorphic_pseudonyms_are_unlinkable_across_domains_and_epochs() {
    let devs = devices(2);
    let (ra, rb) = (RecipientId::new("acme-thermo").unwrap(), RecipientId::new("other-brand").unwrap());
    let domains = [
        Domain::with_epoch(ra.clone(), Epoch(0)),
        Domain::with_epoch(ra, Epoch(1)),
        Domain::with_epoch(rb.clone(), Epoch(0)),
        Domain::with_epoch(rb, Epoch(1)),
    ];
    let pipe = Pipeline::new(1, &domains);
    let mut rng = ChaCha20Rng::from_seed([5; 32]);
    let mut p: Vec<Vec<[u8; 32]>> = (0..4).map(|_| Vec::with_capacity(DEVICES)).collect();
    for d in devs {
        let d = Device::from_secret(d);
        for (i, col) in p.iter_mut().enumerate() {
            col.push(pipe.pseudonym_by_algebra(i, &d, &mut rng).0);
        }
    }
    let all: HashSet<[u8; 32]> = p.iter().flatten().copied().collect();
    assert_eq!(all.len(), 4 * DEVICES, "collision");

    // Every canonical Ristretto255 encoding is a non-negative (even) field element below
    // 2²⁵⁵: bits 0 and 255 are always zero, so they agree trivially.
    for col in &p {
        assert!(col.iter().all(|x| ENCODING_FIXED_BITS.iter().all(|&i| !bit(x, i))));
    }
    let group_diff = |a: &[u8; 32], b: &[u8; 32]| {
        let pa = CompressedRistretto(*a).decompress().unwrap();
        let pb = CompressedRistretto(*b).decompress().unwrap();
        (pb - pa).compress().to_bytes()
    };
    for (i, j) in [(0, 2), (1, 3), (0, 1), (2, 3), (0, 3)] {
        assert_no_fixed_relation(&p[i], &p[j], &ENCODING_FIXED_BITS, group_diff);
    }
}

/// Within one domain, a device's pseudonym does not depend on the ciphertext it sent:
/// 200 devices each send four signed requests (each with a fresh polymorphic pseudonym)
/// through a chain of three transcryptors; all four give the same pseudonym, while the
/// 4 inputs and 4 outputs are pairwise distinct ciphertexts and every chain verifies.
#[test]
fn rerandomised_inputs_give_the_same_pseudonym() {
    let domain = Domain::new(RecipientId::new("acme-thermo").unwrap());
    let mut pipe = Pipeline::new(3, core::slice::from_ref(&domain));
    let commitments: Vec<_> = pipe.domains[0].0.iter().map(DomainTranscryptor::commitments).collect();
    let mut rng = ChaCha20Rng::from_seed([6; 32]);
    let mut seen = HashSet::new();
    for d in devices(3).into_iter().take(200) {
        let d = Device::from_secret(d);
        let mut ciphertexts = HashSet::new();
        let mut pseudonyms = HashSet::new();
        for _ in 0..4 {
            let (p, ct, _) = pipe.pseudonym(0, &d, &mut rng);
            let refs: Vec<&DomainTranscryptor> = pipe.domains[0].0.iter().collect();
            let request = pipe.ledger.request(&d, &pipe.pk, &domain.recipient().clone(), None, &mut rng);
            let steps =
                transcrypt_chain(&refs, &request, &pipe.ledger, &query(&d, domain.recipient()), &mut rng)
                    .unwrap();
            let out = verify_chain(request.ciphertext(), &domain, &steps, &commitments).unwrap();
            assert_eq!(
                pipe.domains[0].1.open(request.ciphertext(), &domain, &steps, &commitments).unwrap(),
                p
            );
            ciphertexts.insert(ct.to_bytes().to_vec());
            ciphertexts.insert(out.to_bytes().to_vec());
            pseudonyms.insert(p);
        }
        assert_eq!(ciphertexts.len(), 8);
        assert_eq!(pseudonyms.len(), 1);
        assert!(seen.insert(pseudonyms.into_iter().next().unwrap()), "two devices share a pseudonym");
    }
}

/// The relation that does exist: with the factors of every transcryptor (which no
/// recipient has), domain B's pseudonym is `(s_B/s_A)` times domain A's.
#[test]
fn polymorphic_relation_exists_but_is_secret() {
    let (da, db) =
        (Domain::new(RecipientId::new("acme").unwrap()), Domain::new(RecipientId::new("other").unwrap()));
    let mut pipe = Pipeline::new(2, &[da, db]);
    let factor = |i: usize| {
        pipe.domains[i].0.iter().fold(curve25519_dalek::Scalar::ONE, |acc, dt| acc * hazmat::factors(dt).0)
    };
    let delta = factor(1) * factor(0).invert();
    let mut rng = ChaCha20Rng::from_seed([7; 32]);
    for d in devices(4).into_iter().take(20) {
        let d = Device::from_secret(d);
        let a = CompressedRistretto(pipe.pseudonym(0, &d, &mut rng).0.0).decompress().unwrap();
        let b = pipe.pseudonym(1, &d, &mut rng).0;
        assert_eq!((delta * a).compress().to_bytes(), b.0);
    }
}
