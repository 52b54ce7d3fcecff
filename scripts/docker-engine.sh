#!/usr/bin/env bash
# A Docker engine for the compose stack on a machine with no registry access.
#
#   scripts/docker-engine.sh start       print the DOCKER_HOST to use: an engine that already
#                                        answers, else a private dockerd started here (root)
#   scripts/docker-engine.sh stop        stop the private dockerd (only if `start` started it)
#                                        and remove what it left: netns/overlay mounts, docker0
#                                        and br-* links, its iptables rules and chains
#   scripts/docker-engine.sh base-image  print the name of the local Debian base image, making
#                                        it once (debootstrap + docker import; cached)
#
# Debian's docker.io: `dockerd --host unix://<run>/docker.sock --data-root <cache>/data
# --exec-root <run>/exec --pidfile <run>/dockerd.pid`. The data root (images, build cache) and
# the base rootfs tarball live in FRAUDLAKE_DOCKER_CACHE (default /var/cache/fraudlake/docker),
# outside the clone, so a fresh clone starts warm. Environment: FRAUDLAKE_DOCKER_CACHE,
# FRAUDLAKE_DOCKER_RUN (default /run/fraudlake-docker), DEBIAN_MIRROR (default: the mirror apt
# uses here). Exit 1 (one line on stderr) when the engine cannot be had.
set -euo pipefail

CACHE=${FRAUDLAKE_DOCKER_CACHE:-/var/cache/fraudlake/docker}
RUN=${FRAUDLAKE_DOCKER_RUN:-/run/fraudlake-docker}
SOCK="unix://$RUN/docker.sock"
STATE="$RUN/started-here"  # present only while a dockerd started by this script runs
SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,ca-certificates
DOCKER_CHAINS=(DOCKER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2 DOCKER-USER)

die() { echo "docker-engine: $*" >&2; exit 1; }
log() { echo "docker-engine: $*" >&2; }

answers() { DOCKER_HOST="$1" timeout 10 docker info >/dev/null 2>&1; }

debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list \
        | grep -m1 -E 'debian/?$|debian ' | awk '{print ($1=="deb") ? $2 : $2}')
  echo "${uri:-http://deb.debian.org/debian}"
}

start() {
  # An engine that already answers (the system's, or DOCKER_HOST) is used and never stopped.
  local current=${DOCKER_HOST:-unix:///var/run/docker.sock}
  if answers "$current"; then echo "$current"; return; fi
  if answers "$SOCK"; then echo "$SOCK"; return; fi  # ours, from an earlier start
  command -v dockerd >/dev/null || die "dockerd not found (apt-get install -y docker.io)"
  [ "$(id -u)" = 0 ] || die "no Docker engine answers and a private dockerd needs root"
  # A state file without an answering engine: an earlier private dockerd died; clean up after it.
  [ -f "$STATE" ] && { log "cleaning up after an earlier private dockerd"; stop; }
  mkdir -p "$RUN" "$CACHE/data"
  # What exists before, so stop removes only what this dockerd adds.
  {
    echo "forward_policy=$(iptables -S FORWARD 2>/dev/null | awk '$1=="-P"{print $3}')"
    echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
    echo "links=$(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | tr '\n' ' ')"
    echo "chains=$(iptables -S 2>/dev/null | awk '$1=="-N"{print $2}' | tr '\n' ' ')"
    echo "nat_chains=$(iptables -t nat -S 2>/dev/null | awk '$1=="-N"{print $2}' | tr '\n' ' ')"
  } > "$STATE"
  log "starting a private dockerd ($SOCK, data in $CACHE/data)"
  setsid dockerd --host "$SOCK" --data-root "$CACHE/data" --exec-root "$RUN/exec" \
    --pidfile "$RUN/dockerd.pid" > "$RUN/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    if answers "$SOCK"; then echo "$SOCK"; return; fi
    sleep 0.5
  done
  tail -n 20 "$RUN/dockerd.log" >&2 || true
  stop >/dev/null 2>&1 || true
  die "the private dockerd did not answer within 30 s (log above)"
}

state() { sed -n "s/^$1=//p" "$STATE"; }

stop() {
  [ -f "$STATE" ] || return 0  # not started here: leave the engine alone
  local pid=""
  [ -f "$RUN/dockerd.pid" ] && pid=$(cat "$RUN/dockerd.pid")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  # dockerd's own containerd (its pid file is under the exec root) goes with it.
  local cpid
  cpid=$(cat "$RUN/exec/containerd/containerd.pid" 2>/dev/null || true)
  if [ -n "$cpid" ] && kill -0 "$cpid" 2>/dev/null; then
    kill -TERM "$cpid"; sleep 1; kill -0 "$cpid" 2>/dev/null && kill -KILL "$cpid"
  fi
  # Mounts left under the exec root (netns) and the data root (overlay, shm), deepest first.
  awk -v run="$RUN" -v data="$CACHE/data" \
      '$2 == data || index($2, run "/") == 1 || index($2, data "/") == 1 {print $2}' /proc/mounts \
    | sort -r \
    | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
  # Links this dockerd made: docker0, compose networks' br-*, veth peers.
  local before link
  before=" $(state links) "
  for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
    case "$link" in docker0|br-*|veth*)
      [[ "$before" == *" $link "* ]] || ip link del "$link" 2>/dev/null || true ;;
    esac
  done
  _iptables_cleanup
  echo "$(state ip_forward)" > /proc/sys/net/ipv4/ip_forward 2>/dev/null || true
  rm -f "$STATE" "$RUN/dockerd.pid"
  rm -rf "$RUN/exec"
  log "private dockerd stopped, mounts, links and iptables chains removed"
}

