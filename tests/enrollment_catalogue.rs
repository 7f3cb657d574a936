//! The catalogue's `[enrollment] certifiers` (docs/catalogue.md, "Enrollment"): parsed,
//! validated, part of the canonical bytes and digest only when it names a certifier.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use confiance::catalogue::{Catalogue, CatalogueError, Enrollment};
use confiance::consent::CertifierKey;
use confiance::ids::CertifierPublicKey;

const SAMPLE: &str = include_str!("../examples/catalogue.toml");

fn with_certifiers(keys: &[String]) -> String {
    let list: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    format!("{SAMPLE}\n[enrollment]\ncertifiers = [{}]\n", list.join(", "))
}

fn maker(seed: u8) -> CertifierPublicKey {
    CertifierKey::from_bytes(&[seed; 32]).public_key()
}

#[test]
fn certifiers_round_trip_through_toml_and_canonical_bytes() {
    let (a, b) = (maker(1), maker(2));
    let c = Catalogue::from_toml_str(&with_certifiers(&[b.to_string(), a.to_string()])).unwrap();
    let mut sorted = vec![a, b];
    sorted.sort_unstable();
    assert_eq!(c.certifiers(), sorted.as_slice());
    let back = Catalogue::from_canonical_bytes(&c.canonical_bytes()).unwrap();
    assert_eq!((back.digest(), back.certifiers()), (c.digest(), sorted.as_slice()));
    let again = Catalogue::from_toml_str(&c.to_toml_string().unwrap()).unwrap();
    assert_eq!(again.digest(), c.digest());
    // The certifiers are part of the meaning: another list, another digest.
    let open = Catalogue::from_toml_str(SAMPLE).unwrap();
    let one = Catalogue::from_toml_str(&with_certifiers(&[a.to_string()])).unwrap();
    assert!(open.digest() != c.digest() && one.digest() != c.digest() && one.digest() != open.digest());
}

#[test]
fn open_enrollment_adds_no_byte() {
    let open = Catalogue::from_toml_str(SAMPLE).unwrap();
    let certified = Catalogue::from_toml_str(&with_certifiers(&[maker(1).to_string()])).unwrap();
    assert!(open.certifiers().is_empty());
    let (o, c) = (open.canonical_bytes(), certified.canonical_bytes());
    // The certified catalogue is the open one's bytes, then 1 count byte and 32 key bytes.
    assert_eq!(c.len(), o.len() + 33);
    assert_eq!(&c[..o.len()], o.as_slice());
    assert_eq!(c[o.len()], 1);
    assert_eq!(&c[o.len() + 1..], maker(1).as_bytes());
    // An empty list written out is not canonical: open enrollment is no bytes at all.
    let mut empty = o.clone();
    empty.push(0);
    assert_eq!(Catalogue::from_canonical_bytes(&empty), Err(CatalogueError::Malformed));
    let mut trailing = c.clone();
    trailing.push(0);
    assert_eq!(Catalogue::from_canonical_bytes(&trailing), Err(CatalogueError::Malformed));
    // An empty list in the TOML is open enrollment, the same catalogue.
    let empty_toml = format!("{SAMPLE}\n[enrollment]\ncertifiers = []\n");
    assert_eq!(Catalogue::from_toml_str(&empty_toml).unwrap().digest(), open.digest());
}

#[test]
fn bad_certifier_keys_are_refused() {
    let bad = |keys: &[String]| Catalogue::from_toml_str(&with_certifiers(keys)).unwrap_err();
    let a = maker(1).to_string();
    for k in [&a[..62], &format!("{}zz", &a[..62]), "é".repeat(32).as_str()] {
        assert!(matches!(bad(&[k.to_owned()]), CatalogueError::BadCertifier(_)), "{k}");
    }
    assert!(matches!(bad(&[a.clone(), a.to_uppercase()]), CatalogueError::BadCertifier(_)), "twice");
    // The identity point (small order): anyone could forge its "signatures".
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let identity: String = identity.iter().map(|b| format!("{b:02x}")).collect();
    assert!(matches!(bad(&[identity]), CatalogueError::BadCertifier(_)), "weak key");
    let many: Vec<String> = (0..65u8).map(|i| maker(i).to_string()).collect();
    assert!(matches!(bad(&many), CatalogueError::BadCertifier(_)), "65 certifiers");
    // The builder sorts; a list built by hand out of order is refused.
    let (x, y) = (maker(1), maker(2));
    let (lo, hi) = if x < y { (x, y) } else { (y, x) };
    let base = Catalogue::from_toml_str(SAMPLE).unwrap();
    let build = |e: Enrollment| {
        let mut b =
            Catalogue::builder(base.name(), base.version()).limits(base.limits().clone()).enrollment(e);
        for (id, p) in base.purposes() {
            b = b.purpose(id.clone(), p.clone());
        }
        for (id, r) in base.recipients() {
            b = b.recipient(id.clone(), r.clone());
        }
        for (id, m) in base.metrics() {
            b = b.metric(id.clone(), m.clone());
        }
        b.build()
    };
    assert!(build(Enrollment::certified_by([hi, lo])).is_ok());
    assert!(matches!(build(Enrollment { certifiers: vec![hi, lo] }), Err(CatalogueError::BadCertifier(_))));
}
