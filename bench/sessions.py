"""Benchmark: the sessionization job on N pageviews (local Spark), events/s end to end.

    .venv/bin/python bench/sessions.py [--events 1000000] [--master local[2]] [--partitions 4]
        [--compare LABEL=DIR]... [--markdown] [--smoke]

For each side (this checkout, and each ``--compare`` checkout, with its own embedded broker:
see ``bench/sides.py``), produces N enriched pageviews (as the collector writes them) for
visitors browsing in sessions of 1-12 pages, to a fresh topic; then runs the `sessions` job with
`trigger(availableNow=True)`: read, parse, watermark, session windows, dead letters, the files
(Parquet by default) and the DuckDB `sessions` table. Reported: wall time of the job run,
events/s, sessions written. The job is run twice on fresh checkpoints (the first pays JVM and
Python-worker warm-up).

Then, in the same run, the ceilings: the job's first steps alone on the same topic (each
micro-batch only counted): reading the topic, reading and parsing it, and reading, parsing and
making the session windows (Spark's own operator, no sinks). The job cannot go faster than its
own first steps; the ratio to them (printed below the table) says how much the later steps add.
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

from clickstream.events.web import EnrichedWebEvent
from clickstream.jobs import builder
from clickstream.kafka.admin import ensure_topics
from clickstream.settings import Settings, load_settings
from common import Record, console, options, print_table, produce, time_count
from sides import add_compare_option, child_args, print_result, run_child, side_broker, sides

T0 = 1_767_225_600_000
SMOKE = {"events": 2000, "runs": 1, "partitions": 2}


def pageviews(topic: str, events: int, sessions: list[int]) -> Iterator[Record]:
    """N pageviews in sessions, then one far later that closes them; ``sessions`` gets how
    many sessions they make."""
    rng = random.Random(7)
    encode = msgspec.json.Encoder().encode
    sent = 0
    clock = T0
    sessions.append(0)
    while sent < events:
        visitor = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        session = f"{rng.getrandbits(64):016x}"
        sessions[0] += 1
        at = clock + rng.randrange(0, 60_000)
        for page in range(min(rng.randint(1, 12), events - sent)):
            event = EnrichedWebEvent(
                eventId=f"{sessions[0]}-{page}",
                eventType="Pageview",
                timestamp=at,
                receivedAt=at,
                uiud=visitor,
                sessionId=session,
                pageUrl=f"https://shop.example.com/p/{rng.randrange(60)}",
                referrer="direct",
                landingPage=int(page == 0),
            )
            yield topic, visitor, encode(event)
            at += rng.randrange(5_000, 120_000)
            sent += 1
        clock += 40  # about 25 new sessions per simulated second
    closing = EnrichedWebEvent(
        eventId="close", eventType="Pageview", timestamp=clock + 10 * 3_600_000,
        receivedAt=clock, uiud="closer", sessionId="closer", pageUrl="https://shop.example.com/",
    )  # fmt: skip
    yield topic, "closer", encode(closing)


def run_job(spark: Any, settings: Settings, data_dir: Path) -> tuple[float, int, int]:
    from clickstream.sinks.duckdb_table import connect
    from clickstream.streaming.runner import start_job

    ours = settings.model_copy(update={"data_dir": data_dir})
    started = time.perf_counter()
    job = start_job(spark, ours, builder("sessions"), available_now=True)
    job.await_all()
    elapsed = time.perf_counter() - started
    with connect(ours.duckdb_path, read_only=True) as con:
        (rows,) = con.execute("SELECT count(*) FROM sessions").fetchone() or (0,)
    stats = job.stats["sessions.sessions"]
    return elapsed, int(rows), stats.input_rows


def ceiling(
    spark: Any, settings: Settings, parse: bool, windows: bool = False
) -> tuple[float, int]:
    """Seconds to read (and parse, and make session windows of) the whole topic with
    ``availableNow``, and rows seen (sessions, with ``windows``)."""
    from clickstream.jobs import sessions as job
    from clickstream.spark.io import read_kafka
    from clickstream.streaming.parse import good

    frame = read_kafka(
        spark, settings.topics.web_events, settings=settings, starting_offsets="earliest"
    )
    if windows:
        # The job's own session windows on its good hits, without its sinks and dead letters
        # (a checkout from before the job read its topic once has no ``hits``: skipped).
        if not hasattr(job, "hits"):
            return float("nan"), 0
        frame = job.sessionize(
            good(job.hits(job.parse(frame, settings), settings.jobs.watermark_s)),
            settings.jobs.session_gap_s,
        )
    elif parse:
        frame = good(job.parse(frame, settings))
    return time_count(frame)


def measure(args: argparse.Namespace) -> dict[str, object]:
    """One side, on the broker at ``--bootstrap``."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-sessions-"))
    environ = {k: v for k, v in os.environ.items() if k.startswith("CLICKSTREAM_")}
    environ |= {"CLICKSTREAM_SPARK_MASTER": args.master, "CLICKSTREAM_DATA_DIR": str(scratch)}
    settings = load_settings(environ=environ).with_bootstrap(args.bootstrap)
    topic = f"bench-web-{uuid.uuid4().hex[:8]}"
    topics = settings.topics.model_copy(update={"web_events": topic, "dead_letter": topic + ".dlq"})
    settings = settings.model_copy(update={"topics": topics})
    ensure_topics(settings, [topic, topics.dead_letter], partitions=args.partitions)
    console.print(f"producing {args.events:,} pageviews to {topic}")
    counted: list[int] = []
    produce(settings, pageviews(topic, args.events, counted), total=args.events)
    sessions = counted[0]

    from clickstream.spark.session import get_spark

    spark = get_spark(settings)
    runs = [run_job(spark, settings, scratch / f"run{i}") for i in range(args.runs)]
    ceilings = [
        ("ceiling: read only", *ceiling(spark, settings, parse=False)),
        ("ceiling: read + parse", *ceiling(spark, settings, parse=True)),
        ("read + parse + session windows", *ceiling(spark, settings, True, windows=True)),
    ]
    spark.stop()
    return {"sessions": sessions, "runs": runs, "ceilings": ceilings}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--bootstrap", help="measure one side on this broker (internal)")
    add_compare_option(parser)
    args = options(parser, SMOKE)
    if args.bootstrap:
        print_result(measure(args))
        return 0

    title = f"sessions job, {args.events:,} pageviews, {args.partitions} partitions, {args.master}"
    heads = ("side", "run", "seconds", "events/s", "rows read", "sessions written", "expected")
    rows: list[tuple[str, ...]] = []
    ok = True
    for side in sides(parser, args.compare):
        with side_broker(side) as bootstrap:
            result = run_child(
                side, Path(__file__), child_args(sys.argv[1:], bootstrap), side.env()
            )
        expected = int(result["sessions"])
        for i, (elapsed, written, read) in enumerate(result["runs"]):
            ok = ok and written >= expected
            label = "job, cold" if i == 0 else "job, warm"
            rows.append((side.label, label, f"{elapsed:.1f}", f"{read / elapsed:,.0f}",
                         f"{read:,}", f"{written:,}", f"{expected:,}"))  # fmt: skip
        for label, elapsed, read in result["ceilings"]:
            if read == 0:
                continue
            rows.append((side.label, label, f"{elapsed:.1f}", f"{args.events / elapsed:,.0f}",
                         f"{read:,}", "-", "-"))  # fmt: skip
        warm = min(elapsed for elapsed, _, _ in result["runs"])
        for label, elapsed, read in result["ceilings"]:
            if read:
                console.print(
                    f"{side.label}: the job (best run) makes {elapsed / warm:.2f} of the rate of "
                    f"{label}"
                )
    print_table(heads, rows, markdown=args.markdown, title=title, left=heads[:2])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
