"""`clickstream up` end to end: every part starts, both scenarios reach the dashboard,
`clickstream status` reports on them, and one SIGINT leaves no process behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.collector.conftest import free_port
from tests.conftest import alive, child_pids, cli_env

pytestmark = pytest.mark.slow


def test_up_serves_both_scenarios_on_the_dashboard_and_stops_on_sigint(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("BROKER", "COLLECTOR", "DASHBOARD")}
    env = cli_env(
        CLICKSTREAM_DATA_DIR=str(tmp_path),
        **{f"CLICKSTREAM_{name}_PORT": str(port) for name, port in ports.items()},
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "clickstream", "up", "--rate", "10"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "clickstream is up" in line or not line:
                break
        output = "".join(lines)
        for part in ("broker", "collector", "dashboard", "jobs", "web-sim", "shop-sim"):
            assert f"{part:<10} up" in output, output
        board = f"http://127.0.0.1:{ports['DASHBOARD']}"
        assert f"open {board}/" in output

        # Both scenarios' counts reach the dashboard.
        metrics: set[str] = set()
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not {"shop.gender", "web.pageviews"} <= metrics:
            time.sleep(2)
            rows = httpx.get(f"{board}/api/history", timeout=5).json()["rows"]
            metrics = {row["metric"] for row in rows}
        assert {"shop.gender", "shop.action", "web.pageviews", "web.pages"} <= metrics, metrics

        status = subprocess.run(
            [sys.executable, "-m", "clickstream", "status", "--json"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["kafka_error"] is None
        topics = {topic["name"]: topic for topic in report["topics"]}
        assert topics["shop"]["records"] > 0
        assert topics["clickstream.results"]["records"] > 0
        queries = {(q["job"], q["query"]): q for q in report["queries"]}
        assert queries["shop", "counts"]["batches"] > 0
        assert queries["shop", "counts"]["lag"] is not None
        assert "shop.gender" in report["last_windows"]
        assert report["collector"].startswith("up")
        assert report["dashboard"].startswith("up")
        assert report["dashboard_connections"] == 0

        children = child_pids(process.pid)
        assert len(children) >= 12  # 6 parts, each under a watchdog (+ the JVM)
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(90)
    rest = process.stdout.read()
    assert code == 0, rest + process.stderr.read() if process.stderr else ""
    for part in ("broker", "collector", "dashboard", "jobs", "web-sim", "shop-sim"):
        assert f"{part:<10} stopped" in rest
    time.sleep(0.5)
    assert [pid for pid in children if alive(pid)] == []
