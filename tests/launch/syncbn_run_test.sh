#!/usr/bin/env bash
# Tests of launch/syncbn-run: the command it builds (--dry-run, compared word for word), its
# validation of hosts and options, and real local jobs (arguments reach the program unchanged,
# the exit status propagates). Prints "N passed, M failed"; exits 1 when any failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=${SYNCBN_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
syncbn_run=$source_dir/launch/syncbn-run
work=$(mktemp -d /tmp/syncbn-run-test.XXXXXX)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); }
failure() {
  failed=$((failed + 1))
  printf 'FAIL %s\n' "$1"
  shift
  printf '  %s\n' "$@"
}

# The launcher under a clean environment: only PATH (and what the case adds with env).
launcher() {
  env -i PATH="$PATH" HOME="$work" "$@"
}

# expect_cmd NAME EXPECTED [ENV=VALUE...] -- SYNCBN-RUN-ARGS...: the dry run prints EXPECTED.
expect_cmd() {
  local name=$1 expected=$2 out rc
  shift 2
  local -a envs=()
  while [[ "$1" != -- ]]; do
    envs+=("$1")
    shift
  done
  shift
  out=$(launcher "${envs[@]}" bash "$syncbn_run" --dry-run "$@" 2>&1)
  rc=$?
  if [[ $rc -eq 0 && "$out" == "$expected" ]]; then
    pass
  else
    failure "$name" "expected: $expected" "got (exit $rc): $out"
  fi
}

# expect_error NAME MESSAGE [ENV=VALUE...] -- SYNCBN-RUN-ARGS...: fails, stderr has MESSAGE.
expect_error() {
  local name=$1 message=$2 out rc
  shift 2
  local -a envs=()
  while [[ "$1" != -- ]]; do
    envs+=("$1")
    shift
  done
  shift
  out=$(launcher "${envs[@]}" bash "$syncbn_run" --dry-run "$@" 2>&1 >/dev/null)
  rc=$?
  if [[ $rc -ne 0 && "$out" == *"$message"* ]]; then
    pass
  else
    failure "$name" "expected a failure with: $message" "got (exit $rc): $out"
  fi
}

root=""
[[ "$(id -u)" == 0 ]] && root=" --allow-run-as-root"
mca="--mca pml ob1 --mca btl self,vader,tcp"
# Oversubscribed ranks yield their core while waiting in MPI.
yield="--mca mpi_yield_when_idle 1"
slurm_mca="OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp"
many=100000   # more ranks than any machine has cores

# ---- help ------------------------------------------------------------------------------------
out=$(bash "$syncbn_run" --help)
if [[ $? -eq 0 && "$out" == usage:* && "$out" == *--gpus-per-node* ]]; then pass; else failure "--help" "$out"; fi

# ---- local ---------------------------------------------------------------------------------------
expect_cmd "local -np 1" "mpirun -np 1$root $mca -x PATH ./prog" -- -np 1 -- ./prog
expect_cmd "local -n and no --" "mpirun -np 1$root $mca -x PATH prog" -- -n 1 prog
expect_cmd "local -np=1" "mpirun -np 1$root $mca -x PATH prog" -- -np=1 -- prog
expect_cmd "local, more ranks than cores" \
  "mpirun -np $many$root --oversubscribe --bind-to none $mca $yield -x PATH prog" -- -np $many -- prog
expect_cmd "--oversubscribe asked" \
  "mpirun -np 1$root --oversubscribe --bind-to none $mca $yield -x PATH prog" -- -np 1 --oversubscribe -- prog
expect_cmd "--oversubscribe with the user's mpi_yield_when_idle" \
  "mpirun -np 1$root --oversubscribe --bind-to none $mca --mca mpi_yield_when_idle 0 -x PATH prog" \
  -- -np 1 --oversubscribe --mca mpi_yield_when_idle 0 -- prog
expect_cmd "local --gpus-per-node" "mpirun -np 1$root --map-by ppr:1:node $mca -x PATH prog" \
  -- -np 1 --gpus-per-node 1 -- prog
expect_error "local --gpus-per-node, too many ranks" "needs 2 nodes, 1 given" -- -np 2 --gpus-per-node 1 -- prog

