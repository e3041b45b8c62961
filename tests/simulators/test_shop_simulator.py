"""The shop-log replayer: reading a log, synthetic rows, and replays into the real broker."""

from __future__ import annotations

import calendar
import itertools
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clickstream.broker.embedded import EmbeddedBroker
from clickstream.errors import ConfigError
from clickstream.events.shop import COLUMNS, ShopEvent
from clickstream.settings import Settings
from clickstream.simulators.shop import (
    MalformedRowError,
    ReplayProgress,
    RowError,
    ShopLogError,
    ShopRow,
    ShopStats,
    count_rows,
    generate_shop_rows,
    parse_start,
    read_shop_csv,
    replay_shop,
    write_shop_csv,
)
from clickstream.simulators.shop_data import PROVINCES
from tests.conftest import cli_env, read_topic

HEADER = ",".join(COLUMNS)
START = "2026-01-01T00:00:00Z"
START_MS = 1_767_225_600_000

# Good rows on lines 2, 3, 5, 9 and 10; lines 4, 6 and 8 are malformed; line 7 is blank.
LOG = f"""{HEADER}
328862,323294,833,2882,2661,08,29,0,0,1,Inner Mongolia
328862,844400,1271,2882,2661,08,29,0,1,,Shanxi
234512,57x,1271,2882,2661,08,29,0,1,1,Shanxi
234512,575153,1271,2882,,11,11,2,,0,Zhejiang
101,996875,1271,2882,2661,08,29,0,1,x,Jilin

101,996875,1271,2882,2661,08,29,0
101,"1086186",1271,1253,1049,10,01,3,7,2,"Hong Kong"
77,1,2,3,4,05,11,1,8,0,
"""
GOOD = [
    ShopRow(328862, 323294, 833, 2882, 2661, 8, 29, 0, 0, 1, "Inner Mongolia"),
    ShopRow(328862, 844400, 1271, 2882, 2661, 8, 29, 0, 1, None, "Shanxi"),
    ShopRow(234512, 575153, 1271, 2882, None, 11, 11, 2, None, 0, "Zhejiang"),
    ShopRow(101, 1086186, 1271, 1253, 1049, 10, 1, 3, 7, 2, "Hong Kong"),
    ShopRow(77, 1, 2, 3, 4, 5, 11, 1, 8, 0, None),
]
ID = "must be a non-negative integer below 2^63"
BAD = {
    4: f"line 4: item_id {ID} (got '57x')",
    6: "line 6: gender must be 0, 1 or 2 (got 'x')",
    8: "line 8: expected 11 columns, got 8",
}


def clickstream(
    *args: str, cwd: Path, broker: EmbeddedBroker | None = None
) -> subprocess.CompletedProcess[str]:
    env = cli_env(CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap) if broker else cli_env()
    return subprocess.run(
        [sys.executable, "-m", "clickstream", "simulate", "shop", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def events_of(settings: Settings, topic: str) -> list[tuple[bytes, dict[str, Any]]]:
    """The topic's records, in event-time order."""
    return sorted(read_topic(settings, topic), key=lambda record: record[1]["timestamp"])


def as_event(row: ShopRow, timestamp: int) -> dict[str, Any]:
    return {**row._asdict(), "timestamp": timestamp}


def read(tmp_path: Path, text: str | bytes) -> list[tuple[int, ShopRow | RowError]]:
    path = tmp_path / "log.csv"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return list(read_shop_csv(path))


# -- reading -------------------------------------------------------------------------------------


def test_reads_typed_rows_and_names_each_malformed_line(tmp_path: Path) -> None:
    rows = read(tmp_path, LOG)
    assert [row for _, row in rows if isinstance(row, ShopRow)] == GOOD
    assert [line for line, row in rows if isinstance(row, ShopRow)] == [2, 3, 5, 9, 10]
    errors = [row for _, row in rows if isinstance(row, RowError)]
    assert {error.line: str(error) for error in errors} == BAD
    assert (errors[1].column, errors[1].value) == ("gender", "x")


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ("1,2,3,4,5,13,01,0,1,1,Hebei", "month must be an integer from 1 to 12 (got '13')"),
        ("1,2,3,4,5,06,00,0,1,1,Hebei", "day must be an integer from 1 to 31 (got '00')"),
        ("1,2,3,4,5,06,01,4,1,1,Hebei", "action must be 0, 1, 2 or 3 (got '4')"),
        ("1,2,3,4,5,06,01,,1,1,Hebei", "action must be 0, 1, 2 or 3 (got '')"),
        ("1,2,3,4,5,06,01,0,9,1,Hebei", "age_range must be an integer from 0 to 8 (got '9')"),
        ("1,2,3,4,5,06,01,0,1,3,Hebei", "gender must be 0, 1 or 2 (got '3')"),
        (",2,3,4,5,06,01,0,1,1,Hebei", f"user_id {ID} (got '')"),
        ("1,-2,3,4,5,06,01,0,1,1,Hebei", f"item_id {ID} (got '-2')"),
        ("1,2,3.0,4,5,06,01,0,1,1,Hebei", f"cat_id {ID} (got '3.0')"),
        (f"1,2,3,{2**63},5,06,01,0,1,1,Hebei", f"merchant_id {ID} (got '{2**63}')"),
        ("1,2,3,4,1_0,06,01,0,1,1,Hebei", f"brand_id {ID} (got '1_0')"),
    ],
)  # fmt: skip
def test_a_bad_value_names_its_line_column_and_value(
    tmp_path: Path, cells: str, message: str
) -> None:
    good = "5,6,7,8,9,06,01,0,1,1,Hebei"
    ((_, first), (_, error), (_, last)) = read(tmp_path, f"{HEADER}\n{good}\n{cells}\n{good}\n")
    assert isinstance(first, ShopRow)
    assert isinstance(last, ShopRow)
    assert str(error) == f"line 3: {message}"


