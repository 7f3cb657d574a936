//! Known-answer vectors for pseudonyms: `tests/vectors/pseudonym.json` (version 1).
//!
//! `generate` builds every vector from fixed inputs; `vectors_match_the_file` checks the
//! file still says the same (set `CONFIANCE_WRITE_VECTORS=1` to rewrite it after a
//! deliberate, versioned change). `vectors_from_the_file_verify` reads the file alone
//! and replays it: derivations, encryption, each transcription step, the chain and key
//! proofs, decryption, and every `_bad_` case, which must fail with the named error.

use confiance::Timestamp;
use confiance::ids::RecipientId;
use confiance::pseudonym::{
    Ciphertext, DeviceSecret, Epoch, SystemPublicKey, decode_point, decode_scalar, hazmat as eg,
};
use confiance_aggregator::transcrypt::{
    Domain, DomainCommitments, DomainTranscryptor, KeyProof, RecipientKey, Step, Transcryptor,
    TranscryptorId, TranscryptorSecret, hazmat, verify_chain,
};
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::{RistrettoPoint, Scalar};
use serde_json::{Value, json};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/pseudonym.json");

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &Value) -> Vec<u8> {
    let s = s.as_str().unwrap();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn arr32(v: &Value) -> [u8; 32] {
    unhex(v).try_into().unwrap()
}

fn sc(b: u8) -> Scalar {
    Scalar::from_bytes_mod_order([b; 32])
}

fn pt(p: &RistrettoPoint) -> String {
    hex(p.compress().as_bytes())
}

fn transcryptors() -> Vec<Transcryptor> {
    [0x11u8, 0x22, 0x33]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            Transcryptor::new(TranscryptorId(i as u32 + 1), TranscryptorSecret::from_bytes([*b; 32]))
        })
        .collect()
}

fn domain() -> Domain {
    Domain::with_epoch(RecipientId::new("acme-thermo").unwrap(), Epoch(19_675))
}

