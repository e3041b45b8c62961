# The README's two commands, and a few more for developers.
.PHONY: up test lint bench clean

up:
	python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/clickstream up

test:
	python3 -m venv .venv && .venv/bin/pip install -e ".[dev]" && .venv/bin/python -m pytest

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

bench:
	.venv/bin/python bench/kafka_read.py

clean:
	rm -rf .venv .clickstream build *.egg-info