def test_header_in_any_order_and_case_with_a_bom_and_crlf(tmp_path: Path) -> None:
    columns = ["note", *reversed(COLUMNS)]  # a column we do not know is ignored
    header = ",".join(
        name.upper() if i % 2 else f" {name.title()} " for i, name in enumerate(columns)
    )
    cells = ["hi", "Guangdong", "0", "3", "2", "11", "11", "", "4", "3", "2", "1"]  # reversed
    text = f"\ufeff{header}\r\n{','.join(cells)}\r\n\r\n"
    assert read(tmp_path, text) == [(2, ShopRow(1, 2, 3, 4, None, 11, 11, 2, 3, 0, "Guangdong"))]


def test_empty_and_null_cells_are_none_where_the_contract_allows(tmp_path: Path) -> None:
    text = f"{HEADER}\n 7 , NULL ,,null,, , ,0,,,  \n"
    row = ShopRow(7, None, None, None, None, None, None, 0, None, None, None)
    assert read(tmp_path, text) == [(2, row)]


def test_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    good = "5,6,7,8,9,06,01,0,1,1,Hebei"
    text = (
        f'{HEADER}\n{good}\n1,2,3,4,5,06,01,0,1,1,"Hei\nlong"\n\n\n{good}\n1,2,3,4,5,06,01,0,1,1\n'
    )
    rows = read(tmp_path, text)
    assert [line for line, _ in rows] == [2, 3, 7, 8]
    assert rows[1][1] == ShopRow(1, 2, 3, 4, 5, 6, 1, 0, 1, 1, "Hei\nlong")
    assert str(rows[3][1]) == "line 8: expected 11 columns, got 10"


def test_a_line_that_is_not_utf8_is_a_malformed_row(tmp_path: Path) -> None:
    good = b"5,6,7,8,9,06,01,0,1,1,Hebei\n"
    rows = read(
        tmp_path, HEADER.encode() + b"\n" + good + b"1,2,3,4,5,06,01,0,1,1,\xff\xfe\n" + good
    )
    assert [(line, str(row)) for line, row in rows if isinstance(row, RowError)] == [
        (3, "line 3: is not valid UTF-8 text")
    ]
    assert len(rows) == 3


