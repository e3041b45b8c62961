"""Every bench runs at its smallest size (``--smoke``) and prints its table with the columns it
always printed and numbers in them. A bench that breaks fails here. Benches that read a broker
share the session's (``CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS``); bookstore.py gets the Cassandra
node of tests/bookstore; cold_start, soak, capacity and collector_outage start their own (they
measure `up`, or kill the broker): they are in ``test_smoke_up.py``, a module of its own, so
that pytest-xdist can run them beside these."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from clickstream.settings import Settings
from tests.cassandra_node import CassandraNode
from tests.conftest import JARS_DIR

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[2] / "bench"
NUMBER = re.compile(r"^(-?[\d,]+(\.\d+)?x?|nan)$")


@dataclass(frozen=True)
class Expect:
    heads: tuple[str, ...]
    numbers: tuple[str, ...]
    """Columns whose every cell is a number."""
    exits: tuple[int, ...] = (0,)
    lines: tuple[str, ...] = ()
    """Patterns that lines of the output must match (what a bench prints after its tables)."""


EXPECT: dict[str, list[Expect]] = {
    "kafka_read": [
        Expect(("side", "reader", "seconds", "events/s", "vs raw librdkafka"),
               ("seconds", "events/s"))
    ],
    "sessions": [
        Expect(("side", "run", "seconds", "events/s", "rows read", "sessions written", "expected"),
               ("seconds", "events/s", "rows read"))
    ],
    "joins": [
        Expect(("run", "records", "seconds", "records/s", "of floor", "µs/record first",
                "µs/record last", "in batch s", "engine s", "matched", "typed"),
               ("seconds", "records/s")),
        Expect(("run", "in batch s", "reduce s", "merge s", "dead letters s", "warehouse s",
                "results s"), ("in batch s", "reduce s", "warehouse s", "results s")),
    ],
    "scale": [
        Expect(("master", "events/batch", "side", "records", "rows read", "batches", "seconds",
                "records/s", "exact"), ("records", "rows read", "batches", "seconds", "records/s"))
    ],
    "count_reduce_cost": [
        Expect(("plays/batch", "collect + count (ms)", "mapInArrow (ms)", "ratio"),
               ("plays/batch", "collect + count (ms)", "mapInArrow (ms)", "ratio"))
    ],
    "collector": [
        Expect(("scenario", "events/s", "requests/s", "p50 ms", "p99 ms", "non-2xx", "sock err",
                "in Kafka", "Kafka - accepted", "server CPU µs/event", "cores srv/brk/gen/other"),
               ("events/s", "requests/s", "p50 ms", "p99 ms", "non-2xx", "in Kafka"))
    ],
    "collector_outage": [
        Expect(("run", "answers by status", "503 max (s)", "503 but stored",
                "of them sent before", "in flight at the failure", "2xx missing",
                "stored twice", "broker down (s)"),
               ("run", "503 max (s)", "503 but stored", "2xx missing", "broker down (s)"))
    ],
    "dashboard_latency": [
        Expect(("variant", "events/s", "sent", "measured", "p50 (s)", "p99 (s)", "max (s)",
                "missing", "extra", "job cores"),
               ("events/s", "sent", "measured", "p50 (s)", "missing", "job cores"))
    ],
    "songs_latency": [
        Expect(("plays/s", "sent", "measured", "p50 (s)", "p99 (s)", "max (s)", "missing"),
               ("plays/s", "sent", "measured", "p50 (s)", "missing"))
    ],
    "cold_start": [
        Expect(("side", "first data point", "median (s)", "min (s)", "max (s)",
                "runs with data"), ())
    ],
    "soak": [  # a 1-minute soak may miss a target (exit 1): the tables are what is checked
        Expect(("part", "cores", "MB after warm-up", "MB at the end", "growth MB/h"),
               ("cores", "MB after warm-up", "MB at the end"), (0, 1)),
        Expect(("query", "largest lag", "last lag", "lag grew"), ("largest lag", "last lag")),
    ],
    "capacity": [  # a smoke step may not hold (a busy machine): the rows and summary are checked
        Expect(("step", "events/s asked", "delivered", "held", "first to fall behind",
                "stack cores", "broker", "collector", "jobs", "dashboard", "bookstore",
                "generator cores", "web-sim", "shop-sim", "other sims", "machine", "note"),
               ("events/s asked", "delivered", "stack cores", "broker", "collector", "jobs",
                "generator cores", "web-sim", "shop-sim", "machine"),
               lines=(r"^capacity: (at least |below )?[\d,]+ events/s \(web:shop = 1:1; jobs shop "
                      r"only\)",
                      r"^at [\d,]+ events/s: the stack [\d.]+ cores \(broker [\d.]+, .*the load "
                      r"generators [\d.]+ cores \(web-sim [\d.]+ in \d process\(es\), "
                      r"[\d.]+ per 1,000 events/s"))
    ],
    "bookstore": [
        Expect(("way", "events", "seconds", "events/s", "vs seed"),
               ("events", "seconds", "events/s", "vs seed"))
    ],
}  # fmt: skip


def tables(out: str) -> list[tuple[list[str], list[list[str]]]]:
    """The markdown tables in ``out``: (heads, rows)."""
    found: list[tuple[list[str], list[list[str]]]] = []
    lines = out.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("| ") and lines[i + 1].startswith("|---"):
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("| "):
                    break
                rows.append([cell.strip() for cell in row.strip()[1:-1].split(" | ")])
            found.append(([h.strip() for h in line.strip()[1:-1].split(" | ")], rows))
    return found


def run_bench(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, f"{name}.py", "--smoke", "--markdown"],
        cwd=BENCH, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    print(f"bench/{name}.py --smoke: {time.monotonic() - started:.1f} s")
    return done


def check(name: str, done: subprocess.CompletedProcess[str]) -> None:
    expected = EXPECT[name]
    assert done.returncode in expected[0].exits, done.stdout + done.stderr[-3000:]
    found = tables(done.stdout)
    assert [heads for heads, _ in found] == [list(e.heads) for e in expected], done.stdout
    for (heads, rows), want in zip(found, expected, strict=True):
        assert rows, f"no rows: {done.stdout}"
        for row in rows:
            assert len(row) == len(heads), row
            for column in want.numbers:
                cell = row[heads.index(column)]
                assert NUMBER.match(cell), f"{column}: {cell!r} in {row}"
        for pattern in want.lines:
            assert re.search(pattern, done.stdout, re.MULTILINE), f"{pattern}: {done.stdout}"


def bench_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
    return env | {"CLICKSTREAM_JARS_DIR": str(JARS_DIR), **extra}


@pytest.mark.parametrize(
    "name",
    ["kafka_read", "sessions", "joins", "scale", "count_reduce_cost", "collector",
     "dashboard_latency", "songs_latency"],
)  # fmt: skip
def test_bench_on_the_session_broker(name: str, settings: Settings) -> None:
    env = bench_env(CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=str(settings.kafka.bootstrap_servers))
    check(name, run_bench(name, env))


def test_bookstore_bench(cassandra: CassandraNode, settings: Settings) -> None:
    env = bench_env(
        CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=str(settings.kafka.bootstrap_servers),
        CLICKSTREAM_CASSANDRA_CONTACT_POINTS="127.0.0.1",
        CLICKSTREAM_CASSANDRA_PORT=str(cassandra.port),
    )
    check("bookstore", run_bench("bookstore", env))


def test_every_bench_script_is_smoke_tested() -> None:
    helpers = {"common", "sides", "standalone", "http_load", "bare_asgi", "flask_reference"}
    scripts = {path.stem for path in BENCH.glob("*.py")} - helpers
    assert scripts == set(EXPECT)
