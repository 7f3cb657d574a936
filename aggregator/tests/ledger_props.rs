//! Property tests on random ledgers: every answer agrees with a naive reference written
//! straight from docs/design.md#semantics, every reverse query agrees with `check`, and a question
//! asked as known before a fact was recorded gets the answer from before it.
//!
//! 4 000 + 3 000 + 3 000 = 10 000 cases, each a handful of receipts over three subjects
//! and times in [0, 400) so that windows, withdrawals and records overlap often.

use std::collections::{BTreeMap, BTreeSet};

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{ConsentState, DeviceKey, Grant, Scope, SignedReceipt, SignedWithdrawal};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{MetricId, PurposeId, ReceiptId, RecipientId, SubjectId};
use confiance_aggregator::decision::{ConsentCheck as _, DecisionReason};
use confiance_aggregator::ledger::{
    Disclosure, DisclosureKind, Fact, Ledger, Party, RecordNote, Target, Until,
};
use proptest::prelude::*;

const MAX: u64 = u64::MAX;
const HOLDS: [(&str, u64); 2] = [("PT30S", 30), ("PT80S", 80)];

fn catalogue() -> Catalogue {
    Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml")).unwrap()
}

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(s)
}

/// Subject `s` is a single-device subject: its device key (seed `s + 1`) is its key.
/// Subject 3 holds no device and never consents.
fn subject(s: usize) -> SubjectId {
    static IDS: std::sync::LazyLock<Vec<SubjectId>> = std::sync::LazyLock::new(|| {
        (1..=4u8)
            .map(|b| SubjectId::of_key(&DeviceKey::from_bytes(&[b; 32]).public_key().as_subject_key()))
            .collect()
    });
    IDS[s]
}

fn subject_index(id: &SubjectId) -> usize {
    (0..4).position(|s| subject(s) == *id).unwrap()
}

/// (recipient, purpose) pairs with the metrics the catalogue allows them.
fn groups(c: &Catalogue) -> Vec<(RecipientId, PurposeId, Vec<MetricId>)> {
    let mut g: BTreeMap<(RecipientId, PurposeId), Vec<MetricId>> = BTreeMap::new();
    for (m, metric) in c.metrics() {
        for r in &metric.recipients {
            for p in &metric.purposes {
                g.entry((r.clone(), p.clone())).or_default().push(m.clone());
            }
        }
    }
    g.into_iter().map(|((r, p), ms)| (r, p, ms)).collect()
}

#[derive(Clone, Debug)]
struct ReceiptPlan {
    subject: usize,
    group: usize,
    mask: u8,
    from: u64,
    len: Option<u64>,
    delay: u64,
    hold: usize,
    withdraw: Option<(u64, u64)>,
}

#[derive(Clone, Debug)]
struct RecordPlan {
    receipt: usize,
    metric: usize,
    offset: u64,
    delay: u64,
    purge: Option<(u64, u64)>,
}

#[derive(Clone, Debug)]
struct DisclosurePlan {
    subject: usize,
    group: usize,
    metric: usize,
    at: u64,
}

#[derive(Clone, Debug)]
struct Plan {
    receipts: Vec<ReceiptPlan>,
    records: Vec<RecordPlan>,
    disclosures: Vec<DisclosurePlan>,
    at: u64,
    known: Option<u64>,
}

fn plan() -> impl Strategy<Value = Plan> {
    let receipt = (
        0..3usize,
        0..64usize,
        1..8u8,
        0..200u64,
        prop::option::of(1..150u64),
        0..40u64,
        0..2usize,
        prop::option::weighted(0.5, (0..120u64, 0..150u64)),
    )
        .prop_map(|(subject, group, mask, from, len, delay, hold, withdraw)| ReceiptPlan {
            subject,
            group,
            mask,
            from,
            len,
            delay,
            hold,
            withdraw,
        });
    let record =
        (0..8usize, 0..8usize, 0..120u64, 0..30u64, prop::option::of((0..100u64, 0..60u64))).prop_map(
            |(receipt, metric, offset, delay, purge)| RecordPlan { receipt, metric, offset, delay, purge },
        );
    let disclosure = (0..3usize, 0..64usize, 0..8usize, 0..400u64)
        .prop_map(|(subject, group, metric, at)| DisclosurePlan { subject, group, metric, at });
    (
        prop::collection::vec(receipt, 1..7),
        prop::collection::vec(record, 0..4),
        prop::collection::vec(disclosure, 0..3),
        0..400u64,
        prop::option::of(0..450u64),
    )
        .prop_map(|(receipts, records, disclosures, at, known)| Plan {
            receipts,
            records,
            disclosures,
            at,
            known,
        })
}

