"""RFC 9497's VOPRF, client side, in mode `modeVOPRF` (0x01) with ristretto255-SHA512
(docs/wire-format.md §10.2), composed from off-the-shelf parts only: the ristretto255
group operations of libsodium (through `rbcl`, which bundles it) and SHA-512 from
`hashlib`. No field or group arithmetic is written here.

What is composed, with the RFC's section for each: `expand_message_xmd` (RFC 9380
§5.3.1) over SHA-512; `HashToGroup` (RFC 9497 §4.1: expand_message_xmd to 64 bytes, then
libsodium's `crypto_core_ristretto255_from_hash`, the one-way map of RFC 9496 §4.3.4);
`HashToScalar` (RFC 9497 §4.1: 64 bytes, little-endian, reduced mod ℓ by libsodium);
`Blind` with a blind the caller may give; `ComputeComposites` and `VerifyProof`
(RFC 9497 §2.2); unblinding and `Finalize` (§3.3.2). Checked against the RFC 9497 test
vectors and against the `voprf` package by `vectors.py`.
"""

import hashlib

import rbcl

CONTEXT = b"OPRFV1-\x01-ristretto255-SHA512"
ELEMENT_LEN = SCALAR_LEN = 32
IDENTITY = bytes(32)


class VoprfError(ValueError):
    """A refusal, named as in tests/vectors/rfc9497_ristretto255_sha512_voprf.json:
    `NonCanonicalElement`, `IdentityElement`, `NonCanonicalScalar`, `WrongKey`, `BadProof`."""

    def __init__(self, kind, detail=""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


def i2osp2(n):
    return n.to_bytes(2, "big")


def expand_message_xmd(msg, dst, length):
    """RFC 9380 §5.3.1 with SHA-512 (b_in_bytes 64, s_in_bytes 128)."""
    ell = -(-length // 64)
    if ell > 255 or length > 65535 or len(dst) > 255:
        raise ValueError("expand_message_xmd: length or DST too long")
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(bytes(128) + msg + i2osp2(length) + b"\x00" + dst_prime).digest()
    b = [hashlib.sha512(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, ell + 1):
        prev = bytes(x ^ y for x, y in zip(b0, b[-1]))
        b.append(hashlib.sha512(prev + bytes([i]) + dst_prime).digest())
    return b"".join(b)[:length]


def hash_to_group(msg):
    """RFC 9497 §4.1: `hash_to_ristretto255` with DST "HashToGroup-" ‖ context string."""
    return rbcl.crypto_core_ristretto255_from_hash(expand_message_xmd(msg, b"HashToGroup-" + CONTEXT, 64))


def hash_to_scalar(msg, dst=None):
    """RFC 9497 §4.1: 64 bytes of expand_message_xmd, little-endian, reduced mod ℓ."""
    dst = b"HashToScalar-" + CONTEXT if dst is None else dst
    return rbcl.crypto_core_ristretto255_scalar_reduce(expand_message_xmd(msg, dst, 64))


def derive_key_pair(seed, info):
    """RFC 9497 §3.2.1 `DeriveKeyPair` (only for checking the RFC's key vector)."""
    derive_input = seed + i2osp2(len(info)) + info
    for counter in range(256):
        sk = hash_to_scalar(derive_input + bytes([counter]), b"DeriveKeyPair" + CONTEXT)
        if sk != bytes(32):
            return sk, rbcl.crypto_scalarmult_ristretto255_base(sk)
    raise VoprfError("DeriveKeyPairError")


def element(b):
    """RFC 9497 §4.1 `DeserializeElement`: canonical (RFC 9496 §4.3.1), never the identity."""
    if len(b) != ELEMENT_LEN or not rbcl.crypto_core_ristretto255_is_valid_point(bytes(b)):
        raise VoprfError("NonCanonicalElement")
    if b == IDENTITY:
        raise VoprfError("IdentityElement")
    return bytes(b)


def scalar(b):
    """RFC 9497 §4.1 `DeserializeScalar`: 32 bytes little-endian, reduced mod ℓ."""
    b = bytes(b)
    if len(b) != SCALAR_LEN or rbcl.crypto_core_ristretto255_scalar_reduce(b + bytes(32)) != b:
        raise VoprfError("NonCanonicalScalar")
    return b


def mul(s, p):
    """s·p, the identity (32 zero bytes) allowed as a result."""
    return rbcl.crypto_scalarmult_ristretto255_allow_scalar_zero(s, p)


def add(p, q):
    return rbcl.crypto_core_ristretto255_add(p, q)


def blind(msg, r=None):
    """`Blind` (RFC 9497 §3.3.1): `(blind, blind·HashToGroup(msg))`, the blind a fresh
    random non-zero scalar unless given (for known-answer tests)."""
    r = rbcl.crypto_core_ristretto255_scalar_random() if r is None else scalar(r)
    if r == bytes(32):
        raise VoprfError("InvalidInputError", "zero blind")
    p = hash_to_group(msg)
    if p == IDENTITY:
        raise VoprfError("InvalidInputError", "HashToGroup gave the identity")
    return r, mul(r, p)


def _len_prefixed(*parts):
    return b"".join(i2osp2(len(p)) + p for p in parts)


def compute_composites(pk, blinded, evaluated):
    """RFC 9497 §2.2.1 `ComputeComposites(B, C, D)`, the verifier's (without skS)."""
    seed = hashlib.sha512(_len_prefixed(pk, b"Seed-" + CONTEXT)).digest()
    m = z = IDENTITY
    for i, (c, d) in enumerate(zip(blinded, evaluated)):
        di = hash_to_scalar(i2osp2(len(seed)) + seed + i2osp2(i) + _len_prefixed(c, d) + b"Composite")
        m, z = add(mul(di, c), m), add(mul(di, d), z)
    return m, z


def verify_proof(pk, blinded, evaluated, proof):
    """RFC 9497 §2.2.2 `VerifyProof(G, pkS, C, D, proof)`, proof = c ‖ s (64 bytes)."""
    if len(proof) != 2 * SCALAR_LEN or len(blinded) != len(evaluated) or not blinded:
        raise VoprfError("BadProof", "proof length or element counts")
    c, s = scalar(proof[:32]), scalar(proof[32:])
    m, z = compute_composites(pk, blinded, evaluated)
    t2 = add(rbcl.crypto_scalarmult_ristretto255_base_allow_scalar_zero(s), mul(c, pk))
    t3 = add(mul(s, m), mul(c, z))
    expected = hash_to_scalar(_len_prefixed(pk, m, z, t2, t3) + b"Challenge")
    if expected != c:
        raise VoprfError("BadProof")


def unblind(blinds, blinded, evaluated, pk, proof):
    """`Finalize` up to its hash (RFC 9497 §3.3.2): every element decodes, the proof
    verifies, then `N_i = blind_i⁻¹ · evaluated_i`. `pk` is the key already checked
    against the one expected."""
    pk = element(pk)
    blinded = [element(b) for b in blinded]
    evaluated = [element(d) for d in evaluated]
    verify_proof(pk, blinded, evaluated, proof)
    return [mul(rbcl.crypto_core_ristretto255_scalar_invert(r), d) for r, d in zip(blinds, evaluated)]


def finalize_hash(msg, n):
    """RFC 9497 §3.3.2: SHA-512(I2OSP(len(input), 2) ‖ input ‖ I2OSP(32, 2) ‖ N ‖ "Finalize")."""
    return hashlib.sha512(_len_prefixed(msg, n) + b"Finalize").digest()
