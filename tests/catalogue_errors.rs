//! Every kind of bad catalogue gets its own typed error naming the offending item.

use confiance::catalogue::{
    Catalogue, CatalogueError, LegalBasis, Metric, MetricKind, Purpose, Recipient, Role,
};
use confiance::epsilon::EpsilonError;
use confiance::ids::{CategoryId, MetricId, PurposeId, RecipientId};
use confiance::ldp::MechanismName;

const BASE: &str = r#"
name = "t"
version = 1
[purposes.p]
description = "purpose"
legal_basis = "consent"
max_hold = "P1Y"
[recipients.r]
name = "R"
role = "controller"
country = "FR"
[metrics.m]
description = "metric"
kind = "categorical"
labels = ["a", "b", "c"]
category = "usage"
privacy = "ldp"
epsilon = "1"
mechanism = "grr"
purposes = ["p"]
recipients = ["r"]
max_hold = "P6M"
"#;

fn with(from: &str, to: &str) -> Result<Catalogue, CatalogueError> {
    assert!(BASE.contains(from), "{from}");
    Catalogue::from_toml_str(&BASE.replacen(from, to, 1))
}

fn m() -> MetricId {
    MetricId::new("m").unwrap()
}

#[test]
fn base_is_valid() {
    Catalogue::from_toml_str(BASE).unwrap();
}

