"""docs/wire-format.md in Python: key configs (§2), reports and batches (§3), envelopes
(§1), consent messages (§7) and the catalogue digest (§8).

Every decoder returns normalised values (sorted sets, canonical durations) so that
re-encoding what was decoded and comparing with the input is the canonical-form check
the document asks for.
"""

import hashlib
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

from .postcard import DecodeError, Reader, Writer

DAY = 86_400
ENVELOPE_VERSION = 1
HPKE_INFO = b"confiance/v1"
HEADER_LEN = 75
TAG_LEN = 16
MAX_FRAME = 1 << 20
CONSENT_VERSION = 2
MAX_CONSENT_BYTES = 16 * 1024
SUBJECT_ID_DOMAIN = b"confiance/subject-id/v1\0"
RECEIPT_ID_DOMAIN = b"confiance/receipt-id/v1\0"
CATALOGUE_DOMAIN = b"confiance/catalogue/v1\0"
DOMAINS = {
    "receipt": b"confiance/receipt/v2\0",
    "withdrawal": b"confiance/withdrawal/v2\0",
    "delegation": b"confiance/delegation/v2\0",
    "revocation": b"confiance/revocation/v2\0",
}
AEADS = {0x0003: AEADId.CHACHA20_POLY1305, 0x0001: AEADId.AES128_GCM}


class WireError(ValueError):
    """A refusal with the documented error code."""

    def __init__(self, code, message=""):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


# --- §3.2 durations ------------------------------------------------------------------

