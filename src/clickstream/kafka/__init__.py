"""Kafka clients: configuration, topics, producers, consumers, exact offsets."""
