#!/usr/bin/env bash
# Benchmark: one epoch of mlp+bn and cnn+bn, batch 64, 2 threads, in syncbn and in PyTorch
# (Debian's python3-torch) on the same machine in the same run; prints images/s and the ratio.
#   tests/bench/train_vs_pytorch.sh [--steps N] [--models "mlp cnn"] [--threads T] [--device cuda]
#                                   [--batch-size B] [--data-dir DIR]
# Not a test: timings are noisy; run it on a quiet machine.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${SYNCBN_BUILD_DIR:-$root/build}
steps=0 models="mlp cnn" threads=2 batch=64 device=cpu data=/usr/share/datasets/fashion-mnist
while [[ $# -gt 0 ]]; do
  case $1 in
    --steps) steps=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --data-dir) data=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
# Debian's python3-torch lives under /usr/bin/python3; elsewhere (a GPU machine) the first
# python3 on PATH that imports torch. SYNCBN_PYTHON overrides.
python=${SYNCBN_PYTHON:-}
if [[ -z $python ]]; then
  for candidate in /usr/bin/python3 python3; do
    if "$candidate" -c "import torch" 2>/dev/null; then python=$candidate; break; fi
  done
fi
[[ -n $python ]] || { echo "PyTorch missing: cmake/install-deps.sh --with-torch" >&2; exit 1; }
[[ -x $build/syncbn-train ]] || "$root/cmake/build.sh"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "# one epoch (or --steps), batch $batch, $threads threads, device $device"
printf '%-6s %-5s %14s %14s %8s\n' model norm syncbn_img/s pytorch_img/s ratio
for model in $models; do
  steps_flag=()
  [[ $steps -gt 0 ]] && steps_flag=(--steps "$steps")
  OMP_NUM_THREADS=$threads "$build/syncbn-train" --model "$model" --norm bn --batch-size "$batch" \
    --epochs 1 --threads "$threads" --device "$device" --data-dir "$data" --no-progress --metrics "$tmp/$model.jsonl" "${steps_flag[@]}" >/dev/null
  ours=$("$python" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["images_per_second"])' "$tmp/$model.jsonl")
  theirs_json=$("$python" "$root/tests/bench/pytorch_train.py" --model "$model" --norm bn \
    --batch-size "$batch" --threads "$threads" --steps "$steps" --device "$device" --data-dir "$data")
  theirs=$("$python" -c 'import json,sys; print(json.loads(sys.argv[1])["images_per_second"])' "$theirs_json")
  ratio=$("$python" -c "print(f'{$ours / $theirs:.2f}')")
  printf '%-6s %-5s %14.0f %14.0f %8s\n' "$model" bn "$ours" "$theirs" "$ratio"
  echo "{\"bench\": \"train_vs_pytorch\", \"model\": \"$model\", \"norm\": \"bn\", \"batch_size\": $batch, \"threads\": $threads, \"device\": \"$device\", \"syncbn_images_per_second\": $ours, \"pytorch_images_per_second\": $theirs, \"ratio\": $ratio}"
done
