"""Benchmark: cold start of `clickstream up` to the first data point on the dashboard.

    .venv/bin/python bench/cold_start.py [--runs 3] [--compare LABEL=DIR]... [--download]
        [--markdown] [--smoke]

Each run starts `clickstream up` (embedded broker, collector, dashboard, the Spark jobs and both
demo simulators) on free ports in a fresh data folder, listens on the dashboard's WebSocket as
soon as it answers, and records when the first shop count and the first web count arrive
(seconds since `up` was started). Then it stops `up` with SIGINT, as a user's Ctrl-C.

With ``--compare``, the runs of each checkout (``bench/sides.py``) alternate, so both meet the
same machine. The jar cache is warm (``.cache/jars``); ``--download`` adds one run of this
checkout with an empty jar cache (the first start of a fresh install), reported separately.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import console, free_port, options, print_table
from sides import Side, add_compare_option, sides

SMOKE = {"runs": 1}


async def first_points(url: str, started: float, timeout: float) -> dict[str, float]:
    """Seconds from ``started`` to the first row of each scenario on the WebSocket."""
    import websockets

    seen: dict[str, float] = {}
    deadline = started + timeout
    while time.monotonic() < deadline and len(seen) < 2:
        try:
            async with websockets.connect(url, open_timeout=2) as ws:
                while time.monotonic() < deadline and len(seen) < 2:
                    raw = await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.1))
                    for row in json.loads(raw).get("rows", []):
                        scenario = row["metric"].split(".")[0]
                        seen.setdefault(scenario, time.monotonic() - started)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.2)
        except Exception as exc:  # the server went away between connect and recv
            if "ConnectionClosed" not in type(exc).__name__:
                raise
            await asyncio.sleep(0.2)
    return seen


def one_run(side: Side, timeout: float, jars_dir: str | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="clickstream-cold-") as tmp:
        board, collector, broker = free_port(), free_port(), free_port()
        env = side.env(
            CLICKSTREAM_DATA_DIR=tmp,
            CLICKSTREAM_DASHBOARD_PORT=str(board),
            CLICKSTREAM_COLLECTOR_PORT=str(collector),
            CLICKSTREAM_BROKER_PORT=str(broker),
        )
        if side.kafka_broker:
            env["CLICKSTREAM_BROKER_CONTROLLER_PORT"] = str(free_port())
            if jars_dir is not None:
                env["CLICKSTREAM_JARS_DIR"] = jars_dir
        log = open(Path(tmp) / "up.log", "wb")  # noqa: SIM115 - closed below
        started = time.monotonic()
        up = subprocess.Popen(
            [side.python, "-m", "clickstream", "up"], env=env, stdout=log, stderr=log
        )
        try:
            seen = asyncio.run(first_points(f"ws://127.0.0.1:{board}/ws", started, timeout))
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(90)
            log.close()
        return seen


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--download", action="store_true", help="also a run with no jar cache")
    add_compare_option(parser)
    args = options(parser, SMOKE)
    results: dict[str, list[dict[str, float]]] = {}
    all_sides = sides(parser, args.compare)
    for run in range(args.runs):
        for side in all_sides:
            seen = one_run(side, args.timeout)
            console.print(f"{side.label}, run {run + 1}: {seen}")
            results.setdefault(side.label, []).append(seen)
    if args.download:
        with tempfile.TemporaryDirectory(prefix="clickstream-jars-") as jars:
            seen = one_run(all_sides[0], args.timeout + 300, jars_dir=jars)
            console.print(f"this, empty jar cache: {seen}")
            results["this, empty jar cache (downloads)"] = [seen]

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.1f}" if values else "never"

    heads = ("side", "first data point", "median (s)", "min (s)", "max (s)", "runs with data")
    rows = []
    for label, runs in results.items():
        for scenario in ("shop", "web"):
            values = [r[scenario] for r in runs if scenario in r]
            row = [
                label,
                scenario,
                cell(values),
                f"{min(values):.1f}" if values else "-",
                f"{max(values):.1f}" if values else "-",
                f"{len(values)}/{len(runs)}",
            ]
            rows.append(row)
    print_table(heads, rows, markdown=args.markdown, left=heads[:2])


if __name__ == "__main__":
    main()
