"""Spark: the session, the Kafka source and the Kafka write helper."""
