//! Property tests of the audit log:
//! - roots, inclusion and consistency proofs agree with a naive recursive implementation
//!   written straight from RFC 9162 §2.1 (MTH, PATH, SUBPROOF), for random sizes, and the
//!   RFC verifiers accept them and reject corrupted ones;
//! - any change, removal, insertion or reordering of logged events is detected.
#![allow(clippy::unwrap_used, reason = "a test: failing loudly is the point")]

use confiance::Timestamp;
use confiance::ids::{MetricId, ReceiptId, RecipientId};
use confiance_aggregator::audit::merkle::{
    Hash, MerkleTree, empty_root, leaf_hash, node_hash, verify_consistency, verify_inclusion,
};
use confiance_aggregator::audit::{
    AuditError, AuditEvent, AuditLog, CheckpointSigner, LoggedEvent, SignedCheckpoint, Verifier,
};
use proptest::prelude::*;

// ---- The naive reference: RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1, recursively. ----

fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => empty_root(),
        1 => d[0],
        n => {
            let k = k_of(n);
            node_hash(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
    if d.len() <= 1 {
        return Vec::new();
    }
    let k = k_of(d.len());
    let (mut p, sibling) =
        if m < k { (path(m, &d[..k]), mth(&d[k..])) } else { (path(m - k, &d[k..]), mth(&d[..k])) };
    p.push(sibling);
    p
}

fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { Vec::new() } else { vec![mth(d)] };
    }
    let k = k_of(n);
    let (mut p, x) = if m <= k {
        (subproof(m, &d[..k], b), mth(&d[k..]))
    } else {
        (subproof(m - k, &d[k..], false), mth(&d[..k]))
    };
    p.push(x);
    p
}

fn proof(m: usize, d: &[Hash]) -> Vec<Hash> {
    if m == 0 || m == d.len() { Vec::new() } else { subproof(m, d, true) }
}

fn flip(p: &[Hash], i: usize) -> Vec<Hash> {
    let mut q = p.to_vec();
    q[i][i % 32] ^= 1 << (i % 8);
    q
}

// ---- Event strategies. ----

fn ts() -> impl Strategy<Value = Timestamp> {
    any::<u64>().prop_map(Timestamp::from_secs)
}

fn recipient() -> impl Strategy<Value = RecipientId> {
    prop::sample::select(vec!["acme", "partner-1", "lab.eu"]).prop_map(|s| RecipientId::new(s).unwrap())
}

fn metric() -> impl Strategy<Value = MetricId> {
    prop::sample::select(vec!["thermostat.setpoint", "door.opens"]).prop_map(|s| MetricId::new(s).unwrap())
}

fn receipt() -> impl Strategy<Value = ReceiptId> {
    any::<[u8; 32]>().prop_map(ReceiptId)
}

fn event() -> impl Strategy<Value = AuditEvent> {
    prop_oneof![
        receipt().prop_map(|receipt| AuditEvent::ConsentGiven { receipt }),
        (receipt(), ts()).prop_map(|(receipt, at)| AuditEvent::ConsentWithdrawn { receipt, at }),
        (any::<[u8; 32]>(), any::<u32>(), any::<u32>(), ts()).prop_map(
            |(envelope_digest, reports, partitions, at)| {
                AuditEvent::IngestBatch { envelope_digest, reports, partitions, at }
            }
        ),
        (recipient(), metric(), ts(), ts(), any::<u32>(), ts()).prop_map(
            |(recipient, metric, window_start, window_end, partitions, at)| AuditEvent::Release {
                recipient,
                metric,
                window_start,
                window_end,
                partitions,
                at
            }
        ),
        (recipient(), prop::option::of(receipt()), any::<[u8; 32]>(), ts()).prop_map(
            |(recipient, receipt, proof_digest, at)| AuditEvent::Transcryption {
                recipient,
                receipt,
                proof_digest,
                at
            }
        ),
        (any::<u32>(), any::<u32>(), ts()).prop_map(|(partitions, records, at)| AuditEvent::Purge {
            partitions,
            records,
            at
        }),
        (any::<[u8; 32]>(), ts()).prop_map(|(key_id, at)| AuditEvent::KeyDestruction { key_id, at }),
        (any::<[u8; 32]>(), ts()).prop_map(|(digest, at)| AuditEvent::CatalogueChange { digest, at }),
    ]
}

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_secret_bytes("test.example/audit", &[42; 32]).unwrap()
}

fn verifier() -> Verifier {
    Verifier::new("test.example/audit", signer().verifying_key()).unwrap()
}

