#!/usr/bin/env bash
# syncbn-train on the GPU with two ranks (NCCL, ranks sharing the GPU when there is one): 2 ranks
# x batch 16 with SyncBN must save the weights of 1 rank x batch 32 with BN (within 1e-4
# relative), the CUDA twin of distributed_training_test.sh. The model is the MLP: no max-pool
# near-ties for rounding to flip (different batch shapes run different cuBLAS kernels).
# Skips (77) where no GPU is usable, as on CI; under SYNCBN_REQUIRE_GPU=1 that is a failure.
# Needs SYNCBN_BUILD_DIR (set by ctest) and Fashion-MNIST (else synthetic data).
set -uo pipefail
build=${SYNCBN_BUILD_DIR:?SYNCBN_BUILD_DIR must point at the build directory}
train=$build/syncbn-train
compare=$build/syncbn-compare-safetensors
data=${SYNCBN_DATA_DIR:-/usr/share/datasets/fashion-mnist}
dataset=(--data-dir "$data")
[[ -d $data ]] || dataset=(--dataset synthetic)
# shellcheck source=tests/e2e/mpirun.sh
source "$(dirname "${BASH_SOURCE[0]}")/mpirun.sh"
mpirun_cmd+=(-x SYNCBN_NCCL_HOSTID_PER_RANK=1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(--model mlp --steps 30 --seed 5 --lr 0.0005 --threads 1 --no-progress --device cuda
        "${dataset[@]}")

timeout 300 "$train" "${common[@]}" --norm bn --batch-size 32 --save "$tmp/bn1.safetensors" \
  >"$tmp/bn1.log" 2>&1
status=$?
if [[ $status -ne 0 ]] &&
   grep -qE "no NVIDIA driver is installed|no CUDA device is visible|has no CUDA backend" "$tmp/bn1.log"; then
  reason=$(grep -m1 -oE "no NVIDIA driver is installed|no CUDA device is visible|has no CUDA backend" "$tmp/bn1.log")
  if [[ ${SYNCBN_REQUIRE_GPU:-0} == 1 ]]; then
    echo "FAIL: SYNCBN_REQUIRE_GPU=1 but no GPU is usable: $reason"
    echo "0 passed, 1 failed"
    exit 1
  fi
  echo "skip: $reason"
  exit 77
fi
# shellcheck source=tests/e2e/check.sh
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
check "1-rank bn training on the GPU runs" $status
[[ $status -eq 0 ]] || tail -20 "$tmp/bn1.log"

timeout 300 "${mpirun_cmd[@]}" -np 2 "$train" "${common[@]}" --norm syncbn --batch-size 16 \
  --save "$tmp/sync2.safetensors" >"$tmp/sync2.log" 2>&1
status=$?
check "2-rank syncbn training on the GPU runs" $status
[[ $status -eq 0 ]] || tail -20 "$tmp/sync2.log"
grep -m1 "^device:" "$tmp/sync2.log"

"$compare" "$tmp/sync2.safetensors" "$tmp/bn1.safetensors" --rtol 1e-4
check "2 x 16 syncbn (NCCL) == 1 x 32 bn within 1e-4" $?

finish