/// The reference model: plain vectors, no index, docs/design.md#semantics read literally.
#[derive(Clone, Debug)]
struct RefReceipt {
    id: ReceiptId,
    subject: usize,
    recipient: RecipientId,
    purpose: PurposeId,
    metrics: BTreeSet<MetricId>,
    from: u64,
    until: Option<u64>,
    recorded: u64,
    withdrawal: Option<(u64, u64)>,
    hold: usize,
}

#[derive(Clone, Debug)]
struct RefRecord {
    subject: usize,
    recipient: RecipientId,
    metric: MetricId,
    collected: u64,
    deadline: u64,
    recorded: u64,
    purge: Option<(u64, u64)>,
}

#[derive(Clone, Debug)]
enum Input {
    Receipt(SignedReceipt),
    Withdrawal(SignedWithdrawal),
    Record(RecordNote),
    Purge([u8; 16], u64),
    Disclosure(Disclosure),
}

struct World {
    catalogue: Catalogue,
    receipts: Vec<RefReceipt>,
    records: Vec<RefRecord>,
    disclosures: Vec<(Disclosure, u64)>,
    /// Every input with its record time, in record order.
    inputs: Vec<(u64, Input)>,
}

fn visible(recorded: u64, known: Option<u64>) -> bool {
    known.is_none_or(|k| recorded <= k)
}

impl RefReceipt {
    fn end(&self, known: Option<u64>) -> u64 {
        let u = self.until.unwrap_or(MAX);
        match self.withdrawal {
            Some((w, wr)) if visible(wr, known) => u.min(w),
            _ => u,
        }
    }
}

/// The end of the union of half-open spans that holds `at`, computed by sorting and merging.
fn union_end(mut spans: Vec<(u64, u64)>, at: u64) -> Option<u64> {
    spans.retain(|(a, b)| a < b);
    spans.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged.into_iter().find(|&(a, b)| a <= at && at < b).map(|(_, b)| b)
}

