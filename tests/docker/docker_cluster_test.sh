#!/usr/bin/env bash
# The container cluster of docker/ for real: a Docker engine, the image, three nodes, training.
#
# 0. Dockerfile.cuda takes the same steps as Dockerfile.cpu (docker/image.sh, the same COPYs),
#    so building and running the CPU image below proves every step the two share.
# 1. engine: installs docker.io and docker-compose where missing (apt-get), and starts dockerd
#    where none answers (and stops it at the end, putting back the IP forwarding, FORWARD
#    policy and docker0 it changed; an engine that was running stays).
# 2. base image: debian:bookworm if present, else pulled, else made with debootstrap from the
#    Debian archive in apt's sources and imported. It stays, as do the syncbn images (their
#    layers make the next run fast).
# 3. docker/cluster.sh up 3 (builds syncbn:cpu), hostfile slots sized from the CPUs.
# 4. 6 ranks, 2 per node: hostname, then SyncBN training (batch 8 each) that saves the same
#    weights as 1-rank BN on batch 48 (the bar of tests/cluster/netns_cluster_test.sh),
#    compared by the image's syncbn-compare-safetensors.
# 5. docker/cluster.sh down, and no container, network or volume of the cluster is left.
#
# Needs root; exits 77 (skipped) with the reason where no engine can run. The cluster has a
# project name of its own (a user's `syncbn` cluster is not touched) and goes on failure too.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=${SYNCBN_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
cluster_sh=$source_dir/docker/cluster.sh
# Cold (debootstrap, packages, compile) takes about 8 minutes on 2 busy cores.
limit=${SYNCBN_DOCKER_TEST_LIMIT:-1500}

skip() {
  echo "SKIP: $*"
  exit 77
}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
log() {
  printf '[docker %4ss] %s\n' "$SECONDS" "$*"
}

# ---- 0. the two Dockerfiles take the same steps (no engine needed) ----------------------------
# Their instructions, each stage's FROM and ARGs aside, with the backend flags of the build step
# cut: what is left must be the same lines in the same order.
steps() {
  grep -Ev '^(#|$|FROM |ARG )' "$1" | sed -E 's|^(RUN syncbn-image build /src) .*|\1 CMAKE-FLAGS|'
}
if ! same=$(diff <(steps "$source_dir/docker/Dockerfile.cpu") <(steps "$source_dir/docker/Dockerfile.cuda")); then
  fail "Dockerfile.cuda does not take the steps of Dockerfile.cpu:"$'\n'"$same"
fi
[[ "$(grep -c '^FROM ' "$source_dir/docker/Dockerfile.cuda")" == 2 ]] ||
  fail "Dockerfile.cuda: expected two stages (build, runtime)"

# ---- outside: root, one test at a time on this machine, a time limit ----------------------------
if [[ "${1:-}" != --inside ]]; then
  [[ "$(id -u)" == 0 ]] || skip "needs root (installs and starts a Docker engine)"
  for tool in flock timeout setsid; do
    command -v "$tool" >/dev/null 2>&1 || skip "'$tool' not found"
  done
  # Two runs at once (two checkouts) would share the engine, and one could stop it under the
  # other: the lock (fd 9, inherited) is held until the inner run ends.
  exec 9>/tmp/syncbn-docker-test.lock
  flock -w "$limit" 9 || skip "another docker cluster test held the lock for $limit s"
  exec timeout -k 60 "$limit" bash "${BASH_SOURCE[0]}" --inside
fi

# ---- inside --------------------------------------------------------------------------------------
state=$(mktemp -d /var/tmp/syncbn-docker-test.XXXXXX)
project=syncbntest$$
dockerd_pid=""
cluster_up=0
# What a dockerd we start changes on the machine and leaves when it stops: IP forwarding on,
# the FORWARD chain's policy DROP, the docker0 bridge. Put back as found (its iptables chains,
# inert without docker0, stay: the next dockerd reuses them).
ip_forward=""
forward_policy=""
had_docker0=1

cluster() {
  SYNCBN_PROJECT=$project SYNCBN_WORK_DIR=$state/work SYNCBN_FLAVOR=cpu bash "$cluster_sh" "$@"
}

