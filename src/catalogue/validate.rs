//! Whole-catalogue validation: every rule, each failure naming its item.

use alloc::collections::BTreeSet;
use alloc::string::String;

use super::Content;
use super::error::CatalogueError;
use super::model::{MAX_CATEGORICAL_LABELS, MAX_ITEMS, MetricKind, Privacy};
use crate::ids::MetricId;
use crate::ldp::MechanismName;
use crate::retention::Duration;

const MAX_TEXT: usize = 1024;
const YEAR_SECS: u64 = 366 * 86_400;
/// Numeric ranges up to 2^53 keep `max - min` exact in the f64 estimators.
const MAX_RANGE: u128 = 1 << 53;

fn text(item: &str, field: &'static str, value: &str) -> Result<(), CatalogueError> {
    if value.trim().is_empty() || value.len() > MAX_TEXT {
        return Err(CatalogueError::BadText { item: String::from(item), field });
    }
    Ok(())
}

fn not_event(item: &str, d: &Duration) -> Result<(), CatalogueError> {
    if matches!(d, Duration::UntilEvent(_)) {
        return Err(CatalogueError::EventBoundLimit { item: String::from(item) });
    }
    Ok(())
}

pub(super) fn validate(c: &Content) -> Result<(), CatalogueError> {
    crate::ids::MetricId::new(&c.name).map_err(|_| CatalogueError::BadName(c.name.clone()))?;
    if c.version == 0 {
        return Err(CatalogueError::ZeroVersion);
    }
    for (kind, n) in
        [("purpose", c.purposes.len()), ("recipient", c.recipients.len()), ("metric", c.metrics.len())]
    {
        if n > MAX_ITEMS {
            return Err(CatalogueError::TooManyItems(kind));
        }
    }
    not_event("limits", &c.limits.max_hold)?;
    match c.limits.pseudonym_epoch.fixed_secs() {
        Some(s) if (3_600..=YEAR_SECS).contains(&s) => {}
        _ => return Err(CatalogueError::BadEpoch),
    }
    match c.limits.token_period.fixed_secs() {
        Some(s) if (3_600..=YEAR_SECS).contains(&s) => {}
        _ => return Err(CatalogueError::BadTokenLimits),
    }
    if !(1..=super::model::MAX_TOKENS_PER_PERIOD).contains(&c.limits.tokens_per_period) {
        return Err(CatalogueError::BadTokenLimits);
    }
    for (id, p) in &c.purposes {
        text(id.as_str(), "description", &p.description)?;
        if let Some(h) = &p.max_hold {
            not_event(id.as_str(), h)?;
        }
    }
    for (id, r) in &c.recipients {
        text(id.as_str(), "name", &r.name)?;
        if r.country.len() != 2 || !r.country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(CatalogueError::BadCountry { recipient: id.clone() });
        }
    }
    for (id, m) in &c.metrics {
        validate_metric(c, id, m)?;
    }
    Ok(())
}

fn validate_metric(c: &Content, id: &MetricId, m: &super::Metric) -> Result<(), CatalogueError> {
    text(id.as_str(), "description", &m.description)?;
    if m.purposes.is_empty() {
        return Err(CatalogueError::NoPurpose(id.clone()));
    }
    if m.recipients.is_empty() {
        return Err(CatalogueError::NoRecipient(id.clone()));
    }
    for p in &m.purposes {
        if !c.purposes.contains_key(p) {
            return Err(CatalogueError::UnknownPurpose { metric: id.clone(), purpose: p.clone() });
        }
    }
    for r in &m.recipients {
        if !c.recipients.contains_key(r) {
            return Err(CatalogueError::UnknownRecipient { metric: id.clone(), recipient: r.clone() });
        }
    }
    let categorical = match &m.kind {
        MetricKind::Boolean => true,
        MetricKind::Categorical { labels } => {
            if labels.len() < 2 {
                return Err(CatalogueError::DomainTooSmall { metric: id.clone(), size: labels.len() });
            }
            if labels.len() > MAX_CATEGORICAL_LABELS {
                return Err(CatalogueError::DomainTooLarge { metric: id.clone(), size: labels.len() as u64 });
            }
            let mut seen = BTreeSet::new();
            for l in labels {
                if l.is_empty() || l.len() > MAX_TEXT || !seen.insert(l.as_str()) {
                    return Err(CatalogueError::BadLabel { metric: id.clone(), label: l.clone() });
                }
            }
            true
        }
        MetricKind::Numeric { min, max } => {
            let width = i128::from(*max) - i128::from(*min);
            if width <= 0 || width as u128 > MAX_RANGE {
                return Err(CatalogueError::BadRange { metric: id.clone(), min: *min, max: *max });
            }
            false
        }
        MetricKind::Count { max } => {
            if *max == 0 || *max > u64::from(u32::MAX) {
                return Err(CatalogueError::DomainTooLarge { metric: id.clone(), size: *max });
            }
            false
        }
    };
    if let Privacy::Ldp { epsilon, mechanism, budget } = &m.privacy {
        let fits = match mechanism {
            MechanismName::Piecewise | MechanismName::Duchi => !categorical,
            MechanismName::Auto => true,
            _ => categorical,
        };
        if !fits {
            return Err(CatalogueError::MechanismMismatch { metric: id.clone() });
        }
        if let Some(b) = budget
            && (b.epsilon < *epsilon || b.period.fixed_secs().is_none())
        {
            return Err(CatalogueError::BadBudget { metric: id.clone() });
        }
    }
    match m.time_precision.fixed_secs() {
        Some(s) if s <= YEAR_SECS => {}
        _ => return Err(CatalogueError::BadPrecision { metric: id.clone() }),
    }
    not_event(id.as_str(), &m.max_hold)?;
    if !m.max_hold.is_within(&c.limits.max_hold) {
        return Err(CatalogueError::HoldTooLong { metric: id.clone(), purpose: None });
    }
    for p in &m.purposes {
        if let Some(limit) = c.purposes.get(p).and_then(|p| p.max_hold.as_ref())
            && !m.max_hold.is_within(limit)
        {
            return Err(CatalogueError::HoldTooLong { metric: id.clone(), purpose: Some(p.clone()) });
        }
    }
    Ok(())
}

/// The enrollment: at most [`MAX_CERTIFIERS`](super::MAX_CERTIFIERS) certifier keys,
/// sorted, each once, each a valid Ed25519 public key not of small order (a weak key
/// would let signatures verify that no certifier made).
pub(super) fn enrollment(e: &super::Enrollment) -> Result<(), CatalogueError> {
    if e.certifiers.len() > super::MAX_CERTIFIERS {
        return Err(CatalogueError::BadCertifier(alloc::format!("{} listed", e.certifiers.len())));
    }
    for (i, k) in e.certifiers.iter().enumerate() {
        let usable = ed25519_dalek::VerifyingKey::from_bytes(k.as_bytes()).is_ok_and(|v| !v.is_weak());
        let ordered = i == 0 || e.certifiers.get(i - 1).is_some_and(|prev| prev < k);
        if !usable || !ordered {
            return Err(CatalogueError::BadCertifier(alloc::format!("{k}")));
        }
    }
    Ok(())
}
