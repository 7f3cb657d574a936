"""docs/wire-format.md §10: report tokens, as a third-party device obtains and spends them.

The VOPRF itself (RFC 9497, ristretto255-SHA512, mode 0x01: blinding, the batched DLEQ
proof check, unblinding and `Finalize`) is the off-the-shelf `voprf` package from PyPI;
this module only lays out the bytes around it: the token input, the signed request, the
response, the 162-byte token (RFC 9578 §5.3 layout) and the body's token list.
"""

import os

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from voprf import ristretto

from .postcard import Reader, Writer
from .wire import TOKEN_LENS, WireError, sha256, take_token, write_token_scope

TOKEN_LEN = 162
TOKEN_TYPE = b"\xc0\xf1"
SCOPE_LABEL = b"confiance/token-scope/v1"
KEY_ID_LABEL = b"confiance/token-key-id/v1"
REQUEST_LABEL = b"confiance/token-request/v1"


def scope_bytes(scope):
    return write_token_scope(Writer(), scope).bytes()


def scope_digest(scope):
    return sha256(SCOPE_LABEL, scope_bytes(scope))


def key_id(pk):
    return sha256(KEY_ID_LABEL, pk)


def token_input(nonce, scope, pk):
    return TOKEN_TYPE + nonce + scope_digest(scope) + key_id(pk)


def request_body(device_key, scope, blinded):
    """postcard(device_key, scope, blinded): what the request's signature covers."""
    w = Writer().raw(device_key)
    write_token_scope(w, scope)
    w.varint(len(blinded))
    for b in blinded:
        w.raw(b)
    return w.bytes()


class Pending:
    """Tokens asked for and not yet received: the nonces and the library's blinding state."""

    def __init__(self, device_seed, scope, pk, n):
        self.scope, self.pk = scope, pk
        self.nonces = [os.urandom(32) for _ in range(n)]
        self.clients, blinded = [], []
        for nonce in self.nonces:
            client, b = ristretto.Client.blind(token_input(nonce, scope, pk))
            self.clients.append(client)
            blinded.append(b.serialize())
        key = Ed25519PrivateKey.from_private_bytes(device_seed)
        device_key = key.public_key().public_bytes_raw()
        body = request_body(device_key, scope, blinded)
        self.request = body + key.sign(REQUEST_LABEL + body)

    def finalize(self, response):
        """Checks the response (its key, its count, the DLEQ proof) and returns the tokens."""
        r = Reader(response)
        pk = r.take(32)
        n = r.varint()
        evaluated = [r.take(32) for _ in range(n)]
        proof = r.take(64)
        if r.rest() or pk != self.pk or n != len(self.nonces):
            raise WireError("bad_token_response", "trailing bytes, another key, or another count")
        key = ristretto.PublicKey.deserialize(pk)
        try:
            # The library's own layout for a batch is the proof (c ‖ s) then the elements.
            batch = ristretto.VerifiableBatchOutput.deserialize(proof + b"".join(evaluated))
            out = ristretto.Client.finalize_batch(self.clients, batch, key)
        except ValueError as e:
            raise WireError("bad_token_response", str(e)) from e
        return [token_input(nonce, self.scope, pk) + bytes(a) for nonce, a in zip(self.nonces, out)]


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
            ristretto.BlindedInput.deserialize(b)
        except ValueError as e:
            raise WireError("malformed_token_request", str(e)) from e
    return {"device_key": device_key, "scope": scope, "blinded": blinded}


def sign_request(device_seed, scope, blinded):
    key = Ed25519PrivateKey.from_private_bytes(device_seed)
    body = request_body(key.public_key().public_bytes_raw(), scope, blinded)
    return body + key.sign(REQUEST_LABEL + body)


def check_spent(data, scope_key, now, token_period):
    """§10.1, what a party without the issuer's secret can check of a spent token: its
    layout (type 0xC0F2, 130 bytes, or 0xC0F1, 162), its scope digest, its key id and its
    period. Returns `(scope, token)`; the element or authenticator itself only the issuer
    can check (both need skS)."""
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
    return scope, token
