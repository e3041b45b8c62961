"""Starting, querying and stopping a real `clickstream up` from the tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.collector.conftest import free_port
from tests.conftest import child_pids, cli_env, wait_gone


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
    assert wait_gone(children) == set()


def sql(env: dict[str, str], query: str, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    """Rows of ``clickstream sql``, asked again while the jobs hold the warehouse's lock (sql
    waits 30 s for it); with ``missing_ok``, none while the jobs have not made the warehouse or
    the queried table yet."""
    deadline = time.monotonic() + 120
    while True:
        result = subprocess.run(
            [sys.executable, "-m", "clickstream", "sql", query, "--format", "json"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if "cannot open the warehouse" not in result.stderr or time.monotonic() > deadline:
            break
    not_yet = "no warehouse at" in result.stderr or "does not exist" in result.stderr
    if result.returncode and not_yet and missing_ok:
        return []
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]  # JSON lines


def status_report(env: dict[str, str], timeout: float = 60) -> dict[str, Any]:
    """``clickstream status --json``, asked again while the warehouse is busy (the jobs hold
    its lock while they write; status waits 5 s for it)."""
    deadline = time.monotonic() + timeout
    while True:
        result = subprocess.run(
            [sys.executable, "-m", "clickstream", "status", "--json"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        report: dict[str, Any] = json.loads(result.stdout)
        if report["warehouse_error"] is None or time.monotonic() > deadline:
            return report
        time.sleep(1)


def shop_events_counted(env: dict[str, str]) -> int:
    """Shop events in the warehouse's counts; 0 before the jobs wrote any."""
    query = "SELECT sum(count) AS n FROM window_counts WHERE metric = 'shop.gender'"
    rows = sql(env, query, missing_ok=True)
    return int(rows[0]["n"] or 0) if rows else 0


def sessions_stored(env: dict[str, str]) -> int:
    """Sessions in the warehouse; 0 before the jobs wrote any."""
    rows = sql(env, "SELECT count(*) AS n FROM sessions", missing_ok=True)
    return int(rows[0]["n"] or 0) if rows else 0


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
        self.readers = [
            threading.Thread(target=self._collect, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for reader in self.readers:
            reader.start()
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

    def status(self) -> dict[str, Any]:
        return status_report(self.env, timeout=0)

    def part(self, name: str) -> dict[str, object]:
        up = self.status()["up"]
        assert isinstance(up, dict), up
        (found,) = [part for part in up["parts"] if part["name"] == name]
        return found  # type: ignore[no-any-return]

    def stop(self, parts: tuple[str, ...]) -> None:
        children = child_pids(self.process.pid)
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(90)
        for reader in self.readers:  # they end at the end of up's output
            reader.join(30)
        assert code == 0, "".join(self.out + self.err)
        for part in parts:
            assert f"{part:<10} stopped\n" in self.out
        assert wait_gone(children) == set()


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
