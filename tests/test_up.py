"""`clickstream up` end to end: every part starts, both scenarios reach the dashboard,
`clickstream status` reports on them, and one SIGINT leaves no process behind. Started again on
the same data folder, it keeps the topics, records, sessions and counts of the first run, and
the jobs resume where they stopped: every shop event is counted once."""

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


def start_up(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], str]:
    """``clickstream up ARGS``, once it says it is up; return it and what it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "clickstream", "up", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if "clickstream is up" in line or not line:
            break
    return process, "".join(lines)


def stop_up(process: subprocess.Popen[str], parts: tuple[str, ...]) -> None:
    """One SIGINT: every part stops, in order, and no process is left."""
    children = child_pids(process.pid)
    process.send_signal(signal.SIGINT)
    code = process.wait(90)
    assert process.stdout is not None
    rest = process.stdout.read()
    assert code == 0, rest + (process.stderr.read() if process.stderr else "")
    for part in parts:
        assert f"{part:<10} stopped" in rest
    time.sleep(0.5)
    assert [pid for pid in children if alive(pid)] == []


def sql(env: dict[str, str], query: str) -> list[dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-m", "clickstream", "sql", query, "--format", "json"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]  # JSON lines


def shop_events_counted(env: dict[str, str]) -> int:
    rows = sql(env, "SELECT sum(count) AS n FROM window_counts WHERE metric = 'shop.gender'")
    return int(rows[0]["n"] or 0)  # type: ignore[call-overload]


def sessions_stored(env: dict[str, str]) -> int:
    result = subprocess.run(
        [sys.executable, "-m", "clickstream", "sql", "SELECT count(*) AS n FROM sessions"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if "does not exist" in result.stderr:
        return 0
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split("│")[1].strip())


def test_up_serves_both_scenarios_on_the_dashboard_and_stops_on_sigint(tmp_path: Path) -> None:
    ports = {
        name: free_port() for name in ("BROKER", "BROKER_CONTROLLER", "COLLECTOR", "DASHBOARD")
    }
    env = cli_env(
        CLICKSTREAM_DATA_DIR=str(tmp_path),
        **{f"CLICKSTREAM_{name}_PORT": str(port) for name, port in ports.items()},
    )
    board = f"http://127.0.0.1:{ports['DASHBOARD']}"
    all_parts = ("broker", "collector", "dashboard", "jobs", "web-sim", "shop-sim")
    process, output = start_up(env, "--rate", "10")
    try:
        for part in all_parts:
            assert f"{part:<10} up" in output, output
        assert "created topics: " in output
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
        assert len(child_pids(process.pid)) >= 12  # 6 parts, each under a watchdog (+ the JVM)
        # Sessions close once the simulated visitors go quiet (simulated time runs 60x).
        deadline = time.monotonic() + 150
        while not sessions_stored(env) and time.monotonic() < deadline:
            time.sleep(3)
        sessions_before = sessions_stored(env)
        assert sessions_before > 0
    finally:
        stop_up(process, all_parts)
    counted_before = shop_events_counted(env)
    assert counted_before > 0
    commits = tmp_path / "checkpoints" / "shop" / "counts" / "commits"
    committed_before = {path.name for path in commits.iterdir()}
    assert committed_before

    # Again, on the same data folder, without the simulators: nothing new comes in.
    process, output = start_up(env, "--no-demo")
    try:
        assert "created topics" not in output, output  # the topics were kept
        rows = httpx.get(f"{board}/api/history", timeout=5).json()["rows"]
        assert {"shop.gender", "web.pageviews"} <= {row["metric"] for row in rows}
        stored = subprocess.run(
            [sys.executable, "-m", "clickstream", "topics", "list"],
            env={**env, "CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{ports['BROKER']}"},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        shop_records = next(
            int(line.split("│")[3]) for line in stored.stdout.splitlines() if "│ shop " in line
        )
        assert shop_records >= counted_before
        # The shop job resumes from its checkpoint: every record counted, none twice.
        deadline = time.monotonic() + 120
        counted = shop_events_counted(env)
        while counted != shop_records and time.monotonic() < deadline:
            time.sleep(2)
            counted = shop_events_counted(env)
        assert counted == shop_records
        # ... from its checkpoint, not from scratch: the batches of the first run are there.
        assert committed_before <= {path.name for path in commits.iterdir()}
        assert sessions_stored(env) >= sessions_before
    finally:
        stop_up(process, ("broker", "collector", "dashboard", "jobs"))