PERIOD_RE = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")
INSTANT_RE = re.compile(r"until:\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
EVENT_RE = re.compile(r"event:[a-z0-9][a-z0-9_.\-]{0,63}")


def canonical_duration(s):
    """The canonical spelling of a duration (§3.2); `ValueError` if it is none."""
    if s == "endless" or INSTANT_RE.fullmatch(s) or EVENT_RE.fullmatch(s):
        return s
    m = PERIOD_RE.fullmatch(s)
    if not m or s in ("P", "PT") or s.endswith("T"):
        raise ValueError(f"not a duration: {s!r}")
    y, mo, w, d, h, mi, sec = (int(g) if g else 0 for g in m.groups())
    months = 12 * y + mo
    secs = w * 7 * DAY + d * DAY + h * 3600 + mi * 60 + sec
    if months == 0 and secs == 0:
        raise ValueError("zero period")
    if months > 12_000 or secs > 1000 * 366 * DAY:
        raise ValueError("period too long")
    out = "P"
    if months // 12:
        out += f"{months // 12}Y"
    if months % 12:
        out += f"{months % 12}M"
    if secs // DAY:
        out += f"{secs // DAY}D"
    rem = secs % DAY
    if rem:
        out += "T"
        if rem // 3600:
            out += f"{rem // 3600}H"
        if rem % 3600 // 60:
            out += f"{rem % 3600 // 60}M"
        if rem % 60:
            out += f"{rem % 60}S"
    return out


# --- §2 key config ---------------------------------------------------------------------


def encode_key_config(c):
    return (
        c["key_id"].to_bytes(2, "big")
        + (0x0020).to_bytes(2, "big")
        + (0x0001).to_bytes(2, "big")
        + c["aead_id"].to_bytes(2, "big")
        + bytes.fromhex(c["public_key"])
        + c["not_before"].to_bytes(8, "big")
        + c["not_after"].to_bytes(8, "big")
    )


def decode_key_config(b):
    bad = WireError("malformed_key_config")
    if len(b) != 56:
        raise bad
    kem, kdf, aead = (int.from_bytes(b[i : i + 2], "big") for i in (2, 4, 6))
    nb, na = int.from_bytes(b[40:48], "big"), int.from_bytes(b[48:56], "big")
    if kem != 0x0020 or kdf != 0x0001 or aead not in AEADS or nb >= na:
        raise bad
    return {
        "key_id": int.from_bytes(b[0:2], "big"),
        "kem_id": kem,
        "kdf_id": kdf,
        "aead_id": aead,
        "public_key": b[8:40].hex(),
        "not_before": nb,
        "not_after": na,
    }


# --- §3 reports ----------------------------------------------------------------------

LDP = ["grr", "oue", "sue", "olh", "hadamard", "piecewise", "duchi"]
VALUES = ["bool", "category", "numeric", "count"]


def write_ldp(w, r):
    (name, v), = r.items()
    w.varint(LDP.index(name))
    if name in ("grr", "hadamard"):
        w.fixint_le(v, 4)
    elif name in ("oue", "sue"):
        w.bytes_(bytes.fromhex(v))
    elif name == "olh":
        w.fixint_le(v["seed"], 4).fixint_le(v["value"], 4)
    elif name == "piecewise":
        w.fixint_le(v, 8)
    else:
        w.boolean(v)


def read_ldp(r):
    i = r.varint()
    if i >= len(LDP):
        raise DecodeError("unknown LDP report variant")
    name = LDP[i]
    if name in ("grr", "hadamard"):
        return {name: r.fixint_le(4)}
    if name in ("oue", "sue"):
        return {name: r.bytes_().hex()}
    if name == "olh":
        return {name: {"seed": r.fixint_le(4), "value": r.fixint_le(4)}}
    if name == "piecewise":
        return {name: r.fixint_le(8)}
    return {name: r.boolean()}


def write_value(w, v):
    (name, x), = v.items()
    w.varint(VALUES.index(name))
    if name == "bool":
        w.boolean(x)
    elif name == "category":
        w.fixint_le(x, 4)
    elif name == "numeric":
        w.fixint_le(x, 8, signed=True)
    else:
        w.fixint_le(x, 8)


def read_value(r):
    i = r.varint()
    if i >= len(VALUES):
        raise DecodeError("unknown record value variant")
    name = VALUES[i]
    if name == "bool":
        return {name: r.boolean()}
    if name == "category":
        return {name: r.fixint_le(4)}
    if name == "numeric":
        return {name: r.fixint_le(8, signed=True)}
    return {name: r.fixint_le(8)}


def write_tag(w, t):
    w.ident(t["purpose"]).id_set(t["audience"]).string(t["hold"]).varint(t["catalogue_version"])
    w.option(t["receipt"], lambda h: w.raw(bytes.fromhex(h)))


def read_tag(r):
    purpose = r.ident()
    audience = r.id_list()
    try:
        hold = canonical_duration(r.string())
    except ValueError as e:
        raise DecodeError(str(e)) from e
    version = r.varint(32)
    receipt = r.option(lambda: r.take(32).hex())
    return {"purpose": purpose, "audience": sorted(set(audience), key=str.encode), "hold": hold,
            "catalogue_version": version, "receipt": receipt}


def write_report(w, rep):
    w.raw(bytes.fromhex(rep["id"])).ident(rep["metric"]).varint(rep["time"])
    write_tag(w, rep["tag"])
    (kind, p), = rep["payload"].items()
    if kind == "statistic":
        w.varint(0)
        write_ldp(w, p)
    else:
        w.varint(1).raw(bytes.fromhex(p["pseudonym"])).varint(p["epoch"])
        write_value(w, p["value"])


def read_report(r):
    rep = {"id": r.take(16).hex(), "metric": r.ident(), "time": r.varint(), "tag": read_tag(r)}
    kind = r.varint()
    if kind == 0:
        rep["payload"] = {"statistic": read_ldp(r)}
    elif kind == 1:
        rep["payload"] = {"record": {"pseudonym": r.take(32).hex(), "epoch": r.varint(), "value": read_value(r)}}
    else:
        raise DecodeError("unknown payload variant")
    return rep


def encode_batch(reports):
    w = Writer().varint(len(reports))
    for rep in reports:
        write_report(w, rep)
    return w.bytes()


def decode_batch(b, max_reports=4096, max_bytes=MAX_FRAME):
    """§3.5: bounded, strict, canonical; `WireError('malformed_batch')` otherwise."""
    try:
        if len(b) > max_bytes:
            raise DecodeError("batch too large")
        r = Reader(b)
        n = r.varint()
        if n > max_reports or n > r.rest():
            raise DecodeError("too many reports")
        reports = [read_report(r) for _ in range(n)]
        if r.rest():
            raise DecodeError("trailing bytes")
        if encode_batch(reports) != bytes(b):
            raise DecodeError("not canonical")
        return reports
    except (DecodeError, ValueError) as e:
        raise WireError("malformed_batch", str(e)) from e


MAX_TOKENS = 64


def encode_body(spent_tokens, reports):
    """§3: the token list (each a scope then the token: 130 or 162 bytes as its type says, §10.1), then the batch."""
    w = Writer().varint(len(spent_tokens))
    for scope, token in spent_tokens:
        write_token_scope(w, scope)
        w.raw(token)
    return w.bytes() + encode_batch(reports)


def write_token_scope(w, scope):
    """§10.1: recipients (sorted id set), purpose, period."""
    return w.id_set(scope["recipients"]).ident(scope["purpose"]).varint(scope["period"])


def decode_body(b, max_bytes=MAX_FRAME):
    """§3: the token list then the batch; returns `(spent_tokens, reports)`."""
    try:
        if len(b) > max_bytes:
            raise DecodeError("body too large")
        r = Reader(b)
        n = r.varint()
        if n > MAX_TOKENS:
            raise DecodeError("too many tokens")
        tokens = []
        for _ in range(n):
            scope = {"recipients": r.id_list(), "purpose": r.ident(), "period": r.varint()}
            tokens.append((scope, take_token(r)))
        head = len(b) - r.rest()
    except (DecodeError, ValueError) as e:
        raise WireError("malformed_batch", str(e)) from e
    if Writer().varint(len(tokens)).bytes() + b"".join(
        write_token_scope(Writer(), s).bytes() + t for s, t in tokens
    ) != bytes(b[:head]):
        raise WireError("malformed_batch", "token list not canonical")
    return tokens, decode_batch(b[head:], max_bytes=max_bytes)


# §10.1: a token's length follows from its type (no length prefix).
TOKEN_LENS = {b"\xc0\xf2": 130, b"\xc0\xf1": 162}


def take_token(r):
    """One token: its 2-byte type, then the rest of that type's length."""
    kind = r.take(2)
    if kind not in TOKEN_LENS:
        raise DecodeError("unknown token type")
    return kind + r.take(TOKEN_LENS[kind] - 2)


# --- §1 envelopes ----------------------------------------------------------------------


def suite(aead_id):
    return CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADS[aead_id])