# ---- -H -------------------------------------------------------------------------------------------
expect_cmd "-H" "mpirun -np 4$root -H node1:2,node2:2 $mca -x PATH prog" -- -np 4 -H node1:2,node2:2 -- prog
expect_cmd "-H, more ranks than slots" \
  "mpirun -np 5$root -H node1:2,node2:2 --oversubscribe --bind-to none $mca $yield -x PATH prog" \
  -- -np 5 -H node1:2,node2:2 -- prog
expect_cmd "-H without slots, -np from the slots" "mpirun -np 2$root -H a:1,10.0.0.2:1 $mca -x PATH prog" \
  -- -H a,10.0.0.2 -- prog
expect_error "-H duplicate" "-H entry 3: duplicate host 'b'" -- -np 2 -H a:1,b:2,b:1 -- prog
expect_error "-H zero slots" "-H entry 1: host 'a' has zero slots" -- -np 2 -H a:0 -- prog
expect_error "-H bad slots" "-H entry 2: slots of 'b' must be a positive integer, got 'x'" -- -H a,b:x -- prog
expect_error "-H malformed" "-H entry 1: malformed 'a:1:2'" -- -H a:1:2 -- prog
expect_error "-H empty entry" "empty entry" -- -H a,,b -- prog
expect_error "-H and --hostfile" "not both" -- -H a --hostfile x -- prog

# ---- hostfiles ----------------------------------------------------------------------------------
cat >"$work/hosts.txt" <<'EOF'
# two nodes with 4 slots, one with 1
node1 slots=4
node2   slots = 4   # trailing comment

10.0.0.3
EOF
expect_cmd "hostfile, -np from the slots" "mpirun -np 9$root --hostfile $work/hosts.txt $mca -x PATH prog" \
  -- --hostfile "$work/hosts.txt" -- prog
expect_cmd "hostfile, more ranks than slots" \
  "mpirun -np 10$root --hostfile $work/hosts.txt --oversubscribe --bind-to none $mca $yield -x PATH prog" \
  -- -np 10 --hostfile "$work/hosts.txt" -- prog
expect_cmd "hostfile --gpus-per-node" \
  "mpirun -np 8$root --hostfile $work/hosts.txt --map-by ppr:4:node $mca -x PATH prog" \
  -- -np 8 --hostfile "$work/hosts.txt" --gpus-per-node 4 -- prog
expect_cmd "hostfile --gpus-per-node above a used node's slots" \
  "mpirun -np 9$root --hostfile $work/hosts.txt --map-by ppr:3:node --oversubscribe --bind-to none $mca $yield -x PATH prog" \
  -- -np 9 --hostfile "$work/hosts.txt" --gpus-per-node 3 -- prog
expect_error "hostfile --gpus-per-node, too few nodes" "-np 16 with --gpus-per-node 4 needs 4 nodes, 3 given" \
  -- -np 16 --hostfile "$work/hosts.txt" --gpus-per-node 4 -- prog

bad_hostfile() {
  local name=$1 message=$2
  shift 2
  printf '%s\n' "$@" >"$work/bad.txt"
  expect_error "hostfile: $name" "$work/bad.txt:$message" -- -np 2 --hostfile "$work/bad.txt" -- prog
}
bad_hostfile "duplicate host" "3: duplicate host 'node1'" "node1 slots=2" "node2 slots=2" "node1 slots=1"
bad_hostfile "duplicate host, other case" "2: duplicate host 'NODE1'" "node1" "NODE1"
bad_hostfile "zero slots" "2: host 'node2' has zero slots" "node1 slots=2" "node2 slots=0"
bad_hostfile "slots not a number" "1: slots of 'node1' must be a positive integer, got 'two'" "node1 slots=two"
bad_hostfile "slots missing" "1: slots of 'node1' must be a positive integer, got ''" "node1 slots="
bad_hostfile "unknown key" "2: malformed line 'node2 cpus=2'" "# c" "node2 cpus=2"
bad_hostfile "extra words" "1: malformed line 'node1 slots=2 extra'" "node1 slots=2 extra"
bad_hostfile "bad host name" "1: malformed host name 'no/de'" "no/de slots=1"
printf '# nothing\n\n' >"$work/empty.txt"
expect_error "hostfile without hosts" "$work/empty.txt: no hosts in hostfile" -- --hostfile "$work/empty.txt" -- prog
expect_error "missing hostfile" "$work/missing.txt: no such hostfile" -- -np 2 --hostfile "$work/missing.txt" -- prog

