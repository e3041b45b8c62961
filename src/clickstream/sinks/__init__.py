"""Sinks: each writes one micro-batch idempotently (a replayed batch never adds rows twice)."""
