#!/usr/bin/env bash
# End-to-end checks of "where the time goes" (issue #9) on 2 ranks of syncbn-train:
#  1. every --metrics line has the time / bytes / collectives keys with sane values: no negative
#     number, the disjoint phases sum to at most the epoch's seconds (x 1.05: the seconds are
#     rank 0's, the phases the ranks' mean), syncbn_comm lies within forward + backward, and the
#     bytes and calls are those the MLP must send (computed here from its layer sizes);
#  2. --broadcast-buffers shows up as "other" traffic, exactly the BN buffers' bytes;
#  3. --no-timing leaves the keys out;
#  4. --timeline on a ResNet with 16 KiB buckets writes a trace that parses, has one process per
#     rank, nested spans on every track, and gradient allreduces overlapping backward;
#  5. a resumed run's trace and report number the steps as the run does (resumed at 10: 12..14);
#  6. bad --timeline settings fail naming the flag.
# Needs SYNCBN_BUILD_DIR (set by ctest) and python3.
set -uo pipefail
build=${SYNCBN_BUILD_DIR:?SYNCBN_BUILD_DIR must point at the build directory}
train=$build/syncbn-train
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v python3 >/dev/null || { echo "skip: python3 not installed"; exit 77; }
# shellcheck source=tests/e2e/mpirun.sh
source "$here/mpirun.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/e2e/check.sh
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
# 2 ranks x 32 of 2048 samples: 32 steps per epoch. Not fewer: the phases are the mean of the
# ranks' epochs and `seconds` rank 0's, which can start its epoch a context switch apart.
mlp=(--model mlp --dataset synthetic --synthetic-shape "1,8,8" --synthetic-samples 2048
     --batch-size 32 --epochs 2 --threads 1 --no-progress)

# check_metrics FILE NORM BROADCAST: the MLP 64-256-256-10 with two norm layers of 256 channels.
check_metrics() {
  python3 - "$@" <<'PY'
import json, sys
path, norm, broadcast = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
rows = [json.loads(line) for line in open(path, encoding="utf-8")]
assert len(rows) == 2, f"expected 2 epochs, got {len(rows)}"
widths = [(64, 256), (256, 256), (256, 10)]
params = sum(i * o + o for i, o in widths) + 2 * 2 * 256  # Linear weight + bias, BN gamma + beta
# docs/DESIGN.md §3: per SyncBN layer of C channels one allreduce of 2C+1 doubles forward and
# one of 2C doubles backward.
syncbn_bytes = sum(8 * (2 * c + 1) + 8 * 2 * c for c in (256, 256)) if norm == "syncbn" else 0
syncbn_calls = 2 * 2 if norm == "syncbn" else 0
# --broadcast-buffers: running_mean, running_var (C each) and num_batches_tracked (1) per BN, as
# float32, each its own broadcast.
other_bytes = 2 * 4 * (256 + 256 + 1) if broadcast else 0
other_calls = 2 * 3 if broadcast else 0
for row in rows:
    steps = row["steps_in_epoch"]
    assert steps == 32, f"steps_in_epoch {steps}"
    t = row["time"]
    keys = {"data", "forward", "backward", "syncbn_comm", "grad_comm_exposed", "optimizer", "eval", "other"}
    assert set(t) == keys, f"time keys {sorted(t)}"
    assert all(v >= 0 for v in t.values()), t
    disjoint = t["data"] + t["forward"] + t["backward"] + t["grad_comm_exposed"] + t["optimizer"]
    assert disjoint + t["other"] <= row["seconds"] * 1.05, (disjoint, t["other"], row["seconds"])
    assert disjoint > 0.5 * row["seconds"], (disjoint, row["seconds"])
    assert t["syncbn_comm"] <= t["forward"] + t["backward"], t
    assert (t["syncbn_comm"] > 0) == (norm == "syncbn"), t
    assert t["eval"] > 0, t
    expected_bytes = {"syncbn_allreduce": steps * syncbn_bytes,
                      "grad_allreduce": steps * 4 * params,  # float32 gradients, every step
                      "other": steps * other_bytes}
    assert row["bytes"] == expected_bytes, (row["bytes"], expected_bytes)
    # All 86026 gradients fit the first 1 MiB bucket: one allreduce per step.
    expected_calls = {"syncbn_allreduce": steps * syncbn_calls, "grad_allreduce": steps,
                      "other": steps * other_calls}
    assert row["collectives"] == expected_calls, (row["collectives"], expected_calls)
print("metrics ok:", json.dumps({k: rows[-1][k] for k in ("time", "bytes", "collectives")}))
PY
}

timeout 120 "${mpirun_cmd[@]}" -np 2 "$train" "${mlp[@]}" --norm syncbn \
  --metrics "$tmp/syncbn.jsonl" >"$tmp/syncbn.log" 2>&1
