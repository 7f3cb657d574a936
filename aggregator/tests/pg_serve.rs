//! Three `confiance serve` processes on one PostgreSQL database (`--db postgres://…`),
//! fed concurrently over HTTP by four clients with overlapping replays: every
//! acknowledged envelope is counted exactly once, every other attempt is refused as a
//! replay, the pseudonymous records of envelopes sent to one process are checked against
//! receipts given to another (the shared ledger), and the audit log verifies with one
//! consistent checkpoint history (every checkpoint any process signed during the run is
//! the final log's root at its size).
//!
//! Needs `CONFIANCE_TEST_POSTGRES=postgres://…` naming a server where the user may create
//! databases (`bash .ci/postgres` starts a throw-away one and runs this file). Without
//! it the test prints why it is skipped (CI's plain test step has no server; its
//! `.ci/postgres` step runs this file with one).

#![cfg(feature = "postgres")]

use confiance_aggregator::audit::{EventKind, Verifier};
use confiance_aggregator::server::hex;
use confiance_aggregator::store::{PgStore, Store as _};

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/serve.rs"]
mod serve;
use serve::{Server, agent, cli, fleet, now, send, start, start_with};

#[derive(Default)]
struct Client {
    /// (frame, reports acknowledged, reports refused)
    acked: Vec<(usize, u64, usize)>,
    replays: usize,
    retried: usize,
    /// (tree size, root) of checkpoints read while the others ingested.
    checkpoints: Vec<(u64, String)>,
}

