//! RFC 9497 known-answer tests: `tests/vectors/rfc9497_ristretto255_sha512_voprf.json`
//! holds every ristretto255-SHA512 VOPRF-mode vector of RFC 9497 Appendix A.1.2 (key
//! derivation, blinding, evaluation, batched proof, finalisation) and `_bad_` cases,
//! each of which must be refused with its own [`VoprfError`].

use confiance::token::voprf::{self, Proof, PublicKey, VoprfError};
use confiance_aggregator::issuer::voprf::ServerKey;
use curve25519_dalek::{RistrettoPoint, Scalar};
use serde_json::Value;

const PATH: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/rfc9497_ristretto255_sha512_voprf.json");

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    unhex(s).try_into().unwrap()
}

fn list(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()).collect()
}

fn file() -> Value {
    serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap()
}

fn server_key(doc: &Value) -> ServerKey {
    let seed: [u8; 32] = arr(doc["Seed"].as_str().unwrap());
    ServerKey::derive(&seed, &unhex(doc["KeyInfo"].as_str().unwrap())).unwrap()
}

#[test]
fn key_derivation_matches_rfc9497() {
    let doc = file();
    let key = server_key(&doc);
    assert_eq!(*key.secret_bytes(), arr::<32>(doc["skSm"].as_str().unwrap()));
    assert_eq!(key.public_key().to_bytes(), arr::<32>(doc["pkSm"].as_str().unwrap()));
}

#[test]
fn every_vector_matches_rfc9497() {
    let doc = file();
    let key = server_key(&doc);
    let pk = key.public_key();
    let vectors = doc["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 3, "RFC 9497 A.1.2 has three VOPRF vectors");
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let inputs: Vec<Vec<u8>> = list(&v["Input"]).iter().map(|s| unhex(s)).collect();
        let blinds: Vec<Scalar> =
            list(&v["Blind"]).iter().map(|s| voprf::deserialize_scalar(arr(s)).unwrap()).collect();
        let mut blinded = Vec::new();
        for ((input, b), expected) in inputs.iter().zip(&blinds).zip(list(&v["BlindedElement"])) {
            let (_, p) = voprf::blind_with(input, *b).unwrap();
            assert_eq!(p.compress().to_bytes(), arr::<32>(&expected), "{name}: BlindedElement");
            blinded.push(p);
        }
        let r = voprf::deserialize_scalar(arr(v["ProofRandomScalar"].as_str().unwrap())).unwrap();
        let wire: Vec<[u8; 32]> = blinded.iter().map(|p| p.compress().to_bytes()).collect();
        let (evaluated, proof) = key.blind_evaluate_with(&wire, r).unwrap();
        for (e, expected) in evaluated.iter().zip(list(&v["EvaluationElement"])) {
            assert_eq!(*e, arr::<32>(&expected), "{name}: EvaluationElement");
        }
        let evaluated: Vec<RistrettoPoint> =
            evaluated.iter().map(|e| voprf::deserialize_element(e).unwrap()).collect();
        assert_eq!(proof.to_bytes(), arr::<64>(v["Proof"].as_str().unwrap()), "{name}: Proof");
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let outputs = voprf::finalize(&pk, &refs, &blinds, &blinded, &evaluated, &proof).unwrap();
        // The batched client path (one inversion for the blinded elements, the wire
        // bytes hashed as received, the outputs serialised in one batch) agrees.
        let (batch_points, batch_wire) = voprf::blind_batch_with(&refs, &blinds).unwrap();
        assert_eq!(batch_points, blinded, "{name}: blind_batch_with");
        assert_eq!(batch_wire, wire, "{name}: blind_batch_with (encodings)");
        let evaluated_wire: Vec<[u8; 32]> = evaluated.iter().map(|e| e.compress().to_bytes()).collect();
        let batched = voprf::finalize_encoded(
            &pk,
            &pk.to_bytes(),
            &refs,
            &blinds,
            (&batch_points, &batch_wire),
            &evaluated_wire,
            &proof,
        )
        .unwrap();
        assert_eq!(batched, outputs, "{name}: finalize_encoded");
        for ((out, input), expected) in outputs.iter().zip(&inputs).zip(list(&v["Output"])) {
            assert_eq!(out.to_vec(), unhex(&expected), "{name}: Output (Finalize)");
            assert_eq!(key.evaluate(input).unwrap().to_vec(), unhex(&expected), "{name}: Output (Evaluate)");
        }
    }
}

fn error_named(name: &str) -> VoprfError {
    match name {
        "BadProof" => VoprfError::BadProof,
        "WrongKey" => VoprfError::WrongKey,
        "NonCanonicalElement" => VoprfError::NonCanonicalElement,
        "IdentityElement" => VoprfError::IdentityElement,
        "NonCanonicalScalar" => VoprfError::NonCanonicalScalar,
        other => panic!("unknown error {other}"),
    }
}