def header(key_id, catalogue_digest, time_bucket, enc):
    return bytes([ENVELOPE_VERSION]) + key_id.to_bytes(2, "big") + catalogue_digest + time_bucket.to_bytes(8, "big") + enc


def seal(config, catalogue_digest, time_bucket, plaintext, ikm_e=None):
    """§1.1: `enc` first (it is in the AAD), then the AEAD over the plaintext."""
    s = suite(config["aead_id"])
    pk = s.kem.deserialize_public_key(bytes.fromhex(config["public_key"]))
    eks = s.kem.derive_key_pair(ikm_e) if ikm_e is not None else None
    enc, ctx = s.create_sender_context(pk, info=HPKE_INFO, eks=eks)
    hdr = header(config["key_id"], catalogue_digest, time_bucket, enc)
    return hdr + ctx.seal(plaintext, aad=hdr)


def open_envelope(frame, key_seed, config, expected_digest, now):
    """§1.2, in its order; returns the plaintext or raises `WireError` with the code."""
    if len(frame) > MAX_FRAME or len(frame) < HEADER_LEN + TAG_LEN or frame[0] != ENVELOPE_VERSION:
        raise WireError("malformed_envelope")
    if int.from_bytes(frame[1:3], "big") != config["key_id"]:
        raise WireError("unknown_key")
    if now < config["not_before"]:
        raise WireError("key_pending")
    if now >= config["not_after"]:
        raise WireError("key_expired")
    hdr = frame[:HEADER_LEN]
    s = suite(config["aead_id"])
    sk = s.kem.derive_key_pair(key_seed).private_key
    try:
        ctx = s.create_recipient_context(hdr[43:75], sk, info=HPKE_INFO)
        plaintext = ctx.open(frame[HEADER_LEN:], aad=hdr)
    except Exception as e:  # pyhpke raises its own error types; any failure is one code
        raise WireError("decrypt_failed") from e
    if hdr[3:35] != expected_digest:
        raise WireError("wrong_catalogue")
    return plaintext


