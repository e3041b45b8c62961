"""Benchmark: end-to-end latency from producing a shop event to its window's count on the
dashboard's WebSocket, p50/p99, at steady rates.

    .venv/bin/python bench/dashboard_latency.py [--rates 1000,5000] [--seconds 30] [--markdown]
        [--job shop|web-live] [--variant NAME:SETTING=VALUE,...]... [--compare LABEL=DIR]...
        [--warmup 15] [--smoke]

``--job web-live`` measures the web scenario's count job instead: enriched pageviews (as the
collector writes them) counted in ``web.pageviews``, 5% of them sent a second time 200 ms later
with the same ``eventId`` (a client's retry, which must not count again; those copies are not
measured, and a retry counted shows as more events than produced, reported as ``extra``).

Each ``--variant`` runs every rate again with the job's settings changed (environment names,
e.g. ``--variant trigger-0:CLICKSTREAM_JOBS_COUNT_TRIGGER_S=0``), so settings are compared side by
side in one run; without it the defaults run alone. Each ``--compare`` runs every rate again
with the job, the dashboard and the embedded broker of another checkout (``bench/sides.py``).

Starts the embedded broker, then the deployment's own processes: `clickstream jobs run shop`
(Spark local[2], 1-s windows, the count trigger ``jobs.count_trigger_s``) and `clickstream
dashboard`. This script
produces shop events at a fixed rate (event time = produce time), listens on the dashboard's
WebSocket, and for each (window, gender) matches counts to events: when an update says the
window holds c events, the first c produced in it (by produce time) are visible from that
moment. An event's latency is that moment minus its produce time. Events never seen within
10 s after the run are reported as missing. Before measuring, each rate runs ``--warmup`` (15) s
of the same traffic as warm-up (the job's first batches compile code and start Python workers)
and as long of quiet to catch up; those events are not measured. "job cores" is the CPU the jobs
process (its JVM and Python workers) used while the measured events were sent: what a shorter
trigger costs.
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
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec

from clickstream.children import spawn, stop
from clickstream.events.shop import GENDERS, ShopEvent
from clickstream.events.web import EnrichedWebEvent
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import make_producer
from common import console, free_port, options, paced, print_table
from http_load import cpu_now
from sides import add_compare_option, side_broker, sides

SMOKE = {"rates": "200", "seconds": 3.0, "warmup": 5.0}
Row = dict[str, Any]
"""A dashboard update (or a table row), as JSON."""


class Produced:
    """Produce times per (window start ms, gender label), in order."""

    def __init__(self) -> None:
        self.times: dict[tuple[int, str], list[float]] = defaultdict(list)
        self.lock = threading.Lock()


JOBS = {"shop": "shop.gender", "web-live": "web.pageviews"}
"""Job measured -> the metric matched."""
RETRY_SHARE = 0.05
RETRY_AFTER_S = 0.2


def produce(
    bootstrap: str, topic: str, rate: int, seconds: float, produced: Produced, job: str = "shop"
) -> int:
    from clickstream.settings import load_settings

    settings = load_settings(environ={"CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    producer = make_producer(settings, **{"linger.ms": 5})
    rng = random.Random(1)
    encode = msgspec.json.Encoder().encode
    retries: list[tuple[float, bytes, bytes]] = []  # (when, key, value)
    run = uuid.uuid4().hex[:8]  # event ids unique across calls (warm-up, measure)
    sent = 0
    for chunk in paced(rate, seconds):
        for _ in chunk:
            now = time.time()
            at_ms = int(now * 1000)
            event: ShopEvent | EnrichedWebEvent
            if job == "shop":
                gender = rng.choice([0, 0, 0, 1, 1, 2])
                user = rng.randrange(100_000)
                event = ShopEvent(user_id=user, action=0, gender=gender, timestamp=at_ms)
                key, label = str(user).encode(), GENDERS[gender]
            else:
                visitor = rng.randrange(100_000)
                event = EnrichedWebEvent(
                    eventId=f"{run}-{sent}",
                    eventType="Pageview",
                    timestamp=at_ms,
                    receivedAt=at_ms,
                    uiud=f"visitor-{visitor}",
                    sessionId=f"s-{visitor}",
                    pageUrl=f"https://shop.example.com/p/{rng.randrange(50)}",
                    referrer=None,
                )
                key, label = f"visitor-{visitor}".encode(), "Pageview"
            value = encode(event)
            producer.produce(topic, value, key=key)
            if job != "shop" and rng.random() < RETRY_SHARE:
                retries.append((now + RETRY_AFTER_S, key, value))
            with produced.lock:
                produced.times[at_ms // 1000 * 1000, label].append(now)
            sent += 1
        now = time.time()
        while retries and retries[0][0] <= now:
            _, key, value = retries.pop(0)
            producer.produce(topic, value, key=key)
        producer.poll(0)
    for _, key, value in retries:
        producer.produce(topic, value, key=key)
    producer.flush()
    return sent


async def listen(
    url: str, updates: list[tuple[float, Row]], done: asyncio.Event, metric: str = "shop.gender"
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
    produced: Produced, updates: list[tuple[float, Row]], since: float
) -> tuple[list[float], int, int]:
    """Latency of each event seen; events never seen; events counted beyond those produced."""
    visible: dict[tuple[int, str], int] = defaultdict(int)  # events already matched
    extra: dict[tuple[int, str], int] = defaultdict(int)
    found: list[float] = []
    for received, row in sorted(updates, key=lambda u: u[0]):
        key = (row["window_start"], row["key"])
        times = produced.times.get(key)
        if times is None:
            continue  # a window of the warm-up
        count = min(row["count"], len(times))
        extra[key] = max(extra[key], row["count"] - len(times))
        for i in range(visible[key], count):
            if times[i] >= since:
                found.append(received - times[i])
        visible[key] = max(visible[key], count)
    total = sum(1 for ts in produced.times.values() for t in ts if t >= since)
    return found, total - len(found), sum(extra.values())


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def run_rate(
    bootstrap: str,
    port: int,
    rate: int,
    seconds: float,
    tag: str,
    job: str,
    warmup: float,
    job_pid: int,
) -> Row:
    """One measured rate; ``job_pid``: the jobs process, whose CPU over the measured traffic
    is reported as its cores."""
    topic = f"{job}-{tag}"
    produced = Produced()
    updates: list[tuple[float, Row]] = []
    done = asyncio.Event()
    used: list[float] = []  # the job's CPU seconds and the time, before and after

    async def main() -> int:
        # Warm the job up with the same traffic (its first batches compile code and start
        # Python workers), let it catch up, then measure.
        await asyncio.to_thread(produce, bootstrap, topic, rate, warmup, Produced(), job)
        await asyncio.sleep(warmup)
        listener = asyncio.create_task(
            listen(f"ws://127.0.0.1:{port}/ws", updates, done, JOBS[job])
        )
        used.extend((cpu_now([job_pid])[0], time.monotonic()))
        sent = await asyncio.to_thread(produce, bootstrap, topic, rate, seconds, produced, job)
        used.extend((cpu_now([job_pid])[0], time.monotonic()))
        await asyncio.sleep(10)
        done.set()
        await listener
        return sent

    sent = asyncio.run(main())
    found, missing, extra = latencies(produced, updates, 0.0)
    return {
        "rate": rate,
        "sent": sent,
        "measured": len(found) + missing,
        "p50": quantile(found, 0.5),
        "p99": quantile(found, 0.99),
        "max": max(found, default=float("nan")),
        "missing": missing,
        "extra": extra,
        "cores": (used[2] - used[0]) / (used[3] - used[1]),
    }


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``NAME:KEY=VALUE,KEY=VALUE`` -> (name, environment)."""
    name, _, assignments = text.partition(":")
    extra: dict[str, str] = {}
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
    parser.add_argument("--job", choices=sorted(JOBS), default="shop")
    parser.add_argument("--variant", action="append", default=[], type=parse_variant)
    parser.add_argument(
        "--warmup", type=float, default=15.0, help="seconds of warm-up traffic, then of quiet"
    )
    add_compare_option(parser)
    args = options(parser, SMOKE)
    rates = [int(r) for r in args.rates.split(",")]
    variants = args.variant or [("defaults", {})]

    rows: list[Row] = []
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
                    CLICKSTREAM_TOPICS_SHOP_GENDERS=f"shop-{tag}",
                    CLICKSTREAM_TOPICS_WEB_EVENTS=f"web-live-{tag}",
                    CLICKSTREAM_TOPICS_WEB_PINGS=f"web-live-pings-{tag}",
                    CLICKSTREAM_TOPICS_WEB_CUSTOM=f"web-live-custom-{tag}",
                    CLICKSTREAM_TOPICS_RESULTS=f"results-{tag}",
                    CLICKSTREAM_DASHBOARD_PORT=str(port),
                    CLICKSTREAM_SPARK_MASTER="local[2]",
                    **extra,
                )
                from clickstream.settings import load_settings

                ours = {k: v for k, v in env.items() if k.startswith("CLICKSTREAM_")}
                topics = [f"{args.job}-{tag}", f"results-{tag}"]
                if args.job == "web-live":
                    topics += [f"web-live-pings-{tag}", f"web-live-custom-{tag}"]
                ensure_topics(load_settings(environ=ours), topics)
                command = [side.python, "-m", "clickstream"]
                procs = [
                    spawn([*command, *a], log_file=Path(tmp) / f"{a[0]}-{tag}.log", env=env)
                    for a in (["jobs", "run", args.job], ["dashboard"])
                ]
                try:
                    wait_http(f"http://127.0.0.1:{port}/healthz", 60)
                    console.print(
                        f"{name}, rate {rate}/s: job warm-up, then {args.seconds:g} s of events"
                    )
                    time.sleep(min(10.0, args.warmup))  # the job's JVM
                    job_pid = procs[0].pid
                    row = run_rate(
                        bootstrap, port, rate, args.seconds, tag, args.job, args.warmup, job_pid
                    )
                    rows.append({"variant": name, **row})
                finally:
                    for proc in procs:
                        stop(proc)

    heads = ("variant", "events/s", "sent", "measured", "p50 (s)", "p99 (s)", "max (s)",
             "missing", "extra", "job cores")  # fmt: skip
    cells = [
        [*(row[k] for k in ("variant", "rate", "sent", "measured")),
         *(f"{row[k]:.2f}" for k in ("p50", "p99", "max")), row["missing"], row["extra"],
         f"{row['cores']:.2f}"]
        for row in rows
    ]  # fmt: skip
    print_table(heads, cells, markdown=args.markdown, title=f"{args.job}: produce -> dashboard")


if __name__ == "__main__":
    main()
