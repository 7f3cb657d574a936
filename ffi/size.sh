#!/usr/bin/env bash
# Measures the C library in its smallest build and a minimal C program linked with it
# (docs/benchmarks.md, "C library size"): builds `confiance-ffi` with the `min-size`
# profile (release, LTO, opt-level "z", panic = "abort", one codegen unit, stripped),
# links ffi/examples/minimal.c statically with `cc -Os -Wl,--gc-sections`, strips it,
# and prints the sizes. It only prints: no size makes it fail.
#
#   ffi/size.sh [CATALOGUE.bin KEY_CONFIG_HEX]
#
# With a compiled catalogue (examples/catalogue.toml) and a key config, it also runs the
# program once.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cc >/dev/null || { apt-get update -qq && apt-get install -y -qq gcc libc6-dev >/dev/null; }

cargo build -q -p confiance-ffi --profile min-size
lib=target/min-size/libconfiance_ffi.a
out=target/ffi-size
rm -rf "$out" && mkdir -p "$out"
cflags=(-std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -Os -ffunction-sections -fdata-sections -I ffi/include)

cc "${cflags[@]}" ffi/examples/minimal.c "$lib" -Wl,--gc-sections -lpthread -ldl -lm -o "$out/minimal"
strip "$out/minimal"
# The same compiler, flags and C library with no confiance: what the program costs alone.
printf '#include <stdio.h>\nint main(void) { puts("{}"); return 0; }\n' >"$out/baseline.c"
cc "${cflags[@]}" "$out/baseline.c" -Wl,--gc-sections -o "$out/baseline"
strip "$out/baseline"
cp "$lib" "$out/libconfiance_ffi.a" && strip --strip-debug "$out/libconfiance_ffi.a"

bytes() { stat -c %s "$1"; }
echo "toolchain: $(rustc --version); $(cc --version | head -1); $(uname -m)"
echo "static library $lib: $(bytes "$lib") B as built, $(bytes "$out/libconfiance_ffi.a") B after strip --strip-debug"
echo "shared library target/min-size/libconfiance_ffi.so: $(bytes target/min-size/libconfiance_ffi.so) B"
echo "minimal program (static link of the library, stripped): $(bytes "$out/minimal") B"
echo "baseline program (no confiance, same flags, stripped): $(bytes "$out/baseline") B"
size "$out/minimal" "$out/baseline"

if [ $# -ge 2 ]; then
  "$out/minimal" "$1" "$2"
fi
