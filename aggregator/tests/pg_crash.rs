//! Two `confiance serve` processes on one PostgreSQL database, one of them killed with
//! SIGKILL again and again while four HTTP clients feed both with overlapping replays
//! (and a fifth gives consent receipts of other devices to both):
//! the survivor answers every request sent to it, a request the kill cut (or that found
//! the victim down) is sent again to the survivor, and at the end every envelope
//! acknowledged is counted exactly once, no envelope is counted twice (one whose only
//! acknowledgement died with the victim is counted once or not at all), every other
//! attempt was refused as a replay, the ledger's holdings are exactly what the store
//! holds (the restarts' reconciliations repaired what the kills tore, and noted nothing
//! twice), each receipt's consent event is logged once, and the audit log verifies with
//! one checkpoint history across both processes and every incarnation of the victim.
//!
//! Needs `CONFIANCE_TEST_POSTGRES=postgres://…` naming a server where the user may create
//! databases (`bash .ci/postgres` starts a throw-away one and runs this file). Without
//! it the test prints why it is skipped.

#![cfg(feature = "postgres")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use confiance_aggregator::audit::{AuditEvent, EventKind, Verifier};
use confiance_aggregator::ledger::Ledger;
use confiance_aggregator::server::hex;
use confiance_aggregator::store::{PgStore, Store as _};
use sha2::{Digest as _, Sha256};

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/serve.rs"]
mod serve;
use serve::{agent, fleet, now, send, start, try_send, try_start};

/// Kills of the victim, each followed by a restart.
const KILLS: usize = 12;
const CLIENTS: usize = 4;
const DEVICES: u64 = 400;

/// What one client saw.
#[derive(Default)]
struct Tally {
    /// (frame, reports acknowledged)
    acked: Vec<(usize, u64)>,
    /// `409` answers to envelopes.
    replays: usize,
    /// Frames whose attempt on the victim got no answer (cut by a kill, or the victim
    /// was down): each was then sent to the survivor.
    cut: Vec<usize>,
    /// Envelope answers by status, from the survivor and from the victim.
    survivor: BTreeMap<u16, usize>,
    victim: BTreeMap<u16, usize>,
    /// (tree size, root) of checkpoints read from either process during the run.
    checkpoints: Vec<(u64, String)>,
}