impl World {
    fn build(p: &Plan, seed: u64) -> Self {
        let catalogue = catalogue();
        let gs = groups(&catalogue);
        let mut rng = SeededRng::seed_from_u64(seed);
        let mut devices: Vec<ConsentState> =
            (0..3u8).map(|s| ConsentState::new(DeviceKey::from_bytes(&[s + 1; 32]))).collect();
        let mut w = Self {
            catalogue,
            receipts: Vec::new(),
            records: Vec::new(),
            disclosures: Vec::new(),
            inputs: Vec::new(),
        };
        for rp in &p.receipts {
            let (r, pu, ms) = &gs[rp.group % gs.len()];
            let metrics: BTreeSet<MetricId> = ms
                .iter()
                .enumerate()
                .filter(|(i, _)| rp.mask & (1 << (i % 3)) != 0)
                .map(|(_, m)| m.clone())
                .collect();
            let metrics = if metrics.is_empty() { ms.iter().take(1).cloned().collect() } else { metrics };
            let until = rp.len.map(|l| rp.from + l);
            let grant = Grant {
                recipient: r.clone(),
                purpose: pu.clone(),
                scope: Scope::metrics(metrics.iter().cloned()),
                valid_from: t(rp.from),
                valid_until: until.map(t),
                hold: HOLDS[rp.hold].0.parse().unwrap(),
            };
            let dev = &mut devices[rp.subject];
            let signed = dev.give(&w.catalogue, grant, t(rp.from), &mut rng).unwrap();
            let recorded = rp.from / 2 + rp.delay;
            let mut rr = RefReceipt {
                id: signed.id(),
                subject: rp.subject,
                recipient: r.clone(),
                purpose: pu.clone(),
                metrics,
                from: rp.from,
                until,
                recorded,
                withdrawal: None,
                hold: rp.hold,
            };
            w.inputs.push((recorded, Input::Receipt(signed.clone())));
            if let Some((off, delay)) = rp.withdraw {
                let at = rp.from + off;
                let sw = dev.withdraw(&signed.id(), t(at)).unwrap();
                // Withdrawals often arrive late: recorded `delay` after they take effect.
                let wr = (at + delay).max(recorded);
                rr.withdrawal = Some((at, wr));
                w.inputs.push((wr, Input::Withdrawal(sw)));
            }
            w.receipts.push(rr);
        }
        for (i, rp) in p.records.iter().enumerate() {
            let Some(rr) = w.receipts.get(rp.receipt % w.receipts.len().max(1)).cloned() else { continue };
            let metric = rr.metrics.iter().nth(rp.metric % rr.metrics.len()).unwrap().clone();
            let hold = HOLDS[p.receipts[rp.receipt % w.receipts.len()].hold].1;
            let collected = rr.from + rp.offset;
            let recorded = (collected + rp.delay).max(rr.recorded);
            let id = [u8::try_from(i).unwrap() + 1; 16];
            let note = RecordNote {
                record: id,
                subject: subject(rr.subject),
                recipient: rr.recipient.clone(),
                metric: metric.clone(),
                receipt: rr.id,
                collected_at: t(collected),
                deadline: t(collected + hold),
            };
            w.inputs.push((recorded, Input::Record(note)));
            let purge =
                rp.purge.map(|(off, delay)| (collected + off, (collected + off + delay).max(recorded)));
            if let Some((at, pr)) = purge {
                w.inputs.push((pr, Input::Purge(id, at)));
            }
            w.records.push(RefRecord {
                subject: rr.subject,
                recipient: rr.recipient,
                metric,
                collected,
                deadline: collected + hold,
                recorded,
                purge,
            });
        }
        for dp in &p.disclosures {
            let (r, pu, ms) = &gs[dp.group % gs.len()];
            let d = Disclosure {
                kind: DisclosureKind::Release,
                recipient: r.clone(),
                metric: ms[dp.metric % ms.len()].clone(),
                purpose: pu.clone(),
                subject: subject(dp.subject),
                at: t(dp.at),
                record: None,
            };
            w.inputs.push((dp.at, Input::Disclosure(d.clone())));
            w.disclosures.push((d, dp.at));
        }
        w.inputs.sort_by_key(|(r, _)| *r);
        w
    }

    /// A ledger fed every input recorded at or before `upto`.
    fn ledger(&self, upto: Option<u64>) -> Ledger {
        let mut l = Ledger::in_memory(self.catalogue.clone()).unwrap();
        for (rec, input) in &self.inputs {
            if !visible(*rec, upto) {
                continue;
            }
            match input {
                Input::Receipt(r) => drop(l.ingest_receipt(&r.to_bytes(), t(*rec)).unwrap()),
                Input::Withdrawal(w) => drop(l.ingest_withdrawal(&w.to_bytes(), t(*rec)).unwrap()),
                Input::Record(n) => {
                    assert_eq!(l.record_deadline(&n.receipt, &n.metric, n.collected_at).unwrap(), n.deadline);
                    l.note_record(n, t(*rec)).unwrap();
                }
                Input::Purge(id, at) => l.note_record_purged(id, t(*at), t(*rec)).unwrap(),
                Input::Disclosure(d) => l.note_disclosure(d, t(*rec)).unwrap(),
            }
        }
        l
    }

    fn window_end(
        &self,
        s: usize,
        r: &RecipientId,
        m: &MetricId,
        at: u64,
        known: Option<u64>,
    ) -> Option<u64> {
        let spans = self
            .receipts
            .iter()
            .filter(|g| {
                g.subject == s && &g.recipient == r && g.metrics.contains(m) && visible(g.recorded, known)
            })
            .map(|g| (g.from, g.end(known)))
            .collect();
        union_end(spans, at)
    }

    fn held(&self, s: usize, r: &RecipientId, m: &MetricId, at: u64, known: Option<u64>) -> Vec<&RefRecord> {
        self.records
            .iter()
            .filter(|x| {
                x.subject == s
                    && &x.recipient == r
                    && &x.metric == m
                    && visible(x.recorded, known)
                    && x.collected <= at
                    && at < x.deadline
                    && !x.purge.is_some_and(|(pa, pr)| visible(pr, known) && pa <= at)
            })
            .collect()
    }

