"""The embedded broker: Apache Kafka in KRaft combined mode, started from its Maven jars."""
