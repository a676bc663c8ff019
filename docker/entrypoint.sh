#!/usr/bin/env bash
# Entrypoint of the syncbn cluster containers (docker/compose.yml). At every start:
#  - this node's ssh host key (ed25519), made here if missing (never in the image: each node
#    has its own);
#  - the cluster key in the shared volume /cluster/ssh, made by the first node that starts
#    (under a lock), trusted by every node (authorized_keys) and used by every node to log in;
#  - this node's host key published to /cluster/ssh/known_hosts, so that ssh between nodes
#    checks them (StrictHostKeyChecking yes);
# then runs the command (default: sshd in the foreground).
set -euo pipefail

cluster_dir=${SYNCBN_CLUSTER_DIR:-/cluster}
shared=$cluster_dir/ssh
host=$(hostname)

mkdir -p /run/sshd /root/.ssh "$shared"
chmod 700 /root/.ssh "$shared"
if [[ ! -s /etc/ssh/ssh_host_ed25519_key ]]; then
  rm -f /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub
  ssh-keygen -q -t ed25519 -N '' -C "$host" -f /etc/ssh/ssh_host_ed25519_key
fi

exec 9>"$shared/.lock"
flock -w 60 9 || { echo "entrypoint: $shared/.lock held for 60 s" >&2; exit 1; }
if [[ ! -s "$shared/id_ed25519" ]]; then
  rm -f "$shared/id_ed25519" "$shared/id_ed25519.pub"
  ssh-keygen -q -t ed25519 -N '' -C "syncbn-cluster" -f "$shared/id_ed25519"
  echo "entrypoint: $host made the cluster key" >&2
fi
{
  grep -v "^$host " "$shared/known_hosts" 2>/dev/null || true
  printf '%s %s\n' "$host" "$(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)"
} >"$shared/known_hosts.new"
chmod 644 "$shared/known_hosts.new"
mv "$shared/known_hosts.new" "$shared/known_hosts"
flock -u 9
exec 9>&-

install -m 600 "$shared/id_ed25519" /root/.ssh/id_ed25519
install -m 644 "$shared/id_ed25519.pub" /root/.ssh/id_ed25519.pub
install -m 600 "$shared/id_ed25519.pub" /root/.ssh/authorized_keys

exec "$@"
