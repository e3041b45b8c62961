"""Benchmark: what one songs count batch costs Spark, side by side in one process: collecting
the plays to the driver and counting them there (the version before e4f6d12) against the
``mapInArrow`` reduction on the executors (now), on a cached DataFrame of N plays, local[2].

    .venv/bin/python bench/count_reduce_cost.py [--sizes 500,10000,100000] [--runs 12]
        [--markdown] [--smoke]

Prints the median milliseconds per batch of each (the first two runs of each are warm-up). No
Kafka read: this is the fixed cost each way, the part that matters for small, frequent batches.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession

from clickstream.streaming.reduce import REDUCED, Reduced, TallyPart, reduce_partition
from clickstream.streaming.tally import window_partials
from common import options, print_table

T0 = 1_793_577_600_000
DAY_MS = 86_400_000
PARTS = [
    TallyPart(("_key",), 60_000, 60_000, T0 - 40 * DAY_MS),
    TallyPart(("_key",), 3_600_000, 3_600_000, T0 - 40 * DAY_MS),
    TallyPart(("_key",), 1000, 1000, 0, at_zero=True),
]
SMOKE = {"sizes": "500", "runs": 3}


def collect_and_count(df: Any) -> None:
    rows = df.toArrow()
    ok = rows.filter(pc.is_valid(rows["_time"]))
    for p in PARTS:
        times = pa.repeat(0, ok.num_rows) if p.at_zero else ok["_time"]
        window_partials(times, [("m", ok["_key"])], p.size_ms, p.slide_ms, p.watermark_ms)


def reduce_on_executors(df: Any) -> None:
    reduced = Reduced(df.mapInArrow(reduce_partition(PARTS), REDUCED).toArrow())
    reduced.partials(["minute", "hour", "all"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,10000,100000")
    parser.add_argument("--runs", type=int, default=12, help="per side; the first two warm up")
    args = options(parser, SMOKE)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        df = spark.range(n, numPartitions=2).selectExpr(
            f"{T0} + id * 37 % 3600000 as _time",
            "concat('artist/song-', id % 10) as _key",
            "cast(null as string) as _dead_key",
            "cast(null as string) as _dead_value",
        )
        df = df.cache()
        df.count()
        times: dict[str, list[float]] = {"old": [], "new": []}
        for i in range(args.runs):
            for side in ("old", "new") if i % 2 else ("new", "old"):
                start = time.perf_counter()
                (collect_and_count if side == "old" else reduce_on_executors)(df)
                times[side].append((time.perf_counter() - start) * 1000)
        old, new = (statistics.median(times[s][2:]) for s in ("old", "new"))
        rows.append((f"{n:,}", f"{old:.0f}", f"{new:.0f}", f"{new / old:.2f}"))
        df.unpersist()
    spark.stop()
    heads = ("plays/batch", "collect + count (ms)", "mapInArrow (ms)", "ratio")
    print_table(heads, rows, markdown=args.markdown, left=())


if __name__ == "__main__":
    main()
