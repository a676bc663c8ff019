#!/usr/bin/env bash
# End-to-end checks of syncbn-train's batch-norm experiment options (issue #12 items 1 and 2):
#  1. --on-divergence record on 2 ranks: a run that diverges (no norm, init large, lr 10) exits 0,
#     every --metrics line is valid JSON, the last one has "diverged_at_step", --save is skipped;
#  2. --on-divergence stop (the default): the same run exits non-zero naming the step;
#  3. --health K writes "health_step" lines with the layers' names, --health puts a "health"
#     object in the epoch line; --norm-placement / --dropout-placement reach the model;
#  4. --health flags a bad setup (no norm, init large) and, on Fashion-MNIST when present, not a
#     healthy BN run;
#  5. bad values of the new flags are clear errors.
# Needs SYNCBN_BUILD_DIR (set by ctest). Synthetic data except for the healthy-run check.
set -uo pipefail
build=${SYNCBN_BUILD_DIR:?SYNCBN_BUILD_DIR must point at the build directory}
train=$build/syncbn-train
data=${SYNCBN_DATA_DIR:-/usr/share/datasets/fashion-mnist}
# shellcheck source=tests/e2e/mpirun.sh
source "$(dirname "${BASH_SOURCE[0]}")/mpirun.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/e2e/check.sh
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
# json_check FILE PYTHON-EXPRESSION: every line of FILE parses as strict JSON (no NaN literals)
# and the expression over `rows` (the parsed lines) is true.
json_check() {
  python3 - "$1" "$2" <<'PY'
import json, sys
def no_constants(name):
    raise ValueError("non-JSON literal " + name)
rows = [json.loads(line, parse_constant=no_constants) for line in open(sys.argv[1])]
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
}
synthetic=(--dataset synthetic --synthetic-samples 2000 --threads 1 --no-progress)
diverging=("${synthetic[@]}" --norm none --init large --lr 10 --epochs 2)

timeout 120 "${mpirun_cmd[@]}" -np 2 "$train" "${diverging[@]}" --on-divergence record \
  --metrics "$tmp/record.jsonl" --save "$tmp/record.safetensors" >"$tmp/record.log" 2>&1
check "record mode on 2 ranks exits 0" $?
step=$(sed -n 's/^training diverged at step \([0-9]*\) .*--on-divergence record.*/\1/p' "$tmp/record.log")
[[ -n $step ]]
check "record mode prints the step (${step:-none})" $?
json_check "$tmp/record.jsonl" \
  "rows[-1]['diverged_at_step'] == ${step:-0} and rows[-1]['test_loss'] is None and rows[-1]['step'] == ${step:-0} - 1"
check "record mode: valid JSON lines, last one with diverged_at_step $step" $?
[[ ! -e $tmp/record.safetensors ]] && ! grep -q "^saved" "$tmp/record.log"
check "record mode writes no checkpoint" $?

timeout 120 "${mpirun_cmd[@]}" -np 2 "$train" "${diverging[@]}" >"$tmp/stop.log" 2>&1
code=$?
[[ $code -ne 0 && $code -ne 124 ]] && grep -q "rank [01]: training diverged at step ${step:-x} " "$tmp/stop.log"
check "stop mode exits non-zero ($code) naming step $step" $?

timeout 60 "$train" "${synthetic[@]}" --steps 10 --health 5 --norm-placement after-act --dropout 0.2 \
  --dropout-placement before-norm --metrics "$tmp/every.jsonl" >"$tmp/every.log" 2>&1
check "--health 5 run succeeds" $?
# after-act with Dropout before the norm: Flatten Linear ReLU Dropout BatchNorm1d ...
json_check "$tmp/every.jsonl" \
  "[r.get('health_step') for r in rows] == [5, 10, None] and 'health' not in rows[-1] and \
   rows[0]['health']['norms']['4']['type'] == 'BatchNorm1d' and '2' in rows[0]['health']['relu_zero_fraction'] \
   and '1.weight' in rows[1]['health']['parameters'] and rows[-1]['epoch'] == 1"
check "--health 5: health_step lines with the layers' names (norm after the ReLU)" $?
grep -q "^health at step 10 (epoch 1)" "$tmp/every.log"
check "--health 5 prints the report" $?

timeout 60 "$train" "${synthetic[@]}" --epochs 2 --health --metrics "$tmp/epoch.jsonl" >"$tmp/epoch.log" 2>&1
check "--health run succeeds" $?
json_check "$tmp/epoch.jsonl" \
  "len(rows) == 2 and all(r['health']['step'] == r['step'] for r in rows) and \
   rows[0]['health']['norms']['2']['type'] == 'BatchNorm1d'"
check "--health: a health object in each epoch line, of its last step" $?

timeout 60 "$train" "${synthetic[@]}" --steps 5 --health 5 --norm none --init large --lr 0.001 \
  --metrics "$tmp/bad.jsonl" >"$tmp/bad.log" 2>&1
check "bad setup run succeeds" $?
json_check "$tmp/bad.jsonl" \
  "any(f.startswith('5.weight: gradient RMS') for f in rows[0]['health']['flags'])"
check "bad setup (no norm, init large): gradient flags naming the layer" $?

if [[ -d $data ]]; then
  timeout 120 "$train" --data-dir "$data" --threads 1 --no-progress --steps 300 --health \
    --metrics "$tmp/healthy.jsonl" >"$tmp/healthy.log" 2>&1
  check "healthy BN run succeeds" $?
  json_check "$tmp/healthy.jsonl" "rows[0]['health']['flags'] == [] and len(rows[0]['health']['norms']) == 2"
  check "healthy BN run on Fashion-MNIST (300 steps): no flags" $?
else
  echo "skip: no Fashion-MNIST in $data: the healthy-run check"
fi

for bad in "--dropout 1.5|--dropout must be a finite number in [0, 0.99]" \
           "--init constant:ten|constant:V needs a finite number" \
           "--on-divergence ignore|unknown --on-divergence" \
           "--norm-placement after|unknown --norm-placement" \
           "--dropout-placement x|unknown --dropout-placement" \
           "--health=-5|--health must be an integer in -1.." \
           "--model resnet --norm-placement after-act|model resnet keeps torchvision"; do
  # shellcheck disable=SC2086  # the flags are meant to split
  timeout 60 "$train" "${synthetic[@]}" --steps 1 ${bad%%|*} >"$tmp/bad_flag.log" 2>&1
  code=$?
  [[ $code -ne 0 && $code -ne 124 ]] && grep -qF -- "${bad#*|}" "$tmp/bad_flag.log"
  check "${bad%%|*}: clear error" $?
done

finish
