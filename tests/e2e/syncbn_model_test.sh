#!/usr/bin/env bash
# syncbn-model end to end, in about a second and without MPI: calibrate on allreduce times made
# here from known alpha and bandwidth (they must come back), predict a run from metrics lines,
# project a tiny config (its table and conclusion), and bad input fails with a message naming
# the problem and a non-zero status. Needs SYNCBN_BUILD_DIR (set by ctest).
set -uo pipefail
build=${SYNCBN_BUILD_DIR:?SYNCBN_BUILD_DIR must point at the build directory}
model=$build/syncbn-model
# The build always makes syncbn-model: its absence is a failure, not a skip.
[[ -x $model ]] || { echo "FAIL: no $model"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/e2e/check.sh
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
# Every status is saved before `check`: a $(...) in check's message runs first and resets $?.
# fails_with NAME TEXT COMMAND...: COMMAND exits non-zero and says TEXT on stderr.
fails_with() {
  local name=$1 text=$2
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local status=$?
  [[ $status -ne 0 ]] && grep -qF -- "$text" "$tmp/err"
  local matched=$?
  check "$name (status $status: $(head -c 200 "$tmp/err"))" "$matched"
}

# Allreduce times of recursive doubling (small) and Rabenseifner (large) with alpha = 50 us and
# 100 MB/s, the cheaper of the two as MPI picks (the ring is never cheaper at these P), and a
# table line that calibrate must skip.
{
  echo "# allreduce table header"
  for p in 2 4 8; do
    for bytes in 8 128 2048 32768 524288 4194304; do
      awk -v p="$p" -v n="$bytes" 'BEGIN {
        l = log(p) / log(2); a = 50e-6; s = 1 / 100e6;
        rd = l * a + l * n * s; rab = 2 * l * a + 2 * (p - 1) / p * n * s;
        printf "{\"bench\":\"allreduce\",\"ranks\":%d,\"bytes\":%d,\"seconds\":%.9g}\n", p, n, (rd < rab ? rd : rab) }'
    done
  done
} >"$tmp/allreduce.txt"
for b in 4 16; do
  # 2 ms + 0.5 ms per sample per step, two epochs of 10 steps.
  seconds=$(awk -v b="$b" 'BEGIN { printf "%.6f", 10 * (0.002 + 0.0005 * b) }')
  printf '{"epoch":%d,"step":%d,"seconds":%s,"world_size":1,"batch_size":%d}\n' \
    1 10 "$seconds" "$b" 2 20 "$seconds" "$b" >"$tmp/compute_b$b.jsonl"
done
"$model" calibrate --allreduce "$tmp/allreduce.txt" --compute "cnn=$tmp/compute_b4.jsonl" \
  --compute "cnn=$tmp/compute_b16.jsonl" --out "$tmp/calibration.json" >"$tmp/out" 2>&1
status=$?
check "calibrate runs: $(tail -n 3 "$tmp/out")" "$status"
# --out -: stdout is the calibration alone (one JSON object, progress on stderr).
"$model" calibrate --allreduce "$tmp/allreduce.txt" --out - >"$tmp/stdout.json" 2>"$tmp/err"
status=$?
check "calibrate --out - runs: $(cat "$tmp/err")" "$status"
[[ $(head -n 1 "$tmp/stdout.json") == "{" && $(tail -n 1 "$tmp/stdout.json") == "}" ]] &&
  grep -q '^alpha = ' "$tmp/err"
status=$?
check "calibrate --out - writes only JSON to stdout: $(head -n 1 "$tmp/stdout.json")" "$status"
alpha=$(awk '/"alpha_seconds"/ { gsub(/[ ,]/, ""); split($0, kv, ":"); print kv[2]; exit }' "$tmp/calibration.json")
awk -v a="$alpha" 'BEGIN { exit !(a > 49e-6 && a < 51e-6) }'
check "alpha comes back as 50 us (got $alpha s)" $?
bandwidth=$(awk '/"bandwidth_bytes_per_second"/ { gsub(/[ ,]/, ""); split($0, kv, ":"); print kv[2]; exit }' "$tmp/calibration.json")
awk -v b="$bandwidth" 'BEGIN { exit !(b > 99e6 && b < 101e6) }'
check "bandwidth comes back as 100 MB/s (got $bandwidth B/s)" $?