    fn sees(&self, s: usize, r: &RecipientId, m: &MetricId, at: u64, known: Option<u64>) -> bool {
        self.window_end(s, r, m, at, known).is_some() || !self.held(s, r, m, at, known).is_empty()
    }

    /// `check` from the definitions: (allowed, until, reason, receipts acceptable as the answer's).
    fn check(
        &self,
        r: &RecipientId,
        m: &MetricId,
        p: &PurposeId,
        s: usize,
        at: u64,
        known: Option<u64>,
    ) -> (bool, Option<u64>, DecisionReason, Vec<ReceiptId>) {
        let c = &self.catalogue;
        let Some(metric) = c.metric(m) else { return (false, None, DecisionReason::NotInCatalogue, vec![]) };
        if !metric.recipients.contains(r) || c.recipient(r).is_none() {
            return (false, None, DecisionReason::NotInCatalogue, vec![]);
        }
        if !c.allows(m, p, r) {
            return (false, None, DecisionReason::PurposeNotAllowed, vec![]);
        }
        let gs: Vec<&RefReceipt> = self
            .receipts
            .iter()
            .filter(|g| {
                g.subject == s
                    && &g.recipient == r
                    && &g.purpose == p
                    && g.metrics.contains(m)
                    && visible(g.recorded, known)
            })
            .collect();
        if let Some(end) = union_end(gs.iter().map(|g| (g.from, g.end(known))).collect(), at) {
            let active: Vec<&&RefReceipt> = gs.iter().filter(|g| g.from <= at && at < g.end(known)).collect();
            let best = active.iter().map(|g| g.end(known)).max().unwrap();
            let ok = active.iter().filter(|g| g.end(known) == best).map(|g| g.id).collect();
            return (true, (end != MAX).then_some(end), DecisionReason::Allowed, ok);
        }
        let lapsed: Vec<&&RefReceipt> = gs.iter().filter(|g| g.from <= at && g.end(known) <= at).collect();
        if let Some(latest) = lapsed.iter().map(|g| g.end(known)).max() {
            // Ties are broken by record order, which the reference does not track: the
            // ledger's receipt must be one of the tied ones.
            let tied: Vec<&&RefReceipt> = lapsed.into_iter().filter(|g| g.end(known) == latest).collect();
            let withdrawn = |g: &RefReceipt| {
                // A withdrawal at the expiry instant ended the receipt too (issue #14, defect 4).
                g.withdrawal.is_some_and(|(w, wr)| visible(wr, known) && w <= g.until.unwrap_or(MAX))
            };
            let ids = tied.iter().map(|g| g.id).collect();
            let reason = if tied.iter().all(|g| withdrawn(g)) {
                DecisionReason::Withdrawn
            } else if tied.iter().all(|g| !withdrawn(g)) {
                DecisionReason::Expired
            } else {
                // A mixed tie: either reason is right; `Allowed` marks "do not compare".
                DecisionReason::Allowed
            };
            return (false, None, reason, ids);
        }
        let pending: Vec<&&RefReceipt> = gs.iter().filter(|g| g.from > at).collect();
        if let Some(first) = pending.iter().map(|g| g.from).min() {
            let ids = pending.iter().filter(|g| g.from == first).map(|g| g.id).collect();
            return (false, None, DecisionReason::NotYetValid, ids);
        }
        (false, None, DecisionReason::NoConsent, vec![])
    }
}

fn names(c: &Catalogue) -> (Vec<RecipientId>, Vec<MetricId>, Vec<PurposeId>) {
    (
        c.recipients().map(|(r, _)| r.clone()).collect(),
        c.metrics().map(|(m, _)| m.clone()).collect(),
        c.purposes().map(|(p, _)| p.clone()).collect(),
    )
}

