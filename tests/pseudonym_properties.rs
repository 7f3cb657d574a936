//! Algebraic laws of PEP transcryption, distributed = centralised, proofs reject any
//! flipped bit, and transcryption is refused without an allowing consent decision.

use confiance::ids::RecipientId;
use confiance::pseudonym::{Ciphertext, DeviceSecret, Epoch, PseudonymError, SystemPublicKey, hazmat as eg};
use confiance_aggregator::decision::DecisionReason;
use confiance_aggregator::transcrypt::{
    Domain, DomainTranscryptor, RecipientKey, STEP_LEN, Step, TranscryptError, Transcryptor, TranscryptorId,
    TranscryptorSecret, hazmat, system_public_key, transcrypt_chain, verify_chain,
};

#[path = "support/stand_in.rs"]
mod stand_in;
use curve25519_dalek::{RistrettoPoint, Scalar};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use stand_in::{Device, StandIn, query};

fn scalar() -> impl Strategy<Value = Scalar> {
    any::<[u8; 32]>().prop_map(Scalar::from_bytes_mod_order).prop_filter("non-zero", |s| *s != Scalar::ZERO)
}

fn point() -> impl Strategy<Value = RistrettoPoint> {
    scalar().prop_map(|s| RistrettoPoint::mul_base(&s))
}

