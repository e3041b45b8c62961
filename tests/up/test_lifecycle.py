"""`clickstream up` end to end: every part starts, both scenarios reach the dashboard,
`clickstream status` reports on them, and one SIGINT leaves no process behind. Started again on
the same data folder, it keeps the topics, records, sessions and counts of the first run, and
the jobs resume where they stopped: every shop event is counted once. A second `up` on a data
folder in use refuses."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.collector.conftest import free_port
from tests.conftest import alive, child_pids, cli_env
from tests.up.support import (
    RunningUp,
    sessions_stored,
    shop_events_counted,
    sql,
    start_up,
    status_report,
    stop_up,
)

pytestmark = pytest.mark.slow


def history_metrics(board: str, wanted: set[str], timeout: float) -> set[str]:
    """The metrics of the dashboard's history, once they include ``wanted`` (or at ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = httpx.get(f"{board}/api/history", timeout=5).json()["rows"]
        metrics = {row["metric"] for row in rows}
        if wanted <= metrics or time.monotonic() > deadline:
            return metrics
        time.sleep(1)


def test_up_serves_both_scenarios_on_the_dashboard_and_stops_on_sigint(tmp_path: Path) -> None:
    ports = {
        name: free_port()
        for name in ("BROKER", "BROKER_CONTROLLER", "COLLECTOR", "DASHBOARD", "BOOKSTORE")
    }
    env = cli_env(
        CLICKSTREAM_DATA_DIR=str(tmp_path),
        # Sessions close 5 simulated minutes after a visitor's last hit (30 by default): at the
        # web simulator's 60x, seconds after the sessions query starts instead of half a minute.
        CLICKSTREAM_JOBS_SESSION_GAP_S="300",
        **{f"CLICKSTREAM_{name}_PORT": str(port) for name, port in ports.items()},
    )
    board = f"http://127.0.0.1:{ports['DASHBOARD']}"
    all_parts = (
        "broker", "collector", "dashboard", "bookstore", "jobs", "web-sim", "shop-sim",
        "bookstore-sim", "songs-sim", "users-sim", "page-events-sim",
    )  # fmt: skip
    process, output = start_up(env, "--rate", "10")
    try:
        for part in all_parts:
            assert f"{part:<10} up" in output, output
        assert "created topics: " in output
        assert f"open {board}/" in output

        # Both scenarios' counts reach the dashboard.
        first = {"shop.gender", "shop.action", "web.pageviews", "web.pages"}
        metrics = history_metrics(board, first, 150)
        assert first <= metrics, metrics
        # The other jobs' queries start after the shop's and web-live's (staggered).
        later = {"bookstore.opens", "songs.minute", "songs.all", "joins.event_types"}
        metrics = history_metrics(board, later, 240)
        assert later <= metrics, metrics
        # The bookstore's events in the warehouse (no Cassandra configured), and its pages.
        booked = sql(env, "SELECT count(*) AS n FROM bookstore_events")
        assert int(booked[0]["n"]) > 0
        shop = httpx.get(f"http://127.0.0.1:{ports['BOOKSTORE']}/books/b-0001", timeout=5)
        assert shop.status_code == 200
        assert "Show description" in shop.text

        report = status_report(env)
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
        assert len(child_pids(process.pid)) >= 12  # 9 parts, each under a watchdog (+ the JVM)
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
    newest_before = max(int(path.name) for path in commits.iterdir() if path.name.isdigit())

    # Again, on the same data folder, without the simulators (nothing new comes in), with the
    # shop job only (the one whose resuming is counted; the others' results are in the topic).
    process, output = start_up(env, "--no-demo", "--jobs", "shop")
    try:
        assert "created topics" not in output, output  # the topics were kept
        # The dashboard reads the counts of the first run back from the results topic.
        metrics = history_metrics(board, {"shop.gender", "web.pageviews"}, 60)
        assert {"shop.gender", "web.pageviews"} <= metrics, metrics
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
        # ... from its checkpoint, not from scratch: the last batch of the first run is there
        # (Spark deletes the oldest commits as it goes: 100 are kept).
        assert (commits / str(newest_before)).exists()
        assert sessions_stored(env) >= sessions_before
    finally:
        stop_up(process, ("broker", "collector", "dashboard", "jobs"))


def test_a_second_up_on_the_same_data_folder_refuses_and_deletes_nothing(
    running_up: RunningUp,
) -> None:
    env = running_up.env
    data_dir = Path(env["CLICKSTREAM_DATA_DIR"])
    commits = data_dir / "checkpoints" / "shop" / "counts" / "commits"

    def committed() -> set[str]:  # not the temporary files Spark renames into place
        if not commits.is_dir():
            return set()
        return {path.name for path in commits.iterdir() if ".tmp" not in path.name}

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not committed():
        time.sleep(1)
    before = committed()
    assert before
    jobs = running_up.part("jobs")
    jobs_pid, restarts = jobs["pid"], jobs["restarts"]
    assert isinstance(jobs_pid, int)
    assert "jobs run" in Path(f"/proc/{jobs_pid}/cmdline").read_text().replace("\0", " ")

    second = subprocess.run(
        [sys.executable, "-m", "clickstream", "up", "--reset"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert second.returncode == 1
    assert second.stderr.strip() == (
        f"error: clickstream up is already running on {data_dir} "
        f"(pid {running_up.process.pid}): stop it first"
    )
    # The same checkpoints, beside the running up, are refused too.
    refused = subprocess.run(
        [sys.executable, "-m", "clickstream", "jobs", "run", "shop"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert f"(pid {jobs_pid}): stop it first" in refused.stderr
    # Nothing of the first one was touched.
    assert before <= committed()
    assert alive(jobs_pid)
    assert running_up.process.poll() is None
    assert running_up.part("jobs")["restarts"] == restarts
