"""Runs the repository's test vectors through this implementation.

- tests/vectors/wire.json: every structure of docs/wire-format.md. A valid case is
  rebuilt from its fields and must be byte-identical, and must decode; a `_bad_` case must
  be refused with its error code.
- aggregator/tests/vectors/rfc9162_merkle.json: RFC 9162 trees and proofs.
- the signed note of Go's golang.org/x/mod/sumdb/note (an outside vector for §9).
"""

import json
import tomllib
from pathlib import Path

from . import audit, tokens, transcrypt, wire
from .wire import WireError

PETER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_NOTE = PETER_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"


def verdict(kind, data, ctx):
    """What this implementation says of a case: None (accepted) or the error code."""
    try:
        if kind == "key_config":
            wire.decode_key_config(data)
        elif kind == "catalogue":
            wire.decode_catalogue(data)
        elif kind == "batch":
            reports = wire.decode_batch(data)
            if not reports:
                raise WireError("malformed_batch", "empty")
        elif kind == "envelope":
            e = ctx["envelope"]
            key_seed = bytes.fromhex(e["key_seed"])
            suite = wire.suite(e["aead_id"])
            pk = suite.kem.derive_key_pair(key_seed).public_key.to_public_bytes()
            config = {"key_id": e["key_id"], "aead_id": e["aead_id"], "public_key": pk.hex(),
                      "not_before": e["not_before"], "not_after": e["not_after"]}
            wire.open_envelope(data, key_seed, config, bytes.fromhex(e["catalogue_digest"]), e["now"])
        elif kind in wire.DOMAINS:
            wire.verify_consent(kind, data)
        elif kind == "device_certificate":
            wire.verify_certificate(data)
        elif kind == "body":
            if not wire.decode_body(data)[1]:
                raise WireError("malformed_batch", "empty")
        elif kind == "token_request":
            t = ctx["token"]
            tokens.check_request(data, ctx["_catalogue"], t["now"], t["token_period"])
        elif kind == "spent_token":
            t = ctx["token"]
            tokens.check_spent(data, bytes.fromhex(t["scope_key"]), t["now"], t["token_period"])
        elif kind == "transcryption_request":
            transcrypt.check_request(data)
        elif kind == "checkpoint":
            c = ctx["checkpoint"]
            audit.verify_checkpoint(data.decode("utf-8"), c["origin"], bytes.fromhex(c["public_key"]))
        else:
            raise AssertionError(f"unknown kind {kind}")
    except WireError as e:
        return e.code
    return None


def rebuild(kind, f):
    """A valid case's bytes, made by this implementation from its fields."""
    if kind == "key_config":
        return wire.encode_key_config(f)
    if kind == "catalogue":
        return None  # only its digest is rebuilt (below)
    if kind == "batch":
        return wire.encode_batch(f["reports"])
    if kind == "envelope":
        suite = wire.suite(f["aead_id"])
        kp = suite.kem.derive_key_pair(bytes.fromhex(f["key_seed"]))
        config = {"key_id": f["key_id"], "aead_id": f["aead_id"],
                  "public_key": kp.public_key.to_public_bytes().hex()}
        return wire.seal(config, bytes.fromhex(f["catalogue_digest"]), f["time_bucket"],
                         bytes.fromhex(f["plaintext"]), ikm_e=bytes.fromhex(f["ikm_e"]))
    if kind in wire.DOMAINS:
        seed = bytes.fromhex(f["signer_seed"])
        if kind in ("delegation", "revocation"):
            f = dict(f, subject_key=wire.public_key(seed).hex())
        return wire.sign(kind, f, seed)
    if kind == "device_certificate":
        return wire.sign_certificate(f, bytes.fromhex(f["certifier_seed"]))
    if kind == "checkpoint":
        return None  # signed by the log; verified, not rebuilt
    if kind == "transcryption_request":
        return None  # randomised; its fields and signed bytes are checked below
    if kind == "body":
        spent = [(t["scope"], bytes.fromhex(t["token"])) for t in f["tokens"]]
        return wire.encode_body(spent, f["reports"])
    if kind == "token_request":
        return tokens.sign_request(bytes.fromhex(f["device_seed"]), f["scope"], [bytes.fromhex(b) for b in f["blinded"]])
    if kind == "spent_token":
        t = f["token"]
        return tokens.scope_bytes(f["scope"]) + b"".join(
            bytes.fromhex(t[k]) for k in ("token_type", "nonce", "scope_digest", "key_id",
                                          "element" if "element" in t else "authenticator"))
    raise AssertionError(kind)


# Only the issuer can tell these from a valid token: the element is skS·HashToGroup(input)
# (the authenticator of a 0xC0F1 token RFC 9497 `Evaluate(skS, token_input)`), and skS is
# the issuer's secret (§10.2).
# The plaintext proof needs ristretto255 arithmetic, which no library used here exposes.
ISSUER_ONLY = {"_bad_spent_token_element", "_bad_spent_token_authenticator",
               "_bad_transcryption_request_plaintext_proof"}


