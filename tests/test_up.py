"""`clickstream up` end to end: every part starts, both scenarios reach the dashboard,
`clickstream status` reports on them, and one SIGINT leaves no process behind. Started again on
the same data folder, it keeps the topics, records, sessions and counts of the first run, and
the jobs resume where they stopped: every shop event is counted once. A second `up` on a data
folder in use refuses; a part that dies is started again, and one that keeps failing is left
stopped with its last error in `clickstream status`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clickstream.lock import up_lock
from clickstream.stack import ProcessPart
from clickstream.supervisor import RestartPolicy, Supervisor, read_state, state_path
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
        name: free_port()
        for name in ("BROKER", "BROKER_CONTROLLER", "COLLECTOR", "DASHBOARD", "BOOKSTORE")
    }
    env = cli_env(
        CLICKSTREAM_DATA_DIR=str(tmp_path),
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
        metrics: set[str] = set()
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not {"shop.gender", "web.pageviews"} <= metrics:
            time.sleep(2)
            rows = httpx.get(f"{board}/api/history", timeout=5).json()["rows"]
            metrics = {row["metric"] for row in rows}
        assert {"shop.gender", "shop.action", "web.pageviews", "web.pages"} <= metrics, metrics
        # The other jobs' queries start after the shop's and web-live's (staggered).
        deadline = time.monotonic() + 240
        later = {"bookstore.opens", "songs.minute", "songs.all", "joins.event_types"}
        while time.monotonic() < deadline and not later <= metrics:
            time.sleep(2)
            rows = httpx.get(f"{board}/api/history", timeout=5).json()["rows"]
            metrics = {row["metric"] for row in rows}
        assert later <= metrics, metrics
        # The bookstore's events in the warehouse (no Cassandra configured), and its pages.
        booked = sql(env, "SELECT count(*) AS n FROM bookstore_events")
        assert int(booked[0]["n"]) > 0  # type: ignore[call-overload]
        shop = httpx.get(f"http://127.0.0.1:{ports['BOOKSTORE']}/books/b-0001", timeout=5)
        assert shop.status_code == 200
        assert "Show description" in shop.text

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


def test_a_part_that_keeps_failing_is_restarted_with_backoff_then_left_stopped(
    tmp_path: Path,
) -> None:
    """The supervisor alone, on a real child process that always exits with an error."""
    part = ProcessPart(
        "jobs", ["jobs", "run", "nope"], cli_env(CLICKSTREAM_DATA_DIR=str(tmp_path)),
        tmp_path / "logs" / "jobs.log",
    )  # fmt: skip
    said: list[tuple[float, str]] = []
    warned: list[str] = []
    policy = RestartPolicy(first_delay_s=0.5, max_delay_s=1.0, max_failures=4, window_s=600)
    supervisor = Supervisor(
        [part],
        say=lambda line: said.append((time.monotonic(), line)),
        warn=warned.append,
        state_file=state_path(tmp_path),
        policy=policy,
    )
    stop = threading.Event()
    lock = up_lock(tmp_path).acquire()  # read_state trusts the file only while up holds it
    part.start()
    thread = threading.Thread(target=supervisor.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any("not restarting" in w for w in warned):
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(10)
        part.stop()
    error = "error: unknown job 'nope'; jobs: bookstore, joins, sessions, shop, songs, web-live"
    assert warned[:3] == [
        f"jobs exit code 1: {error} (log: {part.log_file}); restarting it in {delay} s "
        f"(failure {n} of 4 allowed within 10 min)"
        for n, delay in ((1, "0.5"), (2, "1"), (3, "1"))
    ]
    assert warned[3] == (
        f"jobs exit code 1; it failed 4 times within 10 min: not restarting it "
        f"(log: {part.log_file}). Last error: {error}"
    )
    restarts = [(t, line) for t, line in said if "restarted" in line]
    assert [line.split("restart ")[-1] for _, line in restarts] == ["1)", "2)", "3)"]
    state = read_state(tmp_path)
    assert state is not None
    (jobs,) = state.parts
    assert (jobs.state, jobs.restarts, jobs.exit, jobs.last_error) == (
        "failed",
        3,
        "exit code 1",
        error,
    )
    lock.release()
    assert read_state(tmp_path) is None  # no up holds the data folder


class RunningUp:
    """A `clickstream up` whose output is collected by threads while a test goes on."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.env = env
        self.process = subprocess.Popen(
            [sys.executable, "-m", "clickstream", "up", *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=self._collect, args=(stream, lines), daemon=True).start()
        self.wait_for_output("clickstream is up", 180)

    @staticmethod
    def _collect(stream: object, lines: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line)

    def wait_for_output(self, text: str, timeout: float, stderr: bool = False) -> str:
        lines = self.err if stderr else self.out
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(lines) if text in line]
            if found:
                return found[-1]
            assert self.process.poll() is None, "".join(self.out + self.err)
            time.sleep(0.2)
        pytest.fail(f"up did not print {text!r}: {''.join(self.out + self.err)}")

    def status(self) -> dict[str, object]:
        result = subprocess.run(
            [sys.executable, "-m", "clickstream", "status", "--json"],
            env=self.env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def part(self, name: str) -> dict[str, object]:
        up = self.status()["up"]
        assert isinstance(up, dict), up
        (found,) = [part for part in up["parts"] if part["name"] == name]
        return found  # type: ignore[no-any-return]

    def stop(self, parts: tuple[str, ...]) -> None:
        children = child_pids(self.process.pid)
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(90)
        time.sleep(0.5)  # the reader threads catch up
        assert code == 0, "".join(self.out + self.err)
        for part in parts:
            assert f"{part:<10} stopped\n" in self.out
        assert [pid for pid in children if alive(pid)] == []


def up_env(data_dir: Path, **extra: str) -> dict[str, str]:
    ports = {
        name: free_port()
        for name in ("BROKER", "BROKER_CONTROLLER", "COLLECTOR", "DASHBOARD", "BOOKSTORE")
    }
    return cli_env(
        CLICKSTREAM_DATA_DIR=str(data_dir),
        **{f"CLICKSTREAM_{name}_PORT": str(port) for name, port in ports.items()},
        **extra,
    )


@pytest.fixture(scope="module")
def running_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningUp]:
    """One `up` with the shop simulator only (the web one at 1 event/s), shared by the tests
    below: it is stopped at the end of the module."""
    data_dir = tmp_path_factory.mktemp("up")
    up = RunningUp(up_env(data_dir), "--rate", "1", "--shop-rate", "20")
    try:
        yield up
    finally:
        up.stop(("broker", "collector", "dashboard", "jobs", "web-sim", "shop-sim"))


