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
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
results=${1:-${OUT:-$PWD/gpu-results}}
build=${SYNCBN_BUILD_DIR:-$root/build-gpu}
mkdir -p "$results"
log() { printf '\n== %s\n' "$*" | tee -a "$results/summary.txt"; }
run() { "$@" 2>&1 | tee -a "$results/summary.txt"; return "${PIPESTATUS[0]}"; }
as_root=()
[[ $(id -u) -eq 0 ]] && as_root=(--allow-run-as-root)
mpirun_cmd=(mpirun "${as_root[@]}" --oversubscribe --bind-to none)

log "device"
run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

log "build (CUDA on)"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >"$results/cmake.txt" 2>&1 &&
  cmake --build "$build" -j "$(nproc)" >"$results/build.txt" 2>&1 ||
  { tail -30 "$results/build.txt"; echo "build failed"; exit 1; }
grep "CUDA backend" "$results/cmake.txt" | tee -a "$results/summary.txt"

log "GPU unit tests"
(cd "$build" && run ctest -R cuda --output-on-failure --timeout 300)

log "SyncBN on the GPU, 2 and 4 ranks sharing it over the MPI backend"
for np in 2 4; do run "${mpirun_cmd[@]}" -np "$np" "$build/tests/mpi_sync_batch_norm_cuda_test"; done

log "NCCL: one rank, then two ranks on one GPU with a host id per rank"
run "${mpirun_cmd[@]}" -np 1 "$build/syncbn-bench-nccl" -b 8 -e 64M -f 8
SYNCBN_NCCL_HOSTID_PER_RANK=1 run timeout 300 "${mpirun_cmd[@]}" -np 2 \
  -x SYNCBN_NCCL_HOSTID_PER_RANK -x NCCL_SOCKET_IFNAME=lo "$build/syncbn-bench-nccl" -b 8 -e 16M -f 8

log "batch-norm kernels vs PyTorch"
run "$root/tests/bench/gpu_bn_bench.sh" "$build"

data=${SYNCBN_DATA_DIR:-/usr/share/datasets/fashion-mnist}
if [[ ! -d $data ]]; then
  data="$results/random-idx"
  python3 - "$data" <<'PY'
import gzip, os, struct, sys
import numpy as np
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)
for prefix, n in (("train", 60000), ("t10k", 10000)):
    with gzip.open(f"{out}/{prefix}-images-idx3-ubyte.gz", "wb", compresslevel=1) as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + rng.integers(0, 256, n * 784, dtype=np.uint8).tobytes())
    with gzip.open(f"{out}/{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + rng.integers(0, 10, n, dtype=np.uint8).tobytes())
PY
fi

log "training throughput on one GPU vs PyTorch (cnn, resnet; batch 128; 300 steps)"
SYNCBN_BUILD_DIR=$build run "$root/tests/bench/train_vs_pytorch.sh" --device cuda --models "cnn resnet" \
  --batch-size 128 --steps 300 --data-dir "$data"
log "done: $results"
