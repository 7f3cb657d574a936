"""docs/wire-format.md §10: report tokens, as a third-party device obtains and spends them.

The VOPRF itself (RFC 9497, ristretto255-SHA512, mode 0x01: blinding, the batched DLEQ
proof check, unblinding and `Finalize`) is the off-the-shelf `voprf` package from PyPI;
this module only lays out the bytes around it: the token input, the signed request, the
response, the 162-byte token (RFC 9578 §5.3 layout) and the body's token list.
"""

import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from voprf import ristretto

from .postcard import Reader, Writer
from .wire import WireError, sha256, write_token_scope

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