# What is left of the cluster: containers, networks and volumes of the project, by compose's
# label and by name (compose v1: PROJECT_node1_1, PROJECT_cluster; v2: PROJECT-node1-1).
leftovers() {
  local filter
  for filter in "label=com.docker.compose.project=$project" "name=$project"; do
    docker ps --all --quiet --filter "$filter" | sed 's/^/container /'
    docker network ls --quiet --filter "$filter" | sed 's/^/network /'
    docker volume ls --quiet --filter "$filter" | sed 's/^/volume /'
  done 2>/dev/null | sort -u
}

cleanup() {
  local status=$? left kind id
  trap - EXIT INT TERM
  if ((cluster_up)); then
    cluster down >"$state/down.log" 2>&1 || true
    left=$(leftovers)
    if [[ -n "$left" ]]; then
      while read -r kind id; do
        case "$kind" in
          container) docker rm --force "$id" ;;
          network) docker network rm "$id" ;;
          volume) docker volume rm --force "$id" ;;
        esac
      done <<<"$left" >/dev/null 2>&1 || true
    fi
  fi
  if [[ -n "$dockerd_pid" ]]; then
    # Only the dockerd this test started; it stops its containerd and containers itself.
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 60); do
      kill -0 "$dockerd_pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$dockerd_pid" 2>/dev/null || true
    [[ -z "$forward_policy" ]] || iptables -P FORWARD "$forward_policy" 2>/dev/null || true
    [[ -z "$ip_forward" ]] || echo "$ip_forward" >/proc/sys/net/ipv4/ip_forward 2>/dev/null || true
    ((had_docker0)) || ip link delete docker0 2>/dev/null || true
    log "stopped the dockerd this test started (IP forwarding ${ip_forward:-?}, FORWARD policy ${forward_policy:-?} as before)"
  fi
  rm -rf "$state"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. engine ------------------------------------------------------------------------------------
have_compose() {
  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1
}
engine_answers() {
  timeout 20 docker info >/dev/null 2>&1
}
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  command -v apt-get >/dev/null 2>&1 || skip "$* not installed, and no apt-get to install them"
  log "installing $*"
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"; } >"$state/apt.log" 2>&1 ||
    skip "could not install $*: $(tail -n 5 "$state/apt.log")"
}

missing=()
if ! command -v docker >/dev/null 2>&1 || { ! engine_answers && ! command -v dockerd >/dev/null 2>&1; }; then
  missing+=(docker.io)
