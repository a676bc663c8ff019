#!/usr/bin/env bash
# Calibrates and checks the step-time model (syncbn-model, docs/studies/step-model.md) on an
# emulated network: up to 8 hosts, each a network + UTS namespace with one rank, on a bridge,
# every host's eth0 shaped by `tc netem` (default 25 us one-way delay, 1 Gbit/s), reached by
# mpirun through the rsh agent of netns_cluster_test.sh. Where the kernel has no netem (no
# sch_netem: "Specified qdisc kind is unknown"), each eth0 gets a token bucket (tbf) at the same
# rate and no added delay: latency is then that of the TCP stack, veth and Open MPI alone.
#
#   tests/cluster/netem_scaling.sh [OUT_DIR]        (root; OUT_DIR default build/netem-scaling)
#
# 1. syncbn-bench-allreduce at P = 2, 4, 8 (8 B .. 4 MiB): alpha and bandwidth are fitted to it.
# 2. single-rank syncbn-train of cnn and resnet at batch 4, 16, 32: compute = fixed + per sample.
# 3. syncbn-train cnn (synthetic data of Fashion-MNIST's shape, 1x28x28, 10 classes), batch 16
#    per rank, bn and syncbn, at P = 1, 2, 4, 8, with --metrics.
#    And P independent single-rank runs at once (no communication): compute per rank at P.
#    Steps 1, 3 and 3b run P by P (after 2), so that a P's measurements see the same machine
#    load, which other users of a shared machine change from minute to minute.
# 4. syncbn-model calibrate / predict / project: OUT_DIR/calibration.json, the measured-vs-
#    predicted tables OUT_DIR/measured_vs_predicted*.md and OUT_DIR/projection_cpu.md.
# All ranks share this machine's cores (and whatever else runs on it): the main table takes
# compute at P from the concurrent single-rank runs and the network fitted at that P;
# measured_vs_predicted_cores_model.md models the sharing instead (compute max(1, P/N) times
# slower on N cores), measured_vs_predicted_global_network.md uses one network for all P.
#
# Not a CI test (about 5 minutes). Environment:
#   SYNCBN_BUILD_DIR             the built programs (default build/)
#   SYNCBN_NETEM_DELAY           one-way delay added by netem (25us)
#   SYNCBN_NETEM_RATE            link rate (1gbit: slow enough that the link, not the shared CPU,
#                                bounds bandwidth, so the fitted bandwidth can be checked)
#   SYNCBN_NETEM_STEPS           steps per epoch in steps 3 and 3b (40; 3 epochs, the first
#                                dropped as warm-up)
#   SYNCBN_NETEM_COMPUTE_STEPS   the same for step 2 (10: resnet is slow on a CPU)
# Everything it makes (namespaces, links, mounts, processes, temporary files) goes when it ends,
# also on failure; OUT_DIR stays.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=${SYNCBN_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
build_dir=${SYNCBN_BUILD_DIR:-$source_dir/build}
syncbn_run=$source_dir/launch/syncbn-run
delay=${SYNCBN_NETEM_DELAY:-25us}
rate=${SYNCBN_NETEM_RATE:-1gbit}
steps_per_epoch=${SYNCBN_NETEM_STEPS:-40}
compute_steps=${SYNCBN_NETEM_COMPUTE_STEPS:-10}

# shellcheck source=tests/cluster/netns_hosts.sh
source "$here/netns_hosts.sh"   # skip, fail and the hosts
log() {
  printf '[netem %4ss] %s\n' "$SECONDS" "$*"
}

# ---- outside: check what is needed, then rerun in a private mount namespace -----------------
if [[ "${1:-}" != --inside ]]; then
  out_dir=${1:-$build_dir/netem-scaling}
  [[ "$(id -u)" == 0 ]] || skip "needs root (network namespaces, tc)"
  for tool in ip tc unshare nsenter mpirun timeout mount; do
    command -v "$tool" >/dev/null 2>&1 || skip "'$tool' not found"
  done
  for program in syncbn-train syncbn-bench-allreduce syncbn-model; do
    [[ -x "$build_dir/$program" ]] || skip "$build_dir/$program not built"
  done
  [[ "$steps_per_epoch" =~ ^[1-9][0-9]*$ && "$compute_steps" =~ ^[1-9][0-9]*$ ]] ||
    fail "SYNCBN_NETEM_STEPS='$steps_per_epoch', SYNCBN_NETEM_COMPUTE_STEPS='$compute_steps': expected positive integers"
  mkdir -p "$out_dir"
  out_dir=$(cd "$out_dir" && pwd)
  exec timeout -k 10 1500 unshare --mount --propagation private -- bash "${BASH_SOURCE[0]}" --inside "$out_dir"
