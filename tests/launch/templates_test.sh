#!/usr/bin/env bash
# Tests of the launch templates and the Docker cluster helper, without SLURM or Docker:
# - launch/slurm/train.sbatch run as SLURM would (SLURM_* set) with a stand-in srun;
# - launch/hostfile.example accepted by syncbn-run;
# - docker/cluster.sh up/run/down against a stand-in docker-compose that records its calls;
# - docker/compose.yml (+ compose.cuda.yml) through `docker-compose config` where installed.
# Prints "N passed, M failed"; exits 1 when any failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=${SYNCBN_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
work=$(mktemp -d /tmp/syncbn-templates-test.XXXXXX)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
check() {
  local name=$1 got=$2 expected=$3
  if [[ "$got" == "$expected" ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf 'FAIL %s\n  expected: %s\n  got:      %s\n' "$name" "$expected" "$got"
  fi
}

# ---- the SLURM template ------------------------------------------------------------------------
mkdir -p "$work/bin"
cat >"$work/bin/srun" <<'EOF'
#!/usr/bin/env bash
printf 'btl=%s omp=%s args:' "${OMPI_MCA_btl:-}" "${OMP_NUM_THREADS:-}"
printf ' %s' "$@"
echo
EOF
chmod +x "$work/bin/srun"
out=$(cd "$work" && env -i PATH="$PATH" HOME="$work" SYNCBN_SRUN="$work/bin/srun" \
  SLURM_JOB_ID=7 SLURM_NTASKS=8 SLURM_NNODES=2 SLURM_JOB_NODELIST='gpu[1-2]' \
  SLURM_NTASKS_PER_NODE=4 SLURM_GPUS_PER_NODE=a100:4 SLURM_CPUS_PER_TASK=8 \
  SLURM_SUBMIT_DIR="$source_dir" bash "$source_dir/launch/slurm/train.sbatch" --epochs 2 2>/dev/null)
check "train.sbatch runs srun over the allocation" "$(tail -n 1 <<<"$out")" \
  "btl=self,vader,tcp omp=8 args: --ntasks 8 --ntasks-per-node 4 --gpus-per-node 4 --kill-on-bad-exit=1 --export=ALL syncbn-train --device cuda --norm syncbn --model cnn --batch-size 32 --epochs 1 --lr 0.05 --metrics syncbn-train-7.jsonl --save syncbn-7.safetensors --epochs 2"
for key in nodes ntasks-per-node gpus-per-node cpus-per-task time; do
  check "train.sbatch has #SBATCH --$key" "$(grep -c "^#SBATCH --$key=" "$source_dir/launch/slurm/train.sbatch")" 1
done

# ---- hostfile.example -----------------------------------------------------------------------------
out=$(env -i PATH="$PATH" bash "$source_dir/launch/syncbn-run" --dry-run \
  --hostfile "$source_dir/launch/hostfile.example" --gpus-per-node 4 -- prog 2>&1)
# The launcher prints the path quoted for the shell (a checkout path may have spaces).
[[ "$out" == "mpirun -np 8 "*"--hostfile $(printf '%q' "$source_dir/launch/hostfile.example") --map-by ppr:4:node "* ]]
check "hostfile.example: 2 nodes x 4 slots" "$?:$out" "0:$out"

# ---- docker/cluster.sh with a stand-in docker-compose ----------------------------------------------
mkdir -p "$work/fake"
cat >"$work/fake/docker" <<'EOF'
#!/usr/bin/env bash
exit 1   # no compose plugin: cluster.sh falls back to docker-compose
EOF
cat >"$work/fake/docker-compose" <<'EOF'
#!/usr/bin/env bash
# Records each call (one line, words quoted); plays node1 for the calls cluster.sh makes.
log=$FAKE_COMPOSE_DIR/calls
printf '%q ' "$@" >>"$log"
echo >>"$log"
args=" $* "
if [[ "$args" == *" exec -T node1 sh -c cat > /cluster/hostfile "* ]]; then
  cat >"$FAKE_COMPOSE_DIR/hostfile"
elif [[ "$args" == *" exec -T node1 cat /cluster/hostfile "* ]]; then
  cat "$FAKE_COMPOSE_DIR/hostfile" 2>/dev/null
elif [[ "$args" == *" exec -T node1 nproc "* ]]; then
  echo "$FAKE_NPROC"
fi
EOF
chmod +x "$work/fake/docker" "$work/fake/docker-compose"
# The recorded calls with the checkout's docker/ (recorded quoted, as %q) shortened to docker/.
compose_calls() {
  local line docker_dir
  docker_dir=$(printf '%q' "$source_dir/docker")/
  while IFS= read -r line; do
    line=${line//"$docker_dir"/docker/}
    printf '%s\n' "${line% }"
  done <"$work/calls"
}
cluster() {
  : >"$work/calls"
  env -i PATH="$work/fake:/usr/bin:/bin" HOME="$work" FAKE_COMPOSE_DIR="$work" FAKE_NPROC=6 \
    SYNCBN_WORK_DIR="$work/data" "$@" bash "$source_dir/docker/cluster.sh" "${cluster_args[@]}" </dev/null
}

cluster_args=(run -- prog)
cluster >/dev/null 2>&1
check "cluster.sh run before up fails" "$?" 2

cluster_args=(up 3)
cluster >/dev/null 2>&1
check "cluster.sh up 3: exit status" "$?" 0
p="-p syncbn -f docker/compose.yml"
check "cluster.sh up 3: compose calls" "$(compose_calls)" "$p build node1
$p rm --stop --force node4
$p up -d --no-build node1 node2 node3
$p exec -T node1 ssh node1 true
$p exec -T node1 ssh node2 true
$p exec -T node1 ssh node3 true
$p exec -T node1 nproc
$p exec -T node1 sh -c cat\ \>\ /cluster/hostfile"
check "cluster.sh up 3 on 6 CPUs: hostfile" "$(cat "$work/hostfile")" "# cpus 6: the nodes share this machine's CPUs (docker/cluster.sh)
node1 slots=2
node2 slots=2
node3 slots=2"

# The nodes share the CPUs: no binding ever; yield and passive OpenMP waits when a job spans
# nodes or has more ranks than CPUs.
run_prefix="$p exec -T node1 syncbn-run --hostfile /cluster/hostfile --iface eth0 --mca hwloc_base_binding_policy none"
shared="--mca mpi_yield_when_idle 1 -x OMP_WAIT_POLICY=passive"
cluster_args=(run 4 -- prog "a b" "it's")
cluster >/dev/null 2>&1
check "cluster.sh run 4: exit status" "$?" 0
check "cluster.sh run 4 (two nodes): syncbn-run in node1" "$(compose_calls | tail -n 1)" \
  "$run_prefix $shared -np 4 -- prog a\\ b it\\'s"

cluster_args=(run -np 2 -- prog)
cluster >/dev/null 2>&1
check "cluster.sh run -np 2 (one node, 2 of 6 CPUs): no yield" "$(compose_calls | tail -n 1)" \
  "$run_prefix -np 2 -- prog"

cluster_args=(run --verbose --mca mpi_yield_when_idle 0 -- prog)
cluster >/dev/null 2>&1
check "cluster.sh run with options, every slot" "$(compose_calls | tail -n 1)" \
  "$run_prefix $shared --verbose --mca mpi_yield_when_idle 0 -- prog"

cluster_args=(up 3)
cluster FAKE_NPROC=2 >/dev/null 2>&1
check "cluster.sh up 3 on 2 CPUs: one slot each" "$(grep -v '^#' "$work/hostfile")" "node1 slots=1
node2 slots=1
node3 slots=1"
cluster_args=(run -np 2 -- prog)
cluster >/dev/null 2>&1
check "cluster.sh run -np 2 on 2 CPUs, 1 slot per node: yield" "$(compose_calls | tail -n 1)" \
  "$run_prefix $shared -np 2 -- prog"
cluster_args=(up 3)
cluster SYNCBN_SLOTS=4 >/dev/null 2>&1
check "cluster.sh up 3, SYNCBN_SLOTS=4" "$(grep -v '^#' "$work/hostfile")" "node1 slots=4
node2 slots=4
node3 slots=4"

cluster_args=(down)
cluster >/dev/null 2>&1
check "cluster.sh down" "$(compose_calls)" "$p down --volumes --remove-orphans"

cluster_args=(up 1)
cluster SYNCBN_FLAVOR=cuda >/dev/null 2>&1
check "cluster.sh cuda up 1: compose files" "$(compose_calls | sed -n 3p)" \
  "-p syncbn -f docker/compose.yml -f docker/compose.cuda.yml up -d --no-build node1"
check "cluster.sh cuda up 1: one slot per node" "$(grep -v "^#" "$work/hostfile")" "node1 slots=1"

cluster_args=(up 5)
cluster >/dev/null 2>&1
check "cluster.sh up 5 fails" "$?" 2

# ---- compose files ------------------------------------------------------------------------------------
if command -v docker-compose >/dev/null 2>&1; then
  docker-compose -f "$source_dir/docker/compose.yml" config -q 2>&1
  check "docker-compose config (compose.yml)" "$?" 0
  docker-compose -f "$source_dir/docker/compose.yml" -f "$source_dir/docker/compose.cuda.yml" config -q 2>&1
  check "docker-compose config (+ compose.cuda.yml)" "$?" 0
  services=$(docker-compose -f "$source_dir/docker/compose.yml" config --services | sort | tr '\n' ' ')
  check "compose services" "$services" "node1 node2 node3 node4 "
else
  echo "docker-compose not installed: compose files not validated"
fi

echo "$passed passed, $failed failed"
((failed == 0))