# --- §7 consent messages ---------------------------------------------------------------


def public_key(seed):
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()


def subject_id(subject_key):
    return sha256(SUBJECT_ID_DOMAIN, subject_key)


def write_times(w, *ts):
    for t in ts:
        w.varint(t)


def encode_receipt_body(f, signer):
    w = Writer().u8(CONSENT_VERSION).varint(f["catalogue_version"]).raw(bytes.fromhex(f["catalogue_digest"]))
    sk = bytes.fromhex(f["subject_key"])
    w.raw(subject_id(sk) if "subject" not in f else bytes.fromhex(f["subject"])).raw(sk)
    w.ident(f["recipient"]).ident(f["purpose"])
    (kind, ids), = f["scope"].items()
    w.varint({"metrics": 0, "categories": 1}[kind]).id_set(ids)
    w.varint(f["valid_from"]).option(f["valid_until"], w.varint).string(f["hold"]).varint(f["issued_at"])
    return w.raw(bytes.fromhex(f["nonce"])).raw(signer).bytes()


def encode_withdrawal_body(f, signer):
    sk = bytes.fromhex(f["subject_key"])
    w = Writer().u8(CONSENT_VERSION).raw(bytes.fromhex(f["receipt"])).raw(subject_id(sk)).raw(sk)
    return w.varint(f["at"]).varint(f["issued_at"]).raw(signer).bytes()


def encode_delegation_body(f, subject_key):
    w = Writer().u8(CONSENT_VERSION).raw(subject_key).raw(bytes.fromhex(f["device_key"]))
    return w.varint(f["valid_from"]).option(f["valid_until"], w.varint).varint(f["issued_at"]).bytes()


def encode_revocation_body(f, subject_key):
    w = Writer().u8(CONSENT_VERSION).raw(subject_key).raw(bytes.fromhex(f["device_key"]))
    return w.varint(f["at"]).varint(f["issued_at"]).bytes()


def sign(kind, fields, seed):
    """A signed consent message: body ‖ Ed25519(seed, domain ‖ body)."""
    me = public_key(seed)
    body = {
        "receipt": encode_receipt_body,
        "withdrawal": encode_withdrawal_body,
        "delegation": encode_delegation_body,
        "revocation": encode_revocation_body,
    }[kind](fields, me)
    key = Ed25519PrivateKey.from_private_bytes(seed)
    return body + key.sign(DOMAINS[kind] + body)


# --- §7.2 device certificates ---------------------------------------------------------

CERTIFICATE_VERSION = 1
MAX_CERTIFICATE_BYTES = 256
MAX_MODEL_BYTES = 64
CERTIFICATE_DOMAIN = b"confiance/device-certificate/v1\0"
CERTIFICATE_ID_DOMAIN = b"confiance/device-certificate-id/v1\0"


