"""Benchmark: bookstore events from the topic into Apache Cassandra, events/s.

    .venv/bin/python bench/bookstore.py [--events 1000000] [--master local[2]]
        [--reference-sample 20000] [--concurrency 64] [--driver-side [first]] [--markdown]
        [--smoke]

Needs a running Cassandra 5.0, given as the settings give it
(``CLICKSTREAM_CASSANDRA_CONTACT_POINTS=127.0.0.1 CLICKSTREAM_CASSANDRA_PORT=9042``, user
cassandra/cassandra unless ``CLICKSTREAM_CASSANDRA_USERNAME``/``_PASSWORD`` say otherwise; the
Compose file's ``cassandra`` service is one), and writes keyspaces ``bench``, ``bench_driver``
and ``bench_seed`` there. Starts its own embedded broker (or uses
``CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS``), produces N bookstore events to a fresh topic, then in
the same run:

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
import contextlib
import dataclasses
import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from clickstream.events.bookstore import BookstoreEvent, encode
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import make_consumer
from clickstream.settings import CassandraSettings, Settings, load_settings
from common import JARS_DIR, Record, console, options, print_table, produce, shared_bootstrap

T0 = 1_767_225_600_000
KINDS = ("description_open", "description_open", "description_close", "purchase")
SMOKE = {"events": 2000, "reference_sample": 200}


def events_of(topic: str, n: int) -> Iterator[Record]:
    """N valid bookstore events, 250 ms apart, of 20 users and 5 books."""
    rng = random.Random(1)
    for i in range(n):
        event = BookstoreEvent(
            event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            event_type=rng.choice(KINDS),  # type: ignore[arg-type]  # a Literal, chosen at random
            event_time=T0 + i * 250,
            user_id=f"u-{rng.randrange(20)}",
            book_id=f"b-{rng.randrange(1, 6):04d}",
        )
        yield topic, event.user_id, encode(event)


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


def cassandra_session(c: CassandraSettings) -> Any:
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster

    password = c.password.get_secret_value() if c.password else "cassandra"
    cluster = Cluster(
        c.contact_points,
        port=c.port,
        auth_provider=PlainTextAuthProvider(c.username or "cassandra", password),
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
                values.append(json.loads(msg.value() or b"{}"))
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
                datetime.fromtimestamp(int(str(v["event_time"])) / 1000, UTC),
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
    args = options(parser, SMOKE)

    from clickstream.broker.embedded import EmbeddedBroker

    given = load_settings(
        environ={k: v for k, v in os.environ.items() if k.startswith("CLICKSTREAM_CASSANDRA_")}
    ).cassandra
    if not given.contact_points:
        parser.error(
            "no Cassandra: set CLICKSTREAM_CASSANDRA_CONTACT_POINTS (and _PORT) to a running "
            "Cassandra 5.0, e.g. the cassandra service of deploy/compose.yaml"
        )
    with tempfile.TemporaryDirectory(prefix="bench-bookstore-") as scratch:
        folder = Path(scratch)
        base = load_settings(
            environ={
                "CLICKSTREAM_DATA_DIR": str(folder / "data"),
                "CLICKSTREAM_JARS_DIR": str(JARS_DIR),
                "CLICKSTREAM_BROKER_PORT": "0",
                "CLICKSTREAM_BROKER_CONTROLLER_PORT": "0",
                "CLICKSTREAM_SPARK_MASTER": args.master,
                "CLICKSTREAM_SPARK_SHUFFLE_PARTITIONS": "2",
            }
        )
        with contextlib.ExitStack() as stack:
            bootstrap = shared_bootstrap()
            if bootstrap is None:
                broker = EmbeddedBroker(base, log_file=folder / "broker.log")
                bootstrap = stack.enter_context(broker).bootstrap
            c = given.model_copy(
                update={"consistency": "ONE", "concurrency": args.concurrency, "keyspace": "bench"}
            )
            if c.username is None:
                c = c.model_copy(
                    update={"username": "cassandra", "password": SecretStr("cassandra")}
                )
            topic = f"bookstore-bench-{uuid.uuid4().hex[:6]}"
            settings = base.with_bootstrap(bootstrap).model_copy(
                update={
                    "cassandra": c,
                    "topics": base.topics.model_copy(update={"bookstore": topic}),
                }
            )
            ensure_topics(settings, [topic], partitions=4)
            console.print(f"producing {args.events:,} events to {topic}")
            produced_s = produce(
                settings,
                events_of(topic, args.events),
                total=args.events,
                **{"batch.size": 1_000_000},
            )
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
            rows_in = count_rows(c)
            console.print(f"job: {job_s:.1f} s, {rows_in:,} rows")
            if args.driver_side == "after":
                previous()
            console.print("the seed's way on a sample")
            sample = min(args.reference_sample, args.events)
            seed_s = seed_way(settings, topic, c, sample)

    job_rate = args.events / job_s
    seed_rate = sample / seed_s
    title = f"bookstore: topic -> Cassandra, {args.events:,} events, {args.master}"
    rows = [
        ("clickstream (prepared, concurrent)", f"{args.events:,}", f"{job_s:.1f}",
         f"{job_rate:,.0f}", f"{job_rate / seed_rate:.1f}x"),
    ]  # fmt: skip
    if driver_s is not None:
        driver_rate = args.events / driver_s
        rows.append(
            ("driver-side writer (previous version)", f"{args.events:,}", f"{driver_s:.1f}",
             f"{driver_rate:,.0f}", f"{driver_rate / seed_rate:.1f}x")
        )  # fmt: skip
    extrapolated = "" if sample == args.events else f" (sample of {sample:,})"
    rows.append(
        (f"seed's way: sync insert per event{extrapolated}", f"{sample:,}", f"{seed_s:.1f}",
         f"{seed_rate:,.0f}", "1.0x")
    )  # fmt: skip
    if sample != args.events:
        rows.append(
            ("seed's way, extrapolated", f"{args.events:,}", f"{args.events / seed_rate:.0f}",
             f"{seed_rate:,.0f}", "1.0x")
        )  # fmt: skip
    heads = ("way", "events", "seconds", "events/s", "vs seed")
    print_table(heads, rows, markdown=args.markdown, title=title)
    assert rows_in == args.events, f"{rows_in} rows in Cassandra for {args.events} events"
    assert driver_rows in (None, args.events), f"{driver_rows} rows (driver-side)"


if __name__ == "__main__":
    main()