check "2-rank syncbn mlp runs" $?
check_metrics "$tmp/syncbn.jsonl" syncbn 0
check "syncbn metrics: keys, sane seconds, SyncBN and gradient bytes of the model" $?

timeout 120 "${mpirun_cmd[@]}" -np 2 "$train" "${mlp[@]}" --norm bn --broadcast-buffers \
  --metrics "$tmp/broadcast.jsonl" >"$tmp/broadcast.log" 2>&1
check "2-rank bn mlp with --broadcast-buffers runs" $?
check_metrics "$tmp/broadcast.jsonl" bn 1
check "buffer broadcasts are counted as other traffic, no SyncBN traffic" $?

timeout 120 "${mpirun_cmd[@]}" -np 2 "$train" "${mlp[@]}" --norm syncbn --no-timing \
  --metrics "$tmp/off.jsonl" >"$tmp/off.log" 2>&1
check "--no-timing runs" $?
python3 -c '
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert len(rows) == 2 and all("time" not in r and "bytes" not in r and "collectives" not in r for r in rows)
' "$tmp/off.jsonl"
check "--no-timing writes no time, bytes or collectives" $?

timeout 180 "${mpirun_cmd[@]}" -np 2 "$train" --model resnet --norm syncbn --dataset synthetic \
  --synthetic-shape "1,16,16" --synthetic-samples 256 --batch-size 8 --steps 6 --bucket-kib 16 \
  --timeline-start 2 --timeline-steps 3 --timeline "$tmp/trace.json" --threads 1 --no-progress \
  >"$tmp/trace.log" 2>&1
check "2-rank resnet with --timeline runs" $?
grep -q "timeline: steps 3..5 of 2 rank(s)" "$tmp/trace.log"
check "rank 0 reports the traced steps" $?
python3 "$here/timeline_check.py" "$tmp/trace.json" 2 --overlap
check "timeline: one pid per rank, nested spans, buckets overlapping backward" $?
python3 -c '
import json, sys
steps = sorted(e["args"]["step"] for e in json.load(open(sys.argv[1]))["traceEvents"] if e["name"] == "step")
assert steps == [3, 3, 4, 4, 5, 5], steps
' "$tmp/trace.json"
check "timeline holds exactly the window of steps 3..5 on both ranks" $?

# A resumed run: 1 rank x 32 of 256 samples = 8 steps per epoch, stopped at step 10 with a
# checkpoint, resumed for epoch 2's last 6 steps (the checkpoint holds the timeline window, which
# a resumed run must keep). The window skips each process's first step; the trace and the report
# number the steps as the run does: 12..14 after the resume, not 2..4.
small=(--model mlp --dataset synthetic --synthetic-shape "1,8,8" --synthetic-samples 256
       --batch-size 32 --epochs 2 --threads 1 --no-progress --checkpoint-dir "$tmp/ck"
       --timeline-start 1 --timeline-steps 3)
timeout 60 "$train" "${small[@]}" --steps 10 --checkpoint-every 5 --timeline "$tmp/part.json" \
  >"$tmp/part.log" 2>&1
check "1-rank run stopped at step 10 writes a checkpoint" $?
grep -q "timeline: steps 2..4 of 1 rank(s)" "$tmp/part.log"
check "the first run reports steps 2..4" $?
timeout 60 "$train" "${small[@]}" --resume --timeline "$tmp/resumed.json" >"$tmp/resumed.log" 2>&1
check "1-rank run resumed at step 10 with --timeline runs" $?
grep -q "timeline: steps 12..14 of 1 rank(s)" "$tmp/resumed.log"
check "the resumed run reports the run's step numbers" $?
python3 -c '
import json, sys
steps = sorted(e["args"]["step"] for e in json.load(open(sys.argv[1]))["traceEvents"] if e["name"] == "step")
assert steps == [12, 13, 14], steps
' "$tmp/resumed.json"
check "the resumed run's trace labels its steps 12..14" $?

timeout 60 "$train" "${mlp[@]}" --timeline-steps 0 --timeline "$tmp/x.json" >"$tmp/bad1.log" 2>&1
code=$?
[[ $code -ne 0 && $code -ne 124 ]] && grep -q -- "--timeline-steps must be an integer in 1.." "$tmp/bad1.log"
check "--timeline-steps 0 fails naming the flag" $?
timeout 60 "$train" "${mlp[@]}" --no-timing --timeline "$tmp/x.json" >"$tmp/bad2.log" 2>&1
code=$?
[[ $code -ne 0 && $code -ne 124 ]] && grep -q -- "--timeline needs the timing" "$tmp/bad2.log"
check "--timeline with --no-timing fails" $?
timeout 60 "$train" "${mlp[@]}" --timeline /nonexistent-dir/trace.json >"$tmp/bad3.log" 2>&1
code=$?
[[ $code -ne 0 && $code -ne 124 ]] && grep -q -- "--timeline /nonexistent-dir/trace.json" "$tmp/bad3.log"
check "an unwritable --timeline fails before training" $?

finish
