#!/bin/sh
# Interval coverage of the fleet over many seeds (issue #14, defect 10): runs
# `examples/fleet.rs` with --seed 1..N on a small fleet and sums, per release
# (recipient, metric), the intervals that cover the true value, and the mean and spread
# of z = (estimate − truth) / standard error over every output and seed: a bias shows as
# a mean z away from 0 long before intervals miss, a wrong variance as a spread away
# from 1. docs/benchmarks.md ("Interval coverage of the fleet over seeds") has the tables.
#
#   benches/fleet_seeds.sh [SEEDS=20] [DEVICES=2000] [MONTHS=2]
#
# PROFILE=test reuses the test build (optimised) instead of building a release one;
# FIRST=k starts at seed k (to add seeds to an earlier table).
set -eu
seeds=${1:-20}
devices=${2:-2000}
months=${3:-2}
profile=${PROFILE:-release}
first=${FIRST:-1}
dir=$([ "$profile" = release ] && echo release || echo debug)
out=$(mktemp -d)
cargo build --profile "$profile" --example fleet >&2
for s in $(seq "$first" $((first + seeds - 1))); do
    echo "seed $s ($first to $((first + seeds - 1)))" >&2
    "./target/$dir/examples/fleet" --devices "$devices" --months "$months" --seed "$s" \
        --out "$out/run-$s" | grep -E ' release-(coverage|z) ' >> "$out/coverage.txt"
    rm -rf "$out/run-$s"
done
echo "| recipient | metric | covered / intervals | coverage | mean z (± se) | sd of z |"
echo "|---|---|---:|---:|---:|---:|"
awk '$1 == "release-coverage" { k = $2 " " $3; c[k] += $4; n[k] += $5; C += $4; N += $5 }
     $1 == "release-z" { k = $2 " " $3; for (i = 6; i <= NF; i++) { z[k] += $i; zz[k] += $i * $i; m[k]++; Z += $i; ZZ += $i * $i; M++ } }
     function row(name, c, n, s, ss, m,   mean, sd) {
         mean = s / m; sd = sqrt(ss / m - mean * mean)
         printf "| %s | %d / %d | %.1f%% | %+.2f (± %.2f) | %.2f |\n", name, c, n, 100 * c / n, mean, 1 / sqrt(m), sd }
     END { for (k in c) { split(k, a, " "); row(a[1] " | " a[2], c[k], n[k], z[k], zz[k], m[k]) }
           row("all | ", C, N, Z, ZZ, M) }' "$out/coverage.txt" | sort
rm -rf "$out"
