#!/usr/bin/env bash
# Bring docker-compose.prod.yml up for real (with docker-compose.e2e.yml, which swaps only Kafka
# and MongoDB for images built here) and prove it works, then leave nothing behind:
#   1. a Docker engine (an answering one, else a private dockerd: scripts/docker-engine.sh)
#   2. the local Debian base image (debootstrap once, cached), the broker image (Maven jars),
#      the FerretDB image (go build) and the project's image (Dockerfile, BASE_IMAGE build arg)
#   3. `up -d`: every service healthy / running, kafka-init done
#   4. the dashboard answers on 127.0.0.1:8501 and renders in headless Chromium (screenshot)
#   5. `--scale consumer=3` shares the 6 partitions; `docker kill` of one consumer while the
#      producer sends moves its partitions to the others
#   6. producer stopped, lag 0: the lake holds exactly the topic's transaction_ids (none lost,
#      none duplicated) and MongoDB's flags equal `python -m batch.backtest --flags-out` of it
#   7. `run --rm history` writes a small history; `down -v` leaves no container, volume, network
# Any failure: the failing service's log tail, exit 1. Artifacts (screenshot, logs, summary.json)
# go to FRAUDLAKE_E2E_ARTIFACTS (default test-output/compose). Needs root for a private dockerd.
# Environment: FRAUDLAKE_DOCKER_CACHE (docker data root + base tarball + build contexts, default
# /var/cache/fraudlake/docker), FRAUDLAKE_E2E_RATE (producer events/s, default 150),
# FRAUDLAKE_E2E_HISTORY_ROWS (default 20000).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${FRAUDLAKE_DOCKER_CACHE:-/var/cache/fraudlake/docker}
ART=${FRAUDLAKE_E2E_ARTIFACTS:-$ROOT/test-output/compose}
PROJECT=fraudlake-e2e
PORT=8501
PARTITIONS=6
T0=$(date +%s)
WORK=$(mktemp -d /tmp/fraudlake-e2e.XXXXXX)
CHECKER=""
FAILED=""
mkdir -p "$ART"
rm -f "$ART"/*.log "$ART/summary.json"

say() { echo "compose-e2e: [$(( $(date +%s) - T0 ))s] $*" >&2; }
compose() {
  docker-compose --project-name "$PROJECT" --env-file "$WORK/.env" \
    -f "$ROOT/docker-compose.prod.yml" -f "$ROOT/docker-compose.e2e.yml" "$@"
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
record() { echo "$1=$2" >> "$WORK/summary"; }

# The failing service's log tail (all services when none is named), then exit 1.
fail() {
  local what=$1; shift
  FAILED=1
  echo "compose-e2e: FAILED: $what" >&2
  local services="${*:-kafka kafka-init mongo producer consumer dashboard}" svc
  for svc in $services; do
    echo "----- last log lines of $svc -----" >&2
    compose logs --no-color --tail=40 "$svc" 2>&1 | tail -n 40 >&2 || true
  done
  exit 1
}

cleanup() {
  local rc=$?
  set +e
  if [ -n "${DOCKER_HOST:-}" ]; then
    if [ "$rc" != 0 ] && [ -z "$FAILED" ]; then
      echo "compose-e2e: FAILED (exit $rc); log tails:" >&2
      compose logs --no-color --tail=30 >&2 2>&1
    fi
    compose ps > "$ART/ps.log" 2>&1
    compose logs --no-color > "$ART/stack.log" 2>&1
    [ -n "$CHECKER" ] && docker rm -f "$CHECKER" >/dev/null 2>&1
    compose --profile tools down -v --remove-orphans --timeout 20 >/dev/null 2>&1
  fi
  "$ROOT/scripts/docker-engine.sh" stop
  rm -rf "$WORK"
  exit "$rc"
}

# One run at a time (port 8501, the project name and the engine are shared).
exec 9> /tmp/fraudlake-compose-e2e.lock
flock -n 9 || { echo "compose-e2e: waiting for another run (/tmp/fraudlake-compose-e2e.lock)" >&2
  flock -w 900 9 || { echo "compose-e2e: another run still holds the lock after 15 min" >&2; exit 1; }; }
for tool in docker docker-compose mvn python3; do
  command -v "$tool" >/dev/null || { echo "compose-e2e: $tool not found (scripts/system-deps.sh)" >&2; exit 1; }
done
GO=$(command -v go || echo /usr/local/go/bin/go)
export DOCKER_BUILDKIT=0  # the classic builder: nothing to fetch from a registry
[ -x .venv/bin/python ] || scripts/bootstrap.sh

# --- 1. engine ---------------------------------------------------------------------------
trap cleanup EXIT
DOCKER_HOST=$(scripts/docker-engine.sh start)
export DOCKER_HOST
say "engine: $DOCKER_HOST"
if [ -n "$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")" ]; then
  say "removing a stack left by an earlier run"
  docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker rm -f >/dev/null
  docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker volume rm >/dev/null
fi
if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/"; then
  echo "compose-e2e: something already answers on port $PORT" >&2; exit 1
fi

# --- 2. images ---------------------------------------------------------------------------
BASE_IMAGE=$(scripts/docker-engine.sh base-image)
say "base image: $BASE_IMAGE"
PASSWORD=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat > "$WORK/.env" <<EOF
BASE_IMAGE=$BASE_IMAGE
FRAUDLAKE_TAG=e2e
MONGO_ROOT_USER=fraudlake
MONGO_ROOT_PASSWORD=$PASSWORD
MONGO_AUTH_MECHANISM=PLAIN
KAFKA_TOPIC_PARTITIONS=$PARTITIONS
PRODUCER_RATE=${FRAUDLAKE_E2E_RATE:-150}
PRODUCER_DURATION=900
HISTORY_ROWS=${FRAUDLAKE_E2E_HISTORY_ROWS:-20000}
DASHBOARD_PORT=$PORT
EOF

# The broker: Apache Kafka's jars (pom.xml, profile "image") in a build context outside the clone.
KCTX=$CACHE/contexts/kafka
mkdir -p "$KCTX"
# Keyed by content (a fresh clone's files are all new), so CI's clone reuses the cache.
pom_sum=$(sha256sum services/kafka/pom.xml | cut -c1-16)
if [ "$(cat "$KCTX/libs/.complete" 2>/dev/null)" != "$pom_sum" ]; then
  say "kafka image: fetching jars with mvn"
  rm -rf "$KCTX/libs"
  (cd services/kafka && mvn -q -B -Pimage dependency:copy-dependencies -DincludeScope=runtime \
     -DoutputDirectory="$KCTX/libs") > "$WORK/mvn.log" 2>&1 \
    || { tail -n 20 "$WORK/mvn.log" >&2; echo "compose-e2e: mvn failed" >&2; exit 1; }
  echo "$pom_sum" > "$KCTX/libs/.complete"
fi
rm -rf "$KCTX/bin" && cp -r services/kafka/image/bin "$KCTX/bin"
cp services/kafka/image/Dockerfile services/kafka/image/tools-log4j2.properties \
  services/kafka/log4j2.properties "$KCTX/"
printf 'libs/.complete\n' > "$KCTX/.dockerignore"

# FerretDB: a static binary from services/ferretdb (Go caches are the user's, outside the clone).
FCTX=$CACHE/contexts/ferretdb
mkdir -p "$FCTX"
go_sum=$(cat services/ferretdb/go.mod services/ferretdb/go.sum services/ferretdb/*.go | sha256sum | cut -c1-16)
if [ ! -x "$FCTX/ferretdb" ] || [ "$(cat "$FCTX/ferretdb.sum" 2>/dev/null)" != "$go_sum" ]; then
  say "ferretdb image: go build"
  (cd services/ferretdb && CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false -trimpath" \
     "$GO" build -o "$FCTX/ferretdb" . && echo "$go_sum" > "$FCTX/ferretdb.sum") \
    > "$WORK/go.log" 2>&1 \
    || { tail -n 20 "$WORK/go.log" >&2; echo "compose-e2e: go build failed" >&2; exit 1; }
fi
cp services/ferretdb/image/Dockerfile "$FCTX/"
printf 'ferretdb.sum\n' > "$FCTX/.dockerignore"

build() {  # build IMAGE CONTEXT
  docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$1" "$2" > "$WORK/build.log" 2>&1 \
    || { tail -n 30 "$WORK/build.log" >&2; echo "compose-e2e: docker build $1 failed" >&2; exit 1; }
}
say "building fraudlake-kafka:e2e, fraudlake-ferretdb:e2e"
build fraudlake-kafka:e2e "$KCTX"
build fraudlake-ferretdb:e2e "$FCTX"

say "building the project's image (compose build, BASE_IMAGE=$BASE_IMAGE)"
compose build --quiet consumer > "$WORK/build.log" 2>&1 \
  || { tail -n 30 "$WORK/build.log" >&2; echo "compose-e2e: compose build failed" >&2; exit 1; }
docker image prune -f > /dev/null  # superseded layers: keep the cached data root from growing
record build_seconds $(( $(date +%s) - T0 ))
record image_mb "$(for i in fraudlake:e2e fraudlake-kafka:e2e fraudlake-ferretdb:e2e "$BASE_IMAGE"; do
  echo "\"$i\": $(( $(docker image inspect -f '{{.Size}}' "$i") / 1000000 ))"; done | paste -sd, | sed 's/^/{/; s/$/}/')"

# --- 3. up, healthy ------------------------------------------------------------------------
# Container ids of a service (docker's labels: much quicker than `docker-compose ps`).
cids() {
  docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" --filter "label=com.docker.compose.oneoff=False"
}
cid() { cids "$1" | head -n 1; }
field() { docker inspect -f "$2" "$1" 2>/dev/null; }

say "up -d"
compose up -d --no-build > "$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "compose up"; }
deadline=$(( $(date +%s) + 240 ))
while :; do
  pending=""
  for svc in kafka mongo dashboard; do
    c=$(cid "$svc"); h=$(field "$c" '{{.State.Health.Status}}')
    [ "$h" = unhealthy ] && fail "$svc is unhealthy" "$svc"
    [ "$h" = healthy ] || pending+=" $svc($h)"
  done
  c=$(cid kafka-init)
  if [ -n "$c" ] && [ "$(field "$c" '{{.State.Status}}')" = exited ]; then
    [ "$(field "$c" '{{.State.ExitCode}}')" = 0 ] || fail "kafka-init exited non-zero" kafka-init kafka
  else pending+=" kafka-init"; fi
  for svc in producer consumer; do
    c=$(cid "$svc")
    s=$(field "$c" '{{.State.Status}}')
    [ "$s" = exited ] && fail "$svc exited (code $(field "$c" '{{.State.ExitCode}}'))" "$svc"
    [ "$s" = running ] || pending+=" $svc(${s:-none})"
  done
  [ -z "$pending" ] && break
  [ "$(date +%s)" -lt "$deadline" ] || fail "not healthy after 240 s:$pending"
  sleep 3
done
record healthy_seconds $(( $(date +%s) - T0 ))
say "all services healthy (kafka, mongo, dashboard), kafka-init done, producer and consumer running"
[ -z "$(docker port "$(cid kafka)")$(docker port "$(cid mongo)")" ] || fail "kafka or mongo publishes a port"

# A one-off container of the consumer service (its settings and the lake volume) for the checks.
CHECKER=${PROJECT}-check
compose run -d --rm --no-deps -T --name "$CHECKER" \
  -v "$ROOT/scripts/compose_check.py:/opt/e2e/compose_check.py:ro" consumer sleep infinity >/dev/null
check() { docker exec "$CHECKER" python /opt/e2e/compose_check.py "$@"; }

# --- 4. dashboard --------------------------------------------------------------------------
[ "$(curl -s --max-time 5 "http://127.0.0.1:$PORT/_stcore/health")" = ok ] \
  || fail "dashboard does not answer on 127.0.0.1:$PORT" dashboard
# Wait for the first flags so the page has something to show.
deadline=$(( $(date +%s) + 120 ))
until [ "$(check lake | json 'd["rows"]')" -gt 0 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "no event reached the lake in 120 s" consumer producer
  sleep 3
done
say "rendering the dashboard in headless Chromium"
shot=$(.venv/bin/python scripts/dashboard_screenshot.py "http://127.0.0.1:$PORT" "$ART/dashboard.png") \
  || fail "the dashboard did not render in Chromium: $shot" dashboard
say "dashboard: $shot"
record screenshot "$ART/dashboard.png"

# --- 5. scale out, kill one consumer ----------------------------------------------------
shared() {  # shared N [GONE_MEMBER]: N members, each with partitions, all partitions assigned once
  check group > "$WORK/group.json" || return 1
  json "len(d['members']) == $1 and all(m['partitions'] for m in d['members']) and sorted(p for m in d['members'] for p in m['partitions']) == list(range($PARTITIONS)) and '${2:-}' not in [m['id'] for m in d['members']]" \
    < "$WORK/group.json" | grep -qx True
}
say "scale consumer=3"
compose up -d --no-build --no-recreate --scale consumer=3 > "$WORK/up.log" 2>&1 \
  || { cat "$WORK/up.log" >&2; fail "scale consumer=3"; }
deadline=$(( $(date +%s) + 120 ))
until shared 3; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "3 consumers do not share the partitions: $(cat "$WORK/group.json")" consumer
  sleep 3
done
say "3 consumers share the partitions: $(json "[m['partitions'] for m in d['members']]" < "$WORK/group.json")"
record scaled_group "$(cat "$WORK/group.json")"

[ "$(field "$(cid producer)" '{{.State.Status}}')" = running ] || fail "the producer stopped before the kill" producer
victim=$(cids consumer | head -n 1)
victim_ip=$(field "$victim" '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}')
moved=$(json "[m['partitions'] for m in d['members'] if m['host'] == '$victim_ip'][0]" < "$WORK/group.json")
victim_member=$(json "[m['id'] for m in d['members'] if m['host'] == '$victim_ip'][0]" < "$WORK/group.json")
before_kill=$(check lake | json 'd["rows"]')
say "docker kill $(field "$victim" '{{.Name}}') ($victim_ip, partitions $moved) mid-stream; lake rows: $before_kill"
docker kill "$victim" >/dev/null
deadline=$(( $(date +%s) + 120 ))
# Its member leaves (session timeout); the survivors (and a restarted container, should
# docker's restart policy bring it back) hold every partition.
until shared 2 "$victim_member" || shared 3 "$victim_member"; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "partitions did not move after the kill: $(cat "$WORK/group.json")" consumer
  sleep 3
done
say "partitions moved off the killed consumer: $(json "[m['partitions'] for m in d['members']]" < "$WORK/group.json")"
record after_kill_group "$(cat "$WORK/group.json")"
sleep 5  # the survivors take over the killed consumer's partitions while the producer still sends

# --- 6. drain and compare -------------------------------------------------------------------
say "stopping the producer; waiting for lag 0"
compose stop producer >/dev/null 2>&1
deadline=$(( $(date +%s) + 180 ))
until [ "$(check lag | tee "$WORK/lag.json" | json 'd["lag"]')" = 0 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "consumers did not catch up: $(cat "$WORK/lag.json")" consumer
  sleep 3
done
result=$(check verify) || fail "lake or flags differ: $result" consumer
say "verified: $result"
record verify "$result"
after_kill=$(json 'd["lake_rows"]' <<< "$result")
[ "$after_kill" -gt "$before_kill" ] || fail "no event reached the lake after the kill"

# --- 7. history, down -v --------------------------------------------------------------------
say "run --rm history"
compose run --rm -T history > "$WORK/history.log" 2>&1 || { tail -n 20 "$WORK/history.log" >&2; fail "history job failed"; }
hist=$(check history)
[ "$(json 'd["rows"]' <<< "$hist")" -gt 0 ] || fail "history wrote nothing: $hist"
say "history: $hist"
record history "$hist"

docker rm -f "$CHECKER" >/dev/null; CHECKER=""
compose logs --no-color > "$ART/stack.log" 2>&1 || true
say "down -v"
compose --profile tools down -v --remove-orphans --timeout 30 > "$WORK/down.log" 2>&1 \
  || { cat "$WORK/down.log" >&2; fail "down -v"; }
left="$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")"
left+="$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")"
left+="$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")"
[ -z "$left" ] || fail "down -v left containers, volumes or networks: $left"
record total_seconds $(( $(date +%s) - T0 ))
python3 - "$WORK/summary" "$ART/summary.json" <<'EOF'
import json, sys
pairs = [line.rstrip("\n").split("=", 1) for line in open(sys.argv[1])]
out = {}
for k, v in pairs:
    try:
        out[k] = json.loads(v)
    except ValueError:
        out[k] = v
json.dump(out, open(sys.argv[2], "w"), indent=2, sort_keys=True)
EOF
say "OK: stack up, healthy, scaled, a consumer killed, nothing lost or duplicated, flags == backtest, history written, down -v clean (summary: $ART/summary.json)"
