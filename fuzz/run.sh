#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each, one after the other, on the nightly toolchain.
# Fails (non-zero exit) on the first crash; the crashing input is left in
# fuzz/artifacts/TARGET/. New inputs go to a scratch directory, so the committed corpus
# (fuzz/corpus/TARGET) is read but never grown by a run.
#
# Usage: fuzz/run.sh SECONDS [TARGET...]     e.g. fuzz/run.sh 60  (all targets)
#
# Sanitizer: none by default (FUZZ_SANITIZER=address to change it). Both crates
# `forbid(unsafe_code)`, so AddressSanitizer would only watch dependencies, while it cuts
# the execution rate of `open_envelope` (one X25519 multiplication per input) by half or
# more on a small shared machine; panics, overflows (debug assertions on) and failed
# asserts in the harnesses are caught either way.
set -euo pipefail
secs="${1:?usage: fuzz/run.sh SECONDS [TARGET...]}"
shift
cd "$(dirname "$0")"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
summary=""
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
for target in "${targets[@]}"; do
    extra=()
    case "$target" in
        # X25519 dominates each input; tracing the comparisons of its field arithmetic
        # costs ~2.7x in executions, and the only magic values this target needs
        # (version, key id) are already in its seed corpus.
        open_envelope) extra=(--no-trace-compares) ;;
    esac
    mkdir -p "corpus/$target"
    scratch="$(mktemp -d)"
    log="$(mktemp)"
    echo "== fuzzing $target for ${secs}s"
    status=0
    cargo +nightly fuzz run --sanitizer "${FUZZ_SANITIZER:-none}" --debug-assertions ${extra[@]+"${extra[@]}"} \
        "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$secs" -print_final_stats=1 2>&1 | tee "$log" || status=$?
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    rm -rf "$scratch" "$log"
    if [ "$status" -ne 0 ]; then
        echo "== $target: CRASH (exit $status) after ${runs} executions; see fuzz/artifacts/$target/"
        exit "$status"
    fi
    summary="${summary}${target}: ${runs} executions in ${secs}s, no crash"$'\n'
done
echo "== summary"
printf '%s' "$summary"
