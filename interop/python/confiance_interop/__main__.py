"""`python -m confiance_interop --root REPO [--url URL --token T --origin O --log-public-key HEX]`

Runs the test vectors, then (with `--url`) the live checks against a running server;
prints the counts and exits non-zero on any failure.
"""

import argparse
import json
import sys
from pathlib import Path

from .vectors import run_all


def main():
    p = argparse.ArgumentParser(prog="confiance_interop")
    p.add_argument("--root", default=".", help="the repository (for tests/vectors and aggregator/tests/vectors)")
    p.add_argument("--url", help="a running `confiance serve`, e.g. http://127.0.0.1:8750")
    p.add_argument("--token", help="an auditor token")
    p.add_argument("--origin", help="the audit log's origin")
    p.add_argument("--log-public-key", help="the audit log's Ed25519 public key, hex")
    a = p.parse_args()

    counts, failures = run_all(a.root)
    for f in failures:
        print(f"  [FAILED] {f}")
    total = sum(counts.values())
    print(f"vectors: {total} checked ({', '.join(f'{k} {v}' for k, v in counts.items())}), {len(failures)} failed")
    live_failed = 0
    if a.url:
        from .live import run_live

        wire = json.loads((Path(a.root) / "tests/vectors/wire.json").read_text())
        digest = next(c["fields"]["digest"] for c in wire["cases"] if c["name"] == "catalogue")
        print(f"live checks against {a.url}:")
        results = run_live(a.url, a.token, a.origin, bytes.fromhex(a.log_public_key), digest)
        live_failed = sum(1 for ok, _ in results if not ok)
        print(f"live: {len(results)} checks, {live_failed} failed")
    sys.exit(1 if failures or live_failed else 0)


if __name__ == "__main__":
    main()
