#!/usr/bin/env bash
# A per-rank batch-size scaling study: for each batch per rank b and each normalisation, train
# on P ranks with the same global schedule and report test accuracy and throughput.
#   examples/scaling_study.sh [-np P] [--model cnn] [--epochs 1] [--batches "2 4 8 16 32"]
#                             [--norms "bn syncbn gn none"] [--out study.jsonl]
# syncbn with --sync-group-size K is also a norm here: "syncbn:2" syncs groups of 2 ranks.
# Each run appends its epoch lines to the JSON-lines file; the table is printed at the end.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SYNCBN_BUILD_DIR:-$root/build}
np=4 model=cnn epochs=1 batches="2 4 8 16 32" norms="bn syncbn syncbn:2 gn none" out=study.jsonl
while [[ $# -gt 0 ]]; do
  case $1 in
    -np) np=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --norms) norms=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x $build/syncbn-train ]] || "$root/cmake/build.sh"
: >"$out"
for b in $batches; do
  for spec in $norms; do
    norm=${spec%%:*} group=0
    [[ $spec == *:* ]] && group=${spec#*:}
    echo "== batch/rank $b, norm $spec, $np ranks" >&2
    tmp=$(mktemp)
    # The linear scaling rule keeps the step size comparable across global batch sizes.
    "$root/launch/syncbn-run" -np "$np" -- "$build/syncbn-train" --model "$model" --norm "$norm" \
      --sync-group-size "$group" --batch-size "$b" --epochs "$epochs" --lr 0.1 --scale-lr \
      --no-progress --metrics "$tmp" >/dev/null
    tail -n 1 "$tmp" | sed "s/^{/{\"norm_spec\": \"$spec\", /" >>"$out"
    rm -f "$tmp"
  done
done
printf '%-10s %-10s %10s %12s\n' batch/rank norm test_acc images/s
while IFS= read -r line; do
  b=$(grep -o '"batch_size": *[0-9]*' <<<"$line" | grep -o '[0-9]*$')
  spec=$(grep -o '"norm_spec": "[^"]*"' <<<"$line" | cut -d'"' -f4)
  acc=$(grep -o '"test_accuracy": *[0-9.e+-]*' <<<"$line" | grep -o '[0-9.e+-]*$')
  ips=$(grep -o '"images_per_second": *[0-9.e+-]*' <<<"$line" | grep -o '[0-9.e+-]*$')
  printf '%-10s %-10s %10.6f %12.1f\n' "$b" "$spec" "$acc" "$ips"
done <"$out"
