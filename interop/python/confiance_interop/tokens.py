"""docs/wire-format.md §10: report tokens, as a third-party device obtains and spends them.

The VOPRF (RFC 9497, ristretto255-SHA512, mode 0x01: blinding, the batched DLEQ proof
check, unblinding, `Finalize`) is `rfc9497.py`, composed from libsodium's group
operations and `hashlib`; this module lays out the bytes around it: the token input, the
signed request, the response, the token (130 bytes of type `0xC0F2`, the devices'
default, which keeps the unblinded element `N`; or 162 of type `0xC0F1`, which keeps
RFC 9497's output, the RFC 9578 §5.3 layout) and the body's token list.
"""

import os

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import rfc9497
from .postcard import DecodeError, Reader, Writer
from .wire import TOKEN_LENS, WireError, sha256, take_token, write_token_scope

ELEMENT = b"\xc0\xf2"  # redeemed with the unblinded element N (devices' default)
AUTHENTICATOR = b"\xc0\xf1"  # redeemed with the RFC 9497 output (still accepted)
SCOPE_LABEL = b"confiance/token-scope/v1"
KEY_ID_LABEL = b"confiance/token-key-id/v1"
REQUEST_LABEL = b"confiance/token-request/v1"


def scope_bytes(scope):
    return write_token_scope(Writer(), scope).bytes()


def scope_digest(scope):
    return sha256(SCOPE_LABEL, scope_bytes(scope))


def key_id(pk):
    return sha256(KEY_ID_LABEL, pk)


def token_input(token_type, nonce, scope, pk):
    """§10.1: token_type ‖ nonce ‖ scope_digest ‖ token_key_id, 98 bytes."""
    return token_type + nonce + scope_digest(scope) + key_id(pk)


def request_body(device_key, scope, blinded):
    """postcard(device_key, scope, blinded): what the request's signature covers."""
    w = Writer().raw(device_key)
    write_token_scope(w, scope)
    w.varint(len(blinded))
    for b in blinded:
        w.raw(b)
    return w.bytes()


def decode_response(response):
    """§10.2 `TokenResponse`: `(pkS, evaluated, proof)`, the layout only."""
    try:
        r = Reader(response)
        pk = r.take(32)
        n = r.varint()
        if n > r.rest() // 32:
            raise DecodeError("count larger than the bytes left")
        evaluated = [r.take(32) for _ in range(n)]
        proof = r.take(64)
        if r.rest():
            raise DecodeError("trailing bytes")
    except DecodeError as e:
        raise WireError("bad_token_response", str(e)) from e
    return pk, evaluated, proof


class Pending:
    """Tokens asked for and not yet received: their inputs and blinds.

    `token_type` is `ELEMENT` (0xC0F2, the default) or `AUTHENTICATOR` (0xC0F1); the
    nonces are drawn fresh unless given (to show a nonce counts once across types), the
    blinds always."""

    def __init__(self, device_seed, scope, pk, n, token_type=ELEMENT, nonces=None):
        self.scope, self.pk, self.token_type = scope, pk, token_type
        self.nonces = nonces or [os.urandom(32) for _ in range(n)]
        self.inputs = [token_input(token_type, nonce, scope, pk) for nonce in self.nonces]
        pairs = [rfc9497.blind(i) for i in self.inputs]
        self.blinds = [b for b, _ in pairs]
        self.blinded = [e for _, e in pairs]
        self.request = sign_request(device_seed, scope, self.blinded)

    def finalize(self, response):
        """Checks the response (its key, its count, every element, the DLEQ proof), unblinds,
        and returns the tokens; a refusal is `bad_token_response` with RFC 9497's reason."""
        pk, evaluated, proof = decode_response(response)
        try:
            if rfc9497.element(pk) != self.pk:
                raise rfc9497.VoprfError("WrongKey")
            if len(evaluated) != len(self.inputs):
                raise rfc9497.VoprfError("WrongCount")
            elements = rfc9497.unblind(self.blinds, self.blinded, evaluated, pk, proof)
        except rfc9497.VoprfError as e:
            raise WireError("bad_token_response", e.kind) from e
        if self.token_type == ELEMENT:
            return [i + n for i, n in zip(self.inputs, elements)]
        return [i + rfc9497.finalize_hash(i, n) for i, n in zip(self.inputs, elements)]