def test_a_second_up_on_the_same_data_folder_refuses_and_deletes_nothing(
    running_up: RunningUp,
) -> None:
    env = running_up.env
    data_dir = Path(env["CLICKSTREAM_DATA_DIR"])
    commits = data_dir / "checkpoints" / "shop" / "counts" / "commits"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (commits.is_dir() and any(commits.iterdir())):
        time.sleep(1)

    def committed() -> set[str]:  # not the temporary files Spark renames into place
        return {path.name for path in commits.iterdir() if ".tmp" not in path.name}

    before = committed()
    assert before
    jobs_pid = running_up.part("jobs")["pid"]
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
    jobs = subprocess.run(
        [sys.executable, "-m", "clickstream", "jobs", "run", "shop"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert jobs.returncode == 1
    assert f"(pid {jobs_pid}): stop it first" in jobs.stderr
    # Nothing of the first one was touched.
    assert before <= committed()
    assert alive(jobs_pid)
    assert running_up.process.poll() is None
    assert running_up.part("jobs")["restarts"] == 0


def test_up_restarts_a_killed_part_and_it_keeps_counting(running_up: RunningUp) -> None:
    env = running_up.env
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and shop_events_counted(env) == 0:
        time.sleep(2)
    jobs = running_up.part("jobs")
    old_pid = jobs["pid"]
    assert isinstance(old_pid, int)
    os.kill(old_pid, signal.SIGKILL)
    counted_at_kill = shop_events_counted(env)
    warning = running_up.wait_for_output("jobs killed by SIGKILL", 30, stderr=True)
    assert "restarting it in 1 s (failure 1 of 5 allowed within 10 min)" in warning
    running_up.wait_for_output("restarted (pid", 30)
    jobs = running_up.part("jobs")
    assert (jobs["state"], jobs["restarts"], jobs["exit"]) == ("running", 1, "killed by SIGKILL")
    assert jobs["pid"] != old_pid
    assert isinstance(jobs["pid"], int)
    assert alive(jobs["pid"])
    # The new jobs process resumes from the checkpoints and counts what came since.
    deadline = time.monotonic() + 240
    counted = shop_events_counted(env)
    while counted <= counted_at_kill + 100 and time.monotonic() < deadline:
        time.sleep(3)
        counted = shop_events_counted(env)
    assert counted > counted_at_kill + 100


def test_a_part_that_always_fails_is_stopped_with_its_last_error_in_status(
    tmp_path: Path,
) -> None:
    """A setting that only the jobs read is wrong: every other part runs; the jobs are tried
    five times (1 + 2 + 4 + 8 s apart), then left stopped."""
    env = up_env(tmp_path, CLICKSTREAM_SPARK_MASTER="nonsense")
    up = RunningUp(env, "--no-demo")
    try:
        up.wait_for_output("not restarting it", 240, stderr=True)
        jobs = up.part("jobs")
        assert (jobs["state"], jobs["restarts"], jobs["exit"]) == ("failed", 4, "exit code 1")
        assert "Master must either be yarn or start with spark, k8s, or local" in str(
            jobs["last_error"]
        )
        assert up.part("collector")["state"] == "running"
        table = subprocess.run(
            [sys.executable, "-m", "clickstream", "status"],
            env={**env, "COLUMNS": "300"}, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
        assert table.returncode == 0, table.stderr
        (row,) = [line for line in table.stdout.splitlines() if line.startswith("│ jobs ")]
        assert "failed" in row
        assert "Master must either be yarn" in table.stdout
        restarts = [line for line in up.out if line.startswith("jobs       restarted")]
        assert len(restarts) == 4
    finally:
        up.stop(("broker", "collector", "dashboard", "jobs"))
