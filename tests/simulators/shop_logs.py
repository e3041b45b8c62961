"""A small shopping log with known good and malformed lines, and helpers for the shop tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from clickstream.broker.embedded import EmbeddedBroker
from clickstream.events.shop import COLUMNS
from clickstream.settings import Settings
from clickstream.simulators.shop import (
    RowError,
    ShopRow,
    read_shop_csv,
)
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
