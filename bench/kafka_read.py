"""Benchmark: read_kafka -> count, against librdkafka's raw consume rate in the same run.

    .venv/bin/python bench/kafka_read.py [--records 1000000] [--partitions 4] [--runs 2]
        [--sources native,python] [--compare LABEL=DIR]... [--markdown] [--smoke]

For each side (this checkout, and each ``--compare`` checkout: see ``bench/sides.py``), starts
that side's embedded broker, produces small JSON records to a fresh topic, then measures (1) a
bare confluent-kafka consumer assigned to every partition, reading every record, and (2)
`read_kafka` + `trigger(availableNow=True)` counting every micro-batch in a local Spark, once
per Kafka source of ``--sources`` (this checkout; an older side reads with what it has). The
ratio of the two is the figure that matters: absolute rates on a shared 2-core machine are
noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.config import consumer_config
from clickstream.settings import Settings, load_settings
from common import Record, console, options, print_table, produce, time_count
from sides import (
    add_compare_option,
    child_args,
    print_result,
    run_child,
    side_broker,
    sides,
)

SMOKE = {"records": 2000, "runs": 1}


def records_of(topic: str, records: int) -> Iterator[Record]:
    for i in range(records):
        value = json.dumps({"i": i, "page": f"/p/{i % 100}", "ts": 1_700_000_000_000 + i})
        yield topic, str(i % 1000), value


def raw_consume(settings: Settings, topic: str, records: int, partitions: int) -> float:
    consumer = Consumer(consumer_config(settings, "bench-raw"))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen = 0
    size = 0
    start = time.perf_counter()
    while seen < records:
        for msg in consumer.consume(10_000, timeout=1.0):
            if msg.error() is None:
                seen += 1
                size += len(msg.value() or b"")
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


def spark_count(spark: Any, settings: Settings, topic: str) -> tuple[float, int]:
    from clickstream.spark.io import read_kafka

    return time_count(read_kafka(spark, topic, settings=settings, starting_offsets="earliest"))


def settings_for(args: argparse.Namespace, **extra: str) -> Settings:
    environ = {k: v for k, v in os.environ.items() if k.startswith("CLICKSTREAM_")}
    environ |= {"CLICKSTREAM_SPARK_MASTER": args.master, "CLICKSTREAM_DATA_DIR": tempfile.mkdtemp()}
    return load_settings(environ=environ | extra).with_bootstrap(args.bootstrap)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One side, on the broker at ``--bootstrap``: produce, raw consume, then Spark reads."""
    settings = settings_for(args)
    topic = f"bench-read-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [topic], partitions=args.partitions)
    console.print(f"producing {args.records:,} records to {topic} ({args.partitions} partitions)")
    produced = produce(
        settings, records_of(topic, args.records), total=args.records, partitions=args.partitions
    )
    result: dict[str, Any] = {"produce_s": produced}
    result["raw_s"] = raw_consume(settings, topic, args.records, args.partitions)
    from clickstream.spark.session import get_spark

    spark = get_spark(settings)
    result["reads"] = {}
    for source in args.sources.split(","):
        chosen = settings_for(args, CLICKSTREAM_SPARK_KAFKA_SOURCE=source)
        runs = []
        for run in range(args.runs):
            elapsed, count = spark_count(spark, chosen, topic)
            if count != args.records:
                raise SystemExit(f"{source} run {run}: counted {count:,}, not {args.records:,}")
            runs.append(elapsed)
        result["reads"][source] = runs
    spark.stop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2, help="Spark runs (the first is cold)")
    parser.add_argument("--sources", default="native,python", help="this checkout's sources")
    parser.add_argument("--bootstrap", help="measure one side on this broker (internal)")
    parser.add_argument("--master", default="local[2]")
    add_compare_option(parser)
    args = options(parser, SMOKE)
    if args.bootstrap:
        print_result(measure(args))
        return 0

    rows: list[tuple[str, str, float, float | None]] = []
    for side in sides(parser, args.compare):
        sources = args.sources if side.label == "this" else "auto"
        with side_broker(side) as bootstrap:
            child = child_args(sys.argv[1:], bootstrap, drop=("--sources",))
            result = run_child(side, Path(__file__), [*child, "--sources", sources], side.env())
        raw_rate = args.records / result["raw_s"]
        rows.append((side.label, "produce (reference)", result["produce_s"], None))
        rows.append((side.label, "raw librdkafka consume", result["raw_s"], 1.0))
        for source, runs in result["reads"].items():
            for run, elapsed in enumerate(runs):
                label = f"read_kafka ({source}) -> count" + (" (cold)" if run == 0 else " (warm)")
                rows.append((side.label, label, elapsed, args.records / elapsed / raw_rate))

    title = (
        f"Kafka read, {args.records:,} JSON records, {args.partitions} partitions, {args.master}"
    )
    heads = ("side", "reader", "seconds", "events/s", "vs raw librdkafka")
    cells = [
        (label, reader, f"{seconds:.2f}", f"{args.records / seconds:,.0f}",
         "" if ratio is None else f"{ratio:.2f}")
        for label, reader, seconds, ratio in rows
    ]  # fmt: skip
    print_table(heads, cells, markdown=args.markdown, title=title, left=heads[:2])
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    sys.exit(main())
