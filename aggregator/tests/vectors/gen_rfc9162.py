#!/usr/bin/env python3
"""Writes rfc9162_merkle.json: Certificate Transparency reference vectors plus `_bad_` cases.

The valid vectors (8 leaves, the root of every prefix, inclusion and consistency proofs) are
the reference tree used across Certificate Transparency implementations (the RFC 6962 test
tree of the google/certificate-transparency and transparency-dev/merkle test suites); RFC 9162
keeps RFC 6962's hashing (leaf H(0x00||d), node H(0x01||l||r)) and proof shapes. This script
checks every valid vector with an independent implementation straight from RFC 9162 §2.1
before writing, then derives the `_bad_` cases by the mutation families those test suites
use (wrong index, wrong size, wrong leaf or root, garbage before/after, flipped bit,
removed/inserted component, swapped roots). Each bad case is re-checked to be really bad.

Run: python3 aggregator/tests/vectors/gen_rfc9162.py > aggregator/tests/vectors/rfc9162_merkle.json
"""
import hashlib, json, sys

def H(b): return hashlib.sha256(b).digest()
def leaf(d): return H(b"\x00" + d)
def node(l, r): return H(b"\x01" + l + r)

def k_of(n):
    k = 1
    while k * 2 < n: k *= 2
    return k

def mth(ds):
    if not ds: return H(b"")
    if len(ds) == 1: return leaf(ds[0])
    k = k_of(len(ds))
    return node(mth(ds[:k]), mth(ds[k:]))

def path(m, ds):
    if len(ds) <= 1: return []
    k = k_of(len(ds))
    if m < k: return path(m, ds[:k]) + [mth(ds[k:])]
    return path(m - k, ds[k:]) + [mth(ds[:k])]

def subproof(m, ds, b):
    n = len(ds)
    if m == n: return [] if b else [mth(ds)]
    k = k_of(n)
    if m <= k: return subproof(m, ds[:k], b) + [mth(ds[k:])]
    return subproof(m - k, ds[k:], False) + [mth(ds[:k])]

# RFC 9162 §2.1.3.2
def verify_inclusion(idx, size, h, proof, root):
    if any(len(p) != 32 for p in proof) or len(h) != 32 or len(root) != 32: return False
    if idx >= size: return False
    fn, sn, r = idx, size - 1, h
    for p in proof:
        if sn == 0: return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1; sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1; sn >>= 1
    return sn == 0 and r == root

# RFC 9162 §2.1.4.2, with the equal-size and empty-first cases of §2.1.4.1
def verify_consistency(s1, s2, proof, r1, r2):
    if any(len(p) != 32 for p in proof) or len(r1) != 32 or len(r2) != 32: return False
    if s1 > s2: return False
    if s1 == s2: return not proof and r1 == r2
    if s1 == 0: return not proof
    if not proof: return False
    proof = list(proof)
    if s1 & (s1 - 1) == 0: proof = [r1] + proof
    fn, sn = s1 - 1, s2 - 1
    while fn & 1:
        fn >>= 1; sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0: return False
        if fn & 1 or fn == sn:
            fr = node(c, fr); sr = node(c, sr)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1; sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1; sn >>= 1
    return fr == r1 and sr == r2 and sn == 0

