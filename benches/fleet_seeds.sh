#!/bin/sh
# Interval coverage of the fleet over many seeds (issue #14, defect 10): runs
# `examples/fleet.rs` with --seed 1..N on a small fleet and sums, per release
# (recipient, metric), the intervals that cover the true value. docs/benchmarks.md
# ("Interval coverage over seeds") has the table this prints.
#
#   benches/fleet_seeds.sh [SEEDS=20] [DEVICES=2000] [MONTHS=2]
#
# PROFILE=test reuses the test build (optimised) instead of building a release one.
set -eu
seeds=${1:-20}
devices=${2:-2000}
months=${3:-2}
profile=${PROFILE:-release}
dir=$([ "$profile" = release ] && echo release || echo debug)
out=$(mktemp -d)
cargo build --profile "$profile" --example fleet >&2
for s in $(seq 1 "$seeds"); do
    echo "seed $s/$seeds" >&2
    "./target/$dir/examples/fleet" --devices "$devices" --months "$months" --seed "$s" \
        --out "$out/run-$s" | grep ' release-coverage ' >> "$out/coverage.txt"
    rm -rf "$out/run-$s"
done
echo "| recipient | metric | covered / intervals | coverage |"
echo "|---|---|---:|---:|"
awk '{ k = $2 " " $3; c[k] += $4; n[k] += $5; C += $4; N += $5 }
     END { for (k in c) { split(k, a, " "); printf "| %s | %s | %d / %d | %.1f%% |\n", a[1], a[2], c[k], n[k], 100 * c[k] / n[k] }
           printf "| all | | %d / %d | %.1f%% |\n", C, N, 100 * C / N }' "$out/coverage.txt" | sort
rm -rf "$out"
