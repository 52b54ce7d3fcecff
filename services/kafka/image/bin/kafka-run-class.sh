#!/bin/bash
# Run one Kafka class on the image's classpath (as Kafka's own bin/kafka-run-class.sh does).
set -euo pipefail
log4j=${KAFKA_LOG4J_CONFIG:-/opt/kafka/config/log4j2.properties}
# shellcheck disable=SC2086  # the *_OPTS variables hold several JVM flags
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} ${KAFKA_OPTS:-} -Dlog4j2.configurationFile="$log4j" \
  -cp '/opt/kafka/libs/*' "$@"