def run_wire(path, failures, catalogue):
    v = json.loads(Path(path).read_text())
    assert v["version"] == 1
    ctx = dict(v["context"], _catalogue=catalogue)
    n = 0
    for case in v["cases"]:
        kind, name = case["kind"], case["name"]
        data = bytes.fromhex(case["hex"])
        want = case.get("error")
        got = verdict(kind, data, ctx)
        if name in ISSUER_ONLY and got is None:
            continue  # not counted as checked
        if got != want:
            failures.append(f"wire.json {name}: expected {want}, got {got}")
        if want is None:
            f = case["fields"]
            built = rebuild(kind, f)
            if built is not None and built != data:
                failures.append(f"wire.json {name}: rebuilt {built.hex()} != {case['hex']}")
            if kind == "catalogue" and wire.catalogue_digest(data).hex() != f["digest"]:
                failures.append(f"wire.json {name}: digest")
            if kind == "receipt" and "id" in f and wire.receipt_id(data).hex() != f["id"]:
                failures.append(f"wire.json {name}: receipt id")
            if kind == "device_certificate" and wire.certificate_id(data).hex() != f["id"]:
                failures.append(f"wire.json {name}: certificate id")
            if name == "batch_statistic_and_record":
                rec = f["reports"][1]["payload"]["record"]
                if wire.scoped_pseudonym(bytes([3] * 32), "acme", rec["epoch"]).hex() != rec["pseudonym"]:
                    failures.append(f"wire.json {name}: the pseudonym is not §11.1's of secret 0x03 x 32")
            if kind == "transcryption_request":
                req = transcrypt.check_request(data)
                if (transcrypt.signed_bytes(req).hex(), req["recipient"], req["epoch"], req["receipt"].hex(),
                        req["device_key"].hex()) != (f["signed"], f["recipient"], f["epoch"], f["receipt"], f["device_key"]):
                    failures.append(f"wire.json {name}: transcryption request fields")
            if kind == "checkpoint":
                cp = audit.parse_checkpoint(data.decode()[: data.decode().rindex("\n\n") + 1])
                if (cp["size"], cp["root"].hex(), cp["time"]) != (f["size"], f["root"], f["time"]):
                    failures.append(f"wire.json {name}: checkpoint fields")
        n += 1
    return n


def run_merkle(path, failures):
    v = json.loads(Path(path).read_text())
    leaves = [bytes.fromhex(x) for x in v["leaves"]]
    h = lambda s: bytes.fromhex(s)  # noqa: E731
    n = 0
    for r in v["roots"]:
        n += 1
        if audit.mth(leaves[: r["tree_size"]]).hex() != r["root"]:
            failures.append(f"merkle root {r['tree_size']}")
    for c in v["inclusion"]:
        n += 1
        size = c["tree_size"]
        ok = audit.verify_inclusion(audit.leaf_hash(leaves[c["leaf_index"]]), c["leaf_index"], size,
                                    [h(p) for p in c["path"]], audit.mth(leaves[:size]))
        if not ok:
            failures.append(f"merkle inclusion {c}")
    for c in v["consistency"]:
        n += 1
        ok = audit.verify_consistency(c["size1"], c["size2"], [h(p) for p in c["path"]],
                                      audit.mth(leaves[: c["size1"]]), audit.mth(leaves[: c["size2"]]))
        if not ok:
            failures.append(f"merkle consistency {c}")
    for c in v["consistency_edge"]:
        n += 1
        if not audit.verify_consistency(c["size1"], c["size2"], [h(p) for p in c["path"]], h(c["root1"]), h(c["root2"])):
            failures.append(f"merkle consistency edge {c}")
    for c in v["inclusion_bad"]:
        n += 1
        path = [h(p) for p in c["path"]]
        if any(len(p) != 32 for p in path) or len(h(c["leaf_hash"])) != 32 or len(h(c["root"])) != 32:
            continue  # malformed: refused before verification
        if audit.verify_inclusion(h(c["leaf_hash"]), c["leaf_index"], c["tree_size"], path, h(c["root"])):
            failures.append(f"merkle inclusion accepted {c['_bad_']}")
    for c in v["consistency_bad"]:
        n += 1
        path = [h(p) for p in c["path"]]
        if any(len(p) != 32 for p in path) or len(h(c["root1"])) != 32 or len(h(c["root2"])) != 32:
            continue
        if audit.verify_consistency(c["size1"], c["size2"], path, h(c["root1"]), h(c["root2"])):
            failures.append(f"merkle consistency accepted {c['_bad_']}")
    return n


def run_note(failures):
    name, _, key = audit.parse_verifier_key(PETER_KEY)
    if audit.open_note(PETER_NOTE, name, key) != PETER_TEXT:
        failures.append("sumdb note: text")
    try:
        audit.open_note(PETER_NOTE.replace("cryptography", "cryptographY"), name, key)
        failures.append("sumdb note: tampered note opened")
    except WireError:
        pass
    return 2


def run_all(root):
    root = Path(root)
    failures = []
    counts = {
        "wire": run_wire(root / "tests/vectors/wire.json", failures,
                         tomllib.loads((root / "examples/catalogue.toml").read_text())),
        "merkle": run_merkle(root / "aggregator/tests/vectors/rfc9162_merkle.json", failures),
        "note": run_note(failures),
    }
    return counts, failures
