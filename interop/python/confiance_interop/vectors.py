"""Runs the repository's test vectors through this implementation.

- tests/vectors/wire.json: every structure of docs/wire-format.md. A valid case is
  rebuilt from its fields and must be byte-identical, and must decode; a `_bad_` case must
  be refused with its error code.
- aggregator/tests/vectors/rfc9162_merkle.json: RFC 9162 trees and proofs.
- the signed note of Go's golang.org/x/mod/sumdb/note (an outside vector for §9).
- tests/vectors/rfc9497_ristretto255_sha512_voprf.json: RFC 9497 Appendix A.1.2 (VOPRF,
  ristretto255-SHA512) through `rfc9497.py`, its `_bad_` cases refused for their reason.
- the `voprf` package from PyPI (an independent implementation) as issuer, with a fresh
  key, and `tokens.py` as client, for both token types.
- the worked example of docs/wire-format.md §10.3, read from the document itself.
"""

import json
import os
import re
import tomllib
from pathlib import Path

from . import audit, rfc9497, tokens, transcrypt, wire
from .postcard import Writer
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
# The plaintext proof of a transcryption request `transcrypt.py` does not check yet.
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


def run_rfc9497(path, failures):
    """RFC 9497 A.1.2: the key pair from Seed and KeyInfo, then per vector `Blind` with the
    given blinds, the batched proof, unblinding and `Finalize`; the `_bad_` cases each
    refused for their reason (the client's, or with side "server" the issuer's decoding of
    a blinded element)."""
    v = json.loads(Path(path).read_text())
    h = bytes.fromhex
    n = 0
    sk, pk = rfc9497.derive_key_pair(h(v["Seed"]), h(v["KeyInfo"]))
    n += 1
    if (sk.hex(), pk.hex()) != (v["skSm"], v["pkSm"]):
        failures.append("rfc9497 DeriveKeyPair")

    def client(t, expected, announced):
        """None, or the reason the client refuses the answer."""
        try:
            blinds = [rfc9497.scalar(h(b)) for b in t["Blind"]]
            if rfc9497.element(announced) != expected:
                raise rfc9497.VoprfError("WrongKey")
            elements = rfc9497.unblind(blinds, [h(b) for b in t["BlindedElement"]],
                                       [h(e) for e in t["EvaluationElement"]], announced, h(t["Proof"]))
        except rfc9497.VoprfError as e:
            return e.kind
        return [rfc9497.finalize_hash(h(i), e).hex() for i, e in zip(t["Input"], elements)]

    for t in v["vectors"]:
        n += 1
        blinded = [rfc9497.blind(h(i), h(b))[1].hex() for i, b in zip(t["Input"], t["Blind"])]
        if blinded != t["BlindedElement"]:
            failures.append(f"rfc9497 {t['name']}: blinded elements {blinded}")
        got = client(t, h(v["pkSm"]), h(v["pkSm"]))
        if got != t["Output"]:
            failures.append(f"rfc9497 {t['name']}: outputs {got}")
    for b in v["bad"]:
        n += 1
        t = dict(v["vectors"][b["base"]], **b["replace"])
        if b.get("side") == "server":
            try:
                for e in t["BlindedElement"]:
                    rfc9497.element(h(e))
                got = None
            except rfc9497.VoprfError as e:
                got = e.kind
        else:
            got = client(t, h(t.get("pkSm", v["pkSm"])), h(t.get("AnnouncedKey", t.get("pkSm", v["pkSm"]))))
        if got != b["error"]:
            failures.append(f"rfc9497 {b['name']}: expected {b['error']}, got {got}")
    return n


