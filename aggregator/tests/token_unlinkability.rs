//! Unlinkability of report tokens: over 10 000 issuances and redemptions, the issuer's
//! view (which device asked, the blinded and evaluated elements) and the aggregator's
//! view (the spent tokens: nonce, scope, key id, authenticator) share nothing that links
//! a spent token to the device it was issued to.
//!
//! Two statistics, fixed seeds:
//! - **Best-matching attack.** For each spent token, the attacker (issuer and aggregator
//!   together) guesses the device whose issuance transcript is closest to the token's
//!   public group element `HashToGroup(token_input)` (bit agreement of the encodings,
//!   best over the device's 100 issuances). With 100 devices chance is 1 %; over 10 000
//!   tokens the hits are Binomial(10 000, 0.01): mean 100, standard deviation 9.95. The
//!   test accepts 100 ± 50 (five standard deviations).
//! - **True pairs look like random pairs.** The bit agreement between a token's
//!   `HashToGroup(token_input)` and the blinded element that really produced it averages
//!   129 of 256 bits if they are independent: two bits of a canonical ristretto255
//!   encoding are always 0 (the top bit, and the low bit: the encoding is non-negative),
//!   the other 254 agree with probability ½ (per pair: 2 + Binomial(254, ½), sd 7.97;
//!   mean of 10 000: sd 0.08). The test accepts 129 ± 0.4 (five standard errors), and
//!   the same for the difference with mismatched pairs (± 0.56, five standard errors of a
//!   difference).

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::DeviceKey;
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{PurposeId, RecipientId};
use confiance::token::voprf::hash_to_group;
use confiance::token::{PendingTokens, Token, TokenScope};
use confiance_aggregator::issuer::{AllowAll, Issuer, IssuerSecret, TokenVerifier};

const DEVICES: usize = 100;
const PER_DEVICE: usize = 100;

fn catalogue() -> Catalogue {
    let text = include_str!("../../examples/catalogue.toml")
        .replace("pseudonym_epoch = \"P30D\"", "pseudonym_epoch = \"P30D\"\ntokens_per_period = 100");
    Catalogue::from_toml_str(&text).unwrap()
}

fn agreement(a: &[u8; 32], b: &[u8; 32]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (!(x ^ y)).count_ones()).sum()
}

#[test]
fn issuer_and_aggregator_views_share_nothing_that_links_them() {
    let catalogue = catalogue();
    let secret = IssuerSecret::from_bytes([0x5e; 32]);
    let mut issuer = Issuer::new(secret.clone(), &catalogue).unwrap();
    let verifier = TokenVerifier::new(secret, &catalogue).unwrap();
    let now = Timestamp::from_secs(1_800_000_000);
    let scope = TokenScope::new(
        [RecipientId::new("calora").unwrap()],
        PurposeId::new("product-improvement").unwrap(),
        issuer.period_at(now),
    );
    let pk = issuer.public_key(&scope).unwrap();
    let mut rng = SeededRng::seed_from_u64(2026);

    // The issuer's view: per issuance, the device and the blinded element.
    let mut issuer_view: Vec<(usize, [u8; 32])> = Vec::new();
    // What the devices spend, with the truth kept for scoring only: the device and the
    // blinded element each token came from.
    let mut spent: Vec<(usize, [u8; 32], Token)> = Vec::new();
    for d in 0..DEVICES {
        let key = DeviceKey::generate(&mut rng);
        let (pending, request) =
            PendingTokens::request(&key, scope.clone(), pk, PER_DEVICE, &mut rng).unwrap();
        let response = issuer.issue(&request, &AllowAll, now, &mut rng).unwrap();
        issuer_view.extend(request.blinded.iter().map(|b| (d, *b)));
        let tokens = pending.finalize(&response).unwrap();
        spent.extend(request.blinded.iter().zip(tokens).map(|(b, t)| (d, *b, t)));
    }
    assert_eq!(spent.len(), DEVICES * PER_DEVICE);
    // Redemption in an order the issuer does not know (devices spend when they report).
    for i in (1..spent.len()).rev() {
        use confiance::rng::Rng as _;
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        spent.swap(i, j);
    }
    for (_, _, t) in &spent {
        verifier.verify(&scope, t, now).unwrap();
    }

    let mut hits = 0u32;
    let mut true_sum = 0u64;
    let mut mismatched_sum = 0u64;
    for (j, (d, blinded, t)) in spent.iter().enumerate() {
        // All the aggregator's view gives to match on is the token; its group element
        // is the most an attacker can compare with the issuer's view.
        let h = hash_to_group(&t.input()).compress().to_bytes();
        let mut best = (0u32, usize::MAX);
        for (dev, b) in &issuer_view {
            let s = agreement(b, &h);
            if s > best.0 {
                best = (s, *dev);
            }
        }
        hits += u32::from(best.1 == *d);
        true_sum += u64::from(agreement(blinded, &h));
        mismatched_sum += u64::from(agreement(&spent[(j + 1) % spent.len()].1, &h));
    }
    println!("best-matching attack: {hits} of 10000 tokens linked to their device (chance: 100 ± 9.95)");
    assert!((50..=150).contains(&hits), "hits {hits}");
    let mean = true_sum as f64 / 10_000.0;
    let mismatched = mismatched_sum as f64 / 10_000.0;
    println!(
        "bit agreement of a token with its own blinded element: mean {mean:.3} of 256, \
         with another's {mismatched:.3} (independent: 129 ± 0.08)"
    );
    assert!((mean - 129.0).abs() < 0.4, "mean {mean}");
    assert!((mean - mismatched).abs() < 0.56, "true {mean} vs mismatched {mismatched}");
}
