"""The benches that start a broker (or a whole `up`) of their own, at their smallest size: a
module apart from ``test_smoke.py`` (whose checks they share) so that pytest-xdist runs the two
groups on two workers."""

from __future__ import annotations

import pytest

from tests.bench.test_smoke import bench_env, check, run_bench


@pytest.mark.parametrize("name", ["capacity", "soak", "cold_start", "collector_outage"])
def test_bench_with_its_own_broker(name: str) -> None:
    check(name, run_bench(name, bench_env()))
