"""Event contracts: one schema per event kind, shared by the collector, simulators and jobs."""
