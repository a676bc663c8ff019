#!/usr/bin/env bash
# Every check that needs an NVIDIA GPU, as one prepared script for a lent GPU machine (CI has
# none): build with CUDA, the GPU unit tests (ctest -R cuda), SyncBN on the GPU under mpirun over
# the MPI backend, NCCL with one rank and with two ranks sharing the GPU (NCCL_HOSTID per rank),
# the batch-norm kernel benchmark against PyTorch, and training throughput against PyTorch.
#   tests/cuda/gpu_checks.sh [results-dir]        (default: $OUT, else ./gpu-results)
# Needs the build dependencies (Open MPI, Boost.Program_options, OpenBLAS, GoogleTest, zlib:
# on a machine without a package mirror, unpack their .deb files with dpkg -x first) and PyTorch
# with CUDA for the comparisons. Fashion-MNIST is read from SYNCBN_DATA_DIR when present; else a
# random IDX set of the same shape is written (throughput does not depend on the pixels).
#
# On a GPU machine a skip is a failure: SYNCBN_REQUIRE_GPU=1 is exported (every GPU test fails
# instead of skipping), a skipped cuda.* test or a program's exit 77 (skipped) counts as failed,
# and the script exits 1 when any check failed. One summary line per check ends the output.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
results=${1:-${OUT:-$PWD/gpu-results}}
build=${SYNCBN_BUILD_DIR:-$root/build-gpu}
mkdir -p "$results"
export SYNCBN_REQUIRE_GPU=1
summary=()
failures=0
log() { printf '\n== %s\n' "$*" | tee -a "$results/summary.txt"; }
# check NAME COMMAND...: runs it, logs its output, and records PASS, or FAIL with the status
# (77, "skipped", is a failure here: this script runs where a GPU must be).
check() {
  local name=$1 status
  shift
  log "$name"
  "$@" 2>&1 | tee -a "$results/summary.txt"
  status=${PIPESTATUS[0]}
  if [[ $status -eq 0 ]]; then
    summary+=("PASS  $name")
  else
    [[ $status -eq 77 ]] && status="77 (skipped: no GPU use is a failure here)"
    summary+=("FAIL  $name (exit $status)")
    failures=$((failures + 1))
  fi
  return 0
}
finish() {
  log "summary"
  printf '%s\n' "${summary[@]}" | tee -a "$results/summary.txt"
  echo "$(( ${#summary[@]} - failures )) passed, $failures failed" | tee -a "$results/summary.txt"
  [[ $failures -eq 0 ]]
  exit $?
}
as_root=()
[[ $(id -u) -eq 0 ]] && as_root=(--allow-run-as-root)
mpirun_cmd=(mpirun "${as_root[@]}" --oversubscribe --bind-to none -x SYNCBN_REQUIRE_GPU)

check "device" nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

build_with_cuda() {
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >"$results/cmake.txt" 2>&1 &&
    cmake --build "$build" -j "$(nproc)" >"$results/build.txt" 2>&1 ||
    { tail -30 "$results/build.txt"; return 1; }
  grep "CUDA backend" "$results/cmake.txt"
  grep -q "CUDA backend ON" "$results/cmake.txt" || { echo "the CUDA backend was not built"; return 1; }
}
check "build (CUDA on)" build_with_cuda
[[ -x $build/syncbn-train ]] || finish

# ctest counts GTEST_SKIP as passed: a skipped GPU test is looked for in its output and failed.
gpu_unit_tests() {
  local out="$results/ctest-cuda.txt" status
  (cd "$build" && ctest -R cuda --output-on-failure --timeout 300) >"$out" 2>&1
  status=$?
  cat "$out"
  if grep -E "^ *[0-9]+ - .*\(Skipped\)" "$out"; then
    echo "skipped GPU tests above: on a GPU machine they must run"
    return 1
  fi
  grep -q "tests passed" "$out" || { echo "ctest ran no test"; return 1; }
  return "$status"
}
check "GPU tests (ctest -R cuda: kernels, modules, NCCL; MPI tests over NCCL and the MPI backend at -np 1..4; 2-rank syncbn-train on the GPU)" gpu_unit_tests

for np in 2 4; do
  check "SyncBN on the GPU, $np ranks sharing it, MPI backend" \
    "${mpirun_cmd[@]}" -np "$np" "$build/tests/mpi_sync_batch_norm_cuda_test"
done

check "NCCL benchmark, one rank" "${mpirun_cmd[@]}" -np 1 "$build/syncbn-bench-nccl" -b 8 -e 64M -f 8
SYNCBN_NCCL_HOSTID_PER_RANK=1 check "NCCL benchmark, two ranks on one GPU (host id per rank)" \
  timeout 300 "${mpirun_cmd[@]}" -np 2 -x SYNCBN_NCCL_HOSTID_PER_RANK -x NCCL_SOCKET_IFNAME=lo \
  "$build/syncbn-bench-nccl" -b 8 -e 16M -f 8

check "batch-norm kernels vs PyTorch" "$root/tests/bench/gpu_bn_bench.sh" "$build"

data=${SYNCBN_DATA_DIR:-/usr/share/datasets/fashion-mnist}
if [[ ! -d $data ]]; then
  data="$results/random-idx"
  python3 "$root/tests/bench/random_idx.py" "$data"
fi

SYNCBN_BUILD_DIR=$build check "training throughput on one GPU vs PyTorch (cnn, resnet; batch 128; 300 steps)" \
  "$root/tests/bench/train_vs_pytorch.sh" --device cuda --models "cnn resnet" \
  --batch-size 128 --steps 300 --data-dir "$data"
finish
