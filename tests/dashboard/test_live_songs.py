"""Top songs, live: ``simulate songs`` plays two artists, the ``songs`` job counts, and the
dashboard's panels in headless Chromium draw one bar chart per artist; then the seed's own
producer (re-created), pointed at our broker, shows up there too."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clickstream.jobs import builder
from clickstream.settings import Settings
from clickstream.simulators.songs import generate_plays, play_songs
from clickstream.streaming.runner import start_job
from tests.conftest import read_topic
from tests.dashboard.conftest import RunningDashboard
from tests.dashboard.test_page import ARTIFACTS, Page, open_page  # noqa: F401 (fixture)
from tests.jobs.songs_support import seed_producer, songs_settings

pytestmark = pytest.mark.slow


def test_top_songs_panels_follow_the_plays(
    spark: Any,
    settings: Settings,
    tmp_path: Path,
    start_dashboard: Callable[..., RunningDashboard],
    open_page: Callable[[str], Page],  # noqa: F811
) -> None:
    s = songs_settings(settings, tmp_path)
    stop = threading.Event()
    plays = threading.Thread(
        target=play_songs,
        args=(s, generate_plays(["tony-allen", "ebo-taylor"], times="now", seed=1)),
        kwargs={"rate": 20, "stop": stop},
        daemon=True,
    )
    plays.start()
    job = start_job(spark, s, builder("songs"))
    try:
        page = open_page(start_dashboard(s).url)
        first = page.wait_chart("songs.minute", "Object.keys(last).length >= 2", timeout_s=120)
        assert {key.split("/")[0] for key in first["last"]} <= {"tony-allen", "ebo-taylor"}
        # Both artists counted (two keys may be two songs of one: keys are artist/song).
        both = "new Set(Object.keys(last).map(k => k.split('/')[0])).size >= 2"
        page.wait_chart("songs.all", both, timeout_s=30)
        artists = page.page.eval_on_selector_all(
            '.chart[data-metric="songs.all"] .artist', "els => els.map(e => e.dataset.artist)"
        )
        assert artists == ["ebo-taylor", "tony-allen"]
        bars = page.page.eval_on_selector_all(
            '.chart[data-metric="songs.all"] .artist[data-artist="tony-allen"] li .value',
            "els => els.map(e => Number(e.textContent.replace(/,/g, '')))",
        )
        assert bars
        assert bars == sorted(bars, reverse=True)

        stop.set()
        plays.join(30)
        total = "Object.values(last).reduce((a, b) => a + b, 0)"
        before = len(read_topic(s, s.songs.topic))  # every play sent, all flushed
        settled = page.wait_chart("songs.all", f"{total} === {before}", timeout_s=30)
        seed_producer(str(s.kafka.bootstrap_servers), s.songs.topic, 5)
        after = page.wait_chart("songs.all", f"{total} === {before + 5}", timeout_s=60)
        tony = sum(c for k, c in after["last"].items() if k.startswith("tony-allen/"))
        assert tony == sum(c for k, c in settled["last"].items() if k.startswith("tony-allen/")) + 5
        ARTIFACTS.mkdir(exist_ok=True)
        page.page.screenshot(path=str(ARTIFACTS / "dashboard-live-songs.png"), full_page=True)
        assert page.errors == []
        assert page.outside == []
    finally:
        stop.set()
        plays.join(30)
        job.stop()