/// The client's whole path over the (possibly altered) wire values of one vector.
fn client(doc: &Value, v: &Value, replace: &Value) -> Result<(), VoprfError> {
    let field = |k: &str| if replace.get(k).is_some() { replace[k].clone() } else { v[k].clone() };
    let expected =
        PublicKey::from_bytes(&arr(replace.get("pkSm").unwrap_or(&doc["pkSm"]).as_str().unwrap()))?;
    let announced: [u8; 32] = arr(replace.get("AnnouncedKey").unwrap_or(&doc["pkSm"]).as_str().unwrap());
    voprf::check_key(&expected, &announced)?;
    let inputs: Vec<Vec<u8>> = list(&v["Input"]).iter().map(|s| unhex(s)).collect();
    let blinds: Vec<Scalar> =
        list(&v["Blind"]).iter().map(|s| voprf::deserialize_scalar(arr(s)).unwrap()).collect();
    let blinded: Vec<RistrettoPoint> =
        list(&v["BlindedElement"]).iter().map(|s| voprf::deserialize_element(&arr(s)).unwrap()).collect();
    let evaluated = list(&field("EvaluationElement"))
        .iter()
        .map(|s| voprf::deserialize_element(&arr(s)))
        .collect::<Result<Vec<_>, _>>()?;
    let proof = Proof::from_bytes(&arr(field("Proof").as_str().unwrap()))?;
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    voprf::finalize(&expected, &refs, &blinds, &blinded, &evaluated, &proof).map(drop)
}

/// The server's path: deserialise the blinded elements, evaluate and prove.
fn server(key: &ServerKey, replace: &Value) -> Result<(), VoprfError> {
    let blinded: Vec<[u8; 32]> = list(&replace["BlindedElement"]).iter().map(|s| arr(s)).collect();
    key.blind_evaluate_with(&blinded, Scalar::ONE).map(drop)
}

#[test]
fn every_bad_case_is_refused_with_its_own_error() {
    let doc = file();
    let key = server_key(&doc);
    let vectors = doc["vectors"].as_array().unwrap();
    // The unaltered vectors pass the same client path the bad cases take.
    for v in vectors {
        client(&doc, v, &Value::Null).unwrap();
    }
    let bad = doc["bad"].as_array().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for case in bad {
        let name = case["name"].as_str().unwrap();
        assert!(name.starts_with("_bad_"), "{name}");
        let base = &vectors[case["base"].as_u64().unwrap() as usize];
        let expected = error_named(case["error"].as_str().unwrap());
        let got = if case["side"] == "server" {
            server(&key, &case["replace"])
        } else {
            client(&doc, base, &case["replace"])
        };
        assert_eq!(got, Err(expected), "{name}");
        seen.insert(format!("{expected:?}"));
    }
    assert_eq!(seen.len(), 5, "bad proof, wrong key, non-canonical element, identity, non-canonical scalar");
}

#[test]
fn batch_sizes_are_checked() {
    let doc = file();
    let key = server_key(&doc);
    assert_eq!(key.blind_evaluate_with(&[], Scalar::ONE).unwrap_err(), VoprfError::BatchSize);
    let p = voprf::hash_to_group(b"x");
    let (e, proof) = key.blind_evaluate_with(&[p.compress().to_bytes()], Scalar::ONE).unwrap();
    let e: Vec<RistrettoPoint> = e.iter().map(|x| voprf::deserialize_element(x).unwrap()).collect();
    assert_eq!(voprf::verify_proof(&key.public_key(), &[p, p], &e, &proof), Err(VoprfError::BatchSize));
    assert_eq!(voprf::verify_proof(&key.public_key(), &[p], &e, &proof), Ok(()));
}

/// The batched paths on both sides (the device's blinding and finalisation with one
/// inversion each, the server's weights from a per-key hash state) agree for batches of
/// every size the RFC vectors do not cover: the proofs verify and the outputs are
/// `Evaluate`'s; an altered evaluation fails the proof.
#[test]
fn batched_client_and_server_agree_for_many_batch_sizes() {
    use confiance::hazmat::{SeedableRng as _, SeededRng};
    let key = ServerKey::derive(&[0x42; 32], b"switch").unwrap();
    let pk = key.public_key();
    let mut rng = SeededRng::seed_from_u64(7);
    for n in [1usize, 2, 5, 6, 7, 8, 33] {
        let inputs: Vec<Vec<u8>> = (0..n).map(|i| format!("input {n} {i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let blinds: Vec<Scalar> = (0..n).map(|_| voprf::random_blind(&mut rng)).collect();
        let (points, wire) = voprf::blind_batch_with(&refs, &blinds).unwrap();
        let (evaluated, proof) = key.blind_evaluate(&wire, &mut rng).unwrap();
        let outputs = voprf::finalize_encoded(
            &pk,
            &pk.to_bytes(),
            &refs,
            &blinds,
            (&points, &wire),
            &evaluated,
            &proof,
        )
        .unwrap_or_else(|e| panic!("{n} tokens: {e}"));
        for (out, input) in outputs.iter().zip(&refs) {
            assert_eq!(*out, key.evaluate(input).unwrap(), "{n} tokens");
        }
        // The same proof with one evaluation swapped for another element fails.
        let mut altered = evaluated.clone();
        altered[0] = wire[0];
        assert_eq!(
            voprf::finalize_encoded(&pk, &pk.to_bytes(), &refs, &blinds, (&points, &wire), &altered, &proof),
            Err(VoprfError::BadProof),
            "{n} tokens"
        );
    }
}
