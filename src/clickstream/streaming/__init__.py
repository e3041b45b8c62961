"""The streaming engine: the runner, checkpoints, parsing, query specs and one counting engine
(counts, tally, reduce). Jobs (:mod:`clickstream.jobs`) are built from it."""
