"""Shared by the benchmarks: the jar cache, free ports, the options every bench has
(``--markdown``, ``--smoke``), producing N records, pacing records at a rate, timing a streaming
read, and printing a bench's table once (rich on a terminal, markdown with ``--markdown``).

No bench imports the tests; a bench that needs a service the tests also start (the broker,
Cassandra) takes it from the settings (``CLICKSTREAM_*``), as the smoke test does.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from clickstream.broker.embedded import free_port as _free_port
from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings

CHECKOUT = Path(__file__).resolve().parent.parent
JARS_DIR = Path(os.environ.get("CLICKSTREAM_JARS_DIR") or CHECKOUT / ".cache" / "jars")
"""The jar cache (Kafka's jars, Spark's Kafka connector, Cassandra's), shared with the tests."""
SHARED_BROKER = "CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"
"""When set, benches that would start a broker for this checkout use that one instead."""

console = Console(stderr=True)
"""Progress lines go to stderr; the table alone goes to stdout."""

Record = tuple[str, bytes | str | None, bytes | str]
"""(topic, key, value)"""


ALL_STARTED = re.compile(r"all (\d+) queries started")
"""What the jobs process writes to its log once it has started its last query."""


class QueriesReady:
    """Whether every streaming query of an `up` in the data folder ``data`` has committed a
    batch: the jobs process says in ``logs/jobs.log`` how many queries it started, and each of
    them must have been seen with a lag (`clickstream status`'s figure, None before its first
    commit). ``seen``: queries known to be expected already (an earlier step's)."""

    def __init__(self, data: Path, seen: Iterable[str] = ()) -> None:
        self.jobs_log = data / "logs" / "jobs.log"
        self.total = 0
        self.seen = set(seen)

    def waiting(self, lag: Mapping[str, int | None]) -> list[str]:
        """The queries seen that have not committed a batch yet."""
        return sorted(q for q in self.seen if lag.get(q) is None)

    def check(self, lag: Mapping[str, int | None]) -> bool:
        """Take in one sample of the lags; True once every started query has committed."""
        self.seen.update(lag)
        if not self.total and self.jobs_log.exists():  # read until it says how many it started
            started_all = ALL_STARTED.search(self.jobs_log.read_text(errors="replace"))
            self.total = int(started_all.group(1)) if started_all else 0
        everyone = bool(self.total) and len(self.seen) >= self.total
        return bool(lag) and everyone and not self.waiting(lag)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    return _free_port("127.0.0.1")


def shared_bootstrap() -> str | None:
    """The broker given in the environment (``CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS``), if any."""
    return os.environ.get(SHARED_BROKER) or None


def options(
    parser: argparse.ArgumentParser, smoke: dict[str, Any], argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """Add ``--markdown`` and ``--smoke`` to ``parser`` and parse. ``--smoke`` makes ``smoke``
    the defaults: the smallest run that still fills every row (options given win)."""
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    shown = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in smoke.items())
    parser.add_argument("--smoke", action="store_true", help=f"the smallest run: {shown}")
    args = parser.parse_args(argv)
    if args.smoke:
        parser.set_defaults(**smoke)
        args = parser.parse_args(argv)
    return args


def print_table(
    heads: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    markdown: bool,
    title: str | None = None,
    left: Sequence[str] = (),
) -> None:
    """The bench's table, once, on stdout: rich, or markdown with ``markdown``. Columns named in
    ``left`` (default: the first) are left-aligned, the others right-aligned."""
    lefts = set(left or heads[:1])
    cells = [[str(cell) for cell in row] for row in rows]
    if markdown:
        if title:
            print(f"{title}\n")
        print("| " + " | ".join(heads) + " |")
        print("|" + "|".join("---" if h in lefts else "---:" for h in heads) + "|")
        for row in cells:
            print("| " + " | ".join(row) + " |")
        return
    table = Table(title=title)
    for head in heads:
        table.add_column(head, justify="left" if head in lefts else "right")
    for row in cells:
        table.add_row(*row)
    out = Console()
    if not out.is_terminal:
        out = Console(width=max(out.width, 200))
    out.print(table)


def produce(
    settings: Settings,
    records: Iterable[Record],
    *,
    total: int | None = None,
    partitions: int | None = None,
    **config: Any,
) -> float:
    """Send ``records`` (topic, key, value) with a producer tuned for throughput (``config``
    overrides it), waiting for room when the queue is full; returns the seconds until every
    record is acknowledged. ``partitions``: record i goes to partition i % partitions (else the
    key picks). Progress goes to stderr every 200,000 records."""
    producer = make_producer(settings, **{"linger.ms": 50, "batch.num.messages": 10000} | config)
    started = time.perf_counter()
    sent = 0
    for i, (topic, key, value) in enumerate(records):
        where = None if partitions is None else i % partitions
        while True:
            try:
                producer.produce(topic, value, key=key, partition=where)
                break
            except BufferError:
                producer.poll(0.05)
        sent = i + 1
        if sent % 10_000 == 0:
            producer.poll(0)
            if sent % 200_000 == 0:
                console.print(f"  produced {sent:,}" + (f"/{total:,}" if total else ""))
    producer.flush(600)
    return time.perf_counter() - started


def paced(rate: int, seconds: float) -> Iterator[range]:
    """Record numbers to send at ``rate`` a second for ``seconds``, in chunks of 10 ms: each
    chunk is yielded at its time (never earlier). The last chunk may go past rate x seconds."""
    chunk = max(rate // 100, 1)
    start = time.monotonic()
    sent = 0
    while sent < rate * seconds:
        pause = start + sent / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        yield range(sent, sent + chunk)
        sent += chunk


def time_count(frame: Any) -> tuple[float, int]:
    """Run a streaming DataFrame with ``availableNow``, counting each micro-batch:
    (seconds, rows)."""
    counted: list[int] = []
    with tempfile.TemporaryDirectory() as checkpoint:
        started = time.perf_counter()
        query = (
            frame.writeStream.foreachBatch(lambda batch, _id: counted.append(batch.count()))
            .option("checkpointLocation", checkpoint)
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
        elapsed = time.perf_counter() - started
    if query.exception() is not None:
        raise RuntimeError(str(query.exception()))
    return elapsed, sum(counted)
