#!/bin/bash
# As in the Kafka distribution (kafka.tools.StorageTool), with a small client JVM and warnings only, on stderr.
. /opt/kafka/bin/tool-env.sh
exec /opt/kafka/bin/kafka-run-class.sh kafka.tools.StorageTool "$@"