# A 2-rank run of 30 ms per step: one table row, with its ratio.
printf '{"step":10,"seconds":0.3,"world_size":2,"batch_size":16}\n' >"$tmp/run.jsonl"
"$model" predict --calibration "$tmp/calibration.json" --model cnn --run "syncbn=$tmp/run.jsonl" \
  --out "$tmp/table.md" 2>"$tmp/err"
status=$?
check "predict runs: $(cat "$tmp/err")" "$status"
grep -q '^| cnn | syncbn | 2 | 16 | 1.00 | ' "$tmp/table.md"
status=$?
check "predict writes the run's row: $(tail -n 1 "$tmp/table.md")" "$status"
# A run with per-phase times brings its own compute: 20 ms of compute, 1 ms of it SyncBN's.
printf '%s\n' '{"step":10,"seconds":0.3,"world_size":2,"batch_size":16,"time":{"data":0.02,"forward":0.05,"backward":0.135,"syncbn_comm":0.01,"grad_comm_exposed":0.05,"optimizer":0.005,"other":0.04}}' >"$tmp/phases.jsonl"
"$model" predict --calibration "$tmp/calibration.json" --model cnn --run "syncbn=$tmp/phases.jsonl" \
  --out "$tmp/phases.md" 2>"$tmp/err"
grep -q "^| cnn | syncbn | 2 | 16 | run's own | .* | 1.000 |$" "$tmp/phases.md"
status=$?
check "a run with phases uses its own compute and shows its SyncBN time: $(tail -n 1 "$tmp/phases.md") $(cat "$tmp/err")" "$status"

"$model" project --compute cnn=0.5,0.01 --models cnn --ranks 8,64 --batches 2,32 \
  --out "$tmp/projection.md" 2>"$tmp/err"
status=$?
check "project runs: $(cat "$tmp/err")" "$status"
grep -q '^| 32 | 64 |' "$tmp/projection.md" && grep -q '^### Conclusion' "$tmp/projection.md" &&
  grep -q 'cnn, syncbn:8: SyncBN' "$tmp/projection.md"
check "project writes the table and the conclusion" $?

# Without --models: the models that have compute times.
"$model" project --compute cnn=1,0.01 --ranks 8,64 --out "$tmp/default_models.md" 2>"$tmp/err"
status=$?
check "project without --models runs: $(cat "$tmp/err")" "$status"
grep -q '^### cnn' "$tmp/default_models.md" && ! grep -q '^### resnet' "$tmp/default_models.md"
check "project without --models projects the models given --compute" $?

fails_with "no command" "usage" "$model"
fails_with "unknown command" "unknown command 'fit'" "$model" fit
fails_with "unknown norm" "unknown norm 'gn'" "$model" project --compute cnn=1,0 --norms bn,gn
fails_with "unknown model" "unknown model 'vgg'" "$model" project --compute vgg=1,0 --models vgg
fails_with "bad compute" "expected MODEL=FIXED_MS,PER_SAMPLE_MS" "$model" project --compute cnn=1
fails_with "bad ranks" "--ranks must list integers >= 1, got 'x'" "$model" project --compute cnn=1,0 --ranks 8,x
fails_with "missing bench file" "cannot open '$tmp/none'" "$model" calibrate --allreduce "$tmp/none" --out "$tmp/c.json"
fails_with "no bench rows" "no {\"bench\": \"allreduce\"" "$model" calibrate --allreduce "$tmp/run.jsonl" --out "$tmp/c.json"
fails_with "model without compute" "no compute calibrated for model 'resnet'" \
  "$model" predict --calibration "$tmp/calibration.json" --model resnet --run "bn=$tmp/run.jsonl"

finish
