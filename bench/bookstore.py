"""Benchmark: bookstore events from the topic into Apache Cassandra, events/s.

    .venv/bin/python bench/bookstore.py [--events 1000000] [--master local[2]]
        [--reference-sample 20000] [--concurrency 64] [--driver-side [first]] [--markdown]

Starts its own embedded broker and a Cassandra 5.0 node (tests/cassandra_node.py: 512 MB heap,
loopback), produces N bookstore events to a fresh topic, then in the same run:

* **clickstream**: the `bookstore` job's event-store query (`trigger(availableNow=True)`):
  read, parse and check against the contract, then each micro-batch upserted with one prepared
  statement and ``cassandra.concurrency`` inserts in flight (``execute_concurrent``). Timed
  from the query's start to its end (the SparkSession is already up); the rows are counted in
  Cassandra afterwards.
* **driver-side** (with ``--driver-side``; the previous version of the sink): the same query
  and statement, but each micro-batch collected to the driver as Arrow and written there from
  one Python thread, into a keyspace of its own. Timed the same way, after the clickstream run
  (``--driver-side first``: before it; whichever runs first meets a colder Cassandra).
* **seed's way** (reference): one synchronous ``session.execute(INSERT ...)`` per event, the
  events read from the same topic by a consumer. Run on ``--reference-sample`` events and
  extrapolated to N (at a few hundred to a few thousand inserts per second, 1M would take
  most of an hour): the table says so.

The machine is shared (2 cores, other work running): absolute figures are noisy; the ratio of
the two, measured side by side, is the figure to read.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tests.bookstore.helpers import make_events  # noqa: E402
from tests.cassandra_node import CassandraNode  # noqa: E402

from clickstream.events.bookstore import encode  # noqa: E402
from clickstream.kafka.admin import ensure_topics  # noqa: E402
from clickstream.kafka.clients import make_consumer, make_producer  # noqa: E402
from clickstream.settings import CassandraSettings, Settings, load_settings  # noqa: E402

JARS = ROOT / ".cache" / "jars"


def produce(settings: Settings, topic: str, n: int) -> float:
    producer = make_producer(settings, **{"linger.ms": 50, "batch.size": 1_000_000})
    began = time.monotonic()
    step = 100_000
    for start in range(0, n, step):
        for event in make_events(min(step, n - start), seed=start, start_ms=1_767_225_600_000):
            producer.produce(topic, encode(event), event.user_id.encode())
    producer.flush(300)
    return time.monotonic() - began


def run_job(settings: Settings, write_batch: Any = None) -> float:
    from clickstream.jobs import bookstore
    from clickstream.spark.session import get_spark
    from clickstream.streaming.runner import _start_query

    spark = get_spark(settings)
    spec = bookstore.build(spark, settings)
    events = next(q for q in spec.queries if q.name == "events")
    if write_batch is not None:
        events = dataclasses.replace(events, write_batch=write_batch)
    began = time.monotonic()
    query = _start_query(spec, events, settings, available_now=True)
    query.awaitTermination()
    return time.monotonic() - began


def driver_side(c: CassandraSettings) -> Any:
    """The previous sink: the micro-batch collected to the driver, written by one thread."""
    from clickstream.sinks.cassandra import COLUMNS, Target, ensure_table, rows_to_params
    from clickstream.sinks.cassandra import write_rows as upsert

    target = Target.of(c)
    ensure_table(target)

    def write(batch: Any, batch_id: int) -> None:
        rows = batch.select(*COLUMNS).toArrow()
        if rows.num_rows:
            failed, cause = upsert(target, rows_to_params(rows.to_pydict()))
            assert not failed, cause

    return write


def cassandra_session(c: CassandraSettings):  # type: ignore[no-untyped-def]
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster

    cluster = Cluster(
        ["127.0.0.1"],
        port=c.port,
        auth_provider=PlainTextAuthProvider("cassandra", "cassandra"),
        protocol_version=5,
    )
    return cluster, cluster.connect()


def count_rows(c: CassandraSettings) -> int:
    """Rows in the table, read page by page (``count(*)`` over a large table fails on a small
    heap)."""
    from cassandra.query import SimpleStatement

    cluster, session = cassandra_session(c)
    try:
        statement = SimpleStatement(f"SELECT event_id FROM {c.keyspace}.{c.table}", fetch_size=5000)
        return sum(1 for _ in session.execute(statement, timeout=120))
    finally:
        cluster.shutdown()


def seed_way(settings: Settings, topic: str, c: CassandraSettings, sample: int) -> float:
    """One synchronous, unprepared INSERT per event, as the seed writes them."""
    import json

    consumer = make_consumer(
        settings, f"bench-{uuid.uuid4().hex[:6]}", **{"auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    values: list[dict[str, object]] = []
    while len(values) < sample:
        for msg in consumer.consume(1000, 1.0):
            if msg.error() is None and len(values) < sample:
                values.append(json.loads(msg.value()))
    consumer.close()
    cluster, session = cassandra_session(c)
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {c.keyspace}_seed WITH replication = {c.replication}"
    )
    session.execute(
        f"CREATE TABLE IF NOT EXISTS {c.keyspace}_seed.events (event_id uuid PRIMARY KEY, "
        "event_type text, event_time timestamp, user_id text, book_id text)"
    )
    from datetime import UTC, datetime

    began = time.monotonic()
    for v in values:
        session.execute(
            f"INSERT INTO {c.keyspace}_seed.events (event_id, event_type, event_time, user_id, "
            "book_id) VALUES (%s, %s, %s, %s, %s)",
            (
                uuid.UUID(str(v["event_id"])),
                v["event_type"],
                datetime.fromtimestamp(int(v["event_time"]) / 1000, UTC),  # type: ignore[call-overload]
                v["user_id"],
                v["book_id"],
            ),
        )
    elapsed = time.monotonic() - began
    cluster.shutdown()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--reference-sample", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--driver-side",
        nargs="?",
        const="after",
        choices=["after", "first"],
        help="also time the previous sink (batch collected to the driver, one writer thread), "
        "after the current one or first (the first run meets a cold Cassandra)",
    )
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    console = Console(stderr=True)

    from clickstream.broker.embedded import EmbeddedBroker

    with tempfile.TemporaryDirectory(prefix="bench-bookstore-") as scratch:
        folder = Path(scratch)
        base = load_settings(
            environ={
                "CLICKSTREAM_DATA_DIR": str(folder / "data"),
                "CLICKSTREAM_JARS_DIR": str(JARS),
                "CLICKSTREAM_BROKER_PORT": "0",
                "CLICKSTREAM_BROKER_CONTROLLER_PORT": "0",
                "CLICKSTREAM_SPARK_MASTER": args.master,
                "CLICKSTREAM_SPARK_SHUFFLE_PARTITIONS": "2",
            }
        )
        (folder / "cassandra").mkdir()
        with (
            EmbeddedBroker(base, log_file=folder / "broker.log") as broker,
            CassandraNode(folder / "cassandra", JARS) as node,
        ):
            c = CassandraSettings(
                contact_points=["127.0.0.1"],
                port=node.port,
                username="cassandra",
                password="cassandra",  # type: ignore[arg-type]
                consistency="ONE",
                concurrency=args.concurrency,
                keyspace="bench",
            )
            topic = f"bookstore-bench-{uuid.uuid4().hex[:6]}"
            settings = base.with_bootstrap(broker.bootstrap).model_copy(
                update={
                    "cassandra": c,
                    "topics": base.topics.model_copy(update={"bookstore": topic}),
                }
            )
            ensure_topics(settings, [topic], partitions=4)
            console.print(f"producing {args.events:,} events to {topic}")
            produced_s = produce(settings, topic, args.events)
            console.print(f"produced in {produced_s:.1f} s; running the job's event-store query")
            driver_s = driver_rows = None

            def previous() -> None:
                nonlocal driver_s, driver_rows
                d = c.model_copy(update={"keyspace": "bench_driver"})
                old = settings.model_copy(update={"cassandra": d, "data_dir": folder / "driver"})
                driver_s = run_job(old, driver_side(d))
                driver_rows = count_rows(d)
                console.print(f"driver-side: {args.events / driver_s:,.0f} events/s")

            if args.driver_side == "first":
                previous()
            job_s = run_job(settings)
            console.print(f"job: {args.events / job_s:,.0f} events/s ({job_s:.1f} s)")
            rows = count_rows(c)
            console.print(f"job: {job_s:.1f} s, {rows:,} rows")
            if args.driver_side == "after":
                previous()
            console.print("the seed's way on a sample")
            sample = min(args.reference_sample, args.events)
            seed_s = seed_way(settings, topic, c, sample)

    job_rate = args.events / job_s
    seed_rate = sample / seed_s
    table = Table(title=f"bookstore: topic -> Cassandra, {args.events:,} events, {args.master}")
    for column in ("way", "events", "seconds", "events/s", "vs seed"):
        table.add_column(column, justify="right" if column != "way" else "left")
    table.add_row(
        "clickstream (prepared, concurrent)", f"{args.events:,}", f"{job_s:.1f}",
        f"{job_rate:,.0f}", f"{job_rate / seed_rate:.1f}x",
    )  # fmt: skip
    if driver_s is not None:
        driver_rate = args.events / driver_s
        table.add_row(
            "driver-side writer (previous version)", f"{args.events:,}", f"{driver_s:.1f}",
            f"{driver_rate:,.0f}", f"{driver_rate / seed_rate:.1f}x",
        )  # fmt: skip
    extrapolated = "" if sample == args.events else f" (sample of {sample:,})"
    table.add_row(
        f"seed's way: sync insert per event{extrapolated}", f"{sample:,}", f"{seed_s:.1f}",
        f"{seed_rate:,.0f}", "1.0x",
    )  # fmt: skip
    if sample != args.events:
        table.add_row(
            "seed's way, extrapolated", f"{args.events:,}", f"{args.events / seed_rate:.0f}",
            f"{seed_rate:,.0f}", "1.0x",
        )  # fmt: skip
    assert rows == args.events, f"{rows} rows in Cassandra for {args.events} events"
    assert driver_rows in (None, args.events), f"{driver_rows} rows (driver-side)"
    if args.markdown:
        print("| way | events | seconds | events/s | vs seed |\n|---|---|---|---|---|")
        print(
            f"| clickstream | {args.events:,} | {job_s:.1f} | {job_rate:,.0f} | "
            f"{job_rate / seed_rate:.1f}x |"
        )
        if driver_s is not None:
            print(
                f"| driver-side (previous) | {args.events:,} | {driver_s:.1f} | "
                f"{driver_rate:,.0f} | {driver_rate / seed_rate:.1f}x |"
            )
        print(f"| seed's way{extrapolated} | {sample:,} | {seed_s:.1f} | {seed_rate:,.0f} | 1.0x |")
    else:
        Console().print(table)


if __name__ == "__main__":
    main()
