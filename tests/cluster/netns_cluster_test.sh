#!/usr/bin/env bash
# A three-host cluster on one machine, without Docker: each host is a network namespace (its own
# eth0 on a bridge, 10.77.0.0/24) plus a UTS namespace (its own hostname, so Open MPI's
# shared-memory segments and session directories do not collide). mpirun reaches the hosts
# through an rsh agent that enters the namespaces instead of ssh (netns_rsh_agent.sh), and names
# resolve through a private /etc/hosts (bind-mounted in this test's own mount namespace).
#
# 1. plumbing: `syncbn-run --hostfile` runs 6 ranks, 2 per host: hostname, an MPI program
#    (allreduce + ring exchange across hosts over TCP), and arguments with spaces and quotes.
# 2. training: 6-rank SyncBN (batch 8 each) saves the same weights as 1-rank BN on batch 48.
#
# Needs root, ip, unshare, nsenter, mpirun; exits 77 (skipped) with the reason otherwise.
# Everything it makes (namespaces, links, mounts, processes, files) goes when it ends, also on
# failure. SYNCBN_BUILD_DIR: where syncbn-train is. SYNCBN_NETNS_PLUMBING_ONLY=1: step 1 only.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=${SYNCBN_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
build_dir=${SYNCBN_BUILD_DIR:-$source_dir/build}
syncbn_run=$source_dir/launch/syncbn-run

# shellcheck source=tests/cluster/netns_hosts.sh
source "$here/netns_hosts.sh"   # skip, fail and the hosts
log() {
  printf '[netns %3ss] %s\n' "$SECONDS" "$*"
}

# ---- outside: check what is needed, then rerun in a private mount namespace -----------------
if [[ "${1:-}" != --inside ]]; then
  [[ "$(id -u)" == 0 ]] || skip "needs root (network namespaces)"
  for tool in ip unshare nsenter mpirun timeout mount; do
    command -v "$tool" >/dev/null 2>&1 || skip "'$tool' not found"
  done
  unshare --mount --uts true 2>/dev/null || skip "cannot create mount/UTS namespaces here"
  # The private mount namespace holds the /etc/hosts of the cluster and the namespace files:
  # when the last process in it ends, they are gone even if cleanup could not run.
  exec timeout -k 10 560 unshare --mount --propagation private -- bash "${BASH_SOURCE[0]}" --inside
fi

# ---- inside -----------------------------------------------------------------------------------
tag=sbn$$                      # unique per run: namespace names and hostnames
hosts=(1 2 3)
state=$(mktemp -d /tmp/syncbn-netns.XXXXXX)
netns_hosts_traps

netns_hosts_up "${hosts[@]}"
: >"$state/hostfile"
for i in "${hosts[@]}"; do
  printf '%s slots=2\n' "$(host_name "$i")" >>"$state/hostfile"
done
log "3 hosts up: $(tr '\n' ' ' <"$state/hostfile")"

[[ "$(in_host 2 10 hostname)" == "$(host_name 2)" ]] || fail "host 2 does not have its hostname"

# run6 SECONDS PROGRAM ARGS...: 6 ranks, 2 per host, from host 1, through syncbn-run. The three
# hosts share this machine's cores: ranks yield when idle instead of spinning (5x faster on 2).
export OMP_NUM_THREADS=1
run6() {
  local limit=$1
  shift
  in_host 1 "$limit" bash "$syncbn_run" --hostfile "$state/hostfile" -np 6 --iface eth0 \
    --mca plm_rsh_agent "$state/agent" --mca mpi_yield_when_idle 1 -- "$@"
}

# ---- 1. plumbing -------------------------------------------------------------------------------
run6 60 hostname >"$state/out" 2>"$state/err" || fail "hostname on 6 ranks: $(cat "$state/err" "$state/out")"
expected=$(for i in "${hosts[@]}"; do host_name "$i"; echo; host_name "$i"; echo; done)
[[ "$(sort "$state/out")" == "$expected" ]] || fail "hostname on 6 ranks printed: $(cat "$state/out")"
log "hostname: 2 ranks on each host"

