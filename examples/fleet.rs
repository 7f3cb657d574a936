//! The main job: a simulated multi-brand fleet, end to end.
//!
//! Thermostats (Calora), watches (Pulsa) and cars (Voltis) report to their brands, to a
//! grid operator (GridCo) and to a research lab. Over simulated months owners give,
//! narrow and withdraw consent; every device privatises its statistics with local DP,
//! tags and seals them; the aggregator ingests them, estimates with confidence intervals
//! (printed beside the true values), answers who sees what for how long, purges what is
//! past its deadline, verifies its audit log and writes an HTML report.
//!
//! Run: `cargo run --release --example fleet [-- --devices N --months M --out DIR
//! --commit-weeks W --seed S --no-tokens --db DB]`. `--seed` (default 0, the fleet of the published figures)
//! changes every device's randomness and the aggregator's keys, so repeated runs give
//! independent draws of the same fleet (`benches/fleet_seeds.sh` runs many). `--db`
//! (default `DIR/fleet.sqlite`, replaced at each run) is the aggregator's SQLite file, or
//! `postgres://user@host:port/db`: an empty PostgreSQL database, which then holds the
//! store, the consent ledger and the audit log as for `confiance serve --db postgres://…`
//! (docs/scaling.md).
//!
//! Every envelope carries report tokens (docs/privacy.md, "Report tokens"): each device
//! fetches, through the aggregator's issuance API, the tokens its coming monthly flushes
//! will spend, ahead of time (`Recorder::tokens_to_fetch`: the fleet's catalogue sets
//! `token_period = "P60D"`; the next period's a flush interval before it starts; no
//! period that starts after the run's end), and
//! the aggregator refuses statistics without one; the aggregator answers each day's
//! requests on every core. `--no-tokens` runs the same fleet without them (no issuance,
//! no tokens required), for comparison.
//!
//! Enrollment is closed (docs/privacy.md, "Device certificates"): the fleet's catalogue
//! names one manufacturer key, which certifies each device's key at the factory; the
//! device posts its certificate before its owner's delegation, and the aggregator accepts
//! the delegation, and issues tokens, only for a certified key. The cost is one Ed25519
//! signature (the factory's) and one verification (the aggregator's) per device; the run
//! prints the time the aggregator spent on them.
//!
//! At the end it prints its cryptographic floor: the unit costs of its unavoidable
//! cryptography (seal, open, signatures of delegations, receipts and withdrawals made and
//! verified, token requests made, answered and finalized, tokens verified), measured at
//! the end of the run on this machine in CPU time per operation, times how often the run
//! did each, divided by the cores; the ratio of its wall time to that floor; and the CPU
//! time the whole run used against its cryptography, which the machine's load does not
//! change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::Instant;

use confiance::Timestamp;
use confiance::catalogue::{Catalogue, MetricKind, Privacy};
use confiance::consent::{
    CertifierKey, ConsentRequest, ConsentState, DeviceKey, Scope, SignedReceipt, SubjectKey,
};
use confiance::envelope::{AeadId, KeyConfig};
use confiance::hazmat::{SeedableRng as _, SeededRng, SingleLifeStorage};
use confiance::ids::{MetricId, PurposeId, RecipientId, SubjectId};
use confiance::pseudonym::DeviceSecret;
use confiance::recorder::{Recorder, RecorderParts, Value};
use confiance::retention::{Duration, RetentionTag};
use confiance::rng::Rng as _;
use confiance::token::{PendingTokens, TokenPeriod, TokenRequest, TokenResponse, TokenScope};
use confiance_aggregator::audit::{CheckpointSigner, Verifier};
use confiance_aggregator::issuer::{Issuer, IssuerSecret, TokenVerifier};
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::ledger::{Fact, Party, Target, Until};
use confiance_aggregator::report::{self, EstimateRow, GatherOptions, LogStatus, ReportData};
use confiance_aggregator::service::{Aggregator, AggregatorConfig, ConsentMessage};
use indicatif::{ProgressBar, ProgressStyle};

const DAY: u64 = 86_400;
const WEEK: u64 = 7 * DAY;
const MONTH: u64 = 30 * DAY;
/// Envelopes staged before a commit is forced (a week at 10^5 devices is about 20 000).
const COMMIT_EVERY: usize = 100_000;

/// One brand: its controller, its statistics (metric, purposes) and its service record.
struct Brand {
    name: &'static str,
    controller: &'static str,
    stats: &'static [&'static str],
    record: &'static str,
}

const BRANDS: [Brand; 3] = [
    Brand {
        name: "thermostat",
        controller: "calora",
        stats: &["thermostat.mode", "thermostat.setpoint", "thermostat.heating-minutes"],
        record: "thermostat.fault-code",
    },
    Brand {
        name: "watch",
        controller: "pulsa",
        stats: &["watch.activity", "watch.always-on-display", "watch.heart-rate-zone"],
        record: "watch.battery-health",
    },
    Brand {
        name: "car",
        controller: "voltis",
        stats: &["car.drive-mode", "car.charging-kwh"],
        record: "car.odometer-km",
    },
];

/// Consent each owner may give, with the share of owners who give it.
const OFFERS: [(&str, &str, u32); 3] =
    [("brand", "product-improvement", 90), ("gridco", "grid-balancing", 50), ("lab-eu", "research", 30)];

/// The manufacturer's certifier key (in production: in the factory's HSM).
const CERTIFIER_SEED: [u8; 32] = [0xFA; 32];

/// What a device sends, in simulated time.
enum Traffic {
    /// The device's certificate from the factory (posted before its delegation).
    Certificate(Vec<u8>),
    /// The owner's phone enrolls the device (a delegation signed by the subject key).
    Delegation(Vec<u8>),
    Receipt(Vec<u8>),
    Withdrawal(Vec<u8>),
    /// A token request of device `.0` (signed by its device key).
    TokenRequest(u64, Box<TokenRequest>),
    Envelope(Vec<u8>),
}

