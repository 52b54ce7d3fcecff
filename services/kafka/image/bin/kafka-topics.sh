#!/bin/bash
# As in the Kafka distribution (org.apache.kafka.tools.TopicCommand), with a small client JVM and warnings only, on stderr.
. /opt/kafka/bin/tool-env.sh
exec /opt/kafka/bin/kafka-run-class.sh org.apache.kafka.tools.TopicCommand "$@"