fi

# ---- inside -----------------------------------------------------------------------------------
out_dir=$2
tag=sbq$$                      # unique per run: namespace names and hostnames
hosts=(1 2 3 4 5 6 7 8)
state=$(mktemp -d /tmp/syncbn-netem.XXXXXX)
netns_hosts_traps

# The hosts; netem (or tbf) on each host's eth0 (egress): a message between two hosts crosses one
# shaped link.
netns_hosts_up "${hosts[@]}"
# netem where the kernel has it, else a token bucket at the rate (burst 64 KiB: one GSO packet).
shaping="netem delay $delay rate $rate"
if ! tc -n "$(host_name 1)" qdisc add dev eth0 root netem delay "$delay" rate "$rate" limit 100000 2>"$state/err"; then
  # Only a kernel without sch_netem falls back; any other error (a bad delay or rate) stops here.
  grep -qi "qdisc kind is unknown" "$state/err" || fail "tc netem delay $delay rate $rate: $(cat "$state/err")"
  log "no netem here ($(cat "$state/err")): tbf rate $rate, no added delay"
  shaping="tbf rate $rate (no netem in this kernel: no added delay)"
fi
for i in "${hosts[@]}"; do
  if [[ "$shaping" == netem* ]]; then
    [[ "$i" == 1 ]] || may tc -n "$(host_name "$i")" qdisc add dev eth0 root netem delay "$delay" rate "$rate" limit 100000
  else
    may tc -n "$(host_name "$i")" qdisc add dev eth0 root tbf rate "$rate" burst 64kb latency 100ms
  fi
done

log "${#hosts[@]} hosts up, eth0: $shaping"

# run_np P SECONDS PROGRAM ARGS...: P ranks, one per host (hosts 1..P), from host 1.
cores=$(nproc)  # before OMP_NUM_THREADS, which nproc honours
export OMP_NUM_THREADS=1
run_np() {
  local ranks=$1 limit=$2 i
  shift 2
  : >"$state/hostfile.$ranks"
  for ((i = 1; i <= ranks; ++i)); do
    printf '%s slots=1\n' "$(host_name "$i")" >>"$state/hostfile.$ranks"
  done
  in_host 1 "$limit" bash "$syncbn_run" --hostfile "$state/hostfile.$ranks" -np "$ranks" --iface eth0 \
    --mca plm_rsh_agent "$state/agent" --mca mpi_yield_when_idle 1 -- "$@"
}

# train MODEL NORM P BATCH STEPS_PER_EPOCH METRICS: 3 epochs of synthetic data of Fashion-MNIST's
# shape, sized to STEPS_PER_EPOCH steps per epoch at P ranks of BATCH.
train() {
  local model=$1 norm=$2 ranks=$3 batch=$4 steps=$5 metrics=$6
  rm -f "$metrics"
  run_np "$ranks" 600 "$build_dir/syncbn-train" --model "$model" --norm "$norm" --dataset synthetic \
    --synthetic-shape 1,28,28 --synthetic-classes 10 --synthetic-samples $((steps * ranks * batch)) \
    --batch-size "$batch" --epochs 3 --threads 1 --seed 1 --no-progress --metrics "$metrics" \
    >"$state/train" 2>&1 || fail "$model $norm at P = $ranks, batch $batch: $(tail -n 20 "$state/train")"
  [[ -s "$metrics" ]] || fail "$model $norm at P = $ranks wrote no metrics"
}