def encode_certificate_body(f, certifier):
    w = Writer().u8(CERTIFICATE_VERSION).raw(certifier).raw(bytes.fromhex(f["key"])).string(f["model"])
    return w.varint(f["not_before"]).varint(f["not_after"]).bytes()


def sign_certificate(fields, seed):
    """A device certificate: body ‖ Ed25519(certifier seed, domain ‖ body)."""
    body = encode_certificate_body(fields, public_key(seed))
    return body + Ed25519PrivateKey.from_private_bytes(seed).sign(CERTIFICATE_DOMAIN + body)


def certificate_id(message):
    return sha256(CERTIFICATE_ID_DOMAIN, message)


def _read_signed(message, read, bad):
    """A signed message's framing: the version byte, what `read` takes, the 64-byte
    signature, nothing after; (what `read` returned, the signature, the signed body)."""
    r = Reader(message)
    try:
        r.u8()
        out = read(r)
        sig = r.take(64)
    except DecodeError as e:
        raise bad(str(e)) from e
    if r.rest():
        raise bad("trailing bytes")
    return out, sig, message[:-64]


def verify_certificate(message):
    """§7.2, the checks in the documented order (the certifier's trust aside); the fields."""
    bad = lambda m: WireError("malformed_certificate", m)  # noqa: E731
    if len(message) > MAX_CERTIFICATE_BYTES or not message or message[0] != CERTIFICATE_VERSION:
        raise bad("size or version")

    def read(r):
        certifier, key, model = r.take(32), r.take(32), r.string()
        return certifier, model, {"key": key.hex(), "model": model, "not_before": r.varint(), "not_after": r.varint()}

    (certifier, model, f), sig, body = _read_signed(message, read, bad)
    if encode_certificate_body(f, certifier) != body:
        raise bad("not canonical")
    if len(model.encode()) > MAX_MODEL_BYTES or any(not 0x20 <= ord(c) < 0x7F for c in model):
        raise bad("model")
    if f["not_after"] <= f["not_before"]:
        raise bad("inverted validity")
    try:
        Ed25519PublicKey.from_public_bytes(certifier).verify(sig, CERTIFICATE_DOMAIN + body)
    except (InvalidSignature, ValueError) as e:
        raise WireError("bad_signature") from e
    return dict(f, certifier=certifier.hex())


def receipt_id(message):
    return sha256(RECEIPT_ID_DOMAIN, message[:-64])


def _read_consent(kind, r):
    """The fields of a body, normalised; and the key that must have signed it."""
    f = {}
    if kind == "receipt":
        f["catalogue_version"] = r.varint(32)
        f["catalogue_digest"] = r.take(32).hex()
        f["subject"], f["subject_key"] = r.take(32).hex(), r.take(32).hex()
        f["recipient"], f["purpose"] = r.ident(), r.ident()
        scope = r.varint()
        if scope > 1:
            raise DecodeError("unknown scope variant")
        ids = r.id_list()
        f["scope"] = {("metrics", "categories")[scope]: sorted(set(ids), key=str.encode)}
        f["valid_from"] = r.varint()
        f["valid_until"] = r.option(r.varint)
        try:
            f["hold"] = canonical_duration(r.string())
        except ValueError as e:
            raise DecodeError(str(e)) from e
        f["issued_at"], f["nonce"], f["signer"] = r.varint(), r.take(16).hex(), r.take(32).hex()
        return f, f["signer"]
    if kind == "withdrawal":
        f["receipt"], f["subject"], f["subject_key"] = r.take(32).hex(), r.take(32).hex(), r.take(32).hex()
        f["at"], f["issued_at"], f["signer"] = r.varint(), r.varint(), r.take(32).hex()
        return f, f["signer"]
    f["subject_key"], f["device_key"] = r.take(32).hex(), r.take(32).hex()
    if kind == "delegation":
        f["valid_from"], f["valid_until"], f["issued_at"] = r.varint(), r.option(r.varint), r.varint()
    else:
        f["at"], f["issued_at"] = r.varint(), r.varint()
    return f, f["subject_key"]


