"""The shop-log replayer: replays into the real broker, pacing, strict mode, progress."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from clickstream.broker.embedded import EmbeddedBroker
from clickstream.errors import ConfigError, KafkaUnavailableError
from clickstream.kafka.admin import describe_topics
from clickstream.settings import Settings
from clickstream.simulators.shop import (
    MalformedRowError,
    ReplayProgress,
    RowError,
    ShopStats,
    generate_shop_rows,
    parse_start,
    read_shop_csv,
    replay_shop,
)
from tests.conftest import cli_env, read_topic
from tests.simulators.shop_logs import (
    BAD,
    GOOD,
    LOG,
    START,
    START_MS,
    as_event,
    clickstream,
    events_of,
)

# -- replaying -----------------------------------------------------------------------------------


def test_replay_through_the_cli_sends_the_good_rows_at_simulated_times(
    tmp_path: Path, broker: EmbeddedBroker, settings: Settings, new_topic: Callable[..., str]
) -> None:
    (tmp_path / "log.csv").write_text(LOG)
    topic = new_topic(create=False)
    args = ("log.csv", "--topic", topic, "--start", START, "--rate", "10")
    result = clickstream(*args, cwd=tmp_path, broker=broker)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"sent 5 events to {topic} (3 skipped malformed rows, 0 failed)\n"
    for message in BAD.values():
        assert f"{message}; skipped" in result.stderr
    records = events_of(settings, topic)
    assert [value for _, value in records] == [
        as_event(row, START_MS + k * 100) for k, row in enumerate(GOOD)
    ]
    assert [key for key, _ in records] == [str(row.user_id).encode() for row in GOOD]


def test_strict_stops_at_the_first_bad_line_after_sending_the_rows_before(
    tmp_path: Path, broker: EmbeddedBroker, settings: Settings, new_topic: Callable[..., str]
) -> None:
    (tmp_path / "log.csv").write_text(LOG)
    topic = new_topic(create=False)
    args = ("log.csv", "--topic", topic, "--start", START, "--strict")
    result = clickstream(*args, cwd=tmp_path, broker=broker)
    assert result.returncode == 1
    assert result.stdout == f"sent 2 events to {topic} (0 skipped malformed rows, 0 failed)\n"
    assert result.stderr.strip() == (
        f"error: {BAD[4]}; stopped there (strict): the 2 rows before it were sent to {topic} "
        "and acknowledged"
    )
    assert [value for _, value in events_of(settings, topic)] == [
        as_event(row, START_MS + k * 100) for k, row in enumerate(GOOD[:2])
    ]


def test_replay_api_with_start_count_and_strict(
    tmp_path: Path, settings: Settings, new_topic: Callable[..., str]
) -> None:
    (tmp_path / "log.csv").write_text(LOG)
    topic = new_topic(partitions=2)
    skipped: list[RowError] = []
    stats = replay_shop(
        settings,
        read_shop_csv(tmp_path / "log.csv"),
        topic=topic,
        rate=4,
        start=parse_start("2026-01-01T08:00:00+08:00"),
        count=4,
        on_skip=skipped.append,
    )
    assert (stats.sent, stats.delivered, stats.failed, stats.skipped) == (4, 4, 0, 3)
    assert [error.line for error in skipped] == [4, 6, 8]
    assert (stats.first_timestamp, stats.last_timestamp) == (START_MS, START_MS + 750)
    assert [value["timestamp"] for _, value in events_of(settings, topic)] == [
        START_MS, START_MS + 250, START_MS + 500, START_MS + 750,
    ]  # fmt: skip
    rows = [(line, row) for line, row in read_shop_csv(tmp_path / "log.csv")]
    with pytest.raises(MalformedRowError) as raised:
        replay_shop(settings, rows, topic=topic, rate=0, strict=True)
    assert raised.value.error.line == 4
    assert (raised.value.stats.sent, raised.value.stats.delivered) == (2, 2)
    assert len(read_topic(settings, topic)) == 6


def test_replay_rejects_bad_arguments(settings: Settings) -> None:
    rows = [GOOD[0]]
    with pytest.raises(ConfigError, match="start needs rate > 0"):
        replay_shop(settings, rows, rate=0, start=START_MS)
    with pytest.raises(ConfigError, match="rate must be >= 0"):
        replay_shop(settings, rows, rate=-1)
    with pytest.raises(ConfigError, match="count must be >= 1"):
        replay_shop(settings, rows, count=0)
    with pytest.raises(ConfigError, match="ISO 8601"):
        parse_start("yesterday")
    assert parse_start("2026-01-01T00:00:00") == START_MS  # UTC without a zone


def test_pacing_holds_the_rate_and_rate_zero_is_not_paced(
    settings: Settings, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    paced = replay_shop(settings, generate_shop_rows(1), topic=topic, rate=20, count=30)
    assert paced.sent == paced.delivered == 30
    assert paced.elapsed_s >= 1.4  # 29 intervals of 50 ms
    flat_out = replay_shop(settings, generate_shop_rows(2), topic=topic, rate=0, count=2000)
    assert flat_out.delivered == 2000
    assert flat_out.elapsed_s < 5.0  # paced at even 400/s, it would take 5 s
    now = time.time() * 1000
    stamps = [value["timestamp"] for _, value in read_topic(settings, topic)]
    assert len(stamps) == 2030
    assert all(now - 30_000 < stamp <= now for stamp in stamps)  # the time of sending
    simulated = replay_shop(
        settings, generate_shop_rows(3), topic=topic, rate=10, start=START_MS, count=300
    )
    assert simulated.last_timestamp == START_MS + 29_900
    assert simulated.elapsed_s < 5.0  # 30 s of event time, sent as fast as possible


def test_duration_and_stop_end_a_synthetic_replay(
    settings: Settings, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    timed = replay_shop(settings, generate_shop_rows(3), topic=topic, rate=50, duration_s=0.5)
    assert 15 <= timed.sent <= 25  # rows due before the deadline: 0, 20 ms ... 480 ms
    assert not timed.interrupted
    stop = threading.Event()
    threading.Timer(0.4, stop.set).start()
    began = time.monotonic()
    stopped = replay_shop(settings, generate_shop_rows(4), topic=topic, rate=5, stop=stop)
    assert time.monotonic() - began < 1.5  # the 200 ms sleeps end at once
    assert stopped.interrupted
    assert 1 <= stopped.sent == stopped.delivered <= 4
    assert len(read_topic(settings, topic)) == timed.sent + stopped.sent


def test_ctrl_c_flushes_and_prints_the_summary(
    tmp_path: Path, broker: EmbeddedBroker, settings: Settings, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(create=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "clickstream", "simulate", "shop", "--endless", "--rate", "200",
         "--topic", topic, "--seed", "1"],
        cwd=tmp_path,
        env=cli_env(CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60  # started, and sending (Python's start-up takes seconds)
    while not _has_records(settings, topic) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"still running 30 s after Ctrl-C; stdout: {out!r}; stderr: {err[-3000:]}")
    assert process.returncode == 0, err
    sent = int(out.split()[1])
    assert out == f"sent {sent} events to {topic} (0 skipped malformed rows, 0 failed)\n"
    assert sent > 0
    assert "stopped early" in err
    assert len(read_topic(settings, topic)) == sent


def test_progress_logs_a_line_every_interval_and_the_first_skips(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stats = ShopStats(topic="shop")
    with ReplayProgress("shop", 100, live=False, every_s=0.05, shown_skips=2) as progress:
        progress(stats)  # too early
        time.sleep(0.06)
        stats.sent, stats.delivered = 40, 38
        progress(stats)
        progress(stats)  # too early again
        for line in (3, 5, 9):
            progress.skipped(RowError(line, "gender must be 0, 1 or 2 (got 'x')"))
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4
    assert err[0].startswith("shop: 40 events sent (")
    assert err[0].endswith("38 delivered, 0 failed, 0 malformed rows skipped")
    assert err[1:] == [
        "line 3: gender must be 0, 1 or 2 (got 'x'); skipped",
        "line 5: gender must be 0, 1 or 2 (got 'x'); skipped",
        "more malformed rows: skipped and counted, not shown",
    ]


def _has_records(settings: Settings, topic: str) -> bool:
    try:
        topics = describe_topics(settings)
    except KafkaUnavailableError:  # the topic's leader not known yet
        return False
    return any(t.name == topic and t.records > 0 for t in topics)
