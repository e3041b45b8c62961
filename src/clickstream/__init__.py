"""clickstream: self-hosted, real-time user-event analytics on Kafka and Spark."""

__version__ = "0.1.0.dev0"
