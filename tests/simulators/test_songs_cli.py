"""``clickstream simulate songs`` through the CLI: the summary line, the log of delivery
reports, several artists, clear usage errors."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from clickstream.broker.embedded import EmbeddedBroker
from clickstream.events.songs import CATALOG
from clickstream.settings import Settings
from tests.conftest import cli_env, read_topic

pytestmark = pytest.mark.slow


def songs(*args: str, cwd: Path, broker: EmbeddedBroker) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clickstream", "simulate", "songs", *args],
        cwd=cwd,
        env=cli_env(CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_plays_two_artists_and_prints_the_delivery_summary(
    tmp_path: Path, broker: EmbeddedBroker, settings: Settings, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(create=False)
    result = songs(
        "--topic", topic, "--count", "40", "--rate", "0", "--artist", "tony-allen",
        "--artist", "william-onyeabor", "--log-file", "producer.log",
        cwd=tmp_path, broker=broker,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        rf"sent 40 plays to {re.escape(topic)} in [\d.]+s \([\d,.]+/s\): 40 delivered, 0 failed\n",
        result.stdout,
    )
    lines = (tmp_path / "producer.log").read_text().splitlines()
    assert len(lines) == 40
    assert all(f"delivered to {topic}[" in line for line in lines)
    plays = [value for _, value in read_topic(settings, topic)]
    assert Counter(p["artist"] for p in plays) == {"tony-allen": 20, "william-onyeabor": 20}
    assert all(p["song_name"] == CATALOG[p["artist"]][p["song_id"]] for p in plays)


def test_cli_refuses_endless_without_a_stop_and_unknown_artists(
    tmp_path: Path, broker: EmbeddedBroker
) -> None:
    result = songs("--rate", "5", cwd=tmp_path, broker=broker)
    assert result.returncode == 2
    assert "give --count, --duration or --endless" in result.stderr
    result = songs("--count", "1", "--artist", "nobody", cwd=tmp_path, broker=broker)
    assert result.returncode == 2
    assert "unknown artist 'nobody'; artists: tony-allen" in result.stderr