/// What the aggregator answered to a device's token request.
type TokenAnswer = (u64, Result<TokenResponse, (&'static str, TokenScope)>);

/// The truth behind the estimates: per (recipient, metric) and the deadline of the
/// partition the report lands in, counts per category or the sum of numeric values, over
/// the reports sent whose audience holds the recipient. A release counts only the
/// partitions still held, so the truth it is compared with is [`Truth::held`].
#[derive(Default)]
struct Truth<'a> {
    cats: BTreeMap<(&'a str, &'a str, Timestamp), Vec<u64>>,
    sums: BTreeMap<(&'a str, &'a str, Timestamp), (f64, u64)>,
}

/// What a release of one (recipient, metric) at some instant is compared with.
enum Held {
    Counts(Vec<u64>),
    Sum(f64, u64),
}

impl<'a> Truth<'a> {
    fn add(&mut self, key: (&'a str, &'a str, Timestamp), value: Value, kind: &MetricKind) {
        match (value, kind) {
            (Value::Bool(b), MetricKind::Boolean) => {
                self.cats.entry(key).or_insert_with(|| vec![0; 2])[usize::from(b)] += 1;
            }
            (Value::Category(c), MetricKind::Categorical { labels }) => {
                self.cats.entry(key).or_insert_with(|| vec![0; labels.len()])[c as usize] += 1;
            }
            (Value::Int(x), MetricKind::Count { max }) => {
                let e = self.sums.entry(key).or_default();
                e.0 += x.clamp(0, *max as i64) as f64;
                e.1 += 1;
            }
            (Value::Int(x), _) => {
                let e = self.sums.entry(key).or_default();
                e.0 += x as f64;
                e.1 += 1;
            }
            _ => {}
        }
    }

    /// The truth over the partitions of `key` whose deadline is after `now`.
    fn held(&self, key: (&str, &str), now: Timestamp) -> Option<Held> {
        let live = |k: &(&str, &str, Timestamp)| k.0 == key.0 && k.1 == key.1 && k.2 > now;
        let mut counts: Option<Vec<u64>> = None;
        for (_, c) in self.cats.iter().filter(|(k, _)| live(k)) {
            let acc = counts.get_or_insert_with(|| vec![0; c.len()]);
            for (a, b) in acc.iter_mut().zip(c) {
                *a += b;
            }
        }
        if let Some(c) = counts {
            return Some(Held::Counts(c));
        }
        let mut sum: Option<(f64, u64)> = None;
        for (_, (s, n)) in self.sums.iter().filter(|(k, _)| live(k)) {
            let acc = sum.get_or_insert((0.0, 0));
            acc.0 += s;
            acc.1 += n;
        }
        sum.map(|(s, n)| Held::Sum(s, n))
    }

    fn merge(&mut self, o: Self) {
        for (k, v) in o.cats {
            let e = self.cats.entry(k).or_insert_with(|| vec![0; v.len()]);
            for (a, b) in e.iter_mut().zip(v) {
                *a += b;
            }
        }
        for (k, (s, n)) in o.sums {
            let e = self.sums.entry(k).or_default();
            e.0 += s;
            e.1 += n;
        }
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The command line, checked before a long run starts: an unknown flag (`--device`) or a
/// value that is not a whole number (`--devices 2k`) would otherwise run the full-size
/// default silently.
fn check_args() -> Result<(), String> {
    const NUMBERS: [&str; 4] = ["--devices", "--seed", "--months", "--commit-weeks"];
    const TEXTS: [&str; 2] = ["--out", "--db"];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        let a = a.as_str();
        if a == "--no-tokens" {
            continue;
        }
        if !NUMBERS.contains(&a) && !TEXTS.contains(&a) {
            return Err(format!("unknown argument `{a}`"));
        }
        let v = rest.next().ok_or_else(|| format!("{a} needs a value"))?;
        if NUMBERS.contains(&a) && v.parse::<u64>().is_err() {
            return Err(format!("{a} {v}: not a whole number"));
        }
    }
    Ok(())
}

/// The value after `name` on the command line, if any.
fn text_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
}

/// The aggregator on `db`: an SQLite file, replaced by a new one, or with a
/// `postgres://…` URL a PostgreSQL database shared the way several `confiance serve`
/// processes share one (docs/scaling.md: `PgStore` and `Ledger::open_postgres`). The
/// fleet compares its estimates with the truth of this run only, so the database must
/// be empty; it is not emptied for you.
fn open_aggregator(
    db: &str,
    catalogue: &Catalogue,
    keys: KeyStore,
    config: AggregatorConfig,
) -> Result<Aggregator, Box<dyn std::error::Error>> {
    if !(db.starts_with("postgres://") || db.starts_with("postgresql://")) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{db}{suffix}"));
        }
        return Ok(Aggregator::open(db, catalogue.clone(), keys, config)?);
    }
    use confiance_aggregator::ledger::Ledger;
    use confiance_aggregator::store::{PgStore, Store as _};
    let store = PgStore::connect(db)?;
    let ledger = Ledger::open_postgres(db, catalogue.clone())?;
    let held = ledger.stats();
    if store.audit_log()?.size() > 0 || !store.partitions()?.is_empty() || held.receipts + held.partitions > 0
    {
        return Err(format!("{db} is not empty: the fleet needs a new database (createdb)").into());
    }
    println!("aggregator store, ledger and audit log on PostgreSQL (--db)");
    Ok(Aggregator::with_store(Box::new(store), ledger, catalogue.clone(), keys, config)?)
}

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("a valid id")
}

/// A value for `metric` drawn from the brand's usage pattern (skewed, as real use is).
fn draw(kind: &MetricKind, rng: &mut SeededRng) -> Value {
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    match kind {
        MetricKind::Boolean => Value::Bool(u < 0.3),
        MetricKind::Categorical { labels } => {
            // Zipf(1): label i with weight 1/(i+1).
            let d = labels.len();
            let total: f64 = (1..=d).map(|i| 1.0 / i as f64).sum();
            let mut acc = 0.0;
            let mut pick = d - 1;
            for i in 0..d {
                acc += 1.0 / (i + 1) as f64 / total;
                if u < acc {
                    pick = i;
                    break;
                }
            }
            Value::Category(pick as u32)
        }
        MetricKind::Numeric { min, max } => {
            let (lo, hi) = (*min as f64, *max as f64);
            // A tent around 40% of the range.
            let v = rng.next_u64() as f64 / u64::MAX as f64;
            let x = lo + (hi - lo) * (0.4 * (u + v) / 2.0 + 0.6 * u * v);
            Value::Int(x.round().clamp(lo, hi) as i64)
        }
        MetricKind::Count { max } => Value::Int((u * u * (*max as f64)).round() as i64),
    }
}

/// A brand's metrics as the catalogue holds them, looked up once.
struct Plan<'a> {
    stats: Vec<(&'a MetricId, &'a confiance::catalogue::Metric)>,
    record: (&'a MetricId, &'a confiance::catalogue::Metric),
}

impl<'a> Plan<'a> {
    fn of(brand: &Brand, catalogue: &'a Catalogue) -> Self {
        let find =
            |name: &str| catalogue.metrics().find(|(m, _)| m.as_str() == name).expect("catalogue metric");
        Self { stats: brand.stats.iter().map(|m| find(m)).collect(), record: find(brand.record) }
    }
}

/// One simulated device between periods: its recorder (consent state, queue, outbox), its
/// RNG and where it is in its life.
struct Device {
    brand: &'static Brand,
    brand_index: usize,
    /// The recorder, sharing the fleet's one catalogue.
    dev: Recorder<SeededRng, SingleLifeStorage, Arc<Catalogue>>,
    rng: SeededRng,
    /// Receipt ids of the statistics consents, in the order given.
    receipts: Vec<confiance::ids::ReceiptId>,
    /// 0..10: withdraws its first consent at `change_at`; 10..15: narrows it; else keeps it.
    change: u32,
    change_at: Timestamp,
    changed: bool,
    /// Its next weekly tick.
    tick: Timestamp,
    next_flush: Timestamp,
    /// Messages waiting for the moment the device sends them.
    outbox: Vec<(Timestamp, Traffic)>,
    /// Its index in the fleet (where the aggregator's token answers go).
    index: u64,
    /// Its device key (a copy of the recorder's), which signs its token requests.
    key: DeviceKey,
    /// The token scopes (recipients, purpose) it asked tokens for, with the last token
    /// period it asked for; `None` when tokens are off.
    token_scopes: Option<BTreeMap<(std::collections::BTreeSet<RecipientId>, PurposeId), u64>>,
    /// Readings recorded but not yet flushed, as (statistic index in the plan, recipient
    /// index in the metric's recipients, value): the truth counts a reading only once it
    /// has been sent, so that a release is compared with the reports it can hold.
    unsent: Vec<Unsent>,
    /// The run's end: it asks no tokens for a period starting after it.
    end: Timestamp,
    /// Tokens it put in envelopes.
    tokens_spent: u64,
    /// The first token period it asked tokens for.
    token_from: Option<u64>,
}

/// A reading recorded but not yet sent, for one recipient of its audience.
struct Unsent {
    /// Statistic index in the plan, recipient index in the metric's recipients.
    stat: usize,
    recipient: usize,
    value: Value,
    /// The deadline of the partition it lands in.
    deadline: Timestamp,
    /// What its report token scope is made of: the purpose's index in the metric's
    /// purposes, the audience as a bit mask over the metric's recipients, and its
    /// bucket's start (the report's time).
    purpose: usize,
    audience: u64,
    time: Timestamp,
}

