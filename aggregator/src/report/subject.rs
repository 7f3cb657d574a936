//! The report of one data subject — the "App Privacy Report" view of one person: the
//! devices enrolled for them, who sees what about them (linked to them: pseudonymous
//! records; not linked: anonymous statistics), for which purposes under which legal
//! basis, from and until when, how long it is kept, the records held now, every
//! disclosure and transcription, and every consent with its withdrawal.
//!
//! Filled from the ledger by [`SubjectReport::gather`], or from one device's own sent log
//! by [`SubjectReport::from_sent_log`] (what that device sent, to whom, kept until when);
//! rendered by [`SubjectReport::render_html`] (one self-contained page, the auditor
//! report's style) and [`SubjectReport::render_json`].

use core::fmt::Write as _;
use std::collections::{BTreeMap, BTreeSet};

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::ids::{MetricId, PurposeId, RecipientId, SubjectId};
use confiance::recorder::SentLogExport;
use serde::{Deserialize, Serialize};

use super::text::{html, instant};
use super::{PurposeBasis, ReportError, SCHEMA_VERSION};
use crate::ledger::{DisclosureKind, Fact, Party, Until};
use crate::service::Aggregator;

/// What one data subject's report shows. Instants are UTC seconds; byte strings are
/// lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The subject (64 hex digits).
    pub subject: String,
    /// What the report is read from: the aggregator's ledger ([`SubjectReport::gather`])
    /// or a device's own sent log ([`SubjectReport::from_sent_log`]). Added; absent =
    /// the ledger.
    #[serde(default)]
    pub source: SubjectReportSource,
    /// The catalogue's name.
    pub catalogue_name: String,
    /// The catalogue's version.
    pub catalogue_version: u32,
    /// The instant the report is about ("who sees what now").
    pub at: Timestamp,
    /// When the report was generated.
    pub generated_at: Timestamp,
    /// The devices enrolled for the subject, in the order enrolled.
    pub devices: Vec<SubjectDevice>,
    /// Linked to the subject: pseudonymous metrics a recipient sees at `at`.
    pub linked: Vec<SubjectAccessRow>,
    /// Not linked to the subject: anonymous statistics a recipient sees at `at`.
    pub not_linked: Vec<SubjectAccessRow>,
    /// Every consent the subject gave, with its withdrawal, in the order recorded.
    pub consents: Vec<SubjectConsent>,
    /// Every pseudonymous record about the subject, with its deadline and purge.
    pub records: Vec<SubjectRecord>,
    /// Every disclosure (release or transcription) of the subject's data.
    pub disclosures: Vec<SubjectDisclosure>,
}

/// What a [`SubjectReport`] is read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SubjectReportSource {
    /// The aggregator's ledger: consents, devices, records held, disclosures.
    #[default]
    Ledger,
    /// One device's own log of what it sent ([`SentLogExport`]): who receives what from
    /// it, and until when it may be kept. The devices, consents and disclosures are the
    /// aggregator's to tell and are left empty.
    DeviceSentLog,
}

/// A device enrolled for the subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectDevice {
    /// The device's public key (hex).
    pub device: String,
    /// From when it may speak for the subject.
    pub valid_from: Timestamp,
    /// Until when (`None`: until revoked).
    pub valid_until: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

/// One recipient seeing one metric about the subject at the report's instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectAccessRow {
    /// The recipient's id.
    pub recipient: String,
    /// The recipient's name in the catalogue.
    pub recipient_name: String,
    /// The metric's id.
    pub metric: String,
    /// What the metric is, in the catalogue's words.
    pub description: String,
    /// Why, and under which legal basis.
    pub purposes: Vec<PurposeBasis>,
    /// Since when (the earliest start of the consents giving the access).
    pub from: Option<Timestamp>,
    /// Until when; `None` with `open_until_withdrawn`.
    pub until: Option<Timestamp>,
    /// The access lasts until the subject withdraws.
    pub open_until_withdrawn: bool,
    /// How long what is collected may be kept after, as the catalogue or receipt wrote it.
    pub hold: Option<String>,
    /// Records about the subject the recipient holds at the instant.
    pub records_held: u64,
    /// The latest deadline among them.
    pub records_until: Option<Timestamp>,
}