x = bytes.fromhex
LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
ROOTS = [  # MTH of the first 1..8 leaves (reference values, not computed here)
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SOME = "abacaba000000000000000000000000000000000000000000060061e00123456"
INCLUSION = [  # (leaf index, tree size, path); reference values
    (0, 1, []),
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY = [  # (size1, size2, path); reference values
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]

ds = [x(l) for l in LEAVES]
assert mth([]).hex() == EMPTY
for i, r in enumerate(ROOTS):
    assert mth(ds[: i + 1]).hex() == r, i
for i, n, p in INCLUSION:
    assert [h.hex() for h in path(i, ds[:n])] == p
    assert verify_inclusion(i, n, leaf(ds[i]), [x(h) for h in p], x(ROOTS[n - 1]))
for m, n, p in CONSISTENCY:
    assert [h.hex() for h in subproof(m, ds[:n], True)] == p
    assert verify_consistency(m, n, [x(h) for h in p], x(ROOTS[m - 1]), x(ROOTS[n - 1]))

def flip(h, mask):
    b = bytearray(x(h)); b[0] ^= mask; return b.hex()

bad_inclusion = []
for i, n, p in INCLUSION:
    root, lh = ROOTS[n - 1], leaf(ds[i]).hex()
    probes = [
        ("leaf_index - 1", i - 1, n, lh, p, root),
        ("leaf_index + 1", i + 1, n, lh, p, root),
        ("leaf_index ^ 2", i ^ 2, n, lh, p, root),
        ("tree_size * 2", i, n * 2, lh, p, root),
        ("tree_size / 2", i, n // 2, lh, p, root),
        ("wrong leaf", i, n, H(b"WrongLeaf").hex(), p, root),
        ("empty-tree root", i, n, lh, p, EMPTY),
        ("random root", i, n, lh, p, SOME),
        ("trailing garbage", i, n, lh, p + [""], root),
        ("trailing root", i, n, lh, p + [root], root),
        ("preceding garbage", i, n, lh, [""] + p, root),
        ("preceding root", i, n, lh, [root] + p, root),
    ]
    for j in range(len(p)):
        q = list(p); q[j] = flip(q[j], 8)
        probes.append((f"flipped bit 3 of path[{j}]", i, n, lh, q, root))
    if p: probes.append(("removed last component", i, n, lh, p[:-1], root))
    if len(p) > 1: probes.append(("inserted component", i, n, lh, [p[0], SOME] + p[1:], root))
    for desc, bi, bn, blh, bp, broot in probes:
        if bi < 0: continue
        assert not verify_inclusion(bi, bn, x(blh), [x(h) for h in bp], x(broot)), (desc, i, n)
        bad_inclusion.append({"_bad_": f"{desc} (from index {i}, size {n})", "leaf_index": bi,
                              "tree_size": bn, "leaf_hash": blh, "path": bp, "root": broot})

bad_consistency = []
for m, n, p in CONSISTENCY:
    if not p: continue  # as upstream: mutate only non-trivial proofs
    r1, r2 = ROOTS[m - 1], ROOTS[n - 1]
    wrong = H(b"WrongRoot").hex()
    probes = [
        ("size1 - 1", m - 1, n, r1, r2, p), ("size1 + 1", m + 1, n, r1, r2, p),
        ("size1 ^ 2", m ^ 2, n, r1, r2, p), ("size2 * 2", m, n * 2, r1, r2, p),
        ("size2 / 2", m, n // 2, r1, r2, p), ("wrong root1", m, n, wrong, r2, p),
        ("wrong root2", m, n, r1, wrong, p), ("swapped roots", m, n, r2, r1, p),
        ("empty proof", m, n, r1, r2, []), ("trailing garbage", m, n, r1, r2, p + [""]),
        ("trailing root1", m, n, r1, r2, p + [r1]), ("trailing root2", m, n, r1, r2, p + [r2]),
        ("preceding garbage", m, n, r1, r2, [""] + p), ("preceding root1", m, n, r1, r2, [r1] + p),
        ("preceding root2", m, n, r1, r2, [r2] + p), ("preceding path[0]", m, n, r1, r2, [p[0]] + p),
        ("truncated", m, n, r1, r2, p[:-1]),
    ]
    for j in range(len(p)):
        q = list(p); q[j] = flip(q[j], 16)
        probes.append((f"flipped bit 4 of path[{j}]", m, n, r1, r2, q))
    for desc, b1, b2, br1, br2, bp in probes:
        assert not verify_consistency(b1, b2, [x(h) for h in bp], x(br1), x(br2)), (desc, m, n)
        bad_consistency.append({"_bad_": f"{desc} (from {m} -> {n})", "size1": b1, "size2": b2,
                                "root1": br1, "root2": br2, "path": bp})

# Edge cases of §2.1.4.1/§2.1.4.2 (sizes 0 and equal sizes), as in the upstream suite.
c1, c2 = H(b"don't care 1").hex(), H(b"don't care 2").hex()
edge_good = [(0, 0, c1, c1, []), (0, 1, c1, c2, []), (1, 1, c2, c2, [])]
edge_bad = [("equal sizes, different roots", 0, 0, c1, c2, []), ("equal sizes 1, different roots", 1, 1, c1, c2, []),
            ("size1 > size2", 1, 0, c1, c2, []), ("size1 > size2 (2, 1)", 2, 1, c1, c2, []),
            ("empty proof for 1 -> 2", 1, 2, c1, c2, []),
            ("non-empty proof, equal sizes 0", 0, 0, EMPTY, EMPTY, [EMPTY]),
            ("non-empty proof from size 0", 0, 1, EMPTY, EMPTY, [EMPTY]),
            ("non-empty proof, equal sizes 1", 1, 1, EMPTY, EMPTY, [EMPTY])]
for s1, s2, a, b, p in edge_good:
    assert verify_consistency(s1, s2, [x(h) for h in p], x(a), x(b))
for desc, s1, s2, a, b, p in edge_bad:
    assert not verify_consistency(s1, s2, [x(h) for h in p], x(a), x(b)), desc
    bad_consistency.append({"_bad_": desc, "size1": s1, "size2": s2, "root1": a, "root2": b, "path": p})

inclusion_edge_bad = []
for (idx, size) in [(0, 0), (1, 0), (2, 1)]:
    for desc, lh, root in [("some leaf, empty root", SOME, EMPTY)]:
        assert not verify_inclusion(idx, size, x(lh), [], x(root))
        bad_inclusion.append({"_bad_": f"{desc}, index {idx} >= size {size}", "leaf_index": idx,
                              "tree_size": size, "leaf_hash": lh, "path": [], "root": root})

out = {
    "_comment": ("RFC 9162 §2.1 Merkle tree vectors (SHA-256). Valid vectors: the Certificate Transparency "
                 "reference tree (8 leaves). Indices are 0-based. Hashes are lower-case hex; a path element "
                 "that is not 32 bytes (\"\" = empty) must be rejected. Every entry with a `_bad_` key must "
                 "fail verification. Generated by gen_rfc9162.py, which re-checks every entry."),
    "version": 1,
    "hash": "SHA-256",
    "empty_root": EMPTY,
    "leaves": LEAVES,
    "roots": [{"tree_size": i + 1, "root": r} for i, r in enumerate(ROOTS)],
    "inclusion": [{"leaf_index": i, "tree_size": n, "path": p} for i, n, p in INCLUSION],
    "consistency": [{"size1": m, "size2": n, "path": p} for m, n, p in CONSISTENCY],
    "consistency_edge": [{"size1": a, "size2": b, "root1": r1, "root2": r2, "path": p} for a, b, r1, r2, p in edge_good],
    "inclusion_bad": bad_inclusion,
    "consistency_bad": bad_consistency,
}
json.dump(out, sys.stdout, indent=1)
sys.stdout.write("\n")
