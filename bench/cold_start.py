"""Benchmark: cold start of `clickstream up` to the first data point on the dashboard.

    .venv/bin/python bench/cold_start.py [--runs 3] [--markdown]

Each run starts `clickstream up` (embedded broker, collector, dashboard, the Spark jobs and both
demo simulators) on free ports in a fresh data folder, listens on the dashboard's WebSocket as
soon as it answers, and records when the first shop count and the first web count arrive
(seconds since `up` was started). Then it stops `up` with SIGINT, as a user's Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console(stderr=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def one_run(timeout: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="clickstream-cold-") as tmp:
        board, collector, broker = free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
        env |= {
            "CLICKSTREAM_DATA_DIR": tmp,
            "CLICKSTREAM_DASHBOARD_PORT": str(board),
            "CLICKSTREAM_COLLECTOR_PORT": str(collector),
            "CLICKSTREAM_BROKER_PORT": str(broker),
        }
        log = open(Path(tmp) / "up.log", "wb")  # noqa: SIM115 - closed below
        started = time.monotonic()
        up = subprocess.Popen(
            [sys.executable, "-m", "clickstream", "up"], env=env, stdout=log, stderr=log
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
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    results = []
    for run in range(args.runs):
        seen = one_run(args.timeout)
        console.print(f"run {run + 1}: {seen}")
        results.append(seen)

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.1f}" if values else "never"

    table = Table("first data point", "median (s)", "min (s)", "max (s)", "runs with data")
    rows = []
    for scenario in ("shop", "web"):
        values = [r[scenario] for r in results if scenario in r]
        row = [
            scenario,
            cell(values),
            f"{min(values):.1f}" if values else "-",
            f"{max(values):.1f}" if values else "-",
            f"{len(values)}/{len(results)}",
        ]
        rows.append(row)
        table.add_row(*row)
    Console().print(table)
    if args.markdown:
        print("| first data point | median (s) | min (s) | max (s) | runs with data |")
        print("|---|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
