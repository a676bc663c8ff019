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
# Environment: SYNCBN_FLAVOR=cpu|cuda (cuda adds compose.cuda.yml: GPU i-1 for node i),
# SYNCBN_SLOTS (ranks per node in the hostfile; default 2 for cpu, 1 for cuda),
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
  cpu) slots=${SYNCBN_SLOTS:-2} ;;
  cuda) files+=(-f "$here/compose.cuda.yml"); slots=${SYNCBN_SLOTS:-1} ;;
  *) die "SYNCBN_FLAVOR must be cpu or cuda, got '$flavor'" ;;
esac
[[ "$slots" =~ ^[1-9][0-9]*$ ]] || die "SYNCBN_SLOTS must be a positive integer, got '$slots'"

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
  local n=${1:-$max_nodes} i nodes=() extra=() hostfile="" deadline
  [[ "$n" =~ ^[1-9]$ ]] && ((n <= max_nodes)) || die "up: N must be 1..$max_nodes, got '$n'"
  for ((i = 1; i <= max_nodes; i++)); do
    if ((i <= n)); then nodes+=("node$i"); else extra+=("node$i"); fi
    ((i <= n)) && hostfile+="node$i slots=$slots"$'\n'
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
  printf '%s' "$hostfile" | compose exec -T node1 sh -c 'cat > /cluster/hostfile'
  echo "cluster.sh: up: ${nodes[*]}, $slots slots each (/cluster/hostfile)" >&2
}

cluster_run() {
  local options=()
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
  compose exec -T node1 test -s /cluster/hostfile 2>/dev/null ||
    die "run: the cluster is not up (docker/cluster.sh up [N])"
  in_node1 syncbn-run --hostfile /cluster/hostfile --iface eth0 "${options[@]}" -- "$@"
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
