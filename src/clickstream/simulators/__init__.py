"""Traffic simulators: realistic demo and test traffic sent through the collector."""
