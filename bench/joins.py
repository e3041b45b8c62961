"""Benchmark: the joins job (seed 003) on N users + events, and the seed's way on 5,000 messages.

    .venv/bin/python bench/joins.py [--sizes 50000,500000] [--reference 5000] [--rounds 2]
        [--master local[2]] [--batch N] [--compare LABEL=DIR]... [--markdown] [--smoke]

For each size N, produces N records to fresh topics of this checkout's own embedded broker:
users (Faker-free, stable ids) and 1-10 page events each (about 5.5 per user), event times
increasing with shuffling within a few seconds (out of order), then runs the `joins` job with
`trigger(availableNow=True)` from the start: parse, validation, dead letters, the aggregation
(or, in versions before it, the stream-stream join), the DuckDB writes and the result topic.
Reported: wall time, records/s (users + events read by the job), the cost per record of the
job's micro-batches (its one query), first third of the run against the last third: the job's
cost must stay flat as history grows (``--batch 50000`` gives ten batches on 500,000; the job's
own batch size, 500,000 a topic, reads 500,000 records in one), and where the time goes by
Spark's progress reports: in the batch function (``addBatch``: reading, parsing, reducing and
writing) and in the engine around it (offsets, commit log, planning); then, in a second
table, the batch function's own split (the job's ``JoinWriter.spent``): Spark reading, parsing
and the tasks' reduction, collected (``reduce``), the driver's merge, the dead-letter topic,
the warehouse transaction and the result topic.

On the largest size, the job runs ``--rounds`` times (2), each from the start with its own
checkpoints and warehouse and followed by the floors: the first round runs colder (Spark's JIT
has not yet seen a batch that large), so read the later rounds, where job and floors are both
warm. The floors: Spark alone reading both topics from the start and handing
them to Python (the values; then the records checked against their schemas as the job checks
them, three columns), with no join and no writing. No job on this input, however it joins, is
faster than they are.

In the same run, the reference written the seed's way (App3): one consumer on both topics that
appends each message to lists, builds pandas DataFrames of all of them and merges them on every
message, on the first ``--reference`` messages of the smallest size. Its cost per message grows
with the history.

``--compare before=DIR`` runs the same sizes with another checkout (``git worktree add
/tmp/before main``; see ``bench/sides.py``), on its own broker, in the same run.

Absolute figures on a shared 2-core machine are noisy; the ratios in one run are what to read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clickstream.events.joins import EVENTS, user_id_of
from clickstream.kafka.admin import ensure_topics
from clickstream.settings import Settings, load_settings
from common import Record, console, options, print_table, produce
from sides import add_compare_option, child_args, print_result, run_child, side_broker, sides

SMOKE = {"sizes": "3000", "reference": 200, "rounds": 1}
T0 = int(time.time()) // 3600 * 3600 - 86_400  # a day ago (event times ahead of Kafka's clock
# by more than jobs.max_future_s are dead-lettered), seconds


def stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(T0 + seconds))


def users_and_events(settings: Settings, records: int, counts: list[int]) -> Iterator[Record]:
    """About ``records`` users + events; ``counts`` gets [users, events]."""
    rng = random.Random(3)
    joins = settings.joins
    users = events = 0
    clock = 0.0
    while users + events < records:
        email = f"user{users}@example.org"
        uid = user_id_of(email)
        user = {
            "event_timestamp": stamp(clock),
            "user_id": uid,
            "email": email,
            "name": f"U {users}",
        }
        yield joins.users_topic, uid, json.dumps(user).encode()
        users += 1
        for _ in range(min(rng.randint(1, 10), records - users - events)):
            event = {
                "event_timestamp": stamp(clock + rng.uniform(-5, 30)),
                "user_id": uid,
                "page": f"https://site.example/{rng.randrange(100)}",
                "event": rng.choice(EVENTS),
            }
            yield joins.events_topic, uid, json.dumps(event).encode()
            events += 1
        clock += 0.01  # 100 users per simulated second
    counts += [users, events]


def start_joins(spark: Any, settings: Settings) -> Any:
    """The joins job started with ``availableNow``, by this checkout's API or, for a compared
    checkout from before the engine moved to ``clickstream.streaming``, by the one it had."""
    import importlib

    try:
        jobs = importlib.import_module("clickstream.jobs")
        runner = importlib.import_module("clickstream.streaming.runner")
        return runner.start_job(spark, settings, jobs.builder("joins"), available_now=True)
    except (ImportError, AttributeError):
        runner = importlib.import_module("clickstream.jobs.runner")
        return runner.start_job(spark, settings, "joins", available_now=True)


def run_job(spark: Any, settings: Settings) -> dict[str, Any]:
    from clickstream.sinks.duckdb_table import connect

    started = time.perf_counter()
    job = start_joins(spark, settings)
    job.await_all()
    elapsed = time.perf_counter() - started
    (query,) = job.queries  # one query, in this version and the one before
    progress = [p for p in query.recentProgress if p.get("numInputRows", 0) > 0]
    costs = [
        p["durationMs"]["triggerExecution"] * 1000 / p["numInputRows"]
        for p in progress
        if p["numInputRows"] > 1000
    ]
    total_ms = sum(p["durationMs"].get("triggerExecution", 0) for p in progress)
    batch_ms = sum(p["durationMs"].get("addBatch", 0) for p in progress)
    with connect(settings.duckdb_path, read_only=True) as con:
        (matched,) = con.execute("SELECT sum(event_count) FROM user_event_counts").fetchone() or (
            0,
        )
        (typed,) = con.execute("SELECT sum(count) FROM event_type_counts").fetchone() or (0,)
    third = max(1, len(costs) // 3)
    writer = job.spec.queries[0].write_batch if hasattr(job, "spec") else None
    return {
        "phases": dict(getattr(writer, "spent", {})),  # a version that times its phases
        "seconds": elapsed,
        "matched": int(matched or 0),
        "typed": int(typed or 0),
        "batches": len(costs),
        "first_us": statistics.median(costs[:third]) if costs else 0.0,
        "last_us": statistics.median(costs[-third:]) if costs else 0.0,
        "batch_s": batch_ms / 1000,
        "engine_s": (total_ms - batch_ms) / 1000,
    }


def floor(spark: Any, settings: Settings, what: str) -> float:
    """Seconds Spark alone takes to read both topics from the start and (``read``) hand the
    values to Python, or (``check``) the records checked against their schemas as the job does,
    three columns each; or (``parse``, this version only) to parse every column the job uses,
    written to Spark's ``noop`` sink in the JVM. No aggregation, no writing: what any Spark job
    on this input costs at least."""
    from pyspark.sql import DataFrame

    from clickstream.events.joins import PageEvent, User
    from clickstream.jobs.joins import parse
    from clickstream.spark.io import read_kafka

    started = time.perf_counter()  # from building the query, as the job is timed

    def topic(name: str, kind: type[User] | type[PageEvent]) -> DataFrame:
        raw = read_kafka(
            spark,
            name,
            settings=settings,
            starting_offsets="earliest",
            max_offsets_per_trigger=settings.joins.max_offsets_per_trigger,
        )
        if what == "read":
            return raw.select("value")
        parsed = parse(raw, kind, settings)
        return parsed if what == "parse" else parsed.select("user_id", "_time", "reason")

    users = topic(settings.joins.users_topic, User)
    events = topic(settings.joins.events_topic, PageEvent)
    if what == "parse":
        from clickstream.jobs.joins import records

        frame = records(users, events)
        write = lambda batch, _: batch.write.format("noop").mode("append").save()  # noqa: E731
    else:
        frame = users.union(events)
        write = lambda batch, _: batch.toArrow()  # noqa: E731
    where = settings.data_dir / f"floor-{what}"
    query = (
        frame.writeStream.foreachBatch(write)
        .option("checkpointLocation", str(where))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    return time.perf_counter() - started


def reference(settings: Settings, messages: int) -> dict[str, Any]:
    """App3 of the seed: every message re-merges all history with pandas."""
    import pandas as pd
    from confluent_kafka import Consumer

    from clickstream.kafka.config import consumer_config

    consumer = Consumer(consumer_config(settings, f"seed-{uuid.uuid4().hex[:6]}"))
    joins = settings.joins
    consumer.subscribe([joins.users_topic, joins.events_topic])
    users: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    costs: list[float] = []
    seen = 0
    started = time.perf_counter()
    while seen < messages:
        message = consumer.poll(1.0)
        if message is None or message.error() is not None:
            continue
        t = time.perf_counter()
        data = json.loads((message.value() or b"").decode("utf-8"))
        (users if message.topic() == joins.users_topic else events).append(data)
        df_users, df_events = pd.DataFrame(users), pd.DataFrame(events)
        if "user_id" in df_users.columns and "user_id" in df_events.columns:
            merged = pd.merge(df_events, df_users, on="user_id")
            merged.groupby(["user_id", "name", "email"]).size().reset_index(name="event_count")
            df_events.groupby("event").size().reset_index(name="count")
        costs.append((time.perf_counter() - t) * 1e6)
        seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    tenth = max(1, len(costs) // 10)
    return {
        "seconds": elapsed,
        "messages": seen,
        "first_us": statistics.median(costs[:tenth]),
        "last_us": statistics.median(costs[-tenth:]),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from clickstream.spark.session import get_spark

    scratch = Path(tempfile.mkdtemp(prefix="bench-joins-"))
    environ = {k: v for k, v in os.environ.items() if k.startswith("CLICKSTREAM_")}
    environ |= {"CLICKSTREAM_SPARK_MASTER": args.master, "CLICKSTREAM_DATA_DIR": str(scratch)}
    base = load_settings(environ=environ).with_bootstrap(args.bootstrap)
    spark = get_spark(base)
    out: dict[str, Any] = {"sizes": []}
    sizes = [int(s) for s in args.sizes.split(",")]
    for n in sizes:
        tag = uuid.uuid4().hex[:8]
        joins = base.joins.model_copy(
            update={
                "users_topic": f"users-{tag}",
                "events_topic": f"events-{tag}",
                "max_offsets_per_trigger": args.batch or base.joins.max_offsets_per_trigger,
            }
        )
        topics = base.topics.model_copy(
            update={"results": f"results-{tag}", "dead_letter": f"dead-{tag}"}
        )
        settings = base.model_copy(
            update={"joins": joins, "topics": topics, "data_dir": scratch / tag}
        )
        ensure_topics(
            settings,
            [joins.users_topic, joins.events_topic, topics.results, topics.dead_letter],
            partitions=args.partitions,
        )
        console.print(f"producing {n:,} users + events")
        counts: list[int] = []
        produce(settings, users_and_events(settings, n, counts), total=n)
        users, events = counts
        rounds = args.rounds if n == max(sizes) else 1
        for round_ in range(1, rounds + 1):
            # Each round from the start again (its own checkpoints and warehouse), the floors
            # right after the job: the first round runs colder (Spark's JIT has not seen the
            # largest batch yet), so later rounds compare the two warm.
            here = settings.model_copy(update={"data_dir": scratch / tag / f"round-{round_}"})
            console.print(f"running the joins job on {n:,}" + (f", round {round_}" * (rounds > 1)))
            result = run_job(spark, here)
            result |= {"records": n, "users": users, "events": events, "round": round_}
            out["sizes"].append(result)
            if n != max(sizes):
                continue
            console.print(f"Spark alone on the same {n:,}: reading, then reading and checking")
            low = {
                "records": n,
                "round": round_,
                "read": floor(spark, here, "read"),
                "check": floor(spark, here, "check"),
            }
            with contextlib.suppress(ImportError):  # a version without jobs.joins.records
                low["parse"] = floor(spark, here, "parse")
            out.setdefault("floors", []).append(low)
        if "reference" not in out and args.reference > 0:  # --reference 0: the jobs alone
            console.print(f"the seed's way on {args.reference:,} messages")
            out["reference"] = reference(settings, args.reference)
    spark.stop()
    return out


def _round(row: dict[str, Any], floors: dict[int, Any]) -> str:
    return (
        f", round {row['round']}"
        if len(floors) > 1 and row["records"] in (f["records"] for f in floors.values())
        else ""
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50000,500000")
    parser.add_argument("--reference", type=int, default=5000)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument(
        "--batch", type=int, help="max offsets per trigger (default: joins.max_offsets_per_trigger)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="runs of the job and the floors on the largest size, each from the start",
    )
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--bootstrap", help="measure on this broker (internal)")
    add_compare_option(parser)
    args = options(parser, SMOKE)
    if args.bootstrap:
        print_result(measure(args))
        return 0
    results = []
    for side in sides(parser, args.compare):
        with side_broker(side) as bootstrap:
            argv = child_args(sys.argv[1:], bootstrap)
            results.append((side.label, run_child(side, Path(__file__), argv, side.env())))
    title = f"joins job, {args.master}, {args.partitions} partitions"
    heads = ("run", "records", "seconds", "records/s", "of floor", "µs/record first",
             "µs/record last", "in batch s", "engine s", "matched", "typed")  # fmt: skip
    rows = []
    ok = True
    for label, result in results:
        floors = {low["round"]: low for low in result["floors"]}
        for r in result["sizes"]:
            ok = ok and r["matched"] == r["events"] == r["typed"]
            rate = r["records"] / r["seconds"]
            low = (
                floors.get(r["round"])
                if r["records"] == max(f["records"] for f in floors.values())
                else None
            )
            share = f"{rate * low['check'] / low['records']:.2f}" if low else "-"
            rows.append((f"{label}: joins job, {r['records']:,}{_round(r, floors)}",
                         f"{r['users']:,} + {r['events']:,}", f"{r['seconds']:.1f}",
                         f"{rate:,.0f}", share, f"{r['first_us']:.1f}", f"{r['last_us']:.1f}",
                         f"{r['batch_s']:.1f}", f"{r['engine_s']:.1f}",
                         f"{r['matched']:,}", f"{r['typed']:,}"))  # fmt: skip
        kinds = (("read", "read"), ("read + schema check", "check"),
                 ("read + parse the job's columns (noop sink)", "parse"))  # fmt: skip
        for low, (what, key) in ((f, k) for f in floors.values() for k in kinds if k[1] in f):
            rows.append((f"{label}: Spark alone, {what}, {low['records']:,}{_round(low, floors)}",
                         f"{low['records']:,}", f"{low[key]:.1f}",
                         f"{low['records'] / low[key]:,.0f}", "-", "-", "-", "-", "-", "-",
                         "-"))  # fmt: skip
    phases = [
        (label, r, _round(r, {f["round"]: f for f in result["floors"]}))
        for label, result in results
        for r in result["sizes"]
        if r["phases"]
    ]
    ref = results[0][1].get("reference")
    if ref is not None:
        rows.append((f"seed's way (pandas), {ref['messages']:,}", f"{ref['messages']:,}",
                     f"{ref['seconds']:.1f}", f"{ref['messages'] / ref['seconds']:,.0f}", "-",
                     f"{ref['first_us']:.0f}", f"{ref['last_us']:.0f}", "-", "-", "-",
                     "-"))  # fmt: skip
    print_table(heads, rows, markdown=args.markdown, title=title)
    if phases:  # where the time inside the batch function (Spark's addBatch) goes
        names = list(phases[0][1]["phases"])
        print_table(
            ("run", "in batch s", *(f"{n} s" for n in names)),
            [
                (
                    f"{label}: joins job, {r['records']:,}{round_}",
                    f"{r['batch_s']:.2f}",
                    *(f"{r['phases'].get(n, 0.0):.2f}" for n in names),
                )
                for label, r, round_ in phases
            ],
            markdown=args.markdown,
            title="inside the batch function: Spark's reading, parsing and the tasks' reduction "
            "(reduce), then the driver",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