/// A consent the subject gave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectConsent {
    /// The receipt (hex).
    pub receipt: String,
    /// To whom.
    pub recipient: String,
    /// For what.
    pub purpose: String,
    /// The purpose's legal basis.
    pub legal_basis: String,
    /// The metrics it covers.
    pub metrics: Vec<String>,
    /// From when.
    pub valid_from: Timestamp,
    /// Until when it ends by itself (`None`: until withdrawn).
    pub valid_until: Option<Timestamp>,
    /// How long data collected under it may be kept, as written.
    pub hold: String,
    /// When it was withdrawn, if it was.
    pub withdrawn_at: Option<Timestamp>,
}

/// A pseudonymous record about the subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectRecord {
    /// Who holds it.
    pub recipient: String,
    /// Which metric.
    pub metric: String,
    /// When it was collected.
    pub collected_at: Timestamp,
    /// When it must be deleted by.
    pub deadline: Timestamp,
    /// When it was deleted, if it was.
    pub purged_at: Option<Timestamp>,
}

/// A disclosure of the subject's pseudonymous data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectDisclosure {
    /// `release` (records handed over) or `transcryption` (a pseudonym turned into the
    /// recipient's own).
    pub kind: String,
    /// To whom.
    pub recipient: String,
    /// Which metric.
    pub metric: String,
    /// For what.
    pub purpose: String,
    /// When.
    pub at: Timestamp,
}