#[test]
fn one_of_two_serve_processes_killed_twelve_times_under_load_loses_and_doubles_nothing() {
    let Some(serve::Setup { url, dir: d, auditor, keys: kf }) = serve::setup("crash", "pg-crash") else {
        return;
    };
    let survivor = start(&d, &url);
    let victim = Mutex::new(start(&d, &url));
    let victim_base = RwLock::new(victim.lock().unwrap().base.clone());

    // Every device consents (receipts to the survivor), then records and flushes.
    let configs: Vec<_> = kf.hpke.iter().map(|(c, _)| *c).collect();
    let serve::Fleet { receipts, frames } = fleet(DEVICES, 7_000, &configs, now());
    let http = agent();
    for r in &receipts {
        let (s, v) = send(&http, &format!("{}/v1/receipts", survivor.base), None, Some(r));
        assert_eq!(s, 201, "{v}");
    }
    let n = frames.len();
    // Receipts of other devices, given during the load, to either process.
    let late = fleet(DEVICES, 90_000, &configs, now()).receipts;

    // Each frame is sent by two clients (`i % 4` and the next), every fifth twice in a
    // row; a client alternates between the two processes.
    let plans: Vec<Vec<usize>> = (0..CLIENTS)
        .map(|c| {
            let mine: Vec<usize> = (0..n).filter(|i| i % CLIENTS == c || (i + 1) % CLIENTS == c).collect();
            let order: Vec<usize> = if c % 2 == 0 { mine } else { mine.into_iter().rev().collect() };
            order.into_iter().flat_map(|i| if i % 5 == 0 { vec![i, i] } else { vec![i] }).collect()
        })
        .collect();
    let total: usize = plans.iter().map(Vec::len).sum();
    // A kill each time the clients have had this many more answers since the restart:
    // the kills are spread over the first half of the load.
    let step = total / (2 * KILLS);

    let answered = AtomicUsize::new(0);
    let clients_done = AtomicBool::new(false);
    let started = Instant::now();
    let (tallies, restarts, (late_acked, late_cut)) = std::thread::scope(|sc| {
        let killer = sc.spawn(|| {
            let mut restarts = Vec::new();
            for k in 0..KILLS {
                let from = answered.load(Ordering::SeqCst);
                while answered.load(Ordering::SeqCst) < from + step {
                    assert!(!clients_done.load(Ordering::SeqCst), "the load ended after {k} kills");
                    std::thread::sleep(Duration::from_millis(1));
                }
                let mut v = victim.lock().unwrap();
                v.child.kill().unwrap(); // SIGKILL
                v.child.wait().unwrap();
                let t = Instant::now();
                let log = d.join(format!("victim-{k}.log"));
                let next = try_start(&d, &url, File::create(&log).unwrap()).unwrap_or_else(|said| {
                    panic!(
                        "restart {k} failed: {said:?}\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                });
                restarts.push(t.elapsed());
                victim_base.write().unwrap().clone_from(&next.base);
                *v = next;
            }
            restarts
        });
        let consent = sc.spawn(|| {
            let http = agent();
            let (mut acked, mut cut) = (Vec::new(), 0);
            for (k, r) in late.iter().enumerate() {
                let mut to_victim = k % 2 == 0;
                let mut resent = false;
                loop {
                    let base =
                        if to_victim { victim_base.read().unwrap().clone() } else { survivor.base.clone() };
                    match try_send(&http, &format!("{base}/v1/receipts"), None, Some(r)) {
                        Err(e) => {
                            assert!(to_victim, "the survivor did not answer a receipt: {e}");
                            (to_victim, resent) = (false, true);
                            cut += 1;
                        }
                        Ok((201, v)) => {
                            acked.push(v["receipt"].as_str().unwrap().to_owned());
                            break;
                        }
                        // A receipt the cut request had recorded.
                        Ok((409, _)) if resent => break,
                        Ok((s, v)) => panic!("receipt {k} to {base}: {s} {v}"),
                    }
                }
            }
            (acked, cut)
        });
        let workers: Vec<_> = plans
            .iter()
            .enumerate()
            .map(|(c, plan)| {
                let (frames, auditor, survivor, victim_base, answered) =
                    (&frames, &auditor, &survivor.base, &victim_base, &answered);
                sc.spawn(move || {
                    let http = agent();
                    let mut me = Tally::default();
                    for (k, &i) in plan.iter().enumerate() {
                        let mut to_victim = (c + k) % 2 == 0;
                        let mut unavailable = 0;
                        loop {
                            let base = if to_victim {
                                victim_base.read().unwrap().clone()
                            } else {
                                survivor.clone()
                            };
                            let url = format!("{base}/v1/envelopes");
                            let (s, v) = match try_send(&http, &url, None, Some(&frames[i])) {
                                Ok(answer) => answer,
                                Err(e) => {
                                    assert!(to_victim, "the survivor did not answer frame {i}: {e}");
                                    me.cut.push(i);
                                    to_victim = false;
                                    continue;
                                }
                            };
                            let by = if to_victim { &mut me.victim } else { &mut me.survivor };
                            *by.entry(s).or_default() += 1;
                            match s {
                                201 => {
                                    assert_eq!(v["refused"].as_array().map_or(0, Vec::len), 0, "{v}");
                                    me.acked.push((i, v["reports"].as_u64().unwrap()));
                                }
                                409 => me.replays += 1,
                                // Lost commit races three times: nothing kept, send again.
                                503 => {
                                    unavailable += 1;
                                    assert!(unavailable < 10, "frame {i}: {v}");
                                    to_victim = false;
                                    continue;
                                }
                                _ => panic!("frame {i} to {base}: {s} {v}"),
                            }
                            break;
                        }
                        answered.fetch_add(1, Ordering::SeqCst);
                        if k % 8 == 0 {
                            let base = if k % 16 == 0 {
                                victim_base.read().unwrap().clone()
                            } else {
                                survivor.clone()
                            };
                            let url = format!("{base}/v1/audit/checkpoint");
                            match try_send(&http, &url, Some(auditor), None) {
                                Ok((200, v)) => me.checkpoints.push((
                                    v["tree_size"].as_u64().unwrap(),
                                    v["root"].as_str().unwrap().to_owned(),
                                )),
                                Ok((s, v)) => panic!("checkpoint from {base}: {s} {v}"),
                                Err(e) => assert!(base != *survivor, "the survivor did not answer: {e}"),
                            }
                        }
                    }
                    me
                })
            })
            .collect();
        let tallies: Vec<Tally> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        clients_done.store(true, Ordering::SeqCst);
        (tallies, killer.join().unwrap(), consent.join().unwrap())
    });
    let elapsed = started.elapsed();
    assert_eq!(restarts.len(), KILLS);

    // Acknowledged at most once each; every attempt that was answered and not
    // acknowledged was refused as a replay.
    let mut acked: HashMap<usize, u64> = HashMap::new();
    for (i, reports) in tallies.iter().flat_map(|t| &t.acked) {
        assert!(acked.insert(*i, *reports).is_none(), "frame {i} acknowledged twice");
    }
    let replays: usize = tallies.iter().map(|t| t.replays).sum();
    let cut: BTreeSet<usize> = tallies.iter().flat_map(|t| t.cut.iter().copied()).collect();

    // The log: one ingest event per envelope committed, each one of ours, none twice;
    // every frame committed (each was answered 201 or 409 by someone); an acknowledged
    // frame with the reports its acknowledgement gave; a frame committed without an
    // acknowledgement only if an attempt of it died with the victim.
    let store = PgStore::connect(&url).unwrap();
    let partitions = store.partitions().unwrap();
    let heads = store.record_heads().unwrap();
    // (The log holds the store's connection until it is dropped.)
    let log = store.audit_log().unwrap();
    let events = log.export(log.size()).unwrap();
    let digest: HashMap<[u8; 32], usize> =
        frames.iter().enumerate().map(|(i, f)| (Sha256::digest(f).into(), i)).collect();
    let mut logged: BTreeMap<usize, u64> = BTreeMap::new();
    for e in &events {
        if let AuditEvent::IngestBatch { envelope_digest, reports, .. } = e.event {
            let i = *digest.get(&envelope_digest).expect("an ingest event of an envelope never sent");
            assert!(logged.insert(i, u64::from(reports)).is_none(), "frame {i} committed twice");
        }
    }
    assert_eq!(logged.keys().copied().collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
    for (i, reports) in &acked {
        assert_eq!(logged.get(i), Some(reports), "frame {i}: acknowledged reports");
    }
    let unacknowledged: Vec<usize> = logged.keys().copied().filter(|i| !acked.contains_key(i)).collect();
    for i in &unacknowledged {
        assert!(cut.contains(i), "frame {i} committed, never acknowledged, no attempt cut");
    }
    // Counted exactly once: every partial of every partition (each incarnation of the
    // victim wrote its own) plus the records stored are the reports of the envelopes
    // committed.
    let in_partitions: u64 = partitions.iter().map(|p| p.reports).sum();
    assert!(!heads.is_empty());
    assert_eq!(in_partitions + heads.len() as u64, logged.values().sum::<u64>());
    // The ledger's holdings are the store's: each stored record and partition noted once
    // (a holdings note a kill tore was made by the next restart's reconciliation), none
    // noted that the store lacks.
    let ledger = Ledger::open_postgres(&url, fixtures::catalogue()).unwrap();
    let held: BTreeSet<[u8; 16]> = ledger.held_records().into_iter().map(|(id, _)| id).collect();
    let stored: BTreeSet<[u8; 16]> = heads.iter().map(|h| h.id).collect();
    assert_eq!(held, stored);
    assert_eq!(ledger.held_records().len(), heads.len());
    let held_p: BTreeSet<Vec<u8>> = ledger.held_partitions().into_iter().map(|(id, _)| id).collect();
    let stored_p: BTreeSet<Vec<u8>> = partitions.iter().map(|p| p.key.to_bytes()).collect();
    assert_eq!(held_p, stored_p);

    // One log: one consent event per receipt given before the load and per receipt
    // acknowledged during it, none twice (a restart's reconciliation appends the events
    // of receipts it finds without one); every checkpoint read from either process, from
    // any incarnation, is the final log's root at its size; a checkpoint of the final
    // log verifies.
    let mut consented: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        if let AuditEvent::ConsentGiven { receipt } = e.event {
            *consented.entry(hex(&receipt.0)).or_default() += 1;
        }
    }
    let twice: Vec<_> = consented.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "consent events logged twice: {twice:?}");
    assert!(
        late_acked.iter().all(|r| consented.contains_key(r)),
        "an acknowledged receipt without its event"
    );
    assert!(consented.len() <= receipts.len() + late.len());
    assert!(consented.len() >= receipts.len() + late_acked.len());
    assert_eq!(events.iter().filter(|e| e.event.kind() == EventKind::ConsentGiven).count(), consented.len());
    assert_eq!(log.size() as usize, n + consented.len());
    let observed: Vec<&(u64, String)> = tallies.iter().flat_map(|t| &t.checkpoints).collect();
    for (size, root) in &observed {
        assert_eq!(
            &hex(&log.root_at(*size).unwrap()),
            root,
            "a checkpoint at size {size} outside the one history"
        );
    }
    let signer = kf.signer().unwrap();
    let cp = log.checkpoint(&signer, now());
    Verifier::new(signer.origin(), signer.verifying_key()).unwrap().audit(&cp, &events).unwrap();

    let sum = |f: fn(&Tally) -> &BTreeMap<u16, usize>| {
        let mut all = BTreeMap::new();
        for t in &tallies {
            for (s, c) in f(t) {
                *all.entry(*s).or_insert(0) += c;
            }
        }
        all
    };
    let (by_survivor, by_victim) = (sum(|t| &t.survivor), sum(|t| &t.victim));
    let reports: u64 = acked.values().sum();
    let slowest = restarts.iter().max().unwrap();
    eprintln!(
        "pg_crash: {KILLS} SIGKILLs in {:.1} s (restart to listening: slowest {} ms); {n} envelopes, \
         {} acknowledged ({reports} reports) and counted once, {} committed without an answer and counted once, \
         {replays} replays refused, {} requests cut or refused by the victim and sent to the survivor, \
         {} answered 503; envelope answers by status from the survivor {by_survivor:?}, from the victim \
         {by_victim:?}; {} checkpoints checked; {} receipts given during the load, {} acknowledged, \
         {late_cut} cut and sent to the survivor",
        elapsed.as_secs_f64(),
        slowest.as_millis(),
        acked.len(),
        unacknowledged.len(),
        tallies.iter().map(|t| t.cut.len()).sum::<usize>(),
        by_survivor.get(&503).unwrap_or(&0) + by_victim.get(&503).unwrap_or(&0),
        observed.len(),
        late.len(),
        late_acked.len(),
    );
    drop(survivor);
    drop(victim);
    let _ = std::fs::remove_dir_all(&d);
}