# ---- option validation ------------------------------------------------------------------------
expect_error "-np 0" "-np must be a positive integer, got '0'" -- -np 0 -- prog
expect_error "-np -1" "-np must be a positive integer, got '-1'" -- -np -1 -- prog
expect_error "-np abc" "-np must be a positive integer, got 'abc'" -- -np abc -- prog
expect_error "-np missing" "-np is required" -- -- prog
expect_error "-np without value" "-np needs a value" -- -np
expect_error "--gpus-per-node 0" "--gpus-per-node must be a positive integer, got '0'" -- -np 1 --gpus-per-node 0 -- prog
expect_error "--gpus-per-node x" "--gpus-per-node must be a positive integer, got 'x'" -- -np 1 --gpus-per-node x -- prog
expect_error "no program" "no program given" -- -np 2
expect_error "unknown option" "unknown option '--bogus'" -- -np 2 --bogus -- prog
expect_error "-x malformed" "-x: malformed variable '1X'" -- -np 1 -x 1X -- prog
expect_error "--mca without value" "--mca needs a key and a value" -- -np 1 --mca btl

# ---- environment forwarding -------------------------------------------------------------------
expect_cmd "forwarded variables" \
  "mpirun -np 1$root $mca -x LD_LIBRARY_PATH -x NCCL_DEBUG -x OMP_NUM_THREADS -x PATH -x SYNCBN_DATA -x FOO -x BAR=1\ 2 prog" \
  NCCL_DEBUG=INFO SYNCBN_DATA=/d OMP_NUM_THREADS=2 LD_LIBRARY_PATH=/l OTHER=x -- -np 1 -x FOO -x "BAR=1 2" -- prog
expect_cmd "-x replaces a forwarded variable" "mpirun -np 1$root $mca -x NCCL_DEBUG=WARN -x PATH prog" \
  NCCL_DEBUG=INFO -- -np 1 -x NCCL_DEBUG=WARN -- prog

# ---- --iface, --mca ---------------------------------------------------------------------------------
expect_cmd "--iface" \
  "mpirun -np 1$root $mca --mca btl_tcp_if_include eth1 --mca oob_tcp_if_include eth1 -x NCCL_SOCKET_IFNAME=eth1 -x PATH prog" \
  NCCL_SOCKET_IFNAME=eth0 -- -np 1 --iface eth1 -- prog
expect_cmd "--mca replaces a default, adds a key" \
  "mpirun -np 1$root --mca pml ob1 --mca btl self,tcp --mca btl_tcp_if_exclude lo -x PATH prog" \
  -- -np 1 --mca btl self,tcp --mca btl_tcp_if_exclude lo -- prog
expect_cmd "--mca replaces --iface's" \
  "mpirun -np 1$root $mca --mca btl_tcp_if_include 10.0.0.0/8 --mca oob_tcp_if_include eth1 -x PATH -x NCCL_SOCKET_IFNAME=eth1 prog" \
  -- -np 1 --mca btl_tcp_if_include 10.0.0.0/8 --iface eth1 -- prog

# ---- SLURM -------------------------------------------------------------------------------------------
expect_cmd "SLURM, -np from SLURM_NTASKS" \
  "env $slurm_mca srun --ntasks 8 --kill-on-bad-exit=1 --export=ALL prog --flag" \
  SLURM_JOB_ID=42 SLURM_NTASKS=8 SLURM_NNODES=2 -- prog --flag
expect_cmd "SLURM --gpus-per-node" \
  "env $slurm_mca srun --ntasks 8 --ntasks-per-node 4 --gpus-per-node 4 --kill-on-bad-exit=1 --export=ALL prog" \
  SLURM_JOB_ID=42 SLURM_NTASKS=8 -- -np 8 --gpus-per-node 4 -- prog
expect_cmd "--slurm outside an allocation, --iface, -x, --mca" \
  "env $slurm_mca OMPI_MCA_btl_tcp_if_include=ib0 OMPI_MCA_oob_tcp_if_include=ib0 NCCL_SOCKET_IFNAME=ib0 A=1 srun --ntasks 2 --kill-on-bad-exit=1 --export=ALL prog" \
  NCCL_DEBUG=INFO -- --slurm -np 2 --iface ib0 -x A=1 -x B -- prog
