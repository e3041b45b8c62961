"""One `clickstream up` shared by the tests of this folder that only watch or poke it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.up.support import RunningUp, up_env


@pytest.fixture(scope="package")
def running_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningUp]:
    """One `up` with the shop job and simulator only (the web one at 1 event/s), shared by the
    tests of this folder that take it: it is stopped once they all ran."""
    data_dir = tmp_path_factory.mktemp("up")
    up = RunningUp(up_env(data_dir), "--rate", "1", "--shop-rate", "20", "--jobs", "shop")
    try:
        yield up
    finally:
        up.stop(("broker", "collector", "dashboard", "jobs", "web-sim", "shop-sim"))