impl SubjectReport {
    /// The report of `subject` at `at`, read from `agg`'s ledger as known now.
    ///
    /// ```
    /// use confiance::catalogue::Catalogue;
    /// use confiance::ids::SubjectId;
    /// use confiance::Timestamp;
    /// use confiance_aggregator::keys::KeyStore;
    /// use confiance_aggregator::report::SubjectReport;
    /// use confiance_aggregator::service::{Aggregator, AggregatorConfig};
    ///
    /// let catalogue = Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?;
    /// let agg = Aggregator::in_memory(catalogue, KeyStore::new(86_400), AggregatorConfig::default())?;
    /// let at = Timestamp::from_secs(1_800_000_000);
    /// let r = SubjectReport::gather(&agg, &SubjectId([7; 32]), at, at);
    /// assert!(r.linked.is_empty() && r.consents.is_empty());
    /// assert!(r.render_html().contains("No consent given"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn gather(agg: &Aggregator, subject: &SubjectId, at: Timestamp, generated_at: Timestamp) -> Self {
        let cat = agg.catalogue();
        let ledger = agg.ledger();
        let basis = |p: &confiance::ids::PurposeId| {
            cat.purpose(p)
                .and_then(|x| serde_json::to_value(x.legal_basis).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let history = ledger.history(&Party::Subject(*subject), Timestamp::EPOCH, Timestamp::MAX);
        let withdrawn: BTreeMap<_, _> = history
            .iter()
            .filter_map(|h| match &h.fact {
                Fact::ConsentWithdrawn { receipt, at, .. } => Some((*receipt, *at)),
                _ => None,
            })
            .collect();
        let purged: BTreeMap<_, _> = history
            .iter()
            .filter_map(|h| match &h.fact {
                Fact::RecordPurged { record, at, .. } => Some((*record, *at)),
                _ => None,
            })
            .collect();
        let (mut consents, mut records, mut disclosures) = (Vec::new(), Vec::new(), Vec::new());
        let mut starts = BTreeMap::new();
        for h in &history {
            match &h.fact {
                Fact::ConsentGiven {
                    receipt,
                    recipient,
                    purpose,
                    metrics,
                    valid_from,
                    valid_until,
                    hold,
                    ..
                } => {
                    starts.insert(*receipt, *valid_from);
                    consents.push(SubjectConsent {
                        receipt: hex(&receipt.0),
                        recipient: recipient.to_string(),
                        purpose: purpose.to_string(),
                        legal_basis: basis(purpose),
                        metrics: metrics.iter().map(ToString::to_string).collect(),
                        valid_from: *valid_from,
                        valid_until: *valid_until,
                        hold: hold.to_string(),
                        withdrawn_at: withdrawn.get(receipt).copied(),
                    });
                }
                Fact::RecordHeld(n) => records.push(SubjectRecord {
                    recipient: n.recipient.to_string(),
                    metric: n.metric.to_string(),
                    collected_at: n.collected_at,
                    deadline: n.deadline,
                    purged_at: purged.get(&n.record).copied(),
                }),
                Fact::Disclosed(d) => disclosures.push(SubjectDisclosure {
                    kind: match d.kind {
                        DisclosureKind::Release => "release",
                        DisclosureKind::Transcryption => "transcryption",
                    }
                    .into(),
                    recipient: d.recipient.to_string(),
                    metric: d.metric.to_string(),
                    purpose: d.purpose.to_string(),
                    at: d.at,
                }),
                _ => {}
            }
        }
        let access = ledger.subject_access(subject, at, None);
        let (mut linked, mut not_linked) = (Vec::new(), Vec::new());
        for e in &access.entries {
            let meta = cat.metric(&e.metric);
            let row = SubjectAccessRow {
                recipient: e.recipient.to_string(),
                recipient_name: cat.recipient(&e.recipient).map(|r| r.name.clone()).unwrap_or_default(),
                metric: e.metric.to_string(),
                description: meta.map(|m| m.description.clone()).unwrap_or_default(),
                purposes: e
                    .purposes
                    .iter()
                    .map(|p| PurposeBasis { purpose: p.to_string(), legal_basis: basis(p) })
                    .collect(),
                from: e.receipts.iter().filter_map(|r| starts.get(r).copied()).min(),
                until: match e.window_until {
                    Some(Until::At(t)) => Some(t),
                    _ => None,
                },
                open_until_withdrawn: matches!(e.window_until, Some(Until::Withdrawn)),
                hold: e.hold.as_ref().map(ToString::to_string),
                records_held: e.records_held,
                records_until: e.records_until,
            };
            if meta.is_some_and(confiance::catalogue::Metric::is_anonymous) {
                not_linked.push(row);
            } else {
                linked.push(row);
            }
        }
        Self {
            schema_version: SCHEMA_VERSION,
            subject: hex(&subject.0),
            source: SubjectReportSource::Ledger,
            catalogue_name: cat.name().to_owned(),
            catalogue_version: cat.version(),
            at,
            generated_at,
            devices: access
                .devices
                .iter()
                .map(|d| SubjectDevice {
                    device: hex(&d.device.0),
                    valid_from: d.valid_from,
                    valid_until: d.valid_until,
                    revoked_at: d.revoked_at,
                })
                .collect(),
            linked,
            not_linked,
            consents,
            records,
            disclosures,
        }
    }

    /// The subject report's view of a device's own sent log (bytes of
    /// [`Recorder::export_sent_log`](confiance::recorder::Recorder::export_sent_log)),
    /// read under `catalogue` (the one the device sent under) at the export's instant:
    /// per recipient and metric, linked to the subject (pseudonymous records, with a
    /// receipt) or not (anonymous statistics), why, first and last sent, how many reports
    /// and until when they may be kept; each record sent. Devices, consents and
    /// disclosures are the aggregator's to tell ([`SubjectReport::gather`]) and stay
    /// empty.
    ///
    /// ```
    /// use confiance::catalogue::Catalogue;
    /// use confiance::ids::SubjectId;
    /// use confiance::recorder::{SentLogExport, SENT_LOG_VERSION};
    /// use confiance::Timestamp;
    /// use confiance_aggregator::report::{SubjectReport, SubjectReportSource};
    ///
    /// let catalogue = Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?;
    /// let log = SentLogExport {
    ///     version: SENT_LOG_VERSION,
    ///     subject: SubjectId([7; 32]),
    ///     catalogue_name: catalogue.name().into(),
    ///     catalogue_version: catalogue.version(),
    ///     catalogue_digest: catalogue.digest(),
    ///     exported_at: Timestamp::from_secs(1_800_000_000),
    ///     entries: Vec::new(),
    /// };
    /// let r = SubjectReport::from_sent_log(&log.to_bytes(), &catalogue, log.exported_at)?;
    /// assert_eq!(r.source, SubjectReportSource::DeviceSentLog);
    /// assert!(r.render_html().contains("Nothing sent"));
    /// assert!(SubjectReport::from_sent_log(b"not a log", &catalogue, log.exported_at).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ReportError::SentLog`] for bytes that are not an export;
    /// [`ReportError::CatalogueMismatch`] when the device sent under another catalogue.
    pub fn from_sent_log(
        bytes: &[u8],
        catalogue: &Catalogue,
        generated_at: Timestamp,
    ) -> Result<Self, ReportError> {
        let log = SentLogExport::from_bytes(bytes).map_err(ReportError::SentLog)?;
        if log.catalogue_digest != catalogue.digest() {
            return Err(ReportError::CatalogueMismatch {
                log: format!("{} v{} ({})", log.catalogue_name, log.catalogue_version, log.catalogue_digest),
                given: format!("{} v{} ({})", catalogue.name(), catalogue.version(), catalogue.digest()),
            });
        }
        let basis = |p: &confiance::ids::PurposeId| {
            catalogue
                .purpose(p)
                .and_then(|x| serde_json::to_value(x.legal_basis).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let kept = |t: Timestamp| (t != Timestamp::MAX).then_some(t);
        // Per (linked, recipient, metric): purposes, first and last sent, count, kept until.
        type Acc<'a> = (BTreeSet<&'a PurposeId>, Timestamp, Timestamp, u64, Option<Timestamp>);
        let mut groups: BTreeMap<(bool, &RecipientId, &MetricId), Acc<'_>> = BTreeMap::new();
        let mut records = Vec::new();
        for e in &log.entries {
            let linked = e.receipt.is_some();
            for r in &e.audience {
                let g = groups.entry((linked, r, &e.metric)).or_insert((
                    BTreeSet::new(),
                    e.time,
                    e.time,
                    0,
                    None,
                ));
                g.0.insert(&e.purpose);
                g.1 = g.1.min(e.time);
                g.2 = g.2.max(e.time);
                g.3 += 1;
                g.4 = g.4.max(kept(e.held_until));
            }
            if linked {
                let audience: Vec<&str> = e.audience.iter().map(RecipientId::as_str).collect();
                records.push(SubjectRecord {
                    recipient: audience.join(", "),
                    metric: e.metric.to_string(),
                    collected_at: e.time,
                    deadline: e.held_until,
                    purged_at: None,
                });
            }
        }
        let (mut linked, mut not_linked) = (Vec::new(), Vec::new());
        for ((is_linked, recipient, metric), (purposes, first, last, n, until)) in groups {
            let row = SubjectAccessRow {
                recipient: recipient.to_string(),
                recipient_name: catalogue.recipient(recipient).map(|r| r.name.clone()).unwrap_or_default(),
                metric: metric.to_string(),
                description: catalogue.metric(metric).map(|m| m.description.clone()).unwrap_or_default(),
                purposes: purposes
                    .into_iter()
                    .map(|p| PurposeBasis { purpose: p.to_string(), legal_basis: basis(p) })
                    .collect(),
                from: Some(first),
                until: Some(last),
                open_until_withdrawn: false,
                hold: None,
                records_held: n,
                records_until: until,
            };
            if is_linked { linked.push(row) } else { not_linked.push(row) }
        }
        Ok(Self {
            schema_version: SCHEMA_VERSION,
            subject: hex(&log.subject.0),
            source: SubjectReportSource::DeviceSentLog,
            catalogue_name: log.catalogue_name,
            catalogue_version: log.catalogue_version,
            at: log.exported_at,
            generated_at,
            devices: Vec::new(),
            linked,
            not_linked,
            consents: Vec::new(),
            records,
            disclosures: Vec::new(),
        })
    }

    /// The report as pretty-printed JSON (docs/schemas/subject-report.schema.json).
    ///
    /// # Errors
    /// [`ReportError::Json`] if serialization fails (it does not for gathered data).
    pub fn render_json(&self) -> Result<String, ReportError> {
        serde_json::to_string_pretty(self).map_err(ReportError::Json)
    }

    /// The report as one self-contained HTML page in plain language, every text escaped.
    #[must_use]
    pub fn render_html(&self) -> String {
        let mut o = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = self.write_html(&mut o);
        o
    }

    fn write_html(&self, o: &mut String) -> core::fmt::Result {
        let short = self.subject.get(..12).unwrap_or(&self.subject);
        write!(
            o,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>Your data — subject {short}…</title>\n<style>{}</style>\n</head>\n<body>\n<main>\n",
            super::html::CSS
        )?;
        let sent_log = self.source == SubjectReportSource::DeviceSentLog;
        let (h1, read_from) = if sent_log {
            (
                "What your device sent: who receives it, and for how long",
                format!("your device's own log of what it sent, exported {}", instant(self.at)),
            )
        } else {
            ("Your data: who sees what, and for how long", "the aggregator's ledger".to_owned())
        };
        writeln!(o, "<header>\n<h1>{h1}</h1>\n<dl class=\"meta\">")?;
        for (k, v) in [
            ("You (subject)", format!("<code>{}</code>", html(&self.subject))),
            ("Catalogue", format!("{} v{}", html(&self.catalogue_name), self.catalogue_version)),
            ("Read from", html(&read_from)),
            ("About the instant", html(&instant(self.at))),
            ("Generated", html(&instant(self.generated_at))),
        ] {
            writeln!(o, "<dt>{k}</dt><dd>{v}</dd>")?;
        }
        o.push_str("</dl>\n</header>\n");
        if sent_log {
            self.write_sent_log_html(o)?;
            o.push_str(
                "<footer>confiance subject report (device sent log) · all instants UTC</footer>\n</main>\n</body>\n</html>\n",
            );
            return Ok(());
        }

        section(o, "devices", "Your devices")?;
        if self.devices.is_empty() {
            empty(o, "No device enrolled: the key that signs your consents is your device's own.")?;
        } else {
            rows(
                o,
                &["Device key", "Speaks for you from", "Until", "Revoked"],
                self.devices.iter().map(|d| {
                    vec![
                        format!("{}…", d.device.get(..16).unwrap_or(&d.device)),
                        instant(d.valid_from),
                        d.valid_until.map_or_else(|| "until revoked".into(), instant),
                        d.revoked_at.map_or_else(|| "no".into(), instant),
                    ]
                }),
            )?;
        }
        o.push_str("</section>\n");

        for (id, title, intro, list) in [
            (
                "linked",
                "Linked to you",
                "These recipients receive records about you under a pseudonym: each record can be tied back to you.",
                &self.linked,
            ),
            (
                "not-linked",
                "Not linked to you",
                "These recipients receive only statistics over many devices; your device randomized each report before sending it, so no report can be tied to you.",
                &self.not_linked,
            ),
        ] {
            section(o, id, title)?;
            writeln!(o, "<p>{}</p>", html(intro))?;
            if list.is_empty() {
                empty(o, "Nobody, at this instant.")?;
            }
            for a in list {
                access_card(o, a, false)?;
            }
            o.push_str("</section>\n");
        }

        section(o, "consents", "Your consents and withdrawals")?;
        if self.consents.is_empty() {
            empty(o, "No consent given.")?;
        } else {
            rows(
                o,
                &["To", "For", "Legal basis", "Metrics", "From", "Until", "Kept for", "Withdrawn"],
                self.consents.iter().map(|c| {
                    vec![
                        c.recipient.clone(),
                        c.purpose.clone(),
                        c.legal_basis.clone(),
                        c.metrics.join(", "),
                        instant(c.valid_from),
                        c.valid_until.map_or_else(|| "until you withdraw".into(), instant),
                        c.hold.clone(),
                        c.withdrawn_at.map_or_else(|| "no".into(), instant),
                    ]
                }),
            )?;
        }
        o.push_str("</section>\n");

        section(o, "records", "Records held about you")?;
        if self.records.is_empty() {
            empty(o, "No record about you was ever held.")?;
        } else {
            rows(
                o,
                &["Held by", "Metric", "Collected", "Deleted by", "Deleted"],
                self.records.iter().map(|r| {
                    vec![
                        r.recipient.clone(),
                        r.metric.clone(),
                        instant(r.collected_at),
                        instant(r.deadline),
                        r.purged_at.map_or_else(|| "not yet".into(), instant),
                    ]
                }),
            )?;
        }
        o.push_str("</section>\n");

        section(o, "disclosures", "Disclosures and transcriptions")?;
        if self.disclosures.is_empty() {
            empty(o, "None of your data was disclosed.")?;
        } else {
            rows(
                o,
                &["What", "To", "Metric", "For", "When"],
                self.disclosures.iter().map(|d| {
                    let what = if d.kind == "release" {
                        "records handed over"
                    } else {
                        "pseudonym turned into the recipient's own"
                    };
                    vec![what.into(), d.recipient.clone(), d.metric.clone(), d.purpose.clone(), instant(d.at)]
                }),
            )?;
        }
        o.push_str("</section>\n");
        o.push_str(
            "<footer>confiance subject report · all instants UTC</footer>\n</main>\n</body>\n</html>\n",
        );
        Ok(())
    }
}

impl SubjectReport {
    /// The body of a report read from a device's sent log: who receives what from it
    /// (linked and not), then every record it sent.
    fn write_sent_log_html(&self, o: &mut String) -> core::fmt::Result {
        section(o, "source", "Read from your device")?;
        writeln!(
            o,
            "<p>{}</p>\n</section>",
            html(
                "This report is read from your device's own log of what it sent: it shows what this device sent, \
                 to whom, and until when it may be kept. Your consents, your other devices, the records the \
                 aggregator still holds and what it disclosed are in the aggregator's report of you \
                 (confiance report --subject)."
            )
        )?;
        for (id, title, intro, list) in [
            (
                "linked",
                "Linked to you",
                "Your device sent these recipients records under a pseudonym: each record can be tied back to you.",
                &self.linked,
            ),
            (
                "not-linked",
                "Not linked to you",
                "Your device sent these recipients only statistics it randomized first; the aggregator adds them up over many devices, so no report can be tied to you.",
                &self.not_linked,
            ),
        ] {
            section(o, id, title)?;
            writeln!(o, "<p>{}</p>", html(intro))?;
            if list.is_empty() {
                empty(o, "Nothing sent.")?;
            }
            for a in list {
                access_card(o, a, true)?;
            }
            o.push_str("</section>\n");
        }
        section(o, "records", "Records your device sent")?;
        if self.records.is_empty() {
            empty(o, "Nothing sent.")?;
        } else {
            rows(
                o,
                &["To", "Metric", "Collected", "May be kept until"],
                self.records.iter().map(|r| {
                    vec![
                        r.recipient.clone(),
                        r.metric.clone(),
                        instant(r.collected_at),
                        if r.deadline == Timestamp::MAX {
                            "until an event ends it".into()
                        } else {
                            instant(r.deadline)
                        },
                    ]
                }),
            )?;
        }
        o.push_str("</section>\n");
        Ok(())
    }
}

fn section(o: &mut String, id: &str, title: &str) -> core::fmt::Result {
    writeln!(o, "<section id=\"{id}\" data-section=\"{id}\">\n<h2>{}</h2>", html(title))
}

fn empty(o: &mut String, what: &str) -> core::fmt::Result {
    writeln!(o, "<p class=\"empty\">{}</p>", html(what))
}

fn rows<I: Iterator<Item = Vec<String>>>(o: &mut String, head: &[&str], rows: I) -> core::fmt::Result {
    o.push_str("<table>\n<thead><tr>");
    for h in head {
        write!(o, "<th scope=\"col\">{}</th>", html(h))?;
    }
    o.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        o.push_str("<tr>");
        for c in r {
            write!(o, "<td>{}</td>", html(&c))?;
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody>\n</table>\n");
    Ok(())
}

/// One recipient and metric, in sentences: who, what, why, since and until when, how long
/// kept; `sent`: as a device's sent log tells it (first and last sent, reports sent and
/// until when they may be kept).
fn access_card(o: &mut String, a: &SubjectAccessRow, sent: bool) -> core::fmt::Result {
    let why = a
        .purposes
        .iter()
        .map(|p| format!("{} (legal basis: {})", p.purpose, p.legal_basis))
        .collect::<Vec<_>>()
        .join("; ");
    let until = if a.open_until_withdrawn {
        "until you withdraw your consent".to_owned()
    } else {
        a.until.map_or_else(|| "no longer collecting; keeps what it holds".to_owned(), instant)
    };
    let kept = a.hold.as_deref().map_or_else(|| "—".to_owned(), |h| format!("up to {h} after collection"));
    let held = match (a.records_held, a.records_until) {
        (0, _) => "no record now".to_owned(),
        (n, Some(t)) => format!(
            "{n} record{} now, the last to be deleted by {}",
            if n == 1 { "" } else { "s" },
            instant(t)
        ),
        (n, None) => format!("{n} record{} now", if n == 1 { "" } else { "s" }),
    };
    writeln!(
        o,
        "<div class=\"recipient\" data-recipient=\"{}\" data-metric=\"{}\">\n<h3>{} <small>({}) sees {}</small></h3>\n<dl class=\"meta\">",
        html(&a.recipient),
        html(&a.metric),
        html(&a.recipient_name),
        html(&a.recipient),
        html(&a.metric)
    )?;
    if sent {
        let kept = a.records_until.map_or_else(
            || "until an event ends the hold (a withdrawal, the end of a window)".to_owned(),
            |t| format!("until {} at the latest", instant(t)),
        );
        let n = a.records_held;
        for (k, v) in [
            ("What", if a.description.is_empty() { a.metric.clone() } else { a.description.clone() }),
            ("Why", if why.is_empty() { "—".into() } else { why }),
            ("First sent", a.from.map_or_else(|| "—".into(), instant)),
            ("Last sent", a.until.map_or_else(|| "—".into(), instant)),
            ("Sent", format!("{n} report{}", if n == 1 { "" } else { "s" })),
            ("Kept", kept),
        ] {
            writeln!(o, "<dt>{k}</dt><dd data-field=\"{k}\">{}</dd>", html(&v))?;
        }
        return o.write_str("</dl>\n</div>\n");
    }
    for (k, v) in [
        ("What", if a.description.is_empty() { a.metric.clone() } else { a.description.clone() }),
        ("Why", if why.is_empty() { "—".into() } else { why }),
        ("Since", a.from.map_or_else(|| "—".into(), instant)),
        ("Until", until),
        ("Kept", kept),
        ("Holds", held),
    ] {
        writeln!(o, "<dt>{k}</dt><dd data-field=\"{k}\">{}</dd>", html(&v))?;
    }
    o.push_str("</dl>\n</div>\n");
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::with_capacity(2 * b.len()), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}