#[test]
fn unknown_purpose() {
    let e = with(r#"purposes = ["p"]"#, r#"purposes = ["p", "q"]"#).unwrap_err();
    assert_eq!(e, CatalogueError::UnknownPurpose { metric: m(), purpose: PurposeId::new("q").unwrap() });
}

#[test]
fn unknown_recipient() {
    let e = with(r#"recipients = ["r"]"#, r#"recipients = ["x"]"#).unwrap_err();
    assert_eq!(
        e,
        CatalogueError::UnknownRecipient { metric: m(), recipient: RecipientId::new("x").unwrap() }
    );
}

#[test]
fn no_purpose_and_no_recipient() {
    assert_eq!(with(r#"purposes = ["p"]"#, "purposes = []").unwrap_err(), CatalogueError::NoPurpose(m()));
    assert_eq!(
        with(r#"recipients = ["r"]"#, "recipients = []").unwrap_err(),
        CatalogueError::NoRecipient(m())
    );
}

#[test]
fn empty_and_oversize_domains() {
    let e = with(r#"["a", "b", "c"]"#, r#"["a"]"#).unwrap_err();
    assert_eq!(e, CatalogueError::DomainTooSmall { metric: m(), size: 1 });
    let e = with(r#"labels = ["a", "b", "c"]"#, "labels = []").unwrap_err();
    assert_eq!(e, CatalogueError::DomainTooSmall { metric: m(), size: 0 });
    let e = with("kind = \"categorical\"\nlabels = [\"a\", \"b\", \"c\"]", "kind = \"count\"\nmax = 0")
        .unwrap_err();
    assert_eq!(e, CatalogueError::DomainTooLarge { metric: m(), size: 0 });
    let e =
        with("kind = \"categorical\"\nlabels = [\"a\", \"b\", \"c\"]", "kind = \"count\"\nmax = 9999999999")
            .unwrap_err();
    assert_eq!(e, CatalogueError::DomainTooLarge { metric: m(), size: 9_999_999_999 });
    let labels: Vec<String> = (0..(1 << 20) + 1).map(|i| format!("\"l{i}\"")).collect();
    let e = with(r#"["a", "b", "c"]"#, &format!("[{}]", labels.join(","))).unwrap_err();
    assert!(matches!(e, CatalogueError::DomainTooLarge { .. } | CatalogueError::TooLarge { .. }), "{e:?}");
}

#[test]
fn repeated_label() {
    let e = with(r#"["a", "b", "c"]"#, r#"["a", "b", "a"]"#).unwrap_err();
    assert_eq!(e, CatalogueError::BadLabel { metric: m(), label: "a".into() });
}

#[test]
fn min_not_below_max() {
    let num = "kind = \"numeric\"\nmin = 5\nmax = 5";
    let e = with("kind = \"categorical\"\nlabels = [\"a\", \"b\", \"c\"]", num).unwrap_err();
    // A numeric metric with the categorical mechanism GRR is also wrong; the range is checked first.
    assert_eq!(e, CatalogueError::BadRange { metric: m(), min: 5, max: 5 });
}

#[test]
fn epsilon_not_positive_or_too_large() {
    let e = with(r#"epsilon = "1""#, r#"epsilon = "0""#).unwrap_err();
    assert_eq!(e, CatalogueError::BadEpsilon { metric: m(), error: EpsilonError::NotPositive });
    let e = with(r#"epsilon = "1""#, r#"epsilon = "100""#).unwrap_err();
    assert_eq!(e, CatalogueError::BadEpsilon { metric: m(), error: EpsilonError::TooLarge });
    let e = with(r#"epsilon = "1""#, r#"epsilon = "-1""#).unwrap_err();
    assert_eq!(e, CatalogueError::BadEpsilon { metric: m(), error: EpsilonError::Malformed });
}

#[test]
fn mechanism_does_not_fit_kind() {
    let e = with(r#"mechanism = "grr""#, r#"mechanism = "piecewise""#).unwrap_err();
    assert_eq!(e, CatalogueError::MechanismMismatch { metric: m() });
}

#[test]
fn hold_longer_than_allowed() {
    let e = with(r#"max_hold = "P6M""#, r#"max_hold = "P13M""#).unwrap_err();
    assert_eq!(e, CatalogueError::HoldTooLong { metric: m(), purpose: Some(PurposeId::new("p").unwrap()) });
    let e = with(r#"max_hold = "P6M""#, r#"max_hold = "P11Y""#).unwrap_err();
    assert_eq!(e, CatalogueError::HoldTooLong { metric: m(), purpose: None });
    let e = with(r#"max_hold = "P6M""#, r#"max_hold = "event:sold""#).unwrap_err();
    assert_eq!(e, CatalogueError::EventBoundLimit { item: "m".into() });
}

#[test]
fn budget_below_epsilon() {
    let e =
        with(r#"mechanism = "grr""#, "mechanism = \"grr\"\nbudget = { epsilon = \"0.5\", period = \"P1D\" }")
            .unwrap_err();
    assert_eq!(e, CatalogueError::BadBudget { metric: m() });
}

#[test]
fn calendar_time_precision() {
    let e = with(r#"max_hold = "P6M""#, "max_hold = \"P6M\"\ntime_precision = \"P1M\"").unwrap_err();
    assert_eq!(e, CatalogueError::BadPrecision { metric: m() });
}

#[test]
fn bad_country_and_texts() {
    let e = with(r#"country = "FR""#, r#"country = "France""#).unwrap_err();
    assert_eq!(e, CatalogueError::BadCountry { recipient: RecipientId::new("r").unwrap() });
    let e = with(r#"description = "metric""#, r#"description = "  ""#).unwrap_err();
    assert_eq!(e, CatalogueError::BadText { item: "m".into(), field: "description" });
}

#[test]
fn bad_ids_and_fields() {
    assert!(matches!(with("[metrics.m]", "[metrics.M]").unwrap_err(), CatalogueError::BadId(_)));
    assert!(matches!(
        with(r#"purposes = ["p"]"#, r#"purposes = ["p", "p"]"#).unwrap_err(),
        CatalogueError::Field { field: "purposes", .. }
    ));
    assert!(matches!(
        with(r#"kind = "categorical""#, r#"kind = "vector""#).unwrap_err(),
        CatalogueError::Field { field: "kind", .. }
    ));
    assert!(matches!(with("version = 1", "version = 1\ncolour = 1").unwrap_err(), CatalogueError::Toml(_)));
    assert_eq!(with("version = 1", "version = 0").unwrap_err(), CatalogueError::ZeroVersion);
    assert_eq!(with(r#"name = "t""#, r#"name = "T T""#).unwrap_err(), CatalogueError::BadName("T T".into()));
    assert!(matches!(
        with(r#"max_hold = "P6M""#, r#"max_hold = "six months""#).unwrap_err(),
        CatalogueError::BadDuration { .. }
    ));
}

#[test]
fn duplicate_ids_in_builder() {
    let p = PurposeId::new("p").unwrap();
    let r = RecipientId::new("r").unwrap();
    let metric = Metric::new("x", MetricKind::Boolean, CategoryId::new("usage").unwrap())
        .ldp("1".parse().unwrap(), MechanismName::Grr)
        .purposes([p.clone()])
        .recipients([r.clone()]);
    let e = Catalogue::builder("t", 1)
        .purpose(p.clone(), Purpose::new("a", LegalBasis::Consent))
        .purpose(p.clone(), Purpose::new("b", LegalBasis::Consent))
        .recipient(r.clone(), Recipient::new("R", Role::Processor, "DE"))
        .metric(m(), metric)
        .build()
        .unwrap_err();
    assert_eq!(e, CatalogueError::DuplicateId { kind: "purpose", id: "p".into() });
}