impl Device {
    /// A new owner joins in the first 20 days and gives consent; the receipts wait in the
    /// outbox for the day it joins, after the device's factory certificate (by `maker`)
    /// and its delegation.
    #[allow(
        clippy::too_many_arguments,
        reason = "the run's parameters, each used once, at the device's start"
    )]
    fn new(
        d: u64,
        seed: u64,
        tokens: bool,
        catalogue: &Arc<Catalogue>,
        config: KeyConfig,
        start: Timestamp,
        months: u64,
        maker: &CertifierKey,
    ) -> Self {
        let brand = &BRANDS[(d % 3) as usize];
        // Seed 0 keeps the streams of the published runs; another seed moves them all.
        let salt = seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut rng = SeededRng::seed_from_u64(0xF1EE7 ^ d.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt);
        let joined = start.saturating_add_secs(rng.next_u64() % (20 * DAY));
        // The owner's phone holds the subject key and delegates the device's key from the
        // day it joins; the device signs its receipts with its own key.
        let (owner, key) = (SubjectKey::generate(&mut rng), DeviceKey::generate(&mut rng));
        let signer = DeviceKey::from_bytes(&key.to_bytes());
        let delegation = owner.delegate(key.public_key(), joined, None, joined).expect("validity");
        // Certified at the factory for 20 years from the day it joins (the model: its brand).
        let certificate =
            maker.certify(key.public_key(), brand.name, joined, joined.saturating_add_secs(20 * 365 * DAY));
        let mut outbox = vec![
            (joined, Traffic::Certificate(certificate.expect("a printable model, a validity").to_bytes())),
            (joined, Traffic::Delegation(delegation.to_bytes())),
        ];
        let parts = RecorderParts {
            catalogue: Arc::clone(catalogue),
            consent: ConsentState::delegated(key, delegation).expect("the device's own delegation"),
            pseudonyms: DeviceSecret::generate(&mut rng),
            controller: id(brand.controller),
            key_configs: vec![config],
            rng: SeededRng::seed_from_u64(d ^ salt),
        };
        let mut dev = Recorder::new(parts, SingleLifeStorage);
        dev.require_tokens(tokens);
        let mut receipts = Vec::new();
        for (who, purpose, share) in OFFERS {
            let recipient = if who == "brand" { brand.controller } else { who };
            let r: RecipientId = id(recipient);
            let p: PurposeId = id(purpose);
            let metrics: Vec<MetricId> = brand
                .stats
                .iter()
                .map(|m| id::<MetricId>(m))
                .filter(|m| catalogue.allows(m, &p, &r))
                .collect();
            if metrics.is_empty() || rng.next_u32() % 100 >= share {
                continue;
            }
            let hold = ["P30D", "P90D", "P6M"][(rng.next_u32() % 3) as usize].parse().expect("period");
            if let Ok(b) = dev.give_consent(ConsentRequest::new(r, p, Scope::metrics(metrics), hold), joined)
            {
                if let Ok(s) = SignedReceipt::from_bytes(&b) {
                    receipts.push(s.id());
                }
                outbox.push((joined, Traffic::Receipt(b)));
            }
        }
        if rng.next_u32() % 100 < 70 {
            // A year, or the record's maximum hold if shorter: a device signs no longer hold.
            let one_year: Duration = "P1Y".parse().expect("period");
            let max = catalogue.metric(&id::<MetricId>(brand.record)).map(|m| m.max_hold.clone());
            let hold = max.filter(|m| m.is_within(&one_year)).unwrap_or(one_year);
            let b = dev.give_consent(
                ConsentRequest::new(
                    id(brand.controller),
                    id("service"),
                    Scope::metrics([id(brand.record)]),
                    hold,
                ),
                joined,
            );
            if let Ok(b) = b {
                outbox.push((joined, Traffic::Receipt(b)));
            }
        }
        // Some owners change their mind once: 10% withdraw their first consent, 5% narrow it.
        let change = rng.next_u32() % 100;
        let change_at = joined.saturating_add_secs(MONTH + rng.next_u64() % ((months.max(2) - 1) * MONTH));
        Self {
            brand,
            brand_index: (d % 3) as usize,
            dev,
            rng,
            receipts,
            change,
            change_at,
            changed: false,
            tick: joined.saturating_add_secs(DAY),
            next_flush: joined.saturating_add_secs(MONTH),
            outbox,
            index: d,
            key: signer,
            token_scopes: tokens.then(BTreeMap::new),
            unsent: Vec::new(),
            end: start.saturating_add_secs(months * MONTH),
            tokens_spent: 0,
            token_from: None,
        }
    }

    /// Asks for the report tokens its coming monthly flushes will plausibly spend
    /// (`Recorder::tokens_to_fetch`), none for a period that starts after the run's end;
    /// the requests go out with the week's traffic. A refused request stays pending in
    /// the recorder: that scope and period are not asked for again.
    fn fetch_tokens(&mut self, t: Timestamp, directory: &Issuer) {
        let Some(scopes) = self.token_scopes.as_mut() else { return };
        self.token_from.get_or_insert(directory.period_at(t).0);
        for (scope, count) in self.dev.tokens_to_fetch(t, MONTH) {
            // No tokens for a period the run never reaches: they would never be spent.
            if scope.period.start(directory.period_secs()) >= self.end {
                continue;
            }
            let through = scopes.entry((scope.recipients.clone(), scope.purpose.clone())).or_insert(0);
            *through = (*through).max(scope.period.0);
            let Ok(key) = directory.public_key(&scope) else { continue };
            if let Some(request) = self.dev.token_request(&self.key, scope, key, count) {
                self.outbox.push((t, Traffic::TokenRequest(self.index, Box::new(request))));
            }
        }
    }

    /// Tokens it holds, over its scopes and the periods it asked tokens for.
    fn tokens_held(&self) -> u64 {
        let Some(scopes) = self.token_scopes.as_ref() else { return 0 };
        let Some(first) = self.token_from else { return 0 };
        let mut held = 0;
        for ((recipients, purpose), through) in scopes {
            for period in first..=*through {
                let scope = TokenScope {
                    recipients: recipients.clone(),
                    purpose: purpose.clone(),
                    period: TokenPeriod(period),
                };
                held += self.dev.tokens_held(&scope) as u64;
            }
        }
        held
    }

    /// The tokens it still holds at the run's end: (those of periods whose last flush
    /// — the first after the period's end — came before the end, which the device
    /// fetched and will never spend; those it could still spend after the run).
    fn tokens_unspent(&self, directory: &Issuer) -> (u64, u64) {
        let (Some(scopes), Some(first)) = (self.token_scopes.as_ref(), self.token_from) else {
            return (0, 0);
        };
        let (mut over, mut open) = (0, 0);
        for ((recipients, purpose), through) in scopes {
            for period in first..=*through {
                let scope = TokenScope {
                    recipients: recipients.clone(),
                    purpose: purpose.clone(),
                    period: TokenPeriod(period),
                };
                let held = self.dev.tokens_held(&scope) as u64;
                if scope.period.end(directory.period_secs()).saturating_add_secs(MONTH) <= self.end {
                    over += held;
                } else {
                    open += held;
                }
            }
        }
        (over, open)
    }

    /// Takes the aggregator's answer to one of its token requests. A refused request
    /// (consent withdrawn, say) stays pending in the recorder, so that scope and period
    /// are not asked for again.
    fn take_tokens(&mut self, answer: &Result<TokenResponse, (&'static str, TokenScope)>) {
        if let Ok(response) = answer {
            self.dev.take_token_response(response);
        }
    }

    /// Lives until `until` (exclusive): a weekly tick records every statistic, a monthly
    /// one flushes. Appends to `out` what it sends before `until` and adds what it really
    /// sent to `truth` (readings still queued at the end are not in any release).
    fn run_until<'a>(
        &mut self,
        until: Timestamp,
        directory: &Issuer,
        catalogue: &'a Catalogue,
        plan: &Plan<'a>,
        truth: &mut Truth<'a>,
        out: &mut Vec<(Timestamp, Traffic)>,
    ) {
        while self.tick < until {
            let t = self.tick;
            if !self.changed && t >= self.change_at {
                self.changed = true;
                self.change_mind();
            }
            self.record_week(t, catalogue, plan);
            self.fetch_tokens(t, directory);
            if t >= self.next_flush {
                let (record, meta) = plan.record;
                let v = draw(&meta.kind, &mut self.rng);
                let _ = self.dev.record_service(record, v, t);
                let held = self.tokens_held();
                for frame in self.dev.flush(t) {
                    self.dev.acknowledge(&frame);
                    self.outbox.push((t, Traffic::Envelope(frame)));
                }
                // A flush only takes tokens out (to spend them).
                self.tokens_spent += held.saturating_sub(self.tokens_held());
                // Readings waiting for a token are not sent yet: the truth counts them at
                // the flush that sends them.
                let waiting = self.dev.tokens_needed();
                let unsent = core::mem::take(&mut self.unsent);
                for u in unsent {
                    let (metric, meta) = plan.stats[u.stat];
                    if !waiting.is_empty() {
                        let scope = TokenScope {
                            recipients: meta
                                .recipients
                                .iter()
                                .enumerate()
                                .filter(|(i, _)| u.audience & (1 << i) != 0)
                                .map(|(_, r)| r.clone())
                                .collect(),
                            purpose: meta
                                .purposes
                                .iter()
                                .nth(u.purpose)
                                .cloned()
                                .unwrap_or_else(|| id("none")),
                            period: directory.period_at(u.time),
                        };
                        if waiting.contains_key(&scope) {
                            self.unsent.push(u);
                            continue;
                        }
                    }
                    if let Some(r) = meta.recipients.iter().nth(u.recipient) {
                        truth.add((r.as_str(), metric.as_str(), u.deadline), u.value, &meta.kind);
                    }
                }
                self.next_flush = self.next_flush.saturating_add_secs(MONTH);
            }
            self.tick = t.saturating_add_secs(WEEK);
        }
        let (now, later): (Vec<_>, Vec<_>) =
            core::mem::take(&mut self.outbox).into_iter().partition(|(t, _)| *t < until);
        out.extend(now);
        self.outbox = later;
    }

    /// Withdraws or narrows the first consent at `change_at`; the message goes out with
    /// the next monthly flush (the ledger learns it late: a bitemporal fact).
    fn change_mind(&mut self) {
        let Some(first) = self.receipts.first().copied() else { return };
        let send = self.next_flush.max(self.tick);
        if self.change < 10 {
            if let Ok(w) = self.dev.withdraw_consent(&first, self.change_at) {
                self.outbox.push((send, Traffic::Withdrawal(w)));
            }
        } else if self.change < 15 {
            let covered: Vec<MetricId> = self
                .dev
                .consent()
                .get(&first)
                .map(|e| match &e.receipt.receipt().scope {
                    Scope::Metrics(m) => m.iter().cloned().collect(),
                    Scope::Categories(_) => Vec::new(),
                })
                .unwrap_or_default();
            if covered.len() > 1
                && let Ok((w, r)) = self.dev.narrow_consent(
                    &first,
                    Scope::metrics(covered.into_iter().take(1)),
                    self.change_at,
                )
            {
                self.outbox.push((send, Traffic::Withdrawal(w)));
                self.outbox.push((send, Traffic::Receipt(r)));
            }
        }
    }

    /// One weekly reading of every statistic of the brand, privatised and queued; once
    /// sent, the truth counts it for each recipient the device's consent lets see it.
    fn record_week(&mut self, t: Timestamp, catalogue: &Catalogue, plan: &Plan<'_>) {
        for (si, &(metric, meta)) in plan.stats.iter().enumerate() {
            let value = draw(&meta.kind, &mut self.rng);
            for purpose in &meta.purposes {
                let before = self.dev.counters().recorded;
                let _ = self.dev.record(metric, purpose, value, t);
                if self.dev.counters().recorded == before {
                    continue;
                }
                // The audience the recorder tags, and the deadline of the partition the
                // report lands in: the tag's hold from the end of its time bucket.
                let audience: Vec<(usize, &RecipientId)> = meta
                    .recipients
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        self.dev.consent().active_receipt(catalogue, r, metric, purpose, t).is_some()
                    })
                    .collect();
                let Ok(tag) = RetentionTag::for_statistic(
                    catalogue,
                    self.dev.consent(),
                    metric,
                    purpose,
                    audience.iter().map(|(_, r)| (*r).clone()),
                    t,
                ) else {
                    continue;
                };
                let bucket = meta.bucket_secs();
                let deadline = tag.hold().deadline_from(t.truncate(bucket).saturating_add_secs(bucket)).at;
                let mask = audience.iter().fold(0u64, |m, (ri, _)| m | (1 << ri));
                let pi = meta.purposes.iter().position(|p| p == purpose).unwrap_or(0);
                for (ri, _) in audience {
                    self.unsent.push(Unsent {
                        stat: si,
                        recipient: ri,
                        value,
                        deadline,
                        purpose: pi,
                        audience: mask,
                        time: t.truncate(bucket),
                    });
                }
            }
        }
    }
}

