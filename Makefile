# The README's two commands, and the developers' (README.md, Development).
.PHONY: up test lint bench clean

up:
	python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/clickstream up

test:
	python3 -m venv .venv && .venv/bin/pip install -e ".[dev]" && .venv/bin/python -m pytest

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

# Every bench, each at its smallest size by default (`make bench BENCH_ARGS=` for the full
# figures of docs/benchmarks.md: hours). bookstore.py runs only with a Cassandra in the settings.
BENCHES = kafka_read sessions joins scale count_reduce_cost collector collector_outage \
	dashboard_latency songs_latency cold_start soak capacity
BENCH_ARGS ?= --smoke
bench:
	cd bench && for name in $(BENCHES) $${CLICKSTREAM_CASSANDRA_CONTACT_POINTS:+bookstore}; do \
		echo "== bench/$$name.py $(BENCH_ARGS)"; \
		../.venv/bin/python $$name.py $(BENCH_ARGS) || exit 1; \
	done

clean:
	rm -rf .venv .clickstream build *.egg-info
