"""The HTTP collector: validates events, enriches them, and produces them to Kafka."""