#[test]
fn three_serve_processes_on_one_postgres_count_each_acknowledged_envelope_once() {
    let Some(serve::Setup { url, dir: d, auditor, keys: kf }) = serve::setup("three_serve", "pg-serve")
    else {
        return;
    };
    let servers: Vec<Server> = (0..3).map(|_| start(&d, &url)).collect();
    let http = agent();

    // A fleet: every device consents to anonymous statistics, every other one to a
    // pseudonymous fault code; all receipts go to process 0 only.
    let configs: Vec<_> = kf.hpke.iter().map(|(c, _)| *c).collect();
    let serve::Fleet { receipts, frames } = fleet(48, 300, &configs, now());
    for r in &receipts {
        let (s, v) = send(&http, &format!("{}/v1/receipts", servers[0].base), None, Some(r));
        assert_eq!(s, 201, "{v}");
    }
    let n = frames.len();
    assert!(n >= 24);

    // Four clients, each sending every frame once in its own order, round-robin over the
    // three processes, and every fifth frame twice in a row.
    const CLIENTS: usize = 4;
    let bases: Vec<&str> = servers.iter().map(|s| s.base.as_str()).collect();
    let clients: Vec<Client> = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (frames, bases, auditor) = (&frames, &bases, &auditor);
                sc.spawn(move || {
                    let http = agent();
                    let mut me = Client::default();
                    // A permutation: rotated by a quarter per client, odd clients backwards.
                    let order: Vec<usize> = (0..n)
                        .map(|k| if c % 2 == 0 { k } else { n - 1 - k })
                        .map(|k| (k + c * n / CLIENTS) % n)
                        .collect();
                    let sends: Vec<usize> =
                        order.iter().flat_map(|&i| if i % 5 == 0 { vec![i, i] } else { vec![i] }).collect();
                    for (k, &i) in sends.iter().enumerate() {
                        let base = bases[(c + k) % bases.len()];
                        let mut tries = 0;
                        loop {
                            let (s, v) = send(&http, &format!("{base}/v1/envelopes"), None, Some(&frames[i]));
                            match s {
                                201 => {
                                    let refused = v["refused"].as_array().map_or(0, Vec::len);
                                    me.acked.push((i, v["reports"].as_u64().unwrap(), refused));
                                }
                                409 => me.replays += 1,
                                // A commit that lost races three times: nothing kept, send again.
                                503 => {
                                    me.retried += 1;
                                    tries += 1;
                                    assert!(tries < 10, "frame {i}: {v}");
                                    continue;
                                }
                                _ => panic!("frame {i} to {base}: {s} {v}"),
                            }
                            break;
                        }
                        if k % 8 == 0 {
                            let (s, v) =
                                send(&http, &format!("{base}/v1/audit/checkpoint"), Some(auditor), None);
                            assert_eq!(s, 200, "{v}");
                            me.checkpoints.push((
                                v["tree_size"].as_u64().unwrap(),
                                v["root"].as_str().unwrap().to_owned(),
                            ));
                        }
                    }
                    me
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    // Each frame acknowledged exactly once, by one process; every other attempt a replay.
    let mut acked: Vec<usize> = clients.iter().flat_map(|c| c.acked.iter().map(|a| a.0)).collect();
    acked.sort_unstable();
    let twice: Vec<_> = clients
        .iter()
        .enumerate()
        .flat_map(|(c, cl)| cl.acked.iter().map(move |a| (c, *a)))
        .filter(|(_, a)| acked.iter().filter(|&&i| i == a.0).count() > 1)
        .collect();
    assert_eq!(acked, (0..n).collect::<Vec<_>>(), "each envelope acknowledged once: {twice:?}");
    let attempts = CLIENTS * (n + (0..n).filter(|i| i % 5 == 0).count());
    let replays: usize = clients.iter().map(|c| c.replays).sum();
    assert_eq!(replays, attempts - n);
    // No report refused: the records sent to processes 1 and 2 were checked against
    // receipts process 0 recorded.
    assert!(clients.iter().flat_map(|c| &c.acked).all(|a| a.2 == 0), "a report was refused");
    let reports: u64 = clients.iter().flat_map(|c| &c.acked).map(|a| a.1).sum();
    // Counted exactly once: the partitions' report counts (every process's partials)
    // plus the records stored are the reports acknowledged.
    let store = PgStore::connect(&url).unwrap();
    let in_partitions: u64 = store.partitions().unwrap().iter().map(|p| p.reports).sum();
    let records = store.record_heads().unwrap().len() as u64;
    assert!(records > 0);
    assert_eq!(in_partitions + records, reports);
    // One log: one ingest event per acknowledged envelope, one consent event per receipt;
    // every checkpoint a process signed during the run is the final log at its size; a
    // checkpoint of the final log, signed with the shared key, verifies.
    let log = store.audit_log().unwrap();
    let events = log.export(log.size()).unwrap();
    let count = |k: EventKind| events.iter().filter(|e| e.event.kind() == k).count();
    assert_eq!(count(EventKind::IngestBatch), n);
    assert_eq!(log.size() as usize, n + receipts.len());
    let observed: Vec<&(u64, String)> = clients.iter().flat_map(|c| &c.checkpoints).collect();
    assert!(observed.len() >= CLIENTS * n / 8);
    for (size, root) in observed {
        assert_eq!(
            &hex(&log.root_at(*size).unwrap()),
            root,
            "a checkpoint at size {size} outside the one history"
        );
    }
    let signer = kf.signer().unwrap();
    let cp = log.checkpoint(&signer, now());
    Verifier::new(signer.origin(), signer.verifying_key()).unwrap().audit(&cp, &events).unwrap();
    let retried: usize = clients.iter().map(|c| c.retried).sum();
    eprintln!(
        "pg_serve: {n} envelopes, {reports} reports acknowledged and counted once, {replays} replays refused, \
         {retried} answered 503 and sent again, {} checkpoints checked",
        clients.iter().map(|c| c.checkpoints.len()).sum::<usize>()
    );
    drop(servers);
    let _ = std::fs::remove_dir_all(&d);
}

/// The value of the gauge `name` in a Prometheus text answer, if it is there.
fn gauge(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `GET /metrics` as the admin, as text.
fn metrics(http: &ureq::Agent, base: &str, admin: &str) -> String {
    let mut r = http
        .get(&format!("{base}/metrics"))
        .header("Authorization", &format!("Bearer {admin}"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.body_mut().read_to_string().unwrap()
}

/// `confiance serve` on PostgreSQL opens the ledger lazily (issue #18): a process started
/// on a database holding 41 subjects holds none of them (`/metrics`,
/// `confiance_ledger_loaded_subjects 0`), and then answers — loading only what each
/// request reads — a subject's access and a replayed receipt exactly as the process that
/// wrote them (which held every subject), records of pseudonymous metrics checked
/// against receipts it never loaded (none refused), and a device's token request (its
/// subject and consent loaded first: 20 tokens that verify).
#[test]
fn a_serve_on_a_full_database_starts_with_no_subject_loaded_and_answers_as_before() {
    use confiance::consent::{ConsentRequest, ConsentState, DeviceKey, Scope, SignedReceipt};
    use confiance::hazmat::{SeedableRng as _, SeededRng};
    use confiance::recorder::{MemoryStorage, Recorder, RecorderParts};
    use confiance::token::voprf::PublicKey;
    use confiance::token::{TokenPeriod, TokenResponse, TokenScope};
    use fixtures::id;

    let Some(serve::Setup { url, dir: d, auditor, keys: kf }) = serve::setup("lazy_serve", "pg-lazy-serve")
    else {
        return;
    };
    let admin = cli(&d, &["token", "--role", "admin"])["token"].as_str().unwrap().to_owned();
    let secret = d.join("token-secret");
    std::fs::write(&secret, "09".repeat(32)).unwrap();
    let args = ["--token-secret", secret.to_str().unwrap()];
    let http = agent();
    let t = now();
    let configs: Vec<_> = kf.hpke.iter().map(|(c, _)| *c).collect();
    let serve::Fleet { receipts, frames } = fleet(40, 900, &configs, t);
    // A single-device subject that asks for report tokens.
    let device = DeviceKey::from_bytes(&[2; 32]);
    let mut dev = Recorder::new(
        RecorderParts {
            catalogue: fixtures::catalogue(),
            consent: ConsentState::new(DeviceKey::from_bytes(&[2; 32])),
            pseudonyms: confiance::pseudonym::DeviceSecret::generate(&mut SeededRng::seed_from_u64(5)),
            controller: id("calora"),
            key_configs: configs.clone(),
            rng: SeededRng::seed_from_u64(6),
        },
        MemoryStorage::default(),
    );
    let since = t.saturating_sub_secs(86_400);
    let mode: confiance::ids::MetricId = id("thermostat.mode");
    let request = ConsentRequest::new(
        id("calora"),
        id("product-improvement"),
        Scope::metrics([mode]),
        "P90D".parse().unwrap(),
    )
    .valid_from(since);
    let token_receipt = dev.give_consent(request, since).unwrap();

    // The first process records every receipt (holding each subject it wrote).
    let first = start(&d, &url);
    for r in receipts.iter().chain([&token_receipt]) {
        let (s, v) = send(&http, &format!("{}/v1/receipts", first.base), None, Some(r));
        assert_eq!(s, 201, "{v}");
    }
    let subject = SignedReceipt::from_bytes(&receipts[3]).unwrap().receipt().subject;
    let access_url = |base: &str| format!("{base}/v1/subjects/{}/access?at={}", hex(&subject.0), t.as_secs());
    let replay_url = |base: &str| format!("{base}/v1/receipts");
    let access_before = send(&http, &access_url(&first.base), Some(&auditor), None);
    assert_eq!(access_before.0, 200, "{}", access_before.1);
    assert!(!access_before.1.to_string().is_empty());
    let replay_before = send(&http, &replay_url(&first.base), None, Some(&receipts[5]));
    let subjects = receipts.iter().map(|r| SignedReceipt::from_bytes(r).unwrap().receipt().subject);
    let subjects: std::collections::HashSet<_> = subjects.collect();
    assert_eq!(subjects.len() + 1, 41);
    drop(first);

    // A new process: nothing loaded at start, whatever the database holds.
    let second = start(&d, &url);
    let m = metrics(&http, &second.base, &admin);
    assert_eq!(gauge(&m, "confiance_ledger_loaded_subjects"), Some(0), "{m}");
    assert_eq!(gauge(&m, "confiance_ledger_receipts"), None, "a scrape loads nothing");
    // A subject's access: its facts loaded, the same answer.
    let access_after = send(&http, &access_url(&second.base), Some(&auditor), None);
    assert_eq!(access_after, access_before);
    assert_eq!(gauge(&metrics(&http, &second.base, &admin), "confiance_ledger_loaded_subjects"), Some(1));
    // A replayed receipt: the same answer.
    let replay_after = send(&http, &replay_url(&second.base), None, Some(&receipts[5]));
    assert_eq!(replay_after, replay_before);
    // Records checked against receipts this process had not loaded: none refused.
    for f in &frames {
        let (s, v) = send(&http, &format!("{}/v1/envelopes", second.base), None, Some(f));
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["refused"].as_array().map_or(0, Vec::len), 0, "{v}");
    }
    let store = PgStore::connect(&url).unwrap();
    assert!(!store.record_heads().unwrap().is_empty(), "pseudonymous records were stored");
    let loaded = gauge(&metrics(&http, &second.base, &admin), "confiance_ledger_loaded_subjects").unwrap();
    assert!((2..41).contains(&loaded), "only what was asked about is loaded: {loaded}");
    drop(second);

    // A process issuing report tokens (then every envelope needs them): a token request
    // loads the device's subject and its consent first.
    let second = start_with(&d, &url, &args);
    let m = metrics(&http, &second.base, &admin);
    assert_eq!(gauge(&m, "confiance_ledger_loaded_subjects"), Some(0), "{m}");
    let period = TokenPeriod::at(now(), 86_400);
    let k = send(
        &http,
        &format!("{}/v1/token-keys?recipients=calora&purpose=product-improvement", second.base),
        None,
        None,
    );
    assert_eq!(k.0, 200, "{}", k.1);
    let pk: [u8; 32] =
        confiance_aggregator::server::unhex(k.1["public_key"].as_str().unwrap()).unwrap().try_into().unwrap();
    let pk = PublicKey::from_bytes(&pk).unwrap();
    let scope = TokenScope::new([id("calora")], id("product-improvement"), period);
    let request = dev.token_request(&device, scope, pk, 20).unwrap();
    let mut r = http
        .post(&format!("{}/v1/tokens", second.base))
        .send(&postcard::to_allocvec(&request).unwrap())
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let response: TokenResponse = postcard::from_bytes(&r.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(dev.take_token_response(&response), 20, "tokens issued and verified");
    let m = metrics(&http, &second.base, &admin);
    assert_eq!(gauge(&m, "confiance_ledger_loaded_subjects"), Some(1), "the device's subject only: {m}");
    drop(second);
    let _ = std::fs::remove_dir_all(&d);
}

/// The commands besides `serve` on a PostgreSQL URL (docs/cli.md, "--db postgres://…"):
/// an operator's and an auditor's session, each answer checked against what was put in.
#[test]
fn cli_commands_on_postgres() {
    let Some(serve::Setup { url, dir: d, keys, .. }) = serve::setup("cli_commands", "pg-cli") else {
        return;
    };
    let run = |args: &[&str]| -> serde_json::Value {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_confiance"))
            .args(["--db", url.as_str(), "--keys"])
            .arg(d.join("keys"))
            .args(["--catalogue", serve::CATALOGUE, "--json"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let sim = run(&["simulate", "--devices", "20", "--days", "2"]);
    let subject = sim["sample_subjects"][0].as_str().unwrap().to_owned();
    // Who sees what: every simulated device consented to calora's mode.
    let view = run(&["query", "recipient", "calora"]);
    let mode = view["metrics"].as_array().unwrap().iter().find(|m| m["metric"] == "thermostat.mode").unwrap();
    assert_eq!(mode["subjects"], 20, "{view}");
    let access = run(&["query", "subject", &subject]);
    assert!(access["entries"].as_array().unwrap().iter().any(|e| e["recipient"] == "calora"), "{access}");
    // The audit log: verified in full, then consistent with a checkpoint after it grew.
    let cp = run(&["audit", "checkpoint"]);
    let ver = run(&["audit", "verify"]);
    assert_eq!((ver["verified"].as_bool(), &ver["events"]), (Some(true), &ver["tree_size"]), "{ver}");
    assert!(ver["tree_size"].as_u64().unwrap() > 0);
    std::fs::write(d.join("cp.txt"), cp["text"].as_str().unwrap()).unwrap();
    let rel = run(&["release", "calora", "thermostat.mode"]);
    assert_eq!(rel["kind"], "estimate", "{rel}");
    let ver = run(&["audit", "verify", "--checkpoint", d.join("cp.txt").to_str().unwrap()]);
    assert_eq!(ver["consistent_with_checkpoint"], true, "{ver}");
    assert!(ver["tree_size"].as_u64().unwrap() > cp["tree_size"].as_u64().unwrap());
    // The report, gathered from the same database; then a purge.
    let out = d.join("report.json");
    let r = run(&["report", "--format", "json", "--out", out.to_str().unwrap()]);
    assert_eq!(r["log_verified"], true, "{r}");
    assert!(r["access_rows"].as_u64().unwrap() > 0 && r["estimates"].as_u64().unwrap() > 0, "{r}");
    let p = run(&["purge"]);
    assert!(p["partitions"].is_u64() && p["records"].is_u64(), "{p}");
    // `ingest` (lazily loaded, as every command): receipts, then envelopes whose
    // pseudonymous records are checked against them (their subjects loaded on demand).
    let configs: Vec<_> = keys.hpke.iter().map(|(c, _)| *c).collect();
    let f = serve::fleet(6, 77, &configs, serve::now());
    let inbox = d.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    for (i, r) in f.receipts.iter().enumerate() {
        std::fs::write(inbox.join(format!("a-receipt-{i:03}.bin")), r).unwrap();
    }
    for (i, e) in f.frames.iter().enumerate() {
        std::fs::write(inbox.join(format!("b-envelope-{i:03}.bin")), e).unwrap();
    }
    let ing = run(&["ingest", inbox.to_str().unwrap()]);
    assert_eq!(
        (&ing["accepted"], &ing["refused"]),
        (&(f.receipts.len() + f.frames.len()).into(), &0.into()),
        "{ing}"
    );
    // Each device's mode, and every other one's fault code (a pseudonymous record), kept.
    assert_eq!(ing["reports"], 6 + 3, "{ing}");
    assert!(
        ing["results"].as_array().unwrap().iter().all(|r| r["refused"].as_array().is_none_or(Vec::is_empty))
    );
    run(&["audit", "verify"]);
}

/// Runs the CLI with `--db url --keys d/keys --catalogue … --json ARGS`.
fn pg_cli(url: &str, d: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_confiance"))
        .args(["--db", url, "--keys"])
        .arg(d.join("keys"))
        .args(["--catalogue", serve::CATALOGUE, "--json"])
        .args(args)
        .output()
        .unwrap()
}

/// [`pg_cli`]'s JSON answer, which must be a success.
fn pg_json(url: &str, d: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let o = pg_cli(url, d, args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stdout));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The read commands on PostgreSQL open the ledger lazily (no subject at open) and load
/// what each question reads (`load_for_query`, the subject of a subject report): every
/// answer is the one a fully loaded ledger (`Ledger::open_postgres`) gives on the same
/// database — subjects with a withdrawal among them, a recipient's view, histories,
/// diffs, checks, and the questions across subjects.
#[test]
fn cli_read_commands_on_postgres_answer_as_a_fully_loaded_ledger() {
    use confiance_aggregator::ledger::{Ledger, Party};
    use confiance_aggregator::server::query::DiffOf;
    use confiance_aggregator::server::{Query, run_query};
    use confiance_aggregator::service::{Aggregator, AggregatorConfig};
    let Some(serve::Setup { url, dir: d, .. }) = serve::setup("cli_lazy", "pg-cli-lazy") else {
        return;
    };
    let sim = pg_json(&url, &d, &["simulate", "--devices", "27", "--days", "4", "--seed", "3"]);
    assert!(
        sim["records_released"].as_u64().unwrap() > 0 && sim["withdrawals"].as_u64().unwrap() > 0,
        "{sim}"
    );
    let cat = fixtures::catalogue();
    let whole = Aggregator::with_store_unreconciled(
        Box::new(PgStore::connect(&url).unwrap()),
        Ledger::open_postgres(&url, cat.clone()).unwrap(),
        cat,
        confiance_aggregator::keys::KeyStore::new(0),
        AggregatorConfig::default(),
    )
    .unwrap();
    assert!(!whole.ledger().is_lazy());
    // `run_query` takes the aggregator mutably (a lazy one loads what it reads); the
    // subject report below reads it too.
    let whole = std::cell::RefCell::new(whole);
    let now = now();
    let (at, before) = (now.as_secs().to_string(), now.saturating_sub_secs(3 * 86_400));
    let t = confiance::Timestamp::from_secs;
    let s = |x: u64| x.to_string();
    let mut asked = 0;
    let mut same = |args: &[&str], q: Query| {
        let lazy = pg_json(&url, &d, args);
        assert_eq!(lazy, run_query(&mut whole.borrow_mut(), &q).unwrap(), "{args:?}");
        asked += 1;
    };
    for hex_subject in sim["sample_subjects"].as_array().unwrap() {
        let h = hex_subject.as_str().unwrap();
        let subject =
            confiance::ids::SubjectId(confiance_aggregator::server::unhex(h).unwrap().try_into().unwrap());
        same(&["query", "subject", h, "--at", &at], Query::Subject { subject, at: now, as_known_at: None });
        same(
            &["query", "subject", h, "--at", &at, "--as-known-at", &s(before.as_secs())],
            Query::Subject { subject, at: now, as_known_at: Some(before) },
        );
        for (recipient, purpose, metric) in [
            ("calora", "product-improvement", "thermostat.mode"),
            ("gridco", "grid-balancing", "thermostat.mode"),
            ("calora", "service", "thermostat.fault-code"),
        ] {
            same(
                &["query", "check", "--recipient", recipient, "--metric", metric, "--purpose", purpose]
                    .into_iter()
                    .chain(["--subject", h, "--at", &at])
                    .collect::<Vec<_>>(),
                Query::Check {
                    recipient: fixtures::id(recipient),
                    metric: fixtures::id(metric),
                    purpose: fixtures::id(purpose),
                    subject,
                    at: now,
                    as_known_at: None,
                },
            );
        }
        same(
            &["query", "history", "--subject", h],
            Query::History { party: Party::Subject(subject), from: t(0), to: confiance::Timestamp::MAX },
        );
        same(
            &["query", "diff", "--subject", h, "--from", &s(before.as_secs()), "--to", &at],
            Query::Diff { of: DiffOf::Subject(subject), from: before, to: now, as_known_at: None },
        );
        // The subject report reads that subject only; its instant of making aside, the same.
        let o = pg_cli(&url, &d, &["report", "--subject", h, "--format", "json", "--at", &at]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut lazy: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let full = confiance_aggregator::report::SubjectReport::gather(&whole.borrow(), &subject, now, now);
        let mut full: serde_json::Value = serde_json::from_str(&full.render_json().unwrap()).unwrap();
        for v in [&mut lazy, &mut full] {
            v.as_object_mut().unwrap().remove("generated_at");
        }
        assert_eq!(lazy, full, "report --subject {h}");
    }
    for recipient in ["calora", "gridco"] {
        same(
            &["query", "recipient", recipient, "--at", &at],
            Query::Recipient { recipient: fixtures::id(recipient), at: now, as_known_at: None },
        );
        same(
            &["query", "history", "--recipient", recipient],
            Query::History {
                party: Party::Recipient(fixtures::id(recipient)),
                from: t(0),
                to: confiance::Timestamp::MAX,
            },
        );
        same(
            &["query", "diff", "--recipient", recipient, "--from", &s(before.as_secs()), "--to", &at],
            Query::Diff {
                of: DiffOf::Recipient(fixtures::id(recipient)),
                from: before,
                to: now,
                as_known_at: None,
            },
        );
    }
    // Across subjects (loaded as `load_for_query` decides).
    same(
        &["query", "metric", "thermostat.mode", "--at", &at],
        Query::Metric { metric: fixtures::id("thermostat.mode"), at: now, as_known_at: None },
    );
    same(&["query", "overdue", "--now", &at], Query::Overdue { now, as_known_at: None });
    same(&["query", "disclosures"], Query::Disclosures { from: t(0), to: confiance::Timestamp::MAX });
    assert_eq!(asked, 5 * 7 + 2 * 3 + 3);
    let _ = std::fs::remove_dir_all(&d);
}

/// `audit verify` on PostgreSQL re-checks the ledger's rows as on SQLite: an intact
/// database passes with every row counted; a receipt whose signed bytes or columns were
/// altered by SQL, and a withdrawal row deleted, are `ledger_invalid` naming the row or
/// receipt. A receipt and then a withdrawal the ledger holds without their consent events
/// (a crash between the ledger's commit and the log's append) are `ledger_invalid` too;
/// the read commands (`query`, `audit`) write nothing to repair them, and a read-write
/// command (`purge`, which reconciles from the watermark) does.
#[test]
fn audit_verify_re_checks_the_ledger_rows_on_postgres() {
    use confiance_aggregator::ledger::Ledger;
    let Some(serve::Setup { url, dir: d, .. }) = serve::setup("audit_rows", "pg-audit-rows") else {
        return;
    };
    pg_json(&url, &d, &["simulate", "--devices", "20", "--days", "3"]);
    let v = pg_json(&url, &d, &["audit", "verify"]);
    let facts = &v["signed_facts"];
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let count = |db: &mut postgres::Client, sql: &str| -> u64 {
        u64::try_from(db.query_one(sql, &[]).unwrap().get::<_, i64>(0)).unwrap()
    };
    assert_eq!(facts["receipts"], count(&mut db, "SELECT count(*) FROM ledger_receipt"), "{v}");
    assert_eq!(facts["withdrawals"], count(&mut db, "SELECT count(*) FROM ledger_withdrawal"), "{v}");
    assert!(facts["withdrawals"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(facts["unsigned_receipts"], 0);
    drop(db);
    // Each alteration on a copy of the database.
    let copy = |name: &str| -> String {
        let base = url.rsplit_once('/').unwrap().0;
        let (db, template) = (format!("confiance_p_audit_rows_{name}"), url.rsplit_once('/').unwrap().1);
        let mut c = postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {db} TEMPLATE {template}")).unwrap();
        format!("{base}/{db}")
    };
    let first_calora = "(SELECT min(seq) FROM ledger_receipt WHERE recipient = 'calora')";
    for (name, sql, says) in [
        (
            "signature",
            format!(
                "UPDATE ledger_receipt SET signed = set_byte(signed, length(signed) - 1,
                 get_byte(signed, length(signed) - 1) # 1) WHERE seq = {first_calora}"
            ),
            "signed bytes",
        ),
        (
            "widened",
            format!(
                "UPDATE ledger_receipt SET recipient = 'lab-eu', purpose = 'research' WHERE seq = {first_calora}"
            ),
            "is not what was signed",
        ),
        (
            "revived",
            "DELETE FROM ledger_withdrawal WHERE seq = (SELECT min(seq) FROM ledger_withdrawal)".to_owned(),
            "the log holds it, the ledger does not",
        ),
    ] {
        let url = copy(name);
        postgres::Client::connect(&url, postgres::NoTls).unwrap().batch_execute(&sql).unwrap();
        let o = pg_cli(&url, &d, &["audit", "verify"]);
        let err: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            (o.status.code(), &err["error"]["code"]),
            (Some(1), &"ledger_invalid".into()),
            "{name}: {err}"
        );
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{name}: {msg}");
        if name != "revived" {
            assert!(msg.starts_with("receipt row "), "{name}: {msg}");
        }
    }
    // Consent the ledger holds and the log does not: written through the ledger alone.
    let url = copy("gap");
    let t = now();
    let mut dev = fixtures::recorder(900, "calora", vec![]);
    let bytes = dev.give_consent(mode_request(), t).unwrap();
    let mut ledger = Ledger::open_postgres(&url, fixtures::catalogue()).unwrap();
    let receipt = ledger.ingest_receipt(&bytes, t).unwrap();
    let subject = hex(&dev.subject().0);
    let size = |url: &str| pg_json(url, &d, &["audit", "checkpoint"])["tree_size"].as_u64().unwrap();
    let logged = |url: &str| {
        let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
        c.query_one("SELECT count(*) FROM audit_consent", &[]).unwrap().get::<_, i64>(0)
    };
    let (before, consent) = (size(&url), logged(&url));
    let gap = |url: &str, what: &str| {
        let o = pg_cli(url, &d, &["audit", "verify"]);
        let err: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(err["error"]["code"], "ledger_invalid", "{err}");
        let said =
            format!("consent {what} for receipt {}: the ledger holds it, the log does not", hex(&receipt.0));
        assert_eq!(err["error"]["message"], said.as_str());
    };
    gap(&url, "given");
    // A read answers from the database as it is (the receipt is the ledger's) and repairs nothing.
    let access = pg_json(&url, &d, &["query", "subject", &subject]);
    assert_eq!(access["entries"][0]["receipts"][0], hex(&receipt.0), "{access}");
    gap(&url, "given");
    assert_eq!(size(&url), before, "a read command appended to the log");
    // A read-write command reconciles: the event is appended, and the log verifies.
    pg_json(&url, &d, &["purge"]);
    assert_eq!(logged(&url), consent + 1);
    pg_json(&url, &d, &["audit", "verify"]);
    // A withdrawal without its event.
    let w = dev.withdraw_consent(&receipt, t.saturating_add_secs(1)).unwrap();
    ledger.refresh().unwrap();
    ledger.ingest_withdrawal(&w, t.saturating_add_secs(1)).unwrap();
    drop(ledger);
    let before = size(&url);
    gap(&url, "withdrawn");
    pg_json(&url, &d, &["query", "history", "--subject", &subject]);
    assert_eq!(size(&url), before, "a read command appended to the log");
    pg_json(&url, &d, &["purge"]);
    assert_eq!(logged(&url), consent + 2);
    pg_json(&url, &d, &["audit", "verify"]);
    let _ = std::fs::remove_dir_all(&d);
}

/// Calora / product improvement / thermostat mode, held 90 days.
fn mode_request() -> confiance::consent::ConsentRequest {
    confiance::consent::ConsentRequest::new(
        fixtures::id("calora"),
        fixtures::id("product-improvement"),
        confiance::consent::Scope::metrics([fixtures::id::<confiance::ids::MetricId>("thermostat.mode")]),
        "P90D".parse().unwrap(),
    )
}
