//! The TOML form of a catalogue (feature `std`).
//!
//! ```toml
//! name = "fleet"
//! version = 1
//!
//! [limits]
//! max_hold = "P5Y"
//! pseudonym_epoch = "P30D"
//! min_release_reports = 100
//!
//! [purposes.improvement]
//! description = "Improve the product"
//! legal_basis = "consent"
//!
//! [recipients.acme]
//! name = "Acme"
//! role = "controller"
//! country = "FR"
//!
//! [metrics."heating.mode"]
//! description = "Heating mode"
//! kind = "categorical"
//! labels = ["off", "eco", "comfort"]
//! category = "usage"
//! privacy = "ldp"
//! epsilon = "1"
//! mechanism = "auto"
//! purposes = ["improvement"]
//! recipients = ["acme"]
//! max_hold = "P1Y"
//! time_precision = "PT1H"
//! ```

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::model::{
    Budget, Enrollment, LegalBasis, Limits, Metric, MetricKind, Privacy, Purpose, Recipient, Role,
    Sensitivity,
};
use super::{Catalogue, CatalogueError, Content};
use crate::ids::{CategoryId, CertifierPublicKey, MetricId, PurposeId, RecipientId};
use crate::ldp::MechanismName;
use crate::retention::{Duration, Period};

/// The largest TOML text accepted.
pub const MAX_TOML_BYTES: usize = 4 << 20;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlCatalogue {
    name: String,
    version: u32,
    limits: Option<TomlLimits>,
    #[serde(default)]
    purposes: BTreeMap<String, TomlPurpose>,
    #[serde(default)]
    recipients: BTreeMap<String, TomlRecipient>,
    #[serde(default)]
    metrics: BTreeMap<String, TomlMetric>,
    enrollment: Option<TomlEnrollment>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlEnrollment {
    certifiers: Vec<String>,
}

/// The certifier keys of `[enrollment] certifiers`: 64 hex digits each, none twice.
fn certifiers(list: &[String]) -> Result<Enrollment, CatalogueError> {
    let mut keys = Vec::with_capacity(list.len());
    for s in list {
        let bad = || CatalogueError::BadCertifier(alloc::format!("`{s}` (64 hex digits expected)"));
        let mut key = [0u8; 32];
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        for (i, b) in key.iter_mut().enumerate() {
            let digits = s.get(2 * i..2 * i + 2).ok_or_else(bad)?;
            *b = u8::from_str_radix(digits, 16).map_err(|_| bad())?;
        }
        keys.push(CertifierPublicKey(key));
    }
    let n = keys.len();
    let enrollment = Enrollment::certified_by(keys);
    if enrollment.certifiers.len() != n {
        return Err(CatalogueError::BadCertifier(String::from("a key listed twice")));
    }
    Ok(enrollment)
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlLimits {
    max_hold: Option<String>,
    pseudonym_epoch: Option<String>,
    min_release_reports: Option<u32>,
    token_period: Option<String>,
    tokens_per_period: Option<u32>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlPurpose {
    description: String,
    legal_basis: LegalBasis,
    max_hold: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlRecipient {
    name: String,
    role: Role,
    country: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlBudget {
    epsilon: String,
    period: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlMetric {
    description: String,
    kind: String,
    labels: Option<Vec<String>>,
    min: Option<i64>,
    max: Option<i64>,
    category: String,
    sensitivity: Option<Sensitivity>,
    privacy: String,
    epsilon: Option<String>,
    mechanism: Option<MechanismName>,
    budget: Option<TomlBudget>,
    purposes: Vec<String>,
    recipients: Vec<String>,
    max_hold: String,
    time_precision: Option<String>,
}

fn field(item: &str, field: &'static str, problem: &'static str) -> CatalogueError {
    CatalogueError::Field { item: String::from(item), field, problem }
}

fn duration(item: &str, s: &str) -> Result<Duration, CatalogueError> {
    s.parse().map_err(|error| CatalogueError::BadDuration { item: String::from(item), error })
}

fn period(item: &str, s: &str) -> Result<Period, CatalogueError> {
    s.parse().map_err(|error| CatalogueError::BadDuration { item: String::from(item), error })
}

fn ids<T: Ord>(
    item: &str,
    name: &'static str,
    list: &[String],
    parse: impl Fn(&str) -> Result<T, crate::ids::IdError>,
) -> Result<BTreeSet<T>, CatalogueError> {
    let mut out = BTreeSet::new();
    for s in list {
        let id =
            parse(s).map_err(|e| CatalogueError::BadId(alloc::format!("`{s}` in `{item}`.{name}: {e}")))?;
        if !out.insert(id) {
            return Err(field(item, name, "lists an id twice"));
        }
    }
    Ok(out)
}

fn metric_from_toml(id: &str, t: TomlMetric) -> Result<Metric, CatalogueError> {
    let (has_labels, has_min, has_max) = (t.labels.is_some(), t.min.is_some(), t.max.is_some());
    let kind = match t.kind.as_str() {
        "boolean" => MetricKind::Boolean,
        "categorical" => {
            MetricKind::Categorical { labels: t.labels.ok_or_else(|| field(id, "labels", "is missing"))? }
        }
        "numeric" => MetricKind::Numeric {
            min: t.min.ok_or_else(|| field(id, "min", "is missing"))?,
            max: t.max.ok_or_else(|| field(id, "max", "is missing"))?,
        },
        "count" => MetricKind::Count {
            max: u64::try_from(t.max.ok_or_else(|| field(id, "max", "is missing"))?)
                .map_err(|_| field(id, "max", "must not be negative"))?,
        },
        _ => return Err(field(id, "kind", "must be boolean, categorical, numeric or count")),
    };
    match kind {
        MetricKind::Boolean if has_labels || has_min || has_max => {
            return Err(field(id, "kind", "boolean takes no labels, min or max"));
        }
        MetricKind::Categorical { .. } if has_min || has_max => {
            return Err(field(id, "kind", "categorical takes no min or max"));
        }
        MetricKind::Numeric { .. } | MetricKind::Count { .. } if has_labels => {
            return Err(field(id, "labels", "only fits a categorical metric"));
        }
        MetricKind::Count { .. } if has_min => {
            return Err(field(id, "min", "does not fit a count (min is 0)"));
        }
        _ => {}
    }
    let metric_id =
        MetricId::new(id).map_err(|e| CatalogueError::BadId(alloc::format!("metric `{id}`: {e}")))?;
    let privacy = match t.privacy.as_str() {
        "ldp" => {
            let eps_text = t.epsilon.ok_or_else(|| field(id, "epsilon", "is missing"))?;
            let epsilon = eps_text
                .parse()
                .map_err(|error| CatalogueError::BadEpsilon { metric: metric_id.clone(), error })?;
            let budget = match t.budget {
                None => None,
                Some(b) => Some(Budget {
                    epsilon: b
                        .epsilon
                        .parse()
                        .map_err(|error| CatalogueError::BadEpsilon { metric: metric_id.clone(), error })?,
                    period: period(id, &b.period)?,
                }),
            };
            Privacy::Ldp { epsilon, mechanism: t.mechanism.unwrap_or(MechanismName::Auto), budget }
        }
        "pseudonymous" => {
            if t.epsilon.is_some() || t.mechanism.is_some() || t.budget.is_some() {
                return Err(field(id, "privacy", "pseudonymous takes no epsilon, mechanism or budget"));
            }
            Privacy::Pseudonymous
        }
        _ => return Err(field(id, "privacy", "must be ldp or pseudonymous")),
    };
    Ok(Metric {
        description: t.description,
        kind,
        category: CategoryId::new(&t.category)
            .map_err(|e| CatalogueError::BadId(alloc::format!("category of `{id}`: {e}")))?,
        sensitivity: t.sensitivity.unwrap_or(Sensitivity::Low),
        privacy,
        purposes: ids(id, "purposes", &t.purposes, PurposeId::new)?,
        recipients: ids(id, "recipients", &t.recipients, RecipientId::new)?,
        max_hold: duration(id, &t.max_hold)?,
        time_precision: match t.time_precision {
            Some(p) => period(id, &p)?,
            None => Period::HOUR,
        },
    })
}

fn metric_to_toml(m: &Metric) -> TomlMetric {
    let (kind, labels, min, max) = match &m.kind {
        MetricKind::Boolean => ("boolean", None, None, None),
        MetricKind::Categorical { labels } => ("categorical", Some(labels.clone()), None, None),
        MetricKind::Numeric { min, max } => ("numeric", None, Some(*min), Some(*max)),
        MetricKind::Count { max } => ("count", None, None, i64::try_from(*max).ok()),
    };
    let (privacy, epsilon, mechanism, budget) = match &m.privacy {
        Privacy::Ldp { epsilon, mechanism, budget } => (
            "ldp",
            Some(epsilon.to_string()),
            Some(*mechanism),
            budget.map(|b| TomlBudget { epsilon: b.epsilon.to_string(), period: b.period.to_string() }),
        ),
        Privacy::Pseudonymous => ("pseudonymous", None, None, None),
    };
    TomlMetric {
        description: m.description.clone(),
        kind: String::from(kind),
        labels,
        min,
        max,
        category: m.category.to_string(),
        sensitivity: Some(m.sensitivity),
        privacy: String::from(privacy),
        epsilon,
        mechanism,
        budget,
        purposes: m.purposes.iter().map(ToString::to_string).collect(),
        recipients: m.recipients.iter().map(ToString::to_string).collect(),
        max_hold: m.max_hold.to_string(),
        time_precision: Some(m.time_precision.to_string()),
    }
}

impl Catalogue {
    /// Parses and validates a catalogue in its TOML form (the sample fleet catalogue,
    /// `examples/catalogue.toml`, shows every field); ε is a decimal string such as `"0.5"`, durations
    /// are ISO 8601 periods, `until:<instant>` or `endless`.
    ///
    /// ```
    /// let toml = r#"
    /// name = "demo"
    /// version = 1
    /// [purposes.service]
    /// description = "After-sales service"
    /// legal_basis = "consent"
    /// [recipients.acme]
    /// name = "Acme"
    /// role = "controller"
    /// country = "FR"
    /// [metrics."fault.code"]
    /// description = "Last fault code"
    /// kind = "count"
    /// max = 255
    /// category = "device-state"
    /// privacy = "pseudonymous"
    /// purposes = ["service"]
    /// recipients = ["acme"]
    /// max_hold = "P2Y"
    /// "#;
    /// let c = confiance::catalogue::Catalogue::from_toml_str(toml)?;
    /// assert_eq!(c.version(), 1);
    /// let again = confiance::catalogue::Catalogue::from_toml_str(&c.to_toml_string()?)?;
    /// assert_eq!(again.digest(), c.digest());
    /// # Ok::<(), confiance::catalogue::CatalogueError>(())
    /// ```
    ///
    /// # Errors
    /// [`CatalogueError::Toml`] for text that does not parse or has unknown fields, and
    /// the typed error of the first rule the catalogue breaks otherwise.
    pub fn from_toml_str(text: &str) -> Result<Self, CatalogueError> {
        if text.len() > MAX_TOML_BYTES {
            return Err(CatalogueError::TooLarge { bytes: text.len() });
        }
        let t: TomlCatalogue = ::toml::from_str(text).map_err(|e| CatalogueError::Toml(e.to_string()))?;
        let mut limits = Limits::default();
        if let Some(l) = t.limits {
            if let Some(h) = l.max_hold {
                limits.max_hold = duration("limits", &h)?;
            }
            if let Some(e) = l.pseudonym_epoch {
                limits.pseudonym_epoch = period("limits", &e)?;
            }
            if let Some(n) = l.min_release_reports {
                limits.min_release_reports = n.max(1);
            }
            if let Some(p) = l.token_period {
                limits.token_period = period("limits", &p)?;
            }
            if let Some(n) = l.tokens_per_period {
                limits.tokens_per_period = n;
            }
        }
        let mut purposes = BTreeMap::new();
        for (id, p) in t.purposes {
            let pid = PurposeId::new(&id)
                .map_err(|e| CatalogueError::BadId(alloc::format!("purpose `{id}`: {e}")))?;
            let max_hold = p.max_hold.map(|h| duration(&id, &h)).transpose()?;
            purposes
                .insert(pid, Purpose { description: p.description, legal_basis: p.legal_basis, max_hold });
        }
        let mut recipients = BTreeMap::new();
        for (id, r) in t.recipients {
            let rid = RecipientId::new(&id)
                .map_err(|e| CatalogueError::BadId(alloc::format!("recipient `{id}`: {e}")))?;
            recipients.insert(rid, Recipient { name: r.name, role: r.role, country: r.country });
        }
        let mut metrics = BTreeMap::new();
        for (id, m) in t.metrics {
            let mid = MetricId::new(&id)
                .map_err(|e| CatalogueError::BadId(alloc::format!("metric `{id}`: {e}")))?;
            metrics.insert(mid, metric_from_toml(&id, m)?);
        }
        let enrollment = t.enrollment.map(|e| certifiers(&e.certifiers)).transpose()?.unwrap_or_default();
        Self::from_content(
            Content { name: t.name, version: t.version, limits, purposes, recipients, metrics },
            enrollment,
        )
    }

    /// The TOML form, in canonical order and notation; loading it back gives the same digest.
    ///
    /// # Errors
    /// [`CatalogueError::Toml`] if the TOML writer fails (it does not for a valid catalogue).
    pub fn to_toml_string(&self) -> Result<String, CatalogueError> {
        let c = &self.content;
        let t = TomlCatalogue {
            name: c.name.clone(),
            version: c.version,
            limits: Some(TomlLimits {
                max_hold: Some(c.limits.max_hold.to_string()),
                pseudonym_epoch: Some(c.limits.pseudonym_epoch.to_string()),
                min_release_reports: Some(c.limits.min_release_reports),
                token_period: Some(c.limits.token_period.to_string()),
                tokens_per_period: Some(c.limits.tokens_per_period),
            }),
            purposes: c
                .purposes
                .iter()
                .map(|(id, p)| {
                    (
                        id.to_string(),
                        TomlPurpose {
                            description: p.description.clone(),
                            legal_basis: p.legal_basis,
                            max_hold: p.max_hold.as_ref().map(ToString::to_string),
                        },
                    )
                })
                .collect(),
            recipients: c
                .recipients
                .iter()
                .map(|(id, r)| {
                    (
                        id.to_string(),
                        TomlRecipient { name: r.name.clone(), role: r.role, country: r.country.clone() },
                    )
                })
                .collect(),
            metrics: c.metrics.iter().map(|(id, m)| (id.to_string(), metric_to_toml(m))).collect(),
            enrollment: (!self.enrollment.is_open()).then(|| TomlEnrollment {
                certifiers: self.enrollment.certifiers.iter().map(ToString::to_string).collect(),
            }),
        };
        ::toml::to_string_pretty(&t).map_err(|e| CatalogueError::Toml(e.to_string()))
    }
}
