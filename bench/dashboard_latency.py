"""Benchmark: end-to-end latency from producing a shop event to its window's count on the
dashboard's WebSocket, p50/p99, at steady rates.

    .venv/bin/python bench/dashboard_latency.py [--rates 1000,5000] [--seconds 30] [--markdown]
        [--variant NAME:SETTING=VALUE,...]... [--compare LABEL=DIR]...

Each ``--variant`` runs every rate again with the job's settings changed (environment names,
e.g. ``--variant trigger-0:CLICKSTREAM_JOBS_COUNT_TRIGGER_S=0``), so settings are compared side by
side in one run; without it the defaults run alone. Each ``--compare`` runs every rate again
with the job, the dashboard and the embedded broker of another checkout (``bench/sides.py``).

Starts the embedded broker, then the deployment's own processes: `clickstream jobs run shop`
(Spark local, 1-s windows, 1-s trigger, update mode) and `clickstream dashboard`. This script
produces shop events at a fixed rate (event time = produce time), listens on the dashboard's
WebSocket, and for each (window, gender) matches counts to events: when an update says the
window holds c events, the first c produced in it (by produce time) are visible from that
moment. An event's latency is that moment minus its produce time. Events never seen within
10 s after the run are reported as missing. Before measuring, each rate runs 15 s of the same
traffic as warm-up (the job's first batches compile code and start Python workers) and 15 s of
quiet to catch up; those events are not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import msgspec
from rich.console import Console
from rich.table import Table

from clickstream.broker.embedded import free_port
from clickstream.children import spawn, stop
from clickstream.events.shop import GENDERS, ShopEvent
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import make_producer
from sides import add_compare_option, side_broker, sides

console = Console(stderr=True)
WARMUP_S = 15.0


class Produced:
    """Produce times per (window start ms, gender label), in order."""

    def __init__(self) -> None:
        self.times: dict[tuple[int, str], list[float]] = defaultdict(list)
        self.lock = threading.Lock()


def produce(bootstrap: str, topic: str, rate: int, seconds: float, produced: Produced) -> int:
    from clickstream.settings import load_settings

    settings = load_settings(environ={"CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    producer = make_producer(settings, **{"linger.ms": 5})
    rng = random.Random(1)
    encode = msgspec.json.Encoder().encode
    chunk = max(rate // 100, 1)  # send every 10 ms
    start = time.monotonic()
    sent = 0
    while sent < rate * seconds:
        due = start + sent / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        for _ in range(chunk):
            now = time.time()
            gender = rng.choice([0, 0, 0, 1, 1, 2])
            event = ShopEvent(
                user_id=rng.randrange(100_000), action=0, gender=gender, timestamp=int(now * 1000)
            )
            producer.produce(topic, encode(event), key=str(event.user_id))
            window = event.timestamp // 1000 * 1000
            with produced.lock:
                produced.times[window, GENDERS[gender]].append(now)
            sent += 1
        producer.poll(0)
    producer.flush()
    return sent


async def listen(
    url: str, updates: list[tuple[float, dict]], done: asyncio.Event, metric: str = "shop.gender"
) -> None:
    import websockets

    async with websockets.connect(url, max_size=None) as ws:
        while not done.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            now = time.time()
            message = json.loads(raw)
            for row in message.get("rows", []):
                if row.get("metric") == metric:
                    updates.append((now, row))


def latencies(
    produced: Produced, updates: list[tuple[float, dict]], since: float
) -> tuple[list[float], int]:
    visible: dict[tuple[int, str], int] = defaultdict(int)  # events already matched
    found: list[float] = []
    for received, row in sorted(updates, key=lambda u: u[0]):
        key = (row["window_start"], row["key"])
        times = produced.times.get(key, [])
        count = min(row["count"], len(times))
        for i in range(visible[key], count):
            if times[i] >= since:
                found.append(received - times[i])
        visible[key] = max(visible[key], count)
    total = sum(1 for ts in produced.times.values() for t in ts if t >= since)
    return found, total - len(found)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def run_rate(
    bootstrap: str, env: dict[str, str], port: int, rate: int, seconds: float, tag: str
) -> dict:
    topic = f"shop-{tag}"
    produced = Produced()
    updates: list[tuple[float, dict]] = []
    done = asyncio.Event()

    async def main() -> int:
        # Warm the job up with the same traffic (its first batches compile code and start
        # Python workers), let it catch up, then measure.
        await asyncio.to_thread(produce, bootstrap, topic, rate, WARMUP_S, Produced())
        await asyncio.sleep(15)
        listener = asyncio.create_task(listen(f"ws://127.0.0.1:{port}/ws", updates, done))
        sent = await asyncio.to_thread(produce, bootstrap, topic, rate, seconds, produced)
        await asyncio.sleep(10)
        done.set()
        await listener
        return sent

    sent = asyncio.run(main())
    found, missing = latencies(produced, updates, 0.0)
    return {
        "rate": rate,
        "sent": sent,
        "measured": len(found) + missing,
        "p50": quantile(found, 0.5),
        "p99": quantile(found, 0.99),
        "max": max(found, default=float("nan")),
        "missing": missing,
    }


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``NAME:KEY=VALUE,KEY=VALUE`` -> (name, environment)."""
    name, _, assignments = text.partition(":")
    extra = {}
    for item in filter(None, assignments.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("CLICKSTREAM_"):
            raise argparse.ArgumentTypeError(f"expected CLICKSTREAM_NAME=VALUE, got {item!r}")
        extra[key] = value
    return name, extra


def wait_http(url: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="1000,5000")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--variant", action="append", default=[], type=parse_variant)
    add_compare_option(parser)
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    variants = args.variant or [("defaults", {})]

    rows = []
    for side in sides(parser, args.compare):
        with (
            tempfile.TemporaryDirectory(prefix="clickstream-bench-") as tmp,
            side_broker(side) as bootstrap,
        ):
            runs = [
                (name if side.label == "this" else side.label, extra, rate)
                for name, extra in (variants if side.label == "this" else [(side.label, {})])
                for rate in rates
            ]
            for i, (name, extra, rate) in enumerate(runs):
                tag = f"{os.getpid()}-{i}"
                port = free_port()
                env = side.env(
                    CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
                    CLICKSTREAM_DATA_DIR=str(Path(tmp) / tag),
                    CLICKSTREAM_TOPICS_SHOP=f"shop-{tag}",
                    CLICKSTREAM_TOPICS_RESULTS=f"results-{tag}",
                    CLICKSTREAM_DASHBOARD_PORT=str(port),
                    CLICKSTREAM_SPARK_MASTER="local[2]",
                    **extra,
                )
                from clickstream.settings import load_settings

                ours = {k: v for k, v in env.items() if k.startswith("CLICKSTREAM_")}
                ensure_topics(load_settings(environ=ours), [f"shop-{tag}", f"results-{tag}"])
                command = [side.python, "-m", "clickstream"]
                procs = [
                    spawn([*command, *a], log_file=Path(tmp) / f"{a[0]}-{tag}.log", env=env)
                    for a in (["jobs", "run", "shop"], ["dashboard"])
                ]
                try:
                    wait_http(f"http://127.0.0.1:{port}/healthz", 60)
                    console.print(
                        f"{name}, rate {rate}/s: job warm-up, then {args.seconds:g} s of events"
                    )
                    time.sleep(10)  # the job's JVM
                    row = run_rate(bootstrap, env, port, rate, args.seconds, tag)
                    rows.append({"variant": name, **row})
                finally:
                    for proc in procs:
                        stop(proc)

    table = Table(
        "variant", "events/s", "sent", "measured", "p50 (s)", "p99 (s)", "max (s)", "missing"
    )
    for row in rows:
        table.add_row(
            row["variant"],
            str(row["rate"]),
            str(row["sent"]),
            str(row["measured"]),
            f"{row['p50']:.2f}",
            f"{row['p99']:.2f}",
            f"{row['max']:.2f}",
            str(row["missing"]),
        )
    Console().print(table)
    if args.markdown:
        print("| variant | events/s | sent | measured | p50 (s) | p99 (s) | max (s) | missing |")
        print("|---|---|---|---|---|---|---|---|")
        for row in rows:
            cells = [row[k] for k in ("variant", "rate", "sent", "measured")]
            cells += [f"{row[k]:.2f}" for k in ("p50", "p99", "max")] + [row["missing"]]
            print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