fn generate() -> Value {
    let secrets = [[0u8; 32], core::array::from_fn(|i| i as u8), [0x42; 32]];
    let mut scoped = vec![];
    for s in &secrets {
        for r in ["acme-thermo", "other-brand"] {
            for e in [0u64, 1, 19_675] {
                let p = DeviceSecret::from_bytes(*s).scoped(&RecipientId::new(r).unwrap(), Epoch(e));
                scoped.push(
                    json!({"device_secret": hex(s), "recipient": r, "epoch": e, "pseudonym": hex(&p.0)}),
                );
            }
        }
    }
    let epochs: Vec<Value> = [(1_700_000_000u64, 86_400u64), (1_700_000_000, 604_800), (59, 60), (60, 60)]
        .iter()
        .map(|&(t, l)| json!({"timestamp": t, "length_secs": l, "epoch": Epoch::containing(Timestamp::from_secs(t), l).unwrap().0}))
        .collect();
    let identity: Vec<Value> = secrets
        .iter()
        .map(|s| json!({"device_secret": hex(s), "identity_point": pt(&DeviceSecret::from_bytes(*s).identity_point())}))
        .collect();

    let ts = transcryptors();
    let mut y = RISTRETTO_BASEPOINT_POINT;
    let mut tjson = vec![];
    for (i, t) in ts.iter().enumerate() {
        let nonce = sc(0x51 + i as u8);
        let (next, proof) = hazmat::contribute_system_key_with(t, &y, &nonce);
        tjson.push(json!({
            "id": t.id().0, "secret": hex(&[[0x11u8, 0x22, 0x33][i]; 32]),
            "public_key_share": pt(t.public_key_share()),
            "key_nonce": hex(nonce.as_bytes()), "key_input": pt(&y), "key_output": pt(&next),
            "key_proof": hex(&proof.to_bytes()),
        }));
        y = next;
    }
    let pk = SystemPublicKey::from_point(y).unwrap();

    let device = DeviceSecret::from_bytes([0x42; 32]);
    let r = sc(7);
    let ct = eg::encrypt_with(&device.identity_point(), pk.point(), &r).unwrap();

    let d = domain();
    let dts: Vec<DomainTranscryptor> = ts.iter().map(|t| t.for_domain(&d)).collect();
    let mut steps = vec![];
    let mut cur = ct;
    for (i, dt) in dts.iter().enumerate() {
        let (ri, nonces) = (sc(0x60 + i as u8), [sc(0x70 + i as u8), sc(0x80 + i as u8), sc(0x90 + i as u8)]);
        let step = hazmat::transcrypt_with(dt, &cur, &ri, &nonces);
        let c = dt.commitments();
        let (s, k) = hazmat::factors(dt);
        steps.push(json!({
            "transcryptor": step.transcryptor.0,
            "s": hex(s.as_bytes()), "k": hex(k.as_bytes()),
            "s_commit": pt(&c.s_commit), "k_commit": pt(&c.k_commit),
            "r": hex(ri.as_bytes()), "nonces": nonces.iter().map(|n| hex(n.as_bytes())).collect::<Vec<_>>(),
            "input": hex(&cur.to_bytes()), "output": hex(&step.output.to_bytes()),
            "proof": hex(&step.proof.to_bytes()), "step": hex(&step.to_bytes()),
        }));
        cur = step.output;
    }
    let shares: Vec<_> = dts.iter().map(DomainTranscryptor::recipient_key_share).collect();
    let key = RecipientKey::from_shares(&shares).unwrap();
    let pseudonym = key.decrypt_unverified(&cur).unwrap();

    // Bad cases, built from the good ones.
    let step0 = steps[0]["step"].as_str().unwrap().to_owned();
    let ct_hex = hex(&ct.to_bytes());
    let p_noncanonical = "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";
    let l_bytes = {
        let mut l = (Scalar::ZERO - Scalar::ONE).to_bytes();
        l[0] += 1;
        hex(&l)
    };
    let flip = |h: &str, byte: usize, mask: u8| {
        let mut b = unhex(&json!(h));
        b[byte] ^= mask;
        hex(&b)
    };
    let splice = |h: &str, at: usize, with: &str| {
        let mut b = unhex(&json!(h));
        let w = unhex(&json!(with));
        b[at..at + w.len()].copy_from_slice(&w);
        hex(&b)
    };
    let bad = json!([
        {"name": "_bad_ciphertext_noncanonical_b", "op": "decode_ciphertext", "bytes": splice(&ct_hex, 0, p_noncanonical), "error": "NonCanonicalPoint"},
        {"name": "_bad_ciphertext_negative_c", "op": "decode_ciphertext", "bytes": splice(&ct_hex, 32, &hex(&Scalar::ONE.to_bytes())), "error": "NonCanonicalPoint"},
        {"name": "_bad_ciphertext_identity_key", "op": "decode_ciphertext", "bytes": splice(&ct_hex, 64, &hex(&[0; 32])), "error": "IdentityPoint"},
        {"name": "_bad_ciphertext_short", "op": "decode_ciphertext", "bytes": &ct_hex[..190], "error": "BadLength"},
        {"name": "_bad_system_key_identity", "op": "decode_public_key", "bytes": hex(&[0; 32]), "error": "IdentityPoint"},
        {"name": "_bad_scalar_equal_to_l", "op": "decode_scalar", "bytes": l_bytes, "error": "NonCanonicalScalar"},
        {"name": "_bad_step_proof_noncanonical_challenge", "op": "decode_step", "bytes": splice(&step0, 132, &l_bytes), "error": "NonCanonicalScalar"},
        {"name": "_bad_ciphertext_identity_b", "op": "decode_ciphertext", "bytes": splice(&ct_hex, 0, &hex(&[0; 32])), "error": "IdentityPoint"},
        {"name": "_bad_ciphertext_identity_c", "op": "decode_ciphertext", "bytes": splice(&ct_hex, 32, &hex(&[0; 32])), "error": "IdentityPoint"},
        {"name": "_bad_step_proof_flipped_bit", "op": "verify_chain", "steps": [flip(&step0, 200, 0x01), steps[1]["step"], steps[2]["step"]], "error": "InvalidProof { step: 0 }"},
        {"name": "_bad_step_output_flipped_bit", "op": "verify_chain", "steps": [steps[0]["step"], steps[1]["step"], flip(steps[2]["step"].as_str().unwrap(), 4 + 40, 0x04)], "error": "any"},
        {"name": "_bad_step_wrong_transcryptor_id", "op": "verify_chain", "steps": [flip(&step0, 3, 0x02), steps[1]["step"], steps[2]["step"]], "error": "ChainMismatch"},
        {"name": "_bad_chain_missing_step", "op": "verify_chain", "steps": [steps[0]["step"], steps[2]["step"]], "error": "ChainMismatch"},
        {"name": "_bad_chain_swapped_steps", "op": "verify_chain", "steps": [steps[1]["step"], steps[0]["step"], steps[2]["step"]], "error": "ChainMismatch"},
        {"name": "_bad_chain_other_domain", "op": "verify_chain_other_domain", "steps": [steps[0]["step"], steps[1]["step"], steps[2]["step"]], "error": "InvalidProof { step: 0 }"},
        {"name": "_bad_key_proof_flipped_bit", "op": "verify_key_proof", "transcryptor": 0, "proof": flip(tjson[0]["key_proof"].as_str().unwrap(), 40, 0x10), "error": "false"},
        {"name": "_bad_decrypt_partial_chain", "op": "decrypt", "ciphertext": steps[1]["output"], "error": "WrongKey"},
        {"name": "_bad_epoch_zero_length", "op": "epoch", "timestamp": 1_700_000_000u64, "length_secs": 0, "error": "ZeroEpochLength"},
    ]);

    json!({
        "version": 1,
        "description": "confiance pseudonym known-answer vectors. Hex strings; points are RFC 9496 Ristretto255 encodings; scalars little-endian mod l; ciphertext = B || C || Y; step = id_be32 || output || proof; proof = T || e || z_k || z_s || z_t (T = t*G, never the identity). identity_point = m*G with m = HKDF(device secret, 'confiance/pseudonym/identity/v2') reduced mod l. See src/pseudonym/ and aggregator/src/transcrypt/.",
        "scoped": scoped,
        "epochs": epochs,
        "identity": identity,
        "transcryptors": tjson,
        "system_public_key": hex(&pk.to_bytes()),
        "encryption": {"device_secret": hex(&[0x42; 32]), "r": hex(r.as_bytes()), "ciphertext": ct_hex},
        "domain": {"recipient": "acme-thermo", "epoch": 19_675, "encoding": hex(&d.encode())},
        "steps": steps,
        "recipient_public_key": pt(key.public_key()),
        "pseudonym": hex(&pseudonym.0),
        "bad": bad,
    })
}

