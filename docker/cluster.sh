#!/usr/bin/env bash
# A multi-node syncbn cluster of containers on this machine (docker/compose.yml).
#
#   docker/cluster.sh up [N]        build the image, start node1..nodeN (default 4), wait until
#                                   node1 reaches every node by ssh, write /cluster/hostfile
#   docker/cluster.sh run [NP | SYNCBN-RUN-OPTIONS] -- PROGRAM ARGS...
#                                   run PROGRAM on NP ranks (default: every slot) across the
#                                   nodes: syncbn-run --hostfile /cluster/hostfile from node1
#   docker/cluster.sh down          stop and remove the nodes and the cluster volume (the key)
#
# The working directory of the ranks is /work in every node: docker/work on this machine
# (SYNCBN_WORK_DIR to change), so outputs such as --save model.safetensors land there.
# The nodes share this machine's CPUs: cpu nodes get CPUs/N slots each (at least 1), ranks are
# not bound to cores (each node's Open MPI would bind its ranks from core 0 up, all nodes onto
# the same cores), and a job that spans nodes or has more ranks than CPUs waits without polling
# (MPI yields, OpenMP threads sleep: 10x faster on 2 CPUs, see docker/README.md).
# Environment: SYNCBN_FLAVOR=cpu|cuda (cuda adds compose.cuda.yml: GPU i-1 for node i),
# SYNCBN_SLOTS (ranks per node in the hostfile; default CPUs/N for cpu, 1 for cuda),
# SYNCBN_PROJECT (compose project name, default syncbn).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
flavor=${SYNCBN_FLAVOR:-cpu}
project=${SYNCBN_PROJECT:-syncbn}
max_nodes=4

die() {
  echo "cluster.sh: $*" >&2
  exit 2
}
usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

files=(-f "$here/compose.yml")
case "$flavor" in
  cpu) slots=${SYNCBN_SLOTS:-} ;;
  cuda) files+=(-f "$here/compose.cuda.yml"); slots=${SYNCBN_SLOTS:-1} ;;
  *) die "SYNCBN_FLAVOR must be cpu or cuda, got '$flavor'" ;;
esac
[[ -z "$slots" || "$slots" =~ ^[1-9][0-9]*$ ]] || die "SYNCBN_SLOTS must be a positive integer, got '$slots'"

# docker compose (v2 plugin) where there is one, else docker-compose (v1).
if docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose_cmd=(docker-compose)
else
  die "neither 'docker compose' nor 'docker-compose' is installed"
fi
compose() {
  "${compose_cmd[@]}" -p "$project" "${files[@]}" "$@"
}

# Commands in node1: with a terminal when we have one (Ctrl-C reaches the job), else without.
exec_flags=()
[[ -t 0 && -t 1 ]] || exec_flags=(-T)
in_node1() {
  compose exec "${exec_flags[@]}" node1 "$@"
}

cluster_up() {
  local n=${1:-$max_nodes} i nodes=() extra=() hostfile="" deadline cpus
  [[ "$n" =~ ^[1-9]$ ]] && ((n <= max_nodes)) || die "up: N must be 1..$max_nodes, got '$n'"
  for ((i = 1; i <= max_nodes; i++)); do
    if ((i <= n)); then nodes+=("node$i"); else extra+=("node$i"); fi
  done
  mkdir -p "${SYNCBN_WORK_DIR:-$here/work}"
  echo "cluster.sh: building the $flavor image (once; later runs reuse it)" >&2
  compose build node1
  ((${#extra[@]} == 0)) || compose rm --stop --force "${extra[@]}" >/dev/null 2>&1 || true
  compose up -d --no-build "${nodes[@]}"

  echo "cluster.sh: waiting for ssh from node1 to ${nodes[*]}" >&2
  deadline=$((SECONDS + 120))
  for node in "${nodes[@]}"; do
    until compose exec -T node1 ssh "$node" true >/dev/null 2>&1; do
      ((SECONDS < deadline)) || die "node1 cannot ssh to $node after 120 s (docker compose logs $node)"
      sleep 1
    done
  done
  # The CPUs the containers may use: the machine's, which all the nodes share. The hostfile
  # keeps the count for `run` in a comment (syncbn-run skips comments).
  cpus=$(compose exec -T node1 nproc)
  [[ "$cpus" =~ ^[1-9][0-9]*$ ]] || die "nproc in node1 printed '$cpus'"
  [[ -n "$slots" ]] || slots=$((cpus / n > 0 ? cpus / n : 1))
  hostfile="# cpus $cpus: the nodes share this machine's CPUs (docker/cluster.sh)"$'\n'
  for node in "${nodes[@]}"; do
    hostfile+="$node slots=$slots"$'\n'
  done
  printf '%s' "$hostfile" | compose exec -T node1 sh -c 'cat > /cluster/hostfile'
  echo "cluster.sh: up: ${nodes[*]}, $slots slots each, sharing $cpus CPUs (/cluster/hostfile)" >&2
}

cluster_run() {
  local options=() np="" i hostfile cpus=0 slots=0 node_slots=0 line sharing=()
  while (($# > 0)) && [[ "$1" != -- ]]; do
    if ((${#options[@]} == 0)) && [[ "$1" =~ ^[0-9]+$ ]]; then
      options+=(-np "$1")
    else
      options+=("$1")
    fi
    shift
  done
  (($# >= 2)) || die "run: give the program after --: cluster.sh run [NP] -- PROGRAM ARGS..."
  shift
  hostfile=$(compose exec -T node1 cat /cluster/hostfile 2>/dev/null) && [[ -n "$hostfile" ]] ||
    die "run: the cluster is not up (docker/cluster.sh up [N])"
  while read -r line; do
    if [[ "$line" =~ ^#\ cpus\ ([0-9]+) ]]; then
      cpus=${BASH_REMATCH[1]}
    elif [[ "$line" =~ slots=([0-9]+) ]]; then
      slots=$((slots + BASH_REMATCH[1]))
      ((node_slots > 0)) || node_slots=${BASH_REMATCH[1]}
    fi
  done <<<"$hostfile"
  for i in "${!options[@]}"; do
    case "${options[i]}" in
      -np | -n | --np) np=${options[i + 1]:-} ;;
      -np=* | -n=* | --np=*) np=${options[i]#*=} ;;
    esac
  done
  [[ "$np" =~ ^[0-9]+$ ]] || np=$slots
  # The nodes share the machine's CPUs, but each node's Open MPI binds its ranks from core 0 up
  # and each syncbn-train rank takes CPUs/(ranks on its node) threads: a job on more than one
  # node, or with more ranks than CPUs, has more threads than CPUs. Then waiting ranks yield
  # their CPU in MPI and idle OpenMP threads sleep, instead of both polling. Before the user's
  # options, so that a --mca or -x of the same name given to run replaces these.
  sharing=(--mca hwloc_base_binding_policy none)
  if ((np > cpus || np > node_slots)); then
    sharing+=(--mca mpi_yield_when_idle 1 -x OMP_WAIT_POLICY=passive)
  fi
  in_node1 syncbn-run --hostfile /cluster/hostfile --iface eth0 "${sharing[@]}" "${options[@]}" -- "$@"
}

command=${1:-}
(($# > 0)) && shift
case "$command" in
  up) (($# <= 1)) || die "up takes one argument, N"; cluster_up "$@" ;;
  run) cluster_run "$@" ;;
  down) (($# == 0)) || die "down takes no argument"; compose down --volumes --remove-orphans ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
