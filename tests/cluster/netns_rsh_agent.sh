#!/usr/bin/env bash
# An rsh agent for Open MPI (mpirun --mca plm_rsh_agent ...) that "logs into" a host made of
# Linux namespaces instead of a machine: it enters the host's network and UTS namespaces and runs
# the command there with /bin/sh, as ssh would on a remote machine.
#
#   netns_rsh_agent.sh [ssh options] [user@]HOST COMMAND...
#
# The host map is the file named by SYNCBN_NETNS_HOSTS, one host per line:
#   NAME-OR-ADDRESS  NETNS-NAME  UTS-NAMESPACE-FILE
# (written by tests/cluster/netns_cluster_test.sh). Used only by that test.
set -euo pipefail

map=${SYNCBN_NETNS_HOSTS:?SYNCBN_NETNS_HOSTS must name the host map}

# Open MPI passes no options to a custom agent; skip ssh-style flags all the same.
while (($# > 0)) && [[ "$1" == -* ]]; do
  shift
done
(($# >= 2)) || {
  echo "netns_rsh_agent: usage: netns_rsh_agent.sh HOST COMMAND..." >&2
  exit 255
}
host=${1#*@}
shift

netns=""
uts=""
while read -r name ns file; do
  if [[ "$name" == "$host" ]]; then
    netns=$ns
    uts=$file
    break
  fi
done <"$map"
if [[ -z "$netns" ]]; then
  echo "netns_rsh_agent: unknown host '$host' (not in $map)" >&2
  exit 255
fi

# Like ssh: the words of the command are joined with spaces and run by the remote shell.
exec nsenter --net="/run/netns/$netns" --uts="$uts" -- /bin/sh -c "$*"
