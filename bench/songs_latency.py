"""Benchmark: end-to-end latency from producing a song play to its count on the dashboard's
WebSocket (``songs.minute``, the "this minute" panel), p50/p99, at steady rates.

    .venv/bin/python bench/songs_latency.py [--rates 1000] [--seconds 30] [--warmup 15]
        [--markdown] [--smoke]

The house pattern of ``bench/dashboard_latency.py`` (its helpers are reused): the embedded
broker, then `clickstream jobs run songs` (both queries: the counts and ``song_plays`` into
DuckDB) and `clickstream dashboard` as child processes; plays of four artists at a fixed rate,
stamped with the time of sending (the seed's payload, ``YYYY-MM-DD HH:MM:SS``); for each
(minute, artist/song) an update saying the window holds c plays makes the first c produced in it
visible at that moment. ``--warmup`` (15) s of warm-up traffic and 15 s of quiet come first,
unmeasured. Uses the broker of ``CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS`` when set, else starts one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from clickstream.broker.embedded import EmbeddedBroker
from clickstream.children import spawn, stop
from clickstream.events.songs import TIME_FORMAT
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import make_producer
from clickstream.settings import load_settings
from clickstream.simulators.songs import generate_plays
from common import JARS_DIR, console, free_port, options, paced, print_table, shared_bootstrap
from dashboard_latency import Produced, Row, latencies, listen, quantile, wait_http

METRIC = "songs.minute"
SMOKE = {"rates": "200", "seconds": 3.0, "warmup": 5.0}


def produce(bootstrap: str, topic: str, rate: int, seconds: float, produced: Produced) -> int:
    settings = load_settings(environ={"CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    producer = make_producer(settings, **{"linger.ms": 5})
    plays = generate_plays(["tony-allen", "fela-kuti", "ebo-taylor", "william-onyeabor"], seed=1)
    encode = msgspec.json.Encoder().encode
    sent = 0
    for chunk in paced(rate, seconds):
        for play in (next(plays) for _ in chunk):
            now = time.time()
            moment = datetime.fromtimestamp(now, UTC)
            play.timestamp = moment.strftime(TIME_FORMAT)
            producer.produce(topic, encode(play), key=str(play.user_id))
            window = int(now) // 60 * 60_000
            with produced.lock:
                produced.times[window, f"{play.artist}/{play.song_name}"].append(now)
            sent += 1
        producer.poll(0)
    producer.flush()
    return sent


def run_rate(
    bootstrap: str, port: int, rate: int, seconds: float, topic: str, warmup: float
) -> Row:
    produced = Produced()
    updates: list[tuple[float, Row]] = []
    done = asyncio.Event()
    since: list[float] = []

    async def main() -> int:
        url = f"ws://127.0.0.1:{port}/ws"
        seen: list[tuple[float, Row]] = []
        warm = asyncio.Event()
        probe = asyncio.create_task(listen(url, seen, warm, METRIC))
        # Warm-up plays go into the same minute windows: they are recorded (counts include
        # them) but only plays produced from ``since`` on are measured.
        await asyncio.to_thread(produce, bootstrap, topic, rate, warmup, produced)
        deadline = time.monotonic() + 300  # the job's first batches (a busy machine: minutes)
        while not seen and time.monotonic() < deadline:
            await asyncio.sleep(1)
        warm.set()
        await probe
        if not seen:
            raise SystemExit("no count reached the dashboard within 300 s of the warm-up")
        await asyncio.sleep(warmup)
        since.append(time.time())
        listener = asyncio.create_task(listen(url, updates, done, METRIC))
        sent = await asyncio.to_thread(produce, bootstrap, topic, rate, seconds, produced)
        await asyncio.sleep(10)
        done.set()
        await listener
        return sent

    sent = asyncio.run(main())
    found, missing, _ = latencies(produced, updates, since[0])
    return {
        "rate": rate,
        "sent": sent,
        "measured": len(found) + missing,
        "p50": quantile(found, 0.5),
        "p99": quantile(found, 0.99),
        "max": max(found, default=float("nan")),
        "missing": missing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="1000")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--warmup", type=float, default=15.0, help="seconds of warm-up traffic, then of quiet"
    )
    parser.add_argument("--keep", action="store_true", help="Keep the logs and data; say where.")
    args = options(parser, SMOKE)
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        if args.keep:
            tmp = tempfile.mkdtemp(prefix="clickstream-bench-")
            console.print(f"logs and data in {tmp}")
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="clickstream-bench-"))
        broker_settings = load_settings(
            environ={
                "CLICKSTREAM_DATA_DIR": str(Path(tmp) / "broker"),
                "CLICKSTREAM_BROKER_PORT": "0",
                "CLICKSTREAM_BROKER_CONTROLLER_PORT": "0",
                "CLICKSTREAM_JARS_DIR": str(JARS_DIR),
            }
        )
        bootstrap = shared_bootstrap()
        if bootstrap is None:
            broker = EmbeddedBroker(broker_settings, log_file=Path(tmp) / "broker.log")
            bootstrap = stack.enter_context(broker).bootstrap
        for i, rate in enumerate(int(r) for r in args.rates.split(",")):
            tag = f"{os.getpid()}-{i}"
            port = free_port()
            env = {
                **os.environ,
                "CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "CLICKSTREAM_DATA_DIR": str(Path(tmp) / tag),
                "CLICKSTREAM_SONGS_TOPIC": f"plays-{tag}",
                "CLICKSTREAM_TOPICS_RESULTS": f"results-{tag}",
                "CLICKSTREAM_DASHBOARD_PORT": str(port),
                "CLICKSTREAM_SPARK_MASTER": "local[2]",
                "CLICKSTREAM_JARS_DIR": str(JARS_DIR),
            }
            ours = {k: v for k, v in env.items() if k.startswith("CLICKSTREAM_")}
            ensure_topics(load_settings(environ=ours), [f"plays-{tag}", f"results-{tag}"])
            command = [sys.executable, "-m", "clickstream"]
            procs = [
                spawn([*command, *a], log_file=Path(tmp) / f"{a[0]}-{tag}.log", env=env)
                for a in (["jobs", "run", "songs"], ["dashboard"])
            ]
            try:
                wait_http(f"http://127.0.0.1:{port}/healthz", 60)
                console.print(f"rate {rate}/s: job warm-up, then {args.seconds:g} s of plays")
                time.sleep(min(10.0, args.warmup))  # the job's JVM
                topic = f"plays-{tag}"
                rows.append(run_rate(bootstrap, port, rate, args.seconds, topic, args.warmup))
            finally:
                for proc in procs:
                    stop(proc)

    heads = ("plays/s", "sent", "measured", "p50 (s)", "p99 (s)", "max (s)", "missing")
    cells = [
        [*(row[k] for k in ("rate", "sent", "measured")),
         *(f"{row[k]:.2f}" for k in ("p50", "p99", "max")), row["missing"]]
        for row in rows
    ]  # fmt: skip
    print_table(heads, cells, markdown=args.markdown)


if __name__ == "__main__":
    main()
