#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each on the nightly toolchain, as many at once as the
# machine has cores (each target is one single-threaded libFuzzer process, so on 2 cores 4
# targets take 2 × SECONDS of wall time and each still gets a whole core). Fails (non-zero
# exit) if any target crashes; the crashing input is left in fuzz/artifacts/TARGET/. New
# inputs go to a scratch directory, so the committed corpus (fuzz/corpus/TARGET) is read
# but never grown by a run.
#
# Usage: fuzz/run.sh SECONDS [TARGET...]   e.g. fuzz/run.sh 60  (all targets)
#        fuzz/run.sh --build               install cargo-fuzz if absent and build every
#                                          target, nothing run (CI starts this early, in
#                                          the background, so the run finds it built)
# FUZZ_JOBS: targets run at once (default: the number of cores).
#
# Sanitizer: none by default (FUZZ_SANITIZER=address to change it). Both crates
# `forbid(unsafe_code)`, so AddressSanitizer would only watch dependencies, while it cuts
# the execution rate of `open_envelope` (one X25519 multiplication per input) by half or
# more on a small shared machine; panics, overflows (debug assertions on) and failed
# asserts in the harnesses are caught either way.
set -euo pipefail
secs="${1:?usage: fuzz/run.sh SECONDS [TARGET...] | fuzz/run.sh --build}"
shift
cd "$(dirname "$0")"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# The options of one target's build. Instrumentation flags are part of RUSTFLAGS, so a
# target built with other flags gets its own target directory: sharing one would rebuild
# every dependency each time the flags change from one target to the next.
flags() {
    opts=(--sanitizer "${FUZZ_SANITIZER:-none}" --debug-assertions)
    case "$1" in
        # X25519 dominates each input; tracing the comparisons of its field arithmetic
        # costs ~2.7x in executions, and the only magic values this target needs
        # (version, key id) are already in its seed corpus.
        open_envelope) opts+=(--no-trace-compares --target-dir target/no-trace-compares) ;;
    esac
}

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

if [ "$secs" = "--build" ]; then
    for target in "${targets[@]}"; do
        flags "$target"
        cargo +nightly fuzz build "${opts[@]}" "$target"
    done
    exit 0
fi

# Build first, one target after the other (builds of one directory would wait on each
# other's lock anyway), so that the runs below start at once and time only fuzzing.
for target in "${targets[@]}"; do
    flags "$target"
    cargo +nightly fuzz build "${opts[@]}" "$target"
done

parallel="${FUZZ_JOBS:-$(nproc)}"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
    flags "$target"
    mkdir -p "corpus/$target" "$work/$target"
    echo "== fuzzing $target for ${secs}s"
    (
        status=0
        cargo +nightly fuzz run "${opts[@]}" "$target" "$work/$target" "corpus/$target" -- \
            -max_total_time="$secs" -print_final_stats=1 >"$work/$target.log" 2>&1 || status=$?
        echo "$status" >"$work/$target.rc"
    ) &
done
wait

failed=0
echo "== summary"
for target in "${targets[@]}"; do
    status="$(cat "$work/$target.rc")"
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$target.log" | grep -o '[0-9]*$' || echo '?')"
    if [ "$status" -ne 0 ]; then
        echo "== $target: CRASH (exit $status) after ${runs} executions; see fuzz/artifacts/$target/; its log:"
        tail -n 60 "$work/$target.log"
        failed=1
    else
        echo "$target: ${runs} executions in ${secs}s, no crash"
    fi
done
exit "$failed"
