"""Streaming jobs: each reads topics, transforms, and writes to sinks. One module per job."""
