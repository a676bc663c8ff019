#!/usr/bin/env bash
# The fuzzers' seed corpora still pass, with a few seconds of fuzzing each: builds idx_fuzz,
# safetensors_fuzz and config_fuzz with clang + ASan + UBSan (tests/fuzz/build.sh) and runs each
# over tests/fuzz/corpus/<target> for 5 s. Fails on any crash, sanitizer report or timeout.
# Skips only when clang or its libFuzzer runtime is missing.
set -uo pipefail
root=${SYNCBN_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
command -v clang++ >/dev/null || { echo "skip: clang++ not installed (cmake/install-deps.sh --with-test-tools)"; exit 77; }
[[ -f $(clang++ -print-runtime-dir)/libclang_rt.fuzzer-x86_64.a ]] ||
  { echo "skip: clang's libFuzzer runtime is not installed (cmake/install-deps.sh --with-test-tools)"; exit 77; }

export SYNCBN_FUZZ_BUILD_DIR=${SYNCBN_BUILD_DIR:-$root/build}/fuzz
SYNCBN_FUZZ_WORK_DIR=$(mktemp -d)
export SYNCBN_FUZZ_WORK_DIR
trap 'rm -rf "$SYNCBN_FUZZ_WORK_DIR"' EXIT

start=$SECONDS
"$root/tests/fuzz/build.sh" -j2 >"$SYNCBN_FUZZ_WORK_DIR/build.log" 2>&1 ||
  { tail -40 "$SYNCBN_FUZZ_WORK_DIR/build.log"; echo "0 passed, 1 failed (the fuzzers do not build)"; exit 1; }
echo "built the fuzzers in $((SECONDS - start)) s"
# Any status from run.sh but 0 is a failure here (libFuzzer's own crash status is 77, which
# ctest would read as a skip).
if "$root/tests/fuzz/run.sh" all 5s; then
  echo "3 passed, 0 failed"
else
  echo "0 passed, 1 failed"
  exit 1
fi
