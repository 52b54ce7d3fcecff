#!/bin/bash
# Start the broker as apache/kafka's image does: every KAFKA_* variable (but the JVM ones) becomes
# a server.properties line (KAFKA_LOG_DIRS -> log.dirs; "__" -> "_", "___" -> "-"), and the
# storage is formatted with CLUSTER_ID on first start.
set -euo pipefail
props=/opt/kafka/config/server.properties
: > "$props"
while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_LOG4J_CONFIG|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_VERSION) continue ;;
    KAFKA_*) key=${name#KAFKA_}
             key=$(echo "$key" | tr '[:upper:]' '[:lower:]' | sed 's/___/-/g; s/__/@/g; s/_/./g; s/@/_/g')
             echo "$key=$value" >> "$props" ;;
  esac
done < <(env)
: "${CLUSTER_ID:?set CLUSTER_ID (a 22-character base64 cluster id)}"
log_dirs=$(sed -n 's/^log\.dirs=//p' "$props")
if [ ! -f "${log_dirs%%,*}/meta.properties" ]; then
  /opt/kafka/bin/kafka-storage.sh format \
    --ignore-formatted -t "$CLUSTER_ID" -c "$props"
fi
exec /opt/kafka/bin/kafka-run-class.sh kafka.Kafka "$props"
