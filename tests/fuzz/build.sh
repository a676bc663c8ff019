#!/usr/bin/env bash
# Builds the libFuzzer harnesses (idx_fuzz, safetensors_fuzz, config_fuzz) with clang and
# ASan + UBSan into build-fuzz/ (or $SYNCBN_FUZZ_BUILD_DIR). Uses ccache when installed.
#   tests/fuzz/build.sh [-jN]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${SYNCBN_FUZZ_BUILD_DIR:-$root/build-fuzz}
jobs=${1:--j2}
command -v clang++ >/dev/null || { echo "build.sh: clang++ not found (cmake/install-deps.sh --with-test-tools)" >&2; exit 2; }
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
fi
cmake -S "$root/tests/fuzz" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE= \
  "${launcher[@]}" >/dev/null
cmake --build "$build" "$jobs"