quoted=('a b' "it's" '"q"' '$HOME' '*' '')
# Each rank writes what it received to its own file (stdout of ranks may interleave).
# shellcheck disable=SC2016
run6 60 bash -c 'printf "[%s]" "$@" >"$0.$OMPI_COMM_WORLD_RANK"' "$state/args" "${quoted[@]}" \
  >"$state/out" 2>&1 || fail "arguments on 6 ranks: $(cat "$state/out")"
want="[a b][it's][\"q\"][\$HOME][*][]"
for rank in 0 1 2 3 4 5; do
  [[ "$(cat "$state/args.$rank" 2>/dev/null)" == "$want" ]] ||
    fail "arguments changed on the way to rank $rank: $(cat "$state/args.$rank" 2>&1)"
done
log "arguments with spaces and quotes reach all 6 ranks unchanged"

if command -v mpicc >/dev/null 2>&1; then
  cat >"$state/hello.c" <<'EOF'
/* Each rank: allreduce of rank+1 (expects size*(size+1)/2), and a ring exchange with the
   next and previous ranks, which crosses hosts over TCP. */
#include <mpi.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char** argv) {
  int rank, size, sum, value, from_previous = -1;
  char host[256];
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  gethostname(host, sizeof host);
  value = rank + 1;
  MPI_Allreduce(&value, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Sendrecv(&rank, 1, MPI_INT, (rank + 1) % size, 0, &from_previous, 1, MPI_INT,
               (rank + size - 1) % size, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  int ok = sum == size * (size + 1) / 2 && from_previous == (rank + size - 1) % size;
  printf("rank %d of %d on %s: %s\n", rank, size, host, ok ? "ok" : "WRONG");
  MPI_Finalize();
  return ok ? 0 : 1;
}
EOF
  mpicc -O1 -o "$state/hello" "$state/hello.c"
  run6 90 "$state/hello" >"$state/out" 2>"$state/err" || fail "MPI hello: $(cat "$state/err" "$state/out")"
  for rank in 0 1 2 3 4 5; do
    host=$(host_name $((rank / 2 + 1)))
    grep -qxF "rank $rank of 6 on $host: ok" "$state/out" || fail "MPI hello, rank $rank: $(cat "$state/out")"
  done
  log "MPI allreduce and ring across the 3 hosts over TCP: ok"
else
  log "mpicc not found: MPI hello skipped"
fi

# ---- 2. training -------------------------------------------------------------------------------
if [[ "${SYNCBN_NETNS_PLUMBING_ONLY:-0}" == 1 ]]; then
  log "plumbing only (SYNCBN_NETNS_PLUMBING_ONLY=1)"
  exit 0
fi
train=$build_dir/syncbn-train
[[ -x "$train" ]] || skip "plumbing passed; $train not built, so no training run"

common=(--model mlp --dataset synthetic --steps 20 --seed 1)
mkdir -p "$state/train"
cd "$state/train"
run6 300 "$train" "${common[@]}" --norm syncbn --batch-size 8 --save "$state/train/A.safetensors" \
  >"$state/out" 2>&1 || fail "6-rank training: $(tail -n 30 "$state/out")"
log "6-rank SyncBN training done"
in_host 1 300 bash "$syncbn_run" --no-slurm -np 1 -- "$train" "${common[@]}" --norm bn --batch-size 48 \
  --save "$state/train/B.safetensors" >"$state/out" 2>&1 || fail "1-rank training: $(tail -n 30 "$state/out")"
log "1-rank BN training done"
for f in A B; do
  [[ -s "$state/train/$f.safetensors" ]] || fail "$f.safetensors was not written"
done

compare=$build_dir/syncbn-compare-safetensors
if [[ -x "$compare" ]]; then
  "$compare" "$state/train/A.safetensors" "$state/train/B.safetensors" --rtol 1e-4 ||
    fail "6-rank SyncBN and 1-rank BN weights differ"
elif [[ -x /usr/bin/python3 ]]; then
  /usr/bin/python3 "$here/compare_safetensors.py" "$state/train/A.safetensors" \
    "$state/train/B.safetensors" --rtol 1e-4 || fail "6-rank SyncBN and 1-rank BN weights differ"
else
  log "no syncbn-compare-safetensors and no /usr/bin/python3: weights not compared"
  exit 0
fi
log "6-rank SyncBN weights == 1-rank BN weights (rtol 1e-4)"
