#!/usr/bin/env bash
# A rank killed with SIGKILL, then --resume (issue #13): a 2-rank run of 6 epochs (768 steps)
# writes a checkpoint every 100 steps and at each epoch's end; once the first one exists, rank 1
# (then, in a second run, rank 0: the writer) gets kill -9. The job must end non-zero within
# 20 s; the same command with --resume must continue from the newest checkpoint, leave no
# temporary file and save weights BITWISE equal to an uninterrupted run's. Prints the measured
# times and messages. Synthetic data: needs only SYNCBN_BUILD_DIR (set by ctest).
set -uo pipefail
build=${SYNCBN_BUILD_DIR:?SYNCBN_BUILD_DIR must point at the build directory}
train=$build/syncbn-train
compare=$build/syncbn-compare-safetensors
[[ -x $train && -x $compare ]] || { echo "skip: no $train or $compare"; exit 77; }
command -v mpirun >/dev/null || { echo "skip: no mpirun"; exit 77; }

# shellcheck source=tests/e2e/mpirun.sh
source "$(dirname "${BASH_SOURCE[0]}")/mpirun.sh"
tmp=$(mktemp -d)
# The checkpoint directories are under this unique directory: it finds the ranks (pgrep -f).
job=
cleanup() {
  for pid in $(pgrep -f "$tmp/"); do kill -KILL "$pid" 2>/dev/null; done
  [[ -n $job ]] && kill -KILL "$job" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
# shellcheck source=tests/e2e/check.sh
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
seconds_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
export OMP_NUM_THREADS=1
command=("${mpirun_cmd[@]}" -np 2 "$train" --model mlp --norm syncbn --dataset synthetic
         --synthetic-samples 4096 --batch-size 16 --epochs 6 --seed 5 --threads 1 --no-progress)

start=$(date +%s.%N)
timeout 120 "${command[@]}" --save "$tmp/full.safetensors" >"$tmp/full.log" 2>&1
status=$?  # before $(seconds_since ...), which resets $?
check "uninterrupted run of 768 steps, no checkpoints ($(seconds_since "$start") s)" $status

# kill_and_resume RANK: runs the job with checkpoints, kills RANK with SIGKILL once the first
# checkpoint exists, then runs the same command with --resume and compares with the full run.
kill_and_resume() {
  local rank=$1 victim='' pid code exit_seconds newest start status
  local checkpoints=$tmp/killed-rank$rank-checkpoints
  timeout 120 "${command[@]}" --checkpoint-dir "$checkpoints" --checkpoint-every 100 \
    >"$tmp/killed.log" 2>&1 &
  job=$!
  for _ in $(seq 1 600); do
    if compgen -G "$checkpoints/ckpt-step-*.safetensors" >/dev/null; then
      for pid in $(pgrep -f "$checkpoints"); do
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == syncbn-train ]] || continue
        tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$rank" &&
          victim=$pid
      done
    fi
    [[ -n $victim ]] && break
    sleep 0.05
  done
  [[ -n $victim ]]
  check "rank $rank: a checkpoint exists while the job runs (rank $rank is pid ${victim:-none})" $?
  [[ -n $victim ]] || { cat "$tmp/killed.log"; return; }

  start=$(date +%s.%N)
  kill -KILL "$victim"
  wait "$job"
  code=$?
  job=
  exit_seconds=$(seconds_since "$start")
  [[ $code -ne 0 && $code -ne 124 ]]
  check "rank $rank: the job ends non-zero after kill -9 (exit $code after $exit_seconds s)" $?
  awk -v s="$exit_seconds" 'BEGIN { exit !(s < 20) }'
  check "rank $rank: within 20 s ($exit_seconds s)" $?
  ! grep -q "^saved" "$tmp/killed.log"
  check "rank $rank: the killed job did not finish" $?
  newest=$(find "$checkpoints" -name 'ckpt-step-*.safetensors' | sort | tail -1)
  echo "killed job: exit $code after $exit_seconds s; newest checkpoint ${newest##*/}; messages:"
  grep -v "^epoch\|^checkpoint\|^device\|^syncbn-train\|^-----" "$tmp/killed.log" | sed 's/^/  | /'

  start=$(date +%s.%N)
  timeout 120 "${command[@]}" --checkpoint-dir "$checkpoints" --checkpoint-every 100 --resume \
    --save "$tmp/resumed$rank.safetensors" >"$tmp/resumed.log" 2>&1
  status=$?
  check "rank $rank: the same command with --resume completes ($(seconds_since "$start") s)" $status
  grep "^resumed from\|^removed" "$tmp/resumed.log" | sed 's/^/  | /'
  grep -q "^resumed from ${newest}: " "$tmp/resumed.log"
  check "rank $rank: it resumes from the newest checkpoint (${newest##*/})" $?
  "$compare" "$tmp/resumed$rank.safetensors" "$tmp/full.safetensors" --rtol 0 --atol 0
  check "rank $rank: resumed weights are bitwise equal to the uninterrupted run's" $?
  [[ -z $(find "$checkpoints" -name '*.tmp.*') ]]
  check "rank $rank: no temporary file is left in the checkpoint directory" $?
}

kill_and_resume 1
kill_and_resume 0

finish