/// CPU seconds the calling thread has run, to the nanosecond (Linux
/// `/proc/thread-self/schedstat`, whose first field is the time on a CPU); `None` elsewhere.
/// Unlike a wall clock it does not count the time another process had the core, so unit
/// costs measured with it do not grow with the machine's load.
fn thread_run_secs() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 * 1e-9)
}

/// CPU seconds (user and system) the whole process has used, its finished threads
/// included (Linux `/proc/self/stat`; `None` elsewhere).
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok());
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// CPU seconds the calling thread has used (Linux `/proc/thread-self/stat`; 0 elsewhere).
fn thread_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else { return 0.0 };
    // Fields after the command name (which ends with ')'), from the state: utime and stime
    // are the 12th and 13th, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The date of an instant (`2026-01-03`).
fn day(t: Timestamp) -> String {
    t.to_rfc3339().chars().take(10).collect()
}

/// "until 2026-04-01" or "until withdrawn".
fn until(u: Until) -> String {
    match u {
        Until::At(t) => format!("until {}", day(t)),
        Until::Withdrawn => "until withdrawn".to_string(),
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("  {msg:<22} [{bar:40}] {pos:>7}/{len:7} {elapsed_precise} eta {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Err(e) = check_args() {
        eprintln!(
            "fleet: {e}\nusage: fleet [--devices N] [--months M] [--seed S] [--commit-weeks W] [--out DIR] [--db FILE|postgres://…] [--no-tokens]"
        );
        std::process::exit(2);
    }
    let devices = arg("--devices", 100_000);
    let seed = arg("--seed", 0);
    let months = arg("--months", 6).max(2);
    let commit_weeks = arg("--commit-weeks", 4).max(1);
    let tokens_on = !std::env::args().any(|a| a == "--no-tokens");
    let out_dir = text_arg("--out").map_or_else(|| PathBuf::from("out"), PathBuf::from);
    let started = Instant::now();
    std::fs::create_dir_all(&out_dir)?;
    let db = text_arg("--db").unwrap_or_else(|| out_dir.join("fleet.sqlite").display().to_string());

    // Token periods of two months: a reading goes out up to ~6 weeks after its bucket
    // starts (weekly buckets, flushes every 28–35 days), and a token is good until one
    // period after its own ends. Each scope needs two or three tokens per period, fetched
    // ahead.
    let toml = include_str!("catalogue.toml").replacen(
        "[limits]\n",
        "[limits]\ntoken_period = \"P60D\"\ntokens_per_period = 6\n",
        1,
    );
    let maker = CertifierKey::from_bytes(&CERTIFIER_SEED);
    let toml = format!("{toml}\n[enrollment]\ncertifiers = [\"{}\"]\n", maker.public_key());
    let catalogue = Catalogue::from_toml_str(&toml)?;
    println!(
        "confiance fleet: {devices} devices, {months} months, seed {seed}, {}",
        if tokens_on { "report tokens" } else { "no report tokens (--no-tokens)" }
    );
    println!("catalogue `{}` v{} digest {}", catalogue.name(), catalogue.version(), catalogue.digest());
    let start = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z")?;
    let end = start.saturating_add_secs(months * MONTH);
    let mut rng = SeededRng::seed_from_u64(2026 ^ seed);
    let mut keys = KeyStore::new(30 * DAY);
    let config = keys.generate(AeadId::ChaCha20Poly1305, start, end.saturating_add_secs(DAY), &mut rng)?;
    let agg_config = AggregatorConfig { max_report_age_secs: 2 * MONTH, ..AggregatorConfig::default() };
    let mut agg = open_aggregator(&db, &catalogue, keys, agg_config)?;
    // The token issuer's secret. Devices blind against the scope keys of the key
    // directory (`GET /v1/token-keys`); here the workers compute the same public keys.
    let issuer_secret = IssuerSecret::generate(&mut rng);
    let directory = Issuer::new(issuer_secret.clone(), &catalogue)?;
    if tokens_on {
        agg.enable_tokens(issuer_secret)?;
    }
    let (mut token_requests, mut tokens_issued, mut token_refusals) =
        (0u64, 0u64, BTreeMap::<&str, u64>::new());
    let signer = CheckpointSigner::from_secret_bytes("confiance.example/fleet", &[42; 32])?;

    // Devices live on worker threads, each worker owning its share of them for the whole
    // run; time advances one week at a time. A worker sends each week's traffic as soon
    // as it has simulated it and goes on with the next week while this thread ingests —
    // in global time order, with the aggregator's clock at the traffic's time. The
    // channels hold one week per worker: memory is bounded by a few weeks of traffic.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8) as u64;
    let weeks = (end.as_secs() - start.as_secs()).div_ceil(WEEK);
    let pb = bar(weeks, "weeks ingested");
    let mut truth = Truth::default();
    let mut subjects = Vec::new();
    // Where the ingest thread's time goes: waiting for the devices, consent, staging,
    // committing; and the whole loop.
    let mut spent = [std::time::Duration::ZERO; 6];
    let mut waiting_for_token = 0u64;
    // Reports the devices dropped unsent: their hold ended while they were queued.
    let mut expired = 0u64;
    let mut tokens_spent = 0u64;
    let mut unspent = (0u64, 0u64);
    let mut refused_by = BTreeMap::<&str, u64>::new();
    let mut ingest_cpu = 0.0;
    let (mut envelopes, mut reports, mut refused, mut receipts, mut withdrawals, mut enrolled) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    // Device certificates accepted, and the ingest thread's time on them.
    let (mut certified, mut certifying) = (0u64, std::time::Duration::ZERO);
    let mut delegating = std::time::Duration::ZERO;
    // Reports refused one by one (the answer of an accepted envelope lists them).
    let mut refused_reports = 0u64;
    let mut frame_bytes = 0u64;
    // The routine purges during the run: when, partitions and records deleted.
    let mut routine_purges: Vec<(Timestamp, u64, u64)> = Vec::new();
    // One catalogue for every recorder (a clone each was most of the fleet's memory).
    let shared = Arc::new(catalogue.clone());
    std::thread::scope(|s| -> Result<(), Box<dyn std::error::Error>> {
        let mut rxs = Vec::new();
        let mut answer_txs = Vec::new();
        let mut handles = Vec::new();
        for w in 0..workers {
            let (tx, rx) = mpsc::sync_channel::<Vec<(Timestamp, Traffic)>>(1);
            rxs.push(rx);
            // The aggregator's answers to a week's token requests, one message a week.
            let (answer_tx, answers) = mpsc::channel::<Vec<TokenAnswer>>();
            answer_txs.push(answer_tx);
            let (catalogue, shared, directory, maker) = (&catalogue, &shared, &directory, &maker);
            handles.push(s.spawn(move || {
                let mut truth = Truth::default();
                let plans: Vec<Plan<'_>> = BRANDS.iter().map(|b| Plan::of(b, catalogue)).collect();
                let mut fleet: Vec<Device> = (w..devices)
                    .step_by(workers as usize)
                    .map(|d| Device::new(d, seed, tokens_on, shared, config, start, months, maker))
                    .collect();
                let subjects: Vec<(u64, &str, SubjectId)> = (w..devices.min(4))
                    .step_by(workers as usize)
                    .zip(&fleet)
                    .map(|(i, d)| (i, d.brand.name, d.dev.subject()))
                    .collect();
                for week in 0..weeks {
                    // The answers to the requests of two weeks ago (the aggregator ingests
                    // last week's traffic meanwhile): deterministic, and the pipeline
                    // keeps running.
                    if week >= 2 {
                        let Ok(answers) = answers.recv() else { break };
                        for (d, answer) in answers {
                            if let Some(dev) = fleet.get_mut(((d - w) / workers) as usize) {
                                dev.take_tokens(&answer);
                            }
                        }
                    }
                    let until = start.saturating_add_secs((week + 1) * WEEK).min(end);
                    let mut out = Vec::new();
                    for d in &mut fleet {
                        d.run_until(until, directory, catalogue, &plans[d.brand_index], &mut truth, &mut out);
                    }
                    if tx.send(out).is_err() {
                        break;
                    }
                }
                let waiting: u64 = fleet.iter().map(|d| u64::from(d.dev.counters().waiting_for_token)).sum();
                let spent: u64 = fleet.iter().map(|d| d.tokens_spent).sum();
                let expired: u64 = fleet.iter().map(|d| u64::from(d.dev.counters().expired)).sum();
                let unspent = fleet
                    .iter()
                    .map(|d| d.tokens_unspent(directory))
                    .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
                (truth, subjects, waiting, spent, expired, unspent)
            }));
        }
        let mut last = start;
        let ingest_started = Instant::now();
        for week in 0..weeks {
            let mut traffic = Vec::new();
            let t0 = Instant::now();
            for rx in &rxs {
                traffic.extend(rx.recv().map_err(|_| "a device worker stopped")?);
            }
            spent[0] += t0.elapsed();
            // Per simulated day: receipts, then withdrawals, then envelopes — so the
            // consent messages of a day go to the ledger in one durable batch before the
            // envelopes that need them.
            let rank = |tr: &Traffic| match tr {
                Traffic::Certificate(_) => 0,
                Traffic::Delegation(_) => 1,
                Traffic::Receipt(_) => 2,
                Traffic::Withdrawal(_) => 3,
                Traffic::TokenRequest(..) => 4,
                Traffic::Envelope(_) => 5,
            };
            let mut answers: Vec<Vec<TokenAnswer>> = (0..workers).map(|_| Vec::new()).collect();
            traffic.sort_by_key(|(t, tr)| (t.truncate(DAY), rank(tr), *t));
            let mut i = 0;
            while i < traffic.len() {
                let day = traffic[i].0.truncate(DAY);
                let j = i + traffic[i..].iter().take_while(|(t, _)| t.truncate(DAY) == day).count();
                let certificates: Vec<(&[u8], Timestamp)> = traffic[i..j]
                    .iter()
                    .filter_map(|(t, tr)| match tr {
                        Traffic::Certificate(b) => Some((b.as_slice(), *t)),
                        _ => None,
                    })
                    .collect();
                if !certificates.is_empty() {
                    let t0 = Instant::now();
                    for r in agg.receive_certificates(&certificates)? {
                        match r {
                            Ok(_) => certified += 1,
                            Err(e) => pb.println(format!("  refused certificate: {e}")),
                        }
                    }
                    certifying += t0.elapsed();
                    spent[1] += t0.elapsed();
                }
                let delegations: Vec<(&[u8], Timestamp)> = traffic[i..j]
                    .iter()
                    .filter_map(|(t, tr)| match tr {
                        Traffic::Delegation(b) => Some((b.as_slice(), *t)),
                        _ => None,
                    })
                    .collect();
                if !delegations.is_empty() {
                    let t0 = Instant::now();
                    for r in agg.receive_delegations(&delegations)? {
                        match r {
                            Ok(_) => enrolled += 1,
                            Err(e) => pb.println(format!("  refused delegation: {e}")),
                        }
                    }
                    delegating += t0.elapsed();
                    spent[1] += t0.elapsed();
                }
                let consent: Vec<(ConsentMessage<'_>, Timestamp)> = traffic[i..j]
                    .iter()
                    .filter_map(|(t, tr)| match tr {
                        Traffic::Receipt(b) => Some((ConsentMessage::Receipt(b), *t)),
                        Traffic::Withdrawal(b) => Some((ConsentMessage::Withdrawal(b), *t)),
                        Traffic::Certificate(_)
                        | Traffic::Delegation(_)
                        | Traffic::TokenRequest(..)
                        | Traffic::Envelope(_) => None,
                    })
                    .collect();
                if !consent.is_empty() {
                    let t0 = Instant::now();
                    let answers = agg.receive_consent_batch(&consent)?;
                    spent[1] += t0.elapsed();
                    for (r, (m, _)) in answers.iter().zip(&consent) {
                        match (r, m) {
                            (Ok(_), ConsentMessage::Receipt(_)) => receipts += 1,
                            (Ok(_), ConsentMessage::Withdrawal(_)) => withdrawals += 1,
                            (Err(e), _) => pb.println(format!("  refused consent message: {e}")),
                        }
                    }
                }
                // The day's token requests, answered in one transaction at the time of the
                // first (a request is for its time's period or the next).
                let (who, requests): (Vec<u64>, Vec<TokenRequest>) = traffic[i..j]
                    .iter()
                    .filter_map(|(_, tr)| match tr {
                        Traffic::TokenRequest(d, r) => Some((*d, (**r).clone())),
                        _ => None,
                    })
                    .unzip();
                if let Some(&(first, _)) =
                    traffic[i..j].iter().find(|(_, tr)| matches!(tr, Traffic::TokenRequest(..)))
                {
                    let t0 = Instant::now();
                    let results = agg.issue_tokens_many(&requests, first, &mut rng)?;
                    spent[5] += t0.elapsed();
                    token_requests += requests.len() as u64;
                    for ((d, request), r) in who.into_iter().zip(requests).zip(results) {
                        let answer = match r {
                            Ok(response) => {
                                tokens_issued += response.evaluated.len() as u64;
                                Ok(response)
                            }
                            Err(e) => {
                                *token_refusals.entry(e.code()).or_default() += 1;
                                Err((e.code(), request.scope))
                            }
                        };
                        answers[(d % workers) as usize].push((d, answer));
                    }
                }
                // The day's envelopes, opened on every core and applied in time order.
                let frames: Vec<(&[u8], Timestamp)> = traffic[i..j]
                    .iter()
                    .filter_map(|(t, tr)| match tr {
                        Traffic::Envelope(f) => Some((f.as_slice(), *t)),
                        _ => None,
                    })
                    .collect();
                frame_bytes += frames.iter().map(|(f, _)| f.len() as u64).sum::<u64>();
                if let Some(&(_, t)) = frames.last() {
                    last = t;
                    let t0 = Instant::now();
                    let results = agg.stage_many(&frames);
                    spent[2] += t0.elapsed();
                    for e in results.into_iter().filter_map(Result::err) {
                        refused += 1;
                        *refused_by.entry(e.code()).or_default() += 1;
                        if refused <= 3 {
                            pb.println(format!("  refused envelope: {e}"));
                        }
                    }
                    if agg.staged_envelopes() >= COMMIT_EVERY {
                        let t0 = Instant::now();
                        for ack in agg.commit(t)? {
                            envelopes += 1;
                            reports += u64::from(ack.reports);
                        }
                        spent[3] += t0.elapsed();
                    }
                }
                i = j;
            }
            // One durable commit every `commit_weeks` (or sooner when much is staged), at
            // the time of the last envelope staged: the ledger notes partitions as known
            // then. A commit rewrites every partition it touches, so fewer, larger commits
            // are what keeps the store's writes small.
            if (week + 1) % commit_weeks == 0 || week + 1 == weeks {
                let t0 = Instant::now();
                for ack in agg.commit(last)? {
                    envelopes += 1;
                    reports += u64::from(ack.reports);
                    refused_reports += ack.refused.len() as u64;
                }
                spent[3] += t0.elapsed();
                // The operator's routine purge, after each durable commit (nothing is
                // staged then): what is past its deadline at the end of the week goes.
                let week_end = start.saturating_add_secs((week + 1) * WEEK).min(end);
                let p = agg.purge(week_end)?;
                routine_purges.push((week_end, p.partitions, p.records));
            }
            for (tx, a) in answer_txs.iter().zip(answers) {
                // A worker that stopped has nothing more to take.
                let _ = tx.send(a);
            }
            pb.inc(1);
            pb.set_message(format!("weeks ingested ({envelopes} env.)"));
        }
        spent[4] = ingest_started.elapsed();
        ingest_cpu = thread_cpu_secs();
        for h in handles {
            let (t, subj, w, sp, ex, un) = h.join().map_err(|_| "a device worker panicked")?;
            expired += ex;
            unspent = (unspent.0 + un.0, unspent.1 + un.1);
            truth.merge(t);
            subjects.extend(subj);
            waiting_for_token += w;
            tokens_spent += sp;
        }
        Ok(())
    })?;
    subjects.sort();
    pb.finish();
    println!(
        "\ningested {envelopes} envelopes ({reports} reports), {enrolled} devices enrolled, {receipts} receipts, {withdrawals} withdrawals; {refused} envelopes refused; {} partitions; in {:.1} s",
        agg.partitions().count(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "{certified} device certificates accepted in {:.2} s of the ingest thread (decoded and verified on every core, stored and logged in each day's batch); the delegations, for comparison, {:.2} s",
        certifying.as_secs_f64(),
        delegating.as_secs_f64()
    );
    if refused > 0 {
        println!("envelopes refused by code: {refused_by:?}");
    }
    println!("reports dropped on the devices, unsent, their hold over while queued: {expired}");
    println!(
        "routine purges during the run: {} ({} partitions and {} records deleted){}",
        routine_purges.len(),
        routine_purges.iter().map(|p| p.1).sum::<u64>(),
        routine_purges.iter().map(|p| p.2).sum::<u64>(),
        routine_purges.iter().map(|p| format!("; {}: {}+{}", day(p.0), p.1, p.2)).collect::<String>()
    );
    if tokens_on {
        println!(
            "report tokens: {token_requests} requests, {tokens_issued} tokens issued, refused {token_refusals:?}; {waiting_for_token} times a report waited for a token; issuance {:.1} s on the ingest thread",
            spent[5].as_secs_f64()
        );
        println!(
            "report tokens: {tokens_spent} spent in {envelopes} envelopes ({:.2} per envelope); {:.2} requests and {:.2} tokens issued per device, {:.0}% of them spent",
            tokens_spent as f64 / envelopes.max(1) as f64,
            token_requests as f64 / devices.max(1) as f64,
            tokens_issued as f64 / devices.max(1) as f64,
            100.0 * tokens_spent as f64 / tokens_issued.max(1) as f64
        );
        println!(
            "report tokens left unspent at the end: {} of periods whose last flush is past (fetched in excess), {} still spendable after the run, {} issued and not yet taken (answered in the last two weeks)",
            unspent.0,
            unspent.1,
            tokens_issued.saturating_sub(tokens_spent + unspent.0 + unspent.1)
        );
    }
    let secs = |i: usize| spent[i].as_secs_f64();
    println!(
        "ingest thread: {:.1} s waiting for the devices, {:.1} s consent, {:.1} s staging, {:.1} s committing (of {:.1} s; {ingest_cpu:.1} s of CPU)",
        secs(0),
        secs(1),
        secs(2),
        secs(3),
        secs(4)
    );

    // Estimates beside the truth.
    println!("\nestimates released to each recipient (95% intervals) beside the true values:");
    println!(
        "  {:<8} {:<28} {:<12} {:>9} {:>21} {:>9} {:>8}",
        "to", "metric", "label", "estimate", "95% interval", "truth", "covered"
    );
    let mut est_rows = Vec::new();
    let (mut covered, mut total) = (0u32, 0u32);
    // One machine-readable line per release, for benches/fleet_seeds.sh.
    let mut release_coverage = Vec::new();
    // Releases whose report count differs from the truth's: the comparison would be
    // between different sets of reports.
    let mut mismatched = Vec::new();
    let pairs: Vec<(RecipientId, MetricId)> = catalogue
        .metrics()
        .filter(|(_, m)| matches!(m.privacy, Privacy::Ldp { .. }))
        .flat_map(|(mid, m)| m.recipients.iter().map(move |r| (r.clone(), mid.clone())))
        .collect();
    for (r, m) in &pairs {
        let Ok(rel) = agg.release(r, m, start, end, end) else { continue };
        let key = (r.as_str(), m.as_str());
        let n = rel.estimate.n as f64;
        // The truth over the same reports: those sent, in partitions still held at `end`.
        let (truths, truth_n): (Vec<f64>, u64) = match truth.held(key, end) {
            Some(Held::Counts(c)) => {
                let tot: u64 = c.iter().sum();
                (c.iter().map(|x| *x as f64 / tot.max(1) as f64).collect(), tot)
            }
            Some(Held::Sum(s, k)) => (vec![s / k.max(1) as f64], k),
            None => continue,
        };
        if truth_n != rel.estimate.n {
            mismatched.push(format!("{r} {m}: {} reports released, {truth_n} in the truth", rel.estimate.n));
        }
        let (mut rel_covered, mut rel_total) = (0u32, 0u32);
        // (estimate − truth) / standard error per output: over seeds, their mean shows a
        // bias long before the intervals miss (benches/fleet_seeds.sh).
        let mut zs = Vec::new();
        for (i, p) in rel.estimate.values.iter().enumerate() {
            let label = rel.labels.get(i).cloned().unwrap_or_else(|| "mean".to_string());
            let t = truths.get(i).copied().unwrap_or(f64::NAN);
            let ok = p.ci95_low <= t && t <= p.ci95_high;
            zs.push(format!("{:.3}", (p.value - t) / p.std_error));
            covered += u32::from(ok);
            total += 1;
            rel_covered += u32::from(ok);
            rel_total += 1;
            if i < 3 {
                println!(
                    "  {:<8} {:<28} {:<12} {:>9.4} [{:>9.4}, {:>9.4}] {:>9.4} {:>8}",
                    r.as_str(),
                    m.as_str(),
                    label,
                    p.value,
                    p.ci95_low,
                    p.ci95_high,
                    t,
                    if ok { "yes" } else { "NO" }
                );
            }
            est_rows.push(EstimateRow {
                metric: format!("{m} → {r}"),
                label,
                estimate: p.value,
                ci95_low: p.ci95_low,
                ci95_high: p.ci95_high,
                std_error: p.std_error,
                true_value: Some(t),
                n: n as u64,
            });
        }
        release_coverage.push(format!("  release-coverage {r} {m} {rel_covered} {rel_total}"));
        release_coverage.push(format!("  release-z {r} {m} {n} {truth_n} {}", zs.join(" ")));
    }
    for line in &release_coverage {
        println!("{line}");
    }
    println!(
        "  {covered}/{total} intervals cover the true value ({:.1}%; 95% expected)",
        100.0 * f64::from(covered) / f64::from(total.max(1))
    );

    // Who sees what, for how long.
    let mid = start.saturating_add_secs(months * MONTH / 2);
    println!("\nwho sees what, for how long — at {}:", mid.to_rfc3339());
    for (_, brand, subject) in subjects.iter().take(3) {
        let sa = agg.ledger().subject_access(subject, mid, None);
        // When each receipt starts, for "since …".
        let since: BTreeMap<_, _> = agg
            .ledger()
            .history(&Party::Subject(*subject), Timestamp::EPOCH, Timestamp::MAX)
            .into_iter()
            .filter_map(|h| match h.fact {
                Fact::ConsentGiven { receipt, valid_from, .. } => Some((receipt, valid_from)),
                _ => None,
            })
            .collect();
        println!("  one {brand} owner ({}…):", &subject.to_string()[..12]);
        for e in &sa.entries {
            let from = e.receipts.iter().filter_map(|r| since.get(r)).min();
            let window = match (from, e.window_until) {
                (Some(f), Some(u)) => format!("since {}, {}", day(*f), until(u)),
                (None, Some(u)) => until(u),
                (_, None) => "outside its window".to_string(),
            };
            let hold = e.hold.as_ref().map_or_else(String::new, |h| format!(", then held {h}"));
            let records = match (e.records_held, e.records_until) {
                (0, _) => String::new(),
                (n, Some(u)) => format!("; {n} records held until {}", day(u)),
                (n, None) => format!("; {n} records held"),
            };
            println!("    {:<8} {:<28} {window}{hold}{records}", e.recipient.as_str(), e.metric.as_str());
        }
    }
    for r in ["gridco", "lab-eu"] {
        let view = agg.ledger().recipient_view(&id(r), mid, None);
        println!("  recipient {r}:");
        for m in &view.metrics {
            println!(
                "    {:<28} {:>7} subjects in window, {:>3} partitions, consent {}",
                m.metric.as_str(),
                m.subjects_in_window,
                m.partitions.len(),
                m.consent_until.map_or_else(|| "—".to_string(), until)
            );
        }
    }
    let ws = agg.ledger().who_sees(&Target::Metric(id("thermostat.setpoint")), mid, None);
    println!("  metric thermostat.setpoint is seen by:");
    for e in &ws.entries {
        println!(
            "    {:<8} {:>7} subjects in window, {:>3} partitions",
            e.recipient.as_str(),
            e.subjects_in_window,
            e.partitions.len()
        );
    }

    let phase = Instant::now();
    // Pseudonymous records, released only where the ledger allows.
    let recs = agg.release_records(&id("calora"), &id("thermostat.fault-code"), start, end, end)?;
    println!("\nrecords of thermostat.fault-code released to calora at the end: {}", recs.len());

    // Retention: purge what is past its deadline four months after the end.
    let purge_at = end.saturating_add_secs(4 * MONTH);
    let overdue_before = agg.ledger().overdue(purge_at, None);
    let purged = agg.purge(purge_at)?;
    println!(
        "purge at {}: {} partitions and {} records deleted, {} period keys destroyed ({} items were overdue)",
        purge_at.to_rfc3339(),
        purged.partitions,
        purged.records,
        purged.keys_destroyed.len(),
        overdue_before.records.len() + overdue_before.partitions.len()
    );

    // The audit log: checkpoint, full verification from the public key alone.
    let log = agg.store().audit_log()?;
    let cp = log.checkpoint(&signer, purge_at);
    let verifier = Verifier::new("confiance.example/fleet", signer.verifying_key())?;
    let events = log.export(log.size())?;
    let verified = verifier.audit(&cp, &events).is_ok();
    let overdue_after = agg.ledger().overdue(purge_at, None);
    println!("overdue after the purge: {}", overdue_after.records.len() + overdue_after.partitions.len());
    println!(
        "audit log: {} events, root {}…, verified: {verified}",
        log.size(),
        &cp.checkpoint().root().iter().map(|b| format!("{b:02x}")).collect::<String>()[..16]
    );

    // The report, about the run's end (as an operator gathers it after the last routine
    // purge) and generated after the final purge, which the retention table shows beside
    // the rows it deleted. Access windows by cohort, budgets, partitions and overdue
    // records from the aggregator itself; the estimates are the releases above, with the
    // true values.
    let opts = GatherOptions {
        title: "confiance fleet — who sees what, for how long",
        at: end,
        generated_at: purge_at,
        signer: None,
        ..GatherOptions::default()
    };
    let mut data = ReportData::gather(&agg, &opts)?;
    // The time axes run to the end of the longest hold (automatic horizon), so holds that
    // outlast the run are drawn whole.
    data.estimates = est_rows;
    data.notes.push(format!(
        "Routine purges after each durable commit during the run: {} ({} partitions and {} records deleted). Final purge at {}: {} partitions and {} records deleted, {} period keys destroyed; the retention table shows what was held at the report instant, each row with the purge that deleted it.",
        routine_purges.len(),
        routine_purges.iter().map(|p| p.1).sum::<u64>(),
        routine_purges.iter().map(|p| p.2).sum::<u64>(),
        purge_at.to_rfc3339(),
        purged.partitions,
        purged.records,
        purged.keys_destroyed.len()
    ));
    data.log = Some(LogStatus {
        tree_size: log.size(),
        root_hex: cp.checkpoint().root().iter().map(|b| format!("{b:02x}")).collect(),
        checkpoint_verified: verified,
        consistency_verified: None,
        inclusion_checked: events.len() as u64,
        inclusion_failed: u64::from(!verified),
        message: format!("every one of the {} events recomputed to the signed root", events.len()),
        signer_key_hex: Some(signer.verifying_key().as_bytes().iter().map(|b| format!("{b:02x}")).collect()),
    });
    let html = out_dir.join("fleet-report.html");
    std::fs::write(&html, report::render_html(&data))?;
    std::fs::write(out_dir.join("fleet-report.json"), report::render_json(&data)?)?;
    std::fs::write(out_dir.join("fleet-report.md"), report::render_markdown(&data))?;
    println!("report written to {}", html.display());
    println!("(records, purge, audit and report: {:.1} s)", phase.elapsed().as_secs_f64());
    let wall = started.elapsed().as_secs_f64();
    let cpu = process_cpu_secs();
    println!("\ndone in {wall:.1} s");
    let sent = envelopes + refused;
    let mean_frame = usize::try_from(frame_bytes / sent.max(1)).unwrap_or(0);
    Floor::measure(
        sent,
        mean_frame,
        enrolled + certified + receipts + withdrawals,
        1,
        (token_requests, tokens_issued, tokens_spent),
    )?
    .print(wall, workers.max(1), cpu);
    // The run fails (exit code 1) if the pipeline went wrong, so scripts and CI can rely
    // on it. Coverage is judged loosely: with ~55 intervals at 95%, fewer than 80% covered
    // happens by chance with probability about 10^-5.
    let mut problems = Vec::new();
    if !verified {
        problems.push("the audit log did not verify".to_owned());
    }
    if refused > 0 {
        problems.push(format!("{refused} envelopes refused"));
    }
    if refused_reports > 0 {
        problems.push(format!("{refused_reports} reports refused"));
    }
    let overdue = overdue_after.records.len() + overdue_after.partitions.len();
    if overdue > 0 {
        problems.push(format!("{overdue} items still overdue after the purge"));
    }
    if !mismatched.is_empty() {
        problems.push(format!("releases not over the reports of the truth ({})", mismatched.join(", ")));
    }
    if total == 0 || f64::from(covered) < 0.8 * f64::from(total) {
        problems.push(format!("only {covered}/{total} intervals cover the true value"));
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ").into()) }
}

/// The fleet's cryptographic floor: what it could not avoid doing, each kind with its count
/// and its unit cost measured here at the end of the run (median of interleaved rounds),
/// summed and divided by the cores. Anonymous report tokens join the list once they exist.
struct Floor {
    /// (what, count, seconds per unit).
    items: Vec<(String, u64, f64)>,
}

impl Floor {
    /// Unit costs of sealing and opening an envelope of `mean_frame` bytes (the run's mean)
    /// and of making and verifying an Ed25519 signature (`signed` of them: a device
    /// certificate made at the factory, a delegation made on the owner's phone, a consent
    /// receipt or withdrawal made on the device, each verified on ingest); `checkpoints` signed checkpoints; and of
    /// the report tokens' VOPRF: `tokens.0` requests of `tokens.1` tokens in all made
    /// (blind, sign), answered (signature check, `BlindEvaluate`, one batched proof) and
    /// finalized (proof check, unblind), each priced at its size (the mean's two
    /// neighbours), and `tokens.2` spent tokens verified in windows, as ingest checks them.
    fn measure(
        envelopes: u64,
        mean_frame: usize,
        signed: u64,
        checkpoints: u64,
        tokens: (u64, u64, u64),
    ) -> Result<Self, Box<dyn std::error::Error>> {
        use confiance::envelope::{self, CatalogueDigest, HeaderFields, KeyId, OVERHEAD, SecretKey};
        use ed25519_dalek::Signer as _;
        let mut rng = SeededRng::seed_from_u64(9);
        let secret = SecretKey::generate(&mut rng);
        let config = KeyConfig::new(
            KeyId(9),
            AeadId::ChaCha20Poly1305,
            secret.public_key(),
            Timestamp::EPOCH,
            Timestamp::MAX,
        )?;
        let fields =
            HeaderFields { catalogue_digest: CatalogueDigest([0; 32]), time_bucket: Timestamp::EPOCH };
        let plaintext = vec![0u8; mean_frame.saturating_sub(OVERHEAD)];
        let frame = envelope::seal(&config, &fields, &plaintext, &mut rng)?;
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let message = [7u8; 200];
        let signature = key.sign(&message);
        let verifying = key.verifying_key();
        // Requests of the run's sizes: `requests` requests of `issued` tokens in all are
        // `lo` or `lo + 1` tokens each (the mean's two neighbours, `with_hi` of them the
        // larger), priced as such, against a key of the fleet's catalogue.
        let (requests, issued, spent) = tokens;
        let lo = issued.checked_div(requests).unwrap_or(0).clamp(1, 63);
        let with_hi = issued.saturating_sub(lo * requests).min(requests);
        let sizes = [(lo, requests - with_hi), (lo + 1, with_hi)];
        let token_catalogue = Catalogue::from_toml_str(include_str!("catalogue.toml"))?;
        let token_secret = IssuerSecret::from_bytes([7; 32]);
        let issuer = Issuer::new(token_secret.clone(), &token_catalogue)?;
        let verifier = TokenVerifier::new(token_secret, &token_catalogue)?;
        let scope = TokenScope::new(
            [id::<RecipientId>("calora")],
            id("product-improvement"),
            issuer.period_at(Timestamp::from_secs(1_800_000_000)),
        );
        let token_key = issuer.public_key(&scope)?;
        let device = DeviceKey::generate(&mut rng);
        let mut fixtures = Vec::new();
        for (size, count) in sizes.into_iter().filter(|&(_, count)| count > 0 && requests > 0) {
            let n = usize::try_from(size).unwrap_or(1);
            let (pending, request) = PendingTokens::request(&device, scope.clone(), token_key, n, &mut rng)?;
            let response = issuer.evaluate(&request, 0, &mut rng)?;
            fixtures.push((size, count, pending, request, response));
        }
        // Spent tokens are checked in windows (a day's envelopes, on each core, per scope:
        // hundreds of tokens): priced in windows of 128.
        const WINDOW: usize = 128;
        let mut window = Vec::with_capacity(WINDOW);
        while requests > 0 && window.len() < WINDOW {
            let n = (WINDOW - window.len()).min(usize::try_from(issuer.quota()).unwrap_or(1).clamp(1, 16));
            let (pending, request) = PendingTokens::request(&device, scope.clone(), token_key, n, &mut rng)?;
            let response = issuer.evaluate(&request, 0, &mut rng)?;
            window.extend(pending.finalize(&response)?.into_iter().map(|t| (scope.clone(), t)));
        }
        let mut ops: Vec<(String, u64, Box<dyn FnMut() + '_>)> = vec![
            (
                "seal an envelope (device)".into(),
                envelopes,
                Box::new(|| {
                    drop(std::hint::black_box(envelope::seal(&config, &fields, &plaintext, &mut rng)))
                }),
            ),
            (
                "open an envelope (aggregator)".into(),
                envelopes,
                Box::new(|| {
                    drop(std::hint::black_box(envelope::open(&frame, &secret, AeadId::ChaCha20Poly1305)))
                }),
            ),
            (
                "sign a delegation, receipt, withdrawal or checkpoint".into(),
                signed + checkpoints,
                Box::new(|| {
                    std::hint::black_box(key.sign(&message));
                }),
            ),
            (
                "verify a delegation, receipt or withdrawal (aggregator)".into(),
                signed,
                Box::new(|| drop(std::hint::black_box(verifying.verify_strict(&message, &signature)))),
            ),
        ];
        // Operations per call of each closure (all one but the windowed check).
        let mut per_call = vec![1.0; ops.len()];
        for (i, (size, count, pending, request, response)) in fixtures.iter().enumerate() {
            let seed = 10 + 2 * i as u64;
            let (mut make_rng, mut answer_rng) =
                (SeededRng::seed_from_u64(seed), SeededRng::seed_from_u64(seed + 1));
            let n = usize::try_from(*size).unwrap_or(1);
            let (device, scope, issuer) = (&device, &scope, &issuer);
            ops.extend([
                (
                    format!("make a token request of {size} (device: blind, sign)"),
                    *count,
                    Box::new(move || {
                        drop(std::hint::black_box(PendingTokens::request(
                            device,
                            scope.clone(),
                            token_key,
                            n,
                            &mut make_rng,
                        )));
                    }) as Box<dyn FnMut()>,
                ),
                (
                    format!("answer a token request of {size} (signature, BlindEvaluate, proof)"),
                    *count,
                    Box::new(move || {
                        std::hint::black_box(request.verify_signature()).ok();
                        drop(std::hint::black_box(issuer.evaluate(request, 0, &mut answer_rng)));
                    }),
                ),
                (
                    format!("finalize a token response of {size} (device: proof check, unblind)"),
                    *count,
                    Box::new(move || drop(std::hint::black_box(pending.finalize(response)))),
                ),
            ]);
            per_call.extend([1.0; 3]);
        }
        if !window.is_empty() {
            let n = window.len();
            ops.push((
                format!("verify a spent token (aggregator, windows of {n})"),
                spent,
                Box::new(|| {
                    std::hint::black_box(verifier.verify_many(&window, Timestamp::from_secs(1_800_000_000)));
                }),
            ));
            per_call.push(n as f64);
        }
        // Interleaved rounds of 20 ms each, median per kind: a change of load hits all
        // alike. Each unit cost is the CPU time this thread ran per operation where Linux
        // tells it (the wall time elsewhere): on a loaded machine the wall time of a round
        // also holds the other processes' turns, which would inflate the floor.
        let mut samples = vec![Vec::new(); ops.len()];
        for _ in 0..7 {
            for ((_, _, f), out) in ops.iter_mut().zip(&mut samples) {
                let (t, cpu) = (Instant::now(), thread_run_secs());
                let mut n = 0u32;
                while t.elapsed().as_secs_f64() < 0.02 {
                    f();
                    n += 1;
                }
                let spent = match (cpu, thread_run_secs()) {
                    (Some(a), Some(b)) => b - a,
                    _ => t.elapsed().as_secs_f64(),
                };
                out.push(spent / f64::from(n));
            }
        }
        let items = ops
            .into_iter()
            .zip(&mut samples)
            .zip(per_call)
            .map(|(((what, count, _), v), per_call)| {
                v.sort_by(f64::total_cmp);
                (what, count, v[v.len() / 2] / per_call)
            })
            .collect();
        Ok(Self { items })
    }

    /// Prints the floor and the ratio of `wall` to it; `cpu` is the run's CPU time.
    fn print(&self, wall: f64, cores: u64, cpu: Option<f64>) {
        println!(
            "
cryptographic floor (unit costs measured now, {cores} cores):"
        );
        let mut total = 0.0;
        for (what, count, unit) in &self.items {
            let secs = *count as f64 * unit;
            total += secs;
            println!("  {what:<68} {count:>9} × {:>7.1} µs = {secs:>7.2} s", unit * 1e6);
        }
        let floor = total / cores as f64;
        println!(
            "  floor: {total:.2} s of cryptography / {cores} cores = {floor:.2} s; wall time / floor = {:.2}",
            wall / floor
        );
        // What the machine's load cannot change: how much CPU the run spent beyond its
        // cryptography. Wall time / floor is this ratio when the cores are busy throughout,
        // and more for every moment one of them idles (or runs another process).
        if let Some(cpu) = cpu {
            println!(
                "  the run used {cpu:.2} s of CPU (user and system), {:.2} × its cryptography; {:.0}% of {cores} cores over its wall time",
                cpu / total,
                100.0 * cpu / (wall * cores as f64)
            );
        }
    }
}