fn chain(n: usize, seed: u8) -> Vec<Transcryptor> {
    (0..n)
        .map(|i| {
            Transcryptor::new(
                TranscryptorId(i as u32 + 1),
                TranscryptorSecret::from_bytes([seed ^ i as u8; 32]),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn rerandomise_keeps_the_plaintext(x in scalar(), m in point(), r in scalar(), r2 in scalar()) {
        let y = RistrettoPoint::mul_base(&x);
        let ct = eg::encrypt_with(&m, &y, &r).unwrap();
        let rr = eg::rerandomise_with(&ct, &r2);
        prop_assert_ne!(rr, ct);
        prop_assert_eq!(eg::decrypt(&rr, &x), eg::decrypt(&ct, &x));
        prop_assert_eq!(eg::decrypt(&ct, &x), m);
    }

    #[test]
    fn reshuffle_composes(x in scalar(), m in point(), r in scalar(), a in scalar(), b in scalar()) {
        let ct = eg::encrypt_with(&m, &RistrettoPoint::mul_base(&x), &r).unwrap();
        let twice = eg::reshuffle(&eg::reshuffle(&ct, &a), &b);
        prop_assert_eq!(twice, eg::reshuffle(&ct, &(a * b)));
        prop_assert_eq!(eg::decrypt(&twice, &x), (a * b) * m);
    }

    #[test]
    fn rekey_then_inverse_is_identity(x in scalar(), m in point(), r in scalar(), k in scalar()) {
        let ct = eg::encrypt_with(&m, &RistrettoPoint::mul_base(&x), &r).unwrap();
        let rk = eg::rekey(&ct, &k);
        prop_assert_eq!(eg::decrypt(&rk, &(x * k)), m);
        prop_assert_eq!(eg::rekey(&rk, &k.invert()), ct);
    }

    #[test]
    fn rsk_is_rerandomise_then_reshuffle_then_rekey(
        x in scalar(), m in point(), r in scalar(), s in scalar(), k in scalar(), r2 in scalar()
    ) {
        let ct = eg::encrypt_with(&m, &RistrettoPoint::mul_base(&x), &r).unwrap();
        let stepwise = eg::rekey(&eg::reshuffle(&eg::rerandomise_with(&ct, &r2), &s), &k);
        prop_assert_eq!(eg::rsk(&ct, &s, &k, &k.invert(), &r2), stepwise);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// n = 1..5 transcryptors, each with a proof, give the pseudonym a single party
    /// holding s = ∏ s_i, k = ∏ k_i and x = ∏ x_i would compute, which is (∏ s_i)·M.
    #[test]
    fn distributed_equals_centralised(n in 1usize..=5, seed in any::<u8>(), device in any::<[u8; 32]>(), rng_seed in any::<[u8; 32]>()) {
        let mut rng = ChaCha20Rng::from_seed(rng_seed);
        let ts = chain(n, seed);
        let refs: Vec<&Transcryptor> = ts.iter().collect();
        let (pk, _) = system_public_key(&refs, &mut rng).unwrap();
        let domain = Domain::with_epoch(RecipientId::new("acme").unwrap(), Epoch(7));
        let dts: Vec<DomainTranscryptor> = ts.iter().map(|t| t.for_domain(&domain)).collect();
        let dref: Vec<&DomainTranscryptor> = dts.iter().collect();

        let device = Device::from_secret(DeviceSecret::from_bytes(device));
        let mut ledger = StandIn::default();
        let request = ledger.request(&device, &pk, domain.recipient(), domain.epoch(), &mut rng);
        let ct = *request.ciphertext();
        let steps = transcrypt_chain(&dref, &request, &ledger, &query(&device, domain.recipient()), &mut rng).unwrap();
        let commitments: Vec<_> = dts.iter().map(DomainTranscryptor::commitments).collect();
        let shares: Vec<_> = dts.iter().map(DomainTranscryptor::recipient_key_share).collect();
        let distributed =
            RecipientKey::from_shares(&shares).unwrap().open(&ct, &domain, &steps, &commitments).unwrap();

        let (mut s, mut k, mut x) = (Scalar::ONE, Scalar::ONE, Scalar::ONE);
        for (t, dt) in ts.iter().zip(&dts) {
            let (si, ki) = hazmat::factors(dt);
            s *= si;
            k *= ki;
            x *= hazmat::system_key_share(t);
        }
        prop_assert_eq!(*pk.point(), RistrettoPoint::mul_base(&x));
        let central = eg::rsk(&ct, &s, &k, &k.invert(), &Scalar::from(99u8));
        prop_assert_eq!(eg::decrypt(&central, &(x * k)).compress().to_bytes(), distributed.0);
        prop_assert_eq!((s * device.secret.identity_point()).compress().to_bytes(), distributed.0);
    }
}

struct Fixture {
    domain: Domain,
    input: Ciphertext,
    steps: Vec<Step>,
    commitments: Vec<confiance_aggregator::transcrypt::DomainCommitments>,
}

fn fixture(n: usize) -> Fixture {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let ts = chain(n, 0x40);
    let refs: Vec<&Transcryptor> = ts.iter().collect();
    let (pk, _) = system_public_key(&refs, &mut rng).unwrap();
    let domain = Domain::new(RecipientId::new("acme").unwrap());
    let dts: Vec<DomainTranscryptor> = ts.iter().map(|t| t.for_domain(&domain)).collect();
    let dref: Vec<&DomainTranscryptor> = dts.iter().collect();
    let device = Device::from_secret(DeviceSecret::from_bytes([1; 32]));
    let mut ledger = StandIn::default();
    let request = ledger.request(&device, &pk, domain.recipient(), None, &mut rng);
    let input = *request.ciphertext();
    let steps =
        transcrypt_chain(&dref, &request, &ledger, &query(&device, domain.recipient()), &mut rng).unwrap();
    let commitments = dts.iter().map(DomainTranscryptor::commitments).collect();
    Fixture { domain, input, steps, commitments }
}

/// Every one of the 2 × 260 × 8 bits of a two-step chain, and every one of the 768 bits
/// of its input ciphertext, is flipped in turn: each flip is rejected by strict decoding
/// or by the chain verifier.
#[test]
fn any_flipped_bit_fails_verification() {
    let f = fixture(2);
    verify_chain(&f.input, &f.domain, &f.steps, &f.commitments).unwrap();
    let mut checked = 0;
    for which in 0..f.steps.len() {
        let bytes = f.steps[which].to_bytes();
        for bit in 0..STEP_LEN * 8 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            if let Ok(step) = Step::from_bytes(&b) {
                let mut steps = f.steps.clone();
                steps[which] = step;
                assert!(
                    verify_chain(&f.input, &f.domain, &steps, &f.commitments).is_err(),
                    "step {which} bit {bit} accepted"
                );
            }
            checked += 1;
        }
    }
    let input = f.input.to_bytes();
    for bit in 0..input.len() * 8 {
        let mut b = input;
        b[bit / 8] ^= 1 << (bit % 8);
        if let Ok(ct) = Ciphertext::from_bytes(&b) {
            assert!(
                verify_chain(&ct, &f.domain, &f.steps, &f.commitments).is_err(),
                "input bit {bit} accepted"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 2 * STEP_LEN * 8 + 96 * 8);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random single-bit flips on chains of random length (the exhaustive test above
    /// covers one fixed chain).
    #[test]
    fn random_flipped_bit_fails(n in 1usize..=3, which in any::<prop::sample::Index>(), bit in 0..STEP_LEN * 8) {
        let f = fixture(n);
        let i = which.index(n);
        let mut b = f.steps[i].to_bytes();
        b[bit / 8] ^= 1 << (bit % 8);
        if let Ok(step) = Step::from_bytes(&b) {
            let mut steps = f.steps.clone();
            steps[i] = step;
            prop_assert!(verify_chain(&f.input, &f.domain, &steps, &f.commitments).is_err());
        }
    }
}

#[test]
fn chain_verifier_rejects_reordering_truncation_and_other_domains() {
    let f = fixture(3);
    let mut swapped = f.steps.clone();
    swapped.swap(0, 1);
    assert_eq!(
        verify_chain(&f.input, &f.domain, &swapped, &f.commitments),
        Err(TranscryptError::ChainMismatch)
    );
    assert_eq!(
        verify_chain(&f.input, &f.domain, &f.steps[..2], &f.commitments),
        Err(TranscryptError::ChainMismatch)
    );
    assert_eq!(verify_chain(&f.input, &f.domain, &[], &[]), Err(TranscryptError::EmptyChain));
    let other = Domain::new(RecipientId::new("other").unwrap());
    assert_eq!(
        verify_chain(&f.input, &other, &f.steps, &f.commitments),
        Err(TranscryptError::InvalidProof { step: 0 })
    );
    // Skipping the middle transcryptor: the third proof is about another input.
    let skipped = [f.steps[0].clone(), f.steps[2].clone()];
    let coms = [f.commitments[0], f.commitments[2]];
    assert_eq!(
        verify_chain(&f.input, &f.domain, &skipped, &coms),
        Err(TranscryptError::InvalidProof { step: 1 })
    );
}

#[test]
fn transcryption_is_refused_without_an_allowing_decision() {
    let mut rng = ChaCha20Rng::from_seed([4; 32]);
    let t = Transcryptor::new(TranscryptorId(1), TranscryptorSecret::from_bytes([9; 32]));
    let (pk, _) = system_public_key(&[&t], &mut rng).unwrap();
    let acme = RecipientId::new("acme").unwrap();
    let dt = t.for_domain(&Domain::new(acme.clone()));
    let device = Device::from_secret(DeviceSecret::from_bytes([5; 32]));
    let mut ledger = StandIn::default();

    for reason in [
        DecisionReason::NoConsent,
        DecisionReason::Withdrawn,
        DecisionReason::Expired,
        DecisionReason::NotInCatalogue,
        DecisionReason::PurposeNotAllowed,
    ] {
        ledger.refused.insert(device.subject(), reason);
        let request = ledger.request(&device, &pk, &acme, None, &mut rng);
        assert_eq!(
            dt.transcrypt(&request, &[], &[], &ledger, &query(&device, &acme), &mut rng),
            Err(TranscryptError::ConsentRefused(reason))
        );
        // Along a chain: the first refusal stops everything.
        assert_eq!(
            transcrypt_chain(&[&dt], &request, &ledger, &query(&device, &acme), &mut rng),
            Err(TranscryptError::ConsentRefused(reason))
        );
    }
    ledger.refused.clear();
    let request = ledger.request(&device, &pk, &acme, None, &mut rng);
    // A query naming another recipient than the domain's.
    let wrong = query(&device, &RecipientId::new("other").unwrap());
    assert_eq!(
        dt.transcrypt(&request, &[], &[], &ledger, &wrong, &mut rng),
        Err(TranscryptError::DomainMismatch)
    );
    // Refusals remembered no nonce: the same request now goes through, once.
    assert!(dt.transcrypt(&request, &[], &[], &ledger, &query(&device, &acme), &mut rng).is_ok());
    assert_eq!(
        dt.transcrypt(&request, &[], &[], &ledger, &query(&device, &acme), &mut rng),
        Err(TranscryptError::Replayed)
    );
}

/// A step with `r = 0` is the bare reshuffle-rekey `((s/k)·B, s·C, k·Y)`: it does not
/// rerandomise. Its proof is well formed (the prover knows `t = 0`), and the verifier
/// refuses it on `T = identity` (on the old code it verified).
#[test]
fn a_step_that_does_not_rerandomise_is_refused() {
    let f = fixture(1);
    let ts = chain(1, 0x40);
    let dt = ts[0].for_domain(&f.domain);
    let nonces = [Scalar::from(3u8), Scalar::from(5u8), Scalar::from(7u8)];
    let zero = hazmat::transcrypt_with(&dt, &f.input, &Scalar::ZERO, &nonces);
    assert_eq!(
        verify_chain(&f.input, &f.domain, core::slice::from_ref(&zero), &f.commitments),
        Err(TranscryptError::NotRerandomised { step: 0 })
    );
    assert_eq!(Step::from_bytes(&zero.to_bytes()).unwrap(), zero);
    let one = hazmat::transcrypt_with(&dt, &f.input, &Scalar::ONE, &nonces);
    assert!(verify_chain(&f.input, &f.domain, &[one], &f.commitments).is_ok());
}

/// A ciphertext with any identity component is refused on decode and construction: `B`
/// the identity is `r = 0` (the plaintext in clear), `C` or `Y` the identity is degenerate
/// (on the old code only `Y` was refused).
#[test]
fn degenerate_ciphertexts_are_refused_on_decode() {
    use curve25519_dalek::traits::Identity;
    let f = fixture(1);
    for slot in 0..3 {
        let mut b = f.input.to_bytes();
        b[slot * 32..slot * 32 + 32].fill(0);
        assert_eq!(Ciphertext::from_bytes(&b), Err(PseudonymError::IdentityPoint), "slot {slot}");
    }
    let (_, c, y) = f.input.points();
    let id = RistrettoPoint::identity();
    assert_eq!(Ciphertext::from_points(id, *c, *y), Err(PseudonymError::IdentityPoint));
    let m = RistrettoPoint::mul_base(&Scalar::from(42u8));
    assert_eq!(eg::encrypt_with(&m, y, &Scalar::ZERO), Err(PseudonymError::IdentityPoint));
}

#[test]
fn recipient_rejects_ciphertexts_not_under_its_key() {
    let f = fixture(2);
    let ts = chain(2, 0x40);
    let dts: Vec<_> = ts.iter().map(|t| t.for_domain(&f.domain)).collect();
    let key =
        RecipientKey::from_shares(&[dts[0].recipient_key_share(), dts[1].recipient_key_share()]).unwrap();
    assert!(key.decrypt_unverified(&f.steps[1].output).is_ok());
    assert_eq!(key.decrypt_unverified(&f.steps[0].output), Err(TranscryptError::WrongKey));
    assert_eq!(key.decrypt_unverified(&f.input), Err(TranscryptError::WrongKey));
    assert_eq!(RecipientKey::from_shares(&[]).err(), Some(TranscryptError::EmptyChain));
}

/// `RecipientKey::open` decrypts only what the chain produced from the device's
/// ciphertext: a point encrypted straight to the public domain key decrypts under
/// `decrypt_unverified` (anyone can make one) and is refused by `open`, as are a chain
/// for another domain and a chain with a step missing.
#[test]
fn open_authenticates_the_chain_and_decrypt_unverified_does_not() {
    let f = fixture(2);
    let ts = chain(2, 0x40);
    let dts: Vec<_> = ts.iter().map(|t| t.for_domain(&f.domain)).collect();
    let key =
        RecipientKey::from_shares(&[dts[0].recipient_key_share(), dts[1].recipient_key_share()]).unwrap();
    let genuine = key.open(&f.input, &f.domain, &f.steps, &f.commitments).unwrap();
    assert_eq!(Ok(genuine), key.decrypt_unverified(&f.steps[1].output));

    // A forger encrypts a point of its choice to the public domain key.
    let mut rng = ChaCha20Rng::seed_from_u64(0xF0);
    let chosen = RistrettoPoint::mul_base(&Scalar::from(7u8));
    let forged = eg::encrypt_with(&chosen, key.public_key(), &Scalar::random(&mut rng)).unwrap();
    assert!(key.decrypt_unverified(&forged).is_ok(), "anyone can encrypt to the domain key");
    // Passed off as the chain's output: the last step's proof no longer matches.
    let mut steps = f.steps.clone();
    steps[1].output = forged;
    assert!(key.open(&f.input, &f.domain, &steps, &f.commitments).is_err());
    // Passed off as the input of a genuine chain: the first step's proof does not match.
    assert!(key.open(&forged, &f.domain, &f.steps, &f.commitments).is_err());
    // A step missing, or the chain checked for another domain.
    assert!(key.open(&f.input, &f.domain, &f.steps[..1], &f.commitments[..1]).is_err());
    let other = Domain::with_epoch(RecipientId::new("acme").unwrap(), Epoch(99));
    assert!(key.open(&f.input, &other, &f.steps, &f.commitments).is_err());
}

#[test]
fn system_key_contributions_verify() {
    let mut rng = ChaCha20Rng::from_seed([6; 32]);
    let ts = chain(3, 0x11);
    let mut y = curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
    for t in &ts {
        let (next, proof) = t.contribute_system_key(&y, &mut rng);
        assert!(Transcryptor::verify_key_contribution(t.id(), t.public_key_share(), &y, &next, &proof));
        assert!(!Transcryptor::verify_key_contribution(
            t.id(),
            t.public_key_share(),
            &y,
            &(next + next),
            &proof
        ));
        assert!(!Transcryptor::verify_key_contribution(
            TranscryptorId(99),
            t.public_key_share(),
            &y,
            &next,
            &proof
        ));
        y = next;
    }
    let refs: Vec<&Transcryptor> = ts.iter().collect();
    assert_eq!(system_public_key(&refs, &mut rng).unwrap().0, SystemPublicKey::from_point(y).unwrap());
    assert_eq!(system_public_key(&[], &mut rng).err(), Some(TranscryptError::EmptyChain));
}

#[test]
fn strict_decoding_errors_are_typed() {
    let f = fixture(1);
    let mut ct = f.input.to_bytes();
    assert_eq!(Ciphertext::from_bytes(&ct[..95]), Err(PseudonymError::BadLength));
    ct[64..].fill(0);
    assert_eq!(Ciphertext::from_bytes(&ct), Err(PseudonymError::IdentityPoint));
    // 2^255 - 19 = p: a non-canonical field element.
    let mut p = [0xff; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    ct[..32].copy_from_slice(&p);
    assert_eq!(Ciphertext::from_bytes(&ct), Err(PseudonymError::NonCanonicalPoint));
    let mut step = f.steps[0].to_bytes();
    // ℓ itself in the challenge slot (after the id, the output and the proof's T).
    let l = Scalar::ZERO - Scalar::ONE;
    let mut lb = l.to_bytes();
    lb[0] += 1;
    step[132..164].copy_from_slice(&lb);
    assert_eq!(Step::from_bytes(&step), Err(TranscryptError::Encoding(PseudonymError::NonCanonicalScalar)));
}

#[test]
fn commitments_and_key_shares_round_trip_strictly() {
    use confiance_aggregator::transcrypt::{COMMITMENTS_LEN, DomainCommitments, KeyShare};
    let t = Transcryptor::new(TranscryptorId(7), TranscryptorSecret::from_bytes([8; 32]));
    let dt = t.for_domain(&Domain::new(RecipientId::new("acme").unwrap()));
    let c = dt.commitments();
    let bytes = c.to_bytes();
    assert_eq!(DomainCommitments::from_bytes(&bytes), Ok(c));
    let mut zero = bytes;
    zero[36..].fill(0);
    assert_eq!(
        DomainCommitments::from_bytes(&zero),
        Err(TranscryptError::Encoding(PseudonymError::IdentityPoint))
    );
    assert_eq!(
        DomainCommitments::from_bytes(&bytes[..COMMITMENTS_LEN - 1]),
        Err(TranscryptError::Encoding(PseudonymError::BadLength))
    );
    let share = dt.recipient_key_share();
    let back = KeyShare::from_bytes(&share.to_bytes()).unwrap();
    assert_eq!(back.to_bytes(), share.to_bytes());
    assert_eq!(format!("{back:?}"), "KeyShare(..)");
    assert!(KeyShare::from_bytes(&[0; 32]).is_err());
    assert!(KeyShare::from_bytes(&[0xff; 32]).is_err());
}