_iptables_cleanup() {
  local chains nat_chains rule chain
  chains=" $(state chains) "
  nat_chains=" $(state nat_chains) "
  # Rules in the built-in chains that point at Docker's chains or bridges.
  for table in filter nat; do
    iptables -t "$table" -S | grep -E '^-A (FORWARD|PREROUTING|OUTPUT|POSTROUTING) ' \
      | grep -E -- '-j DOCKER|docker0|br-[0-9a-f]{12}' | while read -r rule; do
        # shellcheck disable=SC2086  # the rule's words are iptables arguments
        eval iptables -t "$table" -D "${rule#-A }" || true
      done
  done
  for chain in "${DOCKER_CHAINS[@]}"; do
    if [[ "$chains" != *" $chain "* ]] && iptables -S "$chain" >/dev/null 2>&1; then
      iptables -F "$chain" && iptables -X "$chain"
    fi
  done
  if [[ "$nat_chains" != *" DOCKER "* ]] && iptables -t nat -S DOCKER >/dev/null 2>&1; then
    iptables -t nat -F DOCKER && iptables -t nat -X DOCKER
  fi
  local policy
  policy=$(state forward_policy)
  [ -n "$policy" ] && iptables -P FORWARD "$policy"
  return 0
}

base_image() {
  # Named by what goes in (suite, packages, mirror, the host's CA bundle), so a change remakes it.
  local ca=/etc/ssl/certs/ca-certificates.crt mirror key name tar rootfs
  [ -f "$ca" ] || die "no host CA bundle at $ca"
  mirror=$(debian_mirror)
  key=$( { echo "$SUITE $BASE_PACKAGES $mirror"; cat "$ca"; } | sha256sum | cut -c1-12)
  name="fraudlake-base:$SUITE-$key"
  if docker image inspect "$name" >/dev/null 2>&1; then echo "$name"; return; fi
  tar="$CACHE/base/$SUITE-$key.tar"
  if [ ! -f "$tar" ]; then
    command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install -y debootstrap)"
    rootfs="$CACHE/base/rootfs-$key"
    rm -rf "$rootfs"; mkdir -p "$CACHE/base"
    log "debootstrap $SUITE from $mirror (once; 1-4 min)"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$mirror" \
      > "$CACHE/base/debootstrap.log" 2>&1 \
      || { tail -n 20 "$CACHE/base/debootstrap.log" >&2; die "debootstrap failed"; }
    # Package downloads here go through TLS that only the host's bundle trusts: the base trusts
    # it too (also as a local CA, so a later update-ca-certificates keeps it).
    cp "$ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    cp "$ca" "$rootfs/usr/local/share/ca-certificates/host-bundle.crt"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
      "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
    tar -C "$rootfs" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$rootfs"
  fi
  log "importing $name from $tar"
  docker import --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' "$tar" "$name" >/dev/null
  echo "$name"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  base-image) base_image ;;
  *) echo "usage: scripts/docker-engine.sh start|stop|base-image" >&2; exit 2 ;;
esac
