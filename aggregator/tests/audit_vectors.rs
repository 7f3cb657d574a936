//! RFC 9162 / Certificate Transparency reference vectors (tests/vectors/rfc9162_merkle.json):
//! tree hashes, inclusion and consistency proofs — generated and verified — and every
//! `_bad_` case rejected.
#![allow(clippy::unwrap_used, reason = "a test: failing loudly is the point")]

use confiance_aggregator::audit::merkle::{
    Hash, MerkleTree, empty_root, leaf_hash, verify_consistency, verify_inclusion,
};
use serde_json::Value;

fn vectors() -> Value {
    let text = include_str!("vectors/rfc9162_merkle.json");
    let v: Value = serde_json::from_str(text).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["hash"], "SHA-256");
    v
}

fn bytes(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// A hash, or `None` when the hex is not 32 bytes (such a proof element must be rejected).
fn hash(v: &Value) -> Option<Hash> {
    bytes(v).try_into().ok()
}

fn path(v: &Value) -> Option<Vec<Hash>> {
    v.as_array().unwrap().iter().map(hash).collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

fn reference_tree(v: &Value) -> MerkleTree {
    let mut t = MerkleTree::default();
    for leaf in v["leaves"].as_array().unwrap() {
        t.push(&bytes(leaf));
    }
    t
}

#[test]
fn tree_hashes_match_for_every_prefix() {
    let v = vectors();
    assert_eq!(empty_root(), hash(&v["empty_root"]).unwrap());
    assert_eq!(MerkleTree::default().root(), empty_root());
    let t = reference_tree(&v);
    let roots = v["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 8);
    let mut grown = MerkleTree::default();
    for (r, leaf) in roots.iter().zip(v["leaves"].as_array().unwrap()) {
        let size = u(&r["tree_size"]);
        let want = hash(&r["root"]).unwrap();
        assert_eq!(t.root_at(size).unwrap(), want, "root of {size} leaves from stored nodes");
        grown.push(&bytes(leaf));
        assert_eq!(grown.root(), want, "root of {size} leaves from the frontier");
    }
}

#[test]
fn inclusion_proofs_are_generated_and_verify() {
    let v = vectors();
    let t = reference_tree(&v);
    let leaves = v["leaves"].as_array().unwrap();
    let cases = v["inclusion"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for c in cases {
        let (i, n) = (u(&c["leaf_index"]), u(&c["tree_size"]));
        let want = path(&c["path"]).unwrap();
        assert_eq!(t.inclusion_path(i, n).unwrap(), want, "PATH({i}, D[{n}])");
        let leaf = leaf_hash(&bytes(&leaves[i as usize]));
        verify_inclusion(&leaf, i, n, &want, &t.root_at(n).unwrap()).unwrap();
    }
}

#[test]
fn consistency_proofs_are_generated_and_verify() {
    let v = vectors();
    let t = reference_tree(&v);
    let cases = v["consistency"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for c in cases {
        let (m, n) = (u(&c["size1"]), u(&c["size2"]));
        let want = path(&c["path"]).unwrap();
        assert_eq!(t.consistency_path(m, n).unwrap(), want, "PROOF({m}, D[{n}])");
        verify_consistency(m, n, &want, &t.root_at(m).unwrap(), &t.root_at(n).unwrap()).unwrap();
    }
    for c in v["consistency_edge"].as_array().unwrap() {
        let p = path(&c["path"]).unwrap();
        let (r1, r2) = (hash(&c["root1"]).unwrap(), hash(&c["root2"]).unwrap());
        verify_consistency(u(&c["size1"]), u(&c["size2"]), &p, &r1, &r2).unwrap();
    }
}

#[test]
fn every_bad_inclusion_case_is_rejected() {
    let v = vectors();
    let bad = v["inclusion_bad"].as_array().unwrap();
    assert!(bad.len() >= 70, "{}", bad.len());
    for c in bad {
        let desc = c["_bad_"].as_str().unwrap();
        let (Some(p), Some(leaf), Some(root)) = (path(&c["path"]), hash(&c["leaf_hash"]), hash(&c["root"]))
        else {
            continue; // a non-32-byte element cannot even be represented: rejected by type
        };
        let r = verify_inclusion(&leaf, u(&c["leaf_index"]), u(&c["tree_size"]), &p, &root);
        assert!(r.is_err(), "accepted bad inclusion case: {desc}");
    }
}

#[test]
fn every_bad_consistency_case_is_rejected() {
    let v = vectors();
    let bad = v["consistency_bad"].as_array().unwrap();
    assert!(bad.len() >= 80, "{}", bad.len());
    for c in bad {
        let desc = c["_bad_"].as_str().unwrap();
        let (Some(p), Some(r1), Some(r2)) = (path(&c["path"]), hash(&c["root1"]), hash(&c["root2"])) else {
            continue;
        };
        let r = verify_consistency(u(&c["size1"]), u(&c["size2"]), &p, &r1, &r2);
        assert!(r.is_err(), "accepted bad consistency case: {desc}");
    }
}