fi
have_compose || missing+=(docker-compose)
((${#missing[@]} == 0)) || apt_install "${missing[@]}"

if engine_answers; then
  log "using the running Docker engine"
else
  # Our own engine on the default socket and data root (/var/lib/docker), so that its images
  # serve the next run too. In its own session: a signal to this test does not reach it, the
  # cleanup stops it after the cluster is down.
  unset DOCKER_HOST
  ip_forward=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || true)
  forward_policy=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" { print $3 }' || true)
  ip link show docker0 >/dev/null 2>&1 || had_docker0=0
  log "starting dockerd"
  setsid dockerd >"$state/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 120); do
    engine_answers && break
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.5
  done
  if ! engine_answers; then
    kill -0 "$dockerd_pid" 2>/dev/null || dockerd_pid=""
    skip "no Docker engine can start here: $(grep -E 'level=(error|fatal)|failed' "$state/dockerd.log" | tail -n 3)"
  fi
  log "dockerd up: $(docker info --format '{{.ServerVersion}}, storage {{.Driver}}, cgroup {{.CgroupVersion}}' 2>/dev/null)"
fi

# ---- 2. base image ----------------------------------------------------------------------------------
# The Debian archive apt uses (any source format: apt resolves it): debootstrap's mirror.
# shellcheck disable=SC2016 # apt's format fields, not the shell's
debian_mirror() {
  apt-get indextargets --format '$(TARGET_OF) $(LABEL) $(REPO_URI)' 2>/dev/null |
    awk '$1 == "deb" && $2 == "Debian" { print $3; exit }'
}
if docker image inspect debian:bookworm >/dev/null 2>&1; then
  log "debian:bookworm: present"
elif timeout 120 docker pull --quiet debian:bookworm >"$state/pull.log" 2>&1; then
  log "debian:bookworm: pulled"
else
  log "debian:bookworm: no registry ($(tail -n 1 "$state/pull.log")); making it with debootstrap"
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  mirror=$(debian_mirror)
  if [[ -z "$mirror" ]]; then
    apt-get update -qq >/dev/null 2>&1 || true
    mirror=$(debian_mirror)
  fi
  [[ -n "$mirror" ]] || skip "no debian:bookworm image, and no Debian archive in apt's sources to make one"
  log "debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$state/rootfs" "$mirror" >"$state/debootstrap.log" 2>&1 ||
    skip "debootstrap from $mirror failed: $(tail -n 3 "$state/debootstrap.log")"
  # Without the downloaded packages and apt's lists (each build runs apt-get update).
  tar -C "$state/rootfs" --exclude='./var/cache/apt/archives/*.deb' --exclude='./var/lib/apt/lists/*' -c . |
    docker import --change 'CMD ["bash"]' - debian:bookworm >/dev/null
  rm -rf "$state/rootfs"
  log "debian:bookworm: imported ($(docker image inspect debian:bookworm --format '{{.Size}}') bytes)"
fi

# ---- 3. cluster up ------------------------------------------------------------------------------------
mkdir -p "$state/work"
cluster_up=1
start=$SECONDS
cluster up 3 >"$state/up.log" 2>&1 || fail "cluster.sh up 3: $(tail -n 30 "$state/up.log")"
cached=$(grep -c 'Using cache' "$state/up.log" || true)
log "cluster.sh up 3: image built and 3 nodes up in $((SECONDS - start)) s ($cached build steps from cache)"
log "image syncbn:cpu: $(docker image inspect syncbn:cpu --format '{{.Size}}') bytes"

# The hostfile: one line per node with CPUs/3 slots (at least 1), after the CPU count.
hostfile=$(cluster run -np 1 -- cat /cluster/hostfile 2>&1) || fail "reading the hostfile: $hostfile"
[[ "$(head -n 1 <<<"$hostfile")" =~ ^#\ cpus\ ([0-9]+) ]] || fail "hostfile without the CPU count: $hostfile"
cpus=${BASH_REMATCH[1]}
slots=$((cpus / 3 > 0 ? cpus / 3 : 1))
[[ "$(grep -v '^#' <<<"$hostfile")" == "node1 slots=$slots"$'\n'"node2 slots=$slots"$'\n'"node3 slots=$slots" ]] ||
  fail "hostfile for $cpus CPUs: $hostfile"
log "hostfile: 3 nodes x $slots slots for $cpus CPUs"

# ---- 4. 6 ranks, 2 per node ---------------------------------------------------------------------------
# By node: ranks go round the nodes, so there are 2 on each whatever the slots.
run6() {
  cluster run -np 6 --mca rmaps_base_mapping_policy node -- "$@"
}
out=$(run6 hostname 2>&1) || fail "hostname on 6 ranks: $out"
[[ "$(sort <<<"$out" | tr '\n' ' ')" == "node1 node1 node2 node2 node3 node3 " ]] ||
  fail "hostname on 6 ranks printed: $out"
log "hostname: 2 ranks on each of node1..node3"

common=(--model mlp --dataset synthetic --steps 20 --seed 1 --no-progress)
out=$(run6 syncbn-train "${common[@]}" --norm syncbn --batch-size 8 --save /work/A.safetensors 2>&1) ||
  fail "6-rank training: $(tail -n 30 <<<"$out")"
[[ "$out" == *"6 rank(s) on cpu"* ]] || fail "6-rank training did not run on 6 ranks: $out"
log "6-rank SyncBN training: $(grep -o '[0-9]* img/s' <<<"$out")"
out=$(cluster run -np 1 -- syncbn-train "${common[@]}" --norm bn --batch-size 48 --save /work/B.safetensors 2>&1) ||
  fail "1-rank training: $(tail -n 30 <<<"$out")"
log "1-rank BN training done"
for f in A B; do
  [[ -s "$state/work/$f.safetensors" ]] || fail "$f.safetensors is not in the work directory"
done
out=$(cluster run -np 1 -- syncbn-compare-safetensors /work/A.safetensors /work/B.safetensors --rtol 1e-4 2>&1) ||
  fail "6-rank SyncBN and 1-rank BN weights differ: $out"
log "6-rank SyncBN weights == 1-rank BN weights (rtol 1e-4): $out"

# ---- 5. down ------------------------------------------------------------------------------------------
cluster down >"$state/down.log" 2>&1 || fail "cluster.sh down: $(tail -n 20 "$state/down.log")"
left=$(leftovers)
[[ -z "$left" ]] || fail "left after cluster.sh down: $left"
cluster_up=0
log "cluster.sh down: no container, network or volume of $project left"
