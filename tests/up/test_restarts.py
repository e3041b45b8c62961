"""`clickstream up` when a part dies: it is started again (and the jobs go on counting from
their checkpoint), and a part that keeps failing is left stopped, with its last error in
`clickstream status`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clickstream.lock import up_lock
from clickstream.supervisor import ProcessPart, RestartPolicy, Supervisor, read_state, state_path
from tests.conftest import alive, cli_env
from tests.up.support import (
    RunningUp,
    shop_events_counted,
    up_env,
)

pytestmark = pytest.mark.slow


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