def test_header_missing_a_column_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(HEADER.replace(",province", "") + "\n1,2,3,4,5,06,01,0,1,1\n")
    with pytest.raises(
        ShopLogError, match=r"log\.csv: the header \(line 1\) has no column province"
    ):
        read_shop_csv(path)
    path.write_text("328862,323294,833,2882,2661,08,29,0,0,1,Inner Mongolia\n")
    with pytest.raises(ShopLogError, match="has no columns user_id, item_id, cat_id"):
        read_shop_csv(path)
    path.write_text(HEADER + ",Gender\n")
    with pytest.raises(ShopLogError, match="repeats gender"):
        read_shop_csv(path)
    path.write_text("")
    with pytest.raises(ShopLogError, match="is empty"):
        read_shop_csv(path)
    with pytest.raises(ShopLogError, match=r"cannot read .*nope\.csv"):
        read_shop_csv(tmp_path / "nope.csv")
    result = clickstream("short.csv", cwd=tmp_path)  # fails before connecting to Kafka
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot read short.csv")
    (tmp_path / "short.csv").write_text("user_id,action\n1,0\n")
    result = clickstream("short.csv", cwd=tmp_path)
    assert result.returncode == 1
    assert "has no columns item_id, cat_id, merchant_id, brand_id, month, day" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_count_rows(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(LOG)
    assert count_rows(path) == 9
    path.write_text(LOG.rstrip("\n"))
    assert count_rows(path) == 9
    assert count_rows(path, max_bytes=10) is None
    assert count_rows(tmp_path / "nope.csv") is None


# -- synthetic rows ------------------------------------------------------------------------------


def test_generator_is_deterministic_for_a_seed() -> None:
    first = list(itertools.islice(generate_shop_rows(11), 300))
    assert first == list(itertools.islice(generate_shop_rows(11), 300))
    assert first != list(itertools.islice(generate_shop_rows(12), 300))


def test_written_rows_read_back_the_same(tmp_path: Path) -> None:
    rows = list(itertools.islice(generate_shop_rows(5), 2000))
    for path in (tmp_path / "log.csv", tmp_path / "log.csv.gz"):
        assert write_shop_csv(path, rows) == 2000
        assert [row for _, row in read_shop_csv(path)] == rows
        with pytest.raises(ShopLogError, match="already exists"):
            write_shop_csv(path, rows[:1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "log.csv.gz"]  # no temp file


def test_generate_writes_a_plausible_log(tmp_path: Path) -> None:
    result = clickstream("--generate", "5000", "--out", "log.csv", "--seed", "7", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wrote 5000 rows (")
    assert result.stdout.rstrip().endswith("users) to log.csv")
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0] == HEADER
    assert len(lines) == 5001
    assert all(len(line.split(",")[5]) == 2 and len(line.split(",")[6]) == 2 for line in lines[1:])
    parsed = list(read_shop_csv(tmp_path / "log.csv"))
    rows = [row for _, row in parsed]
    assert all(isinstance(row, ShopRow) for row in rows), [
        r for r in rows if not isinstance(r, ShopRow)
    ][:3]
    good = [row for row in rows if isinstance(row, ShopRow)]
    for row in good:  # every row fits the contract
        msgspec.convert(as_event(row, START_MS), ShopEvent)

    def share(field: str, value: object) -> float:
        return float(sum(getattr(row, field) == value for row in good) / len(good))

    assert 0.55 <= share("gender", 0) <= 0.70
    assert 0.20 <= share("gender", 1) <= 0.30
    assert 0.85 <= share("action", 0) <= 0.90
    assert 0.005 <= share("action", 1) <= 0.02
    assert 0.045 <= share("action", 2) <= 0.07
    assert 0.045 <= share("action", 3) <= 0.07
    assert 0.005 <= share("brand_id", None) <= 0.06
    assert 0.01 <= share("age_range", None) <= 0.10
    assert {row.age_range for row in good} == {None, *range(9)}
    assert {row.month for row in good} == set(range(5, 12))
    assert all(1 <= row.day <= calendar.monthrange(2015, row.month)[1] for row in good)  # type: ignore[arg-type,operator]
    assert {row.province for row in good} - {None} <= set(PROVINCES)
    assert len({row.province for row in good}) > 20
    per_user = Counter(row.user_id for row in good)
    assert len(per_user) < len(good) / 5  # shoppers come back
    assert sum(n for n in per_user.values() if n >= 3) > 0.8 * len(good)
    for user in list(per_user)[:50]:  # a shopper keeps one gender, age range and province
        assert len({(r.gender, r.age_range, r.province) for r in good if r.user_id == user}) == 1

    again = clickstream("--generate", "10", "--out", "log.csv", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip() == "error: log.csv already exists: pass --force to overwrite it"
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 5001
    forced = clickstream("--generate", "10", "--out", "log.csv", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 11
    alone = clickstream("--generate", "10", cwd=tmp_path)
    assert alone.returncode == 2
    assert "--generate N and --out FILE go together" in alone.stderr


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
    time.sleep(2.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
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
