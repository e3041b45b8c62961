"""The seed's whole flow, live: the shop replay runs, the Spark job counts per second, and the
dashboard's gender chart in headless Chromium changes as the counts arrive."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clickstream.jobs import builder
from clickstream.settings import Settings
from clickstream.simulators.shop import generate_shop_rows, replay_shop
from clickstream.streaming.runner import start_job
from tests.dashboard.conftest import RunningDashboard
from tests.dashboard.test_page import ARTIFACTS, Page, open_page  # noqa: F401 (fixture)
from tests.jobs.counts_support import count_settings

pytestmark = pytest.mark.slow


def test_gender_chart_follows_a_running_shop_replay(
    spark: Any,
    settings: Settings,
    tmp_path: Path,
    start_dashboard: Callable[..., RunningDashboard],
    open_page: Callable[[str], Page],  # noqa: F811
) -> None:
    s = count_settings(settings, tmp_path)
    stop = threading.Event()
    replay = threading.Thread(
        target=replay_shop,
        args=(s, generate_shop_rows(seed=7)),
        kwargs={"rate": 40, "stop": stop, "topic": s.topics.shop},
        daemon=True,
    )
    replay.start()
    job = start_job(spark, s, builder("shop"))
    try:
        dashboard = start_dashboard(s)
        page = open_page(dashboard.url)
        first = page.wait_chart("shop.gender", "points >= 2", timeout_s=120)
        later = page.wait_chart("shop.gender", f"points >= {first['points'] + 3}", timeout_s=60)
        assert later["last"] != {}
        assert set(later["last"]) <= {"female", "male", "unknown"}
        assert sum(later["last"].values()) > 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.page.screenshot(path=str(ARTIFACTS / "dashboard-live-shop.png"), full_page=True)
        assert page.errors == []
        assert page.outside == []
    finally:
        stop.set()
        replay.join(30)
        job.stop()