expect_cmd "SLURM_JOB_ID with a hostfile: mpirun" \
  "mpirun -np 9$root --hostfile $work/hosts.txt $mca -x PATH prog" \
  SLURM_JOB_ID=42 SLURM_NTASKS=8 -- --hostfile "$work/hosts.txt" -- prog
expect_cmd "--no-slurm" "mpirun -np 1$root $mca -x PATH prog" SLURM_JOB_ID=42 -- --no-slurm -np 1 -- prog
expect_error "--slurm with -H" "-H/--hostfile do not apply" -- --slurm -np 2 -H a:2 -- prog
expect_error "--slurm without -np or SLURM_NTASKS" "-np is required (SLURM_NTASKS is not set)" -- --slurm -- prog

# ---- not root: no --allow-run-as-root ---------------------------------------------------------------
# The launcher runs as user nobody, who may not be able to read the checkout (a clone under a
# directory of mode 0700, such as one from mktemp -d): it runs a copy in a directory that
# everyone can read, from there, so the result does not depend on where the checkout is.
if [[ -n "$root" ]] && command -v setpriv >/dev/null 2>&1; then
  public=$work/public
  chmod 711 "$work"
  mkdir -m 755 "$public"
  install -m 644 "$syncbn_run" "$public/syncbn-run"
  out=$(cd "$public" && setpriv --reuid=65534 --regid=65534 --clear-groups \
    env -i PATH="$PATH" bash "$public/syncbn-run" --dry-run -np 1 -- prog 2>&1)
  if [[ "$out" == "mpirun -np 1 $mca -x PATH prog" ]]; then pass; else failure "not root" "got: $out"; fi
fi

# ---- quoting: the printed line, pasted into a shell, gives back the same words ----------------------
args=("a b" "it's" '"q"' '$HOME' '*' '' $'tab\there' 'x;y' '`id`')
out=$(launcher bash "$syncbn_run" --dry-run -np 2 -- prog "${args[@]}")
eval "words=($out)"
# shellcheck disable=SC2154 # set by the eval
if [[ "${words[*]: -${#args[@]}}" == "${args[*]}" && "${#words[@]}" -gt "${#args[@]}" ]] &&
  [[ "$(printf '%s\n' "${words[@]: -${#args[@]}}")" == "$(printf '%s\n' "${args[@]}")" ]]; then
  pass
else
  failure "printed line pastes back" "$out"
fi

# ---- real local jobs (need mpirun) -----------------------------------------------------------------
if command -v mpirun >/dev/null 2>&1; then
  # Each rank prints its arguments with one write; lines of the two ranks may come in any order.
  # shellcheck disable=SC2016
  out=$(cd "$work" && bash "$syncbn_run" --no-slurm -np 2 -- bash -c 'printf "%s\n" "$@"' _ "a b" "it's" '"q"' '$HOME' '*' 2>&1)
  rc=$?
  expected=$(printf '%s\n' "a b" "it's" '"q"' '$HOME' '*' "a b" "it's" '"q"' '$HOME' '*' | sort)
  if [[ $rc -eq 0 && "$(sort <<<"$out")" == "$expected" ]]; then pass; else failure "real job: arguments" "exit $rc" "$out"; fi

  bash "$syncbn_run" --no-slurm -np 2 -- bash -c 'exit 3' >/dev/null 2>&1
  rc=$?
  if [[ $rc -eq 3 ]]; then pass; else failure "real job: exit status propagates" "exit $rc, expected 3"; fi

  out=$(SYNCBN_PROBE="x y" bash "$syncbn_run" --no-slurm --verbose -np 1 -- bash -c 'echo "[$SYNCBN_PROBE]"' 2>"$work/err")
  rc=$?
  if [[ $rc -eq 0 && "$out" == "[x y]" && "$(cat "$work/err")" == mpirun*"-x SYNCBN_PROBE"* ]]; then
    pass
  else
    failure "real job: --verbose, SYNCBN_* forwarded" "exit $rc" "$out" "$(cat "$work/err")"
  fi
else
  echo "mpirun not found: real local jobs not run"
fi

echo "$passed passed, $failed failed"
((failed == 0))
