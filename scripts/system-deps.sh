#!/usr/bin/env bash
# System tools the tests need beyond Python: a JDK + Maven (Kafka broker from Maven Central jars),
# Go (FerretDB built from the Go module proxy), Debian's chromium (dashboard browser test), and
# for the compose stack test (scripts/compose-e2e.sh): Debian's Docker engine, docker-compose,
# debootstrap (the local base image) and iptables (dockerd's bridge networking).
# Installs what is missing with apt-get when run as root; otherwise says what is missing.
set -euo pipefail
missing=()
command -v java >/dev/null || missing+=(default-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v go >/dev/null || missing+=(golang-go)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v iptables >/dev/null || missing+=(iptables)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "system-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
  echo "system-deps: missing ${missing[*]} (install them with your package manager)" >&2
fi
