"""Benchmark: read_kafka -> count, against librdkafka's raw consume rate in the same run.

    .venv/bin/python bench/kafka_read.py [--records 1000000] [--partitions 4] [--runs 2]

Starts the embedded broker on a free port (or uses --bootstrap), produces small JSON records to
a fresh topic, then measures (1) a bare confluent-kafka consumer assigned to every partition,
reading every record, and (2) `read_kafka` + `trigger(availableNow=True)` counting every
micro-batch in a local Spark. The ratio of the two is the figure that matters: absolute rates
on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from rich.console import Console
from rich.table import Table

from clickstream.broker.embedded import EmbeddedBroker
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import make_producer
from clickstream.kafka.config import consumer_config
from clickstream.settings import BrokerSettings, Settings, load_settings
from streams import time_count

console = Console(stderr=True)


def produce(settings: Settings, topic: str, records: int, partitions: int) -> float:
    producer = make_producer(settings, **{"linger.ms": 50, "batch.num.messages": 10000})
    start = time.perf_counter()
    for i in range(records):
        value = json.dumps({"i": i, "page": f"/p/{i % 100}", "ts": 1_700_000_000_000 + i})
        producer.produce(topic, value, key=str(i % 1000), partition=i % partitions)
        if i % 10_000 == 0:
            producer.poll(0)
            if i % 200_000 == 0:
                console.print(f"  produced {i:,}/{records:,}")
    producer.flush(300)
    return time.perf_counter() - start


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
                size += len(msg.value())
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


def spark_count(spark, settings: Settings, topic: str, records: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    from clickstream.spark.io import read_kafka

    return time_count(read_kafka(spark, topic, settings=settings, starting_offsets="earliest"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2, help="Spark runs (the first is cold)")
    parser.add_argument("--bootstrap", help="use this cluster instead of the embedded broker")
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()

    base = load_settings(
        environ={
            "CLICKSTREAM_SPARK_MASTER": args.master,
            "CLICKSTREAM_DATA_DIR": tempfile.mkdtemp(),
        }
    )
    broker = None
    if args.bootstrap:
        settings = base.with_bootstrap(args.bootstrap)
    else:
        broker = EmbeddedBroker(BrokerSettings(port=0))
        settings = base.with_bootstrap(broker.start())
    try:
        topic = f"bench-read-{uuid.uuid4().hex[:8]}"
        ensure_topics(settings, [topic], partitions=args.partitions)
        console.print(
            f"producing {args.records:,} records to {topic} ({args.partitions} partitions)"
        )
        produce_s = produce(settings, topic, args.records, args.partitions)
        raw_s = raw_consume(settings, topic, args.records, args.partitions)

        from clickstream.spark.session import get_spark

        spark = get_spark(settings)
        runs = []
        for run in range(args.runs):
            elapsed, count = spark_count(spark, settings, topic, args.records)
            if count != args.records:
                console.print(f"[red]run {run}: counted {count:,}, expected {args.records:,}")
                return 1
            runs.append(elapsed)
        spark.stop()
    finally:
        if broker is not None:
            broker.stop()

    raw_rate = args.records / raw_s
    table = Table(
        title=f"Kafka read, {args.records:,} JSON records, "
        f"{args.partitions} partitions, {args.master}"
    )
    table.add_column("reader")
    table.add_column("seconds", justify="right")
    table.add_column("events/s", justify="right")
    table.add_column("vs raw librdkafka", justify="right")
    table.add_row("produce (reference)", f"{produce_s:.2f}", f"{args.records / produce_s:,.0f}", "")
    table.add_row("raw librdkafka consume", f"{raw_s:.2f}", f"{raw_rate:,.0f}", "1.00")
    for run, elapsed in enumerate(runs):
        label = "read_kafka -> count" + (" (cold)" if run == 0 else " (warm)")
        rate = args.records / elapsed
        table.add_row(label, f"{elapsed:.2f}", f"{rate:,.0f}", f"{rate / raw_rate:.2f}")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    sys.exit(main())
