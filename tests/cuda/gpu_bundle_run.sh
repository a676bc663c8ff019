#!/usr/bin/env bash
# The GPU checks on a lent GPU machine, from the bundle tests/cuda/make_gpu_bundle.sh made
# (prebuilt programs, a relocated Open MPI): run from the repository root as
#   bash .gpu-bundle/run.sh
# SYNCBN_REQUIRE_GPU=1: a GPU test that would skip fails. Each check's log goes to $OUT (the
# device tool brings it back); the last lines are one summary line per check and
# "N passed, M failed"; the exit status is 1 when any check failed.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(pwd)
work=$(mktemp -d)
out=${OUT:-$work/out}
mkdir -p "$out"
cd "$work" || exit 1
tar -xJf "$here/runtime.tar.xz" && tar -xJf "$here/bin.tar.xz" || exit 1
# CUDA's libraries as the machine's PyTorch ships them (cuDNN, NCCL, cuBLAS wheels), then its
# toolkit's.
nvidia=$(python3 -c "import nvidia; print(list(nvidia.__path__)[0])" 2>/dev/null)
cuda_libs=$(find "$nvidia" -maxdepth 2 -type d -name lib 2>/dev/null | tr '\n' ':')
export OPAL_PREFIX=$work/ompi/usr PATH=$work/ompi/usr/bin:$PATH
export LD_LIBRARY_PATH=$work/lib:$work/ompi/usr/lib/x86_64-linux-gnu/openmpi/lib:${cuda_libs}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 SYNCBN_REQUIRE_GPU=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none PMIX_MCA_pcompress_base_silence_warning=1
mpirun=(mpirun --oversubscribe --bind-to none --mca btl "self,vader,tcp" --mca pml ob1
        -x SYNCBN_REQUIRE_GPU -x LD_LIBRARY_PATH -x PATH -x OPAL_PREFIX)
summary=()
failed=0
check() {  # check NAME TIMEOUT COMMAND...
  local name=$1 limit=$2 start=$SECONDS status
  shift 2
  echo "=== $name"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  status=$?
  grep -vE "pmix|dlopen|Perhaps a missing" "$out/$name.log" | tail -30
  if [[ $status -eq 0 ]]; then
    summary+=("PASS  $name ($((SECONDS - start)) s)")
  else
    summary+=("FAIL  $name (exit $status, $((SECONDS - start)) s)")
    failed=$((failed + 1))
  fi
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
if ldd bin/syncbn_cuda_tests | grep "not found"; then echo "libraries missing (above)"; fi
check gpu_unit_tests 300 bin/syncbn_cuda_tests --gtest_brief=1
for np in 2 4; do
  check "syncbn_mpi_backend_np$np" 120 "${mpirun[@]}" -np "$np" bin/mpi_sync_batch_norm_cuda_test
  check "nccl_training_np$np" 180 "${mpirun[@]}" -np "$np" -x SYNCBN_NCCL_HOSTID_PER_RANK=1 \
    -x NCCL_SOCKET_IFNAME=lo bin/mpi_nccl_cuda_test
done
check syncbn_train_2_ranks_vs_1 180 env SYNCBN_BUILD_DIR="$work/bin" bash scripts/cuda_training_test.sh
check nccl_bench 60 "${mpirun[@]}" -np 1 bin/syncbn-bench-nccl -b 8 -e 64M -f 8
check bn_kernels_vs_pytorch 200 bash "$repo/tests/bench/gpu_bn_bench.sh" "$work/bin" --iters 30

# Training throughput against PyTorch on random IDX data of Fashion-MNIST's shape.
python3 "$repo/tests/bench/random_idx.py" "$work/idx"
check training_vs_pytorch 240 env SYNCBN_BUILD_DIR="$work/bin" SYNCBN_PYTHON=python3 \
  bash "$repo/tests/bench/train_vs_pytorch.sh" --device cuda --models "cnn resnet" \
  --batch-size 128 --steps 200 --data-dir "$work/idx"

echo "=== summary"
printf '%s\n' "${summary[@]}"
echo "$(( ${#summary[@]} - failed )) passed, $failed failed"
[[ $failed -eq 0 ]]