def _reencode(kind, f):
    signer = bytes.fromhex(f.get("signer", f["subject_key"]))
    if kind == "receipt":
        return encode_receipt_body(f, signer)
    if kind == "withdrawal":
        w = Writer().u8(CONSENT_VERSION).raw(bytes.fromhex(f["receipt"])).raw(bytes.fromhex(f["subject"]))
        return w.raw(bytes.fromhex(f["subject_key"])).varint(f["at"]).varint(f["issued_at"]).raw(signer).bytes()
    if kind == "delegation":
        return encode_delegation_body(f, bytes.fromhex(f["subject_key"]))
    return encode_revocation_body(f, bytes.fromhex(f["subject_key"]))


def verify_consent(kind, message):
    """§7, the checks in the documented order; returns the fields or raises `WireError`."""
    bad = lambda m: WireError("bad_consent", m)  # noqa: E731
    if len(message) > MAX_CONSENT_BYTES or not message or message[0] != CONSENT_VERSION:
        raise bad("size or version")
    (fields, signer), sig, body = _read_signed(message, lambda r: _read_consent(kind, r), bad)
    if _reencode(kind, fields) != body:
        raise bad("not canonical")
    if kind in ("receipt", "withdrawal") and subject_id(bytes.fromhex(fields["subject_key"])).hex() != fields["subject"]:
        raise WireError("subject_key_mismatch")
    if fields.get("valid_until") is not None and fields["valid_until"] <= fields["valid_from"]:
        raise bad("inverted validity")
    if kind == "receipt" and not next(iter(fields["scope"].values())):
        raise bad("empty scope")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(signer)).verify(sig, DOMAINS[kind] + body)
    except (InvalidSignature, ValueError) as e:
        raise WireError("bad_signature") from e
    return fields


# --- §8 catalogue ----------------------------------------------------------------------


def catalogue_digest(canonical):
    return sha256(CATALOGUE_DOMAIN, canonical)


MECHANISMS = ["grr", "oue", "sue", "olh", "hadamard", "piecewise", "duchi", "auto", "hadamard_blocks"]
MAX_CATALOGUE_BYTES = 4 << 20


def _read_epsilon(r):
    num, den = r.varint(32), r.varint(32)
    if num == 0 or den == 0 or __import__("math").gcd(num, den) != 1:
        raise DecodeError("epsilon is not a reduced positive fraction")
    return (num, den)


def _dur(r):
    try:
        return canonical_duration(r.string())
    except ValueError as e:
        raise DecodeError(str(e)) from e


def _read_map(r, read_value):
    n = r.varint()
    if n > r.rest():
        raise DecodeError("count larger than the bytes left")
    entries = [(r.ident(), read_value(r)) for _ in range(n)]
    return sorted(dict(entries).items(), key=lambda kv: kv[0].encode())


def _enum(r, n):
    i = r.varint()
    if i >= n:
        raise DecodeError("unknown enum variant")
    return i


def _read_metric(r):
    m = {"description": r.string()}
    kind = r.varint()
    if kind == 0:
        m["kind"] = ("boolean",)
    elif kind == 1:
        n = r.varint()
        if n > r.rest():
            raise DecodeError("count larger than the bytes left")
        m["kind"] = ("categorical", [r.string() for _ in range(n)])
    elif kind == 2:
        m["kind"] = ("numeric", r.zigzag(), r.zigzag())
    elif kind == 3:
        m["kind"] = ("count", r.varint())
    else:
        raise DecodeError("unknown metric kind")
    m["category"] = r.ident()
    m["sensitivity"] = _enum(r, 4)
    privacy = r.varint()
    if privacy == 0:
        eps = _read_epsilon(r)
        mech = r.varint()
        if mech >= len(MECHANISMS):
            raise DecodeError("unknown mechanism")
        budget = r.option(lambda: (_read_epsilon(r), _dur(r)))
        m["privacy"] = ("ldp", eps, mech, budget)
    elif privacy == 1:
        m["privacy"] = ("pseudonymous",)
    else:
        raise DecodeError("unknown privacy")
    m["purposes"] = sorted(set(r.id_list()), key=str.encode)
    m["recipients"] = sorted(set(r.id_list()), key=str.encode)
    m["max_hold"], m["time_precision"] = _dur(r), _dur(r)
    return m


