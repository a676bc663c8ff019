#!/usr/bin/env bash
# The main job: a 4-rank SyncBatchNorm training on Fashion-MNIST (Debian's
# dataset-fashion-mnist), launched through syncbn-run (mpirun; oversubscribed where cores are
# fewer than ranks). Extra arguments go to syncbn-train and override the defaults below.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SYNCBN_BUILD_DIR=${SYNCBN_BUILD_DIR:-$root/build}

"$root/launch/build.sh"
exec "$root/launch/syncbn-run" -np "${SYNCBN_NP:-4}" -- "$SYNCBN_BUILD_DIR/syncbn-train" \
  --model cnn --norm syncbn --batch-size 32 --epochs 1 --lr 0.05 --metrics train-metrics.jsonl \
  --save model.safetensors "$@"