#[test]
fn vectors_match_the_file() {
    let v = generate();
    if std::env::var_os("CONFIANCE_WRITE_VECTORS").is_some() {
        std::fs::write(PATH, serde_json::to_string_pretty(&v).unwrap() + "\n").unwrap();
    }
    let file: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    assert_eq!(file, v);
}

fn commitments(v: &Value) -> Vec<DomainCommitments> {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| DomainCommitments {
            transcryptor: TranscryptorId(s["transcryptor"].as_u64().unwrap() as u32),
            s_commit: decode_point(&unhex(&s["s_commit"])).unwrap(),
            k_commit: decode_point(&unhex(&s["k_commit"])).unwrap(),
        })
        .collect()
}

fn err_name<E: std::fmt::Debug>(r: Result<impl Sized, E>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => {
            let s = format!("{e:?}");
            s.strip_prefix("Encoding(").and_then(|t| t.strip_suffix(')')).unwrap_or(&s).to_owned()
        }
    }
}

#[test]
fn vectors_from_the_file_verify() {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    assert_eq!(v["version"], 1);
    for s in v["scoped"].as_array().unwrap() {
        let p = DeviceSecret::from_bytes(arr32(&s["device_secret"])).scoped(
            &RecipientId::new(s["recipient"].as_str().unwrap()).unwrap(),
            Epoch(s["epoch"].as_u64().unwrap()),
        );
        assert_eq!(hex(&p.0), s["pseudonym"]);
    }
    for e in v["epochs"].as_array().unwrap() {
        let got = Epoch::containing(
            Timestamp::from_secs(e["timestamp"].as_u64().unwrap()),
            e["length_secs"].as_u64().unwrap(),
        );
        assert_eq!(got.unwrap().0, e["epoch"].as_u64().unwrap());
    }
    for i in v["identity"].as_array().unwrap() {
        assert_eq!(
            pt(&DeviceSecret::from_bytes(arr32(&i["device_secret"])).identity_point()),
            i["identity_point"]
        );
    }

    let ts = transcryptors();
    let mut y = RISTRETTO_BASEPOINT_POINT;
    for (t, tv) in ts.iter().zip(v["transcryptors"].as_array().unwrap()) {
        assert_eq!(hex(TranscryptorSecret::from_bytes(arr32(&tv["secret"])).expose_bytes()), tv["secret"]);
        let share = decode_point(&unhex(&tv["public_key_share"])).unwrap();
        let out = decode_point(&unhex(&tv["key_output"])).unwrap();
        let proof = KeyProof::from_bytes(&unhex(&tv["key_proof"])).unwrap();
        assert!(Transcryptor::verify_key_contribution(t.id(), &share, &y, &out, &proof));
        y = out;
    }
    let pk = SystemPublicKey::from_bytes(&unhex(&v["system_public_key"])).unwrap();
    assert_eq!(*pk.point(), y);

    let enc = &v["encryption"];
    let device = DeviceSecret::from_bytes(arr32(&enc["device_secret"]));
    let r = decode_scalar(&unhex(&enc["r"])).unwrap();
    let ct = Ciphertext::from_bytes(&unhex(&enc["ciphertext"])).unwrap();
    assert_eq!(eg::encrypt_with(&device.identity_point(), pk.point(), &r).unwrap(), ct);

    let d = domain();
    assert_eq!(hex(&d.encode()), v["domain"]["encoding"]);
    let dts: Vec<DomainTranscryptor> = ts.iter().map(|t| t.for_domain(&d)).collect();
    let mut steps = vec![];
    let mut cur = ct;
    for (dt, sv) in dts.iter().zip(v["steps"].as_array().unwrap()) {
        assert_eq!(Ciphertext::from_bytes(&unhex(&sv["input"])).unwrap(), cur);
        let s = decode_scalar(&unhex(&sv["s"])).unwrap();
        let k = decode_scalar(&unhex(&sv["k"])).unwrap();
        let r = decode_scalar(&unhex(&sv["r"])).unwrap();
        let nonces: Vec<Scalar> =
            sv["nonces"].as_array().unwrap().iter().map(|n| decode_scalar(&unhex(n)).unwrap()).collect();
        // The step is the rsk of the input by the recorded factors...
        let out = Ciphertext::from_bytes(&unhex(&sv["output"])).unwrap();
        assert_eq!(eg::rsk(&cur, &s, &k, &k.invert(), &r), out);
        // ...the transcryptor derives exactly those factors and that proof...
        let step = hazmat::transcrypt_with(dt, &cur, &r, &[nonces[0], nonces[1], nonces[2]]);
        assert_eq!(hex(&step.to_bytes()), sv["step"]);
        let decoded = Step::from_bytes(&unhex(&sv["step"])).unwrap();
        assert_eq!(decoded, step);
        steps.push(decoded);
        cur = out;
    }
    // ...and the whole chain verifies against the published commitments alone.
    let coms = commitments(&v);
    assert_eq!(verify_chain(&ct, &d, &steps, &coms).unwrap(), cur);
    let key = RecipientKey::from_shares(
        &dts.iter().map(DomainTranscryptor::recipient_key_share).collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(pt(key.public_key()), v["recipient_public_key"]);
    assert_eq!(hex(&key.decrypt_unverified(&cur).unwrap().0), v["pseudonym"]);

    let mut names = 0;
    for b in v["bad"].as_array().unwrap() {
        let name = b["name"].as_str().unwrap();
        assert!(name.starts_with("_bad_"));
        let decode_steps = |b: &Value| -> Result<Vec<Step>, _> {
            b["steps"].as_array().unwrap().iter().map(|s| Step::from_bytes(&unhex(s))).collect()
        };
        let got = match b["op"].as_str().unwrap() {
            "decode_ciphertext" => err_name(Ciphertext::from_bytes(&unhex(&b["bytes"]))),
            "decode_public_key" => err_name(SystemPublicKey::from_bytes(&unhex(&b["bytes"]))),
            "decode_scalar" => err_name(decode_scalar(&unhex(&b["bytes"]))),
            "decode_step" => err_name(Step::from_bytes(&unhex(&b["bytes"]))),
            "verify_chain" => {
                // A chain with a step missing is checked against all three commitments.
                err_name(decode_steps(b).and_then(|s| verify_chain(&ct, &d, &s, &coms)))
            }
            "verify_chain_other_domain" => {
                let other = Domain::with_epoch(RecipientId::new("other-brand").unwrap(), Epoch(19_675));
                err_name(decode_steps(b).and_then(|s| verify_chain(&ct, &other, &s, &coms)))
            }
            "verify_key_proof" => {
                let tv = &v["transcryptors"][b["transcryptor"].as_u64().unwrap() as usize];
                let ok = Transcryptor::verify_key_contribution(
                    TranscryptorId(tv["id"].as_u64().unwrap() as u32),
                    &decode_point(&unhex(&tv["public_key_share"])).unwrap(),
                    &decode_point(&unhex(&tv["key_input"])).unwrap(),
                    &decode_point(&unhex(&tv["key_output"])).unwrap(),
                    &KeyProof::from_bytes(&unhex(&b["proof"])).unwrap(),
                );
                ok.to_string()
            }
            "decrypt" => {
                err_name(key.decrypt_unverified(&Ciphertext::from_bytes(&unhex(&b["ciphertext"])).unwrap()))
            }
            "epoch" => err_name(Epoch::containing(
                Timestamp::from_secs(b["timestamp"].as_u64().unwrap()),
                b["length_secs"].as_u64().unwrap(),
            )),
            op => panic!("unknown op {op}"),
        };
        let want = b["error"].as_str().unwrap();
        if want == "any" {
            assert_ne!(got, "ok", "{name} accepted");
        } else {
            assert_eq!(got, want, "{name}");
        }
        names += 1;
    }
    assert!(names >= 15);
}
