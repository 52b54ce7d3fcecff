# Sourced by the kafka-*.sh tools: a small, quick-starting client JVM (not the broker's heap),
# logging warnings only, to stderr, so the tools' output stays parseable.
export KAFKA_HEAP_OPTS="-Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
export KAFKA_LOG4J_CONFIG=/opt/kafka/config/tools-log4j2.properties
