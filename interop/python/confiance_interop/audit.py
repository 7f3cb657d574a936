"""docs/wire-format.md §9: C2SP signed notes and tlog checkpoints, RFC 9162 proofs, and
audit leaves — what an auditor checks with the log's public key alone.
"""

import base64
import binascii
import hashlib
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .postcard import DecodeError, Reader
from .wire import WireError

DASH = "\u2014"
DECIMAL_RE = re.compile(r"0|[1-9][0-9]*")


def b64decode_strict(s):
    """Standard padded base64, canonical (re-encodes to the same text)."""
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise WireError("malformed_checkpoint", "bad base64") from e
    if base64.b64encode(raw).decode() != s:
        raise WireError("malformed_checkpoint", "non-canonical base64")
    return raw


def key_id(name, public_key):
    """signed-note key id of an Ed25519 key: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]


def parse_verifier_key(vkey):
    """`<name>+<hex key id>+<base64(0x01 ‖ key)>` → (name, key id, public key)."""
    name, hid, b64 = vkey.split("+", 2)  # base64 may contain "+" itself
    raw = base64.b64decode(b64)
    if raw[0] != 1 or len(raw) != 33 or bytes.fromhex(hid) != key_id(name, raw[1:]):
        raise ValueError("bad verifier key")
    return name, bytes.fromhex(hid), raw[1:]


def open_note(note, name, public_key):
    """Verifies a signed note (the line of `name` with `public_key`'s id; other lines are
    ignored) and returns its text."""
    if not note.endswith("\n") or "\n\n" not in note:
        raise WireError("malformed_checkpoint", "not a signed note")
    at = note.rindex("\n\n")
    text, sigs = note[: at + 1], note[at + 2 :]
    wanted = key_id(name, public_key)
    verified = False
    for line in sigs[:-1].split("\n"):
        if not line.startswith(DASH + " "):
            raise WireError("malformed_checkpoint", "bad signature line")
        signer, _, blob = line[2:].partition(" ")
        raw = b64decode_strict(blob)
        if len(raw) < 5:
            raise WireError("malformed_checkpoint", "short signature")
        if signer == name and raw[:4] == wanted and len(raw) == 68:
            try:
                Ed25519PublicKey.from_public_bytes(public_key).verify(raw[4:], text.encode())
                verified = True
            except InvalidSignature:
                pass
    if not verified:
        raise WireError("bad_signature")
    return text


def parse_checkpoint(text):
    """The tlog-checkpoint text: origin, size, root, then our `time` extension line."""
    lines = text.split("\n")
    if len(lines) != 5 or lines[-1] != "" or not DECIMAL_RE.fullmatch(lines[1]) or not lines[3].startswith("time "):
        raise WireError("malformed_checkpoint")
    secs = lines[3][5:]
    root = b64decode_strict(lines[2])
    if len(root) != 32 or not DECIMAL_RE.fullmatch(secs):
        raise WireError("malformed_checkpoint")
    return {"origin": lines[0], "size": int(lines[1]), "root": root, "time": int(secs)}


def verify_checkpoint(note, origin, public_key):
    """Parses first (a malformed checkpoint is malformed whatever its signature), then
    verifies the log's signature."""
    if "\n\n" not in note:
        raise WireError("malformed_checkpoint")
    cp = parse_checkpoint(note[: note.rindex("\n\n") + 1])
    if cp["origin"] != origin:
        raise WireError("bad_signature", "another log")
    open_note(note, origin, public_key)
    return cp


# --- RFC 9162 §2.1 ---------------------------------------------------------------------


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    """The Merkle tree hash of a list of leaf data (RFC 9162 §2.1.1)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(leaf, index, size, path, root):
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, path, first_root, second_root):
    """RFC 9162 §2.1.4.2."""
    if first == second:
        return not path and first_root == second_root
    if first == 0:
        return not path  # the empty tree is a prefix of every tree
    if first > second or not path:
        return False
    if first & (first - 1) == 0:
        path = [first_root] + list(path)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# --- audit leaves ----------------------------------------------------------------------

EVENTS = [
    "ConsentGiven", "ConsentWithdrawn", "IngestBatch", "Release", "Transcryption", "Purge",
    "KeyDestruction", "CatalogueChange", "DeviceDelegated", "DeviceRevoked", "AdminOverride",
]


def decode_leaf(leaf):
    """(event name, its fields, seq) of a leaf: postcard `(event, seq)` (§9)."""
    r = Reader(leaf)
    i = r.varint()
    if i >= len(EVENTS):
        raise DecodeError("unknown event")
    name = EVENTS[i]
    t32 = lambda: r.take(32).hex()  # noqa: E731
    f = {}
    if name == "ConsentGiven":
        f["receipt"] = t32()
    elif name == "ConsentWithdrawn":
        f["receipt"], f["at"] = t32(), r.varint()
    elif name == "IngestBatch":
        f["envelope_digest"], f["reports"], f["partitions"], f["at"] = t32(), r.varint(), r.varint(), r.varint()
    elif name == "Release":
        f["recipient"], f["metric"] = r.ident(), r.ident()
        f["window_start"], f["window_end"], f["partitions"], f["at"] = r.varint(), r.varint(), r.varint(), r.varint()
    elif name == "Transcryption":
        f["recipient"], f["receipt"], f["proof_digest"], f["at"] = r.ident(), r.option(t32), t32(), r.varint()
    elif name == "Purge":
        f["partitions"], f["records"], f["at"] = r.varint(), r.varint(), r.varint()
    elif name in ("KeyDestruction", "CatalogueChange"):
        f["id"], f["at"] = t32(), r.varint()
    elif name == "DeviceDelegated":
        f["delegation"], f["valid_from"] = t32(), r.varint()
    elif name == "DeviceRevoked":
        f["revocation"], f["at"] = t32(), r.varint()
    else:
        f["reason"] = r.string()
        f["receipts"] = [t32() for _ in range(r.varint())]
        f["at"] = r.varint()
    seq = r.varint()
    if r.rest():
        raise DecodeError("trailing bytes")
    return name, f, seq
