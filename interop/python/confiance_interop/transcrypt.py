"""docs/wire-format.md §11: the signed transcryption request a device sends.

Points are checked canonical and not the identity with the `voprf` package's ristretto255
decoder; scalars against ℓ; the signature with `cryptography`'s Ed25519. The plaintext
proof needs ristretto255 arithmetic (`z_r·G − e·B`, …), which no library this suite uses
exposes, so it is not checked here (the server checks it; see README).
"""

import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from voprf import ristretto

from .wire import WireError

DOMAIN = b"confiance/transcrypt-request/v1\0"
FIXED = 1 + 96 + 96 + 32 + 32 + 32 + 1 + 8 + 64
L = 2**252 + 27742317777372353535851937790883648493
ID_RE = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,63}")


def _point(b):
    try:
        ristretto.BlindedInput.deserialize(b)  # canonical ristretto255, not the identity
    except ValueError as e:
        raise WireError("encoding", "point") from e


def _field(b):
    return len(b).to_bytes(8, "big") + b


def signed_bytes(req):
    epoch = b"" if req["epoch"] is None else req["epoch"].to_bytes(8, "big")
    return (DOMAIN + _field(b"\x01") + _field(req["ciphertext"]) + _field(req["proof"]) + _field(req["receipt"])
            + _field(req["recipient"].encode()) + _field(epoch) + _field(req["nonce"]) + _field(req["device_key"]))


def check_request(data):
    """Decodes strictly and checks the signature; returns the fields, or raises
    `WireError` with the transcryptors' code (`encoding`, `bad-signature`)."""
    if not FIXED < len(data) <= FIXED + 255 or data[0] != 1:
        raise WireError("encoding", "length or version")
    at = 1
    def take(n):
        nonlocal at
        at += n
        return data[at - n:at]
    ciphertext, proof, receipt, nonce, device_key = take(96), take(96), take(32), take(32), take(32)
    flag, epoch, signature, recipient = data[at], int.from_bytes(data[at + 1:at + 9], "big"), data[at + 9:at + 73], data[at + 73:]
    for i in range(3):
        _point(ciphertext[32 * i:32 * i + 32])
    if any(int.from_bytes(proof[32 * i:32 * i + 32], "little") >= L for i in range(3)):
        raise WireError("encoding", "scalar")
    if flag not in (0, 1) or (flag == 0 and epoch != 0):
        raise WireError("encoding", "epoch flag")
    try:
        name = recipient.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireError("encoding", "recipient") from e
    if not ID_RE.fullmatch(name):
        raise WireError("encoding", "recipient")
    req = {"ciphertext": ciphertext, "proof": proof, "receipt": receipt, "nonce": nonce, "device_key": device_key,
           "epoch": epoch if flag else None, "recipient": name}
    try:
        Ed25519PublicKey.from_public_bytes(device_key).verify(signature, signed_bytes(req))
    except (InvalidSignature, ValueError) as e:
        raise WireError("bad-signature") from e
    return req
