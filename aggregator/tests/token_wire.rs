//! The token worked example of docs/wire-format.md (§10.3), reproduced byte for byte:
//! a token request, the issuer's response, the token the device unblinds, and the
//! envelope body's token list that spends it.

use confiance::Timestamp;
use confiance::consent::DeviceKey;
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::token::{PendingTokens, SpentToken, TokenPeriod, TokenScope};
use confiance_aggregator::issuer::{AllowAll, Issuer, IssuerSecret, TokenVerifier};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{catalogue, id};

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn token_worked_example_matches_the_docs() {
    let secret = IssuerSecret::from_bytes([0x05; 32]);
    let mut issuer = Issuer::new(secret.clone(), &catalogue()).unwrap();
    let scope = TokenScope::new([id("calora")], id("product-improvement"), TokenPeriod(20_833));
    let now = Timestamp::from_secs(20_833 * 86_400 + 3_600);
    let device = DeviceKey::from_bytes(&[0x03; 32]);
    let mut rng = SeededRng::seed_from_u64(1);
    let pk = issuer.public_key(&scope).unwrap();
    let (pending, request) = PendingTokens::request(&device, scope.clone(), pk, 1, &mut rng).unwrap();
    let response = issuer.issue(&request, &AllowAll, now, &mut rng).unwrap();
    let token = pending.finalize(&response).unwrap()[0];
    TokenVerifier::new(secret, &catalogue()).unwrap().verify(&scope, &token, now).unwrap();
    let body_tokens = postcard::to_allocvec(&vec![SpentToken { scope: scope.clone(), token }]).unwrap();
    let request_bytes = postcard::to_allocvec(&request).unwrap();
    let response_bytes = postcard::to_allocvec(&response).unwrap();
    // The documented sizes: 32 + 31 (scope) + 1 + 32 + 64 request, 32 + 1 + 32 + 64
    // response, 130 token (type 0xC0F2), 1 + 31 + 130 token list.
    assert_eq!(
        (request_bytes.len(), response_bytes.len(), token.to_bytes().len(), body_tokens.len()),
        (160, 129, 130, 162)
    );
    let doc = include_str!("../../docs/wire-format.md");
    let squeezed: String = doc.chars().filter(|c| !c.is_whitespace()).collect();
    let missing = [
        ("scope key pkS", pk.to_bytes().to_vec()),
        ("token request", request_bytes),
        ("token response", response_bytes),
        ("token", token.to_bytes()),
        ("envelope token list", body_tokens),
    ]
    .into_iter()
    .filter(|(_, b)| !squeezed.contains(&to_hex(b)))
    .map(|(what, b)| format!("{what} {}", to_hex(&b)))
    .collect::<Vec<_>>();
    assert!(missing.is_empty(), "docs/wire-format.md lacks:\n{}", missing.join("\n"));
}
