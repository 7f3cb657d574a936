"""Live conformance checks against a running `confiance serve` (docs/http.md): what a
device, a subject and an auditor written from the docs do, and what the server answers.
"""

import hashlib
import json
import os
import time
import urllib.error
import urllib.request

from . import audit, rfc9497, tokens, wire

DAY = wire.DAY


class Client:
    def __init__(self, url, token=None):
        self.url, self.token = url.rstrip("/"), token

    def call(self, method, path, body=None, auth=False):
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            req.add_header("Content-Type", "application/octet-stream")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def call_raw(self, method, path, body):
        """A call whose success answer is raw bytes (POST /v1/tokens)."""
        req = urllib.request.Request(self.url + path, data=body, method=method)
        req.add_header("Content-Type", "application/octet-stream")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def get(self, path, auth=False):
        return self.call("GET", path, auth=auth)

    def post(self, path, body):
        return self.call("POST", path, body=body)


def error_code(answer):
    return (answer or {}).get("error", {}).get("code")


def run_live(url, auditor_token, origin, log_public_key, expected_digest):
    api = Client(url, auditor_token)
    results = []

    def check(ok, what):
        results.append((bool(ok), what))
        print(f"  [{'ok' if ok else 'FAILED'}] {what}")
        return ok

    # What a device needs before it can seal: the key config and the catalogue digest.
    s, keys = api.get("/v1/keys")
    current = [k for k in keys["keys"] if k["state"] == "current"]
    config = wire.decode_key_config(bytes.fromhex(current[0]["config"]))
    check(s == 200 and config["key_id"] == current[0]["id"], "GET /v1/keys: a current key config decodes (§2)")
    s, cat = api.get("/v1/catalogue")
    digest = wire.decode_catalogue(bytes.fromhex(cat["canonical"]))
    check(s == 200 and digest.hex() == cat["digest"], "GET /v1/catalogue: canonical bytes decode and hash to the digest (§8)")
    check(digest.hex() == expected_digest, "the served catalogue is the docs' example catalogue (same digest)")

    now = int(time.time())
    day = now - now % DAY
    subject_seed, device_seed = os.urandom(32), os.urandom(32)
    subject_key = wire.public_key(subject_seed)
    subject = wire.subject_id(subject_key)

    # A subject signs a receipt (the subject key itself signs, §7).
    receipt_fields = {
        "catalogue_version": cat["version"], "catalogue_digest": digest.hex(), "subject_key": subject_key.hex(),
        "recipient": "acme", "purpose": "service", "scope": {"metrics": ["heating.kwh"]},
        "valid_from": day - DAY, "valid_until": None, "hold": "P1Y", "issued_at": now, "nonce": os.urandom(16).hex(),
    }
    receipt = wire.sign("receipt", receipt_fields, subject_seed)
    rid = wire.receipt_id(receipt)
    s, a = api.post("/v1/receipts", receipt)
    check(s == 201 and a.get("receipt") == rid.hex(), f"a receipt signed in Python is accepted, id {rid.hex()[:16]}…")
    tampered = {
        "a flipped signature bit": (receipt[:-1] + bytes([receipt[-1] ^ 1]), 403, "bad_signature"),
        "hold P12M (non-canonical, validly signed)": (
            wire.sign("receipt", dict(receipt_fields, hold="P12M"), subject_seed), 400, "bad_consent"),
        "a subject id not of its key": (
            wire.sign("receipt", dict(receipt_fields, subject="00" * 32), subject_seed), 403, "subject_key_mismatch"),
        "a trailing byte": (receipt + b"\x00", 400, "bad_consent"),
        "version 1": (b"\x01" + receipt[1:], 400, "bad_consent"),
    }
    for what, (body, status, code) in tampered.items():
        s, a = api.post("/v1/receipts", body)
        check((s, error_code(a)) == (status, code), f"a receipt with {what} is refused {status} {code}")

    # The subject delegates a device key; the device signs a receipt for its subject.
    delegation = wire.sign("delegation", {"device_key": wire.public_key(device_seed).hex(), "valid_from": day - DAY,
                                          "valid_until": None, "issued_at": now}, subject_seed)
    s, a = api.post("/v1/delegations", delegation)
    check(s == 201, "a delegation signed in Python is accepted")
    device_receipt = wire.sign("receipt", dict(receipt_fields, nonce=os.urandom(16).hex()), device_seed)
    s, a = api.post("/v1/receipts", device_receipt)
    check(s == 201, "a receipt signed by the delegated device is accepted")

    # The auditor's first checkpoint, once the log holds something.
    s, cp0 = api.get("/v1/audit/checkpoint", auth=True)
    name, _, vk = audit.parse_verifier_key(cp0["verifier_key"])
    check(name == origin and vk == log_public_key, "the checkpoint's verifier_key is the log's origin and key")
    old = audit.verify_checkpoint(cp0["text"], origin, log_public_key)
    check(old["size"] == cp0["tree_size"] and old["size"] > 0, f"checkpoint 1 (size {old['size']}) verifies as a signed note")

    s, access = api.get(f"/v1/subjects/{subject.hex()}/access", auth=True)
    text = json.dumps(access)
    check(s == 200 and rid.hex() in text and wire.receipt_id(device_receipt).hex() in text,
          "both receipts show in subject access")

    # A device seals reports: a statistic (GRR, door.open) and a record under the receipt.
    statistic = {"id": os.urandom(16).hex(), "metric": "door.open", "time": day,
                 "tag": {"purpose": "diagnostics", "audience": ["acme"], "hold": "P30D", "catalogue_version": 1,
                         "receipt": None},
                 "payload": {"statistic": {"grr": 1}}}
    record = {"id": os.urandom(16).hex(), "metric": "heating.kwh", "time": day,
              "tag": {"purpose": "service", "audience": ["acme"], "hold": "P1Y", "catalogue_version": 1,
                      "receipt": rid.hex()},
              "payload": {"record": {"pseudonym": os.urandom(32).hex(), "epoch": day // (30 * DAY),
                                     "value": {"numeric": 7}}}}
    # Statistics need report tokens (the server runs with --token-secret): one per scope
    # (audience, purpose, token period), obtained as a third party does (§10).
    scope = {"recipients": ["acme"], "purpose": "diagnostics", "period": day // DAY}
    s, tk = api.get(f"/v1/token-keys?recipients=acme&purpose=diagnostics&period={day // DAY}")
    pk = bytes.fromhex(tk["public_key"])
    check(s == 200 and tk["key_id"] == tokens.key_id(pk).hex(),
          "GET /v1/token-keys: the scope key's id is SHA-256 of the key-id label and pkS (§10.1)")
    no_token = wire.seal(config, digest, day, wire.encode_body([], [dict(statistic, id=os.urandom(16).hex())]))
    s, a = api.post("/v1/envelopes", no_token)
    check((s, error_code(a)) == (400, "token_missing"), "a statistic without a report token is 400 token_missing")
    stranger = tokens.Pending(os.urandom(32), scope, pk, 1)
    s, a = api.post("/v1/tokens", stranger.request)
    check((s, error_code(a)) == (403, "not_enrolled"), "a token request from a key no subject delegated is 403 not_enrolled")
    forged = bytearray(tokens.Pending(device_seed, scope, pk, 1).request)
    forged[-1] ^= 1
    s, a = api.post("/v1/tokens", bytes(forged))
    check((s, error_code(a)) == (403, "bad_signature"), "a token request with a flipped signature bit is 403 bad_signature")
    def obtain(n, token_type=tokens.ELEMENT, at=scope, key=pk, nonces=None):
        """n tokens of a type for a scope: request, answer, proof checked, unblinded."""
        pending = tokens.Pending(device_seed, at, key, n, token_type, nonces=nonces)
        s, response = api.call_raw("POST", "/v1/tokens", pending.request)
        return pending.finalize(response) if s == 200 else []

    def envelope(spent_tokens, reports):
        return wire.seal(config, digest, day, wire.encode_body(spent_tokens, reports))

    def fresh():
        return dict(statistic, id=os.urandom(16).hex())

    spent = obtain(4)
    check(len(spent) == 4 and all(len(t) == 130 and t[:2] == tokens.ELEMENT for t in spent),
          "4 report tokens issued to the delegated device: the DLEQ proof verifies (rfc9497.py), "
          "unblinded to 130-byte 0xC0F2 tokens")
    plaintext = wire.encode_body([(scope, spent[0])], [statistic, record])
    check(wire.decode_body(plaintext)[1][1] == record, "the body decodes back (strict, canonical)")
    frame = wire.seal(config, digest, day, plaintext)
    s, a = api.post("/v1/envelopes", frame)
    check(s == 201 and a.get("reports") == 2 and a.get("refused") == [] and
          a.get("envelope") == hashlib.sha256(frame).hexdigest(),
          "an envelope sealed in Python (pyhpke) with a 0xC0F2 token is accepted: 2 reports counted, none refused")
    s, a = api.post("/v1/envelopes", frame)
    check((s, error_code(a)) == (409, "replayed_envelope"), "the same frame again is 409 replayed_envelope")
    flipped = bytearray(wire.seal(config, digest, day, plaintext))
    flipped[-20] ^= 1
    s, a = api.post("/v1/envelopes", bytes(flipped))
    check((s, error_code(a)) == (400, "decrypt_failed"), "a flipped ciphertext bit is 400 decrypt_failed")
    s, a = api.post("/v1/envelopes", wire.seal(config, b"\x42" * 32, day, plaintext))
    check((s, error_code(a)) == (400, "wrong_catalogue"), "another catalogue's digest is 400 wrong_catalogue")
    bad_hold = dict(statistic, id=os.urandom(16).hex(), tag=dict(statistic["tag"], hold="P720H"))
    s, a = api.post("/v1/envelopes", envelope([], [bad_hold]))
    check((s, error_code(a)) == (400, "malformed_batch"), "a non-canonical hold (P720H) is 400 malformed_batch")
    misaligned = dict(statistic, id=os.urandom(16).hex(), time=day + 3600)
    s, a = api.post("/v1/envelopes", envelope([(scope, spent[1])], [misaligned, fresh()]))
    check(s == 201 and a.get("reports") == 1 and
          a.get("refused") == [{"index": 0, "code": "misaligned_time", "retry": False}],
          "a misaligned report is refused alone (misaligned_time), its neighbour kept")

    # Altered 0xC0F2 tokens: each envelope refused whole, and nothing of it kept (the
    # token spent afterwards is accepted).
    token, other = spent[2], spent[3]
    g = rfc9497.hash_to_group(b"another element")
    altered = {
        "an N not an element (a flipped bit)": token[:-1] + bytes([token[-1] ^ 1]),
        "a forged N (N + another element, canonical)": token[:98] + rfc9497.add(token[98:], g),
        "a swapped N (another token's, issued in the same answer)": token[:98] + other[98:],
        "the identity as N": token[:98] + rfc9497.IDENTITY,
    }
    for what, t in altered.items():
        s, a = api.post("/v1/envelopes", envelope([(scope, t)], [fresh()]))
        check((s, error_code(a)) == (400, "token_invalid"), f"a 0xC0F2 token with {what} is 400 token_invalid")
    next_scope = dict(scope, period=scope["period"] + 1)
    s, tk = api.get(f"/v1/token-keys?recipients=acme&purpose=diagnostics&period={next_scope['period']}")
    later = obtain(1, at=next_scope, key=bytes.fromhex(tk["public_key"]))
    s, a = api.post("/v1/envelopes", envelope([(scope, later[0])] if later else [], [fresh()]))
    check(len(later) == 1 and (s, error_code(a)) == (400, "token_scope"),
          "a 0xC0F2 token of the next period, listed under this period's scope, is 400 token_scope")
    s, a = api.post("/v1/envelopes", envelope([(next_scope, later[0])] if later else [], [fresh()]))
    check((s, error_code(a)) == (400, "token_scope"),
          "statistics of this period under a token of the next, listed under its own scope, are 400 token_scope")
    s, a = api.post("/v1/envelopes", envelope([(scope, token)], [fresh()]))
    check(s == 201 and a.get("reports") == 1, "the token the refused envelopes carried is then accepted")
    s, a = api.post("/v1/envelopes", envelope([(scope, spent[0])], [fresh()]))
    check((s, error_code(a)) == (400, "token_spent"),
          "a 0xC0F2 token spent twice is 400 token_spent (the whole envelope)")

    # Type 0xC0F1 (RFC 9497's output as the authenticator) is still accepted; a nonce
    # counts once whatever the type it comes in.
    c0f1 = obtain(2, tokens.AUTHENTICATOR)
    check(len(c0f1) == 2 and all(len(t) == 162 and t[:2] == tokens.AUTHENTICATOR for t in c0f1),
          "2 tokens of type 0xC0F1 issued and finalized (162 bytes)")
    s, a = api.post("/v1/envelopes", envelope([(scope, c0f1[0])] if c0f1 else [], [fresh()]))
    check(s == 201 and a.get("reports") == 1, "an envelope with a 0xC0F1 token is accepted")
    forged_authenticator = c0f1[1][:-1] + bytes([c0f1[1][-1] ^ 1]) if c0f1 else b""
    s, a = api.post("/v1/envelopes", envelope([(scope, forged_authenticator)] if c0f1 else [], [fresh()]))
    check((s, error_code(a)) == (400, "token_invalid"), "an altered 0xC0F1 authenticator is 400 token_invalid")
    same_nonce = obtain(1, nonces=[c0f1[0][2:34]] if c0f1 else None)
    s, a = api.post("/v1/envelopes", envelope([(scope, same_nonce[0])] if same_nonce else [], [fresh()]))
    check((s, error_code(a)) == (400, "token_spent"),
          "a 0xC0F2 token with the nonce of a spent 0xC0F1 token is 400 token_spent")

    # The subject withdraws; a tampered withdrawal is refused.
    wfields = {"receipt": rid.hex(), "subject_key": subject_key.hex(), "at": now, "issued_at": now}
    withdrawal = wire.sign("withdrawal", wfields, subject_seed)
    bad = withdrawal[:-1] + bytes([withdrawal[-1] ^ 1])
    s, a = api.post("/v1/withdrawals", bad)
    check((s, error_code(a)) == (403, "bad_signature"), "a withdrawal with a flipped bit is 403 bad_signature")
    s, a = api.post("/v1/withdrawals", withdrawal)
    check(s == 201 and a.get("receipt") == rid.hex(), "a withdrawal signed in Python is accepted")
    s, a = api.post("/v1/withdrawals", wire.sign("withdrawal", dict(wfields, receipt="07" * 32), subject_seed))
    check((s, error_code(a)) == (404, "unknown_receipt"), "a withdrawal of an unknown receipt is 404 unknown_receipt")

    # The auditor: a new checkpoint, consistency with the first, every event's inclusion.
    s, cp1 = api.get("/v1/audit/checkpoint", auth=True)
    new = audit.verify_checkpoint(cp1["text"], origin, log_public_key)
    check(new["size"] > old["size"], f"checkpoint 2 (size {new['size']}) verifies as a signed note")
    if old["size"] > 0:
        s, c = api.get(f"/v1/audit/consistency?old={old['size']}&new={new['size']}", auth=True)
        ok = audit.verify_consistency(old["size"], new["size"], [bytes.fromhex(p) for p in c["path"]],
                                      old["root"], new["root"])
        check(s == 200 and ok, f"the log only grew from {old['size']} to {new['size']} (consistency proof)")
    included, seen = 0, {}
    for seq in range(new["size"]):
        s, p = api.get(f"/v1/audit/inclusion?seq={seq}&tree_size={new['size']}", auth=True)
        leaf = bytes.fromhex(p["leaf"])
        lh = audit.leaf_hash(leaf)
        name, fields, leaf_seq = audit.decode_leaf(leaf)
        ok = (lh.hex() == p["leaf_hash"] and leaf_seq == seq and p["event"] is not None and
              audit.verify_inclusion(lh, seq, new["size"], [bytes.fromhex(x) for x in p["path"]], new["root"]))
        included += ok
        seen.setdefault(name, []).append(fields)
    check(included == new["size"], f"{included}/{new['size']} events: leaf bytes hash to the leaf, decode to the event shown, and are in the log")
    check(any(f["receipt"] == rid.hex() for f in seen.get("ConsentGiven", [])), "the log holds ConsentGiven of the receipt")
    check(any(f["receipt"] == rid.hex() for f in seen.get("ConsentWithdrawn", [])), "the log holds ConsentWithdrawn of the receipt")
    check(any(f["envelope_digest"] == hashlib.sha256(frame).hexdigest() for f in seen.get("IngestBatch", [])),
          "the log holds the IngestBatch of the envelope")
    return results
