#!/usr/bin/env bash
# Peer benchmark (run by hand, not by CI). One command:
#   benches/peers/run.sh                       # the issue's configuration: n = 10^6, d ∈ {16, 1024, 65536}, ε ∈ {1, 4}, 10 min limit
#   benches/peers/run.sh --n 100000 --timeout 60   # a reduced configuration
#   benches/peers/run.sh --d 16 --reps 20          # 20 repetitions (seeds 1..20 on both sides), mean ± se
#   benches/peers/run.sh --table results/*.jsonl   # only rebuild results/peers.md from logs
#   benches/peers/run.sh --encode --d 2 16 1024 65536 --eps 0.5 1 4 --reps 5 --log results/encode.jsonl
#                                                  # encode time per report, both sides (results/encode.md)
# Creates benches/peers/.venv, installs pure-LDP 1.2.0 with the dependencies it does not
# declare (scikit-learn, statsmodels, xxhash<3) and OpenDP, builds the Rust side
# (outside the workspace, with OpenDP's Rust crate), then writes results/peers.md.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q 'pure-ldp==1.2.0' scikit-learn statsmodels 'xxhash<3' opendp numpy
cargo build --release --quiet
exec .venv/bin/python peers.py "$@"