MAX_BATCH = 1024


def _scope_known(catalogue, scope):
    """A catalogue metric serves the purpose for all the recipients (an LDP metric whose
    purposes hold the purpose and whose recipients hold every one of them)."""
    if scope["purpose"] not in catalogue["purposes"] or not scope["recipients"]:
        return False
    if any(r not in catalogue["recipients"] for r in scope["recipients"]):
        return False
    return any(m.get("privacy") == "ldp" and scope["purpose"] in m["purposes"]
               and set(scope["recipients"]) <= set(m["recipients"]) for m in catalogue["metrics"].values())


def check_request(data, catalogue, now, token_period):
    """§10.2, the issuer's checks in their order (the device is taken as enrolled, its quota
    as unused); returns the request's fields or raises `WireError` with the code."""
    try:
        r = Reader(data)
        device_key = r.take(32)
        scope = {"recipients": r.id_list(), "purpose": r.ident(), "period": r.varint()}
        n = r.varint()
        if n > r.rest():
            raise ValueError("count larger than the bytes left")
        blinded = [r.take(32) for _ in range(n)]
        signature = r.take(64)
        if r.rest() or request_body(device_key, scope, blinded) != data[:-64]:
            raise ValueError("trailing bytes or not canonical")
    except ValueError as e:
        raise WireError("malformed_token_request", str(e)) from e
    try:
        Ed25519PublicKey.from_public_bytes(device_key).verify(signature, REQUEST_LABEL + data[:-64])
    except (InvalidSignature, ValueError) as e:
        raise WireError("bad_signature") from e
    if not 1 <= n <= MAX_BATCH:
        raise WireError("malformed_token_request", "batch size")
    if not _scope_known(catalogue, scope):
        raise WireError("unknown_scope")
    if scope["period"] not in (now // token_period, now // token_period + 1):
        raise WireError("period_not_open")
    for b in blinded:
        try:
            rfc9497.element(b)
        except rfc9497.VoprfError as e:
            raise WireError("malformed_token_request", e.kind) from e
    return {"device_key": device_key, "scope": scope, "blinded": blinded}


def sign_request(device_seed, scope, blinded):
    key = Ed25519PrivateKey.from_private_bytes(device_seed)
    body = request_body(key.public_key().public_bytes_raw(), scope, blinded)
    return body + key.sign(REQUEST_LABEL + body)


def check_spent(data, scope_key, now, token_period):
    """§10.1, what a party without the issuer's secret can check of a spent token: its
    layout (type 0xC0F2, 130 bytes, or 0xC0F1, 162), its scope digest, its key id, its
    period, and that a 0xC0F2 token's `N` is a canonical element other than the identity.
    Returns `(scope, token)`; that `N` (or the authenticator) is the right one only the
    issuer can check (both need skS)."""
    try:
        r = Reader(data)
        scope = {"recipients": r.id_list(), "purpose": r.ident(), "period": r.varint()}
        token = take_token(r)
        if r.rest() or scope_bytes(scope) + token != bytes(data):
            raise ValueError("trailing bytes or not canonical")
    except ValueError as e:
        raise WireError("malformed_batch", str(e)) from e
    if token[:2] not in TOKEN_LENS or token[34:66] != scope_digest(scope):
        raise WireError("token_scope")
    if now >= (scope["period"] + 2) * token_period:
        raise WireError("token_expired")
    if token[66:98] != key_id(scope_key):
        raise WireError("token_invalid", "made under another key")
    if token[:2] == ELEMENT:
        try:
            rfc9497.element(token[98:])
        except rfc9497.VoprfError as e:
            raise WireError("token_invalid", e.kind) from e
    return scope, token