def _write_catalogue(c):
    max_hold, epoch, min_release, token_period, tokens_per_period = c["limits"]
    w = Writer().string(c["name"]).varint(c["version"]).string(max_hold).string(epoch)
    w.varint(min_release).string(token_period).varint(tokens_per_period)
    w.varint(len(c["purposes"]))
    for pid, (desc, basis, hold) in c["purposes"]:
        w.ident(pid).string(desc).varint(basis).option(hold, w.string)
    w.varint(len(c["recipients"]))
    for rid, (name, role, country) in c["recipients"]:
        w.ident(rid).string(name).varint(role).string(country)
    w.varint(len(c["metrics"]))
    for mid, m in c["metrics"]:
        w.ident(mid).string(m["description"])
        kind = m["kind"]
        w.varint(["boolean", "categorical", "numeric", "count"].index(kind[0]))
        if kind[0] == "categorical":
            w.varint(len(kind[1]))
            for label in kind[1]:
                w.string(label)
        elif kind[0] == "numeric":
            w.zigzag(kind[1]).zigzag(kind[2])
        elif kind[0] == "count":
            w.varint(kind[1])
        w.ident(m["category"]).varint(m["sensitivity"])
        if m["privacy"][0] == "ldp":
            _, eps, mech, budget = m["privacy"]
            w.varint(0).varint(eps[0]).varint(eps[1]).varint(mech)
            w.option(budget, lambda b: w.varint(b[0][0]).varint(b[0][1]).string(b[1]))
        else:
            w.varint(1)
        w.id_set(m["purposes"]).id_set(m["recipients"]).string(m["max_hold"]).string(m["time_precision"])
    return w.bytes()


def decode_catalogue(canonical):
    """§8: decodes the canonical bytes and checks they are canonical; returns the digest."""
    try:
        if len(canonical) > MAX_CATALOGUE_BYTES:
            raise DecodeError("too large")
        r = Reader(canonical)
        c = {"name": r.string(), "version": r.varint(32), "limits": (_dur(r), _dur(r), r.varint(32), _dur(r), r.varint(32))}
        c["purposes"] = _read_map(r, lambda r: (r.string(), _enum(r, 6), r.option(lambda: _dur(r))))
        c["recipients"] = _read_map(r, lambda r: (r.string(), _enum(r, 3), r.string()))
        c["metrics"] = _read_map(r, _read_metric)
        if r.rest():
            raise DecodeError("trailing bytes")
        if _write_catalogue(c) != bytes(canonical):
            raise DecodeError("not canonical")
    except (DecodeError, ValueError) as e:
        raise WireError("bad_catalogue", str(e)) from e
    return catalogue_digest(canonical)


# --- §11.1 pseudonym derivation --------------------------------------------------------

PSEUDONYM_SALT = b"confiance/pseudonym/v1"


def _field(b):
    return len(b).to_bytes(8, "big") + b


def scoped_pseudonym(device_secret, recipient, epoch):
    """HKDF-SHA256 (RFC 5869, with the standard library's hmac) of §11.1."""
    import hmac

    prk = hmac.new(PSEUDONYM_SALT, device_secret, hashlib.sha256).digest()
    info = _field(b"confiance/pseudonym/scoped") + _field(recipient.encode()) + _field(epoch.to_bytes(8, "big"))
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()
