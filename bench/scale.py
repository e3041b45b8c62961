"""Benchmark: the shop count job's events/s by Spark master and events per micro-batch.

    .venv/bin/python bench/scale.py [--batches 10000,100000,1000000]
        [--masters local[1],local[2],cluster:1,cluster:2] [--partitions 4] [--max-events N]
        [--job shop|web-live] [--compare LABEL=DIR]... [--markdown] [--smoke]

``--job web-live`` runs the web scenario's count job instead, on enriched pageviews of which
every 20th record is a client's retry of the event sent 50 records before (same ``eventId``,
received 5 ms later): exact means ``web.pageviews`` sums to the distinct events.

For each side (this checkout, and each ``--compare`` checkout, with its own embedded broker:
see ``bench/sides.py``) and each batch size B, N = clamp(5 B, 50,000, max-events) shop events
are produced to a topic of their own (event times 10,000 a second, keys spread over the
partitions). Then, per master, the `shop` job runs with `trigger(availableNow=True)` and
``spark.max_offsets_per_trigger = B`` on a fresh checkpoint over each topic, after a warm-up
run. ``cluster:W`` is a Spark standalone cluster started for the run (``bench/standalone.py``):
a master and W workers of one core and 1 GB each, the driver in the benchmark's process
(client mode). Reported: wall time of the run, records/s (the topic's records over the wall
time), the rows Spark read (a version that reads a batch twice reads more), micro-batches, and
whether the `window_counts` table sums to the events produced (exact).

Versions before executor-side counting collect each micro-batch to the driver and cap it at
500,000 events: their 1M row runs in two micro-batches.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from clickstream.jobs import builder
from clickstream.kafka.admin import ensure_topics
from clickstream.settings import Settings, load_settings
from common import Record, console, options, print_table, produce
from sides import add_compare_option, child_args, print_result, run_child, side_broker, sides
from standalone import standalone

T0 = 1_767_225_600_000
RATE = 10_000
"""Event times: this many a second."""


MAX_EVENTS = 1_000_000
SMOKE = {"batches": "1000", "masters": "local[1]", "max_events": 2000, "partitions": 2}


def size_for(batch: int) -> int:
    return min(max(5 * batch, 50_000), MAX_EVENTS)


def records_of(job: str, topic: str, events: int) -> Iterator[Record]:
    encode = msgspec.json.Encoder().encode
    rng = random.Random(3)
    for i in range(events):
        value, key = record(job, i, rng)
        yield topic, key, encode(value)


RETRY_EVERY, RETRY_BACK = 20, 50
"""web-live: record i with i % RETRY_EVERY == RETRY_EVERY - 1 (and i >= RETRY_BACK) retries the
event of record i - RETRY_BACK."""


def is_retry(i: int) -> bool:
    return i >= RETRY_BACK and i % RETRY_EVERY == RETRY_EVERY - 1


def distinct_for(records: int, job: str) -> int:
    """The events a job must count among ``records`` records."""
    if job == "shop":
        return records
    return records - sum(1 for i in range(records) if is_retry(i))


def record(job: str, i: int, rng: random.Random) -> tuple[dict[str, object], bytes]:
    """Record ``i`` of a topic: its value and key."""
    if job == "shop":
        value: dict[str, object] = {
            "user_id": rng.randrange(100_000),
            "action": rng.randrange(4),
            "gender": rng.randrange(3),
            "timestamp": T0 + i * 1000 // RATE,
        }
        return value, str(i).encode()
    n = i - RETRY_BACK if is_retry(i) else i
    visitor = n % 5000
    received = T0 + n * 1000 // RATE + (5 if n != i else 0)
    value = {
        "eventId": f"e{n}",
        "eventType": "Pageview",
        "timestamp": received,
        "receivedAt": received,
        "uiud": f"visitor-{visitor}",
        "sessionId": f"s-{visitor}",
        "pageUrl": f"https://shop.example.com/p/{n % 50}",
        "referrer": None,
    }
    return value, str(value["uiud"]).encode()


def base_settings(bootstrap: str, data_dir: Path, master: str) -> Settings:
    environ = {k: v for k, v in os.environ.items() if k.startswith("CLICKSTREAM_")}
    environ |= {"CLICKSTREAM_SPARK_MASTER": master, "CLICKSTREAM_DATA_DIR": str(data_dir)}
    return load_settings(environ=environ).with_bootstrap(bootstrap)


def produce_topics(args: argparse.Namespace) -> dict[str, str]:
    """One topic per batch size; returns batch size -> topic."""
    settings = base_settings(args.bootstrap, Path(tempfile.mkdtemp()), "local[1]")
    topics = {}
    for batch in args.batches:
        topic = f"bench-{args.job}-{uuid.uuid4().hex[:8]}"
        ensure_topics(settings, [topic], partitions=args.partitions)
        events = size_for(batch)
        console.print(f"producing {events:,} {args.job} records to {topic}")
        produce(settings, records_of(args.job, topic, events), total=events)
        topics[str(batch)] = topic
    return topics


def run_once(
    spark: Any, settings: Settings, topic: str, batch: int, work: Path, job_name: str
) -> dict[str, float]:
    from clickstream.sinks.duckdb_table import connect
    from clickstream.streaming.runner import start_job

    names = {
        "results": f"{topic}.results-{work.name}",
        "dead_letter": f"{topic}.dead-{work.name}",
    }
    if job_name == "shop":
        names["shop"] = names["shop_genders"] = topic  # the job's one topic here
        metric = "shop.action"
    else:
        names |= {
            "web_events": topic,
            "web_pings": f"{topic}.pings-{work.name}",
            "web_custom": f"{topic}.custom-{work.name}",
        }
        metric = "web.pageviews"
    s = settings.model_copy(
        update={
            "data_dir": work,
            "topics": settings.topics.model_copy(update=names),
            "spark": settings.spark.model_copy(update={"max_offsets_per_trigger": batch}),
        }
    )
    ensure_topics(s, [n for n in names.values() if n != topic], partitions=1)
    started = time.perf_counter()
    job = start_job(spark, s, builder(job_name), available_now=True)
    job.await_all()
    elapsed = time.perf_counter() - started
    stats = job.stats[f"{job_name}.counts"]
    with connect(s.duckdb_path, read_only=True) as con:
        (total,) = con.execute(
            "SELECT coalesce(sum(count), 0) FROM window_counts WHERE metric = ?", [metric]
        ).fetchone() or (0,)
    return {
        "seconds": elapsed,
        "rows": stats.input_rows,
        "batches": stats.batches,
        "counted": int(total),
    }


def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """One master of one side, on the broker at ``--bootstrap``."""
    from clickstream.spark.java import find_java_home
    from clickstream.spark.session import get_spark

    scratch = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    topics = dict(pair.split("=") for pair in args.topics.split(","))
    master = args.master
    java_home = find_java_home(None, os.environ)

    def go(url: str) -> dict[str, dict[str, float]]:
        settings = base_settings(args.bootstrap, scratch, url)
        spark = get_spark(settings)
        first = str(min(args.batches))
        run_once(spark, settings, topics[first], int(first), scratch / "warm-up", args.job)
        runs = {}
        for batch in args.batches:
            console.print(f"{master}: {batch:,} events per batch")
            runs[str(batch)] = run_once(
                spark, settings, topics[str(batch)], batch, scratch / f"b{batch}", args.job
            )
        spark.stop()
        return runs

    if master.startswith("cluster:"):
        workers = int(master.split(":")[1])
        with standalone(scratch / "cluster", workers, java_home=str(java_home)) as url:
            return go(url)
    return go(master)


def main() -> int:
    global MAX_EVENTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="10000,100000,1000000")
    parser.add_argument("--masters", default="local[1],local[2],cluster:1,cluster:2")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--max-events", type=int, default=MAX_EVENTS, help="events per topic")
    parser.add_argument("--bootstrap", help="(internal) the side's broker")
    parser.add_argument("--produce", action="store_true", help="(internal)")
    parser.add_argument("--master", help="(internal) measure this master")
    parser.add_argument("--topics", help="(internal) batch=topic,...")
    parser.add_argument("--job", choices=["shop", "web-live"], default="shop")
    add_compare_option(parser)
    args = options(parser, SMOKE)
    args.batches = [int(b) for b in args.batches.split(",")]
    MAX_EVENTS = args.max_events
    if args.bootstrap:
        print_result(produce_topics(args) if args.produce else measure(args))
        return 0

    masters = args.masters.split(",")
    cores = os.cpu_count() or 1
    for master in [m for m in masters if m.startswith("cluster:")]:
        if int(master.split(":")[1]) > cores:
            console.print(f"skipping {master}: {cores} cores")
            masters.remove(master)
    heads = (
        "master", "events/batch", "side", "records", "rows read", "batches", "seconds",
        "records/s", "exact",
    )  # fmt: skip
    results: dict[tuple[str, str, int], dict[str, float]] = {}
    labels = []
    base = child_args(sys.argv[1:], "", drop=("--masters", "--bootstrap"))[:-2]
    for side in sides(parser, args.compare):
        labels.append(side.label)
        with side_broker(side) as bootstrap:
            script = Path(__file__)
            topics = run_child(
                side, script, [*base, "--bootstrap", bootstrap, "--produce"], side.env()
            )
            spec = ",".join(f"{b}={t}" for b, t in topics.items())
            for master in masters:
                found = run_child(
                    side,
                    script,
                    [*base, "--bootstrap", bootstrap, "--master", master, "--topics", spec],
                    side.env(),
                )
                for batch, run in found.items():
                    results[master, side.label, int(batch)] = run
    rows = []
    for master in masters:
        for batch in args.batches:
            for label in labels:
                run = results[master, label, batch]
                seconds, events = float(run["seconds"]), int(run["rows"])
                records = size_for(batch)
                exact = "yes" if run["counted"] == distinct_for(records, args.job) else "NO"
                rows.append(
                    (
                        master,
                        f"{batch:,}",
                        label,
                        f"{records:,}",
                        f"{events:,}",
                        str(run["batches"]),
                        f"{seconds:.1f}",
                        f"{records / seconds:,.0f}",
                        exact,
                    )
                )
    title = f"{args.job} count job, {args.partitions} partitions"
    print_table(heads, rows, markdown=args.markdown, title=title, left=("master", "side", "exact"))
    return 0 if all(row[-1] == "yes" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
