"""The shop simulator's run, in-process: a log replayed with its progress, a stop heard, a
synthetic log written (the command's own tests are in test_shop_simulator and test_shop_log)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from clickstream.errors import ClickstreamError
from clickstream.settings import Settings
from clickstream.simulators.shop import (
    MalformedRowError,
    ShopLogError,
    count_rows,
    read_shop_csv,
)
from clickstream.simulators.shop_run import ShopSource, run_replay, write_synthetic_log
from tests.conftest import read_topic
from tests.simulators.shop_logs import BAD, GOOD, LOG, START_MS, as_event, events_of


def test_a_log_is_replayed_with_its_skips_shown_and_a_strict_one_stops_at_the_bad_row(
    tmp_path: Path,
    settings: Settings,
    new_topic: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = tmp_path / "log.csv"
    log.write_text(LOG)
    topic = new_topic(create=False)
    with ShopSource(log) as source:
        assert source.total(None) == count_rows(log)  # the progress's total: the file's rows
        assert source.total(3) == 3
        stats = run_replay(
            settings, source, stop=threading.Event(), topic=topic, rate=10, start_ms=START_MS
        )
    assert source.rows._file.closed  # type: ignore[attr-defined]
    assert (stats.sent, stats.delivered, stats.skipped, stats.interrupted) == (5, 5, 3, False)
    err = capsys.readouterr().err
    for message in BAD.values():
        assert f"{message}; skipped" in err
    assert [value for _, value in events_of(settings, topic)] == [
        as_event(row, START_MS + k * 100) for k, row in enumerate(GOOD)
    ]
    with pytest.raises(MalformedRowError) as raised, ShopSource(log) as source:
        run_replay(settings, source, stop=threading.Event(), topic=topic, rate=0, strict=True)
    assert (raised.value.stats.sent, raised.value.stats.delivered) == (2, 2)
    assert len(read_topic(settings, topic)) == 7


def test_a_bad_header_is_refused_when_the_source_opens(tmp_path: Path) -> None:
    log = tmp_path / "short.csv"
    log.write_text("user_id,item_id\n1,2\n")
    with pytest.raises(ShopLogError, match=r"short\.csv: the header"):
        ShopSource(log)


def test_synthetic_rows_stop_when_told(settings: Settings, new_topic: Callable[..., str]) -> None:
    topic = new_topic()
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    with ShopSource(None, seed=3) as source:
        assert source.total(None) is None  # endless
        stats = run_replay(settings, source, stop=stop, topic=topic, rate=50)
    timer.join()
    assert stats.interrupted
    assert 10 <= stats.sent == stats.delivered <= 200
    assert len(read_topic(settings, topic)) == stats.sent


def test_a_synthetic_log_is_written_once_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "log.csv"
    written, users = write_synthetic_log(out, 300, seed=5, force=False)
    rows = [row for _, row in read_shop_csv(out)]
    assert written == len(rows) == 300
    assert users == len({row.user_id for row in rows})  # type: ignore[union-attr]
    assert 1 < users < 300
    with pytest.raises(ClickstreamError, match="already exists: pass --force"):
        write_synthetic_log(out, 10, seed=5, force=False)
    assert write_synthetic_log(out, 10, seed=6, force=True)[0] == 10
    assert len(list(read_shop_csv(out))) == 10