fn logged(events: &[AuditEvent]) -> (AuditLog<confiance_aggregator::audit::MemoryStore>, SignedCheckpoint) {
    let mut log = AuditLog::in_memory();
    log.append_batch(events).unwrap();
    let cp = log.checkpoint(&signer(), Timestamp::from_secs(1_700_000_000));
    (log, cp)
}

fn renumber(events: &mut [LoggedEvent]) {
    for (i, e) in events.iter_mut().enumerate() {
        e.seq = i as u64;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Raw-leaf trees: every root, PATH and consistency proof equals the naive one and
    /// verifies; a flipped bit, a wrong index or a wrong size is rejected.
    #[test]
    fn proofs_match_the_naive_reference(n in 1usize..600, a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let mut t = MerkleTree::default();
        let leaves: Vec<Hash> = (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for h in &leaves {
            t.push_hash(*h);
        }
        let size = b.index(n) + 1; // a past size, 1..=n
        let m = a.index(size);     // a leaf of it
        let d = &leaves[..size];
        let root = t.root_at(size as u64).unwrap();
        prop_assert_eq!(root, mth(d));
        prop_assert_eq!(t.root(), mth(&leaves));

        let p = t.inclusion_path(m as u64, size as u64).unwrap();
        prop_assert_eq!(&p, &path(m, d));
        prop_assert!(p.len() <= 64 - (size as u64).leading_zeros() as usize);
        prop_assert!(verify_inclusion(&leaves[m], m as u64, size as u64, &p, &root).is_ok());
        for i in 0..p.len() {
            prop_assert!(verify_inclusion(&leaves[m], m as u64, size as u64, &flip(&p, i), &root).is_err());
        }
        if size > 1 {
            let other = (m + 1) % size;
            prop_assert!(verify_inclusion(&leaves[m], other as u64, size as u64, &p, &root).is_err());
            prop_assert!(verify_inclusion(&leaves[other], m as u64, size as u64, &p, &root).is_err());
        }

        let old = m.max(1); // 1..size: RFC 9162 has no proof from the empty tree
        prop_assert!(t.consistency_path(0, size as u64).is_err());
        let c = t.consistency_path(old as u64, size as u64).unwrap();
        prop_assert_eq!(&c, &proof(old, d));
        let old_root = t.root_at(old as u64).unwrap();
        prop_assert!(verify_consistency(old as u64, size as u64, &c, &old_root, &root).is_ok());
        for i in 0..c.len() {
            prop_assert!(verify_consistency(old as u64, size as u64, &flip(&c, i), &old_root, &root).is_err());
        }
        if old > 0 && old < size {
            prop_assert!(verify_consistency(old as u64 + 1, size as u64, &c, &old_root, &root).is_err());
            prop_assert!(verify_consistency(old as u64, size as u64, &c, &root, &old_root).is_err());
            prop_assert!(verify_consistency(old as u64, size as u64, &c[..c.len() - 1], &old_root, &root).is_err());
        }
    }

    /// The event log agrees with the naive reference over its events' leaf hashes, and its
    /// proofs verify through the key-only verifier.
    #[test]
    fn event_log_proofs_match_and_verify(events in prop::collection::vec(event(), 1..80), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let signer = signer();
        let verifier = verifier();
        let mut log = AuditLog::in_memory();
        let mut checkpoints = Vec::new();
        // Appends split in two batches plus singles, to exercise both paths.
        let cut = a.index(events.len());
        log.append_batch(&events[..cut]).unwrap();
        checkpoints.push(log.checkpoint(&signer, Timestamp::from_secs(1)));
        for e in &events[cut..] {
            log.append(e).unwrap();
        }
        let cp = log.checkpoint(&signer, Timestamp::from_secs(2));
        let hashes: Vec<Hash> = (0..events.len() as u64).map(|s| log.event(s).unwrap().leaf_hash().unwrap()).collect();
        prop_assert_eq!(log.root(), mth(&hashes));
        let m = b.index(events.len());
        let e = log.event(m as u64).unwrap();
        prop_assert_eq!(&e.event, &events[m]);
        let p = log.inclusion_proof(m as u64, log.size()).unwrap();
        prop_assert_eq!(&p.path, &path(m, &hashes));
        prop_assert!(verifier.verify_inclusion(&cp, &e, &p).is_ok());
        if cut == 0 {
            prop_assert!(log.consistency_proof(0, log.size()).is_err());
        } else {
            let c = log.consistency_proof(cut as u64, log.size()).unwrap();
            prop_assert_eq!(&c.path, &proof(cut, &hashes));
            prop_assert!(verifier.verify_consistency(&checkpoints[0], &cp, &c).is_ok());
        }
        prop_assert!(verifier.audit(&cp, &log.export(log.size()).unwrap()).is_ok());
    }

}

proptest! {
    // Tamper detection: cheap cases (≤ 40 events), so many of them.
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Changing any field of any event is detected by the full audit and by its inclusion proof.
    #[test]
    fn any_changed_event_is_detected(events in prop::collection::vec(event(), 1..40), i in any::<prop::sample::Index>(), replacement in event()) {
        let (log, cp) = logged(&events);
        let i = i.index(events.len());
        prop_assume!(replacement != events[i]);
        let mut export = log.export(log.size()).unwrap();
        let proof = log.inclusion_proof(i as u64, log.size()).unwrap();
        export[i].event = replacement;
        prop_assert!(matches!(verifier().audit(&cp, &export), Err(AuditError::RootMismatch)));
        prop_assert!(verifier().verify_inclusion(&cp, &export[i], &proof).is_err());
    }

    /// Removing any event is detected, whether or not the sequence numbers are rewritten.
    #[test]
    fn any_removal_is_detected(events in prop::collection::vec(event(), 1..40), i in any::<prop::sample::Index>(), pad in event()) {
        let (log, cp) = logged(&events);
        let i = i.index(events.len());
        let mut export = log.export(log.size()).unwrap();
        export.remove(i);
        prop_assert!(verifier().audit(&cp, &export).is_err());
        renumber(&mut export);
        prop_assert!(verifier().audit(&cp, &export).is_err());
        // Removal hidden by appending a forged event at the end: same length.
        export.push(LoggedEvent { seq: export.len() as u64, event: pad });
        prop_assume!(export.iter().map(|e| &e.event).ne(events.iter()));
        prop_assert!(matches!(verifier().audit(&cp, &export), Err(AuditError::RootMismatch)));
    }

    /// Inserting any event anywhere is detected, even with a removal to keep the length.
    #[test]
    fn any_insertion_is_detected(events in prop::collection::vec(event(), 1..40), i in any::<prop::sample::Index>(), j in any::<prop::sample::Index>(), extra in event()) {
        let (log, cp) = logged(&events);
        let mut export = log.export(log.size()).unwrap();
        let i = i.index(export.len() + 1);
        export.insert(i, LoggedEvent { seq: i as u64, event: extra.clone() });
        prop_assert!(verifier().audit(&cp, &export).is_err());
        renumber(&mut export);
        prop_assert!(verifier().audit(&cp, &export).is_err());
        // Drop some other original event so the length matches again.
        let j = j.index(export.len() - 1);
        let j = if j >= i { j + 1 } else { j };
        export.remove(j);
        renumber(&mut export);
        prop_assume!(export.iter().map(|e| &e.event).ne(events.iter()));
        prop_assert!(matches!(verifier().audit(&cp, &export), Err(AuditError::RootMismatch)));
    }

    /// Reordering any two different events is detected (with or without renumbering).
    #[test]
    fn any_reorder_is_detected(events in prop::collection::vec(event(), 2..40), i in any::<prop::sample::Index>(), j in any::<prop::sample::Index>()) {
        let (log, cp) = logged(&events);
        let (i, j) = (i.index(events.len()), j.index(events.len()));
        prop_assume!(i != j);
        let mut export = log.export(log.size()).unwrap();
        export.swap(i, j);
        let r = verifier().audit(&cp, &export);
        prop_assert!(matches!(r, Err(AuditError::SequenceMismatch { .. })), "{:?}", r);
        renumber(&mut export);
        if events[i] == events[j] {
            // Swapping equal events changes nothing: the log is the same log.
            prop_assert!(verifier().audit(&cp, &export).is_ok());
        } else {
            prop_assert!(matches!(verifier().audit(&cp, &export), Err(AuditError::RootMismatch)));
        }
    }
}

#[test]
fn larger_trees_match_the_naive_reference_at_power_of_two_boundaries() {
    let n = 4100usize;
    let leaves: Vec<Hash> = (0..n as u64).map(|i| leaf_hash(&i.to_le_bytes())).collect();
    let mut t = MerkleTree::default();
    for h in &leaves {
        t.push_hash(*h);
    }
    for size in [1023usize, 1024, 1025, 2047, 2048, 2049, 4095, 4096, 4097, 4100] {
        let d = &leaves[..size];
        assert_eq!(t.root_at(size as u64).unwrap(), mth(d), "root {size}");
        for m in [0, 1, size / 2, size - 2, size - 1] {
            assert_eq!(t.inclusion_path(m as u64, size as u64).unwrap(), path(m, d), "PATH({m}, {size})");
            if m > 0 {
                assert_eq!(
                    t.consistency_path(m as u64, size as u64).unwrap(),
                    proof(m, d),
                    "PROOF({m}, {size})"
                );
            }
        }
    }
}

#[test]
fn checkpoint_text_round_trips_and_forgeries_fail() {
    let (log, cp) = logged(&[AuditEvent::Purge { partitions: 1, records: 2, at: Timestamp::from_secs(3) }]);
    let v = verifier();
    let text = cp.to_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "test.example/audit");
    assert_eq!(lines[1], "1");
    assert_eq!(lines[3], "time 1700000000");
    assert_eq!(lines[4], "");
    assert!(lines[5].starts_with("\u{2014} test.example/audit "));
    assert_eq!(SignedCheckpoint::from_text(&text).unwrap(), cp);
    assert_eq!(v.verify_checkpoint_text(&text).unwrap().root(), &log.root());
    // serde goes through the text form
    let json = serde_json::to_string(&cp).unwrap();
    assert_eq!(serde_json::from_str::<SignedCheckpoint>(&json).unwrap(), cp);

    // Any change to the signed body breaks the signature (or the format).
    let root_b64 = lines[2];
    assert_eq!(root_b64.len(), 44, "standard padded base64 of 32 bytes");
    let forged = [
        text.replacen("\n1\n", "\n2\n", 1),
        text.replacen("time 1700000000", "time 1700000001", 1),
        text.replacen(
            root_b64,
            &format!("{}{}", if root_b64.starts_with('A') { "B" } else { "A" }, &root_b64[1..]),
            1,
        ),
    ];
    for f in &forged {
        assert!(matches!(v.verify_checkpoint_text(f), Err(AuditError::BadSignature)), "{f}");
    }
    for malformed in [
        text.replacen("\n1\n", "\n01\n", 1),
        text.replacen("\n1\n", "\n+1\n", 1),
        text.to_uppercase(),
        format!("{text}\n"),
        text.replacen(root_b64, &log.root().iter().map(|b| format!("{b:02x}")).collect::<String>(), 1),
        text.replacen(root_b64, root_b64.trim_end_matches('='), 1),
        text.replacen("time ", "time  ", 1),
        text.trim_end().to_owned(),
        String::new(),
    ] {
        assert!(SignedCheckpoint::from_text(&malformed).is_err(), "{malformed:?}");
    }
    assert!(matches!(CheckpointSigner::from_secret_bytes("has space", &[1; 32]), Err(AuditError::BadOrigin)));
    assert!(matches!(CheckpointSigner::from_secret_bytes("", &[1; 32]), Err(AuditError::BadOrigin)));
}

#[test]
fn proofs_do_not_transfer_between_events_checkpoints_or_sizes() {
    let at = Timestamp::from_secs(5);
    let events: Vec<AuditEvent> =
        (0..10u8).map(|i| AuditEvent::KeyDestruction { key_id: [i; 32], at }).collect();
    let (log, cp) = logged(&events);
    let v = verifier();
    let p = log.inclusion_proof(3, 10).unwrap();
    let e3 = log.event(3).unwrap();
    v.verify_inclusion(&cp, &e3, &p).unwrap();
    // The same event under another sequence number is another leaf.
    let moved = LoggedEvent { seq: 4, event: e3.event.clone() };
    assert!(v.verify_inclusion(&cp, &moved, &log.inclusion_proof(4, 10).unwrap()).is_err());
    // A proof for a smaller tree does not verify against the bigger checkpoint.
    assert!(v.verify_inclusion(&cp, &e3, &log.inclusion_proof(3, 9).unwrap()).is_err());
    // Consistency: the proof must be for the checkpoints' sizes, and order matters.
    let mut small = AuditLog::in_memory();
    small.append_batch(&events[..6]).unwrap();
    let old = small.checkpoint(&signer(), at);
    let c = log.consistency_proof(6, 10).unwrap();
    v.verify_consistency(&old, &cp, &c).unwrap();
    assert!(v.verify_consistency(&cp, &old, &c).is_err());
    assert!(v.verify_consistency(&old, &cp, &log.consistency_proof(5, 10).unwrap()).is_err());
    // A forked log (same length, one event different) is not consistent with the original.
    let mut fork_events = events.clone();
    fork_events[2] = AuditEvent::KeyDestruction { key_id: [99; 32], at };
    let (fork, fork_cp) = logged(&fork_events);
    assert!(v.verify_consistency(&old, &fork_cp, &fork.consistency_proof(6, 10).unwrap()).is_err());
    // Out-of-range requests are errors, not panics.
    assert!(matches!(log.inclusion_proof(10, 10), Err(AuditError::OutOfRange { .. })));
    assert!(matches!(log.inclusion_proof(0, 11), Err(AuditError::OutOfRange { .. })));
    assert!(matches!(log.consistency_proof(7, 6), Err(AuditError::OutOfRange { .. })));
    // RFC 9162 §2.1.4 defines consistency for 0 < m ≤ n: none from the empty tree (issue
    // #14, defect 8: an empty path was answered).
    assert!(matches!(log.consistency_proof(0, 6), Err(AuditError::OutOfRange { .. })));
    assert!(matches!(log.consistency_proof(0, 0), Err(AuditError::OutOfRange { .. })));
    assert!(matches!(log.event(10), Err(AuditError::OutOfRange { .. })));
    assert!(matches!(log.root_at(11), Err(AuditError::OutOfRange { .. })));
}

/// The signed note of golang.org/x/mod/sumdb/note's documentation and tests (key
/// `PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW`, secret
/// `PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz`):
/// our signer makes exactly its bytes and our verifier opens it.
#[test]
fn signed_note_matches_the_go_sumdb_note_vector() {
    use confiance_aggregator::audit::{note_key_id, open_note, sign_note};
    let seed = [
        0x81, 0x0a, 0x14, 0x02, 0xd5, 0x14, 0x6c, 0x8d, 0x84, 0xf2, 0x44, 0x33, 0x30, 0xf5, 0x40, 0x80, 0xeb,
        0xf9, 0x8e, 0xe1, 0x7d, 0x9c, 0x74, 0xf6, 0x25, 0x2f, 0xc5, 0xd5, 0xc7, 0x28, 0x31, 0x73,
    ];
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let public = key.verifying_key();
    assert_eq!(
        public.to_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "1a5cd907143c384c41e830c5bce12aa8817ec5649aaabf2c31388b35b2d744d6"
    );
    assert_eq!(note_key_id("PeterNeumann", &public), [0xc7, 0x4f, 0x20, 0xa3]);
    let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    let want = format!(
        "{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    );
    assert_eq!(sign_note(text, "PeterNeumann", &key).unwrap(), want);
    assert_eq!(open_note(&want, "PeterNeumann", &public).unwrap(), text);
    let tampered = want.replacen("cryptography", "cryptographY", 1);
    assert!(matches!(open_note(&tampered, "PeterNeumann", &public), Err(AuditError::BadSignature)));
    // A line of another key before ours is ignored, as signed-note requires.
    let other = sign_note(text, "Other", &ed25519_dalek::SigningKey::from_bytes(&[9; 32])).unwrap();
    let both = format!("{other}{}", &want[text.len() + 1..]);
    assert_eq!(open_note(&both, "PeterNeumann", &public).unwrap(), text);
    assert!(matches!(open_note(&other, "PeterNeumann", &public), Err(AuditError::BadSignature)));
}

/// A checkpoint is a signed note: the generic note verifier opens it with the log's key,
/// and a witness cosignature appended to it keeps it valid and round-trips.
#[test]
fn checkpoints_are_signed_notes_and_keep_cosignatures() {
    use confiance_aggregator::audit::{open_note, sign_note};
    let (log, cp) = logged(&[AuditEvent::ConsentGiven { receipt: ReceiptId([3; 32]) }]);
    let text = cp.to_text();
    let body = open_note(&text, "test.example/audit", &signer().verifying_key()).unwrap();
    assert_eq!(body, cp.checkpoint().body());
    let witness =
        sign_note(body, "witness.example", &ed25519_dalek::SigningKey::from_bytes(&[5; 32])).unwrap();
    let cosigned = format!("{text}{}", &witness[body.len() + 1..]);
    let parsed = SignedCheckpoint::from_text(&cosigned).unwrap();
    assert_eq!(parsed.signatures().len(), 2);
    assert_eq!(parsed.to_text(), cosigned);
    assert_eq!(verifier().verify_checkpoint_text(&cosigned).unwrap().root(), &log.root());
}
