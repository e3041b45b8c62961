"""Starting, querying and stopping a real `clickstream up` from the tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.collector.conftest import free_port
from tests.conftest import alive, child_pids, cli_env


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


def sql(
    env: dict[str, str], query: str, *, before_jobs: int | None = None
) -> list[dict[str, object]]:
    """Rows of ``clickstream sql``; ``[{"n": before_jobs}]`` while the jobs have not made the
    warehouse or the queried table yet (when ``before_jobs`` is given)."""
    result = subprocess.run(
        [sys.executable, "-m", "clickstream", "sql", query, "--format", "json"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    not_yet = "no warehouse at" in result.stderr or "does not exist" in result.stderr
    if result.returncode and not_yet and before_jobs is not None:
        return [{"n": before_jobs}]
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]  # JSON lines


def shop_events_counted(env: dict[str, str]) -> int:
    """Shop events in the warehouse's counts; 0 before the jobs wrote any."""
    query = "SELECT sum(count) AS n FROM window_counts WHERE metric = 'shop.gender'"
    rows = sql(env, query, before_jobs=0)
    return int(rows[0]["n"] or 0)  # type: ignore[call-overload]


def sessions_stored(env: dict[str, str]) -> int:
    """Sessions in the warehouse; 0 before the jobs wrote any."""
    rows = sql(env, "SELECT count(*) AS n FROM sessions", before_jobs=0)
    return int(rows[0]["n"] or 0)  # type: ignore[call-overload]


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