# concurrent P: P independent single-rank cnn runs at once, one per host, no communication: what
# one rank computes per step while P ranks share the cores. Epochs 4 times longer than training's,
# so that the runs overlap for most of their time although they start up at different speeds.
concurrent_flags=()
concurrent() {
  local ranks=$1 i metrics pids=()
  for ((i = 1; i <= ranks; ++i)); do
    metrics=$out_dir/concurrent_cnn_np${ranks}_$i.jsonl
    rm -f "$metrics"
    in_host "$i" 600 "$build_dir/syncbn-train" --model cnn --norm bn --dataset synthetic --synthetic-shape 1,28,28 \
      --synthetic-classes 10 --synthetic-samples $((4 * steps_per_epoch * 16)) --batch-size 16 \
      --epochs 3 --threads 1 --seed 1 --no-progress --metrics "$metrics" >"$state/concurrent.$i" 2>&1 &
    pids+=("$!")
    concurrent_flags+=(--concurrent "$ranks=$metrics")
  done
  for ((i = 1; i <= ranks; ++i)); do
    wait "${pids[i - 1]}" || fail "concurrent single-rank run $i of $ranks: $(tail -n 20 "$state/concurrent.$i")"
  done
}

# ---- 2. compute at one rank ---------------------------------------------------------------------
compute_flags=()
for model in cnn resnet; do
  for batch in 4 16 32; do
    metrics=$out_dir/compute_${model}_b$batch.jsonl
    train "$model" bn 1 "$batch" "$compute_steps" "$metrics"
    compute_flags+=(--compute "$model=$metrics")
  done
  log "single-rank compute of $model at batch 4, 16, 32"
done

# ---- 1, 3, 3b at each P, one after the other, so that each sees the same load on the machine ----
: >"$out_dir/allreduce.txt"
run_flags=()
for p in 1 2 4 8; do
  if ((p > 1)); then
    run_np "$p" 300 "$build_dir/syncbn-bench-allreduce" --max-bytes 4194304 --iterations 10 \
      >"$state/bench" 2>&1 || fail "allreduce bench at P = $p: $(tail -n 20 "$state/bench")"
    cat "$state/bench" >>"$out_dir/allreduce.txt"
    log "allreduce bench at P = $p: $(grep -c '"bench":"allreduce"' "$state/bench") sizes"
  fi
  concurrent "$p"
  log "$p concurrent single-rank cnn runs"
  for norm in bn syncbn; do
    metrics=$out_dir/train_cnn_${norm}_np$p.jsonl
    train cnn "$norm" "$p" 16 "$steps_per_epoch" "$metrics"
    run_flags+=(--run "$norm=$metrics")
    log "cnn $norm at P = $p: $(tail -n 1 "$metrics" | grep -o '"seconds":[0-9.e-]*')"
  done
done

# ---- 4. the model -------------------------------------------------------------------------------
model=$build_dir/syncbn-model
"$model" calibrate --allreduce "$out_dir/allreduce.txt" "${compute_flags[@]}" \
  --note "tests/cluster/netem_scaling.sh: one rank per netns host, eth0 $shaping, $cores cores" \
  --out "$out_dir/calibration.json" || fail "syncbn-model calibrate"
"$model" predict --calibration "$out_dir/calibration.json" --model cnn "${run_flags[@]}" \
  "${concurrent_flags[@]}" --out "$out_dir/measured_vs_predicted.md" || fail "syncbn-model predict"
"$model" predict --calibration "$out_dir/calibration.json" --model cnn "${run_flags[@]}" \
  "${concurrent_flags[@]}" --network global --out "$out_dir/measured_vs_predicted_global_network.md" ||
  fail "syncbn-model predict"
"$model" predict --calibration "$out_dir/calibration.json" --model cnn "${run_flags[@]}" \
  --cores "$cores" --threads-per-rank 1 --out "$out_dir/measured_vs_predicted_cores_model.md" ||
  fail "syncbn-model predict"
"$model" project --calibration "$out_dir/calibration.json" --out "$out_dir/projection_cpu.md" ||
  fail "syncbn-model project"
cat "$out_dir/measured_vs_predicted.md"
log "wrote $out_dir/{calibration.json,measured_vs_predicted.md,projection_cpu.md}"
