#!/usr/bin/env bash
# Resumable training end to end (issue #13, items 1-2), on synthetic data (512 samples, MLP with
# SyncBN, 3 epochs):
#  1. 2 ranks stopped by --steps 22 in the middle of epoch 2, with checkpoints every 5 steps;
#     the newest checkpoint (step 22) is then truncated: --resume says so on stderr, continues
#     from step 20 and saves weights BITWISE equal to an uninterrupted 2-rank run; a stray
#     temporary file of a writer that is gone is removed at start;
#  2. the 4-rank checkpoint of step 22 resumed on 2 ranks x 16 (the same global batch of 32)
#     matches the uninterrupted 4-rank run within 1e-5 relative (sums in another order);
#  3. resumed on 2 ranks x 8 (global batch 16), the run continues from the same sample at the
#     step the documented rule gives (2 x 32 - 20 = 44) and ends at step 96 = 3 x 32.
# Needs SYNCBN_BUILD_DIR (set by ctest).
set -uo pipefail
build=${SYNCBN_BUILD_DIR:?SYNCBN_BUILD_DIR must point at the build directory}
train=$build/syncbn-train
compare=$build/syncbn-compare-safetensors
[[ -x $train && -x $compare ]] || { echo "skip: no $train or $compare"; exit 77; }
command -v mpirun >/dev/null || { echo "skip: no mpirun"; exit 77; }

# shellcheck source=tests/e2e/mpirun.sh
source "$(dirname "${BASH_SOURCE[0]}")/mpirun.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/e2e/check.sh
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
export OMP_NUM_THREADS=1
common=(--model mlp --norm syncbn --dataset synthetic --synthetic-samples 512 --epochs 3
        --seed 5 --threads 1 --no-progress)
run() {  # run NP LOG ARGS...: syncbn-train on NP ranks, output to LOG
  local np=$1 log=$2
  shift 2
  timeout 120 "${mpirun_cmd[@]}" -np "$np" "$train" "${common[@]}" "$@" >"$log" 2>&1
}

# 1. Same ranks: bitwise.
run 2 "$tmp/full2.log" --batch-size 16 --save "$tmp/full2.safetensors"
check "uninterrupted 2-rank run" $?
run 2 "$tmp/part2.log" --batch-size 16 --steps 22 --checkpoint-dir "$tmp/ck2" --checkpoint-every 5
check "2-rank run stopped at step 22 (mid epoch 2) writes checkpoints" $?
ls "$tmp/ck2"
[[ $(find "$tmp/ck2" -name 'ckpt-step-*' | wc -l) -eq 3 && -f $tmp/ck2/ckpt-step-00000020.safetensors ]]
check "the 3 newest are kept (--keep-checkpoints default)" $?
newest=$tmp/ck2/ckpt-step-00000022.safetensors
truncate -s 1000 "$newest"
# What a writer killed between creating its temporary file and renaming it leaves behind.
stray=$tmp/ck2/ckpt-step-00000025.safetensors.tmp.$(hostname).$(bash -c 'echo $$').0
head -c 5000 "$tmp/ck2/ckpt-step-00000020.safetensors" >"$stray"
run 2 "$tmp/resume2.log" --batch-size 16 --checkpoint-dir "$tmp/ck2" --checkpoint-every 5 \
  --resume --save "$tmp/resume2.safetensors" --metrics "$tmp/resume2.jsonl"
check "--resume after a truncated newest checkpoint completes" $?
grep -q "^rank 0: --resume: $newest: .*trying the checkpoint before it" "$tmp/resume2.log"
check "the truncated checkpoint is named on stderr" $?
grep -qF "removed $stray: a temporary checkpoint file whose writer is gone" "$tmp/resume2.log" &&
  [[ ! -e $stray ]]
check "the stray temporary file of a gone writer is removed at start" $?
grep -q "^resumed from $tmp/ck2/ckpt-step-00000020.safetensors: epoch 2, sample 128 of 512, step 20" "$tmp/resume2.log"
check "resumes from step 20: epoch 2, sample 128" $?
"$compare" "$tmp/resume2.safetensors" "$tmp/full2.safetensors" --rtol 0 --atol 0
check "resumed weights are bitwise equal to the uninterrupted run's" $?
head -1 "$tmp/resume2.jsonl" | grep -q '"epoch":2,.*"resumed_from_step":20'
check "the first metrics line after the resume says so" $?
# Epoch 2's metrics cover the whole epoch: the loss sums of steps 17-20 came from the checkpoint.
full_loss=$(grep -o "epoch 2/3  step 32  train loss [0-9.]*" "$tmp/full2.log")
[[ -n $full_loss ]] && grep -qF "$full_loss" "$tmp/resume2.log"
check "epoch 2's train loss after the resume is the uninterrupted run's ($full_loss)" $?

# 1b. With Dropout, whose mask stream each step advances: still bitwise.
run 2 "$tmp/drop_full.log" --batch-size 16 --dropout 0.2 --save "$tmp/drop_full.safetensors"
check "uninterrupted 2-rank run with --dropout 0.2" $?
run 2 "$tmp/drop_part.log" --batch-size 16 --dropout 0.2 --steps 22 --checkpoint-dir "$tmp/ckd" \
  --checkpoint-every 5
check "2-rank run with dropout stopped at step 22" $?
run 2 "$tmp/drop_resume.log" --batch-size 16 --dropout 0.2 --resume "$tmp/ckd" \
  --save "$tmp/drop_resume.safetensors"
check "2-rank run with dropout resumed" $?
"$compare" "$tmp/drop_resume.safetensors" "$tmp/drop_full.safetensors" --rtol 0 --atol 0
check "resumed weights with dropout are bitwise equal to the uninterrupted run's" $?

# 2. 4 ranks x 8 -> 2 ranks x 16: the same global batch, sums in another order.
run 4 "$tmp/full4.log" --batch-size 8 --save "$tmp/full4.safetensors"
check "uninterrupted 4-rank run" $?
run 4 "$tmp/part4.log" --batch-size 8 --steps 22 --checkpoint-dir "$tmp/ck4" --checkpoint-every 5
check "4-rank run stopped at step 22" $?
run 2 "$tmp/resume4to2.log" --batch-size 16 --resume "$tmp/ck4" --save "$tmp/resume4to2.safetensors"
check "2 ranks resume the 4-rank checkpoint" $?
grep -q "written by 4 rank(s), global batch 32" "$tmp/resume4to2.log"
check "the resume names the checkpoint's world" $?
"$compare" "$tmp/resume4to2.safetensors" "$tmp/full4.safetensors" --rtol 1e-5 --atol 1e-6
check "2-rank continuation matches the 4-rank run within 1e-5 relative" $?

# 3. Another global batch: same sample position, step recomputed.
run 2 "$tmp/resume_b16.log" --batch-size 8 --resume "$tmp/ck4/ckpt-step-00000022.safetensors" \
  --metrics "$tmp/resume_b16.jsonl"
check "2 ranks x 8 resume the 4 x 8 checkpoint" $?
grep -q "sample 192 of 512, step 22" "$tmp/resume_b16.log" &&
  grep -q "global batch now 16 (32 steps/epoch): continuing at step 44" "$tmp/resume_b16.log"
check "global batch 16 continues at sample 192, step 2 x 32 - 20 = 44" $?
tail -1 "$tmp/resume_b16.jsonl" | grep -q '"epoch":3,"step":96,'
check "and ends at step 3 x 32 = 96" $?

finish