def run_voprf_package(path, failures):
    """The `voprf` package as issuer, this implementation as client: the package agrees
    with the RFC's key and outputs; then under a fresh key it evaluates blinded token
    inputs of both types, `tokens.Pending` checks its batched proof and unblinds, and
    each token's output (the 0xC0F1 authenticator, or the hash of the 0xC0F2 element) is
    the package's `Evaluate` of the same input. An altered proof is refused."""
    from voprf import ristretto

    v = json.loads(Path(path).read_text())
    h = bytes.fromhex
    n = 1
    rfc_issuer = ristretto.Evaluator.from_seed(h(v["Seed"]), h(v["KeyInfo"]))
    if rfc_issuer.public_key.serialize().hex() != v["pkSm"] or any(
            rfc_issuer.evaluate_known_input(h(i)).hex() != o
            for t in v["vectors"] for i, o in zip(t["Input"], t["Output"])):
        failures.append("voprf package: RFC 9497 key or outputs")
    issuer = ristretto.Evaluator(os.urandom(32))
    pk = issuer.public_key.serialize()
    scope = {"recipients": ["acme"], "purpose": "diagnostics", "period": 20_833}
    for token_type in (tokens.ELEMENT, tokens.AUTHENTICATOR):
        n += 1
        pending = tokens.Pending(os.urandom(32), scope, pk, 3, token_type)
        # The package lays a batch out as c ‖ s ‖ evaluated…; the wire as pkS ‖ n ‖ evaluated… ‖ c ‖ s.
        out = issuer.evaluate_batch([ristretto.BlindedInput.deserialize(b) for b in pending.blinded]).serialize()
        response = pk + Writer().varint(3).bytes() + out[64:] + out[:64]
        try:
            made = pending.finalize(response)
        except WireError as e:
            failures.append(f"voprf package: its answer for type {token_type.hex()} refused ({e})")
            continue
        outputs = [t[98:] if token_type == tokens.AUTHENTICATOR else rfc9497.finalize_hash(t[:98], t[98:])
                   for t in made]
        if outputs != [issuer.evaluate_known_input(t[:98]) for t in made] or \
                any(len(t) != wire.TOKEN_LENS[token_type] for t in made):
            failures.append(f"voprf package: tokens of type {token_type.hex()} are not its outputs")
        try:
            pending.finalize(response[:-1] + bytes([response[-1] ^ 1]))
            failures.append("voprf package: an altered proof was accepted")
        except WireError as e:
            if e.code != "bad_token_response":
                failures.append(f"voprf package: an altered proof refused as {e}")
    return n


def doc_examples(text):
    """The example blocks of a document, name -> bytes: ```hex example=NAME (whitespace
    ignored) and ```text example=NAME (on each line, the hex before the first double
    space). Two blocks of one name must agree."""
    out = {}
    for lang, name, body in re.findall(r"^```(hex|text) example=(\S+)\n(.*?)^```", text, re.S | re.M):
        lines = body.splitlines() if lang == "hex" else [line.split("  ")[0] for line in body.splitlines()]
        b = bytes.fromhex("".join("".join(lines).split()))
        if out.setdefault(name, b) != b:
            raise AssertionError(f"example {name}: its blocks differ")
    return out


def run_token_example(root, failures, catalogue, ctx):
    """docs/wire-format.md §10.3 from the document: the request passes the issuer's checks,
    the response's proof verifies against the request's blinded element and the scope key,
    the token's input is the request's scope under that key, and its blind (given in the
    document) blinds that input to the request's element and unblinds the response's to
    the token's `N`."""
    ex = doc_examples((Path(root) / "docs/wire-format.md").read_text())
    pk, token = ex["token-scope-key"], ex["token"]
    try:
        req = tokens.check_request(ex["token-request"], catalogue, ctx["now"], ctx["token_period"])
        announced, evaluated, proof = tokens.decode_response(ex["token-response"])
    except WireError as e:
        failures.append(f"§10.3 worked example: the request or the response refused ({e})")
        return 1
    checks = {
        "the response's key is the scope key": announced == pk,
        "the token is 0xC0F2 of the request's scope under that key": (
            token[:2] == tokens.ELEMENT and len(token) == 130 and
            token[:98] == tokens.token_input(tokens.ELEMENT, token[2:34], req["scope"], pk)),
        "the token list is the count, the scope, then the token":
            ex["token-list"] == Writer().varint(1).bytes() + tokens.scope_bytes(req["scope"]) + token,
    }
    try:
        rfc9497.verify_proof(pk, req["blinded"], evaluated, proof)
        blind, blinded = rfc9497.blind(token[:98], ex["token-blind"])
        checks["the blind blinds the token input to the request's element"] = [blinded] == req["blinded"]
        checks["unblinding the response gives the token's N"] = \
            rfc9497.unblind([blind], req["blinded"], evaluated, pk, proof) == [token[98:]]
    except (rfc9497.VoprfError, KeyError) as e:
        checks[f"the proof verifies and the blind is given ({e!r})"] = False
    failures.extend(f"§10.3 worked example: {what}" for what, ok in checks.items() if not ok)
    return len(checks)


def run_all(root):
    root = Path(root)
    failures = []
    catalogue = tomllib.loads((root / "examples/catalogue.toml").read_text())
    wire_json = root / "tests/vectors/wire.json"
    rfc = root / "tests/vectors/rfc9497_ristretto255_sha512_voprf.json"
    counts = {
        "wire": run_wire(wire_json, failures, catalogue),
        "rfc9497": run_rfc9497(rfc, failures),
        "voprf": run_voprf_package(rfc, failures),
        "token example": run_token_example(root, failures, catalogue,
                                           json.loads(wire_json.read_text())["context"]["token"]),
        "merkle": run_merkle(root / "aggregator/tests/vectors/rfc9162_merkle.json", failures),
        "note": run_note(failures),
    }
    return counts, failures