fn until_ts(u: Option<u64>) -> Option<Timestamp> {
    u.map(t)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]

    /// `check` agrees with the reference on every (recipient, metric, purpose, subject).
    #[test]
    fn check_agrees_with_the_reference(p in plan(), seed in any::<u64>()) {
        let w = World::build(&p, seed);
        let l = w.ledger(None);
        let (rs, ms, ps) = names(&w.catalogue);
        for s in 0..4 {
            for r in &rs {
                for m in &ms {
                    for pu in &ps {
                        let d = l.check_at(r, m, pu, &subject(s), t(p.at), p.known.map(t));
                        let (allowed, until, reason, ok) = w.check(r, m, pu, s, p.at, p.known);
                        prop_assert_eq!(d.allowed(), allowed, "{} {} {} s{}", r, m, pu, s);
                        prop_assert!(
                            d.reason() == reason
                                || (reason == DecisionReason::Allowed
                                    && matches!(d.reason(), DecisionReason::Withdrawn | DecisionReason::Expired)),
                            "{:?} vs {:?}: {} {} {} s{}", d.reason(), reason, r, m, pu, s
                        );
                        prop_assert_eq!(d.until(), until_ts(until));
                        match d.receipt() {
                            Some(id) => prop_assert!(ok.contains(&id), "receipt {:?} not among {:?}: {:?} {} {} {} s{}", id, ok, d, r, m, pu, s),
                            None => prop_assert!(ok.is_empty()),
                        }
                        if p.known.is_none() {
                            prop_assert_eq!(l.check(r, m, pu, &subject(s), t(p.at)), d);
                        }
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    /// subject_access, recipient_view and who_sees agree with the reference and with
    /// `check`; history lists the subject's facts in record order; unconsented
    /// disclosures are exactly those `check` refuses at their time, as known then.
    #[test]
    fn reverse_queries_agree_with_check_and_the_reference(p in plan(), seed in any::<u64>()) {
        let w = World::build(&p, seed);
        let l = w.ledger(None);
        let (rs, ms, ps) = names(&w.catalogue);
        let (at, known) = (p.at, p.known);
        let allowed_any = |r: &RecipientId, m: &MetricId, s: usize| {
            ps.iter().any(|pu| l.check_at(r, m, pu, &subject(s), t(at), known.map(t)).allowed())
        };
        for s in 0..4 {
            let sa = l.subject_access(&subject(s), t(at), known.map(t));
            let got: BTreeMap<(RecipientId, MetricId), _> =
                sa.entries.iter().map(|e| ((e.recipient.clone(), e.metric.clone()), e)).collect();
            for r in &rs {
                for m in &ms {
                    let sees = w.sees(s, r, m, at, known);
                    let entry = got.get(&(r.clone(), m.clone()));
                    prop_assert_eq!(entry.is_some(), sees, "s{} {} {}", s, r, m);
                    let Some(e) = entry else { continue };
                    let window = w.window_end(s, r, m, at, known);
                    prop_assert_eq!(e.window_until, window.map(|x| Until::from_end(t(x))));
                    prop_assert_eq!(e.window_until.is_some(), allowed_any(r, m, s), "reverse vs check");
                    // "For how long": the longest effective hold among the receipts of the
                    // window from `at` to its end, also those starting later in it (issue
                    // #14, defect 4; catalogue maxima are months here, so the receipt's own hold).
                    let hold = window.and_then(|wend| w.receipts.iter()
                        .filter(|g| g.subject == s && &g.recipient == r && g.metrics.contains(m)
                            && visible(g.recorded, known) && g.from < wend && at < g.end(known))
                        .map(|g| g.hold).max());
                    prop_assert_eq!(e.hold.clone(), hold.map(|h| HOLDS[h].0.parse().unwrap()));
                    let held = w.held(s, r, m, at, known);
                    prop_assert_eq!(e.records_held, held.len() as u64);
                    prop_assert_eq!(e.records_until, held.iter().map(|x| t(x.deadline)).max());
                }
            }
            let mut hist = l.history(&Party::Subject(subject(s)), t(0), t(u64::MAX));
            prop_assert!(hist.windows(2).all(|x| (x[0].recorded_at, x[0].seq) < (x[1].recorded_at, x[1].seq)));
            let expect = w.receipts.iter().filter(|g| g.subject == s).map(|g| 1 + usize::from(g.withdrawal.is_some())).sum::<usize>()
                + w.records.iter().filter(|x| x.subject == s).map(|x| 1 + usize::from(x.purge.is_some())).sum::<usize>()
                + w.disclosures.iter().filter(|(d, _)| d.subject == subject(s)).count();
            prop_assert_eq!(hist.len(), expect);
            hist.retain(|h| matches!(h.fact, Fact::ConsentWithdrawn { .. }));
            prop_assert_eq!(hist.len(), w.receipts.iter().filter(|g| g.subject == s && g.withdrawal.is_some()).count());
        }
        for r in &rs {
            let view = l.recipient_view(r, t(at), known.map(t));
            let got: BTreeMap<MetricId, _> = view.metrics.iter().map(|v| (v.metric.clone(), v)).collect();
            for m in &ms {
                let in_window = (0..3).filter(|&s| allowed_any(r, m, s)).count() as u64;
                let sees = (0..3).filter(|&s| w.sees(s, r, m, at, known)).count() as u64;
                let holding = (0..3).filter(|&s| !w.held(s, r, m, at, known).is_empty()).count() as u64;
                match got.get(m) {
                    Some(v) => {
                        prop_assert_eq!(v.subjects_in_window, in_window, "{} {}", r, m);
                        prop_assert_eq!(v.subjects, sees);
                        prop_assert_eq!(v.subjects_with_records, holding);
                        let latest = w.receipts.iter()
                            .filter(|g| &g.recipient == r && g.metrics.contains(m) && visible(g.recorded, known)
                                && g.from <= at && at < g.end(known))
                            .map(|g| g.end(known)).max();
                        prop_assert_eq!(v.consent_until, latest.map(|x| Until::from_end(t(x))));
                    }
                    None => prop_assert_eq!(sees, 0, "{} {} missing", r, m),
                }
                let ws = l.who_sees(&Target::Metric(m.clone()), t(at), known.map(t));
                let from_who = ws.entries.iter().find(|v| &v.recipient == r);
                prop_assert_eq!(from_who, got.get(m).copied());
            }
        }
        let unconsented = l.unconsented_disclosures(t(0), t(u64::MAX));
        let expect: Vec<&Disclosure> = w.disclosures.iter()
            .filter(|(d, a)| !w.check(&d.recipient, &d.metric, &d.purpose, subject_index(&d.subject), *a, Some(*a)).0)
            .map(|(d, _)| d).collect();
        prop_assert_eq!(unconsented.len(), expect.len());
        for u in &unconsented {
            prop_assert!(expect.contains(&&u.disclosure));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    /// Asked as known at K, the ledger answers exactly as a ledger that was only ever
    /// told what was recorded by K — in particular, a withdrawal recorded after K
    /// changes nothing.
    #[test]
    fn as_known_at_is_the_answer_from_back_then(p in plan(), seed in any::<u64>(), k in 0..450u64) {
        let w = World::build(&p, seed);
        let now = w.ledger(None);
        let then = w.ledger(Some(k));
        let (rs, ms, ps) = names(&w.catalogue);
        let at = t(p.at);
        for s in 0..3 {
            let a = now.subject_access(&subject(s), at, Some(t(k)));
            let b = then.subject_access(&subject(s), at, None);
            prop_assert_eq!(&a.entries, &b.entries);
            for r in &rs {
                for m in &ms {
                    for pu in &ps {
                        prop_assert_eq!(
                            now.check_at(r, m, pu, &subject(s), at, Some(t(k))),
                            then.check_at(r, m, pu, &subject(s), at, None)
                        );
                    }
                }
            }
        }
        for r in &rs {
            prop_assert_eq!(now.recipient_view(r, at, Some(t(k))).metrics, then.recipient_view(r, at, None).metrics);
        }
        // A withdrawal recorded after K: as known at K, its receipt still runs.
        for g in w.receipts.iter().filter(|g| g.withdrawal.is_some_and(|(_, wr)| wr > k) && g.recorded <= k) {
            let m = g.metrics.iter().next().unwrap();
            let s = subject(g.subject);
            if g.from <= p.at && p.at < g.until.unwrap_or(MAX) {
                prop_assert!(now.check_at(&g.recipient, m, &g.purpose, &s, at, Some(t(k))).allowed());
            }
        }
    }
}
