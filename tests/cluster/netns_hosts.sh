# shellcheck shell=bash
# shellcheck disable=SC2154  # tag and state are set by the sourcing script
# Hosts made of Linux namespaces, for the scripts that run a cluster on one machine without
# Docker (netns_cluster_test.sh, netem_scaling.sh). Host I is a network namespace with its own
# eth0 on a bridge (10.77.0.I/24; the bridge lives in a namespace of its own, the switch) plus a
# UTS namespace (its own hostname, so Open MPI's shared-memory segments and session directories
# do not collide); names resolve through a private /etc/hosts, and mpirun reaches the hosts
# through netns_rsh_agent.sh, which reads the host map written here.
#
# The sourcing script makes the hosts in a private mount namespace (unshare --mount
# --propagation private), after setting
#   tag    unique per run: the names of the namespaces and hostnames ($tag-hI, $tag-sw)
#   state  its own mktemp -d folder
# then calls netns_hosts_traps (before anything is made) and netns_hosts_up I.... It gets
# host_name, in_host, may, $state/agent (the rsh agent) and SYNCBN_NETNS_HOSTS (its host map).
netns_made=()

# skip REASON: exit 77, the status ctest reads as skipped; fail REASON: exit 1.
skip() {
  echo "SKIP: $*"
  exit 77
}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Host I is called $tag-hI: its hostname and the name of its network namespace.
host_name() { printf '%s-h%s' "$tag" "$1"; }

# in_host I SECONDS COMMAND...: runs COMMAND on host I (its net + UTS namespaces), bounded.
# In the background with wait, so that a signal to the script is handled at once (bash runs
# traps only after a foreground command ends).
in_host() {
  local i=$1 limit=$2
  shift 2
  timeout -k 5 "$limit" nsenter --net="/run/netns/$(host_name "$i")" --uts="$state/uts/h$i" -- "$@" &
  wait "$!"
}

# may COMMAND...: a setup step that the machine may not permit (no CAP_NET_ADMIN, no veth or
# bridge module, no tmpfs): its failure skips the script with the reason.
may() {
  "$@" 2>"$state/err" || skip "not permitted here: $*: $(cat "$state/err")"
}

# netns_hosts_up I...: the switch and hosts I..., their hostnames, /etc/hosts, the rsh agent and
# its host map. Nothing of this appears in the machine's own network namespace.
netns_hosts_up() {
  local switch=$tag-sw i ns
  may ip netns add "$switch"
  netns_made+=("$switch")
  may ip -n "$switch" link add br0 type bridge
  may ip -n "$switch" link set br0 up
  for i in "$@"; do
    ns=$(host_name "$i")
    may ip netns add "$ns"
    netns_made+=("$ns")
    may ip link add eth0 netns "$ns" type veth peer name "port$i" netns "$switch"
    may ip -n "$switch" link set "port$i" master br0 up
    may ip -n "$ns" addr add "10.77.0.$i/24" dev eth0
    may ip -n "$ns" link set eth0 up
    may ip -n "$ns" link set lo up
  done

  # Hostnames: one persistent UTS namespace per host, kept as a bind mount on a private tmpfs.
  mkdir -p "$state/uts"
  may mount -t tmpfs -o size=1m tmpfs "$state/uts"
  for i in "$@"; do
    touch "$state/uts/h$i"
    may unshare --uts="$state/uts/h$i" hostname "$(host_name "$i")"
  done

  # Name resolution: this mount namespace's own /etc/hosts.
  {
    echo "127.0.0.1 localhost"
    for i in "$@"; do
      echo "10.77.0.$i $(host_name "$i")"
    done
  } >"$state/hosts"
  may mount --bind "$state/hosts" /etc/hosts

  install -m 755 "$(dirname "${BASH_SOURCE[0]}")/netns_rsh_agent.sh" "$state/agent"
  export SYNCBN_NETNS_HOSTS=$state/hosts.map
  : >"$SYNCBN_NETNS_HOSTS"
  for i in "$@"; do
    printf '%s %s %s\n' "$(host_name "$i")" "$(host_name "$i")" "$state/uts/h$i" >>"$SYNCBN_NETNS_HOSTS"
    printf '10.77.0.%s %s %s\n' "$i" "$(host_name "$i")" "$state/uts/h$i" >>"$SYNCBN_NETNS_HOSTS"
  done
}

# netns_hosts_cleanup: ends every process in the namespaces (all started by the script: orted,
# ranks, agents), deletes the namespaces (their veth ends, qdiscs and the bridge go with them),
# Open MPI's leftovers, the mounts and $state.
netns_hosts_cleanup() {
  local ns pids
  for ns in "${netns_made[@]}"; do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [[ -n "$pids" ]] && kill -TERM $pids 2>/dev/null || true
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pids=""
    for ns in "${netns_made[@]}"; do
      pids+=$(ip netns pids "$ns" 2>/dev/null || true)
    done
    [[ -z "$pids" ]] && break
    sleep 0.2
  done
  for ns in "${netns_made[@]}"; do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf /tmp/ompi."$tag"-h* /dev/shm/*."$tag"-h*.*   # Open MPI's, if a rank was killed
  umount /etc/hosts 2>/dev/null || true
  umount -R "$state/uts" 2>/dev/null || true
  rm -rf "$state"
}

# netns_hosts_traps: on exit, also by INT or TERM, netns_hosts_cleanup, keeping the exit status.
netns_hosts_traps() {
  trap netns_hosts_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
netns_hosts_exit() {
  local status=$?
  trap - EXIT INT TERM
  netns_hosts_cleanup
  exit "$status"
}
